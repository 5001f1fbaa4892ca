//! `pollwatch publish`: reports from a file (or standard input) through a device outbox to the
//! broker, with a progress bar on long input and a summary.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use pollwatch_model::Mission;
use pollwatch_publish::{Outbox, PublisherConfig, flush_with_progress};
use pollwatch_settings::Settings;

/// The reports in `input`: one JSON report, a JSON array of reports, or one report per line.
/// Each is returned as the bytes to send.
pub fn read_input(input: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut text = String::new();
    if input.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading reports from standard input")?;
    } else {
        text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let reports: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .with_context(|| format!("{} is not a JSON array", input.display()))?;
        return Ok(reports.iter().map(|r| serde_json::to_vec(r).expect("a JSON value serialises")).collect());
    }
    // A single report spread over several lines, or JSON lines.
    if serde_json::from_str::<serde_json::Value>(trimmed).is_ok_and(|v| v.is_object()) {
        return Ok(vec![trimmed.trim_end().as_bytes().to_vec()]);
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect())
}

/// Queues the reports (refusing the ones the model refuses), flushes the outbox and prints a
/// summary; returns how many reports did not reach the broker.
pub async fn run(
    settings: &Settings,
    mission: &Mission,
    outbox_path: &Path,
    user: Option<&str>,
    reports: &[Vec<u8>],
) -> anyhow::Result<u64> {
    if let Some(parent) = outbox_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let outbox =
        Outbox::open(outbox_path).await.with_context(|| format!("opening {}", outbox_path.display()))?;
    let mut rejected = 0u64;
    for (i, report) in reports.iter().enumerate() {
        if let Err(rejection) = outbox.enqueue(report, mission, user).await? {
            rejected += 1;
            eprintln!("report {}: rejected: {rejection}", i + 1);
        }
    }
    let waiting = outbox.waiting().await?;
    let bar = ProgressBar::new(waiting);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} reports {per_sec} {eta} left")
            .expect("a valid template"),
    );
    let config = PublisherConfig {
        nodes: crate::broker_nodes(settings),
        exchange: settings.amqp.exchange.clone(),
        user_id: user.map(str::to_owned),
        window: 1_000,
    };
    let flushed = flush_with_progress(&config, &outbox, &|done| bar.set_position(done)).await;
    bar.finish_and_clear();
    let left = outbox.waiting().await?;
    outbox.close().await;
    let flushed = flushed.with_context(|| {
        format!(
            "publishing to {}; {left} reports stay in {} for the next run",
            settings.amqp.url,
            outbox_path.display()
        )
    })?;
    println!(
        "published {}, rejected here {rejected}, unroutable {}, refused by the broker {}; {left} waiting in {}",
        flushed.confirmed,
        flushed.unroutable,
        flushed.refused,
        outbox_path.display()
    );
    Ok(rejected + flushed.unroutable + flushed.refused)
}
