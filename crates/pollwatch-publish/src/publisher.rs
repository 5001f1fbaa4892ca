//! Sending the outbox to the broker: persistent, mandatory messages, publisher confirms with a
//! window of outstanding messages, and a report leaves the outbox only once confirmed.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};

use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};

use pollwatch_model::wire;

use crate::outbox::{Outbox, OutboxError};

/// How a device reaches the broker.
#[derive(Clone)]
pub struct PublisherConfig {
    /// The broker's nodes, their URLs with the device's own credentials: never printed.
    pub nodes: Arc<Nodes>,
    /// The reports exchange (`amqp.exchange`).
    pub exchange: String,
    /// The device's broker user, sent as `user_id` (RabbitMQ checks it against the login).
    pub user_id: Option<String>,
    /// Messages published but not yet confirmed, at most.
    pub window: usize,
}

/// Shows everything but the URL, which carries the device's password. A device does not link
/// `pollwatch-settings` (and its config parsing) for its `SecretUrl`, so the URL is left out
/// whole rather than parsed and redacted here a second way.
impl fmt::Debug for PublisherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { nodes, exchange, user_id, window } = self;
        f.debug_struct("PublisherConfig")
            .field("nodes", nodes)
            .field("exchange", exchange)
            .field("user_id", user_id)
            .field("window", window)
            .finish()
    }
}

/// One message as it goes on the wire. Reports from the outbox become messages with the
/// device's `user_id`; the simulator also sends messages a real device would not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `report.<kind>` ([`wire::routing_key`]).
    pub routing_key: String,
    /// The report id, so that the broker's tools and the dead-letter queue can name the report.
    pub message_id: String,
    /// [`wire::JSON`] for every report a device sends.
    pub content_type: Option<String>,
    /// The broker user the message claims to come from (RabbitMQ refuses any but the
    /// connection's own, unless that user has the `impersonator` tag).
    pub user_id: Option<String>,
    /// When the report was queued on the device (Unix seconds); `None` for the moment it is
    /// published.
    pub timestamp: Option<u64>,
    pub body: Vec<u8>,
}

impl Message {
    /// A report as a device sends it.
    pub fn report(report: &pollwatch_model::Report, user_id: Option<String>) -> Self {
        Self {
            routing_key: wire::routing_key(report.kind()),
            message_id: report.report_id.to_string(),
            content_type: Some(wire::JSON.to_owned()),
            user_id,
            timestamp: None,
            body: serde_json::to_vec(report).expect("a report serialises"),
        }
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flushed {
    /// Confirmed by the broker and removed from the outbox.
    pub confirmed: u64,
    /// Returned as unroutable (no queue bound for its routing key): kept in the outbox.
    pub unroutable: u64,
    /// Refused by the broker (a negative confirm): kept in the outbox.
    pub refused: u64,
}

/// How long connecting to the broker may take before it counts as a failure, for every pollwatch
/// process that connects.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`connect`] returned no connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("timed out connecting to the broker")]
    TimedOut,
    #[error(transparent)]
    Broker(#[from] lapin::Error),
}

/// A broker's nodes, in the order to try them, and the one to try first: the last that
/// answered, or the one after a node that failed. Shared by the clones of a config.
pub struct Nodes {
    urls: Vec<String>,
    first: AtomicUsize,
}

impl Nodes {
    /// `urls` with their credentials; `None` without one.
    pub fn new(urls: Vec<String>) -> Option<Self> {
        (!urls.is_empty()).then(|| Self { urls, first: AtomicUsize::new(0) })
    }

    /// Connects to the first node that answers, from the one to try first on, each given
    /// `timeout`; and the position of the node it reached (from 0). All failing, the last
    /// node's error.
    pub async fn connect(&self, timeout: Duration) -> Result<(Connection, usize), ConnectError> {
        let start = self.first.load(Ordering::Relaxed) % self.urls.len();
        let mut last = None;
        for k in 0..self.urls.len() {
            let node = (start + k) % self.urls.len();
            match connect(&self.urls[node], timeout).await {
                Ok(connection) => {
                    self.first.store(node, Ordering::Relaxed);
                    return Ok((connection, node));
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("a node was tried"))
    }

    /// The connection to `node` failed: the next connect starts with the node after it.
    pub fn failed(&self, node: usize) {
        let _ = self.first.compare_exchange(
            node,
            (node + 1) % self.urls.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// Shows how many nodes, never a URL: they carry passwords.
impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nodes({} nodes, first {})", self.urls.len(), self.first.load(Ordering::Relaxed))
    }
}

/// Connects to the broker at `url`, giving up after `timeout`: the one way every pollwatch
/// process (device, worker, operators' tools) opens a connection to a node.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, ConnectError> {
    let connecting = Connection::connect(url, ConnectionProperties::default());
    Ok(tokio::time::timeout(timeout, connecting).await.map_err(|_| ConnectError::TimedOut)??)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl From<ConnectError> for PublishError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::TimedOut => Self::ConnectTimeout,
            ConnectError::Broker(error) => Self::Broker(error),
        }
    }
}

/// Publishes everything in `outbox` once, oldest first, and removes what the broker confirms.
/// Reports it could not deliver stay queued for the next flush; a broker failure ends the flush
/// with an error, and what was confirmed before it is already removed.
pub async fn flush(config: &PublisherConfig, outbox: &Outbox) -> Result<Flushed, PublishError> {
    flush_with_progress(config, outbox, &|_| {}).await
}

/// [`flush`], calling `progress` with the number of reports settled so far (confirmed, returned
/// or refused) after each.
pub async fn flush_with_progress(
    config: &PublisherConfig,
    outbox: &Outbox,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Flushed, PublishError> {
    let mut window = Window::open(config, progress).await?;
    let flushed = flush_through(&mut window, config, outbox).await;
    window.closed_with(flushed).await
}

async fn flush_through(
    window: &mut Window<'_>,
    config: &PublisherConfig,
    outbox: &Outbox,
) -> Result<(), PublishError> {
    let mut after = 0;
    loop {
        let page = outbox.pending(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for pending in &page {
            let message = Message {
                routing_key: pending.routing_key.clone(),
                message_id: pending.report_id.clone(),
                content_type: Some(wire::JSON.to_owned()),
                user_id: config.user_id.clone(),
                timestamp: u64::try_from(pending.queued_at.timestamp()).ok(),
                body: pending.body.clone(),
            };
            window.send(pending.seq, &message).await?;
        }
        outbox.remove(&window.take_confirmed()).await?;
    }
    window.drain().await?;
    outbox.remove(&window.take_confirmed()).await?;
    Ok(())
}

/// Publishes `messages` in order (not through an outbox: generated messages, to measure or to
/// simulate) with confirms over the configured window, and says what the broker did with them.
/// With `due`, message `i` is not published before `due[i]` has passed since the start.
pub async fn publish_all(
    config: &PublisherConfig,
    messages: &[Message],
    due: Option<&[Duration]>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Flushed, PublishError> {
    let mut window = Window::open(config, progress).await?;
    let published = async {
        let start = tokio::time::Instant::now();
        for (i, message) in messages.iter().enumerate() {
            if let Some(after) = due.and_then(|due| due.get(i)) {
                // Confirms that arrive meanwhile are taken as they come, so that progress is
                // current.
                window.settle_until(start + *after).await?;
            }
            window.send(i64::try_from(i).unwrap_or(i64::MAX), message).await?;
            window.take_confirmed();
        }
        window.drain().await
    }
    .await
    .map_err(PublishError::from);
    window.closed_with(published).await
}

/// One connection publishing with confirms, at most `config.window` of them outstanding.
struct Window<'a> {
    config: &'a PublisherConfig,
    progress: &'a (dyn Fn(u64) + Sync),
    connection: Connection,
    /// The node connected to (its position in the config's nodes).
    node: usize,
    channel: Channel,
    /// Boxed, so that waiting for the oldest confirm can give up at a deadline and resume.
    in_flight: VecDeque<(i64, Pin<Box<PublisherConfirm>>)>,
    flushed: Flushed,
    /// Outbox positions confirmed since the last [`Window::take_confirmed`].
    confirmed: Vec<i64>,
}

impl<'a> Window<'a> {
    async fn open(
        config: &'a PublisherConfig,
        progress: &'a (dyn Fn(u64) + Sync),
    ) -> Result<Window<'a>, PublishError> {
        let (connection, node) = config.nodes.connect(CONNECT_TIMEOUT).await?;
        let opened = async {
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let channel = opened.await.inspect_err(|_| config.nodes.failed(node))?;
        let in_flight = VecDeque::with_capacity(config.window.max(1));
        Ok(Self {
            config,
            progress,
            connection,
            node,
            channel,
            in_flight,
            flushed: Flushed::default(),
            confirmed: Vec::new(),
        })
    }

    /// Publishes one message, first waiting for the oldest confirm if the window is full; `seq`
    /// is what [`Window::take_confirmed`] returns once it is confirmed.
    async fn send(&mut self, seq: i64, message: &Message) -> lapin::Result<()> {
        if self.in_flight.len() >= self.config.window.max(1) {
            self.settle_oldest().await?;
        }
        let confirm = publish(&self.channel, &self.config.exchange, message).await?;
        self.in_flight.push_back((seq, Box::pin(confirm)));
        Ok(())
    }

    /// Waits for every outstanding confirm.
    async fn drain(&mut self) -> lapin::Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    fn take_confirmed(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.confirmed)
    }

    async fn settle_oldest(&mut self) -> lapin::Result<()> {
        let (seq, confirm) = self.in_flight.pop_front().expect("a message in flight");
        let confirmation = confirm.await?;
        self.settle(seq, confirmation);
        Ok(())
    }

    /// Takes confirms as they arrive until `deadline`, then returns (at once when none is
    /// outstanding, after the deadline otherwise).
    async fn settle_until(&mut self, deadline: tokio::time::Instant) -> lapin::Result<()> {
        while let Some((seq, confirm)) = self.in_flight.front_mut() {
            let seq = *seq;
            match tokio::time::timeout_at(deadline, confirm.as_mut()).await {
                Ok(confirmation) => {
                    self.in_flight.pop_front();
                    self.settle(seq, confirmation?);
                }
                Err(_) => return Ok(()),
            }
        }
        tokio::time::sleep_until(deadline).await;
        Ok(())
    }

    fn settle(&mut self, seq: i64, confirmation: Confirmation) {
        if !confirmation.is_ack() {
            self.flushed.refused += 1;
        } else if confirmation.take_message().is_some() {
            tracing::warn!(seq, "the broker had no queue for a report; it stays in the outbox");
            self.flushed.unroutable += 1;
        } else {
            self.flushed.confirmed += 1;
            self.confirmed.push(seq);
        }
        (self.progress)(self.flushed.confirmed + self.flushed.unroutable + self.flushed.refused);
    }

    /// Closes the window after `ended`: what it settled, or the error. The node a broker error
    /// came from is tried last next time.
    async fn closed_with(self, ended: Result<(), PublishError>) -> Result<Flushed, PublishError> {
        match ended {
            Ok(()) => Ok(self.close().await),
            Err(error) => {
                if matches!(error, PublishError::Broker(_)) {
                    self.config.nodes.failed(self.node);
                }
                Err(error)
            }
        }
    }

    async fn close(self) -> Flushed {
        let _ = self.channel.close(200, "published".into()).await;
        let _ = self.connection.close(200, "published".into()).await;
        self.flushed
    }
}

async fn publish(channel: &Channel, exchange: &str, message: &Message) -> lapin::Result<PublisherConfirm> {
    let kind = wire::kind_of(&message.routing_key);
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message.message_id.as_str().into())
        .with_type(kind.into())
        .with_timestamp(message.timestamp.unwrap_or_else(now));
    if let Some(content_type) = &message.content_type {
        properties = properties.with_content_type(content_type.as_str().into());
    }
    if let Some(user) = &message.user_id {
        properties = properties.with_user_id(user.as_str().into());
    }
    // For the worker's publish-to-commit measurement.
    let mut headers = FieldTable::default();
    headers.insert(
        wire::PUBLISHED_AT_HEADER.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_micros()),
    );
    properties = properties.with_headers(headers);
    channel
        .basic_publish(
            exchange.into(),
            message.routing_key.as_str().into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &message.body,
            properties,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_never_prints_the_password() {
        let nodes = Nodes::new(vec!["amqp://dev-obs-001:s3cr3t@broker.example:5672/%2f".into()]);
        let config = PublisherConfig {
            nodes: Arc::new(nodes.expect("a node")),
            exchange: "reports".into(),
            user_id: Some("dev-obs-001".into()),
            window: 1_000,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("exchange: \"reports\"") && shown.contains("1 nodes"), "{shown}");
    }

    /// Nodes that refuse at once (nothing listens on port 1): every one is tried, from the
    /// one to try first, and a failed node is tried last next time.
    #[tokio::test]
    async fn every_node_is_tried_and_a_failed_one_goes_last() {
        assert!(Nodes::new(Vec::new()).is_none());
        let nodes = Nodes::new(vec!["amqp://127.0.0.1:1/%2f".into(), "amqp://127.0.0.2:1/%2f".into()])
            .expect("two nodes");
        assert!(nodes.connect(Duration::from_secs(5)).await.is_err(), "no node answers");
        assert_eq!(nodes.first.load(Ordering::Relaxed), 0);
        nodes.failed(0);
        assert_eq!(nodes.first.load(Ordering::Relaxed), 1);
        // Another's failure, reported late, does not move it.
        nodes.failed(0);
        assert_eq!(nodes.first.load(Ordering::Relaxed), 1);
        nodes.failed(1);
        assert_eq!(nodes.first.load(Ordering::Relaxed), 0, "round again");
    }
}
