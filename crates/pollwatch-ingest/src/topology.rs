//! The exchanges and queues the worker relies on, declared idempotently at every connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use pollwatch_model::wire;

use crate::{Config, QueueKind};

/// Declares, in this order: our dead-letter exchange and the `dead-letters` queue bound to all
/// of it (the worker never consumes it); the reports exchange; the ingest queue, which sends what
/// the broker itself gives up on (past the delivery limit) to our dead-letter exchange; and the
/// binding of [`wire::BINDING_PATTERN`] (`report.*`) to it. Declaring what exists with the same
/// arguments changes nothing.
///
/// The dead-letter queue is of the ingest queue's type when it is created, so that a cluster
/// keeps both when a node goes (a classic queue lives on one node, and while that node is down
/// no worker can set up). One that exists already is left as it is, letters and type: `channel`
/// does the declaring, and a probe channel of `connection` first looks whether it exists.
pub async fn declare(connection: &Connection, channel: &Channel, config: &Config) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(
            config.dead_letter_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    if !exists(connection, &config.dead_letter_queue).await? {
        let mut arguments = FieldTable::default();
        if config.queue_kind == QueueKind::Quorum {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        }
        channel
            .queue_declare(
                config.dead_letter_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
    }
    channel
        .queue_bind(
            config.dead_letter_queue.as_str().into(),
            config.dead_letter_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(config.dead_letter_exchange.as_str().into()),
    );
    if config.queue_kind == QueueKind::Quorum {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongUInt(config.delivery_limit));
    }
    channel.queue_declare(config.queue.as_str().into(), QueueDeclareOptions::durable(), arguments).await?;
    channel
        .queue_bind(
            config.queue.as_str().into(),
            config.exchange.as_str().into(),
            wire::BINDING_PATTERN.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Whether queue `name` exists: a passive declare on a channel of its own, which the broker
/// closes when it does not.
async fn exists(connection: &Connection, name: &str) -> lapin::Result<bool> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    match probe.queue_declare(name.into(), passive, FieldTable::default()).await {
        Ok(_) => {
            let _ = probe.close(200, "looked".into()).await;
            Ok(true)
        }
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    let lapin::ErrorKind::ProtocolError(error) = error.kind() else { return false };
    matches!(error.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}
