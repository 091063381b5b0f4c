//! The general path's per-sample arithmetic (`general::sum_lanes`: weights,
//! missing values), vectorised across features for the layouts where a
//! leaf's samples are contiguous rows (C order, NHWC images — one run, or
//! several, as in a leaf of `(N, T, D)` sequences cut along `T`) or its
//! features contiguous columns (a 2-D Fortran-order array).
//!
//! Each feature still adds its values one sample after another, in the
//! general path's order and with its operations — TwoSum of `x` (or of the
//! exact product `w·x = p + e`, the error by FMA where the CPU has it and by
//! Dekker's split otherwise, which are equal: `general::push_lane` uses the
//! split with an FMA fallback for the same reason), the errors collected in
//! `lo`, NaN skipped under `Ignore` — so the sums are the general path's
//! bits, only computed for many features at once: a NaN turns into a
//! select that keeps the old accumulator, not a branch. Two rows are added
//! per load and store of the accumulators. The weight sums of a batch with
//! one weight per sample and no skipped values are one chain per leaf,
//! copied to every feature (the general path computes the same chain once
//! per feature).
//!
//! W10 (W1 with 10% NaN under `Ignore`) and W11 (W1 with a weight per row)
//! took the general path's per-lane `ndarray` loop before: 3.4× and 7.8×
//! the time of the plain fit on a 2 GiB array (issue 10's figures).

use ndarray::{ArrayViewD, Axis};

use super::columns::Validity;
use super::contiguous::{Unit, prefetch_ahead, prefetch_at};
use super::general;
use super::tree::{Halve, LEAF, PARALLEL_MIN, join, tree};
use crate::state::{Dd, Sums, product_error, two_sum};
use crate::{Input, NanPolicy};

/// The sums of one leaf of the general tree by the vectorised bodies, or
/// `None` when the leaf's layout is not one of theirs (the caller then runs
/// the per-lane loop). Bit for bit what `general::sum_lanes` computes
/// without scaling.
pub(super) fn leaf_sums<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
) -> Option<Sums> {
    if !T::EXACT {
        // 64-bit integers are split into two `f64`s per value
        // (`general::push_lane`); these bodies widen to one.
        return None;
    }
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let rows = x.len().checked_div(d)?;
    if rows == 0 {
        return None;
    }
    // One weight per row, in the rows' (logical) order, as the per-lane
    // loop reads them.
    let ws = w.map(|w| w.as_slice().filter(|s| s.len() == rows));
    let ignore = policy == NanPolicy::Ignore;
    let new_acc = || Acc::new(d, w.is_some() && !ignore);
    let acc = match (x.as_slice(), ws) {
        (Some(xs), None | Some(Some(_))) => {
            let mut acc = new_acc();
            rows_dispatch(xs, ws.flatten(), ignore, &mut acc);
            acc
        }
        _ if x.ndim() == 2 && x.strides()[0] == 1 && d > 0 && !matches!(ws, Some(None)) => {
            let x = x.view().into_dimensionality::<ndarray::Ix2>().ok()?;
            return columns_leaf(&x, ws.flatten(), ignore);
        }
        // Contiguous rows, but not one run (a leaf cut along an inner
        // sample axis, e.g. `(N, T, D)` sequences with T > N, or a sliced
        // batch): the runs in logical order.
        // Only where rows are adjacent (the runs hold whole rows, not one
        // value each, which the per-lane loop does better).
        _ if x.ndim() >= 2 && (x.strides()[last] == 1 || d == 1) && x.strides()[last - 1] == d as isize => {
            let mut acc = new_acc();
            walk_rows(x.view(), w.map(|w| w.view()), ignore, &mut acc);
            acc
        }
        _ => return None,
    };
    Some(acc.into_sums(d))
}

/// The columns kernel on a column-major leaf (each feature's samples one
/// contiguous run; `None` otherwise), `w` one weight per row.
fn columns_leaf<T: Input, W: Input>(x: &ndarray::ArrayView2<'_, T>, w: Option<&[W]>, ignore: bool) -> Option<Sums> {
    let columns: Vec<&[T]> = x.columns().into_iter().map(|c| c.to_slice()).collect::<Option<_>>()?;
    let d = columns.len();
    let mut acc = Acc::new(d, w.is_some() && !ignore);
    let cuts = [0, x.nrows()];
    columns_dispatch(&columns, &[], w, ignore, &cuts, std::slice::from_mut(&mut acc));
    Some(acc.into_sums(d))
}

/// The sums of a whole 2-D column-major batch (`x.strides()[0] == 1`) by
/// groups of [`GROUP`] features, each walked down the rows of the general
/// tree on its own, or `None` for other batches.
///
/// The general tree cuts a batch's rows, so each of its leaves holds a few
/// hundred rows of *every* column — as many memory streams as features. Per
/// group, the leaves are the same row ranges (a node's size counts all `d`
/// features, so the tree cuts where the whole batch's does) and the merges
/// the same pairs, feature by feature, so every feature gets the general
/// tree's bits — while reading only `GROUP` columns at a time, front to
/// back.
pub(super) fn column_major_sums<T: Input, W: Input>(
    x: &ArrayViewD<'_, T>,
    w: Option<&ArrayViewD<'_, W>>,
    policy: NanPolicy,
) -> Option<Sums> {
    let x = x.view().into_dimensionality::<ndarray::Ix2>().ok()?;
    let (rows, d) = x.dim();
    if x.strides()[0] != 1 || rows < 2 || d <= GROUP {
        return None;
    }
    let w = match w {
        Some(w) => Some(w.view().into_dimensionality::<ndarray::Ix1>().ok()?),
        None => None,
    };
    Some(feature_groups(&x, w.as_ref(), policy, 0, d))
}

/// [`column_major_sums`] of features `f0..f1`, split across the pool.
fn feature_groups<T: Input, W: Input>(
    x: &ndarray::ArrayView2<'_, T>,
    w: Option<&ndarray::ArrayView1<'_, W>>,
    policy: NanPolicy,
    f0: usize,
    f1: usize,
) -> Sums {
    let size = (f1 - f0) * x.nrows();
    if f1 - f0 > GROUP && size >= PARALLEL_MIN {
        let mid = f0 + (f1 - f0).div_ceil(2 * GROUP) * GROUP;
        let (mut a, b) = join(
            size,
            || feature_groups(x, w, policy, f0, mid),
            || feature_groups(x, w, policy, mid, f1),
        );
        a.append(b);
        return a;
    }
    let mut out = Sums::zeros(0);
    for j0 in (f0..f1).step_by(GROUP) {
        let j1 = f1.min(j0 + GROUP);
        let group = Group {
            x: x.slice(ndarray::s![.., j0..j1]),
            w: w.map(|w| w.view()),
            d: x.ncols(),
        };
        let sums = tree(group, SPAN, &group_span(policy), &Sums::merged);
        out.append(sums);
    }
    out
}

/// The most elements (rows times all `d` features, as the tree counts a
/// node) of a span: a node of a [`Group`]'s tree whose leaves the columns
/// kernel sums in one call, each group of features walked down all of the
/// span's rows before the next (the leaves' sums and the merges are the
/// tree's, so the bits do not depend on it). Leaf by leaf, each column
/// was read 4 KiB at a time (a leaf of W10F/W11F is 512 rows), switching
/// between the group's 32 columns; a span of 2¹⁸ reads 32 KiB of each
/// column front to back (of W10F/W11F's 2²¹ rows), with one call, one
/// `staged_weights` buffer and one set of allocations per span instead of
/// per leaf (the weights copied are the same bytes). Roofline
/// W10F/W11F-only runs on the AMD EPYC (Zen 4) VM, nine alternations of
/// leaf by leaf and spans of 2¹⁸: W11F 14.5–23.8 (median 20.0) → 16.5–26.6
/// (23.1) GB/s, ratios to the read limit median 0.66 → 0.80; W10F 23.4–27.8
/// (24.6) → 18.9–29.3 (25.0) GB/s, within the drift (ratio medians 0.85 →
/// 0.91 against limits that moved too). Spans of 2²⁰, three alternations,
/// were no better (W11F 0.83 / 0.70 / 0.70).
const SPAN: usize = 1 << 18;

/// A node of a [`Group`]'s tree of at most [`SPAN`] elements (one leaf or
/// several): its leaves' sums by one call of the columns kernel, which
/// reads each column across all of them, then merged as the tree merges
/// them; where that kernel cannot take the node, its tree leaf by leaf.
fn group_span<'a, T: Input, W: Input>(policy: NanPolicy) -> impl Fn(Group<'a, T, W>) -> Sums + Sync {
    let leaf = group_leaf(policy);
    move |g: Group<'a, T, W>| span_sums(&g, policy).unwrap_or_else(|| tree(g, LEAF, &leaf, &Sums::merged))
}

/// [`group_span`]'s sums by the columns kernel, or `None` where it cannot
/// take them: 64-bit integers (split in two `f64`s per value), weights that
/// are not one run, columns that are not contiguous.
fn span_sums<T: Input, W: Input>(g: &Group<'_, T, W>, policy: NanPolicy) -> Option<Sums> {
    let ws = g.w.as_ref().map(|w| w.as_slice());
    if !T::EXACT || matches!(ws, Some(None)) {
        return None;
    }
    let columns: Vec<&[T]> = g.x.columns().into_iter().map(|c| c.to_slice()).collect::<Option<_>>()?;
    let (rows, width) = g.x.dim();
    let ignore = policy == NanPolicy::Ignore;
    let mut cuts = Vec::new();
    leaf_starts(0, rows, g.d, &mut cuts);
    cuts.push(rows);
    let mut accs: Vec<Acc> = cuts[1..]
        .iter()
        .map(|_| Acc::new(width, ws.is_some() && !ignore))
        .collect();
    columns_dispatch(&columns, &[], ws.flatten(), ignore, &cuts, &mut accs);
    merge_leaves(0, rows, g.d, &mut accs.into_iter().map(|a| a.into_sums(width)))
}

/// Whether rows `r0..r1` of a [`Group`] of `d` features are a leaf of its
/// tree: `tree` with [`LEAF`] and `Group::halve`, written out.
fn is_leaf(r0: usize, r1: usize, d: usize) -> bool {
    (r1 - r0) * d <= LEAF || r1 - r0 < 2
}

/// The first rows of the leaves of rows `r0..r1`, in order, into `out`.
fn leaf_starts(r0: usize, r1: usize, d: usize, out: &mut Vec<usize>) {
    if is_leaf(r0, r1, d) {
        out.push(r0);
        return;
    }
    let mid = r0 + (r1 - r0) / 2;
    leaf_starts(r0, mid, d, out);
    leaf_starts(mid, r1, d, out);
}

/// The leaves' sums (in order) merged as the tree merges them.
fn merge_leaves(r0: usize, r1: usize, d: usize, sums: &mut impl Iterator<Item = Sums>) -> Option<Sums> {
    if is_leaf(r0, r1, d) {
        return sums.next();
    }
    let mid = r0 + (r1 - r0) / 2;
    let a = merge_leaves(r0, mid, d, sums)?;
    let b = merge_leaves(mid, r1, d, sums)?;
    Some(Sums::merged(a, b))
}

/// The leaf of a [`Group`] that [`span_sums`] did not take, as the general
/// tree sums a leaf.
fn group_leaf<'a, T: Input, W: Input>(policy: NanPolicy) -> impl Fn(Group<'a, T, W>) -> Sums + Sync {
    move |g: Group<'a, T, W>| {
        let x = g.x.into_dyn();
        let w = g.w.map(|w| w.into_dyn());
        leaf_sums(&x, w.as_ref(), policy).unwrap_or_else(|| general::per_lane(&x, w.as_ref(), policy, &[]))
    }
}

/// Some columns of a 2-D batch of `d` features and its weights, cut along
/// rows where the general tree cuts the whole batch.
struct Group<'a, T, W> {
    x: ndarray::ArrayView2<'a, T>,
    w: Option<ndarray::ArrayView1<'a, W>>,
    d: usize,
}

impl<T: Sync, W: Sync> Halve for Group<'_, T, W> {
    fn size(&self) -> usize {
        self.x.nrows() * self.d
    }

    fn halve(self) -> std::result::Result<(Self, Self), Self> {
        // `tree::cut_axis` of a 2-D shape: the rows, while there are two.
        let rows = self.x.nrows();
        if rows < 2 {
            return Err(self);
        }
        let mid = rows / 2;
        let (xa, xb) = self.x.split_at(Axis(0), mid);
        let (wa, wb) = match self.w {
            Some(w) => {
                let (a, b) = w.split_at(Axis(0), mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let d = self.d;
        Ok((Group { x: xa, w: wa, d }, Group { x: xb, w: wb, d }))
    }
}

/// The rows kernel over every contiguous run of rows of `x` (whose lanes
/// are contiguous), in logical order, each with its weights (copied when
/// they are not one run themselves: a broadcast weight, a sliced one).
fn walk_rows<T: Input, W: Input>(x: ArrayViewD<'_, T>, w: Option<ArrayViewD<'_, W>>, ignore: bool, acc: &mut Acc) {
    if let Some(xs) = x.as_slice() {
        match w {
            None => rows_dispatch::<T, W>(xs, None, ignore, acc),
            Some(w) => match w.as_slice() {
                Some(ws) => rows_dispatch(xs, Some(ws), ignore, acc),
                None => rows_dispatch(xs, Some(&w.iter().copied().collect::<Vec<W>>()), ignore, acc),
            },
        }
        return;
    }
    // Not one run, so at least two axes (a 1-D lane of unit stride is one).
    match w {
        None => x.outer_iter().for_each(|xi| walk_rows::<T, W>(xi, None, ignore, acc)),
        Some(w) => x
            .outer_iter()
            .zip(w.outer_iter())
            .for_each(|(xi, wi)| walk_rows(xi, Some(wi), ignore, acc)),
    }
}

/// Per-feature accumulators: the sums' pairs, and the weights' (one shared
/// chain when every feature sees every weight).
struct Acc {
    hi: Vec<f64>,
    lo: Vec<f64>,
    w_hi: Vec<f64>,
    w_lo: Vec<f64>,
    shared: Option<Dd<f64>>,
}

impl Acc {
    fn new(d: usize, shared_weight: bool) -> Self {
        let own = if shared_weight { 0 } else { d };
        Acc {
            hi: vec![0.0; d],
            lo: vec![0.0; d],
            w_hi: vec![0.0; own],
            w_lo: vec![0.0; own],
            shared: shared_weight.then(Dd::zero),
        }
    }

    /// The accumulators of features `j0..j1`, with the shared weight chain
    /// if `chain` (one group of features carries it).
    fn lanes(&mut self, j0: usize, j1: usize, chain: bool) -> Lanes<'_> {
        let own = !self.w_hi.is_empty();
        Lanes {
            hi: &mut self.hi[j0..j1],
            lo: &mut self.lo[j0..j1],
            w_hi: if own { &mut self.w_hi[j0..j1] } else { &mut [] },
            w_lo: if own { &mut self.w_lo[j0..j1] } else { &mut [] },
            shared: if chain { self.shared.as_mut() } else { None },
        }
    }

    /// Normalised, as `general::sum_lanes` returns its sums.
    fn into_sums(self, d: usize) -> Sums {
        let sum = self
            .hi
            .iter()
            .zip(&self.lo)
            .map(|(&hi, &lo)| Dd { hi, lo }.normalized())
            .collect();
        let weight = match self.shared {
            Some(w) => vec![w.normalized(); d],
            None => self
                .w_hi
                .iter()
                .zip(&self.w_lo)
                .map(|(&hi, &lo)| Dd { hi, lo }.normalized())
                .collect(),
        };
        Sums {
            sum,
            scale: vec![0; d],
            weight,
        }
    }
}

/// Some features' accumulators (see [`Acc`]).
struct Lanes<'a> {
    hi: &'a mut [f64],
    lo: &'a mut [f64],
    w_hi: &'a mut [f64],
    w_lo: &'a mut [f64],
    shared: Option<&'a mut Dd<f64>>,
}

/// Whether a body keeps one weight (or count) per feature: unweighted
/// (counts) or under `Ignore`; a weighted `Reject` batch shares one chain.
const fn per_feature(weighted: bool, ignore: bool) -> bool {
    !weighted || ignore
}

/// One value `v` (weight `wt`) into a feature's accumulators, as
/// `general::push_lane` adds it; `keep` false (a NaN under `Ignore`) leaves
/// them as they were. The weight pair `(w_hi, w_lo)` is the feature's own
/// only when [`per_feature`]; otherwise it is not touched.
///
/// A skipped value is added as `+0` with weight `+0` instead of branched
/// around: TwoSum of `+0` returns the accumulator and an error of `+0`, and
/// no accumulator is ever `-0` (they start at `+0`, and a sum is `-0` only
/// when both terms are), so the bits are those of skipping it — with no
/// branch for the CPU to mispredict on scattered NaN.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<const WEIGHTED: bool, const IGNORE: bool, const FMA: bool>(
    hi: &mut f64,
    lo: &mut f64,
    w_hi: &mut f64,
    w_lo: &mut f64,
    v: f64,
    wt: f64,
    keep: bool,
    unit: Unit<f64>,
) {
    let (v, wt, one) = if IGNORE && !keep { (0.0, 0.0, 0.0) } else { (v, wt, 1.0) };
    let add = |a: f64, b: f64| unit.add::<FMA>(a, b);
    if WEIGHTED {
        let p = wt * v;
        let pe = if FMA {
            wt.mul_add(v, -p)
        } else {
            product_error(wt, v, p)
        };
        let (s, e) = unit.two_sum::<FMA>(*hi, p);
        *lo = add(e + pe, *lo);
        *hi = s;
        if IGNORE {
            let (ws, we) = two_sum(*w_hi, wt);
            *w_hi = ws;
            *w_lo += we;
        }
    } else {
        unit.push::<FMA>(hi, lo, v);
        // The count's TwoSum with 1 is exact for every count below 2⁵³ (a
        // leaf holds far fewer): its error term is +0, its `lo` stays +0.
        *w_hi += one;
    }
}

/// Adds weight `wt` to a shared chain, as each feature's chain would.
#[inline(always)]
fn chain(shared: &mut Dd<f64>, wt: f64) {
    let (s, e) = two_sum(shared.hi, wt);
    shared.hi = s;
    shared.lo += e;
}

/// Rows added per load and store of the accumulators in the rows kernel
/// (the kernel's loop is written for two).
const ROWS: usize = 2;

/// The rows kernel: `x` holds whole rows of `d = acc.hi.len()` features,
/// `w` one weight per row (`WEIGHTED`); NaN values are skipped under
/// `IGNORE`.
#[inline(always)]
fn rows_body<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool, const FMA: bool, const AVX512: bool>(
    x: &[T],
    w: &[W],
    acc: &mut Lanes<'_>,
) {
    let pf = per_feature(WEIGHTED, IGNORE);
    let d = acc.hi.len();
    let rows = x.len() / d;
    let keep = |v: f64| !(IGNORE && v.is_nan());
    let wt = |r: usize| if WEIGHTED { w[r].widen() } else { 1.0 };
    let track = !pf && acc.shared.is_some();
    let unit = Unit::new::<FMA>();
    let mut shared = acc.shared.as_deref().copied().unwrap_or_else(Dd::zero);
    let (hi, lo) = (&mut acc.hi[..d], &mut acc.lo[..d]);
    let (w_hi, w_lo) = (&mut *acc.w_hi, &mut *acc.w_lo);
    // `ROWS` rows per load and store of the accumulators, then one at a
    // time, the features walked by zipped slices: indexed, the compiler
    // left the last vector of every row pair to a scalar loop (a forced
    // epilogue: an eighth of W1's 64 features at a fraction of the speed).
    let mut blocks = x.chunks_exact(ROWS * d);
    for (b, block) in (&mut blocks).enumerate() {
        prefetch_ahead(block);
        let (ra, rb) = block.split_at(d);
        let (wa, wb) = (wt(ROWS * b), wt(ROWS * b + 1));
        let pair = |h: &mut f64, l: &mut f64, wh: &mut f64, wl: &mut f64, a: &T, b: &T| {
            let (va, vb) = (a.widen(), b.widen());
            step::<WEIGHTED, IGNORE, FMA>(h, l, wh, wl, va, wa, keep(va), unit);
            step::<WEIGHTED, IGNORE, FMA>(h, l, wh, wl, vb, wb, keep(vb), unit);
        };
        let features = hi.iter_mut().zip(lo.iter_mut()).zip(ra.iter().zip(rb));
        if pf {
            for (((h, l), (a, b)), (wh, wl)) in features.zip(w_hi.iter_mut().zip(w_lo.iter_mut())) {
                pair(h, l, wh, wl, a, b);
            }
        } else {
            // Weighted `Reject`: the weights are the shared chain's.
            for ((h, l), (a, b)) in features {
                pair(h, l, &mut 0.0, &mut 0.0, a, b);
            }
        }
        if track {
            chain(&mut shared, wa);
            chain(&mut shared, wb);
        }
    }
    let done = rows - blocks.remainder().len() / d;
    for (k, row) in blocks.remainder().chunks_exact(d).enumerate() {
        let wa = wt(done + k);
        let one = |h: &mut f64, l: &mut f64, wh: &mut f64, wl: &mut f64, a: &T| {
            let va = a.widen();
            step::<WEIGHTED, IGNORE, FMA>(h, l, wh, wl, va, wa, keep(va), unit);
        };
        let features = hi.iter_mut().zip(lo.iter_mut()).zip(row);
        if pf {
            for (((h, l), a), (wh, wl)) in features.zip(w_hi.iter_mut().zip(w_lo.iter_mut())) {
                one(h, l, wh, wl, a);
            }
        } else {
            for ((h, l), a) in features {
                one(h, l, &mut 0.0, &mut 0.0, a);
            }
        }
        if track {
            chain(&mut shared, wa);
        }
    }
    if let (true, Some(s)) = (track, acc.shared.as_deref_mut()) {
        *s = shared;
    }
}

/// Features per group of the columns kernel: 32 read W10F/W11F 3–5% and
/// 10% faster than 16 from DRAM on two threads (AMD EPYC, Zen 4; 8 was no
/// better). The bits do not depend on it.
const GROUP: usize = 32;

/// Features, and samples, per tile of the columns kernel: four samples of
/// four features, loaded as four runs of one column each and stepped as
/// four samples of a four-feature vector (a transpose in registers:
/// `tile_avx`, and the strips' `transpose4r`).
const TILE: usize = 4;

/// Strips of [`TILE`] features the intrinsics columns kernel walks side by
/// side. A strip's features are one vector whose sum adds one sample at a
/// time, so a lone strip waits on its own additions (the TwoSum's sum and
/// the error's fused addition, 3–4 cycles each on Zen 4) at every sample;
/// two strips give the core independent chains to interleave. The bits do
/// not depend on it: each feature's chain is the same.
///
/// Measured on an AMD EPYC (Zen 4), one thread, 1024 × 64 `f64` in L2,
/// best of eight alternated runs: one strip (the generic body) W10F 17.8,
/// W11F 16.5 GB/s; two 21.9 (23.1 with integer counts) and 19.4 (with the
/// weight chain in the loop); three and four 5–11, the time at the column
/// loads: columns of 1024 rows are 8 KiB apart, so the same row of every
/// column maps to one set of the 8-way L1, which holds eight streams, not
/// twelve or sixteen (any power-of-two row count does this, W10F's 2²¹
/// too); with 1000 or 1100 rows, where they do not, four strips read as
/// two do (W11F 15.6 / 18.3 vs 16.0 / 18.0 GB/s).
#[cfg(target_arch = "x86_64")]
const STRIPS: usize = 2;

/// How far ahead the columns kernel asks for each column's lines (into L2,
/// as [`prefetch_ahead`]). Chosen while the kernel still ran leaf by leaf
/// (512 rows, 4 KiB, of each column, then the next group of columns): three
/// quarters of a leaf, so that the next leaf's first lines were asked for
/// while a leaf ended. Since [`SPAN`] a column's leaves are read one after
/// the other; the distance was not measured again for that.
///
/// Not a whole number of pages, as `prefetch_ahead`'s 8 KiB is: the L1
/// picks a line's set by its address modulo 4 KiB, and with a power-of-two
/// row count (W10F/W11F's 2²¹) the two strips' eight columns already fill
/// one set of the 8-way L1; lines asked for a whole number of pages ahead land
/// in that same set and, on a CPU that brings a prefetched line into L1,
/// evict lines still in use. 3 KiB puts them 48 sets away (the staged
/// weights sit at 32, see `staged_weights`). Roofline W10F/W11F-only runs
/// on an AMD EPYC (Zen 3, AVX2, no AVX-512), four alternations of 8 KiB
/// and 3 KiB: W10F 0.46–0.55 → 0.70–0.76 of the read limit, W11F 0.42–
/// 0.47 → 0.56–0.73; then three rounds of 3 / 1 / 7 KiB: W10F 0.67–0.74 /
/// 0.66–0.77 / 0.67–0.76, W11F 0.62–0.65 / 0.63–0.70 / 0.58–0.61: any
/// distance off the page multiple alike. On Zen 4 (session 15), where the
/// columns kernel had taken `prefetch_ahead`'s 8 KiB, six alternations of
/// W10F/W11F-only runs with 3 and 8 KiB: W11F 22.2–27.4 vs 24.3–27.6
/// GB/s (medians 23.3 vs 24.8, within the drift), W10F 27.0–32.0 vs
/// 17.4–29.6; kept 3 KiB for Zen 3. The columns' validity bitmaps (one
/// bit per sample, read by the masked strips) are not prefetched: a
/// sixty-fourth of the columns' bytes, they were not measured apart.
const COLUMN_PREFETCH: usize = 3072;

// Off the columns' set and off the staged weights' (half a page away).
const _: () = assert!(!COLUMN_PREFETCH.is_multiple_of(4096) && COLUMN_PREFETCH % 4096 != 2048);

/// The columns kernels' prefetch: at each row `r` that starts a cache line,
/// [`COLUMN_PREFETCH`] bytes ahead in each of `cols`.
#[inline(always)]
fn prefetch_columns<T>(cols: &[&[T]], r: usize) {
    if (r * std::mem::size_of::<T>()).is_multiple_of(64) {
        for c in cols {
            prefetch_at(&c[r..=r], COLUMN_PREFETCH);
        }
    }
}

/// The columns kernel: `columns[j]` is feature `j`'s samples, `w` one
/// weight per sample, cut into leaves at `cuts` (`cuts[k]..cuts[k + 1]` are
/// leaf `k`'s rows, summed into `accs[k]`: `cuts` runs from 0 to the rows,
/// one more than `accs`); each feature's chain runs in sample order within
/// a leaf, [`TILE`] features side by side. The leaves are walked inside
/// each group of features, so the intrinsics strips read a column front to
/// back across them (see [`SPAN`]); a leaf's last `rows % TILE` samples of
/// those columns are added right after that leaf's strips, and the columns
/// the strips do not take afterwards, leaf by leaf ([`leaf_rest`]).
#[inline(always)]
fn columns_body<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool, const FMA: bool, const AVX512: bool>(
    columns: &[&[T]],
    valid: &[Option<Validity<'_>>],
    w: &[W],
    cuts: &[usize],
    accs: &mut [Acc],
) {
    let rows = columns.first().map_or(0, |c| c.len());
    assert!(cuts.len() == accs.len() + 1 && cuts.first() == Some(&0) && cuts.last() == Some(&rows));
    assert!(cuts.windows(2).all(|c| c[0] <= c[1]));
    let leaves = || cuts.windows(2).map(|c| (c[0], c[1]));
    let wt = |r: usize| if WEIGHTED { w[r].widen() } else { 1.0 };
    // Checked here, not implied by `FMA`: the body is a safe function.
    let avx = FMA && avx_f64::<T>();
    // Columns of the types the strips take ([`strips_take`]) on AVX2,
    // without bitmaps or, unweighted under `Ignore` (the only calls that
    // pass them), with: the whole tiles of [`STRIPS`] strips at once by the
    // intrinsics kernel, then each leaf's last `rows % TILE` samples of them
    // ([`strip_groups`]); the other columns below. The shared weight chain
    // (if any) has the first `tiled(a, b)` rows of leaf `a..b` summed by
    // the strips.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut striped = 0;
    #[cfg(target_arch = "x86_64")]
    if FMA && ((IGNORE && !WEIGHTED) || valid.iter().all(Option::is_none)) {
        striped = strip_groups::<T, W, WEIGHTED, IGNORE, FMA, AVX512>(columns, valid, w, cuts, accs, avx);
    }
    let tiled = |a: usize, b: usize| if striped > 0 { (b - a) / TILE * TILE } else { 0 };
    for (g, group) in columns[striped..].chunks(TILE).enumerate() {
        for (leaf, acc) in leaves().zip(accs.iter_mut()) {
            leaf_rest::<T, W, WEIGHTED, IGNORE, FMA>(valid, w, avx, striped + g * TILE, group, leaf, acc, 0);
        }
    }
    for ((a, b), acc) in leaves().zip(accs.iter_mut()) {
        if let Some(shared) = acc.shared.as_mut() {
            for r in a + tiled(a, b)..b {
                chain(shared, wt(r));
            }
        }
    }
}

/// The strips of [`columns_body`], for the column types of
/// [`strips_take`], each widened as it is loaded ([`simd::Four`]; `f32`
/// columns read twice as fast as through the per-value loop: W10F / W11F
/// shapes as `f32`, AMD EPYC Zen 4, two threads, three alternations,
/// medians 10.5–10.7 → 20.8–21.7 and 11.5–11.6 → 18.0–18.7 GB/s): every
/// whole group of
/// [`TILE`]` · `[`STRIPS`] columns by the intrinsics kernel, leaf by leaf,
/// each leaf's last `rows % TILE` samples of them right after; returns
/// how many columns it took. `avx` is `columns_body`'s: `T` is `f64` (for
/// other types it is false, and the tails' `leaf_rest` reads them with
/// `tile`).
///
/// Takes nothing (returns 0) unless the CPU has AVX2 and FMA and
/// [`strips_take`] takes `T`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn strip_groups<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool, const FMA: bool, const AVX512: bool>(
    columns: &[&[T]],
    valid: &[Option<Validity<'_>>],
    w: &[W],
    cuts: &[usize],
    accs: &mut [Acc],
    avx: bool,
) -> usize {
    const WIDTH: usize = TILE * STRIPS;
    // Checked here, as `columns_body` does: this is a safe function, and
    // [`simd::Four`] widens exactly only the types `strips_take` names.
    if !strips_take::<T>() {
        return 0;
    }
    let rows = columns.first().map_or(0, |c| c.len());
    let leaves = || cuts.windows(2).map(|c| (c[0], c[1]));
    // (Narrower columns advance fewer bytes a row than the weights' 8:
    // half a page apart at the first row only. Not measured apart.)
    let staged = match columns.first() {
        Some(c) if WEIGHTED && columns.len() >= WIDTH => staged_weights(&w[..rows], c.as_ptr().cast::<f64>()),
        _ => Staged::default(),
    };
    // Checked here too: this is a safe function.
    let avx512 = AVX512 && simd::has_avx512();
    for (g, group) in columns.chunks_exact(WIDTH).enumerate() {
        // The first group carries the shared weight chain, if any.
        let (j0, first) = (g * WIDTH, g == 0);
        for ((a, b), acc) in leaves().zip(accs.iter_mut()) {
            let part: [&[T]; WIDTH] = std::array::from_fn(|k| &group[k][a..b]);
            let ws = if WEIGHTED { &staged.get()[a..b] } else { &[][..] };
            // The leaf's rows of the columns' bitmaps (unweighted, under
            // `Ignore`: checked above), if any.
            let bits: [Option<Validity<'_>>; WIDTH] =
                std::array::from_fn(|k| valid.get(j0 + k).copied().flatten().map(|v| v.shifted(a)));
            let masked = bits.iter().any(Option::is_some);
            let track = first && acc.shared.is_some();
            // (`MASKED` only without the weight chain: bitmaps come with
            // unweighted calls, which have no chain.)
            macro_rules! strips {
                ($(($avx:literal, $track:literal, $masked:pat) => $m:literal),*) => {
                    match (avx512, track, masked) {
                        $(($avx, $track, $masked) => {
                            simd::column_strips::<WEIGHTED, IGNORE, $avx, $track, $m, _>(&part, &bits, j0, ws, acc)
                        })*
                    }
                };
            }
            // SAFETY: the CPU has AVX2 and FMA (checked above), and
            // AVX-512F/VL where `avx512` (checked just above); features
            // `j0..j0 + WIDTH` of `acc` are as `Acc::new` made them (+0):
            // only earlier groups' features have been added to.
            unsafe {
                strips!(
                    (true, true, _) => false,
                    (true, false, false) => false,
                    (true, false, true) => true,
                    (false, true, _) => false,
                    (false, false, false) => false,
                    (false, false, true) => true
                )
            };
            // The leaf's last samples of these columns while their
            // lines are at hand: after the whole span's strips (1 MiB
            // of a group of W10F's 32 columns) they may have left L2.
            let done = (b - a) / TILE * TILE;
            if done < b - a {
                for (k, cols4) in columns[j0..j0 + WIDTH].chunks(TILE).enumerate() {
                    leaf_rest::<T, W, WEIGHTED, IGNORE, FMA>(valid, w, avx, j0 + k * TILE, cols4, (a, b), acc, done);
                }
            }
        }
    }
    columns.len() / WIDTH * WIDTH
}

/// Rows `from..` of leaf `a..b` of `group` (at most [`TILE`] columns,
/// features `j0..`) into `acc`, for [`columns_body`]: whole tiles, then
/// sample by sample. A function, not a closure, so that it is inlined into
/// the body and compiled with its instruction set: as a closure it was a
/// function of its own, built for the baseline, whose `mul_add` was a call
/// to software `fma` (Arrow columns with bitmaps under `Ignore`, 2²¹ × 64
/// `f64`, which then ran here, two threads on the AMD EPYC Zen 4 VM: 4.0
/// GB/s before the closure, 1.4–1.5 with it, 3.5–3.7 as this function;
/// `tests/codegen.rs` in the bench crate now checks that no operation
/// calls software `fma`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
// Indices say which sample of which column a tile holds more plainly than
// zipped iterators over the transpose.
#[allow(clippy::needless_range_loop)]
fn leaf_rest<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool, const FMA: bool>(
    valid: &[Option<Validity<'_>>],
    w: &[W],
    avx: bool,
    j0: usize,
    group: &[&[T]],
    (a, b): (usize, usize),
    acc: &mut Acc,
    from: usize,
) {
    let pf = per_feature(WEIGHTED, IGNORE);
    let nan_ok = |v: f64| !(IGNORE && v.is_nan());
    let wt = |r: usize| if WEIGHTED { w[r].widen() } else { 1.0 };
    let unit = Unit::new::<FMA>();
    let (rows, n) = (b - a, group.len());
    let group: [&[T]; TILE] = std::array::from_fn(|k| group.get(k).map_or(&[][..], |c| &c[a..b]));
    let wt = |r: usize| wt(a + r);
    // A column's nulls (a validity bitmap; none: every row valid)
    // are skipped as missing values are.
    let bitmaps: [Option<Validity<'_>>; TILE] =
        std::array::from_fn(|k| valid.get(j0 + k).copied().flatten().map(|v| v.shifted(a)));
    let masked = bitmaps.iter().any(Option::is_some);
    let keep =
        |k: usize, r: usize, v: f64| nan_ok(v) && (!masked || bitmaps[k].is_none_or(|b| b.is_valid(r) == Some(true)));
    let mut h = [0.0; TILE];
    let mut l = [0.0; TILE];
    let mut wh = [0.0; TILE];
    let mut wl = [0.0; TILE];
    h[..n].copy_from_slice(&acc.hi[j0..j0 + n]);
    l[..n].copy_from_slice(&acc.lo[j0..j0 + n]);
    if pf {
        wh[..n].copy_from_slice(&acc.w_hi[j0..j0 + n]);
        wl[..n].copy_from_slice(&acc.w_lo[j0..j0 + n]);
    }
    let mut r = from;
    if n == TILE {
        let cols = &group;
        // One loop per way of reading a tile (a run-time choice in
        // the loop cost W10F's kernel a tenth).
        macro_rules! walk {
            ($tile:expr) => {
                while r + TILE <= rows {
                    prefetch_columns(cols, r);
                    // `t[i][k]`: sample `r + i` of feature `j0 + k`.
                    let t = $tile;
                    // Bit `i` of `present[k]`: sample `r + i` of column `k`
                    // holds a value (four bits per column read at once).
                    let present: [u8; TILE] = if masked {
                        std::array::from_fn(|k| bitmaps[k].map_or(0xF, |b| b.four(r)))
                    } else {
                        [0xF; TILE]
                    };
                    for i in 0..TILE {
                        let wr = wt(r + i);
                        for k in 0..TILE {
                            let v = t[i][k];
                            let kept = nan_ok(v) && present[k] >> i & 1 == 1;
                            step::<WEIGHTED, IGNORE, FMA>(
                                &mut h[k], &mut l[k], &mut wh[k], &mut wl[k], v, wr, kept, unit,
                            );
                        }
                    }
                    r += TILE;
                }
            };
        }
        if avx {
            // SAFETY: the CPU has AVX2 and `T` is `f64` (`avx_f64`).
            walk!(unsafe { tile_avx(cols, r) });
        } else {
            walk!(tile(cols, r));
        }
    }
    for r in r..rows {
        let wr = wt(r);
        for k in 0..n {
            let v = group[k][r].widen();
            let kept = keep(k, r, v);
            step::<WEIGHTED, IGNORE, FMA>(&mut h[k], &mut l[k], &mut wh[k], &mut wl[k], v, wr, kept, unit);
        }
    }
    acc.hi[j0..j0 + n].copy_from_slice(&h[..n]);
    acc.lo[j0..j0 + n].copy_from_slice(&l[..n]);
    if pf {
        acc.w_hi[j0..j0 + n].copy_from_slice(&wh[..n]);
        acc.w_lo[j0..j0 + n].copy_from_slice(&wl[..n]);
    }
}
/// The weights of one call of the columns kernel (a leaf, or a span of
/// leaves) as `f64`s, half a page of addresses away from its columns' (see
/// [`staged_weights`]).
#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct Staged {
    buf: Vec<f64>,
    start: usize,
}

#[cfg(target_arch = "x86_64")]
impl Staged {
    fn get(&self) -> &[f64] {
        &self.buf[self.start..]
    }
}

/// `w` widened into a buffer where each weight's address is half a page
/// (2 KiB) away, modulo 4 KiB, from the same row of a column starting at
/// `column`. The L1 cache picks a line's set by its address modulo 4 KiB:
/// with a power-of-two row count (W11F's 2²¹) every column of a strip and
/// the weights (allocated as the columns are: 16 bytes into a page) share
/// one set of the 8-way L1, and the strips' eight columns fill it, so the
/// weights' line evicted a column's between its two uses. Staged, the
/// weights' lines sit 32 sets away. W11F-shaped 2²¹ × 64 `f64` from
/// memory, AMD EPYC (Zen 4), two threads, six alternations: median 22.1 →
/// 24.0 GB/s (weights moved by 2 KiB in the caller's buffer instead: 21.3–
/// 21.8 → 23.1–25.9); one thread in L2 (1024 rows, the weights allocated
/// apart from the columns, off their set): 19.3 → 19.8. (`f64` columns:
/// the rows of a narrower column (`f32`, the integers of
/// [`strips_take`]) advance more slowly than the weights', so only its
/// first row sits half a page away.)
#[cfg(target_arch = "x86_64")]
fn staged_weights<W: Input>(w: &[W], column: *const f64) -> Staged {
    const PAGE: usize = 4096;
    let mut buf: Vec<f64> = Vec::with_capacity(w.len() + PAGE / 8);
    let want = (column as usize).wrapping_add(PAGE / 2) % PAGE;
    let start = want.wrapping_sub(buf.as_ptr() as usize) % PAGE / 8;
    buf.resize(start, 0.0);
    buf.extend(w.iter().map(|v| v.widen()));
    Staged { buf, start }
}

/// Whether [`tile`] may transpose in registers: `T` is `f64` and the CPU
/// has AVX2 (so AVX).
fn avx_f64<T: 'static>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>() && simd::has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the intrinsics strips take `T`'s columns: the CPU has AVX2 and
/// FMA, and `T` is a type [`simd::Four`] loads four at a time and widens
/// exactly by its instructions — the floats and the integers of 32 bits
/// or fewer (not the 64-bit integers, whose `widen` rounds and whose
/// weighted sums go by `widen_pair`, nor `f16`/`bf16`, whose conversions
/// need F16C, not part of the strips' build).
#[cfg(target_arch = "x86_64")]
fn strips_take<T: 'static>() -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    let types = [
        TypeId::of::<f64>(),
        TypeId::of::<f32>(),
        TypeId::of::<i32>(),
        TypeId::of::<u32>(),
        TypeId::of::<i16>(),
        TypeId::of::<u16>(),
        TypeId::of::<i8>(),
        TypeId::of::<u8>(),
    ];
    types.contains(&t) && simd::has_avx2_fma()
}

/// Samples `r..r + TILE` of the `TILE` columns `cols`, widened, sample by
/// sample: `t[i][k]` is `cols[k][r + i]`.
#[inline(always)]
fn tile<T: Input>(cols: &[&[T]; TILE], r: usize) -> [[f64; TILE]; TILE] {
    std::array::from_fn(|i| std::array::from_fn(|k| cols[k][r + i].widen()))
}

/// [`tile`] of `f64` columns, read as one vector each and transposed in
/// registers (four unpacks, four lane permutes): written as indexing, the
/// compiler loaded the sixteen values one by one and assembled the vectors
/// with as many shuffles.
///
/// # Safety
///
/// The CPU has AVX2 and `T` is `f64` ([`avx_f64`]).
#[inline(always)]
unsafe fn tile_avx<T: Input>(cols: &[&[T]; TILE], r: usize) -> [[f64; TILE]; TILE] {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(cols.iter().all(|c| r + TILE <= c.len()));
        let ptrs: [*const f64; TILE] = std::array::from_fn(|k| cols[k].as_ptr().cast::<f64>().wrapping_add(r));
        // SAFETY: the CPU has AVX and each column is `f64`s (the caller's
        // contract), and each holds `r + TILE` of them (asserted above): the
        // loads are in bounds.
        unsafe { simd::transpose4(ptrs) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    tile(cols, r)
}

/// `$f::<T, W, weighted, ignore[, $extra…]>($args)` for the run-time
/// `(weighted, ignore)`.
macro_rules! by_flags {
    ([$($f:tt)*], $w:expr, $ignore:expr, ($($a:expr),*) $(, $extra:expr)*) => {
        match ($w, $ignore) {
            (true, true) => $($f)*::<T, W, true, true $(, $extra)*>($($a),*),
            (true, false) => $($f)*::<T, W, true, false $(, $extra)*>($($a),*),
            (false, true) => $($f)*::<T, W, false, true $(, $extra)*>($($a),*),
            (false, false) => $($f)*::<T, W, false, false $(, $extra)*>($($a),*),
        }
    };
}

/// Picks the body for `(weighted, ignore)` and the widest instruction set.
macro_rules! pick {
    ($body:ident, $simd:ident, $w:expr, $ignore:expr, ($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if simd::has_avx512() {
                // SAFETY: the CPU has AVX-512F/VL, AVX2 and FMA, checked just above.
                return unsafe { by_flags!([simd::$simd::avx512], $w, $ignore, ($($a),*)) };
            }
            if simd::has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { by_flags!([simd::$simd::avx2], $w, $ignore, ($($a),*)) };
            }
        }
        by_flags!([$body], $w, $ignore, ($($a),*), false, false)
    }};
}

fn rows_dispatch<T: Input, W: Input>(x: &[T], w: Option<&[W]>, ignore: bool, acc: &mut Acc) {
    let weights = w.unwrap_or(&[]);
    let d = acc.hi.len();
    let lanes = &mut acc.lanes(0, d, true);
    pick!(rows_body, rows, w.is_some(), ignore, (x, weights, lanes))
}

fn columns_dispatch<T: Input, W: Input>(
    columns: &[&[T]],
    valid: &[Option<Validity<'_>>],
    w: Option<&[W]>,
    ignore: bool,
    cuts: &[usize],
    accs: &mut [Acc],
) {
    let weights = w.unwrap_or(&[]);
    pick!(
        columns_body,
        columns,
        w.is_some(),
        ignore,
        (columns, valid, weights, cuts, accs)
    )
}

/// Rows `r0..r1` of columnar features, nulls (and NaN under `Ignore`)
/// skipped: bit for bit `columns::sum_range` without scaling (each
/// feature's values added in row order by the general arithmetic), by the
/// columns kernel.
pub(super) fn column_range_sums<T: Input>(
    columns: &[&[T]],
    validity: &[Option<Validity<'_>>],
    r0: usize,
    r1: usize,
    policy: NanPolicy,
) -> Sums {
    let d = columns.len();
    let rows: Vec<&[T]> = columns.iter().map(|c| &c[r0..r1]).collect();
    let valid: Vec<Option<Validity<'_>>> = (0..d)
        .map(|j| validity.get(j).copied().flatten().map(|v| v.shifted(r0)))
        .collect();
    let mut acc = Acc::new(d, false);
    let cuts = [0, r1 - r0];
    columns_dispatch::<T, T>(
        &rows,
        &valid,
        None,
        policy == NanPolicy::Ignore,
        &cuts,
        std::slice::from_mut(&mut acc),
    );
    acc.into_sums(d)
}

/// The bodies compiled for AVX-512 (eight `f64` lanes, mask registers for
/// the NaN selects) and for AVX2 + FMA (four lanes), both with the
/// product's error by one FMA and [`Unit`]'s additions. On an AMD EPYC
/// with AVX-512, the AVX-512 rows body took W11 from 0.40 to 0.67 of the
/// read limit (W10 did not move until the zipped loop).
#[cfg(target_arch = "x86_64")]
mod simd {

    use super::{Acc, Dd, Input, Validity};
    pub(super) use crate::kernels::contiguous::{has_avx2 as has_avx2_fma, has_avx512};

    /// The 4×4 tile of `f64`s at `cols` (four values each), transposed:
    /// `[i][k]` is `cols[k][i]`.
    ///
    /// # Safety
    ///
    /// The CPU has AVX; each `cols[k]` points to four readable `f64`s.
    #[inline]
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose4(cols: [*const f64; 4]) -> [[f64; 4]; 4] {
        // SAFETY: the caller's contract is `transpose4v`'s; `[__m256d; 4]`
        // and `[[f64; 4]; 4]` have the same size, and every bit pattern is a
        // valid `f64`.
        unsafe { std::mem::transmute::<[std::arch::x86_64::__m256d; 4], [[f64; 4]; 4]>(transpose4v(cols)) }
    }

    /// Features `j0..j0 + TILE·STRIPS` of the columns kernel, `group` their
    /// columns (`f64`, or another type of `super::strips_take` widened as
    /// it is loaded: [`Four`]):
    /// [`STRIPS`](super::STRIPS) four-feature vectors stepped
    /// side by side, four samples per transposed tile, by `super::step`'s
    /// arithmetic written as intrinsics (the compiler's vectorisation of two
    /// strips of `step` split them into halves and spilled), the first
    /// `rows / 4 · 4` samples (the caller adds the rest). With `TRACK`, the
    /// shared weight chain (if `acc` has one) takes those samples' weights
    /// in the same loop, where its scalar additions overlap the vector work;
    /// a constant, so that the other groups' loop has neither its tests nor
    /// a scalar load of each weight (whose broadcast from a register took
    /// an FP pipe: with the weights broadcast from memory, W11F one thread
    /// in L2 on the AMD EPYC Zen 4 VM, four alternations, medians 19.2–19.7
    /// → 20.4–20.7 GB/s; from memory on two threads, six alternations, no
    /// difference: medians 20.8–24.9 and 21.1–24.4).
    ///
    /// With `MASKED` (unweighted, under `Ignore`), `bits[k]` is column `k`'s
    /// validity bitmap from the call's first sample on, if it has one: a
    /// null is skipped as a NaN is, its lane masked out of the TwoSum and
    /// the count, so the bits are those of the per-value loop, which tests
    /// each value's bit. The bitmaps are read sixteen rows at a time
    /// (`Validity::sixteen`) and cut into a tile's four rows in registers.
    /// `BatchSummary::from_columns` of 2²¹ × 64 `f64` with a bitmap per
    /// column under `Ignore` (Arrow columns with nulls: DataFusion's
    /// `center_fit`, Parquet), AMD EPYC Zen 4, two threads, three
    /// alternations against the per-value loop with `Validity::four`:
    /// medians 16.3–16.5 → 24.7–28.1 GB/s (the same columns without bitmaps
    /// 26–33); one thread, 4096 rows: 11.3–17.4 → 23.4–24.7.
    ///
    /// # Safety
    ///
    /// The CPU has AVX2 and FMA, and with `AVX512` AVX-512F/VL: unweighted
    /// NaN-skipping strips then take [`skip_nan_two_sum`], which asks that
    /// `acc.hi`'s lanes are not −0 (an `Acc::new`'s start at +0, and a sum
    /// rounded to nearest is −0 only when both terms are). (Inlined into
    /// the body compiled for them, `columns`' `avx2` or `avx512`. With the
    /// `avx2` build's 16 vector registers, forced on the AMD EPYC Zen 4 VM,
    /// one thread in L2, against the one-strip body built the same way:
    /// W10F 16.0 → 21.9, W11F 14.9 → 19.1, weighted and NaN-skipping 5.2 →
    /// 10.8 GB/s.)
    #[inline(always)]
    pub(super) unsafe fn column_strips<
        const WEIGHTED: bool,
        const IGNORE: bool,
        const AVX512: bool,
        const TRACK: bool,
        const MASKED: bool,
        E: Four,
    >(
        group: &[&[E]],
        bits: &[Option<Validity<'_>>],
        j0: usize,
        w: &[f64],
        acc: &mut Acc,
    ) {
        use std::arch::x86_64::{
            _CMP_ORD_Q, _mm256_add_pd, _mm256_and_pd, _mm256_and_si256, _mm256_broadcast_sd, _mm256_castpd_si256,
            _mm256_castsi256_pd, _mm256_cmp_pd, _mm256_cmp_pd_mask, _mm256_cmpeq_epi64, _mm256_fmsub_pd,
            _mm256_loadu_pd, _mm256_mask_sub_epi64, _mm256_mul_pd, _mm256_or_pd, _mm256_set1_epi64x, _mm256_set1_pd,
            _mm256_setr_epi64x, _mm256_setzero_pd, _mm256_setzero_si256, _mm256_storeu_pd, _mm256_sub_epi64,
            _mm256_sub_pd, _mm256_test_epi64_mask,
        };
        const S: usize = super::STRIPS;
        const T: usize = super::TILE;
        let pf = super::per_feature(WEIGHTED, IGNORE);
        let rows = group.first().map_or(0, |c| c.len());
        assert!(group.len() == S * T && group.iter().all(|c| c.len() == rows));
        assert!(j0 + S * T <= acc.hi.len() && acc.lo.len() == acc.hi.len());
        assert!(!pf || (j0 + S * T <= acc.w_hi.len() && acc.w_lo.len() == acc.w_hi.len()));
        assert!(!WEIGHTED || w.len() >= rows);
        assert!(!MASKED || (IGNORE && !WEIGHTED && bits.len() == S * T));
        // Without `MASKED` a null would be summed as a value.
        assert!(MASKED || bits.iter().all(Option::is_none));
        // SAFETY (every load and store of this block): `acc`'s vectors hold
        // features `j0..j0 + S·T` (asserted above), each column `rows`
        // values and a tile reads four from `r + 4 ≤ rows`; weighted, `w`
        // holds at least `rows` (asserted above), of which a tile reads
        // `r..r + 4`.
        unsafe {
            // No closures around intrinsics in this function (see `tiles`
            // below): loops.
            let mut hi = [_mm256_setzero_pd(); S];
            let mut lo = [_mm256_setzero_pd(); S];
            let mut w_hi = [_mm256_setzero_pd(); S];
            let mut w_lo = [_mm256_setzero_pd(); S];
            for s in 0..S {
                let at = j0 + s * T;
                hi[s] = _mm256_loadu_pd(acc.hi.as_ptr().add(at));
                lo[s] = _mm256_loadu_pd(acc.lo.as_ptr().add(at));
                if pf {
                    w_hi[s] = _mm256_loadu_pd(acc.w_hi.as_ptr().add(at));
                    w_lo[s] = _mm256_loadu_pd(acc.w_lo.as_ptr().add(at));
                }
            }
            // `a·1 + b` by FMA is `a + b` bit for bit (`super::Unit`); the
            // `1` opaque so that the compiler keeps the FMA.
            let unit = _mm256_set1_pd(std::hint::black_box(1.0));
            // Unweighted: the counts of values added since the load, as
            // integers (a kept lane's mask is −1), added to the stored
            // counts at the end — exact integers below 2⁵³ either way, so
            // the bits of adding 1 at every step.
            let mut counts = [_mm256_setzero_si256(); S];
            let all = _mm256_set1_epi64x(-1);
            let track = TRACK && acc.shared.is_some();
            let mut shared = acc.shared.unwrap_or_else(Dd::zero);
            // Lane `k` of `row_bit[i]` is bit `16k + i`, the bit of
            // `present` (below) that says whether sample `r + i` of the
            // strip's column `k` holds a value.
            // (Loops, not `array::from_fn`: an intrinsic called in such a
            // closure was left a call, the closure having no target
            // features; `tests/codegen.rs` in the bench crate checks for
            // intrinsics out of line.)
            let mut row_bit = [all; T];
            for (i, b) in row_bit.iter_mut().enumerate() {
                *b = _mm256_setr_epi64x(1 << i, 1 << (16 + i), 1 << (32 + i), 1 << (48 + i));
            }
            // Each strip's columns' validity of samples `r..r + 16` (at a
            // multiple of 16), column `k`'s at bit `16k`.
            let mut sixteen = [0u64; S];
            let mut r = 0;
            while r + T <= rows {
                super::prefetch_columns(group, r);
                // Loops, not `array::from_fn`: `four` and the transpose are
                // inlined only into code built with AVX, which a closure is
                // not (with closures both were calls: `f32` columns at half
                // the speed of the per-value loop).
                let mut tiles = [[_mm256_setzero_pd(); T]; S];
                for (s, tile) in tiles.iter_mut().enumerate() {
                    let mut c = [_mm256_setzero_pd(); T];
                    for (k, v) in c.iter_mut().enumerate() {
                        *v = E::four(group[s * T + k].as_ptr().add(r));
                    }
                    *tile = transpose4r(c);
                }
                // A strip's four columns' validity of samples `r..r + 4`,
                // column `k`'s four bits at bit `16k`, in every lane: cut
                // from `sixteen`, read every 16 samples.
                let mut present = [all; S];
                if MASKED {
                    if r % 16 == 0 {
                        for (s, p) in sixteen.iter_mut().enumerate() {
                            *p = 0;
                            for k in 0..T {
                                *p |= u64::from(bits[s * T + k].map_or(0xFFFF, |b| b.sixteen(r))) << (16 * k);
                            }
                        }
                    }
                    for (p, six) in present.iter_mut().zip(&sixteen) {
                        *p = _mm256_set1_epi64x((six >> (r % 16) & 0x000F_000F_000F_000F) as i64);
                    }
                }
                for i in 0..T {
                    if track {
                        super::chain(&mut shared, if WEIGHTED { w[r + i] } else { 1.0 });
                    }
                    // A broadcast from memory: a load, not a load and a
                    // shuffle on the FP pipes.
                    let wr = if WEIGHTED {
                        _mm256_broadcast_sd(&*w.as_ptr().add(r + i))
                    } else {
                        _mm256_set1_pd(1.0)
                    };
                    for s in 0..S {
                        if AVX512 && IGNORE && !WEIGHTED {
                            // SAFETY: with `AVX512` the CPU has AVX-512F/VL
                            // (this function's contract).
                            let mut k = _mm256_cmp_pd_mask::<_CMP_ORD_Q>(tiles[s][i], tiles[s][i]);
                            if MASKED {
                                k &= _mm256_test_epi64_mask(present[s], row_bit[i]);
                            }
                            (hi[s], lo[s]) = skip_nan_two_sum(hi[s], lo[s], tiles[s][i], k, unit);
                            counts[s] = _mm256_mask_sub_epi64(counts[s], k, counts[s], all);
                            continue;
                        }
                        let mut v = tiles[s][i];
                        let mut wt = wr;
                        let mut kept = all;
                        if IGNORE {
                            // `step`'s skip: NaN (or a null) → +0 with
                            // weight +0.
                            let mut keep = _mm256_cmp_pd::<_CMP_ORD_Q>(v, v);
                            if MASKED {
                                let bit = _mm256_and_si256(present[s], row_bit[i]);
                                keep = _mm256_and_pd(keep, _mm256_castsi256_pd(_mm256_cmpeq_epi64(bit, row_bit[i])));
                            }
                            v = _mm256_and_pd(v, keep);
                            if WEIGHTED {
                                wt = _mm256_and_pd(wt, keep);
                            }
                            kept = _mm256_castpd_si256(keep);
                        }
                        let a = hi[s];
                        let (b, pe) = if WEIGHTED {
                            let p = _mm256_mul_pd(wt, v);
                            (p, Some(_mm256_fmsub_pd(wt, v, p)))
                        } else {
                            (v, None)
                        };
                        let sum = _mm256_add_pd(a, b);
                        lo[s] = push_error(a, sum, |bb| _mm256_sub_pd(b, bb), pe, lo[s], unit);
                        hi[s] = sum;
                        if WEIGHTED && IGNORE {
                            // `two_sum(w_hi, wt)`.
                            let ws = _mm256_add_pd(w_hi[s], wt);
                            let bb = _mm256_sub_pd(ws, w_hi[s]);
                            let we =
                                _mm256_add_pd(_mm256_sub_pd(w_hi[s], _mm256_sub_pd(ws, bb)), _mm256_sub_pd(wt, bb));
                            w_hi[s] = ws;
                            w_lo[s] = _mm256_add_pd(w_lo[s], we);
                        } else if !WEIGHTED {
                            counts[s] = _mm256_sub_epi64(counts[s], kept);
                        }
                    }
                }
                r += T;
            }
            if !WEIGHTED {
                // `n` as an `f64` (`n < 2⁵²`): its bits under 2⁵²'s, less 2⁵².
                let magic = _mm256_set1_pd(4_503_599_627_370_496.0);
                for s in 0..S {
                    let n = _mm256_sub_pd(_mm256_or_pd(_mm256_castsi256_pd(counts[s]), magic), magic);
                    w_hi[s] = _mm256_add_pd(w_hi[s], n);
                }
            }
            for s in 0..S {
                let at = j0 + s * T;
                _mm256_storeu_pd(acc.hi.as_mut_ptr().add(at), hi[s]);
                _mm256_storeu_pd(acc.lo.as_mut_ptr().add(at), lo[s]);
                if pf {
                    _mm256_storeu_pd(acc.w_hi.as_mut_ptr().add(at), w_hi[s]);
                    _mm256_storeu_pd(acc.w_lo.as_mut_ptr().add(at), w_lo[s]);
                }
            }
            if track {
                acc.shared = Some(shared);
            }
        }
    }

    /// `step`'s unweighted NaN-skipping TwoSum of `v` into `(hi, lo)`, a
    /// NaN lane's value taken as +0 by the mask `k` (set where `v` is a
    /// number) of the two operations that read it, where the generic path
    /// zeroes it first with one more operation: the sum keeps `hi`, which
    /// is `hi + 0` bit for bit (`hi` is never −0: a leaf's sums start at
    /// +0, and a sum of rounding to nearest is −0 only when both terms
    /// are), and `v − bb` is +0 (`bb` is `hi − hi` there: +0 for a finite
    /// `hi`; an infinite one makes both paths' error the same NaN). On an
    /// AMD EPYC (Zen 4), one thread, W10F-shaped 1024 × 64 in L2, best of
    /// eight alternated: 23.7 → 25.2 GB/s; from memory, two threads, best
    /// of four: 28.4 → 30.7.
    ///
    /// # Safety
    ///
    /// The CPU has AVX-512F/VL and FMA.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,fma")]
    pub(super) unsafe fn skip_nan_two_sum(
        hi: std::arch::x86_64::__m256d,
        lo: std::arch::x86_64::__m256d,
        v: std::arch::x86_64::__m256d,
        k: u8,
        unit: std::arch::x86_64::__m256d,
    ) -> (std::arch::x86_64::__m256d, std::arch::x86_64::__m256d) {
        use std::arch::x86_64::{_mm256_mask_add_pd, _mm256_mask_sub_pd, _mm256_setzero_pd};
        // `column_strips`' TwoSum, `b` the masked `v`.
        let sum = _mm256_mask_add_pd(hi, k, hi, v);
        // SAFETY: the CPU has AVX and FMA (this function's contract).
        let lo = unsafe {
            push_error(
                hi,
                sum,
                |bb| _mm256_mask_sub_pd(_mm256_setzero_pd(), k, v, bb),
                None,
                lo,
                unit,
            )
        };
        (sum, lo)
    }

    /// `super::Unit::two_sum`'s error of `sum = a + b` (`bb = s·1 − a`,
    /// `(a − (s − bb)) + (b − bb)` with `−(s − bb)·1 + a` by FMA), where
    /// `b_less(bb)` gives `b − bb`, plus the product's error `pe` if any,
    /// added into `lo` (`e·1 + lo`): the strips' TwoSum, masked or not.
    ///
    /// # Safety
    ///
    /// The CPU has AVX and FMA.
    #[inline(always)]
    unsafe fn push_error(
        a: std::arch::x86_64::__m256d,
        sum: std::arch::x86_64::__m256d,
        b_less: impl FnOnce(std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d,
        pe: Option<std::arch::x86_64::__m256d>,
        lo: std::arch::x86_64::__m256d,
        unit: std::arch::x86_64::__m256d,
    ) -> std::arch::x86_64::__m256d {
        use std::arch::x86_64::{_mm256_add_pd, _mm256_fmadd_pd, _mm256_fmsub_pd, _mm256_fnmadd_pd, _mm256_sub_pd};
        // SAFETY: the CPU has AVX and FMA (this function's contract).
        unsafe {
            let bb = _mm256_fmsub_pd(sum, unit, a);
            let e = _mm256_add_pd(_mm256_fnmadd_pd(_mm256_sub_pd(sum, bb), unit, a), b_less(bb));
            let e = match pe {
                Some(pe) => _mm256_add_pd(e, pe),
                None => e,
            };
            _mm256_fmadd_pd(e, unit, lo)
        }
    }

    /// A column element the strips read: four at a time, widened to `f64`
    /// as `Input::widen` does (exactly, for the types `super::strips_take`
    /// names: the only ones the strips take).
    pub(super) trait Four: Copy + 'static {
        /// The four values at `p`, as `f64`s.
        ///
        /// # Safety
        ///
        /// The CPU has AVX; `p` points to four readable values.
        unsafe fn four(p: *const Self) -> std::arch::x86_64::__m256d;
    }

    /// Every input type, one body: a type the strips take
    /// ([`super::strips_take`]) is loaded and converted by its instructions
    /// — the `TypeId` tests are constants, so each build keeps one branch —
    /// any other widened value by value. One body, not an `impl` per type,
    /// so that `columns_body` instantiates the strips once per input type
    /// (with an `impl` per type, a run-time test per type in the generic
    /// body instantiated them all for every input type).
    impl<T: Input> Four for T {
        // Built with AVX, as an intrinsic is: inlined into the kernels
        // (which are), its loads inlined into it.
        #[inline]
        #[target_feature(enable = "avx")]
        unsafe fn four(p: *const T) -> std::arch::x86_64::__m256d {
            use std::any::TypeId;
            use std::arch::x86_64::{
                _CMP_LT_OQ, _mm_cvtepi8_epi32, _mm_cvtepi16_epi32, _mm_cvtepu8_epi32, _mm_cvtepu16_epi32,
                _mm_cvtsi32_si128, _mm_loadl_epi64, _mm_loadu_ps, _mm_loadu_si128, _mm256_add_pd, _mm256_and_pd,
                _mm256_cmp_pd, _mm256_cvtepi32_pd, _mm256_cvtps_pd, _mm256_loadu_pd, _mm256_set1_pd, _mm256_setr_pd,
                _mm256_setzero_pd,
            };
            let is = |t: TypeId| TypeId::of::<T>() == t;
            // SAFETY (every load): the caller's contract — four readable
            // values of `T` at `p` (16 bytes of a 4-byte type, 8 of a
            // 2-byte one, 4 of a byte), unaligned loads; each branch reads
            // `p` as the type its test has just found `T` to be.
            unsafe {
                if is(TypeId::of::<f64>()) {
                    _mm256_loadu_pd(p.cast())
                } else if is(TypeId::of::<f32>()) {
                    _mm256_cvtps_pd(_mm_loadu_ps(p.cast()))
                } else if is(TypeId::of::<i32>()) {
                    _mm256_cvtepi32_pd(_mm_loadu_si128(p.cast()))
                } else if is(TypeId::of::<u32>()) {
                    // Read as `i32`: a value of 2³¹ or more comes out 2³²
                    // too small, and gets it back (both steps exact).
                    let v = _mm256_cvtepi32_pd(_mm_loadu_si128(p.cast()));
                    let negative = _mm256_cmp_pd::<_CMP_LT_OQ>(v, _mm256_setzero_pd());
                    _mm256_add_pd(v, _mm256_and_pd(negative, _mm256_set1_pd(4_294_967_296.0)))
                } else if is(TypeId::of::<i16>()) {
                    _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(_mm_loadl_epi64(p.cast())))
                } else if is(TypeId::of::<u16>()) {
                    _mm256_cvtepi32_pd(_mm_cvtepu16_epi32(_mm_loadl_epi64(p.cast())))
                } else if is(TypeId::of::<i8>()) {
                    _mm256_cvtepi32_pd(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned())))
                } else if is(TypeId::of::<u8>()) {
                    _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned())))
                } else {
                    _mm256_setr_pd(
                        (*p).widen(),
                        (*p.add(1)).widen(),
                        (*p.add(2)).widen(),
                        (*p.add(3)).widen(),
                    )
                }
            }
        }
    }

    /// [`transpose4`] as vectors: four unpacks and four lane permutes.
    ///
    /// # Safety
    ///
    /// The CPU has AVX; each `cols[k]` points to four readable `f64`s.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn transpose4v(cols: [*const f64; 4]) -> [std::arch::x86_64::__m256d; 4] {
        // SAFETY: readable by the caller's contract (unaligned loads).
        unsafe {
            transpose4r([
                f64::four(cols[0]),
                f64::four(cols[1]),
                f64::four(cols[2]),
                f64::four(cols[3]),
            ])
        }
    }

    /// Four vectors of four samples of one column each, transposed: vector
    /// `i` holds sample `i` of each.
    #[inline]
    #[target_feature(enable = "avx")]
    fn transpose4r([c0, c1, c2, c3]: [std::arch::x86_64::__m256d; 4]) -> [std::arch::x86_64::__m256d; 4] {
        use std::arch::x86_64::{_mm256_permute2f128_pd, _mm256_unpackhi_pd, _mm256_unpacklo_pd};
        // [a0 b0 a2 b2], [a1 b1 a3 b3], [c0 d0 c2 d2], [c1 d1 c3 d3].
        let (u0, u1) = (_mm256_unpacklo_pd(c0, c1), _mm256_unpackhi_pd(c0, c1));
        let (u2, u3) = (_mm256_unpacklo_pd(c2, c3), _mm256_unpackhi_pd(c2, c3));
        [
            _mm256_permute2f128_pd::<0x20>(u0, u2),
            _mm256_permute2f128_pd::<0x20>(u1, u3),
            _mm256_permute2f128_pd::<0x31>(u0, u2),
            _mm256_permute2f128_pd::<0x31>(u1, u3),
        ]
    }

    /// `mod $name` with `$body` compiled for AVX-512 (`avx512`) and for
    /// AVX2 + FMA (`avx2`), as `contiguous`'s `versions!` does for the
    /// float lanes.
    macro_rules! versions {
        ($name:ident, $body:ident, ($($a:ident: $t:ty),*)) => {
            pub(super) mod $name {
                #[allow(unused_imports)]
                use super::super::{Acc, Input, Lanes, Validity};
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                pub(crate) fn avx512<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool>($($a: $t),*) {
                    super::super::$body::<T, W, WEIGHTED, IGNORE, true, true>($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                pub(crate) fn avx2<T: Input, W: Input, const WEIGHTED: bool, const IGNORE: bool>($($a: $t),*) {
                    super::super::$body::<T, W, WEIGHTED, IGNORE, true, false>($($a),*)
                }
            }
        };
    }
    versions!(rows, rows_body, (x: &[T], w: &[W], acc: &mut Lanes<'_>));
    versions!(
        columns,
        columns_body,
        (columns: &[&[T]], valid: &[Option<Validity<'_>>], w: &[W], cuts: &[usize], accs: &mut [Acc])
    );
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::*;
    use crate::kernels::general;

    /// The next value of the tests' xorshift generator, state `z`.
    fn xorshift(z: &mut u64) -> u64 {
        *z ^= *z << 13;
        *z ^= *z >> 7;
        *z ^= *z << 17;
        *z
    }

    fn data(n: usize, d: usize, fortran: bool) -> Array2<f64> {
        let mut z = 0x2545_F491_4F6C_DD1Du64;
        Array2::from_shape_fn((n, d).set_f(fortran), |(i, j)| {
            let z = xorshift(&mut z);
            if z.is_multiple_of(7) {
                f64::NAN
            } else {
                // Large and small magnitudes, so that the error terms matter.
                ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10f64.powi((i + 3 * j) as i32 % 30 - 15)
            }
        })
    }

    /// Every combination of weights, policy and layout gives the per-lane
    /// loop's sums bit for bit — and so does every compiled version.
    #[test]
    fn vectorised_leaves_are_the_general_paths_bits() {
        // Fortran shapes with d ≥ 8 take the two-strip kernel, its leftover
        // strips (d = 12, 13, 65) the one-strip tiles, `n % 4` rows the tail.
        for (n, d) in [
            (1, 1),
            (3, 5),
            (17, 8),
            (64, 9),
            (101, 64),
            (33, 3),
            (66, 12),
            (102, 65),
            (7, 13),
        ] {
            for fortran in [false, true] {
                let x = data(n, d, fortran);
                let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
                let w = ndarray::Array1::from_shape_fn(n, |i| [0.0, 0.5, 3.0, 1e-3, 7.25][i % 5]);
                for policy in [NanPolicy::Ignore, NanPolicy::Reject] {
                    let x = if policy == NanPolicy::Ignore { &x } else { &finite };
                    let xv = x.view().into_dyn();
                    let wv = w.view().into_dyn();
                    for weights in [None, Some(&wv)] {
                        if weights.is_none() && policy == NanPolicy::Reject {
                            continue;
                        }
                        let want = general::per_lane(&xv, weights, policy, &[]);
                        let got = leaf_sums(&xv, weights, policy).expect("a fast layout");
                        assert_eq!(
                            got,
                            want,
                            "n {n}, d {d}, fortran {fortran}, {policy:?}, weighted {}",
                            weights.is_some()
                        );
                        // The baseline bodies too (dispatch picks AVX-512 or AVX2 + FMA),
                        // and the AVX2 + FMA build where the CPU has it (AVX2-only CPUs
                        // run it, with half the vector registers).
                        type T = f64;
                        type W = f64;
                        let ws = weights.map(|w| w.as_slice().unwrap()).unwrap_or(&[]);
                        let (weighted, ig) = (weights.is_some(), policy == NanPolicy::Ignore);
                        let cols: Vec<&[f64]> = (0..d).filter_map(|j| x.column(j).to_slice()).collect();
                        let run = |avx2: bool| {
                            let mut acc = Acc::new(d, weighted && !ig);
                            match (xv.as_slice(), avx2) {
                                (Some(s), false) => {
                                    by_flags!(
                                        [rows_body],
                                        weighted,
                                        ig,
                                        (s, ws, &mut acc.lanes(0, d, true)),
                                        false,
                                        false
                                    )
                                }
                                (None, false) => {
                                    by_flags!(
                                        [columns_body],
                                        weighted,
                                        ig,
                                        (&cols, &[], ws, &[0, n], std::slice::from_mut(&mut acc)),
                                        false,
                                        false
                                    )
                                }
                                #[cfg(target_arch = "x86_64")]
                                // SAFETY: called only where the CPU has AVX2 and FMA.
                                (Some(s), true) => unsafe {
                                    by_flags!([simd::rows::avx2], weighted, ig, (s, ws, &mut acc.lanes(0, d, true)))
                                },
                                #[cfg(target_arch = "x86_64")]
                                // SAFETY: as above.
                                (None, true) => unsafe {
                                    by_flags!(
                                        [simd::columns::avx2],
                                        weighted,
                                        ig,
                                        (&cols, &[], ws, &[0, n], std::slice::from_mut(&mut acc))
                                    )
                                },
                                #[cfg(not(target_arch = "x86_64"))]
                                (_, true) => unreachable!("AVX2 bodies run on x86-64 only"),
                            }
                            acc.into_sums(d)
                        };
                        assert_eq!(run(false), want, "baseline body, n {n}, d {d}, fortran {fortran}");
                        #[cfg(target_arch = "x86_64")]
                        if simd::has_avx2_fma() {
                            assert_eq!(run(true), want, "AVX2 body, n {n}, d {d}, fortran {fortran}");
                        }
                    }
                }
            }
        }
    }

    /// `leaf_starts` cuts a group's rows where `tree` with [`LEAF`] and
    /// `Group::halve` do, for row counts and feature counts around a leaf's
    /// and a span's sizes (one-row leaves included).
    #[test]
    fn leaf_starts_are_the_trees_leaves() {
        for d in [1, 3, 33, 64, 100, 40_000] {
            for rows in [1, 2, 3, 511, 512, 513, 1000, 4097, 10_007] {
                let x = Array2::<f64>::zeros((rows, 1).f());
                let group = Group::<f64, f64> {
                    x: x.view(),
                    w: None,
                    d,
                };
                let concat = |mut a: Vec<usize>, b: Vec<usize>| {
                    a.extend(b);
                    a
                };
                let want = tree(group, LEAF, &|g: Group<'_, f64, f64>| vec![g.x.nrows()], &concat);
                let mut cuts = Vec::new();
                leaf_starts(0, rows, d, &mut cuts);
                cuts.push(rows);
                let got: Vec<usize> = cuts.windows(2).map(|c| c[1] - c[0]).collect();
                assert_eq!(got, want, "{rows} rows of {d} features");
            }
        }
    }

    /// `span_sums` takes a span of several leaves of uneven sizes (it gives
    /// sums, not `None`) and gives the leaf-by-leaf tree's bits, for `f64`
    /// columns (the intrinsics strips and the tiles), `f32` and `u8` ones
    /// (widened by the tiles), weighted or skipping NaN.
    #[test]
    fn spans_are_the_leaf_by_leaf_trees_bits() {
        fn check<T: Input>(x: &Array2<T>, w: &ndarray::Array1<f64>, ignore: bool, what: &str) {
            // The group: the first 32 of 40 features, cut as the batch is
            // (3001 rows of 40: leaves of 750 and 751 rows).
            let d = x.ncols();
            let x = x.slice(ndarray::s![.., ..32]);
            let policy = if ignore { NanPolicy::Ignore } else { NanPolicy::Reject };
            for weighted in [true, false] {
                if !weighted && !ignore {
                    continue;
                }
                let group = || Group {
                    x: x.view(),
                    w: weighted.then(|| w.view()),
                    d,
                };
                let want = tree(group(), LEAF, &group_leaf(policy), &Sums::merged);
                let got = span_sums(&group(), policy).expect("a span of contiguous columns");
                assert_eq!(got, want, "{what}, weighted {weighted}, {policy:?}");
            }
        }
        let (n, d) = (3001, 40);
        let x = data(n, d, true);
        let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
        let w = ndarray::Array1::from_shape_fn(n, |i| [0.0, 0.5, 3.0, 1e-3, 7.25][i % 5]);
        check(&x, &w, true, "f64 with NaN");
        check(&finite, &w, false, "f64");
        let f32s = Array2::from_shape_fn((n, d).f(), |(i, j)| x[(i, j)] as f32);
        check(&f32s, &w, true, "f32 with NaN");
        let bytes = Array2::from_shape_fn((n, d).f(), |(i, j)| (i * 7 + j * 13) as u8);
        check(&bytes, &w, false, "u8");
    }

    /// One call of the columns kernel over `cuts`' leaves by every body:
    /// the baseline (which reads value by value: the reference), the
    /// dispatched one and the AVX2 + FMA build where the CPU has it;
    /// asserts that they agree bit for bit and returns the baseline's sums,
    /// leaf by leaf.
    fn columns_bodies_agree<T: Input, W: Input>(
        cols: &[&[T]],
        valid: &[Option<Validity<'_>>],
        ws: &[W],
        (weighted, ig): (bool, bool),
        cuts: &[usize],
        case: &str,
    ) -> Vec<Sums> {
        let d = cols.len();
        let new_accs = || -> Vec<Acc> { (1..cuts.len()).map(|_| Acc::new(d, weighted && !ig)).collect() };
        let sums = |accs: Vec<Acc>| accs.into_iter().map(|a| a.into_sums(d)).collect::<Vec<_>>();
        let mut accs = new_accs();
        by_flags!(
            [columns_body],
            weighted,
            ig,
            (cols, valid, ws, cuts, &mut accs),
            false,
            false
        );
        let want = sums(accs);
        let mut accs = new_accs();
        columns_dispatch::<T, W>(cols, valid, weighted.then_some(ws), ig, cuts, &mut accs);
        assert_eq!(sums(accs), want, "dispatched body, {case}");
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2_fma() {
            let mut accs = new_accs();
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe { by_flags!([simd::columns::avx2], weighted, ig, (cols, valid, ws, cuts, &mut accs)) };
            assert_eq!(sums(accs), want, "AVX2 body, {case}");
        }
        want
    }

    /// One call of the columns kernel over several leaves (`cuts`, empty
    /// and one-row leaves among them) gives each leaf the per-lane loop's
    /// sums over its rows alone, bit for bit: the baseline body, the
    /// dispatched one and the AVX2 + FMA build.
    #[test]
    fn a_call_over_leaves_is_each_leafs_bits() {
        type T = f64;
        type W = f64;
        for (n, d) in [(203, 8), (101, 19), (64, 32), (21, 4)] {
            let x = data(n, d, true);
            let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
            let w = ndarray::Array1::from_shape_fn(n, |i| [0.0, 0.5, 3.0, 1e-3, 7.25][i % 5]);
            let cuts = [0, 5, 6, 6, n / 2, n / 2 + 3, n];
            for (weighted, ig) in [(true, false), (true, true), (false, true)] {
                let x = if ig { &x } else { &finite };
                let cols: Vec<&[f64]> = (0..d).filter_map(|j| x.column(j).to_slice()).collect();
                let ws = if weighted { w.as_slice().unwrap() } else { &[] };
                let policy = if ig { NanPolicy::Ignore } else { NanPolicy::Reject };
                let want: Vec<Sums> = cuts
                    .windows(2)
                    .map(|c| {
                        let xl = x.slice(ndarray::s![c[0]..c[1], ..]).into_dyn();
                        let wl = w.slice(ndarray::s![c[0]..c[1]]).into_dyn();
                        general::per_lane(&xl, weighted.then_some(&wl), policy, &[])
                    })
                    .collect();
                let case = format!("{n}×{d}, weighted {weighted}, ignore {ig}");
                let got = columns_bodies_agree::<T, W>(&cols, &[], ws, (weighted, ig), &cuts, &case);
                assert_eq!(got, want, "baseline body, {case}");
            }
        }
    }

    /// Columns with validity bitmaps under `Ignore` (the only policy that
    /// passes nulls to the kernel: a null is skipped as a NaN is) through
    /// the masked strips: the baseline body's bits (its per-leaf loop
    /// reads the bitmaps value by value), dispatched and in the AVX2
    /// build; bitmaps on some columns only, at two offsets, with and
    /// without NaN, across leaves whose lengths are not multiples of the
    /// strips' sixteen-row bitmap reads.
    #[test]
    fn masked_strips_are_the_per_value_bits() {
        type T = f64;
        type W = f64;
        for (n, d) in [(203, 8), (101, 19), (64, 32), (300, 17)] {
            let x = data(n, d, true);
            let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
            let cuts = [0, 5, 6, 6, n / 2, n / 2 + 3, n];
            // About one null in four.
            let mut z = 0x2545_F491_4F6C_DD1Du64;
            let maps: Vec<Vec<u8>> = (0..d)
                .map(|_| {
                    (0..n / 8 + 3)
                        .map(|_| {
                            let z = xorshift(&mut z);
                            (z as u8) | (z >> 8) as u8
                        })
                        .collect()
                })
                .collect();
            for offset in [0, 5] {
                let valid: Vec<Option<Validity<'_>>> = maps
                    .iter()
                    .enumerate()
                    .map(|(j, m)| (j % 3 != 2).then(|| Validity::new(m, offset)))
                    .collect();
                // Nulls reach the kernel under `Ignore` only (a null under
                // `Reject` is an error); with and without NaN.
                for x in [&x, &finite] {
                    let ig = true;
                    let cols: Vec<&[f64]> = (0..d).filter_map(|j| x.column(j).to_slice()).collect();
                    let case = format!("{n}×{d}, offset {offset}, NaN {}", x.iter().any(|v| v.is_nan()));
                    let want = columns_bodies_agree::<T, W>(&cols, &valid, &[], (false, ig), &cuts, &case);
                    let counted: f64 = want.iter().flat_map(|s| &s.weight).map(|w| w.hi).sum();
                    let present = (n * d) as f64;
                    assert!(
                        counted < 0.9 * present && counted > 0.5 * present,
                        "{counted} of {present}"
                    );
                }
            }
        }
    }

    /// Where the CPU has AVX2 and FMA: the strips take `T` (not only the
    /// per-value loop, which gives the same bits), every whole group of
    /// eight of `cols`, and `T`'s tails are not read as `f64` tiles.
    fn assert_strips_take<T: Input>(cols: &[&[T]], cuts: &[usize], what: &str) {
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2_fma() {
            let d = cols.len();
            assert!(strips_take::<T>() && !avx_f64::<T>(), "{what}");
            let mut accs: Vec<Acc> = (1..cuts.len()).map(|_| Acc::new(d, false)).collect();
            let taken = strip_groups::<T, f64, false, true, true, true>(cols, &[], &[], cuts, &mut accs, false);
            assert_eq!(taken, d / 8 * 8, "{what}");
        }
        let _ = (cols, cuts, what);
    }

    /// `(weighted, ignore, bitmaps)`: the calls the strips take.
    const STRIP_CASES: [(bool, bool, bool); 5] = [
        (true, false, false),
        (true, true, false),
        (false, true, false),
        (false, true, true),
        (false, false, false),
    ];

    /// `d` bitmaps of `n` rows (read from offset 2), some rows null in each.
    fn strip_bitmaps(n: usize, d: usize) -> Vec<Vec<u8>> {
        (0..d)
            .map(|j| (0..n / 8 + 3).map(|i| (i * 37 + j * 11) as u8 | 0x42).collect())
            .collect()
    }

    /// `maps` as validity at offset 2, every third column without one.
    fn strip_validity(maps: &[Vec<u8>]) -> Vec<Option<Validity<'_>>> {
        maps.iter()
            .enumerate()
            .map(|(j, m)| (j % 3 != 1).then(|| Validity::new(m, 2)))
            .collect()
    }

    /// `f32` columns through the strips (widened as they are loaded):
    /// weighted, NaN-skipping, weighted and NaN-skipping, and with validity
    /// bitmaps, across leaves — the baseline body's bits (which widens value
    /// by value), dispatched and in the AVX2 build.
    #[test]
    fn f32_columns_through_the_strips_are_the_per_value_bits() {
        type T = f32;
        type W = f32;
        for (n, d) in [(203, 8), (101, 19), (64, 32)] {
            // With subnormal `f32`s and −0 among them.
            let mut x = data(n, d, true).mapv(|v| v as f32);
            for (i, v) in x.iter_mut().enumerate().filter(|(i, _)| i % 13 == 5) {
                *v = if i % 2 == 0 {
                    -0.0
                } else {
                    f32::from_bits(0x0000_1234 + i as u32)
                };
            }
            let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
            let w = ndarray::Array1::from_shape_fn(n, |i| [0.0f32, 0.5, 3.0, 1e-3, 7.25][i % 5]);
            let cuts = [0, 5, 6, 6, n / 2, n / 2 + 3, n];
            let maps = strip_bitmaps(n, d);
            let bitmaps = strip_validity(&maps);
            for (weighted, ig, masked) in STRIP_CASES {
                let x = if ig { &x } else { &finite };
                let cols: Vec<&[f32]> = (0..d).map(|j| x.column(j).to_slice().expect("Fortran order")).collect();
                let ws: &[f32] = if weighted { w.as_slice().unwrap() } else { &[] };
                let valid: &[Option<Validity<'_>>] = if masked { &bitmaps } else { &[] };
                let case = format!("{n}×{d}, weighted {weighted}, ignore {ig}, bitmaps {masked}");
                columns_bodies_agree::<T, W>(&cols, valid, ws, (weighted, ig), &cuts, &case);
            }
            // The strips take them (not the per-value loop on all paths).
            let cols: Vec<&[f32]> = (0..d).map(|j| x.column(j).to_slice().expect("Fortran order")).collect();
            assert_strips_take(&cols, &cuts, &format!("f32 {n}×{d}"));
        }
    }

    /// Integer columns of 32 bits or fewer take the strips too, each type
    /// widened by its own conversion (`u32` through `i32` and back): the
    /// baseline body's bits, dispatched and AVX2, weighted and not, with
    /// bitmaps and without, across leaves — at each type's extremes. The
    /// 64-bit integers and `f16` stay with the per-value loop.
    #[test]
    fn integer_columns_through_the_strips_are_the_per_value_bits() {
        fn check<T: Input>(value: impl Fn(u64) -> T, extremes: [T; 2], name: &str) {
            type W = f64;
            for (n, d) in [(203, 8), (101, 19), (64, 32)] {
                let mut z = 0x9E37_79B9_7F4A_7C15u64 ^ (n * d) as u64;
                let cols: Vec<Vec<T>> = (0..d)
                    .map(|j| {
                        (0..n)
                            .map(|i| {
                                let r = xorshift(&mut z);
                                match (i + j) % 11 {
                                    3 => extremes[0],
                                    7 => extremes[1],
                                    _ => value(r),
                                }
                            })
                            .collect()
                    })
                    .collect();
                let cols: Vec<&[T]> = cols.iter().map(Vec::as_slice).collect();
                let w: Vec<W> = (0..n).map(|i| [0.0, 0.5, 3.0, 1e-3, 7.25][i % 5]).collect();
                let cuts = [0, 5, 6, 6, n / 2, n / 2 + 3, n];
                let maps = strip_bitmaps(n, d);
                let bitmaps = strip_validity(&maps);
                for (weighted, ig, masked) in STRIP_CASES {
                    let ws: &[W] = if weighted { &w } else { &[] };
                    let valid: &[Option<Validity<'_>>] = if masked { &bitmaps } else { &[] };
                    let case = format!("{name} {n}×{d}, weighted {weighted}, ignore {ig}, bitmaps {masked}");
                    let sums = columns_bodies_agree::<T, W>(&cols, valid, ws, (weighted, ig), &cuts, &case);
                    // Against the values themselves: an unweighted leaf's
                    // sum is exact (integers far below 2⁵³ in total).
                    if !weighted && !masked {
                        for (j, col) in cols.iter().enumerate() {
                            let want: f64 = col[cuts[3]..cuts[4]].iter().map(|v| v.widen()).sum();
                            assert_eq!(sums[3].sum[j].hi, want, "{case}, feature {j}");
                        }
                    }
                }
                assert_strips_take(&cols, &cuts, &format!("{name} {n}×{d}"));
            }
        }
        check(|z| z as i32, [i32::MIN, i32::MAX], "i32");
        check(|z| z as u32, [u32::MAX, 1 << 31], "u32");
        check(|z| z as i16, [i16::MIN, i16::MAX], "i16");
        check(|z| z as u16, [u16::MAX, 0], "u16");
        check(|z| z as i8, [i8::MIN, i8::MAX], "i8");
        check(|z| z as u8, [u8::MAX, 0], "u8");
        #[cfg(target_arch = "x86_64")]
        {
            assert!(!strips_take::<i64>() && !strips_take::<u64>());
            #[cfg(feature = "half")]
            assert!(!strips_take::<half::f16>() && !strips_take::<half::bf16>());
        }
    }

    /// The masked TwoSum of the AVX-512 strips gives `step`'s bits on the
    /// values that tell zeroing from masking apart: NaN and signed zeros
    /// for `v`, and `hi` zero, tiny, huge and infinite (never −0: see
    /// `skip_nan_two_sum`), `lo` of either sign — NaN where `step` gives
    /// NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn masked_two_sum_is_steps_bits() {
        use std::arch::x86_64::{_CMP_ORD_Q, _mm256_cmp_pd_mask, _mm256_loadu_pd, _mm256_set1_pd, _mm256_storeu_pd};
        if !simd::has_avx512() {
            eprintln!("no AVX-512 here: the masked TwoSum is not tested");
            return;
        }
        let his = [0.0, 1e-300, 3.5, -7.25e15, 1e308, f64::INFINITY, f64::NEG_INFINITY];
        let los = [0.0, -1e-17, 2e-20];
        let vs = [f64::NAN, -f64::NAN, 0.0, -0.0, 1e-310, -2.5, 1e308, 0.1];
        let mut checked = 0;
        for &h0 in &his {
            for &l0 in &los {
                for v4 in vs.windows(4) {
                    let v: [f64; 4] = v4.try_into().unwrap();
                    let (mut got_h, mut got_l) = ([0.0; 4], [0.0; 4]);
                    // SAFETY: the CPU has AVX-512F/VL and FMA (checked
                    // above: `has_avx512` asks for AVX2 and FMA too); the
                    // loads and stores are of four-`f64` arrays.
                    unsafe {
                        let x = _mm256_loadu_pd(v.as_ptr());
                        let k = _mm256_cmp_pd_mask::<_CMP_ORD_Q>(x, x);
                        let unit = _mm256_set1_pd(1.0);
                        let (h, l) = simd::skip_nan_two_sum(_mm256_set1_pd(h0), _mm256_set1_pd(l0), x, k, unit);
                        _mm256_storeu_pd(got_h.as_mut_ptr(), h);
                        _mm256_storeu_pd(got_l.as_mut_ptr(), l);
                    }
                    for (i, &vi) in v.iter().enumerate() {
                        let (mut h, mut l, mut wh, mut wl) = (h0, l0, 0.0, 0.0);
                        let unit = Unit::new::<true>();
                        step::<false, true, true>(&mut h, &mut l, &mut wh, &mut wl, vi, 1.0, !vi.is_nan(), unit);
                        // A NaN's sign and payload depend on the order the
                        // compiler gave the operands (an overflowed sum,
                        // which the caller re-sums scaled).
                        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan();
                        assert!(
                            same(got_h[i], h) && same(got_l[i], l),
                            "hi {h0:e}, lo {l0:e}, v {vi:e}: ({}, {}) vs ({h}, {l})",
                            got_h[i],
                            got_l[i]
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, his.len() * los.len() * (vs.len() - 3) * 4);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn staged_weights_sit_half_a_page_from_the_columns() {
        let w: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let columns = vec![0.0f64; 600];
        for k in [0, 1, 7, 300, 511] {
            let column = columns[k..].as_ptr();
            let staged = staged_weights(&w, column);
            let got = staged.get();
            let widened: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(got, &widened[..]);
            assert_eq!(
                (got.as_ptr() as usize).wrapping_sub(column as usize) % 4096,
                2048,
                "column {k}"
            );
        }
    }

    /// Views the kernels do not take are left to the per-lane loop; rows
    /// that are not one run (a leaf cut along an inner axis, reversed
    /// rows, sliced or broadcast weights) are walked run by run, with the
    /// per-lane loop's bits.
    #[test]
    fn other_layouts_are_declined_or_walked() {
        let x = data(10, 4, false);
        let strided = x.slice(ndarray::s![.., ..;2]);
        assert!(leaf_sums::<f64, f64>(&strided.into_dyn(), None, NanPolicy::Ignore).is_none());
        let w = ndarray::Array1::from_shape_fn(20, |i| i as f64 * 0.37);
        let every_other = w.slice(ndarray::s![..;2]).into_dyn();
        let finite = x.mapv(|v| if v.is_nan() { 0.25 } else { v });
        let xv = finite.view().into_dyn();
        let want = general::per_lane(&xv, Some(&every_other), NanPolicy::Reject, &[]);
        assert_eq!(leaf_sums(&xv, Some(&every_other), NanPolicy::Reject), Some(want));

        // (N, T, D) cut along T, with an (N, T) mask-like weight; reversed
        // sequences; a weight broadcast along T.
        let seq = ndarray::Array3::from_shape_fn((3, 40, 5), |(n, t, j)| {
            if (n + t + j) % 9 == 0 {
                f64::NAN
            } else {
                ((n * 40 + t) * 5 + j) as f64 * 1.25e-3 - 0.1
            }
        });
        let leaf = seq.slice(ndarray::s![.., 7..29, ..]).into_dyn();
        let mask = ndarray::Array2::from_shape_fn((3, 40), |(n, t)| ((n + 2 * t) % 3 != 0) as u8 as f64);
        let m = mask.slice(ndarray::s![.., 7..29]).into_dyn();
        let reversed = seq.slice(ndarray::s![..;-1, 7..29, ..]).into_dyn();
        let m_rev = mask.slice(ndarray::s![..;-1, 7..29]).into_dyn();
        let per_sequence = ndarray::Array1::from_vec(vec![0.5, 2.0, 1.0]);
        let column = per_sequence.view().insert_axis(Axis(1));
        let broadcast = column.broadcast((3, 22)).unwrap().into_dyn();
        for policy in [NanPolicy::Ignore] {
            for (x, w) in [
                (&leaf, Some(&m)),
                (&reversed, Some(&m_rev)),
                (&leaf, Some(&broadcast)),
                (&leaf, None),
            ] {
                let want = general::per_lane(x, w, policy, &[]);
                assert_eq!(leaf_sums(x, w, policy), Some(want), "{:?}", x.strides());
            }
        }
    }
}
