//! Reduction: a batch → its per-feature sums (`reduce`), on the plan
//! `layout::plan` chose, in the fixed tree.

use ndarray::{ArrayViewD, Axis};

use super::contiguous::{self, RowAcc};
use super::general;
use super::layout::{self, Plan, plan};
use super::tree::{LEAF, PARALLEL_MIN, Rows, join, tree};
use crate::error::{CenteringError, Result};
use crate::input::__private::Batch;
use crate::state::{Dd, Sums};
use crate::{Element, Input, NanPolicy};

pub(super) fn merge_dd(mut a: Vec<Dd<f64>>, b: Vec<Dd<f64>>) -> Vec<Dd<f64>> {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.add(y);
    }
    a
}

/// Sums of a `Rows` view: lanes of whole rows of `d` features.
pub(super) fn sum_rows<F: Element>(v: ArrayViewD<'_, F>, d: usize) -> Vec<Dd<f64>> {
    let leaf = |Rows { view: v, .. }: Rows<'_, F>| {
        let mut acc = RowAcc::new(d);
        let last = v.ndim() - 1;
        for lane in v.lanes(Axis(last)) {
            // `Plan::Rows` lanes are contiguous by construction; a lane that
            // were not would be summed from a copy, not panic.
            match lane.to_slice() {
                Some(s) => acc.push(s),
                None => acc.push(&lane.to_vec()),
            }
        }
        let mut out = vec![Dd::zero(); d];
        acc.finish(&mut out);
        out
    };
    tree(Rows { view: v, unit: d }, leaf_len(d), &leaf, &merge_dd)
}

/// The leaf length for rows of `d` features: [`LEAF`], or more for wide rows
/// so that setting up and folding the `period(d)` lane accumulators stays a
/// small fraction (≤ 1/256) of a leaf's work (at 1/64, W3's fit lost 15% to
/// it). A lane's chain stays short: at most 256 elements for wide rows,
/// `LEAF / 64` otherwise.
pub(super) fn leaf_len(d: usize) -> usize {
    LEAF.max(256 * contiguous::period(d))
}

/// Sums of features `f0..f1` of a `Columns` view (feature axis first, each
/// feature's samples a contiguous last axis). Features are split across the
/// pool first, so a call from outside the pool hands work over once rather
/// than once per feature; each feature is summed by the same [`sum_rows`]
/// tree whoever runs it, so the result does not depend on the split.
pub(super) fn sum_columns<F: Element>(view: &ArrayViewD<'_, F>, f0: usize, f1: usize) -> Vec<Dd<f64>> {
    let per_feature = view.len() / view.len_of(Axis(0));
    let size = (f1 - f0) * per_feature;
    if f1 - f0 > 1 && size >= PARALLEL_MIN {
        let mid = f0 + (f1 - f0) / 2;
        let (mut a, b) = join(size, || sum_columns(view, f0, mid), || sum_columns(view, mid, f1));
        a.extend(b);
        return a;
    }
    (f0..f1).map(|f| sum_rows(view.index_axis(Axis(0), f), 1)[0]).collect()
}

/// The unweighted sums of a batch under `Reject`, by the fast kernels. A sum
/// comes back non-finite iff an input is non-finite or the sum overflowed.
pub(super) fn fast_sums<F: Element>(x: &ArrayViewD<'_, F>) -> Vec<Dd<f64>> {
    let d = x.len_of(Axis(x.ndim() - 1));
    let planned = plan(x.view());
    let mut sums = match planned.plan {
        Plan::Rows { view, d } => sum_rows(view, d),
        Plan::Columns(view) => sum_columns(&view, 0, d),
        Plan::Strided(view) => {
            let leaf = |(v, _): (ArrayViewD<'_, F>, Option<ArrayViewD<'_, F>>)| {
                general::sum_lanes::<F, F>(&v, None, NanPolicy::Reject, &[]).sum
            };
            tree((view, None), LEAF, &leaf, &merge_dd)
        }
    };
    if planned.reversed {
        sums.reverse();
    }
    sums
}

/// The per-feature sums of a batch of `n ≥ 1` samples.
///
/// # Errors
///
/// [`CenteringError::NonFinite`] for a value `policy` rejects,
/// [`CenteringError::WeightOverflow`] if a feature's weight sum overflows.
pub(crate) fn reduce<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
) -> Result<Sums> {
    let (x, w, copies) = layout::fold_broadcast(x.view(), w.map(|w| w.view()));
    let sums = reduce_distinct(&x, w.as_ref(), policy)?;
    if copies == 1 {
        return Ok(sums);
    }
    sums.repeated(copies)
        .map_err(|feature| CenteringError::WeightOverflow { feature })
}

/// [`reduce`] of a batch whose sample axes are all data (no broadcast copies).
///
/// `f32` and `f64` batches without weights under `Reject` take the fast
/// kernels; every other batch — integers (summed exactly), half-precision
/// values, weights, missing values — the general path, widened to `f64`.
pub(super) fn reduce_distinct<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
) -> Result<Sums> {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let n = x.len() / d;
    let fast = if w.is_none() && policy == NanPolicy::Reject {
        match T::batch(x.view()) {
            Batch::F32(v) => Some(fast_sums(&v)),
            Batch::F64(v) => Some(fast_sums(&v)),
            _ => None,
        }
    } else {
        None
    };
    let sums = if let Some(sum) = fast {
        // Exact: an f64 holds every count up to 2^53.
        let count = Dd { hi: n as f64, lo: 0.0 };
        Sums {
            sum,
            scale: vec![0; d],
            weight: vec![count; d],
        }
    } else {
        sum_general(x, w, policy, &[])
    };
    if sums.sum.iter().all(Dd::is_finite) {
        return check_weights(sums);
    }
    if let Some((index, v)) = general::first_rejected(x, policy) {
        return Err(CenteringError::NonFinite { index, value: v });
    }
    let scale = general::overflow_scales(x, w);
    check_weights(sum_general(x, w, policy, &scale))
}

pub(super) fn check_weights(sums: Sums) -> Result<Sums> {
    match sums.weight.iter().position(|w| !w.is_finite()) {
        Some(feature) => Err(CenteringError::WeightOverflow { feature }),
        None => Ok(sums),
    }
}

/// Weighted and/or NaN-skipping sums, by the general kernel, in the same
/// fixed tree over the sample axes.
pub(super) fn sum_general<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
    scale: &[i32],
) -> Sums {
    let leaf =
        |(x, w): (ArrayViewD<'_, T>, Option<ArrayViewD<'_, W>>)| general::sum_lanes(&x, w.as_ref(), policy, scale);
    let merge = |mut a: Sums, b: Sums| {
        // An overflowed weight stays in `a`, non-finite: `reduce` reports it.
        let _ = a.merge(&b);
        a
    };
    tree((x.view(), w.map(|w| w.view())), LEAF, &leaf, &merge)
}
