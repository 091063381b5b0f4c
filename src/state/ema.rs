//! The moving-average accumulator: one affine segment per feature.

use num_traits::Float;

use super::dd::from_half;

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
    ///
    /// `decay` remembers the last `βᵗ` and debiasing weights computed: the
    /// features of a batch share their step count (unless some skipped a
    /// batch of missing values), so `powi` and the weights' two divisions
    /// run once per batch, not once per feature.
    pub(crate) fn step(&mut self, w: &crate::params::EmaWeights<F>, b: F, decay: &mut Decay) {
        // Keras's and PyTorch's own update, in F: m·old + b·new (guarded
        // against a rounding past F::MAX, which only values near it meet).
        self.zero = combine(self.zero, w.old, b, w.new);
        let (norm, c_old, c_new) = decay.norm_step(w.beta, self.norm);
        let b64 = b.to_f64().unwrap_or(f64::NAN);
        self.debiased = if self.steps == 0 {
            b64
        } else {
            within_range::<F>(blend(self.debiased, c_old, b64, c_new))
        };
        self.norm = norm;
        if self.steps == 0 {
            self.first = b;
        }
        self.steps = self.steps.saturating_add(1);
        // βᵗ by repeated squaring: O(log t) roundings instead of t.
        self.decay = match i32::try_from(self.steps) {
            Ok(t) => match decay.last {
                Some((steps, value)) if steps == self.steps => value,
                _ => {
                    let value = w.beta.powi(t);
                    decay.last = Some((self.steps, value));
                    value
                }
            },
            Err(_) => self.decay * w.beta,
        };
    }

    /// The average of replicas' segments that took the same steps with the
    /// same momentum (data-parallel replicas in lock step): `m ↦ d·m + c̄`,
    /// the mean of their affine maps — because the moving average is linear
    /// in the batch means, the moving average of the averaged batch means.
    /// `None` if the step counts differ.
    pub(crate) fn average(es: &[Self]) -> Option<Self> {
        let first = es.first()?;
        if es.iter().any(|e| e.steps != first.steps) {
            return None;
        }
        let k = es.len() as f64;
        let mean_f = |f: &dyn Fn(&Self) -> F| -> F {
            to_f::<F>(es.iter().map(|e| f(e).to_f64().unwrap_or(f64::NAN)).sum::<f64>() / k)
        };
        let debiased = within_range::<F>(es.iter().map(|e| e.debiased).sum::<f64>() / k);
        Some(Ema {
            steps: first.steps,
            decay: first.decay,
            zero: mean_f(&|e| e.zero),
            norm: first.norm,
            debiased,
            first: mean_f(&|e| e.first),
        })
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

/// The last `βᵗ` and debiasing weights an [`Ema::step`] computed, for the
/// next feature's step.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Decay {
    last: Option<(u64, f64)>,
    /// `(old norm, its next norm, old weight, new weight)`.
    norm: Option<(f64, f64, f64, f64)>,
}

impl Decay {
    /// After a norm of `old`: the next norm `β·old + 1` and the weights
    /// `β·old / norm`, `1 / norm` of the debiased blend — computed once for
    /// the features that share `old` (the same bits: the same operations on
    /// the same values).
    fn norm_step(&mut self, beta: f64, old: f64) -> (f64, f64, f64) {
        match self.norm {
            Some((o, norm, c_old, c_new)) if o.to_bits() == old.to_bits() => (norm, c_old, c_new),
            _ => {
                let norm = beta * old + 1.0;
                let (c_old, c_new) = (beta * old / norm, 1.0 / norm);
                self.norm = Some((old, norm, c_old, c_new));
                (norm, c_old, c_new)
            }
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
