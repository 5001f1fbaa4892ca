//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Simulate election day for a mission: observer teams file reports, devices resend, deliver
    /// late, correct and garble them; publish it all and write what the store must then hold
    ///
    /// The expectation assumes the worker judges senders as this command's settings say
    /// (ingest.require_sender_auth), and that it starts from an empty store and dead-letter queue.
    Simulate(SimulateArgs),
    /// Compare the store and the dead-letter queue with an expectation file from `simulate`
    Verify {
        /// The expectation file `pollwatch simulate` wrote
        #[arg(value_name = "FILE", default_value = "data/expectation.json")]
        expectation: PathBuf,
        /// Keep comparing for up to this long while the worker catches up (e.g. 30s, 2m)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        wait: Duration,
    },
    /// Inspect the dead-letter queue (amqp.dead_letter_queue) and replay letters once fixed
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Check report files against the wire format and a mission, as the worker would, or show
    /// a stored report's history
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Serve the read API (/api/v1) over the store, without ingesting (any number of these
    /// against one PostgreSQL store)
    Serve {
        #[command(flatten)]
        mission: MissionArg,
    },
    /// Which stations have reported a phase, per region
    Coverage {
        #[command(flatten)]
        mission: MissionArg,
        /// The report kind: arrival, opening, voting, closing, counting, departure or incident
        #[arg(long, value_name = "KIND", value_parser = parse_kind)]
        phase: pollwatch_model::ReportKind,
        /// Only this region (its code)
        #[arg(long, value_name = "CODE")]
        region: Option<String>,
        /// List the codes of the stations that have not reported
        #[arg(long)]
        missing: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A contest's results from the observers' copies of the protocols
    Results {
        #[command(flatten)]
        mission: MissionArg,
        /// The contest id, e.g. president or referendum
        #[arg(value_name = "CONTEST")]
        contest: String,
        /// Only this region (its code)
        #[arg(long, value_name = "CODE")]
        region: Option<String>,
        /// Print a table per region too
        #[arg(long)]
        by_region: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Overall assessments and checklist answers for a phase (held reports left out)
    Findings {
        #[command(flatten)]
        mission: MissionArg,
        #[arg(long, value_name = "KIND", value_parser = parse_kind)]
        phase: pollwatch_model::ReportKind,
        /// Only this region (its code)
        #[arg(long, value_name = "CODE")]
        region: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Incident reports, newest first (held reports left out)
    Incidents {
        #[command(flatten)]
        mission: MissionArg,
        /// Only this severity: low, medium, high or critical
        #[arg(long, value_name = "SEVERITY")]
        severity: Option<String>,
        /// Only this category (see docs/wire-format.md)
        #[arg(long, value_name = "CATEGORY")]
        category: Option<String>,
        /// Only this region (its code)
        #[arg(long, value_name = "CODE")]
        region: Option<String>,
        /// Only incidents observed at or after this RFC 3339 time
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Print at most this many
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
        /// Counts by category and severity instead of the list
        #[arg(long)]
        summary: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Observers from whom nothing was received for a while (or ever)
    Observers {
        #[command(flatten)]
        mission: MissionArg,
        /// How long without a report, e.g. 60m, 90s or 2h
        #[arg(long, value_name = "DURATION", default_value = "60m")]
        silent_for: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Reports held for review, with the flags that hold them
    Held {
        #[command(flatten)]
        mission: MissionArg,
        /// Print at most this many
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write every revision of the audit trail, or every station's result, as CSV or JSON lines
    Export {
        #[command(flatten)]
        mission: MissionArg,
        #[arg(value_enum, value_name = "WHAT")]
        what: ExportWhat,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to this file (with a progress bar) instead of standard output
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Manage the API's bearer tokens (kept in the store as hashes)
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Decide about held reports: list them, show one, accept, reject or hold it (docs/review.md)
    Review {
        #[command(subcommand)]
        command: ReviewCommand,
    },
    /// Stations whose teams' protocols disagree: list them, settle which one counts
    Dispute {
        #[command(subcommand)]
        command: DisputeCommand,
    },
    /// The tamper-evident audit chain over every revision and decision: check it, print its head
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The quick count (PVT): draw the sample of stations, or size it for a margin (docs/pvt.md)
    Pvt {
        #[command(subcommand)]
        command: PvtCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PvtCommand {
    /// Draw a stratified random sample of the roster's stations, in proportion to each stratum's
    /// registered voters (at least 2 a stratum), and write it into the mission folder as
    /// pvt-sample.csv, where every pollwatch process reads it
    Sample {
        /// Mission folder whose roster the sample is drawn from, and which it is written into
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// How many stations
        #[arg(long, value_name = "N")]
        size: u32,
        /// What the roster is split into strata by: region, district, abroad or none
        #[arg(long, value_name = "FIELD", default_value = "region", value_parser = parse_strata)]
        strata: pollwatch_pvt::StrataBy,
        /// Where the draw starts: the same roster, size, strata and seed give the same sample
        /// [default: one picked now, and printed]
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Replace the sample the folder has (observers may already be deployed to it)
        #[arg(long)]
        replace: bool,
    },
    /// The estimate from the counted protocols of the sampled stations: each choice's share with
    /// its 95 % and 99 % margins, turnout, and how far each stratum's sample has come in
    Estimate {
        #[command(flatten)]
        mission: MissionArg,
        /// The contest (a contest id of the mission) [default: its first]
        #[arg(long, value_name = "ID")]
        contest: Option<String>,
        /// What a share is a share of: `valid` votes, or the `ballots` in the box (those who took
        /// part, as some election commissions count)
        #[arg(long, value_name = "OF", default_value = "valid", value_parser = parse_share_of)]
        share_of: pollwatch_pvt::ShareOf,
        /// Estimate as of this moment (RFC 3339): protocols received later are left out
        #[arg(long, value_name = "TIME")]
        as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// The share of each stratum's sampled stations that must be in to publish [default:
        /// pvt.publish_threshold]
        #[arg(long, value_name = "SHARE")]
        threshold: Option<f64>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Store the official result as announced (TOML, or JSON for a .json file: per contest,
    /// registered_voters, ballots and the votes of every choice) in the mission folder; the
    /// estimate then says, choice by choice, whether it lies within the 99 % interval
    Official {
        /// Mission folder the result is checked against and kept in (pvt-official.toml)
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// The announced figures
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Suggest a sample size for a margin of error, from the roster (NDI's formula, docs/pvt.md)
    Size {
        /// Mission folder whose roster the sample would be drawn from
        #[arg(long, value_name = "DIR")]
        mission: PathBuf,
        /// The margin of error wanted, as a share (0.01 is ±1 percentage point)
        #[arg(long, value_name = "E")]
        margin: f64,
        /// Confidence level: 0.90, 0.95 or 0.99
        #[arg(long, value_name = "LEVEL", default_value_t = 0.95)]
        confidence: f64,
        /// Expected turnout, as a share of registered voters
        #[arg(long, value_name = "T", default_value_t = 0.5)]
        turnout: f64,
    },
}

fn parse_share_of(name: &str) -> Result<pollwatch_pvt::ShareOf, String> {
    pollwatch_pvt::ShareOf::from_code(name)
        .ok_or_else(|| "a share is of `valid` votes or of `ballots`".to_owned())
}

fn parse_strata(name: &str) -> Result<pollwatch_pvt::StrataBy, String> {
    pollwatch_pvt::StrataBy::parse(name)
        .ok_or_else(|| format!("strata are one of {}", pollwatch_pvt::StrataBy::NAMES.join(", ")))
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Current reports in a review state (held, by default), oldest change first, with their flags
    List {
        #[command(flatten)]
        mission: MissionArg,
        /// The review state: held, rejected or accepted
        #[arg(long, value_name = "STATE", default_value = "held", value_parser = clap::builder::PossibleValuesParser::new(["held", "rejected", "accepted"]))]
        state: String,
        /// Print at most this many
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A report's current revision, its state, its history and every decision and comment on it
    Show {
        #[command(flatten)]
        mission: MissionArg,
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Count a report: its current revision becomes accepted
    Accept(DecideArgs),
    /// Never count a report (it is kept): its current revision becomes rejected
    Reject(DecideArgs),
    /// Keep a report out of the results, waiting: its current revision becomes held
    Hold(DecideArgs),
    /// Pick which version of a report's current revision counts, when another content arrived
    /// for it (`review show` lists the versions); every version stays stored
    Pick {
        #[command(flatten)]
        mission: MissionArg,
        /// The report id
        #[arg(value_name = "ID")]
        id: String,
        /// The content hash of the version to count
        #[arg(long, value_name = "HASH")]
        keep: String,
        /// Pick only if this version is still in force (as another reviewer may have picked
        /// since you looked) [default: the one in force when the command reads it]
        #[arg(long, value_name = "HASH")]
        expect: Option<String>,
        /// Who decides, for the review log
        #[arg(long, value_name = "NAME")]
        reviewer: String,
        /// Why, for the review log
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Add a comment to a report's history
    Comment {
        #[command(flatten)]
        mission: MissionArg,
        #[arg(value_name = "ID")]
        id: String,
        /// Who comments, for the review log
        #[arg(long, value_name = "NAME")]
        reviewer: String,
        /// The comment
        #[arg(long, value_name = "TEXT")]
        text: String,
    },
}

/// What `review accept|reject|hold` takes.
#[derive(Debug, Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub mission: MissionArg,
    /// The report id
    #[arg(value_name = "ID")]
    pub id: String,
    /// Who decides, for the review log
    #[arg(long, value_name = "NAME")]
    pub reviewer: String,
    /// Why, for the review log
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Decide only if the report is in this state (as another reviewer may have decided since
    /// you looked) [default: the state it is in when the command reads it]
    #[arg(long, value_name = "STATE", value_parser = clap::builder::PossibleValuesParser::new(["held", "rejected", "accepted"]))]
    pub expect: Option<String>,
    /// Decide only if this revision is still the current one
    #[arg(long, value_name = "N")]
    pub revision: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum DisputeCommand {
    /// Stations where accepted protocols disagree and no settlement is in force, with every copy
    List {
        #[command(flatten)]
        mission: MissionArg,
        /// Only this contest
        #[arg(long, value_name = "CONTEST")]
        contest: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Decide which report's protocol counts at a station for a contest, or none until a recount
    Settle {
        #[command(flatten)]
        mission: MissionArg,
        /// The station's code
        #[arg(value_name = "STATION")]
        station: String,
        /// The contest id, e.g. president
        #[arg(long, value_name = "CONTEST")]
        contest: String,
        /// The report whose protocol counts
        #[arg(long, value_name = "ID", required_unless_present = "none", conflicts_with = "none")]
        report: Option<String>,
        /// Count no protocol for the contest at this station until a recount
        #[arg(long)]
        none: bool,
        /// Who decides, for the review log
        #[arg(long, value_name = "NAME")]
        reviewer: String,
        /// Why, for the review log
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash of the chain and rebuild every entry from what the store holds;
    /// fails naming the first entry that does not match
    Verify,
    /// Print the chain's head: its number of entries and last hash (publish it with the statement)
    Head {
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The mission a command reads about.
#[derive(Debug, Args)]
pub struct MissionArg {
    /// Mission folder (as given to `pollwatch worker`); the store must hold the mission
    #[arg(long = "mission", value_name = "DIR", env = "POLLWATCH_MISSION")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON (what the API returns) instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportWhat {
    /// Every revision of every report, with its audit fields, in the order received
    Reports,
    /// One row per station and contest: the counted protocol, if any
    Results,
    /// The audit chain, one entry per line (JSON lines only; docs/review.md says how to check it)
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token, print it once and keep only its hash
    Add {
        /// A name for whoever will use it, e.g. analyst-1
        #[arg(value_name = "NAME", value_parser = parse_token_name)]
        name: String,
        /// What it may do: viewer (read), reviewer or admin
        #[arg(long, value_name = "ROLE", value_parser = clap::builder::PossibleValuesParser::new(pollwatch_api::auth::ROLES))]
        role: String,
    },
    /// List the tokens' names and roles
    List,
    /// Remove a token: requests with it are refused within seconds
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `pollwatch simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Mission folder whose teams, stations and contests make the day
    #[arg(long, value_name = "DIR")]
    pub mission: PathBuf,
    /// The national figures the counting protocols add up to [default: DIR/ground-truth.toml]
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Seed of the simulation: the same seed gives the same day, message for message
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Spread the day (about 07:00 to 23:30 on its own clock) over this long, e.g. 90s, 10m, 1h
    /// [default: as fast as the broker confirms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "rate")]
    pub duration: Option<Duration>,
    /// Send this many messages per second (0.1 or more), in the day's order
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Share of reports a device sends twice
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.02)]
    pub resends: f64,
    /// Share of reports sent late, after reports written later
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.05)]
    pub out_of_order: f64,
    /// Share of reports sent with a mistake first and corrected by a second revision
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.02)]
    pub corrections: f64,
    /// Malformed messages, as a share of the reports
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.01)]
    pub malformed: f64,
    /// Counting reports sent from one observer's device in another's name, as a share of the
    /// reports (needs --senders device)
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.0)]
    pub spoofed: f64,
    /// Share of counting reports a second team copies too, with a slip that still adds up (the
    /// station is then disputed until a reviewer settles it)
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value_t = 0.0)]
    pub miscounts: f64,
    /// `device`: each message carries its observer's device account as user_id, which the
    /// broker allows only if the user in amqp.url has the `impersonator` tag; `none`: no user_id
    #[arg(long, value_enum, default_value_t = Senders::None)]
    pub senders: Senders,
    /// `teams`: teams of the roster travel between stations, opening at the first and counting
    /// at the last; `pvt`: one observer stays at each station of the quick count's sample
    /// (DIR/pvt-sample.csv, drawn by `pollwatch pvt sample`), the roster's observers in order
    #[arg(long, value_enum, default_value_t = Deploy::Teams)]
    pub deploy: Deploy,
    /// Where to write what the store and the dead-letter queue must hold afterwards
    #[arg(long, value_name = "FILE", default_value = "data/expectation.json")]
    pub expect: PathBuf,
    /// Messages published but not yet confirmed, at most
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub window: usize,
    /// Instead of a day: publish N generated reports as fast as confirms allow and print the rate
    #[arg(long, value_name = "N", conflicts_with_all = ["duration", "rate", "spoofed", "miscounts", "senders", "deploy"])]
    pub burst: Option<usize>,
}

/// Where a simulated day's observers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Deploy {
    Teams,
    Pvt,
}

/// Whose broker user a simulated message claims to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Senders {
    None,
    Device,
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
    /// Show a stored report's current revision and its whole history
    Show {
        #[command(flatten)]
        mission: MissionArg,
        /// The report id
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
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

/// `90s`, `10m`, `1h`, `250ms` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration like 90s, 10m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1_000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3_600.0,
        other => return Err(format!("`{other}` is not a unit of time; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// A share between 0 and 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("`{text}` is not a share between 0 and 1 (e.g. 0.02 for 2 %)")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if (0.1..=1e9).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a rate from 0.1 messages a second upwards")),
    }
}

fn parse_kind(text: &str) -> Result<pollwatch_model::ReportKind, String> {
    pollwatch_model::ReportKind::parse(text).ok_or_else(|| {
        let kinds: Vec<&str> = pollwatch_model::ReportKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("`{text}` is not a report kind; use one of {}", kinds.join(", "))
    })
}

fn parse_token_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err("a token name is 1 to 64 letters, digits, `-`, `_`, `.` or `@`".into())
    }
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
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 days").unwrap_err().contains("`days` is not a unit of time"));
        assert!(parse_share("1.5").unwrap_err().contains("between 0 and 1"));
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
