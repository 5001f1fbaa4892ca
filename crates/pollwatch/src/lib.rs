//! The `pollwatch` command: its arguments, its subcommands and the process-wide set-up they share.
//!
//! `main.rs` only parses arguments and calls [`run`]; everything a test may want to call lives
//! here.

pub mod cli;
pub mod telemetry;

use std::io::Write as _;

use anyhow::Context as _;
use pollwatch_settings::Settings;

use crate::cli::{Cli, Command, ConfigCommand};

/// Loads settings, starts telemetry and runs the chosen subcommand.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let loaded = Settings::load(&cli.global.load_options()).context("invalid settings")?;
    telemetry::init(&loaded.settings.telemetry)?;
    tracing::debug!(environment = %loaded.environment, "settings loaded");
    match &cli.command {
        Command::Config { command: ConfigCommand::Show } => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(loaded.to_annotated_toml().as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing settings to standard output")
        }
    }
}
