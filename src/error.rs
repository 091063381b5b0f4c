//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in `centering`.
///
/// Every variant carries what was expected and what was found, so that the
/// message alone says how to fix the call. Any error returned by a fitting
/// method leaves the estimator exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CenteringError {
    /// `transform` (or another method that needs a learned mean) was called
    /// before any non-empty batch was fitted.
    #[error("the estimator is not fitted yet: call `fit` or `partial_fit` with a non-empty batch first")]
    NotFitted,

    /// The input is 0-dimensional: there is no feature axis.
    #[error(
        "expected an array with at least 1 dimension (the last axis holds the features), found a 0-dimensional array"
    )]
    ZeroDimensional,

    /// The feature axis (the last axis) has length 0.
    #[error("expected at least 1 feature (a last axis of length >= 1), found 0 features")]
    NoFeatures,

    /// The input's feature count differs from the fitted one.
    #[error("expected {expected} features (the length of the last axis), found {found}")]
    FeatureMismatch {
        /// The number of features the estimator was fitted with.
        expected: usize,
        /// The length of the last axis of the input.
        found: usize,
    },

    /// The output buffer of an `_into` method has the wrong shape.
    #[error("expected an output buffer of shape {expected:?} (the input's shape), found {found:?}")]
    OutputShape {
        /// The input's shape.
        expected: Vec<usize>,
        /// The buffer's shape.
        found: Vec<usize>,
    },

    /// A NaN or infinite value in a batch given to a fitting method
    /// (under [`NanPolicy::Ignore`](crate::NanPolicy::Ignore), only infinities).
    #[error("expected finite values, found {value} at index {index:?}")]
    NonFinite {
        /// The index of the first offending element, in the input's own axes.
        index: Vec<usize>,
        /// The offending value, converted to `f64`.
        value: f64,
    },

    /// A null (a missing value marked by a validity bitmap) in a column
    /// given to a fitting method under [`NanPolicy::Reject`](crate::NanPolicy::Reject).
    #[error(
        "expected no missing values under NaN policy reject, found a null at index {index:?} (row, feature); NanPolicy::Ignore skips missing values per feature"
    )]
    NullValue {
        /// `[row, feature]` of the first null, in row-major order.
        index: Vec<usize>,
    },

    /// The columns of a columnar batch (or their validity bitmaps) do not
    /// have the same number of rows.
    #[error("expected {expected} rows in column {feature} (the length of column 0), found {found}")]
    ColumnLength {
        /// The column at fault.
        feature: usize,
        /// The rows of column 0, which every column must have.
        expected: usize,
        /// The rows this column (or its validity bitmap) has.
        found: usize,
    },

    /// The sample weights have the wrong shape.
    #[error("{}", weight_shape_message(expected, *per_first_axis, found))]
    WeightShape {
        /// The sample axes of the input (`x.shape()[..ndim - 1]`).
        expected: Vec<usize>,
        /// `Some(n)` when a 1-D weight of length `n` (one weight per index
        /// of the first axis, for inputs of 3 or more dimensions) is
        /// accepted too.
        per_first_axis: Option<usize>,
        /// The weights' shape.
        found: Vec<usize>,
    },

    /// A sample weight is negative, NaN or infinite.
    #[error("expected finite, non-negative sample weights, found {weight} at index {index:?}")]
    InvalidWeight {
        /// The index of the first offending weight, in the weights' own axes.
        index: Vec<usize>,
        /// The offending weight, converted to `f64`.
        weight: f64,
    },

    /// The total weight of a feature no longer fits in the element type.
    #[error("the total sample weight of feature {feature} overflows the element type")]
    WeightOverflow {
        /// The feature whose weight sum overflowed.
        feature: usize,
    },

    /// [`fit`](crate::Centering::fit) (or `fit_weighted`, `fit_transform`)
    /// was given a batch that carries nothing to learn: no samples, a total
    /// weight of 0, or (under [`NanPolicy::Ignore`](crate::NanPolicy::Ignore))
    /// only missing values. `fit` would forget the state and learn nothing,
    /// so it refuses and keeps the state, as scikit-learn's `fit` raises on
    /// an empty array; `partial_fit` of such a batch is a no-op.
    #[error(
        "expected a batch with at least one observed value to fit, found {samples} samples with nothing to learn (no samples, zero total weight, or only missing values); the estimator is unchanged (`partial_fit` of such a batch is a no-op)"
    )]
    EmptyFit {
        /// The number of samples in the batch.
        samples: usize,
    },

    /// [`Centering::average`](crate::Centering::average) was given no
    /// replica.
    #[error("expected at least one replica to average, found none")]
    NoReplicas,

    /// A count of the learned state would exceed `u64::MAX` (only reachable
    /// by merging or fitting states loaded with counts near that limit).
    #[error("the {what} count would exceed u64::MAX (found {this} + {added}); the estimator is unchanged")]
    CountOverflow {
        /// Which count: `"sample"` or `"batch"`.
        what: &'static str,
        /// The count held.
        this: u64,
        /// The count to add.
        added: u64,
    },

    /// The output array of `transform` (or `inverse_transform`,
    /// `center_batch`, `fit_transform`) cannot be allocated: its size does
    /// not fit in memory addresses, or the allocator refused it.
    #[error("cannot allocate an output of {elements} elements of {element_bytes} bytes each: {reason}")]
    Allocation {
        /// The number of elements asked for.
        elements: usize,
        /// The size of one element.
        element_bytes: usize,
        /// Why: the size overflows, or the allocator refused it.
        reason: &'static str,
    },

    /// A momentum outside `[0, 1]` (or NaN) was given.
    #[error("expected a momentum in [0, 1], found {momentum}")]
    InvalidMomentum {
        /// The rejected momentum, as given (in the convention it was given in).
        momentum: f64,
    },

    /// Two estimators that cannot be merged: different feature counts,
    /// modes, momenta or NaN policies.
    #[error("cannot merge: {what} differs (self has {this}, other has {other})")]
    IncompatibleMerge {
        /// Which property differs.
        what: &'static str,
        /// `self`'s value, formatted.
        this: String,
        /// `other`'s value, formatted.
        other: String,
    },

    /// A stored state could not be loaded: it names the field and what is
    /// wrong with it.
    #[error("invalid stored state: field `{field}`: {reason}")]
    InvalidState {
        /// The field of the stored state that is wrong.
        field: &'static str,
        /// What is wrong with it: what was expected and what was found.
        reason: String,
    },

    /// An error in linfa's vocabulary (feature `linfa`): linfa's `Fit`
    /// requires the error type to convert from `linfa::Error`, and fitting a
    /// linfa dataset without samples reports linfa's "not enough samples".
    #[cfg(feature = "linfa")]
    #[error("linfa: {message}")]
    Linfa {
        /// linfa's error message.
        message: String,
    },
}

/// The message of [`CenteringError::WeightShape`]: every accepted shape, and
/// how to make a 0-dimensional weight for a single sample.
fn weight_shape_message(expected: &[usize], per_first_axis: Option<usize>, found: &[usize]) -> String {
    let mut m = format!("expected sample weights of shape {expected:?} (the input's sample axes");
    if expected.is_empty() {
        m.push_str(": the input is one sample, so its weight is a 0-dimensional array, e.g. `ndarray::arr0(w)`");
    }
    m.push(')');
    if let Some(n) = per_first_axis {
        m.push_str(&format!(" or [{n}] (one weight per index of the first axis)"));
    }
    m.push_str(&format!(", found {found:?}"));
    m
}

/// `Result` with [`CenteringError`].
pub type Result<T, E = CenteringError> = std::result::Result<T, E>;
