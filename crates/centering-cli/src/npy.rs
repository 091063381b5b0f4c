//! `.npy` files (float32/float64, and the integers the core sums exactly:
//! (u)int8/16/32, either byte order) read in bounded memory: the header parsed by `ndarray-npy`,
//! then chunks of rows read into one reused buffer — sequential reads for
//! C order, one positioned read per feature for Fortran order.
//!
//! An array of shape `(n0, …, nk, D)` is `N = n0·…·nk` samples of `D`
//! features: rows of the `(N, D)` view, which in C order is contiguous
//! row-major and in Fortran order contiguous column-major (sample `s`'s
//! feature `j` at `j·N + s`, with `s` the Fortran-order index of the leading
//! axes). A chunk of rows is therefore a `(rows, D)` row-major buffer (C) or
//! column-major buffer (Fortran).

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray_npy::npy::header::{Header, Layout};

use crate::elem::{Elem, FileElem, Float};
use crate::output::{Input, shown};

/// Where the bytes come from: a file (positioned reads), or a pipe
/// (standard input: one sequential pass, C order only).
enum Source {
    File(File),
    Pipe(Box<dyn Read + Send>),
}

/// An open `.npy` file, its header checked against its length (a pipe's
/// length is checked as it is read: a short stream, or one with bytes after
/// the last row, is an error at its end).
pub struct NpyReader {
    src: Source,
    path: PathBuf,
    pub elem: Elem,
    big_endian: bool,
    pub fortran: bool,
    pub shape: Vec<usize>,
    /// Samples: the product of all axes but the last.
    pub rows: usize,
    /// Features: the last axis.
    pub d: usize,
    data_offset: u64,
    /// The next row a sequential (C-order) read starts at.
    cursor: usize,
}

impl NpyReader {
    /// Opens `path`, or standard input for `-`.
    pub fn open(path: &Path) -> Result<Self> {
        let not_npy = || format!("{} is not a valid .npy file (its header cannot be read)", shown(path));
        let (src, header, len, data_offset) = match crate::output::open_input(path, "a .npy file")? {
            Input::Stdin(mut pipe) => {
                let header = Header::from_reader(&mut pipe).with_context(not_npy)?;
                (Source::Pipe(pipe), header, None, 0)
            }
            Input::File(mut file, len) => {
                let header = Header::from_reader(&mut file).with_context(not_npy)?;
                let data_offset = file
                    .stream_position()
                    .with_context(|| format!("cannot read {}", shown(path)))?;
                (Source::File(file), header, Some(len), data_offset)
            }
        };
        let descr = match &header.type_descriptor {
            py_literal::Value::String(s) => s.clone(),
            other => bail!(
                "{}: unsupported dtype {other}: expected float32/float64 or (u)int8/16/32 ('<f8', '<f4', '|u1', '<i2', ...)",
                shown(path)
            ),
        };
        let unsupported = || {
            anyhow::anyhow!(
                "{}: unsupported dtype '{descr}': expected float32/float64 or (u)int8/16/32 ('<f8', '<f4', '|u1', '<i2', ...)",
                shown(path)
            )
        };
        let (order, code) = descr.split_at(descr.len().min(1));
        let elem = match code {
            "f4" => Elem::F32,
            "f8" => Elem::F64,
            "u1" => Elem::U8,
            "i1" => Elem::I8,
            "u2" => Elem::U16,
            "i2" => Elem::I16,
            "u4" => Elem::U32,
            "i4" => Elem::I32,
            _ => return Err(unsupported()),
        };
        let big_endian = match order {
            "<" | "|" => false,
            ">" => true,
            "=" => cfg!(target_endian = "big"),
            _ => return Err(unsupported()),
        };
        let shape = header.shape.clone();
        let Some((&d, samples)) = shape.split_last() else {
            bail!(
                "{}: a 0-dimensional array has no feature axis: expected shape (..., D)",
                shown(path)
            );
        };
        if d == 0 {
            bail!(
                "{}: shape {shape:?} has 0 features (a last axis of length 0)",
                shown(path)
            );
        }
        let rows = samples
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .with_context(|| format!("{}: shape {shape:?} overflows", shown(path)))?;
        let fortran = header.layout.is_fortran();
        let need = (rows as u128) * (d as u128) * (elem.size() as u128);
        let Some(len) = len else {
            if fortran && rows > 1 && d > 1 {
                bail!(
                    "{}: a Fortran-order .npy cannot be read from a pipe (each feature is stored after the previous one, all rows long): give it as a file",
                    shown(path)
                );
            }
            return Ok(NpyReader {
                src,
                path: path.to_path_buf(),
                elem,
                big_endian,
                fortran,
                shape,
                rows,
                d,
                data_offset,
                cursor: 0,
            });
        };
        let have = u128::from(len - data_offset);
        if have < need {
            bail!(
                "{} is truncated: its header says shape {shape:?} of {elem}, {need} bytes of data, but only {have} bytes follow the header",
                shown(path)
            );
        }
        if have > need {
            bail!(
                "{}: its header says shape {shape:?} of {elem}, {need} bytes of data, but {have} bytes follow the header (the header does not describe the file)",
                shown(path)
            );
        }
        Ok(NpyReader {
            src,
            path: path.to_path_buf(),
            elem,
            big_endian,
            fortran,
            shape,
            rows,
            d,
            data_offset,
            cursor: 0,
        })
    }

    /// Reads rows `start .. start + n` into `buf` (`n·D` elements of the
    /// file's own type `E`): row-major for C order, column-major for Fortran.
    pub fn read_rows<E: FileElem>(&mut self, start: usize, n: usize, buf: &mut [E]) -> Result<()> {
        if E::ELEM != self.elem || buf.len() != n * self.d || start + n > self.rows {
            bail!(
                "internal error: a read of rows {start}..{} does not fit {}",
                start + n,
                shown(&self.path)
            );
        }
        let size = self.elem.size() as u64;
        let context = || format!("cannot read rows {start}..{} of {}", start + n, shown(&self.path));
        match &mut self.src {
            Source::File(file) if self.fortran => {
                for (j, col) in buf.chunks_exact_mut(n.max(1)).enumerate().take(self.d) {
                    let at = self.data_offset + ((j as u64) * (self.rows as u64) + start as u64) * size;
                    file.read_exact_at(bytemuck::cast_slice_mut(col), at)
                        .with_context(context)?;
                }
            }
            Source::File(file) => {
                if start != self.cursor {
                    let at = self.data_offset + (start as u64) * (self.d as u64) * size;
                    file.seek(std::io::SeekFrom::Start(at)).with_context(context)?;
                }
                file.read_exact(bytemuck::cast_slice_mut(buf)).with_context(context)?;
            }
            // Open refused a Fortran-order pipe unless it has one row or one
            // feature, where both orders are the same bytes.
            Source::Pipe(pipe) => {
                if start != self.cursor {
                    bail!("internal error: a pipe is read in order");
                }
                let what = PipeRead {
                    path: &self.path,
                    shape: &self.shape,
                    elem: self.elem,
                    rows: self.rows,
                    d: self.d,
                };
                what.fill(pipe.as_mut(), bytemuck::cast_slice_mut(buf), start, n)?;
                if start + n == self.rows {
                    let mut extra = [0u8; 1];
                    let more = loop {
                        match pipe.read(&mut extra) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            r => break r.with_context(context)?,
                        }
                    };
                    if more > 0 {
                        bail!(
                            "{}: its header says shape {:?} of {}, but more bytes follow the last row (the header does not describe the stream)",
                            shown(&self.path),
                            self.shape,
                            self.elem
                        );
                    }
                }
            }
        }
        self.cursor = start + n;
        if self.big_endian != cfg!(target_endian = "big") {
            for v in buf.iter_mut() {
                *v = v.swap_bytes();
            }
        }
        Ok(())
    }

    /// Whether this is standard input (read once, in order).
    pub fn is_pipe(&self) -> bool {
        matches!(self.src, Source::Pipe(_))
    }

    pub fn data_bytes(&self) -> u64 {
        (self.rows as u64) * (self.d as u64) * (self.elem.size() as u64)
    }

    pub fn layout(&self) -> Layout {
        if self.fortran {
            Layout::Fortran
        } else {
            Layout::Standard
        }
    }
}

/// What a pipe's reads need to know to say where a stream ended.
struct PipeRead<'a> {
    path: &'a Path,
    shape: &'a [usize],
    elem: Elem,
    rows: usize,
    d: usize,
}

impl PipeRead<'_> {
    /// Fills `buf` (rows `start .. start + n`) from a pipe; a stream that
    /// ends early is a truncated file, named with what its header promised.
    fn fill(&self, pipe: &mut dyn Read, buf: &mut [u8], start: usize, n: usize) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match pipe.read(&mut buf[filled..]) {
                Ok(0) => {
                    let row_bytes = (self.d * self.elem.size()) as u64;
                    let got = (start as u64) * row_bytes + filled as u64;
                    bail!(
                        "{} is truncated: its header says shape {:?} of {}, {} bytes of data, but the stream ended after {got} bytes (within rows {start}..{})",
                        shown(self.path),
                        self.shape,
                        self.elem,
                        (self.rows as u64) * row_bytes,
                        start + n
                    );
                }
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read rows {start}..{} of {}", start + n, shown(self.path)));
                }
            }
        }
        Ok(())
    }
}

/// The header of an output `.npy` file of element type `F`.
pub fn header_for<F: Float>(shape: &[usize], layout: Layout) -> Header {
    Header {
        type_descriptor: <F as ndarray_npy::WritableElement>::type_descriptor(),
        layout,
        shape: shape.to_vec(),
    }
}

/// The index `[i0, …, ik, j]`, in the file's own axes, of sample `s`
/// (C- or Fortran-order flattening of the leading axes), feature `j`.
pub fn index_of(shape: &[usize], fortran: bool, s: usize, j: usize) -> Vec<usize> {
    let lead = &shape[..shape.len().saturating_sub(1)];
    let mut idx = vec![0; lead.len()];
    let mut rest = s;
    let mut take = |i: &mut usize, n: usize| {
        *i = rest % n.max(1);
        rest /= n.max(1);
    };
    if fortran {
        idx.iter_mut().zip(lead).for_each(|(i, &n)| take(i, n));
    } else {
        idx.iter_mut().zip(lead).rev().for_each(|(i, &n)| take(i, n));
    }
    idx.push(j);
    idx
}

/// A batch read by the reader thread: its first row, its rows, its buffer.
type Filled<E> = Result<(usize, usize, Vec<E>)>;

/// Calls `each(start, n, x)` for consecutive batches of `batch` rows of
/// `r` (`x`: `n·D` values of the file's element type `E`, in the file's
/// layout), in order, on this thread, while a reader thread fills the next
/// batch: reading and computing overlap, with two buffers in flight.
pub fn for_each_batch<E: FileElem>(
    mut r: NpyReader,
    batch: usize,
    path: &Path,
    mut each: impl FnMut(usize, usize, &[E]) -> Result<()>,
) -> Result<()> {
    let (d, rows) = (r.d, r.rows);
    let len = batch
        .checked_mul(d)
        .with_context(|| format!("{}: a batch of {batch} rows of {d} features is too large", shown(path)))?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Filled<E>>(1);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<E>>();
    for _ in 0..2 {
        // The receiver is alive: this cannot fail.
        let _ = empty_tx.send(vec![E::default(); len]);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut start = 0;
            while start < rows {
                // Ends when the computing side has stopped (returned or failed).
                let Ok(mut buf) = empty_rx.recv() else { return };
                let n = batch.min(rows - start);
                let msg = r.read_rows(start, n, &mut buf[..n * d]).map(|()| (start, n, buf));
                let failed = msg.is_err();
                if full_tx.send(msg).is_err() || failed {
                    return;
                }
                start += n;
            }
        });
        // Owns the channel ends, so that returning (on error too) releases the reader.
        let compute = move || -> Result<()> {
            for msg in full_rx {
                let (start, n, buf) = msg?;
                each(start, n, &buf[..n * d])?;
                // The reader may have finished: then the buffer is not needed.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        };
        compute()
    })
}

/// A `(n, d)` view of a batch buffer in the file's layout.
pub fn rows_view<T>(x: &[T], n: usize, d: usize, fortran: bool) -> Result<ndarray::ArrayView2<'_, T>> {
    use ndarray::ShapeBuilder;
    if fortran {
        ndarray::ArrayView2::from_shape((n, d).f(), x)
    } else {
        ndarray::ArrayView2::from_shape((n, d), x)
    }
    .context("internal error: batch shape")
}
