//! Double-word arithmetic: error-free sums, the pair type, scaling by
//! powers of two, the pair's quotient and its one rounding to `F`.

use num_traits::Float;

/// `a + b = s + e` exactly (Knuth's TwoSum; no branch, no magnitude order).
#[inline(always)]
pub(crate) fn two_sum<F: Float>(a: F, b: F) -> (F, F) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// `a + b = s + e` exactly when `|a| ≥ |b|` (Dekker's Fast2Sum).
#[inline(always)]
fn fast_two_sum<F: Float>(a: F, b: F) -> (F, F) {
    let s = a + b;
    let e = b - (s - a);
    (s, e)
}

/// Multiplies by `2^k` without intermediate overflow or underflow of the
/// factor itself (steps of at most `2^±60`, exact for normal results).
pub(crate) fn ldexp<F: Float>(x: F, k: i32) -> F {
    if k == 0 {
        // The common case (no rescaled sum): no work at all.
        return x;
    }
    let step = 60;
    let mut x = x;
    let mut k = k;
    // 2^±60 converts exactly to f32 and f64; a type that cannot hold them
    // gets its nearest value rather than a panic.
    let up = F::from(2.0f64.powi(step)).unwrap_or_else(F::max_value);
    let down = F::from(2.0f64.powi(-step)).unwrap_or_else(F::min_positive_value);
    while k >= step {
        x = x * up;
        k -= step;
    }
    while k <= -step {
        x = x * down;
        k += step;
    }
    x * F::from(pow2(k)).unwrap_or_else(F::one)
}

/// `2^k` for `|k| < 60`, built from its bits (no `powi` call, which is a
/// library routine in a baseline build).
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + i64::from(k)) as u64) << 52)
}

/// The exact error `a·b − p` of the product `p = fl(a·b)`: Dekker's
/// TwoProduct (Veltkamp's split, 2²⁷ + 1) where it is exact — no overflow
/// of the split, no underflow of the error — else the FMA. Both are exact,
/// so the result is the same bits either way; the split needs no FMA
/// instruction, which a default (SSE2) build does not have and would call
/// a slow library routine for, once per weighted value.
#[inline(always)]
pub(crate) fn product_error(a: f64, b: f64, p: f64) -> f64 {
    if split_is_exact(a, b, p) {
        split_product_error(a, b, p)
    } else {
        a.mul_add(b, -p)
    }
}

/// Whether [`split_product_error`] is exact for `p = fl(a·b)`: no overflow
/// of the split, no underflow of the error.
#[inline(always)]
pub(crate) fn split_is_exact(a: f64, b: f64, p: f64) -> bool {
    const BIG: f64 = 1.0e297; // < 2^996 / SPLIT
    const TINY: f64 = 1.0e-290; // > 2^-968: the error stays a normal number
    a.abs() < BIG && b.abs() < BIG && p.abs() > TINY
}

/// Dekker's TwoProduct error of `p = fl(a·b)`, branch-free (exact where
/// [`split_is_exact`]).
#[inline(always)]
pub(crate) fn split_product_error(a: f64, b: f64, p: f64) -> f64 {
    const SPLIT: f64 = 134_217_729.0;
    let split = |v: f64| {
        let c = SPLIT * v;
        let hi = c - (c - v);
        (hi, v - hi)
    };
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    ((ah * bh - p) + ah * bl + al * bh) + al * bl
}

/// A double-word number `hi + lo`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Dd<F> {
    pub(crate) hi: F,
    pub(crate) lo: F,
}

impl<F: Float> Dd<F> {
    pub(crate) fn zero() -> Self {
        Dd {
            hi: F::zero(),
            lo: F::zero(),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_f(x: F) -> Self {
        Dd { hi: x, lo: F::zero() }
    }

    /// The same value with `|lo| ≤ ulp(hi)/2` (a pair whose `lo` collected
    /// rounding errors without renormalising).
    pub(crate) fn normalized(self) -> Self {
        Dd::zero().add(self)
    }

    /// Adds the pair `other` (normalised result).
    #[inline]
    pub(crate) fn add(self, other: Self) -> Self {
        let (s, e) = two_sum(self.hi, other.hi);
        let e = e + (self.lo + other.lo);
        let (hi, lo) = fast_two_sum(s, e);
        Dd { hi, lo }
    }

    pub(crate) fn is_finite(&self) -> bool {
        self.hi.is_finite() && self.lo.is_finite()
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.hi == F::zero() && self.lo == F::zero()
    }

    pub(crate) fn value(&self) -> F {
        self.hi + self.lo
    }

    pub(crate) fn scaled(self, k: i32) -> Self {
        if k == 0 {
            return self;
        }
        Dd {
            hi: ldexp(self.hi, k),
            lo: ldexp(self.lo, k),
        }
    }

    /// `self / w`, nearly correctly rounded: one division and one
    /// correction step with an FMA-exact remainder.
    pub(crate) fn div(self, w: Self) -> F {
        let q = self.quotient(w);
        q.hi + q.lo
    }

    /// `self / w` as an unevaluated pair `q₁ + c`: the first quotient and its
    /// correction (what [`div`](Self::div) adds), so that a narrower type
    /// can round the quotient once, from more than `F`'s precision.
    pub(crate) fn quotient(self, w: Self) -> Self {
        let q1 = self.hi / w.hi;
        if !q1.is_finite() || q1 == F::zero() {
            return Dd {
                hi: (self.hi + self.lo) / (w.hi + w.lo),
                lo: F::zero(),
            };
        }
        let p = q1 * w.hi;
        if !p.is_finite() {
            // `q1·w` rounds past `F::MAX` (a sum near the top of the range,
            // e.g. MAX over 3 samples): divide the halves (exact scalings)
            // and double back.
            let half = F::from(0.5).unwrap_or_else(F::one);
            let h = Dd {
                hi: self.hi * half,
                lo: self.lo * half,
            }
            .div(w);
            return Dd {
                hi: h + h,
                lo: F::zero(),
            };
        }
        let pe = match (q1.to_f64(), w.hi.to_f64(), p.to_f64()) {
            (Some(a), Some(b), Some(p64)) if std::mem::size_of::<F>() == 8 => {
                F::from(product_error(a, b, p64)).unwrap_or_else(|| q1.mul_add(w.hi, -p))
            }
            _ => q1.mul_add(w.hi, -p),
        };
        let r = (((self.hi - p) - pe) + self.lo) - q1 * w.lo;
        Dd { hi: q1, lo: r / w.hi }
    }
}

/// The `F` nearest to `s + e`, for a normalised `f64` pair (`s = fl(s + e)`):
/// `s` itself for `F = f64`; for a narrower `F`, `s` rounded — unless `s`
/// lies exactly halfway between two `F`s and `e` says on which side the
/// exact value is (anywhere else, `|e| < ulp(s)/2` cannot cross a midpoint
/// of `F`, which is an `f64`). Out of `F`'s range: ±∞.
pub(crate) fn round_pair<F: Float>(s: f64, e: f64) -> F {
    let r = F::from(s).unwrap_or_else(|| if s > 0.0 { F::infinity() } else { F::neg_infinity() });
    let Some(r64) = r.to_f64() else {
        return r;
    };
    if e == 0.0 || r64 == s || !r.is_finite() {
        return r;
    }
    // `s` rounded to `r`; the F on its other side is `r + 2·(s − r)` when `s`
    // is a midpoint (exact in f64).
    let other = r64 + 2.0 * (s - r64);
    let midpoint = F::from(other).and_then(|o| o.to_f64()) == Some(other);
    if midpoint && (e > 0.0) == (other > r64) {
        F::from(other).unwrap_or(r)
    } else {
        r
    }
}

/// `2·half`, for a value that should lie within `±F::MAX` (a weighted
/// average of finite values, a mean) but may have been rounded past it:
/// within a few ulps past, it is brought back to `±F::MAX` (within an ulp of
/// the exact value); further past — only a state loaded with impossible
/// values gets there — it stays infinite, so that loading refuses it.
pub(crate) fn from_half<F: Float>(half: F) -> F {
    let two = F::one() + F::one();
    let x = half * two;
    if !x.is_infinite() {
        return x;
    }
    let slack = F::one() + two * two * F::epsilon();
    if half.abs() <= F::max_value() / two * slack {
        x.signum() * F::max_value()
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sum_is_exact() {
        let (s, e) = two_sum(1.0f64, 1e-20);
        assert_eq!(s, 1.0);
        assert_eq!(e, 1e-20);
    }

    #[test]
    fn the_product_error_is_the_fma_s() {
        let mut z = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            // Mantissa and exponent both random, across the whole range.
            f64::from_bits(z & 0xBFFF_FFFF_FFFF_FFFF)
        };
        for _ in 0..200_000 {
            let (a, b) = (next(), next());
            let p = a * b;
            if p.is_finite() {
                let want = a.mul_add(b, -p);
                assert_eq!(product_error(a, b, p).to_bits(), want.to_bits(), "{a:e} · {b:e}");
            }
        }
        for (a, b) in [
            (1.0 + f64::EPSILON, 1.0 - f64::EPSILON),
            (3.0, 1.0 / 3.0),
            (1e300, 1e-300),
            (1e-160, 1e-160),
        ] {
            let p = a * b;
            assert_eq!(product_error(a, b, p).to_bits(), a.mul_add(b, -p).to_bits());
        }
        assert_eq!(pow2(-59), 2f64.powi(-59));
        assert_eq!(pow2(59), 2f64.powi(59));
    }

    #[test]
    fn ldexp_crosses_the_range() {
        assert_eq!(ldexp(1.0f64, 1000), 2f64.powi(1000));
        assert_eq!(ldexp(f64::MAX, -1023), f64::MAX / 2f64.powi(1023));
        // 3·2⁻¹³⁰ is subnormal; `2f32.powi(-130)` would flush to 0 (2¹³⁰ overflows).
        assert_eq!(ldexp(3.0f32, -130), 3.0 * f32::MIN_POSITIVE / 16.0);
    }

    #[test]
    fn pairs_round_once_to_narrower_types() {
        // Not a midpoint of f32: s alone decides.
        assert_eq!(round_pair::<f32>(1.0 + 2f64.powi(-30), 1e-40), 1.0f32);
        // 1 + 2⁻²⁴ is halfway between 1 and its f32 successor: the sign of
        // the rest decides (ties to even when it is 0).
        let mid = 1.0 + 2f64.powi(-24);
        assert_eq!(round_pair::<f32>(mid, 0.0), 1.0f32);
        assert_eq!(round_pair::<f32>(mid, 1e-30), 1.0f32 + f32::EPSILON);
        assert_eq!(round_pair::<f32>(mid, -1e-30), 1.0f32);
        // Halfway below a power of two, where the spacing halves.
        let below = 1.0 - 2f64.powi(-25);
        assert_eq!(round_pair::<f32>(below, -1e-30), 1.0f32 - f32::EPSILON / 2.0);
        assert_eq!(round_pair::<f32>(below, 1e-30), 1.0f32);
        // Negative values mirror.
        assert_eq!(round_pair::<f32>(-mid, -1e-30), -1.0f32 - f32::EPSILON);
        // f64 is s itself, and out of range is infinite.
        assert_eq!(round_pair::<f64>(mid, 1e-30), mid);
        assert_eq!(round_pair::<f32>(1e300, 0.0), f32::INFINITY);
        assert_eq!(round_pair::<f32>(-1e300, 0.0), f32::NEG_INFINITY);
    }

    #[test]
    fn division_near_max_does_not_overflow_its_remainder() {
        // MAX/3·3 rounds past MAX: the remainder would be NaN.
        let m = Dd::from_f(f64::MAX).div(Dd::from_f(3.0));
        assert_eq!(m, f64::MAX / 3.0);
        let m = Dd::from_f(f32::MAX).div(Dd::from_f(3.0f32));
        assert_eq!(m, f32::MAX / 3.0);
    }

    #[test]
    fn division_is_correctly_rounded_on_thirds() {
        let s = Dd::from_f(1.0f64);
        let w = Dd::from_f(3.0f64);
        assert_eq!(s.div(w), 1.0 / 3.0);
    }
}
