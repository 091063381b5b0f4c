//! Replays every seed of `seeds/<target>/` through the target's function:
//! a regression test of the fuzz targets on the stable toolchain, without
//! libFuzzer or cargo-fuzz. `CENTERING_FUZZ_CORPUS=1` replays `corpus/` and
//! `artifacts/` too, when they exist (a local run's full corpus).

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("seeds").join(target)];
    if std::env::var_os("CENTERING_FUZZ_CORPUS").is_some() {
        dirs.push(root.join("corpus").join(target));
        dirs.push(root.join("artifacts").join(target));
    }
    let mut n = 0;
    for dir in &dirs {
        for path in files(dir) {
            let data = std::fs::read(&path).expect("readable seed");
            // Name the file in the failure: a panic inside `f` propagates.
            let r = std::panic::catch_unwind(|| f(&data));
            if let Err(e) = r {
                eprintln!("seed {} of `{target}` failed", path.display());
                std::panic::resume_unwind(e);
            }
            n += 1;
        }
    }
    // The committed seeds must exist: an empty directory would test nothing.
    assert!(n > 0, "no seeds for `{target}` in {}", dirs[0].display());
    eprintln!("{target}: {n} inputs replayed");
}

#[test]
fn load_json() {
    replay("load_json", centering_fuzz::load_json);
}

#[test]
fn load_binary() {
    replay("load_binary", centering_fuzz::load_binary);
}

#[test]
fn params() {
    replay("params", centering_fuzz::params);
}

#[test]
fn ops() {
    replay("ops", centering_fuzz::ops);
}

/// Writes the example states into `seeds/load_json` and `seeds/load_binary`
/// (run once with `--ignored`; the files are committed).
#[test]
#[ignore]
fn write_state_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, json, bin) in centering_fuzz::example_states() {
        std::fs::write(root.join("load_json").join(format!("{name}.json")), json).unwrap();
        std::fs::write(root.join("load_binary").join(format!("{name}.postcard")), bin).unwrap();
    }
}
