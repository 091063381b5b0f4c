//! O1 (WORKLOADS.md): `fit_npy` / `transform_npy` of a generated `.npy`
//! file against reading it (`cat FILE > /dev/null`) and copying it (`cp`),
//! page cache warm and cold, with the fit's peak memory.
//!
//! ```sh
//! cargo bench -p centering-bench --bench o1                       # 4 GiB file in target/o1
//! CENTERING_O1_GIB=16 CENTERING_O1_DIR=/big cargo bench -p centering-bench --bench o1
//! ```
//!
//! The file (N × 64 float64, C order) is generated once and kept between
//! runs (delete the directory when done; it is never committed). "Cold"
//! drops the file's pages from the page cache first
//! (`posix_fadvise(POSIX_FADV_DONTNEED)`, which needs no privileges), so it
//! measures the disk. The fit runs in a child process (this binary with
//! `--o1-child`), whose peak RSS (`VmHWM`) and anonymous memory (`RssAnon`)
//! it prints: the mapped file's pages are page cache (counted in RSS,
//! reclaimable), the anonymous memory is the estimator's own. To bound the
//! process for real, run the child under a cgroup memory limit:
//!
//! ```sh
//! echo $((1<<30)) > /sys/fs/cgroup/memory/o1/memory.limit_in_bytes   # cgroup v1, as root
//! sh -c 'echo $$ > /sys/fs/cgroup/memory/o1/cgroup.procs; exec target/release/deps/o1-* --o1-child target/o1/o1.npy'
//! ```

mod common;
use common::cpu_model;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use centering::Centering;

const D: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--o1-child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let gib: f64 = std::env::var("CENTERING_O1_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4.0);
    let dir = std::env::var("CENTERING_O1_DIR").map_or_else(|_| PathBuf::from("../../target/o1"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("cannot create the O1 directory");
    let rows = ((gib * (1u64 << 30) as f64) as usize / (D * 8)).max(1);
    let input = dir.join("o1.npy");
    generate(&input, rows);
    let bytes = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0) as f64;
    println!(
        "O1 on {}: {} ({rows} × {D} float64, {:.2} GiB)",
        cpu_model(),
        input.display(),
        bytes / (1u64 << 30) as f64
    );

    let me = std::env::current_exe().expect("no path to this binary");
    let cat = || time(|| run(Command::new("cat").arg(&input)));
    let fit = || time(|| run(Command::new(&me).arg("--o1-child").arg(&input)));
    println!("\n| page cache | cat (s) | fit_npy (s) | fit / cat (throughput ratio) |");
    println!("|---|---:|---:|---:|");
    // Warm: each read twice first, then the best of three.
    cat();
    fit();
    let (c, f) = (best(3, cat), best(3, fit));
    println!("| warm | {c:.3} | {f:.3} | {:.2} |", c / f);
    let (c, f) = (
        best(2, || {
            drop_cache(&input);
            cat()
        }),
        best(2, || {
            drop_cache(&input);
            fit()
        }),
    );
    println!("| cold | {c:.3} | {f:.3} | {:.2} |", c / f);

    // Transform file → file against cp, the outputs' pages dropped after.
    let out = dir.join("o1-out.npy");
    let copy = dir.join("o1-copy.npy");
    let mut c = Centering::<f64>::new();
    c.fit_npy(&input).expect("fit_npy failed");
    let transform = || {
        let t = time(|| c.transform_npy(&input, &out).expect("transform_npy failed"));
        let _ = std::fs::remove_file(&out);
        t
    };
    let cp = || {
        let t = time(|| run(Command::new("cp").arg(&input).arg(&copy)));
        let _ = std::fs::remove_file(&copy);
        t
    };
    transform();
    cp();
    let (t, p) = (best(3, transform), best(3, cp));
    println!("\n| input warm | cp (s) | transform_npy (s) | transform / cp (throughput ratio) |");
    println!("|---|---:|---:|---:|");
    println!("| warm | {p:.3} | {t:.3} | {:.2} |", p / t);
    println!("\n(the file is kept for the next run: rm -r {})", dir.display());
}

/// The fit in a process of its own; prints its memory.
fn child(path: &Path) {
    let mut c = Centering::<f64>::new();
    c.fit_npy(path).expect("fit_npy failed");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or_else(|| "?".into(), |l| l[name.len()..].trim().to_string())
    };
    eprintln!(
        "child: mean[0] = {:.6}, peak RSS (VmHWM) {}, anonymous (RssAnon) {}",
        c.mean().map_or(f64::NAN, |m| m[0]),
        field("VmHWM:"),
        field("RssAnon:")
    );
}

/// Writes `rows × D` float64 values in C order, unless the file already
/// has the size that makes.
fn generate(path: &Path, rows: usize) {
    let header = {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {D}), }}");
        let mut h = b"\x93NUMPY\x01\x00\x00\x00".to_vec();
        h.extend_from_slice(dict.as_bytes());
        while !(h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let len = (h.len() - 10) as u16;
        h[8..10].copy_from_slice(&len.to_le_bytes());
        h
    };
    let size = (header.len() + rows * D * 8) as u64;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return;
    }
    eprintln!("generating {} ({size} bytes)...", path.display());
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).expect("cannot create the O1 file"));
    w.write_all(&header).expect("write failed");
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut row = [0u8; D * 8];
    for r in 0..rows {
        for (j, v) in row.chunks_exact_mut(8).enumerate() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = (s >> 11) as f64 / (1u64 << 53) as f64 * 5.0 + (j * 100 + r % 7) as f64;
            v.copy_from_slice(&x.to_le_bytes());
        }
        w.write_all(&row).expect("write failed");
    }
    w.flush().expect("write failed");
}

fn run(cmd: &mut Command) {
    let status = cmd.stdout(Stdio::null()).status().expect("cannot run a command");
    assert!(status.success(), "{cmd:?} failed");
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn best(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// Drops the file's pages from the page cache (flushed first).
fn drop_cache(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(f) = File::open(path) {
            let _ = f.sync_all();
            // SAFETY: a valid descriptor, owned by `f` for the call; the
            // advice changes no memory of this process.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}
