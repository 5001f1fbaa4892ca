//! The ingest worker: consumes observer reports from RabbitMQ, judges them, commits the accepted
//! ones to the store in batches and only then acknowledges them.
//!
//! - [`pollwatch_model::judge`] decides, without I/O, whether a delivery is an accepted report or
//!   a rejection with a code ([`pollwatch_model::RejectCode`]); [`message`] adds the delivery's
//!   facts to make the store's `Incoming`.
//! - [`action`] maps whatever became of a delivery to what the worker does with it.
//! - [`run`] is the service: it declares the topology ([`topology`]), consumes with manual acks
//!   and a prefetch, gathers batches, commits them, dead-letters rejections with their reasons
//!   (confirmed by the broker before the original is acked), reconnects with backoff when the
//!   broker goes away, and stops cleanly when its `shutdown` future completes.

pub mod dlq;
pub mod letter;
mod message;
mod metrics;
pub mod topology;
mod worker;

use std::time::Duration;

use pollwatch_model::{RejectCode, Rejection};
use pollwatch_settings::BrokerUrls;
use pollwatch_store::{Outcome, StoreError};

pub use metrics::Metrics;
pub use pollwatch_model::Rules;
pub use worker::{Summary, WorkerError, published_at, run};

/// The broker user an AMQP URL logs in as (`guest` when it names none, as the broker assumes).
pub fn broker_user(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map_or_else(|_| "guest".to_owned(), |uri| uri.authority.userinfo.username)
}

/// The kind of ingest queue to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Quorum,
    Classic,
}

/// Everything the worker is told (from the `[amqp]` and `[ingest]` settings).
#[derive(Debug, Clone)]
pub struct Config {
    /// The broker's nodes, tried in order. They carry the worker's password: they print
    /// redacted, and only connecting exposes them.
    pub amqp_url: BrokerUrls,
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
    pub queue_kind: QueueKind,
    pub delivery_limit: u32,
    /// Most reports per store transaction; capped at `prefetch`.
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub rules: Rules,
    pub shutdown_deadline: Duration,
}

/// A persistent message with `headers` and the original's content type, content encoding,
/// message id, timestamp and type: what the worker dead-letters and what a replay sends back.
pub(crate) fn carried_over(
    original: &lapin::BasicProperties,
    headers: lapin::types::FieldTable,
) -> lapin::BasicProperties {
    let mut properties = lapin::BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(value) = original.content_type() {
        properties = properties.with_content_type(value.clone());
    }
    if let Some(value) = original.content_encoding() {
        properties = properties.with_content_encoding(value.clone());
    }
    if let Some(value) = original.message_id() {
        properties = properties.with_message_id(value.clone());
    }
    if let Some(value) = original.timestamp() {
        properties = properties.with_timestamp(*value);
    }
    if let Some(value) = original.kind() {
        properties = properties.with_type(value.clone());
    }
    properties
}

/// What became of one delivery.
#[derive(Debug)]
pub enum Disposition<'a> {
    /// The store committed it (whatever the outcome: stored, duplicate, stale, …).
    Committed(Outcome),
    /// It can never be accepted.
    Rejected(&'a Rejection),
    /// The store failed on it.
    StoreFailed(&'a StoreError),
}

/// What the worker does with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge it: its batch is committed.
    Ack,
    /// Publish a copy with this reason to the dead-letter exchange, wait for the broker's
    /// confirm, then acknowledge the original.
    DeadLetterThenAck(Rejection),
    /// Leave it unacknowledged and retry its batch later; take nothing new meanwhile.
    RetryLater,
}

/// The one place that decides ack, dead letter (and with which reason) or retry. The worker
/// asks it of every delivery: the commit stage when the store fails, the acknowledging stage for
/// every delivery of a committed batch.
pub fn action(disposition: &Disposition<'_>) -> Action {
    match disposition {
        Disposition::Committed(_) => Action::Ack,
        Disposition::Rejected(rejection) => Action::DeadLetterThenAck((*rejection).clone()),
        Disposition::StoreFailed(error) if error.is_retryable() => Action::RetryLater,
        // Refused for good even on its own: keeping it would block the queue forever.
        Disposition::StoreFailed(error) => {
            Action::DeadLetterThenAck(Rejection::new(RejectCode::StoreRejected, "$", error.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_never_prints_the_password() {
        let config = Config {
            amqp_url: pollwatch_settings::SecretUrl::new("amqp://worker:s3cr3t@broker.example:5672/%2f")
                .into(),
            exchange: "reports".into(),
            queue: "ingest".into(),
            dead_letter_exchange: "dead".into(),
            dead_letter_queue: "dead-letters".into(),
            prefetch: 600,
            queue_kind: QueueKind::Quorum,
            delivery_limit: 100,
            batch_size: 200,
            batch_linger: Duration::from_millis(20),
            rules: Rules { max_body_bytes: 65_536, require_sender_auth: true },
            shutdown_deadline: Duration::from_secs(10),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("worker:***@broker.example"), "{shown}");
    }

    #[test]
    fn every_disposition_has_its_action() {
        for outcome in [
            Outcome::Stored,
            Outcome::Revised,
            Outcome::Duplicate,
            Outcome::Stale,
            Outcome::Conflict,
            Outcome::Quarantined,
        ] {
            assert_eq!(action(&Disposition::Committed(outcome)), Action::Ack, "{outcome}");
        }
        let rejection = Rejection::new(RejectCode::MalformedJson, "$", "no");
        assert_eq!(action(&Disposition::Rejected(&rejection)), Action::DeadLetterThenAck(rejection.clone()));
        let busy = StoreError::Retryable("busy".into());
        assert_eq!(action(&Disposition::StoreFailed(&busy)), Action::RetryLater);
        let refused = StoreError::Permanent("check constraint".into());
        let stored_rejected = Rejection::new(RejectCode::StoreRejected, "$", refused.to_string());
        assert_eq!(action(&Disposition::StoreFailed(&refused)), Action::DeadLetterThenAck(stored_rejected));
    }
}
