//! Hyper-parameters: the estimation mode, the moving-average start and the
//! missing-value policy. All validation happens here, once: an unchecked
//! [`CenteringParams`] builder is turned by [`CenteringParams::check`] into
//! [`ValidParams`], which only has getters.

use std::fmt;
use std::marker::PhantomData;

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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
///
/// # Examples
///
/// ```
/// use centering::{CenteringParams, KERAS_DEFAULT_MOMENTUM, TORCH_DEFAULT_MOMENTUM};
/// assert_eq!(KERAS_DEFAULT_MOMENTUM, 0.99);
/// let keras = CenteringParams::keras(KERAS_DEFAULT_MOMENTUM).check()?;
/// let torch = CenteringParams::torch(TORCH_DEFAULT_MOMENTUM).check()?;
/// assert_eq!((keras.momentum(), torch.momentum()), (Some(0.99), Some(0.9))); // not the same default
/// # Ok::<(), centering::CenteringError>(())
/// ```
pub const KERAS_DEFAULT_MOMENTUM: f64 = 0.99;

/// PyTorch's default momentum for `BatchNorm*d` (weight of the *new* value):
/// Keras's 0.9, not Keras's default 0.99.
///
/// # Examples
///
/// ```
/// use centering::{CenteringParams, TORCH_DEFAULT_MOMENTUM};
/// assert_eq!(TORCH_DEFAULT_MOMENTUM, 0.1);
/// assert_eq!(CenteringParams::torch(TORCH_DEFAULT_MOMENTUM).check()?.momentum(), Some(0.9));
/// # Ok::<(), centering::CenteringError>(())
/// ```
pub const TORCH_DEFAULT_MOMENTUM: f64 = 0.1;

/// Unchecked hyper-parameters: a builder. Nothing is validated until
/// [`check`](Self::check) or [`build`](Self::build).
///
/// These are parameters on their own: for [`Centering::with_params`](crate::Centering::with_params),
/// several estimators, or linfa's `Fit`. To build one estimator,
/// `Centering::<F>::builder()` takes the same setters and knows `F`
/// ([`CenteringBuilder`]).
///
/// | parameter | setter | default |
/// |---|---|---|
/// | Keras's / PyTorch's moving mean, exactly | constructors [`keras`](Self::keras), [`torch`](Self::torch) (zero start) | — |
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
/// let params = CenteringParams::torch(0.1).check()?;
/// assert_eq!(params, CenteringParams::new().torch_momentum(0.1).start(EmaStart::Zero).check()?);
/// assert_eq!(params.momentum(), Some(0.9));
/// let (a, b) = (Centering::<f32>::with_params(params), Centering::<f32>::with_params(params));
/// assert!(!a.is_fitted() && a == b);
/// # Ok::<(), centering::CenteringError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Default)]
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
    ///
    /// # Examples
    ///
    /// ```
    /// let p = centering::CenteringParams::new().check()?;
    /// assert_eq!(p.mode(), centering::Mode::Cumulative);
    /// assert_eq!(p.nan_policy(), centering::NanPolicy::Reject);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keras's `BatchNormalization(momentum=momentum)` moving mean, exactly:
    /// `m ← momentum·m + (1 − momentum)·mean(batch)`, starting at 0
    /// ([`EmaStart::Zero`]). `momentum` is the weight of the *old* value
    /// (Keras's default is [`KERAS_DEFAULT_MOMENTUM`], 0.99); the two step
    /// weights are rounded to `F` as Keras rounds them (`1 − momentum`
    /// formed in `f64`), so the estimate matches Keras's bit for bit given
    /// the same batch means.
    ///
    /// The same as `CenteringParams::new().moving_average(momentum).start(EmaStart::Zero)`.
    /// The crate's own default start for a moving average is
    /// [`EmaStart::Debiased`], which is not biased towards 0 early on but is
    /// not what Keras computes.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringParams, EmaStart, KERAS_DEFAULT_MOMENTUM};
    /// use ndarray::array;
    ///
    /// let p = CenteringParams::keras(KERAS_DEFAULT_MOMENTUM).check()?;
    /// assert_eq!((p.momentum(), p.start()), (Some(0.99), Some(EmaStart::Zero)));
    ///
    /// let mut c = Centering::<f64>::with_params(p);
    /// c.partial_fit(&array![[1.0], [3.0]])?; // batch mean 2
    /// assert_eq!(c.try_mean()?[0], 0.99 * 0.0 + (1.0 - 0.99) * 2.0); // Keras's first step
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn keras(momentum: f64) -> Self {
        Self::new().moving_average(momentum).start(EmaStart::Zero)
    }

    /// PyTorch's `BatchNorm*d(momentum=momentum)` running mean, exactly:
    /// `m ← (1 − momentum)·m + momentum·mean(batch)`, starting at 0
    /// ([`EmaStart::Zero`]). `momentum` is the weight of the *new* value
    /// (PyTorch's default is [`TORCH_DEFAULT_MOMENTUM`], 0.1); the step
    /// weights are rounded from PyTorch's own numbers, so the estimate
    /// matches PyTorch's bit for bit given the same batch means. PyTorch's
    /// `momentum=None` is [`batch_average`](Self::batch_average).
    ///
    /// The same as `CenteringParams::new().torch_momentum(momentum).start(EmaStart::Zero)`;
    /// Keras's momentum is `1 − momentum`.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringParams, EmaStart, TORCH_DEFAULT_MOMENTUM};
    /// use ndarray::array;
    ///
    /// let p = CenteringParams::torch(TORCH_DEFAULT_MOMENTUM).check()?;
    /// assert_eq!(p.torch_momentum(), Some(0.1));
    /// assert_eq!((p.momentum(), p.start()), (Some(0.9), Some(EmaStart::Zero)));
    ///
    /// let mut c = Centering::<f32>::with_params(p);
    /// c.partial_fit(&array![[1.0f32], [3.0]])?; // batch mean 2
    /// assert_eq!(c.try_mean()?[0], (1.0 - 0.1f32) * 0.0 + 0.1f32 * 2.0); // PyTorch's first step
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn torch(momentum: f64) -> Self {
        Self::new().torch_momentum(momentum).start(EmaStart::Zero)
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
    /// `Centering::<F>::builder()…build()` does the same without naming `F`
    /// a second time.
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
#[derive(Clone, Copy, PartialEq, Default)]
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

/// The convention a moving average's momentum was given in.
fn convention(p: &ValidParams) -> &'static str {
    if p.torch.is_some() { "PyTorch" } else { "Keras" }
}

/// `x` rounded to 15 significant digits, to show a momentum converted from
/// the other convention (`1 − 0.99` is 0.010000000000000009 in `f64`).
fn tidy(x: f64) -> f64 {
    format!("{x:.14e}").parse().unwrap_or(x)
}

/// The fields shared by the `Debug` output of [`ValidParams`] and
/// [`CenteringParams`]: the mode's name, then for a moving average the
/// convention, both momenta (exact) and the start.
fn debug_fields(p: &ValidParams, d: &mut fmt::DebugStruct<'_, '_>) {
    match p.mode {
        Mode::Cumulative => d.field("mode", &format_args!("Cumulative")),
        Mode::BatchAverage => d.field("mode", &format_args!("BatchAverage")),
        Mode::MovingAverage { momentum, start } => d
            .field("mode", &format_args!("MovingAverage"))
            .field("convention", &format_args!("{}", convention(p)))
            .field("momentum", &momentum)
            .field("torch_momentum", &p.torch.unwrap_or(1.0 - momentum))
            .field("start", &start),
    };
}

/// `Debug` names the mode and, for a moving average, the convention the
/// momentum was given in, both momenta (Keras's first) and the start.
///
/// # Examples
///
/// ```
/// use centering::CenteringParams;
///
/// let p = CenteringParams::torch(0.1).check()?;
/// assert_eq!(
///     format!("{p:?}"),
///     "ValidParams { mode: MovingAverage, convention: PyTorch, momentum: 0.9, \
///      torch_momentum: 0.1, start: Zero, nan_policy: Reject }"
/// );
/// let c = CenteringParams::new().check()?;
/// assert_eq!(format!("{c:?}"), "ValidParams { mode: Cumulative, nan_policy: Reject }");
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl fmt::Debug for ValidParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ValidParams");
        debug_fields(self, &mut d);
        d.field("nan_policy", &self.nan_policy).finish()
    }
}

/// `Debug` as [`ValidParams`]'s, and a start asked for before any moving
/// average was set (it applies to one set later).
///
/// # Examples
///
/// ```
/// use centering::{CenteringParams, EmaStart};
///
/// let p = CenteringParams::new().moving_average(0.99);
/// assert_eq!(
///     format!("{p:?}"),
///     "CenteringParams { mode: MovingAverage, convention: Keras, momentum: 0.99, \
///      torch_momentum: 0.010000000000000009, start: Debiased, nan_policy: Reject }"
/// );
/// let pending = CenteringParams::new().start(EmaStart::Zero);
/// assert_eq!(format!("{pending:?}"), "CenteringParams { mode: Cumulative, start: Zero, nan_policy: Reject }");
/// ```
impl fmt::Debug for CenteringParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CenteringParams");
        debug_fields(&self.inner, &mut d);
        if let (None, Some(start)) = (self.inner.start(), self.start) {
            d.field("start", &start);
        }
        d.field("nan_policy", &self.inner.nan_policy).finish()
    }
}

/// One line for people: the mode, the momentum in the convention it was
/// given in (the other convention's value in parentheses), the start and
/// whether it is Keras's and PyTorch's, and the NaN policy.
///
/// # Examples
///
/// ```
/// use centering::{CenteringParams, NanPolicy};
///
/// let keras = CenteringParams::keras(0.99).check()?;
/// assert_eq!(
///     keras.to_string(),
///     "moving average, Keras momentum 0.99 (PyTorch 0.01), zero start (as Keras and PyTorch), NaN rejected"
/// );
/// let debiased = CenteringParams::new().torch_momentum(0.1).check()?;
/// assert_eq!(
///     debiased.to_string(),
///     "moving average, PyTorch momentum 0.1 (Keras 0.9), debiased start (Keras and PyTorch start at zero), \
///      NaN rejected"
/// );
/// let plain = CenteringParams::new().nan_policy(NanPolicy::Ignore).check()?;
/// assert_eq!(plain.to_string(), "cumulative mean, NaN ignored");
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl fmt::Display for ValidParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Cumulative => write!(f, "cumulative mean")?,
            Mode::BatchAverage => write!(f, "batch average (PyTorch's momentum=None)")?,
            Mode::MovingAverage { momentum, start } => {
                match self.torch {
                    Some(mu) => write!(f, "moving average, PyTorch momentum {mu} (Keras {})", tidy(momentum))?,
                    None => write!(
                        f,
                        "moving average, Keras momentum {momentum} (PyTorch {})",
                        tidy(1.0 - momentum)
                    )?,
                }
                let start = match start {
                    EmaStart::Zero => "zero start (as Keras and PyTorch)",
                    EmaStart::FirstBatch => "first-batch start (Keras and PyTorch start at zero)",
                    EmaStart::Debiased => "debiased start (Keras and PyTorch start at zero)",
                };
                write!(f, ", {start}")?;
            }
        }
        match self.nan_policy {
            NanPolicy::Reject => write!(f, ", NaN rejected"),
            NanPolicy::Ignore => write!(f, ", NaN ignored"),
        }
    }
}

/// As [`ValidParams`]'s `Display` (the parameters are not checked).
///
/// # Examples
///
/// ```
/// let p = centering::CenteringParams::torch(0.1);
/// assert!(p.to_string().starts_with("moving average, PyTorch momentum 0.1 (Keras 0.9), zero start"));
/// ```
impl fmt::Display for CenteringParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

/// The parameter builder of a [`Centering<F>`](crate::Centering), returned
/// by [`Centering::<F>::builder()`](crate::Centering::builder): a
/// [`CenteringParams`] that knows the element type `F`, so that
/// [`build`](Self::build) needs no annotation. The setters are
/// [`CenteringParams`]'s.
///
/// To build an estimator, write `Centering::<F>::builder()…build()?`; to get
/// parameters on their own (for [`Centering::with_params`](crate::Centering::with_params),
/// several estimators, or linfa's `Fit`), `CenteringParams::…check()?`.
///
/// # Examples
///
/// ```
/// use centering::{Centering, NanPolicy};
/// use ndarray::array;
///
/// let mut c = Centering::<f32>::builder().keras(0.99).nan_policy(NanPolicy::Ignore).build()?;
/// c.partial_fit(&array![[1.0f32, f32::NAN], [3.0, 4.0]])?;
/// assert_eq!(c.try_mean()?.to_vec(), vec![(1.0 - 0.99f64) as f32 * 2.0, (1.0 - 0.99f64) as f32 * 4.0]);
/// # Ok::<(), centering::CenteringError>(())
/// ```
pub struct CenteringBuilder<F> {
    params: CenteringParams,
    element: PhantomData<fn() -> F>,
}

impl<F> Clone for CenteringBuilder<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for CenteringBuilder<F> {}

impl<F> PartialEq for CenteringBuilder<F> {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

impl<F> Default for CenteringBuilder<F> {
    fn default() -> Self {
        Self::from(CenteringParams::new())
    }
}

/// Names the element type, then shows the parameters as
/// [`CenteringParams`]'s `Debug` does.
///
/// # Examples
///
/// ```
/// let b = centering::Centering::<f32>::builder().batch_average();
/// assert_eq!(format!("{b:?}"), "CenteringBuilder<f32>(CenteringParams { mode: BatchAverage, nan_policy: Reject })");
/// ```
impl<F> fmt::Debug for CenteringBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CenteringBuilder<{}>({:?})", std::any::type_name::<F>(), self.params)
    }
}

/// Gives parameters set up elsewhere an element type.
///
/// # Examples
///
/// ```
/// use centering::{CenteringBuilder, CenteringParams};
///
/// let shared = CenteringParams::torch(0.1);
/// let c = CenteringBuilder::<f64>::from(shared).build()?;
/// assert_eq!(c.params().torch_momentum(), Some(0.1));
/// # Ok::<(), centering::CenteringError>(())
/// ```
impl<F> From<CenteringParams> for CenteringBuilder<F> {
    fn from(params: CenteringParams) -> Self {
        CenteringBuilder {
            params,
            element: PhantomData,
        }
    }
}

impl<F> CenteringBuilder<F> {
    fn with(self, set: impl FnOnce(CenteringParams) -> CenteringParams) -> Self {
        Self::from(set(self.params))
    }

    /// [`CenteringParams::mode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, Mode};
    /// let c = Centering::<f64>::builder().mode(Mode::BatchAverage).build()?;
    /// assert_eq!(c.params().mode(), Mode::BatchAverage);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn mode(self, mode: Mode) -> Self {
        self.with(|p| p.mode(mode))
    }

    /// [`CenteringParams::cumulative`]: the exact cumulative mean (the default).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, Mode};
    /// let c = Centering::<f64>::builder().batch_average().cumulative().build()?;
    /// assert_eq!(c.params().mode(), Mode::Cumulative);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn cumulative(self) -> Self {
        self.with(CenteringParams::cumulative)
    }

    /// [`CenteringParams::moving_average`]: Keras's momentum (the weight of
    /// the old value), with the start set by [`start`](Self::start), else
    /// [`EmaStart::Debiased`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, EmaStart};
    /// let c = Centering::<f64>::builder().moving_average(0.9).build()?;
    /// assert_eq!((c.params().momentum(), c.params().start()), (Some(0.9), Some(EmaStart::Debiased)));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn moving_average(self, momentum: f64) -> Self {
        self.with(|p| p.moving_average(momentum))
    }

    /// [`CenteringParams::torch_momentum`]: PyTorch's momentum (the weight
    /// of the new value), with the start set by [`start`](Self::start), else
    /// [`EmaStart::Debiased`].
    ///
    /// # Examples
    ///
    /// ```
    /// let c = centering::Centering::<f64>::builder().torch_momentum(0.1).build()?;
    /// assert_eq!(c.params().momentum(), Some(0.9));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn torch_momentum(self, torch_momentum: f64) -> Self {
        self.with(|p| p.torch_momentum(torch_momentum))
    }

    /// Keras's moving mean exactly ([`CenteringParams::keras`]): Keras's
    /// `momentum`, zero start. Keeps the NaN policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, EmaStart};
    /// let c = Centering::<f32>::builder().keras(0.99).build()?;
    /// assert_eq!((c.params().momentum(), c.params().start()), (Some(0.99), Some(EmaStart::Zero)));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn keras(self, momentum: f64) -> Self {
        self.with(|p| p.moving_average(momentum).start(EmaStart::Zero))
    }

    /// PyTorch's running mean exactly ([`CenteringParams::torch`]):
    /// PyTorch's `momentum`, zero start. Keeps the NaN policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, EmaStart};
    /// let c = Centering::<f32>::builder().torch(0.1).build()?;
    /// assert_eq!((c.params().torch_momentum(), c.params().start()), (Some(0.1), Some(EmaStart::Zero)));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn torch(self, momentum: f64) -> Self {
        self.with(|p| p.torch_momentum(momentum).start(EmaStart::Zero))
    }

    /// [`CenteringParams::batch_average`]: PyTorch's `momentum=None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, Mode};
    /// let c = Centering::<f64>::builder().batch_average().build()?;
    /// assert_eq!(c.params().mode(), Mode::BatchAverage);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn batch_average(self) -> Self {
        self.with(CenteringParams::batch_average)
    }

    /// [`CenteringParams::start`]: how a moving average starts; the last
    /// call wins.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, EmaStart};
    /// let c = Centering::<f64>::builder().start(EmaStart::FirstBatch).moving_average(0.9).build()?;
    /// assert_eq!(c.params().start(), Some(EmaStart::FirstBatch));
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn start(self, start: EmaStart) -> Self {
        self.with(|p| p.start(start))
    }

    /// [`CenteringParams::nan_policy`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, NanPolicy};
    /// let c = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
    /// assert_eq!(c.params().nan_policy(), NanPolicy::Ignore);
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn nan_policy(self, nan_policy: NanPolicy) -> Self {
        self.with(|p| p.nan_policy(nan_policy))
    }

    /// The unchecked parameters, without the element type.
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringParams};
    /// assert_eq!(Centering::<f64>::builder().keras(0.9).params(), CenteringParams::keras(0.9));
    /// ```
    pub fn params(&self) -> CenteringParams {
        self.params
    }

    /// Validates the parameters ([`CenteringParams::check`]).
    ///
    /// # Errors
    ///
    /// As [`CenteringParams::check`]: [`CenteringError::InvalidMomentum`].
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    /// let err = Centering::<f64>::builder().keras(1.5).check().unwrap_err();
    /// assert_eq!(err, CenteringError::InvalidMomentum { momentum: 1.5 });
    /// ```
    pub fn check(&self) -> Result<ValidParams> {
        self.params.check()
    }
}

impl<F: crate::Element> CenteringBuilder<F> {
    /// Validates the parameters and builds an unfitted `Centering<F>`.
    ///
    /// # Errors
    ///
    /// As [`CenteringParams::check`]: [`CenteringError::InvalidMomentum`]
    /// (reported in the convention it was given in).
    ///
    /// # Examples
    ///
    /// ```
    /// use centering::{Centering, CenteringError};
    ///
    /// let c = Centering::<f64>::builder().torch(0.1).build()?; // F named once
    /// assert!(!c.is_fitted());
    /// let err = Centering::<f64>::builder().torch(-0.1).build().unwrap_err();
    /// assert_eq!(err, CenteringError::InvalidMomentum { momentum: -0.1 });
    /// # Ok::<(), centering::CenteringError>(())
    /// ```
    pub fn build(&self) -> Result<crate::Centering<F>> {
        self.params.build()
    }
}
