//! The promises under hostile input (issue 8), one test per class of defect
//! found by calling the crate as a new user would: an error never changes
//! the state; a finite stream never has an infinite mean; every state the
//! crate produces saves and reloads; what loads could have been produced;
//! the round trip does not depend on the format's float parsing; huge
//! broadcast views are errors or cheap, never panics; messages name what
//! was expected.

#![cfg(feature = "serde")]

use centering::{Centering, CenteringError, CenteringParams, EmaStart, NanPolicy};
use ndarray::{Array1, Array2, ArrayView2, array};

/// Every mode, start and policy.
fn all_params() -> Vec<CenteringParams> {
    let mut v = vec![CenteringParams::new(), CenteringParams::new().batch_average()];
    for start in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
        v.push(CenteringParams::new().moving_average(0.9).start(start));
        v.push(CenteringParams::new().torch_momentum(0.1).start(start));
        v.push(CenteringParams::new().moving_average(0.5).start(start));
    }
    let ignore: Vec<_> = v.iter().map(|p| p.nan_policy(NanPolicy::Ignore)).collect();
    v.extend(ignore);
    v
}

/// The state, bit for bit, and its mean's bits.
fn snapshot<F: centering::Element + serde::Serialize>(c: &Centering<F>) -> (String, Option<Vec<u64>>) {
    let state = serde_json::to_string(c).expect("every produced state serialises");
    let mean = c
        .mean()
        .map(|m| m.iter().map(|v| v.to_f64().unwrap().to_bits()).collect());
    (state, mean)
}

/// Saves and reloads through JSON and postcard: equal, same mean bits.
fn reloads<F>(c: &Centering<F>, what: &str)
where
    F: centering::Element + serde::Serialize + serde::de::DeserializeOwned,
    Centering<F>: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(c).unwrap();
    let back: Centering<F> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{what}: a produced state does not reload: {e}\n{json}"));
    assert_eq!(&back, c, "{what}");
    assert_eq!(snapshot(&back), snapshot(c), "{what}");
    let bytes = postcard::to_stdvec(c).unwrap();
    let back: Centering<F> = postcard::from_bytes(&bytes).unwrap_or_else(|e| panic!("{what}: postcard: {e}"));
    assert_eq!(snapshot(&back), snapshot(c), "{what}");
}

// ---------------------------------------------------------------------------
// 1. An error never changes the state.

/// A call on an estimator, by name.
type Call = Box<dyn Fn(&mut Centering<f64>) -> Result<(), CenteringError>>;

#[test]
fn a_fit_with_nothing_to_learn_is_an_error_that_keeps_the_state() {
    for params in all_params() {
        let mut c: Centering<f64> = params.build().unwrap();
        c.fit(&array![[1.0, 2.0]]).unwrap();
        let before = snapshot(&c);
        let mut nothing: Vec<(&str, Call)> = vec![
            (
                "fit(empty)",
                Box::new(|c| c.fit(&Array2::<f64>::zeros((0, 2))).map(|_| ())),
            ),
            (
                "fit_transform(empty)",
                Box::new(|c| c.fit_transform(&Array2::<f64>::zeros((0, 2))).map(|_| ())),
            ),
            (
                "fit_weighted(zero weights)",
                Box::new(|c| {
                    c.fit_weighted(&array![[1.0, 2.0], [3.0, 4.0]], &array![0.0, 0.0])
                        .map(|_| ())
                }),
            ),
        ];
        if params.check().unwrap().nan_policy() == NanPolicy::Ignore {
            nothing.push((
                "fit_transform(all NaN)",
                Box::new(|c| c.fit_transform(&array![[f64::NAN, f64::NAN]]).map(|_| ())),
            ));
        }
        for (what, call) in &nothing {
            let err = call(&mut c).unwrap_err();
            assert!(
                matches!(err, CenteringError::EmptyFit { .. }),
                "{params:?} {what}: {err}"
            );
            assert!(err.to_string().contains("unchanged"), "{err}");
            assert_eq!(snapshot(&c), before, "{params:?} {what}: the error changed the state");
            // Still usable right after: the message is not "not fitted".
            assert!(c.transform(&array![[0.0, 0.0]]).is_ok());
        }
        // partial_fit of the same batches stays a no-op.
        c.partial_fit(&Array2::<f64>::zeros((0, 2))).unwrap();
        c.partial_fit_weighted(&array![[5.0, 6.0]], &array![0.0]).unwrap();
        assert_eq!(snapshot(&c), before, "{params:?}");
    }
}

#[test]
fn a_refused_allocation_changes_nothing() {
    // center_batch and fit_transform allocate their output before they
    // touch the state.
    let row = array![[1.0f64, 2.0, 3.0, 4.0]];
    let huge = row.broadcast((1usize << 58, 4)).unwrap();
    for params in all_params() {
        let mut c: Centering<f64> = params.build().unwrap();
        c.fit(&array![[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]).unwrap();
        let before = snapshot(&c);
        for err in [
            c.center_batch(&huge).map(|_| ()).unwrap_err(),
            c.fit_transform(&huge).map(|_| ()).unwrap_err(),
            c.transform(&huge).map(|_| ()).unwrap_err(),
            c.inverse_transform(&huge).map(|_| ()).unwrap_err(),
        ] {
            assert!(matches!(err, CenteringError::Allocation { .. }), "{params:?}: {err}");
        }
        assert_eq!(snapshot(&c), before, "{params:?}");
    }
}

// ---------------------------------------------------------------------------
// 2. A finite stream has a finite mean, in every mode and start.

#[test]
fn values_near_max_keep_every_mean_finite() {
    let streams: Vec<Vec<f64>> = vec![
        vec![f64::MAX; 6],
        vec![-f64::MAX; 6],
        vec![f64::MAX, -f64::MAX, f64::MAX, f64::MAX, -f64::MAX, f64::MAX],
        vec![f64::MAX, f64::MAX * 0.999_999, f64::MAX, f64::MAX],
    ];
    for params in all_params() {
        for stream in &streams {
            let mut c: Centering<f64> = params.build().unwrap();
            let mut c32: Centering<f32> = params.build().unwrap();
            for (t, &v) in stream.iter().enumerate() {
                c.partial_fit(&array![[v]]).unwrap();
                c32.partial_fit(&array![[(v / f64::MAX) as f32 * f32::MAX]]).unwrap();
                let m = c.mean().unwrap()[0];
                assert!(m.is_finite(), "{params:?} {stream:?}: step {t}: mean {m}");
                assert!(m.abs() <= f64::MAX);
                let m32 = c32.mean().unwrap()[0];
                assert!(m32.is_finite(), "{params:?} f32 {stream:?}: step {t}: mean {m32}");
                reloads(&c, &format!("{params:?} {stream:?} step {t}"));
                reloads(&c32, &format!("{params:?} f32 {stream:?} step {t}"));
            }
            // A stream of MAX only has the mean MAX whatever the mode, up to
            // the rounding of the recurrence (the zero start approaches it
            // from 0).
            if stream.iter().all(|&v| v == f64::MAX) && params.check().unwrap().start() != Some(EmaStart::Zero) {
                assert!(
                    c.mean().unwrap()[0] >= f64::MAX * (1.0 - 4.0 * f64::EPSILON),
                    "{params:?}"
                );
                assert!(
                    c32.mean().unwrap()[0] >= f32::MAX * (1.0 - 4.0 * f32::EPSILON),
                    "{params:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Every state the crate produces, by fits and merges, saves and reloads.

#[test]
fn merged_segments_near_max_reload() {
    for params in all_params() {
        let segments: Vec<Centering<f64>> = [f64::MAX, -f64::MAX, f64::MAX * 0.75, f64::MAX]
            .iter()
            .map(|&v| {
                let mut c: Centering<f64> = params.build().unwrap();
                c.partial_fit(&array![[v, 1.0]]).unwrap();
                c.partial_fit(&array![[v, -1.0], [v, 3.0]]).unwrap();
                c
            })
            .collect();
        // Left-deep, right-deep and balanced.
        let mut left = segments[0].clone();
        for s in &segments[1..] {
            left.merge(s).unwrap();
            reloads(&left, &format!("{params:?} left-deep"));
        }
        let mut right = segments[3].clone();
        for s in segments[..3].iter().rev() {
            let mut s = s.clone();
            s.merge(&right).unwrap();
            right = s;
            reloads(&right, &format!("{params:?} right-deep"));
        }
        let (mut a, mut b) = (segments[0].clone(), segments[2].clone());
        a.merge(&segments[1]).unwrap();
        b.merge(&segments[3]).unwrap();
        a.merge(&b).unwrap();
        reloads(&a, &format!("{params:?} balanced"));
        for c in [&left, &right, &a] {
            assert!(
                c.mean().unwrap().iter().all(|m| m.is_finite()),
                "{params:?}: {:?}",
                c.mean()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. What loads is a state the crate could have produced.

#[test]
fn unequal_weights_under_reject_do_not_load() {
    let mut c = Centering::<f64>::new();
    c.fit(&array![[1.0, 2.0], [3.0, 4.0]]).unwrap();
    let mut v: serde_json::Value = serde_json::to_value(&c).unwrap();
    v["state"]["accumulator"]["cumulative"]["weight_hi"] = serde_json::json!(["2.0", "5.0"]);
    let err = serde_json::from_value::<Centering<f64>>(v.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weight_hi") && err.contains("feature 1") && err.contains("reject"),
        "{err}"
    );
    // Under Ignore, per-feature counts differ legitimately.
    v["params"]["nan_policy"] = serde_json::json!("ignore");
    let c: Centering<f64> = serde_json::from_value(v).unwrap();
    assert_eq!(c.weight_sums().unwrap(), array![2.0, 5.0]);
}

#[test]
fn a_decay_above_the_momentum_does_not_load_whatever_the_step_count() {
    let mut c: Centering<f64> = CenteringParams::new().moving_average(0.9).build().unwrap();
    c.fit(&array![[1.0]]).unwrap();
    let mut v: serde_json::Value = serde_json::to_value(&c).unwrap();
    let t = 1u64 << 50; // beyond the fine tolerance of the decay check
    v["state"]["n_batches"] = serde_json::json!(t);
    v["state"]["n_samples"] = serde_json::json!(t);
    v["state"]["accumulator"]["moving"]["steps"] = serde_json::json!([t]);
    v["state"]["accumulator"]["moving"]["norm"] = serde_json::json!(["10.0"]);
    v["state"]["accumulator"]["moving"]["decay"] = serde_json::json!(["0.95"]);
    let err = serde_json::from_value::<Centering<f64>>(v.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("decay") && err.contains("at most the momentum"), "{err}");
    v["state"]["accumulator"]["moving"]["decay"] = serde_json::json!(["0.0"]);
    assert!(serde_json::from_value::<Centering<f64>>(v).is_ok());
}

// ---------------------------------------------------------------------------
// 5. The round trip does not depend on the format's float parsing.

/// Every float of a state, in a text format, is a decimal string that
/// Rust's correctly rounded parser reads back: the format's own number
/// parser (serde_json's default one misreads some 17-digit numbers by an
/// ulp) is never involved. (The fuzz crate replays this with a serde_json
/// built without `float_roundtrip`; this crate's tests have it on.)
#[test]
fn text_formats_carry_floats_as_exact_decimal_strings() {
    fn floats_are_strings(v: &serde_json::Value, path: &str) {
        match v {
            serde_json::Value::Number(n) => {
                assert!(n.is_u64(), "{path}: a float written as a JSON number: {n}");
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| floats_are_strings(x, path)),
            serde_json::Value::Object(o) => o
                .iter()
                .for_each(|(k, x)| floats_are_strings(x, &format!("{path}.{k}"))),
            _ => {}
        }
    }
    // Values whose 17 significant digits take the slow path of a parser.
    let awkward = [
        0.1 + 0.2,
        1.0 / 3.0,
        2.0f64.sqrt() * 1e300,
        f64::MIN_POSITIVE * 0.75,
        -1.0e-310,
        8.988465674311579e307,
    ];
    let x = Array2::from_shape_fn((5, awkward.len()), |(i, j)| awkward[j] * (1.0 + i as f64 * 1e-9));
    for params in all_params() {
        let mut c: Centering<f64> = params.build().unwrap();
        c.partial_fit(&x).unwrap();
        c.partial_fit(&x.slice(ndarray::s![1..3, ..])).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        floats_are_strings(&v, "");
        for text in [
            serde_json::to_string(&c).unwrap(),
            serde_json::to_string_pretty(&c).unwrap(),
        ] {
            let back: Centering<f64> = serde_json::from_str(&text).unwrap();
            assert_eq!(snapshot(&back), snapshot(&c), "{params:?}");
        }
    }
    // A decimal string is read by Rust's parser, nothing looser.
    let mut c = Centering::<f64>::new();
    c.fit(&array![[0.5]]).unwrap();
    let mut v = serde_json::to_value(&c).unwrap();
    for bad in ["inf", "NaN", "0x1p-1", "", "1,5", " 0.5"] {
        v["state"]["accumulator"]["cumulative"]["sum_hi"] = serde_json::json!([bad]);
        assert!(
            serde_json::from_value::<Centering<f64>>(v.clone()).is_err(),
            "{bad:?} loaded"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Huge broadcast views: errors or cheap, never a panic or an abort.

#[test]
fn transform_of_a_huge_broadcast_view_is_an_error() {
    let mut c = Centering::<f64>::new();
    c.fit(&array![[1.0, 2.0, 3.0, 4.0]]).unwrap();
    let row = array![[5.0, 6.0, 7.0, 8.0]];
    for n in [1usize << 58, 1 << 40, usize::MAX / 4] {
        let Some(view) = row.broadcast((n, 4)) else {
            continue; // ndarray itself refuses shapes beyond isize::MAX elements
        };
        let err = c.transform(&view).unwrap_err();
        assert!(
            matches!(err, CenteringError::Allocation { elements, .. } if elements == n * 4),
            "{err}"
        );
        assert!(err.to_string().contains("cannot allocate"), "{err}");
    }
}

#[test]
fn fitting_a_broadcast_view_counts_its_copies_without_iterating() {
    let row = array![[1.5, -2.0, 1e300]];
    let n = 1usize << 40;
    let view = row.broadcast((n, 3)).unwrap();
    for params in all_params() {
        let mut c: Centering<f64> = params.build().unwrap();
        c.partial_fit(&view).unwrap(); // O(D·64), not O(n·D)
        assert_eq!(c.n_samples_seen(), n as u64);
        if params.check().unwrap().start() != Some(EmaStart::Zero) {
            assert_eq!(c.mean().unwrap(), row.row(0), "{params:?}");
        }
        if params.check().unwrap().momentum().is_none() && params.check().unwrap().mode() == centering::Mode::Cumulative
        {
            assert_eq!(c.weight_sums().unwrap(), Array1::from_elem(3, n as f64));
        }
        reloads(&c, &format!("{params:?}"));
    }
    // Against a materialised copy: broadcast axes anywhere, with weights
    // constant along them, and NaN ignored.
    let base = array![[1.0, f64::NAN], [3.0, 4.0], [0.1, 0.7]];
    let w = array![2.0, 0.5, 1.0];
    for (axis_len, reps) in [(7usize, 1usize), (1000, 3)] {
        let view = base.broadcast((reps, axis_len, 3, 2)).unwrap();
        let owned = view.to_owned();
        let wv = w.broadcast((reps, axis_len, 3)).unwrap();
        let params = CenteringParams::new().nan_policy(NanPolicy::Ignore);
        let mut a: Centering<f64> = params.build().unwrap();
        let mut b: Centering<f64> = params.build().unwrap();
        a.partial_fit_weighted(&view, &wv).unwrap();
        b.partial_fit_weighted(&owned, &wv.to_owned()).unwrap();
        assert_eq!(a.n_samples_seen(), b.n_samples_seen());
        assert_eq!(a.weight_sums(), b.weight_sums());
        for (x, y) in a.mean().unwrap().iter().zip(b.mean().unwrap()) {
            assert!((x - y).abs() <= 2.0 * f64::EPSILON * y.abs(), "{x} vs {y}");
        }
    }
    // A NaN in a broadcast view is reported at a valid index of the view.
    let nan = array![[1.0, f64::NAN]];
    let v = nan.broadcast((1usize << 30, 2)).unwrap();
    let err = Centering::<f64>::new().partial_fit(&v).unwrap_err();
    assert!(
        matches!(err, CenteringError::NonFinite { ref index, .. } if index == &vec![0, 1]),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// 7. Messages that say what was expected.

#[test]
fn messages_name_the_value_found() {
    let mut c = Centering::<f64>::new();
    c.fit(&array![[1.0]]).unwrap();
    let mut v = serde_json::to_value(&c).unwrap();
    v["format_version"] = serde_json::json!(1.0);
    let err = serde_json::from_str::<Centering<f64>>(&v.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("format_version") && err.contains("1.0"), "{err}");

    // Weights of the wrong shape: every accepted shape is named.
    let x3 = ndarray::Array3::<f64>::zeros((2, 5, 3));
    let err = Centering::<f64>::new()
        .partial_fit_weighted(&x3, &array![1.0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 5]") && err.contains("or [2]"), "{err}");
    let err = Centering::<f64>::new()
        .partial_fit_weighted(&array![1.0, 2.0], &array![2.0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("arr0"), "{err}");
    let _: ArrayView2<'_, f64> = x3.index_axis(ndarray::Axis(0), 0);
}
