//! Fast paths on contiguous slices whose element `i` is feature `i mod d`.
//!
//! A per-row loop cannot keep SIMD lanes busy when `d` is small (`d = 3` for
//! RGB images, `d = 1` for a single feature). Instead the slice is consumed
//! in blocks of `p` elements, `p` a multiple of both `d` and the widest SIMD
//! register, into `p` independent accumulators; accumulator `j` only ever
//! sees feature `j mod d`, and they are folded into `d` features at the end.
//! The same trick gives `apply` a repeating `p`-long pattern of means.
//!
//! Accumulation, per element:
//! - `f64` (and any other float type): TwoSum into a double-word accumulator
//!   (six flops, vectorised across the `p` lanes, no branch);
//! - `f32`: a plain `f64` sum, folded into the double-word state at the end
//!   of a leaf: a lane's chain is at most a few hundred elements, so its
//!   relative error (≤ 2⁹·2⁻⁵³) is far below `f32`'s half ulp (2⁻²⁴).
//!
//! Rows wider than [`WIDE`] lanes are added four at a time (see
//! [`sum_dd_rows`]), which took W3 (16384 features) from 0.38 to 0.97 of the
//! read limit.
//!
//! Each kernel body is `#[inline(always)]` and compiled three times: for
//! AVX-512, for AVX2 + FMA, and for the baseline target; the widest that the
//! running CPU supports is picked at run time (`is_x86_feature_detected!`).

use std::any::TypeId;

use crate::Element;
use crate::state::Dd;

/// The accumulator block length for `d` features: a multiple of `d` and of
/// 16 (one AVX-512 register of `f32`), at least 64, or `d` itself when rows
/// are already long.
pub(crate) fn period(d: usize) -> usize {
    if d >= 256 {
        return d;
    }
    let l = lcm(d, 16);
    l * 64usize.div_ceil(l)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Reinterprets a slice of `F` as a slice of `T` when they are the same type.
#[inline(always)]
pub(crate) fn cast<F: 'static, T: 'static>(x: &[F]) -> Option<&[T]> {
    if TypeId::of::<F>() == TypeId::of::<T>() {
        // SAFETY: `F` and `T` are the same type (equal `TypeId`s), so the
        // pointer, length, alignment and validity of every element carry over.
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<T>(), x.len()) })
    } else {
        None
    }
}

/// Mutable twin of [`cast`].
#[inline(always)]
pub(crate) fn cast_mut<F: 'static, T: 'static>(x: &mut [F]) -> Option<&mut [T]> {
    if TypeId::of::<F>() == TypeId::of::<T>() {
        // SAFETY: as in `cast`; the exclusive borrow is moved, not duplicated.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<T>(), x.len()) })
    } else {
        None
    }
}

/// Lane accumulators of one leaf for rows of `d` features.
pub(crate) struct RowAcc<F> {
    d: usize,
    hi: Vec<F>,
    lo: Vec<F>,
    wide: Vec<f64>,
}

impl<F: Element> RowAcc<F> {
    pub(crate) fn new(d: usize) -> Self {
        let p = period(d);
        let is_f32 = TypeId::of::<F>() == TypeId::of::<f32>();
        RowAcc {
            d,
            hi: if is_f32 { Vec::new() } else { vec![F::zero(); p] },
            lo: if is_f32 { Vec::new() } else { vec![F::zero(); p] },
            wide: if is_f32 { vec![0.0; p] } else { Vec::new() },
        }
    }

    /// The `f64` lanes of an `f32` accumulator (empty for `f64`).
    #[cfg(feature = "half")]
    pub(crate) fn wide_lanes(&mut self) -> &mut [f64] {
        &mut self.wide
    }

    /// Adds a contiguous run of whole rows (`x.len() % d == 0`).
    pub(crate) fn push(&mut self, x: &[F]) {
        debug_assert_eq!(x.len() % self.d, 0);
        if let Some(x) = cast::<F, f32>(x) {
            dispatch!(sum_wide_rows(x, &mut self.wide));
        } else if let (Some(x), Some(hi), Some(lo)) = (
            cast::<F, f64>(x),
            cast_mut::<F, f64>(&mut self.hi),
            cast_mut::<F, f64>(&mut self.lo),
        ) {
            dispatch!(sum_dd_rows(x, hi, lo));
        } else {
            sum_dd_rows(x, &mut self.hi, &mut self.lo);
        }
    }

    /// Folds the lanes into per-feature `f64` double-words, added to `out`.
    pub(crate) fn finish(self, out: &mut [Dd<f64>]) {
        // Lane `j` is feature `j mod d`: period by period (no division per
        // lane, and the features' additions independent of each other),
        // each feature adding its lanes in the same order as lane by lane.
        let d = self.d;
        if !self.wide.is_empty() {
            for lanes in self.wide.chunks(d) {
                for (o, &s) in out.iter_mut().zip(lanes) {
                    *o = o.add(Dd { hi: s, lo: 0.0 });
                }
            }
        } else {
            let wide = |v: F| v.to_f64().unwrap_or(f64::NAN);
            for (hi, lo) in self.hi.chunks(d).zip(self.lo.chunks(d)) {
                for ((o, &h), &l) in out.iter_mut().zip(hi).zip(lo) {
                    *o = o.add(Dd {
                        hi: wide(h),
                        lo: wide(l),
                    });
                }
            }
        }
    }
}

/// The instruction sets the dispatched kernels run with on this CPU: the
/// float lanes' tier, and the extras the narrow inputs use.
pub(crate) fn tier() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let lanes = if simd::has_avx512() {
            "avx512f+vl (float lanes)"
        } else if simd::has_avx2() {
            "avx2+fma (float lanes)"
        } else {
            "baseline (float lanes)"
        };
        let ints = if std::arch::is_x86_feature_detected!("avx2") {
            "avx2 (integer lanes)"
        } else {
            "baseline (integer lanes)"
        };
        let f16 = if super::narrow::has_avx512_fp16() {
            "avx512fp16 (f16 fits) + f16c (f16 widening)"
        } else if super::narrow::has_avx512_f16c() {
            "avx512f+f16c (f16 fits) + f16c (f16 widening)"
        } else if super::narrow::has_avx2_f16c() {
            "f16c (f16 widening)"
        } else {
            "portable (f16 widening)"
        };
        let nt = if simd::has_avx2() {
            "avx non-temporal (large _into outputs)"
        } else {
            "ordinary stores (large _into outputs)"
        };
        let columns = if simd::has_avx2() {
            "avx2+fma two strips (column-major weighted/NaN f64, f32)"
        } else {
            "one strip (column-major weighted/NaN)"
        };
        format!("{lanes}, {ints}, {f16}, {nt}, {columns}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "portable".to_string()
    }
}

/// Whether the CPU has every feature the `avx512` kernels are compiled
/// with (AVX-512F, AVX-512VL, AVX2, FMA), for the other kernel modules.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    simd::has_avx512()
}

/// Whether the CPU has AVX2 and FMA, which the `avx2` kernels are compiled
/// with, for the other kernel modules.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    simd::has_avx2()
}

/// Calls `$f($args)` compiled for the widest instruction set available.
macro_rules! dispatch {
    ($f:ident($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if simd::has_avx512() {
                // SAFETY: the CPU has every feature `avx512` is compiled
                // with (AVX-512F, AVX-512VL, AVX2, FMA), checked just above.
                unsafe { simd::$f::avx512($($a),*) }
            } else if simd::has_avx2() {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                unsafe { simd::$f::avx2($($a),*) }
            } else {
                $f($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f($($a),*)
        }
    }};
}
use dispatch;

/// An addition that may run on the multiply-add units: `a·1 + b` by FMA,
/// rounded once, is `a + b` bit for bit (signed zeros and infinities
/// included; a NaN stays a NaN, its sign and payload unspecified as for
/// any Rust float operation). CPUs that add on other units than they multiply-add (AMD
/// Zen 4: two adders, two FMA units) then spread a TwoSum's additions over
/// all four; where FMA and add share their units (Intel) nothing changes.
/// Measured on Zen 4, one thread, data in L2: NaN-skipping sums 24.9 →
/// 27.5 GB/s, weighted 23.2 → 29.3 GB/s (medians of five, alternated); the
/// narrow-row `f64` sums see [`sum_dd`]. The `1` is opaque so that the
/// compiler does not fold the FMA back into an addition.
#[derive(Clone, Copy)]
pub(crate) struct Unit<F>(F);

impl<F: num_traits::Float> Unit<F> {
    #[inline(always)]
    pub(crate) fn new<const FMA: bool>() -> Self {
        Unit(if FMA { std::hint::black_box(F::one()) } else { F::one() })
    }

    #[inline(always)]
    pub(crate) fn add<const FMA: bool>(self, a: F, b: F) -> F {
        if FMA { a.mul_add(self.0, b) } else { a + b }
    }

    /// [`two_sum`](crate::state::two_sum), two of its six additions through [`Unit::add`] (with
    /// the error's addition to `lo`, three of a value's seven): the same
    /// operations on the same values (`s − a` is `s + (−a)`), so the same
    /// bits (but for a NaN's sign and payload).
    #[inline(always)]
    pub(crate) fn two_sum<const FMA: bool>(self, a: F, b: F) -> (F, F) {
        let s = a + b;
        let bb = self.add::<FMA>(s, -a);
        let e = self.add::<FMA>(-(s - bb), a) + (b - bb);
        (s, e)
    }

    /// `v` into the double-word `(hi, lo)`: `two_sum` and the error added
    /// to `lo`, three of the seven additions on the multiply-add units
    /// where `FMA`.
    #[inline(always)]
    pub(crate) fn push<const FMA: bool>(self, hi: &mut F, lo: &mut F, v: F) {
        let (s, e) = self.two_sum::<FMA>(*hi, v);
        *hi = s;
        *lo = self.add::<FMA>(e, *lo);
    }
}

/// Lanes [`sum_dd`] holds in registers (where `REGS`) rather than in
/// memory: 64 `f64` lanes are 16 `zmm` registers for `hi` and `lo`, half
/// of AVX-512's 32 (AVX2's 16 `ymm` would hold a quarter of them). Rows of
/// 1, 2, 4, …, 64 features (W1, W6) have this period.
const REG_LANES: usize = 64;

/// Per-lane TwoSum of `x` into `(hi, lo)`, `p = hi.len()` lanes; the tail
/// (shorter than `p`) goes into the first lanes. `FMA`: three of each
/// value's seven additions on the multiply-add units ([`Unit`]); `REGS`:
/// a period of [`REG_LANES`] lanes kept in registers down the whole run,
/// loaded and stored once. Same bits either way.
///
/// Alone, FMA additions or register lanes gained little (one thread, W1's
/// rows in L2, AMD EPYC Zen 4: 30.3 → 33.5 and → 30.9 GB/s): with lanes in
/// memory the loads and stores bound the loop, with lanes in registers its
/// seven additions on two adders. Both: 50.2 GB/s.
#[inline(always)]
fn sum_dd<F: num_traits::Float, const FMA: bool, const REGS: bool>(x: &[F], hi: &mut [F], lo: &mut [F]) {
    let unit = Unit::<F>::new::<FMA>();
    if REGS
        && let (Ok(h), Ok(l)) = (
            <&mut [F; REG_LANES]>::try_from(&mut *hi),
            <&mut [F; REG_LANES]>::try_from(&mut *lo),
        )
    {
        // The same loop on copies of fixed length, which the compiler
        // keeps in registers.
        let (mut hr, mut lr) = (*h, *l);
        sum_dd_lanes::<F, FMA>(x, &mut hr, &mut lr, unit);
        (*h, *l) = (hr, lr);
        return;
    }
    sum_dd_lanes::<F, FMA>(x, hi, lo, unit);
}

/// [`sum_dd`]'s loop over `(hi, lo)` wherever they are.
#[inline(always)]
fn sum_dd_lanes<F: num_traits::Float, const FMA: bool>(x: &[F], hi: &mut [F], lo: &mut [F], unit: Unit<F>) {
    let p = hi.len();
    let mut chunks = x.chunks_exact(p);
    for c in &mut chunks {
        // Into L2, 8 KiB ahead: W1's fit from DRAM 28.7 → 31.2 GB/s, W5's
        // 28.2 → 30.0 (two threads, alternated medians of five, AMD EPYC
        // Zen 4).
        prefetch_ahead(c);
        for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(c) {
            unit.push::<FMA>(h, l, v);
        }
    }
    for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(chunks.remainder()) {
        unit.push::<FMA>(h, l, v);
    }
}

/// Rows wider than this are added four at a time (see [`sum_dd_rows`]).
const WIDE: usize = 512;

/// [`sum_dd`], but for wide rows (more than [`WIDE`] lanes) four rows are
/// added in one pass over the accumulators. With `2·d` accumulators out of
/// L1, a row at a time costs two loads and two stores of accumulators per
/// element; four rows at a time quarter that, while every row is still read
/// front to back (tiling the lanes instead breaks the input into short
/// strided segments that the prefetchers follow badly: measured slower).
///
/// `FMA` and `REGS` as for [`sum_dd`]; [`sum_dd_rows`] is the baseline
/// build (neither), the `simd` builds set them.
#[inline(always)]
fn sum_dd_rows_with<F: num_traits::Float, const FMA: bool, const REGS: bool>(x: &[F], hi: &mut [F], lo: &mut [F]) {
    let p = hi.len();
    if p <= WIDE {
        return sum_dd::<F, FMA, REGS>(x, hi, lo);
    }
    let unit = Unit::<F>::new::<FMA>();
    let mut quads = x.chunks_exact(4 * p);
    for q in &mut quads {
        let (a, rest) = q.split_at(p);
        let (b, rest) = rest.split_at(p);
        let (c, d) = rest.split_at(p);
        let mut j = 0;
        while j < p {
            let e = (j + WIDE_BLOCK).min(p);
            for r in [a, b, c, d] {
                prefetch_at(&r[j..e], WIDE_PREFETCH);
            }
            for (((((h, l), &a), &b), &c), &d) in hi[j..e]
                .iter_mut()
                .zip(lo[j..e].iter_mut())
                .zip(&a[j..e])
                .zip(&b[j..e])
                .zip(&c[j..e])
                .zip(&d[j..e])
            {
                let (s, e1) = unit.two_sum::<FMA>(*h, a);
                let (s, e2) = unit.two_sum::<FMA>(s, b);
                let (s, e3) = unit.two_sum::<FMA>(s, c);
                let (s, e4) = unit.two_sum::<FMA>(s, d);
                *h = s;
                *l = *l + ((e1 + e2) + (e3 + e4));
            }
            j = e;
        }
    }
    sum_dd::<F, FMA, REGS>(quads.remainder(), hi, lo);
}

/// Lanes added between two rounds of prefetches (each row's lines
/// [`WIDE_PREFETCH`] ahead) where a period is wider than [`WIDE`]: in
/// [`sum_dd_rows_with`]'s four rows, and in `apply_pattern`'s and
/// `update_pattern`'s rows (any element type; W3's 16384 features, and
/// also the periods of some narrower rows, e.g. 528 for 33 features).
const WIDE_BLOCK: usize = 64;

/// How far ahead the loops of [`WIDE_BLOCK`] lanes ask for each row's lines
/// (into L2, as [`prefetch_ahead`]): several blocks ahead (six of `f64`). Asking for a whole quad's lines at its
/// start (`prefetch_ahead(q)`, half a MiB of asks for W3's 16384-feature
/// rows) made W3's fit slower (0.90 → 0.62–0.77); asked a block at a time,
/// W3-only roofline runs on the AMD EPYC Zen 4 VM, six alternations: fit
/// 0.79 / 0.89 / 0.89 / 0.86 / 0.86 / 0.81 → 0.85 / 0.96 / 0.85 / 0.97 /
/// 1.05 / 0.88 of the read limit (23.2–27.9 → 24.3–35.7 GB/s). In probes
/// 3, 8 and 16 KiB read alike within the drift (two threads from memory,
/// five alternations, medians 27.9 / 26.1 / 27.5 GB/s, 25.5 without);
/// chosen off the page multiple because rows of a power-of-two width (W3's)
/// start in one L1 set, where session 14 measured page-multiple distances
/// worst for the columns kernel on Zen 3 (`samples::COLUMN_PREFETCH`).
/// Not measured on Zen 3 or Intel, nor for `f32` or narrow rows with long
/// periods (prefetches of lines the loop reads next either way).
const WIDE_PREFETCH: usize = 3072;

/// [`sum_dd_rows_with`] as the baseline target builds it: plain additions,
/// lanes in memory.
#[inline(always)]
fn sum_dd_rows<F: num_traits::Float>(x: &[F], hi: &mut [F], lo: &mut [F]) {
    sum_dd_rows_with::<F, false, false>(x, hi, lo);
}

/// [`sum_wide`], four periods at a time (as [`sum_dd_rows`] does for wide
/// rows, and here for every width): each lane's accumulator is loaded and
/// stored once per four values instead of once per value, which the
/// narrow-row kernels are bound by once the input is half-precision (W12).
#[inline(always)]
fn sum_wide_rows(x: &[f32], acc: &mut [f64]) {
    let p = acc.len();
    let mut quads = x.chunks_exact(4 * p);
    for q in &mut quads {
        // Into L2, 8 KiB ahead: W4's fit (f32 images) 0.80 / 0.84 → 0.94 /
        // 0.93 of the read limit, alternated (AMD EPYC Zen 4); W2 alike.
        // `sum_dd_rows` asks a block of lanes at a time (`WIDE_PREFETCH`):
        // the whole quad at once made W3's fit slower.
        prefetch_ahead(q);
        let (a, rest) = q.split_at(p);
        let (b, rest) = rest.split_at(p);
        let (c, d) = rest.split_at(p);
        for ((((s, &a), &b), &c), &d) in acc.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            *s += f64::from(a) + f64::from(b) + f64::from(c) + f64::from(d);
        }
    }
    sum_wide(quads.remainder(), acc);
}

/// Asks for the cache lines [`PREFETCH`] bytes past `block`'s, into L2
/// (`T1`), for the kernels whose two threads read memory more slowly than
/// they could, the hardware prefetchers alone not making up for it: the
/// weighted and NaN-skipping kernels (`samples`), whose arithmetic leaves
/// fewer loads in flight, the `f32` lanes and the narrow `f64` rows. Into L1
/// (`T0`, until session 9) was slower: 2M×64 from DRAM on two threads, AMD EPYC Zen 4,
/// alternated medians of four, W11F 18.8 → 22.4 GB/s, W10F 22.5 → 23.5,
/// W10 28.7 → 29.2 with `T1`, W11 unchanged (26.3).
#[inline(always)]
pub(crate) fn prefetch_ahead<T>(block: &[T]) {
    prefetch_at(block, PREFETCH);
}

/// [`prefetch_ahead`] at `distance` bytes past `block`'s lines instead of
/// [`PREFETCH`]: `samples::COLUMN_PREFETCH` (the columns kernel's many
/// streams), `narrow::F16_PREFETCH` (the fused `f16` loop) and
/// [`WIDE_PREFETCH`] (wide rows).
#[inline(always)]
pub(crate) fn prefetch_at<T>(block: &[T], distance: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let start = block.as_ptr().cast::<i8>().wrapping_add(distance);
        for k in (0..std::mem::size_of_val(block)).step_by(64) {
            // SAFETY: a prefetch is a hint: it never faults, whatever the
            // address (`wrapping_add` makes no claim about it either), and
            // changes no memory.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.wrapping_add(k)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (block, distance);
}

/// How far ahead [`prefetch_ahead`] asks: sixteen rows of W1's 64
/// features. Into L1, 2 and 8 KiB measured no better than 4 (session 8);
/// into L2, 8 KiB is better than 4 (AMD EPYC Zen 4, roofline W10/W11 only,
/// alternated 8/4/8/4: W10 0.95/0.82/0.90/0.85, W11 0.88/0.75/0.87/0.81 of
/// the read limit; 16 KiB no better in probes).
const PREFETCH: usize = 8192;

/// Per-lane `f64` sum of `f32` data.
#[inline(always)]
fn sum_wide(x: &[f32], acc: &mut [f64]) {
    let p = acc.len();
    let mut chunks = x.chunks_exact(p);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f64::from(v);
    }
}

/// `out[i] = x[i] ∓ pattern[i mod p]`, with `pattern` the means repeated.
#[inline(always)]
fn apply_pattern<F: num_traits::Float, const ADD: bool>(x: &[F], out: &mut [F], pattern: &[F]) {
    let p = pattern.len();
    let mut xc = x.chunks_exact(p);
    let mut oc = out.chunks_exact_mut(p);
    for (o, i) in (&mut oc).zip(&mut xc) {
        if p > WIDE {
            // As `update_pattern`'s wide rows: the input's lines asked for
            // `WIDE_PREFETCH` ahead, a block at a time. W3-only roofline on the AMD EPYC Zen 4 VM,
            // three alternations: transform 0.92 / 0.45 / 0.92 → 1.03 /
            // 1.04 / 1.00 of the fresh-copy limit (7.98 / 4.05 / 9.94 →
            // 9.38 / 9.27 / 9.84 GB/s).
            for ((ob, ib), pb) in o
                .chunks_mut(WIDE_BLOCK)
                .zip(i.chunks(WIDE_BLOCK))
                .zip(pattern.chunks(WIDE_BLOCK))
            {
                prefetch_at(ib, WIDE_PREFETCH);
                for ((o, &i), &m) in ob.iter_mut().zip(ib).zip(pb) {
                    *o = if ADD { i + m } else { i - m };
                }
            }
            continue;
        }
        for ((o, &i), &m) in o.iter_mut().zip(i).zip(pattern) {
            *o = if ADD { i + m } else { i - m };
        }
    }
    for ((o, &i), &m) in oc.into_remainder().iter_mut().zip(xc.remainder()).zip(pattern) {
        *o = if ADD { i + m } else { i - m };
    }
}

/// In-place twin of [`apply_pattern`].
#[inline(always)]
fn update_pattern<F: num_traits::Float, const ADD: bool>(x: &mut [F], pattern: &[F]) {
    let p = pattern.len();
    let mut xc = x.chunks_exact_mut(p);
    for c in &mut xc {
        if p > WIDE {
            // Wide rows (W3's 16384 features: a 128 KiB pattern, read from
            // L2 beside the row) ask for the row's lines `WIDE_PREFETCH`
            // ahead, a block at a time, as `sum_dd_rows_with` does. W3's
            // update from memory, two threads, three alternations of
            // none / 3 KiB / 8 KiB,
            // medians 17.5 / 22.8 / 22.3, 16.9 / 22.3 / 22.1 and 21.3 /
            // 20.5 / 21.0 GB/s; W3-only roofline, three alternations,
            // in-place 0.81 / 0.76 / 0.67 → 0.87 / 0.98 / 0.99 of the
            // update limit (AMD EPYC Zen 4).
            for (cb, pb) in c.chunks_mut(WIDE_BLOCK).zip(pattern.chunks(WIDE_BLOCK)) {
                prefetch_at(cb, WIDE_PREFETCH);
                for (v, &m) in cb.iter_mut().zip(pb) {
                    *v = if ADD { *v + m } else { *v - m };
                }
            }
            continue;
        }
        for (v, &m) in c.iter_mut().zip(pattern) {
            *v = if ADD { *v + m } else { *v - m };
        }
    }
    for (v, &m) in xc.into_remainder().iter_mut().zip(pattern) {
        *v = if ADD { *v + m } else { *v - m };
    }
}

/// `out = x ∓ mean` on contiguous rows (`x.len() % d == 0`; `pattern` is the
/// means repeated over one lane period, see `kernels::with_pattern`).
pub(crate) fn apply_rows<F: Element>(x: &[F], out: &mut [F], pattern: &[F], add: bool) {
    macro_rules! go {
        ($t:ty) => {
            if let (Some(x), Some(out), Some(pat)) = (cast::<F, $t>(x), cast_mut::<F, $t>(out), cast::<F, $t>(pattern))
            {
                if add {
                    dispatch!(apply_add(x, out, pat));
                } else {
                    dispatch!(apply_sub(x, out, pat));
                }
                return;
            }
        };
    }
    go!(f64);
    go!(f32);
    if add {
        apply_pattern::<F, true>(x, out, pattern)
    } else {
        apply_pattern::<F, false>(x, out, pattern)
    }
}

/// In-place twin of [`apply_rows`].
pub(crate) fn update_rows<F: Element>(x: &mut [F], pattern: &[F], add: bool) {
    macro_rules! go {
        ($t:ty) => {
            if let (Some(x), Some(pat)) = (cast_mut::<F, $t>(x), cast::<F, $t>(pattern)) {
                if add {
                    dispatch!(update_add(x, pat));
                } else {
                    dispatch!(update_sub(x, pat));
                }
                return;
            }
        };
    }
    go!(f64);
    go!(f32);
    if add {
        update_pattern::<F, true>(x, pattern)
    } else {
        update_pattern::<F, false>(x, pattern)
    }
}

/// [`apply_rows`] with non-temporal stores where the CPU has AVX: for
/// outputs far larger than the caches, written without reading their lines
/// first (an ordinary store reads each output line before writing it over).
/// Same values, bit for bit; elsewhere it is [`apply_rows`].
pub(crate) fn stream_rows<F: Element>(x: &[F], out: &mut [F], pattern: &[F], add: bool) {
    stream_rows_unfenced(x, out, pattern, add);
    store_fence();
}

/// [`stream_rows`] without its closing [`store_fence`]: for a run of calls
/// on one thread, fenced once at the end (a fence waits for every
/// write-combining buffer to drain: once per 16 KiB block halved W9's
/// `transform_into`).
pub(crate) fn stream_rows_unfenced<F: Element>(x: &[F], out: &mut [F], pattern: &[F], add: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2() && pattern.len() >= 8 {
        if let (Some(x), Some(o), Some(p)) = (cast::<F, f64>(x), cast_mut::<F, f64>(out), cast::<F, f64>(pattern)) {
            // SAFETY: the CPU has AVX2 (so AVX), checked just above.
            return unsafe { simd::stream_f64(x, o, p, add) };
        }
        if let (Some(x), Some(o), Some(p)) = (cast::<F, f32>(x), cast_mut::<F, f32>(out), cast::<F, f32>(pattern)) {
            // SAFETY: as above.
            return unsafe { simd::stream_f32(x, o, p, add) };
        }
    }
    apply_rows(x, out, pattern, add)
}

/// Orders this thread's non-temporal stores before its later stores (and
/// so before anything another thread sees after synchronising with it).
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2() {
        // SAFETY: SFENCE is SSE, part of the x86-64 baseline every CPU
        // running this code has; it only orders stores.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
}

/// `out = x ∓ m` for one feature's contiguous run.
pub(crate) fn apply_scalar<F: Element>(x: &[F], out: &mut [F], m: F, add: bool) {
    let pat = [m; 64];
    apply_rows(x, out, &pat, add)
}

/// In-place twin of [`apply_scalar`].
pub(crate) fn update_scalar<F: Element>(x: &mut [F], m: F, add: bool) {
    let pat = [m; 64];
    update_rows(x, &pat, add)
}

#[inline(always)]
fn apply_add<F: num_traits::Float>(x: &[F], out: &mut [F], pattern: &[F]) {
    apply_pattern::<F, true>(x, out, pattern)
}
#[inline(always)]
fn apply_sub<F: num_traits::Float>(x: &[F], out: &mut [F], pattern: &[F]) {
    apply_pattern::<F, false>(x, out, pattern)
}
#[inline(always)]
fn update_add<F: num_traits::Float>(x: &mut [F], pattern: &[F]) {
    update_pattern::<F, true>(x, pattern)
}
#[inline(always)]
fn update_sub<F: num_traits::Float>(x: &mut [F], pattern: &[F]) {
    update_pattern::<F, false>(x, pattern)
}

/// The vector steps of a [`stream_kernel`] over `n` values whose aligned
/// body starts at `head`, for a pattern of `p` means, `l` per vector:
/// `step(i, k)` for the vector at `i` whose means start at phase `k`.
/// Returns where the scalar tail starts. When the period is whole vectors
/// it walks whole periods, every vector of means at a fixed offset, with
/// no phase to wrap per vector (W9's `transform_into`, 3 features: 16–21 GB/s
/// of output before, on the reference VM, where a bare widening stream wrote
/// 26); the `add` branch is outside the loop, in the caller's two closures.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn stream_steps(n: usize, head: usize, p: usize, l: usize, step: impl Fn(usize, usize)) -> usize {
    let mut i = head;
    let mut k = head % p;
    if p.is_multiple_of(l) {
        // Vector `j` of a period reads the means from `k + j·l` (< p + l:
        // `k < l`, since `head < l ≤ p`).
        while i + p <= n {
            for j in 0..p / l {
                step(i + j * l, k + j * l);
            }
            i += p;
        }
    }
    while i + l <= n {
        step(i, k);
        i += l;
        k += l;
        if k >= p {
            k -= p;
        }
    }
    i
}

/// Defines `$name(x: &[$t], out: &mut [$o], pattern: &[$o], add: bool)`:
/// `out[i] = widen(x[i]) ∓ pattern[i mod p]`, `$lanes` at a time, the input
/// loaded (and widened) by `$load`, the aligned body written with the
/// non-temporal `$stream` (the caller fences), scalar head and tail, the
/// vectors walked by [`stream_steps`].
/// Compiled with `$features`; the caller checks the CPU has them.
#[cfg(target_arch = "x86_64")]
macro_rules! stream_kernel {
    ($name:ident, $features:literal, $t:ty => $o:ty, $lanes:expr, |$v:ident| $widen:expr, |$p:ident| $load:expr,
     $loadm:ident, $add:ident, $sub:ident, $stream:ident) => {
        #[target_feature(enable = $features)]
        pub(super) fn $name(x: &[$t], out: &mut [$o], pattern: &[$o], add: bool) {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let n = x.len().min(out.len());
            let p = pattern.len();
            let wide = |$v: $t| -> $o { $widen };
            let one = |i: usize| {
                if add {
                    wide(x[i]) + pattern[i % p]
                } else {
                    wide(x[i]) - pattern[i % p]
                }
            };
            // The pattern and its first L values again: a vector of means
            // from any phase `k < p` is `ext[k..k + L]`.
            let mut ext = Vec::with_capacity(p + L);
            ext.extend_from_slice(pattern);
            ext.extend_from_slice(&pattern[..L]);
            let head = out.as_ptr().align_offset(32).min(n);
            for i in 0..head {
                out[i] = one(i);
            }
            let (xp, op, ep) = (x.as_ptr(), out.as_mut_ptr(), ext.as_ptr());
            // SAFETY (both closures): `stream_steps` calls them with
            // `i + L ≤ n` — `L` values of `x` read (at most 32 bytes) and of
            // `out` written — and `k + L ≤ p + L` of `ext` read; `out[i..]`
            // is 32-byte aligned (`head` aligned it, each vector is 32 bytes).
            let tail = if add {
                $crate::kernels::contiguous::stream_steps(n, head, p, L, |i, k| unsafe {
                    let $p = xp.add(i);
                    let v = $load;
                    $stream(op.add(i), $add(v, $loadm(ep.add(k))));
                })
            } else {
                $crate::kernels::contiguous::stream_steps(n, head, p, L, |i, k| unsafe {
                    let $p = xp.add(i);
                    let v = $load;
                    $stream(op.add(i), $sub(v, $loadm(ep.add(k))));
                })
            };
            for j in tail..n {
                out[j] = one(j);
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use stream_kernel;

/// The same bodies compiled with wider instruction sets.
#[cfg(target_arch = "x86_64")]
mod simd {
    /// Every feature the `avx512` versions are compiled with.
    pub(super) fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") && has_avx2()
    }

    /// Every feature the `avx2` versions are compiled with.
    pub(super) fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    macro_rules! versions {
        ($name:ident, <$($g:ident),*>, ($($a:ident: $t:ty),*)) => {
            pub(super) mod $name {
                #[allow(unused_imports)]
                use num_traits::Float;
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                pub(crate) fn avx512<$($g: Float),*>($($a: $t),*) {
                    super::super::$name($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                pub(crate) fn avx2<$($g: Float),*>($($a: $t),*) {
                    super::super::$name($($a),*)
                }
            }
        };
    }
    stream_kernel!(stream_f64, "avx2", f64 => f64, 4, |v| v, |p| _mm256_loadu_pd(p), _mm256_loadu_pd, _mm256_add_pd, _mm256_sub_pd, _mm256_stream_pd);
    stream_kernel!(stream_f32, "avx2", f32 => f32, 8, |v| v, |p| _mm256_loadu_ps(p), _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);

    /// [`sum_dd_rows_with`](super::sum_dd_rows_with): FMA additions in
    /// both builds, register lanes with AVX-512's 32 registers only.
    pub(super) mod sum_dd_rows {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        pub(crate) fn avx512<F: num_traits::Float>(x: &[F], hi: &mut [F], lo: &mut [F]) {
            super::super::sum_dd_rows_with::<F, true, true>(x, hi, lo)
        }
        #[target_feature(enable = "avx2,fma")]
        pub(crate) fn avx2<F: num_traits::Float>(x: &[F], hi: &mut [F], lo: &mut [F]) {
            super::super::sum_dd_rows_with::<F, true, false>(x, hi, lo)
        }
    }
    versions!(sum_wide_rows, <>, (x: &[f32], acc: &mut [f64]));
    versions!(apply_add, <F>, (x: &[F], out: &mut [F], pattern: &[F]));
    versions!(apply_sub, <F>, (x: &[F], out: &mut [F], pattern: &[F]));
    versions!(update_add, <F>, (x: &mut [F], pattern: &[F]));
    versions!(update_sub, <F>, (x: &mut [F], pattern: &[F]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_a_multiple_of_d_and_16() {
        for d in 1..300 {
            let p = period(d);
            assert_eq!(p % d, 0);
            assert!(d >= 256 || p.is_multiple_of(16) && p >= 64);
        }
    }

    #[test]
    fn casts_only_between_equal_types() {
        let x = [1.0f64, 2.0];
        assert_eq!(cast::<f64, f64>(&x), Some(&x[..]));
        assert!(cast::<f64, f32>(&x).is_none());
        let mut y = [1.0f32];
        cast_mut::<f32, f32>(&mut y).unwrap()[0] = 3.0;
        assert_eq!(y[0], 3.0);
    }

    /// Every build of the double-word lanes — FMA additions or not, lanes
    /// in registers (a period of `REG_LANES`) or in memory, the dispatched,
    /// AVX-512 and AVX2 builds — adds the same bits as the plain loop:
    /// periods of 64 (the register lanes) and 80, a partial last period,
    /// and wide rows (four at a time), on values whose sums round, and on
    /// signed zeros into lanes that hold `-0`. The runs start from lanes
    /// that already hold sums, as a leaf's later runs do.
    #[test]
    fn every_dispatched_version_agrees() {
        type Body = fn(&[f64], &mut [f64], &mut [f64]);
        let mut bodies: Vec<(&str, Body)> = vec![
            ("fma", sum_dd_rows_with::<f64, true, false>),
            ("registers", sum_dd_rows_with::<f64, false, true>),
            ("fma + registers", sum_dd_rows_with::<f64, true, true>),
            ("dispatched", |x, h, l| dispatch!(sum_dd_rows(x, h, l))),
        ];
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx512() {
            bodies.push(("avx512", |x, h, l| {
                // SAFETY: pushed only where the CPU has AVX-512 F and VL, AVX2 and FMA.
                unsafe { simd::sum_dd_rows::avx512(x, h, l) }
            }));
        }
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2() {
            bodies.push(("avx2", |x, h, l| {
                // SAFETY: pushed only where the CPU has AVX2 and FMA.
                unsafe { simd::sum_dd_rows::avx2(x, h, l) }
            }));
        }
        let bits = |v: &(Vec<f64>, Vec<f64>)| {
            let b = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (b(&v.0), b(&v.1))
        };
        let x: Vec<f64> = (0..1000).map(|i| (i as f64).sin() * 1e3).collect();
        let y: Vec<f64> = (0..6000).map(|i| (i as f64).cos()).collect();
        // Signed zeros: `a·1 + b` must give the sign `a + b` gives.
        let z: Vec<f64> = (0..400).map(|i| [-0.0, 0.0, -0.0, 1.5, -1.5][i % 5]).collect();
        let from = |p: usize, v: f64| {
            (0..p)
                .map(|j| if j % 3 == 0 { v } else { 1e5 / (j as f64 + 1.0) })
                .collect::<Vec<_>>()
        };
        for (data, p, start, rounds) in [
            (&x, 64, from(64, 1.0), true),
            (&x, 80, from(80, 1.0), true),
            (&y, 600, from(600, 1.0), true),
            (&z, 64, from(64, -0.0), false),
        ] {
            let mut want = (start.clone(), vec![0.0; p]);
            for run in data.chunks(9 * p + 7) {
                sum_dd_rows(run, &mut want.0, &mut want.1);
            }
            for (name, body) in &bodies {
                let mut got = (start.clone(), vec![0.0; p]);
                for run in data.chunks(9 * p + 7) {
                    body(run, &mut got.0, &mut got.1);
                }
                assert_eq!(bits(&got), bits(&want), "{name}, period {p}");
            }
            assert!(
                !rounds || want.1.iter().any(|&l| l != 0.0),
                "period {p}: no sum rounded"
            );
        }
        let z: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let (mut f, mut g) = (vec![0.0; 600], vec![0.0; 600]);
        sum_wide(&z, &mut f);
        dispatch!(sum_wide_rows(&z, &mut g));
        assert_eq!(f, g);
    }

    /// `sum_wide_rows` adds each lane's values quad by quad, in the order
    /// the fused f16 kernels (`narrow::fused_f16_rows`) and `HalfAcc`'s
    /// blocks of whole quads rely on: the same bits as a plain
    /// quad-by-quad loop, on values over many decades (whose sums round),
    /// for periods that are and are not multiples of 16, with a partial
    /// quad. (A blocked version, lanes in registers down blocks of quads as
    /// the integer lanes do, read W4 slower from DRAM even with software
    /// prefetch: not kept.)
    #[test]
    fn wide_sums_are_the_quad_by_quad_sums() {
        fn quad_by_quad(x: &[f32], acc: &mut [f64]) {
            let p = acc.len();
            let mut quads = x.chunks_exact(4 * p);
            for q in &mut quads {
                for (j, s) in acc.iter_mut().enumerate() {
                    *s += f64::from(q[j]) + f64::from(q[p + j]) + f64::from(q[2 * p + j]) + f64::from(q[3 * p + j]);
                }
            }
            sum_wide(quads.remainder(), acc);
        }
        for p in [64usize, 96, 272, 600] {
            let n = p * 4 * 23 + 3 * p;
            let x: Vec<f32> = (0..n)
                .map(|i| ((i as f32 * 0.61).sin() + 0.1) * 10f32.powi((i * 7 % 61) as i32 - 30))
                .collect();
            let mut want = vec![0.5; p];
            quad_by_quad(&x, &mut want);
            let mut got = vec![0.5; p];
            sum_wide_rows(&x, &mut got);
            let bits = |v: &[f64]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "period {p}");
            let mut naive = vec![0.5; p];
            sum_wide(&x, &mut naive);
            assert_ne!(
                bits(&naive),
                bits(&want),
                "period {p}: the data does not tell orders apart"
            );
        }
    }

    /// Non-temporal stores give `apply_rows`'s values at every alignment of
    /// the output, for pattern lengths that are and are not multiples of
    /// the vector width.
    #[test]
    fn streamed_stores_agree_at_every_alignment() {
        let x: Vec<f64> = (0..3001).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        for p in [64usize, 96, 257, 300] {
            let pat: Vec<f64> = (0..p).map(|j| j as f64 * 0.25 - 7.0).collect();
            let pat32: Vec<f32> = pat.iter().map(|&v| v as f32).collect();
            for off in 0..8 {
                for add in [false, true] {
                    let n = x.len() - off;
                    let (mut want, mut got) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                    apply_rows(&x[..n], &mut want[off..], &pat, add);
                    stream_rows(&x[..n], &mut got[off..], &pat, add);
                    assert_eq!(want, got, "f64, p = {p}, offset {off}");
                    let (mut want, mut got) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
                    apply_rows(&x32[..n], &mut want[off..], &pat32, add);
                    stream_rows(&x32[..n], &mut got[off..], &pat32, add);
                    assert_eq!(want, got, "f32, p = {p}, offset {off}");
                }
            }
        }
    }

    /// Every compiled version of every kernel, called directly (not only the
    /// one dispatch picks on this machine), gives the baseline's bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_compiled_version_agrees_bit_for_bit() {
        type Versions<A> = Vec<(&'static str, A)>;
        type SumDd = fn(&[f64], &mut [f64], &mut [f64]);
        type SumWide = fn(&[f32], &mut [f64]);
        type Apply = fn(&[f32], &mut [f32], &[f32]);
        type Update = fn(&mut [f64], &[f64]);
        let x: Vec<f64> = (0..6007).map(|i| (i as f64 * 0.37).sin() * 1e3 + 1e6).collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();

        let mut sums: Versions<SumDd> = vec![("baseline", sum_dd_rows::<f64>)];
        let mut wides: Versions<SumWide> = vec![("baseline", sum_wide_rows)];
        let mut applies: Versions<Apply> = vec![("baseline add", apply_add::<f32>), ("baseline sub", apply_sub::<f32>)];
        let mut updates: Versions<Update> =
            vec![("baseline add", update_add::<f64>), ("baseline sub", update_sub::<f64>)];
        // SAFETY (all closures below): each is called only after the
        // matching feature check just before it is pushed.
        if simd::has_avx2() {
            sums.push(("avx2", |x, h, l| unsafe { simd::sum_dd_rows::avx2(x, h, l) }));
            wides.push(("avx2", |x, a| unsafe { simd::sum_wide_rows::avx2(x, a) }));
            applies.push(("avx2 add", |x, o, p| unsafe { simd::apply_add::avx2(x, o, p) }));
            applies.push(("avx2 sub", |x, o, p| unsafe { simd::apply_sub::avx2(x, o, p) }));
            updates.push(("avx2 add", |x, p| unsafe { simd::update_add::avx2(x, p) }));
            updates.push(("avx2 sub", |x, p| unsafe { simd::update_sub::avx2(x, p) }));
        }
        if simd::has_avx512() {
            sums.push(("avx512", |x, h, l| unsafe { simd::sum_dd_rows::avx512(x, h, l) }));
            wides.push(("avx512", |x, a| unsafe { simd::sum_wide_rows::avx512(x, a) }));
            applies.push(("avx512 add", |x, o, p| unsafe { simd::apply_add::avx512(x, o, p) }));
            applies.push(("avx512 sub", |x, o, p| unsafe { simd::apply_sub::avx512(x, o, p) }));
            updates.push(("avx512 add", |x, p| unsafe { simd::update_add::avx512(x, p) }));
            updates.push(("avx512 sub", |x, p| unsafe { simd::update_sub::avx512(x, p) }));
        }
        for lanes in [64usize, 600] {
            let run = |f: SumDd| {
                let (mut h, mut l) = (vec![0.0; lanes], vec![0.0; lanes]);
                f(&x[..x.len() / lanes * lanes], &mut h, &mut l);
                (h, l)
            };
            let want = run(sums[0].1);
            for (name, f) in &sums {
                assert_eq!(run(*f), want, "sum_dd_rows {name}, {lanes} lanes");
            }
            let run = |f: SumWide| {
                let mut a = vec![0.0; lanes];
                f(&x32[..x32.len() / lanes * lanes], &mut a);
                a
            };
            let want = run(wides[0].1);
            for (name, f) in &wides {
                assert_eq!(run(*f), want, "sum_wide_rows {name}, {lanes} lanes");
            }
        }
        // Periods of 64 and of 600 (wider than `WIDE`: blocks of
        // `WIDE_BLOCK` lanes with prefetches, the last one partial), over a
        // length with a partial last period.
        for p in [64usize, 600] {
            let pat: Vec<f64> = (0..p).map(|j| j as f64 * 0.5 - 3.0).collect();
            let pat32: Vec<f32> = pat.iter().map(|&v| v as f32).collect();
            for (name, f) in &applies {
                let mut out = vec![0.0f32; x32.len()];
                f(&x32, &mut out, &pat32);
                let add = name.ends_with("add");
                for (i, (&o, &v)) in out.iter().zip(&x32).enumerate() {
                    let m = pat32[i % p];
                    assert_eq!(o, if add { v + m } else { v - m }, "{name} at {i}, period {p}");
                }
            }
            for (name, f) in &updates {
                let mut y = x.clone();
                f(&mut y, &pat);
                let add = name.ends_with("add");
                for (i, (&o, &v)) in y.iter().zip(&x).enumerate() {
                    let m = pat[i % p];
                    assert_eq!(o, if add { v + m } else { v - m }, "{name} at {i}, period {p}");
                }
            }
        }
    }
}
