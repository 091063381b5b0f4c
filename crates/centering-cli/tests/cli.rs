//! The binary end to end: exit codes, help, inspect, progress silence.

mod common;

use std::process::Command;

use common::*;
use ndarray::ArrayD;

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["fit", "--help"]).status.code(), Some(0));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["fit"]).status.code(), Some(2));
    assert_eq!(run(&["fit", "x.npy"]).status.code(), Some(2), "no -o");
    assert_eq!(run(&["fit", "x.npy", "-o", "s.json", "--bogus"]).status.code(), Some(2));
    let o = run(&["fit", "x.npy", "-o", "s.json", "--momentum", "1.5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("[0, 1]"), "{}", stderr(&o));
    let o = run(&[
        "fit",
        "x.npy",
        "-o",
        "s.json",
        "--momentum",
        "0.9",
        "--torch-momentum",
        "0.1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["fit", "x.npy", "-o", "s.json", "--start", "zero"]);
    assert_eq!(o.status.code(), Some(2), "--start without a momentum");
    let o = run(&["fit", "x.npy", "-o", "s.json", "--batch-rows", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["merge", "a.json", "-o", "c.json"]);
    assert_eq!(o.status.code(), Some(2), "merge needs two states");
}

#[test]
fn moving_averages_need_batch_rows() {
    let (_d, dir) = tmp();
    let x: ArrayD<f64> = data(&[4, 2], 1);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let s = dir.join("s.json");
    let o = run(&["fit", p(&file), "-o", p(&s), "--momentum", "0.9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--batch-rows"), "{}", stderr(&o));
    assert!(!s.exists());
    assert!(
        run(&["fit", p(&file), "-o", p(&s), "--batch-average", "--batch-rows", "2"])
            .status
            .success()
    );
    // Resuming a moving state needs it too.
    let o = run(&["fit", p(&file), "--resume", p(&s), "-o", p(&s)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fit_transform_inspect_end_to_end_silently() {
    let (_d, dir) = tmp();
    let x: ArrayD<f32> = data(&[300, 3], 1);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let s = dir.join("s.json");
    let o = run(&[
        "fit",
        p(&file),
        "--momentum",
        "0.9",
        "--start",
        "zero",
        "--batch-rows",
        "32",
        "-o",
        p(&s),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "a silent fit when stderr is not a terminal"
    );
    let y = dir.join("y.npy");
    let o = run(&["transform", p(&file), "--state", p(&s), "-o", p(&y)]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    let o = run(&["inspect", p(&s)]);
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "format_version  2",
        "dtype           f32",
        "moving_average",
        "momentum        0.9",
        "start           Zero",
        "samples seen    300",
        "batches         10",
        "steps",
    ] {
        assert!(table.contains(needle), "{needle:?} in\n{table}");
    }
    let o = run(&["inspect", p(&s), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect --json is JSON");
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["crate_version"], centering::VERSION);
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["params"]["mode"], "moving_average");
    assert_eq!(v["params"]["momentum"], 0.9);
    assert_eq!(v["n_features"], 3);
    assert_eq!(v["n_samples_seen"], 300);
    assert_eq!(v["n_batches"], 10);
    assert_eq!(v["n_steps"], serde_json::json!([10, 10, 10]));
    let any: centering::AnyCentering = serde_json::from_str(&read(&s)).unwrap();
    let mean = any.mean().unwrap();
    for j in 0..3 {
        assert_eq!(v["mean"][j].as_f64(), Some(mean[j]));
    }
}

#[test]
fn a_library_state_is_a_cli_state() {
    // The library's own serialisation, written by a Rust program, is what
    // `inspect`, `merge` and `transform` read.
    let (_d, dir) = tmp();
    let mut c = centering::Centering::<f64>::new();
    c.partial_fit(&ndarray::array![[1.0, 2.0], [3.0, 4.0]]).unwrap();
    let s = dir.join("lib.json");
    std::fs::write(&s, serde_json::to_string(&c).unwrap()).unwrap();
    let o = run(&["inspect", p(&s), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mean"], serde_json::json!([2.0, 3.0]));
    assert_eq!(v["counts"], serde_json::json!([2.0, 2.0]));
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    // util-linux's `script` gives the command a pseudo-terminal; skip where it is missing.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to provide a terminal");
        return;
    }
    let (_d, dir) = tmp();
    let x: ArrayD<f64> = data(&[40_000, 4], 1);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let s = dir.join("s.json");
    let cmd = format!("{} fit {} -o {}", env!("CARGO_BIN_EXE_centering"), p(&file), p(&s));
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("x.npy") && shown.contains("MiB"),
        "a progress bar on the terminal: {shown:?}"
    );
    // The same command with stderr a pipe draws nothing.
    let o = run(&["fit", p(&file), "-o", p(&s)]);
    assert!(o.status.success() && o.stderr.is_empty() && o.stdout.is_empty());
}
