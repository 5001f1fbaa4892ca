//! The device side against a real broker: the outbox published with confirms, and what the
//! broker cannot route kept for later.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use pollwatch_model::wire;
use pollwatch_publish::{Flushed, Outbox, PublisherConfig, flush};
use pollwatch_tests::{TestBroker, eventually, fixtures, pollwatch_command, within};

const STEP: Duration = Duration::from_secs(60);

/// The reports exchange with a queue bound to `key`; returns the queue's name.
async fn topology(channel: &Channel, broker: &TestBroker, key: &str) -> anyhow::Result<String> {
    let (exchange, queue) = (broker.name("reports"), broker.name("ingest"));
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await?;
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(queue)
}

async fn queued(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    Ok(channel.queue_declare(queue.into(), passive, FieldTable::default()).await?.message_count())
}

fn config(broker: &TestBroker) -> PublisherConfig {
    PublisherConfig { nodes: broker.nodes(), exchange: broker.name("reports"), user_id: None, window: 200 }
}

#[tokio::test]
async fn the_outbox_reaches_the_queue_with_confirms_and_empties() -> anyhow::Result<()> {
    const N: usize = 1_000;
    let broker = pollwatch_tests::broker().await?;
    let channel = broker.connect().await?.create_channel().await?;
    let queue = topology(&channel, &broker, wire::BINDING_PATTERN).await?;
    let mission = fixtures::kg_2021();
    let dir = tempfile::tempdir()?;
    let outbox = Outbox::open(&dir.path().join("outbox.db")).await?;
    for report in fixtures::reports(&mission, N, 51) {
        let body = serde_json::to_vec(&report)?;
        outbox.enqueue(&body, &mission, None).await?.map_err(|r| anyhow::anyhow!("{r}"))?;
    }
    let flushed = within(STEP, "flushing the outbox", flush(&config(&broker), &outbox)).await??;
    assert_eq!(flushed, Flushed { confirmed: N as u64, unroutable: 0, refused: 0 });
    assert_eq!(outbox.waiting().await?, 0);
    assert_eq!(queued(&channel, &queue).await?, N as u32);
    Ok(())
}

#[tokio::test]
async fn an_unroutable_report_is_reported_and_kept() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let channel = broker.connect().await?.create_channel().await?;
    // Only arrivals have a queue.
    let queue = topology(&channel, &broker, "report.arrival").await?;
    let mission = fixtures::kg_2021();
    let dir = tempfile::tempdir()?;
    let outbox = Outbox::open(&dir.path().join("outbox.db")).await?;
    let reports = fixtures::reports(&mission, 2, 52);
    assert_eq!(
        reports.iter().map(|r| r.kind().as_str()).collect::<Vec<_>>(),
        ["arrival", "opening"],
        "the fixtures' first two kinds"
    );
    for report in &reports {
        outbox
            .enqueue(&serde_json::to_vec(report)?, &mission, None)
            .await?
            .map_err(|r| anyhow::anyhow!("{r}"))?;
    }
    let flushed = within(STEP, "flushing the outbox", flush(&config(&broker), &outbox)).await??;
    assert_eq!(flushed, Flushed { confirmed: 1, unroutable: 1, refused: 0 });
    let left = outbox.pending(0, 10).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].routing_key, "report.opening");
    assert_eq!(queued(&channel, &queue).await?, 1);
    Ok(())
}

/// `pollwatch publish` as an integrator runs it: JSON lines in, a refused line named, the rest
/// confirmed by the broker, a summary, and a failing exit status because of the refused one.
#[tokio::test]
async fn the_publish_command_sends_what_is_valid_and_fails_on_the_rest() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let channel = broker.connect().await?.create_channel().await?;
    let queue = topology(&channel, &broker, wire::BINDING_PATTERN).await?;
    let mission = fixtures::kg_2021();
    let dir = tempfile::tempdir()?;
    let mut lines: Vec<String> =
        fixtures::reports(&mission, 2, 53).iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    lines.insert(1, r#"{"schema_version": 1}"#.to_owned());
    let input = dir.path().join("reports.jsonl");
    std::fs::write(&input, lines.join("\n"))?;
    let output = pollwatch_command()?
        .args(["publish", "--mission", "missions/kg-2021", "--outbox"])
        .arg(dir.path().join("outbox.db"))
        .arg(&input)
        .env("POLLWATCH__AMQP__URL", &broker.url)
        .env("POLLWATCH__AMQP__EXCHANGE", broker.name("reports"))
        .output()
        .await?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a refused report must fail the command");
    assert!(
        stdout.contains("published 2, rejected here 1, unroutable 0, refused by the broker 0; 0 waiting"),
        "{stdout}"
    );
    assert!(stderr.contains("report 2: rejected") && stderr.contains("missing_field"), "{stderr}");
    assert_eq!(queued(&channel, &queue).await?, 2);
    Ok(())
}

/// The broker down while a device publishes 1,000 reports, the publishing process killed, the
/// broker back, the publisher started again: every report reaches the queue.
#[tokio::test]
async fn reports_published_while_the_broker_is_down_arrive_after_it_returns() -> anyhow::Result<()> {
    const N: usize = 1_000;
    let dedicated = pollwatch_tests::DedicatedBroker::start().await?;
    let broker = &dedicated.broker;
    let queue = {
        let connection = broker.connect().await?;
        let channel = connection.create_channel().await?;
        let queue = topology(&channel, broker, wire::BINDING_PATTERN).await?;
        connection.close(200, "set up".into()).await?;
        queue
    };
    let mission = fixtures::kg_2021();
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("reports.jsonl");
    let lines: Vec<String> =
        fixtures::reports(&mission, N, 54).iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    std::fs::write(&input, lines.join("\n"))?;
    let outbox = dir.path().join("outbox.db");
    let publish = |with_input: bool| -> anyhow::Result<tokio::process::Command> {
        let mut command = pollwatch_command()?;
        command
            .args(["publish", "--mission", "missions/kg-2021", "--outbox"])
            .arg(&outbox)
            .env("POLLWATCH__AMQP__URL", &broker.url)
            .env("POLLWATCH__AMQP__EXCHANGE", broker.name("reports"));
        if with_input {
            command.arg(&input);
        }
        Ok(command)
    };

    dedicated.stop().await?;
    let mut first =
        publish(true)?.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn()?;
    // Once every report is in the outbox (the broker cannot have any of them), the publishing
    // process is killed, unless it already gave up by itself.
    eventually(STEP, "every report in the outbox", async || {
        if !outbox.exists() {
            return Ok(false);
        }
        let kept = Outbox::open(&outbox).await?;
        let waiting = kept.waiting().await?;
        kept.close().await;
        Ok(waiting == N as u64)
    })
    .await?;
    let _ = first.start_kill();
    let _ = first.wait().await;

    dedicated.start_again().await?;
    let output = within(STEP, "the publisher's second run", publish(false)?.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("published {N},")), "{stdout}");
    let channel = broker.connect().await?.create_channel().await?;
    assert_eq!(queued(&channel, &queue).await?, N as u32);
    Ok(())
}

/// `pollwatch simulate --burst N` publishes N generated reports with confirms and prints the rate.
#[tokio::test]
async fn a_burst_reaches_the_queue_and_prints_its_rate() -> anyhow::Result<()> {
    const N: u32 = 2_000;
    let broker = pollwatch_tests::broker().await?;
    let channel = broker.connect().await?.create_channel().await?;
    let queue = topology(&channel, &broker, wire::BINDING_PATTERN).await?;
    let output = pollwatch_command()?
        .args(["simulate", "--mission", "missions/kg-2021", "--burst", &N.to_string()])
        .env("POLLWATCH__AMQP__URL", &broker.url)
        .env("POLLWATCH__AMQP__EXCHANGE", broker.name("reports"))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.starts_with(&format!("published {N} reports in ")) && stdout.contains(" reports/s"),
        "{stdout}"
    );
    assert_eq!(queued(&channel, &queue).await?, N);
    Ok(())
}
