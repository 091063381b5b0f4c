//! The element types of states (`f32`, `f64`) and of `.npy` files (those
//! and the integers the core sums exactly).

use std::fmt;
use std::str::FromStr;

use ndarray_npy::WritableElement;

/// An element type of files and states: what the readers need beyond
/// [`centering::Element`].
pub trait Float:
    FileElem + centering::Element + bytemuck::Pod + FromStr + fmt::Display + fmt::LowerExp + WritableElement + Default
{
    /// The dtype name, as states spell it.
    const DTYPE: Dtype;
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
}

impl Float for f64 {
    const DTYPE: Dtype = Dtype::F64;
}

/// The element type of a `.npy` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::U8 | Elem::I8 => 1,
            Elem::U16 | Elem::I16 => 2,
            Elem::F32 | Elem::U32 | Elem::I32 => 4,
            Elem::F64 | Elem::U64 | Elem::I64 => 8,
        }
    }

    /// numpy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float32",
            Elem::F64 => "float64",
            Elem::U8 => "uint8",
            Elem::I8 => "int8",
            Elem::U16 => "uint16",
            Elem::I16 => "int16",
            Elem::U32 => "uint32",
            Elem::I32 => "int32",
            Elem::U64 => "uint64",
            Elem::I64 => "int64",
        }
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An element of a `.npy` file: read as bytes, fitted by the core as an
/// input type (integers exactly).
pub trait FileElem: bytemuck::Pod + centering::Input + Default {
    const ELEM: Elem;
    /// Reverses the byte order (a big-endian file on a little-endian machine).
    fn swap_bytes(self) -> Self;
}

impl FileElem for f32 {
    const ELEM: Elem = Elem::F32;
    fn swap_bytes(self) -> Self {
        f32::from_bits(self.to_bits().swap_bytes())
    }
}

impl FileElem for f64 {
    const ELEM: Elem = Elem::F64;
    fn swap_bytes(self) -> Self {
        f64::from_bits(self.to_bits().swap_bytes())
    }
}

macro_rules! int_elem {
    ($($t:ty => $e:ident),*) => {$(
        impl FileElem for $t {
            const ELEM: Elem = Elem::$e;
            fn swap_bytes(self) -> Self {
                <$t>::swap_bytes(self)
            }
        }
    )*};
}

int_elem!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64);

/// `f32` or `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
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
