//! `fit --weights COLUMN`: per-row weights from a CSV or Parquet column,
//! bit for bit `partial_fit_weighted` of the same rows and weights; bad
//! weights are errors naming the row and the value.

mod common;

use centering::{Centering, NanPolicy};
use common::*;
use ndarray::{Array1, Array2, Axis, s};

const N: usize = 31;

fn xs(i: usize) -> f64 {
    1e3 + i as f64 / 3.0
}
fn ys(i: usize) -> f64 {
    (i * i % 17) as f64 - 4.5
}
fn ws(i: usize) -> f64 {
    match i % 4 {
        0 => 0.0,
        1 => 0.25,
        2 => 3.0,
        _ => 1.0 / 3.0,
    }
}

/// `partial_fit_weighted` of consecutive `batch`-row slices.
fn fit_weighted(est: &mut Centering<f64>, x: &Array2<f64>, w: &Array1<f64>, batch: usize) {
    let mut start = 0;
    while start < x.len_of(Axis(0)) {
        let end = (start + batch).min(x.len_of(Axis(0)));
        est.partial_fit_weighted(&x.slice(s![start..end, ..]), &w.slice(s![start..end]))
            .unwrap();
        start = end;
    }
}

fn csv_file(dir: &std::path::Path, empty_every: usize) -> std::path::PathBuf {
    let mut text = String::from("id,x,w,y\n");
    for i in 0..N {
        let y = if empty_every > 0 && i % empty_every == 1 {
            String::new()
        } else {
            ys(i).to_string()
        };
        text.push_str(&format!("{i},{},{},{y}\n", xs(i), ws(i)));
    }
    let path = dir.join("d.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

#[test]
fn csv_weights_bit_for_bit() {
    let (_d, dir) = tmp();
    let file = csv_file(&dir, 0);
    let st = dir.join("s.json");
    let w = Array1::from_shape_fn(N, ws);
    let x = Array2::from_shape_fn((N, 2), |(i, j)| if j == 0 { xs(i) } else { ys(i) });
    ok(&run(&[
        "fit",
        p(&file),
        "--columns",
        "x,y",
        "--weights",
        "w",
        "--batch-rows",
        "4",
        "-o",
        p(&st),
    ]));
    let mut est = Centering::<f64>::new();
    fit_weighted(&mut est, &x, &w, 4);
    assert_eq!(read(&st), state_json(&est));
    // Default columns: all but the weights column.
    ok(&run(&[
        "fit",
        p(&file),
        "--weights",
        "w",
        "--batch-rows",
        "4",
        "-o",
        p(&st),
    ]));
    let all = Array2::from_shape_fn((N, 3), |(i, j)| [i as f64, xs(i), ys(i)][j]);
    let mut est = Centering::<f64>::new();
    fit_weighted(&mut est, &all, &w, 4);
    assert_eq!(read(&st), state_json(&est));
    // A moving average of weighted batch means.
    ok(&run(&[
        "fit",
        p(&file),
        "--columns",
        "x,y",
        "--weights",
        "w",
        "--momentum",
        "0.9",
        "--batch-rows",
        "3",
        "-o",
        p(&st),
    ]));
    let mut est = Centering::<f64>::builder().moving_average(0.9).build().unwrap();
    fit_weighted(&mut est, &x, &w, 3);
    assert_eq!(read(&st), state_json(&est));
    // Empty cells under ignore: missing values, skipped per feature.
    let file = csv_file(&dir, 5);
    ok(&run(&[
        "fit",
        p(&file),
        "--columns",
        "x,y",
        "--weights",
        "w",
        "--nan-policy",
        "ignore",
        "--batch-rows",
        "6",
        "-o",
        p(&st),
    ]));
    let x = Array2::from_shape_fn((N, 2), |(i, j)| match j {
        0 => xs(i),
        _ if i % 5 == 1 => f64::NAN,
        _ => ys(i),
    });
    let mut est = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    fit_weighted(&mut est, &x, &w, 6);
    assert_eq!(read(&st), state_json(&est));
}

#[test]
fn bad_weights_name_row_and_value() {
    let (_d, dir) = tmp();
    let st = dir.join("s.json");
    for (cell, shown) in [
        ("-1", "\"-1\""),
        ("abc", "\"abc\""),
        ("inf", "\"inf\""),
        ("NaN", "\"NaN\""),
        ("", "an empty cell"),
    ] {
        let f = dir.join("b.csv");
        std::fs::write(&f, format!("x,w\n1,1\n2,0.5\n3,{cell}\n")).unwrap();
        assert_fails(
            &run(&["fit", p(&f), "--weights", "w", "-o", p(&st)]),
            &[&format!(
                "b.csv: line 4, weights column \"w\": {shown}: expected a finite non-negative weight"
            )],
        );
    }
    let f = dir.join("b.csv");
    std::fs::write(&f, "x,w\n1,1\n").unwrap();
    assert_fails(
        &run(&["fit", p(&f), "--columns", "x,w", "--weights", "w", "-o", p(&st)]),
        &["column \"w\" is the weights column (--weights) and cannot also be a feature"],
    );
    assert_fails(
        &run(&["fit", p(&f), "--weights", "v", "-o", p(&st)]),
        &["no column named \"v\""],
    );
    let npy = dir.join("x.npy");
    write_npy(&npy, &data::<f64>(&[3, 2], 1), false, false);
    assert_fails(
        &run(&["fit", p(&npy), "--weights", "w", "-o", p(&st)]),
        &["x.npy: --weights names a column, and a .npy file has none"],
    );
    assert_eq!(listing(&dir), vec!["b.csv", "x.npy"]);
}

/// Weights are read as f64 whatever the state's dtype: an f32 state is
/// `BatchSummary::from_array_weighted` of its f32 rows with f64 weights
/// (not `partial_fit_weighted`, whose weights would be f32), and `--help` says so.
#[test]
fn weights_are_f64_for_an_f32_state() {
    let (_d, dir) = tmp();
    let file = csv_file(&dir, 0);
    let st = dir.join("s.json");
    ok(&run(&[
        "fit",
        p(&file),
        "--columns",
        "x,y",
        "--weights",
        "w",
        "--dtype",
        "f32",
        "--batch-rows",
        "4",
        "-o",
        p(&st),
    ]));
    let x = Array2::from_shape_fn((N, 2), |(i, j)| if j == 0 { xs(i) as f32 } else { ys(i) as f32 });
    let w = Array1::from_shape_fn(N, ws);
    let mut est = Centering::<f32>::new();
    let mut start = 0;
    while start < N {
        let end = (start + 4).min(N);
        let summary = centering::BatchSummary::from_array_weighted(
            &x.slice(s![start..end, ..]),
            &w.slice(s![start..end]),
            NanPolicy::Reject,
        )
        .unwrap();
        est.partial_fit_summary(&summary).unwrap();
        start = end;
    }
    assert_eq!(read(&st), state_json(&est));
    let help = run(&["fit", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(text.contains("Weights are read as f64"), "{text}");
    assert!(text.contains("BatchSummary::from_array_weighted"), "{text}");
}

/// `--weights` with a `.npy` input is refused before any file is read.
#[test]
fn weights_with_npy_refused_up_front() {
    let (_d, dir) = tmp();
    let st = dir.join("s.json");
    let csv = dir.join("a.csv");
    std::fs::write(&csv, "x,v\n1,2\n").unwrap();
    let npy = dir.join("x.npy");
    write_npy(&npy, &data::<f64>(&[3, 2], 1), false, false);
    // The CSV file has no column "w": had it been read first, that would be the error.
    assert_fails(
        &run(&["fit", p(&csv), p(&npy), "--weights", "w", "-o", p(&st)]),
        &["x.npy: --weights names a column, and a .npy file has none"],
    );
    assert_eq!(listing(&dir), vec!["a.csv", "x.npy"]);
}

#[cfg(feature = "parquet")]
mod parquet_weights {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, RecordBatch, StringArray};
    use ndarray::ShapeBuilder;

    use super::*;

    fn write(path: &std::path::Path, w: ArrayRef) {
        let a: Vec<Option<f64>> = (0..N).map(|i| if i % 6 == 2 { None } else { Some(xs(i)) }).collect();
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("a", Arc::new(Float64Array::from(a))),
            (
                "b",
                Arc::new(Float32Array::from((0..N).map(|i| i as f32 * 0.7).collect::<Vec<_>>())),
            ),
            (
                "k",
                Arc::new(Int16Array::from(
                    (0..N).map(|i| (i * 1000) as i16 - 7000).collect::<Vec<_>>(),
                )),
            ),
            (
                "name",
                Arc::new(StringArray::from((0..N).map(|i| format!("r{i}")).collect::<Vec<_>>())),
            ),
            ("w", w),
        ];
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(10))
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut wr = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        wr.write(&batch).unwrap();
        wr.close().unwrap();
    }

    #[test]
    fn parquet_weights_bit_for_bit() {
        let (_d, dir) = tmp();
        let file = dir.join("w.parquet");
        write(&file, Arc::new(Float64Array::from((0..N).map(ws).collect::<Vec<_>>())));
        let st = dir.join("s.json");
        ok(&run(&[
            "fit",
            p(&file),
            "--columns",
            "a,b,k",
            "--weights",
            "w",
            "--nan-policy",
            "ignore",
            "--batch-rows",
            "4",
            "-o",
            p(&st),
        ]));
        let cols: Vec<f64> = (0..N)
            .map(|i| if i % 6 == 2 { f64::NAN } else { xs(i) })
            .chain((0..N).map(|i| f64::from(i as f32 * 0.7)))
            .chain((0..N).map(|i| f64::from((i * 1000) as i16 - 7000)))
            .collect();
        let x = Array2::from_shape_vec((N, 3).f(), cols).unwrap();
        let w = Array1::from_shape_fn(N, ws);
        let mut est = Centering::<f64>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .unwrap();
        fit_weighted(&mut est, &x, &w, 4);
        assert_eq!(read(&st), state_json(&est));
        // Default columns: the float columns but the weights column; nulls under reject named.
        assert_fails(
            &run(&["fit", p(&file), "--weights", "w", "-o", p(&st)]),
            &["w.parquet: row 2, column \"a\": a null"],
        );
        ok(&run(&[
            "fit",
            p(&file),
            "--columns",
            "b",
            "--weights",
            "w",
            "--dtype",
            "f64",
            "--batch-rows",
            "7",
            "-o",
            p(&st),
        ]));
        let mut est = Centering::<f64>::new();
        fit_weighted(&mut est, &x.slice(s![.., 1..2]).to_owned(), &w, 7);
        assert_eq!(read(&st), state_json(&est));
        // Integer weights.
        write(
            &file,
            Arc::new(Int32Array::from((0..N).map(|i| (i % 3) as i32).collect::<Vec<_>>())),
        );
        ok(&run(&[
            "fit",
            p(&file),
            "--columns",
            "k",
            "--weights",
            "w",
            "--batch-rows",
            "5",
            "-o",
            p(&st),
        ]));
        let mut est = Centering::<f64>::new();
        let wi = Array1::from_shape_fn(N, |i| (i % 3) as f64);
        fit_weighted(&mut est, &x.slice(s![.., 2..3]).to_owned(), &wi, 5);
        assert_eq!(read(&st), state_json(&est));
    }

    #[test]
    fn bad_parquet_weights() {
        let (_d, dir) = tmp();
        let file = dir.join("w.parquet");
        let st = dir.join("s.json");
        let neg: Vec<Option<f64>> = (0..N).map(|i| Some(if i == 13 { -2.5 } else { 1.0 })).collect();
        write(&file, Arc::new(Float64Array::from(neg)));
        assert_fails(
            &run(&[
                "fit",
                p(&file),
                "--columns",
                "b",
                "--weights",
                "w",
                "--batch-rows",
                "4",
                "-o",
                p(&st),
            ]),
            &["w.parquet: row 13, weights column \"w\": -2.5: expected a finite non-negative weight"],
        );
        let null: Vec<Option<f64>> = (0..N).map(|i| if i == 20 { None } else { Some(1.0) }).collect();
        write(&file, Arc::new(Float64Array::from(null)));
        assert_fails(
            &run(&["fit", p(&file), "--columns", "b", "--weights", "w", "-o", p(&st)]),
            &["row 20, weights column \"w\": a null"],
        );
        assert_fails(
            &run(&["fit", p(&file), "--columns", "b", "--weights", "name", "-o", p(&st)]),
            &["weights column \"name\" is Utf8"],
        );
        assert_fails(
            &run(&["fit", p(&file), "--columns", "b,w", "--weights", "w", "-o", p(&st)]),
            &["cannot also be a feature"],
        );
        assert!(!st.exists());
    }

    /// Int64/UInt64 columns read as float64 (under --weights) are exact within 2^53.
    #[test]
    fn int64_weights_and_features_within_2_pow_53() {
        use arrow_array::{Int64Array, UInt64Array};
        let (_d, dir) = tmp();
        let file = dir.join("w.parquet");
        let st = dir.join("s.json");
        let big = |i: usize| ((i % 3) as i64) << 40;
        write(&file, Arc::new(Int64Array::from((0..N).map(big).collect::<Vec<_>>())));
        ok(&run(&[
            "fit",
            p(&file),
            "--columns",
            "b",
            "--weights",
            "w",
            "--dtype",
            "f64",
            "--batch-rows",
            "5",
            "-o",
            p(&st),
        ]));
        let xb = Array2::from_shape_fn((N, 1), |(i, _)| f64::from(i as f32 * 0.7));
        let w = Array1::from_shape_fn(N, |i| big(i) as f64);
        let mut est = Centering::<f64>::new();
        fit_weighted(&mut est, &xb, &w, 5);
        assert_eq!(read(&st), state_json(&est));
        // 2^53 exactly is fine; UInt64 too.
        let edge = |i: usize| if i == 17 { 1u64 << 53 } else { i as u64 };
        write(&file, Arc::new(UInt64Array::from((0..N).map(edge).collect::<Vec<_>>())));
        ok(&run(&[
            "fit",
            p(&file),
            "--columns",
            "b",
            "--weights",
            "w",
            "--dtype",
            "f64",
            "--batch-rows",
            "5",
            "-o",
            p(&st),
        ]));
        let w = Array1::from_shape_fn(N, |i| edge(i) as f64);
        let mut est = Centering::<f64>::new();
        fit_weighted(&mut est, &xb, &w, 5);
        assert_eq!(read(&st), state_json(&est));
        // Beyond 2^53: an error about weights, naming the row.
        write(
            &file,
            Arc::new(Int64Array::from(
                (0..N)
                    .map(|i| if i == 12 { (1 << 53) + 1 } else { 1 })
                    .collect::<Vec<_>>(),
            )),
        );
        assert_fails(
            &run(&["fit", p(&file), "--columns", "b", "--weights", "w", "-o", p(&st)]),
            &[
                "w.parquet: row 12, weights column \"w\": 9007199254740993 is beyond 2^53",
                "weights are read as float64",
            ],
        );
        // An Int64 feature under --weights is read as float64 too.
        let file2 = dir.join("f.parquet");
        let feat = |i: usize| (i as i64 - 9) << 45;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("k", Arc::new(Int64Array::from((0..N).map(feat).collect::<Vec<_>>()))),
            ("w", Arc::new(Float64Array::from((0..N).map(ws).collect::<Vec<_>>()))),
        ];
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let f = std::fs::File::create(&file2).unwrap();
        let mut wr = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        wr.write(&batch).unwrap();
        wr.close().unwrap();
        ok(&run(&[
            "fit",
            p(&file2),
            "--columns",
            "k",
            "--weights",
            "w",
            "--batch-rows",
            "6",
            "-o",
            p(&st),
        ]));
        let xk = Array2::from_shape_fn((N, 1), |(i, _)| feat(i) as f64);
        let mut est = Centering::<f64>::new();
        fit_weighted(&mut est, &xk, &Array1::from_shape_fn(N, ws), 6);
        assert_eq!(read(&st), state_json(&est));
    }
}
