//! The cumulative mean: accuracy against the exact reference for every
//! layout, dimension and batch split; the transform family; empty batches;
//! determinism across thread counts.
//!
//! The accuracy tolerance, `|m − r| ≤ ulp_F(r) + C_F·mean|x|`, is derived in
//! `tests/common/mod.rs`.

mod common;

use centering::{Centering, CenteringError, CenteringParams, EmaStart, NanPolicy};
use common::*;
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, Dimension, IxDyn, ShapeBuilder, array, s};
use proptest::prelude::*;

/// Fits `batches` one `partial_fit` at a time.
fn fit_batches<F: TestFloat>(batches: &[ArrayViewD<'_, F>]) -> Centering<F> {
    let mut c = Centering::<F>::new();
    for b in batches {
        c.partial_fit(b).expect("finite batch");
    }
    c
}

fn check_mean_any_split<F: TestFloat>(case: &Case<F>, split: &Split) {
    let x = case.view();
    let batches = split_batches(&x, split);
    let c = fit_batches(&batches);
    let n = case.n_samples();
    assert_eq!(c.n_samples_seen(), n as u64);
    let non_empty = batches.iter().filter(|b| !b.is_empty()).count();
    assert_eq!(c.n_batches(), non_empty as u64);
    if n == 0 {
        assert!(!c.is_fitted());
        assert!(c.mean().is_none());
        assert!(c.weight_sums().is_none());
        return;
    }
    let refs = reference(&x, None, false);
    assert_mean_close(c.mean().unwrap(), &refs, "split mean");
    assert_eq!(c.n_features(), Some(case.d()));
    let ws = c.weight_sums().unwrap();
    assert!(ws.iter().all(|&w| w.wide() == n as f64), "weight sums {ws:?} != {n}");
    // The whole batch at once agrees too (and with itself, bit for bit).
    let mut whole = Centering::<F>::new();
    whole.fit(&x).unwrap();
    assert_mean_close(whole.mean().unwrap(), &refs, "whole mean");
    let mut again = Centering::<F>::new();
    again.fit(&x).unwrap();
    assert_eq!(whole, again);
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn mean_matches_reference_f64(case in cases::<f64>(), split in splits()) {
        check_mean_any_split(&case, &split);
    }

    #[test]
    fn mean_matches_reference_f32(case in cases::<f32>(), split in splits()) {
        check_mean_any_split(&case, &split);
    }

    /// The same logical data in any layout gives the same mean within the
    /// tolerance; the C-order copy is the yardstick.
    #[test]
    fn layout_does_not_matter(case in cases::<f64>()) {
        let x = case.view();
        prop_assume!(case.n_samples() > 0);
        let c_order = x.as_standard_layout().to_owned();
        let mut a = Centering::<f64>::new();
        a.fit(&x).unwrap();
        let mut b = Centering::<f64>::new();
        b.fit(&c_order).unwrap();
        let refs = reference(&x, None, false);
        assert_mean_close(a.mean().unwrap(), &refs, "layout");
        assert_mean_close(b.mean().unwrap(), &refs, "C order");
    }
}

/// Checks every transform entry point on `x` against the naive `x ∓ m`.
fn check_transforms<F: TestFloat>(c: &Centering<F>, x: &ArrayViewD<'_, F>, own: &Layout, out_layout: &Layout) {
    let m = c.mean().unwrap().to_owned();
    let naive = |add: bool| {
        let mut y = ArrayD::<F>::zeros(IxDyn(x.shape()));
        for (i, &v) in x.indexed_iter() {
            let mj = m[i[x.ndim() - 1]];
            y[&i] = if add { v + mj } else { v - mj };
        }
        y
    };
    for add in [false, true] {
        let what = if add { "inverse" } else { "transform" };
        let want = naive(add);
        let want = want.view();

        let y = if add { c.inverse_transform(x) } else { c.transform(x) }.unwrap();
        assert_same_bits(&y.view(), &want, what);

        // Into C, Fortran and random strided (possibly reversed) buffers.
        let ndim = x.ndim();
        for layout in [Layout::c(ndim), Layout::f(ndim), out_layout.writable()] {
            let mut base = layout.allocate(x.shape(), || F::narrow(7.0));
            let mut out = layout.view_mut(&mut base, x.shape());
            if add {
                c.inverse_transform_into(x, &mut out).unwrap();
            } else {
                c.transform_into(x, &mut out).unwrap();
            }
            assert_same_bits(&out.view(), &want, &format!("{what}_into {layout:?}"));
        }

        // In place, in the input's own layout (made writable), another random
        // layout and C order.
        for layout in [own.writable(), out_layout.writable(), Layout::c(ndim)] {
            let mut base = copy_into_layout(x, &layout);
            let mut v = layout.view_mut(&mut base, x.shape());
            if add {
                c.inverse_transform_inplace(&mut v).unwrap();
            } else {
                c.transform_inplace(&mut v).unwrap();
            }
            assert_same_bits(&v.view(), &want, &format!("{what}_inplace {layout:?}"));
        }
    }

    // The round trip is exact up to two roundings: |x' − x| ≤ ε·(|x| + |m|).
    let back = c.inverse_transform(&c.transform(x).unwrap()).unwrap();
    for ((i, &b), &v) in back.indexed_iter().zip(x.iter()) {
        let mj = m[i[x.ndim() - 1]].wide();
        let tol = F::EPS * (v.wide().abs() + mj.abs());
        assert_close(b.wide(), v.wide(), tol, &format!("round trip at {:?}", i.slice()));
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn transforms_agree_f64(case in cases::<f64>(), fit in cases::<f64>(), out in layouts(5)) {
        check_transform_case(&case, &fit, &out);
    }

    #[test]
    fn transforms_agree_f32(case in cases::<f32>(), fit in cases::<f32>(), out in layouts(5)) {
        check_transform_case(&case, &fit, &out);
    }
}

fn check_transform_case<F: TestFloat>(case: &Case<F>, fit: &Case<F>, out: &Layout) {
    let x = case.view();
    let d = case.d();
    // Fit on unrelated data with the same D (the first whole rows of
    // another random case), or on a constant row if it has too few values.
    let mut c = Centering::<F>::new();
    let vals: Vec<F> = fit.view().iter().copied().collect();
    let rows = vals.len() / d;
    if rows > 0 {
        c.fit(&Array2::from_shape_vec((rows, d), vals[..rows * d].to_vec()).unwrap())
            .unwrap();
    } else {
        c.fit(&Array1::from_elem(d, F::narrow(0.5))).unwrap();
    }
    let ndim = x.ndim();
    let out_layout = Layout {
        perm: out.perm.iter().copied().filter(|&a| a < ndim).collect(),
        fortran: out.fortran,
        steps: out.steps[..ndim].to_vec(),
        offsets: out.offsets[..ndim].to_vec(),
        pads: out.pads[..ndim].to_vec(),
        broadcast: vec![false; ndim],
    };
    check_transforms(&c, &x, &case.layout, &out_layout);

    // fit_transform = fit then transform.
    if case.n_samples() > 0 {
        let mut a = Centering::<F>::new();
        let y = a.fit_transform(&x).unwrap();
        let mut b = Centering::<F>::new();
        b.fit(&x).unwrap();
        assert_eq!(a, b);
        assert_same_bits(&y.view(), &b.transform(&x).unwrap().view(), "fit_transform");
    }
}

#[test]
fn transform_keeps_fortran_order() {
    let x = Array2::from_shape_fn((5, 3).f(), |(i, j)| (i * 3 + j) as f64);
    let mut c = Centering::<f64>::new();
    c.fit(&x).unwrap();
    let y = c.transform(&x).unwrap();
    assert!(y.t().is_standard_layout(), "a Fortran input gives a Fortran output");
    let z = c.transform(&x.as_standard_layout()).unwrap();
    assert!(z.is_standard_layout());
    assert_eq!(y, z);
}

#[test]
fn one_dimensional_input_is_one_sample() {
    let x = array![1.5f64, -2.0, 1e10];
    let mut a = Centering::<f64>::new();
    a.partial_fit(&x).unwrap();
    assert_eq!(a.n_samples_seen(), 1);
    assert_eq!(a.n_features(), Some(3));
    assert_eq!(a.mean().unwrap(), x);
    let mut b = Centering::<f64>::new();
    b.partial_fit(&x.clone().insert_axis(Axis(0))).unwrap();
    assert_eq!(a, b);
    // Two 1-D samples average.
    a.partial_fit(&array![2.5, 0.0, -1e10]).unwrap();
    assert_eq!(a.mean().unwrap(), array![2.0, -1.0, 0.0]);
    assert_eq!(a.n_samples_seen(), 2);
    // 1-D transform is 1-D.
    let y = a.transform(&array![2.0, -1.0, 1.0]).unwrap();
    assert_eq!(y, array![0.0, 0.0, 1.0]);
}

#[test]
fn fit_forgets_previous_state() {
    for params in all_params() {
        let mut a: Centering<f64> = params.build().unwrap();
        a.partial_fit(&array![[100.0, -3.0], [7.0, 8.0]]).unwrap();
        a.partial_fit(&array![[1.0, 2.0]]).unwrap();
        a.fit(&array![[1.0, 2.0], [3.0, 5.0]]).unwrap();
        let mut b: Centering<f64> = params.build().unwrap();
        b.partial_fit(&array![[1.0, 2.0], [3.0, 5.0]]).unwrap();
        assert_eq!(a, b, "{params:?}");
        assert_eq!(a.n_batches(), 1);
        assert_eq!(a.n_samples_seen(), 2);
        if params.check().unwrap().start() != Some(EmaStart::Zero) {
            // One batch: its mean (the zero-started average is 10% of it).
            assert_eq!(a.mean().unwrap(), array![2.0, 3.5], "{params:?}");
        }
        // fit with a batch that has nothing to learn is an error that keeps
        // the state (it used to forget it, and fit_transform then failed
        // with NotFitted on an estimator fitted a moment before).
        let kept = a.clone();
        let empty = Array2::<f64>::zeros((0, 2));
        assert_eq!(
            a.fit(&empty).unwrap_err(),
            CenteringError::EmptyFit { samples: 0 },
            "{params:?}"
        );
        assert_eq!(
            a.fit_transform(&empty).unwrap_err(),
            CenteringError::EmptyFit { samples: 0 }
        );
        let w0 = array![0.0, 0.0];
        let x2 = array![[1.0, 2.0], [3.0, 4.0]];
        assert_eq!(
            a.fit_weighted(&x2, &w0).unwrap_err(),
            CenteringError::EmptyFit { samples: 2 }
        );
        assert!(
            a == kept && a.mean() == kept.mean(),
            "{params:?}: a failed fit changed the state"
        );
        // reset also forgets, keeps the parameters.
        b.reset();
        assert!(!b.is_fitted());
        assert_eq!(b.params(), &params.check().unwrap());
        assert_eq!(b.n_samples_seen(), 0);
        assert_eq!(b.n_batches(), 0);
    }
}

/// Every mode and policy, for tests that must hold in all of them.
fn all_params() -> Vec<CenteringParams> {
    let mut v = vec![CenteringParams::new(), CenteringParams::new().batch_average()];
    for start in [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased] {
        v.push(CenteringParams::new().moving_average(0.9).start(start));
    }
    let ignore: Vec<_> = v.iter().map(|p| p.nan_policy(NanPolicy::Ignore)).collect();
    v.extend(ignore);
    v
}

#[test]
fn empty_batches_are_no_ops() {
    let empties: Vec<ArrayD<f64>> = vec![
        ArrayD::zeros(IxDyn(&[0, 3])),
        ArrayD::zeros(IxDyn(&[2, 0, 3])),
        ArrayD::zeros(IxDyn(&[0, 0, 3])),
        ArrayD::zeros(IxDyn(&[4, 5, 0, 3])),
    ];
    for params in all_params() {
        let mut c: Centering<f64> = params.build().unwrap();
        for e in &empties {
            c.partial_fit(e).unwrap();
            c.partial_fit_weighted(e, &ArrayD::zeros(IxDyn(&e.shape()[..e.ndim() - 1])))
                .unwrap();
            let y = c.center_batch(e).unwrap();
            assert_eq!(y.shape(), e.shape());
            assert!(!c.is_fitted(), "{params:?}: an empty batch fitted the estimator");
            assert_eq!(c.n_batches(), 0);
            assert_eq!(c.n_samples_seen(), 0);
        }
        c.partial_fit(&array![[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]).unwrap();
        let before = c.clone();
        let mean_before = c.mean().unwrap().to_owned();
        for e in &empties {
            c.partial_fit(e).unwrap();
            c.partial_fit_weighted(e, &ArrayD::zeros(IxDyn(&e.shape()[..e.ndim() - 1])))
                .unwrap();
            let mut e2 = e.clone();
            c.center_batch_inplace(&mut e2).unwrap();
            let y = c.transform(e).unwrap();
            assert_eq!(y.shape(), e.shape());
            assert_eq!(c, before, "{params:?}: an empty batch changed the state");
            assert_eq!(c.n_batches(), 1, "{params:?}: an empty batch counted as a step");
            assert_eq!(c.mean().unwrap(), mean_before);
        }
    }
}

#[test]
fn broadcast_and_stride_zero_inputs() {
    // A (4, 3) view of one row: every sample equal.
    let row = array![1.0f64, -2.0, 3.5];
    let x = row.broadcast((4, 3)).unwrap();
    let mut c = Centering::<f64>::new();
    c.fit(&x).unwrap();
    assert_eq!(c.mean().unwrap(), row);
    assert_eq!(c.n_samples_seen(), 4);
    // A (5, 4) view of one column: every feature equal per sample.
    let col = array![[1.0f64], [2.0], [3.0], [4.0], [10.0]];
    let x = col.broadcast((5, 4)).unwrap();
    c.fit(&x).unwrap();
    assert_eq!(c.mean().unwrap(), Array1::from_elem(4, 4.0));
    // Transform of a broadcast view.
    let y = c.transform(&x).unwrap();
    assert_eq!(y.column(2), array![-3.0, -2.0, -1.0, 0.0, 6.0]);
}

/// Hand-picked cases: 1 sample, 1 feature, lengths just off the block and
/// leaf sizes, a huge constant offset, values near `MAX`, subnormals.
#[test]
fn edge_cases() {
    let mut c = Centering::<f64>::new();

    // A huge offset with a tiny spread: exact.
    let x = Array2::from_shape_fn((1001, 2), |(i, j)| 1e15 + (i as f64) * if j == 0 { 1.0 } else { -1.0 });
    c.fit(&x).unwrap();
    assert_eq!(c.mean().unwrap(), array![1e15 + 500.0, 1e15 - 500.0]);

    // Values near MAX: the mean is finite and exact.
    c.fit(&array![
        [f64::MAX, -f64::MAX],
        [f64::MAX, -f64::MAX],
        [f64::MAX, f64::MAX]
    ])
    .unwrap();
    assert_eq!(c.mean().unwrap(), array![f64::MAX, -f64::MAX / 3.0]);
    // The exact mean 5/6·MAX, computed in f64 and rounded once to f32.
    let mut c32 = Centering::<f32>::new();
    c32.fit(&array![[f32::MAX], [f32::MAX], [f32::MAX / 2.0]]).unwrap();
    let want = (f64::from(f32::MAX) * 5.0 / 6.0) as f32;
    assert!(
        (c32.mean().unwrap()[0] - want).abs() <= want.ulp() as f32,
        "{}",
        c32.mean().unwrap()
    );
    // ... across batches and the weighted path too.
    c.fit(&array![[f64::MAX]]).unwrap();
    c.partial_fit(&array![[f64::MAX], [f64::MAX / 2.0]]).unwrap();
    c.partial_fit_weighted(&array![[f64::MAX]], &array![2.0]).unwrap();
    // The exact mean (MAX + MAX + MAX/2 + 2·MAX) / 5 = 0.9·MAX, by the exact
    // reference on the values scaled by 2⁻¹⁶ (exact for these values).
    let k = 2f64.powi(16);
    let nums = [1.0, 1.0, 0.5, 2.0].map(|f| f * (f64::MAX / k));
    let want = FeatureRef {
        mean: exact_quotient(&nums, &[1.0, 1.0, 1.0, 2.0]) * k,
        abs_mean: 0.0,
        weight: 5.0,
        count: 4,
    };
    assert_mean_close(c.mean().unwrap(), &[want], "near MAX, weighted, across batches");

    // Subnormals: exact sums; the mean of 2⁻¹⁰⁷⁴·{1, 2, 3} is 2·2⁻¹⁰⁷⁴.
    let tiny = f64::from_bits(1);
    c.fit(&array![[tiny], [2.0 * tiny], [3.0 * tiny]]).unwrap();
    assert_eq!(c.mean().unwrap()[0], 2.0 * tiny);
    let tiny32 = f32::from_bits(1);
    c32.fit(&array![[tiny32, 1.0], [3.0 * tiny32, -1.0]]).unwrap();
    assert_eq!(c32.mean().unwrap(), array![2.0 * tiny32, 0.0]);

    // Catastrophic cancellation: the exact mean is tiny.
    c.fit(&array![[1e300], [1.0], [-1e300], [2.0]]).unwrap();
    assert_eq!(c.mean().unwrap()[0], 0.75);
    c32.fit(&array![[1e30f32], [1.0], [-1e30], [2.0]]).unwrap();
    assert_eq!(c32.mean().unwrap()[0], 0.75);

    // Thirds: correctly rounded division.
    c.fit(&array![[1.0], [0.0], [0.0]]).unwrap();
    assert_eq!(c.mean().unwrap()[0], 1.0 / 3.0);

    // Lengths around the block, period and leaf sizes, 1 to 3 features.
    for d in [1usize, 2, 3] {
        for n in [
            1usize,
            15,
            16,
            17,
            63,
            64,
            65,
            (1 << 15) / d - 1,
            (1 << 15) / d,
            (1 << 15) / d + 1,
        ] {
            let x = Array2::from_shape_fn((n, d), |(i, j)| (i * 7 + j) as f64 * 0.1);
            c.fit(&x).unwrap();
            assert_mean_close(
                c.mean().unwrap(),
                &reference(&x.view().into_dyn(), None, false),
                &format!("n={n} d={d}"),
            );
            let xf = x.mapv(|v| v as f32);
            c32.fit(&xf).unwrap();
            assert_mean_close(
                c32.mean().unwrap(),
                &reference(&xf.view().into_dyn(), None, false),
                &format!("f32 n={n} d={d}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Large arrays: the parallel path, determinism across thread counts
// ---------------------------------------------------------------------------

fn large_f64(rows: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = Rng(seed);
    Array2::from_shape_simple_fn((rows, d), || 1e3 + rng.unit() * 10.0)
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Fits `x` (optionally weighted) with `params` on the global pool and in
/// pools of 1, 2 and 3 threads: the states and the transforms must be
/// identical bit for bit.
fn assert_thread_independent<F: TestFloat>(
    params: &CenteringParams,
    x: &ArrayViewD<'_, F>,
    w: Option<&ArrayViewD<'_, F>>,
    what: &str,
) -> Centering<F> {
    let run = || {
        let mut c: Centering<F> = params.build().unwrap();
        match w {
            Some(w) => c.fit_weighted(x, w).unwrap(),
            None => c.fit(x).unwrap(),
        };
        let y = c.transform(x).unwrap();
        (c, y)
    };
    let (c0, y0) = run();
    for threads in [1, 2, 3] {
        let (c, y) = in_pool(threads, run);
        assert_eq!(c, c0, "{what}: state differs with {threads} threads");
        let (m, m0) = (c.mean().unwrap(), c0.mean().unwrap());
        for (a, b) in m.iter().zip(m0.iter()) {
            assert!(
                same_bits(*a, *b),
                "{what}: mean differs with {threads} threads: {a:?} vs {b:?}"
            );
        }
        assert_same_bits(
            &y.view(),
            &y0.view(),
            &format!("{what}: transform with {threads} threads"),
        );
    }
    c0
}

#[test]
fn large_c_order_is_deterministic_and_accurate() {
    let x = large_f64(40_000, 7, 1); // 280 000 elements > 2¹⁸, the parallel threshold
    let c = assert_thread_independent(&CenteringParams::new(), &x.view().into_dyn(), None, "C order f64");
    assert_mean_close(
        c.mean().unwrap(),
        &reference(&x.view().into_dyn(), None, false),
        "large C order",
    );

    let x32 = x.mapv(|v| v as f32);
    let c = assert_thread_independent(&CenteringParams::new(), &x32.view().into_dyn(), None, "C order f32");
    assert_mean_close(
        c.mean().unwrap(),
        &reference(&x32.view().into_dyn(), None, false),
        "large C order f32",
    );
}

#[test]
fn large_other_layouts_are_deterministic() {
    // Fortran order with ≥ 2¹⁸ samples per feature (each column takes the
    // parallel path).
    let mut rng = Rng(2);
    let xf = Array2::from_shape_simple_fn((270_000, 2).f(), || rng.unit() * 4.0 - 1.0);
    let c = assert_thread_independent(&CenteringParams::new(), &xf.view().into_dyn(), None, "Fortran");
    assert_mean_close(
        c.mean().unwrap(),
        &reference(&xf.view().into_dyn(), None, false),
        "large Fortran",
    );

    // Images (N, H, W, C) in f32, reversed along H and strided along W.
    let mut rng = Rng(3);
    let img = ndarray::Array4::from_shape_simple_fn((24, 64, 128, 3), || (rng.unit() * 100.0) as f32);
    let v = img.slice(s![.., ..;-1, ..;2, ..]).into_dyn();
    assert!(v.len() > 1 << 18);
    let c = assert_thread_independent(&CenteringParams::new(), &v, None, "strided images");
    assert_mean_close(c.mean().unwrap(), &reference(&v, None, false), "large strided images");

    // The general path: weights and missing values.
    let x = large_f64(90_000, 3, 4);
    let mut rng = Rng(5);
    let w = Array1::from_shape_simple_fn(90_000, || rng.below(4) as f64);
    let c = assert_thread_independent(
        &CenteringParams::new(),
        &x.view().into_dyn(),
        Some(&w.view().into_dyn()),
        "weighted",
    );
    assert_mean_close(
        c.mean().unwrap(),
        &reference(&x.view().into_dyn(), Some(&w.view().into_dyn()), false),
        "large weighted",
    );
    let mut xn = x.clone();
    xn.iter_mut().step_by(7).for_each(|v| *v = f64::NAN);
    let ignore = CenteringParams::new().nan_policy(NanPolicy::Ignore);
    let c = assert_thread_independent(&ignore, &xn.view().into_dyn(), None, "NaN ignored");
    assert_mean_close(
        c.mean().unwrap(),
        &reference(&xn.view().into_dyn(), None, true),
        "large NaN ignored",
    );
}
