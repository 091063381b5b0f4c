//! The crate's error.

/// What can go wrong configuring, feeding or loading the layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `num_features = 0`.
    #[error("a centering layer needs at least one feature")]
    NoFeatures,
    /// An input or a state with another number of features than the layer's.
    #[error("expected {expected} features (the last axis), found {found}")]
    FeatureMismatch {
        /// The layer's `num_features`.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// The core refused the parameters or the state.
    #[error(transparent)]
    Centering(#[from] centering::CenteringError),
}
