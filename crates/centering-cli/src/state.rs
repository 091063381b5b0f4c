//! State files (the crate's one serde format, as JSON): loading, `merge`
//! and `inspect`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use centering::{AnyCentering, Mode};

use crate::cli::{InspectArgs, MergeArgs};
use crate::output::write_atomic;

/// Loads and validates a state file.
pub fn load(path: &Path) -> Result<AnyCentering> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read state file {}", path.display()))?;
    if text.trim().is_empty() {
        bail!("state file {} is empty", path.display());
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid centering state", path.display()))
}

fn to_json(state: &AnyCentering) -> Result<String> {
    let mut json = serde_json::to_string_pretty(state).context("cannot serialise the state")?;
    json.push('\n');
    Ok(json)
}

pub fn merge(args: &MergeArgs) -> Result<()> {
    let mut paths = args.states.iter();
    let Some(first) = paths.next() else {
        bail!("merge needs at least one state");
    };
    let mut acc = load(first)?;
    for p in paths {
        let next = load(p)?;
        acc.merge(&next)
            .with_context(|| format!("cannot merge {} into the states before it", p.display()))?;
    }
    write_atomic(&args.output, to_json(&acc)?.as_bytes())
}

/// The file's own `format_version` (the state may be of an earlier one).
fn file_format_version(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("format_version")?.as_u64()
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let s = load(&args.state)?;
    let p = s.params();
    let (mode, momentum, torch, start) = match p.mode() {
        Mode::Cumulative => ("cumulative".to_owned(), None, None, None),
        Mode::BatchAverage => ("batch_average".to_owned(), None, None, None),
        Mode::MovingAverage { .. } => ("moving_average".to_owned(), p.momentum(), p.torch_momentum(), p.start()),
        other => (other.to_string(), p.momentum(), p.torch_momentum(), p.start()),
    };
    let start = start.map(|s| format!("{s:?}"));
    let nan = format!("{:?}", p.nan_policy());
    let version = file_format_version(&args.state);
    let mean = s.mean().map(|m| m.to_vec());
    let counts = s.counts().map(|c| c.to_vec());
    let steps = s.n_steps().map(|c| c.to_vec());
    if args.json {
        let v = serde_json::json!({
            "file": args.state.display().to_string(),
            "format_version": version,
            "crate_version": centering::VERSION,
            "dtype": s.dtype(),
            "params": {
                "mode": mode,
                "momentum": momentum,
                "torch_momentum": torch,
                "start": start,
                "nan_policy": nan,
            },
            "fitted": mean.is_some(),
            "n_features": s.n_features(),
            "n_samples_seen": s.n_samples_seen(),
            "n_batches": s.n_batches(),
            "mean": mean,
            "counts": counts,
            "n_steps": steps,
        });
        println!("{}", serde_json::to_string_pretty(&v).context("cannot format JSON")?);
        return Ok(());
    }
    let mut t = String::new();
    let _ = writeln!(t, "state           {}", args.state.display());
    let _ = writeln!(
        t,
        "format_version  {} (this build writes {}; centering {})",
        version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
        centering::STATE_FORMAT_VERSION,
        centering::VERSION
    );
    let _ = writeln!(t, "dtype           {}", s.dtype());
    let _ = writeln!(t, "mode            {mode}");
    if let (Some(m), Some(mu)) = (momentum, torch) {
        let _ = writeln!(t, "momentum        {m} (Keras's convention; PyTorch's momentum {mu})");
    }
    if let Some(start) = &start {
        let _ = writeln!(t, "start           {start}");
    }
    let _ = writeln!(t, "nan_policy      {nan}");
    let _ = writeln!(t, "samples seen    {}", s.n_samples_seen());
    let _ = writeln!(t, "batches         {}", s.n_batches());
    match &mean {
        None => {
            let _ = writeln!(t, "features        (not fitted)");
        }
        Some(m) => {
            let _ = writeln!(t, "features        {}", m.len());
            let (label, per): (&str, Vec<String>) = match (&counts, &steps) {
                (Some(c), _) => ("count", c.iter().map(|v| v.to_string()).collect()),
                (None, Some(st)) => ("steps", st.iter().map(|v| v.to_string()).collect()),
                (None, None) => ("", vec![String::new(); m.len()]),
            };
            let _ = writeln!(t, "\n{:>8}  {:>24}  {label}", "feature", "mean");
            for (j, v) in m.iter().enumerate() {
                let _ = writeln!(t, "{j:>8}  {v:>24}  {}", per.get(j).map_or("", String::as_str));
            }
        }
    }
    print!("{t}");
    Ok(())
}
