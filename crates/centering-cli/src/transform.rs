//! `centering transform`: a file minus a fitted state's mean, streamed
//! chunk by chunk into a new file of the same format.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use centering::{AnyCentering, Centering, NanPolicy};
use ndarray::{ArrayView2, ArrayViewMut2, Ix2, ShapeBuilder, StrideShape};

use crate::cli::TransformArgs;
use crate::csvio::CsvReader;
use crate::elem::{Dtype, Elem, FileElem, Float};
use crate::fit::{Format, batch_rows, check_features, format_by_extension, format_of};
use crate::npy::{NpyReader, header_for};
use crate::output::{AtomicOutput, shown};
use crate::{progress, state};

pub fn run(args: &TransformArgs) -> Result<()> {
    if crate::output::is_stdin(&args.output) {
        bail!("cannot write output -: outputs are files (standard output is not supported), name one");
    }
    let format = format_of(&args.file, args.format)?;
    let out_format = match (format_by_extension(&args.output), args.format) {
        (Some(f), _) => f,
        (None, Some(f)) => f,
        (None, None) => bail!(
            "output {}: cannot tell its format: expected a .npy, .csv or .parquet extension, or --format npy|csv|parquet",
            args.output.display()
        ),
    };
    if out_format != format {
        bail!(
            "the output {} must have the input's format ({}): transform does not convert between formats",
            args.output.display(),
            format.name()
        );
    }
    let any = state::load(&args.state)?;
    match any {
        AnyCentering::F32(c) => transform::<f32>(&c, args, format),
        AnyCentering::F64(c) => transform::<f64>(&c, args, format),
        _ => bail!(
            "{}: a state of an element type this build does not know",
            args.state.display()
        ),
    }
}

fn transform<F: Float>(est: &Centering<F>, args: &TransformArgs, format: Format) -> Result<()> {
    if !est.is_fitted() {
        bail!(
            "the state {} is not fitted (it has seen no samples): there is no mean to subtract",
            args.state.display()
        );
    }
    let what = format!("the state {}", args.state.display());
    match format {
        Format::Npy => transform_npy(est, &args.file, &args.output, args.batch_rows, &what),
        Format::Csv => transform_csv(est, &args.file, &args.output, &args.columns, args.batch_rows, &what),
        #[cfg(feature = "parquet")]
        Format::Parquet => {
            crate::parquet::transform_parquet(est, &args.file, &args.output, &args.columns, args.batch_rows, &what)
        }
        #[cfg(not(feature = "parquet"))]
        Format::Parquet => bail!("{}: this build has no Parquet support", args.file.display()),
    }
}

/// `input` (.npy) minus the mean into `output` (.npy of dtype `F`, the
/// input's shape and order).
pub fn transform_npy<F: Float>(
    est: &Centering<F>,
    input: &Path,
    output: &Path,
    batch_rows_arg: Option<u64>,
    what: &str,
) -> Result<()> {
    let r = NpyReader::open(input)?;
    check_features(est.n_features(), r.d, input, what)?;
    let mut out = AtomicOutput::create(output)?;
    let err = || format!("cannot write output {}", output.display());
    let header = header_for::<F>(&r.shape, r.layout())
        .to_bytes()
        .context("cannot format the output's .npy header")?;
    out.file_mut().write_all(&header).with_context(err)?;
    let offset = header.len() as u64;
    let size = std::mem::size_of::<F>() as u64;
    let (d, total, fortran) = (r.d, r.rows, r.fortran);
    if fortran {
        // The input's bytes fit a u64, but the output's elements may be
        // wider: checked too.
        let len = (total as u64)
            .checked_mul(d as u64)
            .and_then(|v| v.checked_mul(size))
            .and_then(|v| v.checked_add(offset))
            .with_context(|| {
                format!(
                    "cannot write output {}: shape {:?} is too large",
                    output.display(),
                    r.shape
                )
            })?;
        out.file().set_len(len).with_context(err)?;
    }
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>()).min(total);
    // Grown by the first batch, once its input is read (allocated fallibly).
    let mut y: Vec<F> = Vec::new();
    let elem = r.elem;
    match (elem, F::DTYPE) {
        (Elem::F64, Dtype::F32) => bail!(
            "{} holds float64 values and {what} is f32: they would be rounded",
            shown(input)
        ),
        (Elem::F32, _) => transform_batches::<f32, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::F64, _) => transform_batches::<f64, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::U8, _) => transform_batches::<u8, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::I8, _) => transform_batches::<i8, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::U16, _) => transform_batches::<u16, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::I16, _) => transform_batches::<i16, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::U32, _) => transform_batches::<u32, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::I32, _) => transform_batches::<i32, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::U64, _) => transform_batches::<u64, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
        (Elem::I64, _) => transform_batches::<i64, F>(est, r, input, batch, &mut y, &mut out, offset, output)?,
    }
    out.commit()
}

/// Centres the batches of `r` into `out` (the data after `offset`): `transform_into`
/// when `E` is `F`, else `transform_input_into`.
#[allow(clippy::too_many_arguments)]
fn transform_batches<E: FileElem, F: Float>(
    est: &Centering<F>,
    r: NpyReader,
    input: &Path,
    batch: usize,
    y: &mut Vec<F>,
    out: &mut AtomicOutput,
    offset: u64,
    output: &Path,
) -> Result<()> {
    let err = || format!("cannot write output {}", output.display());
    let (d, total, fortran) = (r.d, r.rows, r.fortran);
    let size = std::mem::size_of::<F>() as u64;
    let elem = r.elem.size();
    let bar = progress::bytes(r.data_bytes(), &shown(input).to_string());
    crate::npy::for_each_batch::<E>(r, batch, input, |start, n, raw| {
        if y.len() < n * d {
            crate::npy::reserve_batch(y, batch, d, output)?;
            y.resize(n * d, F::zero());
        }
        let ys = &mut y[..n * d];
        let shape = || -> StrideShape<Ix2> { if fortran { (n, d).f().into() } else { (n, d).into() } };
        let mut yv = ArrayViewMut2::from_shape(shape(), &mut *ys).context("internal error: batch shape")?;
        let done = if E::ELEM == F::ELEM {
            let xs: &[F] = bytemuck::cast_slice(raw);
            est.transform_into(&crate::npy::rows_view(xs, n, d, fortran)?, &mut yv)
        } else {
            est.transform_input_into(&crate::npy::rows_view(raw, n, d, fortran)?, &mut yv)
        };
        done.with_context(|| format!("cannot transform rows {start}..{} of {}", start + n, shown(input)))?;
        if fortran {
            for (j, col) in ys.chunks_exact(n).enumerate() {
                let at = offset + ((j as u64) * (total as u64) + start as u64) * size;
                out.file()
                    .write_all_at(bytemuck::cast_slice(col), at)
                    .with_context(err)?;
            }
        } else {
            out.file_mut().write_all(bytemuck::cast_slice(ys)).with_context(err)?;
        }
        bar.inc((n * d * elem) as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// `input` (CSV) with its chosen columns centred into `output` (CSV); the
/// other columns are copied as they are, empty cells stay empty.
pub fn transform_csv<F: Float>(
    est: &Centering<F>,
    input: &Path,
    output: &Path,
    columns: &[String],
    batch_rows_arg: Option<u64>,
    what: &str,
) -> Result<()> {
    let mut r = CsvReader::open(input, columns, None)?;
    let d = r.d();
    check_features(est.n_features(), d, input, what)?;
    let mut feature_of = vec![None; r.headers.len()];
    for (j, &c) in r.columns.iter().enumerate() {
        if let Some(slot) = feature_of.get_mut(c) {
            *slot = Some(j);
        }
    }
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let mut out = AtomicOutput::create(output)?;
    let err = || format!("cannot write output {}", output.display());
    {
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(out.file_mut()));
        w.write_byte_record(&r.headers).with_context(err)?;
        let (mut x, mut y, mut records) = (Vec::<F>::new(), Vec::<F>::new(), Vec::new());
        let mut rec = csv::ByteRecord::new();
        let mut cell = String::new();
        let bar = progress::bytes(r.len, &shown(input).to_string());
        loop {
            let n = r.read_batch(batch, NanPolicy::Ignore, &mut x, Some(&mut records))?;
            if n == 0 {
                break;
            }
            y.clear();
            y.resize(n * d, F::zero());
            let xv = ArrayView2::from_shape((n, d), &x[..]).context("internal error: batch shape")?;
            let mut yv = ArrayViewMut2::from_shape((n, d), &mut y[..]).context("internal error: batch shape")?;
            est.transform_into(&xv, &mut yv)
                .with_context(|| format!("cannot transform {}", shown(input)))?;
            for (i, record) in records.iter().enumerate() {
                rec.clear();
                for (c, field) in record.iter().enumerate() {
                    match feature_of.get(c).copied().flatten() {
                        Some(j) if !field.is_empty() => {
                            cell.clear();
                            y[i * d + j].write_shortest(&mut cell);
                            rec.push_field(cell.as_bytes());
                        }
                        _ => rec.push_field(field),
                    }
                }
                w.write_byte_record(&rec).with_context(err)?;
            }
            bar.set_position(r.position());
        }
        bar.finish_and_clear();
        w.flush().with_context(err)?;
    }
    out.commit()
}
