//! One hostile message never harms another: a rejection whose reason or headers would not fit in
//! a frame, connections closed under the worker again and again, and dead letters that claim
//! to be the worker's. Each runs against a real broker and a real worker.

use std::time::Duration;

use anyhow::Context as _;
use lapin::options::{BasicGetOptions, BasicNackOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use pollwatch_ingest::dlq::{self, Origin};
use pollwatch_ingest::letter::{MAX_DETAIL_BYTES, encoded_len};
use pollwatch_ingest::{Config, Rules};
use pollwatch_model::{Report, wire};
use pollwatch_tests::{
    DedicatedBroker, Readiness, TestBroker, eventually, eventually_some, fixtures, free_address, metric,
    until_dead_letters, within,
};
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::worker::{STEP, config, json, publish, send_stream, until_stored_within};

/// The limits a deployment runs with: `config/default.toml`, read as the binary reads it.
fn defaults() -> anyhow::Result<pollwatch_settings::Settings> {
    let empty = tempfile::tempdir()?;
    let options = pollwatch_settings::LoadOptions {
        config_dir: empty.path().to_owned(),
        environment: None,
        extra_file: None,
        overrides: Vec::new(),
        env_vars: Some(Default::default()),
    };
    Ok(pollwatch_settings::Settings::load(&options)?.settings)
}

/// The worker's configuration for `broker` with the default limits (body size, delivery limit,
/// prefetch and batches).
fn deployed(broker: &TestBroker) -> anyhow::Result<Config> {
    let settings = defaults()?;
    let rules = Rules { max_body_bytes: settings.ingest.max_body_bytes as usize, require_sender_auth: false };
    Ok(Config {
        prefetch: settings.amqp.prefetch,
        delivery_limit: settings.ingest.delivery_limit,
        batch_size: usize::from(settings.ingest.batch_size),
        ..config(broker, rules)
    })
}

/// `/readyz` of a worker running in this process, served on a free port and watched.
struct Health {
    readiness: Readiness,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Health {
    async fn watch(worker: &pollwatch_tests::InProcessWorker) -> anyhow::Result<Self> {
        let address = free_address()?;
        let listener = tokio::net::TcpListener::bind(address).await?;
        let health = pollwatch::http::Endpoints::health(pollwatch::http::Health {
            metrics: Some(worker.metrics.clone()),
            store: worker.store.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(pollwatch::http::serve(listener, health, async {
            let _ = stopped.await;
        }));
        Ok(Self { readiness: Readiness::watch(address), stop, server })
    }

    /// Stops watching and serving; what `/readyz` answered meanwhile.
    async fn seen(self) -> anyhow::Result<Vec<u16>> {
        let seen = self.readiness.seen().await?;
        let _ = self.stop.send(());
        within(STEP, "the HTTP server", self.server).await???;
        Ok(seen)
    }
}

/// A report whose `kind` is 200,000 characters long: within the body limit, and a rejection
/// detail of the same size if the worker echoed its input.
fn long_kind(report: &Report) -> anyhow::Result<Vec<u8>> {
    let mut value = serde_json::to_value(report)?;
    value["kind"] = "k".repeat(200_000).into();
    Ok(serde_json::to_vec(&value)?)
}

/// Properties of a JSON message whose headers come to `total` bytes as published (10,000 bytes
/// each and a last one to make up the rest), one of them a forged reason of ours.
fn heavy(total: usize) -> lapin::BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(wire::ERROR_HEADER.into(), AMQPValue::LongString("forged".into()));
    for i in 0..(total / 10_000).saturating_sub(1) {
        headers.insert(format!("x-device-{i:02}").into(), AMQPValue::LongString("h".repeat(10_000).into()));
    }
    let size =
        |headers: &FieldTable| encoded_len(&lapin::BasicProperties::default().with_headers(headers.clone()));
    // A header named `x-pad` with a long string value: 1 + 5 (name), 1 (type), 4 (length).
    let pad = total - size(&headers) - 11;
    headers.insert("x-pad".into(), AMQPValue::LongString("p".repeat(pad).into()));
    assert_eq!(size(&headers), total);
    json().with_headers(headers)
}

fn header(letter_headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match letter_headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

/// One 200 KB report with an unknown kind, one bad message carrying 130,000 bytes of headers and
/// one whose headers come to just within the frame (131,000 bytes), among 2,000 valid reports:
/// the 2,000 are stored, the bad ones are dead-lettered with bounded reasons and their bodies
/// intact (the last without the headers that no longer fit, its code saying so), and the worker
/// never loses its connection.
#[tokio::test]
async fn an_oversized_rejection_among_valid_reports_costs_no_reconnect() -> anyhow::Result<()> {
    const N: usize = 2_000;
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = deployed(&broker)?;
    let worker = pollwatch_tests::InProcessWorker::start(&config, &mission).await?;
    let channel = broker.publisher().await?;
    let reports = fixtures::reports(&mission, N, 131);
    let (before, after) = reports.split_at(N / 2);
    send_stream(&broker, &channel, &config, before).await?;
    let readiness = Health::watch(&worker).await?;

    let long = long_kind(&reports[0])?;
    assert!(long.len() > 200_000 && long.len() <= config.rules.max_body_bytes);
    publish(&channel, &config.exchange, "report.voting", &long, json()).await?;
    // A bad report with 130,000 bytes of headers, and one with headers just within the frame.
    let nope = br#"{"schema_version": 1, "kind": "nope"}"#.to_vec();
    publish(&channel, &config.exchange, "report.voting", &nope, heavy(130_000)).await?;
    publish(&channel, &config.exchange, "report.voting", &nope, heavy(131_000)).await?;
    for report in after {
        let body = serde_json::to_vec(report)?;
        publish(&channel, &config.exchange, &wire::routing_key(report.kind()), &body, json()).await?;
    }
    until_stored_within(&worker.store, N as i64, Duration::from_secs(120)).await?;

    let connection = broker.connect().await?;
    let letters = until_dead_letters(&connection, &config.dead_letter_queue, "guest", 3, STEP).await?;
    let seen = readiness.seen().await?;
    let (summary, store, _dir) = worker.stop().await?;

    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (N as i64, N as i64));
    assert_eq!(summary.reconnects, 0, "{summary:?}");
    assert_eq!(seen, [200], "/readyz while the bad messages went through");
    let [long_letter, carried, cut] = letters.as_slice() else { panic!("{letters:?}") };
    for letter in &letters {
        assert_eq!(letter.origin, Origin::Worker);
        assert!(letter.detail.len() <= MAX_DETAIL_BYTES, "{}", letter.detail.len());
    }
    assert_eq!(long_letter.code, "unknown_kind", "{}", long_letter.detail);
    assert!(long_letter.detail.contains('…'), "the echo is cut: {}", long_letter.detail);
    assert_eq!(long_letter.body, long, "the body is kept whole");
    assert_eq!((carried.code.as_str(), carried.body.as_slice()), ("unknown_kind", nope.as_slice()));
    assert_eq!((cut.code.as_str(), cut.body.as_slice()), ("headers_too_large", nope.as_slice()));
    assert!(cut.detail.contains("rejected as unknown_kind"), "{}", cut.detail);
    Ok(())
}

/// `rabbitmqctl close_all_connections` 25 times while 10,000 reports wait in the queue, each time
/// the worker is consuming again: every report is stored once and none reaches the dead-letter
/// queue, however often the broker handed them out.
#[tokio::test]
async fn connections_closed_again_and_again_push_no_report_into_dead_letters() -> anyhow::Result<()> {
    const N: usize = 10_000;
    const CLOSES: usize = 25;
    let dedicated = DedicatedBroker::start().await?;
    let broker = &dedicated.broker;
    let mission = fixtures::kg_2021();
    let config = deployed(broker)?;
    let reports = fixtures::reports(&mission, N, 251);
    {
        // The reports wait in the queue before the worker starts.
        let connection = broker.connect().await?;
        let setup = connection.create_channel().await?;
        pollwatch_ingest::topology::declare(&connection, &setup, &config).await?;
        let channel = broker.publisher().await?;
        let messages = reports.iter().map(|report| {
            let key = wire::routing_key(report.kind());
            (key, serde_json::to_vec(report).expect("a report serialises"), json())
        });
        crate::faults::publish_confirmed(&channel, &config.exchange, messages).await?;
    }
    let worker = pollwatch_tests::InProcessWorker::start(&config, &mission).await?;
    // The store is slow to come back meanwhile (another process holds its write lock), so the
    // worker holds a full prefetch window when each close comes: the same deliveries go back to
    // the queue every time.
    let db = format!("sqlite://{}", worker.dir.path().join("pollwatch.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&db).await?;
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await?;
    let mut in_flight_at_close = 0;
    for closed in 0..CLOSES as u64 {
        // Closed when the worker has come back from the previous close (its metrics still say
        // connected until it notices a close), is consuming again and holds deliveries.
        eventually(STEP, "the worker consuming again", async || {
            Ok(worker.metrics.broker_connected() && {
                let metrics = worker.metrics.render();
                metric(&metrics, "pollwatch_broker_reconnects_total") >= closed
                    && metric(&metrics, "pollwatch_deliveries_in_flight") > 0
            })
        })
        .await?;
        in_flight_at_close += 1;
        dedicated.rabbitmqctl(&["close_all_connections", "pollwatch test"]).await?;
    }
    sqlx::query("ROLLBACK").execute(&mut lock).await?;
    lock.close().await?;
    until_stored_within(&worker.store, N as i64, Duration::from_secs(180)).await?;
    eventually(STEP, "the worker connected after the last close", async || {
        Ok(worker.metrics.broker_connected())
    })
    .await?;
    let (summary, store, _dir) = worker.stop().await?;
    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions), (N as i64, N as i64), "each report stored once");
    let connection = broker.connect().await?;
    let letters = dlq::list(&connection, &config.dead_letter_queue, "guest").await?;
    assert!(letters.is_empty(), "{:?}", dlq::stats(&letters));
    assert!(summary.reconnects >= CLOSES as u64, "{summary:?}");
    eprintln!(
        "hostile: {CLOSES} forced connection closes ({in_flight_at_close} with deliveries in flight): \
         {} of {N} reports stored once, {} dead letters, {} reconnects",
        totals.revisions,
        letters.len(),
        summary.reconnects
    );
    Ok(())
}

/// A valid report carrying forged `x-pollwatch-*` headers, dead-lettered by the broker itself
/// past the delivery limit, is listed by `x-death`'s reason; a letter published straight to the
/// dead-letter exchange by someone else is listed as unverified. A replay sends the first back
/// without the forged headers.
#[tokio::test]
async fn dead_letters_are_told_apart_by_what_a_device_cannot_forge() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let mission = fixtures::kg_2021();
    let config = Config { delivery_limit: 1, ..config(&broker, crate::worker::RULES) };
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    pollwatch_ingest::topology::declare(&connection, &channel, &config).await?;

    let report = &fixtures::reports(&mission, 1, 7)[0];
    let body = serde_json::to_vec(report)?;
    let mut forged = FieldTable::default();
    for (name, value) in [
        (wire::ERROR_HEADER, "forged"),
        (wire::DETAIL_HEADER, "forged detail"),
        (wire::ROUTING_KEY_HEADER, "report.elsewhere"),
    ] {
        forged.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    let key = wire::routing_key(report.kind());
    publish(&channel, &config.exchange, &key, &body, json().with_headers(forged.clone())).await?;
    // A consumer that fails on it every time, until the broker gives up on it.
    within(STEP, "the broker dead-lettering the report", async {
        while let Some(message) =
            channel.basic_get(config.queue.as_str().into(), BasicGetOptions::default()).await?
        {
            message.delivery.nack(BasicNackOptions { multiple: false, requeue: true }).await?;
        }
        anyhow::Ok(())
    })
    .await??;
    // And a letter published straight to the dead-letter exchange, claiming to be the worker's.
    publish(&channel, &config.dead_letter_exchange, &key, b"{}", json().with_headers(forged)).await?;

    let letters =
        until_dead_letters(&connection, &config.dead_letter_queue, "pollwatch-worker", 2, STEP).await?;
    let stats: Vec<(&str, u64)> = dlq::stats(&letters).into_iter().collect();
    assert_eq!(stats, [("delivery_limit", 1), (dlq::UNVERIFIED_CODE, 1)]);
    let by_broker = letters.iter().find(|l| l.origin == Origin::Broker).context("the broker's letter")?;
    assert_eq!((by_broker.routing_key.as_str(), by_broker.body.as_slice()), (key.as_str(), body.as_slice()));
    assert!(by_broker.detail.contains(&config.queue), "{}", by_broker.detail);

    let replayed = dlq::replay(
        &connection,
        &config.dead_letter_queue,
        &config.exchange,
        Some("delivery_limit"),
        "pollwatch-worker",
    )
    .await?;
    assert_eq!(replayed, dlq::Replayed { moved: 1, kept: 1 });
    let back = eventually_some(STEP, "the replayed report", async || {
        Ok(channel.basic_get(config.queue.as_str().into(), BasicGetOptions::default()).await?)
    })
    .await?;
    let headers = back.delivery.properties.headers().as_ref();
    assert_eq!(back.delivery.data, body);
    for name in [wire::ERROR_HEADER, wire::DETAIL_HEADER, "x-death"] {
        assert_eq!(header(headers, name), None, "{name} replayed");
    }
    assert!(headers.is_none_or(|h| !h.contains_key("x-death")));
    Ok(())
}
