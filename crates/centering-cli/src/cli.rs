//! The command line: subcommands and their options (clap derive).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Learn one mean per feature (the last axis of a .npy file, or the columns
/// of a CSV file) and subtract it.
///
/// States are JSON files in the `centering` crate's one versioned format:
/// the same a Rust program saves with serde, inspectable and mergeable here.
#[derive(Debug, Parser)]
#[command(name = "centering", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a state on one or more files (batch by batch, in bounded memory).
    #[command(after_help = FIT_EXAMPLES)]
    Fit(FitArgs),
    /// Subtract a fitted state's mean from a file, writing a new file.
    #[command(
        after_help = "Examples:\n  centering transform data.npy --state state.json -o centred.npy\n  centering transform data.bin --format npy --state state.json -o centred.bin"
    )]
    Transform(TransformArgs),
    /// Merge states (cumulative: the state of all their data; moving averages: B's batches continue A's).
    #[command(after_help = "Example:\n  centering merge part1.json part2.json -o all.json")]
    Merge(MergeArgs),
    /// Show a state: parameters, means, counts, crate and format version.
    Inspect(InspectArgs),
}

const FIT_EXAMPLES: &str = "\
Examples:
  centering fit data.npy -o state.json                          # the exact mean of every row
  centering fit a.csv b.csv --columns x,y -o state.json         # two CSV files, columns x and y
  centering fit data.npy --momentum 0.99 --start zero --batch-rows 32 -o keras.json
                                                                # Keras BatchNormalization's moving mean
  centering fit data.npy --torch-momentum 0.1 --start zero --batch-rows 32 -o torch.json
                                                                # PyTorch BatchNorm's running mean
  centering fit more.npy --resume state.json -o state.json      # continue a fit
  centering fit data.bin --format npy -o state.json             # a name without the extension
  zcat data.npy.gz | centering fit - --format npy -o state.json # standard input (.npy in C order, or CSV)
  centering fit sales.csv --columns price --weights qty -o state.json
                                                                # sum(qty*price) / sum(qty)

A .npy file of shape (n0, ..., nk, D) holds n0*...*nk samples of D features
(C or Fortran order, float32/float64 or (u)int8/16/32/64, integers summed
exactly). A CSV file has a header row;
empty cells are missing values (see --nan-policy). In a Parquet file, each
record batch of --batch-rows rows is one batch; nulls are missing values.
Parquet columns: Float16/32/64 and (U)Int8/16/32/64 as they are (integers
summed exactly). Columns of different types are widened exactly to one:
integers to the narrowest integer type holding them all, floats to the
widest; integers with floats (or UInt64 with signed integers) to float64
(then summed as floats, within 1 ulp rather than exactly), where a 64-bit
value beyond +-2^53 is an error naming its row, as with --weights (which
reads columns as float64).
With --weights, every Parquet column and the weights are read as float64
(w*x is a float product in any case).";

/// `fit`'s options.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("ema").args(["momentum", "torch_momentum"])))]
pub struct FitArgs {
    /// Input files: .npy, .csv or .parquet (by extension, or --format), fitted in the order given.
    /// `-` reads standard input once (a C-order .npy or CSV stream; --format required).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// The format of every input, whatever its extension (for names without one, e.g. data.bin).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Where to write the fitted state (JSON); written to a temporary name and renamed when complete.
    #[arg(short = 'o', long = "output", value_name = "STATE")]
    pub output: PathBuf,

    /// Exponential moving average of batch means, Keras's convention: MOMENTUM is the weight of
    /// the OLD value (Keras's default 0.99). Needs --batch-rows.
    #[arg(long, value_name = "MOMENTUM", value_parser = unit_interval,
          conflicts_with_all = ["torch_momentum", "batch_average", "resume"])]
    pub momentum: Option<f64>,

    /// Exponential moving average, PyTorch's convention: MU is the weight of the NEW value
    /// (PyTorch's default 0.1; Keras's momentum = 1 - MU). Needs --batch-rows.
    #[arg(long, value_name = "MU", value_parser = unit_interval, conflicts_with_all = ["batch_average", "resume"])]
    pub torch_momentum: Option<f64>,

    /// How a moving average starts: `zero` reproduces Keras and PyTorch exactly (default: debiased).
    #[arg(long, value_enum, requires = "ema")]
    pub start: Option<StartArg>,

    /// The plain average of batch means, each batch counted once (PyTorch's momentum=None).
    /// Needs --batch-rows.
    #[arg(long, conflicts_with = "resume")]
    pub batch_average: bool,

    /// NaN (and empty CSV cells): `reject` makes them an error naming the place (default);
    /// `ignore` skips them per feature. ±inf is always an error.
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub nan_policy: Option<NanPolicyArg>,

    /// Element type of the state (default: the resumed state's, else f32 for a first .npy file of
    /// float32 or Parquet columns all Float16/Float32, else f64). float32 and integer files fit any state; float64 files are not narrowed to f32.
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,

    /// CSV or Parquet columns to fit, by name (comma-separated; default: every CSV column,
    /// every Float16/32/64 Parquet column: integer Parquet columns are fitted when named).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub columns: Vec<String>,

    /// Weight each row by its value in this CSV or Parquet column (not a feature): finite and
    /// non-negative, a missing or bad weight is an error naming its row. The mean is then
    /// sum(w*x) / sum(w) per feature; a batch whose weights sum to 0 is skipped.
    /// Weights are read as f64 (exactly), whatever the state's dtype: each batch is
    /// `BatchSummary::from_array_weighted` of its rows with f64 weights, folded in by
    /// `partial_fit_summary` (for an f64 state, bit for bit `partial_fit_weighted`; an f32
    /// state's `partial_fit_weighted` would take the weights rounded to f32).
    #[arg(long, value_name = "COLUMN")]
    pub weights: Option<String>,

    /// Continue fitting this state (its parameters and dtype are kept); may be the same file as -o.
    #[arg(long, value_name = "STATE")]
    pub resume: Option<PathBuf>,

    /// Rows (samples) per batch: each batch is one `partial_fit` call, one step of a moving
    /// average; a batch never spans two files. Required for the moving and batch averages;
    /// in the cumulative mode the default holds 1 MiB of values.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: Option<u64>,
}

/// `transform`'s options.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The input: .npy, .csv or .parquet (by extension, or --format); `-` reads standard input
    /// (a C-order .npy or CSV stream; --format required).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The format of the input and the output, whatever their extensions (the output's, when it
    /// has a known one, must agree: transform does not convert between formats).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// The fitted state to subtract (JSON).
    #[arg(long, value_name = "STATE")]
    pub state: PathBuf,

    /// The output, in the input's format (a .npy of the state's dtype and the input's shape and
    /// order; a CSV or Parquet file with the fitted columns centred and the others as they were).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,

    /// CSV or Parquet columns to centre, by name (comma-separated; default as for fit);
    /// as many as the state has features.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub columns: Vec<String>,

    /// Rows per chunk read and written (default: 1 MiB of values); does not change the result.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: Option<u64>,
}

/// `merge`'s options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The states, in order (the order matters for moving averages).
    #[arg(required = true, num_args = 2.., value_name = "STATE")]
    pub states: Vec<PathBuf>,

    /// Where to write the merged state.
    #[arg(short = 'o', long = "output", value_name = "STATE")]
    pub output: PathBuf,
}

/// `inspect`'s options.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The state file.
    #[arg(value_name = "STATE")]
    pub state: PathBuf,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// numpy's .npy.
    Npy,
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// Its name, as --format spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartArg {
    /// Start at 0 (Keras, PyTorch).
    Zero,
    /// Start from the first batch's mean (pandas ewm(adjust=False)).
    FirstBatch,
    /// Divide the zero start by 1 - momentum^t (pandas ewm(adjust=True)).
    Debiased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NanPolicyArg {
    /// NaN is an error.
    Reject,
    /// NaN is a missing value, skipped per feature.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    F64,
}

fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a number in [0, 1], found {s:?}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected a number in [0, 1], found {v}"))
    }
}
