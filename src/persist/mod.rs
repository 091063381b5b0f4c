//! [feature `serde`] The stored state: an explicit, versioned wire format
//! and its validation, in layers:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the schema (documented once, for users, on [`STATE_FORMAT_VERSION`]), the wire structs, writing, the top-level reader |
//! | `wire.rs` | numbers on the wire: exact floats ([`Real`]), field-aware integers ([`U64`], [`I32`]) |
//! | `check.rs` | reading: every field checked ([`MovingWire::check`] documents the tolerance of `decay`/`norm`) |
//! | `any.rs` | [`AnyCentering`], a state of either element type |
//!
//! `Centering<F>` (de)serialises through [`CenteringState`]
//! (`#[serde(try_from = …, into = …)]`), never through its own fields, so
//! the internal layout can change without breaking stored files. Loading is
//! `CenteringState` → [`TryFrom`] → `Centering<F>`: every field is checked
//! there, and a rejection is a [`CenteringError::InvalidState`] naming the
//! field, which serde hands to the format as a custom error (a
//! `serde_json::Error` whose message contains ours, for instance). Formats
//! 1 and 2 share one layout (format 2 writes floats as decimal strings in
//! text formats and keeps the cumulative sums as `f64` pairs for every
//! dtype), so one set of wire structs reads both; the version decides how
//! the sums are checked.
//!
//! Choices worth knowing:
//!
//! - Every float is stored as an `f64`, whatever `F`: exact for `f32` and
//!   `f64`. Values typed `F` (a moving average's `zero` and `first`; in
//!   format 1 the sums too) must convert *exactly* to `F` — a second line of
//!   defence, after the `dtype` tag, against an `f64` state loaded as `f32`.
//! - Integers are written as `u64` (counts, steps, the version) and `i32`
//!   (scale exponents): every serde format has those, while many (rmp-serde,
//!   TOML, BSON) have no 128-bit integers. They are read through field-aware
//!   newtypes ([`U64`], [`I32`]) that accept any integer the format holds and
//!   report a negative, oversized or fractional value with the field's name
//!   (where the format lets the value through: CBOR's own reader refuses a
//!   negative number for a `u64` before we see it, and that error is then
//!   wrapped with the field's name).
//! - Loading checks consistency, not just ranges: double-word pairs must be
//!   normalised, and a moving state's `decay` and `norm` must be what
//!   `steps` batches with the stored momentum give (see [`MovingWire::check`]
//!   for the tolerance and why merged states always meet it).

use std::any::TypeId;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::Element;
use crate::error::CenteringError;
use crate::estimator::Centering;
use crate::params::{EmaStart, Mode, NanPolicy, ValidParams};
use crate::state::{Accumulator, Fitted, Parts};

/// The version of the stored-state schema this release writes (feature
/// `serde`); it reads every version from 1 up to this one.
///
/// `Centering<F>` implements serde's `Serialize` and `Deserialize` through
/// an explicit schema, the same in every format (JSON, CBOR, postcard,
/// bincode …). In JSON:
///
/// ```text
/// {
///   "format_version": 2,
///   "dtype": "f64",                   "f32", "f64", or the Rust type name of another F
///   "params": {
///     "mode": "moving_average",       "cumulative" | "moving_average" | "batch_average"
///     "momentum": "0.99",             Keras convention (weight of the old value); null unless moving_average
///     "torch_momentum": null,         PyTorch's momentum μ when given that way (then momentum = 1 − μ
///                                     exactly), else null; may be omitted (= null)
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
///     } }                                            f64 pairs whatever dtype, each normalised:
///                                                    hi + lo == hi in f64 (format 1: pairs in dtype)
///     or "accumulator": { "moving": {                modes moving_average, batch_average
///         "steps": [D integers],                         t, batches that updated each feature
///         "decay": [D floats],                           momentumᵗ (an f64 whatever F)
///         "zero": [D floats],                            the zero-started (Keras/PyTorch) estimate, in F
///         "norm": [D floats],                            Σᵢ<ₜ momentumⁱ, the debiasing denominator (f64)
///         "debiased": [D floats],                        the debiased estimate (f64)
///         "first": [D floats]                            the first batch mean, in F
///     } }
///   }
/// }
/// ```
///
/// Floats are `f64` values (exact for `f32` and `f64`). Binary formats carry
/// them as `f64`s; text formats (JSON, TOML, YAML …) as decimal strings with
/// the shortest digits that round-trip (`"0.1"`, `"1e300"`, `"-0.0"`),
/// parsed back by Rust's correctly rounded parser, so the round trip is
/// exact whatever the format's own float parsing (serde_json with or
/// without `float_roundtrip`). Numbers are still read where found.
///
/// Versions: format 1 (centering 0.1.0) is the same schema with floats as
/// numbers in text formats; it loads as before, and is written back as
/// format 2. Its JSON numbers are parsed by the format: read format-1 JSON
/// with serde_json's `float_roundtrip` feature to get it back bit for bit.
/// Integers are written as `u64`, except `scale` (`i32`), so that formats
/// without 128-bit integers (rmp-serde, TOML, BSON …) work; on load any
/// integer is accepted and range-checked.
/// The learned mean is not stored: it is recomputed from the accumulator on
/// load, exactly as the original computed it.
///
/// A state round-trips bit for bit, and an estimator loaded from it keeps
/// fitting exactly as the original would have. Loading checks everything and
/// fails with [`CenteringError::InvalidState`] naming the field (wrapped in
/// the format's own error type): another format version, a `dtype` other
/// than `F`'s, a value not exactly representable in `F`, a momentum outside
/// `[0, 1]` (or a `torch_momentum` other than `1 − momentum`), per-feature
/// lengths other than `n_features`, `n_features = 0`, negative counts or
/// weights, un-normalised double-word pairs, non-finite sums or averages, step
/// counts inconsistent with the mode and `n_batches`, a `decay` or `norm`
/// other than what `steps` batches with the momentum give, an accumulator of
/// another mode, per-feature weights that differ under NaN policy `reject`
/// (where every sample weighs all its features). Unknown fields are rejected
/// too. What loads is a state the crate could have produced, except where
/// documented: `scale` exponents are accepted anywhere in their range, and
/// beyond 2⁴⁸ steps only coarse bounds on `decay` and `norm` are checked.
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
pub const STATE_FORMAT_VERSION: u32 = 2;

/// The wire form of `Centering<F>`, formats 1 and 2. Fields are written in this
/// order; `format_version` first, so that a reader meets it before anything
/// a later version may have changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CenteringState")]
pub(crate) struct CenteringState {
    format_version: u64,
    dtype: String,
    params: ParamsWire,
    state: Option<FittedWire>,
}

/// The parameters (also the wire form of [`ValidParams`] on its own).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Params", deny_unknown_fields)]
struct ParamsWire {
    mode: ModeWire,
    momentum: Option<Real>,
    /// Absent in a self-describing format reads as null (serde's rule for
    /// `Option` fields).
    torch_momentum: Option<Real>,
    start: Option<StartWire>,
    nan_policy: NanPolicyWire,
}

// The enums below are the schema's own, decoupled from the public ones. In
// binary formats a variant is its index: never reorder them.

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Mode", rename_all = "snake_case")]
enum ModeWire {
    Cumulative,
    MovingAverage,
    BatchAverage,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "EmaStart", rename_all = "snake_case")]
enum StartWire {
    Zero,
    FirstBatch,
    Debiased,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "NanPolicy", rename_all = "snake_case")]
enum NanPolicyWire {
    Reject,
    Ignore,
}

/// The learned state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Fitted", deny_unknown_fields)]
struct FittedWire {
    n_features: U64<NFeatures>,
    n_samples: U64<NSamples>,
    n_batches: U64<NBatches>,
    accumulator: AccumulatorWire,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Accumulator", rename_all = "snake_case")]
enum AccumulatorWire {
    Cumulative(CumulativeWire),
    Moving(MovingWire),
}

/// `Sums`, as a structure of arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Cumulative", deny_unknown_fields)]
struct CumulativeWire {
    sum_hi: Vec<Real>,
    sum_lo: Vec<Real>,
    scale: Vec<I32<Scale>>,
    weight_hi: Vec<Real>,
    weight_lo: Vec<Real>,
}

/// One `Ema` per feature, as a structure of arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Moving", deny_unknown_fields)]
struct MovingWire {
    steps: Vec<U64<Steps>>,
    decay: Vec<Real>,
    zero: Vec<Real>,
    norm: Vec<Real>,
    debiased: Vec<Real>,
    first: Vec<Real>,
}

mod any;
mod check;
mod wire;

pub use any::AnyCentering;
use check::check_version;
use check::invalid;
use wire::{FormatVersion, I32, NBatches, NFeatures, NSamples, Real, Scale, Steps, U64, reals};

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

fn wide_all<F: Element>(xs: impl Iterator<Item = F>) -> Vec<Real> {
    xs.map(|x| Real(wide(x))).collect()
}

impl From<ValidParams> for ParamsWire {
    fn from(p: ValidParams) -> Self {
        let (mode, momentum, start) = match p.mode() {
            Mode::Cumulative => (ModeWire::Cumulative, None, None),
            Mode::BatchAverage => (ModeWire::BatchAverage, None, None),
            Mode::MovingAverage { momentum, start } => (
                ModeWire::MovingAverage,
                Some(momentum),
                Some(match start {
                    EmaStart::Zero => StartWire::Zero,
                    EmaStart::FirstBatch => StartWire::FirstBatch,
                    EmaStart::Debiased => StartWire::Debiased,
                }),
            ),
        };
        let nan_policy = match p.nan_policy() {
            NanPolicy::Reject => NanPolicyWire::Reject,
            NanPolicy::Ignore => NanPolicyWire::Ignore,
        };
        ParamsWire {
            mode,
            momentum: momentum.map(Real),
            torch_momentum: p.given_as_torch().map(Real),
            start,
            nan_policy,
        }
    }
}

impl<F: Element> From<&Fitted<F>> for FittedWire {
    fn from(f: &Fitted<F>) -> Self {
        let accumulator = match &f.acc {
            Accumulator::Cumulative(s) => AccumulatorWire::Cumulative(CumulativeWire {
                sum_hi: wide_all((0..s.n_features()).map(|j| s.sum(j).hi)),
                sum_lo: wide_all((0..s.n_features()).map(|j| s.sum(j).lo)),
                scale: (0..s.n_features()).map(|j| I32::new(s.scale(j))).collect(),
                weight_hi: wide_all((0..s.n_features()).map(|j| s.weight(j).hi)),
                weight_lo: wide_all((0..s.n_features()).map(|j| s.weight(j).lo)),
            }),
            Accumulator::Moving(e) => AccumulatorWire::Moving(MovingWire {
                steps: e.iter().map(|e| U64::new(e.steps)).collect(),
                decay: reals(e.iter().map(|e| e.decay).collect()),
                zero: wide_all(e.iter().map(|e| e.zero)),
                norm: reals(e.iter().map(|e| e.norm).collect()),
                debiased: reals(e.iter().map(|e| e.debiased).collect()),
                first: wide_all(e.iter().map(|e| e.first)),
            }),
        };
        FittedWire {
            n_features: U64::new(f.n_features() as u64),
            n_samples: U64::new(f.n_samples),
            n_batches: U64::new(f.n_batches),
            accumulator,
        }
    }
}

impl<F: Element> From<Centering<F>> for CenteringState {
    fn from(c: Centering<F>) -> Self {
        CenteringState {
            format_version: u64::from(STATE_FORMAT_VERSION),
            dtype: dtype_of::<F>().to_owned(),
            params: ParamsWire::from(c.params),
            state: c.fitted.as_ref().map(FittedWire::from),
        }
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
            Some(s) => Some(s.check::<F>(&params, w.format_version)?),
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
        let format_version = seq
            .next_element::<U64<FormatVersion>>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?
            .0;
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
                    let v = map.next_value::<U64<FormatVersion>>()?.0;
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
        ParamsWire::from(*self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ValidParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ParamsWire::deserialize(deserializer)?
            .check()
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::check::{element, max_scale};
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
