//! What the optimised build compiles the kernels to: no call of the C
//! library's software `fma` / `fmaf`, no intrinsic left out of line.
//!
//! `f64::mul_add` compiles to one instruction only where the code is built
//! with the `fma` target feature; elsewhere (the x86-64 baseline of a
//! default build) it is a call to `fma`, a routine that costs tens of
//! nanoseconds per value. Intrinsics are `#[target_feature]` functions,
//! inlined only into code built with their features. The kernels get the
//! features by being inlined into the `#[target_feature]` functions the
//! dispatch picks; a closure or a function that is not `#[inline(always)]`
//! is compiled on its own, without them, and is inlined back only if the
//! compiler chooses to. Session 16's `leaf_rest`, a closure then, was not:
//! a call to `fma` per value (nullable Arrow columns at a third of their
//! speed), with the same bits, so no other test saw it.
//!
//! This binary defines `fma` and `fmaf` itself: the linker binds the
//! crate's calls to these, which count the calls and compute the fused
//! operation. One test drives every public operation — every layout the
//! kernels tell apart, every mode, policy and input type — and names those
//! that called either, with the first call's callers; it covers the
//! kernels this CPU dispatches to (AVX-512 or AVX2, and the portable code
//! around them). Another looks for intrinsics in the executable's symbol
//! table.
//!
//! Optimised builds only: unoptimised, nothing is inlined that need not be,
//! not even std's `mul_add` or the intrinsics. CI runs it in the benches'
//! build (`cargo test --profile bench -p centering-bench --test codegen`,
//! reusing the roofline's compiled crates); in the README's (debug) test
//! command it compiles to nothing.
#![cfg(all(target_arch = "x86_64", target_os = "linux", not(debug_assertions)))]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use centering::{BatchSummary, Centering, NanPolicy, Validity};
use ndarray::{Array, Array1, Array2, Array3, Array4, ArrayD, ShapeBuilder};

/// Calls of [`fma`] and [`fmaf`] since [`check`] last reset it.
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// The frames that made the first of those calls.
static FIRST: Mutex<String> = Mutex::new(String::new());

/// The C library's `fma`, as the crate's code would call it: counted.
#[unsafe(no_mangle)]
pub extern "C" fn fma(a: f64, b: f64, c: f64) -> f64 {
    counted();
    fused(a, b, c)
}

/// The C library's `fmaf`: counted, computed in `f64` (exact: a product of
/// two `f32`s fits in an `f64`, and one rounding of the sum to `f64` then
/// to `f32` is correct for `f32` operands — 2p + 2 ≤ 53).
#[unsafe(no_mangle)]
pub extern "C" fn fmaf(a: f32, b: f32, c: f32) -> f32 {
    counted();
    (f64::from(a) * f64::from(b) + f64::from(c)) as f32
}

/// Counts a call; the first since [`check`] reset [`CALLS`] leaves its
/// callers in [`FIRST`].
fn counted() {
    if CALLS.fetch_add(1, Ordering::Relaxed) == 0 {
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        // The frames' names (not their `at` lines), from the caller on.
        let callers: Vec<&str> = trace
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("at "))
            .skip_while(|l| !l.contains("counted"))
            .skip(2)
            .take(6)
            .collect();
        *FIRST.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = callers.join(" ← ");
    }
}

/// `a·b + c` rounded once, by the FMA instruction.
fn fused(a: f64, b: f64, c: f64) -> f64 {
    // Not `mul_add`: unoptimised, that is a call of std's function, built
    // without the feature, which calls `fma` — this one.
    #[target_feature(enable = "fma")]
    fn hardware(a: f64, b: f64, c: f64) -> f64 {
        use std::arch::x86_64::{_mm_cvtsd_f64, _mm_fmadd_sd, _mm_set_sd};
        _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c)))
    }
    assert!(
        std::arch::is_x86_feature_detected!("fma"),
        "this CPU has no FMA: software fma called and nothing to compute it with"
    );
    // SAFETY: the CPU has FMA (asserted just above).
    unsafe { hardware(a, b, c) }
}

/// Values of every sign and a spread of magnitudes, a few NaN if `nan`.
fn values(n: usize, nan: bool) -> impl Iterator<Item = f64> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n).map(move |i| {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if nan && (s >> 40).is_multiple_of(9) {
            f64::NAN
        } else {
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.4) * f64::from(1 + (i % 5) as u32)
        }
    })
}

fn array2(rows: usize, cols: usize, fortran: bool, nan: bool) -> Array2<f64> {
    Array2::from_shape_vec((rows, cols).set_f(fortran), values(rows * cols, nan).collect()).expect("rows × cols values")
}

fn weights(n: usize) -> Array1<f64> {
    Array1::from_iter((0..n).map(|i| 0.25 + (i % 7) as f64 * 0.5))
}

/// The arrays the kernels tell apart: narrow and wide rows, C and Fortran
/// order, a strided view's copy, images (NHWC), many leaves (the parallel
/// tree), one sample of many features.
fn shapes(nan: bool) -> Vec<(&'static str, ArrayD<f64>)> {
    let c = |r, d| array2(r, d, false, nan).into_dyn();
    let f = |r, d| array2(r, d, true, nan).into_dyn();
    let images = Array4::from_shape_vec((4, 12, 12, 3), values(4 * 12 * 12 * 3, nan).collect()).expect("NHWC");
    let strided = array2(600, 20, false, nan)
        .slice_move(ndarray::s![..;2, ..;3])
        .into_dyn();
    vec![
        ("C 500×1", c(500, 1)),
        ("C 500×3", c(500, 3)),
        ("C 700×8", c(700, 8)),
        ("C 400×64", c(400, 64)),
        ("C 3×5000", c(3, 5000)),
        ("C 1×20000", c(1, 20_000)),
        ("Fortran 1100×40", f(1100, 40)),
        ("Fortran 600×7", f(600, 7)),
        ("Fortran 70000×9", f(70_000, 9)),
        ("C 70000×9", c(70_000, 9)),
        ("strided 300×7", strided),
        ("NHWC 4×12×12×3", images.into_dyn()),
    ]
}

/// Runs `op`, and if it called `fma`/`fmaf`, adds `what`, the number of
/// calls and the first call's callers to `found`.
fn check(found: &mut Vec<String>, what: String, op: impl FnOnce()) {
    CALLS.store(0, Ordering::Relaxed);
    op();
    let calls = CALLS.load(Ordering::Relaxed);
    if calls > 0 {
        let first = FIRST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        found.push(format!("{what}: {calls} calls, the first from {first}"));
    }
}

/// Every fit, policy and mode of `F` on `x` (finite if `!nan`).
fn fits<F: centering::Element>(found: &mut Vec<String>, name: &str, x: &ArrayD<f64>, nan: bool) {
    let xf: ArrayD<F> = x.mapv(|v| F::from(v).expect("an f64 fits F"));
    let rows = x.shape()[0];
    let w: Array1<F> = weights(rows).mapv(|v| F::from(v).expect("an f64 fits F"));
    let policy = if nan { NanPolicy::Ignore } else { NanPolicy::Reject };
    let ty = std::any::type_name::<F>();
    let modes: [(&str, Centering<F>); 4] = [
        (
            "cumulative",
            Centering::<F>::builder().nan_policy(policy).build().expect("valid"),
        ),
        (
            "keras",
            Centering::<F>::builder()
                .keras(0.9)
                .nan_policy(policy)
                .build()
                .expect("valid"),
        ),
        (
            "torch",
            Centering::<F>::builder()
                .torch(0.1)
                .nan_policy(policy)
                .build()
                .expect("valid"),
        ),
        (
            "batch average",
            Centering::<F>::builder()
                .batch_average()
                .nan_policy(policy)
                .build()
                .expect("valid"),
        ),
    ];
    for (mode, model) in modes {
        let mut m = model.clone();
        check(found, format!("{ty} {mode} partial_fit ×2, {name}"), || {
            m.partial_fit(&xf).expect("fits");
            m.partial_fit(&xf).expect("fits");
        });
        let mut m = model;
        check(found, format!("{ty} {mode} partial_fit_weighted ×2, {name}"), || {
            m.partial_fit_weighted(&xf, &w).expect("fits");
            m.partial_fit_weighted(&xf, &w).expect("fits");
        });
    }
    let mut m = Centering::<F>::builder().nan_policy(policy).build().expect("valid");
    check(found, format!("{ty} fit, transforms, {name}"), || {
        m.fit(&xf).expect("fits");
        let y = m.transform(&xf).expect("transforms");
        let back = m.inverse_transform(&y).expect("inverts");
        let mut out = Array::zeros(xf.raw_dim());
        m.transform_into(&xf, &mut out).expect("transforms");
        m.inverse_transform_into(&y, &mut out).expect("inverts");
        let mut inplace = back.clone();
        m.transform_inplace(&mut inplace).expect("transforms");
        m.inverse_transform_inplace(&mut inplace).expect("inverts");
        m.center_batch(&xf).expect("centers");
        m.fit_transform(&xf).expect("fits");
    });
}

#[test]
fn no_operation_calls_software_fma() {
    let mut found = Vec::new();
    for nan in [false, true] {
        for (name, x) in shapes(nan) {
            fits::<f64>(&mut found, name, &x, nan);
            fits::<f32>(&mut found, name, &x, nan);
        }
    }
    integer_and_half_inputs(&mut found);
    merges_and_summaries(&mut found);
    assert!(found.is_empty(), "software fma called by:\n{}", found.join("\n"));
}

/// No x86 intrinsic is a function of its own in this binary. Intrinsics
/// are `#[target_feature]` functions, inlined only into code built with
/// their features; called from a closure (an `array::from_fn` in a kernel)
/// they stay calls, one per use, where the kernel meant one instruction
/// (the bitmap masks of the columns kernel, while being written: their
/// `_mm256_set1_epi64x` a call per tile, a fifth of the kernel's time). An
/// intrinsic left out of line is a function symbol with `core_arch` in its
/// mangled name in the executable's symbol table; std's CPU detection's
/// `_xgetbv` is one by design. The crate's own kernels must be there too:
/// a stripped executable would otherwise pass with nothing checked.
#[test]
fn every_intrinsic_is_inlined() {
    use object::{Object, ObjectSymbol, SymbolKind};
    let exe = std::fs::read("/proc/self/exe").expect("this test's executable");
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(&*exe).expect("an ELF executable");
    let functions: Vec<&str> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text)
        .filter_map(|s| s.name().ok())
        .collect();
    assert!(
        functions.iter().any(|f| f.contains("9centering7kernels")),
        "no function of the crate's kernels in the symbol table (stripped?)"
    );
    // The kernels' own helpers built for AVX (`#[target_feature]`), which
    // must be inlined as the intrinsics are: out of line, their intrinsics
    // are inlined into them and only their own symbol shows (names as the
    // default, legacy mangling spells them).
    let helpers = ["transpose4", "skip_nan_two_sum", "push_error", "Four$GT$4four"];
    let out_of_line: Vec<&&str> = functions
        .iter()
        .filter(|f| {
            (f.contains("9core_arch") && !f.contains("xgetbv"))
                || (f.contains("centering") && helpers.iter().any(|h| f.contains(h)))
        })
        .collect();
    assert!(
        out_of_line.is_empty(),
        "intrinsics or the kernels' AVX helpers compiled out of line: {out_of_line:?}"
    );
}

/// The integer and half-precision inputs, transforms of them, masks.
fn integer_and_half_inputs(found: &mut Vec<String>) {
    let images = Array4::from_shape_fn((3, 10, 10, 3), |(n, h, w, c)| {
        ((n * 31 + h * 7 + w * 3 + c) % 256) as u8
    });
    let wide = Array2::from_shape_fn((300, 40), |(i, j)| (i * 13 + j * 5) as i16 - 2000);
    let fortran = Array2::from_shape_vec((500, 9).f(), (0..4500i32).map(|v| v - 2000).collect()).expect("500 × 9");
    let big = Array2::from_shape_fn((40, 7), |(i, j)| (i as u64) << 40 | j as u64);
    check(found, "f32 from u8 images".into(), || {
        let mut m = Centering::<f32>::new();
        m.fit_input(&images).expect("fits");
        m.transform_input(&images).expect("transforms");
        let mut out = Array4::zeros(images.raw_dim());
        m.transform_input_into(&images, &mut out).expect("transforms");
        m.center_batch_input(&images).expect("centers");
    });
    check(found, "f64 from i16, i32 Fortran, u64".into(), || {
        let mut m = Centering::<f64>::new();
        m.fit_input(&wide).expect("fits");
        m.transform_input(&wide).expect("transforms");
        let mut m = Centering::<f64>::builder().keras(0.99).build().expect("valid");
        m.partial_fit_input(&fortran).expect("fits");
        m.partial_fit_input_weighted(&fortran, &weights(500)).expect("fits");
        let mut m = Centering::<f64>::new();
        m.fit_input(&big).expect("fits");
    });
    check(found, "masked (N, T, D)".into(), || {
        let x = Array3::from_shape_fn((6, 20, 5), |(n, t, d)| (n * 100 + t * 5 + d) as f32 * 0.25);
        let mask = Array2::from_shape_fn((6, 20), |(n, t)| t < 5 + 2 * n);
        let mut m = Centering::<f32>::builder().torch(0.1).build().expect("valid");
        m.partial_fit_masked(&x, &mask).expect("fits");
    });
    // W12: the bench crate builds the core with `half`.
    check(found, "f32 from f16 and bf16".into(), || {
        let h = Array4::from_shape_fn((3, 10, 10, 3), |(n, a, b, c)| {
            half::f16::from_f32((n + a + b + c) as f32 * 0.5)
        });
        let b = h.mapv(|v| half::bf16::from_f32(v.to_f32()));
        let mut m = Centering::<f32>::new();
        m.fit_input(&h).expect("fits");
        m.transform_input(&h).expect("transforms");
        m.partial_fit_input(&b).expect("fits");
        m.transform_input(&b).expect("transforms");
        let wide = Array2::from_shape_fn((200, 33), |(i, j)| half::f16::from_f32((i * 33 + j) as f32 * 0.01));
        let mut m = Centering::<f64>::builder().keras(0.9).build().expect("valid");
        m.partial_fit_input(&wide).expect("fits");
        m.transform_input(&wide).expect("transforms");
    });
}

/// Merges, replicas' averages, batch summaries from arrays and from
/// (nullable) columns.
fn merges_and_summaries(found: &mut Vec<String>) {
    let x = array2(900, 12, false, false);
    let y = array2(700, 12, true, false);
    for ty in ["f64", "f32"] {
        check(found, format!("{ty} merge, average, summaries"), || {
            if ty == "f64" {
                merge_and_average::<f64>(&x, &y);
            } else {
                merge_and_average::<f32>(&x, &y);
            }
        });
    }
    let cols: Vec<Vec<f64>> = (0..11).map(|j| values(5000, j % 3 == 0).collect()).collect();
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let bitmaps: Vec<Vec<u8>> = (0..11)
        .map(|j| (0..630).map(|i| (i * 37 + j * 11) as u8 | 0x81).collect())
        .collect();
    let valid: Vec<Option<Validity<'_>>> = bitmaps
        .iter()
        .enumerate()
        .map(|(j, b)| (j % 2 == 0).then(|| Validity::new(b, 0)))
        .collect();
    let cols32: Vec<Vec<f32>> = cols.iter().map(|c| c.iter().map(|&v| v as f32).collect()).collect();
    let refs32: Vec<&[f32]> = cols32.iter().map(Vec::as_slice).collect();
    let ints: Vec<Vec<i16>> = (0..11)
        .map(|j| (0..5000).map(|i| (i * 7 + j) as i16 - 999).collect())
        .collect();
    let refs16: Vec<&[i16]> = ints.iter().map(Vec::as_slice).collect();
    check(found, "summaries of nullable f32 and i16 columns".into(), || {
        BatchSummary::from_columns(&refs32, &valid, NanPolicy::Ignore).expect("summarises");
        BatchSummary::from_columns(&refs16, &valid, NanPolicy::Ignore).expect("summarises");
        let offset: Vec<Option<Validity<'_>>> = bitmaps.iter().map(|b| Some(Validity::new(b, 3))).collect();
        BatchSummary::from_columns(&refs[..], &offset, NanPolicy::Ignore).expect("summarises");
    });
    check(found, "summaries of nullable columns".into(), || {
        let s = BatchSummary::from_columns(&refs, &valid, NanPolicy::Ignore).expect("summarises");
        let mut m = Centering::<f64>::builder()
            .nan_policy(NanPolicy::Ignore)
            .build()
            .expect("valid");
        m.partial_fit_summary(&s).expect("fits");
        let mut m = Centering::<f32>::builder()
            .keras(0.9)
            .nan_policy(NanPolicy::Ignore)
            .build()
            .expect("valid");
        m.partial_fit_summary(&s).expect("fits");
    });
}

fn merge_and_average<F: centering::Element>(x: &Array2<f64>, y: &Array2<f64>) {
    let (x, y) = (
        x.mapv(|v| F::from(v).expect("fits")),
        y.mapv(|v| F::from(v).expect("fits")),
    );
    let mut a = Centering::<F>::new();
    a.fit(&x).expect("fits");
    let mut b = Centering::<F>::new();
    b.fit_weighted(&y, &weights(y.nrows()).mapv(|v| F::from(v).expect("fits")))
        .expect("fits");
    a.merge(&b).expect("merges");
    Centering::average(&[a.clone(), b]).expect("averages");
    let mut e = Centering::<F>::builder().keras(0.9).build().expect("valid");
    e.partial_fit(&x).expect("fits");
    let mut f = e.clone();
    e.partial_fit(&x).expect("fits");
    f.partial_fit(&x.slice(ndarray::s![..100, ..])).expect("fits");
    Centering::average(&[e, f]).expect("averages");
    let s = BatchSummary::from_array(&x, NanPolicy::Reject).expect("summarises");
    let mut t = BatchSummary::from_array_weighted(&x, &weights(x.nrows()), NanPolicy::Reject).expect("summarises");
    t.merge(&s).expect("merges");
    let _ = t.mean::<F>();
    a.partial_fit_summary(&t).expect("fits");
}
