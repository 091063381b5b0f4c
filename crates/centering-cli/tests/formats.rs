//! `--format` (files without an extension, or with another one) and
//! standard input (`-`): the same states and outputs as from named files.

mod common;

use centering::Centering;
use common::*;
use ndarray::ArrayD;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

#[test]
fn format_overrides_the_extension() {
    let (_d, dir) = tmp();
    let x: ArrayD<f64> = data(&[29, 3], 5);
    let npy = dir.join("x.npy");
    write_npy(&npy, &x, false, false);
    let bin = dir.join("x.bin");
    std::fs::copy(&npy, &bin).unwrap();
    let noext = dir.join("x");
    std::fs::copy(&npy, &noext).unwrap();
    let (a, b, c) = (dir.join("a.json"), dir.join("b.json"), dir.join("c.json"));
    ok(&run(&["fit", p(&npy), "--batch-rows", "4", "-o", p(&a)]));
    ok(&run(&[
        "fit",
        p(&bin),
        "--format",
        "npy",
        "--batch-rows",
        "4",
        "-o",
        p(&b),
    ]));
    ok(&run(&[
        "fit",
        p(&noext),
        "--format",
        "npy",
        "--batch-rows",
        "4",
        "-o",
        p(&c),
    ]));
    assert_eq!(read(&a), read(&b));
    assert_eq!(read(&a), read(&c));
    let mut est = Centering::<f64>::new();
    fit_batches(&mut est, rows_of(&x, false).view(), 4);
    assert_eq!(read(&a), state_json(&est));
    // Transform: the output is written in that format whatever its name.
    let (y1, y2) = (dir.join("y.npy"), dir.join("y.out"));
    ok(&run(&["transform", p(&npy), "--state", p(&a), "-o", p(&y1)]));
    ok(&run(&[
        "transform",
        p(&bin),
        "--format",
        "npy",
        "--state",
        p(&a),
        "-o",
        p(&y2),
    ]));
    assert_eq!(std::fs::read(&y1).unwrap(), std::fs::read(&y2).unwrap());
    // An output whose extension names another format is refused.
    assert_fails(
        &run(&[
            "transform",
            p(&bin),
            "--format",
            "npy",
            "--state",
            p(&a),
            "-o",
            p(&dir.join("y.csv")),
        ]),
        &["y.csv must have the input's format (npy)"],
    );
    // CSV under another name.
    let txt = dir.join("t.txt");
    std::fs::write(&txt, "a,b\n1,2\n3,5\n").unwrap();
    let s = dir.join("t.json");
    ok(&run(&["fit", p(&txt), "--format", "csv", "-o", p(&s)]));
    let mut est = Centering::<f64>::new();
    est.partial_fit(&ndarray::array![[1.0, 2.0], [3.0, 5.0]]).unwrap();
    assert_eq!(read(&s), state_json(&est));
    // A wrong --format is a clear error about the file's content, not a panic.
    assert_fails(
        &run(&["fit", p(&txt), "--format", "npy", "-o", p(&s)]),
        &["t.txt is not a valid .npy file"],
    );
}

#[test]
fn no_format_names_the_file() {
    let (_d, dir) = tmp();
    let noext = dir.join("data");
    std::fs::write(&noext, "a\n1\n").unwrap();
    let s = dir.join("s.json");
    assert_fails(
        &run(&["fit", p(&noext), "-o", p(&s)]),
        &["data: cannot tell its format", "--format npy|csv|parquet"],
    );
    let csv = dir.join("d.csv");
    std::fs::write(&csv, "a\n1\n").unwrap();
    ok(&run(&["fit", p(&csv), "-o", p(&s)]));
    assert_fails(
        &run(&["transform", p(&csv), "--state", p(&s), "-o", p(&dir.join("out"))]),
        &["output", "out: cannot tell its format"],
    );
    assert_fails(
        &run(&["transform", p(&noext), "--state", p(&s), "-o", p(&dir.join("o.csv"))]),
        &["data: cannot tell its format"],
    );
    // An unknown --format value is a usage error.
    assert_eq!(
        run(&["fit", p(&csv), "--format", "xls", "-o", p(&s)]).status.code(),
        Some(2)
    );
    assert_eq!(listing(&dir), vec!["d.csv", "data", "s.json"]);
}
