//! The roofline: the crate's throughput on the workloads W1–W12 of
//! `WORKLOADS.md`, each as a ratio to what this machine can stream with
//! nothing else to do (the *limit*), measured in the same process, next to
//! ndarray's own baseline.
//!
//! ```text
//! cargo bench -p centering-bench --bench roofline                          # full sizes (1 GiB inputs), 10–15 minutes
//! CENTERING_BENCH_QUICK=1 cargo bench -p centering-bench --bench roofline  # sizes ÷ 64, fewer rounds: a smoke check
//! CENTERING_BENCH_ONLY=W9,W12 cargo bench -p centering-bench --bench roofline  # just these workloads
//! CENTERING_BENCH_ROUNDS=9 cargo bench -p centering-bench --bench roofline     # timed rounds per operation (7; quick: 3)
//! ```
//!
//! Prints a Markdown table and writes the rows as a JSON list to
//! `$CARGO_TARGET_DIR/roofline.json` (by default `target/roofline.json`),
//! each with every contender's time in every timed round (`round_ms`).
//!
//! # What is compared with what
//!
//! | op | the crate | its limit | ndarray's baseline (one thread) |
//! |---|---|---|---|
//! | `fit` | `Centering::fit` | read | `mean_axis(Axis(0))` on a 2-D view |
//! | `transform` | `transform` (new array) | copy into fresh memory | `&x - &mean` |
//! | `transform_into` | `transform_into` a written buffer | copy into written memory | `Zip` of `out`, `x`, `mean` |
//! | `inplace` | `transform_inplace` | update `x[i] −= c` | `x -= &mean` |
//!
//! W9 (`u8` images) and W12 (`f16` images) fit a `Centering<f32>` on inputs
//! narrower than the mean and transform them into `f32`. Their limit is, as
//! WORKLOADS.md says, the time the limit loops need for the same bytes:
//! `fit` ↔ reading a buffer of the input's byte size; `transform` ↔ that
//! read plus writing the `f32` output (a fill of fresh memory: plain loop,
//! `memset` or non-temporal stores, ordinary or huge pages, the fastest),
//! `transform_into` ↔ the read plus a fill of the written buffer (the same
//! three ways). The fills write a value that is not zero, as outputs are
//! not: a `memset` of zeros is a faster, different workload on some
//! machines. Their ndarray baseline is what a
//! user writes without the crate: `mapv` to `f32`, then `mean_axis` or
//! `&x - &mean`. No `inplace` row: the output type differs.
//!
//! W10 (W1 with 10% NaN under `NanPolicy::Ignore`) and W11 (W1 with one
//! weight per row; the weights' bytes count as read) are `fit` rows only,
//! in C order and, as W10F/W11F, in Fortran order; their limit is the read
//! of the same bytes, their ndarray baselines what a user writes by hand (a
//! row loop of sums and counts skipping NaN; `w.dot(&x) / w.sum()`).
//!
//! W7's `fit` is W1 fed to `partial_fit` in 4,096-row chunks (ndarray: a
//! `mean_axis` per chunk, folded into a running mean), measured in the same
//! rounds as W1's `fit` and also reported as a ratio to it. W8 adds a
//! `fit+transform` row (its limit: the read and fresh-copy limits' times
//! added) and checks that the calling thread never waits on a thread pool.
//!
//! **Bytes.** Every GB/s figure is the *input's* size, `N·D·size_of::<F>()`,
//! divided by the median time, 1 GB = 10⁹ bytes — for every operation, for
//! the crate, ndarray and the limit alike (a copy moves twice those bytes
//! over the memory bus; the ratios are unaffected).
//!
//! # The limit loops
//!
//! Each is a plain Rust loop compiled three times — for AVX-512 (`avx512f,
//! avx2, fma`), for AVX2 (`avx2, fma`) and for the portable baseline —
//! through `#[target_feature]` functions picked at run time by
//! `is_x86_feature_detected!` (see [`simd`]). On buffers of 4 MiB and more
//! they run on 2 threads (rayon's global pool, the buffer split in halves),
//! as the crate may; on smaller ones (W8) both 1 and 2 threads are tried and
//! the faster counts.
//!
//! - **read**: a sum with 32 independent accumulators;
//! - **copy into fresh memory**: allocate a buffer and write it from the
//!   input, with ordinary pages and with `madvise(MADV_HUGEPAGE)`, each with
//!   a plain loop and with `memcpy`; the fastest counts;
//! - **copy into written memory**: into a buffer written before, the faster
//!   of the plain loop and `memcpy` (whose non-temporal stores skip reading
//!   the destination);
//! - **update**: `x[i] −= c`.
//!
//! The plain copy loop is written `dst[i] = src[i] − c` with an opaque `c`:
//! otherwise the compiler replaces it by a `memcpy` call; the subtraction is
//! free at memory speed.
//!
//! # Method
//!
//! For one operation of one workload, the crate, ndarray and every limit
//! variant run in *rounds*, the order rotating from round to round, after
//! one untimed warm-up round; each reports the median over the rounds.
//! Interleaving keeps slow drift of a shared machine from favouring one of
//! them, and keeps every fresh allocation close in time to the previous
//! free: on these virtual machines memory left idle for a few seconds is
//! handed back to the host and is much slower to touch again.
//!
//! The *ratio* to the limit is the crate's median GB/s over the fastest
//! limit variant's. Next to it, the *per-round ratio* pairs the rounds:
//! in each round, that limit variant's time over the crate's, and the
//! median of those ratios. Neither is the better one on these VMs, where
//! memory throughput changes within a second: a slow spell that spans two
//! or three rounds of both sides cancels in the per-round ratio (an AMD
//! EPYC Zen 4 VM, a five-round run: W12's fit read 13, 19, 18, 11, 19 ms
//! where the limit read 13, 18, 16, 10, 13 ms, rounded — ratio 0.75,
//! per-round 0.91), but a fast spell of the limit's alone does not (W10's read limit
//! at 22–23 ms in three rounds of seven and 31–35 in the others, the crate
//! at 30–36 throughout: ratio 0.93, per-round 0.81); and neither helps
//! against lone slow calls (a `transform` whose fresh pages the host is
//! slow to back: 102–105 ms in three rounds, 172–404 in four), which the
//! median of more rounds does, hence seven in a full run. Every round's
//! times are in `roofline.json` (`round_ms`).
//!
//! In its turn, a contender runs twice in a row and only the second call is
//! timed. Fresh memory is fast or slow depending on what was freed just
//! before it (the huge pages of a `madvise`d buffer, or scattered 4 KiB
//! pages, still backed by the host or not): measured after a free of its
//! own output, each contender meets the state its own loop would, as in a
//! user's loop of `transform` calls, not whatever ran before it — a
//! rotation alone keeps the cyclic order, so the same neighbour would
//! precede a contender in every round. (Measured on W1 when timing the
//! first call: `transform` 1.3× "its limit", because it always followed the
//! huge-page copy and inherited its freshly freed huge pages.)
//!
//! Inputs and written buffers are allocated and filled right before their
//! workload is measured and freed right after.
//!
//! The freeing of an output (`transform`'s array, the fresh copy's buffer)
//! happens after the clock stops — except on W8, where each timed sample is
//! a loop of calls, each result dropped at once as in a user's loop.
//! Operations run in the order fit, transform, transform_into, inplace: the
//! in-place ones shift the input by the mean once per call, harmlessly.

mod common;
use common::cpu_model;
use std::fmt::Write as _;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use centering::Centering;
use ndarray::{Array, Array1, ArrayView2, Axis, DimMax, Dimension, Ix1, Ix2, Ix4, ScalarOperand, ShapeBuilder, Zip};
use num_traits::FromPrimitive;
use rayon::prelude::*;
use serde_json::{Value, json};

fn main() {
    let cfg = Config::from_env();
    print_header(&cfg);
    let s = cfg.scale;
    let mut rows = Vec::new();

    let want = |id: &str| cfg.only.as_ref().is_none_or(|only| only.iter().any(|o| o == id));
    // W1, and W7 (the same array, fed in chunks) measured alongside its fit.
    if want("W1") || want("W7") {
        let w1 = random::<f64, _>(Ix2(2_097_152 / s, 64), false, 1);
        rows.extend(workload(&cfg, "W1", w1, Some(("W7", 4096))));
    }
    if want("W2") {
        let w2 = random::<f32, _>(Ix2(33_554_432 / s, 8), false, 2);
        rows.extend(workload(&cfg, "W2", w2, None));
    }
    if want("W3") {
        let w3 = random::<f64, _>(Ix2(8192 / s, 16_384), false, 3);
        rows.extend(workload(&cfg, "W3", w3, None));
    }
    if want("W4") {
        let w4 = random::<f32, _>(Ix4(4096 / s, 128, 128, 3), false, 4);
        rows.extend(workload(&cfg, "W4", w4, None));
    }
    if want("W5") {
        let w5 = random::<f64, _>(Ix2(2_097_152 / s, 64), true, 5);
        rows.extend(workload(&cfg, "W5", w5, None));
    }
    if want("W6") {
        let w6 = random::<f64, _>(Ix2(134_217_728 / s, 1), false, 6);
        rows.extend(workload(&cfg, "W6", w6, None));
    }
    // Missing values (W10) and weights (W11) on W1's array, C and Fortran order.
    for (id, fortran, kind) in [
        ("W10", false, missing::Kind::Nan),
        ("W10F", true, missing::Kind::Nan),
        ("W11", false, missing::Kind::Weights),
        ("W11F", true, missing::Kind::Weights),
    ] {
        if want(id) {
            let mut x = random::<f64, _>(Ix2(2_097_152 / s, 64), fortran, 10);
            if kind == missing::Kind::Nan {
                x = missing::with_nan(x);
            }
            rows.extend(missing::workload(&cfg, id, x, kind));
        }
    }
    // Inputs narrower than the mean: u8 images (W9) and f16 activations (W12).
    if want("W9") {
        let w9 = random::<f32, _>(Ix4(4096 / s, 128, 128, 3), false, 9).mapv(|u| (u * 256.0) as u8);
        rows.extend(narrow::workload(&cfg, "W9", w9));
    }
    if want("W12") {
        let w12 = random::<f32, _>(Ix4(4096 / s, 128, 128, 3), false, 12).mapv(half::f16::from_f32);
        rows.extend(narrow::workload(&cfg, "W12", w12));
    }
    // W8 is small at any scale: never shrunk.
    if want("W8") {
        let w8 = random::<f64, _>(Ix2(1000, 10), false, 8);
        let w8_rows = workload(&cfg, "W8", w8.clone(), None);
        let combined = w8_fit_transform(&cfg, w8, &w8_rows);
        rows.extend(w8_rows);
        rows.push(combined);
    }

    println!("{}", table(&rows));
    let path = json_path();
    let json = serde_json::to_string_pretty(&rows.iter().map(|r| r.to_json(&cfg)).collect::<Vec<_>>())
        .expect("rows serialise");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the target directory");
    }
    std::fs::write(&path, json + "\n").expect("write roofline.json");
    println!("JSON: {}", path.display());
}

/// Run-wide settings, from the environment.
struct Config {
    /// `CENTERING_BENCH_QUICK` is set (and not `0`): sizes ÷ [`Config::scale`],
    /// fewer rounds. At those sizes the allocator may recycle freed memory
    /// instead of mapping fresh pages, so the `transform` columns of a quick
    /// run say little about page faults.
    quick: bool,
    /// What the workloads' sample counts are divided by.
    scale: usize,
    /// Timed rounds per operation (after one warm-up round): 7 in full
    /// mode, 3 in quick mode, or `CENTERING_BENCH_ROUNDS`.
    rounds: usize,
    /// `CENTERING_BENCH_ONLY=W9,W12`: just these workloads (W7 runs with W1).
    only: Option<Vec<String>>,
}

impl Config {
    fn from_env() -> Self {
        let quick = std::env::var("CENTERING_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let only = std::env::var("CENTERING_BENCH_ONLY")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        let rounds = std::env::var("CENTERING_BENCH_ROUNDS").ok().and_then(|v| {
            let r = v.trim().parse().ok().filter(|&r: &usize| r > 0);
            if r.is_none() {
                eprintln!("CENTERING_BENCH_ROUNDS={v:?} is not a positive count: the default rounds run");
            }
            r
        });
        Config {
            quick,
            scale: if quick { 64 } else { 1 },
            rounds: rounds.unwrap_or(if quick { 3 } else { 7 }),
            only,
        }
    }
}

/// The element types benchmarked, with what ndarray's baselines and the
/// random fill need.
trait Real: centering::Element + ScalarOperand + FromPrimitive + std::ops::SubAssign {
    /// The name in the report.
    const DTYPE: &'static str;
    /// A uniform value in [0, 1) from 64 random bits.
    fn unit(bits: u64) -> Self;
}

impl Real for f64 {
    const DTYPE: &'static str = "f64";
    fn unit(bits: u64) -> Self {
        (bits >> 11) as f64 * (-53f64).exp2()
    }
}

impl Real for f32 {
    const DTYPE: &'static str = "f32";
    fn unit(bits: u64) -> Self {
        (bits >> 40) as f32 * (-24f32).exp2()
    }
}

/// An array of `dim` uniform values in [0, 1), in C or Fortran order, filled
/// on every thread (which also faults its pages in) from a fixed seed.
fn random<F: Real, D: Dimension>(dim: D, fortran: bool, seed: u64) -> Array<F, D> {
    const CHUNK: usize = 1 << 16;
    let mut v = vec![F::zero(); dim.size()];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        for e in chunk {
            *e = F::unit(splitmix64(&mut state));
        }
    });
    Array::from_shape_vec(dim.set_f(fortran), v).expect("the shape matches the length")
}

/// SplitMix64 (Steele, Lea & Flood 2014): a fast, well-mixed generator,
/// ample for filling benchmark inputs.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// The limit loops.
// ---------------------------------------------------------------------------

/// Runs a loop body compiled for the best instruction set this CPU has.
mod simd {
    /// A streaming loop, written once, compiled once per instruction-set tier.
    pub trait Body {
        type Out;
        /// The loop. Every impl is `#[inline(always)]`, so that it is
        /// compiled inside — and with the target features of — the tier
        /// function that calls it.
        fn run(self) -> Self::Out;
    }

    /// The tier [`run`] picks on this CPU.
    pub fn tier() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512() {
                return "avx512f+avx2+fma";
            }
            if has_avx2() {
                return "avx2+fma";
            }
        }
        "portable"
    }

    /// Runs `body` compiled for the best tier this CPU supports.
    pub fn run<B: Body>(body: B) -> B::Out {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512() {
                // SAFETY: the CPU supports every feature `avx512` is compiled for.
                return unsafe { avx512(body) };
            }
            if has_avx2() {
                // SAFETY: the CPU supports every feature `avx2` is compiled for.
                return unsafe { avx2(body) };
            }
        }
        body.run()
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f") && has_avx2()
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn avx512<B: Body>(body: B) -> B::Out {
        body.run()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2<B: Body>(body: B) -> B::Out {
        body.run()
    }
}

/// The loops that define the limit, and the buffers they write.
mod limit {
    use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
    use std::mem::MaybeUninit;
    use std::ptr::NonNull;

    use num_traits::Float;

    use crate::simd::{self, Body};

    /// How many independent accumulators the read loop keeps: enough to hide
    /// the latency of the additions (4 AVX-512 registers of f64, 2 of f32).
    const ACCUMULATORS: usize = 32;

    /// Whether a loop runs on the calling thread or on two (rayon's global
    /// pool, one half of the buffer each).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Threads {
        One,
        Two,
    }

    /// How a copy writes its destination.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Writer {
        /// The plain loop `dst[i] = src[i] − c`: ordinary stores.
        Loop,
        /// The platform's `memcpy`, with non-temporal stores on large copies.
        Memcpy,
    }

    /// The pages a fresh buffer is given.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Pages {
        /// Whatever the allocator hands out: 4 KiB pages here (THP "madvise").
        Ordinary,
        /// Aligned to 2 MiB and `madvise(MADV_HUGEPAGE)`d.
        Huge,
    }

    /// Runs `f` on `(a, b)` on the calling thread, or on their first and
    /// second halves (split by `split`) on two threads, merging the results.
    fn on<T: Send, R: Send>(
        threads: Threads,
        job: T,
        split: impl FnOnce(T) -> (T, T),
        f: impl Fn(T) -> R + Sync,
        merge: impl FnOnce(R, R) -> R,
    ) -> R {
        match threads {
            Threads::One => f(job),
            Threads::Two => {
                let (a, b) = split(job);
                let (ra, rb) = rayon::join(|| f(a), || f(b));
                merge(ra, rb)
            }
        }
    }

    /// The sum of `x` (its value is only there to keep the loop alive).
    pub fn read<F: Float + Send + Sync>(x: &[F], threads: Threads) -> F {
        on(
            threads,
            x,
            |x| x.split_at(x.len() / 2),
            |x| simd::run(Sum(x)),
            |a, b| a + b,
        )
    }

    /// Writes `src[i] − c` (for [`Writer::Loop`]) or `src[i]` (for
    /// [`Writer::Memcpy`]) into `dst`, which then is fully initialised.
    pub fn copy<F: Float + Send + Sync>(src: &[F], dst: &mut [MaybeUninit<F>], c: F, writer: Writer, threads: Threads) {
        assert_eq!(src.len(), dst.len());
        let one = |(src, dst): (&[F], &mut [MaybeUninit<F>])| match writer {
            Writer::Loop => simd::run(SubInto { src, dst, c }),
            // SAFETY: `src` and `dst` have the same length, do not overlap (one
            // is borrowed shared, the other exclusively), and `MaybeUninit<F>`
            // has the layout of `F`.
            Writer::Memcpy => unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<F>(), src.len())
            },
        };
        on(threads, (src, dst), split_pair, one, |(), ()| ());
    }

    /// Splits a source and its destination at the same middle.
    #[allow(clippy::type_complexity)]
    fn split_pair<'s, 'd, F>(
        (src, dst): (&'s [F], &'d mut [MaybeUninit<F>]),
    ) -> ((&'s [F], &'d mut [MaybeUninit<F>]), (&'s [F], &'d mut [MaybeUninit<F>])) {
        let mid = src.len() / 2;
        let (s0, s1) = src.split_at(mid);
        let (d0, d1) = dst.split_at_mut(mid);
        ((s0, d0), (s1, d1))
    }

    /// `x[i] −= c`.
    pub fn update<F: Float + Send + Sync>(x: &mut [F], c: F, threads: Threads) {
        on(
            threads,
            x,
            |x| x.split_at_mut(x.len() / 2),
            |x| simd::run(SubAssign { x, c }),
            |(), ()| (),
        );
    }

    /// `x` seen as possibly uninitialised, to be overwritten by [`copy`].
    pub fn as_uninit<F>(x: &mut [F]) -> &mut [MaybeUninit<F>] {
        // SAFETY: `MaybeUninit<F>` has the layout of `F`, and the only writer
        // of the result, `copy`, stores initialised values, so `x` stays
        // initialised.
        unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) }
    }

    struct Sum<'a, F>(&'a [F]);

    impl<F: Float> Body for Sum<'_, F> {
        type Out = F;
        #[inline(always)]
        fn run(self) -> F {
            let (blocks, tail) = self.0.as_chunks::<ACCUMULATORS>();
            let mut acc = [F::zero(); ACCUMULATORS];
            for block in blocks {
                for (a, &v) in acc.iter_mut().zip(block) {
                    *a = *a + v;
                }
            }
            acc.iter().chain(tail).fold(F::zero(), |s, &v| s + v)
        }
    }

    struct SubInto<'a, F> {
        src: &'a [F],
        dst: &'a mut [MaybeUninit<F>],
        c: F,
    }

    impl<F: Float> Body for SubInto<'_, F> {
        type Out = ();
        #[inline(always)]
        fn run(self) {
            for (d, &s) in self.dst.iter_mut().zip(self.src) {
                d.write(s - self.c);
            }
        }
    }

    struct SubAssign<'a, F> {
        x: &'a mut [F],
        c: F,
    }

    impl<F: Float> Body for SubAssign<'_, F> {
        type Out = ();
        #[inline(always)]
        fn run(self) {
            for v in self.x {
                *v = *v - self.c;
            }
        }
    }

    /// 2 MiB: the x86-64 transparent huge page.
    const HUGE_PAGE: usize = 2 << 20;

    /// Whether the kernel grants transparent huge pages on request: the mode
    /// in `/sys/kernel/mm/transparent_hugepage/enabled` is not `never`.
    pub fn huge_pages_available() -> bool {
        cfg!(target_os = "linux")
            && std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .is_ok_and(|mode| !mode.contains("[never]"))
    }

    /// A buffer freshly obtained from the global allocator, uninitialised.
    pub struct Fresh<F> {
        ptr: NonNull<MaybeUninit<F>>,
        len: usize,
        layout: Layout,
    }

    impl<F> Fresh<F> {
        /// `len > 0` uninitialised elements on `pages`.
        ///
        /// # Panics
        ///
        /// If `len` is 0, or `madvise` refuses huge pages.
        pub fn new(len: usize, pages: Pages) -> Self {
            assert!(len > 0 && size_of::<F>() > 0, "a fresh buffer holds bytes");
            let align = match pages {
                Pages::Ordinary => align_of::<F>(),
                Pages::Huge => HUGE_PAGE,
            };
            let layout = Layout::array::<F>(len)
                .and_then(|l| l.align_to(align))
                .expect("the buffer fits in memory");
            // SAFETY: `layout` has a non-zero size (asserted above).
            let raw = unsafe { alloc(layout) };
            let ptr = NonNull::new(raw.cast()).unwrap_or_else(|| handle_alloc_error(layout));
            if pages == Pages::Huge {
                advise_huge(raw, layout.size());
            }
            Fresh { ptr, len, layout }
        }

        pub fn as_uninit(&mut self) -> &mut [MaybeUninit<F>] {
            // SAFETY: `ptr` holds `len` elements, allocated by `new`, owned by
            // `self` and borrowed exclusively through `&mut self`.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
        }
    }

    impl<F> Drop for Fresh<F> {
        fn drop(&mut self) {
            // SAFETY: allocated by `alloc` with exactly this layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) }
        }
    }

    /// Asks for transparent huge pages on `[ptr, ptr + len)`, 2 MiB-aligned.
    #[cfg(target_os = "linux")]
    fn advise_huge(ptr: *mut u8, len: usize) {
        // SAFETY: the range is one live allocation of ours; MADV_HUGEPAGE only
        // changes how the kernel backs it, never its contents.
        let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) };
        assert_eq!(rc, 0, "madvise(MADV_HUGEPAGE): {}", std::io::Error::last_os_error());
    }

    #[cfg(not(target_os = "linux"))]
    fn advise_huge(_: *mut u8, _: usize) {
        unreachable!("huge pages are only requested where huge_pages_available()")
    }
}

use limit::{Fresh, Pages, Threads, Writer};

// ---------------------------------------------------------------------------
// Measuring.
// ---------------------------------------------------------------------------

/// Buffers of 4 MiB and more: one call per timed sample and 2-thread limit
/// loops. Below: a loop of calls per sample, limits on 1 and 2 threads.
const LARGE: usize = 4 << 20;

/// What every contender of one workload works on.
struct Case<F, D> {
    /// The input, written.
    x: Array<F, D>,
    /// A written buffer of `x`'s shape and memory order, for the `_into` ops.
    out: Array<F, D>,
    /// Fitted on `x`.
    model: Centering<F>,
    /// `model`'s mean, for ndarray's baselines and as the limit loops' `c`.
    mean: Array1<F>,
    /// Calls per timed sample.
    calls: usize,
}

impl<F: Real, D: Dimension> Case<F, D> {
    fn new(x: Array<F, D>) -> Self {
        let bytes = x.len() * size_of::<F>();
        // Small inputs: enough calls per sample to stream 64 MiB.
        let calls = if bytes >= LARGE { 1 } else { (64 << 20) / bytes };
        // A clone keeps the memory order and writes every page.
        let out = x.clone();
        let mut model = Centering::new();
        model.fit(&x).expect("random inputs are finite");
        let mean = model.mean().expect("fitted").to_owned();
        Case {
            x,
            out,
            model,
            mean,
            calls,
        }
    }

    fn bytes(&self) -> usize {
        self.x.len() * size_of::<F>()
    }

    /// The input's elements in memory order.
    fn src(&self) -> &[F] {
        self.x.as_slice_memory_order().expect("workload inputs are contiguous")
    }

    /// The opaque constant the limit loops subtract.
    fn c(&self) -> F {
        black_box(self.mean[0])
    }
}

/// The input as ndarray's `mean_axis` wants it: `(samples, features)`.
fn rows<F, D: Dimension>(x: &Array<F, D>) -> ArrayView2<'_, F> {
    let d = x.shape()[x.ndim() - 1];
    if x.ndim() == 2 {
        x.view().into_dimensionality::<Ix2>().expect("2-D")
    } else {
        x.view()
            .into_shape_with_order((x.len() / d, d))
            .expect("N-D workloads are in C order")
    }
}

/// Times `calls` calls of `f`; returns the time per call. With one call the
/// result is dropped after the clock stops, with more each is dropped at
/// once, inside the loop, as a user's loop would.
fn per_call<T>(calls: usize, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    if calls == 1 {
        let out = f();
        let t = start.elapsed();
        drop(out);
        return t;
    }
    for _ in 0..calls {
        black_box(f());
    }
    start.elapsed() / calls as u32
}

/// Who a contender is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// One variant of the limit loop; the fastest variant is the limit.
    Limit,
    /// The crate.
    Crate,
    /// ndarray's baseline.
    Ndarray,
    /// The crate on the chunked workload (W7).
    ChunkedCrate,
    /// ndarray on the chunked workload (W7).
    ChunkedNdarray,
}

/// One contender: a name, a role and one timed call (per [`per_call`]).
struct Contender<'a, C> {
    name: String,
    role: Role,
    run: Box<dyn FnMut(&mut C) -> Duration + 'a>,
}

impl<'a, C> Contender<'a, C> {
    fn new(name: impl Into<String>, role: Role, run: impl FnMut(&mut C) -> Duration + 'a) -> Self {
        Contender {
            name: name.into(),
            role,
            run: Box::new(run),
        }
    }
}

/// Calls of one contender in a row per round; only the last is timed, so
/// that it meets the memory its own previous call left behind (see the
/// module docs, "Method").
const IN_A_ROW: usize = 2;

/// What [`race`] measured: each contender's median time and every timed
/// round's, in the contenders' order.
struct Race {
    medians: Vec<Duration>,
    rounds: Vec<Vec<Duration>>,
}

impl Race {
    /// Every contender's timed rounds in ms, in the order they ran, by name:
    /// `round_ms` in `target/roofline.json`, to tell a steady row from one
    /// whose median fell in a slow spell of the machine.
    fn round_ms<C>(&self, contenders: &[Contender<'_, C>]) -> Value {
        let ms = |t: &Duration| t.as_secs_f64() * 1e3;
        contenders
            .iter()
            .zip(&self.rounds)
            .map(|(c, t)| (c.name.clone(), json!(t.iter().map(ms).collect::<Vec<_>>())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Contender `of`'s speed as a ratio to `limit`'s (the contenders whose
    /// times add up to the limit, as W9's read and fill do), round by round
    /// — the limit's time in a round over `of`'s in the same round — and
    /// the median of those ratios: a slow spell of the machine that spans a
    /// round or two slows both sides of its ratios, where it can move one
    /// side's median and not the other's.
    fn paired(&self, of: usize, limit: &[usize]) -> f64 {
        let mut ratios: Vec<f64> = (0..self.rounds[of].len())
            .map(|r| {
                let l: Duration = limit.iter().map(|&i| self.rounds[i][r]).sum();
                l.as_secs_f64() / self.rounds[of][r].as_secs_f64()
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let m = ratios.len() / 2;
        if ratios.len() % 2 == 1 {
            ratios[m]
        } else {
            (ratios[m - 1] + ratios[m]) / 2.0
        }
    }

    /// The index of the contender named `name`.
    fn index<C>(contenders: &[Contender<'_, C>], name: &str) -> usize {
        contenders
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no contender {name}"))
    }

    /// The index of the first contender of `role`.
    fn role<C>(contenders: &[Contender<'_, C>], role: Role) -> usize {
        contenders
            .iter()
            .position(|c| c.role == role)
            .unwrap_or_else(|| panic!("no contender of role {role:?}"))
    }

    /// The paired ratios of the crate (role `crate_role`) and of ndarray
    /// (`ndarray_role`) to the limit named `limit` (names joined by ` + `
    /// add up, as [`Row::limit`]'s do).
    fn pairs<C>(&self, contenders: &[Contender<'_, C>], crate_role: Role, ndarray_role: Role, limit: &str) -> Paired {
        let limit: Vec<usize> = limit.split(" + ").map(|n| Race::index(contenders, n)).collect();
        Paired {
            crate_ratio: self.paired(Race::role(contenders, crate_role), &limit),
            ndarray_ratio: self.paired(Race::role(contenders, ndarray_role), &limit),
        }
    }
}

/// A row's ratios to its limit as medians of per-round ratios
/// ([`Race::paired`]).
#[derive(Clone, Copy)]
struct Paired {
    crate_ratio: f64,
    ndarray_ratio: f64,
}

/// Runs every contender [`IN_A_ROW`] times per round, one warm-up round then
/// `cfg.rounds` timed ones, rotating the order.
fn race<C>(cfg: &Config, case: &mut C, contenders: &mut [Contender<'_, C>]) -> Race {
    let n = contenders.len();
    let mut times = vec![Vec::with_capacity(cfg.rounds); n];
    for round in 0..=cfg.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let mut t = Duration::ZERO;
            for _ in 0..IN_A_ROW {
                t = (contenders[i].run)(case);
            }
            if round > 0 {
                times[i].push(t);
            }
        }
    }
    Race {
        medians: times.iter().cloned().map(median).collect(),
        rounds: times,
    }
}

/// The GB/s of every contender of `role` (by name), from the medians.
fn by_role<C>(contenders: &[Contender<'_, C>], medians: &[Duration], role: Role, bytes: usize) -> Vec<(String, f64)> {
    contenders
        .iter()
        .zip(medians)
        .filter(|(c, _)| c.role == role)
        .map(|(c, &t)| (c.name.clone(), gbps(bytes, t)))
        .collect()
}

/// The fastest of `variants` as `(GB/s, name)`: the limit.
fn fastest(variants: &[(String, f64)]) -> Option<(f64, String)> {
    variants
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, g)| (*g, n.clone()))
}

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    let m = t.len() / 2;
    if t.len() % 2 == 1 { t[m] } else { (t[m - 1] + t[m]) / 2 }
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// The thread counts the limit loops try for a buffer of `bytes`.
fn limit_threads(bytes: usize) -> &'static [Threads] {
    if bytes >= LARGE {
        &[Threads::Two]
    } else {
        &[Threads::One, Threads::Two]
    }
}

fn threads_label(t: Threads) -> &'static str {
    match t {
        Threads::One => "1t",
        Threads::Two => "2t",
    }
}

/// The limit variants of `op` for `case`.
fn limits<'a, F: Real, D: Dimension + 'a>(op: &str, case: &Case<F, D>) -> Vec<Contender<'a, Case<F, D>>> {
    let bytes = case.bytes();
    let mut out = Vec::new();
    for &threads in limit_threads(bytes) {
        let t = threads_label(threads);
        match op {
            "fit" => out.push(Contender::new(
                format!("read {t}"),
                Role::Limit,
                move |c: &mut Case<F, D>| per_call(c.calls, || limit::read(c.src(), threads)),
            )),
            "transform" => {
                let mut pages = vec![Pages::Ordinary];
                if bytes >= LARGE && limit::huge_pages_available() {
                    pages.push(Pages::Huge);
                }
                for p in pages {
                    for w in [Writer::Loop, Writer::Memcpy] {
                        let name = format!("fresh {} {} {t}", pages_label(p), writer_label(w));
                        out.push(Contender::new(name, Role::Limit, move |c: &mut Case<F, D>| {
                            let cst = c.c();
                            per_call(c.calls, || {
                                let src = c.src();
                                let mut buf = Fresh::<F>::new(src.len(), p);
                                limit::copy(src, buf.as_uninit(), cst, w, threads);
                                buf
                            })
                        }));
                    }
                }
            }
            "transform_into" => {
                for w in [Writer::Loop, Writer::Memcpy] {
                    let name = format!("written {} {t}", writer_label(w));
                    out.push(Contender::new(name, Role::Limit, move |c: &mut Case<F, D>| {
                        let cst = c.c();
                        let src = c.x.as_slice_memory_order().expect("contiguous");
                        let dst = c.out.as_slice_memory_order_mut().expect("contiguous");
                        per_call(c.calls, || limit::copy(src, limit::as_uninit(dst), cst, w, threads))
                    }));
                }
            }
            "inplace" => out.push(Contender::new(
                format!("update {t}"),
                Role::Limit,
                move |c: &mut Case<F, D>| {
                    let cst = c.c();
                    let x = c.x.as_slice_memory_order_mut().expect("contiguous");
                    per_call(c.calls, || limit::update(x, cst, threads))
                },
            )),
            _ => unreachable!("unknown op {op}"),
        }
    }
    out
}

fn pages_label(p: Pages) -> &'static str {
    match p {
        Pages::Ordinary => "4K",
        Pages::Huge => "THP",
    }
}

fn writer_label(w: Writer) -> &'static str {
    match w {
        Writer::Loop => "loop",
        Writer::Memcpy => "memcpy",
    }
}

/// The crate's and ndarray's contenders for `op`.
fn peers<'a, F: Real, D>(op: &str) -> Vec<Contender<'a, Case<F, D>>>
where
    D: Dimension + DimMax<Ix1, Output = D> + 'a,
{
    match op {
        "fit" => vec![
            Contender::new("crate", Role::Crate, |c: &mut Case<F, D>| {
                per_call(c.calls, || {
                    c.model.fit(&c.x).expect("finite input");
                })
            }),
            Contender::new("ndarray", Role::Ndarray, |c: &mut Case<F, D>| {
                per_call(c.calls, || rows(&c.x).mean_axis(Axis(0)))
            }),
        ],
        "transform" => vec![
            Contender::new("crate", Role::Crate, |c: &mut Case<F, D>| {
                per_call(c.calls, || c.model.transform(&c.x).expect("fitted"))
            }),
            Contender::new("ndarray", Role::Ndarray, |c: &mut Case<F, D>| {
                per_call(c.calls, || &c.x - &c.mean)
            }),
        ],
        "transform_into" => vec![
            Contender::new("crate", Role::Crate, |c: &mut Case<F, D>| {
                per_call(c.calls, || c.model.transform_into(&c.x, &mut c.out).expect("fitted"))
            }),
            Contender::new("ndarray", Role::Ndarray, |c: &mut Case<F, D>| {
                per_call(c.calls, || {
                    Zip::from(&mut c.out)
                        .and(&c.x)
                        .and_broadcast(&c.mean)
                        .for_each(|o, &x, &m| *o = x - m)
                })
            }),
        ],
        "inplace" => vec![
            Contender::new("crate", Role::Crate, |c: &mut Case<F, D>| {
                per_call(c.calls, || c.model.transform_inplace(&mut c.x).expect("fitted"))
            }),
            Contender::new("ndarray", Role::Ndarray, |c: &mut Case<F, D>| {
                per_call(c.calls, || c.x -= &c.mean)
            }),
        ],
        _ => unreachable!("unknown op {op}"),
    }
}

/// W7's contenders: `x` fed in chunks of `chunk` samples.
fn chunked<'a, F: Real, D: Dimension + 'a>(chunk: usize) -> Vec<Contender<'a, Case<F, D>>> {
    vec![
        Contender::new("crate partial_fit", Role::ChunkedCrate, move |c: &mut Case<F, D>| {
            per_call(c.calls, || {
                let mut model = Centering::<F>::new();
                for batch in c.x.axis_chunks_iter(Axis(0), chunk) {
                    model.partial_fit(&batch).expect("finite input");
                }
                model
            })
        }),
        Contender::new(
            "ndarray running mean",
            Role::ChunkedNdarray,
            move |c: &mut Case<F, D>| {
                per_call(c.calls, || {
                    let x = rows(&c.x);
                    let mut mean = Array1::<F>::zeros(x.ncols());
                    let mut seen = 0usize;
                    for batch in x.axis_chunks_iter(Axis(0), chunk) {
                        let m = batch.mean_axis(Axis(0)).expect("non-empty chunk");
                        seen += batch.nrows();
                        let w = F::from_usize(batch.nrows()).expect("a count") / F::from_usize(seen).expect("a count");
                        mean.zip_mut_with(&m, |a, &b| *a = *a + (b - *a) * w);
                    }
                    mean
                })
            },
        ),
    ]
}

/// One line of the report.
struct Row {
    workload: &'static str,
    op: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    fortran: bool,
    bytes: usize,
    gbps: f64,
    /// The limit, if this row has one, with the winning variant's name.
    limit: Option<(f64, String)>,
    /// Every limit variant measured: name and GB/s.
    limit_variants: Vec<(String, f64)>,
    ndarray_gbps: f64,
    /// The ratios round by round, where the limit ran in the same rounds
    /// (all rows but W8's `fit+transform`, whose limit adds up two races').
    paired: Option<Paired>,
    /// Free-form, for the table.
    note: String,
    /// Extra JSON fields.
    extra: serde_json::Map<String, Value>,
}

impl Row {
    /// The ratio to the limit: the crate's median GB/s over the limit's.
    fn ratio(&self) -> Option<f64> {
        self.limit.as_ref().map(|(l, _)| self.gbps / l)
    }

    fn ndarray_ratio(&self) -> Option<f64> {
        self.limit.as_ref().map(|(l, _)| self.ndarray_gbps / l)
    }

    /// The ratio paired round by round ([`Race::paired`]), where the limit
    /// ran in the same rounds.
    fn per_round_ratio(&self) -> Option<f64> {
        self.paired.map(|p| p.crate_ratio)
    }

    fn to_json(&self, cfg: &Config) -> Value {
        let mut v = json!({
            "workload": self.workload,
            "op": self.op,
            "dtype": self.dtype,
            "shape": self.shape,
            "order": if self.fortran { "F" } else { "C" },
            "bytes": self.bytes,
            "byte_convention": "input bytes (N*D*size_of::<F>()) per call, for crate, limit and ndarray alike; 1 GB = 1e9 bytes",
            "gbps": self.gbps,
            "limit_gbps": self.limit.as_ref().map(|(l, _)| *l),
            "limit_variant": self.limit.as_ref().map(|(_, n)| n.clone()),
            "limit_variants": self.limit_variants.iter().map(|(n, g)| (n.clone(), json!(g))).collect::<serde_json::Map<_, _>>(),
            "ratio": self.ratio(),
            "per_round_ratio": self.per_round_ratio(),
            "ndarray_gbps": self.ndarray_gbps,
            "ndarray_ratio": self.ndarray_ratio(),
            "ndarray_per_round_ratio": self.paired.map(|p| p.ndarray_ratio),
            "vs_ndarray": self.gbps / self.ndarray_gbps,
            "quick": cfg.quick,
            "rounds": cfg.rounds,
            "cpu": cpu_model(),
            "crate_kernels": centering::__kernel_tier(),
        });
        let obj = v.as_object_mut().expect("an object");
        obj.extend(self.extra.clone());
        v
    }
}

const OPS: [&str; 4] = ["fit", "transform", "transform_into", "inplace"];

/// Measures every operation on `x`; with `w7 = Some((id, chunk))`, also
/// the chunked fit, reported as workload `id`.
fn workload<F, D>(cfg: &Config, id: &'static str, x: Array<F, D>, w7: Option<(&'static str, usize)>) -> Vec<Row>
where
    F: Real,
    D: Dimension + DimMax<Ix1, Output = D>,
{
    let start = Instant::now();
    let mut case = Case::new(x);
    let bytes = case.bytes();
    let shape = case.x.shape().to_vec();
    let fortran = case.x.ndim() > 1 && !case.x.is_standard_layout();
    let row = |op: &'static str, gbps: f64, limit: Vec<(String, f64)>, ndarray_gbps: f64| {
        let best = fastest(&limit);
        Row {
            workload: id,
            op,
            dtype: F::DTYPE,
            shape: shape.clone(),
            fortran,
            bytes,
            gbps,
            limit: best,
            limit_variants: limit,
            ndarray_gbps,
            paired: None,
            note: String::new(),
            extra: serde_json::Map::new(),
        }
    };
    let mut out = Vec::new();
    for op in OPS {
        let mut contenders = limits(op, &case);
        contenders.extend(peers(op));
        if op == "fit"
            && let Some((_, chunk)) = w7
        {
            contenders.extend(chunked(chunk));
        }
        let race = race(cfg, &mut case, &mut contenders);
        let medians = &race.medians;
        let of = |role| by_role(&contenders, medians, role, bytes);
        let limit = of(Role::Limit);
        let crate_gbps = of(Role::Crate)[0].1;
        let mut r = row(op, crate_gbps, limit.clone(), of(Role::Ndarray)[0].1);
        let limit_name = r.limit.as_ref().map(|(_, n)| n.clone()).expect("every op has a limit");
        r.paired = Some(race.pairs(&contenders, Role::Crate, Role::Ndarray, &limit_name));
        r.extra.insert("round_ms".into(), race.round_ms(&contenders));
        out.push(r);
        if let Some((w7_id, chunk)) = w7.filter(|_| op == "fit") {
            let w7_gbps = of(Role::ChunkedCrate)[0].1;
            let mut r = row(op, w7_gbps, limit, of(Role::ChunkedNdarray)[0].1);
            r.paired = Some(race.pairs(&contenders, Role::ChunkedCrate, Role::ChunkedNdarray, &limit_name));
            // W7 against W1's fit, also round by round.
            let to_w1 = race.paired(
                Race::role(&contenders, Role::ChunkedCrate),
                &[Race::role(&contenders, Role::Crate)],
            );
            r.workload = w7_id;
            r.note = format!("{:.2}× {id} fit", w7_gbps / crate_gbps);
            r.extra.insert("chunk_rows".into(), json!(chunk));
            r.extra.insert("w1_fit_gbps".into(), json!(crate_gbps));
            r.extra.insert("ratio_to_w1_fit".into(), json!(w7_gbps / crate_gbps));
            r.extra.insert("per_round_ratio_to_w1_fit".into(), json!(to_w1));
            r.extra.insert("round_ms".into(), race.round_ms(&contenders));
            out.push(r);
        }
    }
    eprintln!("{id} done in {:.1} s", start.elapsed().as_secs_f64());
    out
}

/// W8's `fit` + `transform` per call, against ndarray's `mean_axis` +
/// subtraction, with the calling thread's waits counted to show that no
/// thread pool is involved; `rows` are W8's per-operation rows, whose fit
/// and transform limits add up to this row's limit.
fn w8_fit_transform(cfg: &Config, x: ndarray::Array2<f64>, rows: &[Row]) -> Row {
    let mut case = Case::new(x);
    let calls = case.calls;
    let bytes = case.bytes();
    let mut contenders = vec![
        Contender::new("crate", Role::Crate, |c: &mut Case<f64, Ix2>| {
            per_call(c.calls, || fit_transform(&mut c.model, &c.x))
        }),
        Contender::new("ndarray", Role::Ndarray, |c: &mut Case<f64, Ix2>| {
            per_call(c.calls, || {
                let m = c.x.mean_axis(Axis(0)).expect("non-empty");
                &c.x - &m
            })
        }),
    ];
    let race = race(cfg, &mut case, &mut contenders);
    let (crate_t, nd_t) = (race.medians[0], race.medians[1]);

    // The same calls from inside a 2-thread pool (`install`): they must work
    // there too, and cost the same.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a 2-thread pool");
    let in_pool = median(
        (0..cfg.rounds)
            .map(|_| pool.install(|| per_call(calls, || fit_transform(&mut case.model, &case.x))))
            .collect(),
    );

    // Does the crate hand work to rayon? A `rayon::join` from a thread outside
    // any pool queues the work on the global pool and blocks the caller until
    // it is done: a voluntary context switch. Count them over `calls` calls,
    // and, as a control that the count sees such waits, over the 2-thread
    // read limit on the same data.
    let blocks = voluntary_switches(|| {
        for _ in 0..calls {
            black_box(fit_transform(&mut case.model, &case.x));
        }
    });
    let control = voluntary_switches(|| {
        for _ in 0..calls {
            black_box(limit::read(case.src(), Threads::Two));
        }
    });

    // The limit: one read plus one copy into fresh memory.
    let limit_of = |op| {
        rows.iter()
            .find(|r| r.op == op)
            .and_then(|r| r.limit.clone())
            .expect("W8 has fit and transform rows")
    };
    let ((read, read_name), (copy, copy_name)) = (limit_of("fit"), limit_of("transform"));
    let limit = 1.0 / (1.0 / read + 1.0 / copy);
    let name = format!("{read_name} + {copy_name}");
    let us = |t: Duration| t.as_secs_f64() * 1e6;
    let mut extra = serde_json::Map::new();
    extra.insert("round_ms".into(), race.round_ms(&contenders));
    extra.insert("crate_us".into(), json!(us(crate_t)));
    extra.insert("ndarray_us".into(), json!(us(nd_t)));
    let speedup = nd_t.as_secs_f64() / crate_t.as_secs_f64();
    extra.insert("speedup_vs_ndarray".into(), json!(speedup));
    // Round by round, as the other rows' per-round ratios.
    extra.insert("per_round_speedup_vs_ndarray".into(), json!(race.paired(0, &[1])));
    extra.insert("in_2_thread_pool_us".into(), json!(us(in_pool)));
    extra.insert("calls_counted".into(), json!(calls));
    extra.insert("calling_thread_waits".into(), json!(blocks));
    extra.insert("control_waits_2_thread_limit".into(), json!(control));
    extra.insert("pool_touched".into(), json!(blocks.map(|b| b > 0)));
    let waits = |w: Option<u64>| w.map_or("?".to_string(), |w| w.to_string());
    let note = format!(
        "crate {:.2} µs vs ndarray {:.2} µs per call ({speedup:.2}×); in a 2-thread pool {:.2} µs; \
         caller waited {} times in {calls} calls (control, a 2-thread join: {})",
        us(crate_t),
        us(nd_t),
        us(in_pool),
        waits(blocks),
        waits(control),
    );
    Row {
        workload: "W8",
        op: "fit+transform",
        dtype: "f64",
        shape: case.x.shape().to_vec(),
        fortran: false,
        bytes,
        gbps: gbps(bytes, crate_t),
        limit: Some((limit, name.clone())),
        limit_variants: vec![(name, limit)],
        ndarray_gbps: gbps(bytes, nd_t),
        paired: None,
        note,
        extra,
    }
}

fn fit_transform(model: &mut Centering<f64>, x: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    model.fit(x).expect("finite input");
    model.transform(x).expect("fitted")
}

/// The calling thread's voluntary context switches while `f` runs (`None`
/// where the OS does not count them per thread).
fn voluntary_switches(f: impl FnOnce()) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let count = || {
            let mut usage = MaybeUninit::<libc::rusage>::uninit();
            // SAFETY: `usage` is a valid place for one `rusage`, which
            // getrusage fills on success (checked).
            let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
            assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
            // SAFETY: initialised by the successful call above.
            let usage = unsafe { usage.assume_init() };
            u64::try_from(usage.ru_nvcsw).expect("a count")
        };
        let before = count();
        f();
        Some(count() - before)
    }
    #[cfg(not(target_os = "linux"))]
    {
        f();
        None
    }
}

// ---------------------------------------------------------------------------
// Reporting.
// ---------------------------------------------------------------------------

fn print_header(cfg: &Config) {
    let cpu = cpu_model();
    let mut thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "n/a".into());
    if let Some(got) = huge_page_check() {
        write!(thp, " (a fresh 64 MiB madvised buffer got {got} MiB of huge pages)").expect("writing to a String");
    }
    println!("# centering roofline\n");
    println!(
        "{cpu}; {} hardware threads; rayon pool: {} threads; limit loops: {}; THP: {thp}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rayon::current_num_threads(),
        simd::tier(),
    );
    println!("crate kernels on this CPU: {}", centering::__kernel_tier());
    println!(
        "mode: {} (sizes ÷ {}), {} timed rounds + 1 warm-up; GB/s = input bytes (N·D·size_of F) / median time, \
         1 GB = 1e9 B, for crate, limit and ndarray alike; ratio = crate GB/s / limit GB/s; per-round ratio = \
         the median over rounds of the limit's time in a round over the crate's in that round\n",
        if cfg.quick { "QUICK" } else { "full" },
        cfg.scale,
        cfg.rounds
    );
}

/// How many MiB of a fresh, written 64 MiB buffer with [`Pages::Huge`] the
/// kernel backs with huge pages, from `AnonHugePages` in
/// `/proc/self/smaps_rollup` before and after (`None` where unknown): shows
/// that the limit's huge-page variant gets what it asks for.
fn huge_page_check() -> Option<usize> {
    const MIB: usize = 1 << 20;
    if !limit::huge_pages_available() {
        return None;
    }
    let anon_huge_kib = || -> Option<usize> {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
        let line = rollup.lines().find(|l| l.starts_with("AnonHugePages:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let before = anon_huge_kib()?;
    let mut buf = Fresh::<u8>::new(64 * MIB, Pages::Huge);
    buf.as_uninit().fill(MaybeUninit::new(1));
    let after = anon_huge_kib()?;
    Some(after.saturating_sub(before) * 1024 / MIB)
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
    s.push_str(
        "| workload | op | dtype | shape | crate GB/s | limit GB/s (variant) | ratio | per-round ratio | ndarray GB/s | ndarray ratio | notes |\n",
    );
    s.push_str("|---|---|---|---|---:|---|---:|---:|---:|---:|---|\n");
    for r in rows {
        let shape = r.shape.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
        let order = if r.fortran { " F" } else { "" };
        let limit = r
            .limit
            .as_ref()
            .map_or("—".to_string(), |(g, n)| format!("{g:.1} ({n})"));
        writeln!(
            s,
            "| {} | {} | {} | {shape}{order} | {:.2} | {limit} | {} | {} | {:.2} | {} | {} |",
            r.workload,
            r.op,
            r.dtype,
            r.gbps,
            opt(r.ratio()),
            opt(r.per_round_ratio()),
            r.ndarray_gbps,
            opt(r.ndarray_ratio()),
            r.note
        )
        .expect("writing to a String");
    }
    s
}

/// `roofline.json` in cargo's target directory: `$CARGO_TARGET_DIR`, else
/// the one this binary was built in (`<target>/<profile>/deps/roofline-…`),
/// else `target`.
fn json_path() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| "target".into());
    target.join("roofline.json")
}

// ---------------------------------------------------------------------------
// W9, W12: inputs narrower than the mean.
// ---------------------------------------------------------------------------

mod narrow {
    use std::mem::MaybeUninit;
    use std::time::Instant;

    use centering::{Centering, Input};
    use ndarray::{Array, Array1, Axis, DimMax, Dimension, Ix1};

    use super::limit::{self, Fresh, Pages, Threads};
    use super::simd::{self, Body};
    use super::{Config, Contender, Role, Row, gbps, limit_threads, pages_label, per_call, race, rows, threads_label};

    /// An input type narrower than `f32`.
    pub trait Narrow: Input + Default {
        const DTYPE: &'static str;
        fn to_f32(self) -> f32;
    }

    impl Narrow for u8 {
        const DTYPE: &'static str = "u8→f32";
        fn to_f32(self) -> f32 {
            f32::from(self)
        }
    }

    impl Narrow for half::f16 {
        const DTYPE: &'static str = "f16→f32";
        fn to_f32(self) -> f32 {
            half::f16::to_f32(self)
        }
    }

    pub struct Case<T, D> {
        x: Array<T, D>,
        /// `f32` output written before, for `transform_into`.
        out: Array<f32, D>,
        /// A buffer of the input's byte size: what the read limit sums.
        same_bytes: Vec<f64>,
        model: Centering<f32>,
        mean: Array1<f32>,
        calls: usize,
    }

    /// Writes `c` over `dst` (the output half of a widening copy).
    struct Fill<'a> {
        dst: &'a mut [MaybeUninit<f32>],
        c: f32,
    }

    impl Body for Fill<'_> {
        type Out = ();
        #[inline(always)]
        fn run(self) {
            for d in self.dst {
                d.write(self.c);
            }
        }
    }

    /// How a limit loop fills its buffer.
    #[derive(Clone, Copy)]
    enum How {
        /// A plain loop of stores.
        Loop,
        /// The platform `memset` (`write_bytes`).
        Memset,
        /// Non-temporal stores (AVX `vmovntps`), as the crate writes large
        /// `_into` outputs.
        Stream,
    }

    impl How {
        const ALL: [How; 3] = [How::Loop, How::Memset, How::Stream];

        fn name(self) -> &'static str {
            match self {
                How::Loop => "loop",
                How::Memset => "memset",
                How::Stream => "stream",
            }
        }
    }

    /// Fills `dst` as `how` says, on `threads`. The `memset` byte is not
    /// zero: outputs are not, and zeros are a different workload on some
    /// machines (on an AMD EPYC VM, one thread's `memset` of 805 MB wrote
    /// zeros at 61 GB/s and `0x3f` at 27 GB/s), which would make the limit
    /// one that no computed store can reach.
    fn fill(dst: &mut [MaybeUninit<f32>], how: How, threads: Threads) {
        let byte = std::hint::black_box(0x3f_u8);
        let one = |dst: &mut [MaybeUninit<f32>]| match how {
            // SAFETY: `dst` is one live, exclusively borrowed slice; any
            // four bytes are a valid `f32` (these: 0.747…).
            How::Memset => unsafe { std::ptr::write_bytes(dst.as_mut_ptr(), byte, dst.len()) },
            How::Loop => simd::run(Fill { dst, c: 0.5 }),
            How::Stream => stream_fill(dst, 0.5),
        };
        match threads {
            Threads::One => one(dst),
            Threads::Two => {
                let mid = dst.len() / 2;
                let (a, b) = dst.split_at_mut(mid);
                rayon::join(|| one(a), || one(b));
            }
        }
    }

    /// `dst[i] = c` by non-temporal stores where the CPU has AVX (a plain
    /// loop elsewhere).
    fn stream_fill(dst: &mut [MaybeUninit<f32>], c: f32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            return unsafe { stream_fill_avx(dst, c) };
        }
        for d in dst {
            d.write(c);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn stream_fill_avx(dst: &mut [MaybeUninit<f32>], c: f32) {
        use std::arch::x86_64::{_mm_sfence, _mm256_set1_ps, _mm256_stream_ps};
        let head = dst.as_ptr().align_offset(32).min(dst.len());
        let (h, rest) = dst.split_at_mut(head);
        for d in h {
            d.write(c);
        }
        let v = _mm256_set1_ps(c);
        let mut chunks = rest.chunks_exact_mut(8);
        for ch in &mut chunks {
            // SAFETY: `ch` is 8 writable `f32`s, 32-byte aligned (`head`
            // aligned `rest`, and every chunk is 32 bytes).
            unsafe { _mm256_stream_ps(ch.as_mut_ptr().cast::<f32>(), v) };
        }
        for d in chunks.into_remainder() {
            d.write(c);
        }
        _mm_sfence();
    }

    pub fn workload<T, D>(cfg: &Config, id: &'static str, x: Array<T, D>) -> Vec<Row>
    where
        T: Narrow,
        D: Dimension + DimMax<Ix1, Output = D>,
    {
        let start = Instant::now();
        let bytes = x.len() * size_of::<T>();
        let calls = if bytes >= super::LARGE { 1 } else { (64 << 20) / bytes };
        let mut model = Centering::<f32>::new();
        model.fit_input(&x).expect("finite input");
        let mean = model.mean().expect("fitted").to_owned();
        let mut case = Case {
            out: x.mapv(T::to_f32),
            same_bytes: vec![0.25; bytes.div_ceil(8)],
            x,
            model,
            mean,
            calls,
        };
        let shape = case.x.shape().to_vec();
        let mut out = Vec::new();
        for op in ["fit", "transform", "transform_into"] {
            let mut contenders: Vec<Contender<'_, Case<T, D>>> = Vec::new();
            for &threads in limit_threads(bytes) {
                let t = threads_label(threads);
                contenders.push(Contender::new(
                    format!("read {t}"),
                    Role::Limit,
                    move |c: &mut Case<T, D>| per_call(c.calls, || limit::read(&c.same_bytes, threads)),
                ));
                if op == "transform" {
                    for pages in [Pages::Ordinary, Pages::Huge] {
                        if pages == Pages::Huge && !(bytes >= super::LARGE && limit::huge_pages_available()) {
                            continue;
                        }
                        for how in How::ALL {
                            let name = format!("fill fresh {} {} {t}", pages_label(pages), how.name());
                            contenders.push(Contender::new(name, Role::Limit, move |c: &mut Case<T, D>| {
                                per_call(c.calls, || {
                                    let mut buf = Fresh::<f32>::new(c.x.len(), pages);
                                    fill(buf.as_uninit(), how, threads);
                                    buf
                                })
                            }));
                        }
                    }
                }
                if op == "transform_into" {
                    for how in How::ALL {
                        let name = format!("fill written {} {t}", how.name());
                        contenders.push(Contender::new(name, Role::Limit, move |c: &mut Case<T, D>| {
                            let dst = c.out.as_slice_memory_order_mut().expect("contiguous");
                            per_call(c.calls, || fill(limit::as_uninit(dst), how, threads))
                        }));
                    }
                }
            }
            match op {
                "fit" => {
                    contenders.push(Contender::new("crate", Role::Crate, |c: &mut Case<T, D>| {
                        per_call(c.calls, || {
                            c.model.fit_input(&c.x).expect("finite input");
                        })
                    }));
                    contenders.push(Contender::new("ndarray", Role::Ndarray, |c: &mut Case<T, D>| {
                        per_call(c.calls, || rows(&c.x.mapv(T::to_f32)).mean_axis(Axis(0)))
                    }));
                }
                "transform" => {
                    contenders.push(Contender::new("crate", Role::Crate, |c: &mut Case<T, D>| {
                        per_call(c.calls, || c.model.transform_input(&c.x).expect("fitted"))
                    }));
                    contenders.push(Contender::new("ndarray", Role::Ndarray, |c: &mut Case<T, D>| {
                        per_call(c.calls, || &c.x.mapv(T::to_f32) - &c.mean)
                    }));
                }
                _ => {
                    contenders.push(Contender::new("crate", Role::Crate, |c: &mut Case<T, D>| {
                        per_call(c.calls, || {
                            c.model.transform_input_into(&c.x, &mut c.out).expect("fitted")
                        })
                    }));
                    contenders.push(Contender::new("ndarray", Role::Ndarray, |c: &mut Case<T, D>| {
                        per_call(c.calls, || {
                            ndarray::Zip::from(&mut c.out)
                                .and(&c.x)
                                .and_broadcast(&c.mean)
                                .for_each(|o, &x, &m| *o = x.to_f32() - m)
                        })
                    }));
                }
            }
            let race = race(cfg, &mut case, &mut contenders);
            let medians = race.medians.clone();
            let time_of = |name: &str| {
                contenders
                    .iter()
                    .zip(&medians)
                    .find(|(c, _)| c.name == name)
                    .map(|(_, &t)| t)
            };
            // The limit: the fastest read, plus (transforms) the fastest fill.
            let reads: Vec<_> = contenders
                .iter()
                .zip(&medians)
                .filter(|(c, _)| c.role == Role::Limit && c.name.starts_with("read"))
                .map(|(c, &t)| (c.name.clone(), t))
                .collect();
            let fills: Vec<_> = contenders
                .iter()
                .zip(&medians)
                .filter(|(c, _)| c.role == Role::Limit && c.name.starts_with("fill"))
                .map(|(c, &t)| (c.name.clone(), t))
                .collect();
            let best = |v: &[(String, std::time::Duration)]| v.iter().min_by_key(|(_, t)| *t).cloned();
            let (read_name, read_t) = best(&reads).expect("a read limit");
            let (limit_name, limit_t) = match best(&fills) {
                Some((fill_name, fill_t)) => (format!("{read_name} + {fill_name}"), read_t + fill_t),
                None => (read_name, read_t),
            };
            let variants = contenders
                .iter()
                .zip(&medians)
                .filter(|(c, _)| c.role == Role::Limit)
                .map(|(c, &t)| (c.name.clone(), gbps(bytes, t)))
                .collect();
            let crate_t = time_of("crate").expect("the crate ran");
            let nd_t = time_of("ndarray").expect("ndarray ran");
            out.push(Row {
                workload: id,
                op,
                dtype: T::DTYPE,
                shape: shape.clone(),
                fortran: false,
                bytes,
                gbps: gbps(bytes, crate_t),
                paired: Some(race.pairs(&contenders, Role::Crate, Role::Ndarray, &limit_name)),
                limit: Some((gbps(bytes, limit_t), limit_name)),
                limit_variants: variants,
                ndarray_gbps: gbps(bytes, nd_t),
                note: String::new(),
                extra: [("round_ms".to_string(), race.round_ms(&contenders))]
                    .into_iter()
                    .collect(),
            });
        }
        eprintln!("{id} done in {:.1} s", start.elapsed().as_secs_f64());
        out
    }
}

// ---------------------------------------------------------------------------
// W10, W11: missing values and weights.
// ---------------------------------------------------------------------------

mod missing {
    use std::time::Instant;

    use centering::{Centering, NanPolicy};
    use ndarray::{Array1, Array2, Axis, Zip};
    use serde_json::json;

    use super::limit;
    use super::{Config, Contender, Role, Row, by_role, fastest, limit_threads, per_call, race, threads_label};

    /// What W1's array carries on top.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// 10% NaN, fitted under `NanPolicy::Ignore` (W10).
        Nan,
        /// One weight per row (W11).
        Weights,
    }

    struct Case {
        x: Array2<f64>,
        w: Array1<f64>,
        /// A buffer of the bytes read (input, plus weights for W11).
        same_bytes: Vec<f64>,
        model: Centering<f64>,
        calls: usize,
    }

    /// Every tenth value NaN, at positions that differ from row to row.
    pub fn with_nan(mut x: Array2<f64>) -> Array2<f64> {
        let d = x.ncols();
        let mut state = 10u64;
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                // Deterministic and spread: about 1 in 10 values.
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if (state >> 33).is_multiple_of(10) || (i * d + j) == 0 {
                    *v = f64::NAN;
                }
            }
        }
        x
    }

    /// W10 or W11 (`kind`) on `x` (W1's shape, C or Fortran order): `fit`
    /// against reading the same bytes, and ndarray written by hand (a row
    /// loop of sums and counts skipping NaN; `w.dot(&x) / w.sum()`).
    pub fn workload(cfg: &Config, id: &'static str, x: Array2<f64>, kind: Kind) -> Vec<Row> {
        let start = Instant::now();
        let fortran = !x.is_standard_layout();
        let shape = x.shape().to_vec();
        let w = Array1::from_shape_fn(x.nrows(), |i| 0.5 + (i % 7) as f64 * 0.25);
        let read = x.len() + if kind == Kind::Weights { w.len() } else { 0 };
        let bytes = read * size_of::<f64>();
        let calls = if bytes >= super::LARGE { 1 } else { (64 << 20) / bytes };
        let policy = if kind == Kind::Nan {
            NanPolicy::Ignore
        } else {
            NanPolicy::Reject
        };
        let model = Centering::<f64>::builder()
            .nan_policy(policy)
            .build()
            .expect("valid parameters");
        let mut case = Case {
            x,
            w,
            same_bytes: vec![0.25; read],
            model,
            calls,
        };
        let mut contenders: Vec<Contender<'_, Case>> = Vec::new();
        for &threads in limit_threads(bytes) {
            let t = threads_label(threads);
            contenders.push(Contender::new(format!("read {t}"), Role::Limit, move |c: &mut Case| {
                per_call(c.calls, || limit::read(&c.same_bytes, threads))
            }));
        }
        contenders.push(Contender::new("crate", Role::Crate, move |c: &mut Case| {
            per_call(c.calls, || match kind {
                Kind::Nan => {
                    c.model.fit(&c.x).expect("NaN ignored");
                }
                Kind::Weights => {
                    c.model.fit_weighted(&c.x, &c.w).expect("valid weights");
                }
            })
        }));
        contenders.push(Contender::new("ndarray", Role::Ndarray, move |c: &mut Case| {
            per_call(c.calls, || match kind {
                Kind::Nan => {
                    let d = c.x.ncols();
                    let (mut sum, mut count) = (Array1::<f64>::zeros(d), Array1::<f64>::zeros(d));
                    for row in c.x.axis_iter(Axis(0)) {
                        Zip::from(&mut sum).and(&mut count).and(&row).for_each(|s, n, &v| {
                            if !v.is_nan() {
                                *s += v;
                                *n += 1.0;
                            }
                        });
                    }
                    sum / count
                }
                Kind::Weights => c.w.dot(&c.x) / c.w.sum(),
            })
        }));
        let race = race(cfg, &mut case, &mut contenders);
        let of = |role| by_role(&contenders, &race.medians, role, bytes);
        let limit = of(Role::Limit);
        let best = fastest(&limit);
        let mut extra = serde_json::Map::new();
        extra.insert("round_ms".into(), race.round_ms(&contenders));
        extra.insert(
            "read_elements".into(),
            json!(if kind == Kind::Weights { "x and w" } else { "x" }),
        );
        let row = Row {
            workload: id,
            op: "fit",
            dtype: "f64",
            shape,
            fortran,
            bytes,
            gbps: of(Role::Crate)[0].1,
            paired: best
                .as_ref()
                .map(|(_, name)| race.pairs(&contenders, Role::Crate, Role::Ndarray, name)),
            limit: best,
            limit_variants: limit,
            ndarray_gbps: of(Role::Ndarray)[0].1,
            note: match kind {
                Kind::Nan => "10% NaN, Ignore".into(),
                Kind::Weights => "a weight per row; weight bytes counted".into(),
            },
            extra,
        };
        eprintln!("{id} done in {:.1} s", start.elapsed().as_secs_f64());
        vec![row]
    }
}
