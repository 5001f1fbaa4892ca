//! The consume → judge → commit → dead-letter → ack loop, its reconnects and its shutdown.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::ConfirmSelectOptions;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use pollwatch_model::{Mission, RejectCode, Rejection};
use pollwatch_store::{Incoming, Outcome, Store, StoreError};

use crate::message::{Envelope, judge};
use crate::metrics::Metrics;
use crate::{
    Action, Config, DETAIL_HEADER, Disposition, ERROR_HEADER, PUBLISHED_AT_HEADER, ROUTING_KEY_HEADER,
    USER_ID_HEADER, action, carried_over, topology,
};

/// Longest wait between two attempts to reach the broker or the store.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long connecting to the broker may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the worker did, returned when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Deliveries committed to the store (any outcome) and acknowledged.
    pub committed: u64,
    /// Deliveries dead-lettered with a reason and acknowledged.
    pub dead_lettered: u64,
    pub batches: u64,
    /// Connections to the broker after the first.
    pub reconnects: u64,
}

/// Why the worker gave up. Broker and store outages are not among them: it waits those out.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the broker refused the worker's set-up: {0}")]
    Setup(String),
}

/// Why one connection's session ended.
enum SessionEnd {
    /// Shutdown was requested and the session closed cleanly (or ran out of time).
    Stopped,
    /// The broker went away or misbehaved; reconnect.
    Broker(lapin::Error),
}

/// A shutdown request and how long the worker has left to honour it.
struct Stop<'a> {
    signal: Pin<&'a mut (dyn Future<Output = ()> + Send)>,
    since: Option<Instant>,
    deadline: Duration,
}

impl Stop<'_> {
    /// Completes when shutdown is requested (at once if it already was).
    async fn requested(&mut self) {
        if self.since.is_none() {
            self.signal.as_mut().await;
            self.since = Some(Instant::now());
            tracing::info!(deadline = ?self.deadline, "shutdown requested; finishing the current batch");
        }
    }

    fn is_requested(&self) -> bool {
        self.since.is_some()
    }

    fn out_of_time(&self) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= self.deadline)
    }

    /// Completes once shutdown was requested and its deadline has passed.
    async fn expired(&mut self) {
        self.requested().await;
        tokio::time::sleep(self.time_left()).await;
    }

    fn time_left(&self) -> Duration {
        self.since.map_or(Duration::MAX, |since| self.deadline.saturating_sub(since.elapsed()))
    }
}

/// Runs the worker until `shutdown` completes; then it stops taking deliveries, commits and
/// acknowledges the batch in hand, and closes, within `config.shutdown_deadline`. Deliveries it
/// could not finish in time stay unacknowledged and are redelivered to the next worker, which the
/// store's idempotency makes harmless.
pub async fn run(
    config: &Config,
    store: &Store,
    mission: &Mission,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, WorkerError> {
    let shutdown = std::pin::pin!(shutdown);
    let mut stop = Stop { signal: shutdown, since: None, deadline: config.shutdown_deadline };
    let mut summary = Summary::default();
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    let lost = &mut false;
    loop {
        let context = Context { config, store, mission, metrics };
        let ended = session(&context, &mut stop, &mut summary, &mut connected_before, lost).await;
        metrics.set_broker_connected(false);
        let ended = ended?;
        match ended {
            SessionEnd::Stopped => {
                tracing::info!(?summary, "worker stopped");
                return Ok(summary);
            }
            SessionEnd::Broker(error) => {
                // Once per outage, not once per attempt.
                if !*lost && connected_before {
                    tracing::warn!(%error, "lost the broker; reconnecting with backoff");
                } else if !*lost {
                    tracing::warn!(%error, "cannot reach the broker; retrying with backoff");
                } else {
                    tracing::debug!(%error, retry_in = ?backoff, "the broker is still unreachable");
                }
                *lost = true;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.requested() => {
                        tracing::info!(?summary, "worker stopped while the broker was away");
                        return Ok(summary);
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if connected_before {
                    summary.reconnects += 1;
                    metrics.reconnected();
                }
            }
        }
    }
}

/// What every step of the worker reads.
#[derive(Clone, Copy)]
struct Context<'a> {
    config: &'a Config,
    store: &'a Store,
    mission: &'a Mission,
    metrics: &'a Metrics,
}

/// One connection: set up, then batches until shutdown or a broker failure.
async fn session(
    context: &Context<'_>,
    stop: &mut Stop<'_>,
    summary: &mut Summary,
    connected_before: &mut bool,
    lost: &mut bool,
) -> Result<SessionEnd, WorkerError> {
    let config = context.config;
    let connecting = Connection::connect(&config.amqp_url, ConnectionProperties::default());
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return Ok(SessionEnd::Broker(error)),
        Err(_) => {
            return Ok(SessionEnd::Broker(lapin::Error::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))));
        }
    };
    let (consume, publish, consumer) = match open(&connection, config).await {
        Ok(opened) => opened,
        Err(error) if is_refusal(&error) => return Err(WorkerError::Setup(error.to_string())),
        Err(error) => return Ok(SessionEnd::Broker(error)),
    };
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming");
    *connected_before = true;
    *lost = false;
    context.metrics.set_broker_connected(true);

    let end = batches(context, stop, summary, &consume, &publish, consumer).await;
    if matches!(end, SessionEnd::Stopped) {
        // Unacknowledged deliveries (none, unless time ran out) go back to the queue on close.
        let _ = consume.close(200, "worker stopping".into()).await;
        let _ = publish.close(200, "worker stopping".into()).await;
        let _ = connection.close(200, "worker stopping".into()).await;
    }
    Ok(end)
}

/// A refusal that reconnecting cannot fix, such as a queue declared with other arguments.
fn is_refusal(error: &lapin::Error) -> bool {
    let text = error.to_string();
    text.contains("PRECONDITION_FAILED") || text.contains("ACCESS_REFUSED")
}

async fn open(connection: &Connection, config: &Config) -> lapin::Result<(Channel, Channel, Consumer)> {
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    topology::declare(&publish, config).await?;
    let consume = connection.create_channel().await?;
    consume.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
    let consumer = consume
        .basic_consume(
            config.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((consume, publish, consumer))
}

async fn batches(
    context: &Context<'_>,
    stop: &mut Stop<'_>,
    summary: &mut Summary,
    consume: &Channel,
    publish: &Channel,
    mut consumer: Consumer,
) -> SessionEnd {
    let config = context.config;
    let batch_size = config.batch_size.clamp(1, usize::from(config.prefetch.max(1)));
    loop {
        let first = tokio::select! {
            biased;
            () = stop.requested() => {
                let _ = consume.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                return SessionEnd::Stopped;
            }
            next = consumer.next() => next,
        };
        let mut batch = match first {
            Some(Ok(delivery)) => vec![delivery],
            Some(Err(error)) => return SessionEnd::Broker(error),
            None => return SessionEnd::Broker(cancelled()),
        };
        let linger = tokio::time::sleep(config.batch_linger);
        tokio::pin!(linger);
        while batch.len() < batch_size && !stop.is_requested() {
            tokio::select! {
                biased;
                () = &mut linger => break,
                () = stop.requested() => break,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => batch.push(delivery),
                    // Nothing of this batch is acknowledged; the broker redelivers all of it.
                    Some(Err(error)) => return SessionEnd::Broker(error),
                    None => return SessionEnd::Broker(cancelled()),
                },
            }
        }
        if stop.is_requested() {
            // Take nothing more; what the broker already sent beyond this batch goes back to
            // the queue when the channel closes.
            let _ = consume.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
        }
        context.metrics.received(batch.len());
        match handle(context, stop, publish, consume, &batch).await {
            Ok((committed, dead_lettered)) => {
                summary.committed += committed;
                summary.dead_lettered += dead_lettered;
                summary.batches += 1;
            }
            Err(Unfinished::Broker(error)) => return SessionEnd::Broker(error),
            Err(Unfinished::OutOfTime) => {
                tracing::warn!(
                    deliveries = batch.len(),
                    "shutdown deadline passed; the batch is left to the next worker"
                );
                return SessionEnd::Stopped;
            }
        }
        if stop.is_requested() {
            return SessionEnd::Stopped;
        }
    }
}

fn cancelled() -> lapin::Error {
    lapin::Error::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the broker cancelled the consumer",
    ))
}

/// Why a batch was left unacknowledged.
enum Unfinished {
    Broker(lapin::Error),
    OutOfTime,
}

/// Judges, commits, dead-letters and acknowledges one batch; returns (committed, dead-lettered).
async fn handle(
    context: &Context<'_>,
    stop: &mut Stop<'_>,
    publish: &Channel,
    consume: &Channel,
    batch: &[Delivery],
) -> Result<(u64, u64), Unfinished> {
    let Context { config, store, mission, metrics } = *context;
    let now = Utc::now();
    let mut accepted: Vec<Incoming> = Vec::new();
    // The delivery each accepted report came in, by position.
    let mut accepted_deliveries: Vec<&Delivery> = Vec::new();
    let mut rejected: Vec<(&Delivery, Rejection)> = Vec::new();
    for delivery in batch {
        let properties = &delivery.properties;
        let envelope = Envelope {
            body: &delivery.data,
            content_type: properties.content_type().as_ref().map(ShortString::as_str),
            content_encoding: properties.content_encoding().as_ref().map(ShortString::as_str),
            user_id: properties.user_id().as_ref().map(ShortString::as_str),
            redelivered: delivery.redelivered,
        };
        match judge(&envelope, mission, config.rules, now) {
            Ok(incoming) => {
                accepted.push(incoming);
                accepted_deliveries.push(delivery);
            }
            Err(rejection) => rejected.push((delivery, rejection)),
        }
    }

    let started = Instant::now();
    let (outcomes, refused) = commit(store, stop, &accepted).await?;
    let committed_at = Utc::now().timestamp_micros();
    for outcome in outcomes {
        metrics.outcome(outcome);
    }
    for delivery in &accepted_deliveries {
        if let Some(published_at) = published_at(delivery) {
            metrics.published_to_committed(Duration::from_micros(
                committed_at.saturating_sub(published_at).max(0) as u64,
            ));
        }
    }
    for (index, error) in refused {
        rejected.push((
            accepted_deliveries[index],
            Rejection::new(RejectCode::StoreRejected, "$", error.to_string()),
        ));
    }
    let dead_lettered = rejected.len() as u64;
    dead_letter(config, publish, &rejected).await.map_err(Unfinished::Broker)?;
    for (_, rejection) in &rejected {
        metrics.dead_letter(rejection.code);
    }

    let last = batch.iter().map(|d| d.delivery_tag).max().expect("a batch is not empty");
    // Every delivery this channel has received so far is in this batch: one frame acks them all.
    consume.basic_ack(last, BasicAckOptions { multiple: true }).await.map_err(Unfinished::Broker)?;
    metrics.batch_done(batch.len(), started.elapsed());
    Ok((batch.len() as u64 - dead_lettered, dead_lettered))
}

/// The publisher's [`PUBLISHED_AT_HEADER`], if the message has one.
fn published_at(delivery: &Delivery) -> Option<i64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(PUBLISHED_AT_HEADER))? {
        AMQPValue::LongLongInt(us) => Some(*us),
        AMQPValue::Timestamp(us) => i64::try_from(*us).ok(),
        _ => None,
    }
}

/// Commits `reports` in one transaction, waiting out store outages (nothing is acknowledged
/// meanwhile, and the consumer takes nothing new: memory stays bounded by the prefetch). A batch
/// the store refuses for good is retried report by report, and the reports it still refuses on
/// their own are returned (by position) to be dead-lettered.
async fn commit(
    store: &Store,
    stop: &mut Stop<'_>,
    reports: &[Incoming],
) -> Result<(Vec<Outcome>, Vec<(usize, StoreError)>), Unfinished> {
    if reports.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    match commit_with_retries(store, stop, reports).await? {
        Ok(outcomes) => Ok((outcomes, Vec::new())),
        Err(error) => {
            tracing::warn!(%error, reports = reports.len(), "the store refused a batch; trying its reports one by one");
            let (mut outcomes, mut refused) = (Vec::new(), Vec::new());
            for (index, report) in reports.iter().enumerate() {
                match commit_with_retries(store, stop, std::slice::from_ref(report)).await? {
                    Ok(outcome) => outcomes.extend(outcome),
                    Err(error) => refused.push((index, error)),
                }
            }
            Ok((outcomes, refused))
        }
    }
}

/// `Ok(Ok(outcomes))` committed; `Ok(Err(_))` refused for good; `Err` out of time while retrying.
async fn commit_with_retries(
    store: &Store,
    stop: &mut Stop<'_>,
    reports: &[Incoming],
) -> Result<Result<Vec<Outcome>, StoreError>, Unfinished> {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        // A store that hangs (a lock held elsewhere, say) must not hold a shutdown past its
        // deadline: the attempt is dropped, which rolls its transaction back.
        let attempt = tokio::select! {
            result = store.ingest_batch(reports) => result,
            () = stop.expired() => return Err(Unfinished::OutOfTime),
        };
        let error = match attempt {
            Ok(outcomes) => {
                if failing {
                    tracing::info!("the store is back");
                }
                return Ok(Ok(outcomes));
            }
            Err(error) => error,
        };
        match action(&Disposition::StoreFailed(&error)) {
            Action::RetryLater => {
                if !failing {
                    tracing::warn!(%error, "the store is unavailable; holding the batch and retrying");
                    failing = true;
                }
                if stop.out_of_time() {
                    return Err(Unfinished::OutOfTime);
                }
                let wait = backoff.min(stop.time_left());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.requested() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Action::Ack | Action::DeadLetterThenAck => return Ok(Err(error)),
        }
    }
}

/// Publishes a copy of each rejected message to the dead-letter exchange, with the reason in
/// headers, and waits until the broker has confirmed every one.
async fn dead_letter(
    config: &Config,
    publish: &Channel,
    rejected: &[(&Delivery, Rejection)],
) -> lapin::Result<()> {
    let mut confirms = Vec::with_capacity(rejected.len());
    for (delivery, rejection) in rejected {
        tracing::info!(
            code = %rejection.code,
            detail = %rejection,
            routing_key = %delivery.routing_key,
            "dead-lettering a report"
        );
        let original = &delivery.properties;
        let mut headers = original.headers().clone().unwrap_or_default();
        let text = |value: &str| AMQPValue::LongString(value.into());
        headers.insert(ERROR_HEADER.into(), text(rejection.code.as_str()));
        headers.insert(DETAIL_HEADER.into(), text(&rejection.to_string()));
        headers.insert(ROUTING_KEY_HEADER.into(), text(delivery.routing_key.as_str()));
        if let Some(user) = original.user_id() {
            headers.insert(USER_ID_HEADER.into(), text(user.as_str()));
        }
        let properties = carried_over(original, headers);
        let confirm = publish
            .basic_publish(
                config.dead_letter_exchange.as_str().into(),
                delivery.routing_key.clone(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &delivery.data,
                properties,
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        let confirmation = confirm.await?;
        if !confirmation.is_ack() || confirmation.take_message().is_some() {
            return Err(lapin::Error::from(std::io::Error::other(
                "the broker did not take a dead letter; the batch will be redelivered",
            )));
        }
    }
    Ok(())
}
