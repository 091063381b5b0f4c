//! # centering-burn
//!
//! The layer `centering` comes from, natively in [burn](https://burn.dev):
//! BatchNormalization's moving mean, subtracted at inference, without its
//! division by the variance. In training it subtracts the batch's own mean
//! and folds that mean into a moving mean; at inference, or frozen, it
//! subtracts the moving mean. The moving mean *is* a
//! [`centering::Centering<f32>`]: the same state, parameters and
//! arithmetic as the library, the command-line tool and the DataFusion
//! aggregate.
//!
//! ```
//! use burn_core::module::Module;
//! use burn_core::tensor::{Device, Tensor};
//! use centering_burn::CenteringConfig;
//!
//! let device = Device::default().autodiff();
//! let layer = CenteringConfig::new(2).with_momentum(0.9).init(&device)?;
//! let x = Tensor::<2>::from_floats([[1.0, 10.0], [3.0, 30.0]], &device);
//! let y = layer.forward(x)?; // training: the batch's own mean
//! assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![-1.0, -10.0, 1.0, 10.0]);
//!
//! let infer = layer.valid(); // inference: the moving mean (debiased: the one batch's mean)
//! let x = Tensor::<2>::from_floats([[2.0, 20.0]], &Device::default());
//! assert_eq!(infer.forward(x)?.into_data().try_to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
//! assert_eq!(layer.n_steps(), 1);
//!
//! // A wrong number of features is an error, not a panic.
//! assert!(infer.forward(Tensor::<2>::zeros([1, 3], &Device::default())).is_err());
//! # Ok::<(), centering_burn::Error>(())
//! ```
//!
//! `init` and `forward` return a `Result` where burn's own layers return
//! the module or tensor and panic on bad input: the configuration's fields
//! are public and shapes are only known at run time, and no public function
//! of this crate panics on its input.
//!
//! ## The moving mean and the core
//!
//! Each training step computes the batch mean on the device ([`batch_mean`]:
//! a `1/n` row times the `(n, D)` activations, which the output's gradient
//! also flows through; a matrix product runs at memory speed for any `D`
//! where a reduction along a narrow axis does not), reads those
//! `D` floats back and folds them with the core's `partial_fit_summary`
//! as a `BatchSummary::from_mean` of the batch's `n` samples (one
//! moving-average step with that mean; the cumulative mode weighs it by
//! `n`; every mode counts samples, as `n_samples_seen` reports). So **after
//! N steps the layer's moving mean equals a `Centering<f32>`'s fed the same
//! batch means and sizes, bit
//! for bit**; what differs from fitting the core on the raw activations is
//! only the device's rounding of each batch mean. The read-back is one
//! small synchronisation per step (free on a CPU backend).
//!
//! A batch mean with a NaN or an infinity (a diverged step) is refused as
//! the core refuses it: the state is unchanged, and
//! [`MeanCentering::skipped_updates`] counts it.
//!
//! ## State
//!
//! [`Module::into_record`](burn_core::module::Module::into_record) saves
//! the layer as one integer tensor `state`: the core's versioned JSON
//! (mean, step count, momentum and its convention, start), byte for byte,
//! padded to a length fixed by `num_features`. Loading validates it as the
//! core does. [`MeanCentering::to_centering`] and
//! [`MeanCentering::load_centering`] convert to and from the core's
//! `Centering<f32>`, so a mean fitted on a cluster or with the shell
//! initialises the layer, and the layer's mean can be inspected with
//! `AnyCentering` or the command-line tool.
//!
//! ## Replicas
//!
//! The state is shared by the module's clones, with one pending step per
//! thread, as burn's `RunningState` is. burn's multi-device training runs
//! one worker thread per device on clones of the model, and waits for every
//! worker before the next step; a worker's next step (or any read) first
//! combines the pending steps: for moving averages with
//! `Centering::average` (replicas in lock step: the moving average of the
//! averaged batch means, since it is linear in them — what
//! `RunningState`'s averaging gives burn's `BatchNorm`), and in cumulative
//! mode by `merge`-ing each replica's own batch, which weighs shards by
//! their sizes (averaging would not).
//!
//! ## Backends
//!
//! The crate enables no burn backend: the application's own burn
//! dependency chooses (`ndarray`, `flex`, `wgpu`, `cuda` …) and feature
//! unification turns it on here. Its tests use the CPU backend.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod layer;
mod state;

pub use error::Error;
pub use layer::{CenteringConfig, MeanCentering, Start, batch_mean};
pub use state::HostState;
