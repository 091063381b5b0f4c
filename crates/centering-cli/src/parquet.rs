//! Parquet files through arrow-rs: a record-batch reader with a projection
//! (only the fitted columns are decoded) and a bounded batch size. Each
//! record batch is one batch of the fit: its columns and their validity
//! bitmaps go to `BatchSummary::from_columns` as Arrow holds them, without
//! an interleaving copy, and nulls are missing values, as NaN is.
//!
//! Column types: Float16/32/64 and (U)Int8/16/32/64 are fed to the core as
//! they are (integers summed exactly, Int64/UInt64 — pandas' default
//! integer type — too). Columns of different types are widened, exactly,
//! to one type the core sums (`from_columns` takes one): integers to the
//! narrowest integer type holding them all, floats to the widest float;
//! integers with floats (or uint64 with signed integers) to float64, summed
//! as floats then are. Where 64-bit integers are read as float64 (mixed
//! with floats or with the other signedness, or under `--weights`), a value
//! beyond ±2^53 is an error naming its row, never a silently rounded sum.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
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

/// The type of a Parquet column the command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl ColType {
    fn of(t: &DataType) -> Option<Self> {
        Some(match t {
            DataType::UInt8 => ColType::U8,
            DataType::Int8 => ColType::I8,
            DataType::UInt16 => ColType::U16,
            DataType::Int16 => ColType::I16,
            DataType::UInt32 => ColType::U32,
            DataType::Int32 => ColType::I32,
            DataType::UInt64 => ColType::U64,
            DataType::Int64 => ColType::I64,
            DataType::Float16 => ColType::F16,
            DataType::Float32 => ColType::F32,
            DataType::Float64 => ColType::F64,
            _ => return None,
        })
    }

    fn is_float(self) -> bool {
        matches!(self, ColType::F16 | ColType::F32 | ColType::F64)
    }

    /// The type the core sums this column as, on its own: itself.
    fn kernel(self) -> Kern {
        match self {
            ColType::U8 => Kern::U8,
            ColType::I8 => Kern::I8,
            ColType::U16 => Kern::U16,
            ColType::I16 => Kern::I16,
            ColType::U32 => Kern::U32,
            ColType::I32 => Kern::I32,
            ColType::U64 => Kern::U64,
            ColType::I64 => Kern::I64,
            ColType::F16 => Kern::F16,
            ColType::F32 => Kern::F32,
            ColType::F64 => Kern::F64,
        }
    }
}

/// An element type the core sums (an [`centering::Input`]), as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kern {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl Kern {
    /// (bits, signed) of an integer type; `None` for a float.
    fn int(self) -> Option<(u32, bool)> {
        match self {
            Kern::U8 => Some((8, false)),
            Kern::I8 => Some((8, true)),
            Kern::U16 => Some((16, false)),
            Kern::I16 => Some((16, true)),
            Kern::U32 => Some((32, false)),
            Kern::I32 => Some((32, true)),
            Kern::U64 => Some((64, false)),
            Kern::I64 => Some((64, true)),
            Kern::F16 | Kern::F32 | Kern::F64 => None,
        }
    }
}

/// The one type columns of `types` are summed as: every value of every
/// column converts to it exactly (see the module docs).
pub fn common_kernel(types: &[ColType]) -> Kern {
    let kernels: Vec<Kern> = types.iter().map(|t| t.kernel()).collect();
    let Some(&first) = kernels.first() else {
        return Kern::F64;
    };
    if kernels.iter().all(|&k| k == first) {
        return first;
    }
    let ints: Vec<(u32, bool)> = kernels.iter().filter_map(|k| k.int()).collect();
    if ints.is_empty() {
        return if kernels.contains(&Kern::F64) {
            Kern::F64
        } else {
            Kern::F32
        };
    }
    if ints.len() < kernels.len() {
        return Kern::F64;
    }
    let unsigned = ints.iter().filter(|i| !i.1).map(|i| i.0).max().unwrap_or(0);
    let signed = ints.iter().filter(|i| i.1).map(|i| i.0).max().unwrap_or(0);
    if signed == 0 {
        return match unsigned {
            8 => Kern::U8,
            16 => Kern::U16,
            32 => Kern::U32,
            _ => Kern::U64,
        };
    }
    match signed.max(2 * unsigned) {
        8 => Kern::I8,
        16 => Kern::I16,
        32 => Kern::I32,
        64 => Kern::I64,
        _ => Kern::F64,
    }
}

/// An element type columns are handed to the core as.
pub trait Kernel: centering::Input + Default + arrow_array::ArrowNativeTypeOp {
    /// Its Arrow type: a column of that type is borrowed as it is.
    type Arrow: ArrowPrimitiveType<Native = Self>;
    /// An integer of a column being widened (exact by [`common_kernel`]'s choice).
    fn from_i64(v: i64) -> Self;
    /// A float of a column being widened (exact by [`common_kernel`]'s choice).
    fn from_f64(v: f64) -> Self;
}

macro_rules! int_kernel {
    ($($t:ty => $a:ty),*) => {$(
        impl Kernel for $t {
            type Arrow = $a;
            #[allow(clippy::cast_possible_truncation)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[allow(clippy::cast_possible_truncation)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    )*};
}

int_kernel!(
    u8 => UInt8Type,
    i8 => Int8Type,
    u16 => UInt16Type,
    i16 => Int16Type,
    u32 => UInt32Type,
    i32 => Int32Type,
    u64 => UInt64Type,
    i64 => Int64Type
);

impl Kernel for f32 {
    type Arrow = Float32Type;
    fn from_i64(v: i64) -> Self {
        v as f32
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Kernel for f64 {
    type Arrow = Float64Type;
    fn from_i64(v: i64) -> Self {
        v as f64
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Kernel for half::f16 {
    type Arrow = Float16Type;
    fn from_i64(v: i64) -> Self {
        half::f16::from_f64(v as f64)
    }
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
}

/// Calls `$f::<K, $F>(args)` with `K` the element type of kernel `$k`.
macro_rules! with_kernel {
    ($k:expr, $f:ident::<_, $F:ty>($($arg:expr),* $(,)?)) => {
        match $k {
            Kern::U8 => $f::<u8, $F>($($arg),*),
            Kern::I8 => $f::<i8, $F>($($arg),*),
            Kern::U16 => $f::<u16, $F>($($arg),*),
            Kern::I16 => $f::<i16, $F>($($arg),*),
            Kern::U32 => $f::<u32, $F>($($arg),*),
            Kern::I32 => $f::<i32, $F>($($arg),*),
            Kern::U64 => $f::<u64, $F>($($arg),*),
            Kern::I64 => $f::<i64, $F>($($arg),*),
            Kern::F16 => $f::<half::f16, $F>($($arg),*),
            Kern::F32 => $f::<f32, $F>($($arg),*),
            Kern::F64 => $f::<f64, $F>($($arg),*),
        }
    };
}

/// An open Parquet file and the columns chosen from it.
pub struct ParquetInput {
    pub reader: ParquetRecordBatchReader,
    /// The chosen columns' names, in feature order.
    pub names: Vec<String>,
    /// Their types.
    pub types: Vec<ColType>,
    /// The weights column (`fit --weights`), not a feature.
    pub weight: Option<String>,
    pub rows: u64,
    pub schema: Arc<Schema>,
}

const NUMERIC: &str = "Float16/32/64 or (U)Int8/16/32/64";

/// Opens `path`, choosing the columns `names` (default: every Float16,
/// Float32 and Float64 column but the weights column: integer columns are
/// often ids or codes, so they are fitted only when named) and the weights
/// column `weight`, if any; `project` decodes only those.
pub fn open(path: &Path, names: &[String], weight: Option<&str>, batch: usize, project: bool) -> Result<ParquetInput> {
    let (file, _) = crate::output::open_file(path, "a Parquet file")?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a valid Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let fields = schema.fields();
    let find = |name: &str| {
        fields.iter().position(|f| f.name() == name).with_context(|| {
            let have: Vec<_> = fields.iter().map(|f| f.name().clone()).collect();
            format!("{}: no column named {name:?} (the file has {have:?})", path.display())
        })
    };
    let weight_col = weight.map(find).transpose()?;
    let chosen: Vec<usize> = if names.is_empty() {
        (0..fields.len())
            .filter(|&i| Some(i) != weight_col && ColType::of(fields[i].data_type()).is_some_and(ColType::is_float))
            .collect()
    } else {
        names.iter().map(|name| find(name)).collect::<Result<_>>()?
    };
    if let Some(w) = weight_col {
        if chosen.contains(&w) {
            bail!(
                "{}: column {:?} is the weights column (--weights) and cannot also be a feature",
                path.display(),
                fields[w].name()
            );
        }
        if ColType::of(fields[w].data_type()).is_none() {
            bail!(
                "{}: weights column {:?} is {}: expected a numeric column ({NUMERIC})",
                path.display(),
                fields[w].name(),
                fields[w].data_type()
            );
        }
    }
    if chosen.is_empty() {
        bail!(
            "{}: no Float16, Float32 or Float64 column to fit (integer columns are fitted when named with --columns)",
            path.display()
        );
    }
    let types = chosen
        .iter()
        .map(|&i| {
            ColType::of(fields[i].data_type()).with_context(|| {
                format!(
                    "{}: column {:?} is {}: expected a numeric column ({NUMERIC})",
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
        let mask = ProjectionMask::roots(builder.parquet_schema(), chosen.iter().copied().chain(weight_col));
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
        types,
        weight: weight_col.map(|w| fields[w].name().clone()),
        rows,
        schema,
    })
}

/// The dtype of a state fitted on these columns by default: f32 when all
/// are Float16 or Float32, else f64 (integers, as for .npy files).
pub fn default_dtype(path: &Path, names: &[String], weight: Option<&str>) -> Result<Dtype> {
    let input = open(path, names, weight, 1, true)?;
    Ok(
        if input.types.iter().all(|&t| matches!(t, ColType::F16 | ColType::F32)) {
            Dtype::F32
        } else {
            Dtype::F64
        },
    )
}

/// Refuses Float64 columns for an f32 state: they would be rounded.
fn check_narrowing<F: Float>(input: &ParquetInput, path: &Path) -> Result<()> {
    if F::DTYPE == Dtype::F32
        && let Some(j) = input.types.iter().position(|&t| t == ColType::F64)
    {
        bail!(
            "{}: column {:?} is Float64 and the state is f32: float64 values are not narrowed (fit with --dtype f64)",
            path.display(),
            input.names[j]
        );
    }
    Ok(())
}

/// Where a column of a batch is, for messages.
struct Place<'a> {
    path: &'a Path,
    name: &'a str,
    row0: u64,
    /// Whether it is the weights column (`--weights`), not a feature.
    weights: bool,
}

/// The largest magnitude of an integer every smaller one of which float64
/// holds exactly: 2^53.
const F64_EXACT: u64 = 1 << 53;

/// A column as `&[K]`: borrowed when its type is `K`, else widened into
/// `spill` (exactly; a 64-bit integer column is only widened to f64, its
/// values checked to be within ±2^53). Values under nulls are not looked at.
fn column<'a, K: Kernel>(col: &'a ArrayRef, spill: &'a mut Vec<K>, at: &Place<'_>) -> Result<&'a [K]> {
    if let Some(a) = col.as_primitive_opt::<K::Arrow>() {
        return Ok(&a.values()[..]);
    }
    spill.clear();
    spill.reserve(col.len());
    let nulls = col.nulls();
    let is_null = |i: usize| nulls.is_some_and(|nb| nb.is_null(i));
    macro_rules! widen_int {
        ($a:ty) => {
            spill.extend(
                col.as_primitive::<$a>()
                    .values()
                    .iter()
                    .map(|&v| K::from_i64(i64::from(v))),
            )
        };
    }
    // A 64-bit integer column not summed as itself is read as float64 (mixed
    // with float columns or the other signedness, or under --weights): exact
    // within ±2^53.
    if matches!(col.data_type(), DataType::Int64 | DataType::UInt64) && K::Arrow::DATA_TYPE != DataType::Float64 {
        bail!(
            "internal error: {}: column {:?} of type {} read as {}",
            at.path.display(),
            at.name,
            col.data_type(),
            std::any::type_name::<K>()
        );
    }
    let too_wide = |i: usize, v: &dyn std::fmt::Display, ty: &str| {
        let (path, row) = (at.path.display(), at.row0 + i as u64);
        if at.weights {
            anyhow::anyhow!(
                "{path}: row {row}, weights column {:?}: {v} is beyond 2^53, where float64 stops holding every integer: weights are read as float64, exactly, and this one would be rounded (cast the column to Float64 to use rounded weights)",
                at.name
            )
        } else {
            anyhow::anyhow!(
                "{path}: row {row}, column {:?}: {v} is beyond ±2^53, where float64 stops holding every integer: this {ty} column is read as float64 (mixed with float columns or with integers of the other signedness, or under --weights), exactly, and this value would be rounded (cast the column to Float64 to fit it rounded, or fit it on its own, summed exactly as an integer)",
                at.name
            )
        }
    };
    match col.data_type() {
        DataType::UInt8 => widen_int!(UInt8Type),
        DataType::Int8 => widen_int!(Int8Type),
        DataType::UInt16 => widen_int!(UInt16Type),
        DataType::Int16 => widen_int!(Int16Type),
        DataType::UInt32 => widen_int!(UInt32Type),
        DataType::Int32 => widen_int!(Int32Type),
        DataType::Int64 => {
            for (i, &v) in col.as_primitive::<Int64Type>().values().iter().enumerate() {
                if is_null(i) {
                    spill.push(K::default());
                } else if v.unsigned_abs() <= F64_EXACT {
                    spill.push(K::from_i64(v));
                } else {
                    return Err(too_wide(i, &v, "Int64"));
                }
            }
        }
        DataType::UInt64 => {
            for (i, &v) in col.as_primitive::<UInt64Type>().values().iter().enumerate() {
                if is_null(i) {
                    spill.push(K::default());
                } else if v <= F64_EXACT {
                    // At most 2^53: an i64, converted exactly.
                    spill.push(K::from_i64(v as i64));
                } else {
                    return Err(too_wide(i, &v, "UInt64"));
                }
            }
        }
        DataType::Float16 => spill.extend(
            col.as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|&v| K::from_f64(v.to_f64())),
        ),
        DataType::Float32 => spill.extend(
            col.as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| K::from_f64(f64::from(v))),
        ),
        t => bail!(
            "internal error: {}: column {:?} of type {t} cannot be widened to {}",
            at.path.display(),
            at.name,
            std::any::type_name::<K>()
        ),
    }
    Ok(&spill[..])
}

/// The batch's chosen columns, in feature order.
fn columns_of<'b>(batch: &'b RecordBatch, names: &[String], path: &Path) -> Result<Vec<&'b ArrayRef>> {
    names
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .with_context(|| format!("{}: column {name:?} missing from a batch", path.display()))
        })
        .collect()
}

/// Fits `path` batch by batch (each record batch of `batch_rows` rows one
/// `partial_fit`), each row weighted by column `weight` when given.
pub fn fit_parquet<F: Float>(
    est: &mut Centering<F>,
    path: &Path,
    names: &[String],
    weight: Option<&str>,
    batch_rows_arg: Option<u64>,
) -> Result<()> {
    let probe = open(path, names, weight, 1, true)?;
    let d = probe.names.len();
    check_features(est.n_features(), d, path, "the state (fitted on earlier inputs)")?;
    check_narrowing::<F>(&probe, path)?;
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let input = open(path, names, weight, batch, true)?;
    if input.weight.is_some() {
        return fit_weighted(est, path, input);
    }
    with_kernel!(common_kernel(&input.types), fit_as::<_, F>(est, path, input))
}

/// The located message of a fit's error in the batch starting at `row0`.
fn located(e: CenteringError, path: &Path, names: &[String], row0: u64, policy: centering::NanPolicy) -> anyhow::Error {
    match e {
        CenteringError::NullValue { index } if index.len() == 2 => anyhow::anyhow!(
            "{}: row {}, column {:?}: a null (a missing value) under NaN policy reject; --nan-policy ignore skips missing values",
            path.display(),
            row0 + index[0] as u64,
            names[index[1]]
        ),
        CenteringError::NonFinite { index, value } if index.len() == 2 => anyhow::anyhow!(
            "{}: row {}, column {:?}: {value}: {}",
            path.display(),
            row0 + index[0] as u64,
            names[index[1]],
            crate::fit::non_finite_hint(policy)
        ),
        e => anyhow::Error::new(e).context(format!("cannot fit {}", path.display())),
    }
}

/// [`fit_parquet`] with weights: each batch is one
/// `BatchSummary::from_array_weighted` of its columns as float64 (every
/// supported type converts exactly, 64-bit integers within ±2^53; NaN where
/// the nulls are), weighted by the weights column as float64 whatever the
/// state's dtype.
fn fit_weighted<F: Float>(est: &mut Centering<F>, path: &Path, input: ParquetInput) -> Result<()> {
    let d = input.names.len();
    let policy = est.params().nan_policy();
    let wname = input.weight.clone().unwrap_or_default();
    let bar = progress::bytes(input.rows, &format!("{} (rows)", path.display()));
    let (mut x, mut spill, mut wspill) = (Vec::<f64>::new(), Vec::new(), Vec::new());
    let mut row0 = 0u64;
    for batch in input.reader {
        let batch = batch.with_context(|| format!("cannot read {} after row {row0}", path.display()))?;
        let n = batch.num_rows();
        let cols = columns_of(&batch, &input.names, path)?;
        if policy == centering::NanPolicy::Reject
            && let Some((i, j)) = (0..n)
                .flat_map(|i| (0..d).map(move |j| (i, j)))
                .find(|&(i, j)| cols[j].is_null(i))
        {
            return Err(located(
                CenteringError::NullValue { index: vec![i, j] },
                path,
                &input.names,
                row0,
                policy,
            ));
        }
        x.clear();
        for (col, name) in cols.iter().zip(&input.names) {
            let start = x.len();
            x.extend_from_slice(column::<f64>(
                col,
                &mut spill,
                &Place {
                    path,
                    name,
                    row0,
                    weights: false,
                },
            )?);
            for (i, v) in x[start..].iter_mut().enumerate() {
                if col.is_null(i) {
                    *v = f64::NAN;
                }
            }
        }
        let wcol = batch
            .column_by_name(&wname)
            .with_context(|| format!("{}: column {wname:?} missing from a batch", path.display()))?;
        let w = column::<f64>(
            wcol,
            &mut wspill,
            &Place {
                path,
                name: &wname,
                row0,
                weights: true,
            },
        )?;
        if let Some(i) = (0..n).find(|&i| wcol.is_null(i) || !(w[i].is_finite() && w[i] >= 0.0)) {
            bail!(
                "{}: row {}, weights column {wname:?}: {}: expected a finite non-negative weight",
                path.display(),
                row0 + i as u64,
                if wcol.is_null(i) {
                    "a null".to_owned()
                } else {
                    w[i].to_string()
                }
            );
        }
        let xv = ArrayView2::from_shape((n, d).f(), &x[..]).context("internal error: batch shape")?;
        let fail = |e| located(e, path, &input.names, row0, policy);
        let summary = BatchSummary::from_array_weighted(&xv, &ndarray::ArrayView1::from(w), policy).map_err(fail)?;
        est.partial_fit_summary(&summary).map_err(fail)?;
        row0 += n as u64;
        bar.set_position(row0);
    }
    bar.finish_and_clear();
    Ok(())
}

/// [`fit_parquet`] with every column handed to the core as `K`.
fn fit_as<K: Kernel, F: Float>(est: &mut Centering<F>, path: &Path, input: ParquetInput) -> Result<()> {
    let d = input.names.len();
    let policy = est.params().nan_policy();
    let bar = progress::bytes(input.rows, &format!("{} (rows)", path.display()));
    let mut spills: Vec<Vec<K>> = vec![Vec::new(); d];
    let mut row0 = 0u64;
    for batch in input.reader {
        let batch = batch.with_context(|| format!("cannot read {} after row {row0}", path.display()))?;
        let n = batch.num_rows();
        let cols = columns_of(&batch, &input.names, path)?;
        let validity: Vec<Option<Validity<'_>>> = cols
            .iter()
            .map(|c| c.nulls().map(|nb| Validity::new(nb.validity(), nb.offset())))
            .collect();
        let slices = cols
            .iter()
            .zip(spills.iter_mut())
            .zip(&input.names)
            .map(|((c, spill), name)| {
                column(
                    c,
                    spill,
                    &Place {
                        path,
                        name,
                        row0,
                        weights: false,
                    },
                )
            })
            .collect::<Result<Vec<&[K]>>>()?;
        let located = |e| located(e, path, &input.names, row0, policy);
        let summary = BatchSummary::from_columns(&slices, &validity, policy).map_err(located)?;
        est.partial_fit_summary(&summary).map_err(located)?;
        row0 += n as u64;
        bar.set_position(row0);
    }
    bar.finish_and_clear();
    Ok(())
}

/// `input` with its chosen columns centred (as type `F`, nulls kept) into
/// `output`; the other columns are copied as they are. The chosen columns
/// are read as `fit` reads them (one type, widened exactly), and each batch
/// is one `transform_input_into` of them.
pub fn transform_parquet<F: Float>(
    est: &Centering<F>,
    input: &Path,
    output: &Path,
    names: &[String],
    batch_rows_arg: Option<u64>,
    what: &str,
) -> Result<()> {
    let probe = open(input, names, None, 1, true)?;
    let d = probe.names.len();
    check_features(est.n_features(), d, input, what)?;
    check_narrowing::<F>(&probe, input)?;
    let batch = batch_rows(batch_rows_arg, d, std::mem::size_of::<F>());
    let src = open(input, names, None, batch, false)?;
    with_kernel!(common_kernel(&src.types), transform_as::<_, F>(est, input, output, src))
}

fn transform_as<K: Kernel, F: Float>(est: &Centering<F>, input: &Path, output: &Path, src: ParquetInput) -> Result<()> {
    let d = src.names.len();
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
    let (mut x, mut y): (Vec<K>, Vec<F>) = (Vec::new(), Vec::new());
    let mut spill = Vec::new();
    let bar = progress::bytes(src.rows, &format!("{} (rows)", input.display()));
    let mut row0 = 0u64;
    for b in src.reader {
        let b: RecordBatch = b.with_context(|| format!("cannot read {} after row {row0}", input.display()))?;
        let n = b.num_rows();
        x.clear();
        for (name, col) in src.names.iter().zip(columns_of(&b, &src.names, input)?) {
            let at = Place {
                path: input,
                name,
                row0,
                weights: false,
            };
            x.extend_from_slice(column(col, &mut spill, &at)?);
        }
        y.clear();
        y.resize(n * d, F::zero());
        let xv = ArrayView2::from_shape((n, d).f(), &x[..]).context("internal error: batch shape")?;
        let mut yv = ArrayViewMut2::from_shape((n, d).f(), &mut y[..]).context("internal error: batch shape")?;
        est.transform_input_into(&xv, &mut yv)
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
