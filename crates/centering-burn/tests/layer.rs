//! The layer on burn's CPU backend (ndarray) with autodiff, against hand
//! computations and against the core crate.

use burn_core as burn;
use burn_core::module::Module;
use burn_core::tensor::{Device, Tensor, TensorData};
use centering::{AnyCentering, BatchSummary, Centering, CenteringParams, EmaStart, NanPolicy};
use centering_burn::{CenteringConfig, Error, MeanCentering, Start};
use ndarray::Array2;

fn train_device() -> Device {
    Device::default().autodiff()
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// A fixed-seed batch of `n` samples of `d` features with large offsets.
fn batch(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n * d)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            100.0 * (i % d) as f32 + 3.0 * u - 1.5
        })
        .collect()
}

fn tensor2(v: &[f32], n: usize, d: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [n, d]), device)
}

#[test]
fn training_output_and_gradient_by_hand() {
    let device = train_device();
    let layer = CenteringConfig::new(2).init(&device).unwrap();
    // Rank 3: 2 × 2 samples, 2 features. Per-feature means 4 and −2.
    let x = Tensor::<3>::from_floats([[[1.0, 0.0], [3.0, -4.0]], [[5.0, -2.0], [7.0, -2.0]]], &device).require_grad();
    let y = layer.forward(x.clone()).unwrap();
    assert_eq!(floats(y.clone()), vec![-3.0, 2.0, -1.0, -2.0, 1.0, 0.0, 3.0, 0.0]);

    // L = Σ w·y: ∂L/∂x = w − mean(w) over the samples, per feature.
    let w = Tensor::<3>::from_floats([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 6.0]]], &device);
    let grads = (y * w).sum().backward();
    let g = x.grad(&grads).unwrap();
    // feature 0: w = 1, 0, 3, 0 (mean 1); feature 1: 2, 0, 0, 6 (mean 2)
    assert_eq!(floats(g), vec![0.0, 0.0, -1.0, -2.0, 2.0, -2.0, -1.0, 4.0]);
    assert_eq!(layer.n_steps(), 1);
    assert_eq!(layer.to_centering().mean().unwrap().to_vec(), vec![4.0, -2.0]);
}

/// Feeds batches of unequal sizes to the layer, and their device-computed
/// means to the core: the states are equal (`==`: every bit, the step count).
fn check_against_core(config: CenteringConfig, reference: CenteringParams) {
    let device = train_device();
    let d = 3;
    let layer = config.init(&device).unwrap();
    let mut core = reference.build::<f32>().unwrap();
    let mut raw = reference.build::<f32>().unwrap();
    for (k, &n) in [5usize, 1, 8, 3, 13].iter().enumerate() {
        let v = batch(n, d, k as u64);
        let x = tensor2(&v, n, d, &device);
        let _ = layer.forward(x.clone()).unwrap();
        let m = floats(centering_burn::batch_mean(x.reshape([n, d])));
        let summary = BatchSummary::from_mean(&m, n as u64, NanPolicy::Reject).unwrap();
        core.partial_fit_summary(&summary).unwrap();
        raw.partial_fit(&Array2::from_shape_vec((n, d), v).unwrap()).unwrap();
    }
    let got = layer.to_centering();
    assert_eq!(got, core, "bit for bit against the core fed the same batch means");
    assert_eq!(
        got.n_samples_seen(),
        5 + 1 + 8 + 3 + 13,
        "samples are counted, not steps"
    );
    // And close to the core fitted on the raw samples (the device's
    // rounding of each batch mean is the only difference).
    for (a, b) in got.mean().unwrap().iter().zip(raw.mean().unwrap()) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn moving_mean_after_unequal_batches_equals_the_core() {
    check_against_core(
        CenteringConfig::new(3).with_momentum(0.9),
        CenteringParams::keras(0.9).start(EmaStart::Debiased),
    );
    check_against_core(
        CenteringConfig::new(3).with_momentum(0.9).with_start(Start::Zero),
        CenteringParams::keras(0.9),
    );
    check_against_core(CenteringConfig::torch(3, 0.1), CenteringParams::torch(0.1));
    check_against_core(
        CenteringConfig::new(3).with_cumulative(true),
        CenteringParams::new().cumulative(),
    );
}

#[test]
fn zero_start_is_keras_recurrence() {
    let device = train_device();
    let layer = CenteringConfig::new(1)
        .with_momentum(0.5)
        .with_start(Start::Zero)
        .init(&device)
        .unwrap();
    let _ = layer
        .forward(Tensor::<2>::from_floats([[2.0], [6.0]], &device))
        .unwrap(); // b = 4
    let _ = layer.forward(Tensor::<2>::from_floats([[8.0]], &device)).unwrap(); // b = 8
    // m = 0.5·(0.5·0 + 0.5·4) + 0.5·8 = 5
    assert_eq!(layer.to_centering().mean().unwrap()[0], 5.0);
}

fn trained(device: &Device) -> MeanCentering {
    let layer = CenteringConfig::new(3).with_momentum(0.8).init(device).unwrap();
    for (k, n) in [4usize, 7, 2].into_iter().enumerate() {
        let _ = layer
            .forward(tensor2(&batch(n, 3, k as u64 + 10), n, 3, device))
            .unwrap();
    }
    layer
}

#[test]
fn valid_subtracts_the_moving_mean_and_never_updates() {
    let device = train_device();
    let layer = trained(&device);
    let before = layer.to_centering();
    let infer = layer.valid();
    let plain = Device::default();
    let x = tensor2(&batch(5, 3, 99), 5, 3, &plain);
    let y1 = floats(infer.forward(x.clone()).unwrap());
    let y2 = floats(infer.forward(x.clone()).unwrap());
    assert_eq!(y1, y2);
    let m = before.mean().unwrap().to_vec();
    let expected: Vec<f32> = floats(x).iter().enumerate().map(|(i, v)| v - m[i % 3]).collect();
    assert_eq!(y1, expected);
    assert_eq!(infer.to_centering(), before);
    assert_eq!(layer.to_centering(), before);
    // On a plain device even the training module does not update.
    let _ = layer.forward(tensor2(&batch(2, 3, 5), 2, 3, &plain)).unwrap();
    assert_eq!(layer.to_centering(), before);
}

#[test]
fn frozen_layer_subtracts_the_moving_mean_and_never_updates() {
    let device = train_device();
    let layer = trained(&device).freeze();
    let before = layer.to_centering();
    let x = tensor2(&batch(4, 3, 7), 4, 3, &device);
    let y = floats(layer.forward(x.clone()).unwrap());
    let m = before.mean().unwrap().to_vec();
    let expected: Vec<f32> = floats(x).iter().enumerate().map(|(i, v)| v - m[i % 3]).collect();
    assert_eq!(y, expected);
    assert_eq!(layer.to_centering(), before);
    // Unfrozen, it trains again.
    let layer = layer.unfreeze();
    let _ = layer.forward(tensor2(&batch(4, 3, 8), 4, 3, &device)).unwrap();
    assert_eq!(layer.n_steps(), before.n_batches() + 1);
}

#[test]
fn empty_batch_updates_nothing() {
    let device = train_device();
    let layer = trained(&device);
    let before = layer.to_centering();
    let y = layer.forward(Tensor::<4>::zeros([0, 2, 2, 3], &device)).unwrap();
    assert_eq!(y.dims(), [0, 2, 2, 3]);
    assert_eq!(layer.to_centering(), before);
}

#[test]
fn untrained_layer_is_the_identity_at_inference() {
    let layer = CenteringConfig::new(2).init(&Device::default()).unwrap();
    let x = Tensor::<2>::from_floats([[1.0, 2.0]], &Device::default());
    assert_eq!(floats(layer.forward(x).unwrap()), vec![1.0, 2.0]);
}

#[test]
fn save_load_gives_identical_outputs() {
    let device = train_device();
    let layer = trained(&device);
    let bytes = layer.clone().into_record().into_bytes().unwrap();
    let record = burn_core::store::ModuleRecord::from_bytes(bytes).unwrap();
    let fresh = CenteringConfig::new(3).with_momentum(0.8).init(&device).unwrap();
    let loaded = fresh.try_load_record(record).unwrap();
    assert_eq!(loaded.to_centering(), layer.to_centering());
    let x = tensor2(&batch(6, 3, 42), 6, 3, &Device::default());
    assert_eq!(
        floats(loaded.valid().forward(x.clone()).unwrap()),
        floats(layer.valid().forward(x).unwrap())
    );
    // Training goes on identically from the loaded state.
    let next = tensor2(&batch(3, 3, 43), 3, 3, &device);
    let _ = layer.forward(next.clone()).unwrap();
    let _ = loaded.forward(next).unwrap();
    assert_eq!(loaded.to_centering(), layer.to_centering());
}

#[test]
fn save_load_through_a_file_in_a_model() {
    #[derive(Module, Debug)]
    struct Model {
        center: MeanCentering,
        other: MeanCentering,
    }
    let device = train_device();
    let model = Model {
        center: trained(&device),
        other: CenteringConfig::new(5).with_cumulative(true).init(&device).unwrap(),
    };
    let _ = model.other.forward(Tensor::<2>::ones([4, 5], &device)).unwrap();
    let dir = std::env::temp_dir().join(format!("centering-burn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.bpk");
    model.clone().save_file(&path).unwrap();
    let fresh = Model {
        center: CenteringConfig::new(3).init(&device).unwrap(),
        other: CenteringConfig::new(5).init(&device).unwrap(),
    };
    let loaded = fresh.try_load_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.center.to_centering(), model.center.to_centering());
    assert_eq!(loaded.other.to_centering(), model.other.to_centering());
    // The record's state is the core's own JSON: momentum, convention, start.
    assert_eq!(loaded.center.to_centering().params().momentum(), Some(0.8));
}

#[test]
fn a_record_of_another_width_is_refused() {
    let device = train_device();
    let record = trained(&device).into_record();
    let wider = CenteringConfig::new(4).init(&device).unwrap();
    assert!(wider.try_load_record(record).is_err());
}

#[test]
fn state_round_trip_with_the_core() {
    let device = train_device();
    // A PyTorch BatchNorm's running mean initialises the layer ...
    let torch = Centering::<f32>::from_torch(&ndarray::array![0.5f32, -1.25, 3.0], 10, Some(0.1)).unwrap();
    let layer = CenteringConfig::new(3).init(&device).unwrap();
    layer.load_centering(torch.clone()).unwrap();
    assert_eq!(layer.to_centering(), torch);
    let x = Tensor::<2>::from_floats([[1.5, -0.25, 3.0]], &Device::default());
    assert_eq!(floats(layer.valid().forward(x).unwrap()), vec![1.0, 1.0, 0.0]);
    // ... and keeps fitting as PyTorch would.
    let _ = layer
        .forward(Tensor::<2>::from_floats([[1.5, -0.25, 3.0]], &device))
        .unwrap();
    let mut reference = torch.clone();
    reference.partial_fit(&ndarray::array![[1.5f32, -0.25, 3.0]]).unwrap();
    assert_eq!(layer.to_centering(), reference);

    // The layer's state as JSON, read back by `AnyCentering` (what the
    // command-line tool does).
    let json = serde_json::to_string(&layer.to_centering()).unwrap();
    let any: AnyCentering = serde_json::from_str(&json).unwrap();
    assert_eq!(any.dtype(), "f32");
    assert_eq!(any.n_batches(), 11);
    let back: Centering<f32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, reference);

    // A state of another width is refused.
    let wide = Centering::<f32>::from_keras(&ndarray::array![1.0f32, 2.0], 0.99, 5).unwrap();
    assert!(layer.load_centering(wide).is_err());
}

#[test]
fn replicas_in_lock_step_average_as_the_core() {
    // Two worker threads on clones of one layer, as burn's multi-device
    // training runs them, each fed its own shard of every global batch.
    let device = train_device();
    let layer = CenteringConfig::new(2).with_momentum(0.9).init(&device).unwrap();
    let params = CenteringParams::keras(0.9).start(EmaStart::Debiased);
    let mut reference = params.build::<f32>().unwrap();
    for step in 0..4u64 {
        let shards: Vec<Vec<f32>> = (0..2).map(|r| batch(3 + r, 2, step * 10 + r as u64)).collect();
        let mut replicas = Vec::new();
        std::thread::scope(|s| {
            for (r, shard) in shards.iter().enumerate() {
                let l = layer.clone();
                let dev = device.clone();
                s.spawn(move || {
                    let _ = l.forward(tensor2(shard, 3 + r, 2, &dev)).unwrap();
                });
            }
        });
        for (r, shard) in shards.iter().enumerate() {
            let mut c = reference.clone();
            let m = floats(centering_burn::batch_mean(tensor2(shard, 3 + r, 2, &device)));
            c.partial_fit_summary(&BatchSummary::from_mean(&m, 3 + r as u64, NanPolicy::Reject).unwrap())
                .unwrap();
            replicas.push(c);
        }
        reference = Centering::average(&replicas).unwrap();
        assert_eq!(layer.to_centering(), reference, "step {step}");
    }
    assert_eq!(layer.n_steps(), 4);
}

#[test]
fn cumulative_replicas_merge_by_counts() {
    let device = train_device();
    let layer = CenteringConfig::new(1).with_cumulative(true).init(&device).unwrap();
    std::thread::scope(|s| {
        for (n, v) in [(1usize, 10.0f32), (3, 2.0)] {
            let l = layer.clone();
            let dev = device.clone();
            s.spawn(move || {
                let _ = l
                    .forward(Tensor::<2>::from_data(TensorData::new(vec![v; n], [n, 1]), &dev))
                    .unwrap();
            });
        }
    });
    // (1·10 + 3·2) / 4, not the average of the shard means (6).
    assert_eq!(layer.to_centering().mean().unwrap()[0], 4.0);
}

#[test]
fn channels_first_recipe() {
    let device = train_device();
    let layer = CenteringConfig::new(2).init(&device).unwrap();
    // NCHW: 1 image, 2 channels of 2 × 1 pixels: channel means 2 and 20.
    let x = Tensor::<4>::from_floats([[[[1.0], [3.0]], [[10.0], [30.0]]]], &device);
    let y = layer.forward(x.permute([0, 2, 3, 1])).unwrap().permute([0, 3, 1, 2]);
    assert_eq!(y.dims(), [1, 2, 2, 1]);
    assert_eq!(floats(y), vec![-1.0, 1.0, -10.0, 10.0]);
    assert_eq!(layer.to_centering().mean().unwrap().to_vec(), vec![2.0, 20.0]);
}

#[test]
fn a_diverged_batch_is_skipped() {
    let device = train_device();
    let layer = trained(&device);
    let before = layer.to_centering();
    let _ = layer
        .forward(Tensor::<2>::from_floats([[f32::NAN, 0.0, 0.0]], &device))
        .unwrap();
    assert_eq!(layer.to_centering(), before);
    assert_eq!(layer.skipped_updates(), 1);
}

#[test]
fn a_wrong_feature_count_is_an_error_and_learns_nothing() {
    for device in [train_device(), Device::default()] {
        let layer = CenteringConfig::new(3).init(&device).unwrap();
        let err = layer.forward(Tensor::<2>::ones([4, 2], &device)).unwrap_err();
        assert_eq!(err, Error::FeatureMismatch { expected: 3, found: 2 });
        let err = layer.forward(Tensor::<4>::ones([2, 2, 2, 5], &device)).unwrap_err();
        assert_eq!(err, Error::FeatureMismatch { expected: 3, found: 5 });
        assert_eq!(layer.n_steps(), 0);
        let fresh = CenteringConfig::new(3).init(&device).unwrap();
        assert_eq!(layer.to_centering(), fresh.to_centering());
    }
}

#[test]
fn invalid_configurations_are_errors() {
    let device = Device::default();
    assert!(CenteringConfig::new(0).init(&device).is_err());
    assert!(CenteringConfig::new(2).with_momentum(1.5).init(&device).is_err());
    assert!(CenteringConfig::new(2).init(&device).is_ok());
}

#[test]
fn record_capacity_holds_the_longest_state() {
    // Every number at its longest decimal form: the JSON still fits the
    // record's fixed blob, so a fresh layer and a trained one have the same
    // record shapes.
    let device = train_device();
    for config in [
        CenteringConfig::new(4).with_momentum(0.123456789),
        CenteringConfig::new(4).with_cumulative(true),
        CenteringConfig::torch(4, 0.0987654321),
    ] {
        let layer = config.init(&device).unwrap();
        for k in 0..5 {
            let v: Vec<f32> = (0..12).map(|i| -1.2345678e-38 * (i + k + 1) as f32 - 3.4e37).collect();
            let _ = layer.forward(tensor2(&v, 3, 4, &device)).unwrap();
        }
        let json = serde_json::to_vec(&layer.to_centering()).unwrap();
        assert!(json.len() <= 1024 + 320 * 4, "{} bytes", json.len());
    }
}

#[test]
fn wider_activations_keep_an_f32_moving_mean() {
    // f64 activations (the CPU backend has no f16): the output keeps the
    // input's dtype, the statistic is taken in f32, the state is f32.
    let device = train_device();
    let layer = CenteringConfig::new(2).with_momentum(0.5).init(&device).unwrap();
    let data = TensorData::new(vec![1.0f64, 10.0, 4.0, 40.0], [2, 2]);
    let x = Tensor::<2>::from_data(data, (&device, burn_core::tensor::DType::F64));
    let y = layer.forward(x.clone()).unwrap();
    assert_eq!(y.dtype(), burn_core::tensor::DType::F64);
    assert_eq!(y.into_data().try_to_vec::<f64>().unwrap(), vec![-1.5, -15.0, 1.5, 15.0]);
    let m = floats(centering_burn::batch_mean(x.cast(burn_core::tensor::FloatDType::F32)));
    let mut core = CenteringParams::keras(0.5)
        .start(EmaStart::Debiased)
        .build::<f32>()
        .unwrap();
    core.partial_fit_summary(&BatchSummary::from_mean(&m, 2, NanPolicy::Reject).unwrap())
        .unwrap();
    assert_eq!(layer.to_centering(), core);
    // Inference in f64 subtracts the f32 mean widened.
    let infer = layer.valid();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![2.5f64, 25.0], [1, 2]),
        (&Device::default(), burn_core::tensor::DType::F64),
    );
    assert_eq!(
        infer.forward(x).unwrap().into_data().try_to_vec::<f64>().unwrap(),
        vec![0.0, 0.0]
    );
}
