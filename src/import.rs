//! States brought from the frameworks the crate replaces — PyTorch's
//! `BatchNorm` running mean, Keras's `BatchNormalization` moving mean — and
//! the learned state's exact counts, for integrations that read them.

use ndarray::{Array1, ArrayBase, Data, Ix1};

use crate::error::{CenteringError, Result};
use crate::params::CenteringParams;
use crate::state::{Accumulator, Fitted};
use crate::state::{Ema, Segments};
use crate::{Centering, Element, EmaStart};

impl<F: Element> Centering<F> {
    /// A moving average holding a PyTorch `BatchNorm` layer's running mean:
    /// `running_mean` after `num_batches_tracked` steps with PyTorch's
    /// `momentum` (the weight of the new batch, default 0.1), or — for
    /// `momentum=None` — the cumulative average of batch means
    /// ([`Mode::BatchAverage`](crate::Mode::BatchAverage)).
    ///
    /// The estimator starts at zero, as PyTorch does
    /// ([`EmaStart::Zero`]), so its mean is `running_mean` exactly, and it
    /// keeps fitting as PyTorch would: `m ← (1 − μ)·m + μ·mean(batch)`.
    /// PyTorch does not keep the sample count, so `n_samples_seen` counts
    /// one sample per tracked batch; nor the first batch's mean (the
    /// [`EmaStart::FirstBatch`] estimate is not available). With
    /// `num_batches_tracked = 0` the layer has learned nothing: the
    /// estimator is unfitted, and `running_mean` must be PyTorch's initial
    /// zeros.
    ///
    /// # Errors
    ///
    /// [`CenteringError::InvalidMomentum`], [`CenteringError::NoFeatures`]
    /// for an empty mean, [`CenteringError::NonFinite`] for a non-finite
    /// value, [`CenteringError::InvalidState`] for a non-zero mean after 0
    /// batches.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::array;
    ///
    /// // bn.running_mean, bn.num_batches_tracked of a BatchNorm1d(2, momentum=0.1)
    /// let mut c = Centering::<f32>::from_torch(&array![0.5f32, -1.25], 10, Some(0.1))?;
    /// assert_eq!(c.mean().unwrap(), array![0.5, -1.25]);
    /// assert_eq!(c.n_batches(), 10);
    /// // The next training step, as PyTorch computes it: 0.9·m + 0.1·b.
    /// c.partial_fit(&array![[1.5f32, -0.25]])?;
    /// assert_eq!(c.mean().unwrap()[0], 0.9f32 * 0.5 + 0.1 * 1.5);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_torch<S: Data<Elem = F>>(
        running_mean: &ArrayBase<S, Ix1>,
        num_batches_tracked: u64,
        momentum: Option<f64>,
    ) -> Result<Self> {
        let params = match momentum {
            Some(mu) => CenteringParams::new().torch_momentum(mu).start(EmaStart::Zero),
            None => CenteringParams::new().batch_average(),
        };
        imported(running_mean, num_batches_tracked, params)
    }

    /// A moving average holding a Keras `BatchNormalization` layer's
    /// `moving_mean` after `steps` training steps with Keras's `momentum`
    /// (the weight of the old value, default 0.99), started at zero as Keras
    /// does ([`EmaStart::Zero`]): its mean is `moving_mean` exactly, and it
    /// keeps fitting as Keras would, `m ← m·β + mean(batch)·(1 − β)`.
    ///
    /// Keras does not count steps; `steps` only matters when this estimator
    /// is later [`merge`](Self::merge)d after another one (the earlier
    /// segment's weight is `βˢᵗᵉᵖˢ`) or switched to another start: any
    /// count large enough that `βˢᵗᵉᵖˢ ≈ 0` means "long trained". As in
    /// [`from_torch`](Self::from_torch), `n_samples_seen` counts one sample
    /// per step.
    ///
    /// # Errors
    ///
    /// As [`from_torch`](Self::from_torch).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::Centering;
    /// use ndarray::array;
    ///
    /// let c = Centering::<f32>::from_keras(&array![3.0f32, 4.0], 0.99, 1000)?;
    /// assert_eq!(c.mean().unwrap(), array![3.0, 4.0]);
    /// assert_eq!(c.params().momentum(), Some(0.99));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn from_keras<S: Data<Elem = F>>(moving_mean: &ArrayBase<S, Ix1>, momentum: f64, steps: u64) -> Result<Self> {
        let params = CenteringParams::new().moving_average(momentum).start(EmaStart::Zero);
        imported(moving_mean, steps, params)
    }

    /// Per feature, the total weight of the observed values — their exact
    /// count without weights — in `f64` whatever `F` (exact for counts up
    /// to 2⁵³, where [`weight_sums`](Self::weight_sums) in `f32` rounds past
    /// 2²⁴). `None` before any fit and in the moving-average modes, which
    /// count steps instead ([`n_steps`](Self::n_steps)).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, NanPolicy};
    /// let mut c = Centering::<f32>::builder().nan_policy(NanPolicy::Ignore).build()?;
    /// c.fit(&ndarray::array![[1.0f32, f32::NAN], [2.0, 3.0]])?;
    /// assert_eq!(c.counts().unwrap(), ndarray::array![2.0, 1.0]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn counts(&self) -> Option<Array1<f64>> {
        match &self.fitted.as_ref()?.acc {
            Accumulator::Cumulative(s) => Some(Array1::from(s.weights())),
            Accumulator::Moving(_) => None,
        }
    }

    /// Per feature, the moving average's step count: the batches in which
    /// the feature had an observed value (all of [`n_batches`](Self::n_batches)
    /// under [`NanPolicy::Reject`](crate::NanPolicy::Reject)). `None` before
    /// any fit and in the cumulative mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, NanPolicy};
    /// let mut c = Centering::<f64>::builder().moving_average(0.9).nan_policy(NanPolicy::Ignore).build()?;
    /// c.partial_fit(&ndarray::array![[1.0, f64::NAN]])?;
    /// c.partial_fit(&ndarray::array![[2.0, 3.0]])?;
    /// assert_eq!(c.n_steps().unwrap(), ndarray::array![2, 1]);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn n_steps(&self) -> Option<Array1<u64>> {
        match &self.fitted.as_ref()?.acc {
            Accumulator::Moving(e) => Some(e.iter().map(|e| e.steps).collect()),
            Accumulator::Cumulative(_) => None,
        }
    }
}

/// An estimator of `params` (a zero-started moving average or the batch
/// average) holding `mean` after `steps` steps.
fn imported<F: Element, S: Data<Elem = F>>(
    mean: &ArrayBase<S, Ix1>,
    steps: u64,
    params: CenteringParams,
) -> Result<Centering<F>> {
    let params = params.check()?;
    if mean.is_empty() {
        return Err(CenteringError::NoFeatures);
    }
    if let Some((j, &v)) = mean.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CenteringError::NonFinite {
            index: vec![j],
            value: v.to_f64().unwrap_or(f64::NAN),
        });
    }
    if steps == 0 {
        if mean.iter().any(|v| *v != F::zero()) {
            return Err(CenteringError::InvalidState {
                field: "num_batches_tracked",
                reason: "expected at least 1 step for a non-zero mean (a layer that took no step holds zeros)".into(),
            });
        }
        return Ok(Centering::with_params(params));
    }
    let beta = params.momentum().unwrap_or(1.0);
    let emas = mean
        .iter()
        .map(|&m| Ema::imported(beta, steps, m, m.to_f64().unwrap_or(f64::NAN)));
    let fitted = Fitted::new(steps, steps, Accumulator::Moving(Segments::collect(mean.len(), emas)));
    let mut c = Centering::with_params(params);
    c.fitted = Some(fitted);
    Ok(c)
}
