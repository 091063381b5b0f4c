//! The configuration and the module.

use burn_core as burn;

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use centering::{Centering, CenteringParams, EmaStart};

use crate::error::Error;
use crate::state::HostState;

/// How a moving average starts (the core's [`EmaStart`]).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Start {
    /// From zero, biased towards it early on: Keras's and PyTorch's moving
    /// mean exactly.
    Zero,
    /// The normalised weighted average of the batch means (divided by
    /// `1 − βᵗ`): the crate's default.
    Debiased,
}

/// [`MeanCentering`]'s configuration.
///
/// | convention | field | default | new value's weight |
/// |---|---|---|---|
/// | Keras | `momentum` (β, the old value's weight) | 0.99 | `1 − β` |
/// | PyTorch | [`torch`](Self::torch) (μ, the new value's weight) | 0.1 | `μ` |
///
/// A Keras momentum of 0.01 keeps only 1% of the old value each step: the
/// usual mistake when a PyTorch momentum is copied into Keras's convention.
#[derive(Config, Debug)]
pub struct CenteringConfig {
    /// The number of features: the length of the input's last axis.
    pub num_features: usize,
    /// The moving average's momentum in Keras's convention: the weight of
    /// the old value, in `[0, 1]`.
    #[config(default = 0.99)]
    pub momentum: f64,
    /// PyTorch's momentum (the weight of the new batch); when set, it is the
    /// momentum and `momentum` is ignored.
    #[config(default = "None")]
    pub torch_momentum: Option<f64>,
    /// How the moving average starts.
    #[config(default = "Start::Debiased")]
    pub start: Start,
    /// The exact mean of every sample seen (weighted by the batch sizes)
    /// instead of a moving average.
    #[config(default = false)]
    pub cumulative: bool,
}

impl CenteringConfig {
    /// A configuration in PyTorch's convention: `momentum` is the weight of
    /// the new batch (PyTorch's default 0.1), the start is zero, as in
    /// PyTorch's `BatchNorm`.
    pub fn torch(num_features: usize, momentum: f64) -> Self {
        Self::new(num_features)
            .with_torch_momentum(Some(momentum))
            .with_start(Start::Zero)
    }

    /// The core's parameters for this configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Centering`] for a momentum outside `[0, 1]`.
    pub fn params(&self) -> Result<CenteringParams, Error> {
        let p = if self.cumulative {
            CenteringParams::new().cumulative()
        } else {
            let p = match self.torch_momentum {
                Some(mu) => CenteringParams::new().torch_momentum(mu),
                None => CenteringParams::new().moving_average(self.momentum),
            };
            p.start(match self.start {
                Start::Zero => EmaStart::Zero,
                Start::Debiased => EmaStart::Debiased,
            })
        };
        p.check()?;
        Ok(p)
    }

    /// A new layer on `device`, having learned nothing.
    ///
    /// Unlike burn's own `init`s this returns a `Result`: the configuration's
    /// fields are public, so a momentum outside `[0, 1]` or no features can
    /// reach it, and a layer must not start from a silently replaced
    /// configuration (nor panic).
    ///
    /// # Errors
    ///
    /// [`Error::NoFeatures`] for `num_features = 0`, [`Error::Centering`] for
    /// a momentum outside `[0, 1]`.
    pub fn init(&self, device: &burn::tensor::Device) -> Result<MeanCentering, Error> {
        if self.num_features == 0 {
            return Err(Error::NoFeatures);
        }
        let state = self.params()?.build::<f32>()?;
        Ok(MeanCentering {
            training: Param::from_bool(true),
            state: HostState::new(state, self.num_features, device),
        })
    }
}

/// Mean centering, the layer: in training, `x − mean(x)` with the batch's
/// own mean (per feature, the last axis), folded into a moving mean; at
/// inference ([`valid`](Module::valid)) or frozen
/// ([`freeze`](Module::freeze)), `x − moving mean`, never updated.
///
/// ```text
/// training:   y = x − b,   b = mean of x over every axis but the last
///             ∂L/∂x = g − mean(g)            (the gradient flows through b)
///             m ← fold(m, b)                 (no gradient; skipped if x has no samples)
/// inference:  y = x − m
/// ```
///
/// `fold` is the core crate's `Centering<f32>::partial_fit_summary` of
/// `BatchSummary::from_mean(b, n)` (`n` the batch's number of samples), so
/// after N steps the layer's moving mean is bit for bit that of a
/// `Centering<f32>` fed the same batch means and sizes; the cumulative mode
/// weighs batches by their sizes, and every mode counts samples.
/// The moving mean is kept in `f32` on the host whatever the activations'
/// dtype; under mixed precision the batch mean is taken in `f32` too.
///
/// Features are on the **last** axis (Keras's channels-last). For a
/// channels-first tensor (`NCHW`, burn's and PyTorch's convention), move
/// the channels last and back:
///
/// ```text
/// let y = layer.forward(x.permute([0, 2, 3, 1]))?.permute([0, 3, 1, 2]);
/// ```
#[derive(Module, Debug)]
pub struct MeanCentering {
    /// Whether training behaviour is on (off when frozen or at inference).
    pub training: Param<Flag>,
    /// The moving mean and its parameters (the core's state).
    pub state: HostState,
}

impl MeanCentering {
    /// Centres `x` (features on the last axis). See [`MeanCentering`].
    ///
    /// Unlike burn's own layers, which panic on a wrong shape, this returns
    /// the error (call it with `?`): no public function of the crate panics
    /// on its input.
    ///
    /// # Errors
    ///
    /// [`Error::FeatureMismatch`] when the last axis is not `num_features`
    /// long, or `x` has rank 0.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, Error> {
        let d = self.state.n_features();
        let found = x.dims().last().copied().unwrap_or(0);
        if found != d {
            return Err(Error::FeatureMismatch { expected: d, found });
        }
        if x.device().is_autodiff() && self.training.is_enabled() {
            Ok(self.forward_train(x, d))
        } else {
            Ok(self.forward_inference(x, d))
        }
    }

    fn forward_train<const D: usize>(&self, x: Tensor<D>, d: usize) -> Tensor<D> {
        let n = x.dims()[..D - 1].iter().product::<usize>();
        if n == 0 {
            return x; // nothing to centre, nothing learned
        }
        let dtype = x.dtype();
        let mean: Tensor<2> = batch_mean(x.clone().reshape([n, d]));
        let stat = if dtype == DType::F32 {
            mean.clone().detach()
        } else {
            // Mixed precision: the statistic in f32, out of the cast.
            batch_mean(x.clone().detach().cast(FloatDType::F32).reshape([n, d]))
        };
        if let Some(v) = stat.try_into_data().ok().and_then(|t| t.try_to_vec::<f32>().ok()) {
            self.state.step(v, n);
        }
        x - mean.reshape(broadcast_shape::<D>(d))
    }

    fn forward_inference<const D: usize>(&self, x: Tensor<D>, d: usize) -> Tensor<D> {
        let c = self.state.get();
        let mean: Vec<f32> = match c.mean() {
            Some(m) => m.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect(),
            None => vec![0.0; d],
        };
        let dtype = x.dtype();
        let m: Tensor<1> = Tensor::from_data(TensorData::new(mean, [d]), (&x.device(), DType::F32));
        let m = if dtype == DType::F32 {
            m
        } else {
            m.cast(dtype_of(dtype))
        };
        x - m.reshape(broadcast_shape::<D>(d))
    }

    /// The learned state, every replica's step combined: the core's
    /// estimator, to inspect, save as JSON (what `centering inspect` reads)
    /// or keep fitting elsewhere.
    pub fn to_centering(&self) -> Centering<f32> {
        self.state.get()
    }

    /// Sets the learned state from the core's estimator (fitted on a cluster,
    /// loaded from the shell's JSON, imported with `Centering::from_torch`
    /// or `from_keras`); the layer's configuration becomes the state's.
    ///
    /// # Errors
    ///
    /// [`Error::FeatureMismatch`] when the state was fitted on another
    /// number of features.
    pub fn load_centering(&self, state: Centering<f32>) -> Result<(), Error> {
        let d = self.state.n_features();
        if let Some(found) = state.n_features()
            && found != d
        {
            return Err(Error::FeatureMismatch { expected: d, found });
        }
        self.state.set(state);
        Ok(())
    }

    /// The moving mean subtracted at inference (zeros before any step),
    /// on `device`, in f32.
    pub fn moving_mean(&self, device: &burn::tensor::Device) -> Tensor<1> {
        let d = self.state.n_features();
        let mean = self.state.get().mean().map_or_else(|| vec![0.0; d], |m| m.to_vec());
        Tensor::from_data(TensorData::new(mean, [d]), (device, DType::F32))
    }

    /// The number of training steps taken (non-empty batches).
    pub fn n_steps(&self) -> u64 {
        self.state.get().n_batches()
    }

    /// Updates refused: a batch mean with a NaN or an infinity (a diverged
    /// step), or a record whose `state` is not one of this layer's.
    pub fn skipped_updates(&self) -> u64 {
        self.state.skipped()
    }
}

/// The per-feature mean of an `(n, d)` tensor, as a `(1, d)` row: a
/// row of `1/n` times `x`, which the backends' matrix products run at
/// memory speed whatever `d` (a reduction along axis 0 of a narrow `x`
/// walks it in strides: 4–8 times slower for `d = 3` on the CPU backend).
pub fn batch_mean(x: Tensor<2>) -> Tensor<2> {
    let [n, _] = x.dims();
    let w = Tensor::<2>::ones([1, n], (&x.device(), x.dtype())).div_scalar(n as f64);
    w.matmul(x)
}

fn broadcast_shape<const D: usize>(d: usize) -> [usize; D] {
    let mut s = [1; D];
    s[D - 1] = d;
    s
}

fn dtype_of(d: DType) -> FloatDType {
    match d {
        DType::F64 => FloatDType::F64,
        DType::F16 => FloatDType::F16,
        DType::BF16 => FloatDType::BF16,
        _ => FloatDType::F32,
    }
}
