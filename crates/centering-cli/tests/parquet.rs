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
    let all = read_parquet(&y);
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
/// Every record batch of the Parquet file `path`, joined into one.
fn read_parquet(path: &std::path::Path) -> RecordBatch {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The bits of the Float64 column `name` of `batch`.
fn f64_bits(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let col = batch.column_by_name(name).unwrap();
    let values = col.as_any().downcast_ref::<Float64Array>().unwrap().values();
    values.iter().map(|v| v.to_bits()).collect()
}

// ---- integer and Float16 columns -------------------------------------------

use arrow_array::{
    Float16Array, Int8Array, Int16Array, Int32Array, Int64Array, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use half::f16;

const M: usize = 41;

/// Writes `cols` as one Parquet file (row groups of 16 rows).
fn write_cols(path: &std::path::Path, cols: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(16))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn ints<T>(f: impl Fn(usize) -> T) -> Vec<T> {
    (0..M).map(f).collect()
}

/// `partial_fit_input` of consecutive `batch`-row slices of `rows`.
fn fit_input_batches<T: centering::Input, F: centering::Element>(
    est: &mut Centering<F>,
    rows: ndarray::ArrayView2<'_, T>,
    batch: usize,
) {
    let n = rows.nrows();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        est.partial_fit_input(&rows.slice(ndarray::s![start..end, ..])).unwrap();
        start = end;
    }
}

/// The `(M, D)` column-major array of `cols`.
fn fortran<T: Clone>(cols: &[Vec<T>]) -> Array2<T> {
    let flat: Vec<T> = cols.iter().flatten().cloned().collect();
    Array2::from_shape_vec((M, cols.len()).f(), flat).unwrap()
}

fn fit_ok(args: &[&str]) {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
}

fn u8s() -> Vec<u8> {
    ints(|i| (i * 37 % 256) as u8)
}
fn i8s() -> Vec<i8> {
    ints(|i| (i as i64 * 53 % 256 - 128) as i8)
}
fn u16s() -> Vec<u16> {
    ints(|i| (i * 40_503 % 65_536) as u16)
}
fn i16s() -> Vec<i16> {
    ints(|i| (i as i64 * 40_503 % 65_536 - 32_768) as i16)
}
fn u32s() -> Vec<u32> {
    ints(|i| u32::MAX - (i as u32) * 977)
}
fn i32s() -> Vec<i32> {
    ints(|i| {
        if i % 2 == 0 {
            i32::MAX - i as i32
        } else {
            i32::MIN + 3 * i as i32
        }
    })
}
/// Int64 values beyond 2^53 whose large parts cancel (±2^60 + k).
fn wide_i64s() -> Vec<i64> {
    ints(|i| {
        if i % 2 == 0 {
            (1 << 60) + i as i64
        } else {
            -(1 << 60) + 3 * i as i64
        }
    })
}
fn halves() -> Vec<f16> {
    ints(|i| f16::from_f64(100.0 + i as f64 / 7.0))
}

fn int_file(path: &std::path::Path) {
    write_cols(
        path,
        vec![
            ("u8", Arc::new(UInt8Array::from(u8s()))),
            ("i8", Arc::new(Int8Array::from(i8s()))),
            ("u16", Arc::new(UInt16Array::from(u16s()))),
            ("i16", Arc::new(Int16Array::from(i16s()))),
            ("u32", Arc::new(UInt32Array::from(u32s()))),
            ("i32", Arc::new(Int32Array::from(i32s()))),
            ("i64", Arc::new(Int64Array::from(ints(|i| i32s()[i] as i64)))),
            ("u64", Arc::new(UInt64Array::from(ints(|i| u32s()[i] as u64)))),
            ("i64w", Arc::new(Int64Array::from(wide_i64s()))),
            ("f16", Arc::new(Float16Array::from(halves()))),
            ("f32", Arc::new(Float32Array::from(ints(|i| i as f32 * 0.3)))),
            ("f64", Arc::new(Float64Array::from(ints(|i| i as f64 / 3.0)))),
        ],
    );
}

/// Fits `columns` of the integer file and compares with `expected`'s state.
fn check_fit<F: centering::Element>(file: &std::path::Path, columns: &str, extra: &[&str], expected: &Centering<F>)
where
    Centering<F>: serde::Serialize,
{
    let s = file.with_extension("json");
    let mut args = vec!["fit", p(file), "--columns", columns, "--batch-rows", "6", "-o", p(&s)];
    args.extend_from_slice(extra);
    fit_ok(&args);
    assert_eq!(read(&s), state_json(expected), "columns {columns}");
}

#[test]
fn integer_columns_fit_exactly_as_the_arrays_do() {
    let (_d, dir) = tmp();
    let file = dir.join("ints.parquet");
    int_file(&file);
    macro_rules! one_type {
        ($cols:expr, $($v:expr),+) => {{
            let mut est = Centering::<f64>::new();
            fit_input_batches(&mut est, fortran(&[$($v),+]).view(), 6);
            check_fit(&file, $cols, &[], &est);
        }};
    }
    one_type!("u8", u8s());
    one_type!("i8", i8s());
    one_type!("u16,u16", u16s(), u16s());
    one_type!("i16", i16s());
    one_type!("u32", u32s());
    one_type!("i32", i32s());
    // Int64/UInt64: exactly as int64/uint64 arrays (i64 with i32: int64).
    one_type!(
        "i64,i32",
        ints(|i| i64::from(i32s()[i])),
        ints(|i| i64::from(i32s()[i]))
    );
    one_type!("u64", ints(|i| u64::from(u32s()[i])));
    one_type!("i64w", wide_i64s());
    // The exactly rounded mean: of the f64s next to sum / M (integers, being
    // beyond 2^53), the one whose M-fold is nearest to the exact sum.
    let sum = wide_i64s().iter().map(|&v| i128::from(v)).sum::<i128>();
    let near = (sum / M as i128) as f64;
    let exact_wide = [near.next_down(), near, near.next_up()]
        .into_iter()
        .min_by_key(|&f| (f as i128 * M as i128 - sum).abs())
        .unwrap();
    assert!(exact_wide > 9.1e15);
    let any: centering::AnyCentering = serde_json::from_str(&read(&file.with_extension("json"))).unwrap();
    assert_eq!(any.mean().unwrap()[0].to_bits(), exact_wide.to_bits());
    one_type!("u64", u32s());
    // The exactly rounded mean: the sum of 41 values < 2^53 is exact in f64.
    let exact = u32s().iter().map(|&v| v as f64).sum::<f64>() / M as f64;
    let any: centering::AnyCentering = serde_json::from_str(&read(&file.with_extension("json"))).unwrap();
    assert_eq!(any.mean().unwrap()[0].to_bits(), exact.to_bits());
    // An f32 state: integers fit it too (the mean rounded once).
    let mut est = Centering::<f32>::new();
    fit_input_batches(&mut est, fortran(&[i16s()]).view(), 6);
    check_fit(&file, "i16", &["--dtype", "f32"], &est);
}

#[test]
fn mixed_column_types_widen_to_one_exactly() {
    let (_d, dir) = tmp();
    let file = dir.join("ints.parquet");
    int_file(&file);
    let widen = |v: Vec<u8>| -> Vec<i16> { v.into_iter().map(i16::from).collect() };
    // u8 with i8: int16.
    let mut est = Centering::<f64>::new();
    let i8_as_i16: Vec<i16> = i8s().into_iter().map(i16::from).collect();
    fit_input_batches(&mut est, fortran(&[widen(u8s()), i8_as_i16]).view(), 6);
    check_fit(&file, "u8,i8", &[], &est);
    // u16 with i16: int32; Int64 joins as int32.
    let mut est = Centering::<f64>::new();
    let cols: Vec<Vec<i32>> = vec![
        u16s().into_iter().map(i32::from).collect(),
        i16s().into_iter().map(i32::from).collect(),
        i32s(),
    ];
    fit_input_batches(&mut est, fortran(&cols).view(), 6);
    check_fit(&file, "u16,i16,i64", &[], &est);
    // u8 with u32: uint32.
    let mut est = Centering::<f64>::new();
    let cols: Vec<Vec<u32>> = vec![u8s().into_iter().map(u32::from).collect(), u32s()];
    fit_input_batches(&mut est, fortran(&cols).view(), 6);
    check_fit(&file, "u8,u32", &[], &est);
    // uint32 with a signed type, and integers with floats: float64.
    for columns in ["u32,i8", "i32,f32", "u8,f16,f64"] {
        let cols: Vec<Vec<f64>> = columns
            .split(',')
            .map(|c| match c {
                "u32" => u32s().into_iter().map(f64::from).collect(),
                "i8" => i8s().into_iter().map(f64::from).collect(),
                "i32" => i32s().into_iter().map(f64::from).collect(),
                "u8" => u8s().into_iter().map(f64::from).collect(),
                "f16" => halves().into_iter().map(f64::from).collect(),
                "f32" => ints(|i| f64::from(i as f32 * 0.3)),
                _ => ints(|i| i as f64 / 3.0),
            })
            .collect();
        let mut est = Centering::<f64>::new();
        fit_batches(&mut est, fortran(&cols).view(), 6);
        check_fit(&file, columns, &[], &est);
    }
    // Float16 with Float32: float32, an f32 state by default.
    let mut est = Centering::<f32>::new();
    let cols: Vec<Vec<f32>> = vec![halves().into_iter().map(f32::from).collect(), ints(|i| i as f32 * 0.3)];
    fit_batches(&mut est, fortran(&cols).view(), 6);
    check_fit(&file, "f16,f32", &[], &est);
    // Float64 is still never narrowed into an f32 state.
    let s = dir.join("s.json");
    assert_fails(
        &run(&["fit", p(&file), "--columns", "u8,f64", "--dtype", "f32", "-o", p(&s)]),
        &["column \"f64\" is Float64 and the state is f32"],
    );
}

#[test]
fn float16_columns_with_nulls() {
    let (_d, dir) = tmp();
    let file = dir.join("h.parquet");
    let vals: Vec<Option<f16>> = ints(|i| if i % 5 == 2 { None } else { Some(halves()[i]) });
    let bytes: Vec<Option<u8>> = ints(|i| if i % 3 == 0 { None } else { Some(u8s()[i]) });
    write_cols(
        &file,
        vec![
            ("h", Arc::new(Float16Array::from(vals.clone()))),
            ("b", Arc::new(UInt8Array::from(bytes.clone()))),
        ],
    );
    // Float16 alone: an f32 state, bit for bit partial_fit_input of f16 with NaN at the nulls.
    let mut est = Centering::<f32>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    let h: Vec<f16> = vals.iter().map(|v| v.unwrap_or(f16::NAN)).collect();
    fit_input_batches(&mut est, fortran(std::slice::from_ref(&h)).view(), 6);
    check_fit(&file, "h", &["--nan-policy", "ignore"], &est);
    // And into an f64 state.
    let mut est = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    fit_input_batches(&mut est, fortran(&[h]).view(), 6);
    check_fit(&file, "h", &["--nan-policy", "ignore", "--dtype", "f64"], &est);
    // A uint8 column with nulls: the exactly rounded mean of the values present.
    let s = dir.join("b.json");
    fit_ok(&[
        "fit",
        p(&file),
        "--columns",
        "b",
        "--nan-policy",
        "ignore",
        "--batch-rows",
        "7",
        "-o",
        p(&s),
    ]);
    let present: Vec<f64> = bytes.iter().flatten().map(|&v| f64::from(v)).collect();
    let any: centering::AnyCentering = serde_json::from_str(&read(&s)).unwrap();
    let exact = present.iter().sum::<f64>() / present.len() as f64;
    assert_eq!(any.mean().unwrap()[0].to_bits(), exact.to_bits());
    assert_eq!(any.counts().unwrap()[0], present.len() as f64);
    // Under reject, the first null is named.
    assert_fails(
        &run(&["fit", p(&file), "--columns", "b", "-o", p(&s)]),
        &["h.parquet: row 0, column \"b\": a null"],
    );
}

#[test]
fn wide_int64_values_and_default_columns() {
    let (_d, dir) = tmp();
    let file = dir.join("w.parquet");
    let big: Vec<Option<i64>> = ints(|i| match i {
        7 => None,
        30 => Some(1 << 40),
        _ => Some(i as i64),
    });
    write_cols(
        &file,
        vec![
            ("id", Arc::new(Int64Array::from(big.clone()))),
            (
                "u",
                Arc::new(UInt64Array::from(ints(|i| if i == 9 { u64::MAX } else { i as u64 }))),
            ),
            ("x", Arc::new(Float64Array::from(ints(|i| i as f64)))),
        ],
    );
    let s = dir.join("s.json");
    // On their own, 64-bit columns are summed exactly, beyond 32 and 53 bits.
    fit_ok(&[
        "fit",
        p(&file),
        "--columns",
        "id",
        "--nan-policy",
        "ignore",
        "--batch-rows",
        "6",
        "-o",
        p(&s),
    ]);
    let any: centering::AnyCentering = serde_json::from_str(&read(&s)).unwrap();
    // Every partial sum is below 2^53: the f64 quotient is the exactly rounded mean.
    let sum: i64 = big.iter().flatten().sum();
    assert_eq!(
        any.mean().unwrap()[0].to_bits(),
        (sum as f64 / (M - 1) as f64).to_bits()
    );
    assert_eq!(any.counts().unwrap()[0], (M - 1) as f64);
    let mut est = Centering::<f64>::new();
    let u: Vec<u64> = ints(|i| if i == 9 { u64::MAX } else { i as u64 });
    fit_input_batches(&mut est, fortran(&[u]).view(), 6);
    check_fit(&file, "u", &[], &est);
    // UInt64 with a float or a signed column is read as float64: exact within 2^53.
    for columns in ["u,x", "id,u"] {
        assert_fails(
            &run(&[
                "fit",
                p(&file),
                "--columns",
                columns,
                "--nan-policy",
                "ignore",
                "-o",
                p(&s),
            ]),
            &[
                "w.parquet: row 9, column \"u\": 18446744073709551615 is beyond ±2^53",
                "fit it on its own",
            ],
        );
    }
    std::fs::remove_file(&s).unwrap();
    // Mixed with a float column, Int64 is read as float64: exact within ±2^53.
    let mut est = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    let id = |i: usize| match i {
        7 => f64::NAN,
        30 => (1u64 << 40) as f64,
        _ => i as f64,
    };
    let rows = Array2::from_shape_fn((M, 2), |(i, j)| if j == 0 { id(i) } else { i as f64 });
    fit_batches(&mut est, rows.view(), 6);
    check_fit(&file, "id,x", &["--nan-policy", "ignore"], &est);
    let beyond = dir.join("b.parquet");
    write_cols(
        &beyond,
        vec![
            (
                "id",
                Arc::new(Int64Array::from(ints(
                    |i| if i == 11 { -(1 << 53) - 1 } else { i as i64 },
                ))),
            ),
            ("x", Arc::new(Float64Array::from(ints(|i| i as f64)))),
        ],
    );
    assert_fails(
        &run(&["fit", p(&beyond), "--columns", "id,x", "-o", p(&s)]),
        &[
            "b.parquet: row 11, column \"id\": -9007199254740993 is beyond ±2^53",
            "read as float64",
        ],
    );
    assert!(!s.exists());
    // Integer columns are fitted only when named: the default is the float column.
    fit_ok(&["fit", p(&file), "-o", p(&s)]);
    let any: centering::AnyCentering = serde_json::from_str(&read(&s)).unwrap();
    assert_eq!(any.n_features(), Some(1));
    let only_ints = dir.join("i.parquet");
    write_cols(&only_ints, vec![("n", Arc::new(Int32Array::from(i32s())))]);
    assert_fails(
        &run(&["fit", p(&only_ints), "-o", p(&s)]),
        &[
            "no Float16, Float32 or Float64 column",
            "integer columns are fitted when named",
        ],
    );
}

#[test]
fn transform_integer_columns_into_the_state_type() {
    let (_d, dir) = tmp();
    let file = dir.join("ints.parquet");
    int_file(&file);
    let s = dir.join("s.json");
    fit_ok(&["fit", p(&file), "--columns", "u8,i16", "-o", p(&s)]);
    let y = dir.join("y.parquet");
    fit_ok(&[
        "transform",
        p(&file),
        "--columns",
        "u8,i16",
        "--state",
        p(&s),
        "--batch-rows",
        "10",
        "-o",
        p(&y),
    ]);
    let est: Centering<f64> = serde_json::from_str(&read(&s)).unwrap();
    let x = fortran(&[u8s().into_iter().map(i16::from).collect::<Vec<i16>>(), i16s()]);
    let expected = est.transform_input(&x).unwrap();
    let all = read_parquet(&y);
    for (j, name) in ["u8", "i16"].iter().enumerate() {
        let want: Vec<u64> = expected.column(j).iter().map(|v| v.to_bits()).collect();
        assert_eq!(f64_bits(&all, name), want, "{name}");
    }
    // Int64 beyond 2^53: transformed as the library transforms an i64 array.
    fit_ok(&["fit", p(&file), "--columns", "i64w", "-o", p(&s)]);
    let w = dir.join("w.parquet");
    fit_ok(&[
        "transform",
        p(&file),
        "--columns",
        "i64w",
        "--state",
        p(&s),
        "-o",
        p(&w),
    ]);
    let est: Centering<f64> = serde_json::from_str(&read(&s)).unwrap();
    let expected = est.transform_input(&fortran(&[wide_i64s()])).unwrap();
    let want: Vec<u64> = expected.iter().map(|v| v.to_bits()).collect();
    assert_eq!(f64_bits(&read_parquet(&w), "i64w"), want);
    // The columns not fitted are kept with their types.
    assert_eq!(
        all.column_by_name("i32").unwrap().data_type(),
        &arrow_schema::DataType::Int32
    );
}

#[test]
fn format_parquet_for_a_file_without_the_extension() {
    let (_d, dir) = tmp();
    let file = dir.join("x.parquet");
    write_file(&file, 5);
    let dat = dir.join("x.dat");
    std::fs::copy(&file, &dat).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    fit_ok(&["fit", p(&file), "--columns", "c", "-o", p(&a)]);
    fit_ok(&["fit", p(&dat), "--format", "parquet", "--columns", "c", "-o", p(&b)]);
    assert_eq!(read(&a), read(&b));
    let y = dir.join("y.dat");
    fit_ok(&[
        "transform",
        p(&dat),
        "--format",
        "parquet",
        "--columns",
        "c",
        "--state",
        p(&a),
        "-o",
        p(&y),
    ]);
    // The same output, byte for byte, as the transform of x.parquet.
    let y_parquet = dir.join("y.parquet");
    fit_ok(&[
        "transform",
        p(&file),
        "--columns",
        "c",
        "--state",
        p(&a),
        "-o",
        p(&y_parquet),
    ]);
    assert_eq!(std::fs::read(&y).unwrap(), std::fs::read(&y_parquet).unwrap());
}
