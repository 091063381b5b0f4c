//! The two element types a state (and a .npy file) can hold.

use std::fmt;
use std::str::FromStr;

use ndarray_npy::WritableElement;

/// An element type of files and states: what the readers need beyond
/// [`centering::Element`].
pub trait Float:
    centering::Element + bytemuck::Pod + FromStr + fmt::Display + fmt::LowerExp + WritableElement + Default
{
    /// The dtype name, as states spell it.
    const DTYPE: Dtype;
    /// Reverses the byte order (a big-endian file on a little-endian machine).
    fn swap_bytes(self) -> Self;
    /// Writes the value as the shortest decimal that reads back to it.
    fn write_shortest(self, out: &mut String) {
        use std::fmt::Write;
        let a = self.abs();
        let plain = a == Self::zero() || (a >= lit(1e-5) && a < lit(1e16)) || !self.is_finite();
        // Writing into a String cannot fail.
        let _ = if plain {
            write!(out, "{self}")
        } else {
            write!(out, "{self:e}")
        };
    }
}

fn lit<F: num_traits::Float>(x: f64) -> F {
    F::from(x).unwrap_or_else(F::zero)
}

impl Float for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn swap_bytes(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
}

impl Float for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn swap_bytes(self) -> Self {
        f64::from_bits(self.to_bits().swap_bytes())
    }
}

/// `f32` or `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        })
    }
}

impl From<crate::cli::DtypeArg> for Dtype {
    fn from(d: crate::cli::DtypeArg) -> Self {
        match d {
            crate::cli::DtypeArg::F32 => Dtype::F32,
            crate::cli::DtypeArg::F64 => Dtype::F64,
        }
    }
}
