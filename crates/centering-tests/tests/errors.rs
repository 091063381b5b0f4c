//! One test per error variant: the variant and its data, the estimator left
//! exactly as it was (`assert_eq!(before, after)`), and a message that names
//! what was expected and what was found. Then weird inputs that must not
//! panic.

mod common;

use centering::{Centering, CenteringError, CenteringParams, EmaStart, Mode, NanPolicy};
use common::TestFloat;
use ndarray::{Array1, Array2, Array3, ArrayD, Dimension, IxDyn, ShapeBuilder, arr0, array, s};

/// A fitted cumulative estimator with 3 features.
fn fitted() -> Centering<f64> {
    let mut c = Centering::new();
    c.fit(&array![[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]).unwrap();
    c
}

/// Runs `op`, which must fail, and checks that the estimator did not change
/// (state, counts and mean, bit for bit).
#[track_caller]
fn fails<F: TestFloat>(
    c: &mut Centering<F>,
    op: impl FnOnce(&mut Centering<F>) -> centering::Result<()>,
) -> CenteringError {
    let before = c.clone();
    let mean_bits = |c: &Centering<F>| c.mean().map(|m| m.iter().map(|v| v.bits()).collect::<Vec<_>>());
    let mean_before = mean_bits(c);
    let err = match op(c) {
        Err(e) => e,
        Ok(()) => panic!("the call should have failed"),
    };
    assert_eq!(*c, before, "a failed call changed the estimator ({err})");
    assert_eq!(mean_bits(c), mean_before, "a failed call changed the mean ({err})");
    assert_eq!(c.n_samples_seen(), before.n_samples_seen());
    assert_eq!(c.n_batches(), before.n_batches());
    err
}

/// Asserts the message contains every one of `parts`.
#[track_caller]
fn names(err: &CenteringError, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

fn ignore() -> CenteringParams {
    CenteringParams::new().nan_policy(NanPolicy::Ignore)
}

// ---------------------------------------------------------------------------
// NotFitted
// ---------------------------------------------------------------------------

#[test]
fn not_fitted() {
    let x = array![[1.0, 2.0]];
    let check = |c: &mut Centering<f64>| {
        let mut out = Array2::zeros((1, 2));
        for err in [
            fails(c, |c| c.transform(&x).map(|_| ())),
            fails(c, |c| c.inverse_transform(&x).map(|_| ())),
            fails(c, |c| c.transform_into(&x, &mut out)),
            fails(c, |c| c.inverse_transform_into(&x, &mut out)),
            fails(c, |c| c.transform_inplace(&mut x.clone())),
            fails(c, |c| c.inverse_transform_inplace(&mut x.clone())),
            // Zero samples, still not fitted.
            fails(c, |c| c.transform(&Array2::zeros((0, 2))).map(|_| ())),
        ] {
            assert_eq!(err, CenteringError::NotFitted);
            names(&err, &["not fitted", "fit"]);
        }
        assert_eq!(out, Array2::zeros((1, 2)), "the output buffer was written");
    };

    let mut c = Centering::<f64>::new();
    check(&mut c);
    // Only empty batches seen.
    c.partial_fit(&Array2::zeros((0, 2))).unwrap();
    check(&mut c);
    // Only a zero-weight batch seen.
    c.partial_fit_weighted(&array![[1.0, 2.0]], &array![0.0]).unwrap();
    check(&mut c);
    // Reset.
    let mut c = fitted();
    c.reset();
    check(&mut c);
    // Under Ignore, only missing values seen.
    let mut c: Centering<f64> = ignore().build().unwrap();
    c.partial_fit(&array![[f64::NAN, f64::NAN]]).unwrap();
    assert!(!c.is_fitted());
    check(&mut c);
    // In place leaves the data untouched.
    let mut y = x.clone();
    assert_eq!(c.transform_inplace(&mut y), Err(CenteringError::NotFitted));
    assert_eq!(y, x);
}

// ---------------------------------------------------------------------------
// ZeroDimensional, NoFeatures
// ---------------------------------------------------------------------------

#[test]
fn zero_dimensional() {
    for mut c in [Centering::<f64>::new(), fitted()] {
        let x = arr0(1.0);
        let mut out = arr0(0.0);
        for err in [
            fails(&mut c, |c| c.partial_fit(&x).map(|_| ())),
            fails(&mut c, |c| c.fit(&x).map(|_| ())),
            fails(&mut c, |c| c.partial_fit_weighted(&x, &arr0(1.0)).map(|_| ())),
            fails(&mut c, |c| c.fit_weighted(&x, &arr0(1.0)).map(|_| ())),
            fails(&mut c, |c| c.fit_transform(&x).map(|_| ())),
            fails(&mut c, |c| c.center_batch(&x).map(|_| ())),
            fails(&mut c, |c| c.center_batch_inplace(&mut x.clone())),
            fails(&mut c, |c| c.transform(&x).map(|_| ())),
            fails(&mut c, |c| c.inverse_transform(&x).map(|_| ())),
            fails(&mut c, |c| c.transform_into(&x, &mut out)),
            fails(&mut c, |c| c.transform_inplace(&mut x.clone())),
        ] {
            assert_eq!(err, CenteringError::ZeroDimensional);
            names(&err, &["at least 1 dimension", "0-dimensional"]);
        }
    }
}

#[test]
fn no_features() {
    for mut c in [Centering::<f64>::new(), fitted()] {
        let inputs = [
            ArrayD::<f64>::zeros(IxDyn(&[0])),
            ArrayD::zeros(IxDyn(&[3, 0])),
            ArrayD::zeros(IxDyn(&[0, 0])),
            ArrayD::zeros(IxDyn(&[2, 4, 0])),
        ];
        for x in &inputs {
            let w = ArrayD::<f64>::ones(IxDyn(&x.shape()[..x.ndim() - 1]));
            let mut out = x.clone();
            for err in [
                fails(&mut c, |c| c.partial_fit(x).map(|_| ())),
                fails(&mut c, |c| c.fit(x).map(|_| ())),
                fails(&mut c, |c| c.partial_fit_weighted(x, &w).map(|_| ())),
                fails(&mut c, |c| c.center_batch(x).map(|_| ())),
                fails(&mut c, |c| c.center_batch_inplace(&mut x.clone())),
                fails(&mut c, |c| c.transform(x).map(|_| ())),
                fails(&mut c, |c| c.inverse_transform_into(x, &mut out)),
                fails(&mut c, |c| c.inverse_transform_inplace(&mut x.clone())),
            ] {
                assert_eq!(err, CenteringError::NoFeatures, "shape {:?}", x.shape());
                names(&err, &["at least 1 feature", "found 0"]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// FeatureMismatch, OutputShape
// ---------------------------------------------------------------------------

#[test]
fn feature_mismatch() {
    let mut c = fitted();
    let x2 = array![[1.0, 2.0]];
    let x4 = Array3::<f64>::zeros((2, 2, 4));
    let mut out2 = Array2::zeros((1, 2));
    for (err, found) in [
        (fails(&mut c, |c| c.partial_fit(&x2).map(|_| ())), 2),
        (
            fails(&mut c, |c| c.partial_fit(&array![1.0, 2.0, 3.0, 4.0]).map(|_| ())),
            4,
        ),
        (
            fails(&mut c, |c| {
                c.partial_fit_weighted(&x4, &Array2::ones((2, 2))).map(|_| ())
            }),
            4,
        ),
        (fails(&mut c, |c| c.center_batch(&x2).map(|_| ())), 2),
        (fails(&mut c, |c| c.center_batch_inplace(&mut x4.clone())), 4),
        (fails(&mut c, |c| c.transform(&x2).map(|_| ())), 2),
        (fails(&mut c, |c| c.inverse_transform(&x4).map(|_| ())), 4),
        (fails(&mut c, |c| c.transform_into(&x2, &mut out2)), 2),
        (fails(&mut c, |c| c.transform_inplace(&mut x4.clone())), 4),
        // Empty batches are still checked.
        (fails(&mut c, |c| c.partial_fit(&Array2::zeros((0, 2))).map(|_| ())), 2),
    ] {
        assert_eq!(err, CenteringError::FeatureMismatch { expected: 3, found });
        names(&err, &["expected 3 features", &format!("found {found}")]);
    }
    // `fit` forgets the old D: not an error.
    c.fit(&x2).unwrap();
    assert_eq!(c.n_features(), Some(2));
}

#[test]
fn output_shape() {
    let c = fitted();
    let x = Array2::<f64>::zeros((4, 3));
    for bad in [vec![3, 4], vec![4, 2], vec![5, 3], vec![0, 3]] {
        let mut out = ArrayD::<f64>::from_elem(IxDyn(&bad), 9.0);
        let xd = x.clone().into_dyn();
        for err in [
            c.transform_into(&xd, &mut out).unwrap_err(),
            c.inverse_transform_into(&xd, &mut out).unwrap_err(),
        ] {
            assert_eq!(
                err,
                CenteringError::OutputShape {
                    expected: vec![4, 3],
                    found: bad.clone()
                }
            );
            names(&err, &["[4, 3]", &format!("{bad:?}")]);
        }
        assert!(out.iter().all(|&v| v == 9.0), "a rejected buffer was written");
    }
    // A mismatched feature count of the *input* is reported as such first.
    let mut out = Array2::<f64>::zeros((4, 2));
    assert_eq!(
        c.transform_into(&Array2::zeros((4, 2)), &mut out),
        Err(CenteringError::FeatureMismatch { expected: 3, found: 2 })
    );
}

// ---------------------------------------------------------------------------
// NonFinite
// ---------------------------------------------------------------------------

/// Puts `bad` at logical `index` of a `shape` array in several layouts and
/// checks every fitting entry point reports exactly that index and value.
fn check_non_finite(params: &CenteringParams, shape: &[usize], index: &[usize], bad: f64) {
    let mut x = ArrayD::from_shape_fn(IxDyn(shape), |i| i.slice().iter().sum::<usize>() as f64);
    x[IxDyn(index)] = bad;
    let fortran = {
        let mut f = ArrayD::zeros(IxDyn(shape).f());
        f.assign(&x);
        f
    };
    // A reversed view of a reversed copy is the same logical array.
    let mut rev_base = x.clone();
    rev_base.invert_axis(ndarray::Axis(0));
    let rev_base = rev_base.as_standard_layout().to_owned();
    let mut reversed = rev_base.view();
    reversed.invert_axis(ndarray::Axis(0));
    assert!(reversed.iter().zip(x.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));

    let d = *shape.last().unwrap();
    let mut prior: Centering<f64> = params.build().unwrap();
    prior.fit(&ArrayD::from_elem(IxDyn(&[2, d]), 1.5)).unwrap();
    for mut c in [params.build::<f64>().unwrap(), prior] {
        for input in [x.view(), fortran.view(), reversed.clone()] {
            let w = ArrayD::<f64>::ones(IxDyn(&shape[..shape.len() - 1]));
            for err in [
                fails(&mut c, |c| c.partial_fit(&input).map(|_| ())),
                fails(&mut c, |c| c.fit(&input).map(|_| ())),
                fails(&mut c, |c| c.partial_fit_weighted(&input, &w).map(|_| ())),
                fails(&mut c, |c| c.center_batch(&input).map(|_| ())),
            ] {
                match &err {
                    CenteringError::NonFinite { index: i, value } => {
                        assert_eq!(i, index, "{params:?} {shape:?}");
                        assert!(value.to_bits() == bad.to_bits() || (value.is_nan() && bad.is_nan()));
                    }
                    other => panic!("expected NonFinite, got {other:?}"),
                }
                names(
                    &err,
                    &["expected finite values", &format!("{bad}"), &format!("{index:?}")],
                );
            }
            // In place: the data is untouched on error.
            let mut copy = input.to_owned();
            fails(&mut c, |c| c.center_batch_inplace(&mut copy));
            assert!(copy.iter().zip(input.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

#[test]
fn non_finite_rejected() {
    let reject = CenteringParams::new();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        check_non_finite(&reject, &[3, 4], &[1, 2], bad);
        check_non_finite(&reject, &[2, 3, 2], &[1, 0, 1], bad);
        check_non_finite(&reject, &[5], &[4], bad);
        check_non_finite(&reject, &[4, 1], &[3, 0], bad);
        // In the moving-average modes too.
        check_non_finite(&CenteringParams::new().moving_average(0.9), &[3, 2], &[2, 1], bad);
        check_non_finite(&CenteringParams::new().batch_average(), &[3, 2], &[0, 0], bad);
    }
}

#[test]
fn non_finite_infinity_rejected_under_ignore() {
    for bad in [f64::INFINITY, f64::NEG_INFINITY] {
        check_non_finite(&ignore(), &[3, 4], &[2, 3], bad);
        check_non_finite(&ignore(), &[2, 2, 3], &[0, 1, 0], bad);
        check_non_finite(&ignore().moving_average(0.5), &[3, 2], &[1, 1], bad);
    }
    // NaN is accepted under Ignore.
    let mut c: Centering<f64> = ignore().build().unwrap();
    c.partial_fit(&array![[f64::NAN, 1.0], [2.0, 3.0]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![2.0, 2.0]);
    // ... but not next to an infinity in the same batch.
    let err = fails(&mut c, |c| {
        c.partial_fit(&array![[f64::NAN, 1.0], [2.0, f64::INFINITY]])
            .map(|_| ())
    });
    assert!(
        matches!(err, CenteringError::NonFinite { ref index, value } if *index == vec![1, 1] && value == f64::INFINITY)
    );
}

#[test]
fn non_finite_reports_the_first_in_logical_order() {
    // Several offenders: the first in row-major (logical) order is named,
    // whatever the memory layout.
    let mut x = Array2::<f64>::zeros((4, 3).f());
    x[[3, 0]] = f64::NAN;
    x[[1, 2]] = f64::INFINITY;
    x[[2, 1]] = f64::NEG_INFINITY;
    let mut c = Centering::<f64>::new();
    let err = fails(&mut c, |c| c.partial_fit(&x).map(|_| ()));
    assert_eq!(
        err,
        CenteringError::NonFinite {
            index: vec![1, 2],
            value: f64::INFINITY
        }
    );
    // A sliced view reports indices in the view's own axes.
    let big = Array2::<f64>::from_elem((10, 6), f64::NAN);
    let mut big = big;
    big.slice_mut(s![2..8;2, ..;3]).fill(0.0);
    big[[6, 3]] = f64::NEG_INFINITY;
    let v = big.slice(s![2..8;2, ..;3]);
    let err = fails(&mut c, |c| c.partial_fit(&v).map(|_| ()));
    assert_eq!(
        err,
        CenteringError::NonFinite {
            index: vec![2, 1],
            value: f64::NEG_INFINITY
        }
    );
    // f32 values are reported converted to f64.
    let mut c32 = Centering::<f32>::new();
    let err = fails(&mut c32, |c| {
        c.partial_fit(&array![[1.0f32], [f32::INFINITY]]).map(|_| ())
    });
    assert_eq!(
        err,
        CenteringError::NonFinite {
            index: vec![1, 0],
            value: f64::INFINITY
        }
    );
}

#[test]
fn non_finite_in_a_large_batch() {
    // The parallel path still reports the exact index, and leaves the state.
    let mut x = Array2::<f64>::from_elem((50_000, 3), 0.25);
    x[[37_123, 2]] = f64::NAN;
    let mut c = fitted();
    let err = fails(&mut c, |c| c.partial_fit(&x).map(|_| ()));
    assert!(
        matches!(err, CenteringError::NonFinite { ref index, value } if *index == vec![37_123, 2] && value.is_nan())
    );
}

#[test]
fn finite_values_near_max_are_not_non_finite() {
    // Sums that overflow are not "non-finite input".
    let mut c = Centering::<f64>::new();
    c.fit(&array![[f64::MAX, -f64::MAX], [f64::MAX, -f64::MAX]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![f64::MAX, -f64::MAX]);
    let mut c: Centering<f32> = ignore().build().unwrap();
    c.fit(&array![[f32::MAX, f32::NAN], [f32::MAX, -f32::MAX]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![f32::MAX, -f32::MAX]);
}

// ---------------------------------------------------------------------------
// Weights: WeightShape, InvalidWeight, WeightOverflow
// ---------------------------------------------------------------------------

#[test]
fn weight_shape() {
    let x2 = Array2::<f64>::ones((4, 3));
    let x3 = Array3::<f64>::ones((2, 5, 3));
    let cases: Vec<(ArrayD<f64>, ArrayD<f64>, Vec<usize>)> = vec![
        (x2.clone().into_dyn(), ArrayD::ones(IxDyn(&[5])), vec![4]),
        (x2.clone().into_dyn(), ArrayD::ones(IxDyn(&[3])), vec![4]),
        (x2.clone().into_dyn(), ArrayD::ones(IxDyn(&[4, 1])), vec![4]),
        (x2.clone().into_dyn(), ArrayD::ones(IxDyn(&[])), vec![4]),
        (x3.clone().into_dyn(), ArrayD::ones(IxDyn(&[5])), vec![2, 5]),
        (x3.clone().into_dyn(), ArrayD::ones(IxDyn(&[5, 2])), vec![2, 5]),
        (x3.clone().into_dyn(), ArrayD::ones(IxDyn(&[2, 5, 3])), vec![2, 5]),
        (ArrayD::ones(IxDyn(&[3])), ArrayD::ones(IxDyn(&[1])), vec![]),
        // An empty batch with the wrong weights is still a shape error.
        (ArrayD::ones(IxDyn(&[0, 3])), ArrayD::ones(IxDyn(&[1])), vec![0]),
    ];
    for start in [Centering::<f64>::new(), fitted()] {
        for (x, w, expected) in &cases {
            let mut c = start.clone();
            for err in [
                fails(&mut c, |c| c.partial_fit_weighted(x, w).map(|_| ())),
                fails(&mut c, |c| c.fit_weighted(x, w).map(|_| ())),
            ] {
                // A (n0,) weight is accepted too for 3+ dimensions: the
                // error says so.
                let per_first_axis = (expected.len() >= 2).then(|| expected[0]);
                assert_eq!(
                    err,
                    CenteringError::WeightShape {
                        expected: expected.clone(),
                        per_first_axis,
                        found: w.shape().to_vec()
                    },
                    "x {:?}",
                    x.shape()
                );
                names(&err, &[&format!("{expected:?}"), &format!("{:?}", w.shape())]);
                if let Some(n0) = per_first_axis {
                    names(&err, &[&format!("or [{n0}]"), "first axis"]);
                }
                if expected.is_empty() {
                    // One sample: how to make a 0-D weight.
                    names(&err, &["0-dimensional", "arr0"]);
                }
            }
        }
    }
    // The accepted shapes: exactly the sample axes, (n0,) for 3+ dims, and a
    // 0-D weight for one 1-D sample.
    let mut c = Centering::<f64>::new();
    c.partial_fit_weighted(&x2, &Array1::ones(4)).unwrap();
    c.partial_fit_weighted(&x3, &Array2::ones((2, 5))).unwrap();
    c.partial_fit_weighted(&x3, &Array1::ones(2)).unwrap();
    c.partial_fit_weighted(&Array1::<f64>::ones(3), &arr0(2.0)).unwrap();
    assert_eq!(c.weight_sums().unwrap(), array![26.0, 26.0, 26.0]);
}

#[test]
fn invalid_weight() {
    for bad in [-1.0, -f64::MIN_POSITIVE, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for start in [Centering::<f64>::new(), fitted()] {
            let mut c = start.clone();
            // 2-D input, weights (n,).
            let x = Array2::<f64>::ones((4, 3));
            let w = array![1.0, 2.0, bad, 1.0];
            let err = fails(&mut c, |c| c.partial_fit_weighted(&x, &w).map(|_| ()));
            check_invalid_weight(&err, &[2], bad);
            // 3-D input, weights shaped like the sample axes.
            let x = Array3::<f64>::ones((2, 3, 3));
            let mut w = Array2::<f64>::ones((2, 3));
            w[[1, 2]] = bad;
            w[[1, 0]] = 0.0;
            let err = fails(&mut c, |c| c.fit_weighted(&x, &w).map(|_| ()));
            check_invalid_weight(&err, &[1, 2], bad);
            // 3-D input, one weight per first index: the index is in the
            // weights' own axes.
            let w = array![1.0, bad];
            let err = fails(&mut c, |c| c.partial_fit_weighted(&x, &w).map(|_| ()));
            check_invalid_weight(&err, &[1], bad);
            // In the moving-average modes as well.
            let mut m: Centering<f64> = CenteringParams::new().moving_average(0.9).build().unwrap();
            let err = fails(&mut m, |c| c.partial_fit_weighted(&x, &w).map(|_| ()));
            check_invalid_weight(&err, &[1], bad);
        }
    }
    // Zero and negative zero are valid weights.
    let mut c = Centering::<f64>::new();
    c.partial_fit_weighted(&array![[1.0], [5.0]], &array![-0.0, 2.0])
        .unwrap();
    assert_eq!(c.mean().unwrap()[0], 5.0);
}

#[track_caller]
fn check_invalid_weight(err: &CenteringError, index: &[usize], bad: f64) {
    match err {
        CenteringError::InvalidWeight { index: i, weight } => {
            assert_eq!(i, index);
            assert!(weight.to_bits() == bad.to_bits() || (weight.is_nan() && bad.is_nan()));
        }
        other => panic!("expected InvalidWeight, got {other:?}"),
    }
    names(err, &["non-negative", &format!("{bad}"), &format!("{index:?}")]);
}

#[test]
fn weight_overflow() {
    // Weight sums are f64 whatever F: an f32 estimator's total weight may
    // pass f32::MAX (it could not when the sums were kept in f32).
    let mut c32 = Centering::<f32>::new();
    c32.partial_fit_weighted(&array![[1.0f32, 2.0], [3.0, 2.0]], &array![f32::MAX, f32::MAX])
        .unwrap();
    assert_eq!(c32.mean().unwrap(), array![2.0f32, 2.0]);
    let mut c = Centering::<f64>::new();
    let err = fails(&mut c, |c| {
        c.partial_fit_weighted(&array![[1.0, 2.0], [1.0, 2.0]], &array![f64::MAX, f64::MAX])
            .map(|_| ())
    });
    assert!(matches!(err, CenteringError::WeightOverflow { feature: 0 }), "{err:?}");
    names(&err, &["feature 0", "overflows"]);
    // Across batches and merges too.
    c.partial_fit_weighted(&array![[1.0, 2.0]], &array![f64::MAX]).unwrap();
    let err = fails(&mut c, |c| {
        c.partial_fit_weighted(&array![[1.0, 2.0]], &array![f64::MAX])
            .map(|_| ())
    });
    assert!(matches!(err, CenteringError::WeightOverflow { .. }), "{err:?}");
    let other = c.clone();
    let err = fails(&mut c, |c| c.merge(&other).map(|_| ()));
    assert!(matches!(err, CenteringError::WeightOverflow { .. }), "{err:?}");
}

/// Within one batch large enough to be cut into several leaves, where each
/// leaf's weight is finite and only their total overflows, on any feature.
#[test]
fn weight_overflow_across_leaves_of_one_batch() {
    let n = 40_000;
    let x = Array2::from_shape_fn((n, 2), |(i, j)| if j == 1 && i < n / 2 { 0.0 } else { 1e-3 });
    let w = Array1::from_elem(n, f64::MAX / 30_000.0);
    let mut c = Centering::<f64>::new();
    let err = fails(&mut c, |c| c.partial_fit_weighted(&x, &w).map(|_| ()));
    assert!(matches!(err, CenteringError::WeightOverflow { feature: 0 }), "{err:?}");
}

// ---------------------------------------------------------------------------
// InvalidMomentum
// ---------------------------------------------------------------------------

#[test]
fn invalid_momentum() {
    let keras = |m: f64| CenteringParams::new().moving_average(m);
    let torch = |m: f64| CenteringParams::new().torch_momentum(m);
    let direct = |m: f64| {
        CenteringParams::new().mode(Mode::MovingAverage {
            momentum: m,
            start: EmaStart::Zero,
        })
    };
    for bad in [
        -0.1,
        -f64::MIN_POSITIVE,
        1.0 + f64::EPSILON,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        for (p, convention) in [(keras(bad), "keras"), (torch(bad), "torch"), (direct(bad), "mode")] {
            for p in [p, p.start(EmaStart::FirstBatch), p.nan_policy(NanPolicy::Ignore)] {
                let err = p.check().unwrap_err();
                // Reported in the convention it was given in.
                match err {
                    CenteringError::InvalidMomentum { momentum } => {
                        assert!(
                            momentum.to_bits() == bad.to_bits() || (momentum.is_nan() && bad.is_nan()),
                            "{convention}: {momentum} for {bad}"
                        );
                    }
                    ref other => panic!("expected InvalidMomentum, got {other:?}"),
                }
                names(&err, &["[0, 1]", &format!("{bad}")]);
                // (Debug, not ==: NaN is not equal to itself.)
                let dbg = format!("{err:?}");
                assert_eq!(format!("{:?}", p.build::<f64>().unwrap_err()), dbg);
                assert_eq!(format!("{:?}", centering::ValidParams::try_from(p).unwrap_err()), dbg);
            }
        }
    }
    // The ends of the interval are valid in both conventions.
    for ok in [0.0, 1.0, 0.5] {
        assert_eq!(keras(ok).check().unwrap().momentum(), Some(ok));
        assert_eq!(torch(ok).check().unwrap().momentum(), Some(1.0 - ok));
    }
    // A PyTorch momentum so small that 1 − μ rounds to 1 has no Keras form
    // that keeps the average: rejected, not stored as momentum 1.
    for tiny in [1e-17, 2f64.powi(-54), f64::MIN_POSITIVE] {
        let err = torch(tiny).check().unwrap_err();
        assert_eq!(err, CenteringError::InvalidMomentum { momentum: tiny });
    }
    assert!(torch(2f64.powi(-52)).check().is_ok());
    // The last setter wins: a valid moving_average after a bad torch momentum.
    assert!(torch(1.5).moving_average(0.9).check().is_ok());
    assert!(keras(1.5).cumulative().check().is_ok());
}

// ---------------------------------------------------------------------------
// IncompatibleMerge, FeatureMismatch on merge
// ---------------------------------------------------------------------------

#[test]
fn incompatible_merge() {
    let x = array![[1.0, 2.0], [3.0, 4.0]];
    let make = |p: CenteringParams, fit: bool| {
        let mut c: Centering<f64> = p.build().unwrap();
        if fit {
            c.fit(&x).unwrap();
        }
        c
    };
    let ma = |m: f64, s: EmaStart| CenteringParams::new().moving_average(m).start(s);
    let pairs: Vec<(CenteringParams, CenteringParams, &str, [&str; 2])> = vec![
        (
            CenteringParams::new(),
            CenteringParams::new().batch_average(),
            "mode",
            ["Cumulative", "BatchAverage"],
        ),
        (
            CenteringParams::new(),
            ma(0.9, EmaStart::Zero),
            "mode",
            ["Cumulative", "MovingAverage"],
        ),
        (
            CenteringParams::new().batch_average(),
            ma(0.9, EmaStart::Debiased),
            "mode",
            ["BatchAverage", "MovingAverage"],
        ),
        // Momentum and start are part of the mode.
        (
            ma(0.9, EmaStart::Zero),
            ma(0.99, EmaStart::Zero),
            "mode",
            ["0.9", "0.99"],
        ),
        (
            ma(0.9, EmaStart::Zero),
            ma(0.9, EmaStart::FirstBatch),
            "mode",
            ["Zero", "FirstBatch"],
        ),
        (CenteringParams::new(), ignore(), "NaN policy", ["Reject", "Ignore"]),
        (
            ma(0.9, EmaStart::Zero),
            ma(0.9, EmaStart::Zero).nan_policy(NanPolicy::Ignore),
            "NaN policy",
            ["Reject", "Ignore"],
        ),
    ];
    for (a, b, what, [this, other]) in pairs {
        // Whether or not either side is fitted: parameters decide.
        for (fa, fb) in [(true, true), (false, true), (true, false), (false, false)] {
            for (p, q, this, other) in [(a, b, this, other), (b, a, other, this)] {
                let mut left = make(p, fa);
                let right = make(q, fb);
                let err = fails(&mut left, |c| c.merge(&right).map(|_| ()));
                match &err {
                    CenteringError::IncompatibleMerge {
                        what: w,
                        this: t,
                        other: o,
                    } => {
                        assert_eq!(*w, what);
                        assert!(t.contains(this), "{t:?} should name {this:?}");
                        assert!(o.contains(other), "{o:?} should name {other:?}");
                    }
                    other => panic!("expected IncompatibleMerge, got {other:?}"),
                }
                names(&err, &["cannot merge", what, this, other]);
            }
        }
    }
}

#[test]
fn feature_mismatch_on_merge() {
    for p in [CenteringParams::new(), CenteringParams::new().moving_average(0.9)] {
        let mut a: Centering<f64> = p.build().unwrap();
        a.fit(&array![[1.0, 2.0, 3.0]]).unwrap();
        let mut b: Centering<f64> = p.build().unwrap();
        b.fit(&array![[1.0, 2.0]]).unwrap();
        let err = fails(&mut a, |c| c.merge(&b).map(|_| ()));
        let want = |this: &str, other: &str| CenteringError::IncompatibleMerge {
            what: "number of features",
            this: this.into(),
            other: other.into(),
        };
        assert_eq!(err, want("3", "2"));
        names(&err, &["cannot merge", "number of features", "3", "2"]);
        let err = fails(&mut b, |c| c.merge(&a).map(|_| ()));
        assert_eq!(err, want("2", "3"));
        // An unfitted side is the identity, whatever D the other has.
        let empty: Centering<f64> = p.build().unwrap();
        let before = a.clone();
        a.merge(&empty).unwrap();
        assert_eq!(a, before);
        let mut e = empty.clone();
        e.merge(&a).unwrap();
        assert_eq!(e, a);
    }
}

#[test]
fn errors_are_std_errors() {
    fn is_error<E: std::error::Error + Send + Sync + Clone + PartialEq + 'static>() {}
    is_error::<CenteringError>();
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(CenteringError::NotFitted);
    assert!(!boxed.to_string().is_empty());
}

// ---------------------------------------------------------------------------
// Weird inputs: no panic
// ---------------------------------------------------------------------------

#[test]
fn weird_inputs_do_not_panic() {
    let mut c = Centering::<f64>::new();
    // Zero-length feature axis with nonzero samples, and everything zero.
    assert_eq!(
        c.partial_fit(&Array2::<f64>::zeros((1000, 0))).map(|_| ()),
        Err(CenteringError::NoFeatures)
    );
    assert!(c.partial_fit(&ArrayD::<f64>::zeros(IxDyn(&[0, 0, 0]))).is_err());
    // Many dimensions, one element.
    let x = ArrayD::<f64>::from_elem(IxDyn(&[1; 8]), 4.0);
    c.fit(&x).unwrap();
    assert_eq!(c.mean().unwrap(), array![4.0]);
    assert_eq!(c.transform(&x).unwrap(), ArrayD::zeros(IxDyn(&[1; 8])));
    // Many features, one sample; then many samples of one feature.
    let wide = Array1::from_shape_fn(100_000, |i| i as f64);
    c.fit(&wide).unwrap();
    assert_eq!(c.mean().unwrap(), wide);
    c.fit(&Array2::from_elem((70_000, 1), -2.5)).unwrap();
    assert_eq!(c.mean().unwrap(), array![-2.5]);
    // Transform of zero samples.
    let y = c.transform(&Array3::<f64>::zeros((0, 4, 1))).unwrap();
    assert_eq!(y.shape(), &[0, 4, 1]);
    let mut e = Array2::<f64>::zeros((0, 1));
    c.transform_inplace(&mut e).unwrap();
    c.inverse_transform_into(&Array2::zeros((0, 1)), &mut e).unwrap();
    // Zero-sized weights with zero samples.
    c.partial_fit_weighted(&Array3::<f64>::zeros((3, 0, 1)), &Array2::zeros((3, 0)))
        .unwrap();
    c.partial_fit_weighted(&Array3::<f64>::zeros((0, 5, 1)), &Array1::zeros(0))
        .unwrap();
    // Every weight zero: nothing learnt, not an error.
    let before = c.clone();
    c.partial_fit_weighted(&array![[1.0], [2.0]], &array![0.0, 0.0])
        .unwrap();
    assert_eq!(c, before);
    // Merging with oneself.
    let me = c.clone();
    c.merge(&me).unwrap();
    assert_eq!(c.mean().unwrap(), array![-2.5]);
    assert_eq!(c.n_samples_seen(), 140_000);
    // Momentum 0 and 1.
    for m in [0.0, 1.0] {
        for s in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
            let mut c: Centering<f64> = CenteringParams::new().moving_average(m).start(s).build().unwrap();
            c.partial_fit(&array![[1.0]]).unwrap();
            c.partial_fit(&array![[3.0]]).unwrap();
            let got = c.mean().unwrap()[0];
            assert!(got.is_finite(), "momentum {m} {s:?}: {got}");
        }
    }
    // Subnormal weights and values.
    let tiny = f64::from_bits(1);
    c.fit_weighted(&array![[tiny], [1.0]], &array![tiny, tiny]).unwrap();
    assert!(c.mean().unwrap()[0].is_finite());
    // Views with every kind of stride.
    let base = Array3::<f64>::from_shape_fn((6, 5, 4), |(i, j, k)| (i + 2 * j + 3 * k) as f64);
    for v in [
        base.slice(s![..;-1, ..;2, ..;-1]),
        base.slice(s![..;3, 1..1, ..]),
        base.slice(s![.., .., 1..2]),
    ] {
        let mut c = Centering::<f64>::new();
        c.partial_fit(&v).unwrap();
        if !v.is_empty() {
            let _ = c.transform(&v).unwrap();
        }
        let _ = c.center_batch(&v).unwrap();
    }
    let p = base.view().permuted_axes([2, 0, 1]);
    c.fit(&p).unwrap();
    assert_eq!(c.n_features(), Some(5));
}
