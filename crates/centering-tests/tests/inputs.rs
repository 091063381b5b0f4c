//! Inputs as they arrive (issue 9): integer arrays summed exactly, half
//! precision widened, replicas averaged, masks for padded batches — each
//! against a naive reference written here.

// Indices name the feature and the step in the references.
#![allow(clippy::needless_range_loop)]

use centering::{Centering, CenteringError, CenteringParams, EmaStart, Input, NanPolicy};
use ndarray::{Array, Array1, Array2, Array3, ArrayD, Axis, IxDyn, ShapeBuilder, array, s};
use proptest::prelude::*;

/// `num / den` rounded to nearest, ties to even, with `bits` significant
/// bits (53: f64, 24: f32), exactly (integer arithmetic), for `|num| < 2⁵⁰`
/// and `den < 2²⁰`.
fn rational(num: i128, den: u64, bits: u32) -> f64 {
    if num == 0 {
        return 0.0;
    }
    let (a, b) = (num.unsigned_abs(), u128::from(den));
    let len = |v: u128| 128 - v.leading_zeros() as i32;
    let k = (bits as i32 + 1 + len(b) - len(a)).max(0) + 1;
    let scaled = a << k;
    let (q, r) = (scaled / b, scaled % b);
    let shift = len(q) - bits as i32;
    let (mut mant, low) = (q >> shift, q & ((1u128 << shift) - 1));
    let half = 1u128 << (shift - 1);
    if low > half || (low == half && (r != 0 || mant & 1 == 1)) {
        mant += 1;
    }
    let v = mant as f64 * 2f64.powi(shift - k);
    if num < 0 { -v } else { v }
}

/// The exact per-feature sums of an integer batch, in `i128`.
fn exact_sums<T: Copy + Into<i128>>(x: &ArrayD<T>) -> (Vec<i128>, u64) {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let mut sums = vec![0i128; d];
    for lane in x.lanes(Axis(last)) {
        for (s, &v) in sums.iter_mut().zip(lane) {
            *s += v.into();
        }
    }
    (sums, (x.len() / d) as u64)
}

/// An array of `shape` in the layout numbered `layout` (C, Fortran,
/// reversed rows, every other row of a taller one).
fn laid_out<T: Copy + Default>(values: &[T], shape: &[usize], layout: u8) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let c = ArrayD::from_shape_vec(IxDyn(shape), values[..n].to_vec()).unwrap();
    match layout % 4 {
        0 => c,
        1 => {
            let mut f = ArrayD::from_elem(IxDyn(shape).f(), T::default());
            f.assign(&c);
            f
        }
        2 => {
            // Reversed rows: negative strides.
            let mut r = c;
            r.invert_axis(Axis(0));
            r
        }
        _ => {
            // Every other row of a taller array: a strided owned array.
            let mut tall_shape = shape.to_vec();
            tall_shape[0] *= 2;
            let mut tall = ArrayD::from_elem(IxDyn(&tall_shape), T::default());
            tall.slice_axis_mut(Axis(0), ndarray::Slice::new(0, None, 2)).assign(&c);
            tall.slice_axis_inplace(Axis(0), ndarray::Slice::new(0, None, 2));
            tall
        }
    }
}

macro_rules! integer_suite {
    ($name:ident, $t:ty, $range:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
            /// Exact sums, so the mean is the exactly rounded mean, for any
            /// batch split and layout; transform element by element.
            #[test]
            fn $name(
                n in 1usize..60,
                d in 1usize..5,
                extra in 1usize..3,
                values in proptest::collection::vec($range, 60 * 5 * 2),
                cuts in proptest::collection::vec(0usize..60, 0..4),
                layout in 0u8..4,
            ) {
                let shape = [n, extra, d];
                let x = laid_out(&values, &shape, layout);
                let (sums, count) = exact_sums(&x);
                let want64: Vec<f64> = sums.iter().map(|&s| rational(s, count, 53)).collect();
                let want32: Vec<f32> = sums.iter().map(|&s| rational(s, count, 24) as f32).collect();
                // Whole, and cut into batches along axis 0.
                let mut cut: Vec<usize> = cuts.iter().map(|&c| c % (n + 1)).collect();
                cut.push(0);
                cut.push(n);
                cut.sort_unstable();
                let mut whole = Centering::<f64>::new();
                whole.partial_fit_input(&x).unwrap();
                let mut split = Centering::<f64>::new();
                let mut shards = Vec::new();
                for w in cut.windows(2) {
                    let b = x.slice_axis(Axis(0), ndarray::Slice::from(w[0]..w[1]));
                    split.partial_fit_input(&b).unwrap();
                    let mut s = Centering::<f64>::new();
                    s.partial_fit_input(&b).unwrap();
                    shards.push(s);
                }
                let mut merged = Centering::<f64>::new();
                for s in shards.iter().rev() {
                    merged.merge(s).unwrap();
                }
                for c in [&whole, &split, &merged] {
                    let got: Vec<f64> = c.mean().unwrap().to_vec();
                    prop_assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want64.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{:?} vs {:?}", got, want64
                    );
                }
                let mut c32 = Centering::<f32>::new();
                c32.partial_fit_input(&x).unwrap();
                prop_assert_eq!(c32.mean().unwrap().to_vec(), want32);
                // transform: widened, minus the mean, rounded once.
                let y = c32.transform_input(&x).unwrap();
                let m = c32.mean().unwrap();
                for (idx, &v) in x.indexed_iter() {
                    let j = idx[x.ndim() - 1];
                    let want = centred(v, m[j]);
                    if <$t as Input>::EXACT {
                        prop_assert_eq!(y[&idx].to_bits(), want.to_bits());
                    } else {
                        // 64-bit values: within an ulp of the exact difference.
                        let ulp = f32::EPSILON * want.abs().max(f32::MIN_POSITIVE);
                        prop_assert!((y[&idx] - want).abs() <= ulp, "{:?} − {} = {}, want {}", v, m[j], y[&idx], want);
                    }
                }
            }
        }
    };
}

integer_suite!(u8_inputs_are_summed_exactly, u8, any::<u8>());
integer_suite!(i8_inputs_are_summed_exactly, i8, any::<i8>());
integer_suite!(u16_inputs_are_summed_exactly, u16, any::<u16>());
integer_suite!(i16_inputs_are_summed_exactly, i16, any::<i16>());
integer_suite!(u32_inputs_are_summed_exactly, u32, any::<u32>());
integer_suite!(i32_inputs_are_summed_exactly, i32, any::<i32>());
integer_suite!(u64_inputs_are_summed_exactly, u64, any::<u64>());
integer_suite!(i64_inputs_are_summed_exactly, i64, any::<i64>());
// Values near 2⁶⁰, whose differences from the mean are small: an f64 of
// each value would round them away.
integer_suite!(
    i64_near_2_60_are_centred_exactly,
    i64,
    (1i64 << 60) - 64..(1i64 << 60) + 64
);

/// `v − m` rounded to `f32`, from an exact fixed-point difference (40
/// fractional bits: the mean's bits below `2⁻⁴⁰` are far below an `f32`
/// ulp of any difference of these tests).
fn centred<T: Copy + Into<i128>>(v: T, m: f32) -> f32 {
    let scale = (1u64 << 40) as f64;
    let m_fixed = (f64::from(m) * scale).round() as i128;
    let diff = (v.into() << 40) - m_fixed;
    // An i128 below 2¹⁰⁶ in magnitude to f64 (one rounding), then to f32:
    // exact for the narrow types' differences, within an f32 ulp otherwise.
    ((diff as f64) / scale) as f32
}

/// 64-bit values that cancel: `±2⁶⁰ + k`, whose mean is small. An `f64` of
/// each value is off by up to 128, which would swamp that mean; weighted
/// (each value split into two exact `f64`s), strided and columnar (nulls
/// skipped) fits must give the exactly rounded mean (weighted: within an
/// ulp).
#[test]
fn sixty_four_bit_values_that_cancel_keep_their_mean() {
    // 250 blocks of four rows: the large parts cancel exactly.
    let n = 1000;
    let d = 3;
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        // Signs alternate by blocks of four rows, as the weights cycle:
        // the large parts cancel in the plain and the weighted sums.
        let big = if (i / 4 + j) % 2 == 0 {
            1i64 << 60
        } else {
            -(1i64 << 60)
        };
        big + (i as i64 * 37 + j as i64 * 11) % 101 - 50
    });
    let w = Array1::from_shape_fn(n, |i| (i % 4 + 1) as f64);
    for j in 0..d {
        let col = x.column(j);
        let exact: i128 = col.iter().map(|&v| i128::from(v)).sum();
        let weighted: i128 = col.iter().zip(&w).map(|(&v, &wi)| i128::from(v) * wi as i128).sum();
        let total: u64 = w.iter().map(|&wi| wi as u64).sum();
        let want = rational(exact, n as u64, 53);
        let want_w = rational(weighted, total, 53);

        let mut c = Centering::<f64>::new();
        c.fit_input(&x).unwrap();
        assert_eq!(c.mean().unwrap()[j], want, "plain, feature {j}");
        // Every other row of a taller array: the strided path.
        let mut tall = Array2::<i64>::zeros((2 * n, d));
        tall.slice_mut(s![..;2, ..]).assign(&x);
        let strided = tall.slice(s![..;2, ..]);
        let mut s2 = Centering::<f64>::new();
        s2.fit_input(&strided).unwrap();
        assert_eq!(s2.mean().unwrap()[j], want, "strided, feature {j}");

        for policy in [NanPolicy::Reject, NanPolicy::Ignore] {
            let mut cw = Centering::<f64>::builder().nan_policy(policy).build().unwrap();
            cw.partial_fit_input_weighted(&x, &w).unwrap();
            let got = cw.mean().unwrap()[j];
            assert!(
                (got - want_w).abs() <= want_w.abs() * f64::EPSILON,
                "weighted {policy:?}, feature {j}: {got} vs {want_w}"
            );
        }

        // Columns with nulls (every fifth row of this one), as Arrow hands them.
        let values: Vec<i64> = col.to_vec();
        let bits: Vec<u8> = (0..n.div_ceil(8))
            .map(|b| (0..8).filter(|k| (b * 8 + k) % 5 != 0).fold(0u8, |a, k| a | 1 << k))
            .collect();
        let kept: Vec<i128> = values
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 != 0)
            .map(|(_, &v)| v.into())
            .collect();
        let want_c = rational(kept.iter().sum(), kept.len() as u64, 53);
        let summary = centering::BatchSummary::from_columns(
            &[&values[..]],
            &[Some(centering::Validity::new(&bits, 0))],
            NanPolicy::Ignore,
        )
        .unwrap();
        assert_eq!(summary.mean::<f64>()[0], want_c, "columns with nulls, feature {j}");
        let all = centering::BatchSummary::from_columns(&[&values[..]], &[], NanPolicy::Reject).unwrap();
        assert_eq!(all.mean::<f64>()[0], want, "columns, feature {j}");
    }
}

/// Large integer batches: the sums pass 2⁵³ (exact in the double-word
/// state), and the result is the same whatever the thread count.
#[test]
fn large_integer_sums_stay_exact() {
    let n = 1 << 16;
    let x = Array2::from_shape_fn((n, 3), |(i, j)| {
        if j == 0 {
            i32::MAX
        } else {
            (i as i32 % 1000) - 500 + j as i32
        }
    });
    let mut c = Centering::<f64>::new();
    for _ in 0..(1 << 8) {
        c.partial_fit_input(&x).unwrap(); // 2^24 rows: Σ of column 0 ≈ 2^55
    }
    let (sums, count) = exact_sums(&x.clone().into_dyn());
    let reps = 1i128 << 8;
    for j in 0..3 {
        assert_eq!(
            c.mean().unwrap()[j],
            rational(sums[j] * reps, count * 256, 53),
            "feature {j}"
        );
    }
    // Any pool size, bit for bit.
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let big = Array2::from_shape_fn((300_000, 2), |(i, j)| ((i * 7919 + j * 104_729) % 65_536) as u16);
        let m = pool.install(|| {
            let mut c = Centering::<f32>::new();
            c.partial_fit_input(&big).unwrap();
            c.mean().unwrap().to_vec()
        });
        let (sums, count) = exact_sums(&big.clone().into_dyn());
        let want: Vec<f32> = sums.iter().map(|&s| rational(s, count, 24) as f32).collect();
        assert_eq!(m, want, "{threads} threads");
    }
}

/// Big `u8` and `i8` batches — many leaves, lanes flushed many times — in
/// C order, Fortran order and as NHWC images: the exactly rounded mean.
#[test]
fn big_narrow_integer_batches_are_exact() {
    let n = 700_001;
    let c = Array2::from_shape_fn((n, 3), |(i, j)| ((i * 7919 + j * 31) % 256) as u8);
    let mut f = Array2::zeros((n, 3).f());
    f.assign(&c);
    let signed = c.mapv(|v| v.wrapping_sub(128) as i8);
    let images = Array::from_shape_fn((37, 61, 59, 3), |(a, b, c_, j)| {
        ((a * 7 + b * 13 + c_ * 17 + j * 101) % 256) as u8
    });
    let check = |x: ArrayD<u8>| {
        let (sums, count) = exact_sums(&x);
        let want: Vec<f32> = sums.iter().map(|&s| rational(s, count, 24) as f32).collect();
        let mut c = Centering::<f32>::new();
        c.partial_fit_input(&x).unwrap();
        assert_eq!(c.mean().unwrap().to_vec(), want, "{:?} {:?}", x.shape(), x.strides());
    };
    check(c.clone().into_dyn());
    check(f.into_dyn());
    check(images.into_dyn());
    let (sums, count) = exact_sums(&signed.clone().into_dyn());
    let want: Vec<f64> = sums.iter().map(|&s| rational(s, count, 53)).collect();
    let mut s = Centering::<f64>::new();
    s.partial_fit_input(&signed).unwrap();
    assert_eq!(s.mean().unwrap().to_vec(), want);
}

#[test]
fn integer_and_float_batches_mix() {
    let mut c = Centering::<f64>::new();
    c.partial_fit_input(&array![[1u8, 2], [3, 4]]).unwrap();
    c.partial_fit(&array![[0.5, 0.25]]).unwrap();
    c.partial_fit_input(&array![[10i16, -20]]).unwrap();
    let want = [(1.0 + 3.0 + 0.5 + 10.0) / 4.0, (2.0 + 4.0 + 0.25 - 20.0) / 4.0];
    assert_eq!(c.mean().unwrap().to_vec(), want.to_vec());
    // Weighted and masked integer batches, and the moving averages.
    let mut w = Centering::<f64>::new();
    w.partial_fit_input_weighted(&array![[2u32], [4]], &array![3.0, 1.0])
        .unwrap();
    assert_eq!(w.mean().unwrap()[0], 2.5);
    let mut m: Centering<f32> = CenteringParams::keras(0.5).build().unwrap();
    m.partial_fit_input(&array![[4u8], [8]]).unwrap();
    assert_eq!(m.mean().unwrap()[0], 3.0); // 0.5·0 + 0.5·6
    // A saved integer state reloads and keeps fitting exactly.
    #[cfg(feature = "serde")]
    {
        let again: Centering<f64> = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}

#[test]
fn inputs_keep_the_shape_and_error_rules() {
    let mut c = Centering::<f32>::new();
    c.fit_input(&array![[1u8, 2, 3]]).unwrap();
    assert_eq!(
        c.partial_fit_input(&array![[1u8, 2]]).unwrap_err(),
        CenteringError::FeatureMismatch { expected: 3, found: 2 }
    );
    assert_eq!(
        c.fit_input(&Array2::<u8>::zeros((0, 3))).unwrap_err(),
        CenteringError::EmptyFit { samples: 0 }
    );
    let mut out = Array2::<f32>::zeros((2, 3));
    assert!(matches!(
        c.transform_input_into(&array![[1u8, 2, 3]], &mut out),
        Err(CenteringError::OutputShape { .. })
    ));
    let y = c.center_batch_input(&Array3::<u16>::from_elem((2, 2, 3), 7)).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
    assert_eq!(c.n_samples_seen(), 5);
}

// ---------------------------------------------------------------------------
// Half precision (feature half).

#[cfg(feature = "half")]
mod half_precision {
    use super::*;
    use half::{bf16, f16};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// f16 and bf16 batches fit as the `f32` batch of their widened
        /// values does — the same bits on the fast layouts (C order,
        /// Fortran, reversed rows), within 1 ulp of the exact mean on every
        /// layout — on shapes with many leaves.
        #[test]
        fn half_batches_fit_as_their_f32_widening(
            n in 1usize..3000,
            d in 1usize..6,
            layout in 0u8..4,
            seed in any::<u32>(),
        ) {
            let values: Vec<f32> = (0..2 * n * d)
                .map(|i| {
                    let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                    100.0 + (h >> 20) as f32 / 64.0 - 32.0
                })
                .collect();
            let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            let brains: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            let x16 = laid_out(&halves, &[n, 2, d], layout);
            let xb = laid_out(&brains, &[n, 2, d], layout);
            for (wide, mean) in [
                (x16.mapv(f16::to_f32), {
                    let mut c = Centering::<f32>::new();
                    c.partial_fit_input(&x16).unwrap();
                    c.mean().unwrap().to_owned()
                }),
                (xb.mapv(bf16::to_f32), {
                    let mut c = Centering::<f32>::new();
                    c.partial_fit_input(&xb).unwrap();
                    c.mean().unwrap().to_owned()
                }),
            ] {
                let count = (2 * n) as f64;
                for j in 0..d {
                    let exact: f64 = wide.index_axis(Axis(2), j).iter().map(|&v| f64::from(v)).sum::<f64>() / count;
                    let ulp = f64::from(f32::EPSILON) * exact.abs();
                    prop_assert!((f64::from(mean[j]) - exact).abs() <= ulp, "{} vs {exact}", mean[j]);
                }
                if layout != 3 {
                    let mut same = Centering::<f32>::new();
                    same.partial_fit(&wide).unwrap();
                    prop_assert_eq!(mean.to_vec(), same.mean().unwrap().to_vec());
                }
            }
        }
    }

    /// f16 leaves hold 2¹⁸ values (their lane sums are exact in `f64`),
    /// `f32` leaves 2¹⁵: on a batch of many of either — values from f16's
    /// largest to its subnormals, of both signs, large enough that one leaf
    /// for the whole batch would round (checked) — the f16 fit's state is
    /// still the widened `f32` batch's, bit for bit, in C order and as NHWC
    /// images, on one thread and on the pool.
    #[test]
    fn large_f16_batches_keep_the_f32_state() {
        let n = 7 * 112_700; // a little over 3·2¹⁸ rows
        let value = |i: usize| {
            let h = (i as u32).wrapping_mul(2_654_435_761);
            let m = (h >> 16) as f32 / 65536.0 - 0.5;
            // The kind from high bits: every lane sees every kind.
            match h >> 30 {
                0 | 1 => 60_000.0 + m * 10_000.0, // up to 65504
                2 => m * 1e-6,                    // f16 subnormals
                _ => -100.0 + m,
            }
        };
        let x = Array2::from_shape_fn((n, 3), |(i, j)| f16::from_f32(value(3 * i + j)));
        let images = x.clone().into_shape_with_order((n / 7, 7, 1, 3)).unwrap();
        for x in [x.into_dyn(), images.into_dyn()] {
            let wide = x.mapv(f16::to_f32);
            let mut half = Centering::<f32>::new();
            half.fit_input(&x).unwrap();
            let mut single = Centering::<f32>::new();
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap()
                .install(|| single.fit_input(&x).unwrap());
            let mut same = Centering::<f32>::new();
            same.fit(&wide).unwrap();
            assert!(half == same, "f16 {:?} vs f32 {:?}", half.mean(), same.mean());
            assert!(single == same);
        }
    }

    /// Issue 9's reproduction: 10,000 f16 values near 100 gave a NaN mean.
    #[test]
    fn f16_and_bf16_means_are_right() {
        let vals: Vec<f64> = (0..10_000).map(|i| 100.0 + ((i * 37) % 100) as f64 / 64.0).collect();
        let h = Array2::from_shape_fn((10_000, 3), |(i, _)| f16::from_f64(vals[i]));
        let exact: f64 = h.column(0).iter().map(|v| v.to_f64()).sum::<f64>() / 10_000.0;
        let mut c = Centering::<f32>::new();
        c.partial_fit_input(&h).unwrap();
        let m = c.mean().unwrap();
        for j in 0..3 {
            assert!(
                (f64::from(m[j]) - exact).abs() <= f64::from(f32::EPSILON) * exact,
                "{} vs {exact}",
                m[j]
            );
        }
        // bf16 moving average: the debiased average of one batch is its mean.
        let b = h.mapv(|v| bf16::from_f32(v.to_f32()));
        let exact_b: f64 = b.column(0).iter().map(|v| v.to_f64()).sum::<f64>() / 10_000.0;
        let mut e = Centering::<f32>::builder().moving_average(0.99).build().unwrap();
        e.partial_fit_input(&b).unwrap();
        assert!((f64::from(e.mean().unwrap()[0]) - exact_b).abs() <= 1e-5 * exact_b);
        // NaN and infinity follow the policy.
        let bad = array![[f16::NAN], [f16::from_f32(1.0)]];
        assert!(matches!(
            Centering::<f32>::new().partial_fit_input(&bad),
            Err(CenteringError::NonFinite { .. })
        ));
        let mut ign = Centering::<f32>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .unwrap();
        ign.partial_fit_input(&bad).unwrap();
        assert_eq!(ign.mean().unwrap()[0], 1.0);
        // The mixed-precision recipe: f16 activations in, f32 out.
        let y = c.center_batch_input(&h.slice(s![..4, ..])).unwrap();
        assert_eq!(y.dim(), (4, 3));
    }
}

// ---------------------------------------------------------------------------
// Replicas.

/// The average of replicas in lock step is the moving average of the
/// averaged batch means.
#[test]
fn average_of_replicas_is_the_moving_average_of_averaged_batch_means() {
    let shards: Vec<Vec<Array2<f64>>> = (0..3)
        .map(|r| {
            (0..6)
                .map(|t| Array2::from_shape_fn((2 + r + t % 2, 2), |(i, j)| (r * 10 + t * 3 + i + j * 5) as f64 * 0.25))
                .collect()
        })
        .collect();
    for params in [
        CenteringParams::keras(0.9),
        CenteringParams::new().moving_average(0.7).start(EmaStart::Debiased),
        CenteringParams::new().moving_average(0.5).start(EmaStart::FirstBatch),
        CenteringParams::new().batch_average(),
    ] {
        let mut replicas: Vec<Centering<f64>> = (0..3).map(|_| params.build().unwrap()).collect();
        let mut of_means: Centering<f64> = params.build().unwrap();
        for t in 0..6 {
            let mut mean = Array1::<f64>::zeros(2);
            for (r, rep) in replicas.iter_mut().enumerate() {
                rep.partial_fit(&shards[r][t]).unwrap();
                mean = mean + shards[r][t].mean_axis(Axis(0)).unwrap() / 3.0;
            }
            of_means.partial_fit(&mean.insert_axis(Axis(0))).unwrap();
        }
        let avg = Centering::average(&replicas).unwrap();
        assert_eq!(avg.n_batches(), 6);
        assert_eq!(
            avg.n_samples_seen(),
            replicas.iter().map(|r| r.n_samples_seen()).sum::<u64>()
        );
        for (a, b) in avg.mean().unwrap().iter().zip(of_means.mean().unwrap()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{params:?}: {a} vs {b}");
        }
    }
    // Cumulative: the same as merging (the union, weighted by counts).
    let (mut a, mut b) = (Centering::<f64>::new(), Centering::<f64>::new());
    a.fit(&array![[1.0], [2.0], [3.0]]).unwrap();
    b.fit(&array![[10.0]]).unwrap();
    let avg = Centering::average(&[a.clone(), b.clone()]).unwrap();
    a.merge(&b).unwrap();
    assert_eq!(avg, a);
    assert_eq!(avg.mean().unwrap()[0], 4.0); // not (2 + 10) / 2
}

#[test]
fn replicas_out_of_step_are_errors() {
    let p = CenteringParams::keras(0.9);
    let mut a: Centering<f64> = p.build().unwrap();
    let mut b: Centering<f64> = p.build().unwrap();
    a.partial_fit(&array![[1.0]]).unwrap();
    b.partial_fit(&array![[1.0]]).unwrap();
    b.partial_fit(&array![[2.0]]).unwrap();
    assert!(matches!(
        Centering::average(&[a.clone(), b]),
        Err(CenteringError::IncompatibleMerge { .. })
    ));
    let other: Centering<f64> = CenteringParams::keras(0.5).build().unwrap();
    assert!(matches!(
        Centering::average(&[a.clone(), other]),
        Err(CenteringError::IncompatibleMerge { what: "mode", .. })
    ));
    let unfitted: Centering<f64> = p.build().unwrap();
    assert!(Centering::average(&[a.clone(), unfitted]).is_err());
    assert_eq!(Centering::<f64>::average(&[]).unwrap_err(), CenteringError::NoReplicas);
    // Per-feature steps must agree too (NaN-ignoring replicas).
    let q = CenteringParams::keras(0.9).nan_policy(NanPolicy::Ignore);
    let mut c: Centering<f64> = q.build().unwrap();
    let mut e: Centering<f64> = q.build().unwrap();
    c.partial_fit(&array![[1.0, 2.0]]).unwrap();
    e.partial_fit(&array![[1.0, f64::NAN]]).unwrap();
    assert!(Centering::average(&[c, e]).is_err());
}

// ---------------------------------------------------------------------------
// Masks.

/// A masked fit is the fit of the unmasked positions alone, in every mode.
#[test]
fn a_masked_fit_is_the_fit_of_the_unmasked_positions() {
    let x = Array3::from_shape_fn((3, 4, 2), |(n, t, j)| {
        (n * 8 + t * 2 + j) as f64 * 0.5 + if j == 1 { 100.0 } else { 0.0 }
    });
    let lengths = [4usize, 1, 2];
    let mask = Array2::from_shape_fn((3, 4), |(n, t)| t < lengths[n]);
    let kept: Vec<f64> = x
        .outer_iter()
        .enumerate()
        .flat_map(|(n, seq)| seq.slice(s![..lengths[n], ..]).iter().copied().collect::<Vec<_>>())
        .collect();
    let rows = Array2::from_shape_vec((kept.len() / 2, 2), kept).unwrap();
    for params in [
        CenteringParams::new(),
        CenteringParams::keras(0.9),
        CenteringParams::new().moving_average(0.8).start(EmaStart::FirstBatch),
        CenteringParams::new().batch_average(),
    ] {
        let mut masked: Centering<f64> = params.build().unwrap();
        let mut plain: Centering<f64> = params.build().unwrap();
        for _ in 0..2 {
            masked.partial_fit_masked(&x, &mask).unwrap();
            plain.partial_fit(&rows).unwrap();
        }
        for (a, b) in masked.mean().unwrap().iter().zip(plain.mean().unwrap()) {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{params:?}: {a} vs {b}");
        }
    }
    // Integer inputs and a per-sequence mask shape work too.
    let mut c = Centering::<f32>::new();
    c.partial_fit_masked(&Array3::<u8>::from_elem((2, 3, 1), 9), &array![true, false])
        .unwrap();
    assert_eq!(c.mean().unwrap()[0], 9.0);
    // A mask of the wrong shape is the weights' shape error.
    assert!(matches!(
        c.partial_fit_masked(&Array3::<u8>::zeros((2, 3, 1)), &array![true, false, true]),
        Err(CenteringError::WeightShape { .. })
    ));
}
