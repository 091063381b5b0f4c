//! Learn the per-feature mean of numeric arrays and subtract it.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod estimator;
#[allow(unsafe_code)]
mod kernels;
mod params;
mod state;

pub use error::{CenteringError, Result};
pub use estimator::Centering;
pub use params::{CenteringParams, EmaStart, KERAS_DEFAULT_MOMENTUM, Mode, NanPolicy, ValidParams};

/// The element types `Centering` works with: any [`num_traits::Float`] that
/// can cross threads. `f32` and `f64` get SIMD kernels dispatched at run time;
/// other float types take the portable path.
pub trait Element: num_traits::Float + Send + Sync + std::fmt::Debug + 'static {}

impl<T: num_traits::Float + Send + Sync + std::fmt::Debug + 'static> Element for T {}
