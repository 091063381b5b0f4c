//! `center_fit` and `center_apply` run by DataFusion against in-process fits.

use std::collections::BTreeMap;
use std::sync::Arc;

use centering::{AnyCentering, Centering, NanPolicy};
use centering_datafusion::{CenterFit, register, state_of};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::AggregateUDF;
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

#[tokio::test]
async fn group_by_gives_one_state_per_group_equal_to_in_process_fits() -> Result<()> {
    let d = 3;
    let groups = 4i64;
    let parts = gen_partitions(5, 3, 2, 120, d, 6);
    let mut g = Lcg(99);
    // The key of each row, and the rows of each group per partition per batch.
    let keys: Vec<Vec<Vec<i64>>> = parts
        .iter()
        .map(|p| {
            p.iter()
                .map(|b| b.iter().map(|_| (g.next() % groups as u64) as i64).collect())
                .collect()
        })
        .collect();
    let ctx = context(parts.len());
    let batches: Vec<Vec<RecordBatch>> = parts
        .iter()
        .zip(&keys)
        .map(|(p, k)| {
            p.iter()
                .zip(k)
                .map(|(r, k)| to_batch(r, d, &DataType::Float64, Some(k)))
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema(d, &DataType::Float64, true), batches)?),
    )?;
    let sql = format!(
        "SELECT k, center_fit({}) AS fit FROM t GROUP BY k ORDER BY k",
        names(d).join(", ")
    );
    let out = ctx.sql(&sql).await?.collect().await?;
    let mut got = BTreeMap::new();
    for b in &out {
        let k = b.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..b.num_rows() {
            got.insert(k.value(row), state_of(b, "fit", row)?);
        }
    }
    assert_eq!(got.len(), groups as usize);
    for (k, c) in &got {
        let fits: Vec<_> = parts
            .iter()
            .zip(&keys)
            .map(|(p, pk)| {
                let per_batch: Vec<Rows> = p
                    .iter()
                    .zip(pk)
                    .map(|(rows, ks)| {
                        rows.iter()
                            .zip(ks)
                            .filter(|(_, kk)| *kk == k)
                            .map(|(r, _)| r.clone())
                            .collect()
                    })
                    .collect();
                fit_rows(&per_batch, d, &DataType::Float64)
            })
            .collect();
        assert!(all_orders(&fits).contains(&json(c)), "group {k}");
    }
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
