//! Layout classification: a view of shape `(samples…, D)` is rearranged,
//! without copying, into one of three plans. Only axis order, direction and
//! merging change; which element is which feature never does.
//!
//! 1. Sample axes of length 1 are dropped and negative strides flipped
//!    (summation order over samples does not change the mean beyond rounding,
//!    and is fixed by the layout, so results stay deterministic).
//! 2. Sample axes are sorted by decreasing stride and merged where memory
//!    allows, so that the innermost axis is as long and contiguous as possible.
//! 3. The plan is chosen by where the unit stride lies.

use ndarray::{ArrayViewD, Axis, Slice};

/// How a batch will be traversed.
pub(crate) enum Plan<'a, F> {
    /// The last axis is contiguous and its length is a multiple of `d`; element
    /// `i` of every lane is feature `i mod d`. Other axes index lanes.
    /// C order, images (NHWC), one feature (`d = 1`), row-sliced views.
    Rows { view: ArrayViewD<'a, F>, d: usize },
    /// Axis 0 is the feature axis; the last axis is contiguous and indexes
    /// samples. Fortran order and feature-sliced Fortran views.
    Columns(ArrayViewD<'a, F>),
    /// Anything else: the original axes, `(samples…, D)`.
    Strided(ArrayViewD<'a, F>),
}

/// A layout plan, and whether the feature axis was reversed (then every
/// per-feature result must be read back in reverse order).
pub(crate) struct Planned<'a, F> {
    pub(crate) plan: Plan<'a, F>,
    pub(crate) reversed: bool,
}

/// Classifies `x` (ndim ≥ 1, last axis = features, no zero-length axis).
pub(crate) fn plan<F>(x: ArrayViewD<'_, F>) -> Planned<'_, F> {
    let mut v = x;
    let mut reversed = false;
    let last = v.ndim() - 1;
    let d = v.len_of(Axis(last));
    if v.strides()[last] < 0 && d > 1 {
        v.invert_axis(Axis(last));
        reversed = true;
    }
    // Drop length-1 sample axes, flip negative sample strides.
    for ax in (0..last).rev() {
        if v.len_of(Axis(ax)) == 1 {
            v = v.index_axis_move(Axis(ax), 0);
        } else if v.strides()[ax] < 0 {
            v.invert_axis(Axis(ax));
        }
    }
    let last = v.ndim() - 1;
    if d == 1 {
        // One feature: a pure reduction over the sample axes.
        let mut s = v.index_axis_move(Axis(last), 0);
        if s.ndim() == 0 {
            s = s.insert_axis(Axis(0));
        }
        let s = merge_inward(sort_axes(s, 0), 0);
        let n = s.ndim();
        let plan = if s.strides()[n - 1] == 1 {
            Plan::Rows { view: s, d: 1 }
        } else {
            Plan::Strided(s.insert_axis(Axis(n)))
        };
        return Planned { plan, reversed };
    }
    if v.strides()[last] == 1 {
        // Features contiguous: sort the sample axes, then merge the inner ones
        // into the feature axis as long as memory allows.
        let n = v.ndim();
        let mut axes: Vec<usize> = (0..n - 1).collect();
        axes.sort_by_key(|&a| std::cmp::Reverse(v.strides()[a]));
        axes.push(n - 1);
        let v = merge_inward(v.permuted_axes(axes), 0);
        return Planned {
            plan: Plan::Rows { view: v, d },
            reversed,
        };
    }
    if (0..last).any(|ax| v.strides()[ax] == 1) {
        // Fortran-like: features first, then samples sorted and merged inward.
        let mut axes: Vec<usize> = vec![last];
        axes.extend(0..last);
        let w = merge_inward(sort_axes(v.clone().permuted_axes(axes), 1), 1);
        if w.ndim() >= 2 && w.strides()[w.ndim() - 1] == 1 {
            return Planned {
                plan: Plan::Columns(w),
                reversed,
            };
        }
    }
    Planned {
        plan: Plan::Strided(v),
        reversed,
    }
}

/// Sorts the axes from `from` on by decreasing stride.
fn sort_axes<F>(v: ArrayViewD<'_, F>, from: usize) -> ArrayViewD<'_, F> {
    let mut axes: Vec<usize> = (from..v.ndim()).collect();
    axes.sort_by_key(|&a| std::cmp::Reverse(v.strides()[a]));
    let mut all: Vec<usize> = (0..from).collect();
    all.extend(axes);
    v.permuted_axes(all)
}

/// Merges axes into the last one, innermost first, while memory allows (and
/// never axes before `keep`, which stay as they are), then drops the
/// length-1 axes this leaves behind.
fn merge_inward<F>(mut v: ArrayViewD<'_, F>, keep: usize) -> ArrayViewD<'_, F> {
    let last = v.ndim() - 1;
    for ax in (keep.min(last)..last).rev() {
        if !v.merge_axes(Axis(ax), Axis(last)) {
            break;
        }
    }
    let mut ax = keep.min(last);
    while ax + 1 < v.ndim() {
        if v.len_of(Axis(ax)) == 1 {
            v = v.index_axis_move(Axis(ax), 0);
        } else {
            ax += 1;
        }
    }
    v
}

/// Zero-stride sample axes (broadcast views) hold copies, not data: each
/// such axis of length > 1 — where the weights, if any, are constant along
/// it too — is cut to length 1, and the product of the cut lengths is
/// returned. The batch is that many repetitions of the view that remains,
/// which is summed once and multiplied (`Sums::repeated`), so that fitting a
/// broadcast view of 2⁴⁰ rows costs what its one distinct row costs. Axes
/// are cut to length 1 rather than removed, so an index into the result is
/// an index into `x`.
pub(crate) fn fold_broadcast<'a, 'b, F, W>(
    mut x: ArrayViewD<'a, F>,
    mut w: Option<ArrayViewD<'b, W>>,
) -> (ArrayViewD<'a, F>, Option<ArrayViewD<'b, W>>, u64) {
    let mut copies: u64 = 1;
    for ax in 0..x.ndim().saturating_sub(1) {
        let len = x.len_of(Axis(ax));
        let constant_weight = w.as_ref().is_none_or(|w| w.strides()[ax] == 0);
        if len > 1 && x.strides()[ax] == 0 && constant_weight {
            x.slice_axis_inplace(Axis(ax), Slice::from(0..1));
            if let Some(w) = w.as_mut() {
                w.slice_axis_inplace(Axis(ax), Slice::from(0..1));
            }
            // The product of the cut lengths divides `x.len()` ≤ isize::MAX.
            copies = copies.saturating_mul(len as u64);
        }
    }
    (x, w, copies)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array4, ArrayViewD, ShapeBuilder, s};

    use super::{Plan, fold_broadcast, plan};

    /// The plan's kind, its view's shape and strides, and whether the
    /// feature axis was reversed.
    fn kind(x: ArrayViewD<'_, f64>) -> (&'static str, Vec<usize>, Vec<isize>, bool) {
        let p = plan(x);
        let (k, v) = match p.plan {
            Plan::Rows { view, .. } => ("rows", view),
            Plan::Columns(view) => ("columns", view),
            Plan::Strided(view) => ("strided", view),
        };
        (k, v.shape().to_vec(), v.strides().to_vec(), p.reversed)
    }

    #[test]
    fn every_layout_gets_its_plan() {
        let c = Array2::<f64>::zeros((6, 4));
        let f = Array2::<f64>::zeros((6, 4).f());
        let img = Array4::<f64>::zeros((2, 3, 5, 3));
        // C order: one contiguous lane of whole rows.
        assert_eq!(kind(c.view().into_dyn()), ("rows", vec![24], vec![1], false));
        // Fortran order: features first, each a contiguous run of samples.
        assert_eq!(kind(f.view().into_dyn()), ("columns", vec![4, 6], vec![6, 1], false));
        // NHWC images: one lane, one mean per channel.
        assert_eq!(kind(img.view().into_dyn()), ("rows", vec![90], vec![1], false));
        // One feature: a reduction over a contiguous run.
        let one = Array2::<f64>::zeros((7, 1));
        assert_eq!(kind(one.view().into_dyn()), ("rows", vec![7], vec![1], false));
        // Every other row: rows, lanes of one row each.
        assert_eq!(
            kind(c.slice(s![..;2, ..]).into_dyn()),
            ("rows", vec![3, 4], vec![8, 1], false)
        );
        // Reversed rows are flipped back; a reversed feature axis is flipped
        // and reported.
        assert_eq!(
            kind(c.slice(s![..;-1, ..]).into_dyn()),
            ("rows", vec![24], vec![1], false)
        );
        assert_eq!(
            kind(c.slice(s![.., ..;-1]).into_dyn()),
            ("rows", vec![24], vec![1], true)
        );
        // A C array transposed is Fortran-like.
        let t = Array2::<f64>::zeros((4, 6));
        assert_eq!(kind(t.t().into_dyn()).0, "columns");
        // Every other feature: no unit stride on the feature axis's side.
        assert_eq!(kind(c.slice(s![.., ..;2]).into_dyn()).0, "strided");
        // Length-1 sample axes are dropped.
        let lone = Array2::<f64>::zeros((1, 5));
        assert_eq!(kind(lone.view().into_dyn()), ("rows", vec![5], vec![1], false));
    }

    #[test]
    fn broadcast_axes_are_cut_to_one_and_counted() {
        let row = Array2::<f64>::zeros((1, 3));
        let b = row.broadcast((1000, 3)).unwrap().into_dyn();
        let (x, w, copies) = fold_broadcast::<f64, f64>(b, None);
        assert_eq!((x.shape(), copies), (&[1usize, 3][..], 1000));
        assert!(w.is_none());
        // Weights that vary along the broadcast axis keep it.
        let wv = ndarray::Array1::<f64>::zeros(1000).into_dyn();
        let b = row.broadcast((1000, 3)).unwrap().into_dyn();
        let (x, _, copies) = fold_broadcast(b, Some(wv.view()));
        assert_eq!((x.shape(), copies), (&[1000usize, 3][..], 1));
        // Constant weights (broadcast too) are cut with it.
        let w1 = ndarray::Array1::<f64>::zeros(1);
        let wb = w1.broadcast(1000).unwrap().into_dyn();
        let b = row.broadcast((1000, 3)).unwrap().into_dyn();
        let (x, w, copies) = fold_broadcast(b, Some(wb));
        assert_eq!(
            (x.shape(), w.map(|w| w.len()), copies),
            (&[1usize, 3][..], Some(1), 1000)
        );
    }
}
