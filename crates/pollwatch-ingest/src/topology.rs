//! The exchanges and queues the worker relies on, declared idempotently at every connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use pollwatch_model::wire;

use crate::{Config, QueueKind};

/// Declares, in this order: our dead-letter exchange and the `dead-letters` queue bound to all
/// of it (the worker never consumes it); the reports exchange; the ingest queue, which sends what
/// the broker itself gives up on (past the delivery limit) to our dead-letter exchange; and the
/// binding of [`wire::BINDING_PATTERN`] (`report.*`) to it. Declaring what exists with the same arguments changes nothing.
pub async fn declare(channel: &Channel, config: &Config) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(
            config.dead_letter_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            config.dead_letter_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
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
