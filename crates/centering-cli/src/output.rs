//! Outputs written atomically: to a temporary file in the target's
//! directory, renamed over the target only once complete. On any error the
//! temporary file is removed when dropped, so no partial output is left.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// An output being written: a temporary file beside its target.
pub struct AtomicOutput {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl AtomicOutput {
    /// Creates the temporary file now, so that an unwritable target fails
    /// before any long computation.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if is_stdin(target) {
            anyhow::bail!("cannot write output -: outputs are files (standard output is not supported), name one");
        }
        if target.is_dir() {
            anyhow::bail!("cannot write output {}: it is a directory", target.display());
        }
        let tmp = tempfile::Builder::new()
            .prefix(".centering-")
            .suffix(".part")
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "cannot write output {} (creating a file in {})",
                    target.display(),
                    dir.display()
                )
            })?;
        Ok(AtomicOutput {
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    pub fn file_mut(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Flushes to disk and renames over the target.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        self.tmp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot write output {}", target.display()))?;
        self.tmp.persist(&target).map_err(|e| e.error).with_context(|| {
            format!(
                "cannot write output {} (renaming the completed file into place)",
                target.display()
            )
        })?;
        Ok(())
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = AtomicOutput::create(target)?;
    out.file_mut()
        .write_all(bytes)
        .with_context(|| format!("cannot write output {}", target.display()))?;
    out.commit()
}

/// Opens an input file and its length, refusing an empty one with a message
/// that says what was `expected` (the one place every reader opens files).
pub fn open_file(path: &Path, expected: &str) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len == 0 {
        anyhow::bail!("{} is empty: expected {expected}", path.display());
    }
    Ok((file, len))
}

/// An input opened by [`open_input`].
pub enum Input {
    /// A file and its length.
    File(std::fs::File, u64),
    /// Standard input, whose first byte was read (to refuse an empty
    /// stream as an empty file is) and is given back first.
    Stdin(Box<dyn Read + Send>),
}

/// Opens `path`, or standard input for `-`, refusing either when empty with
/// the same message: "`path` is empty: expected `expected`".
pub fn open_input(path: &Path, expected: &str) -> Result<Input> {
    if !is_stdin(path) {
        let (file, len) = open_file(path, expected)?;
        return Ok(Input::File(file, len));
    }
    let mut stdin = std::io::stdin();
    let mut first = [0u8; 1];
    let got = loop {
        match stdin.read(&mut first) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => break r.with_context(|| format!("cannot read {}", shown(path)))?,
        }
    };
    if got == 0 {
        anyhow::bail!("{} is empty: expected {expected}", shown(path));
    }
    Ok(Input::Stdin(Box::new(std::io::Cursor::new(first).chain(stdin))))
}

/// Whether `path` names standard input (`-`).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A path as messages name it: `-` is standard input.
pub fn shown(path: &Path) -> Shown<'_> {
    Shown(path)
}

/// See [`shown`].
pub struct Shown<'a>(&'a Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if is_stdin(self.0) {
            f.write_str("<stdin>")
        } else {
            self.0.display().fmt(f)
        }
    }
}
