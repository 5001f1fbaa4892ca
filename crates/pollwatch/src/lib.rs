//! The `pollwatch` command: its arguments, its subcommands and the process-wide set-up they share.
//!
//! `main.rs` only parses arguments and calls [`run`]; everything a test may want to call lives
//! here.

pub mod cli;
pub mod http;
pub mod mission_dir;
pub mod publish;
pub mod pvt;
pub mod query;
pub mod review;
pub mod serve;
pub mod simulate;
pub mod table;
pub mod telemetry;
pub mod verify;
pub mod worker;

use std::io::Write as _;

use anyhow::Context as _;
use pollwatch_settings::Settings;

use crate::cli::{Cli, Command, ConfigCommand, DlqCommand, MissionCommand, ReportCommand};

/// mimalloc instead of the C library's allocator, for every binary built on this crate: the
/// worker allocates and frees for every message (the delivery, the decoded report, the
/// statement arguments) across threads, and glibc's allocator spent a sixth of the worker's CPU
/// time doing it and kept freed memory in per-thread arenas (`docs/benchmarks.md`). Built with
/// `no_thp` (the workspace's `Cargo.toml`): mimalloc otherwise asks Linux for transparent huge
/// pages, which made the worker's peak RSS 72 MiB instead of 42.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Loads settings, starts telemetry and runs the chosen subcommand.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let loaded = Settings::load(&cli.global.load_options()).context("invalid settings")?;
    telemetry::init(&loaded.settings.telemetry)?;
    tracing::debug!(environment = %loaded.environment, "settings loaded");
    if let Some(answered) = review::run(&loaded.settings, &cli.command) {
        return answered;
    }
    if let Some(answered) = query::run(&loaded.settings, &cli.command) {
        return answered;
    }
    match &cli.command {
        Command::Serve { mission: dir } => {
            let mission = mission_dir::read(&dir.dir)?;
            runtime()?.block_on(serve::run(&loaded.settings, mission, &dir.dir))
        }
        Command::Config { command: ConfigCommand::Show } => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(loaded.to_annotated_toml().as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing settings to standard output")
        }
        Command::Mission { command: MissionCommand::Check { dir } } => {
            let mission = mission_dir::read(dir)?;
            print!("{}", mission_dir::summary(&mission));
            Ok(())
        }
        Command::Mission { command: MissionCommand::Import { dir } } => {
            let mission = mission_dir::read(dir)?;
            runtime()?.block_on(import_mission(&loaded.settings.store.url, &mission))
        }
        Command::Worker { mission: dir } => {
            let mission = mission_dir::read(dir)?;
            runtime()?.block_on(worker::run(&loaded.settings, &mission, dir))
        }
        Command::Publish { mission, outbox, user, input } => {
            let mission = mission_dir::read(mission)?;
            let reports = match input {
                Some(input) => publish::read_input(input)?,
                None => Vec::new(),
            };
            let failed = runtime()?.block_on(publish::run(
                &loaded.settings,
                &mission,
                outbox,
                user.as_deref(),
                &reports,
            ))?;
            anyhow::ensure!(failed == 0, "{failed} reports were not published");
            Ok(())
        }
        Command::Simulate(args) => {
            let mission = mission_dir::read(&args.mission)?;
            runtime()?.block_on(simulate::run(&loaded.settings, &mission, args))
        }
        Command::Verify { expectation, wait } => {
            let matched = runtime()?.block_on(verify::run(&loaded.settings, expectation, *wait))?;
            anyhow::ensure!(matched, "the store does not hold what {} expects", expectation.display());
            Ok(())
        }
        Command::Dlq { command } => runtime()?.block_on(dlq(&loaded.settings, command)),
        Command::Report { command: ReportCommand::Check { mission, sender, files } } => {
            check_reports(mission, sender.as_deref(), files)
        }
        Command::Coverage { .. }
        | Command::Results { .. }
        | Command::Findings { .. }
        | Command::Incidents { .. }
        | Command::Observers { .. }
        | Command::Held { .. }
        | Command::Export { .. }
        | Command::Token { .. }
        | Command::Report { command: ReportCommand::Show { .. } } => unreachable!("answered by query::run"),
        Command::Pvt { command } => pvt::run(&loaded.settings, command),
        Command::Review { .. } | Command::Dispute { .. } | Command::Audit { .. } => {
            unreachable!("answered by review::run")
        }
    }
}

/// The broker's nodes as the settings list them, for publishing.
pub(crate) fn broker_nodes(settings: &Settings) -> std::sync::Arc<pollwatch_publish::Nodes> {
    let nodes = pollwatch_publish::Nodes::new(settings.amqp.url.expose());
    std::sync::Arc::new(nodes.expect("settings give a node at least"))
}

/// A connection to the first of the broker's nodes that answers.
pub(crate) async fn broker_connection(settings: &Settings) -> anyhow::Result<lapin::Connection> {
    let connected = broker_nodes(settings).connect(pollwatch_publish::CONNECT_TIMEOUT).await;
    let (connection, _) =
        connected.with_context(|| format!("connecting to the broker at {}", settings.amqp.url))?;
    Ok(connection)
}

/// `pollwatch dlq …`.
async fn dlq(settings: &Settings, command: &DlqCommand) -> anyhow::Result<()> {
    use pollwatch_ingest::dlq;

    let amqp = &settings.amqp;
    let connection = broker_connection(settings).await?;
    let queue = amqp.dead_letter_queue.as_str();
    // The worker reads the same settings: its letters are the ones its broker user published.
    let worker = pollwatch_ingest::broker_user(amqp.url.first().expose());
    let in_queue = || format!("reading the dead-letter queue `{queue}`");
    match command {
        DlqCommand::Stats => {
            let letters = dlq::list(&connection, queue, &worker).await.with_context(in_queue)?;
            println!("{} dead letters in {queue}", letters.len());
            for (code, count) in dlq::stats(&letters) {
                println!("{count:>8}  {code}");
            }
        }
        DlqCommand::Show { code, limit } => {
            let letters = dlq::list(&connection, queue, &worker).await.with_context(in_queue)?;
            let shown = letters.iter().filter(|l| code.as_ref().is_none_or(|c| *c == l.code));
            for letter in shown.take(*limit) {
                let body = String::from_utf8_lossy(&letter.body);
                let body: String = body.chars().take(300).collect();
                println!("{}  {}", letter.code, letter.detail);
                let origin = match letter.origin {
                    dlq::Origin::Worker => "the worker",
                    dlq::Origin::Broker => "the broker",
                    dlq::Origin::Unverified => "unverified",
                };
                println!(
                    "  dead-lettered by {origin}  routing key {}  message id {}  sender {}",
                    letter.routing_key,
                    letter.message_id.as_deref().unwrap_or("-"),
                    letter.sender.as_deref().unwrap_or("-")
                );
                println!("  {body}");
            }
        }
        DlqCommand::Replay { code } => {
            let replayed = dlq::replay(&connection, queue, &amqp.exchange, code.as_deref(), &worker)
                .await
                .with_context(|| format!("replaying from `{queue}` to `{}`", amqp.exchange))?;
            println!(
                "replayed {} dead letters to {}; {} left in {queue}",
                replayed.moved, amqp.exchange, replayed.kept
            );
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// A runtime for the subcommands that talk to the store or the broker.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

async fn import_mission(
    url: &pollwatch_settings::SecretUrl,
    mission: &pollwatch_model::Mission,
) -> anyhow::Result<()> {
    let store = pollwatch_store::Store::open(url.expose())
        .await
        .with_context(|| format!("opening the store at {url}"))?;
    let summary = store.import_mission(mission).await.context("importing the mission")?;
    store.close().await;
    println!("imported mission {} into {url}", mission.id);
    for (roster, changes) in [
        ("regions", summary.regions),
        ("contests", summary.contests),
        ("candidates and options", summary.choices),
        ("stations", summary.stations),
        ("observers", summary.observers),
    ] {
        println!(
            "  {roster}: {} added, {} updated, {} removed, {} unchanged",
            changes.added, changes.updated, changes.removed, changes.unchanged
        );
    }
    if summary.freed > 0 {
        println!(
            "  {} reports held only for an unknown station or observer are accepted now (by `{}`)",
            summary.freed,
            pollwatch_store::IMPORT_REVIEWER
        );
    }
    Ok(())
}

/// Prints one verdict per file; fails when any report would be rejected.
fn check_reports(
    mission: &std::path::Path,
    sender: Option<&str>,
    files: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let mission = mission_dir::read(mission)?;
    let context = pollwatch_model::Context { mission: &mission, now: chrono::Utc::now(), sender };
    let mut rejected = 0;
    for file in files {
        let payload = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        match pollwatch_model::check(&payload, &context) {
            Err(rejection) => {
                rejected += 1;
                println!("{}: rejected: {rejection}", file.display());
            }
            Ok(checked) if checked.flags.is_empty() => println!("{}: accepted", file.display()),
            Ok(checked) => {
                println!("{}: accepted, held for review:", file.display());
                for flag in &checked.flags {
                    println!("  {flag}");
                }
            }
        }
    }
    anyhow::ensure!(rejected == 0, "{rejected} of {} reports would be rejected", files.len());
    Ok(())
}
