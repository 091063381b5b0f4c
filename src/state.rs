//! Per-feature accumulator algebra on slices: push a batch, merge two
//! states, read the mean. No ndarray, no rayon: the kernels hand in batch
//! sums as values and the estimator merges them here.
//!
//! # Exact sums
//!
//! A sum is kept as an unevaluated pair `hi + lo` (a double-word number,
//! "double-double" for `f64`) scaled by a power of two:
//!
//! ```text
//! Σ wᵢ·xᵢ = (hi + lo)·2^scale          |lo| ≤ ulp(hi)/2 after normalisation
//! ```
//!
//! Pairs are added with Knuth's branch-free TwoSum, which returns the exact
//! rounding error of every addition (Ogita, Rump & Oishi 2005, "Accurate sum
//! and dot product", algorithm Sum2). The error of a double-word sum is
//! `ε·|S| + O(n²ε²)·Σ|xᵢ|` where `n` is the length of one accumulation chain;
//! the kernels keep chains short (fixed leaves of at most 2¹⁵ elements,
//! merged pairwise in a tree), so the mean is within one ulp of the exact
//! mean rounded to `F` for well-conditioned data. Kahan's compensated sum was
//! rejected: its bound is `2ε·Σ|xᵢ|`, two ulps, not one.
//!
//! `scale` is 0 unless a sum would overflow `F` (values near `F::MAX`): then
//! the batch is re-summed scaled down by `2^-scale` (see
//! `kernels::general::sum_scaled`), so the mean of finite inputs is always finite.

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
    x * F::from(2.0f64.powi(k)).unwrap_or_else(F::one)
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
        let pe = q1.mul_add(w.hi, -p);
        let r = (((self.hi - p) - pe) + self.lo) - q1 * w.lo;
        Dd { hi: q1, lo: r / w.hi }
    }
}

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
        let w = self.weight[j];
        if w.is_zero() {
            return F::nan();
        }
        let q = self.sum[j].quotient(w);
        // For F = f64 this is `ldexp(q₁ + c, scale)`; narrower types round
        // the normalised pair once.
        let (s, e) = two_sum(q.hi, q.lo);
        let k = self.scale[j];
        let m: F = round_pair(ldexp(s, k), ldexp(e, k));
        if m.is_finite() {
            return m;
        }
        from_half(round_pair(ldexp(s, k - 1), ldexp(e, k - 1)))
    }

    pub(crate) fn means<F: Float>(&self) -> Vec<F> {
        (0..self.sum.len()).map(|j| self.mean_of(j)).collect()
    }

    /// The per-feature weight sums (counts without weights), in `f64`.
    pub(crate) fn weights(&self) -> Vec<f64> {
        self.weight.iter().map(Dd::value).collect()
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

/// `a·ca + b·cb` for weights with `ca + cb = 1`, as `a + (b − a)·cb` so that
/// equal inputs give back exactly `a` (no drift over many steps), or — where
/// `b − a` overflows (means of opposite sign near `f64::MAX`) — as the convex
/// combination itself. Finite for finite inputs (see [`combine`]).
fn blend(a: f64, ca: f64, b: f64, cb: f64) -> f64 {
    if cb == 1.0 {
        // Momentum 0: only the new value counts, however far `a` is from it.
        return b;
    }
    let delta = b - a;
    let r = if delta.is_finite() {
        a + delta * cb
    } else {
        combine(a, ca, b, cb)
    };
    if r.is_finite() { r } else { combine(a, ca, b, cb) }
}

/// `2·half`, for a value that should lie within `±F::MAX` (a weighted
/// average of finite values, a mean) but may have been rounded past it:
/// within a few ulps past, it is brought back to `±F::MAX` (within an ulp of
/// the exact value); further past — only a state loaded with impossible
/// values gets there — it stays infinite, so that loading refuses it.
fn from_half<F: Float>(half: F) -> F {
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

/// `a·ca + b·cb` where the exact result lies within `±F::MAX` (`ca, cb ≥ 0`,
/// `ca + cb ≤ 1` up to rounding): the plain expression — bit for bit what
/// Keras and PyTorch compute — and, only where that rounds past `F::MAX`
/// (values near the top of the range), the same with halved operands
/// (exact scalings), doubled back by [`from_half`]. Finite inputs of a state
/// the crate produced give a finite result.
pub(crate) fn combine<F: Float>(a: F, ca: F, b: F, cb: F) -> F {
    let r = a * ca + b * cb;
    if r.is_finite() || !(a.is_finite() && b.is_finite()) {
        return r;
    }
    let half = F::from(0.5).unwrap_or_else(F::one);
    from_half((a * half) * ca + (b * half) * cb)
}

/// An `f64` average of `F` values, clamped to `F`'s finite range (it lies
/// there exactly; only the rounding of `f64` can step past `F::MAX` when `F`
/// is `f32`), so that it always converts to a finite `F`.
fn within_range<F: Float>(x: f64) -> f64 {
    let max = F::max_value().to_f64().unwrap_or(f64::MAX);
    if x.is_nan() { x } else { x.clamp(-max, max) }
}

/// An `f64` rounded to `F` (the averages converted are kept within `F`'s
/// range by [`within_range`]; loading refuses those that are not).
fn to_f<F: Float>(x: f64) -> F {
    F::from(x).unwrap_or_else(F::nan)
}

/// The moving-average state of one feature.
///
/// With `β` the momentum (weight of the old value) and `t` the steps taken:
///
/// ```text
/// decay    = βᵗ                                   (f64)
/// zero     = Σᵢ (1 − β)·βᵗ⁻ⁱ·bᵢ                   the Keras/PyTorch zero-started estimate
/// norm     = Σᵢ βᵗ⁻ⁱ                              the debiasing denominator (f64)
/// debiased = Σᵢ βᵗ⁻ⁱ·bᵢ / norm                    pandas ewm(adjust=True)
/// first    = b₁
/// ```
///
/// A segment of batches acts on an earlier estimate as `m ↦ decay·m + zero`;
/// two segments compose as `(d_a·d_b, d_b·c_a + c_b)`. `zero` is kept in `F`,
/// updated exactly as Keras and PyTorch do; `decay`, `norm` and `debiased` in
/// `f64` whatever `F` is: with `β = 1` (the batch average) `norm` counts
/// batches, which an `f32` could not do past 2²⁴, and the running average
/// must not drift by an `f32` rounding per batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ema<F> {
    pub(crate) steps: u64,
    pub(crate) decay: f64,
    pub(crate) zero: F,
    pub(crate) norm: f64,
    pub(crate) debiased: f64,
    pub(crate) first: F,
}

impl<F: Float> Ema<F> {
    pub(crate) fn new() -> Self {
        Ema {
            steps: 0,
            decay: 1.0,
            zero: F::zero(),
            norm: 0.0,
            debiased: 0.0,
            first: F::zero(),
        }
    }

    /// The state after `t ≥ 1` steps with momentum `beta` whose
    /// zero-started estimate is `zero` (a framework's moving mean), or —
    /// for `beta = 1`, the batch average — whose average is `average`: a
    /// state imported from Keras or PyTorch. `decay` and `norm` are what `t`
    /// steps give (within the loader's tolerance); the debiased estimate is
    /// `zero / (1 − βᵗ)`; the first batch mean is unknown and set to the
    /// estimate itself.
    pub(crate) fn imported(beta: f64, t: u64, zero: F, average: f64) -> Self {
        let (decay, norm) = if beta == 1.0 {
            (1.0, t as f64)
        } else if beta == 0.0 {
            (0.0, 1.0)
        } else {
            (pow_u64(beta, t), norm_reference(beta, t))
        };
        let z = zero.to_f64().unwrap_or(f64::NAN);
        let debiased = if beta == 1.0 {
            average
        } else {
            within_range::<F>(z / (1.0 - decay))
        };
        Ema {
            steps: t,
            decay,
            zero: if beta == 1.0 { F::zero() } else { zero },
            norm,
            debiased,
            first: if beta == 1.0 { to_f(average) } else { zero },
        }
    }

    /// One step with batch mean `b`.
    pub(crate) fn step(&mut self, w: &crate::params::EmaWeights<F>, b: F) {
        // Keras's and PyTorch's own update, in F: m·old + b·new (guarded
        // against a rounding past F::MAX, which only values near it meet).
        self.zero = combine(self.zero, w.old, b, w.new);
        let norm = w.beta * self.norm + 1.0;
        let b64 = b.to_f64().unwrap_or(f64::NAN);
        self.debiased = if self.steps == 0 {
            b64
        } else {
            within_range::<F>(blend(self.debiased, w.beta * self.norm / norm, b64, 1.0 / norm))
        };
        self.norm = norm;
        if self.steps == 0 {
            self.first = b;
        }
        self.steps = self.steps.saturating_add(1);
        // βᵗ by repeated squaring: O(log t) roundings instead of t.
        self.decay = match i32::try_from(self.steps) {
            Ok(t) => w.beta.powi(t),
            Err(_) => self.decay * w.beta,
        };
    }

    /// `self`'s batches followed by `later`'s.
    pub(crate) fn then(&self, later: &Self) -> Self {
        if self.steps == 0 {
            return *later;
        }
        if later.steps == 0 {
            return *self;
        }
        let norm = later.decay * self.norm + later.norm;
        Ema {
            steps: self.steps.saturating_add(later.steps),
            decay: self.decay * later.decay,
            // d_b·z_a + z_b is a weighted sum of batch means with weights
            // summing to 1 − d_a·d_b ≤ 1: guarded like a step.
            zero: combine(self.zero, to_f::<F>(later.decay), later.zero, F::one()),
            norm,
            debiased: within_range::<F>(blend(
                self.debiased,
                later.decay * self.norm / norm,
                later.debiased,
                later.norm / norm,
            )),
            first: self.first,
        }
    }

    /// The estimate for the given start: NaN if no step was taken (except
    /// `Zero`, which is 0 before any step, as in Keras and PyTorch).
    pub(crate) fn value(&self, start: crate::EmaStart) -> F {
        use crate::EmaStart::*;
        match start {
            Zero => self.zero,
            _ if self.steps == 0 => F::nan(),
            Debiased => to_f(self.debiased),
            // After one step the estimate *is* the first batch mean; the
            // general form below would round β·b₁ + (1 − β)·b₁ instead.
            FirstBatch if self.steps == 1 => self.first,
            // m_t = β^(t-1)·b₁ + Σ_{i≥2}(1−β)βᵗ⁻ⁱbᵢ = βᵗ·b₁ + zero.
            FirstBatch => combine(self.first, to_f::<F>(self.decay), self.zero, F::one()),
        }
    }
}

/// `β^t` by binary powering, as `powi` computes it (and for any `u64`):
/// relative error at most `γ_{t−1}` (`γ_n = nu/(1 − nu)`), above the
/// subnormal range.
pub(crate) fn pow_u64(beta: f64, t: u64) -> f64 {
    let (mut r, mut a, mut t) = (1.0, beta, t);
    loop {
        if t & 1 == 1 {
            r *= a;
        }
        t >>= 1;
        if t == 0 {
            return r;
        }
        a *= a;
    }
}

/// `Σ_{i<t} βⁱ = (1 − βᵗ)/(1 − β)` for `0 < β < 1`, computed as
/// `−expm1(t·ln1p(β − 1))/(1 − β)`: no cancellation when `βᵗ` is near 1, a
/// relative error of a few `u` whatever `t`.
pub(crate) fn norm_reference(beta: f64, t: u64) -> f64 {
    -(t as f64 * (beta - 1.0).ln_1p()).exp_m1() / (1.0 - beta)
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
    fn ldexp_crosses_the_range() {
        assert_eq!(ldexp(1.0f64, 1000), 2f64.powi(1000));
        assert_eq!(ldexp(f64::MAX, -1023), f64::MAX / 2f64.powi(1023));
        // 3·2⁻¹³⁰ is subnormal; `2f32.powi(-130)` would flush to 0 (2¹³⁰ overflows).
        assert_eq!(ldexp(3.0f32, -130), 3.0 * f32::MIN_POSITIVE / 16.0);
    }

    #[test]
    fn scaled_add_does_not_overflow() {
        let a = Dd::from_f(f64::MAX);
        let (s, k) = add_scaled(a, 0, a, 0);
        assert!(s.is_finite());
        assert_eq!(k, SCALE_STEP);
        assert_eq!(ldexp(s.hi, k - 1), f64::MAX);
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
