//! Numbers on the wire: floats exact whatever the format's float parsing,
//! and integers read from any integer the format holds, with the field's
//! name in every error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::check::invalid;

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
pub(super) struct Real(pub(super) f64);

impl Serialize for Real {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&format!("{:?}", self.0))
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

pub(super) struct RealVisitor;

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
pub(super) fn exact_integer<E: de::Error>(x: f64, v: i128) -> Result<Real, E> {
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

pub(super) fn reals(v: Vec<f64>) -> Vec<Real> {
    v.into_iter().map(Real).collect()
}

// ---------------------------------------------------------------------------
// Integers on the wire: `u64` and `i32`, read from any integer, with the
// field's name in every error.

/// The name of the field an integer is read for (a marker type per field).
pub(super) trait FieldName {
    const NAME: &'static str;
}

macro_rules! field_names {
    ($($marker:ident = $name:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(super) struct $marker;
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
pub(super) struct U64<N>(pub(super) u64, PhantomData<N>);

/// An `i32` field: written with `serialize_i32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct I32<N>(pub(super) i32, PhantomData<N>);

impl<N> U64<N> {
    pub(super) fn new(x: u64) -> Self {
        U64(x, PhantomData)
    }
}

impl<N> I32<N> {
    pub(super) fn new(x: i32) -> Self {
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
pub(super) fn field_error<N: FieldName, E: de::Error>(reason: impl Into<String>) -> E {
    E::custom(invalid(N::NAME, reason))
}

/// Reads any integer the format offers (and reports a fractional or
/// non-integer number) as an `i128`, to be range-checked by the caller.
pub(super) struct IntVisitor<N> {
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
pub(super) fn names_a_field<E: de::Error>(e: &E) -> bool {
    e.to_string().contains("invalid stored state: field `")
}

/// Reads an integer for field `N` with `read` (the format's
/// `deserialize_u64` or `deserialize_i32`), naming the field in every error.
pub(super) fn read_int<'de, N: FieldName, D: Deserializer<'de>>(
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
