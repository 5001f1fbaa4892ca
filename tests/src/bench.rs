//! What the benchmarks share (`tests/benches`): a backlog of simulated election days, loading
//! it into a queue, and reading a worker's progress and memory.

use std::time::Duration;

use pollwatch_ingest::{Config, Rules};
use pollwatch_model::Mission;
use pollwatch_publish::{Message, PublisherConfig, publish_all};
use pollwatch_sim::{GroundTruth, Options as DayOptions};

use crate::{TestBroker, TestWorker, metric_total};

/// Simulated election days, one seed after another, until there are `n` messages.
pub fn backlog(mission: &Mission, n: usize) -> Vec<Message> {
    let truth = GroundTruth::parse(pollwatch_model::sample::KG_2021_GROUND_TRUTH, mission)
        .expect("a valid ground truth");
    let mut messages = Vec::with_capacity(n);
    let mut seed = 1;
    while messages.len() < n {
        let options = DayOptions {
            seed,
            resends: 0.02,
            out_of_order: 0.05,
            corrections: 0.02,
            malformed: 0.01,
            spoofed: 0.0,
            miscounts: 0.0,
            senders: false,
            rules: Rules { max_body_bytes: 262_144, require_sender_auth: false },
            deployment: pollwatch_sim::Deployment::Teams,
        };
        let day = pollwatch_sim::simulate(mission, &truth, &options).expect("a day");
        messages.extend(day.messages.into_iter().map(|m| m.message));
        seed += 1;
    }
    messages.truncate(n);
    messages
}

/// Declares the worker's topology for `config` and publishes the backlog into it.
pub async fn preload(broker: &TestBroker, config: &Config, messages: &[Message]) -> anyhow::Result<()> {
    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    pollwatch_ingest::topology::declare(&connection, &channel, config).await?;
    let publisher = PublisherConfig {
        nodes: broker.nodes(),
        exchange: config.exchange.clone(),
        user_id: None,
        window: 1_000,
    };
    let flushed = publish_all(&publisher, messages, None, &|_| {}).await?;
    anyhow::ensure!(
        flushed.confirmed as usize == messages.len(),
        "the broker did not take the backlog: {flushed:?}"
    );
    let _ = connection.close(200, "preloaded".into()).await;
    Ok(())
}

/// Messages the worker has handled: committed (any outcome) or dead-lettered.
pub fn handled(metrics: &str) -> u64 {
    metric_total(metrics, "pollwatch_reports_total") + metric_total(metrics, "pollwatch_dead_letters_total")
}

/// Waits until the worker has handled `n` messages; returns its metrics then.
pub async fn until_handled(worker: &mut TestWorker, n: usize) -> anyhow::Result<String> {
    loop {
        if let Ok(metrics) = worker.metrics().await
            && handled(&metrics) >= n as u64
        {
            return Ok(metrics);
        }
        anyhow::ensure!(worker.is_running()?, "the worker exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The peak resident memory (VmHWM) of process `pid`, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
