//! Application: `x ∓ mean` (into a fresh or a caller's buffer, or in
//! place), walking contiguous buffers in memory order and anything else in
//! cache-sized blocks.

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use super::tree::{APPLY_CHUNK, BLOCK, for_chunks, for_chunks_at, for_chunks_mut, for_chunks_mut_at, tree};
use super::{contiguous, narrow};
use crate::state::two_sum;
use crate::{Element, Input};

/// Where a contiguous buffer keeps its features: element `i` of the buffer
/// in memory order is feature `(i / stride) mod d` (reversed when the
/// feature axis runs backwards).
pub(super) struct MemoryOrder {
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
pub(super) const STACK_PATTERN: usize = 4096;

/// Calls `f` with the means repeated into one block of `period(d)` elements
/// (reversed for a backwards feature axis), without allocating except for a
/// reversed feature axis of 256 or more features.
pub(super) fn with_pattern<F: Element, R>(mean: &[F], reversed: bool, f: impl FnOnce(&[F]) -> R) -> R {
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
pub(super) fn apply_memory<F: Element>(
    xs: &[F],
    os: &mut [F],
    order: &MemoryOrder,
    mean: &[F],
    add: bool,
    stores: Stores,
) {
    if order.stride == 1 {
        with_pattern(mean, order.reversed, |pat| {
            let chunk = stores.chunk(xs.len(), pat.len());
            match stores {
                Stores::Cached => for_chunks(xs, os, chunk, &|x, o| contiguous::apply_rows(x, o, pat, add)),
                Stores::Streaming => for_chunks(xs, os, chunk, &|x, o| contiguous::stream_rows(x, o, pat, add)),
            }
        });
    } else {
        match stores {
            Stores::Cached => for_chunks_at(xs, os, APPLY_CHUNK, &|start, x, o| {
                runs(start, x.len(), order, |a, b, f| {
                    contiguous::apply_scalar(&x[a..b], &mut o[a..b], mean[f], add)
                })
            }),
            // Runs of one feature (Fortran order, W5) streamed out as a
            // pattern of its mean: the same subtraction per element.
            Stores::Streaming => for_chunks_at(xs, os, stores.chunk(xs.len(), 1), &|start, x, o| {
                runs(start, x.len(), order, |a, b, f| {
                    contiguous::stream_rows_unfenced(&x[a..b], &mut o[a..b], &[mean[f]; RUN_PATTERN], add)
                });
                contiguous::store_fence();
            }),
        }
    }
}

/// The length of the pattern a run of one feature is streamed with: whole
/// vectors of `f32` and `f64`.
const RUN_PATTERN: usize = 16;

/// In-place twin of [`apply_memory`].
pub(super) fn update_memory<F: Element>(xs: &mut [F], order: &MemoryOrder, mean: &[F], add: bool) {
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
pub(super) fn runs(start: usize, len: usize, order: &MemoryOrder, mut f: impl FnMut(usize, usize, usize)) {
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

/// How an output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stores {
    /// Ordinary stores: outputs that fit in the caches, fresh memory.
    Cached,
    /// Non-temporal stores on the contiguous fast paths (where the CPU has
    /// them): a large output written before, which ordinary stores would
    /// read back first (`_into` calls).
    Streaming,
}

/// Outputs of at least this many bytes written into a caller's buffer take
/// [`Stores::Streaming`]: well past the caches a 2-core share of a server
/// CPU has, so that the output is not read again soon by the same core.
pub(crate) const STREAM_MIN: usize = 8 << 20;

impl Stores {
    /// The chunk length (a multiple of `unit`) a linear pass over `len`
    /// elements is cut into: [`APPLY_CHUNK`] for ordinary stores; for
    /// streaming stores one chunk per thread of the pool (each thread then
    /// streams one long run: with 2 threads alternating over 512 KiB
    /// chunks, W9's `transform_into` wrote 19 GB/s; with one half each,
    /// 28 GB/s). Element-wise, so the cut does not change the result.
    fn chunk(self, len: usize, unit: usize) -> usize {
        let cached = (APPLY_CHUNK / unit).max(1) * unit;
        match self {
            Stores::Cached => cached,
            Stores::Streaming => {
                #[cfg(feature = "rayon")]
                let threads = rayon::current_num_threads().max(1);
                #[cfg(not(feature = "rayon"))]
                let threads = 1;
                len.div_ceil(threads)
                    .div_ceil(unit)
                    .max(1)
                    .saturating_mul(unit)
                    .max(cached)
            }
        }
    }

    /// [`Stores::Streaming`] for an `_into` output of `bytes` bytes of at
    /// least [`STREAM_MIN`], else [`Stores::Cached`].
    pub(crate) fn into_buffer(bytes: usize) -> Self {
        if bytes >= STREAM_MIN {
            Stores::Streaming
        } else {
            Stores::Cached
        }
    }
}

/// `out = x − mean` (or `+` when `add`), for any layouts of `x` and `out`
/// (same shape, checked by the caller).
pub(crate) fn apply<F: Element>(
    x: ArrayViewD<'_, F>,
    mut out: ArrayViewMutD<'_, F>,
    mean: &[F],
    add: bool,
    stores: Stores,
) {
    if x.strides() == out.strides() {
        let order = MemoryOrder::of(&x);
        if let (Some(xs), Some(os)) = (x.as_slice_memory_order(), out.as_slice_memory_order_mut()) {
            apply_memory(xs, os, &order, mean, add, stores);
            return;
        }
    }
    apply_blocks(x, out, mean, add);
}

/// The fallback of [`apply`] for layouts that differ or have gaps: blocks of
/// at most [`BLOCK`] elements (halving the longest sample axis), each walked
/// lane by lane. Blocks keep a transposing walk (Fortran input, C output)
/// inside the cache.
pub(super) fn apply_blocks<F: Element>(x: ArrayViewD<'_, F>, out: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
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
pub(super) fn update_blocks<F: Element>(x: ArrayViewMutD<'_, F>, mean: &[F], add: bool) {
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

/// Values widened and applied at a time: 16 KiB of `f32`, in L1 between the
/// two passes.
const WIDEN_BLOCK: usize = 4096;

/// [`apply_memory`] of an input whose values are exact in `F`: each block
/// is widened into the output, then updated there.
fn apply_widened<T: Input, F: Element>(
    xs: &[T],
    os: &mut [F],
    order: &MemoryOrder,
    mean: &[F],
    add: bool,
    stores: Stores,
) {
    let widen = |x: &[T], o: &mut [F]| {
        let _exact = narrow::widen_exact(x, o);
        debug_assert!(_exact);
    };
    if order.stride == 1 {
        with_pattern(mean, order.reversed, |pat| {
            let block = (WIDEN_BLOCK / pat.len()).max(1) * pat.len();
            let chunk = stores.chunk(xs.len(), block);
            for_chunks_at(xs, os, chunk, &|_, x, o| match stores {
                Stores::Cached => {
                    for (x, o) in x.chunks(block).zip(o.chunks_mut(block)) {
                        widen(x, o);
                        contiguous::update_rows(o, pat, add);
                    }
                }
                Stores::Streaming => {
                    // Widened in registers and streamed out, where a kernel
                    // does that for `(T, F)`; else widened in cache, then
                    // streamed out.
                    if narrow::widen_stream(x, o, pat, add) {
                        contiguous::store_fence();
                        return;
                    }
                    let mut buf = vec![F::zero(); block.min(x.len())];
                    for (x, o) in x.chunks(block).zip(o.chunks_mut(block)) {
                        let b = &mut buf[..x.len()];
                        widen(x, b);
                        contiguous::stream_rows_unfenced(b, o, pat, add);
                    }
                    contiguous::store_fence();
                }
            });
        });
    } else {
        for_chunks_at(xs, os, APPLY_CHUNK, &|start, x, o| {
            widen(x, o);
            runs(start, x.len(), order, |a, b, f| {
                contiguous::update_scalar(&mut o[a..b], mean[f], add)
            })
        });
    }
}

/// `out = x ∓ mean` for an input of any [`Input`] type: the kernels above
/// when it is `F` itself; otherwise each value widened to `f64`, the mean
/// subtracted there, and the difference rounded once to `F` — in the same
/// fixed tree of blocks, in parallel when large.
pub(crate) fn apply_input<T: Input, F: Element>(
    x: ArrayViewD<'_, T>,
    out: ArrayViewMutD<'_, F>,
    mean: &[F],
    add: bool,
    stores: Stores,
) {
    if let Some(v) = F::same_view(T::batch(x.view())) {
        return apply(v, out, mean, add, stores);
    }
    let mut out = out;
    if narrow::widen_exact::<T, F>(&[], &mut [])
        && x.strides() == out.strides()
        && let (Some(xs), Some(os)) = (x.as_slice_memory_order(), out.as_slice_memory_order_mut())
    {
        // Every value is exact in `F`: widened, then `∓ mean` in `F` is the
        // difference rounded once, as below, at the speed of `F`'s kernels.
        return apply_widened(xs, os, &MemoryOrder::of(&x), mean, add, stores);
    }
    let m: Vec<f64> = mean.iter().map(|v| v.widen()).collect();
    let last = x.ndim() - 1;
    let leaf = |(x, mut o): (ArrayViewD<'_, T>, ArrayViewMutD<'_, F>)| {
        ndarray::Zip::from(x.lanes(Axis(last)))
            .and(o.lanes_mut(Axis(last)))
            .for_each(|xl, mut ol| {
                for ((o, &v), &mj) in ol.iter_mut().zip(xl).zip(&m) {
                    let y = if T::EXACT {
                        if add { v.widen() + mj } else { v.widen() - mj }
                    } else {
                        // A 64-bit integer is `hi + lo`: `hi ∓ mean` with
                        // its rounding error, then `lo` and that error
                        // together (`2⁶⁰ + 1 − 2⁶⁰` is 1, not 0).
                        let (hi, lo) = v.widen_pair();
                        let (s, e) = two_sum(hi, if add { mj } else { -mj });
                        s + (e + lo)
                    };
                    *o = F::from(y).unwrap_or_else(F::nan);
                }
            });
    };
    tree((x, out), BLOCK, &leaf, &|(), ()| ());
}
