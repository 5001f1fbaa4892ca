//! Sending the outbox to the broker: persistent, mandatory messages, publisher confirms with a
//! window of outstanding messages, and a report leaves the outbox only once confirmed.

use std::collections::VecDeque;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};

use crate::outbox::{Outbox, OutboxError, Pending};

/// How a device reaches the broker.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// AMQP URL with the device's own credentials.
    pub url: String,
    /// The reports exchange (`amqp.exchange`).
    pub exchange: String,
    /// The device's broker user, sent as `user_id` (RabbitMQ checks it against the login).
    pub user_id: Option<String>,
    /// Messages published but not yet confirmed, at most.
    pub window: usize,
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

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    #[error(transparent)]
    Outbox(#[from] OutboxError),
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
    let mut after = 0;
    loop {
        let page = outbox.pending(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for pending in &page {
            window.send(pending).await?;
        }
        outbox.remove(&window.take_confirmed()).await?;
    }
    window.drain().await?;
    outbox.remove(&window.take_confirmed()).await?;
    Ok(window.close().await)
}

/// Publishes `reports` (not through an outbox: a burst of generated reports, to measure) with
/// confirms over the configured window, and says what the broker did with them.
pub async fn publish_all(
    config: &PublisherConfig,
    reports: &[pollwatch_model::Report],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Flushed, PublishError> {
    let mut window = Window::open(config, progress).await?;
    let now = chrono::Utc::now();
    for (i, report) in reports.iter().enumerate() {
        window
            .send(&Pending {
                seq: i64::try_from(i).unwrap_or(i64::MAX),
                report_id: report.report_id.to_string(),
                revision: i64::from(report.revision),
                routing_key: format!("report.{}", report.kind().as_str()),
                body: serde_json::to_vec(report).expect("a report serialises"),
                queued_at: now,
            })
            .await?;
        window.take_confirmed();
    }
    window.drain().await?;
    Ok(window.close().await)
}

/// One connection publishing with confirms, at most `config.window` of them outstanding.
struct Window<'a> {
    config: &'a PublisherConfig,
    progress: &'a (dyn Fn(u64) + Sync),
    connection: Connection,
    channel: Channel,
    in_flight: VecDeque<(i64, PublisherConfirm)>,
    flushed: Flushed,
    /// Outbox positions confirmed since the last [`Window::take_confirmed`].
    confirmed: Vec<i64>,
}

impl<'a> Window<'a> {
    async fn open(
        config: &'a PublisherConfig,
        progress: &'a (dyn Fn(u64) + Sync),
    ) -> Result<Window<'a>, PublishError> {
        let connecting = Connection::connect(&config.url, ConnectionProperties::default());
        let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| PublishError::ConnectTimeout)??;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let in_flight = VecDeque::with_capacity(config.window.max(1));
        Ok(Self {
            config,
            progress,
            connection,
            channel,
            in_flight,
            flushed: Flushed::default(),
            confirmed: Vec::new(),
        })
    }

    /// Publishes one report, first waiting for the oldest confirm if the window is full.
    async fn send(&mut self, pending: &Pending) -> lapin::Result<()> {
        if self.in_flight.len() >= self.config.window.max(1) {
            self.settle_oldest().await?;
        }
        let confirm = publish(&self.channel, self.config, pending).await?;
        self.in_flight.push_back((pending.seq, confirm));
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
        Ok(())
    }

    async fn close(self) -> Flushed {
        let _ = self.channel.close(200, "published".into()).await;
        let _ = self.connection.close(200, "published".into()).await;
        self.flushed
    }
}

async fn publish(
    channel: &Channel,
    config: &PublisherConfig,
    pending: &Pending,
) -> lapin::Result<PublisherConfirm> {
    let kind = pending.routing_key.trim_start_matches("report.");
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(pending.report_id.as_str().into())
        .with_type(kind.into())
        .with_timestamp(u64::try_from(pending.queued_at.timestamp()).unwrap_or_default());
    if let Some(user) = &config.user_id {
        properties = properties.with_user_id(user.as_str().into());
    }
    channel
        .basic_publish(
            config.exchange.as_str().into(),
            pending.routing_key.as_str().into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &pending.body,
            properties,
        )
        .await
}
