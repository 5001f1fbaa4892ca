//! `pollwatch simulate`: a simulated election day published to the broker, with the expectation
//! file that says what the store must hold afterwards; or, with `--burst N`, N generated reports
//! as fast as the broker confirms them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use pollwatch_model::Mission;
use pollwatch_publish::{Flushed, Message, PublisherConfig, publish_all};
use pollwatch_settings::Settings;
use pollwatch_sim::{Day, Deployment, GroundTruth, Options};

use crate::cli::{Deploy, Senders, SimulateArgs};

/// The longest `--duration`: about twice the day's own span.
const MAX_DURATION: Duration = Duration::from_secs(48 * 3_600);

/// Simulates and publishes the day `args` describe, then writes the expectation file.
pub async fn run(settings: &Settings, mission: &Mission, args: &SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.duration.is_none_or(|d| d <= MAX_DURATION),
        "--duration is at most 48h: the day's clock is compressed, not stretched"
    );
    if let Some(n) = args.burst {
        return burst(settings, mission, n, args.seed, args.window).await;
    }
    let truth_path = args.truth.clone().unwrap_or_else(|| args.mission.join("ground-truth.toml"));
    let text = std::fs::read_to_string(&truth_path).with_context(|| {
        format!("reading the ground truth {} (pass another with --truth FILE)", truth_path.display())
    })?;
    let truth = GroundTruth::parse(&text, mission).with_context(|| format!("in {}", truth_path.display()))?;
    let rules = crate::worker::rules(settings);
    anyhow::ensure!(
        args.senders == Senders::Device || !rules.require_sender_auth,
        "ingest.require_sender_auth is set, so the worker would dead-letter every message without a \
         user_id: simulate with --senders device"
    );
    anyhow::ensure!(
        args.spoofed == 0.0 || args.senders == Senders::Device,
        "--spoofed needs --senders device: a report in another observer's name is told apart by its user_id"
    );
    let options = Options {
        seed: args.seed,
        resends: args.resends,
        out_of_order: args.out_of_order,
        corrections: args.corrections,
        malformed: args.malformed,
        spoofed: args.spoofed,
        miscounts: args.miscounts,
        senders: args.senders == Senders::Device,
        rules,
        deployment: match args.deploy {
            Deploy::Teams => Deployment::Teams,
            Deploy::Pvt => Deployment::Stations(
                crate::pvt::read_sample(&args.mission, mission)?
                    .stations
                    .into_iter()
                    .map(|s| s.station)
                    .collect(),
            ),
        },
    };
    let day = pollwatch_sim::simulate(mission, &truth, &options)?;
    // The worker rejects reports written later than its own clock (timestamp_in_future).
    let latest = day.messages.iter().map(|m| m.at).max();
    if let Some(latest) = latest.filter(|at| *at > chrono::Utc::now() + pollwatch_model::CLOCK_TOLERANCE) {
        anyhow::bail!(
            "mission {}'s election day ({}) is not over yet: its reports would be written until {latest}, \
             and the worker rejects reports from its future (timestamp_in_future); simulate a past election",
            mission.id,
            mission.election_day
        );
    }
    let due = schedule(&day, args.duration, args.rate);
    let messages: Vec<Message> = day.messages.iter().map(|m| m.message.clone()).collect();
    let clock: Vec<String> = day.messages.iter().map(|m| m.at.format("%H:%M").to_string()).collect();

    let bar = ProgressBar::new(messages.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} election day {msg} {eta} left")
            .expect("a valid template"),
    );
    let config = config(settings, args.window);
    let started = Instant::now();
    let progress = |done: u64| {
        bar.set_position(done);
        if let Some(time) = done.checked_sub(1).and_then(|i| clock.get(i as usize)) {
            bar.set_message(time.clone());
        }
    };
    let flushed = publish_all(&config, &messages, due.as_deref(), &progress).await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let flushed = flushed
        .map_err(|e| hint(e.into(), args.senders))
        .with_context(|| format!("publishing to {}", settings.amqp.url))?;
    ensure_taken(&flushed)?;

    let e = &day.expectation;
    let m = &e.messages;
    println!(
        "published {} messages in {:.1} s ({:.0}/s): {} reports ({} late), {} resends, {} corrections, {} malformed, {} spoofed",
        m.total,
        elapsed.as_secs_f64(),
        m.total as f64 / elapsed.as_secs_f64(),
        m.reports,
        m.late,
        m.resends,
        m.corrections,
        m.malformed,
        m.spoofed
    );
    if let Some(parent) = args.expect.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(e).expect("an expectation serialises");
    std::fs::write(&args.expect, json + "\n")
        .with_context(|| format!("writing {}", args.expect.display()))?;
    println!(
        "expected: {} reports, {} revisions, {} held for review, {} dead letters; written to {}",
        e.store.reports,
        e.store.revisions,
        e.store.quarantined,
        e.dead_letters.values().sum::<u64>(),
        args.expect.display()
    );
    println!("check it once the worker has caught up: pollwatch verify {} --wait 60s", args.expect.display());
    Ok(())
}

/// When each message is due after the start: the day's clock compressed into `duration`, or
/// `rate` messages a second; `None` for as fast as the broker confirms.
fn schedule(day: &Day, duration: Option<Duration>, rate: Option<f64>) -> Option<Vec<Duration>> {
    if let Some(rate) = rate {
        return Some((0..day.messages.len()).map(|i| Duration::from_secs_f64(i as f64 / rate)).collect());
    }
    let duration = duration?;
    let (first, last) = (day.messages.first()?.at, day.messages.last()?.at);
    let span = (last - first).num_milliseconds().max(1) as f64;
    Some(
        day.messages
            .iter()
            .map(|m| duration.mul_f64((m.at - first).num_milliseconds() as f64 / span))
            .collect(),
    )
}

fn config(settings: &Settings, window: usize) -> PublisherConfig {
    PublisherConfig {
        nodes: crate::broker_nodes(settings),
        exchange: settings.amqp.exchange.clone(),
        user_id: None,
        window,
    }
}

/// With `--senders device`, a broker that closes the channel most likely refused a `user_id`
/// (lapin reports only the closed channel; the broker's reason is in the log line before).
fn hint(error: anyhow::Error, senders: Senders) -> anyhow::Error {
    if senders == Senders::Device && format!("{error:#}").contains("invalid channel state") {
        error.context(
            "with --senders device the broker user in amqp.url must have the `impersonator` tag \
             (rabbitmqctl set_user_tags USER impersonator), or the broker closes the channel",
        )
    } else {
        error
    }
}

fn ensure_taken(flushed: &Flushed) -> anyhow::Result<()> {
    anyhow::ensure!(
        flushed.unroutable + flushed.refused == 0,
        "the broker did not take every message: {} unroutable (is the worker's queue bound to the \
         exchange? start the worker first), {} refused",
        flushed.unroutable,
        flushed.refused
    );
    Ok(())
}

/// `pollwatch simulate --burst N`: N generated reports published as fast as confirms allow.
async fn burst(
    settings: &Settings,
    mission: &Mission,
    n: usize,
    seed: u64,
    window: usize,
) -> anyhow::Result<()> {
    let mut reports = pollwatch_sim::generate::reports(mission, n, seed);
    // In the order devices would send them.
    reports.sort_by_key(|r| r.submitted_at);
    let messages: Vec<Message> = reports.iter().map(|r| Message::report(r, None)).collect();
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} reports {per_sec} {eta} left")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let flushed = publish_all(&config(settings, window), &messages, None, &|done| bar.set_position(done))
        .await
        .with_context(|| format!("publishing to {}", settings.amqp.url))?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    println!(
        "published {} reports in {:.2} s: {:.0} reports/s confirmed (window {window}); unroutable {}, refused {}",
        flushed.confirmed,
        elapsed.as_secs_f64(),
        flushed.confirmed as f64 / elapsed.as_secs_f64(),
        flushed.unroutable,
        flushed.refused
    );
    ensure_taken(&flushed)
}
