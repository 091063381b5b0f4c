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

    /// The sample weights have the wrong shape.
    #[error("expected sample weights of shape {expected:?} (the input's sample axes), found {found:?}")]
    WeightShape {
        /// The sample axes of the input (`x.shape()[..ndim - 1]`), or `[n]`
        /// with the length of the first axis.
        expected: Vec<usize>,
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

/// `Result` with [`CenteringError`].
pub type Result<T, E = CenteringError> = std::result::Result<T, E>;
