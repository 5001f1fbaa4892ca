//! The consume → judge → commit → dead-letter → ack loop, its reconnects and its shutdown.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher as _, Hash as _, Hasher as _, RandomState};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::ConfirmSelectOptions;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use pollwatch_model::wire::PUBLISHED_AT_HEADER;
use pollwatch_model::{Envelope, Mission, Rejection};
use pollwatch_publish::{CONNECT_TIMEOUT, ConnectError, Nodes};
use pollwatch_store::{Incoming, Outcome, Store, StoreError};

use crate::letter::{Carry, letter};
use crate::message::judge;
use crate::metrics::Metrics;
use crate::{Action, Config, Disposition, action, broker_user, topology};

/// How often the worker looks at its channel while it takes no deliveries (its batches wait for
/// the store): a connection lost meanwhile ends the session, so that what it holds goes back to
/// the queue at once rather than when the store is back.
const BROKER_CHECK: Duration = Duration::from_millis(250);

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
    /// The broker went away or misbehaved: reconnect.
    Broker(BrokerFailure),
}

/// What went wrong with the broker.
#[derive(Debug, thiserror::Error)]
enum BrokerFailure {
    #[error("timed out connecting to the broker")]
    ConnectTimedOut,
    /// It refused the connection or the session's set-up, in a way that may pass.
    #[error(transparent)]
    Unreachable(lapin::Error),
    /// An error on the connection or a channel while consuming.
    #[error(transparent)]
    Lost(lapin::Error),
    #[error("the channel closed while the batches in hand waited")]
    ChannelClosed,
    #[error("the broker cancelled the consumer")]
    ConsumerCancelled,
}

impl BrokerFailure {
    /// Whether the session got as far as consuming: then it was an outage's end, not one more
    /// failed attempt at reaching the broker.
    fn consumed(&self) -> bool {
        match self {
            Self::ConnectTimedOut | Self::Unreachable(_) => false,
            Self::Lost(_) | Self::ChannelClosed | Self::ConsumerCancelled => true,
        }
    }
}

impl From<ConnectError> for BrokerFailure {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::TimedOut => Self::ConnectTimedOut,
            ConnectError::Broker(error) => Self::Unreachable(error),
        }
    }
}

/// Capped exponential backoff: the first wait is [`Backoff::FIRST`], each one after it twice
/// the one before, up to [`Backoff::MAX`], until [`Backoff::reset`]. Both of the worker's retry
/// loops (reaching the broker, committing to the store) wait with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    /// Longest wait between two attempts.
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// How long to wait before the next attempt; the wait after it is longer.
    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(Self::MAX);
        wait
    }

    /// Starts again from the shortest wait.
    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// What the worker knows of the broker across sessions, so that it logs an outage once and
/// counts reconnects only after a first connection.
#[derive(Debug, Default)]
struct BrokerState {
    /// A session has consumed since the worker started.
    connected_before: bool,
    /// The last session failed, and none has consumed since.
    lost: bool,
}

impl BrokerState {
    /// Takes note of a failed session, and says so once per outage, not once per attempt.
    fn failed(&mut self, failure: &BrokerFailure, retry_in: Duration) {
        if failure.consumed() {
            self.connected_before = true;
            self.lost = false;
        }
        if !self.lost && self.connected_before {
            tracing::warn!(error = %failure, "lost the broker; reconnecting with backoff");
        } else if !self.lost {
            tracing::warn!(error = %failure, "cannot reach the broker; retrying with backoff");
        } else {
            tracing::debug!(error = %failure, ?retry_in, "the broker is still unreachable");
        }
        self.lost = true;
    }
}

/// A shutdown request and how long the worker has left to honour it.
struct Stop<'a> {
    signal: Pin<&'a mut (dyn Future<Output = ()> + Send)>,
    since: Option<Instant>,
    deadline: Duration,
}

/// What a shutdown request has come to.
enum StopEvent {
    /// Just requested: take nothing more, finish the batches in hand.
    Requested,
    /// Its deadline has passed.
    Expired,
}

impl Stop<'_> {
    /// Completes when shutdown is requested (at once if it already was).
    async fn requested(&mut self) {
        if self.since.is_none() {
            self.signal.as_mut().await;
            self.since = Some(Instant::now());
            tracing::info!(deadline = ?self.deadline, "shutdown requested; finishing the batches in hand");
        }
    }

    /// The request, once; after it, its deadline passing.
    async fn next_event(&mut self) -> StopEvent {
        if self.since.is_none() {
            self.requested().await;
            return StopEvent::Requested;
        }
        tokio::time::sleep(self.time_left()).await;
        StopEvent::Expired
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
    let mut backoff = Backoff::new();
    let mut broker = BrokerState::default();
    let suspects = Suspects::default();
    let worker_user = broker_user(config.amqp_url.first().expose());
    let nodes = Nodes::new(config.amqp_url.expose()).expect("settings give a node at least");
    loop {
        let context = Context {
            config,
            store,
            mission,
            metrics,
            suspects: &suspects,
            worker_user: &worker_user,
            nodes: &nodes,
        };
        let ended = session(&context, &mut stop, &mut summary).await;
        metrics.set_broker_connected(false);
        metrics.unacknowledged_returned();
        let failure = match ended? {
            SessionEnd::Stopped => {
                tracing::info!(?summary, "worker stopped");
                return Ok(summary);
            }
            SessionEnd::Broker(failure) => failure,
        };
        // A session that consumed was an outage's end: the next outage starts from the
        // shortest wait again.
        if failure.consumed() {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        broker.failed(&failure, wait);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.requested() => {
                tracing::info!(?summary, "worker stopped while the broker was away");
                return Ok(summary);
            }
        }
        if broker.connected_before {
            summary.reconnects += 1;
            metrics.reconnected();
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
    suspects: &'a Suspects,
    /// The broker user the worker connects as: the `user_id` of its dead letters.
    worker_user: &'a str,
    /// The broker's nodes: a session connects to the first that answers.
    nodes: &'a Nodes,
}

/// One connection: set up, then batches until shutdown or a broker failure.
async fn session(
    context: &Context<'_>,
    stop: &mut Stop<'_>,
    summary: &mut Summary,
) -> Result<SessionEnd, WorkerError> {
    let config = context.config;
    let (connection, node) = match context.nodes.connect(CONNECT_TIMEOUT).await {
        Ok(connected) => connected,
        Err(error) => return Ok(SessionEnd::Broker(error.into())),
    };
    let (consume, publish, consumer) = match open(&connection, config).await {
        Ok(opened) => opened,
        Err(error) if is_refusal(&error) => return Err(WorkerError::Setup(error.to_string())),
        Err(error) => {
            context.nodes.failed(node);
            return Ok(SessionEnd::Broker(BrokerFailure::Unreachable(error)));
        }
    };
    let frame_max = connection.configuration().frame_max();
    let at = &config.amqp_url.nodes()[node];
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, frame_max, node = %at, "consuming");
    context.metrics.set_broker_connected(true);

    let session = Session { consume: &consume, publish: &publish, frame_max };
    let end = batches(context, stop, summary, &session, consumer).await;
    if matches!(end, SessionEnd::Broker(_)) {
        // The node went: the next session tries the others first.
        context.nodes.failed(node);
    }
    if matches!(end, SessionEnd::Stopped) {
        // Unacknowledged deliveries (none, unless time ran out) go back to the queue on close.
        let _ = consume.close(200, "worker stopping".into()).await;
        let _ = publish.close(200, "worker stopping".into()).await;
        let _ = connection.close(200, "worker stopping".into()).await;
    }
    Ok(end)
}

/// A refusal that reconnecting cannot fix, such as a queue declared with other arguments
/// (`PRECONDITION_FAILED`) or a user without the permissions the set-up needs (`ACCESS_REFUSED`).
fn is_refusal(error: &lapin::Error) -> bool {
    let lapin::ErrorKind::ProtocolError(error) = error.kind() else { return false };
    matches!(
        error.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED)
    )
}

async fn open(connection: &Connection, config: &Config) -> lapin::Result<(Channel, Channel, Consumer)> {
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    topology::declare(connection, &publish, config).await?;
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

/// Deliveries gathered for one commit, each judged as it arrived.
#[derive(Default)]
struct Batch {
    deliveries: Vec<Delivery>,
    accepted: Vec<Incoming>,
    /// The position (in `deliveries`) of the delivery each accepted report came in.
    accepted_from: Vec<usize>,
    rejected: Vec<(usize, Rejection)>,
    /// When its first delivery arrived; the linger runs from then.
    since: Option<tokio::time::Instant>,
}

impl Batch {
    fn len(&self) -> usize {
        self.deliveries.len()
    }

    fn add(&mut self, context: &Context<'_>, delivery: Delivery) {
        context.metrics.received(1);
        let properties = &delivery.properties;
        let envelope = Envelope {
            body: &delivery.data,
            content_type: properties.content_type().as_ref().map(ShortString::as_str),
            content_encoding: properties.content_encoding().as_ref().map(ShortString::as_str),
            user_id: properties.user_id().as_ref().map(ShortString::as_str),
        };
        let position = self.deliveries.len();
        match judge(&envelope, delivery.redelivered, context.mission, context.config.rules, Utc::now()) {
            Ok(incoming) => {
                self.accepted.push(incoming);
                self.accepted_from.push(position);
            }
            Err(rejection) => self.rejected.push((position, rejection)),
        }
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.deliveries.push(delivery);
    }
}

/// A batch's commit, under way.
type Committing<'a> = Pin<Box<dyn Future<Output = Committed> + Send + 'a>>;
/// A committed batch's dead letters and acknowledgement, under way.
type Acknowledging<'a> = Pin<Box<dyn Future<Output = lapin::Result<(u64, u64)>> + Send + 'a>>;

/// What woke the batching loop, when it is more than a delivery to add to the batch.
enum Event {
    Committed(Committed),
    Acknowledged(lapin::Result<(u64, u64)>),
    Stop(StopEvent),
    BrokerLost(BrokerFailure),
    Other,
}

/// Runs the batches through two stages, each one batch at a time: the store's commit, then the
/// broker's part (publishing the rejections to the dead-letter exchange, waiting for the
/// broker's confirms, acknowledging). Meanwhile the next batch fills and is judged. So the store
/// commits batch n+1 while the broker confirms batch n's dead letters, and neither waits for the
/// other. A batch is committed when it is full, or when its first delivery has waited
/// `batch_linger`, and never before the previous batch is committed. Acknowledgements go out in
/// delivery order, each after the batch before it is acknowledged: one `multiple` ack covers
/// everything received before it, and a batch is acknowledged only once its rejections are safe
/// in the dead-letter queue.
async fn batches(
    context: &Context<'_>,
    stop: &mut Stop<'_>,
    summary: &mut Summary,
    session: &Session<'_>,
    mut consumer: Consumer,
) -> SessionEnd {
    let config = context.config;
    let batch_size = config.batch_size.clamp(1, usize::from(config.prefetch.max(1)));
    let mut filling = Batch::default();
    // At most one future in each. Held in a `FuturesUnordered` so that it is polled only when its
    // own waker fires, not every time a delivery wakes this loop: polling a pending store future
    // means taking the lock its database thread is working under.
    let mut committing: FuturesUnordered<Committing<'_>> = FuturesUnordered::new();
    let mut acknowledging: FuturesUnordered<Acknowledging<'_>> = FuturesUnordered::new();
    // Committed batches waiting for the one before them to be acknowledged.
    let mut committed: VecDeque<Committed> = VecDeque::new();
    let mut taking = true;
    loop {
        let due = filling.since.map(|since| since + config.batch_linger);
        let ready = filling.len() >= batch_size
            || (filling.len() > 0 && !taking)
            || due.is_some_and(|due| due <= tokio::time::Instant::now());
        if committing.is_empty() && ready {
            let batch = std::mem::take(&mut filling);
            committing.push(Box::pin(commit_batch(*context, batch)));
        }
        if acknowledging.is_empty()
            && let Some(next) = committed.pop_front()
        {
            acknowledging.push(Box::pin(acknowledge(*context, session, next)));
        }
        if !taking && committing.is_empty() && acknowledging.is_empty() {
            return SessionEnd::Stopped;
        }
        let polling = taking && filling.len() < batch_size;
        let event = tokio::select! {
            biased;
            Some(done) = acknowledging.next(), if !acknowledging.is_empty() => Event::Acknowledged(done),
            Some(done) = committing.next(), if !committing.is_empty() => Event::Committed(done),
            event = stop.next_event() => Event::Stop(event),
            next = consumer.next(), if polling => match next {
                Some(Ok(delivery)) => {
                    filling.add(context, delivery);
                    Event::Other
                }
                // Nothing of the batches in hand is acknowledged; the broker redelivers all of it.
                Some(Err(error)) => Event::BrokerLost(BrokerFailure::Lost(error)),
                None => Event::BrokerLost(BrokerFailure::ConsumerCancelled),
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                if committing.is_empty() && due.is_some() => Event::Other,
            () = tokio::time::sleep(BROKER_CHECK), if !polling => {
                if session.consume.status().connected() { Event::Other } else { Event::BrokerLost(BrokerFailure::ChannelClosed) }
            }
        };
        match event {
            Event::Committed(batch) => committed.push_back(batch),
            Event::Acknowledged(Ok((stored, dead_lettered))) => {
                summary.committed += stored;
                summary.dead_lettered += dead_lettered;
                summary.batches += 1;
            }
            Event::Acknowledged(Err(error)) => return SessionEnd::Broker(BrokerFailure::Lost(error)),
            Event::BrokerLost(failure) => return SessionEnd::Broker(failure),
            Event::Stop(StopEvent::Requested) => {
                // Take nothing more; what the broker already sent beyond the batches in hand
                // goes back to the queue when the channel closes.
                taking = false;
                let _ = session.consume.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
            }
            Event::Stop(StopEvent::Expired) => {
                tracing::warn!(
                    filling = filling.len(),
                    committing = !committing.is_empty(),
                    unacknowledged = committed.len() + acknowledging.len(),
                    "shutdown deadline passed; the batches in hand are left to the next worker"
                );
                // Dropping a commit rolls its transaction back, unless it already committed;
                // then the redelivered reports are recognised as duplicates.
                return SessionEnd::Stopped;
            }
            Event::Other => {}
        }
    }
}

/// A batch the store has committed, on its way to being acknowledged.
struct Committed {
    deliveries: Vec<Delivery>,
    /// Deliveries judged unacceptable, by position in `deliveries`.
    rejected: Vec<(usize, Rejection)>,
    /// What the store made of each accepted report (an outcome, or a refusal for good), by
    /// position in `deliveries`.
    stored: Vec<(usize, Result<Outcome, StoreError>)>,
    started: Instant,
}

impl Committed {
    /// What became of each delivery, by position: the rejected ones first, in delivery order,
    /// then the ones the store took, in theirs.
    fn dispositions(&self) -> impl Iterator<Item = (usize, Disposition<'_>)> {
        let rejected =
            self.rejected.iter().map(|(position, rejection)| (*position, Disposition::Rejected(rejection)));
        let stored = self.stored.iter().map(|(position, stored)| match stored {
            Ok(outcome) => (*position, Disposition::Committed(*outcome)),
            Err(error) => (*position, Disposition::StoreFailed(error)),
        });
        rejected.chain(stored)
    }
}

/// Commits a batch's accepted reports (waiting out store outages) and counts their outcomes.
async fn commit_batch(context: Context<'_>, batch: Batch) -> Committed {
    let Context { store, metrics, .. } = context;
    let Batch { deliveries, accepted, accepted_from, rejected, .. } = batch;
    let started = Instant::now();
    let results = commit(store, &accepted).await;
    let committed_at = Utc::now().timestamp_micros();
    for outcome in results.iter().filter_map(|result| result.as_ref().ok()) {
        metrics.outcome(*outcome);
    }
    for &position in &accepted_from {
        if let Some(published_at) = published_at(&deliveries[position]) {
            metrics.published_to_committed(Duration::from_micros(
                committed_at.saturating_sub(published_at).max(0) as u64,
            ));
        }
    }
    let stored = accepted_from.into_iter().zip(results).collect();
    Committed { deliveries, rejected, stored, started }
}

/// Carries out, for every delivery of a committed batch, what [`action`] decides: dead-letters
/// what must be, waits for the broker's confirms, then acknowledges the batch; returns
/// (committed, dead-lettered).
async fn acknowledge(
    context: Context<'_>,
    session: &Session<'_>,
    batch: Committed,
) -> lapin::Result<(u64, u64)> {
    let mut letters = Vec::new();
    for (position, disposition) in batch.dispositions() {
        match action(&disposition) {
            Action::DeadLetterThenAck(reason) => letters.push((position, reason)),
            // Acknowledged below with the rest of the batch. The commit stage has waited out
            // every store failure that may pass, so nothing here is left to retry.
            Action::Ack | Action::RetryLater => {}
        }
    }
    let Committed { deliveries, started, .. } = batch;
    let dead_lettered = letters.len() as u64;
    dead_letter(context, session, &deliveries, &letters).await?;
    let last = deliveries.iter().map(|d| d.delivery_tag).max().expect("a batch is not empty");
    // Every delivery this channel received before this batch's last one is acknowledged, handed
    // back to the broker, or in this batch: one frame acks them all.
    session.consume.basic_ack(last, BasicAckOptions { multiple: true }).await?;
    context.metrics.batch_done(deliveries.len(), started.elapsed());
    Ok((deliveries.len() as u64 - dead_lettered, dead_lettered))
}

/// The publisher's [`PUBLISHED_AT_HEADER`] (microseconds since the epoch), if the message has one.
pub fn published_at(delivery: &Delivery) -> Option<i64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(PUBLISHED_AT_HEADER))? {
        AMQPValue::LongLongInt(us) => Some(*us),
        AMQPValue::Timestamp(us) => i64::try_from(*us).ok(),
        _ => None,
    }
}

/// Commits `reports` in one transaction, waiting out store outages for as long as it takes
/// (nothing is acknowledged meanwhile, and the consumer takes at most one more batch: memory stays
/// bounded by the prefetch; a shutdown deadline drops this future). A batch the store refuses for
/// good is retried report by report. Returns, for each report in order, its outcome or the
/// store's refusal of it on its own.
async fn commit(store: &Store, reports: &[Incoming]) -> Vec<Result<Outcome, StoreError>> {
    if reports.is_empty() {
        return Vec::new();
    }
    match commit_with_retries(store, reports).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) => {
            tracing::warn!(%error, reports = reports.len(), "the store refused a batch; trying its reports one by one");
            let mut results = Vec::with_capacity(reports.len());
            for report in reports {
                match commit_with_retries(store, std::slice::from_ref(report)).await {
                    Ok(outcome) => results.extend(outcome.into_iter().map(Ok)),
                    Err(error) => results.push(Err(error)),
                }
            }
            results
        }
    }
}

/// `Ok(outcomes)` committed; `Err(_)` refused for good. Retryable failures are retried with backoff.
async fn commit_with_retries(store: &Store, reports: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let error = match store.ingest_batch(reports).await {
            Ok(outcomes) => {
                if failing {
                    tracing::info!("the store is back");
                }
                return Ok(outcomes);
            }
            Err(error) => error,
        };
        match action(&Disposition::StoreFailed(&error)) {
            Action::RetryLater => {
                if !failing {
                    tracing::warn!(%error, "the store is unavailable; holding the batch and retrying");
                    failing = true;
                }
                tokio::time::sleep(backoff.next_wait()).await;
            }
            // Refused for good: the acknowledging stage asks `action` again, for the reason.
            Action::Ack | Action::DeadLetterThenAck(_) => return Err(error),
        }
    }
}

/// The channels of one connection to the broker, and its negotiated frame size.
struct Session<'a> {
    consume: &'a Channel,
    publish: &'a Channel,
    frame_max: u32,
}

/// Publishes a copy of each rejected message to the dead-letter exchange, with the reason in
/// headers, and waits until the broker has confirmed every one.
///
/// No message can hold up the others: a letter is built to fit the connection's frame
/// ([`letter`]); a message whose letter failed before (the connection closed under it) is
/// recognised when it comes back and dead-lettered without its own headers; one that failed that
/// way too, or whose letter the broker refused, is handed to the broker's own dead-lettering
/// (`basic.nack` without requeue: it reaches the dead-letter queue with the broker's `x-death`
/// reason `rejected`).
async fn dead_letter(
    context: Context<'_>,
    session: &Session<'_>,
    deliveries: &[Delivery],
    rejected: &[(usize, Rejection)],
) -> lapin::Result<()> {
    let Context { config, metrics, suspects, worker_user, .. } = context;
    let mut confirms = Vec::with_capacity(rejected.len());
    let fingerprints: Vec<u64> = rejected
        .iter()
        .map(|(position, _)| {
            let delivery = &deliveries[*position];
            let message_id = delivery.properties.message_id().as_ref().map(ShortString::as_str);
            suspects.fingerprint(delivery.routing_key.as_str(), message_id, &delivery.data)
        })
        .collect();
    let failed_before = suspects.attempt(&fingerprints);
    for ((position, rejection), failed_before) in rejected.iter().zip(failed_before) {
        let delivery = &deliveries[*position];
        let carry = match failed_before {
            0 => Carry::Headers,
            1 => Carry::Nothing,
            _ => {
                tracing::warn!(code = %rejection.code, "a dead letter of this message failed twice; the broker dead-letters it");
                give_to_broker(session, delivery).await?;
                metrics.dead_letter_refused();
                continue;
            }
        };
        let letter = letter(
            &delivery.properties,
            delivery.routing_key.as_str(),
            rejection,
            worker_user,
            session.frame_max,
            carry,
        );
        tracing::info!(
            code = %letter.code,
            detail = %rejection,
            routing_key = %delivery.routing_key,
            dropped_headers = letter.dropped_headers,
            "dead-lettering a report"
        );
        let confirm = session
            .publish
            .basic_publish(
                config.dead_letter_exchange.as_str().into(),
                delivery.routing_key.clone(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &delivery.data,
                letter.properties,
            )
            .await?;
        confirms.push((delivery, letter.code, confirm));
    }
    for (delivery, code, confirm) in confirms {
        let confirmation = confirm.await?;
        if confirmation.is_ack() && confirmation.take_message().is_none() {
            metrics.dead_letter(code);
        } else {
            tracing::warn!(%code, "the broker refused a dead letter; the broker dead-letters the message itself");
            give_to_broker(session, delivery).await?;
            metrics.dead_letter_refused();
        }
    }
    suspects.settled(&fingerprints);
    Ok(())
}

/// Hands a delivery back to the broker's own dead-lettering (to our dead-letter exchange, with
/// `x-death`), so that it neither blocks the queue nor comes round again.
async fn give_to_broker(session: &Session<'_>, delivery: &Delivery) -> lapin::Result<()> {
    session
        .consume
        .basic_nack(delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: false })
        .await
}

/// Messages whose dead letter was being published when the connection failed, by fingerprint,
/// with how many such attempts they have had: when they come back, the worker writes their
/// letter without the part that may have failed, and after that leaves them to the broker.
#[derive(Debug, Default)]
struct Suspects {
    attempts: Mutex<HashMap<u64, u8>>,
    /// Keyed per process, so that nobody can craft messages that share a fingerprint.
    hasher: RandomState,
}

impl Suspects {
    /// More suspects than any run of failures leaves; past it, they are forgotten.
    const MAX: usize = 100_000;

    /// The fingerprint of the message published with `routing_key`, `message_id` and `body`.
    fn fingerprint(&self, routing_key: &str, message_id: Option<&str>, body: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        routing_key.hash(&mut hasher);
        message_id.hash(&mut hasher);
        body.hash(&mut hasher);
        hasher.finish()
    }

    /// Records an attempt at dead-lettering one batch's messages: for each, the failed attempts
    /// before this batch (two equal messages in one batch are one attempt, not a failure).
    fn attempt(&self, fingerprints: &[u64]) -> Vec<u8> {
        let mut attempts = self.attempts.lock().expect("suspects lock");
        if attempts.len() >= Self::MAX {
            attempts.clear();
        }
        let before: Vec<u8> =
            fingerprints.iter().map(|f| attempts.get(f).copied().unwrap_or_default()).collect();
        let distinct: std::collections::HashSet<&u64> = fingerprints.iter().collect();
        for fingerprint in distinct {
            let count = attempts.entry(*fingerprint).or_default();
            *count = count.saturating_add(1);
        }
        before
    }

    /// The letters of these messages are confirmed (or given to the broker).
    fn settled(&self, fingerprints: &[u64]) {
        let mut attempts = self.attempts.lock().expect("suspects lock");
        for fingerprint in fingerprints {
            attempts.remove(fingerprint);
        }
    }
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPHardError};

    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap_until_reset() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits[..4], [100, 200, 400, 800].map(Duration::from_millis));
        assert_eq!(waits[7..], [Backoff::MAX; 3], "capped");
        backoff.reset();
        assert_eq!(backoff.next_wait(), Backoff::FIRST);
    }

    fn protocol_error(kind: AMQPErrorKind) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "whatever the text says".into())).into()
    }

    #[test]
    fn only_a_refused_set_up_is_a_refusal() {
        assert!(is_refusal(&protocol_error(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))));
        assert!(is_refusal(&protocol_error(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED))));
        assert!(!is_refusal(&protocol_error(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))));
        assert!(!is_refusal(&protocol_error(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED))));
        let text = std::io::Error::other("PRECONDITION_FAILED - a message that only looks like one");
        assert!(!is_refusal(&lapin::Error::from(text)), "the kind decides, not the text");
    }

    #[test]
    fn only_a_session_that_consumed_ends_an_outage() {
        assert!(!BrokerFailure::ConnectTimedOut.consumed());
        assert!(BrokerFailure::ChannelClosed.consumed());
        assert!(BrokerFailure::ConsumerCancelled.consumed());
    }

    #[test]
    fn a_message_whose_letter_failed_is_recognised_until_its_letter_is_settled() {
        let suspects = Suspects::default();
        let message = suspects.fingerprint("report.voting", Some("id-1"), b"{}");
        // Two equal messages in one batch are not each other's failure.
        assert_eq!(suspects.attempt(&[message, message]), [0, 0]);
        // The connection failed under that batch's letters: the message comes back, and again.
        assert_eq!(suspects.attempt(&[message]), [1]);
        assert_eq!(suspects.attempt(&[message]), [2]);
        // Another message, or the same body under another id, is not a suspect.
        assert_ne!(suspects.fingerprint("report.voting", Some("id-2"), b"{}"), message);
        assert_ne!(suspects.fingerprint("report.voting", Some("id-1"), b"[]"), message);
        suspects.settled(&[message]);
        assert_eq!(suspects.attempt(&[message]), [0], "settled letters are forgotten");
    }
}
