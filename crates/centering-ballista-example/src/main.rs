//! `center_fit` on Ballista: a standalone scheduler and executor started in
//! this process on localhost, fitting Parquet files, next to the same fit
//! done in-process by the library.
//!
//! The functions are registered twice. In the `SessionState` that the
//! standalone cluster is built from: the scheduler and the executor decode
//! the plan against that state's function registry (registering them on
//! the returned context only is too late — the executor cannot find
//! `center_fit` when it decodes the plan). And on the returned context:
//! Ballista 55's `upgrade_for_ballista` rebuilds the client's state with
//! Ballista's own function lists, dropping ours, so the client's SQL
//! planner would not know `center_fit` either ("Invalid function").

use std::sync::Arc;

use ballista::prelude::*;
use centering::{Centering, NanPolicy};
use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::*;
use ndarray::Array2;

const D: usize = 4;
const FILES: usize = 3;
const ROWS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    // Parquet files, one per "partition", with nulls in feature 2.
    let dir = std::env::temp_dir().join(format!("centering-ballista-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let schema = Arc::new(Schema::new(
        (0..D)
            .map(|j| Field::new(format!("x{j}"), DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let mut reference = Centering::<f64>::builder()
        .nan_policy(NanPolicy::Ignore)
        .build()
        .map_err(ext)?;
    let mut s = 0x9E3779B97F4A7C15u64;
    for f in 0..FILES {
        let mut rows = Array2::<f64>::zeros((ROWS, D));
        let cols: Vec<ArrayRef> = (0..D)
            .map(|j| {
                let v: Vec<Option<f64>> = (0..ROWS)
                    .map(|i| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let x = (s >> 11) as f64 / (1u64 << 53) as f64 * 100.0 + (10 * j) as f64;
                        let v = (j != 2 || i % 5 != 0).then_some(x);
                        rows[(i, j)] = v.unwrap_or(f64::NAN);
                        v
                    })
                    .collect();
                Arc::new(Float64Array::from(v)) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(dir.join(format!("part-{f}.parquet")))?,
            schema.clone(),
            None,
        )?;
        w.write(&batch)?;
        w.close()?;
        reference.partial_fit(&rows).map_err(ext)?;
    }

    // The standalone cluster, from a state that knows the functions.
    let mut state = SessionStateBuilder::new()
        .with_config(SessionConfig::new_with_ballista().with_target_partitions(FILES))
        .with_default_features()
        .build();
    centering_datafusion::register_in(&mut state)?;
    let ctx = SessionContext::standalone_with_state(state).await?;
    centering_datafusion::register(&ctx); // the client's planner (see the module docs)
    ctx.register_parquet("t", dir.to_str().unwrap_or("."), ParquetReadOptions::default())
        .await?;

    let sql = "SELECT center_fit(x0, x1, x2, x3) AS fit FROM t";
    println!("Ballista (standalone scheduler + executor on localhost): {sql}");
    let out = ctx.sql(sql).await?.collect().await?;
    let cluster = centering_datafusion::state_of(&out[0], "fit", 0)?;
    println!("  cluster    mean  {:?}", cluster.mean().map(|m| m.to_vec()));
    println!("  in-process mean  {:?}", reference.mean().map(|m| m.to_vec()));
    println!("  cluster    count {:?}", cluster.counts().map(|m| m.to_vec()));
    println!("  in-process count {:?}", reference.counts().map(|m| m.to_vec()));
    let max_rel = cluster
        .mean()
        .zip(reference.mean())
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max))
        .unwrap_or(f64::NAN);
    println!(
        "  same estimate bit for bit: {}; max relative difference of the means {max_rel:e}",
        cluster.same_estimate(&reference)
    );
    println!("  {cluster}");

    // The transform in the cluster too: the first rows, centred.
    let apply = "SELECT x0, get_field(c, 'x0') AS x0_centred FROM \
                 (SELECT x0, center_apply((SELECT get_field(center_fit(x0, x1, x2, x3), 'state') FROM t), x0, x1, x2, x3) AS c FROM t) LIMIT 3";
    let out = ctx.sql(apply).await?.collect().await?;
    println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&out)?);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn ext(e: centering::CenteringError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}
