//! The learned state as a value: [`Fitted`] — counts and one accumulator
//! per mode ([`Accumulator`]) — and its one algebra: `fold` a batch's sums,
//! `merge` two states, read the mean. No ndarray, no rayon: the kernels hand
//! in batch sums as values ([`Sums`]) and the estimator orchestrates; the
//! invariants of the values below are stated here (and checked on load by
//! `persist::check`).
//!
//! | file | what |
//! |---|---|
//! | `dd.rs` | double-word arithmetic: TwoSum, scaling, the quotient and its one rounding to `F` |
//! | `sums.rs` | a batch's sums ([`Sums`]): `f64` pairs whatever `F` |
//! | `total.rs` | the cumulative accumulator ([`Total`]): the same values, the parts stored only once needed |
//! | `ema.rs` | the moving-average accumulator ([`Segments`]): one affine segment ([`Ema`]) per feature, their shared clock once |
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

mod dd;
mod ema;
mod sums;
mod total;

pub(crate) use dd::{Dd, ldexp, product_error, two_sum};
pub(crate) use ema::{Ema, Segments};
#[cfg(feature = "serde")]
pub(crate) use ema::{norm_reference, pow_u64};
pub(crate) use sums::{SCALE_STEP, Sums, sample_mean, scaled_product};
pub(crate) use total::{Parts, Total};

use std::sync::{Mutex, OnceLock, PoisonError};

use crate::Element;
use crate::error::{CenteringError, Result};
use crate::params::{EmaStart, Mode, ValidParams};

/// The learned state: present once a non-empty batch was fitted.
///
/// Invariants (what `persist::check` verifies on load): `n_batches ≥ 1`,
/// `n_samples ≥ n_batches`; the accumulator is the one the mode decides,
/// with `D ≥ 1` features; every mean the state must have is finite.
pub(crate) struct Fitted<F> {
    pub(crate) n_samples: u64,
    pub(crate) n_batches: u64,
    pub(crate) acc: Accumulator<F>,
    /// Derived from `acc` when first read after an update (not part of
    /// equality): a run of `partial_fit` calls on a wide state divides each
    /// feature's sums once, when the mean is read, not once per call.
    mean: OnceLock<Vec<F>>,
    /// The last mean's buffer, kept when an update made it stale: the next
    /// read writes over it instead of faulting in fresh pages (for 10⁷
    /// features that was most of a read on the reference VM).
    spare: Mutex<Vec<F>>,
}

/// Features of the mean one task computes.
const MEAN_CHUNK: usize = 1 << 14;

/// A copy with the cached mean (a clone is read as often as the original),
/// without the spare buffer.
impl<F: Clone> Clone for Fitted<F> {
    fn clone(&self) -> Self {
        Fitted {
            n_samples: self.n_samples,
            n_batches: self.n_batches,
            acc: self.acc.clone(),
            mean: self.mean.clone(),
            spare: Mutex::new(Vec::new()),
        }
    }
}

/// What each mode accumulates, per feature.
#[derive(Clone)]
pub(crate) enum Accumulator<F> {
    Cumulative(Total),
    Moving(Segments<F>),
}

impl<F: std::fmt::Debug> std::fmt::Debug for Accumulator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accumulator::Cumulative(s) => f.debug_tuple("Cumulative").field(s).finish(),
            Accumulator::Moving(e) => f.debug_tuple("Moving").field(e).finish(),
        }
    }
}

impl<F: PartialEq> PartialEq for Accumulator<F> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Accumulator::Cumulative(a), Accumulator::Cumulative(b)) => a == b,
            (Accumulator::Moving(a), Accumulator::Moving(b)) => a == b,
            _ => false,
        }
    }
}

/// Without the cached mean, so that printing a state does not depend on
/// whether its mean was read.
impl<F: std::fmt::Debug> std::fmt::Debug for Fitted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fitted")
            .field("n_samples", &self.n_samples)
            .field("n_batches", &self.n_batches)
            .field("acc", &self.acc)
            .finish_non_exhaustive()
    }
}

impl<F: PartialEq> PartialEq for Fitted<F> {
    fn eq(&self, other: &Self) -> bool {
        self.n_samples == other.n_samples && self.n_batches == other.n_batches && self.acc == other.acc
    }
}

impl<F: Element> Fitted<F> {
    /// A moving average of `d` features before any batch (not a valid
    /// fitted state on its own: it is only ever folded into).
    fn empty_moving(d: usize) -> Self {
        Fitted::new(0, 0, Accumulator::Moving(Segments::new(d)))
    }

    /// A state of `acc` after `n_batches` batches of `n_samples` samples.
    pub(crate) fn new(n_samples: u64, n_batches: u64, acc: Accumulator<F>) -> Self {
        Fitted {
            n_samples,
            n_batches,
            acc,
            mean: OnceLock::new(),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// The mean, computed from the accumulator on the first read after an
    /// update (each feature on its own, so in parallel chunks when wide,
    /// into the last mean's buffer). `params` are the estimator's (the
    /// moving modes' start).
    pub(crate) fn mean(&self, params: &ValidParams) -> &[F] {
        self.mean.get_or_init(|| {
            // The batch average is the debiased average with β = 1.
            let start = params.start().unwrap_or(EmaStart::Debiased);
            let d = self.n_features();
            let mut out = std::mem::take(&mut *self.spare.lock().unwrap_or_else(PoisonError::into_inner));
            if out.len() != d {
                // Zeroed pages from the allocator (huge where the kernel allows),
                // faulted in by the tasks below.
                out = crate::kernels::alloc::zeroed(d).unwrap_or_else(|_| vec![F::zero(); d]);
            }
            match &self.acc {
                Accumulator::Cumulative(s) => {
                    crate::kernels::for_chunks_mut_at(&mut out, MEAN_CHUNK, &|at, m| s.means_into(at, m))
                }
                Accumulator::Moving(e) => {
                    crate::kernels::for_chunks_mut_at(&mut out, MEAN_CHUNK, &|at, m| e.values_into(at, m, start))
                }
            }
            out
        })
    }

    /// Forgets the cached mean after an update, keeping its buffer.
    fn invalidate(&mut self) {
        if let Some(old) = self.mean.take() {
            *self.spare.get_mut().unwrap_or_else(PoisonError::into_inner) = old;
        }
    }

    pub(crate) fn n_features(&self) -> usize {
        match &self.acc {
            Accumulator::Cumulative(s) => s.n_features(),
            Accumulator::Moving(e) => e.len(),
        }
    }

    /// The state after a first batch (`batch`, something observed) of
    /// `n ≥ 1` samples and `d` features: [`fold_in_place`](Self::fold_in_place) into the
    /// empty state, without the merge into zeros in the
    /// cumulative mode (the same bits: adding a normalised pair to zero
    /// gives it back).
    ///
    /// # Errors
    ///
    /// As [`fold_in_place`](Self::fold_in_place).
    pub(crate) fn first(
        mode: Mode,
        d: usize,
        batch: Sums,
        batch_mean: Option<&[F]>,
        n: u64,
        params: &ValidParams,
    ) -> Result<Self> {
        if mode != Mode::Cumulative {
            let mut first = Self::empty_moving(d);
            first.fold_in_place(&batch, batch_mean, n, params)?;
            return Ok(first);
        }
        if let Some(feature) = batch.weight.iter().position(|w| !w.is_finite()) {
            return Err(CenteringError::WeightOverflow { feature });
        }
        Ok(Fitted::new(n, 1, Accumulator::Cumulative(Total::from_sums(batch))))
    }

    /// The state after one sample of finite `values` (`d`, one per
    /// feature): what [`first`](Self::first) makes of that sample's sums,
    /// without computing them.
    pub(crate) fn first_sample(
        mode: Mode,
        d: usize,
        values: impl Iterator<Item = f64>,
        params: &ValidParams,
    ) -> Result<Self> {
        if mode == Mode::Cumulative {
            return Ok(Fitted::new(1, 1, Accumulator::Cumulative(Total::of_sample(d, values))));
        }
        // `fold_sample` into the empty state, in one pass: each feature's
        // first step as it is built (the same steps, so the same bits).
        let weights = params.ema_weights::<F>();
        let first = Segments::first_step(d, &weights, values.map(sample_mean));
        Ok(Fitted::new(1, 1, Accumulator::Moving(first)))
    }

    /// One more sample of finite `values` (one per feature), in place: the
    /// bits of [`fold_in_place`](Self::fold_in_place) with that sample's
    /// sums and mean, without computing them — the cumulative sums add the
    /// values, a moving average steps with each value's mean as a one-sample
    /// summary has it ([`sample_mean`]).
    ///
    /// # Errors
    ///
    /// [`CenteringError::CountOverflow`]; `self` is then unchanged. A weight
    /// cannot overflow (each grows by one, and a finite `f64` plus one stays
    /// finite), a sum is rescaled rather than overflow and a step cannot
    /// fail, so nothing fails once the counts have been checked.
    pub(crate) fn fold_sample(&mut self, values: impl Iterator<Item = f64>, params: &ValidParams) -> Result<()> {
        let n_samples = add_count("sample", self.n_samples, 1)?;
        let n_batches = add_count("batch", self.n_batches, 1)?;
        match &mut self.acc {
            Accumulator::Cumulative(s) => s.add_sample(values),
            Accumulator::Moving(e) => {
                // Every feature observed one value: every feature steps.
                e.step_all(&params.ema_weights::<F>(), values.map(sample_mean));
            }
        }
        self.n_samples = n_samples;
        self.n_batches = n_batches;
        self.invalidate();
        Ok(())
    }

    /// The state after one more batch of `n ≥ 1` samples with sums `batch`
    /// (something observed) and mean `batch_mean`, folded into `self`, all
    /// or nothing without a copy:
    /// everything that can fail — the counts, every feature's merged weight
    /// — is checked before anything is written, so that a wide state (10⁸
    /// features) is updated with no memory beyond the batch's own sums.
    ///
    /// # Errors
    ///
    /// [`CenteringError::WeightOverflow`], [`CenteringError::CountOverflow`];
    /// `self` is then unchanged.
    pub(crate) fn fold_in_place(
        &mut self,
        batch: &Sums,
        batch_mean: Option<&[F]>,
        n: u64,
        params: &ValidParams,
    ) -> Result<()> {
        let n_samples = add_count("sample", self.n_samples, n)?;
        let n_batches = add_count("batch", self.n_batches, 1)?;
        match &mut self.acc {
            Accumulator::Cumulative(s) => {
                // `Total::merge` adds the weights exactly so: the same test,
                // first, on every feature.
                if let Some(feature) = s.weight_overflow(batch) {
                    return Err(CenteringError::WeightOverflow { feature });
                }
                s.merge(batch)
                    .map_err(|feature| CenteringError::WeightOverflow { feature })?;
            }
            Accumulator::Moving(e) => {
                let weights = params.ema_weights::<F>();
                let computed;
                let means = match batch_mean {
                    Some(m) => m,
                    None => {
                        computed = batch.means();
                        &computed[..]
                    }
                };
                // A feature with nothing observed in this batch takes no step.
                e.step_where(&weights, means.iter().copied(), |j| !batch.weight[j].is_zero());
            }
        }
        self.n_samples = n_samples;
        self.n_batches = n_batches;
        self.invalidate();
        Ok(())
    }

    /// The state of `self`'s batches followed by `other`'s: the union of
    /// both inputs in the cumulative mode (commutative), the composition of
    /// the two segments in the moving modes (ordered).
    ///
    /// # Errors
    ///
    /// [`CenteringError::IncompatibleMerge`] for another number of features
    /// (or accumulator), [`CenteringError::WeightOverflow`],
    /// [`CenteringError::CountOverflow`].
    pub(crate) fn merge(&self, other: &Self) -> Result<Self> {
        if self.n_features() != other.n_features() {
            return Err(CenteringError::IncompatibleMerge {
                what: "number of features",
                this: self.n_features().to_string(),
                other: other.n_features().to_string(),
            });
        }
        let acc = match (&self.acc, &other.acc) {
            (Accumulator::Cumulative(a), Accumulator::Cumulative(b)) => {
                let mut s = a.clone();
                s.merge(b)
                    .map_err(|feature| CenteringError::WeightOverflow { feature })?;
                Accumulator::Cumulative(s)
            }
            (Accumulator::Moving(a), Accumulator::Moving(b)) => Accumulator::Moving(Segments::collect(
                a.len(),
                (0..a.len()).map(|j| a.get(j).then(&b.get(j))),
            )),
            // The mode decides the accumulator, and the estimator merges
            // only equal modes: unreachable, and an error if it were not.
            _ => {
                return Err(CenteringError::IncompatibleMerge {
                    what: "accumulator",
                    this: "one mode".into(),
                    other: "another".into(),
                });
            }
        };
        // Counts stay exact or the merge fails: a loaded state may sit near
        // u64::MAX. (Per-feature step counts are at most `n_batches`, so
        // they cannot overflow once this has not.)
        Ok(Fitted::new(
            add_count("sample", self.n_samples, other.n_samples)?,
            add_count("batch", self.n_batches, other.n_batches)?,
            acc,
        ))
    }
}

impl<F: Element> Fitted<F> {
    /// The average of data-parallel replicas that ran in lock step (the
    /// layer's `aggregation=MEAN`): moving modes average the replicas'
    /// segments (equal step counts required, per feature and in batches);
    /// the cumulative mode merges them (the union of the shards, weighted
    /// by counts). Samples add up; batches are the common count.
    ///
    /// # Errors
    ///
    /// [`CenteringError::IncompatibleMerge`] for replicas with other
    /// feature counts or step counts, and as [`merge`](Self::merge).
    pub(crate) fn average(replicas: &[&Self]) -> Result<Self> {
        let Some((first, rest)) = replicas.split_first() else {
            return Err(CenteringError::NoReplicas);
        };
        if let Accumulator::Cumulative(_) = first.acc {
            let mut all = (*first).clone();
            for r in rest {
                all = all.merge(r)?;
            }
            return Ok(all);
        }
        let mut n_samples = first.n_samples;
        let mut emas = Vec::with_capacity(replicas.len());
        for r in replicas {
            if r.n_features() != first.n_features() {
                return Err(CenteringError::IncompatibleMerge {
                    what: "number of features",
                    this: first.n_features().to_string(),
                    other: r.n_features().to_string(),
                });
            }
            if r.n_batches != first.n_batches {
                return Err(CenteringError::IncompatibleMerge {
                    what: "step count (replicas must run in lock step)",
                    this: first.n_batches.to_string(),
                    other: r.n_batches.to_string(),
                });
            }
            match &r.acc {
                Accumulator::Moving(e) => emas.push(e),
                Accumulator::Cumulative(_) => {
                    return Err(CenteringError::IncompatibleMerge {
                        what: "mode",
                        this: "moving".into(),
                        other: "cumulative".into(),
                    });
                }
            }
        }
        for r in rest {
            n_samples = add_count("sample", n_samples, r.n_samples)?;
        }
        let d = first.n_features();
        let column = |j: usize| -> Vec<Ema<F>> { emas.iter().map(|e| e.get(j)).collect() };
        // Checked first, so that the average is built as it comes.
        if let Some(j) = (0..d).find(|&j| emas.iter().any(|e| e.get(j).steps != emas[0].get(j).steps)) {
            let steps: Vec<String> = column(j).iter().map(|e| e.steps.to_string()).collect();
            return Err(CenteringError::IncompatibleMerge {
                what: "per-feature step count (replicas must run in lock step)",
                this: steps[0].clone(),
                other: steps.join(", "),
            });
        }
        // Equal step counts (checked above): every average exists.
        let averaged = (0..d).filter_map(|j| Ema::average(&column(j)));
        Ok(Fitted::new(
            n_samples,
            first.n_batches,
            Accumulator::Moving(Segments::collect(d, averaged)),
        ))
    }
}

/// `this + added`, or [`CenteringError::CountOverflow`] past `u64::MAX`.
fn add_count(what: &'static str, this: u64, added: u64) -> Result<u64> {
    this.checked_add(added)
        .ok_or(CenteringError::CountOverflow { what, this, added })
}
