//! The cumulative accumulator: per-feature double-word sums and weights.

use num_traits::Float;

use super::dd::{Dd, from_half, ldexp, product_error, round_pair, split_is_exact, split_product_error, two_sum};

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
            // `add_scaled`'s first step where neither sum is scaled and
            // their sum stays finite (nearly always), without the call.
            let unscaled = (self.scale[j] == 0 && other.scale[j] == 0)
                .then(|| self.sum[j].add(other.sum[j]))
                .filter(Dd::is_finite);
            let (s, k) = match unscaled {
                Some(s) => (s, 0),
                None => add_scaled(self.sum[j], self.scale[j], other.sum[j], other.scale[j]),
            };
            self.sum[j] = s;
            self.scale[j] = k;
            self.weight[j] = self.weight[j].add(other.weight[j]);
            if overflow.is_none() && !self.weight[j].is_finite() {
                overflow = Some(j);
            }
        }
        overflow.map_or(Ok(()), Err)
    }

    /// [`merge`](Self::merge) of one sample's sums (each value its
    /// feature's sum, exactly, of weight one), without building them: the
    /// same additions, so the same bits. No weight can overflow (each grows
    /// by one). The reference of [`Total::add_sample`](super::Total::add_sample)'s tests.
    #[cfg(test)]
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
    #[cfg(test)]
    pub(crate) fn mean_of<F: Float>(&self, j: usize) -> F {
        mean_of_parts(self.sum[j], self.scale[j], self.weight[j])
    }

    /// [`mean_of`](Self::mean_of) of features `at..at + out.len()` into
    /// `out`, the same bits: the common case (no scale; magnitudes where
    /// Dekker's product is exact; a non-zero, finite first quotient) as
    /// straight-line arithmetic over a block, which the compiler
    /// vectorises — `quotient`'s own operations, in its order — and every
    /// other feature by `mean_of` itself. Per feature, `mean_of`'s two
    /// dependent divisions left the CPU waiting on each (10 ns per feature
    /// of a 10⁷-feature read on the reference VM).
    pub(crate) fn means_into<F: Float>(&self, at: usize, out: &mut [F]) {
        for (b, out) in out.chunks_mut(MEAN_BLOCK).enumerate() {
            let at = at + b * MEAN_BLOCK;
            let n = out.len();
            let (sum, scale, weight) = (&self.sum[at..at + n], &self.scale[at..at + n], &self.weight[at..at + n]);
            means_block(|i| (sum[i], scale[i], weight[i]), out);
        }
    }

    pub(crate) fn means<F: Float>(&self) -> Vec<F> {
        let mut out = vec![F::zero(); self.sum.len()];
        self.means_into(0, &mut out);
        out
    }

    /// The per-feature weight sums (counts without weights), in `f64`.
    pub(crate) fn weights(&self) -> Vec<f64> {
        self.weight.iter().map(Dd::value).collect()
    }
}

/// Features whose means are computed together (on the stack).
pub(super) const MEAN_BLOCK: usize = 256;

/// The means of the features whose parts (sum, scale, weight) `parts`
/// gives, `out.len()` of them (at most [`MEAN_BLOCK`]), into `out`.
pub(super) fn means_block<F: Float>(parts: impl Fn(usize) -> (Dd<f64>, i32, Dd<f64>), out: &mut [F]) {
    let (mut s, mut e, mut fast) = ([0.0f64; MEAN_BLOCK], [0.0f64; MEAN_BLOCK], [false; MEAN_BLOCK]);
    debug_assert!(out.len() <= MEAN_BLOCK, "one block at a time");
    let n = out.len().min(MEAN_BLOCK);
    for i in 0..n {
        let (x, k, w) = parts(i);
        let q1 = x.hi / w.hi;
        let p = q1 * w.hi;
        let pe = split_product_error(q1, w.hi, p);
        let r = (((x.hi - p) - pe) + x.lo) - q1 * w.lo;
        (s[i], e[i]) = two_sum(q1, r / w.hi);
        fast[i] = k == 0 && q1.is_finite() && q1 != 0.0 && p.is_finite() && split_is_exact(q1, w.hi, p);
    }
    for (i, o) in out.iter_mut().enumerate().take(n) {
        let slow = || {
            let (x, k, w) = parts(i);
            mean_of_parts(x, k, w)
        };
        *o = if fast[i] {
            let m: F = round_pair(s[i], e[i]);
            if m.is_finite() { m } else { slow() }
        } else {
            slow()
        };
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
/// the sums of that one sample (`x`, of weight 1) give, by the same function.
pub(crate) fn sample_mean<F: Float>(x: f64) -> F {
    // The quotient of a non-zero finite `x` by 1 is `x`, with no correction:
    // `mean_of_parts` without its two divisions (a moving average of wide
    // one-sample batches spent half its time in them). Zero (−0 becomes +0),
    // and means rounding past `F::MAX`, take the function itself.
    if x != 0.0 && x.is_finite() {
        let m: F = round_pair(x, 0.0);
        if m.is_finite() {
            return m;
        }
    }
    sample_mean_of_parts(x)
}

fn sample_mean_of_parts<F: Float>(x: f64) -> F {
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
pub(super) fn add_scaled<F: Float>(a: Dd<F>, ka: i32, b: Dd<F>, kb: i32) -> (Dd<F>, i32) {
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

    /// A sample's mean is `mean_of_parts` of the sample and a count of 1,
    /// bit for bit, in `f64` and `f32`: ±0, subnormals, values past
    /// `f32::MAX`, random bit patterns.
    #[test]
    fn sample_means_are_mean_of_parts() {
        let mut z = 0x9E37_79B9_7F4A_7C15u64;
        let mut xs = vec![
            0.0,
            -0.0,
            4e-320,
            -1e-310,
            f64::MAX,
            -f64::MAX,
            3.5e38,
            -3.4028235e38,
            1e-46,
        ];
        for _ in 0..100_000 {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            xs.push(f64::from_bits(z));
        }
        for x in xs.into_iter().filter(|x| x.is_finite()) {
            let (a, b) = (sample_mean::<f64>(x), sample_mean_of_parts::<f64>(x));
            assert_eq!(a.to_bits(), b.to_bits(), "f64 {x:e}");
            let (a, b) = (sample_mean::<f32>(x), sample_mean_of_parts::<f32>(x));
            assert_eq!(a.to_bits(), b.to_bits(), "f32 {x:e}");
        }
    }

    /// The blocked means are `mean_of`'s, bit for bit, in `f64` and `f32`,
    /// on every kind of feature: ordinary sums and counts, exact midpoints
    /// of `f32`, zero sums, zero weights, fractional weights, rescaled sums,
    /// magnitudes beyond Dekker's split (near `f64::MAX`, subnormal), means
    /// past `f32::MAX`, NaN — at every offset of a block and across blocks.
    /// (Computing the correction as `r · (1/w)` instead of `r / w` is not
    /// caught: it differs in the correction's last bit, which changes a
    /// rounded mean only at exact ties of the quotient, which a random
    /// search did not find.)
    #[test]
    fn blocked_means_are_mean_of() {
        let mut z = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z
        };
        let mut sums = Sums::zeros(0);
        for j in 0..5000 {
            let r = next();
            let any = f64::from_bits(r & 0xBFFF_FFFF_FFFF_FFFF) * if r >> 63 == 1 { -1.0 } else { 1.0 };
            let count = (1 + r % 1000) as f64;
            let (hi, lo, w, k) = match j % 13 {
                0 => ((r % 100_000) as f64 * 0.37, 0.0, count, 0),
                1 => ((r % 7) as f64 + 0.5 * f64::from(f32::EPSILON), 0.0, 1.0, 0),
                2 => (0.0, 0.0, count, 0),
                3 => (1.5, 0.0, 0.0, 0),
                4 => (1e6 * (r % 97) as f64, 1e-11, 0.3 * count, 0),
                5 => (1e300, 1e283, 3.0, 64),
                6 => (f64::MAX * 0.9, 0.0, 0.5, 0),
                7 => (4e-310, 0.0, count, 0),
                8 => (3e38 * count, 0.0, count * 0.25, 0),
                9 => (f64::NAN, 0.0, count, 0),
                10 => (any, 0.0, count, 0),
                // Quotients whose split would overflow (`split_is_exact` false).
                11 => (1.5e300 + (r % 1000) as f64 * 1e285, 0.0, 0.75, 0),
                _ => (any, any * 1e-17, f64::from_bits(next() >> 2), (r % 3) as i32 * -64),
            };
            let (hi, lo) = two_sum(hi, lo);
            sums.sum.push(Dd { hi, lo });
            sums.weight.push(Dd { hi: w, lo: 0.0 });
            sums.scale.push(k);
        }
        let d = sums.sum.len();
        for at in [0, 1, 255, 256, 700] {
            let mut m64 = vec![0.0f64; d - at];
            sums.means_into(at, &mut m64);
            let mut m32 = vec![0.0f32; d - at];
            sums.means_into(at, &mut m32);
            for j in at..d {
                let (a, b) = (m64[j - at], sums.mean_of::<f64>(j));
                assert!(
                    a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
                    "f64 feature {j}: {a:e} vs {b:e}"
                );
                let (a, b) = (m32[j - at], sums.mean_of::<f32>(j));
                assert!(
                    a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
                    "f32 feature {j}: {a:e} vs {b:e}"
                );
            }
        }
    }
}
