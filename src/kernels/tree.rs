//! Scheduling: the fixed halving tree every kernel runs on, the one
//! decision of when its halves run in parallel, and fixed-size chunks for
//! the linear `apply` passes. What a node computes never depends on who
//! runs it, so results are bit-identical for any thread count.

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};

use crate::Element;

/// The most elements a leaf of the reduction tree holds.
pub(super) const LEAF: usize = 1 << 15;

/// The most elements a block of the general `apply` walks at once.
pub(super) const BLOCK: usize = 1 << 12;

/// Elements per parallel task of `apply` (whole patterns of means).
pub(super) const APPLY_CHUNK: usize = 1 << 17;

/// Nodes at least this large run their halves in parallel.
pub(super) const PARALLEL_MIN: usize = 1 << 18;

/// Nodes at least this large, reached from outside the pool, are handed to
/// the pool whole (`rayon::join`): the hand-off is then under 1% of the work,
/// and the caller does not compete with both workers for two cores.
#[cfg(feature = "rayon")]
pub(super) const HANDOFF_MIN: usize = 1 << 22;

/// Runs `a` and `b` — the two halves of a node of `size` elements — in
/// parallel when the node is large enough and rayon is on.
pub(super) fn join<A, B, RA, RB>(size: usize, a: A, b: B) -> (RA, RB)
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
pub(super) const SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// `join` for a thread outside rayon's pool (the usual caller).
/// `rayon::join` would hand the whole node to a worker and put the caller to
/// sleep until it is done: two wake-ups per call, about 17 µs each on the
/// reference VM, a quarter of a 2 MiB `partial_fit` (W7). Instead the pool
/// takes `a` while the caller computes `b` itself, sequentially, and then
/// spins briefly for `a` rather than sleeping. The tree is the same, so the
/// result is too.
#[cfg(feature = "rayon")]
pub(super) fn split_on_caller<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
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
pub(super) trait Halve: Sized + Send {
    /// Elements covered.
    fn size(&self) -> usize;
    /// The two halves, or `self` back when it cannot be cut.
    fn halve(self) -> std::result::Result<(Self, Self), Self>;
}

/// The sample axis a node is cut along: the longest one (the first on ties),
/// never the last (feature) axis.
pub(super) fn cut_axis(shape: &[usize]) -> Option<usize> {
    (0..shape.len() - 1)
        .max_by_key(|&a| (shape[a], std::cmp::Reverse(a)))
        .filter(|&a| shape[a] > 1)
}

/// A `Rows` view (see [`Plan`](super::layout::Plan)): cut along a sample axis, or — when
/// only the last axis is long — at a whole row (`unit` elements) of it.
pub(super) struct Rows<'a, F> {
    pub(super) view: ArrayViewD<'a, F>,
    pub(super) unit: usize,
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
impl<F: Sync, W: Sync> Halve for (ArrayViewD<'_, F>, Option<ArrayViewD<'_, W>>) {
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
impl<T: Sync, F: Send + Sync> Halve for (ArrayViewD<'_, T>, ArrayViewMutD<'_, F>) {
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
pub(super) fn tree<T: Halve, R: Send>(
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

pub(super) fn for_chunks<F: Element>(x: &[F], o: &mut [F], chunk: usize, f: &(impl Fn(&[F], &mut [F]) + Sync)) {
    for_chunks_at(x, o, chunk, &|_, x, o| f(x, o))
}

/// Calls `f(start, x_chunk, o_chunk)` on fixed chunks, in parallel when large.
pub(super) fn for_chunks_at<T: Sync, F: Send>(
    x: &[T],
    o: &mut [F],
    chunk: usize,
    f: &(impl Fn(usize, &[T], &mut [F]) + Sync),
) {
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

pub(super) fn for_chunks_mut<F: Element>(x: &mut [F], chunk: usize, f: &(impl Fn(&mut [F]) + Sync)) {
    for_chunks_mut_at(x, chunk, &|_, x| f(x))
}

/// In-place twin of [`for_chunks_at`].
pub(crate) fn for_chunks_mut_at<F: Element>(x: &mut [F], chunk: usize, f: &(impl Fn(usize, &mut [F]) + Sync)) {
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
