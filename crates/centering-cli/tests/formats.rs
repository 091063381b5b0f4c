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

/// Runs the binary with `input` piped to its standard input.
fn run_stdin(args: &[&str], input: Vec<u8>) -> std::process::Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // The child may stop reading early (an error): a broken pipe is fine.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("the binary ends");
    writer.join().expect("writer");
    out
}

#[test]
fn npy_from_standard_input_equals_the_file() {
    let (_d, dir) = tmp();
    // Several batches, f64 and f32 (whose default state is f32: the header is read once), and integers.
    let x: ArrayD<f64> = data(&[3000, 3], 9);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let x32: ArrayD<f32> = data(&[5, 7, 2], 3);
    let f32_file = dir.join("x32.npy");
    write_npy(&f32_file, &x32, false, true);
    let xi: ArrayD<u16> = int_data(&[999, 4], 2);
    let int_file = dir.join("xi.npy");
    write_int_npy(&int_file, &xi, false, false);
    // A Fortran-order file of one feature is the same bytes in either order.
    let x1: ArrayD<f64> = data(&[50, 1], 1);
    let one = dir.join("one.npy");
    write_npy(&one, &x1, true, false);
    for (f, batch) in [(&file, "64"), (&f32_file, "4"), (&int_file, "100"), (&one, "7")] {
        let (a, b) = (dir.join("a.json"), dir.join("b.json"));
        ok(&run(&["fit", p(f), "--batch-rows", batch, "-o", p(&a)]));
        let o = run_stdin(
            &["fit", "-", "--format", "npy", "--batch-rows", batch, "-o", p(&b)],
            std::fs::read(f).unwrap(),
        );
        ok(&o);
        assert_eq!(read(&a), read(&b), "{}", f.display());
        // Transform from a pipe: the same bytes as from the file.
        let (y1, y2) = (dir.join("y1.npy"), dir.join("y2.npy"));
        ok(&run(&[
            "transform",
            p(f),
            "--state",
            p(&a),
            "--batch-rows",
            batch,
            "-o",
            p(&y1),
        ]));
        ok(&run_stdin(
            &[
                "transform",
                "-",
                "--format",
                "npy",
                "--state",
                p(&a),
                "--batch-rows",
                batch,
                "-o",
                p(&y2),
            ],
            std::fs::read(f).unwrap(),
        ));
        assert_eq!(std::fs::read(&y1).unwrap(), std::fs::read(&y2).unwrap());
    }
    // A stdin input among files, fitted in its place in the order.
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    ok(&run(&[
        "fit",
        p(&file),
        p(&file),
        p(&file),
        "--batch-rows",
        "999",
        "-o",
        p(&a),
    ]));
    ok(&run_stdin(
        &[
            "fit",
            p(&file),
            "-",
            p(&file),
            "--format",
            "npy",
            "--batch-rows",
            "999",
            "-o",
            p(&b),
        ],
        std::fs::read(&file).unwrap(),
    ));
    assert_eq!(read(&a), read(&b));
}

#[test]
fn csv_from_standard_input_equals_the_file() {
    let (_d, dir) = tmp();
    let mut text = String::from("id,x,y\n");
    for i in 0..500 {
        text.push_str(&format!(
            "{i},{},{}\n",
            i as f64 / 7.0,
            if i % 9 == 0 {
                String::new()
            } else {
                (i * i % 13).to_string()
            }
        ));
    }
    let file = dir.join("d.csv");
    std::fs::write(&file, &text).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let common = ["--columns", "x,y", "--nan-policy", "ignore", "--batch-rows", "33"];
    let mut args = vec!["fit", p(&file), "-o", p(&a)];
    args.extend_from_slice(&common);
    ok(&run(&args));
    let mut args = vec!["fit", "-", "--format", "csv", "-o", p(&b)];
    args.extend_from_slice(&common);
    ok(&run_stdin(&args, text.clone().into_bytes()));
    assert_eq!(read(&a), read(&b));
    let (y1, y2) = (dir.join("y1.csv"), dir.join("y2.csv"));
    ok(&run(&[
        "transform",
        p(&file),
        "--columns",
        "x,y",
        "--state",
        p(&a),
        "-o",
        p(&y1),
    ]));
    ok(&run_stdin(
        &[
            "transform",
            "-",
            "--format",
            "csv",
            "--columns",
            "x,y",
            "--state",
            p(&a),
            "-o",
            p(&y2),
        ],
        text.clone().into_bytes(),
    ));
    assert_eq!(read(&y1), read(&y2));
    // Errors in a piped CSV name standard input and the line.
    let o = run_stdin(
        &["fit", "-", "--format", "csv", "-o", p(&b)],
        b"a,b\n1,2\n3,oops\n".to_vec(),
    );
    assert_fails(&o, &["<stdin>: line 3, column \"b\": \"oops\" is not a number"]);
}

#[test]
fn standard_input_errors() {
    let (_d, dir) = tmp();
    let s = dir.join("s.json");
    let x: ArrayD<f64> = data(&[10, 2], 4);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let bytes = std::fs::read(&file).unwrap();
    assert_fails(
        &run_stdin(&["fit", "-", "-o", p(&s)], bytes.clone()),
        &["reading standard input (-) needs --format npy or --format csv"],
    );
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "parquet", "-o", p(&s)], bytes.clone()),
        &["Parquet cannot be read from standard input"],
    );
    assert_fails(
        &run_stdin(&["fit", "-", "-", "--format", "npy", "-o", p(&s)], bytes.clone()),
        &["more than once"],
    );
    // Truncated, and longer than the header says: errors at the end of the stream, no state written.
    let short = bytes[..bytes.len() - 12].to_vec();
    assert_fails(
        &run_stdin(
            &["fit", "-", "--format", "npy", "--batch-rows", "3", "-o", p(&s)],
            short,
        ),
        &[
            "<stdin> is truncated: its header says shape [10, 2] of float64, 160 bytes of data, but the stream ended after 148 bytes (within rows 9..10)",
        ],
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 8]);
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "npy", "-o", p(&s)], long),
        &["<stdin>: its header says shape [10, 2] of float64, but more bytes follow the last row"],
    );
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "npy", "-o", p(&s)], Vec::new()),
        &["<stdin> is empty: expected a .npy file"],
    );
    let fortran = dir.join("f.npy");
    write_npy(&fortran, &x, true, false);
    assert_fails(
        &run_stdin(
            &["fit", "-", "--format", "npy", "-o", p(&s)],
            std::fs::read(&fortran).unwrap(),
        ),
        &["a Fortran-order .npy cannot be read from a pipe"],
    );
    // Outputs are files.
    ok(&run(&["fit", p(&file), "-o", p(&s)]));
    assert_fails(
        &run(&["transform", p(&file), "--state", p(&s), "-o", "-"]),
        &["cannot write output -"],
    );
    assert_eq!(listing(&dir), vec!["f.npy", "s.json", "x.npy"]);
}

/// A `.npy` header (no data) of `shape` and `descr`, as bytes.
fn header_only(dir: &std::path::Path, descr: &str, shape: &[usize]) -> Vec<u8> {
    let f = dir.join("h.npy");
    write_npy_raw(&f, descr, false, shape, &[]);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::remove_file(&f).unwrap();
    bytes
}

/// The files of `dir` left by a failed run: none but the inputs, no `.part`.
fn assert_nothing_left(dir: &std::path::Path, inputs: &[&str]) {
    assert_eq!(listing(dir), inputs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
}

#[test]
fn huge_headers_on_standard_input_are_errors_not_aborts() {
    let (_d, dir) = tmp();
    let s = dir.join("s.json");
    let x = dir.join("x.npy");
    write_npy(&x, &data::<f64>(&[3, 4], 1), false, false);
    ok(&run(&["fit", p(&x), "-o", p(&s)]));
    let (out_json, out_npy) = (dir.join("out.json"), dir.join("out.npy"));
    let fit = ["fit", "-", "--format", "npy", "-o", p(&out_json)];
    let transform = ["transform", "-", "--format", "npy", "--state", p(&s), "-o", p(&out_npy)];
    // One row of 2^40 float64 features (8 TiB): the batch buffer is refused
    // (or, where the allocator promises it, the stream is found truncated,
    // the buffer grown only as the bytes arrive). A transform never gets as
    // far: no state has that many features.
    let o = run_stdin(&fit, header_only(&dir, "<f8", &[1, 1 << 40]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "<stdin>: cannot allocate a batch of 1 rows of 1099511627776 features of float64 (8796093022208 bytes)"
        ) || err.contains("<stdin> is truncated"),
        "{err}"
    );
    assert_nothing_left(&dir, &["s.json", "x.npy"]);
    // One row of 2^60 bytes: no allocator can give it.
    let o = run_stdin(&fit, header_only(&dir, "|u1", &[1, 1 << 60]));
    assert_fails(
        &o,
        &[
            "<stdin>: cannot allocate a batch of 1 rows of 1152921504606846976 features of uint8 (1152921504606846976 bytes)",
        ],
    );
    assert_nothing_left(&dir, &["s.json", "x.npy"]);
    // More bytes than a u64 counts: the header is refused before any read.
    for (descr, shape) in [
        ("<f8", vec![1usize << 40, 1 << 30]),
        ("<f8", vec![2, 1 << 62]),
        ("|u1", vec![1 << 32, 1 << 32]),
    ] {
        for args in [&fit[..], &transform[..]] {
            let o = run_stdin(args, header_only(&dir, descr, &shape));
            assert_fails(
                &o,
                &[
                    &format!("<stdin>: its header says shape {shape:?} of "),
                    "2^64 bytes of data or more, which no stream holds",
                ],
            );
            assert_nothing_left(&dir, &["s.json", "x.npy"]);
        }
    }
}

#[test]
fn zero_rows_on_standard_input_then_bytes_is_an_error() {
    let (_d, dir) = tmp();
    let s = dir.join("s.json");
    let mut bytes = header_only(&dir, "<f8", &[0, 3]);
    ok(&run_stdin(&["fit", "-", "--format", "npy", "-o", p(&s)], bytes.clone()));
    bytes.extend_from_slice(&[0; 8]);
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "npy", "-o", p(&dir.join("t.json"))], bytes),
        &["<stdin>: its header says shape [0, 3] of float64, but more bytes follow the last row"],
    );
    assert_nothing_left(&dir, &["s.json"]);
}

#[test]
fn empty_standard_input_says_what_was_expected() {
    let (_d, dir) = tmp();
    let s = dir.join("s.json");
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "npy", "-o", p(&s)], Vec::new()),
        &["<stdin> is empty: expected a .npy file"],
    );
    assert_fails(
        &run_stdin(&["fit", "-", "--format", "csv", "-o", p(&s)], Vec::new()),
        &["<stdin> is empty: expected a CSV file with a header row"],
    );
    std::fs::write(dir.join("a.csv"), "x\n1\n").unwrap();
    ok(&run(&["fit", p(&dir.join("a.csv")), "-o", p(&s)]));
    assert_fails(
        &run_stdin(
            &[
                "transform",
                "-",
                "--format",
                "csv",
                "--state",
                p(&s),
                "-o",
                p(&dir.join("y.csv")),
            ],
            Vec::new(),
        ),
        &["<stdin> is empty: expected a CSV file with a header row"],
    );
    assert_fails(
        &run_stdin(
            &[
                "transform",
                "-",
                "--format",
                "npy",
                "--state",
                p(&s),
                "-o",
                p(&dir.join("y.npy")),
            ],
            Vec::new(),
        ),
        &["<stdin> is empty: expected a .npy file"],
    );
    assert_nothing_left(&dir, &["a.csv", "s.json"]);
}
