//! Ingest benchmark: how fast a backlog drains, against what the broker can deliver at all.
//! A measurement, not a test: it prints figures and asserts nothing about speed.
//!
//!     cargo bench -p pollwatch-tests --bench ingest -- [--reports N] [--skip-postgres] [--json FILE]
//!         [--prefetch N] [--batch N] [--linger MS]
//!     cargo bench -p pollwatch-tests --bench ingest -- --latency [--rate R] [--seconds D]
//!
//! N messages (default 200,000: simulated election days for `missions/kg-2021`, with their
//! resends, corrections, late and malformed messages) are published into a fresh queue, then
//! drained, each time from a fresh queue, by:
//!   (a) a consumer that stores nothing, with the worker's prefetch and acknowledgement batching:
//!       the broker's ceiling on this machine;
//!   (b) `pollwatch worker` (the release build, as a process) on SQLite;
//!   (c) the same on PostgreSQL (the container harness's server, or POLLWATCH_TEST_DATABASE_URL).
//! For (b) and (c): wall time from the process's start to the last message handled (the mission
//! is imported beforehand), peak RSS (VmHWM) and CPU time of the worker process. For every run,
//! the CPU time the whole machine spent meanwhile (all cores, from /proc/stat): the broker, the
//! database server and the kernel share the same cores, and this says whether they ran out.
//!
//! `--latency`: the worker on SQLite, idle, then R messages a second (default 2,000) for D seconds
//! (default 30); p50, p99 and the maximum of the time from publication (the publisher's
//! `x-pollwatch-published-at` header) to the commit, from the worker's
//! `pollwatch_publish_to_commit_seconds` histogram (quantiles interpolated within its buckets).
//! Then the same messages at the same rate into a consumer that stores nothing (as (a)), timed
//! from publication to delivery, exactly: what the broker alone adds.

use std::io::Write as _;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use pollwatch_ingest::{Config, QueueKind, Rules};
use pollwatch_model::Mission;
use pollwatch_publish::{Message, PublisherConfig, publish_all};
use pollwatch_store::Store;
use pollwatch_tests::bench::{backlog, preload, until_handled};
use pollwatch_tests::{TestBroker, TestWorker, fixtures, spawn_worker};
use serde::Serialize;

/// The worker's defaults (config/default.toml), which the no-op consumer copies; `--prefetch`,
/// `--batch` and `--linger` change both, for the worker through its settings.
const PREFETCH: u16 = 600;
const BATCH: usize = 200;
const LINGER_MS: u64 = 5;

struct Options {
    reports: usize,
    postgres: bool,
    json: Option<String>,
    latency: bool,
    rate: f64,
    seconds: u64,
    prefetch: u16,
    batch: usize,
    linger: Duration,
}

fn options() -> Options {
    let mut options = Options {
        reports: 200_000,
        postgres: true,
        json: None,
        latency: false,
        rate: 2_000.0,
        seconds: 30,
        prefetch: PREFETCH,
        batch: BATCH,
        linger: Duration::from_millis(LINGER_MS),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reports" => {
                options.reports =
                    args.next().and_then(|v| v.replace('_', "").parse().ok()).expect("a number");
            }
            "--skip-postgres" => options.postgres = false,
            "--latency" => options.latency = true,
            "--prefetch" => options.prefetch = args.next().and_then(|v| v.parse().ok()).expect("a prefetch"),
            "--batch" => options.batch = args.next().and_then(|v| v.parse().ok()).expect("a batch size"),
            "--linger" => {
                options.linger =
                    Duration::from_millis(args.next().and_then(|v| v.parse().ok()).expect("milliseconds"));
            }
            "--rate" => options.rate = args.next().and_then(|v| v.parse().ok()).expect("a rate"),
            "--seconds" => {
                options.seconds = args.next().and_then(|v| v.parse().ok()).expect("a number of seconds");
            }
            "--json" => options.json = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// One drain.
#[derive(Debug, Clone, Serialize)]
struct Run {
    consumer: String,
    messages: usize,
    seconds: f64,
    per_second: f64,
    /// Against the no-op consumer's rate.
    ratio: f64,
    peak_rss_mib: Option<f64>,
    cpu_seconds: Option<f64>,
    /// CPU time of the whole machine (every process, every core) during the run.
    machine_cpu_seconds: f64,
    cores: usize,
    /// The worker's batches: how many, their mean size and mean time from the start of the
    /// commit to the acknowledgement (from its /metrics).
    batches: Option<Batches>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Batches {
    count: f64,
    mean_size: f64,
    mean_commit_ms: f64,
}

impl Batches {
    fn from_metrics(metrics: &str) -> Option<Self> {
        let value = |name: &str| {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        let count = value("pollwatch_batch_size_count")?;
        Some(Self {
            count,
            mean_size: value("pollwatch_batch_size_sum")? / count,
            mean_commit_ms: value("pollwatch_commit_seconds_sum")? / count * 1e3,
        })
    }
}

/// The delivery limit the worker declares its queue with (`config/default.toml` under the
/// test environment, as the worker runs here): a queue the bench declares otherwise is one the
/// worker refuses to consume.
fn delivery_limit() -> u32 {
    let options = pollwatch_settings::LoadOptions {
        config_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"),
        environment: Some("test".to_owned()),
        extra_file: None,
        overrides: Vec::new(),
        env_vars: Some(Default::default()),
    };
    pollwatch_settings::Settings::load(&options)
        .expect("the project's settings load")
        .settings
        .ingest
        .delivery_limit
}

fn config(broker: &TestBroker, run: &str, options: &Options) -> Config {
    Config {
        amqp_url: pollwatch_settings::SecretUrl::new(broker.url.clone()).into(),
        exchange: broker.name(&format!("{run}.reports")),
        queue: broker.name(&format!("{run}.ingest")),
        dead_letter_exchange: broker.name(&format!("{run}.dead-letter")),
        dead_letter_queue: broker.name(&format!("{run}.dead-letters")),
        prefetch: options.prefetch,
        queue_kind: QueueKind::Quorum,
        delivery_limit: delivery_limit(),
        batch_size: options.batch,
        batch_linger: options.linger,
        rules: Rules { max_body_bytes: 262_144, require_sender_auth: false },
        shutdown_deadline: Duration::from_secs(20),
    }
}

/// (a): takes every message with the worker's prefetch and acknowledges in batches, as the worker
/// does, storing nothing. Returns the wall time, the machine's CPU time and, for each message
/// with the publisher's timestamp, the milliseconds from its publishing to its delivery here.
async fn drain_without_storing(
    broker: &TestBroker,
    config: &Config,
    n: usize,
) -> anyhow::Result<(Duration, f64, Vec<f64>)> {
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
    let started = Instant::now();
    let machine_before = machine_cpu()?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "noop".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (mut taken, mut unacked, mut last_tag) = (0, 0, 0);
    let mut delays = Vec::new();
    let mut deadline = tokio::time::Instant::now() + config.batch_linger;
    while taken < n {
        tokio::select! {
            delivery = consumer.next() => {
                let delivery = delivery.ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
                if let Some(published_at) = pollwatch_ingest::published_at(&delivery) {
                    delays.push((chrono::Utc::now().timestamp_micros() - published_at) as f64 / 1e3);
                }
                taken += 1;
                unacked += 1;
                last_tag = delivery.delivery_tag;
                if unacked == 1 {
                    deadline = tokio::time::Instant::now() + config.batch_linger;
                }
            }
            () = tokio::time::sleep_until(deadline), if unacked > 0 => {}
        }
        if unacked >= config.batch_size
            || (unacked > 0 && tokio::time::Instant::now() >= deadline)
            || taken == n
        {
            channel.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
            unacked = 0;
        }
    }
    let elapsed = started.elapsed();
    let machine = machine_cpu()? - machine_before;
    let _ = connection.close(200, "drained".into()).await;
    Ok((elapsed, machine, delays))
}

/// `pollwatch worker` (the release build) on `store_url` and `config`'s names and batching, ready.
async fn worker(broker: &TestBroker, config: &Config, store_url: &str) -> anyhow::Result<TestWorker> {
    let settings = [
        ("POLLWATCH__AMQP__EXCHANGE", config.exchange.clone()),
        ("POLLWATCH__AMQP__QUEUE", config.queue.clone()),
        ("POLLWATCH__AMQP__DEAD_LETTER_EXCHANGE", config.dead_letter_exchange.clone()),
        ("POLLWATCH__AMQP__DEAD_LETTER_QUEUE", config.dead_letter_queue.clone()),
        ("POLLWATCH__AMQP__PREFETCH", config.prefetch.to_string()),
        ("POLLWATCH__INGEST__BATCH_SIZE", config.batch_size.to_string()),
        ("POLLWATCH__INGEST__BATCH_LINGER_MS", config.batch_linger.as_millis().to_string()),
    ];
    spawn_worker(broker, store_url, &settings).await
}

/// (b) and (c): `pollwatch worker` on `store_url` until it has handled `n` messages; wall time,
/// peak RSS and CPU time of the process, and the machine's CPU time meanwhile.
async fn drain_with_worker(
    broker: &TestBroker,
    config: &Config,
    store_url: &str,
    mission: &Mission,
    n: usize,
) -> anyhow::Result<(Duration, f64, f64, f64, Option<Batches>)> {
    let store = Store::open(store_url).await?;
    store.import_mission(mission).await?;
    store.close().await;
    let started = Instant::now();
    let machine_before = machine_cpu()?;
    let mut worker = worker(broker, config, store_url).await?;
    let pid = worker.pid()?;
    let metrics = until_handled(&mut worker, n).await?;
    let elapsed = started.elapsed();
    let machine = machine_cpu()? - machine_before;
    let (rss, cpu) = usage(pid)?;
    worker.stop().await?;
    Ok((elapsed, rss, cpu, machine, Batches::from_metrics(&metrics)))
}

/// `--latency`: a steady flow into an idle worker; p50, p99 and the maximum publish-to-commit
/// time in milliseconds.
async fn latency(
    broker: &TestBroker,
    messages: &[Message],
    options: &Options,
) -> anyhow::Result<(f64, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let config = config(broker, "latency", options);
    let mut worker = worker(broker, &config, &store_url).await?;
    publish_paced(broker, &config, messages, options.rate).await?;
    let metrics = until_handled(&mut worker, messages.len()).await?;
    worker.stop().await?;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut max = 0.0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("pollwatch_publish_to_commit_seconds_bucket{le=\"") {
            let (bound, count) = rest.split_once("\"} ").expect("a bucket line");
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse()? };
            buckets.push((bound, count.parse()?));
        } else if let Some(value) = line.strip_prefix("pollwatch_publish_to_commit_max_seconds ") {
            max = value.parse()?;
        }
    }
    Ok((quantile(&buckets, 0.5, max) * 1e3, quantile(&buckets, 0.99, max) * 1e3, max * 1e3))
}

/// Publish to delivery at a consumer that stores nothing (as (a)), paced as in [`latency`]: what
/// the broker alone adds. (p50, p99, max) in milliseconds, exact.
async fn broker_latency(
    broker: &TestBroker,
    messages: &[Message],
    options: &Options,
) -> anyhow::Result<(f64, f64, f64)> {
    let config = config(broker, "latency-noop", options);
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    pollwatch_ingest::topology::declare(&connection, &channel, &config).await?;
    let draining = tokio::spawn({
        let (broker, config, n) = (broker.clone(), config.clone(), messages.len());
        async move { drain_without_storing(&broker, &config, n).await }
    });
    // Publish only once the consumer is there, so that nothing waits in the queue for it.
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    while channel
        .queue_declare(config.queue.as_str().into(), passive, FieldTable::default())
        .await?
        .consumer_count()
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publish_paced(broker, &config, messages, options.rate).await?;
    let (_, _, mut delays) = draining.await??;
    let _ = connection.close(200, "measured".into()).await;
    anyhow::ensure!(
        delays.len() == messages.len(),
        "{} of {} messages had a timestamp",
        delays.len(),
        messages.len()
    );
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays[((q * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1];
    Ok((at(0.5), at(0.99), at(1.0)))
}

/// Publishes `messages` at `rate` a second, from the start.
async fn publish_paced(
    broker: &TestBroker,
    config: &Config,
    messages: &[Message],
    rate: f64,
) -> anyhow::Result<()> {
    let due: Vec<Duration> = (0..messages.len()).map(|i| Duration::from_secs_f64(i as f64 / rate)).collect();
    let publisher = PublisherConfig {
        nodes: broker.nodes(),
        exchange: config.exchange.clone(),
        user_id: None,
        window: 1_000,
    };
    publish_all(&publisher, messages, Some(&due), &|_| {}).await?;
    Ok(())
}

/// The `q` quantile of a cumulative histogram, interpolated linearly within its bucket (the
/// last, unbounded bucket ends at `max`, and no quantile is above `max`).
fn quantile(buckets: &[(f64, f64)], q: f64, max: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            let upper = bound.min(max);
            let share =
                if cumulative > previous.1 { (rank - previous.1) / (cumulative - previous.1) } else { 1.0 };
            return previous.0 + (upper - previous.0) * share;
        }
        previous = (bound, cumulative);
    }
    max
}

/// Peak RSS (MiB) and CPU time (seconds, user and system) of a process, from /proc.
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or_default();
    Ok((hwm / 1024.0, (ticks(11) + ticks(12)) / 100.0))
}

/// CPU time the machine has spent so far, all cores, in seconds: every field of /proc/stat's
/// `cpu` line but idle and iowait (in clock ticks, 100 a second).
fn machine_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().find(|l| l.starts_with("cpu ")).ok_or_else(|| anyhow::anyhow!("no cpu line"))?;
    let ticks: Vec<f64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let busy: f64 = ticks.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Ok(busy / 100.0)
}

fn run(
    consumer: &str,
    n: usize,
    elapsed: Duration,
    ceiling: Option<f64>,
    usage: Option<(f64, f64)>,
    machine_cpu_seconds: f64,
    batches: Option<Batches>,
) -> Run {
    let per_second = n as f64 / elapsed.as_secs_f64();
    Run {
        consumer: consumer.to_owned(),
        messages: n,
        seconds: elapsed.as_secs_f64(),
        per_second,
        ratio: ceiling.map_or(1.0, |c| per_second / c),
        peak_rss_mib: usage.map(|u| u.0),
        cpu_seconds: usage.map(|u| u.1),
        machine_cpu_seconds,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        batches,
    }
}

fn print(run: &Run) {
    let optional = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
    // Of the CPU time the machine's cores could have given during the run, how much was used.
    let busy = run.machine_cpu_seconds / (run.seconds * run.cores as f64) * 100.0;
    println!(
        "| {} | {} | {:.2} s | {:.0} | {:.2} | {} | {} | {busy:.0} % |",
        run.consumer,
        run.messages,
        run.seconds,
        run.per_second,
        run.ratio,
        optional(run.peak_rss_mib, " MiB"),
        optional(run.cpu_seconds, " s")
    );
    let _ = std::io::stdout().flush();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    let mission = fixtures::kg_2021();
    let broker = pollwatch_tests::broker().await?;
    if options.latency {
        let messages = backlog(&mission, (options.rate * options.seconds as f64) as usize);
        let (p50, p99, max) = latency(&broker, &messages, &options).await?;
        println!(
            "latency: {} messages at {} a second into an idle worker (SQLite): publish to commit p50 {p50:.1} ms, \
             p99 {p99:.1} ms, max {max:.1} ms",
            messages.len(),
            options.rate
        );
        // The broker writes what went through its queue to its segment files for a while after;
        // let that settle before the second run.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (p50, p99, max) = broker_latency(&broker, &messages, &options).await?;
        println!(
            "latency: {} messages at {} a second into a consumer that stores nothing: publish to delivery \
             p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            messages.len(),
            options.rate
        );
        return Ok(());
    }
    let messages = backlog(&mission, options.reports);
    println!(
        "ingest benchmark: {} messages (simulated kg-2021 election days), prefetch {}, batches of {}, \
         linger {} ms\n",
        messages.len(),
        options.prefetch,
        options.batch,
        options.linger.as_millis()
    );
    println!(
        "| consumer | messages | wall time | messages/s | ratio to (a) | worker peak RSS | worker CPU | machine busy |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut runs = Vec::new();

    let a = config(&broker, "a", &options);
    preload(&broker, &a, &messages).await?;
    let (elapsed, machine, _) = drain_without_storing(&broker, &a, messages.len()).await?;
    runs.push(run("(a) no-op consumer", messages.len(), elapsed, None, None, machine, None));
    print(runs.last().expect("a run"));
    let ceiling = runs[0].per_second;

    let dir = tempfile::tempdir()?;
    let b = config(&broker, "b", &options);
    preload(&broker, &b, &messages).await?;
    let sqlite = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let (elapsed, rss, cpu, machine, batches) =
        drain_with_worker(&broker, &b, &sqlite, &mission, messages.len()).await?;
    let usage = Some((rss, cpu));
    runs.push(run("(b) worker, SQLite", messages.len(), elapsed, Some(ceiling), usage, machine, batches));
    print(runs.last().expect("a run"));

    if options.postgres {
        let database = pollwatch_tests::database().await?;
        let c = config(&broker, "c", &options);
        preload(&broker, &c, &messages).await?;
        let (elapsed, rss, cpu, machine, batches) =
            drain_with_worker(&broker, &c, &database.url, &mission, messages.len()).await?;
        let usage = Some((rss, cpu));
        let c =
            run("(c) worker, PostgreSQL", messages.len(), elapsed, Some(ceiling), usage, machine, batches);
        runs.push(c);
        print(runs.last().expect("a run"));
    }

    println!();
    for run in &runs {
        if let Some(b) = run.batches {
            println!(
                "{}: {:.0} batches, {:.1} deliveries each on average, {:.1} ms each from commit to ack",
                run.consumer, b.count, b.mean_size, b.mean_commit_ms
            );
        }
    }
    let json = serde_json::to_string_pretty(&runs)?;
    println!("\n{json}");
    if let Some(path) = options.json {
        std::fs::write(&path, json + "\n")?;
    }
    Ok(())
}
