//! The moving-average accumulator: one affine segment per feature.

use num_traits::Float;

use super::dd::from_half;
use crate::kernels::alloc::{collect_huge, filled_huge, with_capacity_huge};

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
    #[cfg(any(test, feature = "serde"))]
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
    #[cfg(test)]
    pub(crate) fn step(&mut self, w: &crate::params::EmaWeights<F>, b: F, decay: &mut Decay) {
        let (clock, c_old, c_new) = self.clock().step(w.beta, decay);
        step_values(
            &mut self.zero,
            &mut self.debiased,
            &mut self.first,
            w,
            b,
            self.steps,
            (c_old, c_new),
        );
        self.set_clock(clock);
    }

    /// The parts every feature of a batch shares unless some skipped one.
    pub(crate) fn clock(&self) -> Clock {
        Clock {
            steps: self.steps,
            decay: self.decay,
            norm: self.norm,
        }
    }

    #[cfg(test)]
    fn set_clock(&mut self, c: Clock) {
        (self.steps, self.decay, self.norm) = (c.steps, c.decay, c.norm);
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

/// A segment's step count, `βᵗ` and debiasing norm: what the features of
/// a batch share unless some skipped it (no value observed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clock {
    pub(crate) steps: u64,
    pub(crate) decay: f64,
    pub(crate) norm: f64,
}

impl Clock {
    /// The clock before any step ([`Ema::new`]'s).
    const START: Clock = Clock {
        steps: 0,
        decay: 1.0,
        norm: 0.0,
    };

    /// The clock after one more step with momentum `beta`, and the
    /// debiased blend's weights `(c_old, c_new)` for it.
    fn step(self, beta: f64, decay: &mut Decay) -> (Clock, f64, f64) {
        let (norm, c_old, c_new) = decay.norm_step(beta, self.norm);
        let steps = self.steps.saturating_add(1);
        // βᵗ by repeated squaring: O(log t) roundings instead of t.
        let d = match i32::try_from(steps) {
            Ok(t) => match decay.last {
                Some((s, value)) if s == steps => value,
                _ => {
                    let value = beta.powi(t);
                    decay.last = Some((steps, value));
                    value
                }
            },
            Err(_) => self.decay * beta,
        };
        (Clock { steps, decay: d, norm }, c_old, c_new)
    }
}

/// A step's update of one feature's values with batch mean `b`, after
/// `steps` steps (the clock before it), with the debiased blend's
/// weights `c`.
#[inline(always)]
fn step_values<F: Float>(
    zero: &mut F,
    debiased: &mut f64,
    first: &mut F,
    w: &crate::params::EmaWeights<F>,
    b: F,
    steps: u64,
    (c_old, c_new): (f64, f64),
) {
    // Keras's and PyTorch's own update, in F: m·old + b·new (guarded
    // against a rounding past F::MAX, which only values near it meet).
    *zero = combine(*zero, w.old, b, w.new);
    let b64 = b.to_f64().unwrap_or(f64::NAN);
    *debiased = if steps == 0 {
        b64
    } else {
        within_range::<F>(blend(*debiased, c_old, b64, c_new))
    };
    if steps == 0 {
        *first = b;
    }
}

/// The moving-average accumulator: every feature's [`Ema`], its values
/// (`zero`, `debiased`, `first`) per feature and its [`Clock`] once for
/// all while the features share it bit for bit — every batch without
/// missing values steps them all — so 24 bytes per `f64` feature (16 per
/// `f32` one) instead of 48, and a step of a wide one-sample batch a loop
/// over three arrays. After a first step alone ([`first_step`]) only
/// `first` is stored: the other two are functions of it ([`Derived`]),
/// so a wide first call keeps as many bytes as its sample. Every
/// operation gives [`Ema`]'s bits feature by feature; equality, printing
/// and persistence see the segments alone.
///
/// [`first_step`]: Segments::first_step
#[derive(Clone)]
pub(crate) struct Segments<F> {
    /// Empty while `derived`.
    zero: Vec<F>,
    /// Empty while `derived`.
    debiased: Vec<f64>,
    first: Vec<F>,
    clock: Clocks,
    derived: Option<Derived<F>>,
}

/// `zero` after a first step with batch mean `b`: `step_values` at
/// `steps == 0` from `zero = 0`.
fn first_zero<F: Float>(b: &F, w: &crate::params::EmaWeights<F>) -> F {
    combine(F::zero(), w.old, *b, w.new)
}

/// `debiased` after a first step with batch mean `b`: `b` widened, as
/// `step_values` sets it at `steps == 0`.
fn first_debiased<F: Float>(b: &F) -> f64 {
    b.to_f64().unwrap_or(f64::NAN)
}

/// How a first step computed `zero` and `debiased` from the batch mean
/// (`first`), for segments that took that step alone and store neither:
/// `step_values` with `steps == 0` and a zero `zero` — `combine(0, old, b,
/// new)` and `b` widened. Functions rather than a bound on `F`, so that
/// printing and comparing segments asks of `F` what it did.
#[derive(Clone, Copy)]
struct Derived<F> {
    weights: crate::params::EmaWeights<F>,
    zero: fn(&F, &crate::params::EmaWeights<F>) -> F,
    debiased: fn(&F) -> f64,
}

#[derive(Clone)]
enum Clocks {
    Same(Clock),
    Each(Vec<Clock>),
}

/// As the `Vec<Ema>` it stands for (as [`Ema`] prints), however the clocks
/// are stored.
impl<F: std::fmt::Debug> std::fmt::Debug for Segments<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct One<'a, F>(&'a Segments<F>, usize);
        impl<F: std::fmt::Debug> std::fmt::Debug for One<'_, F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let (s, j) = (self.0, self.1);
                let c = s.clock_of(j);
                s.with_values(j, |zero, debiased| {
                    f.debug_struct("Ema")
                        .field("steps", &c.steps)
                        .field("decay", &c.decay)
                        .field("zero", zero)
                        .field("norm", &c.norm)
                        .field("debiased", debiased)
                        .field("first", &s.first[j])
                        .finish()
                })
            }
        }
        f.debug_list().entries((0..self.len()).map(|j| One(self, j))).finish()
    }
}

impl<F: PartialEq> PartialEq for Segments<F> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|j| {
                self.clock_of(j) == other.clock_of(j)
                    && self.with_values(j, |z, m| other.with_values(j, |oz, om| z == oz && m == om))
                    && self.first[j] == other.first[j]
            })
    }
}

impl<F> Segments<F> {
    pub(crate) fn len(&self) -> usize {
        self.first.len()
    }

    /// `f(zero, debiased)` of feature `j`, stored or derived.
    fn with_values<R>(&self, j: usize, f: impl FnOnce(&F, &f64) -> R) -> R {
        match &self.derived {
            Some(d) => f(&(d.zero)(&self.first[j], &d.weights), &(d.debiased)(&self.first[j])),
            None => f(&self.zero[j], &self.debiased[j]),
        }
    }

    fn clock_of(&self, j: usize) -> Clock {
        match &self.clock {
            Clocks::Same(c) => *c,
            Clocks::Each(c) => c[j],
        }
    }
}

impl<F: Copy> Segments<F> {
    /// Feature `j`'s segment.
    pub(crate) fn get(&self, j: usize) -> Ema<F> {
        let c = self.clock_of(j);
        let (zero, debiased) = self.with_values(j, |&z, &m| (z, m));
        Ema {
            steps: c.steps,
            decay: c.decay,
            zero,
            norm: c.norm,
            debiased,
            first: self.first[j],
        }
    }

    /// Every feature's segment, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ema<F>> + '_ {
        (0..self.len()).map(|j| self.get(j))
    }
}

impl<F: Float> Segments<F> {
    /// `d` segments that took no step.
    pub(crate) fn new(d: usize) -> Self {
        Segments {
            zero: filled_huge(d, F::zero()),
            debiased: filled_huge(d, 0.0),
            first: filled_huge(d, F::zero()),
            clock: Clocks::Same(Clock::START),
            derived: None,
        }
    }

    /// `emas`, their clock stored once if they share it.
    #[cfg(test)]
    pub(crate) fn from_emas(emas: &[Ema<F>]) -> Self {
        Self::collect(emas.len(), emas.iter().copied())
    }

    /// The `d` segments `emas`, built as they come (no `Vec<Ema>` of 48
    /// bytes per feature on the way), their clock stored once if they
    /// share it.
    pub(crate) fn collect(d: usize, emas: impl Iterator<Item = Ema<F>>) -> Self {
        let bits = |c: &Clock| (c.steps, c.decay.to_bits(), c.norm.to_bits());
        let mut zero = with_capacity_huge::<F>(d);
        let mut debiased = with_capacity_huge::<f64>(d);
        let mut first = with_capacity_huge::<F>(d);
        let mut shared: Option<Clock> = None;
        let mut each: Vec<Clock> = Vec::new();
        for (j, e) in emas.take(d).enumerate() {
            zero.push(e.zero);
            debiased.push(e.debiased);
            first.push(e.first);
            let c = e.clock();
            match shared {
                None if j == 0 => shared = Some(c),
                Some(s) if bits(&s) == bits(&c) => {}
                Some(s) => {
                    // The first clock that differs: every one from now on.
                    each = vec![s; j];
                    each.push(c);
                    shared = None;
                }
                None => each.push(c),
            }
        }
        debug_assert_eq!(zero.len(), d, "as many segments as features");
        Segments {
            zero,
            debiased,
            first,
            clock: match shared {
                Some(c) => Clocks::Same(c),
                None if each.is_empty() => Clocks::Same(Clock::START),
                None => Clocks::Each(each),
            },
            derived: None,
        }
    }

    /// The first step of `d` segments, with the one sample or batch means
    /// `means`: [`new`](Self::new) and [`step_all`](Self::step_all), storing
    /// the means alone (`zero` and `debiased` derived from them until the
    /// next step: a wide first call's state is 8 bytes per `f64` feature,
    /// not 24).
    pub(crate) fn first_step(d: usize, w: &crate::params::EmaWeights<F>, means: impl Iterator<Item = F>) -> Self {
        let (clock, _, _) = Clock::START.step(w.beta, &mut Decay::default());
        Segments {
            zero: Vec::new(),
            debiased: Vec::new(),
            first: collect_huge(d, means),
            clock: Clocks::Same(clock),
            derived: Some(Derived {
                weights: *w,
                zero: first_zero,
                debiased: first_debiased,
            }),
        }
    }

    /// Stores the values a first step derives ([`Derived`]), before a
    /// step changes them.
    fn store_derived(&mut self) {
        if let Some(d) = self.derived.take() {
            self.zero = collect_huge(self.len(), self.first.iter().map(|b| (d.zero)(b, &d.weights)));
            self.debiased = collect_huge(self.len(), self.first.iter().map(d.debiased));
        }
    }

    /// One step of every feature, with batch means `means` (one per
    /// feature): [`Ema::step`] of each.
    pub(crate) fn step_all(&mut self, w: &crate::params::EmaWeights<F>, means: impl Iterator<Item = F>) {
        self.step_where(w, means, |_| true);
    }

    /// One step of each feature `j` for which `observed(j)`, with batch
    /// mean `means[j]` (the others take none): [`Ema::step`] of each.
    pub(crate) fn step_where(
        &mut self,
        w: &crate::params::EmaWeights<F>,
        means: impl Iterator<Item = F>,
        observed: impl Fn(usize) -> bool,
    ) {
        self.store_derived();
        let d = self.len();
        let mut decay = Decay::default();
        if let Clocks::Same(c) = self.clock {
            if (0..d).all(&observed) {
                let (clock, c_old, c_new) = c.step(w.beta, &mut decay);
                let values = self.zero.iter_mut().zip(&mut self.debiased).zip(&mut self.first);
                for (((z, m), f), b) in values.zip(means) {
                    step_values(z, m, f, w, b, c.steps, (c_old, c_new));
                }
                self.clock = Clocks::Same(clock);
                return;
            }
            self.clock = Clocks::Each(vec![c; d]);
        }
        let Clocks::Each(clocks) = &mut self.clock else {
            return;
        };
        for (j, b) in means.enumerate().take(d) {
            if observed(j) {
                let (clock, c_old, c_new) = clocks[j].step(w.beta, &mut decay);
                let steps = clocks[j].steps;
                step_values(
                    &mut self.zero[j],
                    &mut self.debiased[j],
                    &mut self.first[j],
                    w,
                    b,
                    steps,
                    (c_old, c_new),
                );
                clocks[j] = clock;
            }
        }
    }

    /// [`Ema::value`] of features `at..at + out.len()` into `out`.
    pub(crate) fn values_into(&self, at: usize, out: &mut [F], start: crate::EmaStart) {
        if let Some(d) = &self.derived {
            // Derived in line (through `Derived`'s pointers, a call per
            // feature).
            let c = self.clock_of(at);
            for (b, m) in self.first[at..].iter().zip(out.iter_mut()) {
                let e = Ema {
                    steps: c.steps,
                    decay: c.decay,
                    zero: first_zero(b, &d.weights),
                    norm: c.norm,
                    debiased: first_debiased(b),
                    first: *b,
                };
                *m = e.value(start);
            }
            return;
        }
        for (j, m) in (at..).zip(out.iter_mut()) {
            *m = self.get(j).value(start);
        }
    }
}

/// The last `βᵗ` and debiasing weights a [`Clock::step`] computed, for the
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

#[cfg(test)]
mod segment_tests {
    use super::*;
    use crate::EmaStart;
    use crate::params::EmaWeights;

    /// Bit patterns of every feature's segment.
    fn bits<F: Float + Into<f64>>(e: &[Ema<F>]) -> Vec<[u64; 6]> {
        e.iter()
            .map(|e| {
                [
                    e.steps,
                    e.decay.to_bits(),
                    e.zero.into().to_bits(),
                    e.norm.to_bits(),
                    e.debiased.to_bits(),
                    e.first.into().to_bits(),
                ]
            })
            .collect()
    }

    /// Steps of every feature and of some, and merges, of segments give,
    /// feature by feature, what `Ema` gives bit for bit —
    /// with the clock shared, per feature, and back — and the same means
    /// for every start; momenta 0.9, 0 and 1 (the batch average), `f64`
    /// and `f32`.
    fn segments_are_emas<F: Float + Into<f64> + std::fmt::Debug>() {
        let d = 37;
        let mut z = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z
        };
        for beta in [0.9, 0.0, 1.0] {
            let w = EmaWeights {
                old: F::from(beta).unwrap(),
                new: F::from(1.0 - beta).unwrap(),
                beta,
            };
            let mut means = |_: usize| -> Vec<F> {
                (0..d)
                    .map(|_| F::from((next() % 2001) as f64 * 0.37 - 370.0).unwrap())
                    .collect()
            };
            let m0 = means(0);
            let mut seg = Segments::first_step(d, &w, m0.iter().copied());
            let mut emas = vec![Ema::<F>::new(); d];
            let mut decay = Decay::default();
            for (e, &b) in emas.iter_mut().zip(&m0) {
                e.step(&w, b, &mut decay);
            }
            assert_eq!(bits(&seg.iter().collect::<Vec<_>>()), bits(&emas));
            assert!(matches!(seg.clock, Clocks::Same(_)));
            // Only the means stored after a first step; compared and printed
            // as the stored segments of the same values.
            assert!(seg.zero.is_empty() && seg.debiased.is_empty() && seg.derived.is_some());
            let stored = Segments::from_emas(&emas);
            assert!(stored.derived.is_none());
            assert_eq!(seg, stored);
            assert_eq!(format!("{seg:?}"), format!("{stored:?}"));
            assert_eq!(format!("{seg:?}"), format!("{emas:?}"));
            for start in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
                let mut got = vec![F::zero(); d - 3];
                seg.values_into(3, &mut got, start);
                let want: Vec<F> = emas[3..].iter().map(|e| e.value(start)).collect();
                assert_eq!(got, want, "{start:?} after a first step");
            }
            // The first step of segments that took none (a first batch).
            let mut fresh = Segments::new(d);
            fresh.step_all(&w, m0.iter().copied());
            assert_eq!(bits(&fresh.iter().collect::<Vec<_>>()), bits(&emas));
            for round in 1..12 {
                let m = means(round);
                // Rounds 3 and 7 skip some features (missing values).
                let skip = |j: usize| (round == 3 || round == 7) && j % 5 == round % 5;
                seg.step_where(&w, m.iter().copied(), |j| !skip(j));
                let mut decay = Decay::default();
                for (j, (e, &b)) in emas.iter_mut().zip(&m).enumerate() {
                    if !skip(j) {
                        e.step(&w, b, &mut decay);
                    }
                }
                assert_eq!(bits(&seg.iter().collect::<Vec<_>>()), bits(&emas), "round {round}");
                if round == 5 {
                    // Merged with a copy of itself, and averaged with one.
                    let then: Vec<Ema<F>> = emas.iter().map(|e| e.then(e)).collect();
                    let merged = Segments::from_emas(&seg.iter().map(|e| e.then(&e)).collect::<Vec<_>>());
                    assert_eq!(bits(&merged.iter().collect::<Vec<_>>()), bits(&then));
                }
                for start in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
                    let mut got = vec![F::zero(); d - 2];
                    seg.values_into(2, &mut got, start);
                    let want: Vec<F> = emas[2..].iter().map(|e| e.value(start)).collect();
                    assert_eq!(got, want);
                }
            }
            // After a skip the clocks are per feature; a copy loaded from
            // segments (`from_emas`) compares and prints equal, and one of
            // equal clocks shares them.
            assert!(matches!(seg.clock, Clocks::Each(_)));
            let loaded = Segments::from_emas(&emas);
            assert_eq!(loaded, seg);
            assert_eq!(format!("{loaded:?}"), format!("{seg:?}"));
            assert_eq!(format!("{seg:?}"), format!("{emas:?}"));
            let shared = Segments::from_emas(&[emas[0]; 4]);
            assert!(matches!(shared.clock, Clocks::Same(_)));
        }
    }

    #[test]
    fn segments_are_emas_f64() {
        segments_are_emas::<f64>();
    }

    #[test]
    fn segments_are_emas_f32() {
        segments_are_emas::<f32>();
    }
}
