//! The dead-letter queue for operators: what is in it, and moving letters back to the reports
//! exchange once what rejected them is fixed.

use std::collections::BTreeMap;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};

use crate::{DETAIL_HEADER, ERROR_HEADER, ROUTING_KEY_HEADER, USER_ID_HEADER};

/// The code of a letter the broker dead-lettered itself (past the delivery limit, say), which
/// carries no reason of ours.
pub const BROKER_CODE: &str = "dead_lettered_by_broker";

/// One dead letter, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub code: String,
    pub detail: String,
    /// The routing key the report was first published with.
    pub routing_key: String,
    pub message_id: Option<String>,
    /// The `user_id` it was published with, if any.
    pub sender: Option<String>,
    pub body: Vec<u8>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Letters published back to the reports exchange (confirmed) and removed.
    pub moved: u64,
    /// Letters left in the queue (another code).
    pub kept: u64,
}

fn header(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::ShortString(value) => Some(value.to_string()),
        _ => None,
    }
}

fn letter(delivery: &lapin::message::Delivery) -> DeadLetter {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    DeadLetter {
        code: header(&headers, ERROR_HEADER).unwrap_or_else(|| BROKER_CODE.to_owned()),
        detail: header(&headers, DETAIL_HEADER).unwrap_or_default(),
        routing_key: header(&headers, ROUTING_KEY_HEADER).unwrap_or_else(|| delivery.routing_key.to_string()),
        message_id: delivery.properties.message_id().as_ref().map(ToString::to_string),
        sender: header(&headers, USER_ID_HEADER),
        body: delivery.data.clone(),
    }
}

/// Every letter in `queue`, oldest first, left in the queue: each is taken unacknowledged and all
/// are returned to the queue at the end, in their order.
pub async fn list(connection: &Connection, queue: &str) -> lapin::Result<Vec<DeadLetter>> {
    let channel = connection.create_channel().await?;
    let mut letters = Vec::new();
    let mut last = None;
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
        letters.push(letter(&message.delivery));
        last = Some(message.delivery.delivery_tag);
    }
    if let Some(last) = last {
        channel.basic_nack(last, BasicNackOptions { multiple: true, requeue: true }).await?;
    }
    channel.close(200, "listed".into()).await?;
    Ok(letters)
}

/// Letters per code.
pub fn stats(letters: &[DeadLetter]) -> BTreeMap<&str, u64> {
    let mut counts = BTreeMap::new();
    for letter in letters {
        *counts.entry(letter.code.as_str()).or_default() += 1;
    }
    counts
}

/// Publishes each letter of `queue` (of `code`, or all) back to `exchange` with its first routing
/// key, waits for the broker's confirm, then removes it: each letter is moved once. A letter
/// whose publish is not confirmed stays. Our headers are removed; the original `user_id` cannot
/// be restored (the broker only accepts the replaying connection's own), so with
/// `require_sender_auth` a replayed report is judged without it.
pub async fn replay(
    connection: &Connection,
    queue: &str,
    exchange: &str,
    code: Option<&str>,
) -> lapin::Result<Replayed> {
    let channel = connection.create_channel().await?;
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut replayed = Replayed::default();
    let mut kept_any = None;
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
        let delivery = &message.delivery;
        let letter = letter(delivery);
        if code.is_some_and(|code| code != letter.code) {
            replayed.kept += 1;
            kept_any = Some(delivery.delivery_tag);
            continue;
        }
        if move_back(&publish, exchange, delivery, &letter).await? {
            channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await?;
            replayed.moved += 1;
        } else {
            replayed.kept += 1;
            kept_any = Some(delivery.delivery_tag);
        }
    }
    if let Some(last) = kept_any {
        channel.basic_nack(last, BasicNackOptions { multiple: true, requeue: true }).await?;
    }
    channel.close(200, "replayed".into()).await?;
    publish.close(200, "replayed".into()).await?;
    Ok(replayed)
}

/// Publishes one letter back and says whether the broker confirmed it (and routed it).
async fn move_back(
    publish: &Channel,
    exchange: &str,
    delivery: &lapin::message::Delivery,
    letter: &DeadLetter,
) -> lapin::Result<bool> {
    let original = &delivery.properties;
    let mut headers = FieldTable::default();
    for (name, value) in original.headers().clone().unwrap_or_default().inner() {
        if !name.as_str().starts_with("x-pollwatch-") && name.as_str() != "x-death" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let properties = crate::carried_over(original, headers);
    let confirm = publish
        .basic_publish(
            exchange.into(),
            letter.routing_key.as_str().into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &delivery.data,
            properties,
        )
        .await?;
    let confirmation = confirm.await?;
    Ok(confirmation.is_ack() && confirmation.take_message().is_none())
}
