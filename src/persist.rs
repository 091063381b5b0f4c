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
//!   `steps` batches with the stored momentum give (see [`MovingV1::check`]
//!   for the tolerance and why merged states always meet it).

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::Element;
use crate::error::CenteringError;
use crate::estimator::{Accumulator, Centering, Fitted};
use crate::params::{EmaStart, Mode, NanPolicy, ValidParams};
use crate::state::{Dd, Ema, SCALE_STEP, Sums, norm_reference, pow_u64};

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

/// The wire form of `Centering<F>`, version 1. Fields are written in this
/// order; `format_version` first, so that a reader meets it before anything
/// a later version may have changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename = "CenteringState")]
pub(crate) struct CenteringState {
    format_version: u64,
    dtype: String,
    params: ParamsV1,
    state: Option<FittedV1>,
}

/// The parameters (also the wire form of [`ValidParams`] on its own).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Params", deny_unknown_fields)]
struct ParamsV1 {
    mode: ModeV1,
    momentum: Option<Real>,
    /// Absent in a self-describing format reads as null (serde's rule for
    /// `Option` fields).
    torch_momentum: Option<Real>,
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
    n_features: U64<NFeatures>,
    n_samples: U64<NSamples>,
    n_batches: U64<NBatches>,
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
    sum_hi: Vec<Real>,
    sum_lo: Vec<Real>,
    scale: Vec<I32<Scale>>,
    weight_hi: Vec<Real>,
    weight_lo: Vec<Real>,
}

/// One `Ema` per feature, as a structure of arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Moving", deny_unknown_fields)]
struct MovingV1 {
    steps: Vec<U64<Steps>>,
    decay: Vec<Real>,
    zero: Vec<Real>,
    norm: Vec<Real>,
    debiased: Vec<Real>,
    first: Vec<Real>,
}

// ---------------------------------------------------------------------------
// Floats on the wire: exact whatever the format's own float parsing.

/// A float of the stored state. Binary formats (postcard, CBOR, bincode …)
/// carry it as an `f64`, bit for bit. Text formats (JSON, TOML, YAML …) get
/// a *decimal string* with the shortest digits that round-trip (`"0.1"`,
/// `"1e300"`, `"-0.0"`), parsed back here by Rust's correctly rounded
/// `str::parse`: a JSON number would be parsed by the format, and
/// serde_json's default (without its `float_roundtrip` feature) misreads
/// some 17-digit numbers by an ulp — a silently different estimator. A
/// number is still read where one is found (format 1 wrote numbers; a
/// hand-written file may have them), as exactly as the format reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Real(f64);

impl Serialize for Real {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&format!("{:?}", self.0))
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

struct RealVisitor;

impl Visitor<'_> for RealVisitor {
    type Value = Real;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a float (a decimal string such as \"0.25\" or \"1e-300\", or a number)")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Real, E> {
        Ok(Real(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Real, E> {
        Ok(Real(f64::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Real, E> {
        exact_integer(v as f64, i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Real, E> {
        exact_integer(v as f64, i128::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Real, E> {
        // Only what `{:?}` writes, plus the ordinary decimal forms; never
        // "inf"/"NaN" (a state holds finite values; they are refused with
        // the field's name later) — `str::parse` would accept those too.
        let decimal = v
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        match v.parse::<f64>() {
            Ok(x) if decimal && !v.is_empty() => Ok(Real(x)),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// An integer read as a float: only where the float is that integer exactly.
fn exact_integer<E: de::Error>(x: f64, v: i128) -> Result<Real, E> {
    if x as i128 == v {
        Ok(Real(x))
    } else {
        Err(E::custom(format!(
            "the integer {v} is not exactly a float: write it as a decimal string"
        )))
    }
}

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(RealVisitor)
        } else {
            deserializer.deserialize_f64(RealVisitor)
        }
    }
}

fn reals(v: Vec<f64>) -> Vec<Real> {
    v.into_iter().map(Real).collect()
}

// ---------------------------------------------------------------------------
// Integers on the wire: `u64` and `i32`, read from any integer, with the
// field's name in every error.

/// The name of the field an integer is read for (a marker type per field).
trait FieldName {
    const NAME: &'static str;
}

macro_rules! field_names {
    ($($marker:ident = $name:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq)]
        struct $marker;
        impl FieldName for $marker {
            const NAME: &'static str = $name;
        }
    )*};
}

field_names! {
    FormatVersion = "format_version",
    NFeatures = "state.n_features",
    NSamples = "state.n_samples",
    NBatches = "state.n_batches",
    Scale = "state.accumulator.cumulative.scale",
    Steps = "state.accumulator.moving.steps",
}

/// A `u64` field: written with `serialize_u64`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct U64<N>(u64, PhantomData<N>);

/// An `i32` field: written with `serialize_i32`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct I32<N>(i32, PhantomData<N>);

impl<N> U64<N> {
    fn new(x: u64) -> Self {
        U64(x, PhantomData)
    }
}

impl<N> I32<N> {
    fn new(x: i32) -> Self {
        I32(x, PhantomData)
    }
}

impl<N> Serialize for U64<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<N> Serialize for I32<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.0)
    }
}

/// The error for field `N`, as the format's error type.
fn field_error<N: FieldName, E: de::Error>(reason: impl Into<String>) -> E {
    E::custom(invalid(N::NAME, reason))
}

/// Reads any integer the format offers (and reports a fractional or
/// non-integer number) as an `i128`, to be range-checked by the caller.
struct IntVisitor<N> {
    /// The accepted range, for messages: "an integer in [0, 2^64)".
    expected: &'static str,
    field: PhantomData<N>,
}

impl<'de, N: FieldName> Visitor<'de> for IntVisitor<N> {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for field `{}`", self.expected, N::NAME)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<i128, E> {
        Ok(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<i128, E> {
        i128::try_from(v).map_err(|_| field_error::<N, E>(format!("expected {}, found {v}", self.expected)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
        // serde_json hands integers beyond u64 over as floats; `{v:?}` keeps
        // the point, so `1.0` is not reported as "found 1".
        Err(field_error::<N, E>(format!(
            "expected {}, found the float {v:?}",
            self.expected
        )))
    }
}

/// Whether an error already names a field of the stored state.
fn names_a_field<E: de::Error>(e: &E) -> bool {
    e.to_string().contains("invalid stored state: field `")
}

/// Reads an integer for field `N` with `read` (the format's
/// `deserialize_u64` or `deserialize_i32`), naming the field in every error.
fn read_int<'de, N: FieldName, D: Deserializer<'de>>(
    deserializer: D,
    expected: &'static str,
    read: impl FnOnce(D, IntVisitor<N>) -> Result<i128, D::Error>,
) -> Result<i128, D::Error> {
    // Self-describing text formats (JSON) hand every number to the visitor,
    // which names the field; a binary format may refuse a value itself
    // (CBOR: "unexpected negative integer"), so its error is wrapped. Text
    // formats are not wrapped: their errors carry a position, twice if
    // wrapped.
    let text = deserializer.is_human_readable();
    let visitor = IntVisitor {
        expected,
        field: PhantomData,
    };
    read(deserializer, visitor).map_err(|e| {
        if text || names_a_field(&e) {
            e
        } else {
            field_error::<N, D::Error>(e.to_string())
        }
    })
}

impl<'de, N: FieldName> Deserialize<'de> for U64<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "an integer in [0, 2^64)";
        let v = read_int::<N, D>(deserializer, EXPECTED, |d, v| d.deserialize_u64(v))?;
        u64::try_from(v)
            .map(U64::new)
            .map_err(|_| field_error::<N, D::Error>(format!("expected {EXPECTED}, found {v}")))
    }
}

impl<'de, N: FieldName> Deserialize<'de> for I32<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "an integer in [-2^31, 2^31)";
        let v = read_int::<N, D>(deserializer, EXPECTED, |d, v| d.deserialize_i32(v))?;
        i32::try_from(v)
            .map(I32::new)
            .map_err(|_| field_error::<N, D::Error>(format!("expected {EXPECTED}, found {v}")))
    }
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

fn wide_all<F: Element>(xs: impl Iterator<Item = F>) -> Vec<Real> {
    xs.map(|x| Real(wide(x))).collect()
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
            momentum: momentum.map(Real),
            torch_momentum: p.given_as_torch().map(Real),
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
                scale: s.scale.iter().map(|&k| I32::new(k)).collect(),
                weight_hi: wide_all(s.weight.iter().map(|d| d.hi)),
                weight_lo: wide_all(s.weight.iter().map(|d| d.lo)),
            }),
            Accumulator::Moving(e) => AccumulatorV1::Moving(MovingV1 {
                steps: e.iter().map(|e| U64::new(e.steps)).collect(),
                decay: reals(e.iter().map(|e| e.decay).collect()),
                zero: wide_all(e.iter().map(|e| e.zero)),
                norm: reals(e.iter().map(|e| e.norm).collect()),
                debiased: reals(e.iter().map(|e| e.debiased).collect()),
                first: wide_all(e.iter().map(|e| e.first)),
            }),
        };
        FittedV1 {
            n_features: U64::new(f.mean.len() as u64),
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

fn check_version(v: u64) -> Result<(), CenteringError> {
    if (1..=u64::from(STATE_FORMAT_VERSION)).contains(&v) {
        return Ok(());
    }
    let why = if v > u64::from(STATE_FORMAT_VERSION) {
        "a newer release of centering wrote it"
    } else {
        "no release of centering writes it"
    };
    Err(invalid(
        "format_version",
        format!("expected 1 to {STATE_FORMAT_VERSION} (the versions this release reads), found {v}: {why}"),
    ))
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

fn elements<F: Element>(field: &'static str, v: &[Real], d: usize) -> Result<Vec<F>, CenteringError> {
    check_len(field, v, d)?;
    v.iter().enumerate().map(|(j, x)| element(field, j, x.0)).collect()
}

/// The per-feature arrays of an accumulator, `(field, length)`, against
/// `n_features = d`: when they all agree with each other but not with `d`,
/// it is `n_features` that is wrong, and the error says so; otherwise the
/// first array that disagrees is named (by [`check_len`] later).
fn check_lengths(d: usize, arrays: &[(&'static str, usize)]) -> Result<(), CenteringError> {
    let Some(&(_, len)) = arrays.first() else {
        return Ok(());
    };
    if len != d && arrays.iter().all(|&(_, l)| l == len) {
        return Err(invalid(
            "state.n_features",
            format!("expected the length of every per-feature array ({len}), found n_features = {d}"),
        ));
    }
    Ok(())
}

/// The largest scale exponent a sum of `F`s can need, with a wide margin:
/// `|Σ wᵢxᵢ| ≤ Σwᵢ · max|xᵢ| < 2^(2·(emax+1))` needs at most `emax + 2`,
/// plus one [`SCALE_STEP`] per rescaling merge.
fn max_scale<F: Element>() -> i32 {
    let (m, e, _) = F::max_value().integer_decode();
    let emax = i32::from(e) + 63 - m.leading_zeros() as i32;
    4 * (emax + SCALE_STEP)
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
                if let Some(m) = self.momentum.map(|r| r.0) {
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
                if let Some(t) = self.torch_momentum.map(|r| r.0) {
                    return Err(invalid(
                        "params.torch_momentum",
                        format!("expected null for mode {tag} (only moving_average has a momentum), found {t}"),
                    ));
                }
                if self.mode == ModeV1::Cumulative {
                    Mode::Cumulative
                } else {
                    Mode::BatchAverage
                }
            }
            ModeV1::MovingAverage => {
                let momentum = self.momentum.map(|r| r.0).ok_or_else(|| {
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
                if let Some(t) = self.torch_momentum.map(|r| r.0) {
                    if !(0.0..=1.0).contains(&t) {
                        return Err(invalid(
                            "params.torch_momentum",
                            format!("expected null or a momentum in [0, 1], found {t}"),
                        ));
                    }
                    // `CenteringParams::torch_momentum(μ)` stores exactly 1 − μ.
                    if 1.0 - t != momentum {
                        return Err(invalid(
                            "params.torch_momentum",
                            format!(
                                "expected a PyTorch momentum μ with 1 − μ = momentum = {momentum:?} exactly, found μ = {t:?} (1 − μ = {:?})",
                                1.0 - t
                            ),
                        ));
                    }
                }
                Mode::MovingAverage { momentum, start }
            }
        };
        let nan_policy = match self.nan_policy {
            NanPolicyV1::Reject => NanPolicy::Reject,
            NanPolicyV1::Ignore => NanPolicy::Ignore,
        };
        let field = if self.torch_momentum.map(|r| r.0).is_some() {
            "params.torch_momentum"
        } else {
            "params.momentum"
        };
        ValidParams::from_parts(mode, nan_policy, self.torch_momentum.map(|r| r.0))
            .map_err(|e| invalid(field, e.to_string()))
    }
}

impl FittedV1 {
    fn check<F: Element>(self, params: &ValidParams, version: u64) -> Result<Fitted<F>, CenteringError> {
        let d = self.n_features.0;
        if d == 0 {
            return Err(invalid(
                "state.n_features",
                "expected at least 1 feature, found 0 (an unfitted estimator has \"state\": null)",
            ));
        }
        let d = usize::try_from(d)
            .map_err(|_| invalid("state.n_features", format!("{d} features do not fit in memory here")))?;
        let n_samples = self.n_samples.0;
        let n_batches = self.n_batches.0;
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
            (Mode::Cumulative, AccumulatorV1::Cumulative(c)) => {
                Accumulator::Cumulative(c.check::<F>(d, reject, version)?)
            }
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
        fitted.refresh(params);
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

/// The double-word pairs `hi + lo`, each normalised as every pair the crate
/// writes is: `hi + lo` rounds to `hi` in `F` (`|lo| ≤ ulp(hi)/2`). An
/// un-normalised pair is refused, naming the `lo` field: its value is not
/// what `hi` says (`hi = 1, lo = −1` is a weight of 0 posing as 1).
fn pairs<F: Element>(lo_field: &'static str, hi: &[F], lo: &[F]) -> Result<Vec<Dd<F>>, CenteringError> {
    hi.iter()
        .zip(lo)
        .enumerate()
        .map(|(j, (&hi, &lo))| {
            if hi + lo == hi {
                Ok(Dd { hi, lo })
            } else {
                Err(invalid(
                    lo_field,
                    format!(
                        "feature {j}: expected a normalised pair (|lo| ≤ ulp(hi)/2, so that hi + lo rounds to hi), found hi = {:?}, lo = {:?}",
                        wide(hi),
                        wide(lo)
                    ),
                ))
            }
        })
        .collect()
}

/// Double-word pairs of the stored sums, as the `f64` pairs the estimator
/// keeps. Format 2 stores `f64` pairs (normalised in `f64`). Format 1 stored
/// pairs in `F` (normalised in `F`, each value exactly an `F`): they are
/// checked as such, then widened exactly into `f64` pairs.
fn read_pairs<F: Element>(
    version: u64,
    hi_field: &'static str,
    lo_field: &'static str,
    hi: &[Real],
    lo: &[Real],
    d: usize,
) -> Result<Vec<Dd<f64>>, CenteringError> {
    if version == 1 {
        let hi = elements::<F>(hi_field, hi, d)?;
        let lo = elements::<F>(lo_field, lo, d)?;
        let narrow = pairs(lo_field, &hi, &lo)?;
        Ok(narrow
            .iter()
            .map(|p| {
                Dd {
                    hi: wide(p.hi),
                    lo: 0.0,
                }
                .add(Dd {
                    hi: wide(p.lo),
                    lo: 0.0,
                })
            })
            .collect())
    } else {
        let hi = elements::<f64>(hi_field, hi, d)?;
        let lo = elements::<f64>(lo_field, lo, d)?;
        pairs(lo_field, &hi, &lo)
    }
}

impl CumulativeV1 {
    fn check<F: Element>(self, d: usize, reject: bool, version: u64) -> Result<Sums, CenteringError> {
        const SUM_HI: &str = "state.accumulator.cumulative.sum_hi";
        const SUM_LO: &str = "state.accumulator.cumulative.sum_lo";
        const SCALE: &str = "state.accumulator.cumulative.scale";
        const WEIGHT_HI: &str = "state.accumulator.cumulative.weight_hi";
        const WEIGHT_LO: &str = "state.accumulator.cumulative.weight_lo";
        check_lengths(
            d,
            &[
                (SUM_HI, self.sum_hi.len()),
                (SUM_LO, self.sum_lo.len()),
                (SCALE, self.scale.len()),
                (WEIGHT_HI, self.weight_hi.len()),
                (WEIGHT_LO, self.weight_lo.len()),
            ],
        )?;
        check_len(SCALE, &self.scale, d)?;
        let sum = read_pairs::<F>(version, SUM_HI, SUM_LO, &self.sum_hi, &self.sum_lo, d)?;
        let weight = read_pairs::<F>(version, WEIGHT_HI, WEIGHT_LO, &self.weight_hi, &self.weight_lo, d)?;
        // The exponent range of the sums: F's in format 1 (which kept sums
        // in F), f64's since (sums are f64 whatever F).
        let limit = if version == 1 {
            max_scale::<F>()
        } else {
            max_scale::<f64>()
        };
        let mut scale = Vec::with_capacity(d);
        for (j, k) in self.scale.iter().enumerate() {
            let k = k.0;
            if !(0..=limit).contains(&k) {
                return Err(invalid(
                    SCALE,
                    format!("feature {j}: expected an exponent in [0, {limit}], found {k}"),
                ));
            }
            scale.push(k);
        }
        for (j, w) in weight.iter().enumerate() {
            if w.hi < 0.0 || w.value() < 0.0 {
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
        // Under Reject every fitted sample weighs all its features alike, and
        // every feature's weight is summed in the same order: the sums are
        // bit-identical across features in every state the crate produces.
        if reject && let Some(j) = weight.iter().position(|w| w != &weight[0]) {
            return Err(invalid(
                WEIGHT_HI,
                format!(
                    "feature {j}: expected the weight of feature 0 ({:?} + {:?}) under NaN policy reject (every sample weighs all its features), found {:?} + {:?}",
                    wide(weight[0].hi),
                    wide(weight[0].lo),
                    wide(weight[j].hi),
                    wide(weight[j].lo)
                ),
            ));
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

/// The unit roundoff of `f64`, `u = 2⁻⁵³`.
const U: f64 = f64::EPSILON / 2.0;

/// Beyond this many steps the relative tolerance of the moving checks,
/// `(4t + 256)·u`, exceeds 1/16: only the coarse bounds are checked there.
const TOLERANCE_STEPS: u64 = 1 << 48;

/// The relative tolerance of `decay` and `norm` after `t` steps (see
/// [`MovingV1::check`]).
fn tolerance(t: u64) -> f64 {
    (4.0 * t as f64 + 256.0) * U
}

impl MovingV1 {
    /// Checks one moving state per feature.
    ///
    /// Beyond ranges and lengths, `decay` and `norm` must be what `t = steps`
    /// batches with the stored momentum `β` give (both are `f64`, whatever
    /// `F`):
    ///
    /// - `β = 1` (batch average, or momentum 1): `decay = 1` and `norm = t`
    ///   exactly (for `t ≤ 2⁵³`; beyond, `2⁵³ ≤ norm ≤ t`), `zero = 0`.
    /// - `β = 0`: `decay = 0` and `norm = 1` exactly.
    /// - `0 < β < 1`: `|decay − βᵗ| ≤ τ·max(decay, βᵗ) + 2⁻¹⁰²²` and
    ///   `|norm − N| ≤ τ·N` with `N = (1 − βᵗ)/(1 − β)` and
    ///   `τ(t) = (4t + 256)·u`, `u = 2⁻⁵³` (checked for `t ≤ 2⁴⁸`; beyond,
    ///   `τ` is no constraint and only `decay ≤ β` and `1 ≤ norm ≤ t` are:
    ///   such states, unreachable by fitting, are accepted as they are).
    ///
    /// Why every state the crate writes meets this, merged or not: a step
    /// sets `decay = powi(β, t)` (binary powering, relative error
    /// `≤ γ_{t−1}`; past `2³¹` steps `decay·β`, which adds one rounding per
    /// step) and `norm ← β·norm + 1`; a merge sets `decay = d_a·d_b` and
    /// `norm = d_b·n_a + n_b`. By induction on either operation,
    /// `decay` is within `γ_{t−1}` of `βᵗ` (errors add: `γ_{t_a−1} +
    /// γ_{t_b−1} + u ≤ γ_{t−1}`) and `norm` within `γ_{2t−2}` of `N(t)`
    /// (a sum of positive terms, each within `γ_{t_b−1} + γ_{2t_a−2} + 2u ≤
    /// γ_{2t−2}` or `γ_{2t_b−2} + u ≤ γ_{2t−2}`, since `t_a, t_b ≥ 1`; a step
    /// adds `2u`). The references (`pow_u64`, `norm_reference`) are within
    /// `γ_{t−1}` and about `16u` of the exact values, so the stored values
    /// are within `2γ_{t−1} + …` and `γ_{2t−2} + 16u + …` of them: below
    /// `τ(t)` while `tu ≤ 2⁻⁵`. Underflow of `βᵗ` (below `2⁻¹⁰²²`) adds at
    /// most one subnormal unit per operation, covered by the `2⁻¹⁰²²` slack.
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
        check_lengths(
            d,
            &[
                (STEPS, self.steps.len()),
                (DECAY, self.decay.len()),
                (ZERO, self.zero.len()),
                (NORM, self.norm.len()),
                (DEBIASED, self.debiased.len()),
                (FIRST, self.first.len()),
            ],
        )?;
        check_len(STEPS, &self.steps, d)?;
        let decay = elements::<f64>(DECAY, &self.decay, d)?;
        let zero = elements::<F>(ZERO, &self.zero, d)?;
        let norm = elements::<f64>(NORM, &self.norm, d)?;
        let debiased = elements::<f64>(DEBIASED, &self.debiased, d)?;
        let first = elements::<F>(FIRST, &self.first, d)?;
        // The momentum exactly as the estimator uses it (BatchAverage is β = 1).
        let beta = match mode {
            Mode::MovingAverage { momentum, .. } => momentum,
            _ => 1.0,
        };
        let mut total: u128 = 0;
        let mut emas = Vec::with_capacity(d);
        for j in 0..d {
            let steps = self.steps[j].0;
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
            if !(0.0..=1.0).contains(&e.decay) {
                return Err(invalid(
                    DECAY,
                    format!("feature {j}: expected momentum^steps in [0, 1], found {:?}", e.decay),
                ));
            }
            if steps == 0 {
                let init = Ema::<F>::new();
                let fields = [
                    (DECAY, e.decay, init.decay),
                    (ZERO, wide(e.zero), wide(init.zero)),
                    (NORM, e.norm, init.norm),
                    (DEBIASED, e.debiased, init.debiased),
                    (FIRST, wide(e.first), wide(init.first)),
                ];
                if let Some((field, found, want)) = fields.into_iter().find(|(_, found, want)| found != want) {
                    return Err(invalid(
                        field,
                        format!("feature {j}: expected {want:?} for a feature that has taken no step, found {found:?}"),
                    ));
                }
            } else {
                check_decay_and_norm(j, steps, beta, &e).map_err(|(field, reason)| invalid(field, reason))?;
                if beta == 1.0 && e.zero != F::zero() {
                    return Err(invalid(
                        ZERO,
                        format!(
                            "feature {j}: expected 0.0 with momentum 1 (the zero-started estimate never moves), found {:?}",
                            wide(e.zero)
                        ),
                    ));
                }
                // The debiased estimate is a weighted average of batch means
                // of type F: it must be one too.
                if !F::from(e.debiased).is_some_and(|m| m.is_finite()) {
                    return Err(invalid(
                        DEBIASED,
                        format!(
                            "feature {j}: expected an average of {} batch means, within its range, found {:?}",
                            dtype_of::<F>(),
                            e.debiased
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

/// The consistency of `decay` and `norm` with `steps ≥ 1` and the momentum
/// `beta` (see [`MovingV1::check`]): the field at fault and why.
fn check_decay_and_norm<F>(j: usize, t: u64, beta: f64, e: &Ema<F>) -> Result<(), (&'static str, String)> {
    const DECAY: &str = "state.accumulator.moving.decay";
    const NORM: &str = "state.accumulator.moving.norm";
    /// 2⁵³: `norm` counts exactly up to here when `β = 1`.
    const EXACT: u64 = 1 << 53;
    if e.norm < 1.0 {
        return Err((
            NORM,
            format!(
                "feature {j}: expected at least 1 after {t} steps (Σ momentumⁱ starts at 1), found {:?}",
                e.norm
            ),
        ));
    }
    if beta == 1.0 {
        if e.decay != 1.0 {
            return Err((
                DECAY,
                format!("feature {j}: expected 1.0 with momentum 1, found {:?}", e.decay),
            ));
        }
        let ok = if t <= EXACT {
            e.norm == t as f64
        } else {
            (EXACT as f64..=t as f64 * (1.0 + f64::EPSILON)).contains(&e.norm)
        };
        if !ok {
            return Err((
                NORM,
                format!(
                    "feature {j}: expected the step count {t} with momentum 1 (norm counts the batches), found {:?}",
                    e.norm
                ),
            ));
        }
        return Ok(());
    }
    if beta == 0.0 {
        if e.decay != 0.0 {
            return Err((
                DECAY,
                format!(
                    "feature {j}: expected 0.0 after a step with momentum 0, found {:?}",
                    e.decay
                ),
            ));
        }
        if e.norm != 1.0 {
            return Err((
                NORM,
                format!(
                    "feature {j}: expected 1.0 after a step with momentum 0, found {:?}",
                    e.norm
                ),
            ));
        }
        return Ok(());
    }
    // 0 < β < 1.
    if e.norm > t as f64 {
        return Err((
            NORM,
            format!(
                "feature {j}: expected at most {t} after {t} steps (Σ momentumⁱ < steps), found {:?}",
                e.norm
            ),
        ));
    }
    // βᵗ ≤ β after a step, and rounding keeps it so: every product that
    // forms `decay` has a factor ≤ β and the others ≤ 1.
    if e.decay > beta {
        return Err((
            DECAY,
            format!(
                "feature {j}: expected at most the momentum {beta:?} after {t} steps (momentum^steps ≤ momentum), found {:?}",
                e.decay
            ),
        ));
    }
    if t > TOLERANCE_STEPS {
        // Documented: beyond 2⁴⁸ steps only the coarse bounds hold.
        return Ok(());
    }
    let tau = tolerance(t);
    let want = pow_u64(beta, t);
    if (e.decay - want).abs() > tau * e.decay.max(want) + f64::MIN_POSITIVE {
        return Err((
            DECAY,
            format!(
                "feature {j}: expected momentum^steps = {beta:?}^{t} ≈ {want:?} (relative tolerance {tau:.1e}), found {:?}",
                e.decay
            ),
        ));
    }
    let want = norm_reference(beta, t);
    if (e.norm - want).abs() > tau * want {
        return Err((
            NORM,
            format!(
                "feature {j}: expected Σ_{{i<{t}}} {beta:?}ⁱ ≈ {want:?} (relative tolerance {tau:.1e}), found {:?}",
                e.norm
            ),
        ));
    }
    Ok(())
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
// A state of either element type.

/// A stored state loaded without knowing its element type in advance
/// (feature `serde`): an `f32` or an `f64` estimator, as its `dtype` says —
/// what a command-line `inspect` or `merge`, or a query engine's result,
/// needs. It reads and writes the same format as [`Centering<F>`], with the
/// same validation.
///
/// # Examples
///
/// ```
/// use centering::{AnyCentering, Centering};
/// use ndarray::array;
///
/// let mut c = Centering::<f32>::new();
/// c.fit(&array![[1.0f32, 2.0], [3.0, 5.0]])?;
/// let json = serde_json::to_string(&c)?;
///
/// let any: AnyCentering = serde_json::from_str(&json)?;
/// assert_eq!(any.dtype(), "f32");
/// assert_eq!(any.n_features(), Some(2));
/// assert_eq!(any.mean().unwrap(), array![2.0, 3.5]); // widened to f64
/// assert_eq!(any.n_samples_seen(), 2);
/// let back: Centering<f32> = any.try_into()?;
/// assert_eq!(back, c);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AnyCentering {
    /// A `Centering<f32>`.
    F32(Centering<f32>),
    /// A `Centering<f64>`.
    F64(Centering<f64>),
}

/// Calls `$body` with `$c` bound to the estimator inside, whatever its type.
macro_rules! with_any {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            AnyCentering::F32($c) => $body,
            AnyCentering::F64($c) => $body,
        }
    };
}

impl AnyCentering {
    /// The element type: `"f32"` or `"f64"`, as the stored `dtype`.
    ///
    /// # Examples
    ///
    /// ```
    /// let any = centering::AnyCentering::from(centering::Centering::<f64>::new());
    /// assert_eq!(any.dtype(), "f64");
    /// ```
    pub fn dtype(&self) -> &'static str {
        match self {
            AnyCentering::F32(_) => "f32",
            AnyCentering::F64(_) => "f64",
        }
    }

    /// The parameters.
    ///
    /// # Examples
    ///
    /// ```
    /// let any = centering::AnyCentering::from(centering::Centering::<f32>::new());
    /// assert_eq!(any.params().mode(), centering::Mode::Cumulative);
    /// ```
    pub fn params(&self) -> &ValidParams {
        with_any!(self, c => c.params())
    }

    /// The number of features, once fitted.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(centering::AnyCentering::from(centering::Centering::<f32>::new()).n_features(), None);
    /// ```
    pub fn n_features(&self) -> Option<usize> {
        with_any!(self, c => c.n_features())
    }

    /// The learned mean, widened to `f64` (exactly); `None` before any fit.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// c.fit(&ndarray::array![[0.1f32]])?;
    /// let any = centering::AnyCentering::from(c);
    /// assert_eq!(any.mean().unwrap()[0], f64::from(0.1f32));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn mean(&self) -> Option<ndarray::Array1<f64>> {
        use num_traits::ToPrimitive;
        with_any!(self, c => c.mean().map(|m| m.mapv(|v| v.to_f64().unwrap_or(f64::NAN))))
    }

    /// Samples seen (see [`Centering::n_samples_seen`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(centering::AnyCentering::from(centering::Centering::<f64>::new()).n_samples_seen(), 0);
    /// ```
    pub fn n_samples_seen(&self) -> u64 {
        with_any!(self, c => c.n_samples_seen())
    }

    /// Batches fitted (see [`Centering::n_batches`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(centering::AnyCentering::from(centering::Centering::<f64>::new()).n_batches(), 0);
    /// ```
    pub fn n_batches(&self) -> u64 {
        with_any!(self, c => c.n_batches())
    }

    /// Per-feature counts (see [`Centering::counts`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = centering::Centering::<f32>::new();
    /// c.fit(&ndarray::array![[1.0f32], [2.0]])?;
    /// assert_eq!(centering::AnyCentering::from(c).counts().unwrap()[0], 2.0);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn counts(&self) -> Option<ndarray::Array1<f64>> {
        with_any!(self, c => c.counts())
    }

    /// Per-feature step counts (see [`Centering::n_steps`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(centering::AnyCentering::from(centering::Centering::<f32>::new()).n_steps(), None);
    /// ```
    pub fn n_steps(&self) -> Option<ndarray::Array1<u64>> {
        with_any!(self, c => c.n_steps())
    }

    /// Merges `other` into `self` as [`Centering::merge`] does.
    ///
    /// # Errors
    ///
    /// [`CenteringError::IncompatibleMerge`] for another element type, and
    /// every error of [`Centering::merge`]; `self` is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{AnyCentering, Centering};
    /// let (mut a, mut b) = (Centering::<f64>::new(), Centering::<f64>::new());
    /// a.fit(&ndarray::array![[1.0]])?;
    /// b.fit(&ndarray::array![[3.0]])?;
    /// let mut any = AnyCentering::from(a);
    /// any.merge(&AnyCentering::from(b))?;
    /// assert_eq!(any.mean().unwrap()[0], 2.0);
    /// assert!(any.merge(&AnyCentering::from(Centering::<f32>::new())).is_err());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn merge(&mut self, other: &AnyCentering) -> Result<(), CenteringError> {
        match (self, other) {
            (AnyCentering::F32(a), AnyCentering::F32(b)) => a.merge(b).map(|_| ()),
            (AnyCentering::F64(a), AnyCentering::F64(b)) => a.merge(b).map(|_| ()),
            (a, b) => Err(CenteringError::IncompatibleMerge {
                what: "element type",
                this: a.dtype().to_owned(),
                other: b.dtype().to_owned(),
            }),
        }
    }
}

impl From<Centering<f32>> for AnyCentering {
    fn from(c: Centering<f32>) -> Self {
        AnyCentering::F32(c)
    }
}

impl From<Centering<f64>> for AnyCentering {
    fn from(c: Centering<f64>) -> Self {
        AnyCentering::F64(c)
    }
}

/// The estimator of the element type asked for.
///
/// # Errors
///
/// [`CenteringError::InvalidState`] naming `dtype` when the state holds the
/// other element type.
impl<F: Element> TryFrom<AnyCentering> for Centering<F> {
    type Error = CenteringError;

    fn try_from(any: AnyCentering) -> Result<Self, CenteringError> {
        let found = any.dtype();
        let mismatch = || {
            invalid(
                "dtype",
                format!(
                    "expected {:?} (the element type of the estimator asked for), found {found:?}",
                    dtype_of::<F>()
                ),
            )
        };
        with_any!(any, c => {
            let boxed: Box<dyn std::any::Any> = Box::new(c);
            boxed.downcast::<Centering<F>>().map(|b| *b).map_err(|_| mismatch())
        })
    }
}

impl Serialize for AnyCentering {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_any!(self, c => c.serialize(serializer))
    }
}

impl<'de> Deserialize<'de> for AnyCentering {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = CenteringState::deserialize(deserializer)?;
        match state.dtype.as_str() {
            "f32" => Centering::<f32>::try_from(state).map(AnyCentering::F32),
            "f64" => Centering::<f64>::try_from(state).map(AnyCentering::F64),
            other => Err(invalid(
                "dtype",
                format!("expected \"f32\" or \"f64\", found {other:?}"),
            )),
        }
        .map_err(de::Error::custom)
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
