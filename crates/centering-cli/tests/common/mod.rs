//! Helpers: small generated files, the built binary, the in-memory reference.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use centering::Centering;
use ndarray::{ArrayD, ArrayView2, Axis, IxDyn, ShapeBuilder};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_centering"))
}

/// Runs the binary with `args` (stdin closed, stderr captured: not a terminal).
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code 1 and a message containing every one of `needles`.
pub fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in {err:?}");
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The files of a directory (to check that nothing, not even a temporary, is left).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Writes a `.npy` file by hand (so that tests can also write lying headers).
pub fn write_npy_raw(path: &Path, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_s}, }}",
        if fortran { "True" } else { "False" }
    );
    let total = 10 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).expect("write npy");
}

pub trait Elem: centering::Element + Copy {
    const DESCR: &'static str;
    fn le_bytes(self) -> Vec<u8>;
    fn be_bytes(self) -> Vec<u8>;
    fn from_f64(x: f64) -> Self;
}

impl Elem for f64 {
    const DESCR: &'static str = "<f8";
    fn le_bytes(self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn be_bytes(self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

impl Elem for f32 {
    const DESCR: &'static str = "<f4";
    fn le_bytes(self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn be_bytes(self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

/// An integer element of test files.
pub trait IntElem: centering::Input + Copy {
    const DESCR: &'static str;
    fn le_bytes(self) -> Vec<u8>;
    fn be_bytes(self) -> Vec<u8>;
    fn from_u64(x: u64) -> Self;
    /// How far [`int_data`] shifts its generator's state: 64-bit types take
    /// all of it (values beyond 2^53 and, signed, of both signs).
    const SHIFT: u32;
}

macro_rules! int_elem {
    ($($t:ty => $d:expr),*) => {$(
        impl IntElem for $t {
            const DESCR: &'static str = $d;
            const SHIFT: u32 = if std::mem::size_of::<$t>() == 8 { 0 } else { 29 };
            fn le_bytes(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn be_bytes(self) -> Vec<u8> {
                self.to_be_bytes().to_vec()
            }
            fn from_u64(x: u64) -> Self {
                x as $t
            }
        }
    )*};
}

int_elem!(u8 => "|u1", i8 => "|i1", u16 => "<u2", i16 => "<i2", u32 => "<u4", i32 => "<i4", u64 => "<u8", i64 => "<i8");

/// Deterministic integers of `shape` (wrapping through the type's range).
pub fn int_data<T: IntElem>(shape: &[usize], seed: u64) -> ArrayD<T> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        T::from_u64(s >> T::SHIFT)
    })
}

/// Writes integer `x` as a `.npy` file.
pub fn write_int_npy<T: IntElem>(path: &Path, x: &ArrayD<T>, fortran: bool, big_endian: bool) {
    let order: Vec<T> = if fortran {
        x.t().iter().copied().collect()
    } else {
        x.iter().copied().collect()
    };
    let bytes: Vec<u8> = order
        .iter()
        .flat_map(|v| if big_endian { v.be_bytes() } else { v.le_bytes() })
        .collect();
    let descr = if big_endian {
        T::DESCR.replace('<', ">")
    } else {
        T::DESCR.to_owned()
    };
    write_npy_raw(path, &descr, fortran, x.shape(), &bytes);
}

/// The `(N, D)` rows of any array, as [`rows_of`] makes them.
pub fn int_rows_of<T: Copy>(x: &ArrayD<T>, fortran: bool) -> ndarray::Array2<T> {
    let d = *x.shape().last().expect("ndim >= 1");
    let n = x.len() / d;
    if fortran {
        let flat: Vec<T> = x.t().iter().copied().collect();
        ndarray::Array2::from_shape_vec((n, d).f(), flat).expect("shape")
    } else {
        let flat: Vec<T> = x.iter().copied().collect();
        ndarray::Array2::from_shape_vec((n, d), flat).expect("shape")
    }
}

/// Deterministic data of `shape` with awkward values (offsets, thirds).
pub fn data<F: Elem>(shape: &[usize], seed: u64) -> ArrayD<F> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        F::from_f64(1e3 + u / 3.0 - 0.1)
    })
}

/// Writes `x` as a `.npy` file in C or Fortran order, little- or big-endian.
pub fn write_npy<F: Elem>(path: &Path, x: &ArrayD<F>, fortran: bool, big_endian: bool) {
    let order: Vec<F> = if fortran {
        x.t().iter().copied().collect()
    } else {
        x.iter().copied().collect()
    };
    let bytes: Vec<u8> = order
        .iter()
        .flat_map(|v| if big_endian { v.be_bytes() } else { v.le_bytes() })
        .collect();
    let descr = if big_endian {
        F::DESCR.replace('<', ">")
    } else {
        F::DESCR.to_owned()
    };
    write_npy_raw(path, &descr, fortran, x.shape(), &bytes);
}

/// The `(N, D)` view of `x` that the CLI's batches are rows of: C order, or
/// (for a Fortran-order file) the Fortran-order reshape, as an owned array
/// in that layout.
pub fn rows_of<F: Elem>(x: &ArrayD<F>, fortran: bool) -> ndarray::Array2<F> {
    let d = *x.shape().last().expect("ndim >= 1");
    let n = x.len() / d;
    if fortran {
        let flat: Vec<F> = x.t().iter().copied().collect();
        ndarray::Array2::from_shape_vec((n, d).f(), flat).expect("shape")
    } else {
        let flat: Vec<F> = x.iter().copied().collect();
        ndarray::Array2::from_shape_vec((n, d), flat).expect("shape")
    }
}

/// `partial_fit` of consecutive `batch`-row slices of `rows`.
pub fn fit_batches<F: centering::Element>(est: &mut Centering<F>, rows: ArrayView2<'_, F>, batch: usize) {
    let n = rows.len_of(Axis(0));
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        est.partial_fit(&rows.slice(ndarray::s![start..end, ..]))
            .expect("in-memory fit");
        start = end;
    }
}

/// The state file the CLI writes for `est`: the library's own serialisation.
pub fn state_json<F: centering::Element>(est: &Centering<F>) -> String
where
    Centering<F>: serde::Serialize,
{
    serde_json::to_string_pretty(est).expect("serialise") + "\n"
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read output")
}

pub fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    (dir, path)
}
