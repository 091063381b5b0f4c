//! Quick start: learn per-channel offsets from a stream of sensor readings
//! that arrives in chunks of different sizes, then subtract them.
//!
//! Everything is generated here from a fixed seed (no downloads, no `rand`):
//! six sensor channels, each a known offset plus zero-mean noise. The
//! estimator sees the stream chunk by chunk (`partial_fit`), as a data
//! pipeline or a training loop would, and must recover the offsets.
//!
//! Run with `cargo run --release --example quickstart`.

use centering::{Centering, NanPolicy};
use ndarray::{Array1, Array2, Array4, Axis};

#[path = "support/rng.rs"]
mod rng;

use rng::SplitMix64;

/// Channel names, their true offsets (what the estimator must find) and
/// their noise levels.
const CHANNELS: [(&str, f64, f64); 6] = [
    ("temperature °C", 21.5, 0.8),
    ("pressure hPa", 1013.25, 2.0),
    ("humidity %", 47.0, 5.0),
    ("accel x m/s²", -0.12, 0.05),
    ("accel z m/s²", 9.81, 0.05),
    ("light lux", 320.0, 40.0),
];

/// A chunk of `rows` readings: offset + noise·N(0, 1) per channel.
fn chunk(rng: &mut SplitMix64, rows: usize, offsets: &[f64]) -> Array2<f64> {
    let mut x = Array2::zeros((rows, CHANNELS.len()));
    for mut row in x.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = offsets[j] + CHANNELS[j].2 * rng.normal();
        }
    }
    x
}

fn main() -> Result<(), centering::CenteringError> {
    let mut rng = SplitMix64(2024);
    let offsets: Vec<f64> = CHANNELS.iter().map(|c| c.1).collect();

    // 1. Streaming fit: chunks of 1 to 20,000 readings, 2 million in all.
    let mut scaler = Centering::<f64>::new(); // exact cumulative mean (default)
    let mut seen = 0;
    let mut chunks = 0;
    while seen < 2_000_000 {
        let rows = rng.range(1, 20_000).min(2_000_000 - seen);
        scaler.partial_fit(&chunk(&mut rng, rows, &offsets))?;
        seen += rows;
        chunks += 1;
    }
    assert_eq!(scaler.n_batches(), chunks);
    println!(
        "1. fitted {} readings in {chunks} chunks of 1 to 20,000 rows",
        scaler.n_samples_seen()
    );
    let mean = scaler.try_mean()?;
    println!(
        "   {:<16} {:>12} {:>12} {:>10}",
        "channel", "true offset", "learned", "error"
    );
    for (j, (name, offset, _)) in CHANNELS.iter().enumerate() {
        println!(
            "   {name:<16} {offset:>12.4} {:>12.4} {:>10.1e}",
            mean[j],
            mean[j] - offset
        );
    }

    // 2. Inference: centre a fresh batch with the learned means.
    let fresh = chunk(&mut rng, 50_000, &offsets);
    let centred = scaler.transform(&fresh)?;
    let after = centred.mean_axis(Axis(0)).expect("non-empty");
    println!("\n2. a fresh batch of 50,000 readings, centred with the learned means:");
    println!("   {:<16} {:>12} {:>12}", "channel", "batch mean", "noise/√n");
    for (j, (name, _, noise)) in CHANNELS.iter().enumerate() {
        println!("   {name:<16} {:>12.4} {:>12.4}", after[j], noise / (50_000f64).sqrt());
    }
    let back = scaler.inverse_transform(&centred)?;
    let roundtrip = (&back - &fresh).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!("   inverse_transform(transform(x)) − x: max |·| = {roundtrip:.1e}");

    // 3. Missing readings: NaN = missing, skipped per channel (as scikit-learn does).
    let mut gappy = chunk(&mut rng, 10_000, &offsets);
    for (i, mut row) in gappy.rows_mut().into_iter().enumerate() {
        if i % 3 == 0 {
            row[5] = f64::NAN; // the light sensor drops every third reading
        }
    }
    let mut tolerant = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
    tolerant.partial_fit(&gappy)?;
    let counts = tolerant.weight_sums().expect("cumulative mode");
    println!(
        "\n3. NaN ignored: per-channel counts {counts}, light mean {:.2}",
        tolerant.try_mean()?[5]
    );
    // The default policy rejects the batch and names the first NaN; the state is unchanged.
    let err = scaler.partial_fit(&gappy).unwrap_err();
    println!("   with NanPolicy::Reject (default): {err}");

    // 4. Moving average: the sensors are recalibrated and the offsets jump.
    //    The cumulative mean remembers all history; an exponential moving
    //    average (Keras momentum 0.99 = PyTorch momentum 0.01) follows the
    //    new level within a few hundred batches.
    let shifted: Vec<f64> = offsets.iter().map(|o| o + 5.0).collect();
    let mut keras = Centering::<f64>::builder().keras(0.99).build()?; // EmaStart::Zero, as Keras
    let mut debiased = Centering::<f64>::builder().moving_average(0.99).build()?; // EmaStart::Debiased
    let mut cumulative = Centering::<f64>::new();
    println!("\n4. the offsets jump by +5 after batch 500 (batches of 256; temperature channel):");
    println!(
        "   {:>6} {:>8} {:>14} {:>10} {:>11}",
        "batch", "true", "Zero (Keras)", "Debiased", "Cumulative"
    );
    for step in 1..=1_000 {
        let level = if step <= 500 { &offsets } else { &shifted };
        let batch = chunk(&mut rng, 256, level);
        // Training mode of a layer: centre on the batch's own mean, update the moving mean.
        let _train_out = keras.center_batch(&batch)?;
        debiased.partial_fit(&batch)?;
        cumulative.partial_fit(&batch)?;
        if [1, 10, 100, 500, 510, 600, 1000].contains(&step) {
            println!(
                "   {step:>6} {:>8.2} {:>14.3} {:>10.3} {:>11.3}",
                level[0],
                keras.try_mean()?[0],
                debiased.try_mean()?[0],
                cumulative.try_mean()?[0],
            );
        }
    }

    // 5. Images in NHWC order: every axis but the last indexes samples,
    //    so a batch of shape (N, H, W, C) gives one mean per channel.
    let channel_offsets = [0.485, 0.456, 0.406]; // ImageNet's RGB means
    let mut images = Array4::<f32>::zeros((64, 32, 32, 3));
    for mut pixel in images.lanes_mut(Axis(3)) {
        for (c, v) in pixel.iter_mut().enumerate() {
            *v = (channel_offsets[c] + 0.1 * rng.normal()) as f32;
        }
    }
    let mut per_channel = Centering::<f32>::new();
    per_channel.fit(&images)?;
    let learned: Array1<f32> = per_channel.try_mean()?.to_owned();
    println!("\n5. images (64, 32, 32, 3): per-channel means {learned:.4} (true {channel_offsets:?})");
    Ok(())
}
