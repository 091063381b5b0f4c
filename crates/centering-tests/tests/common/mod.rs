//! Naive, obviously-correct references and proptest strategies shared by the
//! integration tests.
//!
//! Every reference here walks the input in logical order (`x.lanes(Axis(last))`,
//! `indexed_iter`) and never looks at memory layout, threads or the crate's
//! internals. Sums are *exact* (Shewchuk's partials, the algorithm behind
//! Python's `math.fsum`), and quotients get one exact-remainder correction,
//! so a reference mean is the exact mean rounded to `f64` (up to rare
//! near-ties), then rounded once more to `F`.
//!
//! # The accuracy tolerance
//!
//! For a feature with reference mean `r` (the exact `S/W` rounded to `F`) and
//! `A = Σ wᵢ·|xᵢ| / Σ wᵢ` (the mean magnitude), the tests assert
//!
//! ```text
//! |m − r| ≤ ulp_F(r) + C_F · A          C_f64 = 2⁻⁷⁰,  C_f32 = 2⁻³⁴
//! ```
//!
//! Why it holds for the crate (see `src/state.rs`):
//!
//! - `f64`: sums are double-words accumulated with TwoSum (Ogita–Rump–Oishi
//!   Sum2) over chains of at most 2¹⁵ elements (one leaf), so a leaf's pair
//!   is within `γ²₂₁₅·Σ|x| ≈ 2⁻⁷⁶·Σ|x|` of the exact sum; merging leaves
//!   pairwise adds `O(u²)` per tree level. The division is a double-word by
//!   double-word quotient with one FMA-exact correction: `≤ u·|q| + O(u²)`.
//!   So `|m − S/W| ≤ u·|S/W| + 2⁻⁷⁵·A`, and since `r` is within half an ulp
//!   of `S/W` and both lie on the `f64` grid, `|m − r| ≤ 1 ulp` whenever the
//!   `2⁻⁷⁵·A` term is below half an ulp — the crate's "within one ulp of the
//!   exact mean rounded" claim. `C_f64 = 2⁻⁷⁰` leaves a factor 32 of room.
//! - `f32`: each leaf is summed in plain `f64` (error `≤ 2¹⁵·2⁻⁵³·Σ|x| =
//!   2⁻³⁸·Σ|x|`), then folded into an `f32` double-word (`≈ 48` bits, error
//!   `2⁻⁴⁸` per operation and tree level): `|m − S/W| ≤ u·|S/W| + 2⁻³⁷·A`.
//!   `C_f32 = 2⁻³⁴` leaves a factor 8 of room.
//!
//! With cancellation (`|S/W| ≪ A`) the ulp term vanishes and the `C_F·A` term
//! is the design's "small multiple of `ε·mean(|x|)`" — far smaller, in fact.
#![allow(dead_code)]

use std::fmt::Debug;

use centering::Element;
use ndarray::{ArrayD, ArrayView1, ArrayViewD, ArrayViewMutD, Axis, Dimension, IxDyn, ShapeBuilder, Slice};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---------------------------------------------------------------------------
// Float types
// ---------------------------------------------------------------------------

/// `f32` and `f64`, with what the tests need to know about them.
pub trait TestFloat: Element + Debug + PartialEq + Default {
    /// For messages.
    const NAME: &'static str;
    /// Machine epsilon (`2u`), as `f64`.
    const EPS: f64;
    /// `C_F` of the accuracy tolerance (module docs).
    const SLACK: f64;
    /// Rounds an `f64` to nearest.
    fn narrow(x: f64) -> Self;
    /// Exact widening.
    fn wide(self) -> f64;
    /// The spacing of the grid at `|self|` (towards larger magnitude; at `MAX`,
    /// towards zero), as `f64`.
    fn ulp(self) -> f64;
    /// The bit pattern, for bit-for-bit comparisons.
    fn bits(self) -> u64;
}

impl TestFloat for f64 {
    const NAME: &'static str = "f64";
    const EPS: f64 = f64::EPSILON;
    const SLACK: f64 = 1.0 / (1u128 << 70) as f64;
    fn narrow(x: f64) -> Self {
        x
    }
    fn wide(self) -> f64 {
        self
    }
    fn ulp(self) -> f64 {
        let a = self.abs();
        if a == f64::MAX {
            a - a.next_down()
        } else {
            a.next_up() - a
        }
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

impl TestFloat for f32 {
    const NAME: &'static str = "f32";
    const EPS: f64 = f32::EPSILON as f64;
    const SLACK: f64 = 1.0 / (1u64 << 34) as f64;
    fn narrow(x: f64) -> Self {
        x as f32
    }
    fn wide(self) -> f64 {
        f64::from(self)
    }
    fn ulp(self) -> f64 {
        let a = self.abs();
        f64::from(if a == f32::MAX {
            a - a.next_down()
        } else {
            a.next_up() - a
        })
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
}

/// Bit-for-bit equality, NaN equal to NaN (whatever its payload).
pub fn same_bits<F: TestFloat>(a: F, b: F) -> bool {
    a.bits() == b.bits() || (a.is_nan() && b.is_nan())
}

/// Asserts two arrays are bit-for-bit equal (same shape, same values).
#[track_caller]
pub fn assert_same_bits<F: TestFloat>(got: &ArrayViewD<'_, F>, want: &ArrayViewD<'_, F>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for ((i, &g), &w) in got.indexed_iter().zip(want.iter()) {
        assert!(same_bits(g, w), "{what}: at {:?}: got {g:?}, want {w:?}", i.slice());
    }
}

// ---------------------------------------------------------------------------
// Exact sums
// ---------------------------------------------------------------------------

/// An exact sum of `f64`s as non-overlapping partials (Shewchuk 1997,
/// "Adaptive precision floating-point arithmetic"; Python's `math.fsum`).
/// Exact as long as no partial overflows.
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    pub fn add(&mut self, x: f64) {
        let mut x = x;
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    /// The exact sum, correctly rounded to `f64` (round half to even).
    pub fn value(&self) -> f64 {
        let mut p = self.partials.clone();
        let Some(mut hi) = p.pop() else { return 0.0 };
        let mut lo = 0.0;
        while let Some(y) = p.pop() {
            let x = hi;
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if let Some(&next) = p.last()
            && ((lo < 0.0 && next < 0.0) || (lo > 0.0 && next > 0.0))
        {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// `Σ xs`, exactly, rounded once.
pub fn fsum(xs: impl IntoIterator<Item = f64>) -> f64 {
    let mut s = ExactSum::default();
    xs.into_iter().for_each(|x| s.add(x));
    s.value()
}

/// `Σ num / Σ den` for exact sums of the terms, nearly correctly rounded: the
/// first quotient `q` is corrected by the exactly computed remainder
/// `Σ num − q·Σ den` (each `q·dᵢ` split exactly with an FMA). NaN if
/// `Σ den = 0`.
pub fn exact_quotient(num: &[f64], den: &[f64]) -> f64 {
    let s = fsum(num.iter().copied());
    let w = fsum(den.iter().copied());
    if w == 0.0 {
        return f64::NAN;
    }
    let q = s / w;
    let mut rem = ExactSum::default();
    num.iter().for_each(|&x| rem.add(x));
    for &d in den {
        let p = q * d;
        let e = q.mul_add(d, -p);
        rem.add(-p);
        rem.add(-e);
    }
    q + rem.value() / w
}

// ---------------------------------------------------------------------------
// Reference means
// ---------------------------------------------------------------------------

/// What the reference knows about one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRef {
    /// The exact weighted mean rounded to `f64` (NaN when nothing observed).
    pub mean: f64,
    /// `Σ wᵢ·|xᵢ| / Σ wᵢ`, the scale of the tolerance.
    pub abs_mean: f64,
    /// `Σ wᵢ` over the observed values (the count without weights), exact.
    pub weight: f64,
    /// The number of observed values.
    pub count: usize,
}

/// The sample weights as a vector in the logical order of `x`'s samples
/// (`x.lanes(Axis(last))`), accepting the crate's two shapes: exactly the
/// sample axes, or `(n0,)` for an input of 3+ dimensions.
pub fn weights_in_sample_order<F: TestFloat>(x: &ArrayViewD<'_, F>, w: &ArrayViewD<'_, F>) -> Vec<f64> {
    let samples = &x.shape()[..x.ndim() - 1];
    let mut w = w.clone();
    if w.shape() != samples {
        assert!(
            w.ndim() == 1 && samples.len() >= 2 && w.len() == samples[0],
            "bad test weights"
        );
        for ax in 1..samples.len() {
            w = w.insert_axis(Axis(ax));
        }
    }
    let b = w.broadcast(IxDyn(samples)).expect("test weights broadcast");
    b.iter().map(|&v| v.wide()).collect()
}

/// Per-feature exact (weighted, optionally NaN-skipping) means of a batch
/// `(samples…, D)`, read lane by lane in logical order.
pub fn reference<F: TestFloat>(
    x: &ArrayViewD<'_, F>,
    w: Option<&ArrayViewD<'_, F>>,
    skip_nan: bool,
) -> Vec<FeatureRef> {
    let last = x.ndim() - 1;
    let d = x.len_of(Axis(last));
    let weights = w.map(|w| weights_in_sample_order(x, w));
    let mut num = vec![Vec::new(); d];
    let mut den = vec![Vec::new(); d];
    let mut abs = vec![Vec::new(); d];
    let mut count = vec![0usize; d];
    for (i, lane) in x.lanes(Axis(last)).into_iter().enumerate() {
        let wi = weights.as_ref().map_or(1.0, |w| w[i]);
        for (j, &v) in lane.iter().enumerate() {
            if skip_nan && v.is_nan() {
                continue;
            }
            let v = v.wide();
            // w·x split exactly: p + e (for f32 inputs, e = 0).
            let p = wi * v;
            let e = wi.mul_add(v, -p);
            num[j].push(p);
            num[j].push(e);
            abs[j].push(p.abs());
            den[j].push(wi);
            count[j] += 1;
        }
    }
    (0..d)
        .map(|j| {
            let weight = fsum(den[j].iter().copied());
            FeatureRef {
                mean: exact_quotient(&num[j], &den[j]),
                abs_mean: fsum(abs[j].iter().copied()) / weight,
                weight,
                count: count[j],
            }
        })
        .collect()
}

/// The references of several batches taken together.
pub fn reference_of_batches<F: TestFloat>(batches: &[ArrayViewD<'_, F>], skip_nan: bool) -> Vec<FeatureRef> {
    let d = batches[0].len_of(Axis(batches[0].ndim() - 1));
    let rows: Vec<Vec<F>> = batches
        .iter()
        .flat_map(|b| {
            b.lanes(Axis(b.ndim() - 1))
                .into_iter()
                .map(|l| l.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let flat = ArrayD::from_shape_vec(IxDyn(&[rows.len(), d]), rows.concat()).expect("rows");
    reference(&flat.view(), None, skip_nan)
}

/// `|m − r| ≤ ulp_F(r) + C_F·A` (module docs), per feature; NaN exactly where
/// nothing was observed.
#[track_caller]
pub fn assert_mean_close<F: TestFloat>(got: ArrayView1<'_, F>, refs: &[FeatureRef], what: &str) {
    assert_eq!(got.len(), refs.len(), "{what}: number of features");
    for (j, (&m, r)) in got.iter().zip(refs).enumerate() {
        if r.weight == 0.0 {
            assert!(
                m.is_nan(),
                "{what} ({}): feature {j} has no observed value, mean {m:?} should be NaN",
                F::NAME
            );
            continue;
        }
        let rr = F::narrow(r.mean);
        let tol = rr.ulp() + F::SLACK * r.abs_mean;
        let err = (m.wide() - rr.wide()).abs();
        assert!(
            err <= tol,
            "{what} ({}): feature {j}: got {m:?}, reference {rr:?} (exact ≈ {:e}), |error| {err:e} > tol {tol:e} \
             (ulp {:e}, mean|x| {:e})",
            F::NAME,
            r.mean,
            rr.ulp(),
            r.abs_mean
        );
    }
}

/// `|a − b| ≤ tol`, with a message.
#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    if a.is_nan() || b.is_nan() {
        assert!(a.is_nan() && b.is_nan(), "{what}: {a:e} vs {b:e}");
        return;
    }
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a:e} vs {b:e}, |diff| {:e} > tol {tol:e}",
        (a - b).abs()
    );
}

// ---------------------------------------------------------------------------
// Moving averages, written out literally
// ---------------------------------------------------------------------------

/// Keras / PyTorch: `m ← β·m + (1 − β)·b`, starting at 0.
pub fn ema_zero(beta: f64, means: &[f64]) -> f64 {
    let mut m = 0.0;
    for &b in means {
        m = beta * m + (1.0 - beta) * b;
    }
    m
}

/// river `EWMean`, pandas `ewm(adjust=False)`: `m₁ = b₁`, then the same
/// recurrence. NaN before any batch.
pub fn ema_first_batch(beta: f64, means: &[f64]) -> f64 {
    let Some((&first, rest)) = means.split_first() else {
        return f64::NAN;
    };
    let mut m = first;
    for &b in rest {
        m = beta * m + (1.0 - beta) * b;
    }
    m
}

/// The zero start divided by `1 − βᵗ`. NaN before any batch (and for β = 1,
/// where the formula is 0/0).
pub fn ema_debiased(beta: f64, means: &[f64]) -> f64 {
    if means.is_empty() {
        return f64::NAN;
    }
    ema_zero(beta, means) / (1.0 - beta.powi(means.len() as i32))
}

/// The same debiased average as an explicit weighted average
/// `Σ βᵗ⁻ⁱ·bᵢ / Σ βᵗ⁻ⁱ` (defined for β = 1 too: the batch average).
pub fn ema_debiased_weighted(beta: f64, means: &[f64]) -> f64 {
    if means.is_empty() {
        return f64::NAN;
    }
    let t = means.len();
    let w: Vec<f64> = (0..t).map(|i| beta.powi((t - 1 - i) as i32)).collect();
    let num: f64 = w.iter().zip(means).map(|(w, b)| w * b).sum();
    num / w.iter().sum::<f64>()
}

/// PyTorch `momentum=None`: the plain average of the batch means.
pub fn batch_average(means: &[f64]) -> f64 {
    if means.is_empty() {
        return f64::NAN;
    }
    means.iter().sum::<f64>() / means.len() as f64
}

// ---------------------------------------------------------------------------
// Layouts
// ---------------------------------------------------------------------------

/// How a logical array of a given shape sits in memory: the allocation's
/// axis order and order (C/Fortran), then per logical axis a step (negative:
/// reversed), an offset and padding into the allocation, and whether the
/// axis is broadcast (stride 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Allocation axes, outermost first (for C order), as logical axes.
    pub perm: Vec<usize>,
    pub fortran: bool,
    pub steps: Vec<isize>,
    pub offsets: Vec<usize>,
    pub pads: Vec<usize>,
    pub broadcast: Vec<bool>,
}

impl Layout {
    /// Plain C order.
    pub fn c(ndim: usize) -> Self {
        Layout {
            perm: (0..ndim).collect(),
            fortran: false,
            steps: vec![1; ndim],
            offsets: vec![0; ndim],
            pads: vec![0; ndim],
            broadcast: vec![false; ndim],
        }
    }

    /// Plain Fortran order.
    pub fn f(ndim: usize) -> Self {
        Layout {
            fortran: true,
            ..Self::c(ndim)
        }
    }

    /// The same layout without broadcast axes (for writable views).
    pub fn writable(&self) -> Self {
        Layout {
            broadcast: vec![false; self.broadcast.len()],
            ..self.clone()
        }
    }

    fn is_broadcast(&self, shape: &[usize], a: usize) -> bool {
        self.broadcast[a] && shape[a] > 0
    }

    fn base_len(&self, shape: &[usize], a: usize) -> usize {
        if self.is_broadcast(shape, a) {
            return 1;
        }
        let span = if shape[a] == 0 {
            0
        } else {
            (shape[a] - 1) * self.steps[a].unsigned_abs() + 1
        };
        self.offsets[a] + span + self.pads[a]
    }

    /// Allocates the backing array (logical axes, physical order per the
    /// layout), filled in memory order from `fill`.
    pub fn allocate<F: Clone>(&self, shape: &[usize], fill: impl FnMut() -> F) -> ArrayD<F> {
        let ndim = shape.len();
        let base: Vec<usize> = (0..ndim).map(|a| self.base_len(shape, a)).collect();
        let mem_shape: Vec<usize> = self.perm.iter().map(|&a| base[a]).collect();
        let len = mem_shape.iter().product();
        let data: Vec<F> = std::iter::repeat_with(fill).take(len).collect();
        let mem = ArrayD::from_shape_vec(IxDyn(&mem_shape).set_f(self.fortran), data).expect("allocation");
        // Logical axis a is the allocation's axis at position pos(a) in perm.
        let mut inv = vec![0; ndim];
        for (p, &a) in self.perm.iter().enumerate() {
            inv[a] = p;
        }
        mem.permuted_axes(IxDyn(&inv))
    }

    fn slice_of(&self, shape: &[usize], a: usize) -> Slice {
        if self.is_broadcast(shape, a) {
            return Slice::new(0, Some(1), 1);
        }
        let span = self.base_len(shape, a) - self.offsets[a] - self.pads[a];
        let start = self.offsets[a] as isize;
        Slice::new(start, Some(start + span as isize), self.steps[a])
    }

    /// The logical view of shape `shape` into `base`.
    pub fn view<'a, F>(&self, base: &'a ArrayD<F>, shape: &[usize]) -> ArrayViewD<'a, F> {
        // Broadcast the length-1 axes of the allocation first, then slice.
        let full: Vec<usize> = (0..shape.len())
            .map(|a| {
                if self.is_broadcast(shape, a) {
                    shape[a]
                } else {
                    base.len_of(Axis(a))
                }
            })
            .collect();
        let mut v = base.broadcast(IxDyn(&full)).expect("layout broadcast");
        v.slice_each_axis_inplace(|ax| {
            let a = ax.axis.index();
            if self.is_broadcast(shape, a) {
                Slice::from(..)
            } else {
                self.slice_of(shape, a)
            }
        });
        assert_eq!(v.shape(), shape);
        v
    }

    /// A writable logical view (the layout must have no broadcast axis).
    pub fn view_mut<'a, F>(&self, base: &'a mut ArrayD<F>, shape: &[usize]) -> ArrayViewMutD<'a, F> {
        assert!(!self.broadcast.iter().any(|&b| b), "a broadcast view is not writable");
        let v = base.slice_each_axis_mut(|ax| self.slice_of(shape, ax.axis.index()));
        assert_eq!(v.shape(), shape);
        v
    }
}

/// A logical array in some layout: its backing allocation and how to view it.
#[derive(Debug, Clone)]
pub struct Case<F> {
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub base: ArrayD<F>,
}

impl<F> Case<F> {
    pub fn view(&self) -> ArrayViewD<'_, F> {
        self.layout.view(&self.base, &self.shape)
    }

    /// The number of samples (product of the sample axes; 1 for 1-D).
    pub fn n_samples(&self) -> usize {
        self.shape[..self.shape.len() - 1].iter().product()
    }

    pub fn d(&self) -> usize {
        *self.shape.last().expect("ndim ≥ 1")
    }
}

/// Copies `x` into a fresh allocation with `layout`, returning the backing
/// array (view it with `layout.view_mut(&mut base, x.shape())`).
pub fn copy_into_layout<F: Copy + Default>(x: &ArrayViewD<'_, F>, layout: &Layout) -> ArrayD<F> {
    let layout = layout.writable();
    let mut base = layout.allocate(x.shape(), F::default);
    layout.view_mut(&mut base, x.shape()).assign(x);
    base
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// A proptest config with `cases` cases unless `PROPTEST_CASES` says
/// otherwise; no regression files (failures are turned into named tests).
pub fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c
}

/// Shapes of 1 to 5 dimensions; sample axes may be 0; `D ≥ 1`, sometimes
/// around the kernels' block sizes (16, 64, 256).
pub fn shapes() -> impl Strategy<Value = Vec<usize>> {
    (1usize..=5).prop_flat_map(|ndim| {
        let cap: usize = match ndim {
            2 => 40,
            3 => 9,
            4 => 5,
            _ => 4,
        };
        let d = if ndim <= 2 {
            prop_oneof![
                6 => 1usize..=9,
                1 => prop::sample::select(vec![15usize, 16, 17, 31, 64, 65, 255, 257]),
            ]
            .boxed()
        } else {
            prop_oneof![6 => 1usize..=9, 1 => prop::sample::select(vec![16usize, 17])].boxed()
        };
        let samples = vec(prop_oneof![1 => Just(0usize), 12 => 1..=cap], ndim - 1);
        (samples, d).prop_map(|(mut s, d)| {
            s.push(d);
            s
        })
    })
}

/// Random layouts for arrays of `ndim` dimensions: C, Fortran, or an
/// arbitrary mix of permuted axes, steps, reversed axes and broadcast axes.
pub fn layouts(ndim: usize) -> impl Strategy<Value = Layout> {
    let general = (
        Just((0..ndim).collect::<Vec<usize>>()).prop_shuffle(),
        any::<bool>(),
        vec(prop::sample::select(vec![-3isize, -2, -1, -1, 1, 1, 1, 2, 3]), ndim),
        vec(0usize..3, ndim),
        vec(0usize..2, ndim),
        vec(prop::bool::weighted(0.15), ndim),
    )
        .prop_map(|(perm, fortran, steps, offsets, pads, broadcast)| Layout {
            perm,
            fortran,
            steps,
            offsets,
            pads,
            broadcast,
        });
    prop_oneof![
        2 => Just(Layout::c(ndim)),
        2 => Just(Layout::f(ndim)),
        5 => general,
    ]
}

/// Data values for the tests of accuracy: finite, moderate magnitudes, of
/// several kinds (well-conditioned, integers, wide range with cancellation,
/// a huge offset with a tiny spread).
pub fn values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        (-1e3f64..1e3, vec(-1.0f64..1.0, len)).prop_map(|(o, v)| v.into_iter().map(|x| o + x).collect()),
        vec(-20i32..=20, len).prop_map(|v| v.into_iter().map(f64::from).collect()),
        vec((-1.0f64..1.0, -30i32..30), len).prop_map(|v| v.into_iter().map(|(m, e)| m * 2f64.powi(e)).collect()),
        vec(-1.0f64..1.0, len).prop_map(|v| v.into_iter().map(|x| 1e6 + x).collect()),
    ]
}

/// An array of a random shape in a random layout with random values.
pub fn cases<F: TestFloat>() -> impl Strategy<Value = Case<F>> {
    shapes()
        .prop_flat_map(|shape| layouts(shape.len()).prop_map(move |layout| (shape.clone(), layout)))
        .prop_flat_map(|(shape, layout)| {
            let len = layout.allocate(&shape, || 0u8).len();
            values(len).prop_map(move |vals| {
                let mut it = vals.into_iter();
                let base = layout.allocate(&shape, || F::narrow(it.next().expect("enough values")));
                Case {
                    shape: shape.clone(),
                    layout: layout.clone(),
                    base,
                }
            })
        })
}

/// A random cut of a batch into consecutive sub-batches along one sample
/// axis (possibly empty ones).
#[derive(Debug, Clone)]
pub struct Split {
    pub axis_pick: usize,
    pub fracs: Vec<f64>,
}

pub fn splits() -> impl Strategy<Value = Split> {
    (any::<usize>(), vec(0.0f64..=1.0, 0..4)).prop_map(|(axis_pick, fracs)| Split { axis_pick, fracs })
}

/// Cuts `x` per `split` (1-D input, a single sample, is never cut).
pub fn split_batches<'a, F>(x: &ArrayViewD<'a, F>, split: &Split) -> Vec<ArrayViewD<'a, F>> {
    if x.ndim() == 1 {
        return vec![x.clone()];
    }
    let axis = Axis(split.axis_pick % (x.ndim() - 1));
    let len = x.len_of(axis);
    let mut cuts: Vec<usize> = split
        .fracs
        .iter()
        .map(|f| ((f * len as f64).floor() as usize).min(len))
        .collect();
    cuts.sort_unstable();
    cuts.push(len);
    let mut start = 0;
    let mut out = Vec::new();
    for c in cuts {
        out.push(x.clone().slice_axis_move(axis, Slice::from(start..c)));
        start = c;
    }
    out
}

/// A deterministic pseudo-random generator for the large fixed-seed arrays
/// (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
