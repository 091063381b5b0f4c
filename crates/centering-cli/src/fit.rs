//! `centering fit`: files folded batch by batch into one estimator.
//!
//! Each batch is one `partial_fit` of a `(rows, D)` view of the batch
//! buffer, so the state is bit for bit what a Rust program gets by calling
//! `partial_fit` on the same rows of the same arrays in the same order.

use std::path::Path;

use anyhow::{Context, Result, bail};
use centering::{AnyCentering, BatchSummary, Centering, CenteringError, EmaStart, Mode, NanPolicy};
use clap::CommandFactory;
use ndarray::{ArrayView1, ArrayView2};

use crate::cli::{Cli, FitArgs, NanPolicyArg, StartArg};
use crate::csvio::CsvReader;
use crate::elem::{Dtype, Elem, FileElem, Float};
use crate::npy::NpyReader;
use crate::output::{AtomicOutput, is_stdin, shown};
use crate::{progress, state};

/// The values one batch holds by default, in the cumulative mode (whose
/// result does not depend on the batch size beyond rounding): the bound on
/// the reader's memory. 1 MiB batches stay in cache between the reader
/// thread's copy and the fit; on a 3 GiB .npy they fitted ~10% faster than
/// 8 MiB ones, while 128 KiB ones paid per-call overhead (3× slower).
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;

/// Rows per batch: as given, or what fills [`DEFAULT_BATCH_BYTES`].
pub fn batch_rows(given: Option<u64>, d: usize, elem: usize) -> usize {
    match given {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => (DEFAULT_BATCH_BYTES / d.saturating_mul(elem).max(1)).max(1),
    }
}

pub use crate::cli::Format;

/// The format a path's extension names, if any.
pub fn format_by_extension(path: &Path) -> Option<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => Some(Format::Npy),
        Some("csv") => Some(Format::Csv),
        Some("parquet" | "pq") => Some(Format::Parquet),
        _ => None,
    }
}

/// The format of input `path`: `given` (`--format`), else its extension.
pub fn format_of(path: &Path, given: Option<Format>) -> Result<Format> {
    if is_stdin(path) {
        return match given {
            Some(Format::Parquet) => bail!(
                "Parquet cannot be read from standard input (-): its footer is at the end, so it needs a file (save the stream to one first)"
            ),
            Some(format) => Ok(format),
            None => bail!("reading standard input (-) needs --format npy or --format csv: a pipe has no extension"),
        };
    }
    let Some(format) = given.or_else(|| format_by_extension(path)) else {
        bail!(
            "{}: cannot tell its format: expected a .npy, .csv or .parquet extension, or --format npy|csv|parquet",
            shown(path)
        );
    };
    if format == Format::Parquet && !cfg!(feature = "parquet") {
        bail!(
            "{}: this build of centering has no Parquet support (cargo feature `parquet`)",
            shown(path)
        );
    }
    Ok(format)
}

pub fn run(args: &FitArgs) -> Result<()> {
    let formats = args
        .files
        .iter()
        .map(|f| format_of(f, args.format))
        .collect::<Result<Vec<_>>>()?;
    // Before any file is read: a later refusal would waste the fits before it.
    if args.weights.is_some()
        && let Some(path) = args
            .files
            .iter()
            .zip(&formats)
            .find_map(|(f, &t)| (t == Format::Npy).then_some(f))
    {
        bail!(
            "{}: --weights names a column, and a .npy file has none: weights are for CSV and Parquet inputs",
            shown(path)
        );
    }
    if args.files.iter().filter(|f| is_stdin(f)).count() > 1 {
        bail!("standard input (-) is given more than once: it can be read only once");
    }
    let resumed = args.resume.as_deref().map(state::load).transpose()?;
    let moving = match &resumed {
        Some(s) => s.params().mode() != Mode::Cumulative,
        None => args.momentum.is_some() || args.torch_momentum.is_some() || args.batch_average,
    };
    if moving && args.batch_rows.is_none() {
        // A usage error (exit 2): the batch is what a moving average steps on.
        let mut cli = Cli::command();
        let cmd = match cli.find_subcommand_mut("fit") {
            Some(fit) => fit,
            None => &mut cli,
        };
        cmd.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the moving and batch averages take one step per batch: --batch-rows N is required to say how many rows form one",
            )
            .exit();
    }
    let mut stdin_npy = None;
    let dtype = match (args.dtype.map(Dtype::from), &resumed) {
        (Some(asked), Some(s)) if asked.to_string() != s.dtype() => bail!(
            "--dtype {asked} disagrees with the resumed state {}, which is {}",
            args.resume
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string()),
            s.dtype()
        ),
        (Some(asked), _) => asked,
        (None, Some(s)) if s.dtype() == "f32" => Dtype::F32,
        (None, Some(_)) => Dtype::F64,
        (None, None) => match args.files.iter().zip(&formats).find(|(_, f)| **f != Format::Csv) {
            Some((path, Format::Npy)) => {
                let r = NpyReader::open(path)?;
                let elem = r.elem;
                if r.is_pipe() {
                    // Its header is read: the fit continues from this reader.
                    stdin_npy = Some(r);
                }
                match elem {
                    Elem::F32 => Dtype::F32,
                    _ => Dtype::F64,
                }
            }
            #[cfg(feature = "parquet")]
            Some((path, Format::Parquet)) => {
                crate::parquet::default_dtype(path, &args.columns, args.weights.as_deref())?
            }
            _ => Dtype::F64,
        },
    };
    let out = AtomicOutput::create(&args.output)?;
    let json = match dtype {
        Dtype::F32 => fit_all::<f32>(args, &formats, resumed, stdin_npy)?,
        Dtype::F64 => fit_all::<f64>(args, &formats, resumed, stdin_npy)?,
    };
    write_state(out, &json, &args.output)
}

fn write_state(mut out: AtomicOutput, json: &str, path: &Path) -> Result<()> {
    use std::io::Write;
    out.file_mut()
        .write_all(json.as_bytes())
        .with_context(|| format!("cannot write output {}", shown(path)))?;
    out.commit()
}

fn build<F: Float>(args: &FitArgs) -> Result<Centering<F>> {
    let mut b = Centering::<F>::builder();
    if let Some(m) = args.momentum {
        b = b.moving_average(m);
    }
    if let Some(mu) = args.torch_momentum {
        b = b.torch_momentum(mu);
    }
    if args.batch_average {
        b = b.batch_average();
    }
    if let Some(s) = args.start {
        b = b.start(match s {
            StartArg::Zero => EmaStart::Zero,
            StartArg::FirstBatch => EmaStart::FirstBatch,
            StartArg::Debiased => EmaStart::Debiased,
        });
    }
    if let Some(p) = args.nan_policy {
        b = b.nan_policy(match p {
            NanPolicyArg::Reject => NanPolicy::Reject,
            NanPolicyArg::Ignore => NanPolicy::Ignore,
        });
    }
    b.build().context("invalid parameters")
}

/// Fits every input in order; `stdin_npy` is standard input's reader when
/// its header was read already (to choose the dtype).
fn fit_all<F: Float>(
    args: &FitArgs,
    formats: &[Format],
    resumed: Option<AnyCentering>,
    mut stdin_npy: Option<NpyReader>,
) -> Result<String> {
    let mut est: Centering<F> = match resumed {
        Some(s) => s.try_into().context("the resumed state")?,
        None => build(args)?,
    };
    let weights = args.weights.as_deref();
    for (path, format) in args.files.iter().zip(formats) {
        match format {
            Format::Npy => {
                let r = match stdin_npy.take() {
                    Some(r) if is_stdin(path) => r,
                    _ => NpyReader::open(path)?,
                };
                fit_npy(&mut est, r, path, args.batch_rows)?;
            }
            Format::Csv => fit_csv(&mut est, path, &args.columns, weights, args.batch_rows)?,
            #[cfg(feature = "parquet")]
            Format::Parquet => {
                crate::parquet::fit_parquet(&mut est, path, &args.columns, weights, args.batch_rows)?;
            }
            #[cfg(not(feature = "parquet"))]
            Format::Parquet => bail!("{}: this build has no Parquet support", shown(path)),
        }
    }
    let mut json = serde_json::to_string_pretty(&est).context("cannot serialise the state")?;
    json.push('\n');
    Ok(json)
}

/// Checks that a file's `d` features agree with the estimator's.
pub fn check_features(fitted: Option<usize>, d: usize, path: &Path, what: &str) -> Result<()> {
    match fitted {
        Some(expected) if expected != d => bail!("{} has {d} features, but {what} has {expected}", shown(path)),
        _ => Ok(()),
    }
}

/// Fits `r`, the open `.npy` file `path`, in chunks of `batch_rows` rows.
pub fn fit_npy<F: Float>(est: &mut Centering<F>, r: NpyReader, path: &Path, batch_rows_arg: Option<u64>) -> Result<()> {
    check_features(est.n_features(), r.d, path, "the state (fitted on earlier inputs)")?;
    let batch = batch_rows(batch_rows_arg, r.d, std::mem::size_of::<F>()).min(r.rows);
    match (r.elem, F::DTYPE) {
        (Elem::F64, Dtype::F32) => bail!(
            "{} holds float64 values and the state is f32: they would be rounded (fit with --dtype f64, or convert the file)",
            shown(path)
        ),
        (Elem::F32, _) => fit_npy_from::<f32, F>(est, r, path, batch),
        (Elem::F64, _) => fit_npy_from::<f64, F>(est, r, path, batch),
        (Elem::U8, _) => fit_npy_from::<u8, F>(est, r, path, batch),
        (Elem::I8, _) => fit_npy_from::<i8, F>(est, r, path, batch),
        (Elem::U16, _) => fit_npy_from::<u16, F>(est, r, path, batch),
        (Elem::I16, _) => fit_npy_from::<i16, F>(est, r, path, batch),
        (Elem::U32, _) => fit_npy_from::<u32, F>(est, r, path, batch),
        (Elem::I32, _) => fit_npy_from::<i32, F>(est, r, path, batch),
        (Elem::U64, _) => fit_npy_from::<u64, F>(est, r, path, batch),
        (Elem::I64, _) => fit_npy_from::<i64, F>(est, r, path, batch),
    }
}

/// Fits a file of element type `E` into `Centering<F>`: `partial_fit` when
/// `E` is `F`, else `partial_fit_input` (integers summed exactly, `f32`
/// into `f64`), reading on a thread while fitting here.
fn fit_npy_from<E: FileElem, F: Float>(est: &mut Centering<F>, r: NpyReader, path: &Path, batch: usize) -> Result<()> {
    let (d, fortran, shape) = (r.d, r.fortran, r.shape.clone());
    let policy = est.params().nan_policy();
    let bar = progress::bytes(r.data_bytes(), &shown(path).to_string());
    let elem = r.elem.size();
    crate::npy::for_each_batch::<E>(r, batch, path, |start, n, raw| {
        let fitted = if E::ELEM == F::ELEM {
            let x: &[F] = bytemuck::cast_slice(raw);
            est.partial_fit(&crate::npy::rows_view(x, n, d, fortran)?).map(|_| ())
        } else {
            est.partial_fit_input(&crate::npy::rows_view(raw, n, d, fortran)?)
                .map(|_| ())
        };
        fitted.map_err(|e| match e {
            CenteringError::NonFinite { index, value } if index.len() == 2 => anyhow::anyhow!(
                "{}: {value} at index {:?}: {}",
                shown(path),
                crate::npy::index_of(&shape, fortran, start + index[0], index[1]),
                non_finite_hint(policy)
            ),
            e => anyhow::Error::new(e).context(format!("cannot fit rows {start}..{} of {}", start + n, shown(path))),
        })?;
        bar.inc((n * d * elem) as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// What the NaN policy says about a rejected value.
pub fn non_finite_hint(policy: NanPolicy) -> &'static str {
    match policy {
        NanPolicy::Reject => "NaN policy reject refuses NaN and infinities (--nan-policy ignore skips NaN)",
        NanPolicy::Ignore => "infinities are refused under every NaN policy",
        _ => "the NaN policy refuses it",
    }
}

/// Fits `path`, a CSV file, in batches of `batch_rows` rows, each row
/// weighted by its cell in column `weights` when given: read as f64 (exactly,
/// whatever `F`), each batch one `BatchSummary::from_array_weighted`.
pub fn fit_csv<F: Float>(
    est: &mut Centering<F>,
    path: &Path,
    columns: &[String],
    weights: Option<&str>,
    batch_rows_arg: Option<u64>,
) -> Result<()> {
    let mut r = CsvReader::open(path, columns, weights)?;
    let d = r.d();
    check_features(est.n_features(), d, path, "the state (fitted on earlier inputs)")?;
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let policy = est.params().nan_policy();
    let mut buf: Vec<F> = Vec::new();
    let bar = progress::bytes(r.len, &shown(path).to_string());
    loop {
        let n = r.read_batch(batch, policy, &mut buf, None)?;
        if n == 0 {
            break;
        }
        let view = ArrayView2::from_shape((n, d), &buf[..]).context("internal error: batch shape")?;
        let fitted = if weights.is_some() {
            BatchSummary::from_array_weighted(&view, &ArrayView1::from(&r.weights[..]), policy)
                .and_then(|s| est.partial_fit_summary(&s).map(|_| ()))
        } else {
            est.partial_fit(&view).map(|_| ())
        };
        fitted.map_err(|e| match e {
            CenteringError::NonFinite { index, value } if index.len() == 2 => anyhow::anyhow!(
                "{}: line {}, column {:?}: {value}: {}",
                shown(path),
                r.lines.get(index[0]).copied().unwrap_or(0),
                r.column_name(index[1]),
                non_finite_hint(policy)
            ),
            e => anyhow::Error::new(e).context(format!("cannot fit {}", shown(path))),
        })?;
        bar.set_position(r.position());
    }
    bar.finish_and_clear();
    Ok(())
}
