//! Learn one mean per feature of [`ndarray`] arrays and subtract it
//! ("centering"): scikit-learn's `StandardScaler(with_std=False)`, and the
//! moving mean of Keras's and PyTorch's batch normalisation without the
//! division by the variance.
//!
//! # Overview
//!
//! [`Centering<F>`](Centering) is the estimator, for `f32`, `f64` or any
//! [`Element`]. [`Centering::<F>::new()`](Centering::new) gives the default
//! (the exact cumulative mean); any other estimator is built in one line,
//! with `F` named once:
//!
//! ```
//! use centering::{Centering, NanPolicy};
//!
//! let keras = Centering::<f32>::builder().keras(0.99).build()?; // Keras's moving mean, exactly
//! let torch = Centering::<f32>::builder().torch(0.1).build()?; // PyTorch's running mean, exactly
//! let sklearn = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
//! assert_eq!(keras.params().momentum(), Some(0.99));
//! assert_eq!(torch.params().torch_momentum(), Some(0.1));
//! assert_eq!(sklearn.params().nan_policy(), NanPolicy::Ignore);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! [`Centering::builder`] returns a [`CenteringBuilder<F>`](CenteringBuilder)
//! whose [`build`](CenteringBuilder::build) validates the parameters once.
//! Parameters on their own, for several estimators
//! ([`Centering::with_params`]) or for linfa's `Fit`, are a
//! [`CenteringParams`] checked into [`ValidParams`]:
//! `CenteringParams::keras(0.99).check()?`.
//!
//! - **Feature axis**: the last axis, of length `D ≥ 1`. Every other axis
//!   indexes samples: a batch of shape `(n₀, …, n_k, D)` holds
//!   `n = n₀·…·n_k` samples, so images `(N, H, W, C)` give one mean per
//!   channel. A 1-D array of length `D` is one sample; a 0-D array, or
//!   `D = 0`, is an error. A batch with no samples is a no-op.
//! - **Any layout, no copy**: C or Fortran order, sliced, strided, reversed
//!   (negative strides), permuted or broadcast views, any number of
//!   dimensions ([`IxDyn`](type@ndarray::IxDyn) included).
//! - **Modes** ([`Mode`]): the exact cumulative mean (the default), an
//!   exponential moving average in Keras's convention with three starts
//!   ([`EmaStart`]), and PyTorch's `momentum=None` average of batch means.
//! - **Sample weights**, **missing values** ([`NanPolicy`]), **merge** of
//!   two estimators, and **batch centering** (a normalisation layer's
//!   training mode).
//!
//! | operation | meaning |
//! |---|---|
//! | [`partial_fit`](Centering::partial_fit), [`partial_fit_weighted`](Centering::partial_fit_weighted) | fold a batch into the estimate |
//! | [`fit`](Centering::fit), [`fit_weighted`](Centering::fit_weighted) | forget everything, then `partial_fit` |
//! | [`transform`](Centering::transform) | `x − m`, broadcast along the last axis, as a new array |
//! | [`inverse_transform`](Centering::inverse_transform) | `y + m` |
//! | [`fit_transform`](Centering::fit_transform) | `fit(x)` then `transform(x)` |
//! | `_inplace` and `_into` variants | the same into the caller's array, or into a caller's output buffer: no allocation |
//! | [`center_batch`](Centering::center_batch), [`center_batch_inplace`](Centering::center_batch_inplace) | `x − mean(x)` with the batch's *own* mean, and fold the batch in |
//! | [`merge`](Centering::merge) | combine two estimators (see [Merge](#merge)) |
//! | [`mean`](Centering::mean), [`try_mean`](Centering::try_mean), [`n_samples_seen`](Centering::n_samples_seen), [`n_batches`](Centering::n_batches), [`weight_sums`](Centering::weight_sums), [`n_features`](Centering::n_features) | the learned state, read-only (see [Reading results](#reading-results)) |
//! | `==`, [`same_estimate`](Centering::same_estimate) | the same state, or the same estimate (see [Equality](#equality)) |
//! | [`reset`](Centering::reset) | back to unfitted, parameters kept |
//! | `serde` | save and load (see [Persistence](#persistence)) |
//!
//! Every error is a [`CenteringError`] that names what was expected and what
//! was found, and a fitting method that fails leaves the estimator exactly as
//! it was: an update is all or nothing.
//!
//! # Examples
//!
//! ## Fit a stream chunk by chunk, then centre new data
//!
//! The cumulative mean does not depend on how the data was cut into batches.
//!
//! ```
//! use centering::Centering;
//! use ndarray::{Array2, Axis, array, s};
//!
//! // 1,000 readings of 3 sensors with offsets 20, −5 and 1000.
//! let x = Array2::from_shape_fn((1000, 3), |(i, j)| {
//!     [20.0, -5.0, 1000.0][j] + ((i * 37 + j * 11) % 21) as f64 - 10.0
//! });
//!
//! let mut scaler = Centering::<f64>::new();
//! for (start, end) in [(0, 1), (1, 250), (250, 999), (999, 1000)] {
//!     scaler.partial_fit(&x.slice(s![start..end, ..]))?;
//! }
//! let mut once = Centering::<f64>::new();
//! once.fit(&x)?;
//! assert_eq!(scaler.mean(), once.mean());
//! assert_eq!(scaler.n_samples_seen(), 1000);
//!
//! // Centred data has a zero mean (up to rounding).
//! let centred = scaler.transform(&x)?;
//! let m = centred.mean_axis(Axis(0)).unwrap();
//! assert!(m.iter().all(|v| v.abs() < 1e-12));
//! assert_eq!(scaler.transform(&array![[20.0, -5.0, 1000.0]])?.shape(), &[1, 3]);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Images: one mean per channel
//!
//! Channels last (`NHWC`, Keras's default) needs nothing special.
//! Channels first (`NCHW`, PyTorch's) becomes channels last through a
//! permuted *view*: nothing is copied.
//!
//! ```
//! use centering::Centering;
//! use ndarray::Array4;
//!
//! // 8 images of 4×4 pixels, 3 channels: channel c holds c·10 + the pixel index.
//! let nchw = Array4::from_shape_fn((8, 3, 4, 4), |(_, c, h, w)| (c * 10 + h * 4 + w) as f32);
//! let nhwc = nchw.view().permuted_axes([0, 2, 3, 1]); // (8, 4, 4, 3)
//!
//! let mut c = Centering::<f32>::new();
//! c.fit(&nhwc)?;
//! assert_eq!(c.mean().unwrap().to_vec(), vec![7.5, 17.5, 27.5]);
//! let y = c.transform(&nhwc)?; // same shape and axes as the input
//! assert_eq!(y.shape(), &[8, 4, 4, 3]);
//! assert_eq!(y[[0, 0, 0, 2]], 20.0 - 27.5);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## A batch-normalisation layer without the variance
//!
//! In training, a layer centres each batch with the batch's own mean and
//! updates its moving mean ([`center_batch`](Centering::center_batch)); at
//! inference (Keras's `training=False`, PyTorch's `model.eval()`) it
//! subtracts the moving mean ([`transform`](Centering::transform)), which
//! changes nothing.
//!
//! ```
//! use centering::{Centering, EmaStart, TORCH_DEFAULT_MOMENTUM};
//! use ndarray::array;
//!
//! // PyTorch's BatchNorm defaults: momentum 0.1 on the new value, running mean starting at 0.
//! let mut layer = Centering::<f64>::builder().torch(TORCH_DEFAULT_MOMENTUM).build()?;
//! assert_eq!(layer.params().momentum(), Some(0.9)); // Keras's convention: 1 − 0.1
//! assert_eq!(layer.params().start(), Some(EmaStart::Zero));
//!
//! let y = layer.center_batch(&array![[1.0, 10.0], [3.0, 30.0]])?; // training step
//! assert_eq!(y, array![[-1.0, -10.0], [1.0, 10.0]]); // the batch's own mean, (2, 20)
//! let m = layer.try_mean()?;
//! assert!((m[0] - 0.2).abs() < 1e-12 && (m[1] - 2.0).abs() < 1e-12); // 0.9·0 + 0.1·(2, 20)
//!
//! let z = layer.transform(&array![[0.2, 2.0]])?; // inference
//! assert!(z.iter().all(|v| v.abs() < 1e-12));
//! assert_eq!(layer.n_batches(), 1); // PyTorch's num_batches_tracked
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Fit shards on threads and merge
//!
//! ```
//! use centering::Centering;
//! use ndarray::{Array2, Axis};
//!
//! let x = Array2::from_shape_fn((10_000, 4), |(i, j)| (i % 97) as f64 + 1000.0 * j as f64);
//! let shards: Vec<_> = x.axis_chunks_iter(Axis(0), 3_000).collect(); // views, no copies
//!
//! let fitted: Vec<Centering<f64>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = shards
//!         .iter()
//!         .map(|shard| {
//!             s.spawn(move || -> centering::Result<Centering<f64>> {
//!                 let mut c = Centering::<f64>::new();
//!                 c.fit(shard)?;
//!                 Ok(c)
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect::<Result<_, _>>()
//! })?;
//!
//! let mut merged = Centering::<f64>::new(); // unfitted: the identity of merge
//! for c in &fitted {
//!     merged.merge(c)?;
//! }
//! let mut whole = Centering::<f64>::new();
//! whole.fit(&x)?;
//! assert_eq!(merged.mean(), whole.mean());
//! assert_eq!(merged.n_samples_seen(), 10_000);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Missing values
//!
//! ```
//! use centering::{Centering, CenteringError, NanPolicy};
//! use ndarray::array;
//!
//! let x = array![[1.0, f64::NAN], [3.0, 4.0], [f64::NAN, 8.0]];
//!
//! // The default policy rejects the batch, names the first NaN, and changes nothing.
//! let mut strict = Centering::<f64>::new();
//! let err = strict.partial_fit(&x).unwrap_err();
//! assert!(matches!(err, CenteringError::NonFinite { ref index, .. } if index == &[0, 1]));
//! assert!(!strict.is_fitted());
//!
//! // `Ignore` skips NaN feature by feature, as scikit-learn does.
//! let mut lenient = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
//! lenient.partial_fit(&x)?;
//! assert_eq!(lenient.mean().unwrap(), array![2.0, 6.0]);
//! assert_eq!(lenient.weight_sums().unwrap(), array![2.0, 2.0]); // per-feature counts
//! assert_eq!(lenient.n_samples_seen(), 3);
//! let y = lenient.transform(&x)?; // NaN stays where it was
//! assert!(y[[0, 1]].is_nan() && y[[2, 0]].is_nan());
//! assert_eq!(y[[1, 1]], -2.0);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Conventions
//!
//! ## Keras ↔ PyTorch ↔ scikit-learn
//!
//! | concept | Keras `BatchNormalization` | PyTorch `BatchNorm*d` | scikit-learn `StandardScaler(with_std=False)` | `centering` |
//! |---|---|---|---|---|
//! | learned mean | `moving_mean` | `running_mean` | `mean_` | [`mean()`](Centering::mean) |
//! | update rule | `m ← β·m + (1 − β)·b` | `m ← (1 − μ)·m + μ·b` | exact mean of all samples | [`Mode`] |
//! | momentum | `momentum = β = 0.99`, weight of the **old** value | `momentum = μ = 0.1`, weight of the **new** value | — | [`moving_average(β)`](CenteringParams::moving_average), [`torch_momentum(μ)`](CenteringParams::torch_momentum): `β = 1 − μ` |
//! | initial value | zeros | zeros | — | [`EmaStart::Zero`] (the default is [`EmaStart::Debiased`]) |
//! | **the recipe** | `BatchNormalization(momentum=β)` | `BatchNorm*d(momentum=μ)` | `StandardScaler(with_std=False)` | [`builder().keras(β)`](CenteringBuilder::keras), [`builder().torch(μ)`](CenteringBuilder::torch), [`new()`](Centering::new); as parameters [`CenteringParams::keras`], [`CenteringParams::torch`] |
//! | average of batch means | — | `momentum=None` | — | [`Mode::BatchAverage`] ([`batch_average()`](CenteringParams::batch_average)) |
//! | steps taken | — | `num_batches_tracked` | — | [`n_batches()`](Centering::n_batches) |
//! | training: centre on the batch mean, update | `layer(x, training=True)` | `model.train()`, forward | — | [`center_batch`](Centering::center_batch) |
//! | inference: subtract the learned mean | `layer(x, training=False)`, or `trainable=False` | `model.eval()`, forward | `transform` | [`transform`](Centering::transform) |
//! | streaming fit | — | — | `partial_fit` | [`partial_fit`](Centering::partial_fit) |
//! | samples seen | — | — | `n_samples_seen_` | [`n_samples_seen()`](Centering::n_samples_seen); per feature with NaN or weights: [`weight_sums()`](Centering::weight_sums) |
//! | sample weights | — | — | `sample_weight` | [`partial_fit_weighted`](Centering::partial_fit_weighted) |
//! | NaN in fit | propagates | propagates | ignored per feature, kept by `transform` | [`NanPolicy::Reject`] (default) or [`NanPolicy::Ignore`] (scikit-learn's behaviour) |
//! | feature axis | `axis=-1` | axis 1 (`NCHW`) | columns | the last axis (permute a view for `NCHW`) |
//!
//! **Mind the momentum convention.** A Keras momentum of `0.01` keeps only
//! 1% of the old value at each step: the estimate is essentially the last
//! batch's mean. That is PyTorch's `0.99`, and it is almost never what was
//! meant; a PyTorch `momentum=0.1` is [`torch(0.1)`](CenteringBuilder::torch)
//! (or `moving_average(0.9)` with [`EmaStart::Zero`]).
//!
//! **Mind the start.** A moving average set with
//! [`moving_average`](CenteringBuilder::moving_average) or
//! [`torch_momentum`](CenteringBuilder::torch_momentum) starts
//! [`Debiased`](EmaStart::Debiased) unless told otherwise: better early
//! estimates, but not the numbers Keras and PyTorch give. The
//! [`keras`](CenteringBuilder::keras) and [`torch`](CenteringBuilder::torch)
//! recipes set the zero start, and the parameters' `Display` and `Debug`
//! say which convention and start an estimator uses:
//!
//! ```
//! use centering::Centering;
//!
//! let keras = Centering::<f32>::builder().keras(0.99).build()?;
//! assert!(keras.params().to_string().contains("Keras momentum 0.99 (PyTorch 0.01), zero start"));
//! let other = Centering::<f32>::builder().moving_average(0.99).build()?;
//! assert!(other.params().to_string().contains("debiased start (Keras and PyTorch start at zero)"));
//! assert!(format!("{other:?}").contains("convention: Keras, momentum: 0.99"));
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! The worked examples below use three batches of one feature:
//!
//! ```text
//! batch 1: [1, 3]       b₁ = 2
//! batch 2: [10]         b₂ = 10
//! batch 3: [4, 4, 7]    b₃ = 5
//! ```
//!
//! ## Cumulative (the default)
//!
//! ```text
//!      Σᵢ wᵢ·xᵢ
//! m = ――――――――      over every sample seen (wᵢ = 1 without weights)
//!       Σᵢ wᵢ
//! ```
//!
//! The result depends neither on the batch split nor on the number of
//! threads, beyond rounding (see [Numerics](#numerics)).
//!
//! ```
//! use centering::Centering;
//! use ndarray::array;
//!
//! let mut c = Centering::<f64>::new();
//! c.partial_fit(&array![[1.0], [3.0]])?;
//! c.partial_fit(&array![[10.0]])?;
//! c.partial_fit(&array![[4.0], [4.0], [7.0]])?;
//! assert_eq!(c.mean().unwrap()[0], 29.0 / 6.0); // (1 + 3 + 10 + 4 + 4 + 7) / 6
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Moving average
//!
//! One step per non-empty batch, with `β` = Keras's momentum and `bᵢ` the
//! mean of batch `i`. The three starts ([`EmaStart`]) give, after `t` steps:
//!
//! ```text
//! Zero:        m₀ = 0,   mₜ = β·mₜ₋₁ + (1 − β)·bₜ  =  (1 − β)·Σᵢ βᵗ⁻ⁱ·bᵢ      Keras, PyTorch
//! FirstBatch:  m₁ = b₁,  mₜ = β·mₜ₋₁ + (1 − β)·bₜ                         pandas ewm(adjust=False), river EWMean
//!
//!                             Σᵢ βᵗ⁻ⁱ·bᵢ      Zero's mₜ
//! Debiased:              mₜ = ――――――――――  =  ―――――――――                     pandas ewm(adjust=True), the default
//!                              Σᵢ βᵗ⁻ⁱ         1 − βᵗ
//! ```
//!
//! `Zero` is biased towards 0 for the first `~1/(1 − β)` batches (100 with
//! Keras's 0.99): use it to reproduce Keras or PyTorch exactly. `Debiased`
//! and `FirstBatch` both equal `b₁` after one step and differ afterwards:
//! `Debiased` is the normalised weighted average of all batch means, while
//! `FirstBatch` keeps `b₁` with the weight `βᵗ⁻¹` that the zero start had
//! given to 0. With `β = 0.9`:
//!
//! ```text
//!               t = 1    t = 2                     t = 3
//! Zero          0.2      0.9·0.2 + 0.1·10 = 1.18   0.9·1.18 + 0.1·5 = 1.562
//! FirstBatch    2        0.9·2 + 0.1·10 = 2.8      0.9·2.8 + 0.1·5 = 3.02
//! Debiased      2        1.18 / 0.19 = 6.2105…     1.562 / 0.271 = 5.7638…
//! ```
//!
//! ```
//! use centering::{Centering, EmaStart};
//! use ndarray::array;
//!
//! let batches = [array![[1.0], [3.0]], array![[10.0]], array![[4.0], [4.0], [7.0]]];
//! let expected = [
//!     (EmaStart::Zero, [0.2, 1.18, 1.562]),
//!     (EmaStart::FirstBatch, [2.0, 2.8, 3.02]),
//!     (EmaStart::Debiased, [2.0, 1.18 / 0.19, 1.562 / 0.271]),
//! ];
//! for (start, means) in expected {
//!     let mut c = Centering::<f64>::builder().moving_average(0.9).start(start).build()?;
//!     for (batch, want) in batches.iter().zip(means) {
//!         c.partial_fit(batch)?;
//!         assert!((c.mean().unwrap()[0] - want).abs() < 1e-12, "{start:?}");
//!     }
//! }
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! The batch size does not matter: each non-empty batch is one step. A batch
//! with no samples (or zero total weight) is no step at all.
//!
//! ## Batch average (PyTorch's `momentum=None`)
//!
//! ```text
//!       1   t
//! mₜ = ―――  Σ  bᵢ      each non-empty batch counted once, whatever its size
//!       t  i=1
//! ```
//!
//! It equals the cumulative mean only when all batches have the same size;
//! with the batches above, `(2 + 10 + 5) / 3 = 17/3`, not `29/6`.
//!
//! ```
//! use centering::Centering;
//! use ndarray::array;
//!
//! let mut c = Centering::<f64>::builder().batch_average().build()?;
//! c.partial_fit(&array![[1.0], [3.0]])?;
//! c.partial_fit(&array![[10.0]])?;
//! assert_eq!(c.mean().unwrap()[0], 6.0); // (2 + 10) / 2
//! c.partial_fit(&array![[4.0], [4.0], [7.0]])?;
//! assert!((c.mean().unwrap()[0] - 17.0 / 3.0).abs() < 1e-12);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Sample weights
//!
//! [`partial_fit_weighted`](Centering::partial_fit_weighted) takes one
//! finite, non-negative weight per sample, shaped like the sample axes
//! (`x.shape()[..ndim − 1]`; for 3-D and larger inputs a 1-D weight per
//! first index is also accepted, e.g. one weight per image). Integer weights
//! are the same as repeating rows. In the cumulative mode the weights enter
//! `Σ wᵢ·xᵢ / Σ wᵢ` directly; in the moving-average and batch-average
//! modes they weigh the batch mean `bₜ`, and each batch is still one step. A
//! batch whose weights sum to 0 is a no-op; a negative, NaN or infinite
//! weight is [`CenteringError::InvalidWeight`], a wrong shape
//! [`CenteringError::WeightShape`].
//!
//! ```
//! use centering::{Centering, CenteringError};
//! use ndarray::array;
//!
//! let mut weighted = Centering::<f64>::new();
//! weighted.partial_fit_weighted(&array![[1.0], [4.0]], &array![2.0, 1.0])?;
//! let mut repeated = Centering::<f64>::new();
//! repeated.partial_fit(&array![[1.0], [1.0], [4.0]])?;
//! assert_eq!(weighted.mean(), repeated.mean()); // (2·1 + 1·4) / 3 = 2
//! assert_eq!(weighted.weight_sums().unwrap()[0], 3.0);
//! assert_eq!(weighted.n_samples_seen(), 2); // samples, whatever their weights
//!
//! // A moving average takes one step with the weighted batch mean.
//! let mut ema = Centering::<f64>::builder().keras(0.5).build()?; // moving average, zero start
//! ema.partial_fit_weighted(&array![[0.0], [4.0]], &array![1.0, 3.0])?; // b = 3
//! assert_eq!(ema.mean().unwrap()[0], 1.5); // 0.5·0 + 0.5·3
//!
//! let err = ema.partial_fit_weighted(&array![[1.0]], &array![-1.0]).unwrap_err();
//! assert!(matches!(err, CenteringError::InvalidWeight { .. }));
//! ema.partial_fit_weighted(&array![[1.0]], &array![0.0])?; // zero total weight: a no-op
//! assert_eq!(ema.n_batches(), 1);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Missing values
//!
//! Under [`NanPolicy::Reject`] (the default) a NaN or ±∞ anywhere in a batch
//! given to a fitting method is [`CenteringError::NonFinite`], with its
//! index. Under [`NanPolicy::Ignore`], NaN is a missing value: each feature
//! is fitted on its own observed values (per-feature weight sums, as
//! scikit-learn's per-feature `n_samples_seen_`), `transform` leaves NaN
//! where it was, and ±∞ is still rejected. In the moving-average modes a
//! batch in which a feature has no observed value is no step for that
//! feature.
//!
//! A feature with no observed value yet has no mean. What the estimator
//! gives for it, once fitted (before any fit, [`mean`](Centering::mean) is
//! `None` and [`transform`](Centering::transform) is
//! [`CenteringError::NotFitted`] in every mode):
//!
//! | mode | `mean()[j]` | `transform` of feature `j` |
//! |---|---|---|
//! | [`Mode::Cumulative`], [`Mode::BatchAverage`], [`EmaStart::FirstBatch`], [`EmaStart::Debiased`] | NaN (as `numpy.nanmean`, scikit-learn's `mean_`) | NaN |
//! | [`EmaStart::Zero`] | 0 (Keras's and PyTorch's initial moving mean) | the input, unchanged |
//!
//! The feature learns from the first values that arrive later, however many
//! batches it missed.
//!
//! ```
//! use centering::{Centering, NanPolicy};
//! use ndarray::array;
//!
//! let mut c = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
//! c.partial_fit(&array![[1.0, f64::NAN], [3.0, f64::NAN]])?;
//! assert!(c.mean().unwrap()[1].is_nan()); // never observed
//! let y = c.transform(&array![[2.0, 5.0]])?;
//! assert_eq!(y[[0, 0]], 0.0);
//! assert!(y[[0, 1]].is_nan());
//!
//! c.partial_fit(&array![[f64::NAN, 7.0]])?; // feature 1 arrives
//! assert_eq!(c.mean().unwrap(), array![2.0, 7.0]);
//! assert_eq!(c.weight_sums().unwrap(), array![2.0, 1.0]);
//! assert!(c.partial_fit(&array![[f64::INFINITY, 0.0]]).is_err()); // ±∞ is never missing
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Merge
//!
//! [`merge`](Centering::merge) is how states combine, for parallel and
//! distributed fitting.
//!
//! - **Cumulative**: `a.merge(&b)` is the estimate of the union of both
//!   inputs, exactly what one estimator fed all the data would hold
//!   (weights and per-feature missing counts included). It is commutative.
//! - **Moving average and batch average**: `a.merge(&b)` continues `a`'s
//!   batches with `b`'s, as if `b`'s batches had been fed after `a`'s. It is
//!   ordered, *not* commutative: merge time-ordered segments in time order.
//!   A segment of `t` batches acts on the estimate before it as an affine
//!   map, and segments compose:
//!
//!   ```text
//!   segment:   m ↦ d·m + c,    d = βᵗ,   c = (1 − β)·Σᵢ βᵗ⁻ⁱ·bᵢ   (the segment's own zero-start estimate)
//!   a then b:  (d, c) = (d_a·d_b,  d_b·c_a + c_b)
//!   ```
//!
//!   The merged estimate equals one pass over all batches up to rounding (a
//!   few ulp: the one-pass recursion rounds at every step too).
//!
//! An unfitted side is the identity. A different mode, momentum, start, NaN
//! policy or number of features `D` is [`CenteringError::IncompatibleMerge`],
//! naming what differs (a `D` other than the fitted one given to
//! [`partial_fit`](Centering::partial_fit) or
//! [`transform`](Centering::transform) is
//! [`CenteringError::FeatureMismatch`]).
//!
//! ```
//! use centering::{Centering, CenteringError, CenteringParams};
//! use ndarray::array;
//!
//! let p = CenteringParams::keras(0.9).check()?; // moving average, zero start
//! let (mut early, mut late, mut all) =
//!     (Centering::<f64>::with_params(p), Centering::with_params(p), Centering::with_params(p));
//! early.partial_fit(&array![[1.0], [3.0]])?; // b₁ = 2
//! late.partial_fit(&array![[10.0]])?; // b₂ = 10
//! late.partial_fit(&array![[4.0], [4.0], [7.0]])?; // b₃ = 5
//! for b in [array![[1.0], [3.0]], array![[10.0]], array![[4.0], [4.0], [7.0]]] {
//!     all.partial_fit(&b)?;
//! }
//!
//! let mut in_order = early.clone();
//! in_order.merge(&late)?;
//! assert!((in_order.mean().unwrap()[0] - all.mean().unwrap()[0]).abs() < 1e-12); // 1.562
//! let mut backwards = late.clone();
//! backwards.merge(&early)?; // b₂, b₃, then b₁: another history
//! assert!((backwards.mean().unwrap()[0] - 1.562).abs() > 0.1);
//!
//! let cumulative = Centering::<f64>::new();
//! let err = in_order.merge(&cumulative).unwrap_err();
//! assert!(matches!(err, CenteringError::IncompatibleMerge { what: "mode", .. }));
//!
//! let mut wide = Centering::<f64>::with_params(p);
//! wide.partial_fit(&array![[1.0, 2.0]])?; // D = 2 against D = 1
//! let err = in_order.merge(&wide).unwrap_err();
//! assert!(matches!(err, CenteringError::IncompatibleMerge { what: "number of features", .. }));
//! assert_eq!(err.to_string(), "cannot merge: number of features differs (self has 1, other has 2)");
//! assert_eq!(in_order.n_batches(), 3); // unchanged
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! ## Batch centering
//!
//! [`center_batch`](Centering::center_batch) is a normalisation layer's
//! training mode in one call: it returns `x − mean(x)` with the batch's *own*
//! mean (not the learned one), and folds the batch into the estimate like
//! [`partial_fit`](Centering::partial_fit). An empty batch gives an empty
//! result and changes nothing.
//!
//! ```
//! use centering::Centering;
//! use ndarray::array;
//!
//! let mut c = Centering::<f64>::new();
//! c.fit(&array![[100.0]])?;
//! let y = c.center_batch(&array![[1.0], [3.0]])?;
//! assert_eq!(y, array![[-1.0], [1.0]]); // the batch's mean, 2, not the learned one
//! assert_eq!(c.mean().unwrap()[0], 104.0 / 3.0); // and the batch was folded in
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Input types
//!
//! `F` (`f32` or `f64`, the sealed [`Element`]) is the type of the mean and
//! of what `transform` returns. Data often arrives narrower — images as
//! `u8`/`u16`, sensors as `i16`, mixed-precision activations as `f16` — and
//! the `_input` methods ([`partial_fit_input`](Centering::partial_fit_input),
//! [`fit_input`](Centering::fit_input),
//! [`transform_input`](Centering::transform_input),
//! [`center_batch_input`](Centering::center_batch_input) …) take any
//! [`Input`] element directly, any layout, without a conversion copy:
//!
//! | input | accumulator | guarantee |
//! |---|---|---|
//! | `f32`, `f64` | `f64` double-words (TwoSum), SIMD kernels | within 1 ulp of the exact mean (see [Numerics](#numerics)) |
//! | `u8`, `i8`, `u16`, `i16`, `u32`, `i32` | exact integer sums (double-words holding integers exactly) | the mean is a function of the exact sum and count: bit-identical whatever the batch split, merge order or thread count |
//! | `u64`, `i64` (numpy's default integer) | exact `i128` sums per leaf, double-words in the state | as above for at least 2⁴¹ samples of any values per feature (every partial sum below 2¹⁰⁵); weighted sums and `transform` split each value into two exact `f64`s, so nothing is rounded to 53 bits first |
//! | `half::f16`, `half::bf16` (feature `half`) | widened to `f64`, summed as `f32` is | within 1 ulp of the exact mean in `F` |
//!
//! Weights stay `F`; the in-place variants need an `F` array. Integer and
//! float batches mix in one estimator. (`partial_fit` and friends take `F`
//! arrays only, so that `F` keeps being inferred from the array and an array
//! literal's element from `F`.) [`partial_fit_masked`](Centering::partial_fit_masked)
//! fits only the positions a boolean mask keeps (padded sequences), and
//! [`average`](Centering::average) combines data-parallel replicas that ran
//! in lock step.
//!
//! ## Mixed precision: `f16` activations, an `f32` state
//!
//! ```
//! # #[cfg(feature = "half")]
//! # fn main() -> Result<(), centering::CenteringError> {
//! use centering::Centering;
//! use half::f16;
//! use ndarray::Array2;
//!
//! let activations = Array2::from_shape_fn((1024, 8), |(i, j)| f16::from_f32(100.0 + (i % 7) as f32 + j as f32));
//! let mut layer = Centering::<f32>::builder().keras(0.99).build()?; // the moving mean stays f32
//! let centred = layer.center_batch_input(&activations)?; // f16 in, f32 out
//! assert!(centred.mean_axis(ndarray::Axis(0)).unwrap().iter().all(|m| m.abs() < 1e-3));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "half"))]
//! # fn main() {}
//! ```
//!
//! ## `u8` images, an `f32` mean per channel
//!
//! ```
//! use centering::Centering;
//! use ndarray::Array4;
//!
//! let images = Array4::<u8>::from_shape_fn((4, 8, 8, 3), |(n, h, w, c)| ((n + h * w) % 256) as u8 / (c as u8 + 1));
//! let mut scaler = Centering::<f32>::new();
//! scaler.partial_fit_input(&images)?; // exact integer sums
//! let x = scaler.transform_input(&images)?; // Array4<f32>
//! assert_eq!(x.dim(), (4, 8, 8, 3));
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Reading results
//!
//! The fitting methods and [`merge`](Centering::merge) return
//! `Result<&mut Self>`, so that calls chain:
//! `c.partial_fit(&a)?.partial_fit(&b)?;`. That `&mut` borrow lives as long
//! as the value it is kept in: write the call as a statement
//! (`c.merge(&other)?;`), not `let r = c.merge(&other);`, and read the
//! estimator afterwards. [`mean`](Centering::mean) is an `Option` (`None`
//! before any fit); [`try_mean`](Centering::try_mean) is the same as a
//! [`Result`], for `?` in a function returning this crate's errors. Both
//! borrow the estimator: `.to_owned()` keeps a copy across later fits.
//!
//! ```
//! use centering::{Centering, CenteringError};
//! use ndarray::array;
//!
//! fn merged_mean(a: &Centering<f64>, b: &Centering<f64>) -> Result<Vec<f64>, CenteringError> {
//!     let mut m = a.clone();
//!     m.merge(b)?; // a statement: the `&mut` it returns is dropped here
//!     Ok(m.try_mean()?.to_vec()) // `NotFitted` if neither side was fitted
//! }
//!
//! let mut a = Centering::<f64>::new();
//! a.partial_fit(&array![[1.0]])?.partial_fit(&array![[3.0]])?; // chained
//! let before = a.try_mean()?.to_owned(); // a copy, not a borrow
//! a.partial_fit(&array![[8.0]])?;
//! assert_eq!((before[0], a.try_mean()?[0]), (2.0, 4.0));
//!
//! let unfitted = Centering::<f64>::new();
//! assert_eq!(merged_mean(&a, &unfitted)?, vec![4.0]);
//! assert_eq!(merged_mean(&unfitted, &unfitted), Err(CenteringError::NotFitted));
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Equality
//!
//! `==` compares *states*: the parameters (the momentum's convention
//! included), the counts (the batch count among them) and the accumulator
//! bit for bit. It is what a save and reload preserves, and two `==`
//! estimators give the same results for any later sequence of calls. The
//! same data cut into different batches, or fitted in shards and merged,
//! gives estimators that are usually not `==` even when their means are
//! bit-identical, because their batch counts differ.
//! [`same_estimate`](Centering::same_estimate) compares what is estimated:
//! the parameters, the mean bit for bit, the sample count and the
//! per-feature weight sums, not the batch counts.
//!
//! ```
//! use centering::Centering;
//! use ndarray::{Array2, Axis};
//!
//! let x = Array2::from_shape_fn((1000, 2), |(i, j)| ((i * 31 + j) % 17) as f64);
//! let mut merged = Centering::<f64>::new();
//! for shard in x.axis_chunks_iter(Axis(0), 100) {
//!     let mut c = Centering::<f64>::new();
//!     c.fit(&shard)?;
//!     merged.merge(&c)?;
//! }
//! let mut whole = Centering::<f64>::new();
//! whole.fit(&x)?;
//! assert_eq!(merged.mean(), whole.mean()); // bit-identical means
//! assert!(merged.same_estimate(&whole)); // the same estimate
//! assert_ne!(merged, whole); // not the same state: 10 batches against 1
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Numerics
//!
//! Sums are kept per feature as unevaluated double-word pairs `hi + lo`,
//! built with TwoSum (Ogita, Rump & Oishi 2005, "Accurate sum and dot
//! product", `Sum2`) along short accumulation chains of at most `L`
//! elements, merged in a fixed tree. With `u` the unit roundoff of the
//! accumulator and `m` the exact mean of the inputs:
//!
//! ```text
//! |Ŝ − S| ≤ u·|S| + (L·u)²·Σ|xᵢ|            one batch sum (Sum2's bound)
//!
//! |m̂ − m| ≤ 1 ulp(m) + (L·u)²·mean(|x|)     the learned mean, any batch split, n ≤ 2³²
//! ```
//!
//! No accumulation chain is longer than `L = 2¹⁵` elements (a leaf of the
//! tree; on contiguous rows a leaf is spread over at least 64 lanes, so
//! chains there are far shorter; the rare re-summation of a batch whose
//! sums would overflow is one chain per leaf as well). The accumulator is
//! `f64` whatever `F` is — `F` types the mean and the output only: `f64`
//! pairs for `f64` data and for every weighted, NaN-skipping or strided
//! batch, and a plain `f64` sum per lane for contiguous `f32` data
//! (`u = 2⁻⁵³`); the stored state keeps `f64` pairs for every `F`, and the
//! mean is rounded to `F` once, from the pair's quotient. The extra term, `(L·u)²` for pairs and `L·u` for the plain
//! sum, is at most `2⁻³⁸`, far below `F`'s epsilon `ε`. So for
//! well-conditioned data (`mean(|x|)` not much larger than `|m|`) the
//! learned mean is within one ulp of the exact mean rounded to `F`, however
//! the data was cut into batches, and where cancellation makes one ulp
//! impossible the error stays a small fraction of `ε·mean(|x|)`. A plain
//! per-feature sum (as `mean_axis`) has a bound growing like
//! `n·ε·mean(|x|)`, and a running `m += (x − m)/n` drifts further.
//!
//! Weighted sums split every product exactly (`w·x = p + e` with an FMA),
//! so weights do not loosen the bound; two limits remain, both reported or
//! documented rather than silent: the total weight of a feature must stay
//! below `f64::MAX` ([`CenteringError::WeightOverflow`] otherwise), and a
//! product `w·x` that falls below `F::MIN_POSITIVE` is rounded to the
//! subnormal grid (an absolute error of at most half the smallest subnormal
//! per sample).
//!
//! - **No overflow**: the mean of finite inputs is finite, even for values
//!   near `F::MAX` (a sum that would overflow is rescaled by a power of two);
//!   subnormal inputs are handled.
//! - **Deterministic**: the reduction tree depends only on the batch's shape
//!   and layout, so the same input with the same batch split gives a
//!   bit-identical state whatever the thread count and whether the `rayon`
//!   feature is on. Weighted and NaN-ignoring fits (and masks) go further:
//!   each feature's values are added in the samples' logical order on every
//!   layout, so C order, Fortran order and strided views of the same batch
//!   give the same bits.
//! - The zero-started moving average is the Keras/PyTorch recurrence itself,
//!   in `F`, with the two weights rounded once from the convention the
//!   momentum was given in, so it matches those frameworks bit for bit given
//!   the same batch means; the debiased and batch averages and the decay
//!   `βᵗ` are kept in `f64`, so they do not drift over millions of batches.
//!   The batch means they are fed are accurate as above.
//!
//! ```
//! use centering::Centering;
//! use ndarray::array;
//!
//! let mut c = Centering::<f64>::new();
//! c.fit(&array![[f64::MAX, -f64::MAX], [f64::MAX, f64::MAX], [f64::MAX, f64::MAX]])?;
//! assert_eq!(c.mean().unwrap()[0], f64::MAX);
//! assert_eq!(c.mean().unwrap()[1], f64::MAX / 3.0);
//!
//! // Catastrophic cancellation: the exact mean is (2 + 4) / 4.
//! c.fit(&array![[1e16 + 2.0], [1e16 + 4.0], [-1e16], [-1e16]])?;
//! assert_eq!(c.mean().unwrap()[0], 1.5);
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Threads and memory
//!
//! [`Centering<F>`](Centering) is `Send + Sync + Clone + Debug + PartialEq`.
//! [`transform`](Centering::transform) and its variants take `&self` and may
//! run from many threads at once; the fitting methods take `&mut self`. With
//! the `rayon` feature, large inputs are split across rayon's global pool
//! (calls from inside a rayon pool work); small ones run inline, without
//! touching the pool. Fitting never copies the input, whatever its layout:
//! the extra memory is a few vectors of length `D` per level of the
//! reduction tree. [`transform`](Centering::transform)
//! allocates its output and nothing else; the `_inplace` and `_into`
//! variants allocate nothing.
//!
//! ```
//! use centering::Centering;
//! use ndarray::{Array2, array};
//!
//! fn shareable<T: Send + Sync + Clone + std::fmt::Debug + PartialEq>(_: &T) {}
//!
//! let mut c = Centering::<f32>::new();
//! c.fit(&array![[1.0f32, 2.0], [3.0, 4.0]])?;
//! shareable(&c);
//! let x = Array2::<f32>::ones((1000, 2));
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| assert_eq!(c.transform(&x).unwrap()[[0, 0]], -1.0));
//!     }
//! });
//! # Ok::<(), centering::CenteringError>(())
//! ```
//!
//! # Persistence
//!
//! With the `serde` feature (on by default), a [`Centering<F>`](Centering)
//! — its parameters and its learned state — saves in any serde format
//! (JSON, CBOR, postcard, bincode …) and loads back bit for bit, and the
//! loaded estimator keeps fitting exactly as the original would have. Loading
//! checks every field: a state of another element type, from a newer
//! format version, or one the crate could not have produced is an error
//! naming the field, never a silently different estimator. The schema, its
//! versions and the compatibility promise are on [`STATE_FORMAT_VERSION`].
//!
//! The setup, for JSON (any other serde format is used the same way):
//!
//! ```toml
//! [dependencies]
//! centering = "0.1"    # `serde` is a default feature
//! # Floats are stored as exact decimal strings: no `float_roundtrip` needed
//! # (only to read format-1 files, written by centering 0.1.0, bit for bit).
//! serde_json = "1"
//! ```
//!
//! ## Save to a file, load, keep fitting
//!
//! ```
//! # #[cfg(feature = "serde")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::fs::File;
//! use std::io::{BufReader, BufWriter, Write};
//!
//! use centering::{Centering, EmaStart};
//! use ndarray::array;
//!
//! let path = std::env::temp_dir().join(format!("centering-doc-{}.json", std::process::id()));
//!
//! // Fit, save.
//! let mut c = Centering::<f64>::builder().keras(0.9).build()?;
//! c.partial_fit(&array![[1.0, 10.0], [3.0, 30.0]])?;
//! let mut file = BufWriter::new(File::create(&path)?);
//! serde_json::to_writer(&mut file, &c)?;
//! file.flush()?;
//!
//! // Later, perhaps in another process: load, and keep fitting.
//! let mut loaded: Centering<f64> = serde_json::from_reader(BufReader::new(File::open(&path)?))?;
//! assert_eq!(loaded, c); // the parameters and the state, bit for bit
//! assert_eq!(loaded.params().start(), Some(EmaStart::Zero));
//! loaded.partial_fit(&array![[5.0, 50.0]])?;
//! c.partial_fit(&array![[5.0, 50.0]])?;
//! assert_eq!(loaded, c); // fitting continues exactly as it would have
//!
//! // The element type is part of the state: an f64 state is not an f32 estimator.
//! let err = serde_json::from_reader::<_, Centering<f32>>(BufReader::new(File::open(&path)?)).unwrap_err();
//! assert!(err.to_string().contains("dtype"));
//! std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "serde"))]
//! # fn main() {}
//! ```
//!
//! `examples/save_load.rs` does the same across two processes.
//!
//! # Why use this crate?
//!
//! - **Exact streaming mean.** The mean is within one ulp of the exact one
//!   however the stream is chunked, where a running `m += (x − m)/n` drifts
//!   by tens of ulp over a million samples.
//! - **The conventions you know, spelled out.** Keras's and PyTorch's moving
//!   means are reproduced exactly (zero start, either momentum convention),
//!   PyTorch's `momentum=None` has its own mode, and scikit-learn's NaN and
//!   sample-weight behaviour is one setting away.
//! - **Any array, no copy.** Any number of dimensions and any memory layout,
//!   including Fortran order, negative strides and permuted `NCHW` views.
//! - **Parallel and distributed.** Bit-identical results for any thread
//!   count, and [`merge`](Centering::merge) to combine shards fitted
//!   anywhere — in time order for moving averages.
//! - **Fast.** Each element is read once, by kernels chosen for the layout,
//!   with SIMD picked at run time for `f32` and `f64`; see the README's
//!   Performance section for measurements.
//!
//! # Crate features
//!
//! - **`rayon`** (default): splits large inputs across rayon's global pool.
//!   Results are bit-identical without it.
//! - **`serde`** (default): `Serialize`/`Deserialize` for [`Centering`] and
//!   [`ValidParams`] through one versioned, validated schema (see
//!   `STATE_FORMAT_VERSION`); the parameter enums have no wire form of
//!   their own.
//! - **`half`**: `half::f16` and `half::bf16` as [`Input`] types (widened
//!   and summed as `f32` is).
//! - **`npy`**: `.npy` files fitted and transformed where they lie
//!   ([`Centering::fit_npy`], [`Centering::partial_fit_npy`],
//!   [`Centering::transform_npy`], [`Centering::inverse_transform_npy`]):
//!   memory-mapped and viewed without a copy, so the result is bit for bit
//!   the in-memory one, for files larger than RAM too (see [`npy`]).
//! - **`linfa`**: linfa 0.8's `Fit` for [`ValidParams`] and
//!   [`CenteringParams`] (on a `DatasetBase`'s records, with its sample
//!   weights) and `Transformer` for [`Centering`], on linfa's ndarray 0.16
//!   arrays and datasets, bridged to ndarray 0.17 without copying the
//!   records. Every `Transformer` impl returns a [`Result`]: a feature
//!   mismatch is a [`CenteringError`], not a panic as in linfa's own
//!   scalers. [`Centering`]'s inherent `transform` (for this crate's
//!   ndarray) wins in method-call syntax, so linfa's is also
//!   `model.transform_dataset(dataset)?` (`Centering::transform_dataset`,
//!   for datasets and linfa's arrays alike); the examples are on it and on
//!   [`Centering`]'s trait implementations.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
// No public function panics on user input: every unwrap, expect and panic in
// library code is an error instead, or is gone (tests may use them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod estimator;
mod import;
mod input;
mod kernels;
#[cfg(feature = "linfa")]
#[allow(unsafe_code)] // the ndarray 0.16 -> 0.17 view bridge; every block has a `// SAFETY:` comment
mod linfa;
#[cfg(feature = "npy")]
#[allow(unsafe_code)] // memory maps; each block has a `// SAFETY:` comment
pub mod npy;
mod params;
#[cfg(feature = "serde")]
mod persist;
mod state;
mod summary;
mod version;

pub use error::{CenteringError, Result};
pub use estimator::Centering;
pub use input::{Element, Input};

/// The instruction sets the kernels dispatch to on this CPU, in words (not
/// part of the public API: the benches print it beside their figures).
#[doc(hidden)]
pub fn __kernel_tier() -> String {
    kernels::contiguous::tier()
}
pub use kernels::columns::Validity;
pub use params::{
    CenteringBuilder, CenteringParams, EmaStart, KERAS_DEFAULT_MOMENTUM, Mode, NanPolicy, TORCH_DEFAULT_MOMENTUM,
    ValidParams,
};
#[cfg(feature = "serde")]
pub use persist::{AnyCentering, STATE_FORMAT_VERSION};
pub use summary::BatchSummary;
pub use version::VERSION;
