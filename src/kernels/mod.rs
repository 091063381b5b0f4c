//! Reduction (`reduce`: a batch → its per-feature sums) and application
//! (`apply`: `x ∓ mean`) over any layout.
//!
//! # Layouts
//!
//! [`layout::plan`] classifies a view once, without copying:
//!
//! | plan | layouts | kernel |
//! |---|---|---|
//! | `Rows` | C order, NHWC images, one feature, row-sliced views | [`contiguous`]: lanes of `p` accumulators, feature = `i mod d` |
//! | `Columns` | Fortran order, column-sliced Fortran views | [`contiguous`] with `d = 1`, feature by feature |
//! | `Strided` | everything else (steps on the unit-stride axis, broadcast) | [`general`]: one sample at a time |
//!
//! Weighted batches and `NanPolicy::Ignore` take the general path too.
//!
//! # Determinism
//!
//! A batch is cut into leaves by recursive halving of its outermost axis
//! until a leaf holds at most [`LEAF`] elements; leaves are reduced into
//! per-feature double-words and merged pairwise in the tree's fixed shape.
//! The tree depends only on the batch's shape and layout — rayon merely runs
//! the two halves of a node on different threads when the node is larger
//! than [`PARALLEL_MIN`] — so the result is bit-identical for any thread
//! count, and with the `rayon` feature off.
//!
//! Who runs a node does not change what it computes, which leaves room to
//! schedule for the machine: a call from outside the pool splits its root
//! between the caller and the pool and spins briefly instead of sleeping
//! (see `split_on_caller`), which took W7 — 2 MiB calls — from 0.78–0.81 to
//! 0.82–0.90 of W1's fit (alternating A/B runs); only nodes of `HANDOFF_MIN`
//! elements or more are handed to the pool whole.

// The two modules that need `unsafe`: runtime CPU-feature dispatch and
// same-type slice casts (contiguous), huge-page advice (alloc).
#[allow(unsafe_code)]
pub(crate) mod alloc;
pub(crate) mod columns;
#[allow(unsafe_code)]
pub(crate) mod contiguous;
pub(crate) mod general;
pub(crate) mod layout;

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use crate::error::{CenteringError, Result};
use crate::state::{Dd, Sums};
use crate::{Element, NanPolicy};
use contiguous::RowAcc;
use layout::{Plan, plan};

/// The most elements a leaf of the reduction tree holds.
pub(crate) const LEAF: usize = 1 << 15;

/// The most elements a block of the general `apply` walks at once.
const BLOCK: usize = 1 << 12;

/// Elements per parallel task of `apply` (whole patterns of means).
const APPLY_CHUNK: usize = 1 << 17;

/// Nodes at least this large run their halves in parallel.
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// Nodes at least this large, reached from outside the pool, are handed to
/// the pool whole (`rayon::join`): the hand-off is then under 1% of the work,
/// and the caller does not compete with both workers for two cores.
#[cfg(feature = "rayon")]
const HANDOFF_MIN: usize = 1 << 22;

/// Runs `a` and `b` — the two halves of a node of `size` elements — in
/// parallel when the node is large enough and rayon is on.
fn join<A, B, RA, RB>(size: usize, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    #[cfg(feature = "rayon")]
    if size >= PARALLEL_MIN {
        if rayon::current_thread_index().is_some() || size >= HANDOFF_MIN {
            return rayon::join(a, b);
        }
        if !ON_CALLER.get() {
            return split_on_caller(a, b);
        }
        // Below the caller's own half: stay on the caller, no more hand-offs.
    }
    let _ = size;
    (a(), b())
}

#[cfg(feature = "rayon")]
thread_local! {
    /// Set while a thread outside the pool computes its half of a node.
    static ON_CALLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How long a caller outside the pool spins for the pool's half before it
/// lets rayon put it to sleep.
#[cfg(feature = "rayon")]
const SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// `join` for a thread outside rayon's pool (the usual caller).
/// `rayon::join` would hand the whole node to a worker and put the caller to
/// sleep until it is done: two wake-ups per call, about 17 µs each on the
/// reference VM, a quarter of a 2 MiB `partial_fit` (W7). Instead the pool
/// takes `a` while the caller computes `b` itself, sequentially, and then
/// spins briefly for `a` rather than sleeping. The tree is the same, so the
/// result is too.
#[cfg(feature = "rayon")]
fn split_on_caller<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Clears `ON_CALLER` however `b` ends.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_CALLER.set(false);
        }
    }
    let done = AtomicBool::new(false);
    let mut ra = None;
    let rb = rayon::in_place_scope(|s| {
        s.spawn(|_| {
            ra = Some(a());
            done.store(true, Ordering::Release);
        });
        let rb = {
            ON_CALLER.set(true);
            let _reset = Reset;
            b()
        };
        let start = std::time::Instant::now();
        while !done.load(Ordering::Acquire) && start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        rb
    });
    // `in_place_scope` returns only after its spawned half has run (and
    // re-raises its panic, if any), so `ra` is set: the one `expect` of the
    // library code, justified by rayon's contract.
    #[allow(clippy::expect_used)]
    let ra = ra.expect("in_place_scope returns after its spawned half");
    (ra, rb)
}

/// Something the fixed halving tree can cut in two.
trait Halve: Sized + Send {
    /// Elements covered.
    fn size(&self) -> usize;
    /// The two halves, or `self` back when it cannot be cut.
    fn halve(self) -> std::result::Result<(Self, Self), Self>;
}

/// The sample axis a node is cut along: the longest one (the first on ties),
/// never the last (feature) axis.
fn cut_axis(shape: &[usize]) -> Option<usize> {
    (0..shape.len() - 1)
        .max_by_key(|&a| (shape[a], std::cmp::Reverse(a)))
        .filter(|&a| shape[a] > 1)
}

/// A `Rows` view (see [`layout::Plan`]): cut along a sample axis, or — when
/// only the last axis is long — at a whole row (`unit` elements) of it.
struct Rows<'a, F> {
    view: ArrayViewD<'a, F>,
    unit: usize,
}

impl<F: Sync> Halve for Rows<'_, F> {
    fn size(&self) -> usize {
        self.view.len()
    }

    fn halve(self) -> std::result::Result<(Self, Self), Self> {
        let unit = self.unit;
        let last = self.view.ndim() - 1;
        let (ax, mid) = match cut_axis(self.view.shape()) {
            Some(ax) => (ax, self.view.len_of(Axis(ax)) / 2),
            None if self.view.len_of(Axis(last)) / unit >= 2 => (last, self.view.len_of(Axis(last)) / unit / 2 * unit),
            None => return Err(self),
        };
        let (a, b) = self.view.split_at(Axis(ax), mid);
        Ok((Rows { view: a, unit }, Rows { view: b, unit }))
    }
}

/// A batch and its optional weights (shaped like its sample axes), cut
/// together along a sample axis.
impl<F: Sync> Halve for (ArrayViewD<'_, F>, Option<ArrayViewD<'_, F>>) {
    fn size(&self) -> usize {
        self.0.len()
    }

    fn halve(self) -> std::result::Result<(Self, Self), Self> {
        let Some(ax) = cut_axis(self.0.shape()) else {
            return Err(self);
        };
        let mid = self.0.len_of(Axis(ax)) / 2;
        let (xa, xb) = self.0.split_at(Axis(ax), mid);
        let (wa, wb) = match self.1 {
            Some(w) => {
                let (a, b) = w.split_at(Axis(ax), mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        Ok(((xa, wa), (xb, wb)))
    }
}

/// An input and an output of the same shape, cut together.
impl<F: Send + Sync> Halve for (ArrayViewD<'_, F>, ArrayViewMutD<'_, F>) {
    fn size(&self) -> usize {
        self.0.len()
    }

    fn halve(self) -> std::result::Result<(Self, Self), Self> {
        let Some(ax) = cut_axis(self.0.shape()) else {
            return Err(self);
        };
        let mid = self.0.len_of(Axis(ax)) / 2;
        let (xa, xb) = self.0.split_at(Axis(ax), mid);
        let (oa, ob) = self.1.split_at(Axis(ax), mid);
        Ok(((xa, oa), (xb, ob)))
    }
}

/// An array updated in place.
impl<F: Send> Halve for ArrayViewMutD<'_, F> {
    fn size(&self) -> usize {
        self.len()
    }

    fn halve(self) -> std::result::Result<(Self, Self), Self> {
        let Some(ax) = cut_axis(self.shape()) else {
            return Err(self);
        };
        let mid = self.len_of(Axis(ax)) / 2;
        Ok(self.split_at(Axis(ax), mid))
    }
}

/// Runs `leaf` on the leaves of the fixed halving tree over `t` (nodes are
/// cut until at most `leaf_len` elements) and `merge` on the way up. The
/// tree depends only on shapes, never on the thread pool.
fn tree<T: Halve, R: Send>(
    t: T,
    leaf_len: usize,
    leaf: &(impl Fn(T) -> R + Sync),
    merge: &(impl Fn(R, R) -> R + Sync),
) -> R {
    let len = t.size();
    if len <= leaf_len {
        return leaf(t);
    }
    match t.halve() {
        Ok((a, b)) => {
            let (ra, rb) = join(
                len,
                || tree(a, leaf_len, leaf, merge),
                || tree(b, leaf_len, leaf, merge),
            );
            merge(ra, rb)
        }
        Err(t) => leaf(t),
    }
}

fn merge_dd(mut a: Vec<Dd<f64>>, b: Vec<Dd<f64>>) -> Vec<Dd<f64>> {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.add(y);
    }
    a
}

/// Sums of a `Rows` view: lanes of whole rows of `d` features.
fn sum_rows<F: Element>(v: ArrayViewD<'_, F>, d: usize) -> Vec<Dd<f64>> {
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
fn leaf_len(d: usize) -> usize {
    LEAF.max(256 * contiguous::period(d))
}

/// Sums of features `f0..f1` of a `Columns` view (feature axis first, each
/// feature's samples a contiguous last axis). Features are split across the
/// pool first, so a call from outside the pool hands work over once rather
/// than once per feature; each feature is summed by the same [`sum_rows`]
/// tree whoever runs it, so the result does not depend on the split.
fn sum_columns<F: Element>(view: &ArrayViewD<'_, F>, f0: usize, f1: usize) -> Vec<Dd<f64>> {
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
fn fast_sums<F: Element>(x: &ArrayViewD<'_, F>) -> Vec<Dd<f64>> {
    let d = x.len_of(Axis(x.ndim() - 1));
    let planned = plan(x.view());
    let mut sums = match planned.plan {
        Plan::Rows { view, d } => sum_rows(view, d),
        Plan::Columns(view) => sum_columns(&view, 0, d),
        Plan::Strided(view) => {
            let leaf = |(v, _): (ArrayViewD<'_, F>, Option<ArrayViewD<'_, F>>)| {
                general::sum_lanes(&v, None, NanPolicy::Reject, &[]).sum
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
pub(crate) fn reduce<F: Element>(
    x: &ArrayViewD<'_, F>,
    w: Option<&ArrayViewD<'_, F>>,
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
fn reduce_distinct<F: Element>(
    x: &ArrayViewD<'_, F>,
    w: Option<&ArrayViewD<'_, F>>,
    policy: NanPolicy,
) -> Result<Sums> {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let n = x.len() / d;
    let sums = if w.is_none() && policy == NanPolicy::Reject {
        let sum = fast_sums(x);
        // Exact: an f64 holds every count up to 2^53.
        let count = Dd { hi: n as f64, lo: 0.0 };
        Sums {
            sum,
            scale: vec![0; d],
            weight: vec![count; d],
        }
    } else {
        sum_general(x, w, policy)
    };
    if sums.sum.iter().all(Dd::is_finite) {
        return check_weights(sums);
    }
    if let Some((index, v)) = general::first_rejected(x, policy) {
        return Err(CenteringError::NonFinite {
            index,
            value: v.to_f64().unwrap_or(f64::NAN),
        });
    }
    check_weights(general::sum_scaled(x, w, policy))
}

fn check_weights(sums: Sums) -> Result<Sums> {
    match sums.weight.iter().position(|w| !w.is_finite()) {
        Some(feature) => Err(CenteringError::WeightOverflow { feature }),
        None => Ok(sums),
    }
}

/// Weighted and/or NaN-skipping sums, by the general kernel, in the same
/// fixed tree over the sample axes.
fn sum_general<F: Element>(x: &ArrayViewD<'_, F>, w: Option<&ArrayViewD<'_, F>>, policy: NanPolicy) -> Sums {
    let leaf = |(x, w): (ArrayViewD<'_, F>, Option<ArrayViewD<'_, F>>)| general::sum_lanes(&x, w.as_ref(), policy, &[]);
    let merge = |mut a: Sums, b: Sums| {
        // An overflowed weight stays in `a`, non-finite: `reduce` reports it.
        let _ = a.merge(&b);
        a
    };
    tree((x.view(), w.map(|w| w.view())), LEAF, &leaf, &merge)
}

/// Where a contiguous buffer keeps its features: element `i` of the buffer
/// in memory order is feature `(i / stride) mod d` (reversed when the
/// feature axis runs backwards).
struct MemoryOrder {
    d: usize,
    stride: usize,
    reversed: bool,
}

impl MemoryOrder {
    fn of<F>(x: &ArrayViewD<'_, F>) -> Self {
        let last = x.ndim() - 1;
        let d = x.len_of(Axis(last));
        let s = x.strides()[last];
        MemoryOrder {
            d,
            stride: if d == 1 { 1 } else { s.unsigned_abs().max(1) },
            reversed: s < 0 && d > 1,
        }
    }
}

/// The longest pattern of means kept on the stack (`period(d)` for every
/// `d < 256`); wider rows use the mean itself as the pattern.
const STACK_PATTERN: usize = 4096;

/// Calls `f` with the means repeated into one block of `period(d)` elements
/// (reversed for a backwards feature axis), without allocating except for a
/// reversed feature axis of 256 or more features.
fn with_pattern<F: Element, R>(mean: &[F], reversed: bool, f: impl FnOnce(&[F]) -> R) -> R {
    let d = mean.len();
    let p = contiguous::period(d);
    let at = |j: usize| if reversed { mean[d - 1 - j % d] } else { mean[j % d] };
    if p == d && !reversed {
        return f(mean);
    }
    if p <= STACK_PATTERN {
        let mut buf = [F::zero(); STACK_PATTERN];
        for (j, b) in buf[..p].iter_mut().enumerate() {
            *b = at(j);
        }
        return f(&buf[..p]);
    }
    let buf: Vec<F> = (0..p).map(at).collect();
    f(&buf)
}

/// `o = x ∓ mean` on two buffers laid out alike in memory.
fn apply_memory<F: Element>(xs: &[F], os: &mut [F], order: &MemoryOrder, mean: &[F], add: bool) {
    if order.stride == 1 {
        with_pattern(mean, order.reversed, |pat| {
            let chunk = (APPLY_CHUNK / pat.len()).max(1) * pat.len();
            for_chunks(xs, os, chunk, &|x, o| contiguous::apply_rows(x, o, pat, add));
        });
    } else {
        for_chunks_at(xs, os, APPLY_CHUNK, &|start, x, o| {
            runs(start, x.len(), order, |a, b, f| {
                contiguous::apply_scalar(&x[a..b], &mut o[a..b], mean[f], add)
            })
        });
    }
}

/// In-place twin of [`apply_memory`].
fn update_memory<F: Element>(xs: &mut [F], order: &MemoryOrder, mean: &[F], add: bool) {
    if order.stride == 1 {
        with_pattern(mean, order.reversed, |pat| {
            let chunk = (APPLY_CHUNK / pat.len()).max(1) * pat.len();
            for_chunks_mut(xs, chunk, &|x| contiguous::update_rows(x, pat, add));
        });
    } else {
        for_chunks_mut_at(xs, APPLY_CHUNK, &|start, x| {
            runs(start, x.len(), order, |a, b, f| {
                contiguous::update_scalar(&mut x[a..b], mean[f], add)
            })
        });
    }
}

/// Calls `f(a, b, feature)` for each run of one feature within the chunk
/// `[start, start + len)` of a memory-ordered buffer (chunk-relative `a..b`).
fn runs(start: usize, len: usize, order: &MemoryOrder, mut f: impl FnMut(usize, usize, usize)) {
    let mut p = start;
    let end = start + len;
    while p < end {
        let run = p / order.stride;
        let stop = ((run + 1) * order.stride).min(end);
        let feature = run % order.d;
        f(
            p - start,
            stop - start,
            if order.reversed { order.d - 1 - feature } else { feature },
        );
        p = stop;
    }
}

/// `out = x − mean` (or `+` when `add`), for any layouts of `x` and `out`
/// (same shape, checked by the caller).
pub(crate) fn apply<F: Element>(x: ArrayViewD<'_, F>, mut out: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
    if x.strides() == out.strides() {
        let order = MemoryOrder::of(&x);
        if let (Some(xs), Some(os)) = (x.as_slice_memory_order(), out.as_slice_memory_order_mut()) {
            apply_memory(xs, os, &order, mean, add);
            return;
        }
    }
    apply_blocks(x, out, mean, add);
}

/// The fallback of [`apply`] for layouts that differ or have gaps: blocks of
/// at most [`BLOCK`] elements (halving the longest sample axis), each walked
/// lane by lane. Blocks keep a transposing walk (Fortran input, C output)
/// inside the cache.
fn apply_blocks<F: Element>(x: ArrayViewD<'_, F>, out: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
    let m = ndarray::ArrayView1::from(mean);
    let leaf = |(x, mut out): (ArrayViewD<'_, F>, ArrayViewMutD<'_, F>)| {
        let last = x.ndim() - 1;
        ndarray::Zip::from(out.lanes_mut(Axis(last)))
            .and(x.lanes(Axis(last)))
            .for_each(|o, i| {
                ndarray::Zip::from(o).and(i).and(m).for_each(|o, &i, &m| {
                    *o = if add { i + m } else { i - m };
                })
            });
    };
    tree((x, out), BLOCK, &leaf, &|(), ()| ());
}

/// In-place twin of [`apply_blocks`].
fn update_blocks<F: Element>(x: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
    let m = ndarray::ArrayView1::from(mean);
    let leaf = |mut x: ArrayViewMutD<'_, F>| {
        let last = x.ndim() - 1;
        ndarray::Zip::from(x.lanes_mut(Axis(last))).for_each(|o| {
            ndarray::Zip::from(o).and(m).for_each(|o, &m| {
                *o = if add { *o + m } else { *o - m };
            })
        });
    };
    tree(x, BLOCK, &leaf, &|(), ()| ());
}

/// In-place `x ∓= mean`.
pub(crate) fn apply_inplace<F: Element>(mut x: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
    let order = MemoryOrder::of(&x.view());
    if let Some(xs) = x.as_slice_memory_order_mut() {
        update_memory(xs, &order, mean, add);
        return;
    }
    update_blocks(x, mean, add);
}

fn for_chunks<F: Element>(x: &[F], o: &mut [F], chunk: usize, f: &(impl Fn(&[F], &mut [F]) + Sync)) {
    for_chunks_at(x, o, chunk, &|_, x, o| f(x, o))
}

/// Calls `f(start, x_chunk, o_chunk)` on fixed chunks, in parallel when large.
fn for_chunks_at<F: Element>(x: &[F], o: &mut [F], chunk: usize, f: &(impl Fn(usize, &[F], &mut [F]) + Sync)) {
    #[cfg(feature = "rayon")]
    if x.len() >= PARALLEL_MIN {
        use rayon::prelude::*;
        o.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .enumerate()
            .for_each(|(i, (o, x))| f(i * chunk, x, o));
        return;
    }
    for (i, (o, x)) in o.chunks_mut(chunk).zip(x.chunks(chunk)).enumerate() {
        f(i * chunk, x, o);
    }
}

fn for_chunks_mut<F: Element>(x: &mut [F], chunk: usize, f: &(impl Fn(&mut [F]) + Sync)) {
    for_chunks_mut_at(x, chunk, &|_, x| f(x))
}

/// In-place twin of [`for_chunks_at`].
fn for_chunks_mut_at<F: Element>(x: &mut [F], chunk: usize, f: &(impl Fn(usize, &mut [F]) + Sync)) {
    #[cfg(feature = "rayon")]
    if x.len() >= PARALLEL_MIN {
        use rayon::prelude::*;
        x.par_chunks_mut(chunk).enumerate().for_each(|(i, x)| f(i * chunk, x));
        return;
    }
    for (i, x) in x.chunks_mut(chunk).enumerate() {
        f(i * chunk, x);
    }
}
