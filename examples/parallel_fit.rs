//! Parallel and distributed fitting with `merge`.
//!
//! 1. Cumulative mean: shards of one dataset are fitted independently on
//!    threads (they could as well be on different machines), the fitted
//!    estimators are merged, and the result is compared with one fit over
//!    all the data. Merging is commutative: any order gives the same mean.
//! 2. Moving average: a time-ordered stream of batches is cut into
//!    consecutive segments, each fitted on its own thread; merging the
//!    segments *in time order* gives what one sequential pass gives. The
//!    merge is ordered: the reverse order is a different (wrong) history.
//!
//! Run with `cargo run --release --example parallel_fit`.

use centering::{Centering, CenteringParams, EmaStart, ValidParams};
use ndarray::{Array2, ArrayView2, Axis, s};

#[path = "support/rng.rs"]
mod rng;

use rng::SplitMix64;

const D: usize = 8;

/// `n` rows whose feature `j` is `100·j − 350 + (j + 1)·U(−1, 1)`, plus a
/// slow drift along the rows (so the order of a stream matters).
fn dataset(n: usize, seed: u64) -> Array2<f64> {
    let mut rng = SplitMix64(seed);
    Array2::from_shape_fn((n, D), |(i, j)| {
        let drift = 3.0 * (i as f64 / n as f64);
        100.0 * j as f64 - 350.0 + drift + (j + 1) as f64 * rng.symmetric()
    })
}

/// The largest difference between two mean vectors, absolute and in units
/// in the last place of the larger value.
fn max_diff(a: &Centering<f64>, b: &Centering<f64>) -> (f64, f64) {
    let (a, b) = (a.mean().expect("fitted"), b.mean().expect("fitted"));
    a.iter().zip(b.iter()).fold((0.0f64, 0.0f64), |(abs, ulps), (&x, &y)| {
        let ulp = f64::EPSILON * x.abs().max(y.abs());
        (abs.max((x - y).abs()), ulps.max((x - y).abs() / ulp))
    })
}

/// Fits each part on its own thread with fresh estimators of the same
/// parameters, feeding each part's batches in order; returns the
/// estimators in the parts' order.
fn fit_on_threads(params: ValidParams, parts: &[Vec<ArrayView2<'_, f64>>]) -> Vec<Centering<f64>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|batches| {
                scope.spawn(move || {
                    let mut est = Centering::<f64>::with_params(params);
                    for batch in batches {
                        est.partial_fit(batch).expect("finite data");
                    }
                    est
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    })
}

fn main() -> Result<(), centering::CenteringError> {
    // ---- 1. Cumulative mean over shards -------------------------------------
    let n = 1_500_000;
    let x = dataset(n, 7);
    // Four shards of unequal sizes: views into `x`, nothing is copied.
    let cuts = [0, 100_000, 700_000, 750_000, n];
    let shards: Vec<Vec<ArrayView2<'_, f64>>> = cuts.windows(2).map(|w| vec![x.slice(s![w[0]..w[1], ..])]).collect();

    let params = CenteringParams::new().check()?; // cumulative (the default)
    let fitted = fit_on_threads(params, &shards);

    let mut merged = Centering::<f64>::new(); // unfitted: the identity of merge
    for shard in &fitted {
        merged.merge(shard)?;
    }
    let mut reversed = Centering::<f64>::new();
    for shard in fitted.iter().rev() {
        reversed.merge(shard)?;
    }
    let mut whole = Centering::<f64>::new();
    whole.fit(&x)?;

    let sizes: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "1. cumulative mean: {n} rows × {D} features in {} shards of {} to {} rows",
        shards.len(),
        sizes.iter().min().expect("shards"),
        sizes.iter().max().expect("shards"),
    );
    println!("   {:>3} {:>24} {:>24}", "j", "merged shards", "one fit over all");
    for (j, (a, b)) in merged.mean().unwrap().iter().zip(whole.mean().unwrap()).enumerate() {
        println!("   {j:>3} {a:>24.15} {b:>24.15}");
    }
    let (abs, ulps) = max_diff(&merged, &whole);
    println!("   max |merged − whole| = {abs:.1e} ({ulps:.2} ulp)");
    println!(
        "   samples: merged {} = whole {}; the same estimate: {}; merge order reversed gives the same state: {}",
        merged.n_samples_seen(),
        whole.n_samples_seen(),
        merged.same_estimate(&whole), // `==` would also compare batch counts: 4 against 1
        merged == reversed
    );
    let numpy_like = x.mean_axis(Axis(0)).expect("non-empty"); // plain f64 summation, for scale
    let naive = numpy_like
        .iter()
        .zip(whole.mean().unwrap())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("   (for scale: ndarray's mean_axis differs from the exact mean by up to {naive:.1e})");

    // ---- 2. Moving average over time-ordered segments ------------------------
    // 2,000 batches of 64 to 511 rows, in time order, cut into 4 consecutive segments.
    let stream = dataset(600_000, 11);
    let mut rng = SplitMix64(3);
    let mut batches = Vec::new();
    let mut at = 0;
    while batches.len() < 2_000 {
        let rows = 64 + (rng.next_u64() % 448) as usize;
        batches.push(stream.slice(s![at..at + rows, ..]));
        at += rows;
    }
    let segments: Vec<Vec<ArrayView2<'_, f64>>> = batches.chunks(500).map(<[_]>::to_vec).collect();

    println!(
        "\n2. moving average, Keras momentum 0.99: {} batches in {} time-ordered segments (feature 0)",
        batches.len(),
        segments.len()
    );
    println!(
        "   {:<10} {:>20} {:>20} {:>18} {:>14}",
        "start", "segments merged", "one pass", "max diff (all j)", "reverse order"
    );
    for start in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
        let params = CenteringParams::new().moving_average(0.99).start(start).check()?;
        let parts = fit_on_threads(params, &segments);

        let mut in_order = Centering::<f64>::with_params(params);
        for part in &parts {
            in_order.merge(part)?; // `part`'s batches come after everything merged so far
        }
        let mut backwards = Centering::<f64>::with_params(params);
        for part in parts.iter().rev() {
            backwards.merge(part)?;
        }
        let mut one_pass = Centering::<f64>::with_params(params);
        for batch in &batches {
            one_pass.partial_fit(batch)?;
        }

        let (abs, ulps) = max_diff(&in_order, &one_pass);
        let (wrong, _) = max_diff(&backwards, &one_pass);
        println!(
            "   {:<10} {:>20.12} {:>20.12} {:>8.1e} ({ulps:.0} ulp) {:>14.3}",
            format!("{start:?}"),
            in_order.mean().unwrap()[0],
            one_pass.mean().unwrap()[0],
            abs,
            backwards.mean().unwrap()[0],
        );
        assert!(wrong > 1.0, "the merge of a moving average is ordered");
        assert_eq!(in_order.n_batches(), one_pass.n_batches());
    }
    Ok(())
}
