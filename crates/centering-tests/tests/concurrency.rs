//! Concurrency stress: many threads read one shared estimator (`transform`
//! takes `&self`) while others fit clones of it on shards and merge them.
//! The merged state must equal the one a single thread computes, bit for
//! bit, and every concurrent transform must see the shared state as it is.

use std::sync::{Arc, Mutex};

use centering::{Centering, CenteringParams, EmaStart};
use ndarray::{Array2, Axis, s};

/// Deterministic data: `rows × d`, with large offsets per feature.
fn data(rows: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut state = seed;
    Array2::from_shape_fn((rows, d), |(_, j)| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        1e6 * j as f64 + u - 0.5
    })
}

#[test]
fn readers_and_writers_on_shared_state_agree_with_one_thread() {
    let d = 7;
    let shards: Vec<Array2<f64>> = (0..8).map(|i| data(40_000 + 1_000 * i, d, i as u64 + 1)).collect();
    let probe = data(5_000, d, 99);
    for params in [
        CenteringParams::new(),
        CenteringParams::new().moving_average(0.9).start(EmaStart::Zero),
        CenteringParams::new().batch_average(),
    ] {
        // A shared, fitted estimator that readers transform with.
        let mut base: Centering<f64> = params.build().unwrap();
        base.partial_fit(&data(3_000, d, 7)).unwrap();
        let shared = Arc::new(base.clone());
        let expected_probe = shared.transform(&probe).unwrap();

        // Single-threaded reference: the clones fitted one after the other,
        // merged in shard order (ordered for the moving average).
        let mut reference = base.clone();
        for shard in &shards {
            let mut part: Centering<f64> = params.build().unwrap();
            part.partial_fit(&shard.slice(s![..shard.nrows() / 2, ..])).unwrap();
            part.partial_fit(&shard.slice(s![shard.nrows() / 2.., ..])).unwrap();
            reference.merge(&part).unwrap();
        }

        let parts: Arc<Mutex<Vec<Option<Centering<f64>>>>> = Arc::new(Mutex::new(vec![None; shards.len()]));
        std::thread::scope(|scope| {
            // Readers: transform the same probe over and over.
            for _ in 0..6 {
                let shared = Arc::clone(&shared);
                let probe = &probe;
                let expected = &expected_probe;
                scope.spawn(move || {
                    for _ in 0..20 {
                        let y = shared.transform(probe).unwrap();
                        assert_eq!(&y, expected);
                        let mut out = Array2::zeros(probe.raw_dim());
                        shared.inverse_transform_into(&y, &mut out).unwrap();
                        let back_err = (&out - probe).iter().fold(0.0f64, |a, &e| a.max(e.abs()));
                        assert!(back_err <= 1e-9, "{back_err}");
                    }
                });
            }
            // Writers: fit fresh clones on shards, concurrently.
            for (i, shard) in shards.iter().enumerate() {
                let parts = Arc::clone(&parts);
                scope.spawn(move || {
                    let mut part: Centering<f64> = params.build().unwrap();
                    part.partial_fit(&shard.slice(s![..shard.nrows() / 2, ..])).unwrap();
                    part.partial_fit(&shard.slice(s![shard.nrows() / 2.., ..])).unwrap();
                    // Some writers also transform through their own clone.
                    let _ = part.transform(&shard.index_axis(Axis(0), 0)).unwrap();
                    parts.lock().unwrap()[i] = Some(part);
                });
            }
        });
        let mut merged = (*shared).clone();
        for part in parts.lock().unwrap().iter() {
            merged.merge(part.as_ref().unwrap()).unwrap();
        }
        assert_eq!(merged, reference, "{params:?}");
        let bits = |c: &Centering<f64>| c.mean().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&merged), bits(&reference), "{params:?}");
        // The shared estimator was never changed by the readers.
        assert_eq!(*shared, base);
    }
}
