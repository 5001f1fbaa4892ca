//! Sending the outbox to the broker: persistent, mandatory messages, publisher confirms with a
//! window of outstanding messages, and a report leaves the outbox only once confirmed.

use std::collections::VecDeque;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use lapin::{BasicProperties, Connection, ConnectionProperties, PublisherConfirm};

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
    let connecting = Connection::connect(&config.url, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| PublishError::ConnectTimeout)??;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let window = config.window.max(1);
    let mut flushed = Flushed::default();
    let mut in_flight: VecDeque<(i64, PublisherConfirm)> = VecDeque::with_capacity(window);
    let mut confirmed: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let page = outbox.pending(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for pending in page {
            if in_flight.len() == window {
                let (seq, confirm) = in_flight.pop_front().expect("the window is full");
                settle(seq, confirm, &mut flushed, &mut confirmed).await?;
                progress(flushed.confirmed + flushed.unroutable + flushed.refused);
            }
            let confirm = publish(&channel, config, &pending).await?;
            in_flight.push_back((pending.seq, confirm));
        }
        outbox.remove(&std::mem::take(&mut confirmed)).await?;
    }
    while let Some((seq, confirm)) = in_flight.pop_front() {
        settle(seq, confirm, &mut flushed, &mut confirmed).await?;
        progress(flushed.confirmed + flushed.unroutable + flushed.refused);
    }
    outbox.remove(&confirmed).await?;
    let _ = channel.close(200, "flushed".into()).await;
    let _ = connection.close(200, "flushed".into()).await;
    Ok(flushed)
}

async fn publish(
    channel: &lapin::Channel,
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

async fn settle(
    seq: i64,
    confirm: PublisherConfirm,
    flushed: &mut Flushed,
    confirmed: &mut Vec<i64>,
) -> lapin::Result<()> {
    let confirmation = confirm.await?;
    if !confirmation.is_ack() {
        flushed.refused += 1;
    } else if confirmation.take_message().is_some() {
        tracing::warn!(seq, "the broker had no queue for a report; it stays in the outbox");
        flushed.unroutable += 1;
    } else {
        flushed.confirmed += 1;
        confirmed.push(seq);
    }
    Ok(())
}

/// Publishes `reports` (not through an outbox: a burst of generated reports, to measure) with
/// confirms over the configured window, and says what the broker did with them.
pub async fn publish_all(
    config: &PublisherConfig,
    reports: &[pollwatch_model::Report],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Flushed, PublishError> {
    let connecting = Connection::connect(&config.url, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| PublishError::ConnectTimeout)??;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let window = config.window.max(1);
    let mut flushed = Flushed::default();
    let mut in_flight: VecDeque<(i64, PublisherConfirm)> = VecDeque::with_capacity(window);
    let mut confirmed = Vec::new();
    let now = chrono::Utc::now();
    for (i, report) in reports.iter().enumerate() {
        if in_flight.len() == window {
            let (seq, confirm) = in_flight.pop_front().expect("the window is full");
            settle(seq, confirm, &mut flushed, &mut confirmed).await?;
            progress(flushed.confirmed + flushed.unroutable + flushed.refused);
            confirmed.clear();
        }
        let pending = Pending {
            seq: i64::try_from(i).unwrap_or(i64::MAX),
            report_id: report.report_id.to_string(),
            revision: i64::from(report.revision),
            routing_key: format!("report.{}", report.kind().as_str()),
            body: serde_json::to_vec(report).expect("a report serialises"),
            queued_at: now,
        };
        in_flight.push_back((pending.seq, publish(&channel, config, &pending).await?));
    }
    while let Some((seq, confirm)) = in_flight.pop_front() {
        settle(seq, confirm, &mut flushed, &mut confirmed).await?;
        progress(flushed.confirmed + flushed.unroutable + flushed.refused);
    }
    let _ = channel.close(200, "published".into()).await;
    let _ = connection.close(200, "published".into()).await;
    Ok(flushed)
}
