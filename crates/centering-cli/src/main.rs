//! `centering`: learn per-feature means of `.npy` and CSV files and subtract
//! them, from the shell, in bounded memory, with the state files the
//! library reads and writes.
//!
//! Exit codes: 0 success, 2 a usage error (clap's), 1 any other error, with
//! a message on stderr naming the file and the place in it.

#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod csvio;
mod elem;
mod fit;
mod npy;
mod output;
#[cfg(feature = "parquet")]
mod parquet;
mod progress;
mod state;
mod transform;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        cli::Command::Fit(args) => fit::run(args),
        cli::Command::Transform(args) => transform::run(args),
        cli::Command::Merge(args) => state::merge(args),
        cli::Command::Inspect(args) => state::inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("centering: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
