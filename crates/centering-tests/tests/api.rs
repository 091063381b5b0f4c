//! The API a newcomer meets first (issue 14): the typed builder, the Keras
//! and PyTorch recipes, what `Display` and `Debug` say about them, reading
//! results with `?`, the two equalities, and the errors the docs promise.

use centering::{
    Centering, CenteringBuilder, CenteringError, CenteringParams, EmaStart, KERAS_DEFAULT_MOMENTUM, Mode, NanPolicy,
    TORCH_DEFAULT_MOMENTUM,
};
use ndarray::{Array2, Axis, array, s};

/// Every way of setting parameters, through the typed builder and through
/// `CenteringParams`, gives the same checked parameters.
#[test]
fn the_typed_builder_is_centering_params_with_an_element_type() {
    type Set = fn(CenteringParams) -> CenteringParams;
    type SetB = fn(CenteringBuilder<f32>) -> CenteringBuilder<f32>;
    let cases: [(Set, SetB); 9] = [
        (|p| p, |b| b),
        (|p| p.cumulative(), |b| b.cumulative()),
        (|p| p.moving_average(0.9), |b| b.moving_average(0.9)),
        (|p| p.torch_momentum(0.2), |b| b.torch_momentum(0.2)),
        (|p| p.batch_average(), |b| b.batch_average()),
        (
            |p| p.start(EmaStart::FirstBatch).moving_average(0.5),
            |b| b.start(EmaStart::FirstBatch).moving_average(0.5),
        ),
        (|p| p.mode(Mode::BatchAverage), |b| b.mode(Mode::BatchAverage)),
        (
            |p| {
                p.nan_policy(NanPolicy::Ignore)
                    .moving_average(0.7)
                    .start(EmaStart::Zero)
            },
            |b| b.nan_policy(NanPolicy::Ignore).keras(0.7),
        ),
        (
            |p| {
                p.nan_policy(NanPolicy::Ignore)
                    .torch_momentum(0.3)
                    .start(EmaStart::Zero)
            },
            |b| b.nan_policy(NanPolicy::Ignore).torch(0.3),
        ),
    ];
    for (set, set_b) in cases {
        let want = set(CenteringParams::new());
        let builder = set_b(Centering::<f32>::builder());
        assert_eq!(builder.params(), want);
        assert_eq!(builder.check().unwrap(), want.check().unwrap());
        let built: Centering<f32> = builder.build().unwrap();
        assert_eq!(built, want.build::<f32>().unwrap(), "{want:?}");
        assert_eq!(CenteringBuilder::<f32>::from(want), builder);
    }
    // The element type is the builder's: no annotation anywhere.
    let c = Centering::<f64>::builder().keras(0.9).build().unwrap();
    assert_eq!(
        c,
        Centering::<f64>::with_params(CenteringParams::keras(0.9).check().unwrap())
    );
    // Invalid momenta are reported by the builder too, in their own convention.
    assert_eq!(
        Centering::<f64>::builder().torch(1.5).build(),
        Err(CenteringError::InvalidMomentum { momentum: 1.5 })
    );
    assert_eq!(
        Centering::<f64>::builder()
            .keras(f64::NAN)
            .check()
            .map_err(|e| e.to_string()),
        Err("expected a momentum in [0, 1], found NaN".to_string())
    );
}

/// The recipes are the long forms with the zero start, for every momentum,
/// and the defaults are the frameworks' defaults.
#[test]
fn keras_and_torch_recipes_set_the_zero_start() {
    for m in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
        let keras = CenteringParams::keras(m).check().unwrap();
        assert_eq!(
            keras,
            CenteringParams::new()
                .moving_average(m)
                .start(EmaStart::Zero)
                .check()
                .unwrap()
        );
        assert_eq!(
            keras.mode(),
            Mode::MovingAverage {
                momentum: m,
                start: EmaStart::Zero
            }
        );
        let torch = CenteringParams::torch(m).check().unwrap();
        assert_eq!(
            torch,
            CenteringParams::new()
                .torch_momentum(m)
                .start(EmaStart::Zero)
                .check()
                .unwrap()
        );
        assert_eq!(torch.torch_momentum(), Some(m));
        assert_eq!(torch.momentum(), Some(1.0 - m));
        assert_eq!(torch.start(), Some(EmaStart::Zero));
    }
    // The recipes keep the NaN policy set before or after them.
    let p = CenteringParams::keras(0.9)
        .nan_policy(NanPolicy::Ignore)
        .check()
        .unwrap();
    assert_eq!((p.nan_policy(), p.start()), (NanPolicy::Ignore, Some(EmaStart::Zero)));
    let b = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).torch(0.1);
    assert_eq!(b.check().unwrap().nan_policy(), NanPolicy::Ignore);
    // A later `start` still wins over the recipe's.
    let p = CenteringParams::keras(0.9).start(EmaStart::Debiased).check().unwrap();
    assert_eq!(p.start(), Some(EmaStart::Debiased));

    assert_eq!(
        CenteringParams::keras(KERAS_DEFAULT_MOMENTUM)
            .check()
            .unwrap()
            .momentum(),
        Some(0.99)
    );
    assert_eq!(
        CenteringParams::torch(TORCH_DEFAULT_MOMENTUM)
            .check()
            .unwrap()
            .momentum(),
        Some(0.9)
    );
    // Keras 0.9 and PyTorch 0.1 are the same average but not the same
    // parameters: their step weights are rounded from different numbers.
    assert_ne!(
        CenteringParams::keras(0.9).check().unwrap(),
        CenteringParams::torch(0.1).check().unwrap()
    );
    for bad in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
        for p in [CenteringParams::keras(bad), CenteringParams::torch(bad)] {
            assert!(
                matches!(p.check(), Err(CenteringError::InvalidMomentum { .. })),
                "{bad}"
            );
        }
    }
}

/// `Display` and `Debug` of the parameters, the builder and the estimator
/// name the convention and the start of every moving average.
#[test]
fn display_and_debug_say_which_convention_and_start() {
    let cases = [
        (
            CenteringParams::new(),
            "cumulative mean, NaN rejected",
            "mode: Cumulative, nan_policy: Reject",
        ),
        (
            CenteringParams::new().batch_average().nan_policy(NanPolicy::Ignore),
            "batch average (PyTorch's momentum=None), NaN ignored",
            "mode: BatchAverage, nan_policy: Ignore",
        ),
        (
            CenteringParams::keras(0.99),
            "moving average, Keras momentum 0.99 (PyTorch 0.01), zero start (as Keras and PyTorch), NaN rejected",
            "mode: MovingAverage, convention: Keras, momentum: 0.99, torch_momentum: 0.010000000000000009, \
             start: Zero, nan_policy: Reject",
        ),
        (
            CenteringParams::torch(0.1),
            "moving average, PyTorch momentum 0.1 (Keras 0.9), zero start (as Keras and PyTorch), NaN rejected",
            "mode: MovingAverage, convention: PyTorch, momentum: 0.9, torch_momentum: 0.1, start: Zero, \
             nan_policy: Reject",
        ),
        (
            CenteringParams::new().moving_average(0.9),
            "moving average, Keras momentum 0.9 (PyTorch 0.1), debiased start (Keras and PyTorch start at zero), \
             NaN rejected",
            "mode: MovingAverage, convention: Keras, momentum: 0.9, torch_momentum: 0.09999999999999998, \
             start: Debiased, nan_policy: Reject",
        ),
        (
            CenteringParams::new().torch_momentum(0.3).start(EmaStart::FirstBatch),
            "moving average, PyTorch momentum 0.3 (Keras 0.7), first-batch start (Keras and PyTorch start at \
             zero), NaN rejected",
            "mode: MovingAverage, convention: PyTorch, momentum: 0.7, torch_momentum: 0.3, start: FirstBatch, \
             nan_policy: Reject",
        ),
    ];
    for (params, display, fields) in cases {
        let valid = params.check().unwrap();
        assert_eq!(valid.to_string(), display);
        assert_eq!(params.to_string(), display);
        assert_eq!(format!("{valid:?}"), format!("ValidParams {{ {fields} }}"));
        assert_eq!(format!("{params:?}"), format!("CenteringParams {{ {fields} }}"));
        let builder = CenteringBuilder::<f64>::from(params);
        assert_eq!(
            format!("{builder:?}"),
            format!("CenteringBuilder<f64>(CenteringParams {{ {fields} }})")
        );

        let mut c = builder.build().unwrap();
        assert_eq!(c.to_string(), format!("Centering<f64> [{display}]: not fitted"));
        assert!(format!("{c:?}").contains(&format!("ValidParams {{ {fields} }}")));
        c.partial_fit(&array![[1.0], [2.0], [3.0]]).unwrap();
        assert_eq!(
            c.to_string(),
            format!("Centering<f64> [{display}]: 1 feature, 3 samples in 1 batch")
        );
        c.partial_fit(&array![[1.0]]).unwrap();
        assert!(c.to_string().ends_with("]: 1 feature, 4 samples in 2 batches"));
    }
    // The pretty form works as for any struct.
    assert!(format!("{:#?}", CenteringParams::torch(0.1).check().unwrap()).contains("\n    convention: PyTorch,\n"));
}

/// `try_mean` is `mean` as a `Result`, usable with `?` in functions that
/// return the crate's error or a boxed one.
#[test]
fn try_mean_is_mean_or_not_fitted() {
    fn centred_first(batches: &[Array2<f64>]) -> Result<f64, Box<dyn std::error::Error>> {
        let mut c = Centering::<f64>::new();
        for b in batches {
            c.partial_fit(b)?;
        }
        let m = c.try_mean()?[0];
        Ok(m)
    }
    let mut c = Centering::<f64>::new();
    assert_eq!(c.try_mean(), Err(CenteringError::NotFitted));
    assert!(c.mean().is_none());
    c.partial_fit(&Array2::<f64>::zeros((0, 2))).unwrap(); // empty: still unfitted
    assert_eq!(c.try_mean(), Err(CenteringError::NotFitted));
    c.partial_fit(&array![[1.0, 2.0], [3.0, 6.0]]).unwrap();
    assert_eq!(c.try_mean().unwrap(), c.mean().unwrap());
    assert_eq!(c.try_mean().unwrap(), array![2.0, 4.0]);

    assert_eq!(centred_first(&[array![[1.0], [5.0]]]).unwrap(), 3.0);
    let err = centred_first(&[]).unwrap_err();
    assert_eq!(err.downcast_ref::<CenteringError>(), Some(&CenteringError::NotFitted));

    // The non-chained idiom: statements, then reads.
    let (mut a, mut b) = (Centering::<f64>::new(), Centering::<f64>::new());
    a.fit(&array![[1.0]]).unwrap();
    b.fit(&array![[3.0]]).unwrap();
    a.merge(&b).unwrap();
    assert_eq!(a.try_mean().unwrap()[0], 2.0);
    // Chaining still works.
    a.partial_fit(&array![[2.0]])
        .unwrap()
        .partial_fit(&array![[2.0]])
        .unwrap();
    assert_eq!(a.n_batches(), 4);
}

/// Ten merged shards and one fit: the same estimate, not the same state.
#[test]
fn same_estimate_ignores_batch_counts_and_eq_does_not() {
    let x = Array2::from_shape_fn((1_000, 4), |(i, j)| {
        ((i * 37 + j * 11) % 101) as f64 * 0.37 - 17.0 + j as f64
    });
    for policy in [NanPolicy::Reject, NanPolicy::Ignore] {
        let params = CenteringParams::new().nan_policy(policy).check().unwrap();
        let mut merged = Centering::<f64>::with_params(params);
        for shard in x.axis_chunks_iter(Axis(0), 100) {
            let mut c = Centering::<f64>::with_params(params);
            c.fit(&shard).unwrap();
            merged.merge(&c).unwrap();
        }
        let mut streamed = Centering::<f64>::with_params(params);
        for chunk in x.axis_chunks_iter(Axis(0), 333) {
            streamed.partial_fit(&chunk).unwrap();
        }
        let mut whole = Centering::<f64>::with_params(params);
        whole.fit(&x).unwrap();

        assert_eq!(merged.mean(), whole.mean(), "{policy:?}");
        for other in [&merged, &streamed] {
            assert!(other.same_estimate(&whole) && whole.same_estimate(other), "{policy:?}");
            assert_ne!(*other, whole, "{policy:?}: the batch counts differ");
        }
        assert!(whole.same_estimate(&whole.clone()) && whole == whole.clone());

        // One more sample is another estimate, whatever the mean does.
        let mut more = whole.clone();
        more.partial_fit(&whole.try_mean().unwrap().insert_axis(Axis(0)))
            .unwrap();
        assert!(!more.same_estimate(&whole));
        // Other parameters are another estimate, even with the same data.
        let mut other_policy = Centering::<f64>::builder()
            .nan_policy(match policy {
                NanPolicy::Reject => NanPolicy::Ignore,
                _ => NanPolicy::Reject,
            })
            .build()
            .unwrap();
        other_policy.fit(&x).unwrap();
        assert!(!other_policy.same_estimate(&whole));
    }

    // Unfitted estimators: the same estimate when their parameters agree.
    assert!(Centering::<f64>::new().same_estimate(&Centering::new()));
    assert!(!Centering::<f64>::new().same_estimate(&Centering::<f64>::builder().batch_average().build().unwrap()));
    let mut fitted = Centering::<f64>::new();
    fitted.fit(&array![[1.0]]).unwrap();
    assert!(!fitted.same_estimate(&Centering::new()) && !Centering::new().same_estimate(&fitted));

    // Never-observed features (NaN means) compare equal to each other.
    let mut a = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    a.partial_fit(&array![[1.0, f64::NAN]]).unwrap();
    a.partial_fit(&array![[3.0, f64::NAN]]).unwrap();
    let mut b = a.clone();
    b.reset();
    b.fit(&array![[1.0, f64::NAN], [3.0, f64::NAN]]).unwrap();
    assert!(a.try_mean().unwrap()[1].is_nan());
    assert!(a.same_estimate(&b) && a != b);
    assert_eq!(a, a.clone(), "== is reflexive with NaN means too");

    // The same counts but other weights: another estimate.
    let mut w1 = Centering::<f64>::new();
    w1.fit_weighted(&array![[1.0], [3.0]], &array![1.0, 1.0]).unwrap();
    let mut w2 = Centering::<f64>::new();
    w2.fit_weighted(&array![[1.0], [3.0]], &array![2.0, 2.0]).unwrap();
    assert_eq!((w1.mean(), w1.n_samples_seen()), (w2.mean(), w2.n_samples_seen()));
    assert!(!w1.same_estimate(&w2));

    // Moving averages: the batch split is part of the estimate itself.
    let p = CenteringParams::keras(0.9).check().unwrap();
    let (mut one, mut two) = (Centering::<f64>::with_params(p), Centering::<f64>::with_params(p));
    one.partial_fit(&x).unwrap();
    two.partial_fit(&x.slice(s![..500, ..])).unwrap();
    two.partial_fit(&x.slice(s![500.., ..])).unwrap();
    assert!(!one.same_estimate(&two));
    let mut again = Centering::<f64>::with_params(p);
    again.partial_fit(&x).unwrap();
    assert!(again.same_estimate(&one) && again == one);
}

/// The errors the crate docs name, by variant (the docs once said
/// `FeatureMismatch` for a merge).
#[test]
fn the_documented_variants() {
    let mut a = Centering::<f64>::new();
    a.fit(&array![[1.0, 2.0]]).unwrap();
    let mut b = Centering::<f64>::new();
    b.fit(&array![[1.0, 2.0, 3.0]]).unwrap();
    let before = a.clone();
    assert_eq!(
        a.merge(&b).unwrap_err(),
        CenteringError::IncompatibleMerge {
            what: "number of features",
            this: "2".into(),
            other: "3".into()
        }
    );
    assert_eq!(a, before);
    assert_eq!(
        a.partial_fit(&array![[1.0]]).unwrap_err(),
        CenteringError::FeatureMismatch { expected: 2, found: 1 }
    );
    assert_eq!(
        a.transform(&array![[1.0]]).unwrap_err(),
        CenteringError::FeatureMismatch { expected: 2, found: 1 }
    );
    let ema = Centering::<f64>::builder().keras(0.9).build().unwrap();
    assert!(matches!(
        a.merge(&ema),
        Err(CenteringError::IncompatibleMerge { what: "mode", .. })
    ));
    let ignore = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    assert!(matches!(
        a.merge(&ignore),
        Err(CenteringError::IncompatibleMerge { what: "NaN policy", .. })
    ));
    assert_eq!(
        Centering::<f64>::new().transform(&array![[1.0]]),
        Err(CenteringError::NotFitted)
    );
}
