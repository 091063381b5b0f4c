//! Parquet: record batches of --batch-rows rows, nulls as missing values,
//! bit for bit against `partial_fit` of the same rows as arrays (Fortran
//! order, NaN at the nulls).
#![cfg(feature = "parquet")]

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray};
use centering::{Centering, NanPolicy};
use common::*;
use ndarray::{Array2, ShapeBuilder};

const N: usize = 23;

fn a_vals() -> Vec<Option<f64>> {
    (0..N)
        .map(|i| if i % 7 == 3 { None } else { Some(1e3 + i as f64 / 3.0) })
        .collect()
}
fn b_vals() -> Vec<f32> {
    (0..N).map(|i| 0.1 + i as f32 * 0.7).collect()
}
fn c_vals() -> Vec<f64> {
    (0..N).map(|i| -5.0 + (i * i) as f64 / 11.0).collect()
}

/// A file with a nullable f64 column, an f32 column, a string and an f64 column,
/// in row groups of `group` rows.
fn write_file(path: &std::path::Path, group: usize) {
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("a", Arc::new(Float64Array::from(a_vals()))),
        ("b", Arc::new(Float32Array::from(b_vals()))),
        (
            "name",
            Arc::new(StringArray::from((0..N).map(|i| format!("r{i}")).collect::<Vec<_>>())),
        ),
        ("c", Arc::new(Float64Array::from(c_vals()))),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn columns_f64(cols: &[Vec<f64>]) -> Array2<f64> {
    let flat: Vec<f64> = cols.iter().flatten().copied().collect();
    Array2::from_shape_vec((N, cols.len()).f(), flat).unwrap()
}

#[test]
fn fit_bit_for_bit_with_nulls_and_widening() {
    for group in [1000, 5] {
        let (_d, dir) = tmp();
        let file = dir.join("x.parquet");
        write_file(&file, group);
        // Ignore: nulls are NaN; b widens to f64.
        let s = dir.join("s.json");
        let o = run(&[
            "fit",
            p(&file),
            "--columns",
            "a,b",
            "--nan-policy",
            "ignore",
            "--batch-rows",
            "4",
            "-o",
            p(&s),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let a: Vec<f64> = a_vals().into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        let b: Vec<f64> = b_vals().into_iter().map(f64::from).collect();
        let mut est = Centering::<f64>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .unwrap();
        fit_batches(&mut est, columns_f64(&[a, b]).view(), 4);
        assert_eq!(read(&s), state_json(&est), "row groups of {group}");
        // Reject, no nulls, default columns would include `a`: choose c.
        let o = run(&["fit", p(&file), "--columns", "c", "--batch-rows", "6", "-o", p(&s)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut est = Centering::<f64>::new();
        fit_batches(&mut est, columns_f64(&[c_vals()]).view(), 6);
        assert_eq!(read(&s), state_json(&est));
    }
}

#[test]
fn f32_columns_give_an_f32_state() {
    let (_d, dir) = tmp();
    let file = dir.join("x.parquet");
    write_file(&file, 1000);
    let s = dir.join("s.json");
    let o = run(&["fit", p(&file), "--columns", "b", "-o", p(&s)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut est = Centering::<f32>::new();
    let x = Array2::from_shape_vec((N, 1).f(), b_vals()).unwrap();
    est.partial_fit(&x).unwrap();
    assert_eq!(read(&s), state_json(&est));
}

#[test]
fn nulls_under_reject_and_wrong_columns() {
    let (_d, dir) = tmp();
    let file = dir.join("x.parquet");
    write_file(&file, 1000);
    let s = dir.join("s.json");
    assert_fails(
        &run(&["fit", p(&file), "-o", p(&s)]),
        &["x.parquet: row 3, column \"a\": a null"],
    );
    assert_fails(
        &run(&["fit", p(&file), "--columns", "name", "-o", p(&s)]),
        &["column \"name\" is Utf8"],
    );
    assert_fails(
        &run(&["fit", p(&file), "--columns", "zz", "-o", p(&s)]),
        &["no column named \"zz\""],
    );
    assert_fails(
        &run(&["fit", p(&file), "--columns", "c", "--dtype", "f32", "-o", p(&s)]),
        &["not narrowed"],
    );
    let junk = dir.join("junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    assert_fails(
        &run(&["fit", p(&junk), "-o", p(&s)]),
        &["junk.parquet is not a valid Parquet file"],
    );
    assert!(!s.exists());
}

#[test]
fn transform_keeps_other_columns_and_nulls() {
    let (_d, dir) = tmp();
    let file = dir.join("x.parquet");
    write_file(&file, 5);
    let s = dir.join("s.json");
    assert!(
        run(&[
            "fit",
            p(&file),
            "--columns",
            "a,c",
            "--nan-policy",
            "ignore",
            "-o",
            p(&s)
        ])
        .status
        .success()
    );
    let y = dir.join("y.parquet");
    let o = run(&[
        "transform",
        p(&file),
        "--columns",
        "a,c",
        "--state",
        p(&s),
        "--batch-rows",
        "4",
        "-o",
        p(&y),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let any: centering::AnyCentering = serde_json::from_str(&read(&s)).unwrap();
    let m = any.mean().unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&y).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let all = arrow_select_concat(&batches);
    let a = all
        .column_by_name("a")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    for (i, v) in a_vals().iter().enumerate() {
        match v {
            None => assert!(arrow_array::Array::is_null(a, i)),
            Some(v) => assert_eq!(a.value(i).to_bits(), (v - m[0]).to_bits()),
        }
    }
    let c = all
        .column_by_name("c")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    for (i, v) in c_vals().iter().enumerate() {
        assert_eq!(c.value(i).to_bits(), (v - m[1]).to_bits());
    }
    let b = all
        .column_by_name("b")
        .unwrap()
        .as_any()
        .downcast_ref::<Float32Array>()
        .unwrap();
    assert_eq!(b.values().to_vec(), b_vals());
    let name = all
        .column_by_name("name")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(name.value(22), "r22");
}

/// The batches as one (tests only: small).
fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}
