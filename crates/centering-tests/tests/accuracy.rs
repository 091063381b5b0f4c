//! Accuracy on adversarial data against an exact reference: the learned
//! mean is within 1 ulp of the exact mean rounded to `F` for
//! well-conditioned data, stays finite near `F::MAX`, handles subnormals,
//! and under cancellation stays within a small multiple of `ε·mean(|x|)`.

mod common;

use centering::Centering;
use common::{Rng, TestFloat, exact_quotient};
use ndarray::{Array1, Array2, Axis};

fn ulp64(x: f64) -> f64 {
    TestFloat::ulp(x)
}

/// A deterministic stream of values in [-1, 1) (the shared generator).
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut rng = Rng(seed);
    move || rng.unit()
}

/// The exact mean of each column, rounded to nearest (Shewchuk's exact sums
/// and an exactly computed remainder, from the shared test reference).
fn exact_means(x: &Array2<f64>) -> Vec<f64> {
    let n = [x.nrows() as f64];
    x.axis_iter(Axis(1))
        .map(|col| exact_quotient(&col.to_vec(), &n))
        .collect()
}

/// Fits in batches of the given sizes (cycled) and returns the mean.
fn fit_split<F: centering::Element>(x: &Array2<F>, sizes: &[usize]) -> Array1<F> {
    let mut c = Centering::<F>::new();
    let (mut start, mut k) = (0, 0);
    while start < x.nrows() {
        let end = (start + sizes[k % sizes.len()]).min(x.nrows());
        c.partial_fit(&x.slice(ndarray::s![start..end, ..])).unwrap();
        start = end;
        k += 1;
    }
    c.mean().unwrap().to_owned()
}

const SPLITS: [&[usize]; 4] = [&[usize::MAX], &[1], &[1000, 7, 33_333], &[4096]];

#[test]
fn f64_large_offset_within_one_ulp() {
    let mut r = noise(1);
    let x = Array2::from_shape_fn((200_000, 3), |(_, j)| 1e9 * (j + 1) as f64 + r());
    let want = exact_means(&x);
    for split in SPLITS {
        let got = fit_split(&x, split);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= ulp64(*w), "split {split:?}: got {g:e}, exact {w:e}");
        }
    }
}

#[test]
fn f32_large_offset_within_one_ulp() {
    let mut r = noise(2);
    let x = Array2::from_shape_fn((300_000, 3), |(_, j)| (1e4 * (j + 1) as f64 + r()) as f32);
    // f32 values are exact in f64: the exact mean, rounded to f32.
    let want: Vec<f32> = exact_means(&x.mapv(f64::from)).iter().map(|&m| m as f32).collect();
    for split in SPLITS {
        let got = fit_split(&x, split);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= w.ulp() as f32,
                "split {split:?}: got {g:e}, exact {w:e}"
            );
        }
    }
}

#[test]
fn near_max_stays_finite_and_exact() {
    let mut r = noise(3);
    let x = Array2::from_shape_fn((10_000, 2), |(_, j)| {
        f64::MAX * (0.75 + 0.25 * r()) * if j == 0 { 1.0 } else { -1.0 }
    });
    // Reference on the data scaled by 2^-64 (exact), scaled back.
    let s = 2f64.powi(64);
    let want: Vec<f64> = exact_means(&x.mapv(|v| v / s)).iter().map(|m| m * s).collect();
    for split in SPLITS {
        let got = fit_split(&x, split);
        for (g, w) in got.iter().zip(&want) {
            assert!(g.is_finite());
            assert!((g - w).abs() <= ulp64(*w), "got {g:e}, exact {w:e}");
        }
    }
    let x32 = Array2::from_elem((1000, 2), f32::MAX);
    assert_eq!(fit_split(&x32, &[usize::MAX]), Array1::from_elem(2, f32::MAX));
    let big = Array2::from_elem((1000, 1), f64::MAX);
    assert_eq!(fit_split(&big, &[3, 1000])[0], f64::MAX);
}

#[test]
fn subnormals_are_exact() {
    let tiny = f64::from_bits(1);
    let x = Array2::from_shape_fn((1001, 2), |(i, j)| tiny * (i % 10 + j) as f64);
    let want = exact_means(&x);
    for split in SPLITS {
        let got = fit_split(&x, split);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= tiny, "got {g:e}, exact {w:e}");
        }
    }
    let x32 = Array2::from_elem((77, 1), f32::from_bits(3));
    assert_eq!(fit_split(&x32, &[5])[0], f32::from_bits(3));
}

#[test]
fn cancellation_stays_within_a_small_multiple_of_eps_mean_abs() {
    // ±1e16 pairs hide a small signal: the naive sum loses it entirely.
    let mut r = noise(4);
    let x = Array2::from_shape_fn((100_000, 1), |(i, _)| {
        let big = if i % 2 == 0 { 1e16 } else { -1e16 };
        big + r()
    });
    let want = exact_means(&x);
    let mean_abs = x.iter().map(|v| v.abs()).sum::<f64>() / x.len() as f64;
    for split in SPLITS {
        let got = fit_split(&x, split)[0];
        assert!(
            (got - want[0]).abs() <= 2.0 * f64::EPSILON * mean_abs,
            "got {got:e}, exact {:e}",
            want[0]
        );
    }
}

/// The general path (weights, missing values, gaps in the layout) keeps the
/// same bound: it sums in `f64` double-words whatever the element type.
#[test]
fn f32_general_paths_within_one_ulp() {
    use centering::{CenteringParams, NanPolicy};
    let mut r = noise(5);
    let x = Array2::from_shape_fn((120_000, 4), |(_, j)| (1e4 * (j + 1) as f64 + r()) as f32);
    let want: Vec<f32> = exact_means(&x.mapv(f64::from)).iter().map(|&m| m as f32).collect();
    let check = |got: ndarray::ArrayView1<'_, f32>, what: &str| {
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= w.ulp() as f32, "{what}: got {g:e}, exact {w:e}");
        }
    };
    let mut c = Centering::<f32>::new();
    c.fit_weighted(&x, &Array1::from_elem(x.nrows(), 1.0f32)).unwrap();
    check(c.mean().unwrap(), "weighted");
    let mut c: Centering<f32> = CenteringParams::new().nan_policy(NanPolicy::Ignore).build().unwrap();
    c.fit(&x).unwrap();
    check(c.mean().unwrap(), "ignore");
    // Every other column of a wider array: a strided layout.
    let wide = Array2::from_shape_fn((x.nrows(), 8), |(i, j)| if j % 2 == 0 { x[[i, j / 2]] } else { 0.0 });
    let mut c = Centering::<f32>::new();
    c.fit(&wide.slice(ndarray::s![.., ..;2])).unwrap();
    check(c.mean().unwrap(), "strided");
}

/// A weighted batch whose sums overflow while another feature has no
/// non-zero term: the overflow re-summation scales only what needs it.
#[test]
fn overflow_next_to_an_all_zero_feature() {
    let mut c = Centering::<f64>::new();
    c.partial_fit_weighted(
        &ndarray::array![[0.0, f64::MAX], [0.0, f64::MAX]],
        &ndarray::array![7.0, 3.0],
    )
    .unwrap();
    assert_eq!(c.mean().unwrap(), ndarray::array![0.0, f64::MAX]);
    c.partial_fit(&ndarray::array![[2.0, f64::MAX]]).unwrap();
    assert_eq!(c.mean().unwrap()[1], f64::MAX);
    assert!((c.mean().unwrap()[0] - 2.0 / 11.0).abs() <= ulp64(2.0 / 11.0));
}
