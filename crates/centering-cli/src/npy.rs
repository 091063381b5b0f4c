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

/// An open `.npy` file, its header checked against its length.
pub struct NpyReader {
    file: File,
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
    pub fn open(path: &Path) -> Result<Self> {
        let (mut file, len) = crate::output::open_input(path, "a .npy file")?;
        let header = Header::from_reader(&mut file).with_context(|| {
            format!(
                "{} is not a valid .npy file (its header cannot be read)",
                path.display()
            )
        })?;
        let data_offset = file
            .stream_position()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let descr = match &header.type_descriptor {
            py_literal::Value::String(s) => s.clone(),
            other => bail!(
                "{}: unsupported dtype {other}: expected float32/float64 or (u)int8/16/32 ('<f8', '<f4', '|u1', '<i2', ...)",
                path.display()
            ),
        };
        let unsupported = || {
            anyhow::anyhow!(
                "{}: unsupported dtype '{descr}': expected float32/float64 or (u)int8/16/32 ('<f8', '<f4', '|u1', '<i2', ...)",
                path.display()
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
                path.display()
            );
        };
        if d == 0 {
            bail!(
                "{}: shape {shape:?} has 0 features (a last axis of length 0)",
                path.display()
            );
        }
        let rows = samples
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .with_context(|| format!("{}: shape {shape:?} overflows", path.display()))?;
        let need = (rows as u128) * (d as u128) * (elem.size() as u128);
        let have = u128::from(len - data_offset);
        if have < need {
            bail!(
                "{} is truncated: its header says shape {shape:?} of {elem}, {need} bytes of data, but only {have} bytes follow the header",
                path.display()
            );
        }
        if have > need {
            bail!(
                "{}: its header says shape {shape:?} of {elem}, {need} bytes of data, but {have} bytes follow the header (the header does not describe the file)",
                path.display()
            );
        }
        Ok(NpyReader {
            file,
            path: path.to_path_buf(),
            elem,
            big_endian,
            fortran: header.layout.is_fortran(),
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
                self.path.display()
            );
        }
        let size = self.elem.size() as u64;
        let context = || format!("cannot read rows {start}..{} of {}", start + n, self.path.display());
        if self.fortran {
            for (j, col) in buf.chunks_exact_mut(n.max(1)).enumerate().take(self.d) {
                let at = self.data_offset + ((j as u64) * (self.rows as u64) + start as u64) * size;
                self.file
                    .read_exact_at(bytemuck::cast_slice_mut(col), at)
                    .with_context(context)?;
            }
        } else {
            if start != self.cursor {
                let at = self.data_offset + (start as u64) * (self.d as u64) * size;
                self.file.seek(std::io::SeekFrom::Start(at)).with_context(context)?;
            }
            self.file
                .read_exact(bytemuck::cast_slice_mut(buf))
                .with_context(context)?;
            self.cursor = start + n;
        }
        if self.big_endian != cfg!(target_endian = "big") {
            for v in buf.iter_mut() {
                *v = v.swap_bytes();
            }
        }
        Ok(())
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
    let len = batch.checked_mul(d).with_context(|| {
        format!(
            "{}: a batch of {batch} rows of {d} features is too large",
            path.display()
        )
    })?;
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
