//! The dead-letter queue for operators: what is in it, and moving letters back to the reports
//! exchange once what rejected them is fixed.

use std::collections::BTreeMap;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};

use pollwatch_model::wire::{DETAIL_HEADER, ERROR_HEADER, ROUTING_KEY_HEADER, USER_ID_HEADER};

use crate::letter::is_reserved;

/// The code of a letter that neither the worker wrote nor the broker dead-lettered: someone
/// published it to the dead-letter exchange, and whatever `x-pollwatch-*` headers it carries are
/// not ours.
pub const UNVERIFIED_CODE: &str = "unverified";

/// At most this much of a text read from a letter's headers is kept (it is printed to operators).
const MAX_TEXT: usize = 1024;

/// One dead letter, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The worker's code (docs/report-codes.md), the broker's dead-lettering reason from
    /// `x-death` (`delivery_limit`, `rejected`, `expired`, `maxlen`), or [`UNVERIFIED_CODE`].
    pub code: String,
    pub detail: String,
    /// Who put it in the dead-letter queue.
    pub origin: Origin,
    /// The routing key the report was first published with.
    pub routing_key: String,
    pub message_id: Option<String>,
    /// The `user_id` it was published with, if any.
    pub sender: Option<String>,
    pub body: Vec<u8>,
}

/// Who dead-lettered a letter, judged only by what a device cannot forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Published by the worker's broker user (the broker checks `user_id`), with no `x-death`.
    Worker,
    /// Dead-lettered by the broker itself: it carries `x-death`, which the worker never writes
    /// and strips from what it carries over, and the broker adds only when it dead-letters.
    Broker,
    /// Neither: published to the dead-letter exchange by someone else.
    Unverified,
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
    text(headers.inner().get(&ShortString::from(name))?)
}

fn text(value: &AMQPValue) -> Option<String> {
    let text = match value {
        AMQPValue::LongString(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        AMQPValue::ShortString(value) => value.to_string(),
        _ => return None,
    };
    Some(bounded(text))
}

/// `text` cut to [`MAX_TEXT`] bytes, control characters escaped: it is printed to operators.
fn bounded(text: String) -> String {
    pollwatch_model::bounded(text, MAX_TEXT)
}

/// The broker's latest dead-lettering of a message: `x-death`'s first entry.
struct Death {
    reason: String,
    queue: String,
    count: i64,
    routing_key: Option<String>,
}

fn death(headers: &FieldTable) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get(&ShortString::from("x-death"))? else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else { return None };
    let field = |name: &str| latest.inner().get(&ShortString::from(name));
    let count = match field("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 1,
    };
    let routing_key = match field("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(text),
        _ => None,
    };
    Some(Death {
        reason: field("reason").and_then(text).unwrap_or_else(|| "unknown".to_owned()),
        queue: field("queue").and_then(text).unwrap_or_default(),
        count,
        routing_key,
    })
}

/// Reads a letter as an operator should see it. Only a letter published by `worker_user` (the
/// broker user the worker connects as) and without `x-death` is read by our headers; a letter
/// the broker dead-lettered is read by its `x-death` reason, whatever `x-pollwatch-*` headers it
/// carries.
fn letter(delivery: &lapin::message::Delivery, worker_user: &str) -> DeadLetter {
    let properties = &delivery.properties;
    let headers = properties.headers().clone().unwrap_or_default();
    let published_by = properties.user_id().as_ref().map(ShortString::as_str);
    let message_id = properties.message_id().as_ref().map(|id| bounded(id.to_string()));
    let body = delivery.data.clone();
    if let Some(death) = death(&headers) {
        return DeadLetter {
            detail: format!(
                "dead-lettered by the broker from queue `{}` ({}, {} times)",
                death.queue, death.reason, death.count
            ),
            code: death.reason,
            origin: Origin::Broker,
            routing_key: death.routing_key.unwrap_or_else(|| delivery.routing_key.to_string()),
            message_id,
            sender: published_by.map(str::to_owned),
            body,
        };
    }
    match (published_by, header(&headers, ERROR_HEADER)) {
        (Some(user), Some(code)) if user == worker_user => DeadLetter {
            code,
            detail: header(&headers, DETAIL_HEADER).unwrap_or_default(),
            origin: Origin::Worker,
            routing_key: header(&headers, ROUTING_KEY_HEADER)
                .unwrap_or_else(|| delivery.routing_key.to_string()),
            message_id,
            sender: header(&headers, USER_ID_HEADER),
            body,
        },
        _ => DeadLetter {
            code: UNVERIFIED_CODE.to_owned(),
            detail: format!(
                "not written by the worker's broker user `{worker_user}` (published by {}) and not dead-lettered by the broker",
                published_by.map_or_else(
                    || "an unnamed user".to_owned(),
                    |user| format!("`{}`", bounded(user.to_owned()))
                )
            ),
            origin: Origin::Unverified,
            routing_key: delivery.routing_key.to_string(),
            message_id,
            sender: published_by.map(str::to_owned),
            body,
        },
    }
}

/// Every letter in `queue`, oldest first, left in the queue: each is taken unacknowledged and all
/// are returned to the queue at the end, in their order.
///
/// Letters are read as the worker's only if published by `worker_user`, the broker user the
/// worker connects as.
pub async fn list(connection: &Connection, queue: &str, worker_user: &str) -> lapin::Result<Vec<DeadLetter>> {
    let channel = connection.create_channel().await?;
    let mut letters = Vec::new();
    let mut last = None;
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
        letters.push(letter(&message.delivery, worker_user));
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
    worker_user: &str,
) -> lapin::Result<Replayed> {
    let channel = connection.create_channel().await?;
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut replayed = Replayed::default();
    let mut kept_any = None;
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
        let delivery = &message.delivery;
        let letter = letter(delivery, worker_user);
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
        if !is_reserved(name.as_str()) {
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
