//! Every reader against the in-memory API, bit for bit: the state file the
//! CLI writes is byte for byte the library's serialisation of
//! `partial_fit` over the same batches, and `transform` writes exactly
//! `Centering::transform` of the array.

mod common;

use centering::{Centering, EmaStart, NanPolicy};
use common::*;
use ndarray::ArrayD;

fn fit_npy_case<F: Elem>(
    shape: &[usize],
    fortran: bool,
    big_endian: bool,
    batch: usize,
    extra: &[&str],
    mut est: Centering<F>,
) where
    Centering<F>: serde::Serialize,
{
    let (_d, dir) = tmp();
    let x: ArrayD<F> = data(shape, shape.iter().product::<usize>() as u64);
    let file = dir.join("x.npy");
    write_npy(&file, &x, fortran, big_endian);
    let out = dir.join("state.json");
    let b = batch.to_string();
    let mut args = vec!["fit", p(&file), "-o", p(&out), "--batch-rows", &b];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stderr.is_empty(),
        "no progress output when stderr is not a terminal: {}",
        stderr(&o)
    );
    fit_batches(&mut est, rows_of(&x, fortran).view(), batch);
    assert_eq!(
        read(&out),
        state_json(&est),
        "shape {shape:?} fortran {fortran} batch {batch}"
    );
}

#[test]
fn npy_c_order_f64_every_mode() {
    let shape = [37, 3];
    fit_npy_case::<f64>(&shape, false, false, 5, &[], Centering::new());
    fit_npy_case::<f64>(&shape, false, false, 37, &[], Centering::new());
    fit_npy_case::<f64>(&shape, false, false, 100, &[], Centering::new());
    let keras = Centering::<f64>::builder()
        .moving_average(0.9)
        .start(EmaStart::Zero)
        .build()
        .unwrap();
    fit_npy_case::<f64>(
        &shape,
        false,
        false,
        4,
        &["--momentum", "0.9", "--start", "zero"],
        keras,
    );
    let torch = Centering::<f64>::builder().torch_momentum(0.1).build().unwrap();
    fit_npy_case::<f64>(&shape, false, false, 6, &["--torch-momentum", "0.1"], torch);
    let first = Centering::<f64>::builder()
        .moving_average(0.5)
        .start(EmaStart::FirstBatch)
        .build()
        .unwrap();
    fit_npy_case::<f64>(
        &shape,
        false,
        false,
        6,
        &["--momentum", "0.5", "--start", "first-batch"],
        first,
    );
    let avg = Centering::<f64>::builder().batch_average().build().unwrap();
    fit_npy_case::<f64>(&shape, false, false, 7, &["--batch-average"], avg);
}

#[test]
fn npy_fortran_order_and_nd() {
    fit_npy_case::<f64>(&[29, 4], true, false, 6, &[], Centering::new());
    fit_npy_case::<f32>(&[4, 5, 3], true, false, 7, &[], Centering::new());
    fit_npy_case::<f32>(&[4, 5, 3], false, false, 7, &[], Centering::new());
    fit_npy_case::<f64>(&[2, 3, 4, 2], true, false, 5, &[], Centering::new());
    let keras = Centering::<f32>::builder().keras(0.99).build().unwrap();
    fit_npy_case::<f32>(
        &[6, 2, 3],
        true,
        false,
        4,
        &["--momentum", "0.99", "--start", "zero"],
        keras,
    );
    // One sample (1-D) and one feature.
    fit_npy_case::<f64>(&[5], false, false, 3, &[], Centering::new());
    fit_npy_case::<f64>(&[17, 1], true, false, 3, &[], Centering::new());
}

#[test]
fn npy_big_endian() {
    fit_npy_case::<f64>(&[11, 3], false, true, 4, &[], Centering::new());
    fit_npy_case::<f32>(&[11, 3], true, true, 4, &[], Centering::new());
}

#[test]
fn npy_f32_file_into_an_f64_state_widens_exactly() {
    let (_d, dir) = tmp();
    let x: ArrayD<f32> = data(&[20, 3], 3);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let out = dir.join("s.json");
    let o = run(&["fit", p(&file), "-o", p(&out), "--dtype", "f64", "--batch-rows", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The in-memory API for an f32 array into an f64 state: `partial_fit_input`.
    let mut est = Centering::<f64>::new();
    let rows = rows_of(&x, false);
    for start in (0..20).step_by(6) {
        est.partial_fit_input(&rows.slice(ndarray::s![start..(start + 6).min(20), ..]))
            .unwrap();
    }
    assert_eq!(read(&out), state_json(&est));
}

fn fit_int_case<T: IntElem, F: centering::Element>(
    shape: &[usize],
    fortran: bool,
    big_endian: bool,
    dtype: &str,
    batch: usize,
) where
    Centering<F>: serde::Serialize,
{
    let (_d, dir) = tmp();
    let x: ArrayD<T> = int_data(shape, 7);
    let file = dir.join("x.npy");
    write_int_npy(&file, &x, fortran, big_endian);
    let out = dir.join("s.json");
    let b = batch.to_string();
    let o = run(&["fit", p(&file), "--dtype", dtype, "--batch-rows", &b, "-o", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = int_rows_of(&x, fortran);
    let n = rows.nrows();
    let mut est = Centering::<F>::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        est.partial_fit_input(&rows.slice(ndarray::s![start..end, ..])).unwrap();
        start = end;
    }
    assert_eq!(read(&out), state_json(&est), "{} {shape:?} fortran {fortran}", T::DESCR);
}

#[test]
fn npy_integer_files_are_summed_exactly() {
    // u8 images (N, H, W, C), C and Fortran order, into f32 and f64 states.
    fit_int_case::<u8, f32>(&[6, 4, 5, 3], false, false, "f32", 7);
    fit_int_case::<u8, f64>(&[6, 4, 5, 3], true, false, "f64", 7);
    fit_int_case::<i8, f32>(&[30, 2], false, false, "f32", 8);
    fit_int_case::<u16, f64>(&[30, 2], true, true, "f64", 8);
    fit_int_case::<i16, f32>(&[30, 3], false, true, "f32", 100);
    fit_int_case::<u32, f64>(&[17, 2], false, false, "f64", 5);
    fit_int_case::<i32, f64>(&[17, 2], true, true, "f64", 5);
    // numpy's default integer: 64-bit values over their whole range, exactly.
    fit_int_case::<i64, f64>(&[17, 3], false, false, "f64", 5);
    fit_int_case::<i64, f32>(&[17, 3], true, true, "f32", 4);
    fit_int_case::<u64, f64>(&[6, 2, 2], true, false, "f64", 5);
    fit_int_case::<u64, f64>(&[6, 2, 2], false, true, "f64", 7);
}

#[test]
fn transform_of_an_integer_file_writes_the_state_dtype() {
    transform_int_case::<u8>(&[4, 5, 3]);
    // 64-bit values beyond 2^53: subtracted as the library subtracts them.
    transform_int_case::<i64>(&[9, 2]);
    transform_int_case::<u64>(&[3, 3, 2]);
}

fn transform_int_case<T: IntElem>(shape: &[usize]) {
    let (_d, dir) = tmp();
    let x: ArrayD<T> = int_data(shape, 2);
    let file = dir.join("img.npy");
    write_int_npy(&file, &x, false, false);
    let s = dir.join("s.json");
    let o = run(&["fit", p(&file), "-o", p(&s)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let y = dir.join("y.npy");
    let o = run(&["transform", p(&file), "--state", p(&s), "-o", p(&y)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Integer files default to an f64 state, so the output is f64.
    let got: ArrayD<f64> = ndarray_npy::read_npy(&y).expect("a valid f64 .npy");
    let mut est = Centering::<f64>::new();
    est.partial_fit_input(&x).unwrap();
    assert_eq!(read(&s), state_json(&est));
    let want = est.transform_input(&x).unwrap();
    assert!(got.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(got.shape(), want.shape());
}

#[test]
fn default_batch_is_the_whole_small_file() {
    let (_d, dir) = tmp();
    let x: ArrayD<f64> = data(&[50, 4], 9);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let out = dir.join("s.json");
    let o = run(&["fit", p(&file), "-o", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut est = Centering::<f64>::new();
    est.partial_fit(&x).unwrap();
    assert_eq!(read(&out), state_json(&est));
}

#[test]
fn several_files_and_resume_continue_one_stream() {
    let (_d, dir) = tmp();
    let a: ArrayD<f64> = data(&[13, 2], 1);
    let b: ArrayD<f64> = data(&[9, 2], 2);
    let (fa, fb) = (dir.join("a.npy"), dir.join("b.npy"));
    write_npy(&fa, &a, false, false);
    write_npy(&fb, &b, true, false);
    let both = dir.join("both.json");
    let args = ["--momentum", "0.8", "--batch-rows", "4"];
    let o = run(&[&["fit", p(&fa), p(&fb), "-o", p(&both)][..], &args[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let mut est = Centering::<f64>::builder().moving_average(0.8).build().unwrap();
    fit_batches(&mut est, rows_of(&a, false).view(), 4);
    fit_batches(&mut est, rows_of(&b, true).view(), 4);
    assert_eq!(read(&both), state_json(&est));
    // The same in two runs: fit a, then resume with b into the same file.
    let s = dir.join("s.json");
    assert!(
        run(&[&["fit", p(&fa), "-o", p(&s)][..], &args[..]].concat())
            .status
            .success()
    );
    let o = run(&["fit", p(&fb), "--resume", p(&s), "-o", p(&s), "--batch-rows", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&s), read(&both));
}

#[test]
fn csv_columns_and_missing_values() {
    let (_d, dir) = tmp();
    let file = dir.join("x.csv");
    std::fs::write(
        &file,
        "id,a,label,b\n1,0.1,x,10\n2, 0.2 ,y,\n3,0.3,z,1e300\n4,-0.4,w,NaN\n5,7,v,2.5\n",
    )
    .unwrap();
    let out = dir.join("s.json");
    let o = run(&[
        "fit",
        p(&file),
        "--columns",
        "b,a",
        "--nan-policy",
        "ignore",
        "--batch-rows",
        "2",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let nan = f64::NAN;
    let rows = ndarray::array![[10.0, 0.1], [nan, 0.2], [1e300, 0.3], [nan, -0.4], [2.5, 7.0]];
    let mut est = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    fit_batches(&mut est, rows.view(), 2);
    assert_eq!(read(&out), state_json(&est));

    // f32: cells parsed straight to f32 (correctly rounded), not through f64.
    let out32 = dir.join("s32.json");
    let o = run(&["fit", p(&file), "--columns", "a", "--dtype", "f32", "-o", p(&out32)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut est = Centering::<f32>::new();
    est.partial_fit(&ndarray::array![[0.1f32], [0.2], [0.3], [-0.4], [7.0]])
        .unwrap();
    assert_eq!(read(&out32), state_json(&est));
}

#[test]
fn transform_npy_c_and_fortran_bit_for_bit() {
    for (shape, fortran) in [
        (&[23usize, 3][..], false),
        (&[23, 3][..], true),
        (&[3, 4, 2][..], true),
        (&[3, 4, 2][..], false),
    ] {
        let (_d, dir) = tmp();
        let x: ArrayD<f64> = data(shape, 5);
        let file = dir.join("x.npy");
        write_npy(&file, &x, fortran, false);
        let s = dir.join("s.json");
        assert!(run(&["fit", p(&file), "-o", p(&s)]).status.success());
        let y = dir.join("y.npy");
        let o = run(&[
            "transform",
            p(&file),
            "--state",
            p(&s),
            "-o",
            p(&y),
            "--batch-rows",
            "5",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got: ArrayD<f64> = ndarray_npy::read_npy(&y).expect("a valid .npy");
        let mut est = Centering::<f64>::new();
        est.partial_fit(&x).unwrap();
        let want = est.transform(&x).unwrap();
        assert_eq!(got.shape(), want.shape());
        assert!(got.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The output keeps the input's order.
        let head = std::fs::read(&y).unwrap();
        let text = String::from_utf8_lossy(&head[..128]);
        assert!(
            text.contains(if fortran {
                "'fortran_order': True"
            } else {
                "'fortran_order': False"
            }),
            "{text}"
        );
    }
}

#[test]
fn transform_f32_file_with_an_f64_state_writes_f64() {
    let (_d, dir) = tmp();
    let x: ArrayD<f32> = data(&[10, 2], 8);
    let file = dir.join("x.npy");
    write_npy(&file, &x, false, false);
    let s = dir.join("s.json");
    assert!(run(&["fit", p(&file), "--dtype", "f64", "-o", p(&s)]).status.success());
    let y = dir.join("y.npy");
    assert!(
        run(&["transform", p(&file), "--state", p(&s), "-o", p(&y)])
            .status
            .success()
    );
    let got: ArrayD<f64> = ndarray_npy::read_npy(&y).unwrap();
    let mut est = Centering::<f64>::new();
    let wide = x.mapv(f64::from);
    est.partial_fit(&wide).unwrap();
    assert_eq!(got, est.transform(&wide).unwrap());
}

#[test]
fn transform_csv_keeps_other_columns_and_empty_cells() {
    let (_d, dir) = tmp();
    let file = dir.join("x.csv");
    std::fs::write(&file, "id,a,b\n1,1.5,10\n2,2.5,\n3,3.5,30\n").unwrap();
    let s = dir.join("s.json");
    let o = run(&[
        "fit",
        p(&file),
        "--columns",
        "a,b",
        "--nan-policy",
        "ignore",
        "-o",
        p(&s),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let y = dir.join("y.csv");
    let o = run(&["transform", p(&file), "--columns", "a,b", "--state", p(&s), "-o", p(&y)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&y), "id,a,b\n1,-1,-10\n2,0,\n3,1,10\n");
}

#[test]
fn merge_equals_the_library_merge() {
    let (_d, dir) = tmp();
    let a: ArrayD<f64> = data(&[8, 3], 1);
    let b: ArrayD<f64> = data(&[5, 3], 2);
    let (fa, fb) = (dir.join("a.npy"), dir.join("b.npy"));
    write_npy(&fa, &a, false, false);
    write_npy(&fb, &b, false, false);
    let (sa, sb, sc) = (dir.join("a.json"), dir.join("b.json"), dir.join("c.json"));
    assert!(run(&["fit", p(&fa), "-o", p(&sa)]).status.success());
    assert!(run(&["fit", p(&fb), "-o", p(&sb)]).status.success());
    let o = run(&["merge", p(&sa), p(&sb), "-o", p(&sc)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (mut ea, mut eb) = (Centering::<f64>::new(), Centering::<f64>::new());
    ea.partial_fit(&a).unwrap();
    eb.partial_fit(&b).unwrap();
    ea.merge(&eb).unwrap();
    assert_eq!(read(&sc), state_json(&ea));
}

#[test]
fn empty_array_fits_nothing() {
    let (_d, dir) = tmp();
    let file = dir.join("x.npy");
    write_npy_raw(&file, "<f8", false, &[0, 3], &[]);
    let s = dir.join("s.json");
    let o = run(&["fit", p(&file), "-o", p(&s)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&s), state_json(&Centering::<f64>::new()));
}

#[test]
fn default_batches_of_a_larger_file_hold_1_mib() {
    // 40,000 × 4 f64 is 1.28 MB: two batches of 1 MiB / 32 B = 32,768 rows (C and
    // Fortran), read by the reader thread while the other is fitted.
    for fortran in [false, true] {
        let (_d, dir) = tmp();
        let x: ArrayD<f64> = data(&[40_000, 4], 11);
        let file = dir.join("x.npy");
        write_npy(&file, &x, fortran, false);
        let out = dir.join("s.json");
        let o = run(&["fit", p(&file), "-o", p(&out)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut est = Centering::<f64>::new();
        fit_batches(&mut est, rows_of(&x, fortran).view(), (1 << 20) / 32);
        assert_eq!(est.n_batches(), 2);
        assert_eq!(read(&out), state_json(&est));
    }
}
