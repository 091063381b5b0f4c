//! Every kernel path against a naive reference: each layout class (rows,
//! columns, strided, broadcast), each class of `d` (1, 3, lane period,
//! wide, tiled), sequential and parallel sizes, f32 and f64; plus
//! bit-for-bit determinism across thread counts.

use centering::{BatchSummary, Centering, CenteringError, CenteringParams, EmaStart, NanPolicy};
use ndarray::{Array, ArrayD, ArrayViewD, Axis, IxDyn, ShapeBuilder, Slice};
use proptest::prelude::*;

mod common;
use common::{Rng, fsum};

/// The mean of each feature: the shared exact sum, divided once.
fn naive_mean(x: &ArrayViewD<'_, f64>) -> Vec<f64> {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let n = (x.len() / d) as f64;
    (0..d)
        .map(|j| fsum(x.index_axis(Axis(last), j).iter().copied()) / n)
        .collect()
}

/// Deterministic pseudo-random values with a per-feature offset.
fn data(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..len).map(|i| rng.unit() * 5.0 + (i % 7) as f64 * 100.0).collect()
}

/// Values are in [-5, 605): the mean of n of them is exact to a few ulps of 605.
fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12 * 605.0, "got {g}, want {w}");
    }
}

fn fit_f64(x: &ArrayViewD<'_, f64>) -> Vec<f64> {
    let mut c = Centering::<f64>::new();
    c.fit(x).unwrap();
    c.mean().unwrap().to_vec()
}

fn fit_f32(x: &ArrayViewD<'_, f64>) -> Vec<f64> {
    let x32 = x.mapv(|v| v as f32);
    let mut c = Centering::<f32>::new();
    c.fit(&x32).unwrap();
    c.mean().unwrap().iter().map(|&v| v as f64).collect()
}

/// Checks fit, transform and in-place against the reference on one view.
fn check_view(x: ArrayViewD<'_, f64>) {
    let want = naive_mean(&x);
    assert_close(&fit_f64(&x), &want);
    // f32: the inputs are rounded to f32 first; compare with their mean.
    let x32 = x.mapv(|v| v as f32 as f64);
    let want32 = naive_mean(&x32.view());
    for (g, w) in fit_f32(&x).iter().zip(&want32) {
        assert!((g - w).abs() <= 605.0 * f32::EPSILON as f64, "f32: got {g}, want {w}");
    }
    let mut c = Centering::<f64>::new();
    c.fit(&x).unwrap();
    let m = c.mean().unwrap().to_owned();
    let y = c.transform(&x).unwrap();
    let expect = &x - &m;
    assert_eq!(y, expect);
    let mut z = x.to_owned();
    c.transform_inplace(&mut z).unwrap();
    assert_eq!(z, expect);
    // Into a Fortran-ordered buffer (a layout different from most inputs).
    let mut out = Array::zeros(IxDyn(x.shape()).f());
    c.transform_into(&x, &mut out).unwrap();
    assert_eq!(out, expect);
    let back = c.inverse_transform(&y).unwrap();
    for (a, b) in back.iter().zip(x.iter()) {
        assert!((a - b).abs() <= 1e-12 * 605.0);
    }
}

fn shaped(shape: &[usize], seed: u64) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), data(shape.iter().product(), seed)).unwrap()
}

#[test]
fn rows_for_every_class_of_d() {
    // 1: pure reduction; 3: images; 64: a period; 300: p = d; 1100: tiled.
    for &d in &[1usize, 3, 5, 16, 64, 100, 300, 1100] {
        for &n in &[1usize, 2, 7, 129] {
            check_view(shaped(&[n, d], d as u64 * 31 + n as u64).view());
        }
    }
}

#[test]
fn columns_fortran_order() {
    for &d in &[2usize, 3, 64] {
        let x = shaped(&[257, d], 7);
        let f = {
            let mut f = Array::zeros(IxDyn(&[257, d]).f());
            f.assign(&x);
            f
        };
        assert!(f.as_slice_memory_order().is_some() && !f.is_standard_layout());
        check_view(f.view());
    }
}

#[test]
fn strided_reversed_and_broadcast() {
    let x = shaped(&[40, 6, 9], 3);
    check_view(x.slice_axis(Axis(2), Slice::new(0, None, 2)).into_dyn()); // step on features
    check_view(x.slice_axis(Axis(0), Slice::new(0, None, -3)).into_dyn()); // reversed samples
    check_view(x.slice_axis(Axis(2), Slice::new(0, None, -1)).into_dyn()); // reversed features
    check_view(x.view().permuted_axes(vec![1, 0, 2]).into_dyn()); // permuted samples
    let row = shaped(&[5], 9);
    check_view(row.broadcast(IxDyn(&[33, 5])).unwrap()); // broadcast samples
}

#[test]
fn parallel_sizes_every_layout() {
    // Above the parallel threshold (2^18 elements) and the leaf (2^15).
    let x = shaped(&[100_000, 3], 11);
    check_view(x.view());
    check_view(x.slice_axis(Axis(0), Slice::new(1, None, 2)).into_dyn());
    let mut f = Array::zeros(IxDyn(&[100_000, 3]).f());
    f.assign(&x);
    check_view(f.view());
    check_view(shaped(&[300_000, 1], 12).view());
    check_view(shaped(&[40, 3000], 13).view());
}

fn bits(c: &Centering<f64>) -> Vec<u64> {
    c.mean().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn bit_identical_for_any_thread_count() {
    // Chunks of 40_000 × 7 = 280_000 elements: above the parallel threshold,
    // below the size handed to the pool whole, so a call from outside the
    // pool splits its root between the caller and the pool.
    let x = shaped(&[80_000, 7], 21);
    let f = {
        let mut f = Array::zeros(IxDyn(&[80_000, 7]).f());
        f.assign(&x);
        f
    };
    let views = [
        x.view(),
        f.view(),
        x.slice_axis(Axis(1), Slice::new(0, None, 2)).into_dyn(),
    ];
    for v in views {
        let fit = || {
            let mut c = Centering::<f64>::new();
            for chunk in v.axis_chunks_iter(Axis(0), 40_000) {
                c.partial_fit(&chunk).unwrap();
            }
            c
        };
        // From this (non-pool) thread, then inside pools of 1, 2, 3 threads.
        let mut results = vec![fit()];
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            results.push(pool.install(fit));
        }
        for r in &results[1..] {
            assert_eq!(bits(r), bits(&results[0]));
            assert_eq!(r, &results[0]);
        }
    }
}

#[test]
fn calls_from_inside_a_rayon_pool() {
    let x = shaped(&[200_000, 2], 5);
    let want = naive_mean(&x.view());
    let got: Vec<Vec<f64>> = {
        use rayon::prelude::*;
        (0..4).into_par_iter().map(|_| fit_f64(&x.view())).collect()
    };
    for g in got {
        assert_close(&g, &want);
    }
}

/// Weighted and NaN-ignoring batches take the general path: check it on
/// every layout and at parallel sizes.
#[test]
fn general_path_weights_and_missing() {
    let x = shaped(&[100_000, 3], 17);
    let w = Array::from_shape_fn(100_000, |i| (i % 3) as f64);
    let mut c = Centering::<f64>::new();
    c.fit_weighted(&x, &w).unwrap();
    // The reference: rows repeated by their integer weight.
    let (mut s, mut tot) = (vec![0.0f64; 3], 0.0);
    for (row, &wi) in x.lanes(Axis(1)).into_iter().zip(w.iter()) {
        for j in 0..3 {
            s[j] += wi * row[j];
        }
        tot += wi;
    }
    let want: Vec<f64> = s.iter().map(|v| v / tot).collect();
    assert_close(c.mean().unwrap().as_slice().unwrap(), &want);

    let mut xn = x.clone();
    for (i, v) in xn.iter_mut().enumerate() {
        if i % 5 == 0 {
            *v = f64::NAN;
        }
    }
    let mut c: Centering<f64> = CenteringParams::new().nan_policy(NanPolicy::Ignore).build().unwrap();
    c.fit(&xn).unwrap();
    for j in 0..3 {
        let col: Vec<f64> = xn
            .index_axis(Axis(1), j)
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let want = col.iter().sum::<f64>() / col.len() as f64;
        assert!((c.mean().unwrap()[j] - want).abs() <= 1e-12 * 605.0);
    }
}

fn layouts() -> impl Strategy<Value = (Vec<usize>, u8, u64)> {
    (prop::collection::vec(1usize..9, 1..5), 0u8..5, any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random shapes and one of five layouts: every plan the kernels know.
    #[test]
    fn any_layout_matches_the_reference((shape, layout, seed) in layouts()) {
        let x = shaped(&shape, seed);
        let last = shape.len() - 1;
        match layout {
            0 => check_view(x.view()),
            1 => {
                let mut f = Array::zeros(IxDyn(&shape).f());
                f.assign(&x);
                check_view(f.view());
            }
            2 => check_view(x.slice_axis(Axis(0), Slice::new(0, None, -1)).into_dyn()),
            3 => check_view(x.slice_axis(Axis(last), Slice::new(0, None, 2)).into_dyn()),
            _ => {
                let mut axes: Vec<usize> = (0..last).rev().collect();
                axes.push(last);
                check_view(x.view().permuted_axes(axes));
            }
        }
    }
}

/// The sums of a weighted or NaN-skipping 2-D batch are one arithmetic on
/// every layout — C order and Fortran order (vectorised across features),
/// column-strided and reversed views (one lane at a time) — so the fits are
/// bit-identical, and within the bound of the exact mean.
fn weighted_and_missing_agree_on_every_layout(n: usize, d: usize, nan_every: usize, weighted: bool, seed: u64) {
    // Magnitudes over 30 decades: the pairs' low parts then depend on the
    // order of the additions, so agreement means the same order.
    let base = shaped(&[n, d], seed);
    let mut x = Array::from_shape_fn(IxDyn(&[n, d]), |ix| {
        base[&ix] * 10f64.powi(((ix[0] * 7 + ix[1] * 3) % 30) as i32 - 15)
    });
    if nan_every > 0 {
        for (i, v) in x.iter_mut().enumerate() {
            if i % nan_every == nan_every / 2 {
                *v = f64::NAN;
            }
        }
    }
    let w = Array::from_shape_fn(n, |i| [0.0, 0.5, 3.0, 1e-3, 7.25, 1.0][(i + seed as usize) % 6]).into_dyn();
    let policy = if nan_every > 0 {
        NanPolicy::Ignore
    } else {
        NanPolicy::Reject
    };
    let fit = |x: ArrayViewD<'_, f64>, w: ArrayViewD<'_, f64>| {
        let mut c: Centering<f64> = CenteringParams::new().nan_policy(policy).build().unwrap();
        if weighted {
            c.partial_fit_weighted(&x, &w).unwrap();
        } else {
            c.partial_fit(&x).unwrap();
        }
        c
    };
    let c_order = fit(x.view(), w.view());
    let mut fortran = Array::zeros(IxDyn(&[n, d]).f());
    fortran.assign(&x);
    // Every other column of a wider array: the unit-stride axis has steps.
    let mut wide = Array::zeros(IxDyn(&[n, 2 * d]));
    wide.slice_axis_mut(Axis(1), Slice::new(0, None, 2)).assign(&x);
    let strided = wide.slice_axis(Axis(1), Slice::new(0, None, 2));
    // Rows reversed (weights with them): the same samples in another order.
    let rev_x = x.slice_axis(Axis(0), Slice::new(0, None, -1));
    let rev_w = w.slice_axis(Axis(0), Slice::new(0, None, -1));
    let mut rev_c = Array::zeros(IxDyn(&[n, d]));
    rev_c.assign(&rev_x);
    let rev_w_c = rev_w.to_owned();
    let bits = |c: &Centering<f64>| c.mean().map(|m| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    for (name, got) in [
        ("Fortran", fit(fortran.view(), w.view())),
        ("column-strided", fit(strided.view(), w.view())),
    ] {
        assert_eq!(bits(&got), bits(&c_order), "{name} vs C order, {n}×{d}");
        // `==` compares the states: every sum and weight pair, bit for bit.
        assert_eq!(got, c_order, "{name} vs C order, {n}×{d}: the states, pair by pair");
    }
    assert_eq!(
        bits(&fit(rev_x.view(), rev_w.view())),
        bits(&fit(rev_c.view(), rev_w_c.view())),
        "reversed rows vs their C-order copy"
    );
    let refs = common::reference(&x.view(), weighted.then(|| w.view()).as_ref(), nan_every > 0);
    match c_order.mean() {
        Some(mean) => common::assert_mean_close(mean, &refs, "C order against the exact mean"),
        // Nothing to learn (every weight zero, or every value NaN).
        None => assert!(refs.iter().all(|r| r.weight == 0.0)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random sizes, including several leaves, parallel nodes and feature
    /// counts across the column kernel's groups of 32 (up to three).
    #[test]
    fn weighted_and_missing_fits_are_layout_independent(
        n in 1usize..3000,
        d in 1usize..80,
        nan_every in prop::sample::select(vec![0usize, 3, 10, 97]),
        weighted in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(weighted || nan_every > 0);
        weighted_and_missing_agree_on_every_layout(n, d, nan_every, weighted, seed);
    }
}

/// Large enough for the parallel tree and the column groups' split across
/// the pool.
#[test]
fn weighted_and_missing_fits_are_layout_independent_at_parallel_sizes() {
    weighted_and_missing_agree_on_every_layout(40_000, 37, 11, true, 5);
    weighted_and_missing_agree_on_every_layout(40_000, 37, 0, true, 6);
    weighted_and_missing_agree_on_every_layout(40_000, 64, 10, false, 7);
}

/// Outputs larger than the streaming threshold (8 MiB), written into a
/// caller's buffer with non-temporal stores where the CPU has them: the same
/// bits as the fresh-array transform (ordinary stores), for `F` inputs in C
/// and Fortran order, and for `u8` inputs widened to `f32`.
#[test]
fn large_into_outputs_match_the_fresh_transform() {
    let x = Array::from_shape_fn((700_001, 3), |(i, j)| ((i * 7919 + j * 31) % 1000) as f64 * 0.37 - 11.0);
    let mut c = Centering::<f64>::new();
    c.fit(&x).unwrap();
    let mut out = Array::zeros(x.raw_dim());
    c.transform_into(&x, &mut out).unwrap();
    assert_eq!(out, c.transform(&x).unwrap());
    c.inverse_transform_into(&x, &mut out).unwrap();
    assert_eq!(out, c.inverse_transform(&x).unwrap());
    let mut f = Array::zeros(x.raw_dim().f());
    f.assign(&x);
    let mut out_f = Array::zeros(x.raw_dim().f());
    c.transform_into(&f, &mut out_f).unwrap();
    assert_eq!(out_f, c.transform(&f).unwrap());
    c.inverse_transform_into(&f, &mut out_f).unwrap();
    assert_eq!(out_f, c.inverse_transform(&f).unwrap());

    let x32 = x.mapv(|v| v as f32);
    let mut c32 = Centering::<f32>::new();
    c32.fit(&x32).unwrap();
    let mut out32 = Array::zeros(x32.raw_dim());
    c32.transform_into(&x32, &mut out32).unwrap();
    assert_eq!(out32, c32.transform(&x32).unwrap());
    let f32s = f.mapv(|v| v as f32);
    let mut out32_f = Array::zeros(x32.raw_dim().f());
    c32.transform_into(&f32s, &mut out32_f).unwrap();
    assert_eq!(out32_f, c32.transform(&f32s).unwrap());

    let images = Array::from_shape_fn((97, 100, 100, 3), |(a, b, c_, j)| {
        ((a * 7 + b * 13 + c_ * 17 + j * 101) % 256) as u8
    });
    let mut cu = Centering::<f32>::new();
    cu.fit_input(&images).unwrap();
    let mut out_u = Array::zeros(images.raw_dim());
    cu.transform_input_into(&images, &mut out_u).unwrap();
    assert_eq!(out_u, cu.transform_input(&images).unwrap());
    let m = cu.mean().unwrap();
    assert_eq!(out_u[[96, 99, 98, 2]], f32::from(images[[96, 99, 98, 2]]) - m[2]);
}

/// A one-sample batch is summed without lane buffers: its values are its
/// sums. The state is bit for bit what the lane kernels gave (checked
/// against the weighted path with weight 1, which takes neither), for
/// every width class of `D`, for `f32` and for narrow inputs; a NaN is
/// reported at its own index, and the state is unchanged.
#[test]
fn one_sample_batches_fold_their_values() {
    for d in [1usize, 3, 64, 300, 70_000] {
        let x = shaped(&[1, d], d as u64);
        let mut a = Centering::<f64>::new();
        let mut b = Centering::<f64>::new();
        for _ in 0..3 {
            a.partial_fit(&x).unwrap();
            b.partial_fit_weighted(&x, &Array::from_elem(1, 1.0)).unwrap();
        }
        assert_eq!(bits(&a), bits(&b), "d = {d}");
        assert_eq!(a.n_samples_seen(), 3);
        let x32 = x.mapv(|v| v as f32);
        let mut c = Centering::<f32>::new();
        c.partial_fit(&x32).unwrap();
        let m: Vec<f32> = c.mean().unwrap().to_vec();
        assert_eq!(m, x32.iter().copied().collect::<Vec<_>>(), "f32, d = {d}");
        let bytes = x.mapv(|v| (v * 200.0 + 20.0) as u8);
        let mut u = Centering::<f32>::new();
        u.partial_fit_input(&bytes).unwrap();
        let m: Vec<f32> = u.mean().unwrap().to_vec();
        assert_eq!(
            m,
            bytes.iter().map(|&v| f32::from(v)).collect::<Vec<_>>(),
            "u8, d = {d}"
        );
    }
    let mut x = Array::from_elem(IxDyn(&[1, 1, 5]), 1.5);
    x[[0, 0, 3]] = f64::NAN;
    let mut c = Centering::<f64>::new();
    c.partial_fit(&Array::from_elem(IxDyn(&[1, 1, 5]), 2.0)).unwrap();
    let before = bits(&c);
    match c.partial_fit(&x) {
        Err(centering::CenteringError::NonFinite { index, .. }) => assert_eq!(index, vec![0, 0, 3]),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(bits(&c), before);
    assert_eq!(c.n_samples_seen(), 1);
}

/// A one-sample batch is added to the state as its values (no batch sums):
/// the same state and mean bits as its summary folded by
/// `partial_fit_summary` (the kernels' path), in every mode (a moving
/// average steps with the sample as the batch mean), after batches that
/// left low parts and scales in the state, for `-0`, values near
/// `f64::MAX` (rescaled sums) and tiny ones, contiguous and strided
/// samples, under both policies — and a sample with a NaN still goes the
/// general way (skipped under `Ignore`, an error naming it under `Reject`).
#[test]
fn one_sample_folds_are_the_summary_path() {
    let modes = [
        CenteringParams::new(),
        CenteringParams::keras(0.9),
        CenteringParams::torch(0.1),
        CenteringParams::new().moving_average(0.5).start(EmaStart::FirstBatch),
        CenteringParams::new().batch_average(),
    ];
    for (params, policy) in modes
        .iter()
        .flat_map(|p| [NanPolicy::Reject, NanPolicy::Ignore].map(|n| (p.nan_policy(n), n)))
    {
        for d in [1usize, 3, 64, 1000] {
            let many = shaped(&[5, d], d as u64 + 7).mapv(|v| v * 1e-3 + 1e12);
            let mut sample = shaped(&[1, d], d as u64 + 8);
            sample[[0, 0]] = -0.0;
            if d >= 3 {
                sample[[0, 1]] = f64::MAX;
                sample[[0, 2]] = 1e-300;
            }
            // The same sample, every other column of a wider array.
            let mut wider = Array::zeros(IxDyn(&[1, 2 * d]));
            wider.slice_axis_mut(Axis(1), Slice::new(0, None, 2)).assign(&sample);
            let strided = wider.slice_axis(Axis(1), Slice::new(0, None, 2));
            let mut a: Centering<f64> = params.build().unwrap();
            let mut b = a.clone();
            let mut first = a.clone();
            for batch in [
                sample.view(),
                many.view(),
                sample.view(),
                strided.view(),
                strided.view(),
            ] {
                a.partial_fit(&batch).unwrap();
                b.partial_fit_summary(&BatchSummary::from_array(&batch, policy).unwrap())
                    .unwrap();
            }
            first.partial_fit(&strided).unwrap();
            let mut first_b: Centering<f64> = params.build().unwrap();
            first_b
                .partial_fit_summary(&BatchSummary::from_array(&strided, policy).unwrap())
                .unwrap();
            assert!(a == b, "{params:?}, d = {d}");
            assert_eq!(bits(&a), bits(&b), "{params:?}, d = {d}");
            assert_eq!(bits(&first), bits(&first_b), "{params:?}, d = {d}, first batch");
            // The saved states too: their sums show the sign of a zero,
            // which `==` and the mean do not.
            #[cfg(feature = "serde")]
            {
                let text = |c: &Centering<f64>| serde_json::to_string(c).unwrap();
                assert_eq!(text(&first), text(&first_b), "{params:?}, d = {d}, saved first batch");
                assert_eq!(text(&a), text(&b), "{params:?}, d = {d}, saved");
            }
            assert_eq!(a.n_samples_seen(), 9);
            // f32 estimates of f32 samples, too.
            let s32 = sample.mapv(|v| (v as f32).min(f32::MAX));
            let mut c: Centering<f32> = params.build().unwrap();
            let mut e = c.clone();
            for _ in 0..2 {
                c.partial_fit(&s32).unwrap();
                e.partial_fit_summary(&BatchSummary::from_array(&s32, policy).unwrap())
                    .unwrap();
            }
            assert!(c == e, "f32, {params:?}, d = {d}");
            let m32 = |c: &Centering<f32>| c.mean().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(m32(&c), m32(&e), "f32, {params:?}, d = {d}");

            let mut with_nan = sample.clone();
            with_nan[[0, d - 1]] = f64::NAN;
            let before = a.clone();
            let got = a.partial_fit(&with_nan).map(|_| ());
            if policy == NanPolicy::Reject {
                assert!(
                    matches!(&got, Err(CenteringError::NonFinite { index, .. }) if *index == vec![0, d - 1]),
                    "{got:?}"
                );
                assert!(a == before);
            } else {
                got.unwrap();
                b.partial_fit_summary(&BatchSummary::from_array(&with_nan, policy).unwrap())
                    .unwrap();
                assert!(a == b, "NaN under Ignore, {params:?}, d = {d}");
                assert_eq!(bits(&a), bits(&b));
            }
        }
    }
}

/// Padded sequences `(N, T, D)` with `T > N`: the tree cuts leaves along
/// `T`, so their rows are runs, not one slice. A masked fit (and an
/// `Ignore` fit with a weight per position) is bit for bit the same on C
/// and Fortran copies of the batch and mask, and close to the exact mean.
#[test]
fn masked_sequences_agree_across_layouts() {
    let (n, t, d) = (4, 3000, 8);
    // Magnitudes over 30 decades, so that the pairs' low parts depend on
    // the order of the additions (on `shaped`'s values they are exact).
    let base = shaped(&[n, t, d], 33);
    let x = Array::from_shape_fn(IxDyn(&[n, t, d]), |ix| {
        base[&ix] * 10f64.powi(((ix[0] * 7 + ix[1] * 3 + ix[2]) % 30) as i32 - 15)
    });
    let mask = Array::from_shape_fn(IxDyn(&[n, t]), |ix| (ix[1] < 2900 - 500 * ix[0]) && ix[1] % 7 != 3);
    let mut xf = Array::zeros(IxDyn(&[n, t, d]).f());
    xf.assign(&x);
    let mut mf = Array::from_elem(IxDyn(&[n, t]).f(), false);
    mf.assign(&mask);
    let fit = |x: &ArrayD<f64>, m: &ArrayD<bool>| {
        let mut c = Centering::<f64>::new();
        c.partial_fit_masked(x, m).unwrap();
        c
    };
    // `==` compares the states, sums and weights pair by pair (the means
    // alone would round most order differences away).
    let (c, f) = (fit(&x, &mask), fit(&xf, &mf));
    assert_eq!(c, f, "masked: C vs Fortran");
    let w = mask.mapv(|m| if m { 1.0 } else { 0.0 });
    let refs = common::reference(&x.view(), Some(&w.view()), false);
    common::assert_mean_close(c.mean().unwrap(), &refs, "masked sequences");

    let mut xn = x.clone();
    for (i, v) in xn.iter_mut().enumerate() {
        if i % 13 == 5 {
            *v = f64::NAN;
        }
    }
    let mut xnf = Array::zeros(IxDyn(&[n, t, d]).f());
    xnf.assign(&xn);
    let wf = mf.mapv(|m| if m { 1.5 } else { 0.25 });
    let wc = mask.mapv(|m| if m { 1.5 } else { 0.25 });
    let fit_w = |x: &ArrayD<f64>, w: &ArrayD<f64>| {
        let mut c: Centering<f64> = CenteringParams::new().nan_policy(NanPolicy::Ignore).build().unwrap();
        c.partial_fit_weighted(x, w).unwrap();
        c
    };
    assert_eq!(fit_w(&xn, &wc), fit_w(&xnf, &wf), "weighted Ignore: C vs Fortran");
}

/// The mean of a wide state (more features than one task computes, so in
/// parallel chunks, written over the last mean's buffer) is each
/// feature's own: bit for bit the mean of an estimator fitted on that
/// feature alone, after every update (never the stale buffer), for one
/// thread and for the pool, in the cumulative and a moving mode; a clone
/// keeps the mean read and is updated on its own.
#[test]
fn wide_means_are_each_features_own_after_every_update() {
    let d = 300_000;
    let probes = [0, 1, 16_383, 16_384, 150_001, d - 1];
    let batch = |k: usize| {
        Array::from_shape_fn((2, d), |(i, j)| {
            ((j * 31 + i * 7 + k * 13) % 1009) as f64 * 0.37 - 150.0
        })
    };
    let makers: [fn() -> Centering<f64>; 2] = [Centering::new, || Centering::builder().keras(0.9).build().unwrap()];
    for make in makers {
        let mut wide = make();
        let mut alone: Vec<Centering<f64>> = probes.iter().map(|_| make()).collect();
        for k in 0..3 {
            let x = batch(k);
            wide.partial_fit(&x).unwrap();
            for (c, &j) in alone.iter_mut().zip(&probes) {
                c.partial_fit(&x.slice(ndarray::s![.., j..j + 1])).unwrap();
            }
            let read = |threads: Option<usize>| -> Vec<u64> {
                let c = wide.clone();
                let mean = || c.mean().unwrap().iter().map(|m| m.to_bits()).collect::<Vec<u64>>();
                #[cfg(feature = "rayon")]
                if let Some(t) = threads {
                    return rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap()
                        .install(mean);
                }
                let _ = threads;
                mean()
            };
            let pooled = read(None);
            assert_eq!(read(Some(1)), pooled, "batch {k}: 1 thread vs the pool");
            let m = wide.mean().unwrap();
            assert_eq!(m.iter().map(|m| m.to_bits()).collect::<Vec<u64>>(), pooled);
            for (c, &j) in alone.iter().zip(&probes) {
                assert_eq!(m[j].to_bits(), c.mean().unwrap()[0].to_bits(), "batch {k}, feature {j}");
            }
            // And not merely consistent: the cumulative mean is the data's.
            if wide.params().start().is_none() {
                for &j in &probes {
                    let all: Vec<f64> = (0..=k).flat_map(|b| batch(b).column(j).to_vec()).collect();
                    let naive = all.iter().sum::<f64>() / all.len() as f64;
                    assert!((m[j] - naive).abs() <= 1e-12 * naive.abs().max(1.0), "feature {j}");
                }
            }
        }
        let before: Vec<f64> = wide.mean().unwrap().to_vec();
        let mut copy = wide.clone();
        assert_eq!(copy.mean().unwrap().to_vec(), before);
        copy.partial_fit(&batch(9)).unwrap();
        assert_ne!(copy.mean().unwrap().to_vec(), before);
        assert_eq!(wide.mean().unwrap().to_vec(), before);
    }
}
