//! `center_fit` and `center_apply` run by DataFusion against in-process fits.

use std::collections::BTreeMap;
use std::sync::Arc;

use centering::{AnyCentering, Centering, NanPolicy};
use centering_datafusion::{CenterFit, register, state_of};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};
use datafusion::prelude::*;
use ndarray::Array2;

/// A deterministic generator (no dependency for it).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn value(&mut self) -> f64 {
        (self.next() as f64 / (1u64 << 53) as f64 - 0.5) * 1000.0 + 3.0
    }
}

/// One partition's data: batches of rows, `None` for a null.
type Rows = Vec<Vec<Option<f64>>>;

fn gen_partitions(seed: u64, parts: usize, batches: usize, rows: usize, d: usize, null_every: u64) -> Vec<Vec<Rows>> {
    let mut g = Lcg(seed);
    (0..parts)
        .map(|_| {
            (0..batches)
                .map(|_| {
                    (0..rows)
                        .map(|_| {
                            (0..d)
                                .map(|_| {
                                    let v = g.value();
                                    (null_every == 0 || !g.next().is_multiple_of(null_every)).then_some(v)
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn names(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("x{j}")).collect()
}

fn schema(d: usize, t: &DataType, key: bool) -> SchemaRef {
    let mut f: Vec<Field> = names(d).iter().map(|n| Field::new(n, t.clone(), true)).collect();
    if key {
        f.push(Field::new("k", DataType::Int64, false));
    }
    Arc::new(Schema::new(f))
}

/// Record batches of the rows, as Float64 or Float32 columns, with an
/// optional group key per row.
fn to_batch(rows: &Rows, d: usize, t: &DataType, keys: Option<&[i64]>) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = (0..d)
        .map(|j| -> ArrayRef {
            let c = rows.iter().map(|r| r[j]);
            match t {
                DataType::Float32 => Arc::new(c.map(|v| v.map(|v| v as f32)).collect::<Float32Array>()),
                _ => Arc::new(c.collect::<Float64Array>()),
            }
        })
        .collect();
    if let Some(k) = keys {
        cols.push(Arc::new(Int64Array::from(k.to_vec())));
    }
    Ok(RecordBatch::try_new(schema(d, t, keys.is_some()), cols)?)
}

/// A context whose plans keep the table's partitions as they are.
fn context(partitions: usize) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions.max(1)));
    register(&ctx);
    ctx
}

/// The in-process fit of one partition's batches, in order (nulls as NaN).
fn fit_rows(batches: &[Rows], d: usize, t: &DataType) -> Centering<f64> {
    let mut c = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .unwrap();
    for rows in batches.iter().filter(|r| !r.is_empty()) {
        let x = Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j].unwrap_or(f64::NAN));
        match t {
            DataType::Float32 => c.partial_fit_input(&x.mapv(|v| v as f32)).unwrap(),
            _ => c.partial_fit(&x).unwrap(),
        };
    }
    c
}

fn json(c: &Centering<f64>) -> String {
    serde_json::to_string(c).unwrap()
}

/// Every left fold of the partitions' fits with `merge`, in every order:
/// DataFusion's final phase merges partial states in arrival order.
fn all_orders(fits: &[Centering<f64>]) -> Vec<String> {
    fn perms(rest: Vec<usize>, acc: Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if rest.is_empty() {
            out.push(acc);
            return;
        }
        for i in 0..rest.len() {
            let mut r = rest.clone();
            let x = r.remove(i);
            let mut a = acc.clone();
            a.push(x);
            perms(r, a, out);
        }
    }
    let mut orders = Vec::new();
    perms((0..fits.len()).collect(), vec![], &mut orders);
    orders
        .into_iter()
        .map(|o| {
            let mut c = Centering::<f64>::builder()
                .nan_policy(NanPolicy::Ignore)
                .build()
                .unwrap();
            for i in o {
                c.merge(&fits[i]).unwrap();
            }
            json(&c)
        })
        .collect()
}

fn fit_sql(d: usize) -> String {
    format!("SELECT center_fit({}) AS fit FROM t", names(d).join(", "))
}

async fn run_ungrouped(parts: &[Vec<Rows>], d: usize, t: &DataType) -> Result<(Centering<f64>, RecordBatch)> {
    let ctx = context(parts.len());
    let batches: Vec<Vec<RecordBatch>> = parts
        .iter()
        .map(|p| p.iter().map(|r| to_batch(r, d, t, None)).collect::<Result<_>>())
        .collect::<Result<_>>()?;
    ctx.register_table("t", Arc::new(MemTable::try_new(schema(d, t, false), batches)?))?;
    let out = ctx.sql(&fit_sql(d)).await?.collect().await?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].num_rows(), 1);
    Ok((state_of(&out[0], "fit", 0)?, out[0].clone()))
}

#[tokio::test]
async fn ungrouped_multi_partition_with_nulls_equals_in_process_fit_bit_for_bit() -> Result<()> {
    let d = 5;
    let parts = gen_partitions(1, 3, 3, 200, d, 7);
    let (got, batch) = run_ungrouped(&parts, d, &DataType::Float64).await?;
    let fits: Vec<_> = parts.iter().map(|p| fit_rows(p, d, &DataType::Float64)).collect();
    assert!(all_orders(&fits).contains(&json(&got)), "not any order's merge");

    // The mean and count fields are the state's.
    let s = batch.column(0).as_struct();
    let mean = s.column_by_name("mean").unwrap().as_list::<i32>().value(0);
    let mean: Vec<f64> = mean.as_primitive::<Float64Type>().values().to_vec();
    assert_eq!(mean, got.mean().unwrap().to_vec());
    let count = s.column_by_name("count").unwrap().as_list::<i32>().value(0);
    assert_eq!(
        count.as_primitive::<Float64Type>().values().to_vec(),
        got.counts().unwrap().to_vec()
    );
    // Counts are per feature: the non-null values.
    for (j, c) in got.counts().unwrap().iter().enumerate() {
        let n = parts.iter().flatten().flatten().filter(|r| r[j].is_some()).count();
        assert_eq!(*c, n as f64);
    }
    // Within rounding of the whole data fitted at once.
    let all: Rows = parts.iter().flatten().flatten().cloned().collect();
    let once = fit_rows(&[all], d, &DataType::Float64);
    for (a, b) in got.mean().unwrap().iter().zip(once.mean().unwrap()) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
    Ok(())
}

#[tokio::test]
async fn the_state_loads_as_any_centering_and_merges_with_an_in_process_fit() -> Result<()> {
    let d = 3;
    let parts = gen_partitions(2, 2, 2, 50, d, 0);
    let (_, batch) = run_ungrouped(&parts, d, &DataType::Float64).await?;
    let s = batch
        .column(0)
        .as_struct()
        .column_by_name("state")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string();
    let any: AnyCentering = serde_json::from_str(&s).unwrap();
    assert_eq!(any.dtype(), "f64");
    assert_eq!(any.n_features(), Some(d));
    let mut c: Centering<f64> = any.try_into().unwrap();
    let more = fit_rows(&gen_partitions(3, 1, 1, 10, d, 0)[0], d, &DataType::Float64);
    c.merge(&more).unwrap();
    assert_eq!(c.n_samples_seen(), 2 * 2 * 50 + 10);
    Ok(())
}

#[tokio::test]
async fn float32_columns_fit_as_the_crate_fits_f32() -> Result<()> {
    let d = 4;
    let parts = gen_partitions(4, 2, 2, 100, d, 5);
    // The reference sees the same f32 values.
    let parts32: Vec<Vec<Rows>> = parts
        .iter()
        .map(|p| {
            p.iter()
                .map(|b| {
                    b.iter()
                        .map(|r| r.iter().map(|v| v.map(|v| v as f32 as f64)).collect())
                        .collect()
                })
                .collect()
        })
        .collect();
    let (got, _) = run_ungrouped(&parts, d, &DataType::Float32).await?;
    let fits: Vec<_> = parts32.iter().map(|p| fit_rows(p, d, &DataType::Float32)).collect();
    assert!(all_orders(&fits).contains(&json(&got)));
    Ok(())
}

#[tokio::test]
async fn mixed_integer_columns_are_cast_to_float64_and_exact() -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Int64, true),
    ]));
    let batch = |a: Vec<Option<i32>>, b: Vec<Option<i64>>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(a)), Arc::new(Int64Array::from(b))],
        )
    };
    let p1 = vec![batch(vec![Some(1), Some(2), None], vec![Some(10), Some(20), Some(30)])?];
    let p2 = vec![batch(vec![Some(6)], vec![None])?];
    let ctx = context(2);
    ctx.register_table("t", Arc::new(MemTable::try_new(schema.clone(), vec![p1, p2])?))?;
    let out = ctx
        .sql("SELECT center_fit(a, b) AS fit FROM t")
        .await?
        .collect()
        .await?;
    let c = state_of(&out[0], "fit", 0)?;
    assert_eq!(c.mean().unwrap().to_vec(), vec![3.0, 20.0]);
    assert_eq!(c.counts().unwrap().to_vec(), vec![3.0, 3.0]);
    Ok(())
}

/// Columns all of one narrow type are read as they are (no cast): integer
/// means exactly rounded, Float16 as the crate fits an f16 array.
#[tokio::test]
async fn narrow_columns_are_read_without_a_cast() -> Result<()> {
    use datafusion::arrow::array::{Float16Array, Int32Array, UInt8Array};
    // Int32 values whose f64 sum would round: the exact mean is still found.
    let big = [i32::MAX, i32::MAX - 1, 3, -7];
    let u = [200u8, 201, 255, 0];
    let h: Vec<half::f16> = [1000.5f32, 0.25, 3.0, 7.0]
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Int32, true),
        Field::new("u", DataType::UInt8, true),
        Field::new("h", DataType::Float16, true),
    ]));
    let batch = |r: std::ops::Range<usize>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(big[r.clone()].to_vec())),
                Arc::new(Int32Array::from(
                    big[r.clone()].iter().map(|v| v / 2).collect::<Vec<_>>(),
                )),
                Arc::new(UInt8Array::from(u[r.clone()].to_vec())),
                Arc::new(Float16Array::from(h[r].to_vec())),
            ],
        )
    };
    let ctx = context(2);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(
            schema.clone(),
            vec![vec![batch(0..2)?], vec![batch(2..4)?]],
        )?),
    )?;
    for (sql, want) in [
        ("SELECT center_fit(a, b) AS fit FROM t", {
            let s: i64 = big.iter().map(|&v| i64::from(v)).sum();
            let s2: i64 = big.iter().map(|&v| i64::from(v / 2)).sum();
            vec![s as f64 / 4.0, s2 as f64 / 4.0]
        }),
        ("SELECT center_fit(u) AS fit FROM t", vec![656.0 / 4.0]),
        (
            "SELECT center_fit(h) AS fit FROM t",
            vec![(1000.5 + 0.25 + 3.0 + 7.0) / 4.0],
        ),
    ] {
        let out = ctx.sql(sql).await?.collect().await?;
        let c = state_of(&out[0], "fit", 0)?;
        assert_eq!(c.mean().unwrap().to_vec(), want, "{sql}");
    }
    Ok(())
}

/// Int64 and UInt64 columns (pandas' and Parquet's default integers) are
/// read as they are, not cast to Float64: values near 2⁶⁰ whose mean an
/// `f64` of each value would get wrong (2⁶⁰ + 1 is not an `f64`), with a
/// null, without and with GROUP BY.
#[tokio::test]
async fn sixty_four_bit_columns_are_read_without_a_cast() -> Result<()> {
    use datafusion::arrow::array::{Int64Array, UInt64Array};
    let big = 1i64 << 60;
    let a = [Some(big + 1), Some(-big), None, Some(big + 3), Some(-big)];
    let b = [u64::MAX, u64::MAX - 2, 5, 7, 1];
    let k = [1i64, 2, 1, 1, 2];
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::UInt64, true),
        Field::new("k", DataType::Int64, true),
    ]));
    let batch = |r: std::ops::Range<usize>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(a[r.clone()].to_vec())),
                Arc::new(UInt64Array::from(b[r.clone()].to_vec())),
                Arc::new(Int64Array::from(k[r].to_vec())),
            ],
        )
    };
    let ctx = context(2);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(
            schema.clone(),
            vec![vec![batch(0..2)?], vec![batch(2..5)?]],
        )?),
    )?;
    // Exact means: (2⁶⁰ + 1 − 2⁶⁰ + 2⁶⁰ + 3 − 2⁶⁰) / 4 = 1; b's by i128.
    let b_sum: i128 = b.iter().map(|&v| i128::from(v)).sum();
    let out = ctx
        .sql("SELECT center_fit(a) AS fa, center_fit(b) AS fb FROM t")
        .await?
        .collect()
        .await?;
    assert_eq!(state_of(&out[0], "fa", 0)?.mean().unwrap().to_vec(), vec![1.0]);
    assert_eq!(
        state_of(&out[0], "fb", 0)?.mean().unwrap().to_vec(),
        vec![(b_sum as f64) / 5.0]
    );
    let out = ctx
        .sql("SELECT k, center_fit(a) AS fa FROM t GROUP BY k ORDER BY k")
        .await?
        .collect()
        .await?;
    // Group 1: 2⁶⁰ + 1, null, 2⁶⁰ + 3 → 2⁶⁰ + 2; group 2: −2⁶⁰ twice.
    assert_eq!(
        state_of(&out[0], "fa", 0)?.mean().unwrap().to_vec(),
        vec![(big + 2) as f64]
    );
    assert_eq!(state_of(&out[0], "fa", 1)?.mean().unwrap().to_vec(), vec![-big as f64]);
    Ok(())
}

/// A table with a group key `k` per row: the rows and keys of each
/// partition's batches.
struct Grouped {
    parts: Vec<Vec<Rows>>,
    keys: Vec<Vec<Vec<i64>>>,
}

/// Keys in `0..groups`; with `skew`, half the rows go to group 0 (long runs
/// of one group within a batch) and the rest spread over all groups.
/// How rows get their keys.
#[derive(Clone, Copy)]
struct Keys {
    groups: u64,
    skew: bool,
}

fn gen_grouped(seed: u64, parts: usize, batches: usize, rows: usize, d: usize, null_every: u64, keys: Keys) -> Grouped {
    let parts = gen_partitions(seed, parts, batches, rows, d, null_every);
    let mut g = Lcg(seed ^ 0x9e37_79b9);
    let keys = parts
        .iter()
        .map(|p| {
            p.iter()
                .map(|b| {
                    b.iter()
                        .map(|_| {
                            if keys.skew && g.next().is_multiple_of(2) {
                                0
                            } else {
                                (g.next() % keys.groups) as i64
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    Grouped { parts, keys }
}

impl Grouped {
    fn register(&self, ctx: &SessionContext, d: usize, t: &DataType) -> Result<()> {
        let batches: Vec<Vec<RecordBatch>> = self
            .parts
            .iter()
            .zip(&self.keys)
            .map(|(p, k)| {
                p.iter()
                    .zip(k)
                    .map(|(r, k)| to_batch(r, d, t, Some(k)))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        ctx.register_table("t", Arc::new(MemTable::try_new(schema(d, t, true), batches)?))?;
        Ok(())
    }

    /// Per partition, the in-process fit of group `k`'s rows of each batch
    /// that `keep` passes (one `partial_fit` per batch, as the engine folds).
    fn fits(&self, k: i64, d: usize, t: &DataType, keep: &dyn Fn(&[Option<f64>]) -> bool) -> Vec<Centering<f64>> {
        self.parts
            .iter()
            .zip(&self.keys)
            .map(|(p, pk)| {
                let per_batch: Vec<Rows> = p
                    .iter()
                    .zip(pk)
                    .map(|(rows, ks)| {
                        rows.iter()
                            .zip(ks)
                            .filter(|(r, kk)| **kk == k && keep(r))
                            .map(|(r, _)| r.clone())
                            .collect()
                    })
                    .collect();
                fit_rows(&per_batch, d, t)
            })
            .collect()
    }

    fn keys(&self) -> std::collections::BTreeSet<i64> {
        self.keys.iter().flatten().flatten().copied().collect()
    }
}

/// The states of a `SELECT k, <fit> AS fit … GROUP BY k` query, by key.
async fn grouped_states(ctx: &SessionContext, sql: &str) -> Result<BTreeMap<i64, Centering<f64>>> {
    let out = ctx.sql(sql).await?.collect().await?;
    let mut got = BTreeMap::new();
    for b in &out {
        let k = b.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..b.num_rows() {
            assert!(got.insert(k.value(row), state_of(b, "fit", row)?).is_none());
        }
    }
    Ok(got)
}

fn group_sql(fit: &str, d: usize, filter: &str) -> String {
    format!(
        "SELECT k, {fit}({}) {filter} AS fit FROM t GROUP BY k",
        names(d).join(", ")
    )
}

/// Every group's state is one of the merges, in some order, of the
/// partitions' in-process fits of its rows.
fn assert_groups_bit_for_bit(
    data: &Grouped,
    got: &BTreeMap<i64, Centering<f64>>,
    d: usize,
    t: &DataType,
    keep: &dyn Fn(&[Option<f64>]) -> bool,
) {
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        data.keys().into_iter().collect::<Vec<_>>()
    );
    for (k, c) in got {
        let fits = data.fits(*k, d, t, keep);
        assert!(all_orders(&fits).contains(&json(c)), "group {k}: {}", json(c));
    }
}

#[tokio::test]
async fn group_by_gives_one_state_per_group_equal_to_in_process_fits() -> Result<()> {
    let d = 3;
    let data = gen_grouped(5, 3, 2, 120, d, 6, Keys { groups: 4, skew: false });
    let ctx = context(data.parts.len());
    data.register(&ctx, d, &DataType::Float64)?;
    let got = grouped_states(&ctx, &group_sql("center_fit", d, "")).await?;
    assert_eq!(got.len(), 4);
    assert_groups_bit_for_bit(&data, &got, d, &DataType::Float64, &|_| true);
    Ok(())
}

/// `center_fit` with DataFusion's per-group `Accumulator` adapter instead
/// of the `GroupsAccumulator`: the reference the latter must match.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AdapterOnly(CenterFit);

impl AggregateUDFImpl for AdapterOnly {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn signature(&self) -> &Signature {
        self.0.signature()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.0.coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.0.return_type(arg_types)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.0.accumulator(args)
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.0.state_fields(args)
    }
}

fn with_adapter(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(AdapterOnly(
        CenterFit::default().with_name("center_fit_adapter"),
    )));
}

#[tokio::test]
async fn many_groups_with_nulls_equal_in_process_fits_bit_for_bit() -> Result<()> {
    let d = 3;
    // 1200 groups over 3 partitions of 3 batches: most groups have 0 or 1
    // row per batch, group 0 long runs.
    let data = gen_grouped(
        11,
        3,
        3,
        1000,
        d,
        5,
        Keys {
            groups: 1200,
            skew: true,
        },
    );
    let ctx = context(data.parts.len());
    data.register(&ctx, d, &DataType::Float64)?;
    let got = grouped_states(&ctx, &group_sql("center_fit", d, "")).await?;
    assert!(got.len() >= 1000, "{} groups", got.len());
    assert_groups_bit_for_bit(&data, &got, d, &DataType::Float64, &|_| true);
    // Float32 columns too (read as they are, per group).
    let data32 = Grouped {
        parts: data
            .parts
            .iter()
            .map(|p| {
                p.iter()
                    .map(|b| {
                        b.iter()
                            .map(|r| r.iter().map(|v| v.map(|v| v as f32 as f64)).collect())
                            .collect()
                    })
                    .collect()
            })
            .collect(),
        keys: data.keys.clone(),
    };
    let ctx = context(data.parts.len());
    data32.register(&ctx, d, &DataType::Float32)?;
    let got = grouped_states(&ctx, &group_sql("center_fit", d, "")).await?;
    assert_groups_bit_for_bit(&data32, &got, d, &DataType::Float32, &|_| true);
    Ok(())
}

#[tokio::test]
async fn one_partition_groups_accumulator_equals_the_adapter_state_for_state() -> Result<()> {
    // One partition: no merge order to choose, so the two paths must agree
    // exactly, group by group.
    let d = 4;
    let data = gen_grouped(
        12,
        1,
        4,
        700,
        d,
        4,
        Keys {
            groups: 300,
            skew: true,
        },
    );
    let ctx = context(1);
    with_adapter(&ctx);
    data.register(&ctx, d, &DataType::Float64)?;
    let filter = "FILTER (WHERE x3 > 0)";
    for f in ["", filter] {
        let groups = grouped_states(&ctx, &group_sql("center_fit", d, f)).await?;
        let adapter = grouped_states(&ctx, &group_sql("center_fit_adapter", d, f)).await?;
        assert_eq!(groups.len(), adapter.len());
        for ((k, a), (k2, b)) in groups.iter().zip(&adapter) {
            assert_eq!(k, k2);
            assert_eq!(json(a), json(b), "group {k} {f}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn group_by_with_a_filter_fits_only_the_rows_it_keeps() -> Result<()> {
    let d = 3;
    let data = gen_grouped(
        13,
        3,
        2,
        800,
        d,
        6,
        Keys {
            groups: 1000,
            skew: true,
        },
    );
    let ctx = context(data.parts.len());
    data.register(&ctx, d, &DataType::Float64)?;
    let got = grouped_states(&ctx, &group_sql("center_fit", d, "FILTER (WHERE x2 > 0)")).await?;
    // A null x2 fails the filter, as SQL's three-valued logic says.
    let keep = |r: &[Option<f64>]| r[2].is_some_and(|v| v > 0.0);
    assert_groups_bit_for_bit(&data, &got, d, &DataType::Float64, &keep);
    // Some groups keep no row at all: unfitted, with null mean and count.
    assert!(got.values().any(|c| !c.is_fitted()));
    let sql = format!(
        "SELECT k, get_field(fit, 'mean') IS NULL AS none FROM ({}) ORDER BY k",
        group_sql("center_fit", d, "FILTER (WHERE x2 > 0)")
    );
    let out = ctx.sql(&sql).await?.collect().await?;
    for b in &out {
        let k = b.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let none = b.column(1).as_boolean();
        for row in 0..b.num_rows() {
            assert_eq!(none.value(row), !got[&k.value(row)].is_fitted());
        }
    }
    Ok(())
}

#[tokio::test]
async fn integer_columns_per_group_are_exact() -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("k", DataType::Int64, false),
    ]));
    let n = 3000i64;
    let a: Vec<Option<i32>> = (0..n)
        .map(|i| (i % 7 != 3).then_some(i32::MAX - (i as i32 % 1000)))
        .collect();
    let k: Vec<i64> = (0..n).map(|i| i % 1500).collect();
    let half = (n / 2) as usize;
    let batch = |r: std::ops::Range<usize>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(a[r.clone()].to_vec())),
                Arc::new(Int64Array::from(k[r].to_vec())),
            ],
        )
    };
    let ctx = context(2);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(
            schema.clone(),
            vec![vec![batch(0..half)?], vec![batch(half..n as usize)?]],
        )?),
    )?;
    let got = grouped_states(&ctx, "SELECT k, center_fit(a) AS fit FROM t GROUP BY k").await?;
    assert_eq!(got.len(), 1500);
    for (key, c) in &got {
        let vals: Vec<i64> = (0..n as usize)
            .filter(|&i| k[i] == *key)
            .filter_map(|i| a[i].map(i64::from))
            .collect();
        assert_eq!(c.counts().unwrap()[0], vals.len() as f64);
        if !vals.is_empty() {
            // The exactly rounded mean of the integers.
            let s: i64 = vals.iter().sum();
            assert_eq!(c.mean().unwrap()[0], s as f64 / vals.len() as f64, "group {key}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn skipped_partial_aggregation_turns_rows_into_states() -> Result<()> {
    // Groups nearly as many as rows, and thresholds that make DataFusion
    // stop pre-aggregating after the first batch: `convert_to_state`.
    let d = 3;
    let data = gen_grouped(
        14,
        2,
        4,
        500,
        d,
        5,
        Keys {
            groups: 400,
            skew: false,
        },
    );
    let mut config = SessionConfig::new().with_target_partitions(2);
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_rows_threshold = 1;
    config
        .options_mut()
        .execution
        .skip_partial_aggregation_probe_ratio_threshold = 0.0;
    let ctx = SessionContext::new_with_config(config);
    register(&ctx);
    with_adapter(&ctx);
    data.register(&ctx, d, &DataType::Float64)?;
    let sql = group_sql("center_fit", d, "FILTER (WHERE x0 > 0)");
    let plan = ctx.sql(&format!("EXPLAIN ANALYZE {sql}")).await?.collect().await?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)?.to_string();
    assert!(
        text.contains("skipped_aggregation_rows") && !text.contains("skipped_aggregation_rows=0,"),
        "{text}"
    );
    let got = grouped_states(&ctx, &sql).await?;
    let adapter = grouped_states(&ctx, &group_sql("center_fit_adapter", d, "FILTER (WHERE x0 > 0)")).await?;
    assert_eq!(got.len(), adapter.len());
    let keep = |r: &[Option<f64>]| r[0].is_some_and(|v| v > 0.0);
    for (k, c) in &got {
        // The rows' states arrive in an order of the engine's: exact
        // counts, means within rounding of the whole group fitted at once.
        let rows: Rows = data
            .parts
            .iter()
            .flatten()
            .zip(data.keys.iter().flatten())
            .flat_map(|(b, ks)| {
                b.iter()
                    .zip(ks)
                    .filter(|(r, kk)| **kk == *k && keep(r))
                    .map(|(r, _)| r.clone())
            })
            .collect();
        let once = fit_rows(&[rows], d, &DataType::Float64);
        assert_eq!(c.counts(), once.counts(), "group {k}");
        assert_eq!(c.counts(), adapter[k].counts(), "group {k}");
        if let (Some(a), Some(b)) = (c.mean(), once.mean()) {
            for (a, b) in a.iter().zip(b) {
                assert!(
                    a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{a} vs {b}"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn group_by_under_reject_fails_on_a_null_and_distinct_is_refused() -> Result<()> {
    let strict =
        CenterFit::new(centering::CenteringParams::new().nan_policy(NanPolicy::Reject))?.with_name("fit_strict");
    let d = 2;
    let data = gen_grouped(
        15,
        2,
        2,
        200,
        d,
        50,
        Keys {
            groups: 100,
            skew: false,
        },
    );
    let ctx = context(2);
    ctx.register_udaf(AggregateUDF::from(strict));
    data.register(&ctx, d, &DataType::Float64)?;
    let err = ctx
        .sql(&group_sql("fit_strict", d, ""))
        .await?
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("null"), "{err}");
    let err = ctx
        .sql("SELECT k, center_fit(DISTINCT x0, x1) FROM t GROUP BY k")
        .await?
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DISTINCT"), "{err}");
    // One column: DataFusion plans DISTINCT as a GROUP BY of the values
    // first, so the fit is of the distinct values.
    let out = ctx
        .sql("SELECT center_fit(DISTINCT x0) AS fit FROM (SELECT x0 % 7 AS x0 FROM t)")
        .await?
        .collect()
        .await?;
    let c = state_of(&out[0], "fit", 0)?;
    let mut distinct: Vec<f64> = data
        .parts
        .iter()
        .flatten()
        .flatten()
        .filter_map(|r| r[0].map(|v| v % 7.0))
        .collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert_eq!(c.counts().unwrap()[0], distinct.len() as f64);
    Ok(())
}

#[tokio::test]
async fn empty_input_gives_an_unfitted_state() -> Result<()> {
    let d = 2;
    let ctx = context(2);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(
            schema(d, &DataType::Float64, false),
            vec![vec![], vec![]],
        )?),
    )?;
    let out = ctx.sql(&fit_sql(d)).await?.collect().await?;
    let s = out[0].column(0).as_struct();
    assert!(s.column_by_name("mean").unwrap().is_null(0));
    assert!(s.column_by_name("count").unwrap().is_null(0));
    let c = state_of(&out[0], "fit", 0)?;
    assert!(!c.is_fitted());
    // A filter that keeps nothing, too.
    let out = ctx
        .sql("SELECT center_fit(x0, x1) AS fit FROM t WHERE x0 > 0")
        .await?
        .collect()
        .await?;
    assert!(!state_of(&out[0], "fit", 0)?.is_fitted());
    Ok(())
}

#[tokio::test]
async fn an_all_null_column_has_count_zero_and_nan_mean() -> Result<()> {
    let d = 2;
    let rows: Rows = (0..10).map(|i| vec![Some(i as f64), None]).collect();
    let (got, _) = run_ungrouped(&[vec![rows.clone()], vec![rows.clone()]], d, &DataType::Float64).await?;
    assert_eq!(got.counts().unwrap().to_vec(), vec![20.0, 0.0]);
    let m = got.mean().unwrap();
    assert_eq!(m[0], 4.5);
    assert!(m[1].is_nan());
    let fits = [
        fit_rows(std::slice::from_ref(&rows), d, &DataType::Float64),
        fit_rows(&[rows], d, &DataType::Float64),
    ];
    assert!(all_orders(&fits).contains(&json(&got)));
    Ok(())
}

#[tokio::test]
async fn reject_policy_fails_on_a_null_and_moving_averages_are_refused() -> Result<()> {
    assert!(CenterFit::new(centering::CenteringParams::keras(0.99)).is_err());
    assert!(CenterFit::new(centering::CenteringParams::new().batch_average()).is_err());
    let strict =
        CenterFit::new(centering::CenteringParams::new().nan_policy(NanPolicy::Reject))?.with_name("fit_strict");
    let ctx = context(1);
    ctx.register_udaf(AggregateUDF::from(strict));
    let rows: Rows = vec![vec![Some(1.0)], vec![None]];
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(
            schema(1, &DataType::Float64, false),
            vec![vec![to_batch(&rows, 1, &DataType::Float64, None)?]],
        )?),
    )?;
    let err = ctx
        .sql("SELECT fit_strict(x0) FROM t")
        .await?
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("null"), "{err}");
    Ok(())
}

#[tokio::test]
async fn center_apply_centres_in_the_engine_as_transform_does() -> Result<()> {
    let d = 3;
    let parts = gen_partitions(7, 2, 2, 30, d, 4);
    let ctx = context(2);
    let batches: Vec<Vec<RecordBatch>> = parts
        .iter()
        .map(|p| {
            p.iter()
                .map(|r| to_batch(r, d, &DataType::Float64, None))
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(d, &DataType::Float64, false), batches)?),
    )?;
    let out = ctx.sql(&fit_sql(d)).await?.collect().await?;
    let fitted = state_of(&out[0], "fit", 0)?;
    let state = json(&fitted);

    // A state from a scalar subquery, and from a literal.
    let via_subquery = "SELECT x0, x1, x2, center_apply((SELECT get_field(center_fit(x0, x1, x2), 'state') FROM t), x0, x1, x2) AS c FROM t";
    let via_literal = format!("SELECT x0, x1, x2, center_apply('{state}', x0, x1, x2) AS c FROM t");
    for sql in [via_subquery.to_string(), via_literal] {
        let out = ctx.sql(&sql).await?.collect().await?;
        let mut n = 0;
        for b in &out {
            let c = b.column(3).as_struct();
            assert_eq!(
                c.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
                ["x0", "x1", "x2"]
            );
            for j in 0..d {
                let x = b.column(j).as_primitive::<Float64Type>();
                let y = c.column(j).as_primitive::<Float64Type>();
                for row in 0..b.num_rows() {
                    assert_eq!(x.is_null(row), y.is_null(row));
                    if x.is_valid(row) {
                        let mut one = Array2::zeros((1, d));
                        one[(0, j)] = x.value(row);
                        let want = fitted.transform(&one).unwrap()[(0, j)];
                        assert_eq!(y.value(row).to_bits(), want.to_bits());
                    }
                }
            }
            n += b.num_rows();
        }
        assert_eq!(n, 2 * 2 * 30);
    }

    // A column count other than the state's D is an error that says so.
    let err = ctx
        .sql(&format!("SELECT center_apply('{state}', x0, x1) FROM t"))
        .await?
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("3 features but 2 columns"), "{err}");
    // An unfitted or malformed state too.
    let unfitted = json(&Centering::<f64>::new());
    let err = ctx
        .sql(&format!("SELECT center_apply('{unfitted}', x0) FROM t"))
        .await?
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not fitted"), "{err}");
    assert!(
        ctx.sql("SELECT center_apply('{', x0) FROM t")
            .await?
            .collect()
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn parquet_files_fit_as_the_table_does() -> Result<()> {
    let d = 3;
    let parts = gen_partitions(8, 2, 2, 100, d, 9);
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(2);
    for (i, p) in parts.iter().enumerate() {
        let batches: Vec<RecordBatch> = p
            .iter()
            .map(|r| to_batch(r, d, &DataType::Float64, None))
            .collect::<Result<_>>()?;
        let path = dir.path().join(format!("part-{i}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema(d, &DataType::Float64, false), None)?;
        for b in &batches {
            w.write(b)?;
        }
        w.close()?;
    }
    ctx.register_parquet("t", dir.path().to_str().unwrap(), ParquetReadOptions::default())
        .await?;
    let out = ctx.sql(&fit_sql(d)).await?.collect().await?;
    let got = state_of(&out[0], "fit", 0)?;
    // Batch boundaries are the reader's: equal to the rows fitted at once
    // within rounding, and exactly in counts.
    let all: Rows = parts.iter().flatten().flatten().cloned().collect();
    let once = fit_rows(&[all], d, &DataType::Float64);
    assert_eq!(got.counts(), once.counts());
    for (a, b) in got.mean().unwrap().iter().zip(once.mean().unwrap()) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
    // With GROUP BY over a computed key.
    let out = ctx
        .sql("SELECT x0 > 0 AS pos, center_fit(x1, x2) AS fit FROM t GROUP BY x0 > 0")
        .await?
        .collect()
        .await?;
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 3); // true, false, null
    Ok(())
}
