//! Reading a stored state: every field checked, nothing trusted. A
//! rejection is a [`CenteringError::InvalidState`] naming the field.

use super::wire::Real;
use super::*;
use crate::state::{Dd, Ema, SCALE_STEP, Segments, Sums, Total, norm_reference, pow_u64};

// ---------------------------------------------------------------------------
// Reading: every field checked, nothing trusted.

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> CenteringError {
    CenteringError::InvalidState {
        field,
        reason: reason.into(),
    }
}

pub(super) fn check_version(v: u64) -> Result<(), CenteringError> {
    if (1..=u64::from(STATE_FORMAT_VERSION)).contains(&v) {
        return Ok(());
    }
    let why = if v > u64::from(STATE_FORMAT_VERSION) {
        "a newer release of centering wrote it"
    } else {
        "no release of centering writes it"
    };
    Err(invalid(
        "format_version",
        format!("expected 1 to {STATE_FORMAT_VERSION} (the versions this release reads), found {v}: {why}"),
    ))
}

/// Checks that every per-feature array has `d` entries.
pub(super) fn check_len<T>(field: &'static str, v: &[T], d: usize) -> Result<(), CenteringError> {
    if v.len() == d {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "expected {d} entries (one per feature, n_features = {d}), found {}",
                v.len()
            ),
        ))
    }
}

/// The element of feature `j`: finite, and exactly an `F`.
pub(super) fn element<F: Element>(field: &'static str, j: usize, x: f64) -> Result<F, CenteringError> {
    if !x.is_finite() {
        return Err(invalid(
            field,
            format!("feature {j}: expected a finite value, found {x}"),
        ));
    }
    match F::from(x) {
        Some(y) if y.to_f64().map(f64::to_bits) == Some(x.to_bits()) => Ok(y),
        _ => Err(invalid(
            field,
            format!(
                "feature {j}: {x:?} is not exactly representable as {} (a state written for another element type?)",
                dtype_of::<F>()
            ),
        )),
    }
}

pub(super) fn elements<F: Element>(field: &'static str, v: &[Real], d: usize) -> Result<Vec<F>, CenteringError> {
    check_len(field, v, d)?;
    v.iter().enumerate().map(|(j, x)| element(field, j, x.0)).collect()
}

/// [`elements`] of a wire array that is dropped once read: a wide state is
/// then not held as the wire's arrays and the checked ones at once.
fn elements_of<F: Element>(field: &'static str, v: Vec<Real>, d: usize) -> Result<Vec<F>, CenteringError> {
    elements(field, &v, d)
}

/// The per-feature arrays of an accumulator, `(field, length)`, against
/// `n_features = d`: when they all agree with each other but not with `d`,
/// it is `n_features` that is wrong, and the error says so; otherwise the
/// first array that disagrees is named (by [`check_len`] later).
pub(super) fn check_lengths(d: usize, arrays: &[(&'static str, usize)]) -> Result<(), CenteringError> {
    let Some(&(_, len)) = arrays.first() else {
        return Ok(());
    };
    if len != d && arrays.iter().all(|&(_, l)| l == len) {
        return Err(invalid(
            "state.n_features",
            format!("expected the length of every per-feature array ({len}), found n_features = {d}"),
        ));
    }
    Ok(())
}

/// The largest scale exponent a sum of `F`s can need, with a wide margin:
/// `|Σ wᵢxᵢ| ≤ Σwᵢ · max|xᵢ| < 2^(2·(emax+1))` needs at most `emax + 2`,
/// plus one [`SCALE_STEP`] per rescaling merge.
pub(super) fn max_scale<F: Element>() -> i32 {
    let (m, e, _) = F::max_value().integer_decode();
    let emax = i32::from(e) + 63 - m.leading_zeros() as i32;
    4 * (emax + SCALE_STEP)
}

impl ParamsWire {
    pub(super) fn check(self) -> Result<ValidParams, CenteringError> {
        let tag = match self.mode {
            ModeWire::Cumulative => "cumulative",
            ModeWire::MovingAverage => "moving_average",
            ModeWire::BatchAverage => "batch_average",
        };
        let mode = match self.mode {
            ModeWire::Cumulative | ModeWire::BatchAverage => {
                if let Some(m) = self.momentum.map(|r| r.0) {
                    return Err(invalid(
                        "params.momentum",
                        format!("expected null for mode {tag} (only moving_average has a momentum), found {m}"),
                    ));
                }
                if let Some(s) = self.start {
                    return Err(invalid(
                        "params.start",
                        format!("expected null for mode {tag} (only moving_average has a start), found {s:?}"),
                    ));
                }
                if let Some(t) = self.torch_momentum.map(|r| r.0) {
                    return Err(invalid(
                        "params.torch_momentum",
                        format!("expected null for mode {tag} (only moving_average has a momentum), found {t}"),
                    ));
                }
                if self.mode == ModeWire::Cumulative {
                    Mode::Cumulative
                } else {
                    Mode::BatchAverage
                }
            }
            ModeWire::MovingAverage => {
                let momentum = self.momentum.map(|r| r.0).ok_or_else(|| {
                    invalid(
                        "params.momentum",
                        "expected a momentum in [0, 1] for mode moving_average, found null",
                    )
                })?;
                if !(0.0..=1.0).contains(&momentum) {
                    return Err(invalid(
                        "params.momentum",
                        format!("expected a momentum in [0, 1], found {momentum}"),
                    ));
                }
                let start = match self.start {
                    Some(StartWire::Zero) => EmaStart::Zero,
                    Some(StartWire::FirstBatch) => EmaStart::FirstBatch,
                    Some(StartWire::Debiased) => EmaStart::Debiased,
                    None => {
                        return Err(invalid(
                            "params.start",
                            "expected \"zero\", \"first_batch\" or \"debiased\" for mode moving_average, found null",
                        ));
                    }
                };
                if let Some(t) = self.torch_momentum.map(|r| r.0) {
                    if !(0.0..=1.0).contains(&t) {
                        return Err(invalid(
                            "params.torch_momentum",
                            format!("expected null or a momentum in [0, 1], found {t}"),
                        ));
                    }
                    // `CenteringParams::torch_momentum(μ)` stores exactly 1 − μ.
                    if 1.0 - t != momentum {
                        return Err(invalid(
                            "params.torch_momentum",
                            format!(
                                "expected a PyTorch momentum μ with 1 − μ = momentum = {momentum:?} exactly, found μ = {t:?} (1 − μ = {:?})",
                                1.0 - t
                            ),
                        ));
                    }
                }
                Mode::MovingAverage { momentum, start }
            }
        };
        let nan_policy = match self.nan_policy {
            NanPolicyWire::Reject => NanPolicy::Reject,
            NanPolicyWire::Ignore => NanPolicy::Ignore,
        };
        let field = if self.torch_momentum.map(|r| r.0).is_some() {
            "params.torch_momentum"
        } else {
            "params.momentum"
        };
        ValidParams::from_parts(mode, nan_policy, self.torch_momentum.map(|r| r.0))
            .map_err(|e| invalid(field, e.to_string()))
    }
}

impl FittedWire {
    pub(super) fn check<F: Element>(self, params: &ValidParams, version: u64) -> Result<Fitted<F>, CenteringError> {
        let d = self.n_features.0;
        if d == 0 {
            return Err(invalid(
                "state.n_features",
                "expected at least 1 feature, found 0 (an unfitted estimator has \"state\": null)",
            ));
        }
        let d = usize::try_from(d)
            .map_err(|_| invalid("state.n_features", format!("{d} features do not fit in memory here")))?;
        let n_samples = self.n_samples.0;
        let n_batches = self.n_batches.0;
        if n_batches == 0 {
            return Err(invalid(
                "state.n_batches",
                "expected at least 1 (a fitted state has folded a non-empty batch), found 0",
            ));
        }
        if n_samples < n_batches {
            return Err(invalid(
                "state.n_samples",
                format!(
                    "expected at least n_batches = {n_batches} (every fitted batch has a sample), found {n_samples}"
                ),
            ));
        }
        let mode = params.mode();
        let reject = params.nan_policy() == NanPolicy::Reject;
        let acc = match (mode, self.accumulator) {
            (Mode::Cumulative, AccumulatorWire::Cumulative(c)) => {
                Accumulator::Cumulative(Total::from_sums(c.check::<F>(d, reject, version)?))
            }
            (Mode::MovingAverage { .. } | Mode::BatchAverage, AccumulatorWire::Moving(m)) => {
                Accumulator::Moving(m.check::<F>(d, n_batches, mode, reject)?)
            }
            (mode, acc) => {
                let (want, found) = match acc {
                    AccumulatorWire::Cumulative(_) => ("moving", "cumulative"),
                    AccumulatorWire::Moving(_) => ("cumulative", "moving"),
                };
                return Err(invalid(
                    "state.accumulator",
                    format!("expected a {want} accumulator for mode {mode}, found a {found} one"),
                ));
            }
        };
        let fitted = Fitted::new(n_samples, n_batches, acc);
        let mean = fitted.mean(params);
        // A value is required wherever the original had one: the recomputed
        // mean must be finite there.
        let required: Vec<bool> = match &fitted.acc {
            Accumulator::Cumulative(s) => (0..d).map(|j| s.observed(j)).collect(),
            Accumulator::Moving(e) => e
                .iter()
                .map(|e| e.steps > 0 || params.start() == Some(EmaStart::Zero))
                .collect(),
        };
        if let Some(j) = (0..d).find(|&j| required[j] && !mean[j].is_finite()) {
            let field = match fitted.acc {
                Accumulator::Cumulative(_) => "state.accumulator.cumulative",
                Accumulator::Moving(_) => "state.accumulator.moving",
            };
            return Err(invalid(
                field,
                format!(
                    "feature {j}: expected values that give a finite mean, found a mean of {:?}",
                    mean[j]
                ),
            ));
        }
        Ok(fitted)
    }
}

/// The double-word pairs `hi + lo`, each normalised as every pair the crate
/// writes is: `hi + lo` rounds to `hi` in `F` (`|lo| ≤ ulp(hi)/2`). An
/// un-normalised pair is refused, naming the `lo` field: its value is not
/// what `hi` says (`hi = 1, lo = −1` is a weight of 0 posing as 1).
pub(super) fn pairs<F: Element>(lo_field: &'static str, hi: &[F], lo: &[F]) -> Result<Vec<Dd<F>>, CenteringError> {
    hi.iter()
        .zip(lo)
        .enumerate()
        .map(|(j, (&hi, &lo))| {
            if hi + lo == hi {
                Ok(Dd { hi, lo })
            } else {
                Err(invalid(
                    lo_field,
                    format!(
                        "feature {j}: expected a normalised pair (|lo| ≤ ulp(hi)/2, so that hi + lo rounds to hi), found hi = {:?}, lo = {:?}",
                        wide(hi),
                        wide(lo)
                    ),
                ))
            }
        })
        .collect()
}

/// Double-word pairs of the stored sums, as the `f64` pairs the estimator
/// keeps. Format 2 stores `f64` pairs (normalised in `f64`). Format 1 stored
/// pairs in `F` (normalised in `F`, each value exactly an `F`): they are
/// checked as such, then widened exactly into `f64` pairs.
pub(super) fn read_pairs<F: Element>(
    version: u64,
    hi_field: &'static str,
    lo_field: &'static str,
    hi: &[Real],
    lo: &[Real],
    d: usize,
) -> Result<Vec<Dd<f64>>, CenteringError> {
    if version == 1 {
        let hi = elements::<F>(hi_field, hi, d)?;
        let lo = elements::<F>(lo_field, lo, d)?;
        let narrow = pairs(lo_field, &hi, &lo)?;
        Ok(narrow
            .iter()
            .map(|p| {
                Dd {
                    hi: wide(p.hi),
                    lo: 0.0,
                }
                .add(Dd {
                    hi: wide(p.lo),
                    lo: 0.0,
                })
            })
            .collect())
    } else {
        let hi = elements::<f64>(hi_field, hi, d)?;
        let lo = elements::<f64>(lo_field, lo, d)?;
        pairs(lo_field, &hi, &lo)
    }
}

impl CumulativeWire {
    pub(super) fn check<F: Element>(self, d: usize, reject: bool, version: u64) -> Result<Sums, CenteringError> {
        const SUM_HI: &str = "state.accumulator.cumulative.sum_hi";
        const SUM_LO: &str = "state.accumulator.cumulative.sum_lo";
        const SCALE: &str = "state.accumulator.cumulative.scale";
        const WEIGHT_HI: &str = "state.accumulator.cumulative.weight_hi";
        const WEIGHT_LO: &str = "state.accumulator.cumulative.weight_lo";
        check_lengths(
            d,
            &[
                (SUM_HI, self.sum_hi.len()),
                (SUM_LO, self.sum_lo.len()),
                (SCALE, self.scale.len()),
                (WEIGHT_HI, self.weight_hi.len()),
                (WEIGHT_LO, self.weight_lo.len()),
            ],
        )?;
        check_len(SCALE, &self.scale, d)?;
        // Each pair of wire arrays dropped once read (a wide state is then
        // not held as the wire's arrays and the checked pairs at once).
        let CumulativeWire {
            sum_hi,
            sum_lo,
            scale: scales,
            weight_hi,
            weight_lo,
        } = self;
        let sum = read_pairs::<F>(version, SUM_HI, SUM_LO, &sum_hi, &sum_lo, d)?;
        drop((sum_hi, sum_lo));
        let weight = read_pairs::<F>(version, WEIGHT_HI, WEIGHT_LO, &weight_hi, &weight_lo, d)?;
        drop((weight_hi, weight_lo));
        // The exponent range of the sums: F's in format 1 (which kept sums
        // in F), f64's since (sums are f64 whatever F).
        let limit = if version == 1 {
            max_scale::<F>()
        } else {
            max_scale::<f64>()
        };
        let mut scale = Vec::with_capacity(d);
        for (j, k) in scales.iter().enumerate() {
            let k = k.0;
            if !(0..=limit).contains(&k) {
                return Err(invalid(
                    SCALE,
                    format!("feature {j}: expected an exponent in [0, {limit}], found {k}"),
                ));
            }
            scale.push(k);
        }
        for (j, w) in weight.iter().enumerate() {
            if w.hi < 0.0 || w.value() < 0.0 {
                return Err(invalid(
                    WEIGHT_HI,
                    format!(
                        "feature {j}: expected a non-negative weight, found {:?} + {:?}",
                        wide(w.hi),
                        wide(w.lo)
                    ),
                ));
            }
            if !w.value().is_finite() {
                return Err(invalid(
                    WEIGHT_HI,
                    format!("feature {j}: the weight {:?} + {:?} overflows", wide(w.hi), wide(w.lo)),
                ));
            }
            if w.is_zero() {
                if reject {
                    return Err(invalid(
                        WEIGHT_HI,
                        format!(
                            "feature {j}: expected a positive weight under NaN policy reject (every fitted batch weighs every feature), found 0"
                        ),
                    ));
                }
                if !sum[j].is_zero() || scale[j] != 0 {
                    return Err(invalid(
                        SUM_HI,
                        format!(
                            "feature {j}: expected a zero sum and scale for a feature with zero weight, found ({:?} + {:?})·2^{}",
                            wide(sum[j].hi),
                            wide(sum[j].lo),
                            scale[j]
                        ),
                    ));
                }
            }
        }
        // Under Reject every fitted sample weighs all its features alike, and
        // every feature's weight is summed in the same order: the sums are
        // bit-identical across features in every state the crate produces.
        if reject && let Some(j) = weight.iter().position(|w| w != &weight[0]) {
            return Err(invalid(
                WEIGHT_HI,
                format!(
                    "feature {j}: expected the weight of feature 0 ({:?} + {:?}) under NaN policy reject (every sample weighs all its features), found {:?} + {:?}",
                    wide(weight[0].hi),
                    wide(weight[0].lo),
                    wide(weight[j].hi),
                    wide(weight[j].lo)
                ),
            ));
        }
        if weight.iter().all(Dd::is_zero) {
            return Err(invalid(
                WEIGHT_HI,
                "expected a positive weight for at least one feature (a fitted state has observed a value), found none",
            ));
        }
        Ok(Sums { sum, scale, weight })
    }
}

/// The unit roundoff of `f64`, `u = 2⁻⁵³`.
const U: f64 = f64::EPSILON / 2.0;

/// Beyond this many steps the relative tolerance of the moving checks,
/// `(4t + 256)·u`, exceeds 1/16: only the coarse bounds are checked there.
const TOLERANCE_STEPS: u64 = 1 << 48;

/// The relative tolerance of `decay` and `norm` after `t` steps (see
/// [`MovingWire::check`]).
pub(super) fn tolerance(t: u64) -> f64 {
    (4.0 * t as f64 + 256.0) * U
}

impl MovingWire {
    /// Checks one moving state per feature.
    ///
    /// Beyond ranges and lengths, `decay` and `norm` must be what `t = steps`
    /// batches with the stored momentum `β` give (both are `f64`, whatever
    /// `F`):
    ///
    /// - `β = 1` (batch average, or momentum 1): `decay = 1` and `norm = t`
    ///   exactly (for `t ≤ 2⁵³`; beyond, `2⁵³ ≤ norm ≤ t`), `zero = 0`.
    /// - `β = 0`: `decay = 0` and `norm = 1` exactly.
    /// - `0 < β < 1`: `|decay − βᵗ| ≤ τ·max(decay, βᵗ) + 2⁻¹⁰²²` and
    ///   `|norm − N| ≤ τ·N` with `N = (1 − βᵗ)/(1 − β)` and
    ///   `τ(t) = (4t + 256)·u`, `u = 2⁻⁵³` (checked for `t ≤ 2⁴⁸`; beyond,
    ///   `τ` is no constraint and only `decay ≤ β` and `1 ≤ norm ≤ t` are:
    ///   such states, unreachable by fitting, are accepted as they are).
    ///
    /// Why every state the crate writes meets this, merged or not: a step
    /// sets `decay = powi(β, t)` (binary powering, relative error
    /// `≤ γ_{t−1}`; past `2³¹` steps `decay·β`, which adds one rounding per
    /// step) and `norm ← β·norm + 1`; a merge sets `decay = d_a·d_b` and
    /// `norm = d_b·n_a + n_b`. By induction on either operation,
    /// `decay` is within `γ_{t−1}` of `βᵗ` (errors add: `γ_{t_a−1} +
    /// γ_{t_b−1} + u ≤ γ_{t−1}`) and `norm` within `γ_{2t−2}` of `N(t)`
    /// (a sum of positive terms, each within `γ_{t_b−1} + γ_{2t_a−2} + 2u ≤
    /// γ_{2t−2}` or `γ_{2t_b−2} + u ≤ γ_{2t−2}`, since `t_a, t_b ≥ 1`; a step
    /// adds `2u`). The references (`pow_u64`, `norm_reference`) are within
    /// `γ_{t−1}` and about `16u` of the exact values, so the stored values
    /// are within `2γ_{t−1} + …` and `γ_{2t−2} + 16u + …` of them: below
    /// `τ(t)` while `tu ≤ 2⁻⁵`. Underflow of `βᵗ` (below `2⁻¹⁰²²`) adds at
    /// most one subnormal unit per operation, covered by the `2⁻¹⁰²²` slack.
    pub(super) fn check<F: Element>(
        self,
        d: usize,
        n_batches: u64,
        mode: Mode,
        reject: bool,
    ) -> Result<Segments<F>, CenteringError> {
        const STEPS: &str = "state.accumulator.moving.steps";
        const DECAY: &str = "state.accumulator.moving.decay";
        const ZERO: &str = "state.accumulator.moving.zero";
        const NORM: &str = "state.accumulator.moving.norm";
        const DEBIASED: &str = "state.accumulator.moving.debiased";
        const FIRST: &str = "state.accumulator.moving.first";
        check_lengths(
            d,
            &[
                (STEPS, self.steps.len()),
                (DECAY, self.decay.len()),
                (ZERO, self.zero.len()),
                (NORM, self.norm.len()),
                (DEBIASED, self.debiased.len()),
                (FIRST, self.first.len()),
            ],
        )?;
        check_len(STEPS, &self.steps, d)?;
        // Each wire array dropped once read, and the segments built without
        // a `Vec<Ema>`: loading a wide state held the wire's 48 bytes per
        // feature, the checked values' 40, 48 of `Ema`s and the segments'
        // 24 at once (a Keras state of 10⁷ features: 136 bytes per feature
        // at its peak; now 72).
        let MovingWire {
            steps,
            decay,
            zero,
            norm,
            debiased,
            first,
        } = self;
        let decay = elements_of::<f64>(DECAY, decay, d)?;
        let zero = elements_of::<F>(ZERO, zero, d)?;
        let norm = elements_of::<f64>(NORM, norm, d)?;
        let debiased = elements_of::<f64>(DEBIASED, debiased, d)?;
        let first = elements_of::<F>(FIRST, first, d)?;
        // The momentum exactly as the estimator uses it (BatchAverage is β = 1).
        let beta = match mode {
            Mode::MovingAverage { momentum, .. } => momentum,
            _ => 1.0,
        };
        let mut total: u128 = 0;
        let ema = |j: usize| Ema {
            steps: steps[j].0,
            decay: decay[j],
            zero: zero[j],
            norm: norm[j],
            debiased: debiased[j],
            first: first[j],
        };
        for j in 0..d {
            let e = ema(j);
            let steps = e.steps;
            if steps > n_batches {
                return Err(invalid(
                    STEPS,
                    format!(
                        "feature {j}: expected at most n_batches = {n_batches} steps (one per batch), found {steps}"
                    ),
                ));
            }
            if reject && steps != n_batches {
                return Err(invalid(
                    STEPS,
                    format!(
                        "feature {j}: expected n_batches = {n_batches} steps under NaN policy reject (every batch updates every feature), found {steps}"
                    ),
                ));
            }
            total += u128::from(steps);
            if !(0.0..=1.0).contains(&e.decay) {
                return Err(invalid(
                    DECAY,
                    format!("feature {j}: expected momentum^steps in [0, 1], found {:?}", e.decay),
                ));
            }
            if steps == 0 {
                let init = Ema::<F>::new();
                let fields = [
                    (DECAY, e.decay, init.decay),
                    (ZERO, wide(e.zero), wide(init.zero)),
                    (NORM, e.norm, init.norm),
                    (DEBIASED, e.debiased, init.debiased),
                    (FIRST, wide(e.first), wide(init.first)),
                ];
                if let Some((field, found, want)) = fields.into_iter().find(|(_, found, want)| found != want) {
                    return Err(invalid(
                        field,
                        format!("feature {j}: expected {want:?} for a feature that has taken no step, found {found:?}"),
                    ));
                }
            } else {
                check_decay_and_norm(j, steps, beta, &e).map_err(|(field, reason)| invalid(field, reason))?;
                if beta == 1.0 && e.zero != F::zero() {
                    return Err(invalid(
                        ZERO,
                        format!(
                            "feature {j}: expected 0.0 with momentum 1 (the zero-started estimate never moves), found {:?}",
                            wide(e.zero)
                        ),
                    ));
                }
                // The debiased estimate is a weighted average of batch means
                // of type F: it must be one too.
                if !F::from(e.debiased).is_some_and(|m| m.is_finite()) {
                    return Err(invalid(
                        DEBIASED,
                        format!(
                            "feature {j}: expected an average of {} batch means, within its range, found {:?}",
                            dtype_of::<F>(),
                            e.debiased
                        ),
                    ));
                }
            }
        }
        if total < u128::from(n_batches) {
            return Err(invalid(
                STEPS,
                format!(
                    "expected steps summing to at least n_batches = {n_batches} (every batch updates a feature), found {total}"
                ),
            ));
        }
        Ok(Segments::collect(d, (0..d).map(ema)))
    }
}

/// The consistency of `decay` and `norm` with `steps ≥ 1` and the momentum
/// `beta` (see [`MovingWire::check`]): the field at fault and why.
pub(super) fn check_decay_and_norm<F>(j: usize, t: u64, beta: f64, e: &Ema<F>) -> Result<(), (&'static str, String)> {
    const DECAY: &str = "state.accumulator.moving.decay";
    const NORM: &str = "state.accumulator.moving.norm";
    /// 2⁵³: `norm` counts exactly up to here when `β = 1`.
    const EXACT: u64 = 1 << 53;
    if e.norm < 1.0 {
        return Err((
            NORM,
            format!(
                "feature {j}: expected at least 1 after {t} steps (Σ momentumⁱ starts at 1), found {:?}",
                e.norm
            ),
        ));
    }
    if beta == 1.0 {
        if e.decay != 1.0 {
            return Err((
                DECAY,
                format!("feature {j}: expected 1.0 with momentum 1, found {:?}", e.decay),
            ));
        }
        let ok = if t <= EXACT {
            e.norm == t as f64
        } else {
            (EXACT as f64..=t as f64 * (1.0 + f64::EPSILON)).contains(&e.norm)
        };
        if !ok {
            return Err((
                NORM,
                format!(
                    "feature {j}: expected the step count {t} with momentum 1 (norm counts the batches), found {:?}",
                    e.norm
                ),
            ));
        }
        return Ok(());
    }
    if beta == 0.0 {
        if e.decay != 0.0 {
            return Err((
                DECAY,
                format!(
                    "feature {j}: expected 0.0 after a step with momentum 0, found {:?}",
                    e.decay
                ),
            ));
        }
        if e.norm != 1.0 {
            return Err((
                NORM,
                format!(
                    "feature {j}: expected 1.0 after a step with momentum 0, found {:?}",
                    e.norm
                ),
            ));
        }
        return Ok(());
    }
    // 0 < β < 1.
    if e.norm > t as f64 {
        return Err((
            NORM,
            format!(
                "feature {j}: expected at most {t} after {t} steps (Σ momentumⁱ < steps), found {:?}",
                e.norm
            ),
        ));
    }
    // βᵗ ≤ β after a step, and rounding keeps it so: every product that
    // forms `decay` has a factor ≤ β and the others ≤ 1.
    if e.decay > beta {
        return Err((
            DECAY,
            format!(
                "feature {j}: expected at most the momentum {beta:?} after {t} steps (momentum^steps ≤ momentum), found {:?}",
                e.decay
            ),
        ));
    }
    if t > TOLERANCE_STEPS {
        // Documented: beyond 2⁴⁸ steps only the coarse bounds hold.
        return Ok(());
    }
    let tau = tolerance(t);
    let want = pow_u64(beta, t);
    if (e.decay - want).abs() > tau * e.decay.max(want) + f64::MIN_POSITIVE {
        return Err((
            DECAY,
            format!(
                "feature {j}: expected momentum^steps = {beta:?}^{t} ≈ {want:?} (relative tolerance {tau:.1e}), found {:?}",
                e.decay
            ),
        ));
    }
    let want = norm_reference(beta, t);
    if (e.norm - want).abs() > tau * want {
        return Err((
            NORM,
            format!(
                "feature {j}: expected Σ_{{i<{t}}} {beta:?}ⁱ ≈ {want:?} (relative tolerance {tau:.1e}), found {:?}",
                e.norm
            ),
        ));
    }
    Ok(())
}
