//! The fault-injection suite, each fault while reports flow:
//! - the worker killed, and the broker restarted;
//! - on a 3-node cluster: its leading node killed or partitioned; three workers killed,
//!   restarted in turn, or their PostgreSQL restarted;
//! - PostgreSQL stopped;
//! - hostile payloads.
//!
//! Each ends with the store checked against what was published, and writes one summary line
//! (published, stored, dead-lettered, duplicates, lost) straight to standard error, so that it
//! shows in CI's log.
//!
//! `cargo test` runs the reduced suite (3 kills, 1 broker restart, 5,000 reports through a
//! cluster node's kill and a 10 s partition, PostgreSQL down 10 s, 1,000 hostile payloads);
//! `POLLWATCH_FAULTS=full` runs the full one (20 kills while 100,000 reports flow, 3 restarts,
//! 100,000 reports and 30 s through the cluster, 30 s, 10,000), which README.md gives the
//! command for.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use pollwatch_model::{Mission, Report, wire};
use pollwatch_publish::{Message, Nodes, Outbox, PublisherConfig, publish_all};
use pollwatch_store::{ReportFilter, Store};
use pollwatch_tests::{
    DedicatedBroker, DedicatedDatabase, TestBroker, TestCluster, eventually, fixtures, metric, metric_total,
    pause, spawn_worker, throughout, until_dead_letters, within,
};

/// How big the suite runs.
#[derive(Debug, Clone, Copy)]
struct Scale {
    kills: usize,
    killed_reports: usize,
    broker_restarts: usize,
    restart_reports: usize,
    store_down: Duration,
    store_reports: usize,
    hostile: usize,
    /// Reports devices send while something happens to a cluster's node.
    cluster_reports: usize,
    /// How long a node is cut off from the cluster.
    partition: Duration,
}

fn scale() -> Scale {
    if std::env::var("POLLWATCH_FAULTS").is_ok_and(|v| v == "full") {
        Scale {
            kills: 20,
            killed_reports: 100_000,
            broker_restarts: 3,
            restart_reports: 20_000,
            store_down: Duration::from_secs(30),
            store_reports: 20_000,
            hostile: 10_000,
            cluster_reports: 100_000,
            partition: Duration::from_secs(30),
        }
    } else {
        Scale {
            kills: 3,
            killed_reports: 10_000,
            broker_restarts: 1,
            restart_reports: 3_000,
            store_down: Duration::from_secs(10),
            store_reports: 5_000,
            hostile: 1_000,
            cluster_reports: 5_000,
            partition: Duration::from_secs(10),
        }
    }
}

/// Generous: every step of these scenarios is bounded, but some move 100,000 reports through a
/// debug build.
const STEP: Duration = Duration::from_secs(600);

/// The stream devices send: `n` first revisions, a correction (revision 2) of every 20th, and a
/// resend of every 50th, corrections and resends shortly after their original.
fn stream(mission: &Mission, n: usize, seed: u64) -> Vec<Report> {
    let mut out = Vec::with_capacity(n + n / 20 + n / 50);
    for (i, report) in fixtures::reports(mission, n, seed).into_iter().enumerate() {
        out.push(report.clone());
        if i % 20 == 7 {
            let mut corrected = report.clone();
            corrected.revision = 2;
            corrected.submitted_at += chrono::Duration::minutes(3);
            out.push(corrected);
        }
        if i % 50 == 11 {
            out.push(report);
        }
    }
    out
}

/// What a scenario published: per report id, every revision and the highest.
#[derive(Debug, Default)]
struct Published {
    messages: usize,
    revisions: BTreeMap<String, Vec<i64>>,
}

impl Published {
    fn of(reports: &[Report]) -> Self {
        let mut published = Self { messages: reports.len(), ..Self::default() };
        for report in reports {
            let revisions = published.revisions.entry(report.report_id.to_string()).or_default();
            if !revisions.contains(&i64::from(report.revision)) {
                revisions.push(i64::from(report.revision));
            }
        }
        published
    }

    fn unique(&self) -> usize {
        self.revisions.values().map(Vec::len).sum()
    }
}

/// The store against what was published.
#[derive(Debug)]
struct Audit {
    stored: usize,
    /// Revisions in the audit trail more than once, and current rows beyond one per report.
    duplicates: usize,
    /// Published revisions missing from the audit trail, and reports whose current revision is
    /// not the highest published.
    lost: usize,
}

async fn audit(store: &Store, mission: &str, published: &Published) -> anyhow::Result<Audit> {
    let mut trail: HashMap<(String, i64), usize> = HashMap::new();
    let mut export = std::pin::pin!(store.export());
    while let Some(record) = export.next().await {
        let record = record?;
        *trail.entry((record.report_id, record.revision)).or_default() += 1;
    }
    let mut current: HashMap<String, Vec<i64>> = HashMap::new();
    let mut after = None;
    loop {
        let page = store.list_reports(mission, &ReportFilter::default(), after, 1_000).await?;
        for report in page.reports {
            current.entry(report.report_id).or_default().push(report.revision);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let duplicates = trail.values().map(|n| n - 1).sum::<usize>()
        + current.values().map(|revisions| revisions.len() - 1).sum::<usize>();
    let mut lost = 0;
    for (id, revisions) in &published.revisions {
        lost += revisions.iter().filter(|r| !trail.contains_key(&(id.clone(), **r))).count();
        let highest = revisions.iter().max().copied();
        if current.get(id).and_then(|c| c.first().copied()) != highest {
            lost += 1;
        }
    }
    Ok(Audit { stored: trail.len(), duplicates, lost })
}

/// One summary line, past the test harness's capture.
fn summary(scenario: &str, published: &Published, audit: &Audit, dead_lettered: usize, more: &str) {
    let line = format!(
        "faults: {scenario}: published {} messages ({} unique revisions of {} reports), stored {}, \
         dead-lettered {dead_lettered}, duplicates {}, lost {}{more}\n",
        published.messages,
        published.unique(),
        published.revisions.len(),
        audit.stored,
        audit.duplicates,
        audit.lost
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Messages ready in `queue` (not counting those delivered and not yet acknowledged).
async fn ready(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    Ok(channel.queue_declare(queue.into(), passive, FieldTable::default()).await?.message_count())
}

/// Waits until the store holds `revisions` revisions and the count has stayed put for a second,
/// or until the step's deadline has passed (then returns all the same, for the audit to say what
/// is missing).
pub(crate) async fn until_settled(store: &Store, revisions: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + STEP;
    let mut last = (-1, tokio::time::Instant::now());
    eventually(STEP + Duration::from_secs(60), "the store settling", async || {
        let now = store.totals().await?.revisions;
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        }
        let settled = now as usize >= revisions && last.1.elapsed() >= Duration::from_secs(1);
        Ok(settled || tokio::time::Instant::now() >= deadline)
    })
    .await
}

fn publisher(broker: &TestBroker) -> PublisherConfig {
    PublisherConfig { nodes: broker.nodes(), exchange: broker.name("reports"), user_id: None, window: 500 }
}

/// The worker SIGKILLed at random moments while reports flow, started again each time.
#[tokio::test]
async fn the_worker_killed_again_and_again_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let scale = scale();
    let broker = pollwatch_tests::broker().await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let mission = fixtures::kg_2021();
    let reports = stream(&mission, scale.killed_reports, 71);
    let published = Published::of(&reports);
    let messages: Vec<Message> = reports.iter().map(|r| Message::report(r, None)).collect();

    let mut worker = spawn_worker(&broker, &store_url, &[]).await?;
    // The flow lasts about as long as the kills: one a second on average.
    let span = Duration::from_secs(scale.kills as u64);
    let due: Vec<Duration> =
        (0..messages.len()).map(|i| span.mul_f64(i as f64 / messages.len() as f64)).collect();
    let config = publisher(&broker);
    let flow = tokio::spawn(async move { publish_all(&config, &messages, Some(&due), &|_| {}).await });
    let mut rng = fixtures::Rng::new(72);
    for _ in 0..scale.kills {
        pause(Duration::from_millis(300 + rng.below(1_400))).await;
        worker.kill_and_start_again().await?;
    }
    let flushed = within(STEP, "publishing", flow).await???;
    assert_eq!((flushed.confirmed as usize, flushed.unroutable, flushed.refused), (published.messages, 0, 0));

    let store = Store::open(&store_url).await?;
    until_settled(&store, published.unique()).await?;
    worker.stop().await?;
    let audit = audit(&store, &mission.id, &published).await?;
    summary(&format!("worker SIGKILLed {} times", scale.kills), &published, &audit, 0, "");
    assert_eq!((audit.stored, audit.duplicates, audit.lost), (published.unique(), 0, 0));
    Ok(())
}

/// The broker restarted while devices publish through their outboxes; the worker rides through
/// every restart without being restarted itself.
#[tokio::test]
async fn broker_restarts_mid_flow_lose_and_double_nothing() -> anyhow::Result<()> {
    let scale = scale();
    let dedicated = DedicatedBroker::start().await?;
    let broker = &dedicated.broker;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let mission = fixtures::kg_2021();
    let reports = stream(&mission, scale.restart_reports, 73);
    let published = Published::of(&reports);
    let outbox = Outbox::open(&dir.path().join("outbox.db")).await?;
    for report in &reports {
        outbox
            .enqueue(&serde_json::to_vec(report)?, &mission, None)
            .await?
            .map_err(|r| anyhow::anyhow!("{r}"))?;
    }

    let mut worker = spawn_worker(broker, &store_url, &[]).await?;
    // The device: flushes its outbox, and after a failure (the broker gone) tries again.
    let config = publisher(broker);
    let device = tokio::spawn(async move {
        let mut sent = 0;
        while outbox.waiting().await? > 0 {
            match pollwatch_publish::flush(&config, &outbox).await {
                Ok(flushed) => sent += flushed.confirmed,
                Err(_) => pause(Duration::from_millis(500)).await,
            }
        }
        anyhow::Ok(sent)
    });
    let store = Store::open(&store_url).await?;
    for restart in 0..scale.broker_restarts {
        // Mid-flow: once the store has some of what is still coming.
        let share = published.unique() * (restart + 1) / (scale.broker_restarts + 2);
        eventually(STEP, "reports reaching the store", async || {
            Ok(store.totals().await?.revisions as usize >= share)
        })
        .await?;
        dedicated.restart(Duration::from_secs(2)).await?;
    }
    within(STEP, "the device's outbox emptying", device).await???;
    until_settled(&store, published.unique()).await?;
    assert!(worker.is_running()?, "the worker stayed up through every restart");
    worker.stop().await?;
    let audit = audit(&store, &mission.id, &published).await?;
    summary(
        &format!("broker restarted {} times", scale.broker_restarts),
        &published,
        &audit,
        0,
        ", worker never restarted",
    );
    assert_eq!((audit.stored, audit.duplicates, audit.lost), (published.unique(), 0, 0));
    Ok(())
}

/// A 3-node RabbitMQ cluster: the node whose member leads the ingest queue SIGKILLed while
/// devices publish through their outboxes to the three nodes' URLs, and started again once the
/// rest is stored without it. The worker, given the three URLs too, rides through it.
#[tokio::test]
async fn the_node_leading_the_ingest_queue_killed_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let scenario = "the node leading the ingest queue SIGKILLed, the rest stored without it, then back";
    through_a_cluster(scenario, 75, Workers::One, async |fleet, all_stored| {
        let leader = fleet.cluster.leader(&fleet.queue).await?;
        fleet.cluster.kill(leader).await?;
        // Two nodes of three take the rest of the flow.
        all_stored.await?;
        fleet.cluster.start_again(leader).await?;
        Ok(format!("node {} of 3", leader + 1))
    })
    .await
}

/// The same, the leading node cut off from the other two (and from the host) for a while, then
/// joined again: it pauses (`pause_minority`) and its clients move to the majority.
#[tokio::test]
async fn the_node_leading_the_ingest_queue_partitioned_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let cut = scale().partition;
    let scenario = format!(
        "the node leading the ingest queue partitioned for {} s, the rest stored without it, then healed",
        cut.as_secs()
    );
    through_a_cluster(&scenario, 76, Workers::One, async |fleet, all_stored| {
        let leader = fleet.cluster.leader(&fleet.queue).await?;
        let since = tokio::time::Instant::now();
        fleet.cluster.disconnect(leader).await?;
        // The majority takes the rest of the flow; the cut lasts its time all the same.
        all_stored.await?;
        pause(cut.saturating_sub(since.elapsed())).await;
        fleet.cluster.reconnect(leader).await?;
        fleet.cluster.until_running(3).await?;
        Ok(format!("node {} of 3", leader + 1))
    })
    .await
}

/// Three workers on one PostgreSQL store, each given the cluster's nodes: one of them SIGKILLed
/// five times at random moments, started again each time.
#[tokio::test]
async fn one_of_three_workers_killed_on_a_cluster_loses_and_doubles_nothing() -> anyhow::Result<()> {
    through_a_cluster(
        "one of three workers SIGKILLed 5 times",
        77,
        Workers::ThreeOnPostgres,
        async |fleet, all_stored| {
            let mut rng = fixtures::Rng::new(78);
            for _ in 0..5 {
                pause(Duration::from_millis(300 + rng.below(1_400))).await;
                fleet.workers[1].kill_and_start_again().await?;
            }
            all_stored.await?;
            Ok("three workers on PostgreSQL".to_owned())
        },
    )
    .await
}

/// The same three, restarted one at a time as a deploy does: SIGTERM (each exits 0 once its
/// batch is committed and acknowledged), start, ready, then the next.
#[tokio::test]
async fn three_workers_restarted_in_turn_on_a_cluster_lose_and_double_nothing() -> anyhow::Result<()> {
    through_a_cluster(
        "a rolling restart of three workers",
        79,
        Workers::ThreeOnPostgres,
        async |fleet, all_stored| {
            for worker in &mut fleet.workers {
                worker.restart().await?;
            }
            all_stored.await?;
            Ok("three workers on PostgreSQL, one at a time".to_owned())
        },
    )
    .await
}

/// The same three, their PostgreSQL restarted once.
#[tokio::test]
async fn postgres_restarted_under_three_workers_on_a_cluster_loses_and_doubles_nothing() -> anyhow::Result<()>
{
    through_a_cluster(
        "PostgreSQL restarted under three workers",
        80,
        Workers::ThreeOnPostgres,
        async |fleet, all_stored| {
            let database = fleet.database.as_ref().context("a PostgreSQL of the scenario's own")?;
            database.stop().await?;
            pause(Duration::from_secs(2)).await;
            database.start_again().await?;
            all_stored.await?;
            Ok("three workers on PostgreSQL".to_owned())
        },
    )
    .await
}

/// Which workers a cluster scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workers {
    /// One, on SQLite.
    One,
    /// Three, on one PostgreSQL of the scenario's own.
    ThreeOnPostgres,
}

/// What a cluster scenario's fault acts on.
struct Fleet {
    cluster: TestCluster,
    /// The ingest queue's name.
    queue: String,
    workers: Vec<pollwatch_tests::TestWorker>,
    database: Option<DedicatedDatabase>,
}

/// Devices publishing through their outboxes to a 3-node cluster, and `workers` given the three
/// nodes' URLs, while `fault` (once a quarter of the reports is stored) does something to the
/// cluster, the workers or the store; then the store is checked against what was published.
/// `fault` is given a wait for every report to be stored, and says what it did.
async fn through_a_cluster(
    scenario: &str,
    seed: u64,
    workers: Workers,
    fault: impl AsyncFnOnce(&mut Fleet, LocalBoxFuture<'static, anyhow::Result<()>>) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let scale = scale();
    let cluster = TestCluster::start().await?;
    let broker = cluster.broker(0);
    let dir = tempfile::tempdir()?;
    let (database, store_url) = match workers {
        Workers::One => (None, format!("sqlite://{}", dir.path().join("pollwatch.db").display())),
        Workers::ThreeOnPostgres => {
            let database = DedicatedDatabase::start().await?;
            let url = database.url.clone();
            (Some(database), url)
        }
    };
    let mission = fixtures::kg_2021();
    let reports = stream(&mission, scale.cluster_reports, seed);
    let published = Published::of(&reports);
    let outbox = Outbox::open(&dir.path().join("outbox.db")).await?;

    let nodes = [("POLLWATCH__AMQP__URL", cluster.urls().join(","))];
    let mut started = Vec::new();
    for _ in 0..if workers == Workers::One { 1 } else { 3 } {
        started.push(spawn_worker(&broker, &store_url, &nodes).await?);
    }
    let config = PublisherConfig {
        nodes: Arc::new(Nodes::new(cluster.urls()).context("three nodes")?),
        exchange: broker.name("reports"),
        user_id: None,
        window: 500,
    };
    // The devices: reports written a hundred at a time, some 1,000 a second (slower than the
    // workers store them, so that the fault comes while they still publish), every flush
    // sending what waits, and after a failure (their node gone) trying again.
    let to_write = reports.clone();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writing = Arc::clone(&written);
    let device = tokio::spawn(async move {
        let mut chunks = to_write.chunks(100);
        let mut failed = 0;
        loop {
            if let Some(chunk) = chunks.next() {
                for report in chunk {
                    let queued = outbox.enqueue(&serde_json::to_vec(report)?, &mission, None).await?;
                    queued.map_err(|r| anyhow::anyhow!("{r}"))?;
                }
                writing.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            } else if outbox.waiting().await? == 0 {
                return anyhow::Ok(failed);
            }
            if pollwatch_publish::flush(&config, &outbox).await.is_err() {
                failed += 1;
                pause(Duration::from_millis(500)).await;
            }
            pause(Duration::from_millis(100)).await;
        }
    });
    let store = Store::open(&store_url).await?;
    let quarter = published.unique() / 4;
    eventually(STEP, "reports reaching the store", async || {
        Ok(store.totals().await?.revisions as usize >= quarter)
    })
    .await?;
    let (unique, watched) = (published.unique(), store.clone());
    let all_stored = async move {
        eventually(STEP, "every report stored", async || {
            Ok(watched.totals().await?.revisions as usize >= unique)
        })
        .await
    };
    let mut fleet = Fleet { cluster, queue: broker.name("ingest"), workers: started, database };
    let when = written.load(std::sync::atomic::Ordering::Relaxed);
    let done = fault(&mut fleet, Box::pin(all_stored)).await?;
    let failed = within(STEP, "the devices' outboxes emptying", device).await???;
    until_settled(&store, published.unique()).await?;
    let n = fleet.workers.len();
    for mut worker in fleet.workers {
        assert!(worker.is_running()?, "a worker is up at the end");
        worker.stop().await?;
    }
    let audit = audit(&store, "kg-2021", &published).await?;
    let more = format!(
        ", {done}, the devices had written {when} of {} messages when it came, {failed} flushes failed and were \
         tried again, {n} worker(s) stopped cleanly",
        reports.len()
    );
    summary(&format!("cluster: {scenario}"), &published, &audit, 0, &more);
    assert_eq!((audit.stored, audit.duplicates, audit.lost), (published.unique(), 0, 0));
    Ok(())
}

/// PostgreSQL stopped mid-flow: the worker acknowledges nothing while it is down, and once it is
/// back everything is stored once.
#[tokio::test]
async fn postgres_stopped_mid_flow_acks_nothing_and_loses_nothing() -> anyhow::Result<()> {
    let scale = scale();
    let broker = pollwatch_tests::broker().await?;
    let database = DedicatedDatabase::start().await?;
    let mission = fixtures::kg_2021();
    let reports = stream(&mission, scale.store_reports, 74);
    let published = Published::of(&reports);
    let messages: Vec<Message> = reports.iter().map(|r| Message::report(r, None)).collect();

    let worker = spawn_worker(&broker, &database.url, &[]).await?;
    let flushed =
        within(STEP, "publishing", publish_all(&publisher(&broker), &messages, None, &|_| {})).await??;
    assert_eq!((flushed.confirmed as usize, flushed.unroutable, flushed.refused), (published.messages, 0, 0));
    let store = Store::open(&database.url).await?;
    eventually(STEP, "a fifth of the reports stored", async || {
        Ok(store.totals().await?.revisions as usize >= published.unique() / 5)
    })
    .await?;

    const UNAVAILABLE: &str = "the store is unavailable";
    let failed_before = worker.logged(UNAVAILABLE);
    database.stop().await?;
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    let queue = broker.name("ingest");
    // A commit that finished as the server went down is acknowledged just after; from then on,
    // an acknowledgement would free the prefetch and take more from the queue. So the queue is
    // measured once a commit has failed (the worker logs it: nothing can be committed after
    // that) and everything committed is acknowledged.
    eventually(Duration::from_secs(60), "the worker holding its batch for the store", async || {
        if worker.logged(UNAVAILABLE) == failed_before {
            return Ok(false);
        }
        let metrics = worker.metrics().await?;
        let acknowledged = metric(&metrics, "pollwatch_deliveries_received_total")
            - metric(&metrics, "pollwatch_deliveries_in_flight");
        Ok(acknowledged == metric_total(&metrics, "pollwatch_reports_total"))
    })
    .await?;
    let at_stop = ready(&channel, &queue).await?;
    let mut least = at_stop;
    let window = scale.store_down.saturating_sub(Duration::from_secs(1));
    throughout(window, Duration::from_millis(250), async || {
        least = least.min(ready(&channel, &queue).await?);
        Ok(())
    })
    .await?;
    database.start_again().await?;
    assert!(at_stop > 0, "the flow was still going when the server stopped");
    assert_eq!(least, at_stop, "nothing was taken from the queue while PostgreSQL was down");

    until_settled(&store, published.unique()).await?;
    worker.stop().await?;
    let audit = audit(&store, &mission.id, &published).await?;
    let more = format!(", acked while down {}", at_stop - least);
    summary(
        &format!("PostgreSQL stopped for {} s", scale.store_down.as_secs()),
        &published,
        &audit,
        0,
        &more,
    );
    assert_eq!((audit.stored, audit.duplicates, audit.lost), (published.unique(), 0, 0));
    Ok(())
}

/// Publishes `messages` (routing key, body, properties) to `exchange` as `mandatory`, with at most
/// 500 unconfirmed at a time; fails if the broker refuses one.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    messages: impl IntoIterator<Item = (String, Vec<u8>, BasicProperties)>,
) -> anyhow::Result<()> {
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let mut confirms = Vec::new();
    for (key, body, properties) in messages {
        confirms.push(
            channel.basic_publish(exchange.into(), key.as_str().into(), options, &body, properties).await?,
        );
        if confirms.len() >= 500 {
            for confirm in confirms.drain(..) {
                anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
            }
        }
    }
    for confirm in confirms {
        anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
    }
    Ok(())
}

/// One hostile message: its body, content type, content encoding and user_id.
struct Hostile {
    body: Vec<u8>,
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    user_id: Option<String>,
}

/// The `k`-th hostile message, built from a valid `report` sent from `device`.
fn hostile(k: usize, report: &Report, device: &str, spoofed: &str, rng: &mut fixtures::Rng) -> Hostile {
    let json = serde_json::to_vec(report).expect("a report serialises");
    let from = |body: Vec<u8>| Hostile {
        body,
        content_type: Some(wire::JSON),
        content_encoding: None,
        user_id: Some(device.to_owned()),
    };
    let edit = |change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut value = serde_json::to_value(report).expect("a report serialises");
        change(value.as_object_mut().expect("an object"));
        serde_json::to_vec(&value).expect("JSON serialises")
    };
    match k % 12 {
        0 => from((0..1 + rng.below(2_000)).map(|_| rng.next_u64() as u8).collect()),
        1 => from(json[..json.len() / 3].to_vec()),
        2 => {
            let mut body = json;
            let at = body.len() / 2;
            body[at] = 0xC3;
            body[at + 1] = 0x28;
            from(body)
        }
        // Nesting far past any parser's recursion limit.
        3 => from(b"[".repeat(100_000)),
        // A string longer than the body limit, and one within it but past its field's limit.
        4 => from(edit(&|r| {
            r.insert("observer".into(), "x".repeat(300_000).into());
        })),
        5 => from(edit(&|r| {
            r.insert("kind".into(), "incident".into());
            r.insert(
                "body".into(),
                serde_json::json!({"category": "other", "severity": "low", "description": "y".repeat(100_000),
                    "occurred_at": "2021-01-10T10:00:00+06:00"}),
            );
        })),
        6 => from(edit(&|r| {
            r.insert("revision".into(), "two".into());
            r.insert("answers".into(), serde_json::json!([1, 2, 3]));
        })),
        7 => Hostile { content_type: Some("text/xml"), ..from(json) },
        8 => Hostile { content_type: None, ..from(json) },
        // Another observer's device.
        9 => Hostile { user_id: Some(spoofed.to_owned()), ..from(json) },
        10 => Hostile { content_encoding: Some("gzip"), ..from(gzip_bomb().to_vec()) },
        _ => Hostile { content_encoding: Some("br"), ..from(json) },
    }
}

/// 16 MiB of spaces in a few kilobytes of gzip, made once.
pub(crate) fn gzip_bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 16 << 20]).expect("in memory");
        encoder.finish().expect("in memory")
    })
}

/// Peak resident memory of a process, from /proc (Linux), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or_default().parse()?)
}

/// Hostile payloads of every sort among valid reports, sent as the devices' gateway: each hostile
/// one dead-lettered with a code and a reason, each valid one stored, the worker alive and its
/// memory bounded.
#[tokio::test]
async fn hostile_payloads_are_dead_lettered_with_reasons_and_valid_reports_stored() -> anyhow::Result<()> {
    let scale = scale();
    let broker = pollwatch_tests::broker().await?;
    let gateway = broker.add_user(&broker.name("gateway"), "gateway-password", "impersonator").await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let mission = fixtures::kg_2021();
    let valid = fixtures::reports(&mission, scale.hostile, 75);
    let published = Published::of(&valid);
    let device =
        |report: &Report| mission.observer(&report.observer).expect("a roster observer").device_user.clone();

    let sender_auth = [("POLLWATCH__INGEST__REQUIRE_SENDER_AUTH", "true".to_owned())];
    let mut worker = spawn_worker(&broker, &store_url, &sender_auth).await?;
    let connection = TestBroker { url: gateway, ..broker.clone() }.connect().await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let exchange = broker.name("reports");
    let mut rng = fixtures::Rng::new(76);
    let mut messages = Vec::with_capacity(2 * valid.len());
    for (k, report) in valid.iter().enumerate() {
        // Another observer's device: any but the report's own observer's.
        let others = mission.observers.iter().filter(|o| o.id != report.observer);
        let other = &others.cycle().nth(k * 7).expect("other observers").device_user;
        let bad = hostile(k, report, &device(report), other, &mut rng);
        let good = Hostile {
            body: serde_json::to_vec(report)?,
            content_type: Some(wire::JSON),
            content_encoding: None,
            user_id: Some(device(report)),
        };
        for message in [bad, good] {
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_user_id(message.user_id.as_deref().unwrap_or_default().into());
            if let Some(content_type) = message.content_type {
                properties = properties.with_content_type(content_type.into());
            }
            if let Some(encoding) = message.content_encoding {
                properties = properties.with_content_encoding(encoding.into());
            }
            messages.push((wire::routing_key(report.kind()), message.body, properties));
        }
    }
    publish_confirmed(&channel, &exchange, messages).await?;

    let store = Store::open(&store_url).await?;
    until_settled(&store, published.unique()).await?;
    // The store has settled, so the worker has judged every message; the letters are counted
    // as soon as they are all there, or after a minute, for the assertions to say what is not.
    let dead_letters = broker.name("dead-letters");
    let letters =
        until_dead_letters(&connection, &dead_letters, "guest", scale.hostile, Duration::from_secs(60))
            .await?;
    let peak_mib = peak_rss_kib(worker.pid()?)? / 1024;
    assert!(worker.is_running()?, "the worker is alive");
    worker.stop().await?;

    let codes: BTreeMap<&str, u64> = pollwatch_ingest::dlq::stats(&letters);
    let known = |code: &str| pollwatch_model::RejectCode::ALL.iter().any(|c| c.as_str() == code);
    for letter in &letters {
        assert!(known(&letter.code) && !letter.detail.is_empty(), "{} {}", letter.code, letter.detail);
    }
    let audit = audit(&store, &mission.id, &published).await?;
    let more = format!(", {} codes, worker alive, peak RSS {peak_mib} MiB", codes.len());
    let published_all = Published { messages: published.messages + scale.hostile, ..Published::of(&valid) };
    summary(&format!("{} hostile payloads", scale.hostile), &published_all, &audit, letters.len(), &more);
    assert_eq!(letters.len(), scale.hostile, "{codes:?}");
    let expected_codes = [
        "body_too_large",
        "invalid_type",
        "invalid_utf8",
        "malformed_json",
        "missing_property",
        "sender_mismatch",
        "text_too_long",
        "unsupported_content_encoding",
        "unsupported_content_type",
    ];
    assert_eq!(codes.keys().copied().collect::<Vec<_>>(), expected_codes, "{codes:?}");
    assert_eq!((audit.stored, audit.duplicates, audit.lost), (published.unique(), 0, 0));
    assert!(peak_mib < 256, "the worker's memory stays bounded: {peak_mib} MiB");
    Ok(())
}
