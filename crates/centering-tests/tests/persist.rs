//! Persistence (feature `serde`): bit-exact round trips in JSON, postcard and
//! CBOR, fitting that continues identically after a load, frozen golden
//! files, one test per rejected state, and loaders that never panic.
#![cfg(feature = "serde")]

use centering::{Centering, CenteringParams, EmaStart, Mode, NanPolicy, STATE_FORMAT_VERSION, ValidParams};
use ndarray::{Array1, Array2, array};
use num_traits::Float;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers

fn to_json<T: Serialize>(x: &T) -> String {
    serde_json::to_string(x).expect("serialises")
}

fn to_postcard<T: Serialize>(x: &T) -> Vec<u8> {
    postcard::to_stdvec(x).expect("serialises")
}

fn to_cbor<T: Serialize>(x: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(x, &mut out).expect("serialises");
    out
}

fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

/// Every bit of the stored state (postcard writes floats as their bytes).
fn bits<F: centering::Element>(c: &Centering<F>) -> Vec<u8>
where
    Centering<F>: Serialize,
{
    to_postcard(c)
}

/// The learned mean, bit for bit.
fn mean_bits<F: centering::Element>(c: &Centering<F>) -> Option<Vec<u64>> {
    c.mean()
        .map(|m| m.iter().map(|v| v.to_f64().expect("f32 or f64").to_bits()).collect())
}

/// Loads a JSON value, expecting a rejection whose message names `field`.
fn rejects<F: centering::Element>(v: &Value, field: &str) -> String
where
    Centering<F>: DeserializeOwned,
{
    let text = v.to_string();
    let err = match serde_json::from_str::<Centering<F>>(&text) {
        Ok(c) => panic!("expected a rejection naming `{field}`, loaded {c:?} from {text}"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("invalid stored state: field `{field}`")),
        "expected an error naming `{field}`, found: {err}"
    );
    err
}

/// A fitted f64 state with every mode's features: cumulative, weighted.
fn cumulative_f64() -> Centering<f64> {
    let mut c = Centering::<f64>::new();
    c.partial_fit_weighted(&array![[0.1, 2.0, 3.0], [0.2, 4.0, 5.0]], &array![1.0, 3.0])
        .unwrap();
    c.partial_fit(&array![[0.3, -1.0, 7.0]]).unwrap();
    c
}

fn cumulative_ignore_f64() -> Centering<f64> {
    let mut c: Centering<f64> = CenteringParams::new().nan_policy(NanPolicy::Ignore).build().unwrap();
    c.partial_fit(&array![[1.0, f64::NAN, f64::NAN], [3.0, 2.0, f64::NAN]])
        .unwrap();
    c
}

fn moving_f64(start: EmaStart, policy: NanPolicy) -> Centering<f64> {
    let mut c: Centering<f64> = CenteringParams::new()
        .moving_average(0.9)
        .start(start)
        .nan_policy(policy)
        .build()
        .unwrap();
    c.partial_fit(&array![[1.0, 10.0], [2.0, 20.0]]).unwrap();
    c.partial_fit(&array![[3.0, 30.0]]).unwrap();
    c
}

/// The JSON document of `x`, with format 2's decimal-string floats turned
/// back into JSON numbers, so that tests can read and edit values as
/// numbers (the loader reads numbers too). `raw_value_of` keeps the strings.
fn value_of<T: Serialize>(x: &T) -> Value {
    numbers(raw_value_of(x))
}

fn raw_value_of<T: Serialize>(x: &T) -> Value {
    serde_json::to_value(x).expect("serialises")
}

/// Every string that is a decimal float (format 2's float encoding) as a
/// JSON number; enum tags ("f64", "zero" …) are left alone.
fn numbers(v: Value) -> Value {
    match v {
        Value::String(t) if t.bytes().any(|b| b.is_ascii_digit()) && t.parse::<f64>().is_ok() => {
            json!(t.parse::<f64>().unwrap())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(numbers).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numbers(v))).collect()),
        v => v,
    }
}

/// A float of a format-2 document: a decimal string.
fn real(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("format 2 writes floats as strings, found {v}"))
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Golden files, frozen: `tests/golden/*.json` were written by format 1
// (centering 0.1.0; regenerated once, before any release, when version 1
// gained `torch_momentum` and the moving average's f64 bookkeeping), and
// `tests/golden/v2/*.json` by format 2 from the same states. Both must keep
// loading with these values; regenerating them is not a fix.

/// Loads the format-1 and format-2 golden files of one state as
/// `Centering<F>`: both load to the same estimator, writing it gives the
/// format-2 document exactly, and the format-1 document differs from it only
/// in the version and in floats written as numbers (nothing lost, nothing
/// renamed).
fn golden_pair<F: centering::Element>(v1: &str, v2: &str) -> Centering<F>
where
    Centering<F>: Serialize + DeserializeOwned,
{
    let c: Centering<F> =
        serde_json::from_str(v1).unwrap_or_else(|e| panic!("golden file (format 1) no longer loads: {e}"));
    let c2: Centering<F> =
        serde_json::from_str(v2).unwrap_or_else(|e| panic!("golden file (format 2) no longer loads: {e}"));
    assert_eq!(c, c2, "the format-1 and format-2 files hold different states");
    assert_eq!(bits(&c), bits(&c2));
    assert_eq!(mean_bits(&c), mean_bits(&c2));
    let file2: Value = serde_json::from_str(v2).unwrap();
    assert_eq!(
        raw_value_of(&c),
        file2,
        "writing the loaded state changes the format-2 document"
    );
    let mut file1: Value = serde_json::from_str(v1).unwrap();
    assert_eq!(file1["format_version"], json!(1));
    file1["format_version"] = json!(2);
    // An f32 state's cumulative sums were f32 pairs in format 1 and are the
    // same values as f64 pairs in format 2 (renormalised: checked above
    // through the equal states); everything else is the same document.
    if file1["dtype"] == json!("f32") && file1["state"]["accumulator"]["cumulative"].is_object() {
        let mut written = value_of(&c);
        let take = |v: &mut Value, f: &str| -> Vec<f64> {
            let a = v["state"]["accumulator"]["cumulative"][f].take();
            a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
        };
        let (hi1, lo1) = (take(&mut file1, "sum_hi"), take(&mut file1, "sum_lo"));
        let (hi2, lo2) = (take(&mut written, "sum_hi"), take(&mut written, "sum_lo"));
        for j in 0..hi1.len() {
            // TwoSum of the f32 pair: the f64 pair holding the same value.
            let s = hi1[j] + lo1[j];
            let bb = s - hi1[j];
            let e = (hi1[j] - (s - bb)) + (lo1[j] - bb);
            assert_eq!((hi2[j], lo2[j]), (s, e), "feature {j}");
        }
        assert_eq!(
            written, file1,
            "format 2 is format 1 with floats as strings and f64 sums"
        );
    } else {
        assert_eq!(value_of(&c), file1, "format 2 is format 1 with floats as strings");
    }
    c
}

macro_rules! golden {
    ($f:ty, $name:literal) => {
        golden_pair::<$f>(
            include_str!(concat!("golden/", $name, ".json")),
            include_str!(concat!("golden/v2/", $name, ".json")),
        )
    };
}

fn close(found: f64, expected: f64, rel: f64) -> bool {
    (found - expected).abs() <= rel * expected.abs()
}

#[test]
fn golden_unfitted() {
    let c = golden!(f32, "unfitted_moving_f32");
    assert!(!c.is_fitted());
    assert_eq!(
        c.params().mode(),
        Mode::MovingAverage {
            momentum: 0.9,
            start: EmaStart::FirstBatch
        }
    );
    assert_eq!(c.params().nan_policy(), NanPolicy::Ignore);
    assert_eq!(c.n_samples_seen(), 0);
    // The wrong element type is refused even without any state.
    let err = serde_json::from_str::<Centering<f64>>(include_str!("golden/unfitted_moving_f32.json")).unwrap_err();
    assert!(err.to_string().contains("field `dtype`"), "{err}");
}

#[test]
fn golden_cumulative_f64_weighted() {
    let text = include_str!("golden/cumulative_f64_weighted.json");
    let mut c = golden!(f64, "cumulative_f64_weighted");
    assert_eq!(c.params().mode(), Mode::Cumulative);
    assert_eq!(c.params().nan_policy(), NanPolicy::Reject);
    assert_eq!(c.n_features(), Some(3));
    assert_eq!(c.n_samples_seen(), 3);
    assert_eq!(c.n_batches(), 2);
    assert_eq!(c.weight_sums().unwrap(), array![4.5, 4.5, 4.5]);
    let m = c.mean().unwrap().to_owned();
    // Weights 1, 3, 0.5 on rows (0.1, 1e308, 3), (0.2, 1e308, 5), (0.3, −1e308, −0).
    assert!(close(m[0], 0.85 / 4.5, 1e-15), "{m}");
    assert!(close(m[1], 3.5e307 / 0.45, 1e-15), "{m}"); // kept finite by the stored scale
    assert_eq!(m[2], 4.0);
    // It keeps fitting: one more sample of weight 4.5 halfway.
    c.partial_fit_weighted(&array![[0.0, 0.0, 0.0]], &array![4.5]).unwrap();
    assert_eq!(c.mean().unwrap()[2], 2.0);
    assert!(close(c.mean().unwrap()[1], 3.5e307 / 0.9, 1e-15));
    assert!(serde_json::from_str::<Centering<f32>>(text).is_err());
}

#[test]
fn golden_cumulative_f32_nan_ignore() {
    let mut c = golden!(f32, "cumulative_f32_nan_ignore");
    assert_eq!(c.params().nan_policy(), NanPolicy::Ignore);
    assert_eq!(c.n_samples_seen(), 3);
    assert_eq!(c.n_batches(), 2);
    // Per-feature counts: feature 2 was never observed.
    assert_eq!(c.weight_sums().unwrap(), array![3.0, 2.0, 0.0, 3.0]);
    let m = c.mean().unwrap().to_owned();
    assert!(close(f64::from(m[0]), 0.2, 1e-7), "{m}");
    assert_eq!(m[1], f32::from_bits(2), "the mean of two subnormals"); // (1 + 3) / 2 units
    assert!(m[2].is_nan(), "an unobserved feature has a NaN mean");
    assert_eq!(m[3], 0.0);
    let y = c.transform(&array![[1.0f32, 0.0, 5.0, 1.0]]).unwrap();
    assert!(y[[0, 2]].is_nan());
    // The first observation of feature 2 becomes its mean.
    c.partial_fit(&array![[f32::NAN, f32::NAN, 7.0, f32::NAN]]).unwrap();
    assert_eq!(c.mean().unwrap()[2], 7.0);
}

#[test]
fn golden_moving_zero_f64() {
    let mut c = golden!(f64, "moving_zero_f64");
    assert_eq!(
        c.params().mode(),
        Mode::MovingAverage {
            momentum: 0.5,
            start: EmaStart::Zero
        }
    );
    assert_eq!(c.n_samples_seen(), 4);
    assert_eq!(c.n_batches(), 3);
    assert!(c.weight_sums().is_none());
    // Batch means (4, −2), (8, 6), (2, 2), from 0 with momentum 0.5.
    assert_eq!(c.mean().unwrap(), array![3.5, 2.25]);
    c.partial_fit(&array![[4.5, 0.25]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![4.0, 1.25]);
}

#[test]
fn golden_moving_debiased_f32_nan_ignore() {
    let c = golden!(f32, "moving_debiased_f32_nan_ignore");
    assert_eq!(c.n_samples_seen(), 4);
    assert_eq!(c.n_batches(), 3);
    let m = c.mean().unwrap().to_owned();
    // Feature 0: batch means 1.5, 3, 0.5; feature 1: 15, (missing), 40.
    let f0 = (0.81 * 1.5 + 0.9 * 3.0 + 0.5) / (0.81 + 0.9 + 1.0);
    let f1 = (0.9 * 15.0 + 40.0) / (0.9 + 1.0);
    assert!(close(f64::from(m[0]), f0, 1e-6), "{m}");
    assert!(close(f64::from(m[1]), f1, 1e-6), "{m}");
    assert!(m[2].is_nan(), "a feature without a step has no debiased mean");
}

#[test]
fn golden_moving_first_batch_f64() {
    let mut c = golden!(f64, "moving_first_batch_f64");
    assert_eq!(c.params().start(), Some(EmaStart::FirstBatch));
    // Batch means 8, 4, 0 with momentum 0.75: 8 → 7 → 5.25.
    assert_eq!(c.mean().unwrap(), array![5.25]);
    c.partial_fit(&array![[1.25]]).unwrap();
    assert_eq!(c.mean().unwrap(), array![4.25]);
}

#[test]
fn golden_moving_torch_zero_f32() {
    let mut c = golden!(f32, "moving_torch_zero_f32");
    // Given as PyTorch's momentum 0.1: kept, and the update uses it.
    assert_eq!(c.params().torch_momentum(), Some(0.1));
    assert_eq!(c.params().momentum(), Some(0.9));
    assert_eq!(c.params().start(), Some(EmaStart::Zero));
    assert_eq!(c.n_samples_seen(), 7);
    assert_eq!(c.n_batches(), 3);
    // PyTorch's own update, in f32: running = (1 − μ)·running + μ·mean, from 0.
    let (old, new) = (0.9f32, 0.1f32);
    let pytorch = |means: &[[f32; 2]]| {
        let mut m = [0.0f32; 2];
        for b in means {
            for j in 0..2 {
                m[j] = m[j] * old + b[j] * new;
            }
        }
        m
    };
    let means = [[2.0, -2.0], [10.0, 8.0], [-2.0, 2.0]];
    assert_eq!(c.mean().unwrap().to_vec(), pytorch(&means).to_vec());
    c.partial_fit(&array![[5.0f32, -1.0]]).unwrap();
    let means = [[2.0, -2.0], [10.0, 8.0], [-2.0, 2.0], [5.0, -1.0]];
    assert_eq!(c.mean().unwrap().to_vec(), pytorch(&means).to_vec());
}

#[test]
fn golden_batch_average_f64() {
    let c = golden!(f64, "batch_average_f64");
    assert_eq!(c.params().mode(), Mode::BatchAverage);
    assert_eq!(c.n_samples_seen(), 4);
    assert_eq!(c.n_batches(), 2);
    // Batch means (1, 10) and (4, 40), each counted once.
    assert_eq!(c.mean().unwrap(), array![2.5, 25.0]);
}

// ---------------------------------------------------------------------------
// Exact round trips

#[test]
fn unfitted_round_trips_in_every_format() {
    let p = CenteringParams::new()
        .torch_momentum(0.25)
        .start(EmaStart::Zero)
        .nan_policy(NanPolicy::Ignore)
        .check()
        .unwrap();
    let c = Centering::<f32>::with_params(p);
    let json = to_json(&c);
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({
            "format_version": 2,
            "dtype": "f32",
            "params": {
                "mode": "moving_average", "momentum": "0.75", "torch_momentum": "0.25",
                "start": "zero", "nan_policy": "ignore"
            },
            "state": null
        })
    );
    assert_eq!(serde_json::from_str::<Centering<f32>>(&json).unwrap(), c);
    assert_eq!(postcard::from_bytes::<Centering<f32>>(&to_postcard(&c)).unwrap(), c);
    assert_eq!(from_cbor::<Centering<f32>>(&to_cbor(&c)).unwrap(), c);
}

#[test]
fn format_version_constant_matches_the_files() {
    assert_eq!(
        value_of(&Centering::<f64>::new())["format_version"],
        json!(STATE_FORMAT_VERSION)
    );
}

/// A state whose floats are -0.0, subnormal and extreme survives JSON text.
#[test]
fn signed_zeros_and_subnormals_survive_json() {
    let v = json!({
        "format_version": 1, "dtype": "f64",
        "params": {"mode": "moving_average", "momentum": 0.5, "start": "first_batch", "nan_policy": "reject"},
        "state": {"n_features": 3, "n_samples": 2, "n_batches": 1, "accumulator": {"moving": {
            "steps": [1, 1, 1],
            "decay": [0.5, 0.5, 0.5],
            "zero": [-0.0, 2.5e-324, -8.988465674311579e307],
            "norm": [1.0, 1.0, 1.0],
            "debiased": [-0.0, 5e-324, -1.7976931348623157e308],
            "first": [-0.0, 5e-324, -1.7976931348623157e308]
        }}}
    });
    let text = v.to_string();
    assert!(text.contains("-0.0"));
    let c: Centering<f64> = serde_json::from_str(&text).unwrap();
    let again: Value = serde_json::from_str(&to_json(&c)).unwrap();
    let first = &again["state"]["accumulator"]["moving"]["first"];
    assert_eq!(first[0], json!("-0.0"));
    assert_eq!(real(&first[0]).to_bits(), (-0.0f64).to_bits());
    assert_eq!(real(&first[1]).to_bits(), 1);
    assert_eq!(real(&first[2]), -f64::MAX);
    assert_eq!(c.mean().unwrap()[2], -f64::MAX); // 0.5·(−MAX) − MAX/2
    // 2.5e-324 rounds to the smallest subnormal, as Rust's own parser does.
    assert_eq!(
        real(&again["state"]["accumulator"]["moving"]["zero"][1]),
        f64::from_bits(1)
    );
    // FirstBatch: decay·first + zero.
    assert_eq!(mean_bits(&c).unwrap()[0], (-0.0f64).to_bits());

    // The same in f32, whose subnormals are normal f64s.
    let tiny = f32::from_bits(1);
    let mut c32: Centering<f32> = CenteringParams::new()
        .moving_average(0.5)
        .start(EmaStart::Debiased)
        .build()
        .unwrap();
    c32.partial_fit(&array![[tiny, -f32::MAX, 0.1]]).unwrap();
    let back: Centering<f32> = serde_json::from_str(&to_json(&c32)).unwrap();
    assert_eq!(bits(&back), bits(&c32));
    assert_eq!(mean_bits(&back), mean_bits(&c32));
    assert_eq!(back.mean().unwrap()[0].to_bits(), 1);
    assert_eq!(back.mean().unwrap()[1], -f32::MAX);
    assert_eq!(back.mean().unwrap()[2], 0.1f32);
}

/// One value of a generated batch: ordinary, subnormal, signed zero, large
/// (`MAX/64` at most, so that one batch's sums stay finite but merged ones
/// need the scaled representation), or missing.
#[derive(Debug, Clone, Copy)]
enum Val {
    Plain(f64),
    Subnormal(u32, bool),
    NegZero,
    Huge(f64),
    Missing,
}

impl Val {
    fn get<F: Float>(self, ignore: bool) -> F {
        match self {
            Val::Plain(x) => F::from(x).unwrap(),
            Val::Subnormal(units, neg) => {
                let v = F::min_positive_value() / F::from(1u64 << 20).unwrap() * F::from(units).unwrap();
                if neg { -v } else { v }
            }
            Val::NegZero => -F::zero(),
            Val::Huge(u) => F::max_value() * F::from(u).unwrap(),
            Val::Missing if ignore => F::nan(),
            Val::Missing => F::one(),
        }
    }
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        6 => (-1e3..1e3f64).prop_map(Val::Plain),
        1 => (1u32..1000, any::<bool>()).prop_map(|(u, n)| Val::Subnormal(u, n)),
        1 => Just(Val::NegZero),
        1 => (-1.0..1.0f64).prop_map(Val::Huge),
        2 => Just(Val::Missing),
    ]
}

#[derive(Debug, Clone)]
struct Batch {
    rows: usize,
    values: Vec<Val>,
    weights: Option<Vec<f64>>,
}

/// A batch of up to 4 samples of `d` features, optionally weighted (zero
/// weights included).
fn batch(d: usize) -> impl Strategy<Value = Batch> {
    (0usize..=4).prop_flat_map(move |rows| {
        (
            proptest::collection::vec(val(), rows * d),
            proptest::option::of(proptest::collection::vec(
                prop_oneof![Just(0.0), Just(1.0), 0.0..10.0f64],
                rows,
            )),
        )
            .prop_map(move |(values, weights)| Batch { rows, values, weights })
    })
}

#[derive(Debug, Clone)]
struct Plan {
    mode: Mode,
    /// A moving average given in PyTorch's convention, with `momentum` read
    /// as PyTorch's momentum μ.
    torch: bool,
    policy: NanPolicy,
    d: usize,
    /// Batches fitted into the estimator.
    batches: Vec<Batch>,
    /// Batches fitted into a second estimator merged after the first ones.
    merged: Vec<Batch>,
    /// The batch both the original and the loaded estimator fit next.
    next: Batch,
}

fn mode() -> impl Strategy<Value = Mode> {
    let momentum = prop_oneof![Just(0.0), Just(1.0), Just(0.9), Just(0.99), 0.0..=1.0f64];
    let start = prop_oneof![
        Just(EmaStart::Zero),
        Just(EmaStart::FirstBatch),
        Just(EmaStart::Debiased)
    ];
    prop_oneof![
        Just(Mode::Cumulative),
        Just(Mode::BatchAverage),
        (momentum, start).prop_map(|(momentum, start)| Mode::MovingAverage { momentum, start }),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        mode(),
        any::<bool>(),
        prop_oneof![Just(NanPolicy::Reject), Just(NanPolicy::Ignore)],
        1usize..=4,
    )
        .prop_flat_map(|(mode, torch, policy, d)| {
            (
                proptest::collection::vec(batch(d), 0..5),
                proptest::collection::vec(batch(d), 0..3),
                batch(d),
            )
                .prop_map(move |(batches, merged, next)| Plan {
                    mode,
                    torch,
                    policy,
                    d,
                    batches,
                    merged,
                    next,
                })
        })
}

fn fit_batch<F: centering::Element>(c: &mut Centering<F>, b: &Batch, d: usize) {
    let ignore = c.params().nan_policy() == NanPolicy::Ignore;
    let x = Array2::from_shape_vec((b.rows, d), b.values.iter().map(|v| v.get::<F>(ignore)).collect()).unwrap();
    // A fit may fail (a weight sum that overflows, say); the state is then
    // unchanged, which is as good a state to persist as any.
    let _ = match &b.weights {
        Some(w) => {
            let w: Array1<F> = w.iter().map(|&w| F::from(w).unwrap()).collect();
            c.partial_fit_weighted(&x, &w).map(|_| ())
        }
        None => c.partial_fit(&x).map(|_| ()),
    };
}

fn params_of(p: &Plan) -> ValidParams {
    let params = match p.mode {
        Mode::MovingAverage { momentum, start } if p.torch => {
            CenteringParams::new().torch_momentum(momentum).start(start)
        }
        mode => CenteringParams::new().mode(mode),
    };
    params.nan_policy(p.policy).check().unwrap()
}

fn build<F: centering::Element>(p: &Plan) -> Centering<F> {
    let params = params_of(p);
    let mut c = Centering::<F>::with_params(params);
    for b in &p.batches {
        fit_batch(&mut c, b, p.d);
    }
    let mut other = Centering::<F>::with_params(params);
    for b in &p.merged {
        fit_batch(&mut other, b, p.d);
    }
    c.merge(&other).unwrap();
    c
}

/// `loaded` is `original`, bit for bit, and stays so after one more batch.
fn same_and_continues<F: centering::Element>(original: &Centering<F>, loaded: Centering<F>, p: &Plan, format: &str)
where
    Centering<F>: Serialize,
{
    assert_eq!(bits(&loaded), bits(original), "{format}: state bits differ");
    assert_eq!(mean_bits(&loaded), mean_bits(original), "{format}: mean bits differ");
    assert_eq!(&loaded, original, "{format}");
    assert_eq!(to_json(&loaded), to_json(original), "{format}");
    let (mut a, mut b) = (original.clone(), loaded);
    fit_batch(&mut a, &p.next, p.d);
    fit_batch(&mut b, &p.next, p.d);
    assert_eq!(bits(&b), bits(&a), "{format}: fitting diverged after the load");
    assert_eq!(mean_bits(&b), mean_bits(&a), "{format}: mean diverged after the load");
}

fn round_trip<F: centering::Element>(p: &Plan)
where
    Centering<F>: Serialize + DeserializeOwned,
{
    let c = build::<F>(p);
    let json: Centering<F> = serde_json::from_str(&to_json(&c)).unwrap();
    same_and_continues(&c, json, p, "JSON");
    let pretty: Centering<F> = serde_json::from_str(&serde_json::to_string_pretty(&c).unwrap()).unwrap();
    same_and_continues(&c, pretty, p, "pretty JSON");
    let post: Centering<F> = postcard::from_bytes(&to_postcard(&c)).unwrap();
    same_and_continues(&c, post, p, "postcard");
    let cbor: Centering<F> = from_cbor(&to_cbor(&c)).unwrap();
    same_and_continues(&c, cbor, p, "CBOR");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn round_trips_f64_bit_for_bit(p in plan()) {
        round_trip::<f64>(&p);
    }

    #[test]
    fn round_trips_f32_bit_for_bit(p in plan()) {
        round_trip::<f32>(&p);
    }
}

#[test]
fn scaled_sums_round_trip() {
    // Sums near f64::MAX are kept scaled: the exponent is part of the state.
    let mut c = Centering::<f64>::new();
    c.partial_fit(&array![[f64::MAX, 1.0], [f64::MAX, 2.0]]).unwrap();
    let v = value_of(&c);
    assert_ne!(v["state"]["accumulator"]["cumulative"]["scale"][0], json!(0));
    let back: Centering<f64> = serde_json::from_str(&v.to_string()).unwrap();
    assert_eq!(bits(&back), bits(&c));
    assert_eq!(back.mean().unwrap()[0], f64::MAX);
}

#[test]
fn params_round_trip_and_are_validated() {
    let p = CenteringParams::new()
        .moving_average(0.99)
        .start(EmaStart::FirstBatch)
        .check()
        .unwrap();
    let v = value_of(&p);
    assert_eq!(
        v,
        json!({
            "mode": "moving_average", "momentum": 0.99, "torch_momentum": null,
            "start": "first_batch", "nan_policy": "reject"
        })
    );
    assert_eq!(serde_json::from_value::<ValidParams>(v).unwrap(), p);
    assert_eq!(postcard::from_bytes::<ValidParams>(&to_postcard(&p)).unwrap(), p);
    let bad = json!({"mode": "moving_average", "momentum": 1.5, "start": "zero", "nan_policy": "reject"});
    let err = serde_json::from_value::<ValidParams>(bad).unwrap_err().to_string();
    assert!(err.contains("field `params.momentum`"), "{err}");
    // PyTorch's convention survives, and stays distinct from Keras's.
    for mu in [0.1, 0.01, 0.3, 0.0, 1.0, 2f64.powi(-52)] {
        let t = CenteringParams::new().torch_momentum(mu).check().unwrap();
        let v = value_of(&t);
        assert_eq!(v["torch_momentum"], json!(mu));
        assert_eq!(v["momentum"], json!(1.0 - mu));
        let back: ValidParams = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.torch_momentum(), Some(mu));
        assert_eq!(postcard::from_bytes::<ValidParams>(&to_postcard(&t)).unwrap(), t);
        assert_eq!(from_cbor::<ValidParams>(&to_cbor(&t)).unwrap(), t);
        let keras = CenteringParams::new().moving_average(1.0 - mu).check().unwrap();
        assert_ne!(serde_json::from_value::<ValidParams>(value_of(&keras)).unwrap(), t);
    }
    // A PyTorch momentum whose 1 − μ rounds to 1 is refused when loading too
    // (it would fit with weight μ but be checked as momentum 1).
    let tiny = json!({"mode": "moving_average", "momentum": 1.0, "torch_momentum": 1e-300,
        "start": "zero", "nan_policy": "reject"});
    let err = serde_json::from_value::<ValidParams>(tiny).unwrap_err().to_string();
    assert!(err.contains("params"), "{err}");
    // An omitted torch_momentum is null (Keras's convention).
    let v = json!({"mode": "moving_average", "momentum": 0.9, "start": "zero", "nan_policy": "reject"});
    let p: ValidParams = serde_json::from_value(v).unwrap();
    assert_eq!(
        p,
        CenteringParams::new()
            .moving_average(0.9)
            .start(EmaStart::Zero)
            .check()
            .unwrap()
    );
}

// ---------------------------------------------------------------------------
// Rejections: one per invalid state, each naming its field.

#[test]
fn rejects_unknown_and_future_versions() {
    for version in [
        json!(0),
        json!(3),
        json!(99),
        json!(-1),
        json!(1u64 << 40),
        json!(1.0),
        json!(2.0),
    ] {
        let mut v = value_of(&cumulative_f64());
        v["format_version"] = version;
        rejects::<f64>(&v, "format_version");
    }
}

#[test]
fn a_future_version_is_reported_before_its_unknown_layout() {
    // A later version may change everything after the version number.
    let text = r#"{"format_version": 3, "layout": "columnar", "blocks": [1, 2, 3]}"#;
    let err = serde_json::from_str::<Centering<f64>>(text).unwrap_err().to_string();
    assert!(err.contains("field `format_version`"), "{err}");
    assert!(err.contains("newer release"), "{err}");
    // The same in postcard, where the version is the first varint.
    let mut bytes = to_postcard(&cumulative_f64());
    assert_eq!(bytes[0], 2, "the varint of 2");
    bytes[0] = 3; // version 3
    bytes.truncate(3);
    let err = postcard::from_bytes::<Centering<f64>>(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("Serde Deserialization Error") || err.contains("format_version"),
        "{err}"
    );
    // CBOR carries the message through.
    let mut v = ciborium::Value::serialized(&cumulative_f64()).unwrap();
    set_cbor(&mut v, &["format_version"], ciborium::Value::Integer(3.into()));
    let err = cbor_rejects::<f64>(&v);
    assert!(err.contains("field `format_version`"), "{err}");
}

#[test]
fn rejects_another_element_type() {
    // f64 state → f32 estimator, and the reverse.
    let v = value_of(&cumulative_f64());
    let err = rejects::<f32>(&v, "dtype");
    assert!(
        err.contains(r#"expected "f32""#) && err.contains(r#"found "f64""#),
        "{err}"
    );
    let mut c32 = Centering::<f32>::new();
    c32.partial_fit(&array![[1.0f32]]).unwrap();
    rejects::<f64>(&value_of(&c32), "dtype");
    // Postcard and CBOR too.
    let bytes = to_postcard(&cumulative_f64());
    let err = postcard::from_bytes::<Centering<f32>>(&bytes).unwrap_err();
    assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
    assert!(
        from_cbor::<Centering<f32>>(&to_cbor(&cumulative_f64()))
            .unwrap_err()
            .contains("field `dtype`")
    );
}

#[test]
fn rejects_f64_values_in_an_f32_state_even_with_an_f32_tag() {
    // The tag lies; the values do not fit f32 exactly. (Format 1 kept an
    // f32 state's sums in f32; format 2 keeps sums in f64 whatever the
    // dtype, so there only the moving average's F-typed values and the tag
    // itself tell the types apart.)
    let mut c = Centering::<f64>::new();
    c.partial_fit(&array![[0.1, 0.5]]).unwrap();
    let mut v = value_of(&c);
    v["dtype"] = json!("f32");
    v["format_version"] = json!(1);
    let err = rejects::<f32>(&v, "state.accumulator.cumulative.sum_hi");
    assert!(err.contains("not exactly representable as f32"), "{err}");
    // A value beyond f32's range.
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
    v["dtype"] = json!("f32");
    v["state"]["accumulator"]["moving"]["decay"] = json!([0.5, 0.5]);
    v["state"]["accumulator"]["moving"]["zero"] = json!([1e300, 0.5]);
    rejects::<f32>(&v, "state.accumulator.moving.zero");
}

#[test]
fn rejects_lengths_other_than_n_features() {
    let fields = ["sum_hi", "sum_lo", "scale", "weight_hi", "weight_lo"];
    for f in fields {
        let mut v = value_of(&cumulative_f64());
        v["state"]["accumulator"]["cumulative"][f].as_array_mut().unwrap().pop();
        let err = rejects::<f64>(&v, &format!("state.accumulator.cumulative.{f}"));
        assert!(err.contains("expected 3 entries"), "{err}");
    }
    let fields = ["steps", "decay", "zero", "norm", "debiased", "first"];
    for f in fields {
        let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Reject));
        v["state"]["accumulator"]["moving"][f]
            .as_array_mut()
            .unwrap()
            .push(json!(1));
        rejects::<f64>(&v, &format!("state.accumulator.moving.{f}"));
    }
    // n_features itself disagreeing with every array (which agree with each
    // other): n_features is what is wrong, and is named.
    for c in [
        value_of(&cumulative_f64()),
        value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject)),
    ] {
        let mut v = c;
        let d = v["state"]["n_features"].as_u64().unwrap();
        v["state"]["n_features"] = json!(d + 1);
        let err = rejects::<f64>(&v, "state.n_features");
        assert!(
            err.contains(&format!("({d})")) && err.contains(&format!("n_features = {}", d + 1)),
            "{err}"
        );
    }
}

#[test]
fn rejects_zero_features() {
    let mut v = value_of(&cumulative_f64());
    v["state"]["n_features"] = json!(0);
    for f in ["sum_hi", "sum_lo", "scale", "weight_hi", "weight_lo"] {
        v["state"]["accumulator"]["cumulative"][f] = json!([]);
    }
    rejects::<f64>(&v, "state.n_features");
}

#[test]
fn rejects_negative_and_oversized_counts() {
    for (field, bad) in [
        ("n_samples", json!(-1)),
        ("n_batches", json!(-3)),
        ("n_features", json!(-1)),
        ("n_samples", json!(i64::MIN)),
    ] {
        let mut v = value_of(&cumulative_f64());
        v["state"][field] = bad;
        rejects::<f64>(&v, &format!("state.{field}"));
    }
    // Beyond u64: edit the text, since `Value` cannot hold it.
    let text = to_json(&cumulative_f64()).replace(r#""n_samples":3"#, r#""n_samples":18446744073709551616"#);
    assert!(text.contains("18446744073709551616"));
    let err = serde_json::from_str::<Centering<f64>>(&text).unwrap_err().to_string();
    assert!(err.contains("field `state.n_samples`"), "{err}");
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Ignore));
    v["state"]["accumulator"]["moving"]["steps"][0] = json!(-1);
    rejects::<f64>(&v, "state.accumulator.moving.steps");
}

#[test]
fn rejects_inconsistent_counts() {
    let mut v = value_of(&cumulative_f64());
    v["state"]["n_batches"] = json!(0);
    rejects::<f64>(&v, "state.n_batches");
    let mut v = value_of(&cumulative_f64());
    v["state"]["n_samples"] = json!(1); // 2 batches need at least 2 samples
    rejects::<f64>(&v, "state.n_samples");
}

#[test]
fn rejects_negative_weights() {
    let mut v = value_of(&cumulative_f64());
    v["state"]["accumulator"]["cumulative"]["weight_hi"][1] = json!(-4.5);
    let err = rejects::<f64>(&v, "state.accumulator.cumulative.weight_hi");
    assert!(err.contains("feature 1"), "{err}");
    // A pair whose value is negative is not normalised (hi = 0).
    let mut v = value_of(&cumulative_f64());
    v["state"]["accumulator"]["cumulative"]["weight_hi"][0] = json!(0.0);
    v["state"]["accumulator"]["cumulative"]["weight_lo"][0] = json!(-1.0);
    rejects::<f64>(&v, "state.accumulator.cumulative.weight_lo");
    // A negative weight with a normalised pair.
    let mut v = value_of(&cumulative_f64());
    v["state"]["accumulator"]["cumulative"]["weight_hi"][0] = json!(-1.0);
    v["state"]["accumulator"]["cumulative"]["weight_lo"][0] = json!(-1e-20);
    rejects::<f64>(&v, "state.accumulator.cumulative.weight_hi");
}

#[test]
fn rejects_a_zero_weight_with_a_sum_or_under_reject() {
    // NaN-ignore: feature 2 was never observed; give it a sum.
    let mut v = value_of(&cumulative_ignore_f64());
    assert_eq!(v["state"]["accumulator"]["cumulative"]["weight_hi"][2], json!(0.0));
    v["state"]["accumulator"]["cumulative"]["sum_hi"][2] = json!(1.0);
    rejects::<f64>(&v, "state.accumulator.cumulative.sum_hi");
    // Under NaN policy reject every feature has a weight.
    let mut v = value_of(&cumulative_ignore_f64());
    v["params"]["nan_policy"] = json!("reject");
    rejects::<f64>(&v, "state.accumulator.cumulative.weight_hi");
    // No feature observed at all is not a fitted state.
    let mut v = value_of(&cumulative_ignore_f64());
    for f in ["sum_hi", "sum_lo", "weight_hi", "weight_lo"] {
        v["state"]["accumulator"]["cumulative"][f] = json!([0.0, 0.0, 0.0]);
    }
    rejects::<f64>(&v, "state.accumulator.cumulative.weight_hi");
}

#[test]
fn rejects_scales_out_of_range_or_giving_an_infinite_mean() {
    for bad in [json!(-1), json!(100_000), json!(i64::MAX)] {
        let mut v = value_of(&cumulative_f64());
        v["state"]["accumulator"]["cumulative"]["scale"][0] = bad;
        rejects::<f64>(&v, "state.accumulator.cumulative.scale");
    }
    // In range, but sum·2^scale / weight overflows.
    let mut v = value_of(&cumulative_f64());
    v["state"]["accumulator"]["cumulative"]["scale"][1] = json!(2000);
    rejects::<f64>(&v, "state.accumulator.cumulative");
}

#[test]
fn rejects_non_finite_values() {
    // JSON has no NaN or infinity; CBOR and postcard do.
    for (path, field) in [
        (
            &["state", "accumulator", "cumulative", "sum_hi"][..],
            "state.accumulator.cumulative.sum_hi",
        ),
        (
            &["state", "accumulator", "cumulative", "sum_lo"][..],
            "state.accumulator.cumulative.sum_lo",
        ),
        (
            &["state", "accumulator", "cumulative", "weight_hi"][..],
            "state.accumulator.cumulative.weight_hi",
        ),
        (
            &["state", "accumulator", "cumulative", "weight_lo"][..],
            "state.accumulator.cumulative.weight_lo",
        ),
    ] {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut v = ciborium::Value::serialized(&cumulative_f64()).unwrap();
            set_cbor_index(&mut v, path, 1, ciborium::Value::Float(bad));
            let err = cbor_rejects::<f64>(&v);
            assert!(err.contains(&format!("field `{field}`")), "{err}");
            assert!(err.contains("expected a finite value"), "{err}");
        }
    }
    for f in ["decay", "zero", "norm", "debiased", "first"] {
        let mut v = ciborium::Value::serialized(&moving_f64(EmaStart::Debiased, NanPolicy::Reject)).unwrap();
        set_cbor_index(
            &mut v,
            &["state", "accumulator", "moving", f],
            0,
            ciborium::Value::Float(f64::NAN),
        );
        let err = cbor_rejects::<f64>(&v);
        assert!(err.contains(&format!("field `state.accumulator.moving.{f}`")), "{err}");
    }
}

#[test]
fn rejects_decay_outside_unit_interval() {
    for bad in [1.5, -0.25] {
        let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
        v["state"]["accumulator"]["moving"]["decay"][0] = json!(bad);
        rejects::<f64>(&v, "state.accumulator.moving.decay");
    }
}

#[test]
fn rejects_bad_momenta() {
    for bad in [json!(1.5), json!(-0.1), json!(null), json!(1e300)] {
        let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
        v["params"]["momentum"] = bad;
        rejects::<f64>(&v, "params.momentum");
    }
    // NaN, through CBOR.
    let mut v = ciborium::Value::serialized(&moving_f64(EmaStart::Zero, NanPolicy::Reject)).unwrap();
    set_cbor(&mut v, &["params", "momentum"], ciborium::Value::Float(f64::NAN));
    assert!(cbor_rejects::<f64>(&v).contains("field `params.momentum`"));
    // A momentum or a start in a mode that has none.
    let mut v = value_of(&cumulative_f64());
    v["params"]["momentum"] = json!(0.9);
    rejects::<f64>(&v, "params.momentum");
    let mut v = value_of(&cumulative_f64());
    v["params"]["start"] = json!("zero");
    rejects::<f64>(&v, "params.start");
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
    v["params"]["start"] = json!(null);
    rejects::<f64>(&v, "params.start");
}

#[test]
fn rejects_step_counts_inconsistent_with_the_mode() {
    // More steps than batches.
    let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Ignore));
    v["state"]["accumulator"]["moving"]["steps"][0] = json!(3);
    let err = rejects::<f64>(&v, "state.accumulator.moving.steps");
    assert!(err.contains("at most n_batches = 2"), "{err}");
    // Under NaN policy reject, every batch steps every feature.
    let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Reject));
    v["state"]["accumulator"]["moving"]["steps"][1] = json!(1);
    rejects::<f64>(&v, "state.accumulator.moving.steps");
    // Fewer steps in all than batches.
    let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Ignore));
    v["state"]["n_batches"] = json!(7);
    v["state"]["n_samples"] = json!(7);
    rejects::<f64>(&v, "state.accumulator.moving.steps");
    // A feature with no step must hold the initial values.
    let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Ignore));
    v["state"]["accumulator"]["moving"]["steps"][1] = json!(0);
    rejects::<f64>(&v, "state.accumulator.moving.decay");
    // Σ momentumⁱ is at least 1 after a step.
    let mut v = value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Reject));
    v["state"]["accumulator"]["moving"]["norm"][0] = json!(0.5);
    rejects::<f64>(&v, "state.accumulator.moving.norm");
    // Batch average is momentum 1: decay stays 1 and the zero-start estimate 0.
    let mut c: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    c.partial_fit(&array![[1.0]]).unwrap();
    let mut v = value_of(&c);
    v["state"]["accumulator"]["moving"]["decay"][0] = json!(0.5);
    rejects::<f64>(&v, "state.accumulator.moving.decay");
    let mut v = value_of(&c);
    v["state"]["accumulator"]["moving"]["zero"][0] = json!(0.5);
    rejects::<f64>(&v, "state.accumulator.moving.zero");
    // Momentum 0 leaves no decay after a step.
    let mut c: Centering<f64> = CenteringParams::new().moving_average(0.0).build().unwrap();
    c.partial_fit(&array![[1.0]]).unwrap();
    let mut v = value_of(&c);
    v["state"]["accumulator"]["moving"]["decay"][0] = json!(0.5);
    rejects::<f64>(&v, "state.accumulator.moving.decay");
}

#[test]
fn rejects_an_accumulator_of_another_mode() {
    // A cumulative state under a moving-average mode, and the reverse.
    let mut v = value_of(&cumulative_f64());
    v["params"] = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject))["params"].clone();
    let err = rejects::<f64>(&v, "state.accumulator");
    assert!(err.contains("expected a moving accumulator"), "{err}");
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
    v["params"] = value_of(&cumulative_f64())["params"].clone();
    rejects::<f64>(&v, "state.accumulator");
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject));
    v["params"]["mode"] = json!("cumulative");
    v["params"]["momentum"] = json!(null);
    v["params"]["start"] = json!(null);
    rejects::<f64>(&v, "state.accumulator");
}

#[test]
fn rejects_unknown_missing_and_mistyped_fields() {
    let mut v = value_of(&cumulative_f64());
    v["state"]["means"] = json!([1.0, 2.0, 3.0]);
    let err = serde_json::from_value::<Centering<f64>>(v).unwrap_err().to_string();
    assert!(err.contains("unknown field `means`"), "{err}");
    let mut v = value_of(&cumulative_f64());
    v["comment"] = json!("hello");
    let err = serde_json::from_value::<Centering<f64>>(v).unwrap_err().to_string();
    assert!(err.contains("unknown field `comment`"), "{err}");
    let mut v = value_of(&Centering::<f64>::new());
    v.as_object_mut().unwrap().remove("state");
    let err = serde_json::from_value::<Centering<f64>>(v).unwrap_err().to_string();
    assert!(err.contains("missing field `state`"), "{err}");
    let mut v = value_of(&cumulative_f64());
    v["params"]["mode"] = json!("median");
    assert!(serde_json::from_value::<Centering<f64>>(v).is_err());
    let mut v = value_of(&cumulative_f64());
    v["state"]["n_samples"] = json!(2.5);
    assert!(serde_json::from_value::<Centering<f64>>(v).is_err());
    let text = r#"{"format_version": 1, "format_version": 1}"#;
    let err = serde_json::from_str::<Centering<f64>>(text).unwrap_err().to_string();
    assert!(err.contains("duplicate field"), "{err}");
}

#[test]
fn rejects_truncated_input_in_every_format() {
    let c = moving_f64(EmaStart::FirstBatch, NanPolicy::Ignore);
    let json = to_json(&c);
    for cut in 0..json.len() {
        assert!(
            serde_json::from_str::<Centering<f64>>(&json[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let post = to_postcard(&c);
    for cut in 0..post.len() {
        assert!(
            postcard::from_bytes::<Centering<f64>>(&post[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let cbor = to_cbor(&c);
    for cut in 0..cbor.len() {
        assert!(from_cbor::<Centering<f64>>(&cbor[..cut]).is_err(), "cut at {cut}");
    }
    assert!(serde_json::from_str::<Centering<f64>>("").is_err());
    assert!(serde_json::from_str::<Centering<f64>>("[]").is_err());
    assert!(serde_json::from_str::<Centering<f64>>("null").is_err());
}

// CBOR editing: a state as a `ciborium::Value` tree (maps keyed by text).

fn cbor_get<'a>(v: &'a mut ciborium::Value, key: &str) -> &'a mut ciborium::Value {
    v.as_map_mut()
        .expect("a map")
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no key {key}"))
}

fn set_cbor(v: &mut ciborium::Value, path: &[&str], new: ciborium::Value) {
    let mut cur = v;
    for key in path {
        cur = cbor_get(cur, key);
    }
    *cur = new;
}

fn set_cbor_index(v: &mut ciborium::Value, path: &[&str], i: usize, new: ciborium::Value) {
    let mut cur = v;
    for key in path {
        cur = cbor_get(cur, key);
    }
    cur.as_array_mut().expect("an array")[i] = new;
}

fn cbor_rejects<F: centering::Element>(v: &ciborium::Value) -> String
where
    Centering<F>: DeserializeOwned,
{
    let mut bytes = Vec::new();
    ciborium::into_writer(v, &mut bytes).unwrap();
    match from_cbor::<Centering<F>>(&bytes) {
        Ok(c) => panic!("expected a rejection, loaded {c:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Never a panic: arbitrary bytes, arbitrary JSON, mutated valid states.

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        (-3i64..10).prop_map(|i| json!(i)),
        prop_oneof![
            Just("f64"),
            Just("f32"),
            Just("cumulative"),
            Just("moving_average"),
            Just("batch_average"),
            Just("zero"),
            Just("debiased"),
            Just("first_batch"),
            Just("reject"),
            Just("ignore"),
            Just("format_version"),
            Just("state"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("format_version".to_owned()),
            Just("dtype".to_owned()),
            Just("params".to_owned()),
            Just("state".to_owned()),
            Just("mode".to_owned()),
            Just("momentum".to_owned()),
            Just("torch_momentum".to_owned()),
            Just("cumulative".to_owned()),
            Just("moving".to_owned()),
            "[a-z_]{0,12}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Uses a loaded estimator the way a user would; none of it may panic.
fn exercise<F: centering::Element>(mut c: Centering<F>) {
    let d = c.n_features().unwrap_or(2);
    let x = Array2::<F>::from_elem((3, d), F::one());
    let _ = c.transform(&x);
    let _ = c.inverse_transform(&x);
    let _ = c.mean();
    let _ = c.weight_sums();
    let other = c.clone();
    let _ = c.merge(&other);
    let _ = c.partial_fit(&x);
    let _ = c.center_batch(&x);
}

/// `v` with its `pick`-th node (in document order) replaced by `new`.
fn mutate(v: &Value, pick: usize, new: &Value) -> Value {
    fn nodes(v: &Value, out: &mut Vec<Vec<String>>, at: Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| {
                let mut p = at.clone();
                p.push(k.clone());
                nodes(c, out, p);
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                let mut p = at.clone();
                p.push(i.to_string());
                nodes(c, out, p);
            }),
            _ => {}
        }
    }
    let mut all = Vec::new();
    nodes(v, &mut all, Vec::new());
    let path = &all[pick % all.len()];
    let mut out = v.clone();
    let mut cur = &mut out;
    for k in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(k).unwrap(),
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    *cur = new.clone();
    out
}

fn valid_states() -> Vec<Value> {
    vec![
        value_of(&cumulative_f64()),
        value_of(&cumulative_ignore_f64()),
        value_of(&moving_f64(EmaStart::Zero, NanPolicy::Reject)),
        value_of(&moving_f64(EmaStart::Debiased, NanPolicy::Ignore)),
        value_of(&moving_f64(EmaStart::FirstBatch, NanPolicy::Ignore)),
        value_of(&Centering::<f64>::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(c) = postcard::from_bytes::<Centering<f64>>(&bytes) { exercise(c); }
        if let Ok(c) = postcard::from_bytes::<Centering<f32>>(&bytes) { exercise(c); }
        if let Ok(c) = from_cbor::<Centering<f64>>(&bytes) { exercise(c); }
        if let Ok(c) = serde_json::from_slice::<Centering<f64>>(&bytes) { exercise(c); }
    }

    #[test]
    fn mutated_postcard_never_panics(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let c: Centering<f64> = serde_json::from_value(valid_states()[which].clone()).unwrap();
        let mut bytes = to_postcard(&c);
        for (at, b) in edits {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        if let Ok(c) = postcard::from_bytes::<Centering<f64>>(&bytes) { exercise(c); }
        if let Ok(c) = postcard::from_bytes::<Centering<f32>>(&bytes) { exercise(c); }
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        if let Ok(c) = serde_json::from_value::<Centering<f64>>(v.clone()) { exercise(c); }
        if let Ok(c) = serde_json::from_value::<Centering<f32>>(v) { exercise(c); }
    }

    #[test]
    fn mutated_json_never_panics(which in 0usize..6, pick in any::<usize>(), new in arb_json()) {
        let v = mutate(&valid_states()[which], pick, &new);
        if let Ok(c) = serde_json::from_value::<Centering<f64>>(v.clone()) { exercise(c); }
        if let Ok(c) = serde_json::from_value::<Centering<f32>>(v) { exercise(c); }
    }
}

/// Counts read back near `u64::MAX` stay exact: fitting or merging past the
/// limit is a `CountOverflow` error that leaves the estimator unchanged —
/// never a panic, never a wrapped or saturated count (saturated step counts
/// used to give states that could not be reloaded).
#[test]
fn counts_near_u64_max_stay_exact_after_load() {
    use centering::CenteringError;
    for c in [cumulative_f64(), moving_f64(EmaStart::Debiased, NanPolicy::Reject)] {
        let mut v = value_of(&c);
        v["state"]["n_samples"] = serde_json::json!(u64::MAX - 1);
        let mut loaded: Centering<f64> = serde_json::from_value(v).expect("a large count is valid");
        let other = loaded.clone();
        let row = ndarray::Array2::from_elem((1, c.n_features().unwrap()), 1.5);
        loaded.partial_fit(&row).unwrap();
        assert_eq!(loaded.n_samples_seen(), u64::MAX);
        let before = loaded.clone();
        let err = loaded.partial_fit(&row).unwrap_err();
        assert_eq!(
            err,
            CenteringError::CountOverflow {
                what: "sample",
                this: u64::MAX,
                added: 1
            }
        );
        assert!(err.to_string().contains("u64::MAX"), "{err}");
        assert_eq!(loaded, before);
        assert!(matches!(
            loaded.merge(&other),
            Err(CenteringError::CountOverflow { what: "sample", .. })
        ));
        assert_eq!(loaded, before);
        assert!(loaded.mean().unwrap().iter().all(|m| m.is_finite()));
        // Whatever was produced reloads.
        let again: Centering<f64> = serde_json::from_str(&to_json(&loaded)).unwrap();
        assert_eq!(again, loaded);
    }
    // Batch counts likewise.
    let c = moving_f64(EmaStart::Zero, NanPolicy::Reject);
    let mut v = value_of(&c);
    let t = u64::MAX - 1;
    v["state"]["n_samples"] = json!(u64::MAX - 1);
    v["state"]["n_batches"] = json!(t);
    v["state"]["accumulator"]["moving"]["steps"] = json!([t, t]);
    // Beyond 2^48 steps only coarse bounds on decay and norm are checked.
    v["state"]["accumulator"]["moving"]["decay"] = json!([0.0, 0.0]);
    v["state"]["accumulator"]["moving"]["norm"] = json!([10.0, 10.0]);
    let mut big: Centering<f64> = serde_json::from_value(v).expect("a large step count is valid");
    let small = moving_f64(EmaStart::Zero, NanPolicy::Reject);
    let before = big.clone();
    assert!(matches!(big.merge(&small), Err(CenteringError::CountOverflow { .. })));
    assert_eq!(big, before);
}

// ---------------------------------------------------------------------------
// PyTorch's convention is part of the state.

fn torch_f64(mu: f64) -> Centering<f64> {
    let mut c: Centering<f64> = CenteringParams::new()
        .torch_momentum(mu)
        .start(EmaStart::Zero)
        .build()
        .unwrap();
    c.partial_fit(&array![[0.1, 3.0], [0.7, -1.0]]).unwrap();
    c.partial_fit(&array![[1.3, 2.5]]).unwrap();
    c
}

#[test]
fn torch_convention_round_trips_and_keeps_fitting_identically() {
    let next = array![[0.3, -7.0]];
    for mu in [0.1, 0.3, 0.01] {
        let c = torch_f64(mu);
        let loaded = [
            serde_json::from_str::<Centering<f64>>(&to_json(&c)).unwrap(),
            postcard::from_bytes::<Centering<f64>>(&to_postcard(&c)).unwrap(),
            from_cbor::<Centering<f64>>(&to_cbor(&c)).unwrap(),
        ];
        for mut back in loaded {
            assert_eq!(back, c);
            assert_eq!(back.params().torch_momentum(), Some(mu));
            let mut original = c.clone();
            original.partial_fit(&next).unwrap();
            back.partial_fit(&next).unwrap();
            assert_eq!(bits(&back), bits(&original));
            assert_eq!(mean_bits(&back), mean_bits(&original));
        }
    }
    // Why it is stored: read as Keras's 0.9, the new-value weight would be
    // 1 − 0.9 = 0.09999999999999998 instead of 0.1, and fitting would drift.
    let c = torch_f64(0.1);
    let mut v = value_of(&c);
    v["params"]["torch_momentum"] = json!(null);
    let mut keras: Centering<f64> = serde_json::from_value(v).unwrap();
    assert_ne!(keras, c);
    let mut original = c.clone();
    original.partial_fit(&next).unwrap();
    keras.partial_fit(&next).unwrap();
    assert_ne!(mean_bits(&keras), mean_bits(&original));
}

#[test]
fn rejects_bad_torch_momenta() {
    // Out of range, or not the μ whose 1 − μ is the stored momentum (0.75).
    for bad in [
        json!(1.5),
        json!(-0.1),
        json!(0.5),
        json!(0.2500000000000001),
        json!(1e300),
    ] {
        let mut v = value_of(&torch_f64(0.25));
        v["params"]["torch_momentum"] = bad;
        rejects::<f64>(&v, "params.torch_momentum");
    }
    // The momentum edited without its μ.
    let mut v = value_of(&torch_f64(0.25));
    v["params"]["momentum"] = json!(0.5);
    let err = rejects::<f64>(&v, "params.torch_momentum");
    assert!(err.contains("1 − μ = momentum"), "{err}");
    // A PyTorch momentum in a mode that has none.
    let mut v = value_of(&cumulative_f64());
    v["params"]["torch_momentum"] = json!(0.1);
    rejects::<f64>(&v, "params.torch_momentum");
    let mut c: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    c.partial_fit(&array![[1.0]]).unwrap();
    let mut v = value_of(&c);
    v["params"]["torch_momentum"] = json!(0.0);
    rejects::<f64>(&v, "params.torch_momentum");
    // NaN, through CBOR.
    let mut v = ciborium::Value::serialized(&torch_f64(0.25)).unwrap();
    set_cbor(&mut v, &["params", "torch_momentum"], ciborium::Value::Float(f64::NAN));
    let err = cbor_rejects::<f64>(&v);
    assert!(err.contains("field `params.torch_momentum`"), "{err}");
}

// ---------------------------------------------------------------------------
// Integers: u64 and i32 on the wire, so that every format can hold them.

/// A serde format without 128-bit integers, like rmp-serde (by default),
/// TOML or BSON: serde's default `serialize_i128`/`serialize_u128` fail.
/// It records the integer types it is handed.
#[derive(Default)]
struct No128 {
    ints: std::collections::BTreeSet<&'static str>,
}

#[derive(Debug)]
struct No128Error(String);

impl std::fmt::Display for No128Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for No128Error {}

impl serde::ser::Error for No128Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        No128Error(msg.to_string())
    }
}

macro_rules! no128_ints {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, _: $ty) -> Result<(), No128Error> {
            self.ints.insert(stringify!($ty));
            Ok(())
        }
    )*};
}

macro_rules! no128_compound {
    ($($trait:ident: $method:ident $(($key:ident))?),*) => {$(
        impl serde::ser::$trait for &mut No128 {
            type Ok = ();
            type Error = No128Error;
            fn $method<T: ?Sized + Serialize>(&mut self, $($key: &'static str,)? value: &T) -> Result<(), No128Error> {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), No128Error> {
                Ok(())
            }
        }
    )*};
}

no128_compound! {
    SerializeSeq: serialize_element,
    SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field,
    SerializeTupleVariant: serialize_field,
    SerializeStruct: serialize_field(key),
    SerializeStructVariant: serialize_field(key)
}

impl serde::ser::SerializeMap for &mut No128 {
    type Ok = ();
    type Error = No128Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), No128Error> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), No128Error> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), No128Error> {
        Ok(())
    }
}

impl serde::Serializer for &mut No128 {
    type Ok = ();
    type Error = No128Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    no128_ints!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64);
    no128_ints!(serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);

    fn serialize_bool(self, _: bool) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), No128Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), No128Error> {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<(), No128Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), No128Error> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, No128Error> {
        Ok(self)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self, No128Error> {
        Ok(self)
    }
}

#[test]
fn serialises_in_formats_without_128_bit_integers() {
    // The unfitted estimator too: its format version is an integer.
    let mut with_max = cumulative_f64();
    with_max
        .partial_fit(&array![[f64::MAX, 1.0, 2.0], [f64::MAX, 1.0, 2.0]])
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut check = |c: &dyn erased::State| {
        let mut s = No128::default();
        c.write(&mut s)
            .unwrap_or_else(|e| panic!("a format without i128 fails: {e}"));
        seen.extend(s.ints);
    };
    check(&Centering::<f64>::new());
    check(&Centering::<f32>::new());
    check(&with_max);
    check(&cumulative_ignore_f64());
    check(&moving_f64(EmaStart::Debiased, NanPolicy::Ignore));
    check(&torch_f64(0.1));
    check(&CenteringParams::new().torch_momentum(0.1).check().unwrap());
    assert_eq!(seen, ["i32", "u64"].into_iter().collect());
}

/// `Serialize` for the estimators and parameters above, as a trait object.
mod erased {
    pub trait State {
        fn write(&self, s: &mut super::No128) -> Result<(), super::No128Error>;
    }
    impl<T: serde::Serialize> State for T {
        fn write(&self, s: &mut super::No128) -> Result<(), super::No128Error> {
            self.serialize(s)
        }
    }
}

#[test]
fn integers_are_range_checked_with_the_field_named() {
    // JSON: fractional, negative and oversized values reach the checks.
    for (path, bad) in [
        (&["state", "n_samples"][..], json!(2.5)),
        (&["state", "n_batches"][..], json!(-2)),
        (&["state", "n_features"][..], json!(1e30)),
        (&["format_version"][..], json!(1.5)),
    ] {
        let mut v = value_of(&cumulative_f64());
        let mut cur = &mut v;
        for k in path {
            cur = &mut cur[*k];
        }
        *cur = bad;
        rejects::<f64>(&v, &path.join("."));
    }
    for bad in [json!(1u64 << 40), json!(-(1i64 << 40)), json!(0.5)] {
        let mut v = value_of(&cumulative_f64());
        v["state"]["accumulator"]["cumulative"]["scale"][0] = bad;
        rejects::<f64>(&v, "state.accumulator.cumulative.scale");
    }
    let mut v = value_of(&moving_f64(EmaStart::Zero, NanPolicy::Ignore));
    v["state"]["accumulator"]["moving"]["steps"][1] = json!(1.25);
    rejects::<f64>(&v, "state.accumulator.moving.steps");
    // CBOR refuses a negative number for a u64 itself; the field is named
    // all the same.
    let int = |i: i64| ciborium::Value::Integer(i.into());
    for (path, field) in [
        (&["format_version"][..], "format_version"),
        (&["state", "n_samples"][..], "state.n_samples"),
        (&["state", "n_batches"][..], "state.n_batches"),
        (&["state", "n_features"][..], "state.n_features"),
    ] {
        let mut v = ciborium::Value::serialized(&cumulative_f64()).unwrap();
        set_cbor(&mut v, path, int(-1));
        let err = cbor_rejects::<f64>(&v);
        assert!(err.contains(&format!("field `{field}`")), "{err}");
    }
    let mut v = ciborium::Value::serialized(&moving_f64(EmaStart::Zero, NanPolicy::Ignore)).unwrap();
    set_cbor_index(&mut v, &["state", "accumulator", "moving", "steps"], 0, int(-3));
    let err = cbor_rejects::<f64>(&v);
    assert!(err.contains("field `state.accumulator.moving.steps`"), "{err}");
    let mut v = ciborium::Value::serialized(&cumulative_f64()).unwrap();
    set_cbor_index(
        &mut v,
        &["state", "accumulator", "cumulative", "scale"],
        0,
        int(1 << 40),
    );
    let err = cbor_rejects::<f64>(&v);
    assert!(err.contains("field `state.accumulator.cumulative.scale`"), "{err}");
    // A negative format version is still reported as the version, first.
    let text = r#"{"format_version": -1, "layout": "columnar"}"#;
    let err = serde_json::from_str::<Centering<f64>>(text).unwrap_err().to_string();
    assert!(err.contains("field `format_version`"), "{err}");
}

// ---------------------------------------------------------------------------
// Double-word pairs must be normalised.

#[test]
fn rejects_pairs_that_are_not_normalised() {
    let mut c = Centering::<f64>::new();
    c.partial_fit(&array![[5.0]]).unwrap();
    let v0 = value_of(&c);
    assert_eq!(v0["state"]["accumulator"]["cumulative"]["sum_hi"], json!([5.0]));
    assert_eq!(v0["state"]["accumulator"]["cumulative"]["weight_hi"], json!([1.0]));
    // The reviewer's state: a weight of 1 + (−1) = 0 posing as 1 (it used
    // to load with a mean of 10).
    let mut v = v0.clone();
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([-1.0]);
    let err = rejects::<f64>(&v, "state.accumulator.cumulative.weight_lo");
    assert!(err.contains("normalised"), "{err}");
    let mut v = v0.clone();
    v["state"]["accumulator"]["cumulative"]["sum_lo"] = json!([1.0]);
    rejects::<f64>(&v, "state.accumulator.cumulative.sum_lo");
    let mut v = v0.clone();
    v["state"]["accumulator"]["cumulative"]["sum_hi"] = json!([0.0]);
    v["state"]["accumulator"]["cumulative"]["sum_lo"] = json!([5.0]);
    rejects::<f64>(&v, "state.accumulator.cumulative.sum_lo");
    // Half an ulp is the limit: hi + lo still rounds (to even) to hi.
    let mut v = v0.clone();
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([f64::EPSILON / 2.0]);
    serde_json::from_value::<Centering<f64>>(v).expect("normalised");
    let mut v = v0.clone();
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([f64::EPSILON]);
    rejects::<f64>(&v, "state.accumulator.cumulative.weight_lo");
    // An f32 state's pairs are f64 pairs in format 2, normalised in f64 ...
    let mut c = Centering::<f32>::new();
    c.partial_fit(&array![[5.0f32]]).unwrap();
    let mut v = value_of(&c);
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([f64::EPSILON / 2.0]);
    serde_json::from_value::<Centering<f32>>(v.clone()).expect("normalised in f64");
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([f64::from(f32::EPSILON / 2.0)]);
    rejects::<f32>(&v, "state.accumulator.cumulative.weight_lo");
    // ... and f32 pairs, normalised in f32, in format 1.
    v["format_version"] = json!(1);
    serde_json::from_value::<Centering<f32>>(v.clone()).expect("normalised in f32");
    v["state"]["accumulator"]["cumulative"]["weight_lo"] = json!([f64::from(f32::EPSILON)]);
    rejects::<f32>(&v, "state.accumulator.cumulative.weight_lo");
}

// ---------------------------------------------------------------------------
// Moving states: decay and norm must match the steps and the momentum.

const DECAY: &str = "state.accumulator.moving.decay";
const NORM: &str = "state.accumulator.moving.norm";

#[test]
fn rejects_a_norm_other_than_the_step_count_with_momentum_one() {
    // The reviewer's state: one batch, yet a norm of 1e300 (later batches
    // would barely move the average).
    let mut c: Centering<f64> = CenteringParams::new().batch_average().build().unwrap();
    c.partial_fit(&array![[2.0]]).unwrap();
    let mut v = value_of(&c);
    v["state"]["accumulator"]["moving"]["norm"] = json!([1e300]);
    v["state"]["accumulator"]["moving"]["debiased"] = json!([2.0]);
    let err = rejects::<f64>(&v, NORM);
    assert!(err.contains("step count 1"), "{err}");
    for bad in [2.0, 1.0 + f64::EPSILON] {
        let mut v = value_of(&c);
        v["state"]["accumulator"]["moving"]["norm"] = json!([bad]);
        rejects::<f64>(&v, NORM);
    }
    // Momentum 1 in the moving average follows the same rule.
    let mut c: Centering<f64> = CenteringParams::new().moving_average(1.0).build().unwrap();
    c.partial_fit(&array![[2.0]]).unwrap();
    c.partial_fit(&array![[4.0]]).unwrap();
    let mut v = value_of(&c);
    assert_eq!(v["state"]["accumulator"]["moving"]["norm"], json!([2.0]));
    v["state"]["accumulator"]["moving"]["norm"] = json!([3.0]);
    rejects::<f64>(&v, NORM);
}

#[test]
fn rejects_decay_and_norm_inconsistent_with_the_momentum() {
    // Momentum 0.9, 2 steps: decay 0.81, norm 1.9.
    let c = moving_f64(EmaStart::Debiased, NanPolicy::Reject);
    let v0 = value_of(&c);
    let moving = |v: &Value, f: &str| v["state"]["accumulator"]["moving"][f][0].as_f64().unwrap();
    let set = |f: &str, x: f64| {
        let mut v = v0.clone();
        v["state"]["accumulator"]["moving"][f][0] = json!(x);
        v
    };
    let (decay, norm) = (moving(&v0, "decay"), moving(&v0, "norm"));
    assert_eq!((decay, norm), (0.9f64.powi(2), 1.9));
    for bad in [decay * (1.0 + 1e-12), decay * (1.0 - 1e-9), 0.5, 1.0, 0.0] {
        rejects::<f64>(&set("decay", bad), DECAY);
    }
    for bad in [norm * (1.0 + 1e-12), 1.0, 2.0, 1e300] {
        rejects::<f64>(&set("norm", bad), NORM);
    }
    // A few ulps are rounding, not corruption.
    let up = |x: f64| f64::from_bits(x.to_bits() + 3);
    serde_json::from_value::<Centering<f64>>(set("decay", up(decay))).expect("within tolerance");
    serde_json::from_value::<Centering<f64>>(set("norm", up(norm))).expect("within tolerance");
    // Momentum 0: decay 0 and norm 1 after any step.
    let mut c: Centering<f64> = CenteringParams::new().moving_average(0.0).build().unwrap();
    c.partial_fit(&array![[1.0]]).unwrap();
    c.partial_fit(&array![[3.0]]).unwrap();
    let mut v = value_of(&c);
    assert_eq!(v["state"]["accumulator"]["moving"]["norm"], json!([1.0]));
    v["state"]["accumulator"]["moving"]["norm"] = json!([2.0]);
    rejects::<f64>(&v, NORM);
    // In an f32 state too (decay and norm are f64 whatever F).
    let mut c: Centering<f32> = CenteringParams::new().moving_average(0.9).build().unwrap();
    c.partial_fit(&array![[1.0f32]]).unwrap();
    c.partial_fit(&array![[2.0f32]]).unwrap();
    let mut v = value_of(&c);
    assert_eq!(v["state"]["accumulator"]["moving"]["decay"], json!([0.9f64.powi(2)]));
    v["state"]["accumulator"]["moving"]["decay"] = json!([f64::from(0.9f32 * 0.9f32)]);
    rejects::<f32>(&v, DECAY);
}

#[test]
fn rejects_a_debiased_mean_beyond_the_element_type() {
    let mut c: Centering<f32> = CenteringParams::new().moving_average(0.5).build().unwrap();
    c.partial_fit(&array![[f32::MAX]]).unwrap();
    c.partial_fit(&array![[f32::MAX]]).unwrap();
    let v0 = value_of(&c);
    assert_eq!(c.mean().unwrap()[0], f32::MAX);
    let mut v = v0.clone();
    v["state"]["accumulator"]["moving"]["debiased"] = json!([1e300]);
    rejects::<f32>(&v, "state.accumulator.moving.debiased");
    // Whatever the start: under Zero the debiased estimate is not the mean,
    // but it is still an average of f32 batch means.
    let mut v = v0;
    v["params"]["start"] = json!("zero");
    v["state"]["accumulator"]["moving"]["debiased"] = json!([-1e39]);
    rejects::<f32>(&v, "state.accumulator.moving.debiased");
}

/// `k` single-row batches with momentum `beta` (PyTorch's `1 − beta` when
/// `torch`), from the `offset`-th of a fixed stream.
fn segment<F: centering::Element>(beta: f64, torch: bool, policy: NanPolicy, offset: usize, k: usize) -> Centering<F> {
    let p = if torch {
        CenteringParams::new().torch_momentum(1.0 - beta)
    } else {
        CenteringParams::new().moving_average(beta)
    };
    let mut c: Centering<F> = p.start(EmaStart::Debiased).nan_policy(policy).build().unwrap();
    for i in offset..offset + k {
        let x = ((i * 7919) % 201) as f64 - 100.0;
        // Under NaN-ignore, the second feature misses every third batch.
        let y = if policy == NanPolicy::Ignore && i % 3 == 0 {
            f64::NAN
        } else {
            x * 0.5 + 1.0
        };
        c.partial_fit(&array![[F::from(x).unwrap(), F::from(y).unwrap()]])
            .unwrap();
    }
    c
}

/// Loads `c` back from JSON, postcard and CBOR, expecting the same state.
fn reloads<F: centering::Element>(c: &Centering<F>, what: &str)
where
    Centering<F>: Serialize + DeserializeOwned,
{
    let json = serde_json::from_str::<Centering<F>>(&to_json(c)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(&json, c, "{what}");
    let post = postcard::from_bytes::<Centering<F>>(&to_postcard(c)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(&post, c, "{what}");
    let cbor = from_cbor::<Centering<F>>(&to_cbor(c)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(&cbor, c, "{what}");
}

const MOMENTA: [f64; 11] = [
    0.0,
    1e-300,
    f64::EPSILON,
    0.1,
    0.5,
    0.9,
    0.99,
    0.999_999,
    1.0 - f64::EPSILON,
    1.0 - f64::EPSILON / 2.0,
    1.0,
];

/// Merging composes `decay` and `norm` differently from stepping; whatever
/// the shape of the merge tree, the result must pass the consistency check.
#[test]
fn merged_moving_states_load_whatever_the_merge_tree() {
    fn shapes<F: centering::Element>(beta: f64, torch: bool, policy: NanPolicy)
    where
        Centering<F>: Serialize + DeserializeOwned,
    {
        let lens: Vec<usize> = (0..40).map(|i| 1 + (i * 13) % 17).collect();
        let mut offsets = vec![0];
        for l in &lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        let segs: Vec<Centering<F>> = lens
            .iter()
            .zip(&offsets)
            .map(|(&k, &o)| segment::<F>(beta, torch, policy, o, k))
            .collect();
        let what = format!("beta {beta}, torch {torch}, {policy:?}");
        // Left-deep: ((a·b)·c)·…
        let mut left = segs[0].clone();
        for s in &segs[1..] {
            left.merge(s).unwrap();
        }
        reloads(&left, &format!("left-deep, {what}"));
        // Right-deep: a·(b·(c·…)).
        let mut right = segs.last().unwrap().clone();
        for s in segs[..segs.len() - 1].iter().rev() {
            let mut s = s.clone();
            s.merge(&right).unwrap();
            right = s;
        }
        reloads(&right, &format!("right-deep, {what}"));
        // Balanced.
        let mut level = segs.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| {
                    let mut a = p[0].clone();
                    if let Some(b) = p.get(1) {
                        a.merge(b).unwrap();
                    }
                    a
                })
                .collect();
        }
        reloads(&level[0], &format!("balanced, {what}"));
        // The same batches, one after the other.
        let whole = segment::<F>(beta, torch, policy, 0, *offsets.last().unwrap());
        reloads(&whole, &format!("stream, {what}"));
        assert_eq!(whole.n_batches(), left.n_batches());
    }
    for beta in MOMENTA {
        for torch in [false, true] {
            for policy in [NanPolicy::Reject, NanPolicy::Ignore] {
                shapes::<f64>(beta, torch, policy);
                shapes::<f32>(beta, torch, policy);
            }
        }
    }
}

/// Thousands of single-batch segments merged right to left: every batch's
/// term goes through thousands of additions, the worst case for `norm`.
#[test]
fn long_merge_chains_load() {
    for beta in [0.9999, 0.5, 1.0 - f64::EPSILON] {
        let n = 3000;
        let mut acc = segment::<f64>(beta, false, NanPolicy::Reject, n - 1, 1);
        for i in (0..n - 1).rev() {
            let mut s = segment::<f64>(beta, false, NanPolicy::Reject, i, 1);
            s.merge(&acc).unwrap();
            acc = s;
        }
        assert_eq!(acc.n_batches(), n as u64);
        reloads(&acc, &format!("right-deep chain, beta {beta}"));
        // And thousands of steps after a merge.
        let mut c = segment::<f64>(beta, false, NanPolicy::Reject, 0, 1);
        c.merge(&segment::<f64>(beta, false, NanPolicy::Reject, 1, 1)).unwrap();
        for i in 2..n {
            c.partial_fit(&array![[i as f64, -(i as f64)]]).unwrap();
        }
        reloads(&c, &format!("steps after a merge, beta {beta}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random segments merged in a random order (always in stream order)
    /// load, in f64 and f32.
    #[test]
    fn merged_moving_states_always_load(
        beta in prop_oneof![proptest::sample::select(MOMENTA.to_vec()), 0.0..=1.0f64],
        torch in any::<bool>(),
        ignore in any::<bool>(),
        lens in proptest::collection::vec(1usize..60, 1..10),
        order in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let policy = if ignore { NanPolicy::Ignore } else { NanPolicy::Reject };
        fn merged<F: centering::Element>(beta: f64, torch: bool, policy: NanPolicy, lens: &[usize], order: &[usize]) -> Centering<F> {
            let mut offset = 0;
            let mut segs: Vec<Centering<F>> = lens
                .iter()
                .map(|&k| {
                    offset += k;
                    segment::<F>(beta, torch, policy, offset - k, k)
                })
                .collect();
            let mut order = order.iter();
            while segs.len() > 1 {
                let i = order.next().copied().unwrap_or(0) % (segs.len() - 1);
                let later = segs.remove(i + 1);
                segs[i].merge(&later).unwrap();
            }
            segs.pop().unwrap()
        }
        reloads(&merged::<f64>(beta, torch, policy, &lens, &order), "f64");
        reloads(&merged::<f32>(beta, torch, policy, &lens, &order), "f32");
    }
}
