//! `.npy` files fitted and transformed where they lie (feature `npy`).
//!
//! A file is memory-mapped and viewed as the array its header describes —
//! C or Fortran order, any ndim, every [`Input`] element
//! type numpy writes — and the ordinary in-memory methods run on that view.
//! So a fit of a file is **bit for bit** the in-memory fit of the same array
//! (`np.load` then `fit`), for any size, layout and thread count, and no
//! copy of the data is made: the process's own memory stays a few buffers
//! of `D` values, and the file's pages are the kernel's page cache, read
//! ahead sequentially and dropped under memory pressure: a file larger than
//! RAM, or than a cgroup's memory limit, is fitted too (on the reference
//! VM, warm: faster than `cat FILE > /dev/null`, as no byte is copied; a
//! 4 GiB file under a 1 GiB cgroup limit: 0.64 of `cat`'s throughput, the
//! mapped pages costing more to reclaim).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use centering::Centering;
//! # let dir = std::env::temp_dir().join(format!("centering-npy-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("data.npy");
//! # let y_path = dir.join("centred.npy");
//! # // A 2 × 3 little-endian float64 array in C order, as numpy writes it.
//! # let mut bytes = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".to_vec();
//! # bytes.resize(127, b' ');
//! # bytes.push(b'\n');
//! # for v in [1.0f64, 2.0, 3.0, 3.0, 4.0, 5.0] { bytes.extend(v.to_le_bytes()); }
//! # std::fs::write(&path, bytes)?;
//! // data.npy: float64 [[1, 2, 3], [3, 4, 5]], written by numpy.save.
//! let mut c = Centering::<f64>::new();
//! c.fit_npy(&path)?;
//! assert_eq!(c.mean().unwrap(), ndarray::array![2.0, 3.0, 4.0]);
//!
//! // x − mean, into a new .npy of the same shape and order (float64: F).
//! c.transform_npy(&path, &y_path)?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The file must not be truncated or rewritten while a call reads it (as
//! with every memory-mapped reader: the mapping would see the change).
//! Big-endian files are refused (a view cannot swap bytes); numpy converts
//! them with `a.astype(a.dtype.newbyteorder('<'))`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapMut};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};
use py_literal::Value;
use thiserror::Error;

use crate::{Centering, CenteringError, Element, Input};

/// What can go wrong reading or writing a `.npy` file.
///
/// Every variant names the file. A failed fit leaves the estimator as it
/// was; a failed transform leaves no output file behind.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file cannot be opened, mapped or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The output cannot be created, sized, mapped or renamed into place.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a `.npy` file this module reads: a bad or truncated
    /// header, a length that does not match the header's shape, misaligned
    /// data, an unsupported or big-endian dtype.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
    /// The array is a valid `.npy` array that the estimator refused (no
    /// feature axis, another feature count, a non-finite value, not fitted…).
    #[error("{path}: {source}")]
    Centering {
        /// The file.
        path: PathBuf,
        /// The estimator's error, as for the same array in memory.
        source: CenteringError,
    },
}

/// The element type of a `.npy` file (its header's `descr`), among those
/// this module reads: the crate's [`Input`] types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NpyDtype {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|u1`
    U8,
    /// `|i1`
    I8,
    /// `<u2`
    U16,
    /// `<i2`
    I16,
    /// `<u4`
    U32,
    /// `<i4`
    I32,
    /// `<u8`
    U64,
    /// `<i8`: numpy's default integer
    I64,
    /// `<f2` (feature `half`)
    #[cfg(feature = "half")]
    F16,
}

impl NpyDtype {
    /// numpy's `descr` of the type, as this module reads it (`"<f8"`,
    /// `"|u1"`, …).
    fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::F64 => "<f8",
            Self::U8 => "|u1",
            Self::I8 => "|i1",
            Self::U16 => "<u2",
            Self::I16 => "<i2",
            Self::U32 => "<u4",
            Self::I32 => "<i4",
            Self::U64 => "<u8",
            Self::I64 => "<i8",
            #[cfg(feature = "half")]
            Self::F16 => "<f2",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            #[cfg(feature = "half")]
            Self::F16 => 2,
            Self::F32 | Self::U32 | Self::I32 => 4,
            Self::F64 | Self::U64 | Self::I64 => 8,
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "f4" => Self::F32,
            "f8" => Self::F64,
            "u1" => Self::U8,
            "i1" => Self::I8,
            "u2" => Self::U16,
            "i2" => Self::I16,
            "u4" => Self::U32,
            "i4" => Self::I32,
            "u8" => Self::U64,
            "i8" => Self::I64,
            #[cfg(feature = "half")]
            "f2" => Self::F16,
            _ => return None,
        })
    }
}

/// The dtypes a message lists as expected.
const EXPECTED: &str = if cfg!(feature = "half") {
    "float16/32/64 or (u)int8/16/32/64, little-endian ('<f8', '<f4', '<f2', '<i8', '|u1', ...)"
} else {
    "float32/float64 or (u)int8/16/32/64, little-endian ('<f8', '<f4', '<i8', '|u1', ...)"
};

/// A `.npy` file, memory-mapped, its header checked against its length.
#[derive(Debug)]
pub struct NpyFile {
    map: Mmap,
    path: PathBuf,
    dtype: NpyDtype,
    shape: Vec<usize>,
    fortran: bool,
    /// Where the data starts (the header's length).
    offset: usize,
}

/// Runs `$body` with `$v` bound to `$file`'s data viewed as the array its
/// header describes, an `ArrayViewD` of the dtype's Rust type (`?` returns
/// a view error from the enclosing function).
macro_rules! with_view {
    ($file:expr, $v:ident => $body:expr) => {{
        let file: &NpyFile = $file;
        match file.dtype {
            NpyDtype::F32 => {
                let $v = file.typed::<f32>()?;
                $body
            }
            NpyDtype::F64 => {
                let $v = file.typed::<f64>()?;
                $body
            }
            NpyDtype::U8 => {
                let $v = file.typed::<u8>()?;
                $body
            }
            NpyDtype::I8 => {
                let $v = file.typed::<i8>()?;
                $body
            }
            NpyDtype::U16 => {
                let $v = file.typed::<u16>()?;
                $body
            }
            NpyDtype::I16 => {
                let $v = file.typed::<i16>()?;
                $body
            }
            NpyDtype::U32 => {
                let $v = file.typed::<u32>()?;
                $body
            }
            NpyDtype::I32 => {
                let $v = file.typed::<i32>()?;
                $body
            }
            NpyDtype::U64 => {
                let $v = file.typed::<u64>()?;
                $body
            }
            NpyDtype::I64 => {
                let $v = file.typed::<i64>()?;
                $body
            }
            #[cfg(feature = "half")]
            NpyDtype::F16 => {
                let $v = file.typed::<half::f16>()?;
                $body
            }
        }
    }};
}

impl NpyFile {
    /// Opens and maps `path`, and checks its header: the magic string, a
    /// supported little-endian dtype, and a data length equal to the
    /// shape's.
    ///
    /// # Errors
    ///
    /// [`NpyError::Read`] if the file cannot be opened or mapped,
    /// [`NpyError::Format`] if it is not such a `.npy` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NpyError> {
        let path = path.as_ref().to_path_buf();
        let read = |source| NpyError::Read {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(read)?;
        let len = file.metadata().map_err(read)?.len();
        let format = |reason: String| NpyError::Format {
            path: path.clone(),
            reason,
        };
        if len == 0 {
            return Err(format("an empty file: expected a .npy header".into()));
        }
        // SAFETY: the mapping is read-only and private to this value; the
        // bytes are only read as plain numbers (every bit pattern is a
        // value of every supported dtype). What a mapping cannot rule out —
        // another process truncating or rewriting the file meanwhile — is
        // the documented condition of this module (see the module docs).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(read)?;
        let offset = header_len(&map).map_err(format)?;
        let header =
            Header::from_reader(&mut &map[..offset]).map_err(|e| format(format!("not a valid .npy header: {e}")))?;
        let descr = match &header.type_descriptor {
            Value::String(s) => s.clone(),
            other => return Err(format(format!("unsupported dtype {other}: expected {EXPECTED}"))),
        };
        let (order, code) = descr.split_at(descr.len().min(1));
        let dtype = NpyDtype::from_code(code).ok_or_else(|| {
            let why = match code {
                "f2" => " (float16 needs the crate feature `half`)",
                _ => "",
            };
            format(format!("unsupported dtype '{descr}'{why}: expected {EXPECTED}"))
        })?;
        let little = matches!(order, "<" | "|") || (order == "=" && cfg!(target_endian = "little"));
        if !little || cfg!(target_endian = "big") {
            return Err(format(format!(
                "dtype '{descr}' is not little-endian: a memory-mapped view cannot swap bytes (numpy: a.astype(a.dtype.newbyteorder('<')))"
            )));
        }
        let shape = header.shape;
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &n| a.checked_mul(n as u64))
            .ok_or_else(|| format(format!("shape {shape:?} overflows")))?;
        let found = len - offset as u64;
        if found != expected {
            let what = if found < expected {
                "truncated"
            } else {
                "bytes after the data"
            };
            return Err(format(format!(
                "{what}: shape {shape:?} of '{descr}' is {expected} bytes of data, the file has {found} after its header"
            )));
        }
        if !(map.as_ptr() as usize + offset).is_multiple_of(dtype.size()) {
            return Err(format(format!(
                "the data (at byte {offset}) is not aligned to its {}-byte elements",
                dtype.size()
            )));
        }
        let file = Self {
            map,
            path,
            dtype,
            shape,
            fortran: header.layout.is_fortran(),
            offset,
        };
        #[cfg(unix)]
        {
            // Read ahead aggressively and drop pages behind (advice only:
            // a kernel that ignores it reads the same bytes).
            let _ = file.map.advise(memmap2::Advice::Sequential);
        }
        Ok(file)
    }

    /// The array's shape, from the header.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type, from the header.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// Whether the data is in Fortran (column-major) order.
    pub fn is_fortran_order(&self) -> bool {
        self.fortran
    }

    /// The file's path, as given to [`open`](Self::open).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data as the array the header describes, as `T`s (the dtype's
    /// type: `with_view!` picks it).
    fn typed<T: bytemuck::Pod>(&self) -> Result<ArrayViewD<'_, T>, NpyError> {
        let bad = |e: &dyn std::fmt::Display| NpyError::Format {
            path: self.path.clone(),
            reason: format!("cannot view the data: {e}"),
        };
        let data: &[T] = bytemuck::try_cast_slice(&self.map[self.offset..]).map_err(|e| bad(&e))?;
        ArrayViewD::from_shape(IxDyn(&self.shape).set_f(self.fortran), data).map_err(|e| bad(&e))
    }

    fn refused(&self, source: CenteringError) -> NpyError {
        NpyError::Centering {
            path: self.path.clone(),
            source,
        }
    }
}

/// The length of the header (magic, version, length field, dictionary),
/// checked against the file's length before `Header::from_reader`
/// allocates what the length field claims.
fn header_len(bytes: &[u8]) -> Result<usize, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file: it does not start with the magic string \\x93NUMPY".into());
    }
    let (prefix, dict) = match bytes[6] {
        1 => (10usize, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        2 | 3 => return Err("truncated header".into()),
        v => return Err(format!("unsupported .npy format version {v}: expected 1, 2 or 3")),
    };
    match prefix.checked_add(dict) {
        Some(end) if end <= bytes.len() => Ok(end),
        _ => Err(format!(
            "truncated header: it claims {dict} bytes, the file has {} after the length field",
            bytes.len() - prefix
        )),
    }
}

/// Temporary outputs get distinct names within a process too.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An output file being written under a temporary name in the output's
/// directory: renamed into place by [`persist`](Self::persist), removed
/// if dropped before.
struct TempOutput {
    temp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

impl TempOutput {
    fn create(target: &Path) -> Result<Self, NpyError> {
        let write = |source| NpyError::Write {
            path: target.to_path_buf(),
            source,
        };
        let name = target
            .file_name()
            .ok_or_else(|| write(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = target.with_file_name(temp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(write)?;
        Ok(Self {
            temp,
            target: target.to_path_buf(),
            file: Some(file),
        })
    }

    fn error(&self, source: io::Error) -> NpyError {
        NpyError::Write {
            path: self.target.clone(),
            source,
        }
    }

    fn persist(mut self) -> Result<(), NpyError> {
        drop(self.file.take());
        std::fs::rename(&self.temp, &self.target).map_err(|e| self.error(e))
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Where the output of an `F` transform of `input` is mapped.
fn with_output<F: Element>(
    input: &NpyFile,
    output: &Path,
    write: impl FnOnce(ArrayViewMutD<'_, F>) -> Result<(), CenteringError>,
) -> Result<(), NpyError> {
    let out = TempOutput::create(output)?;
    let header = Header {
        type_descriptor: Value::String(F::NPY_DESCR.into()),
        layout: if input.fortran {
            Layout::Fortran
        } else {
            Layout::Standard
        },
        shape: input.shape.clone(),
    };
    let head = header
        .to_bytes()
        .map_err(|e| out.error(io::Error::other(e.to_string())))?;
    let elements: usize = input.shape.iter().product();
    let total = head.len() + elements * std::mem::size_of::<F>();
    let Some(file) = out.file.as_ref() else {
        return Err(out.error(io::Error::other("the output is already closed")));
    };
    file.set_len(total as u64).map_err(|e| out.error(e))?;
    // SAFETY: the file was created by this call under a fresh name
    // (`create_new`), sized above, and is mapped only here; no other handle
    // writes it before the rename that publishes it.
    #[allow(unsafe_code)]
    let mut map = unsafe { MmapMut::map_mut(file) }.map_err(|e| out.error(e))?;
    map[..head.len()].copy_from_slice(&head);
    let data: &mut [F] = F::cast_bytes_mut(&mut map[head.len()..])
        .ok_or_else(|| out.error(io::Error::other("the mapped output is not aligned")))?;
    let shape = IxDyn(&input.shape).set_f(input.fortran);
    let view = ArrayViewMutD::from_shape(shape, data).map_err(|e| out.error(io::Error::other(e.to_string())))?;
    write(view).map_err(|e| input.refused(e))?;
    drop(map);
    out.persist()
}

impl<F: Element> Centering<F> {
    /// [`partial_fit`](Self::partial_fit) of the array in the `.npy` file at
    /// `path` (any supported dtype: integers summed exactly, see
    /// [`partial_fit_input`](Self::partial_fit_input)), read where it lies:
    /// bit for bit the in-memory `partial_fit` of the same array.
    ///
    /// # Errors
    ///
    /// [`NpyError::Read`] / [`NpyError::Format`] for a file that cannot be
    /// read as a supported `.npy`, [`NpyError::Centering`] for an array the
    /// estimator refuses (as `partial_fit` would); the estimator is then
    /// unchanged.
    pub fn partial_fit_npy(&mut self, path: impl AsRef<Path>) -> Result<&mut Self, NpyError> {
        let file = NpyFile::open(path)?;
        with_view!(&file, v => self.partial_fit_input(&v).map(|_| ())).map_err(|e| file.refused(e))?;
        Ok(self)
    }

    /// Forgets everything, then [`partial_fit_npy`](Self::partial_fit_npy)
    /// (a file that cannot be read leaves the estimator as it was).
    ///
    /// # Errors
    ///
    /// As [`partial_fit_npy`](Self::partial_fit_npy).
    pub fn fit_npy(&mut self, path: impl AsRef<Path>) -> Result<&mut Self, NpyError> {
        let file = NpyFile::open(path)?;
        with_view!(&file, v => self.fit_input(&v).map(|_| ())).map_err(|e| file.refused(e))?;
        Ok(self)
    }

    /// [`transform`](Self::transform) of the `.npy` array at `input` into a
    /// new `.npy` file at `output`: the same shape and order, dtype `F`
    /// (`<f4` or `<f8`), bit for bit the in-memory result. The output is
    /// written under a temporary name beside `output` and renamed into
    /// place when complete; an existing `output` is replaced.
    ///
    /// # Errors
    ///
    /// As [`partial_fit_npy`](Self::partial_fit_npy) for the input (and
    /// [`CenteringError::NotFitted`] / [`CenteringError::FeatureMismatch`]
    /// in [`NpyError::Centering`]); [`NpyError::Write`] if the output
    /// cannot be written. On any error no output file is left behind.
    pub fn transform_npy(&self, input: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<(), NpyError> {
        let file = NpyFile::open(input)?;
        self.check_npy(&file)?;
        with_view!(&file, v => with_output::<F>(&file, output.as_ref(), |mut out| {
            self.transform_input_into(&v, &mut out)
        }))
    }

    /// [`inverse_transform`](Self::inverse_transform) (`y + mean`) of the
    /// `.npy` array at `input`, whose dtype must be `F`, into a new `.npy`
    /// at `output`, as [`transform_npy`](Self::transform_npy) writes it.
    ///
    /// # Errors
    ///
    /// As [`transform_npy`](Self::transform_npy), and [`NpyError::Format`]
    /// if the input's dtype is not `F`.
    pub fn inverse_transform_npy(&self, input: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<(), NpyError> {
        let file = NpyFile::open(input)?;
        self.check_npy(&file)?;
        // The data as an `F` array, if that is its dtype.
        let Some(y) = with_view!(&file, v => F::same_view(Input::batch(v))) else {
            return Err(NpyError::Format {
                path: file.path.clone(),
                reason: format!(
                    "dtype '{}' cannot be inverse-transformed by this estimator: expected '{}' (its float type)",
                    file.dtype.descr(),
                    F::NPY_DESCR
                ),
            });
        };
        with_output::<F>(&file, output.as_ref(), |mut out| {
            self.inverse_transform_into(&y, &mut out)
        })
    }

    /// Refuses, before any output exists, what the transform would refuse
    /// for its shape alone.
    fn check_npy(&self, file: &NpyFile) -> Result<(), NpyError> {
        let Some(&d) = file.shape.last() else {
            return Err(file.refused(CenteringError::ZeroDimensional));
        };
        let expected = self
            .n_features()
            .ok_or_else(|| file.refused(CenteringError::NotFitted))?;
        if d != expected {
            return Err(file.refused(CenteringError::FeatureMismatch { expected, found: d }));
        }
        Ok(())
    }
}
