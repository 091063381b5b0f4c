//! States from PyTorch and Keras, the untyped state, exact counts.
#![cfg(feature = "serde")]

use centering::{AnyCentering, Centering, CenteringError, CenteringParams, EmaStart, Mode, NanPolicy};
use ndarray::{Array1, Array2, array};

fn batches(k: usize, d: usize) -> Vec<Array2<f32>> {
    (0..k)
        .map(|b| Array2::from_shape_fn((3 + b % 4, d), |(i, j)| (i * 7 + j * 3 + b * 5) as f32 * 0.37 - 2.0))
        .collect()
}

fn reload<F>(c: &Centering<F>) -> Centering<F>
where
    F: centering::Element,
    Centering<F>: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(c).unwrap()).expect("an imported state reloads")
}

/// A running mean taken from "PyTorch" after k steps continues exactly as
/// the crate's own zero-started PyTorch-convention average does.
#[test]
fn a_torch_running_mean_continues_bit_for_bit() {
    let d = 3;
    let all = batches(12, d);
    for mu in [0.1, 0.01, 0.5, 1.0] {
        for k in [1usize, 5, 9] {
            let mut own: Centering<f32> = CenteringParams::new()
                .torch_momentum(mu)
                .start(EmaStart::Zero)
                .build()
                .unwrap();
            // PyTorch's own recurrence, in f32, for the first k batches.
            let (old, new) = ((1.0 - mu) as f32, mu as f32);
            let mut running = Array1::<f32>::zeros(d);
            for b in &all[..k] {
                own.partial_fit(b).unwrap();
                // The batch mean as the crate computes it (exact, then
                // rounded); PyTorch's own f32 mean may differ in the last
                // bit, which is not the recurrence under test.
                let exact = centering::BatchSummary::from_array(b, NanPolicy::Reject)
                    .unwrap()
                    .mean::<f32>();
                running = running.mapv(|r| r * old) + exact.mapv(|e| e * new);
            }
            assert_eq!(own.mean().unwrap(), running, "mu {mu} k {k}");
            let mut imported = Centering::<f32>::from_torch(&running, k as u64, Some(mu)).unwrap();
            assert_eq!(imported.mean().unwrap(), running);
            assert_eq!(imported.n_batches(), k as u64);
            assert_eq!(imported.params().torch_momentum(), Some(mu));
            let mut again = reload(&imported);
            for b in &all[k..] {
                own.partial_fit(b).unwrap();
                imported.partial_fit(b).unwrap();
                again.partial_fit(b).unwrap();
            }
            assert_eq!(imported.mean(), own.mean(), "mu {mu} k {k}");
            assert_eq!(again.mean(), own.mean());
        }
    }
}

#[test]
fn a_torch_batch_average_and_a_keras_moving_mean() {
    // momentum=None: the cumulative average of batch means.
    let mut c = Centering::<f64>::from_torch(&array![2.0, -1.0], 4, None).unwrap();
    assert_eq!(c.params().mode(), Mode::BatchAverage);
    assert_eq!(c.mean().unwrap(), array![2.0, -1.0]);
    c.partial_fit(&array![[7.0, 4.0]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![3.0, 0.0]); // (4·m + b) / 5
    reload(&c);

    let mut k = Centering::<f32>::from_keras(&array![1.0f32, 2.0], 0.99, 100).unwrap();
    assert_eq!(k.params().start(), Some(EmaStart::Zero));
    k.partial_fit(&array![[101.0f32, 2.0]]).unwrap();
    assert_eq!(k.mean().unwrap()[0], 1.0f32 * 0.99 + 101.0 * (1.0 - 0.99f64) as f32);
    assert_eq!(k.mean().unwrap()[1], 2.0f32 * 0.99 + 2.0 * (1.0 - 0.99f64) as f32);
    reload(&k);
    // A long-trained segment merged after a fresh one: the imported state's
    // decay (0.99^1e6 ≈ 0) lets it replace the earlier estimate.
    let long = Centering::<f64>::from_keras(&array![5.0], 0.99, 1_000_000).unwrap();
    let mut early: Centering<f64> = CenteringParams::new()
        .moving_average(0.99)
        .start(EmaStart::Zero)
        .build()
        .unwrap();
    early.partial_fit(&array![[100.0]]).unwrap();
    early.merge(&long).unwrap();
    assert_eq!(early.mean().unwrap()[0], 5.0);
    reload(&early);
}

#[test]
fn imports_refuse_what_no_layer_holds() {
    assert!(matches!(
        Centering::<f32>::from_torch(&array![1.0f32], 3, Some(1.5)),
        Err(CenteringError::InvalidMomentum { .. })
    ));
    assert_eq!(
        Centering::<f32>::from_torch(&Array1::<f32>::zeros(0), 3, Some(0.1)).unwrap_err(),
        CenteringError::NoFeatures
    );
    assert!(matches!(
        Centering::<f64>::from_keras(&array![1.0, f64::NAN], 0.99, 3),
        Err(CenteringError::NonFinite { ref index, .. }) if index == &vec![1]
    ));
    // No step taken: PyTorch's zeros are an unfitted layer; anything else
    // is not a state a layer can hold.
    assert!(
        !Centering::<f32>::from_torch(&array![0.0f32, 0.0], 0, Some(0.1))
            .unwrap()
            .is_fitted()
    );
    let err = Centering::<f32>::from_torch(&array![0.5f32], 0, Some(0.1)).unwrap_err();
    assert!(
        matches!(
            err,
            CenteringError::InvalidState {
                field: "num_batches_tracked",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_untyped_state_loads_either_type() {
    let mut a = Centering::<f32>::new();
    a.fit(&array![[1.0f32, 2.0]]).unwrap();
    let mut b: Centering<f64> = CenteringParams::new().moving_average(0.5).build().unwrap();
    b.fit(&array![[1.0, 2.0], [5.0, 6.0]]).unwrap();
    for (json, dtype) in [
        (serde_json::to_string(&a).unwrap(), "f32"),
        (serde_json::to_string(&b).unwrap(), "f64"),
    ] {
        let any: AnyCentering = serde_json::from_str(&json).unwrap();
        assert_eq!(any.dtype(), dtype);
        // Written back identically.
        assert_eq!(serde_json::to_string(&any).unwrap(), json);
        let bytes = postcard::to_stdvec(&any).unwrap();
        assert_eq!(postcard::from_bytes::<AnyCentering>(&bytes).unwrap(), any);
    }
    let any = AnyCentering::from(b.clone());
    assert_eq!(any.n_steps().unwrap(), array![1, 1]);
    assert_eq!(any.counts(), None);
    assert_eq!(any.mean().unwrap(), array![3.0, 4.0]);
    let err = Centering::<f32>::try_from(any.clone()).unwrap_err();
    assert!(
        matches!(err, CenteringError::InvalidState { field: "dtype", .. }),
        "{err}"
    );
    assert_eq!(Centering::<f64>::try_from(any).unwrap(), b);
    // An unknown dtype, and validation as strict as the typed loader's.
    let mut v: serde_json::Value = serde_json::to_value(&a).unwrap();
    v["dtype"] = serde_json::json!("f16");
    let err = serde_json::from_value::<AnyCentering>(v.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dtype") && err.contains("f16"), "{err}");
    v["dtype"] = serde_json::json!("f32");
    v["state"]["n_features"] = serde_json::json!(9);
    let err = serde_json::from_value::<AnyCentering>(v).unwrap_err().to_string();
    assert!(err.contains("n_features"), "{err}");
}

#[test]
fn exact_counts_in_f64_and_steps_per_feature() {
    // f32 weights pass 2^24 without rounding in `counts`.
    let mut c = Centering::<f32>::new();
    let n = (1usize << 24) + 1;
    let row = array![[1.0f32]];
    c.partial_fit(&row.broadcast((n, 1)).unwrap()).unwrap();
    assert_eq!(c.counts().unwrap()[0], n as f64);
    assert_eq!(c.weight_sums().unwrap()[0], n as f32); // rounds, as f32 must
    assert_ne!(f64::from(c.weight_sums().unwrap()[0]), n as f64);
    assert_eq!(c.n_steps(), None);
    let mut m: Centering<f64> = CenteringParams::new()
        .moving_average(0.9)
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    m.partial_fit(&array![[1.0, f64::NAN, f64::NAN]]).unwrap();
    m.partial_fit(&array![[1.0, 2.0, f64::NAN]]).unwrap();
    m.partial_fit(&array![[1.0, 2.0, 3.0]]).unwrap();
    assert_eq!(m.n_steps().unwrap(), array![3, 2, 1]);
    assert_eq!(m.counts(), None);
}
