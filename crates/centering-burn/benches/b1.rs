//! B1 (WORKLOADS.md): the layer's training-mode forward on an `(N, H, W, C)`
//! tensor against burn's own `BatchNorm` training-mode forward on the same
//! data and backend (CPU, ndarray, autodiff), as a time ratio.
//!
//! `BatchNorm` is channels-first: it is given the same data as a contiguous
//! `(N, C, H, W)` tensor (its own layout, permuted and copied before
//! timing), and, as a second row, the permuted view of the NHWC tensor
//! (what a channels-last model would hand it).
//!
//!   cargo bench -p centering-burn --bench b1
//!
//! Not run in CI: a measurement, in release, on a quiet machine.

use std::time::Instant;

use burn_core::tensor::{Device, Tensor, TensorData};
use burn_nn::BatchNormConfig;
use centering_burn::CenteringConfig;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> Result<(), centering_burn::Error> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .unwrap_or_default();
    println!("{cpu}");
    let device = Device::default().autodiff();
    let quick = std::env::var_os("CENTERING_BENCH_QUICK").is_some();
    let shapes: &[[usize; 4]] = if quick {
        &[[2, 8, 8, 3]]
    } else {
        &[[64, 56, 56, 16], [256, 32, 32, 3], [32, 28, 28, 64]]
    };
    let reps = if quick { 3 } else { 15 };
    println!(
        "| (N, H, W, C) | MeanCentering | BatchNorm (NCHW contiguous) | ratio | BatchNorm (permuted view) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for &[n, h, w, c] in shapes {
        let len = n * h * w * c;
        let v: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 + (i % c) as f32 * 100.0)
            .collect();
        let nhwc = Tensor::<4>::from_data(TensorData::new(v, [n, h, w, c]), &device);
        // Its own layout: permuted, then copied into a contiguous tensor.
        let nchw_data = nhwc.clone().permute([0, 3, 1, 2]).into_data();
        let nchw = Tensor::<4>::from_data(nchw_data, &device);
        let layer = CenteringConfig::new(c).init(&device)?;
        let bn = BatchNormConfig::new(c).init(&device);
        layer.forward(nhwc.clone())?; // the shape is right: the timed calls cannot fail
        let ours = time(reps, || {
            let _ = std::hint::black_box(layer.forward(nhwc.clone()));
        });
        let theirs = time(reps, || {
            let y = bn.forward(nchw.clone());
            std::hint::black_box(y);
        });
        let theirs_view = time(reps, || {
            let y = bn.forward(nhwc.clone().permute([0, 3, 1, 2]));
            std::hint::black_box(y);
        });
        println!(
            "| ({n}, {h}, {w}, {c}) | {:.2} ms | {:.2} ms | {:.2} | {:.2} ms | {:.2} |",
            ours * 1e3,
            theirs * 1e3,
            ours / theirs,
            theirs_view * 1e3,
            ours / theirs_view
        );
    }
    println!("ratio = MeanCentering time / BatchNorm time (< 1: the layer is faster); medians of {reps} runs");
    Ok(())
}
