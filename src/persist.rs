//! [feature `serde`] The stored state: an explicit, versioned wire format
//! and its validation.
//!
//! `Centering<F>` (de)serialises through [`CenteringState`]
//! (`#[serde(try_from = …, into = …)]`), never through its own fields, so
//! the internal layout can change without breaking stored files. Loading is
//! `CenteringState` → [`TryFrom`] → `Centering<F>`: every field is checked
//! there, and a rejection is a [`CenteringError::InvalidState`] naming the
//! field, which serde hands to the format as a custom error (a
//! `serde_json::Error` whose message contains ours, for instance).
//!
//! The schema is documented once, for users, on [`STATE_FORMAT_VERSION`].
//!
//! Two choices worth knowing:
//!
//! - Every float is stored as an `f64`, whatever `F`: exact for `f32` and
//!   `f64`, and it lets the loader check that each value converts *exactly*
//!   to `F` — a second line of defence, after the `dtype` tag, against an
//!   `f64` state loaded as `f32`.
//! - Every integer is stored as an `i128` on the wire (a plain integer in
//!   JSON and CBOR, a varint in postcard), so that a negative or oversized
//!   count reaches our validation and is reported with its field name,
//!   instead of failing inside the format as "expected u64".

use std::any::TypeId;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::Element;
use crate::error::CenteringError;
use crate::estimator::{Accumulator, Centering, Fitted};
use crate::params::{CenteringParams, EmaStart, Mode, NanPolicy, ValidParams};
use crate::state::{Dd, Ema, SCALE_STEP, Sums};

/// The version of the stored-state schema this release writes, and the only
/// one it reads (feature `serde`).
///
/// `Centering<F>` implements serde's `Serialize` and `Deserialize` through
/// an explicit schema, the same in every format (JSON, CBOR, postcard,
/// bincode …). In JSON:
///
/// ```text
/// {
///   "format_version": 1,
///   "dtype": "f64",                   "f32", "f64", or the Rust type name of another F
///   "params": {
///     "mode": "moving_average",       "cumulative" | "moving_average" | "batch_average"
///     "momentum": 0.99,               Keras convention; null unless moving_average
///     "start": "debiased",            "zero" | "first_batch" | "debiased"; null unless moving_average
///     "nan_policy": "reject"          "reject" | "ignore"
///   },
///   "state": null                     unfitted, or:
///   "state": {
///     "n_features": D,                >= 1
///     "n_samples": n,                 samples in all fitted batches
///     "n_batches": t,                 non-empty batches fitted (>= 1)
///     "accumulator": { "cumulative": {               mode cumulative
///         "sum_hi": [D floats], "sum_lo": [D floats],    Σ wᵢxᵢ = (hi + lo)·2^scale
///         "scale": [D integers],                         0 unless the sum would overflow
///         "weight_hi": [D floats], "weight_lo": [D floats]   Σ wᵢ = hi + lo, per feature
///     } }
///     or "accumulator": { "moving": {                modes moving_average, batch_average
///         "steps": [D integers],                         batches that updated each feature
///         "decay": [D floats],                           momentumᵗ
///         "zero": [D floats],                            the zero-started (Keras) estimate
///         "norm": [D floats],                            Σ momentumⁱ, the debiasing denominator
///         "debiased": [D floats],                        the debiased estimate
///         "first": [D floats]                            the first batch mean
///     } }
///   }
/// }
/// ```
///
/// Floats are stored as `f64` (exact for `f32` and `f64`; JSON readers must
/// parse them exactly: serde_json needs its `float_roundtrip` feature).
/// Integers accept any value on the wire and are range-checked on load.
/// The learned mean is not stored: it is recomputed from the accumulator on
/// load, exactly as the original computed it.
///
/// A state round-trips bit for bit, and an estimator loaded from it keeps
/// fitting exactly as the original would have. Loading checks everything and
/// fails with [`CenteringError::InvalidState`] naming the field (wrapped in
/// the format's own error type): another format version, a `dtype` other
/// than `F`'s, a value not exactly representable in `F`, a momentum outside
/// `[0, 1]`, per-feature lengths other than `n_features`, `n_features = 0`,
/// negative counts or weights, non-finite sums or averages, step counts
/// inconsistent with the mode and `n_batches`, an accumulator of another
/// mode. Unknown fields are rejected too.
///
/// Compatibility: any change to this schema increments this version; a
/// release reads every version up to its own.
///
/// # Examples
///
/// ```
/// use centering::{Centering, STATE_FORMAT_VERSION};
/// use ndarray::array;
///
/// let mut c = Centering::<f64>::new();
/// c.fit(&array![[1.0, 2.0], [3.0, 5.0]])?;
/// let json = serde_json::to_string(&c)?;
/// let value: serde_json::Value = serde_json::from_str(&json)?;
/// assert_eq!(value["format_version"], STATE_FORMAT_VERSION);
/// assert_eq!(value["dtype"], "f64");
/// assert_eq!(value["state"]["n_samples"], 2);
///
/// let loaded: Centering<f64> = serde_json::from_str(&json)?;
/// assert_eq!(loaded, c);
/// assert_eq!(loaded.mean().unwrap(), array![2.0, 3.5]);
///
/// // An f64 state is not an f32 estimator.
/// let err = serde_json::from_str::<Centering<f32>>(&json).unwrap_err();
/// assert!(err.to_string().contains("field `dtype`"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const STATE_FORMAT_VERSION: u32 = 1;

/// The wire form of `Centering<F>`, version 1. Fields are written in this
/// order; `format_version` first, so that a reader meets it before anything
/// a later version may have changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CenteringState")]
pub(crate) struct CenteringState {
    format_version: i128,
    dtype: String,
    params: ParamsV1,
    state: Option<FittedV1>,
}

/// The parameters (also the wire form of [`ValidParams`] on its own).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Params", deny_unknown_fields)]
struct ParamsV1 {
    mode: ModeV1,
    momentum: Option<f64>,
    start: Option<StartV1>,
    nan_policy: NanPolicyV1,
}

// The enums below are the schema's own, decoupled from the public ones. In
// binary formats a variant is its index: never reorder them.

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Mode", rename_all = "snake_case")]
enum ModeV1 {
    Cumulative,
    MovingAverage,
    BatchAverage,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "EmaStart", rename_all = "snake_case")]
enum StartV1 {
    Zero,
    FirstBatch,
    Debiased,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "NanPolicy", rename_all = "snake_case")]
enum NanPolicyV1 {
    Reject,
    Ignore,
}

/// The learned state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Fitted", deny_unknown_fields)]
struct FittedV1 {
    n_features: i128,
    n_samples: i128,
    n_batches: i128,
    accumulator: AccumulatorV1,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Accumulator", rename_all = "snake_case")]
enum AccumulatorV1 {
    Cumulative(CumulativeV1),
    Moving(MovingV1),
}

/// `Sums`, as a structure of arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Cumulative", deny_unknown_fields)]
struct CumulativeV1 {
    sum_hi: Vec<f64>,
    sum_lo: Vec<f64>,
    scale: Vec<i128>,
    weight_hi: Vec<f64>,
    weight_lo: Vec<f64>,
}

/// One `Ema` per feature, as a structure of arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Moving", deny_unknown_fields)]
struct MovingV1 {
    steps: Vec<i128>,
    decay: Vec<f64>,
    zero: Vec<f64>,
    norm: Vec<f64>,
    debiased: Vec<f64>,
    first: Vec<f64>,
}

// ---------------------------------------------------------------------------
// Writing: infallible, lossless for any F no wider than f64.

/// The `dtype` tag of `F`.
fn dtype_of<F: 'static>() -> &'static str {
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        "f32"
    } else if TypeId::of::<F>() == TypeId::of::<f64>() {
        "f64"
    } else {
        std::any::type_name::<F>()
    }
}

fn wide<F: Element>(x: F) -> f64 {
    // Exact for f32 and f64. A wider F would lose bits; the loader's
    // exactness check then refuses the file rather than load it wrongly.
    x.to_f64().unwrap_or(f64::NAN)
}

fn wide_all<F: Element>(xs: impl Iterator<Item = F>) -> Vec<f64> {
    xs.map(wide).collect()
}

impl From<ValidParams> for ParamsV1 {
    fn from(p: ValidParams) -> Self {
        let (mode, momentum, start) = match p.mode() {
            Mode::Cumulative => (ModeV1::Cumulative, None, None),
            Mode::BatchAverage => (ModeV1::BatchAverage, None, None),
            Mode::MovingAverage { momentum, start } => (
                ModeV1::MovingAverage,
                Some(momentum),
                Some(match start {
                    EmaStart::Zero => StartV1::Zero,
                    EmaStart::FirstBatch => StartV1::FirstBatch,
                    EmaStart::Debiased => StartV1::Debiased,
                }),
            ),
        };
        let nan_policy = match p.nan_policy() {
            NanPolicy::Reject => NanPolicyV1::Reject,
            NanPolicy::Ignore => NanPolicyV1::Ignore,
        };
        ParamsV1 {
            mode,
            momentum,
            start,
            nan_policy,
        }
    }
}

impl<F: Element> From<&Fitted<F>> for FittedV1 {
    fn from(f: &Fitted<F>) -> Self {
        let accumulator = match &f.acc {
            Accumulator::Cumulative(s) => AccumulatorV1::Cumulative(CumulativeV1 {
                sum_hi: wide_all(s.sum.iter().map(|d| d.hi)),
                sum_lo: wide_all(s.sum.iter().map(|d| d.lo)),
                scale: s.scale.iter().map(|&k| i128::from(k)).collect(),
                weight_hi: wide_all(s.weight.iter().map(|d| d.hi)),
                weight_lo: wide_all(s.weight.iter().map(|d| d.lo)),
            }),
            Accumulator::Moving(e) => AccumulatorV1::Moving(MovingV1 {
                steps: e.iter().map(|e| i128::from(e.steps)).collect(),
                decay: wide_all(e.iter().map(|e| e.decay)),
                zero: wide_all(e.iter().map(|e| e.zero)),
                norm: wide_all(e.iter().map(|e| e.norm)),
                debiased: wide_all(e.iter().map(|e| e.debiased)),
                first: wide_all(e.iter().map(|e| e.first)),
            }),
        };
        FittedV1 {
            n_features: f.mean.len() as i128,
            n_samples: i128::from(f.n_samples),
            n_batches: i128::from(f.n_batches),
            accumulator,
        }
    }
}

impl<F: Element> From<Centering<F>> for CenteringState {
    fn from(c: Centering<F>) -> Self {
        CenteringState {
            format_version: i128::from(STATE_FORMAT_VERSION),
            dtype: dtype_of::<F>().to_owned(),
            params: ParamsV1::from(c.params),
            state: c.fitted.as_ref().map(FittedV1::from),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading: every field checked, nothing trusted.

fn invalid(field: &'static str, reason: impl Into<String>) -> CenteringError {
    CenteringError::InvalidState {
        field,
        reason: reason.into(),
    }
}

fn check_version(v: i128) -> Result<(), CenteringError> {
    if v == i128::from(STATE_FORMAT_VERSION) {
        return Ok(());
    }
    let why = if v > i128::from(STATE_FORMAT_VERSION) {
        "a newer release of centering wrote it"
    } else {
        "no release of centering writes it"
    };
    Err(invalid(
        "format_version",
        format!("expected {STATE_FORMAT_VERSION} (the only version this release reads), found {v}: {why}"),
    ))
}

/// An integer count in `u64`.
fn count(field: &'static str, x: i128) -> Result<u64, CenteringError> {
    u64::try_from(x).map_err(|_| invalid(field, format!("expected an integer in [0, 2^64), found {x}")))
}

/// Checks that every per-feature array has `d` entries.
fn check_len<T>(field: &'static str, v: &[T], d: usize) -> Result<(), CenteringError> {
    if v.len() == d {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "expected {d} entries (one per feature, n_features = {d}), found {}",
                v.len()
            ),
        ))
    }
}

/// The element of feature `j`: finite, and exactly an `F`.
fn element<F: Element>(field: &'static str, j: usize, x: f64) -> Result<F, CenteringError> {
    if !x.is_finite() {
        return Err(invalid(
            field,
            format!("feature {j}: expected a finite value, found {x}"),
        ));
    }
    match F::from(x) {
        Some(y) if y.to_f64().map(f64::to_bits) == Some(x.to_bits()) => Ok(y),
        _ => Err(invalid(
            field,
            format!(
                "feature {j}: {x:?} is not exactly representable as {} (a state written for another element type?)",
                dtype_of::<F>()
            ),
        )),
    }
}

fn elements<F: Element>(field: &'static str, v: &[f64], d: usize) -> Result<Vec<F>, CenteringError> {
    check_len(field, v, d)?;
    v.iter().enumerate().map(|(j, &x)| element(field, j, x)).collect()
}

/// The largest scale exponent a sum of `F`s can need, with a wide margin:
/// `|Σ wᵢxᵢ| ≤ Σwᵢ · max|xᵢ| < 2^(2·(emax+1))` needs at most `emax + 2`,
/// plus one [`SCALE_STEP`] per rescaling merge.
fn max_scale<F: Element>() -> i128 {
    let (m, e, _) = F::max_value().integer_decode();
    let emax = i128::from(e) + 63 - i128::from(m.leading_zeros());
    4 * (emax + i128::from(SCALE_STEP))
}

impl ParamsV1 {
    fn check(self) -> Result<ValidParams, CenteringError> {
        let tag = match self.mode {
            ModeV1::Cumulative => "cumulative",
            ModeV1::MovingAverage => "moving_average",
            ModeV1::BatchAverage => "batch_average",
        };
        let mode = match self.mode {
            ModeV1::Cumulative | ModeV1::BatchAverage => {
                if let Some(m) = self.momentum {
                    return Err(invalid(
                        "params.momentum",
                        format!("expected null for mode {tag} (only moving_average has a momentum), found {m}"),
                    ));
                }
                if let Some(s) = self.start {
                    return Err(invalid(
                        "params.start",
                        format!("expected null for mode {tag} (only moving_average has a start), found {s:?}"),
                    ));
                }
                if self.mode == ModeV1::Cumulative {
                    Mode::Cumulative
                } else {
                    Mode::BatchAverage
                }
            }
            ModeV1::MovingAverage => {
                let momentum = self.momentum.ok_or_else(|| {
                    invalid(
                        "params.momentum",
                        "expected a momentum in [0, 1] for mode moving_average, found null",
                    )
                })?;
                if !(0.0..=1.0).contains(&momentum) {
                    return Err(invalid(
                        "params.momentum",
                        format!("expected a momentum in [0, 1], found {momentum}"),
                    ));
                }
                let start = match self.start {
                    Some(StartV1::Zero) => EmaStart::Zero,
                    Some(StartV1::FirstBatch) => EmaStart::FirstBatch,
                    Some(StartV1::Debiased) => EmaStart::Debiased,
                    None => {
                        return Err(invalid(
                            "params.start",
                            "expected \"zero\", \"first_batch\" or \"debiased\" for mode moving_average, found null",
                        ));
                    }
                };
                Mode::MovingAverage { momentum, start }
            }
        };
        let nan_policy = match self.nan_policy {
            NanPolicyV1::Reject => NanPolicy::Reject,
            NanPolicyV1::Ignore => NanPolicy::Ignore,
        };
        CenteringParams::new()
            .mode(mode)
            .nan_policy(nan_policy)
            .check()
            .map_err(|e| invalid("params.momentum", e.to_string()))
    }
}

impl FittedV1 {
    fn check<F: Element>(self, params: &ValidParams) -> Result<Fitted<F>, CenteringError> {
        let d = count("state.n_features", self.n_features)?;
        if d == 0 {
            return Err(invalid(
                "state.n_features",
                "expected at least 1 feature, found 0 (an unfitted estimator has \"state\": null)",
            ));
        }
        let d = usize::try_from(d)
            .map_err(|_| invalid("state.n_features", format!("{d} features do not fit in memory here")))?;
        let n_samples = count("state.n_samples", self.n_samples)?;
        let n_batches = count("state.n_batches", self.n_batches)?;
        if n_batches == 0 {
            return Err(invalid(
                "state.n_batches",
                "expected at least 1 (a fitted state has folded a non-empty batch), found 0",
            ));
        }
        if n_samples < n_batches {
            return Err(invalid(
                "state.n_samples",
                format!(
                    "expected at least n_batches = {n_batches} (every fitted batch has a sample), found {n_samples}"
                ),
            ));
        }
        let mode = params.mode();
        let reject = params.nan_policy() == NanPolicy::Reject;
        let acc = match (mode, self.accumulator) {
            (Mode::Cumulative, AccumulatorV1::Cumulative(c)) => Accumulator::Cumulative(c.check::<F>(d, reject)?),
            (Mode::MovingAverage { .. } | Mode::BatchAverage, AccumulatorV1::Moving(m)) => {
                Accumulator::Moving(m.check::<F>(d, n_batches, mode, reject)?)
            }
            (mode, acc) => {
                let (want, found) = match acc {
                    AccumulatorV1::Cumulative(_) => ("moving", "cumulative"),
                    AccumulatorV1::Moving(_) => ("cumulative", "moving"),
                };
                return Err(invalid(
                    "state.accumulator",
                    format!("expected a {want} accumulator for mode {mode}, found a {found} one"),
                ));
            }
        };
        let mut fitted = Fitted {
            n_samples,
            n_batches,
            acc,
            mean: Vec::new(),
        };
        fitted.refresh(mode);
        // A value is required wherever the original had one: the recomputed
        // mean must be finite there.
        let required: Vec<bool> = match &fitted.acc {
            Accumulator::Cumulative(s) => s.weight.iter().map(|w| !w.is_zero()).collect(),
            Accumulator::Moving(e) => e
                .iter()
                .map(|e| e.steps > 0 || params.start() == Some(EmaStart::Zero))
                .collect(),
        };
        if let Some(j) = (0..d).find(|&j| required[j] && !fitted.mean[j].is_finite()) {
            let field = match fitted.acc {
                Accumulator::Cumulative(_) => "state.accumulator.cumulative",
                Accumulator::Moving(_) => "state.accumulator.moving",
            };
            return Err(invalid(
                field,
                format!(
                    "feature {j}: expected values that give a finite mean, found a mean of {:?}",
                    fitted.mean[j]
                ),
            ));
        }
        Ok(fitted)
    }
}

impl CumulativeV1 {
    fn check<F: Element>(self, d: usize, reject: bool) -> Result<Sums<F>, CenteringError> {
        const SUM_HI: &str = "state.accumulator.cumulative.sum_hi";
        const SUM_LO: &str = "state.accumulator.cumulative.sum_lo";
        const SCALE: &str = "state.accumulator.cumulative.scale";
        const WEIGHT_HI: &str = "state.accumulator.cumulative.weight_hi";
        const WEIGHT_LO: &str = "state.accumulator.cumulative.weight_lo";
        let sum_hi = elements::<F>(SUM_HI, &self.sum_hi, d)?;
        let sum_lo = elements::<F>(SUM_LO, &self.sum_lo, d)?;
        check_len(SCALE, &self.scale, d)?;
        let weight_hi = elements::<F>(WEIGHT_HI, &self.weight_hi, d)?;
        let weight_lo = elements::<F>(WEIGHT_LO, &self.weight_lo, d)?;
        let limit = max_scale::<F>();
        let mut scale = Vec::with_capacity(d);
        for (j, &k) in self.scale.iter().enumerate() {
            if !(0..=limit).contains(&k) {
                return Err(invalid(
                    SCALE,
                    format!("feature {j}: expected an exponent in [0, {limit}], found {k}"),
                ));
            }
            scale.push(k as i32);
        }
        let sum: Vec<Dd<F>> = sum_hi.iter().zip(&sum_lo).map(|(&hi, &lo)| Dd { hi, lo }).collect();
        let weight: Vec<Dd<F>> = weight_hi
            .iter()
            .zip(&weight_lo)
            .map(|(&hi, &lo)| Dd { hi, lo })
            .collect();
        for (j, w) in weight.iter().enumerate() {
            if w.hi < F::zero() || w.value() < F::zero() {
                return Err(invalid(
                    WEIGHT_HI,
                    format!(
                        "feature {j}: expected a non-negative weight, found {:?} + {:?}",
                        wide(w.hi),
                        wide(w.lo)
                    ),
                ));
            }
            if !w.value().is_finite() {
                return Err(invalid(
                    WEIGHT_HI,
                    format!("feature {j}: the weight {:?} + {:?} overflows", wide(w.hi), wide(w.lo)),
                ));
            }
            if w.is_zero() {
                if reject {
                    return Err(invalid(
                        WEIGHT_HI,
                        format!(
                            "feature {j}: expected a positive weight under NaN policy reject (every fitted batch weighs every feature), found 0"
                        ),
                    ));
                }
                if !sum[j].is_zero() || scale[j] != 0 {
                    return Err(invalid(
                        SUM_HI,
                        format!(
                            "feature {j}: expected a zero sum and scale for a feature with zero weight, found ({:?} + {:?})·2^{}",
                            wide(sum[j].hi),
                            wide(sum[j].lo),
                            scale[j]
                        ),
                    ));
                }
            }
        }
        if weight.iter().all(Dd::is_zero) {
            return Err(invalid(
                WEIGHT_HI,
                "expected a positive weight for at least one feature (a fitted state has observed a value), found none",
            ));
        }
        Ok(Sums { sum, scale, weight })
    }
}

impl MovingV1 {
    fn check<F: Element>(
        self,
        d: usize,
        n_batches: u64,
        mode: Mode,
        reject: bool,
    ) -> Result<Vec<Ema<F>>, CenteringError> {
        const STEPS: &str = "state.accumulator.moving.steps";
        const DECAY: &str = "state.accumulator.moving.decay";
        const ZERO: &str = "state.accumulator.moving.zero";
        const NORM: &str = "state.accumulator.moving.norm";
        const DEBIASED: &str = "state.accumulator.moving.debiased";
        const FIRST: &str = "state.accumulator.moving.first";
        check_len(STEPS, &self.steps, d)?;
        let decay = elements::<F>(DECAY, &self.decay, d)?;
        let zero = elements::<F>(ZERO, &self.zero, d)?;
        let norm = elements::<F>(NORM, &self.norm, d)?;
        let debiased = elements::<F>(DEBIASED, &self.debiased, d)?;
        let first = elements::<F>(FIRST, &self.first, d)?;
        // The momentum exactly as the estimator uses it (BatchAverage is β = 1).
        let beta = match mode {
            Mode::MovingAverage { momentum, .. } => F::from(momentum).unwrap_or_else(F::one),
            _ => F::one(),
        };
        let mut total: u128 = 0;
        let mut emas = Vec::with_capacity(d);
        for j in 0..d {
            let steps = count(STEPS, self.steps[j])?;
            if steps > n_batches {
                return Err(invalid(
                    STEPS,
                    format!(
                        "feature {j}: expected at most n_batches = {n_batches} steps (one per batch), found {steps}"
                    ),
                ));
            }
            if reject && steps != n_batches {
                return Err(invalid(
                    STEPS,
                    format!(
                        "feature {j}: expected n_batches = {n_batches} steps under NaN policy reject (every batch updates every feature), found {steps}"
                    ),
                ));
            }
            total += u128::from(steps);
            let e = Ema {
                steps,
                decay: decay[j],
                zero: zero[j],
                norm: norm[j],
                debiased: debiased[j],
                first: first[j],
            };
            if !(F::zero()..=F::one()).contains(&e.decay) {
                return Err(invalid(
                    DECAY,
                    format!(
                        "feature {j}: expected momentum^steps in [0, 1], found {:?}",
                        wide(e.decay)
                    ),
                ));
            }
            if steps == 0 {
                let init = Ema::<F>::new();
                let fields = [
                    (DECAY, e.decay, init.decay),
                    (ZERO, e.zero, init.zero),
                    (NORM, e.norm, init.norm),
                    (DEBIASED, e.debiased, init.debiased),
                    (FIRST, e.first, init.first),
                ];
                if let Some((field, found, want)) = fields.into_iter().find(|(_, found, want)| found != want) {
                    return Err(invalid(
                        field,
                        format!(
                            "feature {j}: expected {:?} for a feature that has taken no step, found {:?}",
                            wide(want),
                            wide(found)
                        ),
                    ));
                }
            } else {
                if e.norm < F::one() {
                    return Err(invalid(
                        NORM,
                        format!(
                            "feature {j}: expected at least 1 after {steps} steps (Σ momentumⁱ starts at 1), found {:?}",
                            wide(e.norm)
                        ),
                    ));
                }
                if beta == F::one() && (e.decay != F::one() || e.zero != F::zero()) {
                    let (field, found, want) = if e.decay != F::one() {
                        (DECAY, e.decay, 1.0)
                    } else {
                        (ZERO, e.zero, 0.0)
                    };
                    return Err(invalid(
                        field,
                        format!(
                            "feature {j}: expected {want:?} with momentum 1, found {:?}",
                            wide(found)
                        ),
                    ));
                }
                if beta == F::zero() && e.decay != F::zero() {
                    return Err(invalid(
                        DECAY,
                        format!(
                            "feature {j}: expected 0 after a step with momentum 0, found {:?}",
                            wide(e.decay)
                        ),
                    ));
                }
            }
            emas.push(e);
        }
        if total < u128::from(n_batches) {
            return Err(invalid(
                STEPS,
                format!(
                    "expected steps summing to at least n_batches = {n_batches} (every batch updates a feature), found {total}"
                ),
            ));
        }
        Ok(emas)
    }
}

impl<F: Element> TryFrom<CenteringState> for Centering<F> {
    type Error = CenteringError;

    fn try_from(w: CenteringState) -> Result<Self, CenteringError> {
        check_version(w.format_version)?;
        let expected = dtype_of::<F>();
        if w.dtype != expected {
            return Err(invalid(
                "dtype",
                format!(
                    "expected {expected:?} (the element type of the estimator being loaded), found {:?}",
                    w.dtype
                ),
            ));
        }
        let params = w.params.check()?;
        let fitted = match w.state {
            None => None,
            Some(s) => Some(s.check::<F>(&params)?),
        };
        Ok(Centering { params, fitted })
    }
}

// ---------------------------------------------------------------------------
// The top-level reader: `format_version` is checked as soon as it is read,
// before fields whose shape a later version may have changed.

const FIELDS: &[&str] = &["format_version", "dtype", "params", "state"];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    FormatVersion,
    Dtype,
    Params,
    State,
}

struct StateVisitor;

impl<'de> Visitor<'de> for StateVisitor {
    type Value = CenteringState;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a centering state (format_version, dtype, params, state)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CenteringState, A::Error> {
        let format_version: i128 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        check_version(format_version).map_err(de::Error::custom)?;
        let dtype = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let params = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
        let state = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(3, &self))?;
        Ok(CenteringState {
            format_version,
            dtype,
            params,
            state,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CenteringState, A::Error> {
        let mut format_version = None;
        let mut dtype = None;
        let mut params = None;
        let mut state = None;
        while let Some(key) = map.next_key()? {
            match key {
                Field::FormatVersion => {
                    if format_version.is_some() {
                        return Err(de::Error::duplicate_field("format_version"));
                    }
                    let v: i128 = map.next_value()?;
                    check_version(v).map_err(de::Error::custom)?;
                    format_version = Some(v);
                }
                Field::Dtype => {
                    if dtype.is_some() {
                        return Err(de::Error::duplicate_field("dtype"));
                    }
                    dtype = Some(map.next_value()?);
                }
                Field::Params => {
                    if params.is_some() {
                        return Err(de::Error::duplicate_field("params"));
                    }
                    params = Some(map.next_value()?);
                }
                Field::State => {
                    if state.is_some() {
                        return Err(de::Error::duplicate_field("state"));
                    }
                    state = Some(map.next_value()?);
                }
            }
        }
        Ok(CenteringState {
            format_version: format_version.ok_or_else(|| de::Error::missing_field("format_version"))?,
            dtype: dtype.ok_or_else(|| de::Error::missing_field("dtype"))?,
            params: params.ok_or_else(|| de::Error::missing_field("params"))?,
            // Required even when null: an absent state is a truncated file,
            // not an unfitted estimator.
            state: state.ok_or_else(|| de::Error::missing_field("state"))?,
        })
    }
}

impl<'de> Deserialize<'de> for CenteringState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("CenteringState", FIELDS, StateVisitor)
    }
}

// ---------------------------------------------------------------------------
// The parameters on their own, validated the same way.

impl Serialize for ValidParams {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ParamsV1::from(*self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ValidParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ParamsV1::deserialize(deserializer)?.check().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_tags() {
        assert_eq!(dtype_of::<f32>(), "f32");
        assert_eq!(dtype_of::<f64>(), "f64");
    }

    #[test]
    fn scale_limits_cover_the_exponent_range() {
        assert_eq!(max_scale::<f64>(), 4 * (1023 + 64));
        assert_eq!(max_scale::<f32>(), 4 * (127 + 64));
    }

    #[test]
    fn exactness_catches_f64_values_in_an_f32_state() {
        assert_eq!(element::<f32>("x", 0, 0.5).unwrap(), 0.5);
        assert!(element::<f32>("x", 0, 0.1).is_err());
        assert!(element::<f32>("x", 0, 1e300).is_err());
        assert_eq!(element::<f32>("x", 0, -0.0).unwrap().to_bits(), (-0.0f32).to_bits());
        let sub = f32::from_bits(1);
        assert_eq!(element::<f32>("x", 0, f64::from(sub)).unwrap(), sub);
        assert!(element::<f64>("x", 0, f64::NAN).is_err());
    }
}
