//! The always-correct paths: any strides, sample weights, missing values,
//! and the rare re-summation of a batch whose sums would overflow. Every
//! fast path is tested against these.

use ndarray::{ArrayViewD, Axis, Dimension, Zip};
use num_traits::Float;

use crate::state::{Dd, SCALE_STEP, Sums, ldexp, product_error, two_sum};
use crate::{Input, NanPolicy};

/// Adds one unweighted value `x` of a feature to its sum and its count
/// (TwoSum into `hi`, the errors collected in `lo`, renormalised at the end
/// of a leaf). Every unweighted general path — arrays and columns — adds
/// values this way, so their results agree bit for bit.
#[inline(always)]
pub(crate) fn push_one(sum: &mut Dd<f64>, count: &mut Dd<f64>, x: f64) {
    let (s, e) = two_sum(sum.hi, x);
    sum.hi = s;
    sum.lo += e;
    let (s, e) = two_sum(count.hi, 1.0);
    count.hi = s;
    count.lo += e;
}

/// Adds one sample (`lane`, `d` values) with weight `w` into `sums`.
///
/// Accumulation is in `f64` double-words whatever `F` is: exact products and
/// far more precision than `f32` needs (chains of up to a leaf of `f32` pairs
/// would not keep the one-ulp bound), and identical to `F` for `f64`. The
/// product `w·x` is split exactly with an FMA (`w·x = p + e`) so that the
/// weighted sum is as exact as the unweighted one. Under `Ignore`, NaN values
/// are skipped and contribute no weight.
///
/// Any [`Input`] is widened to `f64` exactly first; integer values then add
/// exactly (every partial sum of a leaf is an integer far below 2⁵³, and
/// double-word additions of integer-valued pairs are exact), so integer data
/// gets an exact sum.
#[inline]
fn push_lane<T: Input, W: Input>(
    sums: &mut Sums,
    lane: ndarray::ArrayView1<'_, T>,
    w: Option<W>,
    policy: NanPolicy,
    scale: &[i32],
) {
    for (j, &x) in lane.iter().enumerate() {
        // `x = x + x_lo` exactly; `x_lo` is 0 but for 64-bit integers.
        let (x, x_lo) = x.widen_pair();
        if policy == NanPolicy::Ignore && x.is_nan() {
            continue;
        }
        let x = if scale.is_empty() { x } else { ldexp(x, -scale[j]) };
        let acc = &mut sums.sum[j];
        match w.map(Input::widen) {
            None => {
                push_one(acc, &mut sums.weight[j], x);
                // (A zero rest adds nothing: the accumulators are never −0.)
                if !T::EXACT && x_lo != 0.0 {
                    // The rest, as one more term of the chain (no weight).
                    let x_lo = if scale.is_empty() { x_lo } else { ldexp(x_lo, -scale[j]) };
                    let (s, e) = two_sum(acc.hi, x_lo);
                    acc.hi = s;
                    acc.lo += e;
                }
            }
            Some(w) => {
                let p = w * x;
                let pe = product_error(w, x, p);
                let (s, e) = two_sum(acc.hi, p);
                acc.hi = s;
                acc.lo += e + pe;
                if !T::EXACT && x_lo != 0.0 {
                    // `w·x_lo` too, exactly split, as one more term (a zero
                    // rest would add nothing but a slow FMA fallback).
                    let x_lo = if scale.is_empty() { x_lo } else { ldexp(x_lo, -scale[j]) };
                    let p = w * x_lo;
                    let pe = product_error(w, x_lo, p);
                    let (s, e) = two_sum(acc.hi, p);
                    acc.hi = s;
                    acc.lo += e + pe;
                }
                let (s, e) = two_sum(sums.weight[j].hi, w);
                sums.weight[j].hi = s;
                sums.weight[j].lo += e;
            }
        }
    }
}

/// Sums a `(samples…, D)` view of any layout, with optional weights shaped
/// like the sample axes. `scale` (empty, or one exponent per feature) divides
/// every value by `2^scale[j]` first.
///
/// Leaves of rows or of columns (see [`samples`](super::samples)) are summed
/// by vectorised bodies of this same arithmetic; others lane by lane.
pub(crate) fn sum_lanes<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
    scale: &[i32],
) -> Sums {
    if scale.is_empty()
        && let Some(sums) = super::samples::leaf_sums(x, w, policy)
    {
        return sums;
    }
    per_lane(x, w, policy, scale)
}

/// [`sum_lanes`] one lane at a time: any layout, any scale.
pub(crate) fn per_lane<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
    scale: &[i32],
) -> Sums {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let mut sums = Sums::zeros(d);
    match w {
        None => {
            for lane in x.lanes(Axis(last)) {
                push_lane::<T, W>(&mut sums, lane, None, policy, scale);
            }
        }
        Some(w) => {
            // Lanes and weights in logical order (not `Zip`'s, which may
            // walk Fortran-ordered operands column-major): every layout of
            // the same batch adds each feature's values in the same order.
            for (lane, &wi) in x.lanes(Axis(last)).into_iter().zip(w.iter()) {
                push_lane(&mut sums, lane, Some(wi), policy, scale);
            }
        }
    }
    // The lanes' `lo` parts were added without renormalising: normalise.
    Sums {
        sum: sums.sum.iter().map(|s| s.normalized()).collect(),
        scale: if scale.is_empty() { vec![0; d] } else { scale.to_vec() },
        weight: sums.weight.iter().map(|w| w.normalized()).collect(),
    }
}

/// The first element (in logical order) that `policy` does not accept.
pub(crate) fn first_rejected<T: Input>(x: &ArrayViewD<'_, T>, policy: NanPolicy) -> Option<(Vec<usize>, f64)> {
    x.indexed_iter()
        .map(|(i, &v)| (i, v.widen()))
        .find(|(_, v)| match policy {
            NanPolicy::Reject => !v.is_finite(),
            NanPolicy::Ignore => v.is_infinite(),
        })
        .map(|(i, v)| (i.slice().to_vec(), v))
}

/// The first weight that is negative, NaN or infinite.
///
/// Valid weights — the common case — are checked by a plain pass over their
/// memory; only a batch that has a bad one pays for the indexed search
/// (an `IxDyn` index per element cost W11's fit a third of its time).
pub(crate) fn first_bad_weight<F: Float>(w: &ArrayViewD<'_, F>) -> Option<(Vec<usize>, F)> {
    // `0 ≤ v ≤ MAX`: finite and not negative (NaN compares false), and
    // without a branch per weight, so that the compiler checks a block of
    // them per vector instruction.
    let ok = |v: F| (v >= F::zero()) & (v <= F::max_value());
    let all_ok = match w.as_slice_memory_order() {
        Some(s) => s.chunks(1024).all(|b| b.iter().fold(true, |all, &v| all & ok(v))),
        None => w.iter().all(|&v| ok(v)),
    };
    if all_ok {
        return None;
    }
    w.indexed_iter()
        .find(|(_, v)| !ok(**v))
        .map(|(i, &v)| (i.slice().to_vec(), v))
}

/// `⌊log₂|x|⌋` for finite non-zero `x` (subnormals included).
pub(crate) fn ilogb<F: Float>(x: F) -> i32 {
    let (m, e, _) = x.integer_decode();
    e as i32 + 63 - m.leading_zeros() as i32
}

/// The power-of-two exponents by which [`overflow_scales`] divides each feature,
/// from the largest `⌊log₂|w·x|⌋` of its terms (`i32::MIN`: no non-zero
/// term, no scaling).
pub(crate) fn scales<F: Float>(top: &[i32]) -> Vec<i32> {
    let max_exp = ilogb(F::max_value());
    top.iter()
        .map(|&t| t.saturating_add(SCALE_STEP + 2).saturating_sub(max_exp).max(0))
        .collect()
}

/// The scale exponents for re-summing a batch whose ordinary sums
/// overflowed: each feature is scaled down by a power of two chosen from its
/// largest `|w·x|`, so that the sum of up to 2⁶⁴ such terms stays finite.
/// Values that become subnormal after scaling lose bits, but they are
/// smaller than the largest term by more than `F`'s whole exponent range, so
/// the mean does not see it. The re-sum itself runs in the same tree as any
/// sum (`reduce::sum_general` with these scales).
pub(crate) fn overflow_scales<T: Input, W: Input>(x: &ArrayViewD<'_, T>, w: Option<&ArrayViewD<'_, W>>) -> Vec<i32> {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let mut top = vec![i32::MIN; d];
    let mut see = |lane: ndarray::ArrayView1<'_, T>, wi: f64| {
        for (j, &v) in lane.iter().enumerate() {
            let v = v.widen();
            if v.is_finite() && v != 0.0 && wi != 0.0 {
                top[j] = top[j].max(ilogb(v) + ilogb(wi));
            }
        }
    };
    match w {
        None => x.lanes(Axis(last)).into_iter().for_each(|l| see(l, 1.0)),
        Some(w) => Zip::from(x.lanes(Axis(last)))
            .and(w)
            .for_each(|l, &wi| see(l, wi.widen())),
    }
    // The sums are f64 whatever the input: f64's range decides.
    scales::<f64>(&top)
}

#[cfg(test)]
mod tests {
    use ndarray::Array1;

    use super::first_bad_weight;

    /// The block-wise scan finds every kind of bad weight wherever it is
    /// (first, at a block's end and start, past the last whole block), and
    /// accepts `-0`, subnormal and largest weights.
    #[test]
    fn bad_weights_are_found_in_any_block() {
        let good = [0.0, -0.0, f64::MIN_POSITIVE / 4.0, 1.5, f64::MAX];
        let w = Array1::from_shape_fn(5000, |i| good[i % good.len()]);
        assert_eq!(first_bad_weight(&w.view().into_dyn()), None);
        let w32 = w.mapv(|v| v.min(f64::from(f32::MAX)) as f32);
        assert_eq!(first_bad_weight(&w32.view().into_dyn()), None);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e-300] {
            for at in [0, 1023, 1024, 4999] {
                let mut v = w.clone();
                v[at] = bad;
                let found = first_bad_weight(&v.view().into_dyn()).expect("a bad weight");
                assert_eq!(found.0, vec![at]);
                assert_eq!(found.1.to_bits(), bad.to_bits());
            }
        }
    }
}
