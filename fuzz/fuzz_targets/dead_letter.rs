//! Fuzzes the dead letter the worker builds (`pollwatch_ingest::letter::letter`) for a message
//! whose body and header table come from the input.
//!
//! The input is read as a frame size, a number of headers, then for each header a name and a
//! value (lengths taken from the input), and the rest as the body, which `pollwatch_model::check`
//! judges against kg-2021 (an accepted body gets a stand-in rejection, as the store may refuse
//! one). Whatever the input, the letter must:
//!
//! - fit the connection's frame (its content header no larger than `frame_max` allows);
//! - carry a detail of at most `MAX_DETAIL_BYTES`;
//! - carry our code, never one of the original's `x-pollwatch-*` or `x-death` headers;
//! - keep the rejection's code, or say `headers_too_large` when headers were left out.

#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use libfuzzer_sys::fuzz_target;
use pollwatch_ingest::letter::{Carry, MAX_DETAIL_BYTES, encoded_len, letter};
use pollwatch_model::wire::{DETAIL_HEADER, ERROR_HEADER};
use pollwatch_model::{Context, Mission, RejectCode, Rejection, check};

fn mission() -> &'static Mission {
    static MISSION: OnceLock<Mission> = OnceLock::new();
    MISSION.get_or_init(pollwatch_model::sample::kg_2021)
}

fn now() -> DateTime<Utc> {
    "2021-01-11T00:00:00Z".parse().expect("a fixed timestamp")
}

/// Takes `n` bytes off the front of `data` (fewer if it is shorter).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn number(data: &mut &[u8], bytes: usize) -> usize {
    take(data, bytes).iter().fold(0, |n, &b| n << 8 | usize::from(b))
}

/// The original's headers: names up to 255 bytes (as lossy UTF-8, cut to fit), long-string
/// values up to 64 KiB, some of them named like ours or the broker's.
fn headers(data: &mut &[u8]) -> FieldTable {
    const FORGED: [&str; 4] = ["x-pollwatch-error", "x-pollwatch-detail", "x-death", "x-first-death-reason"];
    let mut table = FieldTable::default();
    for _ in 0..number(data, 1) % 16 {
        let name_len = number(data, 1);
        let mut name = String::from_utf8_lossy(take(data, name_len)).into_owned();
        if name_len % 5 == 0 {
            name = FORGED[name_len / 5 % FORGED.len()].to_owned();
        }
        while name.len() > 255 {
            name.pop();
        }
        let value_len = number(data, 2);
        let value = take(data, value_len).to_vec();
        table.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
    }
    table
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    // AMQP's smallest frame is 4,096 bytes; RabbitMQ's default is 131,072.
    let frame_max = 4096 + (number(&mut data, 3) % (131_072 - 4096 + 1)) as u32;
    let original = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers(&mut data));
    let context = Context { mission: mission(), now: now(), sender: None };
    let rejection = check(data, &context)
        .err()
        .unwrap_or_else(|| Rejection::new(RejectCode::StoreRejected, "$", "a stand-in for an accepted body"));
    for carry in [Carry::Headers, Carry::Nothing] {
        let letter = letter(&original, "report.voting", &rejection, "pollwatch-worker", frame_max, carry);
        let size = encoded_len(&letter.properties);
        assert!(size + 20 <= frame_max as usize, "{size} bytes of properties for a frame of {frame_max}");
        let headers = letter.properties.headers().as_ref().expect("a letter has headers");
        let text = |name: &str| match headers.inner().get(&ShortString::from(name)) {
            Some(AMQPValue::LongString(value)) => value.to_string(),
            other => panic!("{name}: {other:?}"),
        };
        assert!(text(DETAIL_HEADER).len() <= MAX_DETAIL_BYTES);
        assert_eq!(text(ERROR_HEADER), letter.code.as_str());
        assert!(!headers.contains_key("x-death") && !headers.contains_key("x-first-death-reason"));
        assert!(letter.code == rejection.code || letter.code == RejectCode::HeadersTooLarge);
        assert_eq!(letter.code == RejectCode::HeadersTooLarge, letter.dropped_headers > 0);
    }
});
