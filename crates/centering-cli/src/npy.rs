//! `.npy` files (float32/float64, and the integers the core sums exactly:
//! (u)int8/16/32/64, either byte order) read in bounded memory: the header parsed by `ndarray-npy`,
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
    /// The bytes of data the header promises (`rows·D·size`, checked).
    bytes: u64,
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
                "{}: unsupported dtype {other}: expected float32/float64 or (u)int8/16/32/64 ('<f8', '<f4', '|u1', '<i2', ...)",
                shown(path)
            ),
        };
        let unsupported = || {
            anyhow::anyhow!(
                "{}: unsupported dtype '{descr}': expected float32/float64 or (u)int8/16/32/64 ('<f8', '<f4', '|u1', '<i2', ...)",
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
            "u8" => Elem::U64,
            "i8" => Elem::I64,
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
        // Checked: a header's shape is any numbers (a pipe's is checked
        // against nothing before the reads).
        let bytes = (rows as u64)
            .checked_mul(d as u64)
            .and_then(|v| v.checked_mul(elem.size() as u64));
        match (len, bytes) {
            (Some(len), _) => {
                let have = len - data_offset;
                match bytes {
                    Some(need) if need == have => {}
                    Some(need) if need > have => bail!(
                        "{} is truncated: its header says shape {shape:?} of {elem}, {need} bytes of data, but only {have} bytes follow the header",
                        shown(path)
                    ),
                    Some(need) => bail!(
                        "{}: its header says shape {shape:?} of {elem}, {need} bytes of data, but {have} bytes follow the header (the header does not describe the file)",
                        shown(path)
                    ),
                    None => bail!(
                        "{} is truncated: its header says shape {shape:?} of {elem}, 2^64 bytes of data or more, but only {have} bytes follow the header",
                        shown(path)
                    ),
                }
            }
            (None, None) => bail!(
                "{}: its header says shape {shape:?} of {elem}: 2^64 bytes of data or more, which no stream holds (the header does not describe the stream)",
                shown(path)
            ),
            (None, Some(_)) if fortran && rows > 1 && d > 1 => bail!(
                "{}: a Fortran-order .npy cannot be read from a pipe (each feature is stored after the previous one, all rows long): give it as a file",
                shown(path)
            ),
            (None, Some(_)) => {}
        }
        let mut r = NpyReader {
            src,
            path: path.to_path_buf(),
            elem,
            big_endian,
            fortran,
            shape,
            rows,
            d,
            data_offset,
            bytes: bytes.unwrap_or(0),
            cursor: 0,
        };
        if rows == 0
            && let Source::Pipe(pipe) = &mut r.src
        {
            // No read of rows will look for the end: it must be here.
            expect_end(pipe.as_mut(), path, &r.shape, elem)?;
        }
        Ok(r)
    }

    /// Reads rows `start .. start + n` into `buf[..n·D]` (elements of the
    /// file's own type `E`): row-major for C order, column-major for
    /// Fortran. `buf` is grown to `n·D` elements if shorter, within its
    /// capacity (reserved by [`reserve_batch`]); from a pipe only as the
    /// bytes arrive, so that a header promising more than the stream holds
    /// costs no more memory than the stream.
    pub fn read_rows<E: FileElem>(&mut self, start: usize, n: usize, buf: &mut Vec<E>) -> Result<()> {
        let want = n.checked_mul(self.d);
        if E::ELEM != self.elem || want.is_none() || start.checked_add(n).is_none_or(|end| end > self.rows) {
            bail!(
                "internal error: a read of rows {start}..{} does not fit {}",
                start + n,
                shown(&self.path)
            );
        }
        let want = want.unwrap_or(0);
        if !self.is_pipe() && buf.len() < want {
            buf.resize(want, E::default());
        }
        let size = self.elem.size() as u64;
        let context = || format!("cannot read rows {start}..{} of {}", start + n, shown(&self.path));
        match &mut self.src {
            Source::File(file) if self.fortran => {
                for (j, col) in buf[..want].chunks_exact_mut(n.max(1)).enumerate().take(self.d) {
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
                file.read_exact(bytemuck::cast_slice_mut(&mut buf[..want]))
                    .with_context(context)?;
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
                    bytes: self.bytes,
                    d: self.d,
                };
                what.fill(pipe.as_mut(), buf, start, n)?;
                if start + n == self.rows {
                    expect_end(pipe.as_mut(), &self.path, &self.shape, self.elem)?;
                }
            }
        }
        self.cursor = start + n;
        if self.big_endian != cfg!(target_endian = "big") {
            for v in buf[..want].iter_mut() {
                *v = v.swap_bytes();
            }
        }
        Ok(())
    }

    /// Whether this is standard input (read once, in order).
    pub fn is_pipe(&self) -> bool {
        matches!(self.src, Source::Pipe(_))
    }

    /// The bytes of data: `rows·D·size`, checked against overflow when opened.
    pub fn data_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn layout(&self) -> Layout {
        if self.fortran {
            Layout::Fortran
        } else {
            Layout::Standard
        }
    }
}

/// Reads one byte past the end of a pipe's data: there must be none.
fn expect_end(pipe: &mut dyn Read, path: &Path, shape: &[usize], elem: Elem) -> Result<()> {
    let mut extra = [0u8; 1];
    let more = loop {
        match pipe.read(&mut extra) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => break r.with_context(|| format!("cannot read {}", shown(path)))?,
        }
    };
    if more > 0 {
        bail!(
            "{}: its header says shape {shape:?} of {elem}, but more bytes follow the last row (the header does not describe the stream)",
            shown(path)
        );
    }
    Ok(())
}

/// What a pipe's reads need to know to say where a stream ended.
struct PipeRead<'a> {
    path: &'a Path,
    shape: &'a [usize],
    elem: Elem,
    /// All the data's bytes, as the header says (checked when opened).
    bytes: u64,
    d: usize,
}

/// How far a pipe's buffer grows ahead of the bytes read: 1 MiB.
const PIPE_GROWTH_BYTES: usize = 1 << 20;

impl PipeRead<'_> {
    /// Fills `buf[..n·D]` (rows `start .. start + n`) from a pipe, growing
    /// `buf` at most [`PIPE_GROWTH_BYTES`] ahead of the bytes read; a
    /// stream that ends early is a truncated file, named with what its
    /// header promised.
    fn fill<E: FileElem>(&self, pipe: &mut dyn Read, buf: &mut Vec<E>, start: usize, n: usize) -> Result<()> {
        let size = std::mem::size_of::<E>();
        // Checked by `read_rows`.
        let want = n.saturating_mul(self.d);
        let total = want.saturating_mul(size);
        let step = (PIPE_GROWTH_BYTES / size).max(1);
        let mut filled = 0;
        while filled < total {
            if filled == buf.len().min(want) * size {
                let grown = buf.len().saturating_add(step).min(want);
                buf.resize(grown, E::default());
            }
            let end = buf.len().min(want);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf[..end]);
            match pipe.read(&mut bytes[filled..]) {
                Ok(0) => {
                    // At most `self.bytes`, which fits: rows before `start`
                    // and this batch's are all within the header's shape.
                    let row_bytes = (self.d as u64).saturating_mul(size as u64);
                    let got = (start as u64).saturating_mul(row_bytes).saturating_add(filled as u64);
                    bail!(
                        "{} is truncated: its header says shape {:?} of {}, {} bytes of data, but the stream ended after {got} bytes (within rows {start}..{})",
                        shown(self.path),
                        self.shape,
                        self.elem,
                        self.bytes,
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

/// Reserves room for a batch of `rows` rows of `d` features of `E` in
/// `buf` (beyond its length), fallibly: a header may promise rows of any
/// length, and an allocation that fails is an error naming the file, not
/// an abort (which would leave the output's temporary file behind).
pub fn reserve_batch<E: FileElem>(buf: &mut Vec<E>, rows: usize, d: usize, path: &Path) -> Result<()> {
    let elem = E::ELEM;
    let bytes = (rows as u128) * (d as u128) * (elem.size() as u128);
    let hint = if rows > 1 {
        "a smaller --batch-rows needs less memory"
    } else {
        "a batch holds at least one row, and this one does not fit in memory"
    };
    let too_large = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "{}: cannot allocate a batch of {rows} rows of {d} features of {elem} ({bytes} bytes): {e} ({hint})",
            shown(path)
        )
    };
    let len = rows.checked_mul(d).ok_or_else(|| too_large(&"capacity overflow"))?;
    buf.try_reserve_exact(len.saturating_sub(buf.len()))
        .map_err(|e| too_large(&e))
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
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Filled<E>>(1);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<E>>();
    for _ in 0..2 {
        let mut buf = Vec::new();
        reserve_batch(&mut buf, batch, d, path)?;
        // The receiver is alive: this cannot fail.
        let _ = empty_tx.send(buf);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut start = 0;
            while start < rows {
                // Ends when the computing side has stopped (returned or failed).
                let Ok(mut buf) = empty_rx.recv() else { return };
                let n = batch.min(rows - start);
                let msg = r.read_rows(start, n, &mut buf).map(|()| (start, n, buf));
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
