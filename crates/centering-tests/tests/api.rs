//! The API a newcomer meets first (issue 14): reading results with `?`, the
//! two equalities, and the errors the docs promise.

use centering::{Centering, CenteringError, CenteringParams, NanPolicy};
use ndarray::{Array2, Axis, array, s};

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
        let mut other_policy = CenteringParams::new()
            .nan_policy(match policy {
                NanPolicy::Reject => NanPolicy::Ignore,
                _ => NanPolicy::Reject,
            })
            .build::<f64>()
            .unwrap();
        other_policy.fit(&x).unwrap();
        assert!(!other_policy.same_estimate(&whole));
    }

    // Unfitted estimators: the same estimate when their parameters agree.
    assert!(Centering::<f64>::new().same_estimate(&Centering::new()));
    assert!(!Centering::<f64>::new().same_estimate(&CenteringParams::new().batch_average().build::<f64>().unwrap()));
    let mut fitted = Centering::<f64>::new();
    fitted.fit(&array![[1.0]]).unwrap();
    assert!(!fitted.same_estimate(&Centering::new()) && !Centering::new().same_estimate(&fitted));

    // Never-observed features (NaN means) compare equal to each other.
    let mut a = CenteringParams::new()
        .nan_policy(NanPolicy::Ignore)
        .build::<f64>()
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
    let p = CenteringParams::new().moving_average(0.9).check().unwrap();
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
    let ema = CenteringParams::new().moving_average(0.9).build::<f64>().unwrap();
    assert!(matches!(
        a.merge(&ema),
        Err(CenteringError::IncompatibleMerge { what: "mode", .. })
    ));
    let ignore = CenteringParams::new()
        .nan_policy(NanPolicy::Ignore)
        .build::<f64>()
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
