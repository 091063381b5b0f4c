//! Wide D (issue 10): one sample of `D` features per `partial_fit` — the
//! per-call cost per feature and the memory beyond the input, for a
//! cumulative `f64` estimate.
//!
//! ```sh
//! cargo bench -p centering-bench --bench wide                    # D = 10⁶, 10⁷
//! CENTERING_WIDE_D=100000000 cargo bench -p centering-bench --bench wide
//! CENTERING_WIDE_MODE=keras cargo bench -p centering-bench --bench wide   # a moving average
//! ```
//!
//! Each `D` runs in a child process (this binary with `--wide-child D`), so
//! that its peak memory (`VmHWM`) is its own: the extra memory is that peak
//! minus the resident memory once the input exists, after the first call
//! and at the end. The first call builds the state (one sample's sums: its
//! values, 8 bytes per feature); later calls add to it (and its low words,
//! 8 more); the
//! first read of the mean divides each feature's sums once; then calls
//! each followed by a read of the mean (a training loop that reads it,
//! e.g. to transform): the reads' median. Then the state is saved with
//! postcard and loaded back: the load's peak memory beyond the saved bytes
//! (the peak reset before it through `/proc/self/clear_refs`). Last, a new
//! estimator's first call right after another's was dropped ("pages just
//! freed"): the first call's own cost. The first one takes pages the
//! process never had, and a VM that hands freed memory back to its host
//! (virtio-balloon free page reporting) makes their first touch cost many
//! times the call's work: on the reference VM (AMD EPYC Zen 4), 800 MB of
//! huge pages touched in a new process took 2.2–3.8 s, right after the same
//! amount was freed 0.10–0.12 s, and after six idle seconds 1.0–2.4 s.
//! Below glibc's 32 MiB ceiling for its mmap threshold (D = 10⁶: 8 MB of
//! state) the freed state may stay in the heap, so the second first call
//! takes no page faults at all there.

mod common;
use common::cpu_model;
use std::process::Command;
use std::time::Instant;

use centering::Centering;
use ndarray::Array2;

/// Calls after the first, timed one by one (the median is reported).
const LATER: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--wide-child") {
        child(args[i + 1].parse().expect("a feature count"));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let sizes: Vec<usize> = std::env::var("CENTERING_WIDE_D").map_or_else(
        |_| vec![1_000_000, 10_000_000],
        |v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
    );
    let mode = std::env::var("CENTERING_WIDE_MODE").unwrap_or_else(|_| "cumulative".into());
    println!(
        "wide D on {}: one f64 sample of D features per partial_fit, {mode} f64 estimate",
        cpu_model()
    );
    println!(
        "\n| D | first call (ns/feature) | its extra peak / input | first call, pages just freed (ns/feature) | later calls, median (ns/feature) | first mean read (ns/feature) | later reads, median (ns/feature) | extra peak memory (bytes/feature) | extra / input | load: extra peak (bytes/feature) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let me = std::env::current_exe().expect("no path to this binary");
    for d in sizes {
        let out = Command::new(&me).arg("--wide-child").arg(d.to_string()).output();
        match out {
            Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
            Ok(o) => println!("| {d} | failed: {} |", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => println!("| {d} | could not run: {e} |"),
        }
    }
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status_bytes(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| {
            l[field.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

/// The estimator: cumulative, or a Keras moving average
/// (`CENTERING_WIDE_MODE=keras`).
fn estimator() -> Centering<f64> {
    match std::env::var("CENTERING_WIDE_MODE").as_deref() {
        Ok("keras") => Centering::builder().keras(0.99).build().expect("valid parameters"),
        _ => Centering::new(),
    }
}

fn child(d: usize) {
    let x = Array2::from_shape_fn((1, d), |(_, j)| (j % 1000) as f64 * 0.25 + 1.0);
    let input = (d * 8) as f64;
    let before = status_bytes("VmRSS:");
    let per = |s: f64| s * 1e9 / d as f64;
    let mut c = estimator();
    let t = Instant::now();
    c.partial_fit(&x).expect("partial_fit failed");
    let first = per(t.elapsed().as_secs_f64());
    let first_extra = status_bytes("VmHWM:") - before;
    let mut later: Vec<f64> = (0..LATER)
        .map(|_| {
            let t = Instant::now();
            c.partial_fit(&x).expect("partial_fit failed");
            per(t.elapsed().as_secs_f64())
        })
        .collect();
    later.sort_by(f64::total_cmp);
    let t = Instant::now();
    let m = c.mean().map_or(f64::NAN, |m| m[d - 1]);
    let read = per(t.elapsed().as_secs_f64());
    assert!(m.is_finite(), "a finite mean");
    let mut reads: Vec<f64> = (0..LATER)
        .map(|_| {
            c.partial_fit(&x).expect("partial_fit failed");
            let t = Instant::now();
            let m = c.mean().map_or(f64::NAN, |m| m[d - 1]);
            assert!(m.is_finite(), "a finite mean");
            per(t.elapsed().as_secs_f64())
        })
        .collect();
    reads.sort_by(f64::total_cmp);
    let extra = status_bytes("VmHWM:") - before;
    // Saved, then loaded with the peak reset ("5": the peak resident set).
    let saved = postcard::to_allocvec(&c).expect("saving failed");
    drop(c);
    let load = match std::fs::write("/proc/self/clear_refs", "5") {
        Ok(()) => {
            let before = status_bytes("VmRSS:");
            let loaded: Centering<f64> = postcard::from_bytes(&saved).expect("loading failed");
            let peak = status_bytes("VmHWM:") - before;
            assert_eq!(loaded.n_features(), Some(d));
            format!("{:.0}", peak / d as f64)
        }
        Err(_) => "—".into(),
    };
    // The first call once more, by a new estimator, right after a throwaway
    // estimator's first call freed its state: the state's pages are then
    // memory the host has just backed. The first call above takes pages
    // this process never had, and on a VM that hands freed memory back to
    // the host (virtio-balloon free page reporting, as on the reference VM)
    // their first touch can cost many times the call's own work.
    drop(saved);
    let mut throwaway = estimator();
    throwaway.partial_fit(&x).expect("partial_fit failed");
    drop(throwaway);
    let mut again = estimator();
    let t = Instant::now();
    again.partial_fit(&x).expect("partial_fit failed");
    let reused = per(t.elapsed().as_secs_f64());
    assert_eq!(again.n_features(), Some(d));
    println!(
        "| {d} | {first:.1} | {:.1}× | {reused:.1} | {:.1} | {read:.1} | {:.1} | {:.0} | {:.1}× | {load} |",
        first_extra / input,
        later[LATER / 2],
        reads[LATER / 2],
        extra / d as f64,
        extra / input
    );
}
