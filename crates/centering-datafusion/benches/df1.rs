//! DF1 (`../../shared/WORKLOADS.md`): `center_fit` over W1's 64 columns
//! (2,097,152 rows of f64) as an in-memory table of several partitions,
//! against DataFusion's built-in `avg` over the same columns, in the same
//! process: the time ratio. Then the GROUP BY variant (16 groups), and a
//! smaller many-groups case (10⁵ groups), both through `center_fit`'s
//! `GroupsAccumulator`. One more row runs the ungrouped query under
//! `NanPolicy::Reject` (`center_fit_strict`): the same engine path with the
//! core's null-free column kernel instead of the per-value one that skips
//! missing values, to tell the two costs apart.
//!
//! Not run in CI (a measurement, in release):
//! `cargo bench -p centering-datafusion --bench df1` (env `DF1_ROWS`,
//! `DF1_PARTITIONS`, `DF1_REPS` override the sizes).

use std::sync::Arc;
use std::time::Instant;

use centering::{CenteringParams, NanPolicy};
use centering_datafusion::CenterFit;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::*;

const D: usize = 64;
const BATCH: usize = 8192;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn table(rows: usize, partitions: usize, groups: i64) -> Result<MemTable> {
    let mut fields: Vec<Field> = (0..D)
        .map(|j| Field::new(format!("x{j}"), DataType::Float64, false))
        .collect();
    fields.push(Field::new("k", DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut parts = vec![Vec::new(); partitions];
    let mut start = 0;
    let mut b = 0;
    while start < rows {
        let n = BATCH.min(rows - start);
        let mut cols: Vec<ArrayRef> = (0..D)
            .map(|j| {
                let v: Vec<f64> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 11) as f64 / (1u64 << 53) as f64 * 10.0 + j as f64
                    })
                    .collect();
                Arc::new(Float64Array::from(v)) as ArrayRef
            })
            .collect();
        cols.push(Arc::new(Int64Array::from_iter_values(
            (start..start + n).map(|i| (i as i64 * 7919) % groups),
        )));
        parts[b % partitions].push(RecordBatch::try_new(schema.clone(), cols)?);
        start += n;
        b += 1;
    }
    MemTable::try_new(schema, parts)
}

async fn best(ctx: &SessionContext, sql: &str, reps: usize) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let out = ctx.sql(sql).await?.collect().await?;
        std::hint::black_box(&out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

async fn compare(ctx: &SessionContext, label: &str, fit: &str, group: Option<&str>, reps: usize) -> Result<()> {
    let cols: Vec<String> = (0..D).map(|j| format!("x{j}")).collect();
    let avgs: Vec<String> = cols.iter().map(|c| format!("avg({c})")).collect();
    let (select, tail) = match group {
        Some(k) => (format!("{k}, "), format!(" GROUP BY {k}")),
        None => (String::new(), String::new()),
    };
    let q_avg = format!("SELECT {select}{} FROM t{tail}", avgs.join(", "));
    let q_fit = format!("SELECT {select}{fit}({}) FROM t{tail}", cols.join(", "));
    // Warm up both (first-touch, plan caches), then interleave.
    best(ctx, &q_avg, 1).await?;
    best(ctx, &q_fit, 1).await?;
    let (mut a, mut f) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        a = a.min(best(ctx, &q_avg, 1).await?);
        f = f.min(best(ctx, &q_fit, 1).await?);
    }
    println!(
        "{label:<36} avg {:>8.1} ms   {fit} {:>8.1} ms   ratio {:.2}",
        a * 1e3,
        f * 1e3,
        f / a
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = env("DF1_ROWS", 2_097_152);
    let partitions = env("DF1_PARTITIONS", 4);
    let reps = env("DF1_REPS", 5);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .unwrap_or_default();
    println!("DF1: {rows} rows x {D} f64 columns, {partitions} partitions of {BATCH}-row batches; {cpu}");
    println!(
        "threads: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    centering_datafusion::register(&ctx);
    let strict = CenterFit::new(CenteringParams::new().nan_policy(NanPolicy::Reject))?.with_name("center_fit_strict");
    ctx.register_udaf(AggregateUDF::from(strict));
    ctx.register_table("t", Arc::new(table(rows, partitions, 16)?))?;
    compare(&ctx, "no GROUP BY", "center_fit", None, reps).await?;
    compare(&ctx, "no GROUP BY, NanPolicy::Reject", "center_fit_strict", None, reps).await?;
    compare(&ctx, "GROUP BY k (16 groups)", "center_fit", Some("k"), reps).await?;

    let small = rows / 16;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    centering_datafusion::register(&ctx);
    ctx.register_table("t", Arc::new(table(small, partitions, 100_000)?))?;
    compare(
        &ctx,
        &format!("GROUP BY k (1e5 groups, {small} rows)"),
        "center_fit",
        Some("k"),
        reps.min(2),
    )
    .await?;
    Ok(())
}
