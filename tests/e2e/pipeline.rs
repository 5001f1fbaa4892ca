//! Fuzzing the whole path a message takes, not only its decoder: random and mutated messages —
//! bodies, header tables, properties, encodings, sizes up to and past the limits — published to
//! a real broker and judged by `pollwatch worker` running as a process. After the run every
//! valid report is stored once, every other message is dead-lettered with the code the worker's
//! own `judge` gives it (a code of docs/report-codes.md), the worker never reconnected, `/readyz`
//! answered 200 throughout, and its memory stayed bounded.
//!
//! `cargo test` runs 2,000 messages; `POLLWATCH_FUZZ=full` runs 20,000 (README.md gives the
//! command; docs/benchmarks.md records its summary line).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::time::Duration;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, FieldArray, FieldTable, ShortString};
use pollwatch_model::{Envelope, Rules, judge};
use pollwatch_model::{Mission, RejectCode, Report, wire};
use pollwatch_store::Store;
use pollwatch_tests::{Readiness, fixtures, metric, spawn_worker, until_dead_letters};

use crate::faults::{gzip_bomb, peak_rss_kib, publish_confirmed, until_settled};

/// Messages per run: half valid reports, half fuzzed ones.
fn messages() -> usize {
    if std::env::var("POLLWATCH_FUZZ").is_ok_and(|v| v == "full") { 20_000 } else { 2_000 }
}

/// The worker's body limit: the binary runs with `config/default.toml`'s.
const MAX_BODY: usize = 262_144;
/// Headers a publisher may send stay under the broker's frame (131,072 bytes with the rest of
/// the content header): larger ones the broker refuses before the worker sees them.
const MAX_HEADER_BYTES: usize = 125_000;

/// One message as published.
struct Message {
    body: Vec<u8>,
    properties: BasicProperties,
    key: String,
}

/// A fuzzed message made from `report`: its body mutated in one of many ways, maybe with hostile
/// properties and headers too. Its `message_id` is `id`, so that its dead letter can be found.
fn fuzzed(id: usize, report: &Report, rng: &mut fixtures::Rng) -> Message {
    let json = serde_json::to_vec(report).expect("a report serialises");
    let (mut body, encoding) = body(&json, report, rng);
    let mut properties =
        BasicProperties::default().with_delivery_mode(2).with_message_id(id.to_string().into());
    properties = match rng.below(10) {
        0 => properties,
        1 => properties.with_content_type(short_text(rng, 200).as_str().into()),
        2 => properties.with_content_type("application/json; charset=utf-8".into()),
        _ => properties.with_content_type(wire::JSON.into()),
    };
    if let Some(encoding) = encoding {
        properties = properties.with_content_encoding(encoding.into());
    } else if rng.below(20) == 0 {
        properties = properties.with_content_encoding(short_text(rng, 50).as_str().into());
    }
    if rng.below(3) == 0 {
        properties = properties.with_headers(headers(rng));
    }
    if rng.below(5) == 0 {
        properties = properties
            .with_type(short_text(rng, 255).as_str().into())
            .with_correlation_id(short_text(rng, 255).as_str().into())
            .with_priority(rng.below(256) as u8)
            .with_timestamp(rng.next_u64());
    }
    if body.is_empty() && rng.below(2) == 0 {
        body = vec![0];
    }
    let key = if rng.below(10) == 0 { "report.x".to_owned() } else { wire::routing_key(report.kind()) };
    Message { body, properties, key }
}

/// A mutated body, and the content encoding it needs (gzip), if any.
fn body(json: &[u8], report: &Report, rng: &mut fixtures::Rng) -> (Vec<u8>, Option<&'static str>) {
    let edit = |rng: &mut fixtures::Rng| {
        let mut value = serde_json::to_value(report).expect("a report serialises");
        mutate(&mut value, rng, 0);
        serde_json::to_vec(&value).expect("JSON serialises")
    };
    match rng.below(16) {
        0 => ((0..rng.below(3_000)).map(|_| rng.next_u64() as u8).collect(), None),
        1 => (json[..rng.below(json.len() as u64) as usize].to_vec(), None),
        2 => {
            let mut body = json.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len() as u64) as usize;
                body[at] = rng.next_u64() as u8;
            }
            (body, None)
        }
        3 => ([b"\xEF\xBB\xBF".as_slice(), json].concat(), None),
        // A key twice, at the top or inside the first object that follows.
        4 => {
            let text = String::from_utf8(json.to_vec()).expect("UTF-8");
            let at = text.match_indices('{').nth(rng.below(3) as usize).map_or(0, |(at, _)| at);
            let twice = format!(
                "{}\"station\":\"KG-0001\",\"station\":\"KG-0002\",{}",
                &text[..=at],
                &text[at + 1..]
            );
            (twice.into_bytes(), None)
        }
        5 => (b"[".repeat(1 + rng.below(200_000) as usize), None),
        6 => (vec![b' '; MAX_BODY - 2 + rng.below(4) as usize], None),
        7 => (gzip(json, rng.below(3) as usize + 1), Some("gzip")),
        8 => (gzip(&edit(rng), 1), Some("gzip")),
        9 => (gzip_bomb().to_vec(), Some("gzip")),
        10 => (json[..json.len() / 2].to_vec(), Some("gzip")),
        _ => (edit(rng), None),
    }
}

/// `data` as gzip of `members` members, one after the other.
fn gzip(data: &[u8], members: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let size = data.len().div_ceil(members).max(1);
    for part in data.chunks(size) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).expect("in memory");
        out.extend(encoder.finish().expect("in memory"));
    }
    out
}

/// Changes a JSON value somewhere: a field removed, added, retyped, lengthened; an object turned
/// into an array; a number out of range.
fn mutate(value: &mut serde_json::Value, rng: &mut fixtures::Rng, depth: usize) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !map.is_empty() && (depth > 3 || rng.below(3) > 0 || depth == 0) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.below(keys.len() as u64) as usize].clone();
            match rng.below(8) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(random_text(rng, 300), Value::from(1));
                }
                2 => {
                    let fields: Vec<Value> = map.values().cloned().collect();
                    *value = Value::Array(fields);
                }
                _ => mutate(map.get_mut(&key).expect("a key of the map"), rng, depth + 1),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(2) == 0 => {
            let at = rng.below(items.len() as u64) as usize;
            mutate(&mut items[at], rng, depth + 1);
        }
        _ => {
            *value = match rng.below(9) {
                0 => Value::Null,
                1 => Value::from(rng.next_u64() as i64),
                2 => Value::from(-1),
                3 => Value::from(1.5),
                4 => Value::from("x".repeat(rng.below(300_000) as usize)),
                5 => Value::from(random_text(rng, 40)),
                6 => serde_json::json!([1, "two", {"three": 3}]),
                7 => serde_json::json!({"": null}),
                _ => Value::Bool(rng.below(2) == 0),
            };
        }
    }
}

/// Up to `max` characters of anything, control characters and non-ASCII included.
fn random_text(rng: &mut fixtures::Rng, max: u64) -> String {
    (0..rng.below(max + 1))
        .map(|_| match rng.below(4) {
            0 => char::from_u32(rng.below(0x20) as u32).unwrap_or('?'),
            1 => char::from_u32(0x400 + rng.below(0x100) as u32).unwrap_or('?'),
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect()
}

/// Random text of at most `max` bytes: what an AMQP short string holds.
fn short_text(rng: &mut fixtures::Rng, max: usize) -> String {
    let mut text = random_text(rng, max as u64);
    while text.len() > max {
        text.pop();
    }
    text
}

/// A random header table: values of every AMQP type, nested tables and arrays, forged headers
/// of ours and of the broker's, within what the broker takes in one frame.
fn headers(rng: &mut fixtures::Rng) -> FieldTable {
    let mut table = FieldTable::default();
    let forged = [
        wire::ERROR_HEADER,
        wire::DETAIL_HEADER,
        wire::ROUTING_KEY_HEADER,
        wire::USER_ID_HEADER,
        wire::PUBLISHED_AT_HEADER,
        "x-death",
        "x-first-death-reason",
    ];
    for _ in 0..rng.below(20) {
        let name: String = if rng.below(4) == 0 {
            forged[rng.below(forged.len() as u64) as usize].to_owned()
        } else {
            short_text(rng, 255)
        };
        table.insert(ShortString::from(name), value(rng, 0));
    }
    if rng.below(4) == 0 {
        // Near the frame: one large header.
        let size = rng.below(MAX_HEADER_BYTES as u64) as usize;
        table.insert("x-large".into(), AMQPValue::LongString("h".repeat(size).into()));
    }
    while pollwatch_ingest::letter::encoded_len(&BasicProperties::default().with_headers(table.clone()))
        > MAX_HEADER_BYTES
    {
        let first = table.inner().keys().next().cloned().expect("a header");
        let mut rest = FieldTable::default();
        for (name, value) in table.inner().iter().filter(|(name, _)| **name != first) {
            rest.insert(name.clone(), value.clone());
        }
        table = rest;
    }
    table
}

fn value(rng: &mut fixtures::Rng, depth: usize) -> AMQPValue {
    match rng.below(if depth > 2 { 10 } else { 12 }) {
        0 => AMQPValue::Boolean(rng.below(2) == 0),
        1 => AMQPValue::ShortShortInt(rng.next_u64() as i8),
        2 => AMQPValue::ShortInt(rng.next_u64() as i16),
        3 => AMQPValue::LongInt(rng.next_u64() as i32),
        4 => AMQPValue::LongLongInt(rng.next_u64() as i64),
        5 => AMQPValue::Double(f64::from(rng.next_u64() as u32) / 7.0),
        6 => AMQPValue::Timestamp(rng.next_u64()),
        7 => AMQPValue::Void,
        8 => {
            AMQPValue::ByteArray((0..rng.below(500)).map(|_| rng.next_u64() as u8).collect::<Vec<_>>().into())
        }
        9 => AMQPValue::LongString(random_text(rng, 2_000).as_str().into()),
        10 => {
            let mut array = FieldArray::default();
            for _ in 0..rng.below(5) {
                array.push(value(rng, depth + 1));
            }
            AMQPValue::FieldArray(array)
        }
        _ => {
            let mut table = FieldTable::default();
            for i in 0..rng.below(5) {
                table.insert(format!("k{i}").into(), value(rng, depth + 1));
            }
            AMQPValue::FieldTable(table)
        }
    }
}

/// What the worker must make of a message: the code it is dead-lettered with, or none when the
/// report must be stored. The worker's own `judge` decides; this test checks that the whole
/// path — broker, properties, headers, dead letter, acknowledgement — carries the verdict out.
fn verdict(message: &Message, mission: &Mission) -> Option<RejectCode> {
    let properties = &message.properties;
    let envelope = Envelope {
        body: &message.body,
        content_type: properties.content_type().as_ref().map(ShortString::as_str),
        content_encoding: properties.content_encoding().as_ref().map(ShortString::as_str),
        user_id: None,
    };
    let rules = Rules { max_body_bytes: MAX_BODY, require_sender_auth: false };
    judge(&envelope, mission, rules, Utc::now()).err().map(|rejection| rejection.code)
}

/// Random and mutated messages among valid reports, through a real broker and worker.
#[tokio::test]
async fn fuzzed_messages_through_the_whole_pipeline_harm_no_valid_report() -> anyhow::Result<()> {
    let n = messages();
    let broker = pollwatch_tests::broker().await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let mission = fixtures::kg_2021();
    let valid = fixtures::reports(&mission, n / 2, 401);
    let sources = fixtures::reports(&mission, n - n / 2, 402);
    let mut rng = fixtures::Rng::new(403);
    let fuzz: Vec<Message> =
        sources.iter().enumerate().map(|(id, report)| fuzzed(id, report, &mut rng)).collect();
    let verdicts: Vec<Option<RejectCode>> = fuzz.iter().map(|message| verdict(message, &mission)).collect();
    let accepted = verdicts.iter().filter(|v| v.is_none()).count();
    // "report.x" is routed too (the binding is `report.*`): every message reaches the worker.

    let mut worker = spawn_worker(&broker, &store_url, &[]).await?;
    let readiness = Readiness::watch(worker.address());

    let connection = broker.connect().await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let json = BasicProperties::default().with_delivery_mode(2).with_content_type(wire::JSON.into());
    let mut messages = Vec::with_capacity(valid.len() + fuzz.len());
    for (report, message) in valid.iter().zip(fuzz.iter()) {
        let key = wire::routing_key(report.kind());
        messages.push((key, serde_json::to_vec(report)?, json.clone()));
        messages.push((message.key.clone(), message.body.clone(), message.properties.clone()));
    }
    publish_confirmed(&channel, &broker.name("reports"), messages).await?;

    let store = Store::open(&store_url).await?;
    let expected_stored = valid.len() + accepted;
    until_settled(&store, expected_stored).await?;
    let rejected = fuzz.len() - accepted;
    let dead_letters = broker.name("dead-letters");
    let letters =
        until_dead_letters(&connection, &dead_letters, "guest", rejected, Duration::from_secs(120)).await?;
    let metrics = worker.metrics().await?;
    let seen = readiness.seen().await?;
    let peak_mib = peak_rss_kib(worker.pid()?)? / 1024;
    assert!(worker.is_running()?, "the worker is alive");
    worker.stop().await?;

    // Every dead letter is one of the rejected messages, with the code `judge` gave it.
    let mut wrong = Vec::new();
    let mut lettered: HashMap<usize, usize> = HashMap::new();
    for letter in &letters {
        let id: usize = letter.message_id.as_deref().unwrap_or_default().parse().unwrap_or(usize::MAX);
        *lettered.entry(id).or_default() += 1;
        let expected = verdicts.get(id).copied().flatten();
        let matches = match expected {
            Some(code) if letter.code == code.as_str() => true,
            Some(code) => letter.code == "headers_too_large" && letter.detail.contains(code.as_str()),
            None => false,
        };
        if !matches {
            wrong.push(format!("message {id}: {} ({}), expected {expected:?}", letter.code, letter.detail));
        }
    }
    let codes: BTreeMap<&str, u64> = pollwatch_ingest::dlq::stats(&letters);
    let known = |code: &str| RejectCode::ALL.iter().any(|c| c.as_str() == code);
    let reconnects = metric(&metrics, "pollwatch_broker_reconnects_total");
    let totals = store.totals().await?;
    let line = format!(
        "pipeline fuzz: {} messages ({} valid, {} fuzzed: {accepted} valid after all, {rejected} not): \
         valid stored {}/{expected_stored}, others dead-lettered {}/{rejected} with {} codes, reconnects {reconnects}, \
         /readyz {seen:?}, peak RSS {peak_mib} MiB\n",
        valid.len() + fuzz.len(),
        valid.len(),
        fuzz.len(),
        totals.revisions,
        letters.len(),
        codes.len(),
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert!(
        wrong.is_empty(),
        "{} letters not as judged, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(lettered.values().all(|&n| n == 1), "a message dead-lettered twice");
    assert!(codes.keys().all(|code| known(code)), "{codes:?}");
    assert_eq!(letters.len(), rejected, "{codes:?}");
    assert_eq!((totals.reports, totals.revisions), (expected_stored as i64, expected_stored as i64));
    assert_eq!(reconnects, 0);
    assert_eq!(seen, [200], "/readyz throughout");
    assert!(peak_mib < 256, "the worker's memory stays bounded: {peak_mib} MiB");
    Ok(())
}
