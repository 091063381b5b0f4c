//! Hyper-parameters: the estimation mode, the moving-average start and the
//! missing-value policy. All validation happens here, once: an unchecked
//! [`CenteringParams`] builder is turned by [`CenteringParams::check`] into
//! [`ValidParams`], which only has getters.

use std::fmt;

use crate::error::{CenteringError, Result};

/// How the exponential moving average starts (see [`Mode::MovingAverage`]).
///
/// After `t` non-empty batches with means `b₁ … b_t` and momentum `β`:
///
/// ```text
/// Zero:       m_t = (1 − β)·Σᵢ βᵗ⁻ⁱ·bᵢ                  (Keras, PyTorch: starts at 0)
/// FirstBatch: m_1 = b₁,  m_t = β·m_{t−1} + (1 − β)·b_t  (river EWMean, pandas adjust=False)
/// Debiased:   m_t = Σᵢ βᵗ⁻ⁱ·bᵢ / Σᵢ βᵗ⁻ⁱ                 (pandas adjust=True; Zero / (1 − βᵗ))
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmaStart {
    /// Start at 0, exactly as Keras' `BatchNormalization` and PyTorch's
    /// `BatchNorm` do: the estimate is biased towards 0 for the first
    /// `~1 / (1 − β)` batches.
    Zero,
    /// Start from the first batch's mean and recur from there.
    FirstBatch,
    /// The zero start divided by `1 − βᵗ`: the normalised weighted average of
    /// all batch means. Equals the first batch's mean after one step.
    #[default]
    Debiased,
}

/// What to do with NaN and infinite values in batches given to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NanPolicy {
    /// Any NaN or ±∞ in a batch is an error
    /// ([`CenteringError::NonFinite`]) naming its index; the state is unchanged.
    #[default]
    Reject,
    /// NaN marks a missing value: it is skipped, feature by feature, with
    /// per-feature counts (as scikit-learn does). ±∞ is still an error.
    /// `transform` leaves NaN where it was. A feature that has never had an
    /// observed value has a NaN mean, so `transform` gives NaN for it
    /// (except under [`EmaStart::Zero`], whose mean starts at 0).
    Ignore,
}

/// The estimation mode.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Mode {
    /// The exact mean of every sample seen so far, `Σ wᵢ xᵢ / Σ wᵢ`,
    /// independent of how the data was cut into batches
    /// (scikit-learn's `StandardScaler(with_std=False).partial_fit`).
    #[default]
    Cumulative,
    /// Exponential moving average of batch means, Keras's convention:
    /// `m ← momentum·m + (1 − momentum)·mean(batch)` for each non-empty
    /// batch. `momentum` is the weight of the *old* value; PyTorch's is the
    /// weight of the *new* one (see [`CenteringParams::torch_momentum`]).
    MovingAverage {
        /// Weight of the old estimate, in `[0, 1]` (Keras default 0.99).
        momentum: f64,
        /// How the average starts.
        start: EmaStart,
    },
    /// PyTorch's `momentum=None`: the plain average of the batch means, each
    /// non-empty batch counted once whatever its size. Equals
    /// [`Mode::Cumulative`] only when all batches have the same size.
    BatchAverage,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Cumulative => write!(f, "Cumulative"),
            Mode::MovingAverage { momentum, start } => {
                write!(f, "MovingAverage(momentum = {momentum}, start = {start:?})")
            }
            Mode::BatchAverage => write!(f, "BatchAverage"),
        }
    }
}

/// Keras's default momentum for `BatchNormalization` (weight of the old value).
pub const KERAS_DEFAULT_MOMENTUM: f64 = 0.99;

/// Unchecked hyper-parameters: a builder. Nothing is validated until
/// [`check`](Self::check) or [`build`](Self::build).
///
/// | parameter | setter | default |
/// |---|---|---|
/// | mode | [`cumulative`](Self::cumulative), [`moving_average`](Self::moving_average), [`torch_momentum`](Self::torch_momentum), [`batch_average`](Self::batch_average), [`mode`](Self::mode) | [`Mode::Cumulative`] |
/// | moving-average start | [`start`](Self::start) | [`EmaStart::Debiased`] |
/// | missing values | [`nan_policy`](Self::nan_policy) | [`NanPolicy::Reject`] |
///
/// # Examples
///
/// ```
/// use centering::{Centering, CenteringParams, EmaStart};
///
/// // PyTorch's BatchNorm default (momentum = 0.1 on the new value) is
/// // Keras's 0.9 on the old value.
/// let params = CenteringParams::new().torch_momentum(0.1).start(EmaStart::Zero).check()?;
/// assert_eq!(params.momentum(), Some(0.9));
/// let est = Centering::<f32>::with_params(params);
/// assert!(!est.is_fitted());
/// # Ok::<(), centering::CenteringError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CenteringParams {
    /// The parameters as they will be once checked (linfa's pattern: the
    /// unchecked builder wraps the checked type, and `check_ref` hands out a
    /// reference to it after validation).
    inner: ValidParams,
    /// The last start asked for, kept for a moving average set later.
    start: Option<EmaStart>,
}

impl CenteringParams {
    /// The defaults: cumulative mean, NaN rejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the mode directly (a moving average's start given here wins
    /// over an earlier [`start`](Self::start)).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.inner.mode = mode;
        self.inner.torch = None;
        if let Mode::MovingAverage { start, .. } = mode {
            self.start = Some(start);
        }
        self
    }

    /// The exact cumulative mean (the default).
    pub fn cumulative(self) -> Self {
        self.mode(Mode::Cumulative)
    }

    /// An exponential moving average with Keras's `momentum` (the weight of
    /// the old value; Keras's default is 0.99). Beware: a Keras momentum of
    /// 0.01 keeps only 1% of the old estimate at each step — that is
    /// PyTorch's 0.99, almost certainly not what was meant.
    pub fn moving_average(self, momentum: f64) -> Self {
        let start = match self.inner.mode {
            Mode::MovingAverage { start, .. } => start,
            _ => self.start.unwrap_or_default(),
        };
        self.mode(Mode::MovingAverage { momentum, start })
    }

    /// An exponential moving average given in PyTorch's convention, where
    /// `momentum` is the weight of the *new* batch (PyTorch's default 0.1).
    /// Stored as Keras's `1 − torch_momentum`, and remembered: the step
    /// weights are then rounded from PyTorch's own numbers.
    ///
    /// | convention | update | default |
    /// |---|---|---|
    /// | Keras | `m ← β·m + (1 − β)·b` | β = 0.99 |
    /// | PyTorch | `m ← (1 − μ)·m + μ·b` | μ = 0.1 |
    /// | mapping | `β = 1 − μ` | |
    pub fn torch_momentum(self, torch_momentum: f64) -> Self {
        let mut s = self.moving_average(1.0 - torch_momentum);
        s.inner.torch = Some(torch_momentum);
        s
    }

    /// PyTorch's `momentum=None`: the average of the batch means.
    pub fn batch_average(self) -> Self {
        self.mode(Mode::BatchAverage)
    }

    /// How a moving average starts (default [`EmaStart::Debiased`]); the
    /// last call wins, before or after the momentum is set. Ignored by the
    /// other modes.
    pub fn start(mut self, start: EmaStart) -> Self {
        self.start = Some(start);
        if let Mode::MovingAverage { momentum, .. } = self.inner.mode {
            self.inner.mode = Mode::MovingAverage { momentum, start };
        }
        self
    }

    /// The missing-value policy (default [`NanPolicy::Reject`]).
    pub fn nan_policy(mut self, nan_policy: NanPolicy) -> Self {
        self.inner.nan_policy = nan_policy;
        self
    }

    /// Validates the parameters and borrows the checked form (what linfa's
    /// `ParamGuard::check_ref` needs).
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = centering::CenteringParams::new().moving_average(0.9);
    /// assert_eq!(p.check_ref()?.momentum(), Some(0.9));
    /// assert!(centering::CenteringParams::new().moving_average(-0.1).check_ref().is_err());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn check_ref(&self) -> Result<&ValidParams> {
        if let Mode::MovingAverage { momentum, .. } = self.inner.mode {
            // A PyTorch momentum so small that 1 − μ rounds to 1 cannot be
            // stored in Keras's convention without changing the average.
            if let Some(torch) = self.inner.torch
                && (!(0.0..=1.0).contains(&torch) || (torch > 0.0 && 1.0 - torch == 1.0))
            {
                return Err(CenteringError::InvalidMomentum { momentum: torch });
            }
            if !(0.0..=1.0).contains(&momentum) {
                return Err(CenteringError::InvalidMomentum { momentum });
            }
        }
        Ok(&self.inner)
    }

    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// [`CenteringError::InvalidMomentum`] if a momentum is NaN or outside
    /// `[0, 1]` (reported in the convention it was given in), or a PyTorch
    /// momentum is positive but below 2⁻⁵³, so that `1 − μ` rounds to 1.
    pub fn check(&self) -> Result<ValidParams> {
        self.check_ref().copied()
    }

    /// Validates the parameters and builds an unfitted estimator.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringParams, NanPolicy};
    ///
    /// let est: Centering<f64> = CenteringParams::new()
    ///     .moving_average(0.99)
    ///     .nan_policy(NanPolicy::Ignore)
    ///     .build()?;
    /// assert_eq!(est.params().momentum(), Some(0.99));
    /// assert!(CenteringParams::new().moving_average(1.5).build::<f64>().is_err());
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn build<F: crate::Element>(&self) -> Result<crate::Centering<F>> {
        Ok(crate::Centering::with_params(self.check()?))
    }
}

/// Checked hyper-parameters: only a [`CenteringParams::check`] call makes
/// one, so every `ValidParams` is valid.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValidParams {
    mode: Mode,
    nan_policy: NanPolicy,
    /// PyTorch's momentum, when the moving average was given that way: the
    /// weight of the new value is then exactly this number rounded to `F`.
    torch: Option<f64>,
}

impl ValidParams {
    /// The estimation mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The missing-value policy.
    pub fn nan_policy(&self) -> NanPolicy {
        self.nan_policy
    }

    /// Keras's momentum (weight of the old value) for a moving average,
    /// `None` in the other modes.
    pub fn momentum(&self) -> Option<f64> {
        match self.mode {
            Mode::MovingAverage { momentum, .. } => Some(momentum),
            _ => None,
        }
    }

    /// PyTorch's momentum (weight of the new value): as given to
    /// [`CenteringParams::torch_momentum`], else `1 − momentum`; `None`
    /// outside the moving average.
    pub fn torch_momentum(&self) -> Option<f64> {
        self.momentum().map(|m| self.torch.unwrap_or(1.0 - m))
    }

    /// Whether the moving average was given in PyTorch's convention.
    #[cfg(feature = "serde")]
    pub(crate) fn given_as_torch(&self) -> Option<f64> {
        self.torch
    }

    /// Rebuilds checked parameters from stored parts (persistence), with the
    /// same validation as [`CenteringParams::check`].
    #[cfg(feature = "serde")]
    pub(crate) fn from_parts(mode: Mode, nan_policy: NanPolicy, torch: Option<f64>) -> Result<Self> {
        let mut p = CenteringParams::new().mode(mode).nan_policy(nan_policy);
        if let (Some(t), Mode::MovingAverage { momentum, start }) = (torch, mode) {
            if 1.0 - t != momentum {
                return Err(CenteringError::InvalidMomentum { momentum: t });
            }
            p = p.torch_momentum(t).start(start);
        }
        p.check()
    }

    /// The weights of one moving-average step, `(old, new)`, each rounded to
    /// `F` once from the convention the momentum was given in — as Keras
    /// (`m·β + b·(1 − β)`, `1 − β` formed in double precision) and PyTorch
    /// (`(1 − μ)·m + μ·b`) do — and `β` in `f64` for the bookkeeping
    /// (`βᵗ`, the debiasing sum). The batch average is `β = 1`.
    pub(crate) fn ema_weights<F: num_traits::Float>(&self) -> EmaWeights<F> {
        let beta = match self.mode {
            Mode::MovingAverage { momentum, .. } => momentum,
            _ => 1.0,
        };
        let (old, new) = match self.torch {
            Some(mu) => (1.0 - mu, mu),
            None => (beta, 1.0 - beta),
        };
        EmaWeights {
            old: F::from(old).unwrap_or_else(F::one),
            new: F::from(new).unwrap_or_else(F::zero),
            beta,
        }
    }
}

/// The coefficients of one moving-average step (see
/// [`ValidParams::ema_weights`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmaWeights<F> {
    pub(crate) old: F,
    pub(crate) new: F,
    pub(crate) beta: f64,
}

impl ValidParams {
    /// The moving-average start, `None` in the other modes.
    pub fn start(&self) -> Option<EmaStart> {
        match self.mode {
            Mode::MovingAverage { start, .. } => Some(start),
            _ => None,
        }
    }
}

impl TryFrom<CenteringParams> for ValidParams {
    type Error = CenteringError;
    fn try_from(p: CenteringParams) -> Result<Self> {
        p.check()
    }
}
