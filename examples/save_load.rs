//! Save a fitted estimator to a file, load it in another process, and check
//! that nothing was lost: the loaded estimator transforms exactly as the
//! original does, and keeps fitting exactly as the original would have.
//!
//! ```text
//! cargo run --example save_load                  # both steps; the second in a child process
//! cargo run --example save_load -- save FILE     # fit on the stream, write FILE (JSON)
//! cargo run --example save_load -- load FILE     # read FILE, transform, compare
//! ```
//!
//! The stream is generated from a fixed seed, so the `load` step can refit
//! it in its own process and compare bit for bit.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use centering::{Centering, NanPolicy};
use ndarray::Array2;

/// The offsets the sensors add to their readings.
const OFFSETS: [f64; 4] = [20.5, -3.25, 1013.0, 0.001];

#[path = "support/rng.rs"]
mod rng;

use rng::SplitMix64;

/// Chunk `k` of the sensor stream: `rows` readings of the four sensors,
/// about one in twenty missing (NaN).
fn chunk(k: u64, rows: usize) -> Array2<f64> {
    let mut rng = SplitMix64(0x5EED ^ k.wrapping_mul(0x1234_5678_9ABC_DEF1));
    Array2::from_shape_fn((rows, OFFSETS.len()), |(_, j)| {
        let missing = rng.next_u64().is_multiple_of(20);
        let x = OFFSETS[j] + rng.symmetric();
        if missing { f64::NAN } else { x }
    })
}

/// The estimator fitted on the first 25 chunks, of 1 to 997 rows each.
fn fitted() -> Result<Centering<f64>, Box<dyn Error>> {
    let mut c = Centering::<f64>::builder().nan_policy(NanPolicy::Ignore).build()?;
    for k in 0..25 {
        c.partial_fit(&chunk(k, 1 + (k as usize * 389) % 997))?;
    }
    Ok(c)
}

/// Readings to transform after the load.
fn probe() -> Array2<f64> {
    chunk(1000, 3)
}

fn show(who: &str, c: &Centering<f64>) -> Result<Array2<f64>, Box<dyn Error>> {
    let mean = c.try_mean()?;
    let y = c.transform(&probe())?;
    println!("[{who}] {} samples in {} batches", c.n_samples_seen(), c.n_batches());
    println!("[{who}] mean      = {mean:.6}");
    println!("[{who}] per-feature counts = {}", c.weight_sums().ok_or("no counts")?);
    println!("[{who}] transform(probe) =\n{y:.6}");
    Ok(y)
}

fn save(path: &Path) -> Result<(), Box<dyn Error>> {
    let c = fitted()?;
    show("save", &c)?;
    std::fs::write(path, serde_json::to_string_pretty(&c)?)?;
    println!("[save] wrote {}", path.display());
    Ok(())
}

fn load(path: &Path) -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut loaded: Centering<f64> = serde_json::from_str(&text)?;
    println!("[load] read {} in process {}", path.display(), std::process::id());
    let y = show("load", &loaded)?;

    // The original, refitted here from the same stream.
    let mut original = fitted()?;
    let expected = original.transform(&probe())?;
    let same_bits = |a: &Array2<f64>, b: &Array2<f64>| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    if !same_bits(&y, &expected) || loaded != original {
        return Err("the loaded estimator differs from the original".into());
    }
    println!("[load] transform matches the original bit for bit");

    // Both keep fitting the stream, in lockstep.
    for k in 25..30 {
        let x = chunk(k, 100 + k as usize);
        loaded.partial_fit(&x)?;
        original.partial_fit(&x)?;
    }
    let (a, b) = (loaded.mean().ok_or("not fitted")?, original.mean().ok_or("not fitted")?);
    if a.iter().zip(&b).any(|(x, y)| x.to_bits() != y.to_bits()) {
        return Err("fitting diverged after the load".into());
    }
    println!("[load] 5 more chunks later, still identical: mean = {a:.6}");
    Ok(())
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["save", file] => save(Path::new(file)),
        ["load", file] => load(Path::new(file)),
        [] => {
            let path: PathBuf = std::env::temp_dir().join(format!("centering-save-load-{}.json", std::process::id()));
            save(&path)?;
            // The second step in a fresh process: nothing shared but the file.
            let status = Command::new(std::env::current_exe()?).arg("load").arg(&path).status();
            let result = match status {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("the load step failed: {s}").into()),
                Err(e) => {
                    println!("(could not start a second process: {e}; loading here)");
                    load(&path)
                }
            };
            let _ = std::fs::remove_file(&path);
            result
        }
        _ => Err("usage: save_load [save FILE | load FILE]".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
