//! [Apache DataFusion](https://datafusion.apache.org) functions for
//! [`centering`]: fit per-feature means inside the engine, where the data
//! is — Parquet files, partitioned tables, a Ballista cluster — with the
//! crate's own mergeable state as the aggregate's partial state.
//!
//! - [`CenterFit`]: the aggregate `center_fit(x1, …, xN)`. Each partition
//!   folds its record batches into a [`Centering<f64>`] through
//!   [`BatchSummary::from_columns`] (the columns as Arrow holds them, with
//!   their validity bitmaps: no copy into rows); the partial state that
//!   DataFusion moves between partitions (and Ballista between machines) is
//!   that estimator's serialised state; the final phase combines states with
//!   [`Centering::merge`]. Per group it returns a struct
//!   `{ mean: list<f64>, count: list<f64>, state: utf8 }`, where `state` is
//!   the JSON that [`serde_json::from_str::<centering::AnyCentering>`] (and
//!   so the library and the command-line tool) loads.
//!   With `GROUP BY` it runs as a DataFusion `GroupsAccumulator` (one
//!   estimator per group, each batch reordered by group once), not through
//!   DataFusion's per-group `Accumulator` adapter; the states are the same
//!   bit for bit. In DF1 (the README's "Beyond one machine") that took
//!   10⁵ groups from 69× the time of DataFusion's `avg` to 31×, and left
//!   16 groups where they were (6.4×).
//! - [`CenterApply`]: the scalar function `center_apply(state, x1, …, xN)`,
//!   the transform in the engine: a struct of the centred columns.
//!
//! # Parameters
//!
//! Parameters come from the constructor, not from literal arguments:
//! `center_fit`'s arguments are all feature columns (any number), so a
//! literal among them would be ambiguous, and a constructor validates once,
//! when the function is registered, not per query.
//! [`CenterFit::default()`] is the cumulative mean with nulls and NaN as
//! missing values ([`NanPolicy::Ignore`]); other parameters are a
//! function registered under a name of its own:
//!
//! ```
//! use centering::{CenteringParams, NanPolicy};
//! use centering_datafusion::CenterFit;
//! use datafusion::logical_expr::AggregateUDF;
//!
//! // Nulls and NaN are errors instead of missing values.
//! let strict = CenterFit::new(CenteringParams::new().nan_policy(NanPolicy::Reject))?
//!     .with_name("center_fit_strict");
//! let udaf = AggregateUDF::from(strict);
//! assert_eq!(udaf.name(), "center_fit_strict");
//!
//! // Moving averages are refused (see below).
//! assert!(CenterFit::new(CenteringParams::keras(0.9)).is_err());
//! # Ok::<(), datafusion::error::DataFusionError>(())
//! ```
//!
//! # The partial state
//!
//! Between the phases a group's state is one `LargeBinary` value: the
//! crate's own versioned serde state (the schema of
//! [`centering::STATE_FORMAT_VERSION`], validated on load like any saved
//! state) encoded with postcard, which carries floats as their 8 bytes,
//! where JSON writes each as a decimal string for the next phase to parse
//! back (with many groups, one state per group per partition). The
//! result's `state` field, what users, [`state_of`] and the command-line
//! tool read, is JSON.
//!
//! # Order, exactness, and why only the cumulative mode
//!
//! DataFusion aggregates in two phases. The partial phase folds each input
//! partition's batches in their order, exactly as
//! [`Centering::partial_fit`] of those batches. The final phase receives
//! the partial states as they arrive — whichever partition finishes first
//! (through `CoalescePartitionsExec` without `GROUP BY`, through a hash
//! repartition with it) — and merges them in that arrival order, which
//! varies from run to run. So:
//!
//! - the result is bit-identical to an in-process fit of each partition
//!   merged in the order DataFusion happened to use (the tests check this
//!   against every order), and within the crate's documented rounding bound
//!   of any other order;
//! - with `GROUP BY`, each group's rows of a batch are one fit (as
//!   [`Centering::partial_fit`] of those rows, in batch order), so a group's
//!   result is the same as without `GROUP BY` on that group's rows alone;
//!   `center_fit(…) FILTER (WHERE …)` fits only the rows the filter keeps
//!   (a null condition drops the row);
//! - when DataFusion stops pre-aggregating a partition because it has
//!   nearly as many groups as rows (its
//!   `skip_partial_aggregation_probe_*` options; by default after 100 000
//!   rows with more than 0.8 groups per row), each later row becomes the
//!   state of a one-row fit and the final phase merges those: exact in the
//!   counts, within the rounding bound in the means;
//! - a moving average over that arbitrary order of partitions is not a
//!   meaningful quantity (its value depends on which partition finished
//!   first), and neither is an average of batch means whose batch sizes
//!   DataFusion chooses. [`CenterFit::new`] therefore accepts only
//!   [`Mode::Cumulative`] and says so in its error.
//!
//! # Inputs
//!
//! Columns that are all Float64, all Float32, all Float16 or all of one
//! integer type (Int8 … Int64, UInt8 … UInt64) are read as Arrow holds
//! them, without a cast: floats are summed as the crate sums them, integers
//! exactly (the mean is the exactly rounded mean; for 64-bit columns, for
//! at least 2⁴¹ rows per feature), all into an `f64` state. Any other
//! mix — decimals, or columns of different types — is cast to Float64 by
//! DataFusion's type coercion first (exact for integers up to 2⁵³ in
//! magnitude). `center_fit(DISTINCT x)` of one column fits the
//! distinct values (DataFusion plans it as a `GROUP BY` of the values
//! first); of several columns it reaches the aggregate, which refuses it
//! with a "not supported" error rather than fit every row. A null is a
//! missing value of that feature only (as NaN is under
//! [`NanPolicy::Ignore`]); the counts are per feature; a feature with no
//! value in a group has a NaN mean and a count of 0. Under
//! [`NanPolicy::Reject`] a null or a NaN fails the query.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use centering_datafusion::{register, state_of};
//! use datafusion::arrow::array::{Float64Array, RecordBatch};
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::datasource::MemTable;
//! use datafusion::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("a", DataType::Float64, true),
//!     Field::new("b", DataType::Float64, true),
//! ]));
//! let batch = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), Some(3.0)])),
//!     Arc::new(Float64Array::from(vec![Some(10.0), None, Some(30.0)])),
//! ])?;
//! let ctx = SessionContext::new();
//! register(&ctx);
//! ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
//!
//! let df = ctx.table("t").await?;
//! let fit = df.aggregate(vec![], vec![centering_datafusion::center_fit(vec![col("a"), col("b")]).alias("fit")])?;
//! let batches = fit.collect().await?;
//! let c = state_of(&batches[0], "fit", 0)?;
//! assert_eq!(c.mean().unwrap().to_vec(), vec![2.0, 20.0]);
//! assert_eq!(c.counts().unwrap().to_vec(), vec![3.0, 2.0]);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

mod groups;

use centering::{AnyCentering, BatchSummary, Centering, CenteringParams, Input, Mode, NanPolicy, Validity};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBufferBuilder, Float64Array, LargeBinaryArray, ListArray, RecordBatch,
    StringArray, StructArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::not_impl_err;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, GroupsAccumulator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The default name of the aggregate.
pub const CENTER_FIT: &str = "center_fit";
/// The default name of the scalar function.
pub const CENTER_APPLY: &str = "center_apply";

fn external<E: std::error::Error + Send + Sync + 'static>(e: E) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The result's type: `{ mean: list<f64>, count: list<f64>, state: utf8 }`.
pub fn result_type() -> DataType {
    DataType::Struct(result_fields())
}

fn list_f64() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("mean", list_f64(), true),
        Field::new("count", list_f64(), true),
        Field::new("state", DataType::Utf8, true),
    ])
}

/// The column types the core reads as they are: Float64, Float32,
/// Float16, and the integers (summed exactly).
fn read_as_is(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Float64 | Float32 | Float16 | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
    )
}

/// Columns that all have one type the core reads as it is keep it; any
/// other mix of numeric types is cast to Float64 (decimals too: their
/// values beyond 2⁵³ round).
fn coerce_features(name: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    let Some(first) = arg_types.first() else {
        return plan_err!("{name} needs at least one feature column");
    };
    if let Some(t) = arg_types.iter().find(|t| !(t.is_numeric() || t.is_null())) {
        return plan_err!("{name}: feature columns must be numeric, found {t}");
    }
    let target = if read_as_is(first) && arg_types.iter().all(|t| t == first) {
        first.clone()
    } else {
        DataType::Float64
    };
    Ok(vec![target; arg_types.len()])
}

// ---------------------------------------------------------------------------
// center_fit

/// The aggregate `center_fit(x1, …, xN)`: see the [crate docs](crate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CenterFit {
    name: String,
    nan_policy: NanPolicy,
    signature: Signature,
}

impl Default for CenterFit {
    /// Cumulative, nulls and NaN as missing values, named `center_fit`.
    fn default() -> Self {
        CenterFit {
            name: CENTER_FIT.to_string(),
            nan_policy: NanPolicy::Ignore,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl CenterFit {
    /// The aggregate with these parameters, named `center_fit`.
    ///
    /// # Errors
    ///
    /// A plan error for invalid parameters, or for a mode other than
    /// [`Mode::Cumulative`]: DataFusion merges partitions in the order they
    /// finish, so a moving average (or an average of batch means) over them
    /// would depend on scheduling.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::CenteringParams;
    /// let f = centering_datafusion::CenterFit::new(CenteringParams::new())?;
    /// assert_eq!(f, centering_datafusion::CenterFit::new(CenteringParams::new().nan_policy(centering::NanPolicy::Reject))?);
    /// let err = centering_datafusion::CenterFit::new(CenteringParams::torch(0.1)).unwrap_err();
    /// assert!(err.to_string().contains("cumulative"));
    /// # Ok::<(), datafusion::error::DataFusionError>(())
    /// ```
    pub fn new(params: CenteringParams) -> Result<Self> {
        let params = params.check().map_err(external)?;
        if params.mode() != Mode::Cumulative {
            return plan_err!(
                "center_fit supports only the cumulative mode, not {}: DataFusion merges partitions in the \
                 order they finish, so a moving average (or an average of batch means) over them would \
                 depend on scheduling",
                params.mode()
            );
        }
        Ok(CenterFit {
            nan_policy: params.nan_policy(),
            ..CenterFit::default()
        })
    }

    /// The same function under another name (to register several
    /// parameterisations side by side).
    ///
    /// # Examples
    ///
    /// ```
    /// let f = centering_datafusion::CenterFit::default().with_name("fit_means");
    /// assert_eq!(datafusion::logical_expr::AggregateUDF::from(f).name(), "fit_means");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The NaN (and null) policy.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(centering_datafusion::CenterFit::default().nan_policy(), centering::NanPolicy::Ignore);
    /// ```
    pub fn nan_policy(&self) -> NanPolicy {
        self.nan_policy
    }

    fn estimator(&self) -> Result<Centering<f64>> {
        Centering::<f64>::builder()
            .nan_policy(self.nan_policy)
            .build()
            .map_err(external)
    }
}

impl AggregateUDFImpl for CenterFit {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_features(&self.name, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(result_type())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return not_impl_err!("{}(DISTINCT …) is not supported", self.name);
        }
        Ok(Box::new(CenterFitAccumulator {
            centering: self.estimator()?,
            features: args.exprs.len(),
        }))
    }

    /// The partial state: one `LargeBinary` column, each row the postcard
    /// encoding of a group's [`Centering<f64>`] (see [the partial state](crate#the-partial-state)).
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            datafusion::logical_expr::utils::format_state_name(args.name, "state"),
            DataType::LargeBinary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        if args.is_distinct {
            return not_impl_err!("{}(DISTINCT …) is not supported", self.name);
        }
        Ok(Box::new(groups::CenterFitGroups::new(
            self.estimator()?,
            args.exprs.len(),
        )))
    }
}

/// The aggregate's accumulator: one estimator, fed summaries of columns.
#[derive(Debug)]
struct CenterFitAccumulator {
    centering: Centering<f64>,
    features: usize,
}

/// The validity bitmap of an Arrow array, as the core reads it.
fn validity(nulls: Option<&NullBuffer>) -> Option<Validity<'_>> {
    nulls.map(|n| Validity::new(n.inner().values(), n.inner().offset()))
}

/// The summary of one batch of feature columns (all of one type the core
/// reads as it is, as [`coerce_features`] arranged).
fn summarise(values: &[ArrayRef], nan_policy: NanPolicy) -> Result<Option<BatchSummary>> {
    fn typed<
        F: Input + datafusion::arrow::datatypes::ArrowNativeType,
        T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = F>,
    >(
        values: &[ArrayRef],
        nan_policy: NanPolicy,
    ) -> Result<BatchSummary> {
        let mut columns: Vec<&[F]> = Vec::with_capacity(values.len());
        let mut valid: Vec<Option<Validity<'_>>> = Vec::with_capacity(values.len());
        for v in values {
            let Some(a) = v.as_primitive_opt::<T>() else {
                return exec_err!(
                    "center_fit: mixed column types {} and {}",
                    values[0].data_type(),
                    v.data_type()
                );
            };
            columns.push(&a.values()[..]);
            valid.push(validity(a.nulls()));
        }
        let any_nulls = valid.iter().any(Option::is_some);
        BatchSummary::from_columns(&columns, if any_nulls { &valid } else { &[] }, nan_policy).map_err(external)
    }
    let Some(first) = values.first() else {
        return exec_err!("center_fit needs at least one feature column");
    };
    if first.is_empty() {
        return Ok(None);
    }
    match first.data_type() {
        DataType::Float64 => typed::<f64, Float64Type>(values, nan_policy).map(Some),
        DataType::Float32 => typed::<f32, Float32Type>(values, nan_policy).map(Some),
        DataType::Float16 => typed::<half::f16, Float16Type>(values, nan_policy).map(Some),
        DataType::Int8 => typed::<i8, Int8Type>(values, nan_policy).map(Some),
        DataType::Int16 => typed::<i16, Int16Type>(values, nan_policy).map(Some),
        DataType::Int32 => typed::<i32, Int32Type>(values, nan_policy).map(Some),
        DataType::Int64 => typed::<i64, Int64Type>(values, nan_policy).map(Some),
        DataType::UInt8 => typed::<u8, UInt8Type>(values, nan_policy).map(Some),
        DataType::UInt16 => typed::<u16, UInt16Type>(values, nan_policy).map(Some),
        DataType::UInt32 => typed::<u32, UInt32Type>(values, nan_policy).map(Some),
        DataType::UInt64 => typed::<u64, UInt64Type>(values, nan_policy).map(Some),
        t => exec_err!("center_fit: unexpected column type {t} after coercion"),
    }
}

// ---------------------------------------------------------------------------
// The partial state
//
// Between the aggregate's phases (and, under Ballista, between machines) a
// group's state travels as the crate's own serde state — the versioned,
// validated schema a library user saves — encoded with postcard rather
// than JSON: the same fields, floats as their 8 bytes instead of decimal
// strings, so a partial state costs no float formatting and parsing per
// group. Decoding goes through the core's `TryFrom` checks like any load.
// The result's `state` field, what users and the command-line tool read,
// stays JSON.

/// Appends the partial-state encoding of `c` to `out`.
fn encode_state(c: &Centering<f64>, out: &mut Vec<u8>) -> Result<()> {
    postcard::to_io(c, &mut *out).map_err(external)?;
    Ok(())
}

/// A partial state back as an estimator; trailing bytes are an error.
fn decode_state(bytes: &[u8]) -> Result<Centering<f64>> {
    let (c, rest) = postcard::take_from_bytes::<Centering<f64>>(bytes).map_err(external)?;
    if !rest.is_empty() {
        return exec_err!("center_fit: {} bytes after a partial state", rest.len());
    }
    Ok(c)
}

/// The partial states of several estimators, one row each.
fn encode_states<'a>(cs: impl ExactSizeIterator<Item = &'a Centering<f64>>) -> Result<ArrayRef> {
    let mut offsets: Vec<i64> = Vec::with_capacity(cs.len() + 1);
    offsets.push(0);
    let mut bytes = Vec::new();
    for c in cs {
        encode_state(c, &mut bytes)?;
        offsets.push(offset_i64(bytes.len())?);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    Ok(Arc::new(LargeBinaryArray::try_new(
        offsets,
        Buffer::from_vec(bytes),
        None,
    )?))
}

fn offset_i64(n: usize) -> Result<i64> {
    i64::try_from(n).or_else(|_| exec_err!("center_fit: state column of {n} bytes"))
}

/// The partial states of a state column, row by row (`None` for a null
/// row); `LargeBinary` as [`state_fields`](AggregateUDFImpl::state_fields)
/// declares, or `Binary`.
fn for_each_state(states: &ArrayRef, mut f: impl FnMut(usize, Option<&[u8]>) -> Result<()>) -> Result<()> {
    if let Some(a) = states.as_binary_opt::<i64>() {
        a.iter().enumerate().try_for_each(|(i, s)| f(i, s))
    } else if let Some(a) = states.as_binary_opt::<i32>() {
        a.iter().enumerate().try_for_each(|(i, s)| f(i, s))
    } else {
        exec_err!(
            "center_fit: partial state column is {}, not LargeBinary",
            states.data_type()
        )
    }
}

/// Folds a column of partial states into `c` in row order.
fn merge_states(c: &mut Centering<f64>, states: &ArrayRef) -> Result<()> {
    for_each_state(states, |_, s| {
        if let Some(s) = s {
            c.merge(&decode_state(s)?).map_err(external)?;
        }
        Ok(())
    })
}

/// The result struct for several estimators, one row each: the mean and
/// count lists (null for an unfitted estimator) and the JSON state.
fn results<'a>(cs: impl ExactSizeIterator<Item = &'a Centering<f64>>) -> Result<StructArray> {
    let n = cs.len();
    let (mut means, mut counts) = (Vec::new(), Vec::new());
    let mut list_offsets: Vec<i32> = Vec::with_capacity(n + 1);
    list_offsets.push(0);
    let mut fitted = BooleanBufferBuilder::new(n);
    let mut json = Vec::new();
    let mut json_offsets: Vec<i32> = Vec::with_capacity(n + 1);
    json_offsets.push(0);
    let too_long = |what: &str| exec_err!("center_fit: the result's {what} exceed 2³¹ − 1 values");
    for c in cs {
        match (c.mean(), c.counts()) {
            (Some(m), Some(k)) if m.len() == k.len() => {
                means.extend(m.iter());
                counts.extend(k.iter());
                fitted.append(true);
            }
            _ => fitted.append(false),
        }
        let Ok(end) = i32::try_from(means.len()) else {
            return too_long("lists");
        };
        list_offsets.push(end);
        serde_json::to_writer(&mut json, c).map_err(external)?;
        let Ok(end) = i32::try_from(json.len()) else {
            return too_long("states");
        };
        json_offsets.push(end);
    }
    let nulls = NullBuffer::new(fitted.finish());
    let list_offsets = OffsetBuffer::new(ScalarBuffer::from(list_offsets));
    let list = |values: Vec<f64>| -> Result<ArrayRef> {
        Ok(Arc::new(ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            list_offsets.clone(),
            Arc::new(Float64Array::from(values)),
            Some(nulls.clone()),
        )?))
    };
    // serde_json writes UTF-8; `try_new` checks it anyway.
    let states = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(json_offsets)),
        Buffer::from_vec(json),
        None,
    )?;
    let columns: Vec<ArrayRef> = vec![list(means)?, list(counts)?, Arc::new(states)];
    StructArray::try_new(result_fields(), columns, None).map_err(DataFusionError::from)
}

impl Accumulator for CenterFitAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() != self.features {
            return exec_err!("center_fit: {} columns, expected {}", values.len(), self.features);
        }
        if let Some(s) = summarise(values, self.centering.params().nan_policy())? {
            self.centering.partial_fit_summary(&s).map_err(external)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut bytes = Vec::new();
        encode_state(&self.centering, &mut bytes)?;
        Ok(vec![ScalarValue::LargeBinary(Some(bytes))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(states) = states.first() else {
            return exec_err!("center_fit: no partial state column");
        };
        merge_states(&mut self.centering, states)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Struct(Arc::new(results(std::iter::once(
            &self.centering,
        ))?)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 3 * 8 * self.centering.n_features().unwrap_or(0)
    }
}

/// `center_fit(x1, …, xN)` as an expression (the default [`CenterFit`]).
///
/// # Examples
///
/// ```
/// use datafusion::prelude::col;
/// let e = centering_datafusion::center_fit(vec![col("a"), col("b")]);
/// assert!(e.to_string().starts_with("center_fit("));
/// ```
pub fn center_fit(columns: Vec<Expr>) -> Expr {
    AggregateUDF::from(CenterFit::default()).call(columns)
}

// ---------------------------------------------------------------------------
// center_apply

/// The scalar function `center_apply(state, x1, …, xN)`: each row centred
/// with the mean of `state` (a `center_fit` result's `state` field, or any
/// saved state of the crate), as a struct with one Float64 field per
/// feature, named after its argument (`x1`, … for a plain column).
///
/// The state may be a literal, a scalar subquery or a column (each
/// distinct state parsed once per batch). `x − mean` is computed in `f64`,
/// which for an `f64` state is [`Centering::transform`] bit for bit; an
/// `f32` state's mean is widened. Nulls stay null. Errors: a state that
/// does not load, is unfitted, or has a number of features other than the
/// number of columns given.
///
/// # Examples
///
/// ```
/// let f = datafusion::logical_expr::ScalarUDF::from(centering_datafusion::CenterApply::default());
/// assert_eq!(f.name(), "center_apply");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CenterApply {
    name: String,
    signature: Signature,
}

impl Default for CenterApply {
    fn default() -> Self {
        CenterApply {
            name: CENTER_APPLY.to_string(),
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The means of a serialised state, checked against the number of columns.
fn means_of(state: &str, features: usize) -> Result<Vec<f64>> {
    let any: AnyCentering = serde_json::from_str(state).map_err(external)?;
    let Some(mean) = any.mean() else {
        return exec_err!("center_apply: the state is not fitted");
    };
    if mean.len() != features {
        return exec_err!(
            "center_apply: the state has {} features but {} columns were given",
            mean.len(),
            features
        );
    }
    Ok(mean.to_vec())
}

impl ScalarUDFImpl for CenterApply {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let Some((first, rest)) = arg_types.split_first() else {
            return plan_err!("{}(state, x1, …, xN) needs a state and at least one column", self.name);
        };
        if !matches!(
            first,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        ) {
            return plan_err!("{}: the first argument is the state (utf8), found {first}", self.name);
        }
        let mut out = vec![DataType::Utf8];
        out.extend(
            coerce_features(&self.name, rest)?
                .into_iter()
                .map(|_| DataType::Float64),
        );
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("{}: the return type depends on the argument names", self.name)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let fields: Fields = args.arg_fields[1..]
            .iter()
            .map(|f| Field::new(f.name(), DataType::Float64, true))
            .collect();
        Ok(Arc::new(Field::new(self.name(), DataType::Struct(fields), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let DataType::Struct(fields) = args.return_field.data_type().clone() else {
            return exec_err!("{}: return type is not a struct", self.name);
        };
        let Some((state, xs)) = args.args.split_first() else {
            return exec_err!("{}: no arguments", self.name);
        };
        let d = xs.len();
        let xs: Vec<ArrayRef> = xs.iter().map(|x| x.to_array(n)).collect::<Result<_>>()?;
        let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(n); d];
        let mut put = |row: usize, mean: &[f64]| -> Result<()> {
            for (j, x) in xs.iter().enumerate() {
                let Some(x) = x.as_primitive_opt::<Float64Type>() else {
                    return exec_err!("center_apply: column {} is {}, not Float64", j + 1, x.data_type());
                };
                cols[j].push(x.is_valid(row).then(|| x.value(row) - mean[j]));
            }
            Ok(())
        };
        match state {
            ColumnarValue::Scalar(s) => {
                let Some(s) = scalar_str(s)? else {
                    return exec_err!("{}: the state is null", self.name);
                };
                let mean = means_of(s, d)?;
                for row in 0..n {
                    put(row, &mean)?;
                }
            }
            ColumnarValue::Array(a) => {
                let Some(a) = a.as_string_opt::<i32>() else {
                    return exec_err!("{}: the state column is {}, not Utf8", self.name, a.data_type());
                };
                let mut cached: Option<(&str, Vec<f64>)> = None;
                for row in 0..n {
                    if !a.is_valid(row) {
                        return exec_err!("{}: the state is null in row {row}", self.name);
                    }
                    let s = a.value(row);
                    if cached.as_ref().is_none_or(|(k, _)| *k != s) {
                        cached = Some((s, means_of(s, d)?));
                    }
                    if let Some((_, mean)) = &cached {
                        put(row, mean)?;
                    }
                }
            }
        }
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef)
            .collect();
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            fields, arrays, None,
        )?)))
    }
}

fn scalar_str(s: &ScalarValue) -> Result<Option<&str>> {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => Ok(v.as_deref()),
        ScalarValue::Null => Ok(None),
        other => exec_err!("center_apply: the state is {}, not utf8", other.data_type()),
    }
}

// ---------------------------------------------------------------------------
// Registration and results

/// Registers the default `center_fit` and `center_apply` with a context or
/// session state (anything that is a [`FunctionRegistry`]).
///
/// # Examples
///
/// ```
/// use datafusion::execution::FunctionRegistry;
/// let ctx = datafusion::prelude::SessionContext::new();
/// centering_datafusion::register(&ctx);
/// assert!(ctx.udaf("center_fit").is_ok() && ctx.udf("center_apply").is_ok());
/// ```
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udaf(AggregateUDF::from(CenterFit::default()));
    ctx.register_udf(ScalarUDF::from(CenterApply::default()));
}

/// Registers the default functions in any [`FunctionRegistry`] (a
/// `SessionState`, as Ballista's standalone mode and executors need).
///
/// # Errors
///
/// The registry's own errors.
///
/// # Examples
///
/// ```
/// use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
/// let mut state = SessionStateBuilder::new().build();
/// centering_datafusion::register_in(&mut state)?;
/// assert!(state.udaf("center_fit").is_ok());
/// # Ok::<(), datafusion::error::DataFusionError>(())
/// ```
pub fn register_in(registry: &mut dyn FunctionRegistry) -> Result<()> {
    registry.register_udaf(Arc::new(AggregateUDF::from(CenterFit::default())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(CenterApply::default())))?;
    Ok(())
}

/// The estimator in row `row` of the `center_fit` result column `column` of
/// a batch.
///
/// # Errors
///
/// A missing column, a column that is not a `center_fit` result, a null
/// row, or a state that does not load.
///
/// # Examples
///
/// See the [crate docs](crate).
pub fn state_of(batch: &RecordBatch, column: &str, row: usize) -> Result<Centering<f64>> {
    let Some(col) = batch.column_by_name(column) else {
        return exec_err!("no column {column}");
    };
    let Some(s) = col.as_struct_opt().and_then(|s| s.column_by_name("state")) else {
        return exec_err!("column {column} is not a center_fit result");
    };
    let Some(s) = s.as_string_opt::<i32>() else {
        return exec_err!("column {column}'s state is not Utf8");
    };
    if row >= s.len() || !s.is_valid(row) {
        return exec_err!("no state in row {row} of {column}");
    }
    let any: AnyCentering = serde_json::from_str(s.value(row)).map_err(external)?;
    Centering::<f64>::try_from(any).map_err(external)
}
