//! A stored state of either element type.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::check::invalid;
use super::{CenteringState, dtype_of};
use crate::error::CenteringError;
use crate::params::ValidParams;
use crate::{Centering, Element};

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
