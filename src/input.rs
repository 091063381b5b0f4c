//! The element types: [`Element`], the type of an estimator's mean and
//! output (`f32`, `f64`), and [`Input`], every element type it fits and
//! transforms — the floats, the integers data is stored as, and (feature
//! `half`) the half-precision types of mixed-precision training. Both traits
//! are sealed: a type the crate cannot sum correctly does not compile.

use ndarray::ArrayViewD;

mod sealed {
    pub trait Sealed {}
}

/// The element type of a [`Centering<F>`](crate::Centering): the type of its
/// mean and of what `transform` returns, `f32` or `f64` (sealed: no other
/// type can give a correct mean here; `half::f16` once compiled and
/// returned NaN). `f32` and `f64` get SIMD kernels dispatched at run time.
pub trait Element: num_traits::Float + Input + Send + Sync + std::fmt::Debug + 'static + sealed::Sealed {
    /// The batch as a view of `Self`, when it is one (not part of the
    /// public API).
    #[doc(hidden)]
    fn same_view(b: Batch<'_>) -> Option<ArrayViewD<'_, Self>>;

    /// `bytes` (a mapped `.npy` output) as elements, if aligned (not part
    /// of the public API).
    #[doc(hidden)]
    #[cfg(feature = "npy")]
    fn cast_bytes_mut(bytes: &mut [u8]) -> Option<&mut [Self]>;

    /// The `.npy` `descr` of the type (not part of the public API).
    #[doc(hidden)]
    #[cfg(feature = "npy")]
    const NPY_DESCR: &'static str;
}

impl Element for f32 {
    fn same_view(b: Batch<'_>) -> Option<ArrayViewD<'_, Self>> {
        match b {
            Batch::F32(v) => Some(v),
            _ => None,
        }
    }

    #[cfg(feature = "npy")]
    fn cast_bytes_mut(bytes: &mut [u8]) -> Option<&mut [Self]> {
        bytemuck::try_cast_slice_mut(bytes).ok()
    }

    #[cfg(feature = "npy")]
    const NPY_DESCR: &'static str = "<f4";
}

impl Element for f64 {
    fn same_view(b: Batch<'_>) -> Option<ArrayViewD<'_, Self>> {
        match b {
            Batch::F64(v) => Some(v),
            _ => None,
        }
    }

    #[cfg(feature = "npy")]
    fn cast_bytes_mut(bytes: &mut [u8]) -> Option<&mut [Self]> {
        bytemuck::try_cast_slice_mut(bytes).ok()
    }

    #[cfg(feature = "npy")]
    const NPY_DESCR: &'static str = "<f8";
}

/// An element type a `Centering<F>` fits and transforms without the
/// caller converting the array first (sealed).
///
/// | input | summed as | guarantee |
/// |---|---|---|
/// | `f32`, `f64` | `f64` double-words (TwoSum) | within 1 ulp of the exact mean in `F` (well-conditioned data) |
/// | `u8`, `i8`, `u16`, `i16`, `u32`, `i32` | exact integers (`i64` per leaf, `i128` in the state) | the sum is exact: the mean is a function of the exact sum and count only — bit-identical whatever the batch split, merge order and thread count |
/// | `u64`, `i64` | exact integers (`i128` per leaf, double-words in the state) | as above for at least 2⁴¹ ≈ 2.2·10¹² samples of any 64-bit values per feature (every partial sum below 2¹⁰⁵ in magnitude); beyond, within the double-word bound |
/// | `half::f16`, `half::bf16` (feature `half`) | widened to `f64`, summed as `f32` is | within 1 ulp of the exact mean in `F` |
///
/// Weights stay `F`; the in-place variants need an `F` array (a `u8` image
/// minus a mean is not a `u8` image). A 64-bit integer is not always an
/// `f64`: it is split into two (`x = hi + lo`, both exact) wherever it is
/// multiplied by a weight or has the mean subtracted, so a weighted mean is
/// as accurate as for `f64` data and `transform` gives `x − mean` rounded
/// (nearly) once — `2⁶⁰ + 1` minus a mean of `2⁶⁰` is `1`, not `0`.
pub trait Input: Copy + Send + Sync + std::fmt::Debug + 'static + sealed::Sealed {
    /// Whether [`widen`](Self::widen) is exact for every value (all but the
    /// 64-bit integers; not part of the public API).
    #[doc(hidden)]
    const EXACT: bool = true;

    /// The batch as the kernels see it (not part of the public API).
    #[doc(hidden)]
    fn batch(x: ArrayViewD<'_, Self>) -> __private::Batch<'_>;

    /// The value as an `f64`: exact, or the nearest `f64` when not
    /// [`EXACT`](Self::EXACT).
    #[doc(hidden)]
    fn widen(self) -> f64;

    /// The value as `hi + lo` exactly: `hi` is [`widen`](Self::widen), `lo`
    /// what it rounded away (`0` when [`EXACT`](Self::EXACT)).
    #[doc(hidden)]
    #[inline(always)]
    fn widen_pair(self) -> (f64, f64) {
        (self.widen(), 0.0)
    }
}

/// Not part of the public API: the kernels' view of an input batch.
#[doc(hidden)]
pub mod __private {
    use ndarray::ArrayViewD;

    /// A batch, by element kind.
    #[derive(Debug)]
    pub enum Batch<'a> {
        /// `f32` data.
        F32(ArrayViewD<'a, f32>),
        /// `f64` data.
        F64(ArrayViewD<'a, f64>),
        /// Integer data, summed exactly.
        Int(IntBatch<'a>),
        /// Half-precision data, widened.
        #[cfg(feature = "half")]
        F16(ArrayViewD<'a, half::f16>),
        /// Half-precision data, widened.
        #[cfg(feature = "half")]
        Bf16(ArrayViewD<'a, half::bf16>),
    }

    /// An integer batch.
    #[derive(Debug)]
    #[allow(missing_docs)]
    pub enum IntBatch<'a> {
        U8(ArrayViewD<'a, u8>),
        I8(ArrayViewD<'a, i8>),
        U16(ArrayViewD<'a, u16>),
        I16(ArrayViewD<'a, i16>),
        U32(ArrayViewD<'a, u32>),
        I32(ArrayViewD<'a, i32>),
        U64(ArrayViewD<'a, u64>),
        I64(ArrayViewD<'a, i64>),
    }
}

use __private::{Batch, IntBatch};

macro_rules! float_input {
    ($t:ty, $v:ident) => {
        impl sealed::Sealed for $t {}
        impl Input for $t {
            fn batch(x: ArrayViewD<'_, Self>) -> Batch<'_> {
                Batch::$v(x)
            }
            fn widen(self) -> f64 {
                f64::from(self)
            }
        }
    };
}

float_input!(f32, F32);
float_input!(f64, F64);

macro_rules! int_input {
    ($($t:ty => $v:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Input for $t {
            fn batch(x: ArrayViewD<'_, Self>) -> Batch<'_> {
                Batch::Int(IntBatch::$v(x))
            }
            fn widen(self) -> f64 {
                f64::from(self)
            }
        }
    )*};
}

int_input!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32);

macro_rules! wide_int_input {
    ($($t:ty => $v:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Input for $t {
            const EXACT: bool = false;
            fn batch(x: ArrayViewD<'_, Self>) -> Batch<'_> {
                Batch::Int(IntBatch::$v(x))
            }
            #[inline(always)]
            fn widen(self) -> f64 {
                // The nearest f64 (exact below 2⁵³ in magnitude).
                self as f64
            }
            #[inline(always)]
            fn widen_pair(self) -> (f64, f64) {
                let hi = self as f64;
                // `hi` is within 2¹⁰ of the value (half an ulp of a
                // 64-bit magnitude), so the rest is exact in an f64; `hi`
                // itself may be 2⁶⁴ (u64::MAX rounds up), which i128 holds.
                let lo = (i128::from(self) - hi as i128) as f64;
                (hi, lo)
            }
        }
    )*};
}

wide_int_input!(u64 => U64, i64 => I64);

#[cfg(feature = "half")]
macro_rules! half_input {
    ($($t:ty => $v:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Input for $t {
            fn batch(x: ArrayViewD<'_, Self>) -> Batch<'_> {
                Batch::$v(x)
            }
            fn widen(self) -> f64 {
                self.to_f64()
            }
        }
    )*};
}

#[cfg(feature = "half")]
half_input!(half::f16 => F16, half::bf16 => Bf16);
