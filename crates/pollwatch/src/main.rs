//! Entry point: parse the command line, run it, turn an error into a message and an exit code.

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
