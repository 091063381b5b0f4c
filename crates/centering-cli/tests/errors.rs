//! Every bad input: a clear message naming the file and the place, exit
//! code 1, and no output file (not even a temporary) left behind.

mod common;

use common::*;
use ndarray::ArrayD;

/// Runs `fit FILE -o OUT` expecting failure with `needles`, and checks that
/// the directory holds exactly what it held before.
fn fit_fails(dir: &std::path::Path, file: &std::path::Path, extra: &[&str], needles: &[&str]) {
    let before = listing(dir);
    let out = dir.join("out.json");
    let mut args = vec!["fit", p(file), "-o", p(&out)];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_fails(&o, needles);
    assert_eq!(listing(dir), before, "no output, no temporary left");
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn truncated_npy() {
    let (_d, dir) = tmp();
    let file = dir.join("t.npy");
    write_npy_raw(&file, "<f8", false, &[4, 3], &f64_bytes(&[1.0; 11]));
    fit_fails(
        &dir,
        &file,
        &[],
        &["t.npy is truncated", "[4, 3]", "96 bytes", "88 bytes"],
    );
    // Cut inside the header.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..30]).unwrap();
    fit_fails(&dir, &file, &[], &["t.npy is not a valid .npy file"]);
}

#[test]
fn header_lying_about_the_shape() {
    let (_d, dir) = tmp();
    let file = dir.join("l.npy");
    // Says 2×3, holds 4×3.
    write_npy_raw(&file, "<f8", false, &[2, 3], &f64_bytes(&[1.0; 12]));
    fit_fails(
        &dir,
        &file,
        &[],
        &["l.npy", "[2, 3]", "48 bytes", "96 bytes follow the header"],
    );
    // Says 5×3, holds 4×3: truncated.
    write_npy_raw(&file, "<f8", false, &[5, 3], &f64_bytes(&[1.0; 12]));
    fit_fails(&dir, &file, &[], &["truncated"]);
    // A dtype that lies: says f4 with f8's bytes.
    write_npy_raw(&file, "<f4", false, &[4, 3], &f64_bytes(&[1.0; 12]));
    fit_fails(&dir, &file, &[], &["l.npy", "float32"]);
}

#[test]
fn wrong_dtype() {
    let (_d, dir) = tmp();
    let file = dir.join("i.npy");
    // Booleans are not numbers to average.
    write_npy_raw(&file, "|b1", false, &[2, 2], &[0u8; 4]);
    fit_fails(
        &dir,
        &file,
        &[],
        &[
            "i.npy",
            "unsupported dtype '|b1'",
            "float32/float64 or (u)int8/16/32/64",
        ],
    );
    write_npy_raw(&file, "<c16", false, &[2, 2], &[0u8; 64]);
    fit_fails(&dir, &file, &[], &["unsupported dtype '<c16'"]);
    // An f64 file into an f32 state is not narrowed.
    let x: ArrayD<f64> = data(&[3, 2], 1);
    write_npy(&file, &x, false, false);
    fit_fails(&dir, &file, &["--dtype", "f32"], &["float64", "f32", "--dtype f64"]);
}

#[test]
fn empty_files() {
    let (_d, dir) = tmp();
    for name in ["e.npy", "e.csv"] {
        let file = dir.join(name);
        std::fs::write(&file, b"").unwrap();
        fit_fails(&dir, &file, &[], &[name, "is empty"]);
    }
    let state = dir.join("s.json");
    std::fs::write(&state, b"").unwrap();
    let o = run(&["inspect", p(&state)]);
    assert_fails(&o, &["s.json", "empty"]);
}

#[test]
fn non_finite_values_are_located() {
    let (_d, dir) = tmp();
    let file = dir.join("n.npy");
    let mut x: ArrayD<f64> = data(&[3, 4, 2], 1);
    x[[2, 1, 1]] = f64::NAN;
    write_npy(&file, &x, true, false);
    fit_fails(
        &dir,
        &file,
        &["--batch-rows", "5"],
        &["n.npy", "NaN at index [2, 1, 1]", "--nan-policy ignore"],
    );
    x[[2, 1, 1]] = f64::INFINITY;
    write_npy(&file, &x, false, false);
    fit_fails(&dir, &file, &["--nan-policy", "ignore"], &["inf at index [2, 1, 1]"]);
}

#[test]
fn bad_csv_cells_name_line_and_column() {
    let (_d, dir) = tmp();
    let file = dir.join("c.csv");
    std::fs::write(&file, "a,b\n1,2\n3,oops\n").unwrap();
    fit_fails(
        &dir,
        &file,
        &[],
        &["c.csv: line 3, column \"b\": \"oops\" is not a number"],
    );
    std::fs::write(&file, "a,b\n1,2\n3,\n").unwrap();
    fit_fails(&dir, &file, &[], &["line 3, column \"b\": empty cell"]);
    std::fs::write(&file, "a,b\n1,2\n3,inf\n").unwrap();
    fit_fails(&dir, &file, &["--nan-policy", "ignore"], &["line 3, column \"b\": inf"]);
    fit_fails(
        &dir,
        &file,
        &["--columns", "a,zz"],
        &["no column named \"zz\"", "[\"a\", \"b\"]"],
    );
    std::fs::write(&file, "a,b\n1,2\n3\n").unwrap();
    fit_fails(&dir, &file, &[], &["c.csv", "line: 3", "1 fields"]);
}

fn fitted_state(dir: &std::path::Path, name: &str, shape: &[usize], dtype: &str) -> std::path::PathBuf {
    let x: ArrayD<f64> = data(shape, 4);
    let file = dir.join(format!("{name}.npy"));
    write_npy(&file, &x, false, false);
    let s = dir.join(format!("{name}.json"));
    let o = run(&["fit", p(&file), "--dtype", dtype, "-o", p(&s)]);
    assert!(o.status.success() || dtype == "f32", "{}", stderr(&o));
    s
}

#[test]
fn state_for_another_d_or_dtype() {
    let (_d, dir) = tmp();
    let s3 = fitted_state(&dir, "three", &[5, 3], "f64");
    let x: ArrayD<f64> = data(&[4, 2], 1);
    let file = dir.join("two.npy");
    write_npy(&file, &x, false, false);
    // Resume with another D.
    fit_fails(&dir, &file, &["--resume", p(&s3)], &["two.npy has 2 features", "has 3"]);
    // Transform with another D.
    let before = listing(&dir);
    let y = dir.join("y.npy");
    let o = run(&["transform", p(&file), "--state", p(&s3), "-o", p(&y)]);
    assert_fails(&o, &["two.npy has 2 features", "three.json has 3"]);
    assert_eq!(listing(&dir), before);
    // Resume an f64 state as f32.
    fit_fails(
        &dir,
        &file,
        &["--resume", p(&s3), "--dtype", "f32"],
        &["--dtype f32", "f64"],
    );
    // Merge states of other D and other dtype.
    let s2 = fitted_state(&dir, "two2", &[4, 2], "f64");
    let c = dir.join("c.json");
    assert_fails(
        &run(&["merge", p(&s3), p(&s2), "-o", p(&c)]),
        &["two2.json", "number of features differs (self has 3, other has 2)"],
    );
    let f32file = dir.join("f.npy");
    let x32: ArrayD<f32> = data(&[4, 3], 1);
    write_npy(&f32file, &x32, false, false);
    let s32 = dir.join("f32.json");
    assert!(run(&["fit", p(&f32file), "-o", p(&s32)]).status.success());
    assert_fails(
        &run(&["merge", p(&s3), p(&s32), "-o", p(&c)]),
        &["f32.json", "element type"],
    );
    // A state that is not one.
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"format_version\": 99}").unwrap();
    assert_fails(
        &run(&["inspect", p(&junk)]),
        &["junk.json is not a valid centering state"],
    );
    assert!(!c.exists());
}

#[test]
fn unwritable_output() {
    let (_d, dir) = tmp();
    let x: ArrayD<f64> = data(&[4, 2], 1);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let missing = dir.join("no/such/dir/s.json");
    assert_fails(
        &run(&["fit", p(&file), "-o", p(&missing)]),
        &["cannot write output", "no/such/dir/s.json"],
    );
    let subdir = dir.join("sub");
    std::fs::create_dir(&subdir).unwrap();
    let before = listing(&dir);
    assert_fails(
        &run(&["fit", p(&file), "-o", p(&subdir)]),
        &["cannot write output", "is a directory"],
    );
    assert_eq!(listing(&dir), before);
    assert!(listing(&subdir).is_empty());
    let s = dir.join("s.json");
    assert!(run(&["fit", p(&file), "-o", p(&s)]).status.success());
    assert_fails(
        &run(&[
            "transform",
            p(&file),
            "--state",
            p(&s),
            "-o",
            p(&missing.with_extension("npy")),
        ]),
        &["cannot write output"],
    );
}

#[test]
fn transform_of_an_unfitted_state_or_across_formats() {
    let (_d, dir) = tmp();
    let file = dir.join("e.npy");
    write_npy_raw(&file, "<f8", false, &[0, 2], &[]);
    let s = dir.join("s.json");
    assert!(run(&["fit", p(&file), "-o", p(&s)]).status.success());
    let y = dir.join("y.npy");
    assert_fails(
        &run(&["transform", p(&file), "--state", p(&s), "-o", p(&y)]),
        &["s.json is not fitted"],
    );
    assert_fails(
        &run(&["transform", p(&file), "--state", p(&s), "-o", p(&dir.join("y.csv"))]),
        &["input's format"],
    );
    assert!(!y.exists());
}
