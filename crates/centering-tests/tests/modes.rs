//! The estimation modes (issue 3): moving averages against the Keras and
//! PyTorch recurrences written out literally, the batch average, merges,
//! sample weights, missing values and batch centering.
//!
//! Moving-average tolerance: after `t` batches whose means are at most `B` in
//! magnitude, every step of `m ← β·m + (1 − β)·b` rounds three times, and the
//! errors of earlier steps are damped by `β ≤ 1`, so the crate and a literal
//! recurrence (or a re-association of it, as a merge is) differ by at most
//! `≈ 3·t·u·B`; we assert `8·(t + 1)·ε_F·B` (ε = 2u). The literal debiased
//! formula `zero / (1 − βᵗ)` is itself ill-conditioned for β near 1: its
//! rounding is amplified by `1 / (1 − βᵗ)`, and so is the tolerance there.
//! For `f32` the recurrences use the momentum rounded to `f32`, as the
//! crate does. Cumulative results use the tolerance of `tests/common/mod.rs`.

mod common;

use std::fmt::Debug;

use centering::{Centering, CenteringParams, EmaStart, Mode, NanPolicy};
use common::*;
use ndarray::{Array1, Array2, Array3, ArrayD, ArrayView2, Axis, IxDyn, array, s};
use proptest::collection::vec;
use proptest::prelude::*;

const STARTS: [EmaStart; 3] = [EmaStart::Zero, EmaStart::FirstBatch, EmaStart::Debiased];

/// Deterministic batches of unequal sizes (`sizes[i]` rows of `d` features),
/// values around `offset`.
fn fixed_batches(sizes: &[usize], d: usize, offset: f64, seed: u64) -> Vec<Array2<f64>> {
    let mut rng = Rng(seed);
    sizes
        .iter()
        .map(|&n| Array2::from_shape_simple_fn((n, d), || offset + 10.0 * rng.unit()))
        .collect()
}

/// The per-feature means of each batch (exact, rounded to `F`, widened),
/// skipping batches where a feature has no observed value.
fn batch_means<F: TestFloat>(batches: &[Array2<F>], skip_nan: bool) -> Vec<Vec<f64>> {
    let d = batches[0].ncols();
    let mut out = vec![Vec::new(); d];
    for b in batches.iter().filter(|b| b.nrows() > 0) {
        for (j, r) in reference(&b.view().into_dyn(), None, skip_nan).iter().enumerate() {
            if r.weight > 0.0 {
                out[j].push(F::narrow(r.mean).wide());
            }
        }
    }
    out
}

/// The momentum as the crate uses it for `F`.
fn beta_f<F: TestFloat>(beta: f64) -> f64 {
    F::narrow(beta).wide()
}

fn max_abs(means: &[f64]) -> f64 {
    means.iter().fold(0.0f64, |m, b| m.max(b.abs()))
}

/// The literal recurrence for `start`.
fn literal(start: EmaStart, beta: f64, means: &[f64]) -> f64 {
    match start {
        EmaStart::Zero => ema_zero(beta, means),
        EmaStart::FirstBatch => ema_first_batch(beta, means),
        EmaStart::Debiased => ema_debiased(beta, means),
        other => panic!("no reference for {other:?} (EmaStart is non_exhaustive)"),
    }
}

fn ema_tolerance<F: TestFloat>(start: EmaStart, beta: f64, means: &[f64]) -> f64 {
    let t = means.len();
    let base = 8.0 * (t as f64 + 1.0) * F::EPS * max_abs(means);
    match start {
        EmaStart::Debiased => base / (1.0 - beta.powi(t as i32)),
        _ => base,
    }
}

fn check_keras_pytorch<F: TestFloat>() {
    let sizes = [3, 1, 7, 2, 5, 4, 1];
    for offset in [0.0, 100.0, -3.0] {
        let batches: Vec<Array2<F>> = fixed_batches(&sizes, 3, offset, 11)
            .into_iter()
            .map(|b| b.mapv(F::narrow))
            .collect();
        for momentum in [0.99, 0.01, 0.9, 0.5] {
            for start in STARTS {
                let mut c: Centering<F> = CenteringParams::new()
                    .moving_average(momentum)
                    .start(start)
                    .build()
                    .unwrap();
                assert!(c.mean().is_none());
                for t in 1..=batches.len() {
                    c.partial_fit(&batches[t - 1]).unwrap();
                    assert_eq!(c.n_batches(), t as u64);
                    let means = batch_means(&batches[..t], false);
                    let beta = beta_f::<F>(momentum);
                    for (j, &m) in c.mean().unwrap().iter().enumerate() {
                        let want = literal(start, beta, &means[j]);
                        let tol = ema_tolerance::<F>(start, beta, &means[j]);
                        assert_close(
                            m.wide(),
                            want,
                            tol,
                            &format!("{} momentum {momentum} {start:?} t={t} feature {j}", F::NAME),
                        );
                        if start == EmaStart::Debiased {
                            let w = ema_debiased_weighted(beta, &means[j]);
                            assert_close(
                                m.wide(),
                                w,
                                8.0 * (t as f64 + 1.0) * F::EPS * max_abs(&means[j]),
                                "weighted form",
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn moving_average_follows_the_keras_pytorch_recurrence_f64() {
    check_keras_pytorch::<f64>();
}

#[test]
fn moving_average_follows_the_keras_pytorch_recurrence_f32() {
    check_keras_pytorch::<f32>();
}

#[test]
fn zero_start_worked_example() {
    // Keras: moving_mean = 0.99·moving_mean + 0.01·batch_mean, from 0.
    let mut c: Centering<f64> = CenteringParams::new()
        .moving_average(0.99)
        .start(EmaStart::Zero)
        .build()
        .unwrap();
    c.partial_fit(&array![[100.0], [300.0]]).unwrap(); // batch mean 200
    assert_close(c.mean().unwrap()[0], 2.0, 1e-14, "0.01·200");
    c.partial_fit(&array![[0.0]]).unwrap();
    assert_close(c.mean().unwrap()[0], 1.98, 1e-14, "0.99·2");
    // The common mistake: 0.01 keeps only 1% of the old value.
    let mut c: Centering<f64> = CenteringParams::new()
        .moving_average(0.01)
        .start(EmaStart::Zero)
        .build()
        .unwrap();
    c.partial_fit(&array![[100.0], [300.0]]).unwrap();
    assert_close(c.mean().unwrap()[0], 198.0, 1e-12, "0.99·200");
    c.partial_fit(&array![[0.0]]).unwrap();
    assert_close(c.mean().unwrap()[0], 1.98, 1e-13, "0.01·198");
}

#[test]
fn first_step_equals_the_first_batch_mean() {
    // FirstBatch and Debiased both start from the first batch's mean exactly.
    for (k, batch) in fixed_batches(&[3, 1, 6, 2], 4, 12.5, 7).iter().enumerate() {
        let mut cumulative = Centering::<f64>::new();
        cumulative.fit(batch).unwrap();
        let want = cumulative.mean().unwrap().to_owned();
        for momentum in [0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            for start in [EmaStart::FirstBatch, EmaStart::Debiased] {
                let mut c: Centering<f64> = CenteringParams::new()
                    .moving_average(momentum)
                    .start(start)
                    .build()
                    .unwrap();
                c.partial_fit(batch).unwrap();
                let got = c.mean().unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        same_bits(*g, *w),
                        "batch {k}, momentum {momentum}, {start:?}: after one step {got} != first batch mean {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn first_batch_and_debiased_differ_later() {
    let p = |s| {
        CenteringParams::new()
            .moving_average(0.5)
            .start(s)
            .build::<f64>()
            .unwrap()
    };
    let (mut f, mut d) = (p(EmaStart::FirstBatch), p(EmaStart::Debiased));
    for b in [array![[0.0]], array![[4.0]]] {
        f.partial_fit(&b).unwrap();
        d.partial_fit(&b).unwrap();
    }
    // FirstBatch: 0.5·0 + 0.5·4 = 2. Debiased: (0.5·0 + 1·4) / 1.5 = 8/3.
    assert_eq!(f.mean().unwrap()[0], 2.0);
    assert_close(d.mean().unwrap()[0], 8.0 / 3.0, 1e-15, "debiased");
}

#[test]
fn torch_momentum_is_one_minus_keras() {
    let torch = CenteringParams::new().torch_momentum(0.1);
    let keras = CenteringParams::new().moving_average(0.9);
    for start in STARTS {
        let (t, k) = (torch.start(start).check().unwrap(), keras.start(start).check().unwrap());
        assert_eq!(t.mode(), k.mode());
        assert_eq!(t.momentum(), Some(0.9));
        // The convention it was given in is kept: the getter returns it exactly.
        assert_eq!(t.torch_momentum(), Some(0.1));
        let mut a = Centering::<f32>::with_params(t);
        let mut b = Centering::<f32>::with_params(k);
        for batch in fixed_batches(&[4, 2, 9], 2, 1.0, 3) {
            let batch = batch.mapv(|v| v as f32);
            a.partial_fit(&batch).unwrap();
            b.partial_fit(&batch).unwrap();
        }
        // Same momentum, weights rounded from different conventions.
        for (x, y) in a.mean().unwrap().iter().zip(b.mean().unwrap()) {
            assert!((x - y).abs() <= 4.0 * f32::EPSILON * x.abs().max(1.0), "{x} vs {y}");
        }
    }
    // PyTorch's own update: running = (1 − μ)·running + μ·batch, from 0.
    let batches = fixed_batches(&[5, 3, 8, 1], 2, -4.0, 5);
    let mut c: Centering<f64> = torch.start(EmaStart::Zero).build().unwrap();
    let mut running = [0.0f64; 2];
    for b in &batches {
        c.partial_fit(b).unwrap();
        for (j, r) in running.iter_mut().enumerate() {
            *r = (1.0 - 0.1) * *r + 0.1 * b.column(j).mean().unwrap();
        }
    }
    for (&m, &r) in c.mean().unwrap().iter().zip(&running) {
        assert_close(m, r, 1e-13, "pytorch recurrence");
    }
    // The default Keras momentum is exported.
    assert_eq!(centering::KERAS_DEFAULT_MOMENTUM, 0.99);
}

#[test]
fn batch_average_is_the_plain_average_of_batch_means() {
    let mut avg: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    let mut cum = Centering::<f64>::new();
    for b in [array![[0.0], [0.0], [0.0]], array![[4.0]]] {
        avg.partial_fit(&b).unwrap();
        cum.partial_fit(&b).unwrap();
    }
    assert_eq!(avg.mean().unwrap()[0], 2.0, "(0 + 4) / 2");
    assert_eq!(cum.mean().unwrap()[0], 1.0, "(0 + 0 + 0 + 4) / 4");
    assert_eq!(avg.n_batches(), 2);
    assert_eq!(avg.n_samples_seen(), 4);
    assert_eq!(avg.params().mode(), Mode::BatchAverage);

    // Unequal sizes: the literal average.
    for f32_data in [false, true] {
        let batches: Vec<_> = fixed_batches(&[3, 1, 7, 2, 5], 3, 50.0, 21)
            .into_iter()
            .map(|b| if f32_data { b.mapv(|v| (v as f32) as f64) } else { b })
            .collect();
        let mut c: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
        for b in &batches {
            c.partial_fit(b).unwrap();
        }
        let means = batch_means(&batches, false);
        for (&m, bm) in c.mean().unwrap().iter().zip(&means) {
            let want = batch_average(bm);
            assert_close(m, want, 32.0 * f64::EPSILON * max_abs(bm), "batch average");
        }
    }

    // Equal sizes: the cumulative mean, within the tolerances.
    let batches = fixed_batches(&[4, 4, 4, 4], 2, 7.0, 22);
    let mut avg: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    for b in &batches {
        avg.partial_fit(b).unwrap();
    }
    let views: Vec<_> = batches.iter().map(|b| b.view().into_dyn()).collect();
    let refs = reference_of_batches(&views, false);
    for (&m, r) in avg.mean().unwrap().iter().zip(&refs) {
        assert_close(m, r.mean, 32.0 * f64::EPSILON * r.abs_mean, "equal sizes");
    }

    // Weighted batches count once, at their weighted mean.
    let mut avg: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    avg.partial_fit_weighted(&array![[0.0], [4.0]], &array![3.0, 1.0])
        .unwrap(); // 1
    avg.partial_fit_weighted(&array![[10.0]], &array![100.0]).unwrap(); // 10
    assert_eq!(avg.mean().unwrap()[0], 5.5);
}

// ---------------------------------------------------------------------------
// Merges
// ---------------------------------------------------------------------------

/// Values for the merge and weight properties: moderate, sometimes NaN.
fn value(nan: bool) -> BoxedStrategy<f64> {
    if nan {
        prop_oneof![6 => -100.0f64..100.0, 1 => Just(f64::NAN)].boxed()
    } else {
        (-100.0f64..100.0).boxed()
    }
}

/// `rows` random rows of `d` features with integer weights in `0..=3`.
fn rows(d: usize, nan: bool, max_rows: usize) -> impl Strategy<Value = (Array2<f64>, Array1<f64>)> {
    (0..=max_rows).prop_flat_map(move |n| {
        (vec(value(nan), n * d), vec(0u8..=3, n)).prop_map(move |(v, w)| {
            (
                Array2::from_shape_vec((n, d), v).unwrap(),
                w.into_iter().map(f64::from).collect(),
            )
        })
    })
}

fn cumulative(ignore: bool) -> CenteringParams {
    CenteringParams::new().nan_policy(if ignore { NanPolicy::Ignore } else { NanPolicy::Reject })
}

fn fitted_on(p: &CenteringParams, x: &Array2<f64>, w: Option<&Array1<f64>>) -> Centering<f64> {
    let mut c: Centering<f64> = p.build().unwrap();
    match w {
        Some(w) => c.partial_fit_weighted(x, w).unwrap(),
        None => c.partial_fit(x).unwrap(),
    };
    c
}

fn merged(a: &Centering<f64>, b: &Centering<f64>) -> Centering<f64> {
    let mut m = a.clone();
    m.merge(b).unwrap();
    m
}

/// Stacks row blocks (and their weights).
fn stack(parts: &[(Array2<f64>, Array1<f64>)], d: usize) -> (Array2<f64>, Array1<f64>) {
    let x: Vec<ArrayView2<'_, f64>> = parts.iter().map(|p| p.0.view()).collect();
    let w: Vec<_> = parts.iter().map(|p| p.1.view()).collect();
    if x.is_empty() {
        return (Array2::zeros((0, d)), Array1::zeros(0));
    }
    (
        ndarray::concatenate(Axis(0), &x).unwrap(),
        ndarray::concatenate(Axis(0), &w).unwrap(),
    )
}

proptest! {
    #![proptest_config(config(64))]

    /// Cumulative merge: commutative (bit for bit: TwoSum's error term is
    /// unique, so a double-word sum does not depend on the operand order) and
    /// associative within the tolerance, with exact counts.
    #[test]
    fn cumulative_merge_commutes_and_associates(
        ignore in any::<bool>(),
        weighted in any::<bool>(),
        parts in (1usize..=4).prop_flat_map(|d| vec(rows(d, true, 6), 3).prop_map(move |p| (d, p))),
    ) {
        let (d, parts) = parts;
        let parts: Vec<_> = parts
            .into_iter()
            .map(|(x, w)| (if ignore { x } else { x.mapv(|v| if v.is_nan() { 1.5 } else { v }) }, w))
            .collect();
        let p = cumulative(ignore);
        let est: Vec<_> = parts.iter().map(|(x, w)| fitted_on(&p, x, weighted.then_some(w))).collect();
        let (a, b, c) = (&est[0], &est[1], &est[2]);
        prop_assert_eq!(merged(a, b), merged(b, a));
        let left = merged(&merged(a, b), c);
        let right = merged(a, &merged(b, c));
        let rotated = merged(&merged(c, a), b);
        let (all_x, all_w) = stack(&parts, d);
        let refs = reference(&all_x.view().into_dyn(), weighted.then(|| all_w.view().into_dyn()).as_ref(), ignore);
        for m in [&left, &right, &rotated] {
            // (A zero-weight or all-missing part is a no-op: its rows are not
            // counted.)
            prop_assert_eq!(m.n_samples_seen(), est.iter().map(|e| e.n_samples_seen()).sum::<u64>());
            prop_assert_eq!(m.n_batches(), est.iter().map(|e| e.n_batches()).sum::<u64>());
            if refs.iter().all(|r| r.weight == 0.0) {
                prop_assert!(!m.is_fitted() || m.mean().unwrap().iter().all(|v| v.is_nan()));
                continue;
            }
            assert_mean_close(m.mean().unwrap(), &refs, "merged");
            let ws: Vec<f64> = m.weight_sums().unwrap().to_vec();
            prop_assert_eq!(ws, refs.iter().map(|r| r.weight).collect::<Vec<_>>());
        }
    }

    /// Merging the estimators of any partition of the rows (each part fitted
    /// in one or two batches) equals fitting everything, weights and
    /// per-feature missing counts included.
    #[test]
    fn merging_a_partition_equals_fitting_all(
        data in (1usize..=4).prop_flat_map(|d| rows(d, true, 24).prop_map(move |r| (d, r))),
        ignore in any::<bool>(),
        weighted in any::<bool>(),
        groups in vec(0usize..4, 24),
        halves in any::<bool>(),
    ) {
        let (_, (x, w)) = data;
        let x = if ignore { x } else { x.mapv(|v| if v.is_nan() { -2.0 } else { v }) };
        let p = cumulative(ignore);
        let fit_part = |rows: &[usize]| {
            let xs = x.select(Axis(0), rows);
            let ws = w.select(Axis(0), rows);
            let mut c: Centering<f64> = p.build().unwrap();
            let cut = if halves { rows.len() / 2 } else { rows.len() };
            for (lo, hi) in [(0, cut), (cut, rows.len())] {
                let (xb, wb) = (xs.slice(s![lo..hi, ..]), ws.slice(s![lo..hi]));
                if weighted { c.partial_fit_weighted(&xb, &wb).unwrap(); } else { c.partial_fit(&xb).unwrap(); }
            }
            c
        };
        let mut total: Centering<f64> = p.build().unwrap();
        let mut no_op_part = false;
        for g in 0..4 {
            let members: Vec<usize> = (0..x.nrows()).filter(|&i| groups[i] == g).collect();
            // A sub-batch with no weight or no observed value is a no-op, so
            // its rows are not counted in n_samples_seen.
            let cut = if halves { members.len() / 2 } else { members.len() };
            for rows in [&members[..cut], &members[cut..]] {
                let observed = rows
                    .iter()
                    .any(|&i| (!weighted || w[i] > 0.0) && x.row(i).iter().any(|v| !v.is_nan()));
                no_op_part |= !rows.is_empty() && !observed;
            }
            total.merge(&fit_part(&members)).unwrap();
        }
        let all = fitted_on(&p, &x, weighted.then_some(&w));
        if !no_op_part {
            prop_assert_eq!(total.n_samples_seen(), all.n_samples_seen());
        }
        prop_assert_eq!(total.weight_sums(), all.weight_sums());
        let refs = reference(&x.view().into_dyn(), weighted.then(|| w.view().into_dyn()).as_ref(), ignore);
        if total.is_fitted() {
            assert_mean_close(total.mean().unwrap(), &refs, "merged partition");
            assert_mean_close(all.mean().unwrap(), &refs, "all at once");
            let ws: Vec<f64> = total.weight_sums().unwrap().to_vec();
            prop_assert_eq!(ws, refs.iter().map(|r| r.weight).collect::<Vec<_>>());
        } else {
            prop_assert!(refs.iter().all(|r| r.weight == 0.0));
            prop_assert!(!all.is_fitted());
        }
    }
}

/// Moving-average parameters for the properties.
fn ema_params() -> impl Strategy<Value = CenteringParams> {
    let momentum = prop_oneof![Just(0.0), Just(1.0), Just(0.99), Just(0.01), 0.0f64..=1.0];
    let start = prop::sample::select(STARTS.to_vec());
    prop_oneof![
        4 => (momentum, start).prop_map(|(m, s)| CenteringParams::new().moving_average(m).start(s)),
        1 => Just(CenteringParams::new().batch_average()),
    ]
}

/// A sequence of batches (some empty) of `d` features.
fn batch_sequence(nan: bool) -> impl Strategy<Value = (usize, Vec<Array2<f64>>)> {
    (1usize..=3).prop_flat_map(move |d| {
        (
            Just(d),
            vec(rows(d, nan, 5).prop_map(|(x, _)| x.mapv(|v| v + 1000.0)), 1..=8),
        )
    })
}

/// The literal reference of `params` over per-feature batch means.
fn literal_of(params: &CenteringParams, means: &[f64], beta_of: impl Fn(f64) -> f64) -> (f64, f64) {
    let v = params.check().unwrap();
    match v.mode() {
        Mode::MovingAverage { momentum, start } => {
            let beta = beta_of(momentum);
            let want = match start {
                // The weighted form is the well-conditioned one (β = 1 too).
                EmaStart::Debiased => ema_debiased_weighted(beta, means),
                s => literal(s, beta, means),
            };
            (want, 8.0 * (means.len() as f64 + 1.0) * max_abs(means))
        }
        Mode::BatchAverage => (batch_average(means), 8.0 * (means.len() as f64 + 1.0) * max_abs(means)),
        _ => unreachable!("a moving mode"),
    }
}

fn check_sequence<F: TestFloat>(params: &CenteringParams, batches: &[Array2<f64>], cuts: &[usize], ignore: bool) {
    let params = params.nan_policy(if ignore { NanPolicy::Ignore } else { NanPolicy::Reject });
    let batches: Vec<Array2<F>> = batches.iter().map(|b| b.mapv(F::narrow)).collect();
    let fit_seq = |bs: &[Array2<F>]| {
        let mut c: Centering<F> = params.build().unwrap();
        for b in bs {
            c.partial_fit(b).unwrap();
        }
        c
    };
    let whole = fit_seq(&batches);

    // Against the literal recurrences, per feature.
    let means = batch_means(&batches, ignore);
    // Batches with at least one observed value take a step.
    let t = batches.iter().filter(|b| b.iter().any(|v| !v.is_nan())).count();
    assert_eq!(whole.n_batches(), t as u64);
    if let Some(m) = whole.mean() {
        for (j, &got) in m.iter().enumerate() {
            let (want, scale) = literal_of(&params, &means[j], beta_f::<F>);
            let zero_start = params.check().unwrap().start() == Some(EmaStart::Zero);
            if means[j].is_empty() {
                // Never observed: NaN, except the zero start's 0.
                assert!(
                    if zero_start { got.wide() == 0.0 } else { got.is_nan() },
                    "feature {j}: {got:?}"
                );
                continue;
            }
            assert_close(
                got.wide(),
                want,
                scale * F::EPS,
                &format!("{} {params:?} feature {j}", F::NAME),
            );
        }
    } else {
        assert_eq!(t, 0);
    }

    // Consecutive segments, merged in order (left fold and right fold).
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (batches.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.insert(0, 0);
    bounds.push(batches.len());
    let segments: Vec<Centering<F>> = bounds.windows(2).map(|w| fit_seq(&batches[w[0]..w[1]])).collect();
    let mut left: Centering<F> = params.build().unwrap();
    for s in &segments {
        left.merge(s).unwrap();
    }
    let mut right: Centering<F> = params.build().unwrap();
    for s in segments.iter().rev() {
        let mut s = s.clone();
        s.merge(&right).unwrap();
        right = s;
    }
    for m in [&left, &right] {
        assert_eq!(m.n_batches(), whole.n_batches());
        assert_eq!(m.n_samples_seen(), whole.n_samples_seen());
        assert_eq!(m.is_fitted(), whole.is_fitted());
        let (Some(got), Some(want)) = (m.mean(), whole.mean()) else {
            continue;
        };
        for (j, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
            let scale = 8.0 * (means[j].len() as f64 + 1.0) * max_abs(&means[j]);
            assert_close(
                g.wide(),
                w.wide(),
                scale * F::EPS,
                &format!("{} {params:?} merged, feature {j}", F::NAME),
            );
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// Moving averages: the literal recurrence, and merging consecutive
    /// segments in order equals fitting the whole sequence.
    #[test]
    fn moving_average_segments_merge_in_order(
        params in ema_params(),
        seq in batch_sequence(true),
        cuts in vec(any::<usize>(), 0..4),
        ignore in any::<bool>(),
    ) {
        let (_, batches) = seq;
        let batches: Vec<_> = if ignore {
            batches
        } else {
            batches.into_iter().map(|b| b.mapv(|v| if v.is_nan() { 999.0 } else { v })).collect()
        };
        check_sequence::<f64>(&params, &batches, &cuts, ignore);
        check_sequence::<f32>(&params, &batches, &cuts, ignore);
    }
}

#[test]
fn moving_average_merge_is_ordered() {
    let p = CenteringParams::new().moving_average(0.5).start(EmaStart::Zero);
    let a = fitted_on(&p, &array![[0.0]], None);
    let b = fitted_on(&p, &array![[8.0]], None);
    // a then b: 0.5·(0.5·0) + 0.5·8 = 4; b then a: 0.5·(0.5·8) + 0 = 2.
    assert_eq!(merged(&a, &b).mean().unwrap()[0], 4.0);
    assert_eq!(merged(&b, &a).mean().unwrap()[0], 2.0);
    // An unfitted side is the identity.
    let e: Centering<f64> = p.build().unwrap();
    assert_eq!(merged(&a, &e), a);
    assert_eq!(merged(&e, &a), a);
}

// ---------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// Integer weights are repetitions: the weighted mean of `x` equals the
    /// mean of `x` with row `i` repeated `wᵢ` times (in every mode, for one
    /// batch), and the weight sums count the repeated rows.
    #[test]
    fn integer_weights_equal_repeated_rows(
        data in (1usize..=4).prop_flat_map(|d| rows(d, false, 12).prop_map(move |r| (d, r))),
        params in prop_oneof![Just(CenteringParams::new()), ema_params()],
    ) {
        let (d, (x, w)) = data;
        let reps: Vec<usize> = w.iter().enumerate().flat_map(|(i, &k)| std::iter::repeat_n(i, k as usize)).collect();
        let repeated = x.select(Axis(0), &reps);
        let weighted = fitted_on(&params, &x, Some(&w));
        let plain = fitted_on(&params, &repeated, None);
        prop_assert_eq!(weighted.is_fitted(), !reps.is_empty());
        if reps.is_empty() {
            return Ok(());
        }
        let refs = reference(&repeated.view().into_dyn(), None, false);
        if params.check().unwrap().mode() == Mode::Cumulative {
            assert_mean_close(weighted.mean().unwrap(), &refs, "weighted");
            assert_mean_close(plain.mean().unwrap(), &refs, "repeated");
            prop_assert_eq!(weighted.weight_sums().unwrap(), Array1::from_elem(d, reps.len() as f64));
        } else {
            // One step of a moving average from the batch's (weighted) mean.
            for (j, (&a, &b)) in weighted.mean().unwrap().iter().zip(plain.mean().unwrap()).enumerate() {
                assert_close(a, b, 4.0 * f64::EPSILON * refs[j].abs_mean, "one weighted step");
            }
        }
    }

    /// For N-D input, one weight per first index equals the same weight
    /// broadcast over the inner sample axes, and equals repetition of the
    /// first-axis slices.
    #[test]
    fn first_axis_weights_for_nd_input(
        n in 1usize..=5,
        h in 1usize..=4,
        d in 1usize..=3,
        vals in vec(-50.0f64..50.0, 60),
        w in vec(0u8..=3, 5),
    ) {
        let x = Array3::from_shape_fn((n, h, d), |(i, k, j)| vals[(i * h + k) * d + j]);
        let w: Array1<f64> = w[..n].iter().map(|&v| f64::from(v)).collect();
        prop_assume!(w.sum() > 0.0);
        let mut a = Centering::<f64>::new();
        a.partial_fit_weighted(&x, &w).unwrap();
        let mut b = Centering::<f64>::new();
        let full = w.view().insert_axis(Axis(1)).broadcast((n, h)).unwrap().to_owned();
        b.partial_fit_weighted(&x, &full).unwrap();
        prop_assert_eq!(&a, &b);
        let reps: Vec<usize> = w.iter().enumerate().flat_map(|(i, &k)| std::iter::repeat_n(i, k as usize)).collect();
        let repeated = x.select(Axis(0), &reps);
        let refs = reference(&repeated.view().into_dyn(), None, false);
        assert_mean_close(a.mean().unwrap(), &refs, "first-axis weights");
        assert_mean_close(a.mean().unwrap(), &reference(&x.view().into_dyn(), Some(&w.view().into_dyn()), false), "reference with (n,) weights");
    }
}

#[test]
fn zero_total_weight_is_a_no_op() {
    let modes = [
        CenteringParams::new(),
        CenteringParams::new().batch_average(),
        CenteringParams::new().moving_average(0.9).start(EmaStart::Zero),
        CenteringParams::new().moving_average(0.9).start(EmaStart::FirstBatch),
        CenteringParams::new().moving_average(0.9).start(EmaStart::Debiased),
    ];
    for p in modes {
        for policy in [NanPolicy::Reject, NanPolicy::Ignore] {
            let p = p.nan_policy(policy);
            let mut c: Centering<f64> = p.build().unwrap();
            c.partial_fit_weighted(&array![[1.0, 2.0], [3.0, 4.0]], &array![0.0, 0.0])
                .unwrap();
            assert!(!c.is_fitted(), "{p:?}");
            assert_eq!(c.n_batches(), 0);
            c.partial_fit(&array![[1.0, 2.0]]).unwrap();
            let before = c.clone();
            c.partial_fit_weighted(&array![[100.0, 200.0], [300.0, 400.0]], &array![0.0, 0.0])
                .unwrap();
            c.partial_fit_weighted(&Array3::from_elem((2, 2, 2), 9.0), &array![0.0, 0.0])
                .unwrap();
            assert_eq!(c, before, "{p:?}: a zero-weight batch changed the state");
            assert_eq!(c.n_batches(), 1);
            assert_eq!(c.n_samples_seen(), 1);
            assert_eq!(c.mean().unwrap().to_owned(), before.mean().unwrap().to_owned());
        }
    }
}

// ---------------------------------------------------------------------------
// Missing values
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// Under `Ignore`, each feature's mean is the mean of its own non-NaN
    /// values, whatever the batch split; counts are per feature.
    #[test]
    fn nan_ignore_equals_per_feature_fits(
        data in (1usize..=4).prop_flat_map(|d| rows(d, true, 20).prop_map(move |r| (d, r))),
        split in splits(),
        weighted in any::<bool>(),
    ) {
        let (d, (x, w)) = data;
        let xd = x.view().into_dyn();
        let p = CenteringParams::new().nan_policy(NanPolicy::Ignore);
        let mut c: Centering<f64> = p.build().unwrap();
        let mut offset = 0;
        for b in split_batches(&xd, &split) {
            let n = b.shape()[0];
            if weighted {
                c.partial_fit_weighted(&b, &w.slice(s![offset..offset + n])).unwrap();
            } else {
                c.partial_fit(&b).unwrap();
            }
            offset += n;
        }
        let refs = reference(&xd, weighted.then(|| w.view().into_dyn()).as_ref(), true);
        if !c.is_fitted() {
            prop_assert!(refs.iter().all(|r| r.weight == 0.0));
            return Ok(());
        }
        assert_mean_close(c.mean().unwrap(), &refs, "NaN ignored");
        for j in 0..d {
            // The feature alone, without its missing values, under Reject.
            let keep: Vec<usize> = (0..x.nrows()).filter(|&i| !x[[i, j]].is_nan()).collect();
            let col = x.column(j).select(Axis(0), &keep).insert_axis(Axis(1));
            let mut alone = Centering::<f64>::new();
            if weighted {
                alone.partial_fit_weighted(&col, &w.select(Axis(0), &keep)).unwrap();
            } else {
                alone.partial_fit(&col).unwrap();
            }
            let ws = c.weight_sums().unwrap()[j];
            prop_assert_eq!(ws, refs[j].weight);
            match alone.mean() {
                Some(m) if !m[0].is_nan() => {
                    assert_mean_close(m, &refs[j..=j], "feature alone");
                    assert_close(c.mean().unwrap()[j], m[0], 2.0 * m[0].abs() * f64::EPSILON + 2.0 * <f64 as TestFloat>::SLACK * refs[j].abs_mean, "same as alone");
                }
                _ => prop_assert!(c.mean().unwrap()[j].is_nan()),
            }
        }
    }
}

#[test]
fn a_feature_missing_at_first_still_learns_later() {
    // scikit-learn's StandardScaler keeps a NaN mean for a feature that was
    // all-NaN in the first partial_fit; here it learns from later values.
    let b1 = array![[1.0, f64::NAN], [3.0, f64::NAN]];
    let b2 = array![[5.0, 10.0]];
    let b3 = array![[f64::NAN, 20.0]];
    let ignore = |p: CenteringParams| p.nan_policy(NanPolicy::Ignore);

    let mut c: Centering<f64> = ignore(CenteringParams::new()).build().unwrap();
    c.partial_fit(&b1).unwrap();
    assert!(c.mean().unwrap()[1].is_nan());
    assert_eq!(c.weight_sums().unwrap(), array![2.0, 0.0]);
    c.partial_fit(&b2).unwrap();
    assert_eq!(c.mean().unwrap(), array![3.0, 10.0]);
    c.partial_fit(&b3).unwrap();
    assert_eq!(c.mean().unwrap(), array![3.0, 15.0]);
    assert_eq!(c.weight_sums().unwrap(), array![3.0, 2.0]);
    assert_eq!(c.n_samples_seen(), 4);

    // Moving averages: the feature's own steps start at its first value.
    for (start, want1) in [
        (EmaStart::FirstBatch, 10.0),
        (EmaStart::Debiased, 10.0),
        (EmaStart::Zero, 0.5 * 10.0),
    ] {
        let mut c: Centering<f64> = ignore(CenteringParams::new().moving_average(0.5).start(start))
            .build()
            .unwrap();
        c.partial_fit(&b1).unwrap();
        c.partial_fit(&b2).unwrap();
        assert_eq!(c.mean().unwrap()[1], want1, "{start:?}");
        // Feature 0 took two steps, feature 1 one.
        let f0 = match start {
            EmaStart::Zero => 0.5 * (0.5 * 2.0) + 0.5 * 5.0,
            EmaStart::FirstBatch => 0.5 * 2.0 + 0.5 * 5.0,
            EmaStart::Debiased => (0.5 * 2.0 + 5.0) / 1.5,
            other => panic!("no reference for {other:?}"),
        };
        assert_close(c.mean().unwrap()[0], f0, 1e-15, "feature 0");
    }
}

#[test]
fn a_never_observed_feature_has_no_mean() {
    let x = array![[1.0, f64::NAN, 2.0], [3.0, f64::NAN, 4.0]];
    for (p, missing) in [
        (CenteringParams::new(), f64::NAN),
        (CenteringParams::new().batch_average(), f64::NAN),
        (
            CenteringParams::new().moving_average(0.9).start(EmaStart::Debiased),
            f64::NAN,
        ),
        (
            CenteringParams::new().moving_average(0.9).start(EmaStart::FirstBatch),
            f64::NAN,
        ),
        // Keras's and PyTorch's moving mean starts at 0.
        (CenteringParams::new().moving_average(0.9).start(EmaStart::Zero), 0.0),
    ] {
        let mut c: Centering<f64> = p.nan_policy(NanPolicy::Ignore).build().unwrap();
        c.fit(&x).unwrap();
        let m = c.mean().unwrap();
        assert!(
            same_bits(m[1], missing) || (m[1].is_nan() && missing.is_nan()),
            "{p:?}: {m}"
        );
        assert!(m[0].is_finite() && m[2].is_finite());
        if p.check().unwrap().mode() == Mode::Cumulative {
            assert_eq!(c.weight_sums().unwrap(), array![2.0, 0.0, 2.0]);
        }
        let y = c.transform(&array![[10.0, 5.0, 10.0]]).unwrap();
        assert_eq!(y[[0, 1]].is_nan(), missing.is_nan(), "{p:?}: transform {y}");
        assert!(y[[0, 0]].is_finite() && y[[0, 2]].is_finite());
        let z = c.inverse_transform(&array![[0.0, 5.0, 0.0]]).unwrap();
        assert_eq!(z[[0, 1]].is_nan(), missing.is_nan());
        // NaN in the input stays NaN in the output.
        let y = c.transform(&array![[f64::NAN, 1.0, 1.0]]).unwrap();
        assert!(y[[0, 0]].is_nan());
    }
}

// ---------------------------------------------------------------------------
// Batch centering
// ---------------------------------------------------------------------------

fn all_modes() -> impl Strategy<Value = CenteringParams> {
    prop_oneof![Just(CenteringParams::new()), ema_params()]
}

proptest! {
    #![proptest_config(config(64))]

    /// `center_batch(x)` returns `x − mean(x)` with the batch's own mean and
    /// folds `x` in exactly as `partial_fit(x)` would, for any layout.
    #[test]
    fn center_batch_centres_on_the_batch_mean(
        case in cases::<f64>(),
        params in all_modes(),
        prior in prop::option::of(vec(-5.0f64..5.0, 1..4)),
    ) {
        let x = case.view();
        let d = case.d();
        let mut start: Centering<f64> = params.build().unwrap();
        if let Some(v) = prior {
            start.partial_fit(&Array1::from_shape_fn(d, |j| v[j % v.len()])).unwrap();
        }
        let mut via_fit = start.clone();
        via_fit.partial_fit(&x).unwrap();
        let mut via_center = start.clone();
        let y = via_center.center_batch(&x).unwrap();
        prop_assert_eq!(&via_center, &via_fit);
        prop_assert_eq!(y.shape(), x.shape());
        if case.n_samples() > 0 {
            let mut own = Centering::<f64>::new();
            own.fit(&x).unwrap();
            let want = own.transform(&x).unwrap();
            assert_same_bits(&y.view(), &want.view(), "center_batch");
            // In place, in the input's own layout made writable. (Without its
            // broadcast axes the memory layout, hence the summation order and
            // the last bits of the double-word sums, may differ from `x`'s:
            // compare with a fit of the copy itself.)
            let layout = case.layout.writable();
            let mut base = copy_into_layout(&x, &layout);
            let mut v = layout.view_mut(&mut base, x.shape());
            let mut copy_fit = start.clone();
            copy_fit.partial_fit(&v.view()).unwrap();
            let mut copy_own = Centering::<f64>::new();
            copy_own.fit(&v.view()).unwrap();
            let want = copy_own.transform(&v.view()).unwrap();
            let mut inplace = start.clone();
            inplace.center_batch_inplace(&mut v).unwrap();
            prop_assert_eq!(&inplace, &copy_fit);
            assert_same_bits(&v.view(), &want.view(), "center_batch_inplace");
        }
    }
}

#[test]
fn center_batch_with_missing_values() {
    let mut c: Centering<f64> = CenteringParams::new()
        .moving_average(0.9)
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    let y = c.center_batch(&array![[1.0, f64::NAN], [3.0, 4.0]]).unwrap();
    assert_eq!(y[[0, 0]], -1.0);
    assert!(y[[0, 1]].is_nan());
    assert_eq!(y.slice(s![1, ..]), array![1.0, 0.0]);
    assert_eq!(c.mean().unwrap(), array![2.0, 4.0]);
}

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

#[test]
fn auto_traits() {
    fn traits<T: Send + Sync + Clone + Debug + PartialEq + 'static>() {}
    traits::<Centering<f32>>();
    traits::<Centering<f64>>();
    traits::<CenteringParams>();
    traits::<centering::ValidParams>();
    traits::<centering::CenteringError>();
    fn copy<T: Copy>() {}
    copy::<CenteringParams>();
    copy::<centering::ValidParams>();
    copy::<EmaStart>();
    copy::<NanPolicy>();
    copy::<Mode>();
}

#[test]
fn transform_from_many_threads_at_once() {
    let mut c = Centering::<f32>::new();
    c.fit(&Array2::from_shape_fn((50, 4), |(i, j)| (i * j) as f32)).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[30, 4]), |i| i[0] as f32 - i[1] as f32);
    let want = c.transform(&x).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| c.transform(&x).unwrap())).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
    // And from inside a rayon pool.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let got = pool.install(|| {
        use rayon::prelude::*;
        (0..8)
            .into_par_iter()
            .map(|_| c.transform(&x).unwrap())
            .collect::<Vec<_>>()
    });
    assert!(got.iter().all(|y| *y == want));
}

/// Batches with exactly representable means (integers, power-of-two sizes),
/// so that the framework formulas below see the very same batch means.
fn exact_batches() -> Vec<Array2<f64>> {
    vec![
        array![[1.0, -3.0], [3.0, 5.0]],
        array![[10.0, 0.0], [14.0, 2.0], [0.0, 4.0], [4.0, 6.0]],
        array![[-7.0, 9.0]],
        array![[2.0, 2.0], [6.0, 4.0]],
    ]
}

/// Keras: `moving = moving·β + mean·(1 − β)`, `1 − β` formed in double
/// precision (a Python float) and both factors rounded to the tensor's type.
/// PyTorch: `running = (1 − μ)·running + μ·mean`, likewise. The zero-started
/// moving average must match both bit for bit, in f32 and in f64.
#[test]
fn zero_start_matches_keras_and_pytorch_bit_for_bit() {
    fn run<F: centering::Element>(params: CenteringParams, old: f64, new: f64) {
        assert_eq!(params.check().unwrap().start(), Some(EmaStart::Zero));
        let mut c: Centering<F> = params.build().unwrap();
        let (old, new) = (F::from(old).unwrap(), F::from(new).unwrap());
        let mut moving = [F::zero(); 2];
        for b in exact_batches() {
            c.partial_fit(&b.mapv(|v| F::from(v).unwrap())).unwrap();
            for (j, m) in moving.iter_mut().enumerate() {
                let mean = F::from(b.column(j).mean().unwrap()).unwrap();
                *m = *m * old + mean * new;
            }
            assert_eq!(c.mean().unwrap().to_vec(), moving.to_vec());
        }
    }
    // The recipes (issue 14), and the long forms they stand for.
    for beta in [0.99, 0.9, 0.01, 0.7] {
        let long = CenteringParams::new().moving_average(beta).start(EmaStart::Zero);
        for params in [CenteringParams::keras(beta), long] {
            run::<f32>(params, beta, 1.0 - beta);
            run::<f64>(params, beta, 1.0 - beta);
        }
    }
    for mu in [0.1, 0.01, 0.3] {
        let long = CenteringParams::new().torch_momentum(mu).start(EmaStart::Zero);
        for params in [CenteringParams::torch(mu), long] {
            run::<f32>(params, 1.0 - mu, mu);
            run::<f64>(params, 1.0 - mu, mu);
        }
    }
}

/// The builder's last word on the start wins, whatever the call order.
#[test]
fn builder_start_last_call_wins() {
    let moving = |start| Mode::MovingAverage { momentum: 0.9, start };
    let cases = [
        (
            CenteringParams::new().start(EmaStart::Zero).moving_average(0.9),
            EmaStart::Zero,
        ),
        (
            CenteringParams::new().moving_average(0.9).start(EmaStart::Zero),
            EmaStart::Zero,
        ),
        (
            CenteringParams::new()
                .start(EmaStart::Zero)
                .mode(moving(EmaStart::FirstBatch)),
            EmaStart::FirstBatch,
        ),
        (
            CenteringParams::new()
                .mode(moving(EmaStart::FirstBatch))
                .start(EmaStart::Zero),
            EmaStart::Zero,
        ),
        (
            CenteringParams::new().torch_momentum(0.1).start(EmaStart::FirstBatch),
            EmaStart::FirstBatch,
        ),
        (CenteringParams::new().moving_average(0.9), EmaStart::Debiased),
    ];
    for (params, want) in cases {
        assert_eq!(params.check().unwrap().start(), Some(want), "{params:?}");
    }
}

/// The batch average does not drift after 2²⁴ batches in f32 (its batch
/// count is not an f32), and momentum 0 keeps exactly the last batch mean
/// however far it is from the previous one.
#[test]
fn long_runs_and_extreme_momenta_do_not_drift() {
    let mut c: Centering<f32> = CenteringParams::new().batch_average().build().unwrap();
    c.partial_fit(&array![[3.0f32, -1.5]]).unwrap();
    for _ in 0..25 {
        let copy = c.clone();
        c.merge(&copy).unwrap();
    }
    assert_eq!(c.n_batches(), 1 << 25);
    for _ in 0..1000 {
        c.partial_fit(&array![[3.0f32, -1.5]]).unwrap();
    }
    assert_eq!(c.mean().unwrap().to_vec(), vec![3.0f32, -1.5]);

    for start in STARTS {
        let mut m: Centering<f64> = CenteringParams::new().moving_average(0.0).start(start).build().unwrap();
        m.partial_fit(&array![[1e20]]).unwrap();
        m.partial_fit(&array![[1.0]]).unwrap();
        assert_eq!(m.mean().unwrap()[0], 1.0, "{start:?}");
    }
}
