//! Reduction: a batch → its per-feature sums (`reduce`), on the plan
//! `layout::plan` chose, in the fixed tree.

use ndarray::{ArrayViewD, Axis};

use super::contiguous::{self, RowAcc};
use super::general;
use super::layout::{self, Plan, plan};
#[cfg(feature = "half")]
use super::narrow::HalfAcc;
use super::narrow::{IntAcc, IntLane, Lanes, exact_int, exact_pair};
use super::samples;
use super::tree::{LEAF, PARALLEL_MIN, Rows, join, tree};
use crate::error::{CenteringError, Result};
use crate::input::__private::{Batch, IntBatch};
use crate::state::{Dd, Sums};
use crate::{Element, Input, NanPolicy};

pub(super) fn merge_dd(mut a: Vec<Dd<f64>>, b: Vec<Dd<f64>>) -> Vec<Dd<f64>> {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.add(y);
    }
    a
}

/// Sums of a `Rows` view: lanes of whole rows of `d` features, each leaf
/// accumulated by an `A`.
pub(super) fn sum_rows<T: Sync + Clone, A: Lanes<T>>(v: ArrayViewD<'_, T>, d: usize) -> Vec<Dd<f64>> {
    let leaf = |Rows { view: v, .. }: Rows<'_, T>| {
        let mut acc = A::new(d);
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
    tree(Rows { view: v, unit: d }, A::leaf_len(d), &leaf, &merge_dd)
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
pub(super) fn sum_columns<T: Sync + Clone, A: Lanes<T>>(
    view: &ArrayViewD<'_, T>,
    f0: usize,
    f1: usize,
) -> Vec<Dd<f64>> {
    let per_feature = view.len() / view.len_of(Axis(0));
    let size = (f1 - f0) * per_feature;
    if f1 - f0 > 1 && size >= PARALLEL_MIN {
        let mid = f0 + (f1 - f0) / 2;
        let (mut a, b) = join(
            size,
            || sum_columns::<T, A>(view, f0, mid),
            || sum_columns::<T, A>(view, mid, f1),
        );
        a.extend(b);
        return a;
    }
    (f0..f1)
        .map(|f| sum_rows::<T, A>(view.index_axis(Axis(0), f), 1)[0])
        .collect()
}

/// The unweighted sums of a batch by the lanes `A` on the fast plans (rows
/// or columns), by `strided` on the plan's view otherwise (`None`: no fast
/// path for this batch).
fn lane_sums<'a, T: Sync + Clone, A: Lanes<T>>(
    x: &ArrayViewD<'a, T>,
    strided: impl FnOnce(ArrayViewD<'a, T>) -> Option<Vec<Dd<f64>>>,
) -> Option<Vec<Dd<f64>>> {
    let d = x.len_of(Axis(x.ndim() - 1));
    let planned = plan(x.clone());
    let mut sums = match planned.plan {
        Plan::Rows { view, d } => sum_rows::<T, A>(view, d),
        Plan::Columns(view) => sum_columns::<T, A>(&view, 0, d),
        Plan::Strided(view) => strided(view)?,
    };
    if planned.reversed {
        sums.reverse();
    }
    Some(sums)
}

/// The unweighted sums of a batch under `Reject`, by the fast kernels. A sum
/// comes back non-finite iff an input is non-finite or the sum overflowed.
pub(super) fn fast_sums<F: Element>(x: &ArrayViewD<'_, F>) -> Vec<Dd<f64>> {
    let strided = |view: ArrayViewD<'_, F>| {
        let leaf = |(v, _): (ArrayViewD<'_, F>, Option<ArrayViewD<'_, F>>)| {
            general::sum_lanes::<F, F>(&v, None, NanPolicy::Reject, &[]).sum
        };
        Some(tree((view, None), LEAF, &leaf, &merge_dd))
    };
    lane_sums::<F, RowAcc<F>>(x, strided).unwrap_or_default()
}

/// The sums of an integer batch without weights: exact, by integer lanes on
/// the fast layouts, by [`int_sums`] on the others.
fn int_batch_sums(x: &IntBatch<'_>) -> Sums {
    fn exact<T: Input + IntLane>(x: &ArrayViewD<'_, T>) -> Sums {
        let d = x.len_of(Axis(x.ndim() - 1));
        let n = x.len() / d;
        match lane_sums::<T, IntAcc<T>>(x, |_| None) {
            Some(sum) => Sums::counted(sum, n),
            // 64-bit values are not all exact in an f64: summed as `i128`s.
            None if !T::EXACT => wide_int_sums(x),
            None => int_sums(x),
        }
    }
    match x {
        IntBatch::U8(v) => exact(v),
        IntBatch::I8(v) => exact(v),
        IntBatch::U16(v) => exact(v),
        IntBatch::I16(v) => exact(v),
        IntBatch::U32(v) => exact(v),
        IntBatch::I32(v) => exact(v),
        IntBatch::U64(v) => exact(v),
        IntBatch::I64(v) => exact(v),
    }
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
    let one_sample = n == 1 && w.is_none() && policy == NanPolicy::Reject;
    if w.is_none()
        && !one_sample
        && let Batch::Int(ints) = T::batch(x.view())
    {
        // Integers: no NaN, no infinity, no overflow; exact either way.
        return check_weights(int_batch_sums(&ints));
    }
    let fast = if one_sample {
        // One sample: each value, widened (exact), is its feature's sum —
        // the bits every lane kernel gives for one row (`0 + x` is `x`
        // with no error), without their `O(D)` lane buffers: a one-sample
        // batch of 10⁸ features allocates only its sums.
        // (A 64-bit integer is `hi + lo`, a normalised pair.)
        Some(
            x.iter()
                .map(|v| {
                    let (hi, lo) = v.widen_pair();
                    Dd { hi, lo }
                })
                .collect(),
        )
    } else if w.is_none() && policy == NanPolicy::Reject {
        match T::batch(x.view()) {
            Batch::F32(v) => Some(fast_sums(&v)),
            Batch::F64(v) => Some(fast_sums(&v)),
            #[cfg(feature = "half")]
            Batch::F16(v) => lane_sums::<_, HalfAcc>(&v, |_| None),
            #[cfg(feature = "half")]
            Batch::Bf16(v) => lane_sums::<_, HalfAcc>(&v, |_| None),
            _ => None,
        }
    } else {
        None
    };
    let sums = if let Some(sum) = fast {
        Sums::counted(sum, n)
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

/// The sums of an integer batch without weights: each leaf of the general
/// tree is widened into one contiguous `f64` buffer (at most [`LEAF`]
/// values, never the whole batch) and summed by the `f64` SIMD kernels.
/// Every partial sum there is an integer below 2⁵³ (a leaf holds at most
/// 2¹⁵ values of magnitude at most 2³²), and adding integer-valued
/// double-words below 2¹⁰⁵ is exact, so the sums are exact — and exact sums
/// are the same bits whichever path, split or thread computed them.
fn int_sums<T: Input>(x: &ArrayViewD<'_, T>) -> Sums {
    /// Values widened at a time: 32 KiB, in L1 beside the accumulators.
    const CHUNK: usize = 4096;
    let d = x.len_of(Axis(x.ndim() - 1));
    let leaf = |(v, _): (ArrayViewD<'_, T>, Option<ArrayViewD<'_, T>>)| {
        let rows = v.len() / d;
        let mut acc = RowAcc::<f64>::new(d);
        // Whole rows per chunk, so that each chunk starts at feature 0.
        let per = (CHUNK / d).max(1) * d;
        let mut buf = vec![0.0f64; per];
        if let Some(values) = v.as_slice() {
            // C order: widen slice by slice (vectorised).
            for chunk in values.chunks(per) {
                for (b, &x) in buf.iter_mut().zip(chunk) {
                    *b = x.widen();
                }
                acc.push(&buf[..chunk.len()]);
            }
        } else {
            let mut filled = 0;
            for &x in v.iter() {
                buf[filled] = x.widen();
                filled += 1;
                if filled == per {
                    acc.push(&buf);
                    filled = 0;
                }
            }
            acc.push(&buf[..filled]);
        }
        let mut sum = vec![Dd::zero(); d];
        acc.finish(&mut sum);
        Sums::counted(sum, rows)
    };
    tree((x.view(), None::<ArrayViewD<'_, T>>), LEAF, &leaf, &Sums::merged)
}

/// The sums of a 64-bit integer batch of a layout without integer lanes:
/// each leaf of the general tree adds its lanes' values as `i128`s (a
/// feature's leaf total is below 2¹⁵·2⁶⁴, exact as a double-word), and the
/// tree adds the double-words exactly (integers below 2¹⁰⁵).
fn wide_int_sums<T: Input>(x: &ArrayViewD<'_, T>) -> Sums {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let leaf = |(v, _): (ArrayViewD<'_, T>, Option<ArrayViewD<'_, T>>)| {
        let mut acc = vec![0i128; d];
        for lane in v.lanes(Axis(last)) {
            for (a, &x) in acc.iter_mut().zip(lane) {
                *a += exact_int(x);
            }
        }
        Sums::counted(acc.into_iter().map(exact_pair).collect(), v.len() / d)
    };
    tree((x.view(), None::<ArrayViewD<'_, T>>), LEAF, &leaf, &Sums::merged)
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
    if scale.is_empty()
        && let Some(sums) = samples::column_major_sums(x, w, policy)
    {
        return sums;
    }
    let leaf =
        |(x, w): (ArrayViewD<'_, T>, Option<ArrayViewD<'_, W>>)| general::sum_lanes(&x, w.as_ref(), policy, scale);
    tree((x.view(), w.map(|w| w.view())), LEAF, &leaf, &Sums::merged)
}
