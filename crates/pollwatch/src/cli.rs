//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pollwatch_settings::LoadOptions;

/// pollwatch ingests election observers' reports from RabbitMQ, stores them exactly once and
/// answers the core team's questions: coverage, findings, incidents and results.
#[derive(Debug, Parser)]
#[command(name = "pollwatch", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts: where settings come from.
#[derive(Debug, Args)]
#[command(next_help_heading = "Settings")]
pub struct GlobalArgs {
    /// Folder with {ENV}.toml and local.toml
    #[arg(long, global = true, value_name = "DIR", env = "POLLWATCH_CONFIG_DIR", default_value = "config")]
    pub config_dir: PathBuf,

    /// Environment whose settings file to read [default: development]
    #[arg(long = "env", global = true, value_name = "NAME", env = "POLLWATCH_ENV")]
    pub environment: Option<String>,

    /// A further settings file, read after the environment variables
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Override one setting, e.g. --set amqp.prefetch=300 (repeatable; applied last)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_assignment)]
    pub overrides: Vec<(String, String)>,
}

impl GlobalArgs {
    /// What to read, in the settings crate's terms; environment variables come from the process.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            config_dir: self.config_dir.clone(),
            environment: self.environment.clone(),
            extra_file: self.config_file.clone(),
            overrides: self.overrides.clone(),
            env_vars: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the settings this process would run with
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with mission definitions (folders like missions/kg-2021)
    Mission {
        #[command(subcommand)]
        command: MissionCommand,
    },
    /// Run the ingest worker: consume reports, store them, then acknowledge them (until SIGTERM or Ctrl-C)
    Worker {
        /// Mission folder whose roster and forms the reports are checked against; it is also
        /// imported into the store at start (idempotently)
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
    },
    /// Publish report files to the broker as a field device does: checked first, kept in an
    /// outbox until the broker confirms them
    Publish {
        /// Mission folder the reports are checked against
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// The outbox file; reports not confirmed stay in it and go out on the next run
        #[arg(long, value_name = "FILE", default_value = "data/outbox.db")]
        outbox: PathBuf,
        /// The broker user to send as AMQP user_id (it must be the user in amqp.url)
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Reports: one JSON report, a JSON array of them, or JSON lines; `-` for standard input.
        /// Without it, only what the outbox still holds is sent
        #[arg(value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Simulate field devices. So far: `--burst N`, N generated reports published as fast as
    /// publisher confirms allow, and the rate
    Simulate {
        /// Mission folder whose stations and observers file the reports
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// Publish this many generated reports at once and print the rate
        #[arg(long, value_name = "N", required = true)]
        burst: usize,
        /// Seed of the generated reports (the same seed gives the same reports)
        #[arg(long, value_name = "SEED", default_value_t = 1)]
        seed: u64,
        /// Messages published but not yet confirmed, at most
        #[arg(long, value_name = "N", default_value_t = 1_000)]
        window: usize,
    },
    /// Inspect the dead-letter queue (amqp.dead_letter_queue) and replay letters once fixed
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Check report files against the wire format and a mission, as the worker would
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MissionCommand {
    /// Parse and cross-check a mission folder and summarise it
    Check {
        /// Folder with mission.toml, forms.toml, stations.csv and observers.csv
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Load a mission folder into the store (store.url); re-importing updates what changed
    Import {
        /// Folder with mission.toml, forms.toml, stations.csv and observers.csv
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead letters per code
    Stats,
    /// Print the dead letters (code, reason, routing key, message id, sender, body)
    Show {
        /// Only letters with this code (see docs/report-codes.md)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// Print at most this many
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
    },
    /// Move dead letters back to the reports exchange (each once, confirmed by the broker)
    Replay {
        /// Only letters with this code; all of them otherwise
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Say for each report whether it would be rejected, held for review, or accepted
    Check {
        /// Mission folder the reports belong to
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// Broker user taken as the sender (AMQP user_id), to check it against the roster
        #[arg(long, value_name = "USER")]
        sender: Option<String>,
        /// Report files (one JSON report each)
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings as TOML, secrets redacted, each value with the layer that set it
    Show,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not of the form section.key=value")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn set_flag_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("amqp.url=amqp://h/?a=b"),
            Ok(("amqp.url".into(), "amqp://h/?a=b".into()))
        );
        assert!(parse_assignment("amqp.prefetch").is_err());
        assert!(parse_assignment("=3").is_err());
    }
}
