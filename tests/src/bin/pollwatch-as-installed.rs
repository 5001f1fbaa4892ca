//! The `pollwatch` command exactly as `crates/pollwatch/src/main.rs` builds it, as a binary of
//! this package: Cargo tells a package's tests where its own binaries are
//! (`CARGO_BIN_EXE_<name>`), not another package's.
//!
//! One addition for the tests: with `POLLWATCH_TEST_PARENT` set to the pid of the test process
//! that started it, it exits as soon as that process is gone, so that a test binary killed
//! mid-run (SIGKILL: no drop, no `kill_on_drop`) leaves no worker running.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use pollwatch::cli::Cli;

/// The variable that names the test process this one must not outlive.
const PARENT: &str = "POLLWATCH_TEST_PARENT";

fn main() -> ExitCode {
    if let Some(parent) = std::env::var(PARENT).ok().and_then(|pid| pid.parse::<u32>().ok()) {
        exit_with(parent);
    }
    match pollwatch::run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exits once this process is no longer `parent`'s child (an orphan is adopted by another).
fn exit_with(parent: u32) {
    std::thread::spawn(move || {
        while std::os::unix::process::parent_id() == parent {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Standard error may be a pipe to the process that is gone: a failed write must not
        // stop the exit (`eprintln!` would panic this thread instead).
        let _ =
            writeln!(std::io::stderr(), "pollwatch-as-installed: the test process {parent} is gone; exiting");
        std::process::exit(1);
    });
}
