//! Parquet files through arrow-rs: a record-batch reader with a projection
//! (only the fitted columns are decoded) and a bounded batch size. Each
//! record batch is one batch of the fit: its Float32/Float64 columns and
//! their validity bitmaps go to `BatchSummary::from_columns` without an
//! interleaving copy (f32 columns widen into an f64 state with one copy),
//! and nulls are missing values, as NaN is.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use centering::{BatchSummary, Centering, CenteringError, Validity};
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::elem::{Dtype, Float};
use crate::fit::{batch_rows, check_features};
use crate::output::AtomicOutput;
use crate::progress;

/// An open Parquet file and the columns chosen from it.
pub struct ParquetInput {
    pub reader: ParquetRecordBatchReader,
    /// The chosen columns' names, in feature order.
    pub names: Vec<String>,
    /// Their element types.
    pub dtypes: Vec<Dtype>,
    pub rows: u64,
    pub schema: Arc<Schema>,
}

fn dtype_of(t: &DataType) -> Option<Dtype> {
    match t {
        DataType::Float32 => Some(Dtype::F32),
        DataType::Float64 => Some(Dtype::F64),
        _ => None,
    }
}

/// Opens `path`, choosing the columns `names` (default: every Float32 and
/// Float64 column); `project` decodes only those.
pub fn open(path: &Path, names: &[String], batch: usize, project: bool) -> Result<ParquetInput> {
    let (file, _) = crate::output::open_input(path, "a Parquet file")?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a valid Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let fields = schema.fields();
    let chosen: Vec<usize> = if names.is_empty() {
        (0..fields.len())
            .filter(|&i| dtype_of(fields[i].data_type()).is_some())
            .collect()
    } else {
        names
            .iter()
            .map(|name| {
                fields.iter().position(|f| f.name() == name).with_context(|| {
                    let have: Vec<_> = fields.iter().map(|f| f.name().clone()).collect();
                    format!("{}: no column named {name:?} (the file has {have:?})", path.display())
                })
            })
            .collect::<Result<_>>()?
    };
    if chosen.is_empty() {
        bail!("{}: no Float32 or Float64 column to fit", path.display());
    }
    let dtypes = chosen
        .iter()
        .map(|&i| {
            dtype_of(fields[i].data_type()).with_context(|| {
                format!(
                    "{}: column {:?} is {}: expected Float32 or Float64",
                    path.display(),
                    fields[i].name(),
                    fields[i].data_type()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let names = chosen.iter().map(|&i| fields[i].name().clone()).collect();
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let builder = if project {
        let mask = ProjectionMask::roots(builder.parquet_schema(), chosen.iter().copied());
        builder.with_projection(mask)
    } else {
        builder
    };
    let reader = builder
        .with_batch_size(batch.max(1))
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(ParquetInput {
        reader,
        names,
        dtypes,
        rows,
        schema,
    })
}

/// The dtype of a state fitted on these columns by default: f32 when all are.
pub fn default_dtype(path: &Path, names: &[String]) -> Result<Dtype> {
    let input = open(path, names, 1, true)?;
    Ok(if input.dtypes.iter().all(|&d| d == Dtype::F32) {
        Dtype::F32
    } else {
        Dtype::F64
    })
}

/// A column as `&[F]` (no copy when its type is `F`), widening f32 into
/// `spill` when `F` is f64.
fn values<'a, F: Float>(col: &'a ArrayRef, spill: &'a mut Vec<F>, path: &Path, name: &str) -> Result<&'a [F]> {
    match (col.data_type(), F::DTYPE) {
        (DataType::Float64, Dtype::F64) => Ok(bytemuck::cast_slice(col.as_primitive::<Float64Type>().values())),
        (DataType::Float32, Dtype::F32) => Ok(bytemuck::cast_slice(col.as_primitive::<Float32Type>().values())),
        (DataType::Float32, Dtype::F64) => {
            spill.clear();
            spill.extend(
                col.as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|&v| <F as num_traits::NumCast>::from(v).unwrap_or_else(F::nan)),
            );
            Ok(&spill[..])
        }
        (t, _) => bail!(
            "{}: column {name:?} is {t} and the state is {}: float64 values are not narrowed (fit with --dtype f64)",
            path.display(),
            F::DTYPE
        ),
    }
}

/// Fits `path` batch by batch (each record batch of `batch_rows` rows one `partial_fit`).
pub fn fit_parquet<F: Float>(
    est: &mut Centering<F>,
    path: &Path,
    names: &[String],
    batch_rows_arg: Option<u64>,
) -> Result<()> {
    let probe = open(path, names, 1, true)?;
    let d = probe.names.len();
    check_features(est.n_features(), d, path, "the state (fitted on earlier inputs)")?;
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let input = open(path, names, batch, true)?;
    let policy = est.params().nan_policy();
    let bar = progress::bytes(input.rows, &format!("{} (rows)", path.display()));
    let mut spills: Vec<Vec<F>> = vec![Vec::new(); d];
    let mut row0 = 0u64;
    for batch in input.reader {
        let batch = batch.with_context(|| format!("cannot read {} after row {row0}", path.display()))?;
        let n = batch.num_rows();
        let cols: Vec<&ArrayRef> = input
            .names
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .with_context(|| format!("{}: column {name:?} missing from a batch", path.display()))
            })
            .collect::<Result<_>>()?;
        let validity: Vec<Option<Validity<'_>>> = cols
            .iter()
            .map(|c| c.nulls().map(|nb| Validity::new(nb.validity(), nb.offset())))
            .collect();
        let slices = cols
            .iter()
            .zip(spills.iter_mut())
            .zip(&input.names)
            .map(|((c, spill), name)| values(c, spill, path, name))
            .collect::<Result<Vec<&[F]>>>()?;
        let located = |e: CenteringError| match e {
            CenteringError::NullValue { index } if index.len() == 2 => anyhow::anyhow!(
                "{}: row {}, column {:?}: a null (a missing value) under NaN policy reject; --nan-policy ignore skips missing values",
                path.display(),
                row0 + index[0] as u64,
                input.names[index[1]]
            ),
            CenteringError::NonFinite { index, value } if index.len() == 2 => anyhow::anyhow!(
                "{}: row {}, column {:?}: {value}: {}",
                path.display(),
                row0 + index[0] as u64,
                input.names[index[1]],
                crate::fit::non_finite_hint(policy)
            ),
            e => anyhow::Error::new(e).context(format!("cannot fit {}", path.display())),
        };
        let summary = BatchSummary::from_columns(&slices, &validity, policy).map_err(located)?;
        est.partial_fit_summary(&summary).map_err(located)?;
        row0 += n as u64;
        bar.set_position(row0);
    }
    bar.finish_and_clear();
    Ok(())
}

/// `input` with its chosen columns centred (as type `F`, nulls kept) into
/// `output`; the other columns are copied as they are.
pub fn transform_parquet<F: Float>(
    est: &Centering<F>,
    input: &Path,
    output: &Path,
    names: &[String],
    batch_rows_arg: Option<u64>,
    what: &str,
) -> Result<()> {
    let probe = open(input, names, 1, true)?;
    let d = probe.names.len();
    check_features(est.n_features(), d, input, what)?;
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let src = open(input, names, batch, false)?;
    let out_type = match F::DTYPE {
        Dtype::F32 => DataType::Float32,
        Dtype::F64 => DataType::Float64,
    };
    let fields: Vec<Field> = src
        .schema
        .fields()
        .iter()
        .map(|f| {
            if src.names.contains(f.name()) {
                Field::new(f.name(), out_type.clone(), f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, src.schema.metadata().clone()));
    let mut out = AtomicOutput::create(output)?;
    let err = || format!("cannot write output {}", output.display());
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(out.file_mut(), schema.clone(), Some(props)).with_context(err)?;
    let (mut x, mut y): (Vec<F>, Vec<F>) = (Vec::new(), Vec::new());
    let mut spill = Vec::new();
    let bar = progress::bytes(src.rows, &format!("{} (rows)", input.display()));
    let mut row0 = 0u64;
    for b in src.reader {
        let b: RecordBatch = b.with_context(|| format!("cannot read {} after row {row0}", input.display()))?;
        let n = b.num_rows();
        x.clear();
        for name in &src.names {
            let col = b
                .column_by_name(name)
                .with_context(|| format!("{}: column {name:?} missing", input.display()))?;
            x.extend_from_slice(values(col, &mut spill, input, name)?);
        }
        y.clear();
        y.resize(n * d, F::zero());
        let xv = ArrayView2::from_shape((n, d).f(), &x[..]).context("internal error: batch shape")?;
        let mut yv = ArrayViewMut2::from_shape((n, d).f(), &mut y[..]).context("internal error: batch shape")?;
        est.transform_into(&xv, &mut yv)
            .with_context(|| format!("cannot transform {}", input.display()))?;
        let columns: Vec<ArrayRef> = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| match src.names.iter().position(|nm| nm == f.name()) {
                Some(j) => {
                    let part = &y[j * n..(j + 1) * n];
                    let nulls = c.nulls().cloned();
                    let arr: ArrayRef = match F::DTYPE {
                        Dtype::F64 => Arc::new(Float64Array::new(
                            bytemuck::cast_slice::<F, f64>(part).to_vec().into(),
                            nulls,
                        )),
                        Dtype::F32 => Arc::new(Float32Array::new(
                            bytemuck::cast_slice::<F, f32>(part).to_vec().into(),
                            nulls,
                        )),
                    };
                    arr
                }
                None => c.clone(),
            })
            .collect();
        let rb = RecordBatch::try_new(schema.clone(), columns).with_context(err)?;
        writer.write(&rb).with_context(err)?;
        row0 += n as u64;
        bar.set_position(row0);
    }
    bar.finish_and_clear();
    writer.close().with_context(err)?;
    out.commit()
}
