//! The ingest worker against a real broker: every kind stored once, bad messages dead-lettered
//! with their reasons, sender authentication, and a clean stop.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Channel};
use pollwatch_ingest::{Config, Metrics, QueueKind, Rules};
use pollwatch_model::wire;
use pollwatch_store::Store;
use pollwatch_tests::{
    InProcessWorker, Readiness, TestBroker, eventually, eventually_some, fixtures, free_address, http_get,
    metric, spawn_worker, until_dead_letters, within,
};
use tokio::sync::oneshot;

pub(crate) const STEP: Duration = Duration::from_secs(30);

pub(crate) fn config(broker: &TestBroker, rules: Rules) -> Config {
    Config {
        amqp_url: pollwatch_settings::SecretUrl::new(broker.url.clone()).into(),
        exchange: broker.name("reports"),
        queue: broker.name("ingest"),
        dead_letter_exchange: broker.name("dead-letter"),
        dead_letter_queue: broker.name("dead-letters"),
        prefetch: 200,
        queue_kind: QueueKind::Quorum,
        delivery_limit: 20,
        batch_size: 50,
        batch_linger: Duration::from_millis(20),
        rules,
        shutdown_deadline: Duration::from_secs(10),
    }
}

pub(crate) const RULES: Rules = Rules { max_body_bytes: 16 * 1024, require_sender_auth: false };

/// Waits until the store holds `n` revisions.
pub(crate) async fn until_stored(store: &Store, n: i64) -> anyhow::Result<()> {
    until_stored_within(store, n, STEP).await
}

pub(crate) async fn until_stored_within(store: &Store, n: i64, limit: Duration) -> anyhow::Result<()> {
    eventually(limit, "reports reaching the store", async || Ok(store.totals().await?.revisions >= n)).await
}

pub(crate) fn json() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2).with_content_type(wire::JSON.into())
}

/// Publishes and waits for the broker's confirm; `mandatory`, so an unroutable message fails.
pub(crate) async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let confirm = channel.basic_publish(exchange.into(), key.into(), options, body, properties).await?;
    let confirmation = within(STEP, "the broker's confirm", confirm).await??;
    anyhow::ensure!(confirmation.is_ack() && confirmation.take_message().is_none(), "not routed: {key}");
    Ok(())
}

/// Waits until the worker has declared its topology: the exchange exists (asked on throwaway
/// channels, since a publish to a missing exchange closes the channel) and `probe` routes to
/// the ingest queue.
pub(crate) async fn until_ready(
    broker: &TestBroker,
    channel: &Channel,
    config: &Config,
    key: &str,
    probe: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let what = "the worker declaring its topology";
    let connection = within(STEP, what, broker.connect()).await??;
    let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
    eventually(STEP, what, async || {
        let throwaway = connection.create_channel().await?;
        let declared = throwaway
            .exchange_declare(
                config.exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                passive,
                lapin::types::FieldTable::default(),
            )
            .await;
        Ok(declared.is_ok())
    })
    .await?;
    eventually(STEP, what, async || {
        Ok(publish(channel, &config.exchange, key, probe, properties.clone()).await.is_ok())
    })
    .await
}

/// Sends `reports` as devices would once the worker is ready: the first as the readiness probe,
/// the rest with confirms over a window as wide as the batch.
pub(crate) async fn send_stream(
    broker: &TestBroker,
    channel: &Channel,
    config: &Config,
    reports: &[pollwatch_model::Report],
) -> anyhow::Result<()> {
    let body = |report: &pollwatch_model::Report| serde_json::to_vec(report).expect("a report serialises");
    let (first, rest) = reports.split_first().context("no reports")?;
    until_ready(broker, channel, config, &wire::routing_key(first.kind()), &body(first), json()).await?;
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let mut confirms = Vec::new();
    for report in rest {
        let (key, bytes) = (wire::routing_key(report.kind()), body(report));
        let exchange = config.exchange.as_str().into();
        confirms.push(channel.basic_publish(exchange, key.into(), options, &bytes, json()).await?);
    }
    for confirm in confirms {
        anyhow::ensure!(within(STEP, "a confirm", confirm).await??.is_ack());
    }
    Ok(())
}

/// The committed example of each report kind, by kind.
pub(crate) fn examples() -> BTreeMap<String, Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/examples");
    ["arrival", "opening", "voting", "closing", "counting", "incident", "departure"]
        .into_iter()
        .map(|kind| {
            let body = std::fs::read(dir.join(format!("{kind}.json"))).expect("an example");
            (kind.to_owned(), body)
        })
        .collect()
}

/// Empties the dead-letter queue: (error code, routing key, body) of each dead letter.
async fn dead_letters(channel: &Channel, queue: &str) -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
    let mut letters = Vec::new();
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
        let headers = message.delivery.properties.headers().clone().unwrap_or_default();
        let header = |name: &str| match headers.inner().get(&ShortString::from(name)) {
            Some(AMQPValue::LongString(value)) => value.to_string(),
            other => panic!("header {name}: {other:?}"),
        };
        assert!(!header(wire::DETAIL_HEADER).is_empty());
        letters.push((
            header(wire::ERROR_HEADER),
            header(wire::ROUTING_KEY_HEADER),
            message.delivery.data.clone(),
        ));
        message.delivery.ack(BasicAckOptions::default()).await?;
    }
    Ok(letters)
}

#[tokio::test]
async fn every_kind_is_stored_once_however_often_it_is_sent() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = config(&broker, RULES);
    let worker = InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    // The worker declares the topology; publish once it exists.
    until_ready(&broker, &channel, &config, "report.probe", b"{}", json()).await?;
    let examples = examples();
    for (kind, body) in &examples {
        publish(&channel, &config.exchange, &format!("report.{kind}"), body, json()).await?;
    }
    // A resend of two of them, one compressed this time.
    publish(&channel, &config.exchange, "report.voting", &examples["voting"], json()).await?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &examples["counting"])?;
    let gzipped = json().with_content_encoding("gzip".into());
    publish(&channel, &config.exchange, "report.counting", &gzip.finish()?, gzipped).await?;

    // Every report and both resends committed (the resends add no revision to wait for).
    let committed = examples.len() as u64 + 2;
    eventually(STEP, "every report and resend committed", async || {
        Ok(pollwatch_tests::metric_total(&worker.metrics.render(), "pollwatch_reports_total") >= committed)
    })
    .await?;
    let (summary, store, _dir) = worker.stop().await?;
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (examples.len() as i64, examples.len() as i64));
    // The probe was rejected; every report, resends included, committed.
    assert_eq!(summary.committed, committed);
    let letters = dead_letters(&channel, &config.dead_letter_queue).await?;
    assert_eq!(letters.len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_with_reasons_and_the_rest_stored() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = config(&broker, RULES);
    let worker = InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    let examples = examples();
    until_ready(&broker, &channel, &config, "report.arrival", &examples["arrival"], json()).await?;
    let too_large = vec![b' '; RULES.max_body_bytes + 1];
    let bad: Vec<(&str, Vec<u8>, BasicProperties)> = vec![
        ("malformed_json", b"{\"report_id\": ".to_vec(), json()),
        ("invalid_utf8", b"{\"a\": \"\xff\"}".to_vec(), json()),
        ("body_too_large", too_large, json()),
        (
            "unsupported_content_type",
            examples["voting"].clone(),
            json().with_content_type("text/plain".into()),
        ),
        ("missing_property", examples["voting"].clone(), BasicProperties::default().with_delivery_mode(2)),
        (
            "unsupported_content_encoding",
            examples["voting"].clone(),
            json().with_content_encoding("br".into()),
        ),
        ("missing_field", b"{\"schema_version\": 1}".to_vec(), json()),
    ];
    for (i, (code, body, properties)) in bad.iter().enumerate() {
        publish(&channel, &config.exchange, &format!("report.bad{i}"), body, properties.clone()).await?;
        // A valid report between each two bad ones.
        let kind = ["opening", "voting", "closing", "counting", "incident", "departure", "voting"][i];
        publish(&channel, &config.exchange, &format!("report.{kind}"), &examples[kind], json()).await?;
        tracing::debug!(code, "published");
    }
    until_stored(&worker.store, examples.len() as i64).await?;
    // Dead letters are published before their batch is acked: wait for all of them.
    let mut letters = Vec::new();
    eventually(STEP, "dead letters", async || {
        letters.extend(dead_letters(&channel, &config.dead_letter_queue).await?);
        Ok(letters.len() >= bad.len())
    })
    .await?;
    let (summary, store, _dir) = worker.stop().await?;
    assert_eq!(letters.len(), bad.len());
    for (i, ((code, body, _), (got, key, data))) in bad.iter().zip(&letters).enumerate() {
        assert_eq!((got.as_str(), key.as_str()), (*code, format!("report.bad{i}").as_str()));
        assert_eq!(data, body, "the dead letter carries the original body");
    }
    assert_eq!(store.totals().await?.reports, examples.len() as i64);
    assert_eq!(summary.dead_lettered, bad.len() as u64);
    Ok(())
}

#[tokio::test]
async fn reports_without_the_observers_device_account_are_dead_lettered() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = config(&broker, Rules { require_sender_auth: true, ..RULES });
    let worker = InProcessWorker::start(&config, &mission).await?;
    let examples = examples();
    // The examples are obs-001's reports; obs-002's device account is dev-obs-002. RabbitMQ
    // checks that `user_id` is the publishing connection's user, so these are real senders.
    let as_user = |name: &str| json().with_user_id(name.into());
    let own_device = broker.add_user("dev-obs-001", "device-one", "").await?;
    let other_device = broker.add_user("dev-obs-002", "device-two", "").await?;
    let own = TestBroker { url: own_device, ..broker.clone() }.publisher().await?;
    let other = TestBroker { url: other_device, ..broker.clone() }.publisher().await?;
    until_ready(&broker, &own, &config, "report.voting", &examples["voting"], as_user("dev-obs-001")).await?;
    publish(&other, &config.exchange, "report.opening", &examples["opening"], as_user("dev-obs-002")).await?;
    let guest = broker.publisher().await?;
    publish(&guest, &config.exchange, "report.closing", &examples["closing"], json()).await?;
    until_stored(&worker.store, 1).await?;
    let mut letters = Vec::new();
    eventually(STEP, "dead letters", async || {
        letters.extend(dead_letters(&guest, &config.dead_letter_queue).await?);
        Ok(letters.len() >= 2)
    })
    .await?;
    let (_, store, _dir) = worker.stop().await?;
    let codes: Vec<(&str, &str)> =
        letters.iter().map(|(code, key, _)| (code.as_str(), key.as_str())).collect();
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert!(codes.contains(&("sender_mismatch", "report.opening")), "{codes:?}");
    assert!(codes.contains(&("sender_missing", "report.closing")), "{codes:?}");
    // Only the report its own observer's device sent.
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_worker_stopped_mid_stream_finishes_its_batch_and_the_next_stores_the_rest_once()
-> anyhow::Result<()> {
    const N: usize = 3_000;
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = Config { batch_size: 100, ..config(&broker, RULES) };
    let first = InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    let reports = fixtures::reports(&mission, N, 21);
    send_stream(&broker, &channel, &config, &reports).await?;

    // Stop the first worker while reports are still flowing.
    until_stored(&first.store, 500).await?;
    let started = std::time::Instant::now();
    let (summary, store, _dir) = first.stop().await?;
    assert!(started.elapsed() < config.shutdown_deadline, "stopped in {:?}", started.elapsed());
    let stored = store.totals().await?.revisions;
    assert!(stored < N as i64, "the first worker finished everything before it was stopped");
    assert_eq!(summary.committed as i64, stored, "everything committed was acked, nothing more");

    // A second worker on the same store takes the rest.
    let second = async {
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = Metrics::default();
        let run = pollwatch_ingest::run(&config, &store, &mission, &metrics, async {
            let _ = stopped.await;
        });
        tokio::pin!(run);
        tokio::select! {
            done = &mut run => done.map(|s| (s, Some(stop))),
            () = until_stored(&store, N as i64).map(|r| r.expect("all stored")) => {
                let _ = stop.send(());
                run.await.map(|s| (s, None))
            }
        }
    };
    let (rest, _) = within(STEP * 2, "the second worker", second).await??;
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (N as i64, N as i64), "each report stored once");
    assert_eq!(summary.committed + rest.committed, N as u64, "no delivery acked twice or lost");
    Ok(())
}

/// `pollwatch worker` as an operator runs it: settings from the environment, stopped by SIGTERM.
#[tokio::test]
async fn the_worker_command_stores_reports_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let config = config(&broker, RULES);
    let deadline = [("POLLWATCH__INGEST__SHUTDOWN_DEADLINE_SECS", "10".to_owned())];
    let worker = spawn_worker(&broker, &store_url, &deadline).await?;
    let http = worker.address();
    let channel = broker.publisher().await?;
    let examples = examples();
    until_ready(&broker, &channel, &config, "report.voting", &examples["voting"], json()).await?;
    publish(&channel, &config.exchange, "report.counting", &examples["counting"], json()).await?;
    publish(&channel, &config.exchange, "report.counting", b"{", json()).await?;

    let store = Store::open(&store_url).await?;
    until_stored(&store, 2).await?;
    let connection = broker.connect().await?;
    eventually(STEP, "the malformed report dead-lettered", async || {
        Ok(!pollwatch_ingest::dlq::list(&connection, &config.dead_letter_queue, "guest").await?.is_empty())
    })
    .await?;
    assert_eq!(http_get(http, "/healthz").await?.0, 200);
    assert_eq!(http_get(http, "/readyz").await?, (200, "ready\n".to_owned()));
    let (status, metrics) = http_get(http, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(metrics.lines().any(|l| l == "pollwatch_reports_total{outcome=\"stored\"} 2"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "pollwatch_broker_connected 1"), "{metrics}");
    // The operator's view of the dead letters (the probe's malformed twin), with the worker's
    // settings.
    let mut stats = worker.command()?;
    stats.args(["dlq", "stats"]);
    // What a service manager does to stop it; the worker must exit with status 0.
    worker.stop().await?;
    assert_eq!(store.totals().await?.reports, 2);

    let output = within(STEP, "pollwatch dlq stats", stats.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 dead letters") && stdout.contains("1  malformed_json"), "{stdout}");
    Ok(())
}

/// The store locked by someone else mid-stream: the worker commits nothing, acks nothing, stops
/// within its deadline leaving every unstored report in the queue, and the next worker stores
/// each of them once.
#[tokio::test]
async fn nothing_is_acked_while_the_store_is_unavailable() -> anyhow::Result<()> {
    use sqlx::Connection as _;

    const N: usize = 1_500;
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = Config { shutdown_deadline: Duration::from_secs(2), ..config(&broker, RULES) };
    let first = InProcessWorker::start(&config, &mission).await?;
    let db = first.dir.path().join("pollwatch.db");
    let channel = broker.publisher().await?;
    let reports = fixtures::reports(&mission, N, 31);
    send_stream(&broker, &channel, &config, &reports).await?;
    until_stored(&first.store, 200).await?;

    // Another process takes the write lock and keeps it.
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await?;
    let stored = first.store.totals().await?.revisions;
    // The worker commits one batch at a time and fills the next meanwhile: holding both (the
    // one committing may be short, sent by the linger; the next one full), or everything left,
    // it takes no more until a commit goes through, which the lock prevents.
    let held = (config.batch_size as u64 + 1).min(N as u64 - stored as u64);
    eventually(STEP, "the worker holding batches it cannot commit", async || {
        Ok(metric(&first.metrics.render(), "pollwatch_deliveries_in_flight") >= held)
    })
    .await?;
    assert_eq!(first.store.totals().await?.revisions, stored, "committed while the store was locked");

    let started = std::time::Instant::now();
    let (summary, store, dir) = first.stop().await?;
    assert!(started.elapsed() < config.shutdown_deadline + Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(summary.committed as i64, stored, "acked only what was committed");
    // Every report not stored is back in the queue, ready for the next worker.
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    eventually(STEP, "the unacked deliveries returning to the queue", async || {
        let queue = channel
            .queue_declare(config.queue.as_str().into(), passive, lapin::types::FieldTable::default())
            .await?;
        Ok(i64::from(queue.message_count()) == N as i64 - stored)
    })
    .await?;

    sqlx::query("ROLLBACK").execute(&mut lock).await?;
    lock.close().await?;
    let second = InProcessWorker::start_on(&config, &mission, store, dir).await?;
    until_stored(&second.store, N as i64).await?;
    let (rest, store, _dir) = second.stop().await?;
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (N as i64, N as i64));
    assert_eq!(summary.committed + rest.committed, N as u64);
    Ok(())
}

/// The broker stopped and started again while 10,000 reports are being ingested: the same worker
/// reconnects and stores every report exactly once.
/// `amqp.url` listing several nodes: the worker passes over one that refuses, consumes from the
/// first that answers and, when that node goes, from the next; a device publisher given the
/// same kind of list publishes to the first that answers. Two independent brokers stand in for
/// a cluster's nodes here (each holds its own queue), so what is checked is the choosing of a
/// node, not a cluster's replication: every report sent to either is stored once.
#[tokio::test]
async fn a_worker_given_several_nodes_moves_to_the_next_when_one_goes() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(
        pollwatch_tests::DedicatedBroker::start(),
        pollwatch_tests::DedicatedBroker::start()
    )?;
    // The same exchange and queue names on both.
    let on_b = TestBroker { prefix: a.broker.prefix.clone(), ..b.broker.clone() };
    let refusing = "amqp://guest:guest@127.0.0.1:1/%2f";
    let mission = fixtures::kg_2021();
    let mut config = config(&a.broker, RULES);
    config.amqp_url = pollwatch_settings::BrokerUrls::new(
        [refusing, a.broker.url.as_str(), on_b.url.as_str()].map(pollwatch_settings::SecretUrl::new).to_vec(),
    );
    let worker = InProcessWorker::start(&config, &mission).await?;
    let reports = fixtures::reports(&mission, 600, 43);
    let (to_a, rest) = reports.split_at(200);
    let (to_b, published) = rest.split_at(200);
    send_stream(&a.broker, &a.broker.publisher().await?, &config, to_a).await?;
    until_stored(&worker.store, 200).await?;

    a.stop().await?;
    // The worker declares its queue on B when it gets there; until then a report to B is
    // unroutable, and `send_stream` waits for that to change.
    send_stream(&on_b, &on_b.publisher().await?, &config, to_b).await?;
    until_stored(&worker.store, 400).await?;
    let nodes =
        pollwatch_publish::Nodes::new(vec![refusing.to_owned(), on_b.url.clone()]).context("two nodes")?;
    let device = pollwatch_publish::PublisherConfig {
        nodes: std::sync::Arc::new(nodes),
        exchange: config.exchange.clone(),
        user_id: None,
        window: 100,
    };
    let messages: Vec<_> = published.iter().map(|r| pollwatch_publish::Message::report(r, None)).collect();
    let flushed =
        within(STEP, "publishing", pollwatch_publish::publish_all(&device, &messages, None, &|_| {}))
            .await??;
    assert_eq!(flushed.confirmed, 200, "{flushed:?}");
    until_stored(&worker.store, 600).await?;

    let (summary, store, _dir) = worker.stop().await?;
    assert!(summary.reconnects >= 1, "{summary:?}");
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (600, 600), "each report once: {totals:?}");
    Ok(())
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice() -> anyhow::Result<()> {
    const N: usize = 10_000;
    let dedicated = pollwatch_tests::DedicatedBroker::start().await?;
    let broker = &dedicated.broker;
    let mission = fixtures::kg_2021();
    let config = config(broker, RULES);
    let worker = InProcessWorker::start(&config, &mission).await?;
    let reports = fixtures::reports(&mission, N, 41);
    // A fast worker may drain the first part before the broker has stopped; the rest, sent once
    // it is back, can only be stored by a worker that reconnected.
    let (before, after) = reports.split_at(N * 7 / 10);
    send_stream(broker, &broker.publisher().await?, &config, before).await?;
    until_stored(&worker.store, 1_000).await?;
    // /readyz, polled through the restart until every report is stored: what it answered, each
    // change once.
    let address = free_address()?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let health = pollwatch::http::Endpoints::health(pollwatch::http::Health {
        metrics: Some(worker.metrics.clone()),
        store: worker.store.clone(),
    });
    let (http_stop, http_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(pollwatch::http::serve(listener, health, async {
        let _ = http_stopped.await;
    }));
    let readiness = Readiness::watch(address);
    // What /readyz said before the broker went away is the first thing seen.
    readiness.until_answered().await?;
    dedicated.restart(Duration::from_secs(2)).await?;
    assert!(worker.is_running(), "the worker exited when the broker went away");
    send_stream(broker, &broker.publisher().await?, &config, after).await?;
    until_stored_within(&worker.store, N as i64, Duration::from_secs(180)).await?;
    let seen = readiness.seen().await?;
    let _ = http_stop.send(());
    within(STEP, "the HTTP server", server).await???;
    assert_eq!(seen, [200, 503, 200], "/readyz through the restart");
    let (summary, store, _dir) = worker.stop().await?;
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (N as i64, N as i64), "each report stored once");
    assert!(summary.reconnects >= 1, "{summary:?}");
    assert!(summary.committed >= N as u64, "{summary:?}");
    Ok(())
}

/// Dead letters counted by code, then those of one code replayed (after the setting that
/// rejected them is changed) and stored, each once; the others stay.
#[tokio::test]
async fn dead_letters_are_counted_and_replayed_once() -> anyhow::Result<()> {
    use pollwatch_ingest::dlq;

    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let strict = config(&broker, Rules { require_sender_auth: true, ..RULES });
    let worker = InProcessWorker::start(&strict, &mission).await?;
    let channel = broker.publisher().await?;
    let examples = examples();
    until_ready(&broker, &channel, &strict, "report.opening", &examples["opening"], json()).await?;
    for kind in ["voting", "closing"] {
        publish(&channel, &strict.exchange, &format!("report.{kind}"), &examples[kind], json()).await?;
    }
    // With a sender, so that it fails on its JSON rather than on the missing sender.
    let as_guest = json().with_user_id("guest".into());
    publish(&channel, &strict.exchange, "report.voting", b"not json", as_guest).await?;
    let connection = broker.connect().await?;
    let letters = until_dead_letters(&connection, &strict.dead_letter_queue, "guest", 4, STEP).await?;
    let (_, store, dir) = worker.stop().await?;
    let counts: Vec<(&str, u64)> = dlq::stats(&letters).into_iter().collect();
    assert_eq!(counts, [("malformed_json", 1), ("sender_missing", 3)]);
    assert_eq!(
        dlq::list(&connection, &strict.dead_letter_queue, "guest").await?.len(),
        4,
        "listing removed letters"
    );

    // Sender authentication switched off; the sender_missing letters go back and are stored.
    let lenient = config(&broker, RULES);
    let worker = InProcessWorker::start_on(&lenient, &mission, store, dir).await?;
    let replayed = dlq::replay(
        &connection,
        &strict.dead_letter_queue,
        &strict.exchange,
        Some("sender_missing"),
        "guest",
    )
    .await?;
    assert_eq!(replayed, dlq::Replayed { moved: 3, kept: 1 });
    until_stored(&worker.store, 3).await?;
    let (_, store, _dir) = worker.stop().await?;
    assert_eq!(store.totals().await?.revisions, 3);
    let left = dlq::list(&connection, &strict.dead_letter_queue, "guest").await?;
    assert_eq!(left.iter().map(|l| l.code.as_str()).collect::<Vec<_>>(), ["malformed_json"]);
    assert_eq!(left[0].body, b"not json");
    Ok(())
}

/// A report committed by a worker that died before acknowledging it comes back redelivered: it
/// is acknowledged as a duplicate and stored once.
#[tokio::test]
async fn a_redelivered_report_that_was_committed_is_stored_once() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = config(&broker, RULES);
    let examples = examples();
    // A first worker declares the topology, stores one report and stops.
    let first = InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    until_ready(&broker, &channel, &config, "report.arrival", &examples["arrival"], json()).await?;
    until_stored(&first.store, 1).await?;
    let (_, store, dir) = first.stop().await?;

    // Stands in for a worker that committed the voting report, then died before its ack: the
    // store has the report, and the broker redelivers it.
    publish(&channel, &config.exchange, "report.voting", &examples["voting"], json()).await?;
    let taker = broker.connect().await?.create_channel().await?;
    let taken = eventually_some(STEP, "taking the report", async || {
        Ok(taker.basic_get(config.queue.as_str().into(), BasicGetOptions::default()).await?)
    })
    .await?;
    let checked = pollwatch_model::check(
        &taken.delivery.data,
        &pollwatch_model::Context { mission: &mission, now: chrono::Utc::now(), sender: None },
    )
    .map_err(|r| anyhow::anyhow!("{r}"))?;
    let payload = String::from_utf8(taken.delivery.data.clone())?;
    let delivery =
        pollwatch_store::Delivery { sender: None, redelivered: false, received_at: chrono::Utc::now() };
    store
        .ingest_batch(&[pollwatch_store::Incoming::new(checked.report, checked.flags, payload, delivery)])
        .await?;
    taker.close(200, "died before its ack".into()).await?;

    let second = InProcessWorker::start_on(&config, &mission, store, dir).await?;
    eventually(STEP, "the redelivery acknowledged as a duplicate", async || {
        Ok(second.metrics.render().lines().any(|l| l == "pollwatch_reports_total{outcome=\"duplicate\"} 1"))
    })
    .await?;
    let (summary, store, _dir) = second.stop().await?;
    assert_eq!(summary.committed, 1);
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (2, 2));
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let queue = channel
        .queue_declare(config.queue.as_str().into(), passive, lapin::types::FieldTable::default())
        .await?;
    assert_eq!(queue.message_count(), 0, "the redelivery was acknowledged");
    Ok(())
}

/// The ingest queue deleted under a running worker (the broker cancels its consumer): the worker
/// declares it again, subscribes again, and stores what arrives next.
#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_subscribes_again() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = config(&broker, RULES);
    let worker = InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    let examples = examples();
    until_ready(&broker, &channel, &config, "report.arrival", &examples["arrival"], json()).await?;
    until_stored(&worker.store, 1).await?;
    channel.queue_delete(config.queue.as_str().into(), lapin::options::QueueDeleteOptions::default()).await?;
    // Routed again once the worker has declared and bound the queue anew.
    until_ready(&broker, &channel, &config, "report.opening", &examples["opening"], json()).await?;
    until_stored(&worker.store, 2).await?;
    let (summary, _store, _dir) = worker.stop().await?;
    assert!(summary.reconnects >= 1, "{summary:?}");
    Ok(())
}
