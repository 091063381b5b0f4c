//! `.npy` files (feature `npy`): fits and transforms of files against the
//! same arrays in memory, bit for bit, and every malformed file refused
//! with the estimator unchanged and no output left behind.
#![cfg(feature = "npy")]

use std::path::{Path, PathBuf};

use centering::npy::{NpyDtype, NpyError, NpyFile};
use centering::{Centering, CenteringError, Element, Input, NanPolicy};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::{ReadNpyExt, WritableElement, WriteNpyExt, read_npy};
use proptest::prelude::*;

/// `x` saved as numpy saves it: C order if standard, Fortran order if
/// column-major (ndarray-npy writes either without a copy).
fn save<T: WritableElement>(dir: &Path, name: &str, x: &ArrayD<T>) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    x.write_npy(file).unwrap();
    path
}

/// Values over many decades, so that a different summation order would
/// round differently (sums of `rng·5 + 100` are exact in any order).
fn decades(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            let e = (s % 41) as i32 - 20;
            (u - 0.3) * 10f64.powi(e)
        })
        .collect()
}

fn array<T>(shape: &[usize], fortran: bool, f: impl Fn(f64) -> T, seed: u64) -> ArrayD<T> {
    let n = shape.iter().product();
    let data = decades(n, seed).into_iter().map(f).collect();
    ArrayD::from_shape_vec(IxDyn(shape).set_f(fortran), data).unwrap()
}

/// The file's fit and the in-memory fit of `x`, in `Centering<F>`, are
/// the same state; so are the transforms, and the output keeps the order.
fn check_file<F: Element + ndarray_npy::ReadableElement, T: Input + WritableElement>(
    dir: &Path,
    x: &ArrayD<T>,
    name: &str,
) {
    let path = save(dir, name, x);
    let mut from_file = Centering::<F>::new();
    from_file.fit_npy(&path).unwrap();
    let mut in_memory = Centering::<F>::new();
    in_memory.fit_input(x).unwrap();
    assert!(
        from_file == in_memory,
        "{name}: the file's fit differs from the in-memory fit"
    );

    // partial_fit_npy continues a stream as partial_fit does.
    from_file.partial_fit_npy(&path).unwrap();
    in_memory.partial_fit_input(x).unwrap();
    assert!(from_file == in_memory, "{name}: partial fits differ");

    let out = dir.join(format!("out-{name}"));
    from_file.transform_npy(&path, &out).unwrap();
    let y: ArrayD<F> = read_npy(&out).unwrap();
    let expected = in_memory.transform_input(x).unwrap();
    assert_eq!(y.shape(), expected.shape());
    assert!(
        y.iter()
            .zip(&expected)
            .all(|(a, b)| a.to_f64().map(f64::to_bits) == b.to_f64().map(f64::to_bits)),
        "{name}: transform differs"
    );
    let written = NpyFile::open(&out).unwrap();
    assert_eq!(written.is_fortran_order(), x.ndim() > 1 && !x.is_standard_layout());
    assert_eq!(
        written.dtype(),
        if std::mem::size_of::<F>() == 4 {
            NpyDtype::F32
        } else {
            NpyDtype::F64
        }
    );
}

fn dtype_strategy() -> impl Strategy<Value = u8> {
    0u8..8
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Any shape, C or Fortran order, every dtype numpy writes that the
    /// crate fits: the file and the array in memory give the same bits.
    #[test]
    fn files_fit_and_transform_as_the_arrays_in_memory(
        shape in proptest::collection::vec(1usize..7, 1..5),
        fortran in any::<bool>(),
        dtype in dtype_strategy(),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        match dtype {
            0 => {
                let x = array(&shape, fortran, |v| v, seed);
                check_file::<f64, f64>(d, &x, "f64.npy");
                check_file::<f32, f64>(d, &x, "f64-as-f32.npy");
            }
            1 => {
                let x = array(&shape, fortran, |v| v as f32, seed);
                check_file::<f32, f32>(d, &x, "f32.npy");
                check_file::<f64, f32>(d, &x, "f32-as-f64.npy");
            }
            2 => check_file::<f32, u8>(d, &array(&shape, fortran, |v| (v.abs() * 1e3) as u8, seed), "u8.npy"),
            3 => check_file::<f64, i16>(d, &array(&shape, fortran, |v| (v * 1e3) as i16, seed), "i16.npy"),
            4 => check_file::<f64, i32>(d, &array(&shape, fortran, |v| (v * 1e6) as i32, seed), "i32.npy"),
            // numpy's default integer, beyond 2⁵³ (not all exact in an f64).
            5 => check_file::<f64, i64>(d, &array(&shape, fortran, |v| (v * 9e18) as i64, seed), "i64.npy"),
            6 => check_file::<f32, u64>(d, &array(&shape, fortran, |v| (v.abs() * 1.8e19) as u64, seed), "u64.npy"),
            _ => check_file::<f32, u16>(d, &array(&shape, fortran, |v| (v.abs() * 1e5) as u16, seed), "u16.npy"),
        }
    }
}

/// Large enough for many reduction-tree leaves and the parallel split
/// (2¹⁸ elements and more), in both orders and in 3-D.
#[test]
fn large_files_are_bit_identical_to_the_in_memory_fit() {
    let dir = tempfile::tempdir().unwrap();
    for (shape, fortran) in [
        (vec![300_000, 3], false),
        (vec![300_000, 3], true),
        (vec![70, 1_000, 7], true),
        (vec![4_001, 129], false),
    ] {
        let x = array(&shape, fortran, |v| v, 7);
        check_file::<f64, f64>(dir.path(), &x, "big.npy");
    }
}

#[test]
fn weights_and_nan_policies_are_the_estimators() {
    // A NaN in a file: rejected by default (estimator unchanged), skipped
    // per feature under Ignore, as in memory.
    let dir = tempfile::tempdir().unwrap();
    let mut x = array(&[50, 4], false, |v| v, 3);
    x[[17, 2]] = f64::NAN;
    let path = save(dir.path(), "nan.npy", &x);
    let mut c = Centering::<f64>::new();
    c.partial_fit(&ndarray::array![[1.0, 2.0, 3.0, 4.0]]).unwrap();
    let before = c.clone();
    match c.partial_fit_npy(&path) {
        Err(NpyError::Centering {
            path: p,
            source: CenteringError::NonFinite { index, .. },
        }) => {
            assert_eq!(p, path);
            assert_eq!(index, vec![17, 2]);
        }
        other => panic!("expected a NonFinite error naming the file, got {other:?}"),
    }
    assert!(c == before);

    let mut ignore: Centering<f64> = centering::CenteringParams::new()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    ignore.fit_npy(&path).unwrap();
    let mut expected: Centering<f64> = centering::CenteringParams::new()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    expected.fit(&x).unwrap();
    assert!(ignore == expected);
}

/// Writes `bytes` as a file and returns its path.
fn raw(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A version-1.0 header for `dict`, padded to 64 bytes as numpy pads it.
fn header(dict: &str) -> Vec<u8> {
    let mut h = b"\x93NUMPY\x01\x00\x00\x00".to_vec();
    h.extend_from_slice(dict.as_bytes());
    while !(h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let len = (h.len() - 10) as u16;
    h[8..10].copy_from_slice(&len.to_le_bytes());
    h
}

fn f64_file(descr: &str, shape: &str, values: usize) -> Vec<u8> {
    let mut b = header(&format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    ));
    b.resize(b.len() + values * 8, 0);
    b
}

fn format_error(r: Result<&mut Centering<f64>, NpyError>, path: &Path, needle: &str) {
    match r {
        Err(e @ NpyError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
        }
        other => panic!("expected a format error containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn malformed_files_are_refused_and_leave_the_estimator_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Centering::<f64>::new();
    c.partial_fit(&ndarray::array![[1.0, 2.0]]).unwrap();
    let before = c.clone();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.npy", vec![], "empty file"),
        ("magic.npy", b"PK\x03\x04 not numpy at all".to_vec(), "magic string"),
        ("version.npy", b"\x93NUMPY\x09\x00\x10\x00".to_vec(), "version 9"),
        // A length field claiming 60 KB of header in a 10-byte file.
        (
            "lying-header.npy",
            b"\x93NUMPY\x01\x00\xff\xef".to_vec(),
            "truncated header",
        ),
        ("truncated.npy", f64_file("<f8", "(4, 2)", 7), "truncated"),
        ("long.npy", f64_file("<f8", "(4, 2)", 9), "bytes after the data"),
        ("float128.npy", f64_file("<f16", "(4, 2)", 16), "unsupported dtype"),
        ("bool.npy", f64_file("|b1", "(4, 2)", 1), "unsupported dtype"),
        ("complex.npy", f64_file("<c16", "(4, 2)", 16), "unsupported dtype"),
        ("big-endian.npy", f64_file(">f8", "(4, 2)", 8), "not little-endian"),
        (
            "garbage-dict.npy",
            header("{'descr': '<f8', 'shape': oops}"),
            "not a valid .npy header",
        ),
        (
            "overflow.npy",
            f64_file("<f8", "(4294967296, 4294967296, 4294967296)", 0),
            "overflows",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = raw(d, name, &bytes);
        format_error(c.partial_fit_npy(&path), &path, needle);
        format_error(c.fit_npy(&path), &path, needle);
        assert!(c == before, "{name} changed the estimator");
    }
    // A missing file: a read error naming it.
    let missing = d.join("missing.npy");
    match c.partial_fit_npy(&missing) {
        Err(e @ NpyError::Read { .. }) => assert!(e.to_string().contains("missing.npy")),
        other => panic!("expected a read error, got {other:?}"),
    }
    // A valid file of another feature count.
    let three = save(d, "three.npy", &array(&[5, 3], false, |v| v, 1));
    match c.partial_fit_npy(&three) {
        Err(NpyError::Centering {
            source: CenteringError::FeatureMismatch { expected: 2, found: 3 },
            ..
        }) => {}
        other => panic!("expected a feature mismatch, got {other:?}"),
    }
    // A 0-dimensional array: no feature axis.
    let scalar = raw(d, "scalar.npy", &f64_file("<f8", "()", 1));
    assert!(matches!(
        c.partial_fit_npy(&scalar),
        Err(NpyError::Centering {
            source: CenteringError::ZeroDimensional,
            ..
        })
    ));
    assert!(c == before);
}

/// Only the input files, and the outputs that succeeded, are in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failed_transforms_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = array(&[20, 3], true, |v| v, 5);
    let input = save(d, "x.npy", &x);
    let out = d.join("y.npy");

    // Not fitted, another D.
    let unfitted = Centering::<f64>::new();
    assert!(matches!(
        unfitted.transform_npy(&input, &out),
        Err(NpyError::Centering {
            source: CenteringError::NotFitted,
            ..
        })
    ));
    let mut two = Centering::<f64>::new();
    two.fit(&ndarray::array![[1.0, 2.0]]).unwrap();
    assert!(matches!(
        two.transform_npy(&input, &out),
        Err(NpyError::Centering {
            source: CenteringError::FeatureMismatch { .. },
            ..
        })
    ));
    // A directory that does not exist: a write error naming the output.
    let mut c = Centering::<f64>::new();
    c.fit_npy(&input).unwrap();
    let nowhere = d.join("no-such-dir").join("y.npy");
    match c.transform_npy(&input, &nowhere) {
        Err(e @ NpyError::Write { .. }) => assert!(e.to_string().contains("no-such-dir")),
        other => panic!("expected a write error, got {other:?}"),
    }
    // A path that names no file.
    assert!(matches!(
        c.transform_npy(&input, d.join("..")),
        Err(NpyError::Write { .. })
    ));
    // inverse_transform_npy needs F data: u8 is refused, no output.
    let bytes = save(d, "u8.npy", &array(&[20, 3], false, |v| (v.abs() * 100.0) as u8, 2));
    match c.inverse_transform_npy(&bytes, &out) {
        Err(e @ NpyError::Format { .. }) => assert!(e.to_string().contains("'<f8'"), "{e}"),
        other => panic!("expected a dtype error, got {other:?}"),
    }
    assert_eq!(entries(d), ["u8.npy", "x.npy"]);

    // An existing output is replaced whole; inverse_transform_npy undoes
    // transform_npy as the in-memory methods do.
    std::fs::write(&out, b"old contents").unwrap();
    c.transform_npy(&input, &out).unwrap();
    let back = d.join("back.npy");
    c.inverse_transform_npy(&out, &back).unwrap();
    let y = c.transform(&x).unwrap();
    let expected = c.inverse_transform(&y).unwrap();
    let got = ArrayD::<f64>::read_npy(std::fs::File::open(&back).unwrap()).unwrap();
    assert!(got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(entries(d), ["back.npy", "u8.npy", "x.npy", "y.npy"]);
}

#[cfg(feature = "half")]
#[test]
fn float16_files_fit_as_in_memory() {
    use half::f16;
    let dir = tempfile::tempdir().unwrap();
    let x = array(&[33, 5], false, |v| f16::from_f64(v.clamp(-6e4, 6e4)), 9);
    let mut bytes = header("{'descr': '<f2', 'fortran_order': False, 'shape': (33, 5), }");
    for v in &x {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let path = raw(dir.path(), "half.npy", &bytes);
    assert_eq!(NpyFile::open(&path).unwrap().dtype(), NpyDtype::F16);
    let mut from_file = Centering::<f32>::new();
    from_file.fit_npy(&path).unwrap();
    let mut in_memory = Centering::<f32>::new();
    in_memory.fit_input(&x).unwrap();
    assert!(from_file == in_memory);
}
