//! The `pollwatch` command exactly as `crates/pollwatch/src/main.rs` builds it, as a binary of
//! this package: Cargo tells a package's tests where its own binaries are
//! (`CARGO_BIN_EXE_<name>`), not another package's.

use std::process::ExitCode;

use clap::Parser as _;
use pollwatch::cli::Cli;

fn main() -> ExitCode {
    match pollwatch::run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
