//! The cumulative accumulator: per-feature double-word sums and weights.

use num_traits::Float;

use super::dd::{Dd, from_half, ldexp, product_error, round_pair, two_sum};

/// The sums of one batch (or one leaf of a batch, or everything fitted),
/// feature by feature: `Σ wᵢ·xᵢ = sum·2^scale` and `Σ wᵢ = weight` over the
/// observed values.
///
/// The sums are `f64` double-words whatever the estimator's `F`: `F` types
/// the mean and the output only. For `f32` data this keeps about 106 bits
/// (an `f32` pair kept 48), counts exact to 2¹⁰⁶, and a sum of `f32`s can
/// never overflow; the mean is rounded to `F` once, from the double-word
/// quotient ([`round_pair`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sums {
    pub(crate) sum: Vec<Dd<f64>>,
    pub(crate) scale: Vec<i32>,
    pub(crate) weight: Vec<Dd<f64>>,
}

/// The power-of-two step by which a sum is scaled down when it would overflow.
pub(crate) const SCALE_STEP: i32 = 64;

impl Sums {
    pub(crate) fn zeros(d: usize) -> Self {
        Sums {
            sum: vec![Dd::zero(); d],
            scale: vec![0; d],
            weight: vec![Dd::zero(); d],
        }
    }

    /// The sums `sum` of `n` samples in which every feature was observed
    /// (no weights, no missing value, no scaling): each weight is `n`,
    /// exactly (an `f64` holds every count up to 2⁵³).
    pub(crate) fn counted(sum: Vec<Dd<f64>>, n: usize) -> Self {
        let d = sum.len();
        Sums {
            sum,
            scale: vec![0; d],
            weight: vec![Dd { hi: n as f64, lo: 0.0 }; d],
        }
    }

    /// `a` with `b` merged in, for the reduction trees: a weight that
    /// overflowed stays in the result, non-finite, where the caller's
    /// weight check reports it.
    pub(crate) fn merged(mut a: Self, b: Self) -> Self {
        let _ = a.merge(&b);
        a
    }

    /// Appends `other`'s features after `self`'s (sums of disjoint
    /// feature ranges, in order).
    pub(crate) fn append(&mut self, other: Sums) {
        self.sum.extend(other.sum);
        self.scale.extend(other.scale);
        self.weight.extend(other.weight);
    }

    /// Whether no feature has any weight (nothing was observed).
    pub(crate) fn is_empty(&self) -> bool {
        self.weight.iter().all(Dd::is_zero)
    }

    /// Folds `other` into `self`, feature by feature. Exact up to the
    /// double-word rounding; commutative up to that rounding.
    ///
    /// Every feature is merged; the first feature whose weight overflowed,
    /// if any, is returned (its weight is then stored non-finite, so that a
    /// later check still sees it). Callers merge into a copy.
    pub(crate) fn merge(&mut self, other: &Self) -> Result<(), usize> {
        let mut overflow = None;
        for j in 0..self.sum.len() {
            let (s, k) = add_scaled(self.sum[j], self.scale[j], other.sum[j], other.scale[j]);
            self.sum[j] = s;
            self.scale[j] = k;
            self.weight[j] = self.weight[j].add(other.weight[j]);
            if overflow.is_none() && !self.weight[j].is_finite() {
                overflow = Some(j);
            }
        }
        overflow.map_or(Ok(()), Err)
    }

    /// The sums of one sample of finite `values`: each value is its
    /// feature's sum (exactly: `0 + x` has no error), of weight one.
    pub(crate) fn of_sample(values: impl Iterator<Item = f64>) -> Self {
        Sums::counted(values.map(|hi| Dd { hi, lo: 0.0 }).collect(), 1)
    }

    /// [`merge`](Self::merge) of [`of_sample`](Self::of_sample)`(values)`,
    /// without building it: the same additions, so the same bits. No weight
    /// can overflow (each grows by one).
    pub(crate) fn add_sample(&mut self, values: impl Iterator<Item = f64>) {
        let one = Dd { hi: 1.0, lo: 0.0 };
        let features = self.sum.iter_mut().zip(&mut self.scale).zip(&mut self.weight);
        for (((sum, scale), weight), x) in features.zip(values) {
            if *scale == 0 {
                // Unscaled: `add_scaled`'s first step, unless it overflows.
                let s = sum.add(Dd { hi: x, lo: 0.0 });
                if s.is_finite() {
                    *sum = s;
                    *weight = weight.add(one);
                    continue;
                }
            }
            (*sum, *scale) = add_scaled(*sum, *scale, Dd { hi: x, lo: 0.0 }, 0);
            *weight = weight.add(one);
        }
    }

    /// `copies` repetitions of `self` (a batch given as a broadcast view:
    /// every zero-stride sample axis multiplies what the rest holds), by
    /// binary doubling: doubling a pair is exact (rescaled, never
    /// overflowing), so only the at most 64 additions into the result round,
    /// as a chain of 64 additions would. `O(64·D)` whatever `copies` is.
    ///
    /// # Errors
    ///
    /// The first feature whose weight overflows, as [`merge`](Self::merge).
    pub(crate) fn repeated(&self, copies: u64) -> Result<Self, usize> {
        let mut result = Sums::zeros(self.sum.len());
        let mut base = self.clone();
        let mut left = copies;
        while left > 0 {
            if left & 1 == 1 {
                result.merge(&base)?;
            }
            left >>= 1;
            if left > 0 {
                let twice = base.clone();
                base.merge(&twice)?;
            }
        }
        Ok(result)
    }

    /// The mean of feature `j`: NaN if nothing was observed.
    ///
    /// The mean of finite values lies within `±F::MAX`; a last rounding past
    /// it is brought back to `±F::MAX` (within an ulp of the exact mean). A
    /// mean far beyond — a loaded state with an impossible `scale` — stays
    /// infinite, and loading refuses it.
    pub(crate) fn mean_of<F: Float>(&self, j: usize) -> F {
        mean_of_parts(self.sum[j], self.scale[j], self.weight[j])
    }

    pub(crate) fn means<F: Float>(&self) -> Vec<F> {
        (0..self.sum.len()).map(|j| self.mean_of(j)).collect()
    }

    /// The per-feature weight sums (counts without weights), in `f64`.
    pub(crate) fn weights(&self) -> Vec<f64> {
        self.weight.iter().map(Dd::value).collect()
    }
}

/// The mean of a sum `sum·2^k` of weight `w` (see [`Sums::mean_of`]).
fn mean_of_parts<F: Float>(sum: Dd<f64>, k: i32, w: Dd<f64>) -> F {
    if w.is_zero() {
        return F::nan();
    }
    let q = sum.quotient(w);
    // For F = f64 this is `ldexp(q₁ + c, scale)`; narrower types round
    // the normalised pair once.
    let (s, e) = two_sum(q.hi, q.lo);
    let m: F = round_pair(ldexp(s, k), ldexp(e, k));
    if m.is_finite() {
        return m;
    }
    from_half(round_pair(ldexp(s, k - 1), ldexp(e, k - 1)))
}

/// The mean of one sample whose value is `x` (finite): what
/// [`Sums::of_sample`]`([x]).mean_of(0)` gives, by the same function.
pub(crate) fn sample_mean<F: Float>(x: f64) -> F {
    mean_of_parts(Dd { hi: x, lo: 0.0 }, 0, Dd { hi: 1.0, lo: 0.0 })
}

/// `m·count` as a double-word sum with its scale (a power of two taken
/// out when the product would overflow) and `count` as a double-word
/// weight: a batch of `count` samples whose mean is `m`. The product is
/// exact for `count ≤ 2⁵³` (outside the subnormal range), so the quotient
/// gives `m` back.
pub(crate) fn scaled_product(m: f64, count: u64) -> (Dd<f64>, i32, Dd<f64>) {
    let wh = count as f64;
    // `count − wh` is below 2¹¹ in magnitude: exact in an f64.
    let wl = (i128::from(count) - wh as i128) as f64;
    let mut a = m;
    let mut scale = 0;
    while !(a * wh).is_finite() {
        a = ldexp(a, -SCALE_STEP);
        scale += SCALE_STEP;
    }
    let p = a * wh;
    let sum = Dd {
        hi: p,
        lo: product_error(a, wh, p),
    }
    .add(Dd { hi: a * wl, lo: 0.0 });
    (sum, scale, Dd { hi: wh, lo: wl })
}

/// `a·2^ka + b·2^kb` as a pair and a scale, rescaling further when the sum
/// would overflow.
fn add_scaled<F: Float>(a: Dd<F>, ka: i32, b: Dd<F>, kb: i32) -> (Dd<F>, i32) {
    let mut k = ka.max(kb);
    loop {
        let s = a.scaled(ka - k).add(b.scaled(kb - k));
        if s.is_finite() || !(a.is_finite() && b.is_finite()) {
            return (s, k);
        }
        k += SCALE_STEP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_add_does_not_overflow() {
        let a = Dd::from_f(f64::MAX);
        let (s, k) = add_scaled(a, 0, a, 0);
        assert!(s.is_finite());
        assert_eq!(k, SCALE_STEP);
        assert_eq!(ldexp(s.hi, k - 1), f64::MAX);
    }
}
