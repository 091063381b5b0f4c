//! Fast paths for inputs narrower than the sums: integers summed in integer
//! lanes, half-precision values widened a block at a time.
//!
//! Both keep [`contiguous`](super::contiguous)'s scheme — `p` lanes, lane
//! `j` only ever sees feature `j mod d` — and plug into the same trees
//! through [`Lanes`].
//!
//! **Integers** (`u8` … `i64`): lane `j` adds the values in the narrowest
//! integer type that cannot overflow for [`IntLane::FLUSH`] rows of lanes
//! (`u16` for `u8`: 257 · 255 < 2¹⁶; `i128` for the 64-bit types, in
//! scalar adds), then is flushed into an `i128` total.
//! Integer additions are exact, so the sums are exact, whatever the split,
//! the order or the instruction set. On AVX2 a `u8` lane add is one
//! widening and one add per 16 values, where widening to `f64` and a
//! double-word sum took about a hundred instructions.
//!
//! **Half precision** (`f16`, `bf16`): a block of values is widened to
//! `f32` in an L1-sized buffer (F16C where the CPU has it) and summed by
//! the `f32` kernel into `f64` lanes, exactly as an `f32` batch; `f16` rows
//! are widened in registers instead where the CPU has F16C (to `f32`, then
//! `f64`) or AVX-512 FP16 (straight to `f64`), with the same bits.

use ndarray::{ArrayView1, ArrayViewD};

use super::contiguous::{RowAcc, cast_mut};
use crate::input::__private::{Batch, IntBatch};
use crate::state::Dd;
use crate::{Element, Input};

/// What a leaf of the reduction tree accumulates contiguous runs of whole
/// rows into.
pub(crate) trait Lanes<T>: Sized {
    /// Empty lanes for rows of `d` features.
    fn new(d: usize) -> Self;
    /// Adds a contiguous run of whole rows (`x.len() % d == 0`).
    fn push(&mut self, x: &[T]);
    /// Folds the lanes into per-feature sums, added to `out`.
    fn finish(self, out: &mut [Dd<f64>]);
    /// The most elements a leaf of the reduction tree holds for rows of
    /// `d` features: the leaves fix the rounding of inexact sums.
    fn leaf_len(d: usize) -> usize {
        super::reduce::leaf_len(d)
    }
}

impl<F: Element> Lanes<F> for RowAcc<F> {
    fn new(d: usize) -> Self {
        RowAcc::new(d)
    }
    fn push(&mut self, x: &[F]) {
        RowAcc::push(self, x);
    }
    fn finish(self, out: &mut [Dd<f64>]) {
        RowAcc::finish(self, out);
    }
}

/// An integer input type and the lane type its sums are kept in.
pub(crate) trait IntLane: Copy + Send + Sync + 'static {
    /// The lane type: wide enough for [`FLUSH`](Self::FLUSH) values.
    type Acc: Copy + Default + Send + Sync;
    /// How many values a lane may add before it must be flushed.
    const FLUSH: usize;
    /// `a + x` in the lane type (never wraps within `FLUSH` additions).
    fn add(a: Self::Acc, x: Self) -> Self::Acc;
    /// The lane's value, exactly.
    fn total(a: Self::Acc) -> i128;
}

macro_rules! int_lane {
    ($t:ty, $acc:ty, $flush:expr) => {
        impl IntLane for $t {
            type Acc = $acc;
            const FLUSH: usize = $flush;
            #[inline(always)]
            fn add(a: $acc, x: $t) -> $acc {
                a.wrapping_add(<$acc>::from(x))
            }
            #[inline(always)]
            fn total(a: $acc) -> i128 {
                // Lossless: every lane type converts to i128 exactly.
                i128::from(a)
            }
        }
    };
}
// 257 · 255 = 65535; 256 · 128 = 32768; 65537 · 65535 = 2³² − 1;
// 65536 · 32768 = 2³¹; 2³⁰ · 2³² = 2⁶².
int_lane!(u8, u16, 257);
int_lane!(i8, i16, 256);
int_lane!(u16, u32, 65537);
int_lane!(i16, i32, 65536);
int_lane!(u32, u64, 1 << 30);
int_lane!(i32, i64, 1 << 30);
// A lane of `i128`s cannot wrap (2⁶³ values below 2⁶⁴); flushed every 2¹²
// rows all the same, which costs nothing and keeps the flush tested.
int_lane!(u64, i128, 1 << 12);
int_lane!(i64, i128, 1 << 12);

/// The most elements a leaf of integer lanes holds (see `IntAcc::leaf_len`).
const INT_LEAF: usize = 1 << 18;

/// One leaf's integer lanes.
pub(crate) struct IntAcc<T: IntLane> {
    d: usize,
    lanes: Vec<T::Acc>,
    totals: Vec<i128>,
    /// The most values any lane added since the last flush.
    pending: usize,
}

impl<T: IntLane> IntAcc<T> {
    fn flush(&mut self) {
        for (t, a) in self.totals.iter_mut().zip(self.lanes.iter_mut()) {
            *t += T::total(*a);
            *a = T::Acc::default();
        }
        self.pending = 0;
    }
}

/// The integer lanes' period for `d` features: a multiple of `d` and of 32
/// (one AVX2 register of `u8`), at least 64.
fn int_period(d: usize) -> usize {
    if d >= 256 {
        return d;
    }
    let l = d / gcd(d, 32) * 32;
    l * 64usize.div_ceil(l)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<T: IntLane> Lanes<T> for IntAcc<T> {
    fn new(d: usize) -> Self {
        let p = int_period(d);
        IntAcc {
            d,
            lanes: vec![T::Acc::default(); p],
            totals: vec![0; p],
            pending: 0,
        }
    }

    fn push(&mut self, mut x: &[T]) {
        let p = self.lanes.len();
        while !x.is_empty() {
            // Whole periods up to the next flush: `rest` starts at lane 0,
            // feature 0, as `x` does.
            let room = (T::FLUSH - self.pending).saturating_mul(p);
            let (head, rest) = x.split_at(x.len().min(room));
            sum_int_dispatched(head, &mut self.lanes);
            self.pending += head.len().div_ceil(p);
            if self.pending >= T::FLUSH {
                self.flush();
            }
            x = rest;
        }
    }

    /// Exact sums have no rounding for leaves to fix: larger leaves, so
    /// that setting up and folding the lanes stays under 1% of a leaf
    /// (at [`LEAF`](super::tree::LEAF), 3-feature `u8` rows spent 10% of
    /// their time there). A lane adds at most `INT_LEAF / 64` values per
    /// leaf: its `i128` total stays below 2⁸², exact in a double-word.
    fn leaf_len(d: usize) -> usize {
        INT_LEAF.max(super::reduce::leaf_len(d))
    }

    fn finish(mut self, out: &mut [Dd<f64>]) {
        self.flush();
        let d = self.d;
        let mut per_feature = vec![0i128; d];
        for totals in self.totals.chunks(d) {
            for (f, &t) in per_feature.iter_mut().zip(totals) {
                *f += t;
            }
        }
        for (o, t) in out.iter_mut().zip(per_feature) {
            *o = o.add(exact_pair(t));
        }
    }
}

/// An integer input's value as an `i128`, exactly: `hi + lo` of
/// [`Input::widen_pair`], both integers (for the 64-bit types, whose
/// `widen` alone rounds).
#[inline(always)]
pub(super) fn exact_int<T: Input>(x: T) -> i128 {
    let (hi, lo) = x.widen_pair();
    hi as i128 + lo as i128
}

/// An integer as a normalised `f64` double-word, exactly (`|t| < 2¹⁰⁶`).
pub(super) fn exact_pair(t: i128) -> Dd<f64> {
    let hi = t as f64;
    // `t − hi` is at most half an ulp of `hi`: an integer below 2⁵³ for
    // the leaf totals here (|t| < 2⁸²: 2¹⁸ values below 2⁶⁴), exact in an f64.
    let lo = (t - hi as i128) as f64;
    Dd { hi, lo }
}

/// Bytes of input a block of [`sum_int`] spans: its lane chunks are summed
/// across it one after the other, so it should stay in L1.
const INT_BLOCK_BYTES: usize = 16 << 10;

/// `lanes[j] += x[k·p + j]` for every whole or partial period `k`.
///
/// The lanes are summed 32 at a time (one AVX2 register of `u8`; a period
/// is a multiple of 32 below 256 features) down a block of periods, in
/// registers: updating them in memory period by period made every period
/// wait for the last one's stores (3 features: 9 GB/s in L2 on the
/// reference VM), and left to itself the compiler split a 96-lane period
/// into 64 lanes and a narrow epilogue that took half the time. Integer
/// sums are exact, so the order is free.
#[inline(always)]
fn sum_int<T: IntLane>(x: &[T], lanes: &mut [T::Acc]) {
    let p = lanes.len();
    let whole = x.len() / p;
    let (periods, rest) = x.split_at(whole * p);
    let in_registers = match p {
        64 => sum_int_periods::<T, 64>(periods, lanes),
        96 => sum_int_periods::<T, 96>(periods, lanes),
        128 => sum_int_periods::<T, 128>(periods, lanes),
        _ => false,
    };
    if !in_registers {
        sum_int_blocked(periods, lanes);
    }
    for (a, &v) in lanes.iter_mut().zip(rest) {
        *a = T::add(*a, v);
    }
}

/// [`sum_int`]'s whole periods (`periods.len()` a multiple of the period),
/// 32 lanes at a time down each L1-sized block.
#[inline(always)]
fn sum_int_blocked<T: IntLane>(periods: &[T], lanes: &mut [T::Acc]) {
    const W: usize = 32;
    let p = lanes.len();
    let per_block = (INT_BLOCK_BYTES / (p * std::mem::size_of::<T>())).max(1);
    for block in periods.chunks(per_block * p) {
        let mut c = 0;
        while c + W <= p {
            if let Ok(acc) = <&mut [T::Acc; W]>::try_from(&mut lanes[c..c + W]) {
                let mut a = *acc;
                for period in block.chunks_exact(p) {
                    if let Ok(v) = <&[T; W]>::try_from(&period[c..c + W]) {
                        for j in 0..W {
                            a[j] = T::add(a[j], v[j]);
                        }
                    }
                }
                *acc = a;
            }
            c += W;
        }
        if c < p {
            for period in block.chunks_exact(p) {
                for (a, &v) in lanes[c..].iter_mut().zip(&period[c..]) {
                    *a = T::add(*a, v);
                }
            }
        }
    }
}

/// Bytes of lanes [`sum_int_periods`] keeps in registers: 12 of AVX2's 16.
const INT_REGISTER_BYTES: usize = 384;

/// [`sum_int`]'s whole periods when a period of `P` lanes fits in
/// registers (`false`, nothing summed, otherwise): read once, in order, every
/// lane of a period added as it streams by. Going down each 32-lane chunk
/// of an L1 block in turn read every block `P / 32` times, each pass
/// skipping a third of its cache lines, which held 3-feature `u8` rows to
/// 0.71 of a plain read's speed on one core of the reference VM.
#[inline(always)]
fn sum_int_periods<T: IntLane, const P: usize>(periods: &[T], lanes: &mut [T::Acc]) -> bool {
    if P * std::mem::size_of::<T::Acc>() > INT_REGISTER_BYTES {
        return false;
    }
    let Ok(acc) = <&mut [T::Acc; P]>::try_from(lanes) else {
        return false;
    };
    let mut a = *acc;
    for period in periods.chunks_exact(P) {
        if let Ok(v) = <&[T; P]>::try_from(period) {
            for j in 0..P {
                a[j] = T::add(a[j], v[j]);
            }
        }
    }
    *acc = a;
    true
}

/// [`sum_int`] compiled for AVX2 (integer lanes need AVX-512BW to go wider,
/// which buys nothing at memory speed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_int_avx2<T: IntLane>(x: &[T], lanes: &mut [T::Acc]) {
    sum_int(x, lanes)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX2 and F16C: what every f16 kernel here is compiled with.
pub(crate) fn has_avx2_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn sum_int_dispatched<T: IntLane>(x: &[T], lanes: &mut [T::Acc]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, the one feature `sum_int_avx2` is
        // compiled with, checked just above.
        return unsafe { sum_int_avx2(x, lanes) };
    }
    sum_int(x, lanes)
}

/// Half-precision values a leaf widens at a time: 16 KiB of `f32`.
#[cfg(feature = "half")]
const HALF_BLOCK: usize = 4096;

/// One leaf's lanes for half-precision rows: widened to `f32` a block at a
/// time, summed as `f32` is.
#[cfg(feature = "half")]
pub(crate) struct HalfAcc {
    buf: Vec<f32>,
    acc: RowAcc<f32>,
}

/// A half-precision type the `half` crate widens slices of.
#[cfg(feature = "half")]
pub(crate) trait Half: Copy + Send + Sync + 'static {
    /// Whether every lane sum of a leaf of [`INT_LEAF`] elements is exact
    /// in `f64`, so that larger leaves change no bit.
    const EXACT_LANES: bool = false;

    fn widen_slice(x: &[Self], out: &mut [f32]);

    /// What widening `x` a block of whole quads at a time and summing it
    /// with `sum_wide_rows` adds to the lanes `acc`, done in registers
    /// without the buffer, where the CPU can (`false`, having done nothing,
    /// elsewhere).
    fn sum_fused(_x: &[Self], _acc: &mut [f64]) -> bool {
        false
    }
}

#[cfg(feature = "half")]
impl Half for half::f16 {
    /// An `f16` is `k·2⁻²⁴` with `|k| < 2⁴⁰` and `|v| ≤ 65504 < 2¹⁶`; a
    /// lane of such a leaf adds at most `INT_LEAF / 64 = 2¹²` of them
    /// (256 for wide rows), so each partial sum is a multiple of 2⁻²⁴
    /// below 2²⁸: 52 bits, exact in `f64`, in any order. (`bf16` spans
    /// `f32`'s exponents: its sums round.)
    const EXACT_LANES: bool = true;
    fn widen_slice(x: &[Self], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_f16c() {
            // SAFETY: the CPU has AVX2 and F16C, the features
            // `f16_to_f32_f16c` is compiled with, checked just above.
            return unsafe { f16_to_f32_f16c(x, out) };
        }
        use half::slice::HalfFloatSliceExt;
        let n = x.len().min(out.len());
        x[..n].convert_to_f32_slice(&mut out[..n]);
    }

    fn sum_fused(x: &[Self], acc: &mut [f64]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Some((_, kernel)) = fused_f16_kernels().into_iter().flatten().next() {
            kernel(x, acc);
            return true;
        }
        let _ = (x, acc);
        false
    }
}

/// A fused f16 kernel ([`fused_f16_rows`] with one instruction set's
/// widening), callable where [`fused_f16_kernels`] returned it.
#[cfg(all(feature = "half", target_arch = "x86_64"))]
type FusedF16 = fn(&[half::f16], &mut [f64]);

/// The fused f16 kernels this CPU can run, the fastest first, each with its
/// name: what [`Half::sum_fused`] picks from (the first) and what the tests
/// run (all of them).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
fn fused_f16_kernels() -> [Option<(&'static str, FusedF16)>; 3] {
    let fp16: FusedF16 = |x, acc| {
        // SAFETY: returned only where `has_avx512_fp16` holds: the CPU has
        // AVX-512 F (the function's feature) and FP16 (its assembly's).
        unsafe { sum_f16_rows_fp16(x, acc) }
    };
    let avx512: FusedF16 = |x, acc| {
        // SAFETY: returned only where the CPU has AVX-512 F, AVX2 and F16C,
        // the features `sum_f16_rows_avx512` is compiled with.
        unsafe { sum_f16_rows_avx512(x, acc) }
    };
    let f16c: FusedF16 = |x, acc| {
        // SAFETY: returned only where the CPU has AVX2 and F16C, the
        // features `sum_f16_rows_f16c` is compiled with.
        unsafe { sum_f16_rows_f16c(x, acc) }
    };
    [
        has_avx512_fp16().then_some(("fp16", fp16)),
        has_avx512_f16c().then_some(("avx512", avx512)),
        has_avx2_f16c().then_some(("f16c", f16c)),
    ]
}

/// AVX-512 F, AVX2 and F16C: eight `f16`s widened to `f32` in a `ymm`,
/// then to `f64` in one `zmm`.
pub(crate) fn has_avx512_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && has_avx2_f16c()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512 F, BW and FP16 (Intel Sapphire Rapids and later), and what
/// [`has_avx512_f16c`] asks: `vcvtph2pd` widens eight `f16`s straight to
/// `f64`.
pub(crate) fn has_avx512_fp16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512_f16c()
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512fp16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`Half::sum_fused`] for `f16`, the loop every fused kernel shares:
/// each lane adds, quad of periods by quad, `f64(a) + f64(b) + f64(c) +
/// f64(d)` in that order, eight lanes at a time, and the periods after the
/// last whole quad one by one — `sum_wide_rows` on the widened values,
/// whose blocks are whole quads (`HalfAcc::new`), so the same bits
/// (`fused_f16_sums_are_the_widened_sums`). Widening in registers saves
/// the buffer's store and reload: W12's fit was bound by it.
///
/// `widen` is eight `f16`s as a vector of their eight `f64`s (exactly),
/// `add` adds two such vectors lane by lane, `load`/`store` read and write
/// eight lanes of `acc`: the callers' intrinsics, inlined here. With
/// `REGS` (32 vector registers of eight lanes: AVX-512), periods of 64, 96
/// or 128 lanes stay in registers from the first quad to the last
/// ([`fused_f16_quads_in_registers`]).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[inline(always)]
fn fused_f16_rows<V: Copy, const REGS: bool>(
    x: &[half::f16],
    acc: &mut [f64],
    widen: impl Fn(&[half::f16; 8]) -> V,
    add: impl Fn(V, V) -> V,
    load: impl Fn(&[f64; 8]) -> V,
    store: impl Fn(&mut [f64; 8], V),
) {
    let p = acc.len();
    let quads = x.len() / (4 * p) * (4 * p);
    let (whole, rest) = x.split_at(quads);
    let in_registers = REGS
        && match p {
            64 => fused_f16_quads_in_registers::<8, V>(whole, acc, &widen, &add, &load, &store),
            96 => fused_f16_quads_in_registers::<12, V>(whole, acc, &widen, &add, &load, &store),
            128 => fused_f16_quads_in_registers::<16, V>(whole, acc, &widen, &add, &load, &store),
            _ => false,
        };
    if !in_registers {
        for q in whole.chunks_exact(4 * p) {
            super::contiguous::prefetch_at(q, F16_PREFETCH);
            let (a, rest) = q.split_at(p);
            let (b, rest) = rest.split_at(p);
            let (c, d) = rest.split_at(p);
            let (lanes, tail) = acc.as_chunks_mut::<8>();
            let (a8, b8, c8, d8) = (
                a.as_chunks::<8>().0,
                b.as_chunks::<8>().0,
                c.as_chunks::<8>().0,
                d.as_chunks::<8>().0,
            );
            for ((((s, a), b), c), d) in lanes.iter_mut().zip(a8).zip(b8).zip(c8).zip(d8) {
                store(s, add(load(s), add(add(add(widen(a), widen(b)), widen(c)), widen(d))));
            }
            let j = p - tail.len();
            for (k, s) in tail.iter_mut().enumerate() {
                let j = j + k;
                *s += a[j].to_f64() + b[j].to_f64() + c[j].to_f64() + d[j].to_f64();
            }
        }
    }
    for period in rest.chunks(p) {
        for (a, v) in acc.iter_mut().zip(period) {
            *a += v.to_f64();
        }
    }
}

/// How far ahead [`fused_f16_rows`]' loop of lanes in memory asks for the
/// input's lines (into L2, as `contiguous::prefetch_ahead`). The F16C
/// kernel runs it (the AVX-512 ones too, for periods they cannot hold in
/// registers). On an AMD EPYC (Zen 3, AVX2 + F16C, no AVX-512) that
/// kernel is bound by its conversions (one `vcvtph2ps` and two `vcvtps2pd`
/// per eight values, on what measures as one conversion pipe: 14.3 GB/s of
/// `f16` on one core in L2, 21.5 with the `f32` → `f64` conversions alone,
/// 43 with the `f16` → `f32` ones alone), and from memory its two threads
/// read W12 at 16.7–18.6 GB/s without prefetching; asked 1–4 KiB ahead,
/// 21.7–25.9 (W12-shaped data, two threads, three alternations of 0, 1, 2,
/// 3, 4, 6 KiB: 4 KiB 23.9–24.9; in three alternations of 0, 3, 8 KiB
/// before them, 8 KiB 19.4–22.0). W12-only roofline runs
/// alternated with the kernel without it, three pairs: 0.72 / 0.62 / 0.65
/// → 0.87 / 0.84 / 0.89 of the read limit. Not measured on Zen 4, whose
/// AVX-512 kernel holds W12's lanes in registers and does not run this
/// loop (session 9 found prefetching slower there, in an earlier kernel).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
const F16_PREFETCH: usize = 4096;

/// [`fused_f16_rows`]' whole quads for a period of `8·G` lanes (`false`,
/// having done nothing, for another period), the lanes held in `G` vector
/// registers from the first quad to the last: each quad's additions as
/// the loop's (`lane + (((a + b) + c) + d)`), without a load and a store
/// of the lanes per eight values. W12 (`D` = 3: 96 lanes) on an AMD EPYC
/// (Zen 4): see the AVX-512 kernel.
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[inline(always)]
fn fused_f16_quads_in_registers<const G: usize, V: Copy>(
    x: &[half::f16],
    acc: &mut [f64],
    widen: &impl Fn(&[half::f16; 8]) -> V,
    add: &impl Fn(V, V) -> V,
    load: &impl Fn(&[f64; 8]) -> V,
    store: &impl Fn(&mut [f64; 8], V),
) -> bool {
    let Ok(lanes) = <&mut [[f64; 8]; G]>::try_from(acc.as_chunks_mut::<8>().0) else {
        return false;
    };
    let mut r: [V; G] = std::array::from_fn(|g| load(&lanes[g]));
    for q in x.chunks_exact(32 * G) {
        let (v, _) = q.as_chunks::<8>();
        for g in 0..G {
            r[g] = add(
                r[g],
                add(
                    add(add(widen(&v[g]), widen(&v[G + g])), widen(&v[2 * G + g])),
                    widen(&v[3 * G + g]),
                ),
            );
        }
    }
    for (s, v) in lanes.iter_mut().zip(r) {
        store(s, v);
    }
    true
}

/// [`fused_f16_rows`] with F16C: eight `f16`s to `f32` (`vcvtph2ps`), each
/// half of them to four `f64`s (`vcvtps2pd`).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,f16c")]
fn sum_f16_rows_f16c(x: &[half::f16], acc: &mut [f64]) {
    use std::arch::x86_64::{
        __m128i, __m256d, _mm_loadu_si128, _mm256_add_pd, _mm256_castps256_ps128, _mm256_cvtph_ps, _mm256_cvtps_pd,
        _mm256_extractf128_ps, _mm256_loadu_pd, _mm256_storeu_pd,
    };
    fused_f16_rows::<_, false>(
        x,
        acc,
        |v| {
            // SAFETY: `v` is 8 `f16`s, 16 readable bytes (an unaligned load).
            let h = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(v.as_ptr().cast::<__m128i>()) });
            (
                _mm256_cvtps_pd(_mm256_castps256_ps128(h)),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(h)),
            )
        },
        |a: (__m256d, __m256d), b: (__m256d, __m256d)| (_mm256_add_pd(a.0, b.0), _mm256_add_pd(a.1, b.1)),
        // SAFETY (both): `lanes` is 8 `f64`s: two unaligned loads or
        // stores of 4.
        |lanes| unsafe { (_mm256_loadu_pd(lanes.as_ptr()), _mm256_loadu_pd(lanes.as_ptr().add(4))) },
        |lanes, s| unsafe {
            _mm256_storeu_pd(lanes.as_mut_ptr(), s.0);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), s.1);
        },
    );
}

/// [`fused_f16_rows`] with AVX-512 F and F16C: eight `f16`s to `f32` in a
/// `ymm` (`vcvtph2ps`), all eight to `f64` in one `zmm` (`vcvtps2pd`), and
/// the eight lanes added as one vector: half the instructions
/// of the AVX2 kernel, no lane extract. W12's fit, AMD EPYC Zen 4, against
/// the AVX2 kernel alternated: one thread in L2 29.6 → 38.7 GB/s, one
/// thread from DRAM 15.0 → 18.9; in eleven alternated W12-only roofline
/// runs, 0.82–0.96 (median 0.91) of the read limit against 0.54–0.87
/// (median 0.79). (Session 10's AVX-512 kernel widened sixteen values to a
/// `zmm` of `f32` and split it with `vextractf32x8`: no faster from DRAM.)
///
/// Its additions are `a·1 + b` by FMA, `a + b` bit for bit (one rounding
/// of an exact `a·1`; the sums of `f16`s are exact anyway): on Zen 4 the
/// conversions and the additions share two pipes, and the FMA units sit on
/// two others. With W12's 96 lanes in registers as well (one thread in L2,
/// medians of five alternated): 38.5 → 50.0 GB/s (FMA additions alone
/// 45.7, registers alone 38.9); one thread from DRAM, eight alternated,
/// 13.1–18.7 → 18.4–21.7.
/// Not measured on Intel cores, which run additions and FMAs on the same
/// ports (the FMA's latency is longer; the lanes' chains are short).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[target_feature(enable = "avx512f,avx2,f16c")]
fn sum_f16_rows_avx512(x: &[half::f16], acc: &mut [f64]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm512_cvtps_pd};
    let widen = |v: &[half::f16; 8]| {
        // SAFETY: `v` is 8 `f16`s, 16 readable bytes (an unaligned load).
        let h = unsafe { _mm_loadu_si128(v.as_ptr().cast::<__m128i>()) };
        _mm512_cvtps_pd(_mm256_cvtph_ps(h))
    };
    // SAFETY: the CPU has AVX-512 F (this function's feature).
    unsafe { fused_f16_rows_avx512(x, acc, widen) };
}

/// [`fused_f16_rows`] as both AVX-512 kernels run it: eight lanes per
/// `zmm`, the additions `a·1 + b` by FMA (the `1` opaque, so that the
/// compiler keeps the FMA), the lanes in registers; `widen` is the
/// kernel's.
///
/// # Safety
///
/// The CPU has AVX-512 F.
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[inline(always)]
unsafe fn fused_f16_rows_avx512(
    x: &[half::f16],
    acc: &mut [f64],
    widen: impl Fn(&[half::f16; 8]) -> std::arch::x86_64::__m512d,
) {
    use std::arch::x86_64::{_mm512_fmadd_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_storeu_pd};
    // SAFETY: the CPU has AVX-512 F (this function's contract); `lanes` is
    // 8 `f64`s, 64 bytes, for each unaligned load and store.
    unsafe {
        let one = _mm512_set1_pd(std::hint::black_box(1.0));
        fused_f16_rows::<_, true>(
            x,
            acc,
            widen,
            |a, b| _mm512_fmadd_pd(a, one, b),
            |lanes| _mm512_loadu_pd(lanes.as_ptr()),
            |lanes, s| _mm512_storeu_pd(lanes.as_mut_ptr(), s),
        );
    }
}

/// [`fused_f16_rows`] with AVX-512 FP16: eight `f16`s to eight `f64`s in
/// one `vcvtph2pd`, where F16C takes a widening to `f32` and one or two
/// more conversions. Written as inline assembly: its intrinsic is stable
/// only since Rust 1.94, above the crate's `rust-version`. Not measured:
/// the CPU this was written on (AMD Zen 4) has no FP16; its loop is
/// `fused_f16_rows`, which the tests run here through the other kernels,
/// and the tests run this one where FP16 exists.
///
/// # Safety
/// The CPU must have AVX-512 FP16 ([`has_avx512_fp16`]): the function's
/// target feature (`avx512f`, for the `zmm` registers) does not say so.
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[target_feature(enable = "avx512f")]
unsafe fn sum_f16_rows_fp16(x: &[half::f16], acc: &mut [f64]) {
    use std::arch::x86_64::__m512d;
    let widen = |v: &[half::f16; 8]| {
        let z: __m512d;
        // SAFETY: `v` is 8 `f16`s, the 16 readable bytes `vcvtph2pd`
        // reads (unaligned is allowed); it writes `z` alone. The CPU has
        // AVX-512 FP16: this function's contract.
        unsafe {
            std::arch::asm!(
                "vcvtph2pd {z}, xmmword ptr [{p}]",
                p = in(reg) v.as_ptr(),
                z = out(zmm_reg) z,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        z
    };
    // SAFETY: the CPU has AVX-512 F (this function's feature).
    unsafe { fused_f16_rows_avx512(x, acc, widen) };
}

#[cfg(feature = "half")]
impl Half for half::bf16 {
    fn widen_slice(x: &[Self], out: &mut [f32]) {
        // A bf16 is the upper half of the f32 it widens to (NaNs included).
        widen_dispatched(x, out, |v: half::bf16| f32::from_bits(u32::from(v.to_bits()) << 16));
    }
}

/// `f16` → `f32`, eight at a time with F16C's `vcvtph2ps` (the `half`
/// crate's own F16C path calls a function per eight values).
#[cfg(all(feature = "half", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,f16c")]
fn f16_to_f32_f16c(x: &[half::f16], out: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let n = x.len().min(out.len());
    let (xs, x_tail) = x[..n].as_chunks::<8>();
    let (os, o_tail) = out[..n].as_chunks_mut::<8>();
    for (a, o) in xs.iter().zip(os) {
        // SAFETY: `a` is 8 `f16`s, 16 readable bytes (an unaligned load);
        // `o` is 8 writable `f32`s, 32 bytes (an unaligned store).
        unsafe {
            let v = _mm_loadu_si128(a.as_ptr().cast::<__m128i>());
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(v));
        }
    }
    for (o, v) in o_tail.iter_mut().zip(x_tail) {
        *o = v.to_f32();
    }
}

#[cfg(feature = "half")]
impl<T: Half> Lanes<T> for HalfAcc {
    fn new(d: usize) -> Self {
        // Whole quads of periods per block: every block starts at lane 0,
        // and none leaves periods to `sum_wide`'s one-at-a-time loop.
        // Allocated on the first push that needs it: not where the CPU
        // sums fused (the 16 KiB zeroed per leaf were 5% of W12's fit).
        HalfAcc {
            buf: Vec::new(),
            acc: RowAcc::new(d),
        }
    }

    fn push(&mut self, x: &[T]) {
        if T::sum_fused(x, self.acc.wide_lanes()) {
            return;
        }
        if self.buf.is_empty() {
            let quad = 4 * self.acc.wide_lanes().len();
            self.buf = vec![0.0; quad * HALF_BLOCK.div_ceil(quad)];
        }
        let block = self.buf.len();
        for chunk in x.chunks(block) {
            let buf = &mut self.buf[..chunk.len()];
            T::widen_slice(chunk, buf);
            self.acc.push(buf);
        }
    }

    fn finish(self, out: &mut [Dd<f64>]) {
        self.acc.finish(out);
    }

    /// Larger leaves where the lanes are exact (`f16`), as for integers:
    /// fewer lane set-ups and folds, the same bits.
    fn leaf_len(d: usize) -> usize {
        if T::EXACT_LANES {
            INT_LEAF.max(super::reduce::leaf_len(d))
        } else {
            super::reduce::leaf_len(d)
        }
    }
}

/// `out[i] = x[i]` widened to `F`, when every value of `T` is exact in `F`
/// (integers of at most 16 bits and half precision into `f32`; every input
/// into `f64`); `false`, writing nothing, otherwise (`u32`/`i32` into `f32`).
/// With empty slices it answers whether `(T, F)` widens exactly.
pub(crate) fn widen_exact<T: Input, F: Element>(x: &[T], out: &mut [F]) -> bool {
    let b = T::batch(ArrayView1::from(x).into_dyn());
    if let Some(o) = cast_mut::<F, f32>(out) {
        match b {
            Batch::Int(IntBatch::U8(v)) => widen_dispatched(slice(&v), o, f32::from),
            Batch::Int(IntBatch::I8(v)) => widen_dispatched(slice(&v), o, f32::from),
            Batch::Int(IntBatch::U16(v)) => widen_dispatched(slice(&v), o, f32::from),
            Batch::Int(IntBatch::I16(v)) => widen_dispatched(slice(&v), o, f32::from),
            #[cfg(feature = "half")]
            Batch::F16(v) => Half::widen_slice(slice(&v), o),
            #[cfg(feature = "half")]
            Batch::Bf16(v) => Half::widen_slice(slice(&v), o),
            _ => return false,
        }
        true
    } else if let Some(o) = cast_mut::<F, f64>(out) {
        match b {
            Batch::F32(v) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::U8(v)) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::I8(v)) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::U16(v)) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::I16(v)) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::U32(v)) => widen_dispatched(slice(&v), o, f64::from),
            Batch::Int(IntBatch::I32(v)) => widen_dispatched(slice(&v), o, f64::from),
            #[cfg(feature = "half")]
            Batch::F16(v) => widen_dispatched(slice(&v), o, half::f16::to_f64_const),
            #[cfg(feature = "half")]
            Batch::Bf16(v) => widen_dispatched(slice(&v), o, half::bf16::to_f64_const),
            _ => return false,
        }
        true
    } else {
        false
    }
}

/// `out[i] = x[i] ∓ pattern[i mod p]` into `f32` with the widening done in
/// registers and non-temporal stores (no fence: the caller fences), for the
/// inputs exact in `f32` that AVX2 and F16C widen eight at a time (`u8`,
/// `i8`, `u16`, `i16`, `f16`). `false`, writing nothing, for any other
/// `(T, F)` or CPU. Same values as widening then [`apply_rows`]
/// (`super::contiguous::apply_rows`): the widening is exact, the
/// subtraction the same `f32` operation.
pub(crate) fn widen_stream<T: Input, F: Element>(x: &[T], out: &mut [F], pattern: &[F], add: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (Some(o), Some(pat)) = (cast_mut::<F, f32>(out), super::contiguous::cast::<F, f32>(pattern)) else {
            return false;
        };
        if !has_avx2_f16c() || pat.len() < 8 {
            return false;
        }
        // SAFETY (each arm): the CPU has AVX2 and F16C, checked above, the
        // features every `stream::*` function is compiled with.
        match T::batch(ArrayView1::from(x).into_dyn()) {
            Batch::Int(IntBatch::U8(v)) => unsafe { stream::from_u8(slice(&v), o, pat, add) },
            Batch::Int(IntBatch::I8(v)) => unsafe { stream::from_i8(slice(&v), o, pat, add) },
            Batch::Int(IntBatch::U16(v)) => unsafe { stream::from_u16(slice(&v), o, pat, add) },
            Batch::Int(IntBatch::I16(v)) => unsafe { stream::from_i16(slice(&v), o, pat, add) },
            #[cfg(feature = "half")]
            Batch::F16(v) => unsafe { stream::from_f16(slice(&v), o, pat, add) },
            _ => return false,
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, out, pattern, add);
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod stream {
    use super::super::contiguous::stream_kernel;

    stream_kernel!(from_u8, "avx2,f16c", u8 => f32, 8, |v| f32::from(v),
        |p| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()))),
        _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);
    stream_kernel!(from_i8, "avx2,f16c", i8 => f32, 8, |v| f32::from(v),
        |p| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()))),
        _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);
    stream_kernel!(from_u16, "avx2,f16c", u16 => f32, 8, |v| f32::from(v),
        |p| _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast::<__m128i>()))),
        _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);
    stream_kernel!(from_i16, "avx2,f16c", i16 => f32, 8, |v| f32::from(v),
        |p| _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm_loadu_si128(p.cast::<__m128i>()))),
        _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);
    #[cfg(feature = "half")]
    stream_kernel!(from_f16, "avx2,f16c", half::f16 => f32, 8, |v| v.to_f32(),
        |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())),
        _mm256_loadu_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_stream_ps);
}

/// The slice a 1-D view of a slice is (always contiguous).
fn slice<'a, T>(v: &ArrayViewD<'a, T>) -> &'a [T] {
    v.to_slice().unwrap_or_default()
}

#[inline(always)]
fn widen<T: Copy, F>(x: &[T], out: &mut [F], f: impl Fn(T) -> F) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn widen_avx2<T: Copy, F>(x: &[T], out: &mut [F], f: impl Fn(T) -> F) {
    widen(x, out, f)
}

fn widen_dispatched<T: Copy, F>(x: &[T], out: &mut [F], f: impl Fn(T) -> F) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, the one feature `widen_avx2` is
        // compiled with, checked just above.
        return unsafe { widen_avx2(x, out, f) };
    }
    widen(x, out, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "half")]
    use crate::kernels::contiguous::period;

    #[test]
    fn int_period_is_a_multiple_of_d_and_32() {
        for d in 1..300 {
            let p = int_period(d);
            assert_eq!(p % d, 0);
            assert!(d >= 256 || p.is_multiple_of(32) && p >= 64);
        }
    }

    /// The lanes never wrap: a run of the extreme value, longer than many
    /// flushes, sums exactly, in every compiled version.
    fn extremes<T: IntLane + Into<i128>>(values: [T; 2]) {
        // Periods of 64, 96 and 128 lanes (in registers for narrow lanes),
        // 224 and 300 (blocked).
        for d in [1usize, 3, 7, 64, 128, 300] {
            for v in values {
                let n = (3 * T::FLUSH).min(1 << 16) * int_period(d) + d;
                let x = vec![v; n - n % d];
                // Short runs (partial periods), and whole runs (the blocked
                // loop over many periods and flushes).
                for run in [7 * d, x.len()] {
                    let mut acc = <IntAcc<T> as Lanes<T>>::new(d);
                    for part in x.chunks(run) {
                        acc.push(part);
                    }
                    acc.push(&[]);
                    let mut out = vec![Dd::zero(); d];
                    acc.finish(&mut out);
                    let want = v.into() * (x.len() / d) as i128;
                    for o in out {
                        assert_eq!(o, exact_pair(want), "d = {d}, runs of {run}");
                    }
                }
            }
        }
    }

    /// Every value lands in its own feature's sum: distinct values per
    /// position, whole and short runs, over many blocks and flushes.
    #[test]
    fn integer_lanes_sum_each_feature_exactly() {
        fn check<T: IntLane + Into<i128>>(value: impl Fn(usize) -> T) {
            for d in [1usize, 3, 5, 64, 128, 300] {
                let n = (int_period(d) * 700 + 3 * d) / d * d;
                let x: Vec<T> = (0..n).map(&value).collect();
                let mut want = vec![0i128; d];
                for (i, &v) in x.iter().enumerate() {
                    want[i % d] += v.into();
                }
                for run in [5 * d, n] {
                    let mut acc = <IntAcc<T> as Lanes<T>>::new(d);
                    for part in x.chunks(run) {
                        acc.push(part);
                    }
                    let mut out = vec![Dd::zero(); d];
                    acc.finish(&mut out);
                    for (o, &w) in out.iter().zip(&want) {
                        assert_eq!(*o, exact_pair(w), "d = {d}, runs of {run}");
                    }
                }
            }
        }
        let h = |i: usize| (i.wrapping_mul(0x9E37_79B9) >> 7) ^ i;
        check(|i| h(i) as u8);
        check(|i| h(i) as i8);
        check(|i| h(i) as u16);
        check(|i| h(i) as i16);
        check(|i| h(i) as u32);
        check(|i| h(i) as i32);
        // 64-bit values across the whole range (`i128` lanes).
        check(|i| (h(i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        check(|i| (h(i) as i64).wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64));
    }

    #[test]
    fn integer_lanes_never_wrap() {
        extremes([u8::MAX, 0]);
        extremes([i8::MIN, i8::MAX]);
        extremes([u16::MAX, 1]);
        extremes([i16::MIN, i16::MAX]);
        extremes([u64::MAX, 1]);
        extremes([i64::MIN, i64::MAX]);
    }

    /// Every f16 and bf16 bit pattern widens as the `half` crate widens it
    /// (NaNs stay NaN), through whichever path this CPU takes, at every
    /// offset of the eight-wide loop.
    /// The fused F16C sum is the buffered one (widen a block of whole
    /// quads, `RowAcc<f32>::push`) bit for bit — every lane its own values
    /// (f16 subnormals beside 3e4) — for periods that are and are not
    /// multiples of 8, short and whole runs. (Sums of f16 values in `f64`
    /// are exact until a lane passes 2²⁹, so this pins the lanes, not an
    /// order: the order is the quads' by construction.)
    #[cfg(all(feature = "half", target_arch = "x86_64"))]
    #[test]
    fn fused_f16_sums_are_the_widened_sums() {
        use half::f16;
        // Every fused kernel this CPU can run (FP16 only on Intel Sapphire
        // Rapids and later: not on the AMD Zen 4 this was written on).
        let kernels: Vec<_> = fused_f16_kernels().into_iter().flatten().collect();
        if !has_avx512_fp16() {
            let names: Vec<&str> = kernels.iter().map(|(name, _)| *name).collect();
            eprintln!("no AVX-512 FP16 here: the fp16 kernel is not tested (ran {names:?})");
        }
        for (name, kernel) in kernels {
            for d in [1usize, 3, 5, 64, 128, 300] {
                let n = (period(d) * 4 * 40 + 3 * period(d) + 2 * d) / d * d;
                let x: Vec<f16> = (0..n)
                    .map(|i| {
                        let m = ((i as f32 * 0.61).sin() + 0.05) * 1.9;
                        f16::from_f32(if i % 3 == 0 { m * 3e4 } else { m * 1e-7 })
                    })
                    .collect();
                for run in [7 * d, n] {
                    let mut buffered = RowAcc::<f32>::new(d);
                    let mut fused = vec![0.0f64; period(d)];
                    let mut buf = vec![0.0f32; 4 * period(d) * HALF_BLOCK.div_ceil(4 * period(d))];
                    for part in x.chunks(run) {
                        for chunk in part.chunks(buf.len()) {
                            let b = &mut buf[..chunk.len()];
                            for (o, v) in b.iter_mut().zip(chunk) {
                                *o = v.to_f32();
                            }
                            buffered.push(b);
                        }
                        kernel(part, &mut fused);
                    }
                    let bits = |v: &[f64]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&fused),
                        bits(buffered.wide_lanes()),
                        "{name}, d = {d}, runs of {run}"
                    );
                }
            }
        }
    }

    #[cfg(feature = "half")]
    #[test]
    fn half_widening_is_exact_for_every_value() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let h: Vec<half::f16> = all.iter().map(|&b| half::f16::from_bits(b)).collect();
        let b: Vec<half::bf16> = all.iter().map(|&b| half::bf16::from_bits(b)).collect();
        for skip in [0usize, 3] {
            let mut out = vec![0.0f32; all.len() - skip];
            half::f16::widen_slice(&h[skip..], &mut out);
            for (v, o) in h[skip..].iter().zip(&out) {
                let want = v.to_f32();
                assert!(o.to_bits() == want.to_bits() || o.is_nan() && want.is_nan(), "{v:?}");
            }
            half::bf16::widen_slice(&b[skip..], &mut out);
            for (v, o) in b[skip..].iter().zip(&out) {
                let want = v.to_f32();
                assert!(o.to_bits() == want.to_bits() || o.is_nan() && want.is_nan(), "{v:?}");
            }
        }
    }

    /// The in-register widening stream kernels give widening then
    /// `apply_rows`'s values, at every output alignment, for each type.
    #[test]
    fn widened_streams_agree_with_widen_then_apply() {
        fn check<T: Input>(x: &[T]) {
            let pat: Vec<f32> = (0..96).map(|j| j as f32 * 0.75 - 3.0).collect();
            for off in 0..8 {
                for add in [false, true] {
                    let n = x.len() - off;
                    let mut wide = vec![0.0f32; n];
                    assert!(widen_exact(&x[..n], &mut wide));
                    let mut want = vec![0.0f32; x.len()];
                    super::super::contiguous::apply_rows(&wide, &mut want[off..], &pat, add);
                    let mut got = vec![0.0f32; x.len()];
                    if widen_stream(&x[..n], &mut got[off..], &pat, add) {
                        super::super::contiguous::store_fence();
                        assert_eq!(want, got, "{}, offset {off}", std::any::type_name::<T>());
                    }
                }
            }
        }
        let u: Vec<u8> = (0..1001u32).map(|i| (i * 7919 % 256) as u8).collect();
        check(&u);
        check(&u.iter().map(|&v| v.wrapping_sub(128) as i8).collect::<Vec<_>>());
        check(&u.iter().map(|&v| u16::from(v) * 257).collect::<Vec<_>>());
        check(&u.iter().map(|&v| (u16::from(v) * 257) as i16).collect::<Vec<_>>());
        #[cfg(feature = "half")]
        check(
            &u.iter()
                .map(|&v| half::f16::from_f32(f32::from(v) / 7.0))
                .collect::<Vec<_>>(),
        );
        // No fused kernel for i32 into f32 (not exact) or into f64.
        assert!(!widen_stream(&[1i32; 16], &mut [0.0f32; 16], &[0.0f32; 8], false));
        assert!(!widen_stream(&[1u8; 16], &mut [0.0f64; 16], &[0.0f64; 8], false));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_version_agrees() {
        if !has_avx2() {
            return;
        }
        let x: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let (mut a, mut b) = (vec![0u16; 96], vec![0u16; 96]);
        sum_int(&x[..96 * 100], &mut a);
        // SAFETY: AVX2 was checked above.
        unsafe { sum_int_avx2(&x[..96 * 100], &mut b) };
        assert_eq!(a, b);
    }
}
