//! Fresh output buffers.
//!
//! `transform` writes a new array, and on large outputs the cost is not the
//! arithmetic but the page faults of fresh memory (WORKLOADS.md: 6–7 GB/s
//! with 4 KiB pages, 13 GB/s with transparent huge pages on the reference
//! machine). So the buffer is requested zeroed — large zeroed allocations
//! come straight from `mmap` and are not touched by the allocator — then,
//! on Linux, marked `MADV_HUGEPAGE`, and first touched by the parallel
//! kernels that write it, so faults are taken on every core.

/// Buffers at least this large ask for transparent huge pages.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// A zero-filled `Vec` of `len` elements whose pages are not touched yet.
pub(crate) fn zeroed<F: num_traits::Float>(len: usize) -> Vec<F> {
    // `vec![0.0; n]` of a float type is a zeroed (calloc-like) allocation.
    let v = vec![F::zero(); len];
    advise_huge(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge<F>(v: &[F]) {
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let aligned = start.div_ceil(HUGE) * HUGE;
    let end = (start + bytes) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: `[aligned, end)` lies inside the live allocation of `v`;
        // MADV_HUGEPAGE only changes how the kernel backs those pages, never
        // their contents, and failure (e.g. THP disabled) is harmless.
        let _ = unsafe { libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<F>(_: &[F]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn large_buffers_are_zeroed_and_usable() {
        let mut v = super::zeroed::<f64>(1 << 20);
        assert!(v.iter().all(|&x| x == 0.0));
        v[12345] = 1.0;
        assert_eq!(v.iter().sum::<f64>(), 1.0);
    }
}
