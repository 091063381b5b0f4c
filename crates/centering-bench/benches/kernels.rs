//! Criterion benches of the kernels, for regression tracking: `fit`,
//! `transform` and `transform_inplace` on C-order `N × D` arrays, f32 and
//! f64, D ∈ {3, 64}, at a size that fits in cache (64 KiB) and one that
//! streams from DRAM (256 MiB).
//!
//! ```text
//! cargo bench -p centering-bench --bench kernels               # all, a few minutes
//! cargo bench -p centering-bench --bench kernels -- 'f32/D=3'  # a filter, as criterion takes it
//! ```
//!
//! Throughput is the input's size in bytes for every operation (as in the
//! roofline bench, `roofline.rs` beside this file, which compares each operation with
//! the machine's limit). `transform`'s output is freed outside the timing in
//! DRAM, inside it (at once, as in a user's loop) in cache.

use std::hint::black_box;
use std::time::Duration;

use centering::Centering;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;

/// The input sizes, named for the report: in cache, and in DRAM.
const SIZES: [(&str, usize); 2] = [("64KiB", 64 << 10), ("256MiB", 256 << 20)];

/// The feature counts: images' channels, and a typical tabular width.
const FEATURES: [usize; 2] = [3, 64];

/// Inputs at least this large get few, long samples.
const DRAM: usize = 16 << 20;

/// An `n × d` array of values in [0, 1) without a pattern the kernels could
/// exploit, about `bytes` large (a whole number of rows).
fn input<F: centering::Element>(bytes: usize, d: usize) -> Array2<F> {
    let n = (bytes / size_of::<F>() / d).max(1);
    Array2::from_shape_fn((n, d), |(i, j)| {
        let k = (i * d + j) as u64;
        // A multiplicative hash of the index (Knuth), top 24 bits → [0, 1).
        let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        F::from(h).expect("24 bits fit any float") / F::from(1u64 << 24).expect("a power of two")
    })
}

/// One group per element type and feature count: the three operations, each
/// over the sizes.
fn bench_type<F: centering::Element>(c: &mut Criterion, dtype: &str) {
    for d in FEATURES {
        let mut group = c.benchmark_group(format!("{dtype}/D={d}"));
        for (label, bytes) in SIZES {
            let mut x = input::<F>(bytes, d);
            let mut model = Centering::<F>::new();
            model.fit(&x).expect("finite input");
            group.throughput(Throughput::Bytes((x.len() * size_of::<F>()) as u64));
            if bytes >= DRAM {
                group
                    .sample_size(10)
                    .warm_up_time(Duration::from_millis(500))
                    .measurement_time(Duration::from_secs(3));
            } else {
                group
                    .sample_size(50)
                    .warm_up_time(Duration::from_millis(300))
                    .measurement_time(Duration::from_secs(1));
            }
            group.bench_function(BenchmarkId::new("fit", label), |b| {
                b.iter(|| {
                    model.fit(black_box(&x)).expect("finite input");
                })
            });
            group.bench_function(BenchmarkId::new("transform", label), |b| {
                if bytes >= DRAM {
                    // One call per batch: each output is freed (unmapped)
                    // after its call is timed, as the roofline bench does.
                    b.iter_batched(
                        || (),
                        |()| model.transform(black_box(&x)).expect("fitted"),
                        BatchSize::PerIteration,
                    )
                } else {
                    // Freed at once, inside the timing, as in a user's loop:
                    // the allocator hands the same block back next call.
                    // (Keeping a batch of outputs alive would measure the
                    // page faults of a heap grown and trimmed per batch.)
                    b.iter(|| model.transform(black_box(&x)).expect("fitted"))
                }
            });
            // In place, every call shifts `x` by the mean once more: harmless.
            group.bench_function(BenchmarkId::new("transform_inplace", label), |b| {
                b.iter(|| model.transform_inplace(black_box(&mut x)).expect("fitted"))
            });
        }
        group.finish();
    }
}

fn kernels(c: &mut Criterion) {
    bench_type::<f64>(c, "f64");
    bench_type::<f32>(c, "f32");
}

criterion_group!(benches, kernels);
criterion_main!(benches);
