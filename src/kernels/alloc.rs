//! Fresh output buffers.
//!
//! `transform` writes a new array, and on large outputs the cost is not the
//! arithmetic but the page faults of fresh memory (WORKLOADS.md: 6–7 GB/s
//! with 4 KiB pages, 13 GB/s with transparent huge pages on the reference
//! machine). So the buffer is requested zeroed — large zeroed allocations
//! come straight from `mmap` and are not touched by the allocator — then,
//! on Linux, marked `MADV_HUGEPAGE`, and first touched by the parallel
//! kernels that write it, so faults are taken on every core.

use std::alloc::Layout;
use std::any::TypeId;

use crate::Element;
use crate::error::{CenteringError, Result};

/// Buffers at least this large ask for transparent huge pages.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// A zero-filled `Vec` of `len` elements whose pages are not touched yet.
///
/// # Errors
///
/// [`CenteringError::Allocation`] when `len` elements overflow the address
/// space or the allocator refuses them: an error, never a panic or an abort
/// (a transform of a broadcast view can ask for far more than its input).
pub(crate) fn zeroed<F: Element>(len: usize) -> Result<Vec<F>> {
    let refused = |reason| CenteringError::Allocation {
        elements: len,
        element_bytes: std::mem::size_of::<F>(),
        reason,
    };
    let layout = Layout::array::<F>(len).map_err(|_| refused("the size overflows the address space"))?;
    let floats = TypeId::of::<F>() == TypeId::of::<f32>() || TypeId::of::<F>() == TypeId::of::<f64>();
    let v = if layout.size() == 0 {
        Vec::new()
    } else if floats {
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<F>();
        if ptr.is_null() {
            return Err(refused("the allocator refused it (not enough memory)"));
        }
        // SAFETY: `ptr` was just allocated by the global allocator with the
        // layout of `[F; len]` (so the alignment and size match a `Vec<F>` of
        // capacity `len`), and all of it is zero bits, which is `0.0` for
        // `f32` and `f64` — the only types that take this branch — so all
        // `len` elements are initialised. The `Vec` now owns the allocation.
        unsafe { Vec::from_raw_parts(ptr, len, len) }
    } else {
        // Other element types: fallible, but zero-filled by this thread.
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| refused("the allocator refused it (not enough memory)"))?;
        v.resize(len, F::zero());
        v
    };
    advise_huge(&v);
    Ok(v)
}

/// The first `d` of `values` in a `Vec` of huge pages where the kernel
/// gives them: a wide state's pages are first touched here, and with 4 KiB
/// pages the faults cost more than the values' arithmetic (one sample of
/// 10⁸ features, on the reference VM: 2.0–5.5 ns per feature with them,
/// 4.8–24 without).
pub(crate) fn collect_huge<T>(d: usize, values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = with_capacity_huge(d);
    v.extend(values.take(d));
    debug_assert_eq!(v.len(), d, "as many values as asked for");
    v
}

/// `d` copies of `value` in a `Vec` of huge pages ([`collect_huge`]).
pub(crate) fn filled_huge<T: Clone>(d: usize, value: T) -> Vec<T> {
    collect_huge(d, std::iter::repeat_n(value, d))
}

/// An empty `Vec` with room for `len` elements whose pages, once touched,
/// are transparent huge pages where the kernel allows them: for the
/// long-lived per-feature vectors of a wide state, filled as they are
/// built. Aborts like `Vec::with_capacity` when the allocator refuses.
pub(crate) fn with_capacity_huge<T>(len: usize) -> Vec<T> {
    let v = Vec::with_capacity(len);
    advise_huge_bytes(v.as_ptr() as usize, v.capacity() * std::mem::size_of::<T>());
    v
}

fn advise_huge<F>(v: &[F]) {
    advise_huge_bytes(v.as_ptr() as usize, std::mem::size_of_val(v));
}

/// Asks for huge pages over the whole 2 MiB pages of `[start, start + bytes)`,
/// memory of one live allocation of ours, if it is large.
#[cfg(target_os = "linux")]
fn advise_huge_bytes(start: usize, bytes: usize) {
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    const HUGE: usize = 2 << 20;
    let aligned = start.div_ceil(HUGE) * HUGE;
    let end = (start + bytes) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: `[aligned, end)` lies inside a live allocation (the
        // callers pass a `Vec`'s buffer or capacity); MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents,
        // and failure (e.g. THP disabled) is harmless.
        let _ = unsafe { libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_bytes(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn large_buffers_are_zeroed_and_usable() {
        let mut v = super::zeroed::<f64>(1 << 20).unwrap();
        assert!(v.iter().all(|&x| x == 0.0));
        v[12345] = 1.0;
        assert_eq!(v.iter().sum::<f64>(), 1.0);
        let w = super::zeroed::<f32>(3).unwrap();
        assert_eq!(w, vec![0.0f32; 3]);
        assert!(super::zeroed::<f32>(0).unwrap().is_empty());
    }

    /// The advised capacity is the `Vec`'s own: filled, read back, grown.
    #[test]
    fn huge_capacity_is_usable() {
        for len in [0, 3, 1 << 20, (3 << 20) + 5] {
            let mut v: Vec<u64> = super::with_capacity_huge(len);
            assert!(v.is_empty() && v.capacity() >= len);
            v.extend(0..len as u64);
            assert_eq!(v.last().copied(), len.checked_sub(1).map(|l| l as u64));
            v.push(7);
            assert_eq!(v.len(), len + 1);
        }
    }

    #[test]
    fn impossible_sizes_are_errors() {
        use crate::CenteringError;
        // Overflows isize: refused before asking the allocator.
        let err = super::zeroed::<f64>(usize::MAX / 4).unwrap_err();
        assert!(matches!(err, CenteringError::Allocation { reason, .. } if reason.contains("overflows")));
        // Fits the address space, but no machine has 2^61 bytes.
        let err = super::zeroed::<f64>(1 << 58).unwrap_err();
        assert!(matches!(err, CenteringError::Allocation { reason, .. } if reason.contains("refused")));
    }
}
