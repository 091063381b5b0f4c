//! CSV files with a header row, streamed as byte records: the chosen
//! columns (by name, or all) parsed into a row-major `(rows, D)` buffer.
//! Cells are trimmed; an empty cell is a missing value (NaN) — an error
//! under NaN policy `reject`, naming its line and column, as is any cell
//! that is not a number.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use centering::NanPolicy;
use csv::ByteRecord;

use crate::elem::Float;
use crate::output::{Input, shown};

pub struct CsvReader {
    reader: csv::Reader<Box<dyn Read>>,
    path: PathBuf,
    pub headers: ByteRecord,
    /// The record index of each feature, in feature order.
    pub columns: Vec<usize>,
    /// The line of each row of the last batch read.
    pub lines: Vec<u64>,
    /// The weights column (`fit --weights`), not a feature.
    weight_col: Option<usize>,
    /// The weight of each row of the last batch read, when there is a weights column.
    pub weights: Vec<f64>,
    pub len: u64,
}

impl CsvReader {
    /// Opens `path`, or standard input for `-` (`len` 0: unknown), choosing
    /// the columns `names` (default: every column but the weights column
    /// `weights`, if any).
    pub fn open(path: &Path, names: &[String], weights: Option<&str>) -> Result<Self> {
        let (input, len): (Box<dyn Read>, u64) = match crate::output::open_input(path, "a CSV file with a header row")?
        {
            Input::Stdin(pipe) => (pipe, 0),
            Input::File(file, len) => (Box::new(file), len),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers = reader
            .byte_headers()
            .with_context(|| format!("cannot read the header row of {}", shown(path)))?
            .clone();
        let find = |name: &str| {
            headers.iter().position(|h| h == name.as_bytes()).with_context(|| {
                let have: Vec<_> = headers
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect();
                format!("{}: no column named {name:?} (the header has {have:?})", shown(path))
            })
        };
        let weight_col = weights.map(find).transpose()?;
        let columns: Vec<usize> = if names.is_empty() {
            (0..headers.len()).filter(|&c| Some(c) != weight_col).collect()
        } else {
            names.iter().map(|name| find(name)).collect::<Result<Vec<_>>>()?
        };
        if let (Some(w), Some(name)) = (weight_col, weights)
            && columns.contains(&w)
        {
            bail!(
                "{}: column {name:?} is the weights column (--weights) and cannot also be a feature",
                shown(path)
            );
        }
        if columns.is_empty() {
            bail!("{}: the header row has no columns to fit", shown(path));
        }
        Ok(CsvReader {
            reader,
            path: path.to_path_buf(),
            headers,
            columns,
            lines: Vec::new(),
            weight_col,
            weights: Vec::new(),
            len,
        })
    }

    pub fn d(&self) -> usize {
        self.columns.len()
    }

    pub fn column_name(&self, j: usize) -> String {
        let name = self.columns.get(j).and_then(|&c| self.headers.get(c)).unwrap_or(b"?");
        String::from_utf8_lossy(name).into_owned()
    }

    /// Bytes read so far, for progress.
    pub fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    /// Reads up to `max_rows` rows into `buf` (cleared first, row-major),
    /// keeping each record in `records` when given (for transform). Returns
    /// the rows read; 0 at the end of the file.
    pub fn read_batch<F: Float>(
        &mut self,
        max_rows: usize,
        policy: NanPolicy,
        buf: &mut Vec<F>,
        mut records: Option<&mut Vec<ByteRecord>>,
    ) -> Result<usize> {
        buf.clear();
        self.lines.clear();
        self.weights.clear();
        if let Some(r) = records.as_deref_mut() {
            r.clear();
        }
        let mut record = ByteRecord::new();
        let mut rows = 0;
        while rows < max_rows {
            let more = self
                .reader
                .read_byte_record(&mut record)
                .with_context(|| format!("cannot read {}", shown(&self.path)))?;
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| p.line());
            for (j, &c) in self.columns.iter().enumerate() {
                let cell = record.get(c).unwrap_or(b"");
                buf.push(self.parse(cell, line, j, policy)?);
            }
            if let Some(w) = self.weight_col {
                let weight = self.parse_weight(record.get(w).unwrap_or(b""), line, w)?;
                self.weights.push(weight);
            }
            self.lines.push(line);
            if let Some(r) = records.as_deref_mut() {
                r.push(record.clone());
            }
            rows += 1;
        }
        Ok(rows)
    }

    /// A weight: a finite non-negative number, whatever the NaN policy.
    fn parse_weight(&self, cell: &[u8], line: u64, c: usize) -> Result<f64> {
        let text = String::from_utf8_lossy(cell);
        let name = String::from_utf8_lossy(self.headers.get(c).unwrap_or(b"?")).into_owned();
        match text.parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
            _ => bail!(
                "{}: line {line}, weights column {name:?}: {}: expected a finite non-negative weight",
                shown(&self.path),
                if cell.is_empty() {
                    "an empty cell".to_owned()
                } else {
                    format!("{text:?}")
                }
            ),
        }
    }

    fn parse<F: Float>(&self, cell: &[u8], line: u64, j: usize, policy: NanPolicy) -> Result<F> {
        if cell.is_empty() {
            if policy == NanPolicy::Reject {
                bail!(
                    "{}: line {line}, column {:?}: empty cell (a missing value) under NaN policy reject; --nan-policy ignore skips missing values",
                    shown(&self.path),
                    self.column_name(j)
                );
            }
            return Ok(F::nan());
        }
        std::str::from_utf8(cell)
            .ok()
            .and_then(|s| s.parse::<F>().ok())
            .with_context(|| {
                format!(
                    "{}: line {line}, column {:?}: {:?} is not a number",
                    shown(&self.path),
                    self.column_name(j),
                    String::from_utf8_lossy(cell)
                )
            })
    }
}
