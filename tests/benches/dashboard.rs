//! Dashboard benchmark: what the live event stream costs while a backlog drains, and how fast
//! changes reach the people watching. A measurement, not a test: it prints figures and asserts
//! nothing about speed.
//!
//!     cargo bench -p pollwatch-tests --bench dashboard -- [--reports N] [--clients C]
//!
//! The same backlog (default 200,000 messages: simulated kg-2021 election days with their
//! resends, corrections, late and malformed messages) is drained twice by `pollwatch worker`
//! (the release build, as a process, SQLite), each time into a fresh store: first with nobody
//! watching, then with C (default 200) clients holding `GET /api/v1/events` on the worker's own
//! listener, connected as soon as it is ready. For each drain: the rate (messages over the time
//! from the worker's start to its last message handled) and the worker's peak RSS. For the
//! watched drain, every `change` event every client received, timed from the commit of the
//! revision it names (its `seq`) to its arrival here. The commit's time is taken as the
//! revision's `received_at`, which the worker sets when the message arrives, before its batch
//! commits: the delay is therefore over-stated by up to one batch's linger and commit.
//!
//! The overview page's latency over a million reports is measured by the API benchmark
//! (`--bench api`), which loads `/ui/overview` as it loads every endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pollwatch_ingest::{Config, QueueKind, Rules};
use pollwatch_model::Mission;
use pollwatch_publish::Message;
use pollwatch_store::Store;
use pollwatch_tests::bench::{backlog, peak_rss_mib, preload, until_handled};
use pollwatch_tests::{EventStream, TestBroker, fixtures, spawn_worker, within};
use sqlx::Row as _;

const TOKEN: &str = "pw_dashboard-benchmark-token";

struct Options {
    reports: usize,
    clients: usize,
}

fn options() -> Options {
    let mut options = Options { reports: 200_000, clients: 200 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number =
            || args.next().and_then(|v| v.replace('_', "").parse::<usize>().ok()).expect("a number");
        match arg.as_str() {
            "--reports" => options.reports = number(),
            "--clients" => options.clients = number(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The worker's names for `broker` (as `spawn_worker` sets them) and its default batching.
fn config(broker: &TestBroker) -> Config {
    Config {
        amqp_url: pollwatch_settings::SecretUrl::new(broker.url.clone()).into(),
        exchange: broker.name("reports"),
        queue: broker.name("ingest"),
        dead_letter_exchange: broker.name("dead-letter"),
        dead_letter_queue: broker.name("dead-letters"),
        prefetch: 600,
        queue_kind: QueueKind::Quorum,
        delivery_limit: 100,
        batch_size: 200,
        batch_linger: Duration::from_millis(5),
        rules: Rules { max_body_bytes: 262_144, require_sender_auth: false },
        shutdown_deadline: Duration::from_secs(20),
    }
}

/// One drain.
struct Drain {
    seconds: f64,
    peak_rss_mib: f64,
    /// Per client, the `change` events it received: (seq, when, in Unix microseconds).
    events: Vec<Vec<(i64, i64)>>,
    connected: usize,
    store_url: String,
    _dir: tempfile::TempDir,
}

/// One watcher: reads the event stream until `stop`, noting when each change arrived.
async fn watch(address: std::net::SocketAddr, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut stream = EventStream::open(address, "/api/v1/events", TOKEN, None).await?;
    anyhow::ensure!(stream.status == 200, "the event stream answered {}", stream.status);
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(event) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await else {
            continue;
        };
        let event = event?;
        let at = chrono::Utc::now().timestamp_micros();
        if event.event.as_deref() == Some("change")
            && let Some(seq) = event.id.as_deref().and_then(|id| id.parse().ok())
        {
            seen.push((seq, at));
        }
    }
    Ok(seen)
}

async fn drain(
    broker: &TestBroker,
    mission: &Mission,
    messages: &[Message],
    clients: usize,
) -> anyhow::Result<Drain> {
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let store = Store::open(&store_url).await?;
    store.import_mission(mission).await?;
    store.add_token("benchmark", "viewer", &pollwatch_api::auth::token_hash(TOKEN)).await?;
    store.close().await;
    let config = config(broker);
    preload(broker, &config, messages).await?;

    let started = Instant::now();
    let mut worker = spawn_worker(broker, &store_url, &[]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> =
        (0..clients).map(|_| tokio::spawn(watch(worker.address(), Arc::clone(&stop)))).collect();
    until_handled(&mut worker, messages.len()).await?;
    let seconds = started.elapsed().as_secs_f64();
    // The last commits' events are a poll away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_rss_mib = peak_rss_mib(worker.pid()?).unwrap_or(f64::NAN);
    stop.store(true, Ordering::Relaxed);
    let mut events = Vec::new();
    for watcher in watchers {
        match within(Duration::from_secs(10), "a watcher ending", watcher).await?? {
            Ok(seen) => events.push(seen),
            Err(error) => eprintln!("a watcher failed: {error:#}"),
        }
    }
    let connected = events.len();
    worker.stop().await?;
    Ok(Drain { seconds, peak_rss_mib, events, connected, store_url, _dir: dir })
}

/// When each revision named by an event was received by the worker (Unix microseconds).
async fn received_at(store_url: &str, seqs: &[i64]) -> anyhow::Result<std::collections::HashMap<i64, i64>> {
    let pool = sqlx::SqlitePool::connect(store_url).await?;
    let mut found = std::collections::HashMap::new();
    for seq in seqs {
        let row = sqlx::query("SELECT received_at_us FROM report_revisions WHERE seq = ?")
            .bind(seq)
            .fetch_optional(&pool)
            .await?;
        if let Some(row) = row {
            found.insert(*seq, row.try_get::<i64, _>(0)?);
        }
    }
    pool.close().await;
    Ok(found)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    let mission = fixtures::kg_2021();
    let broker = pollwatch_tests::broker().await?;
    let messages = backlog(&mission, options.reports);
    println!(
        "dashboard benchmark: {} messages (simulated kg-2021 election days) drained by the worker (SQLite), \
         with 0 then {} clients on /api/v1/events\n",
        messages.len(),
        options.clients
    );
    let alone = drain(&broker, &mission, &messages, 0).await?;
    let watched = drain(&broker, &mission, &messages, options.clients).await?;

    let mut seqs: Vec<i64> = watched.events.iter().flatten().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let committed = received_at(&watched.store_url, &seqs).await?;
    let mut delays: Vec<f64> = watched
        .events
        .iter()
        .flatten()
        .filter_map(|(seq, at)| committed.get(seq).map(|c| (at - c) as f64 / 1e3))
        .collect();
    delays.sort_by(f64::total_cmp);
    let per_client: Vec<usize> = watched.events.iter().map(Vec::len).collect();

    let rate = |d: &Drain| messages.len() as f64 / d.seconds;
    println!("| clients | wall time | messages/s | worker peak RSS |");
    println!("|---|---|---|---|");
    for (clients, d) in [(0, &alone), (watched.connected, &watched)] {
        println!("| {clients} | {:.1} s | {:.0} | {:.1} MiB |", d.seconds, rate(d), d.peak_rss_mib);
    }
    println!();
    println!(
        "drain rate with {} clients: {:+.1} % against none; peak RSS {:+.1} MiB",
        watched.connected,
        (rate(&watched) / rate(&alone) - 1.0) * 100.0,
        watched.peak_rss_mib - alone.peak_rss_mib
    );
    println!(
        "events: {} received in all, {}–{} per client; from commit to arrival p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        per_client.iter().min().unwrap_or(&0),
        per_client.iter().max().unwrap_or(&0),
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
