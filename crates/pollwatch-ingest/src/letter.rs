//! The dead letter the worker writes for a rejected message: the original body, the original
//! properties it can carry, and our reason in headers of bounded size, the whole content header
//! checked against the connection's negotiated frame size. A message can therefore never make its
//! own dead letter unpublishable: a content header larger than `frame_max` makes RabbitMQ close
//! the connection (`FRAME_ERROR`), which would send the message, and every delivery in flight
//! with it, round again.
//!
//! Nothing here does I/O; the worker publishes what [`letter`] returns.

use lapin::BasicProperties;
use lapin::protocol::basic::gen_properties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use pollwatch_model::wire::{DETAIL_HEADER, ERROR_HEADER, HEADER_PREFIX, ROUTING_KEY_HEADER, USER_ID_HEADER};
use pollwatch_model::{RejectCode, Rejection, bounded};

use crate::carried_over;

/// Longest `x-pollwatch-detail` the worker writes, in bytes: a rejection's own bound.
pub use pollwatch_model::MAX_DETAIL_BYTES;

/// The frame size to assume when the connection negotiated none (0, "no limit" in AMQP 0-9-1):
/// RabbitMQ's default.
const DEFAULT_FRAME_MAX: u32 = 131_072;
/// A frame's own bytes around its payload: type (1), channel (2), payload size (4), end (1).
const FRAME_OVERHEAD: usize = 8;
/// A content header's payload before its properties: class (2), weight (2), body size (8).
const CONTENT_HEADER_FIXED: usize = 12;

/// How much of the original message a dead letter tries to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// The original's headers, as many as fit beside ours.
    Headers,
    /// None of the original's headers: a first dead letter of this message failed to publish.
    Nothing,
}

/// A dead letter ready to publish: its properties, and the code it carries (the rejection's, or
/// [`RejectCode::HeadersTooLarge`] when some of the original's headers had to be left out).
#[derive(Debug, Clone)]
pub struct Letter {
    pub properties: BasicProperties,
    pub code: RejectCode,
    /// Headers of the original left out to fit the frame.
    pub dropped_headers: usize,
}

/// The dead letter for a message with `original` properties, published with `routing_key`,
/// rejected for `rejection`, to be published by the broker user `worker_user` on a connection
/// whose frames are at most `frame_max` bytes.
///
/// Headers a device could forge are never carried over: the original's `x-pollwatch-*` headers
/// (ours are written afresh) and the broker's dead-lettering headers (`x-death` and the like),
/// which `pollwatch dlq` reads to tell letters the broker dead-lettered from ours. The letter's
/// `user_id` is the worker's own broker user, which the broker checks, so a letter published by
/// anyone else is recognisably not the worker's.
pub fn letter(
    original: &BasicProperties,
    routing_key: &str,
    rejection: &Rejection,
    worker_user: &str,
    frame_max: u32,
    carry: Carry,
) -> Letter {
    let budget = properties_budget(frame_max);
    let sender = original.user_id().as_ref().map(ShortString::as_str);
    let build = |code: RejectCode, detail: &str, foreign: &[(&ShortString, &AMQPValue)]| {
        let mut headers = FieldTable::default();
        for (name, value) in foreign {
            headers.insert((*name).clone(), (*value).clone());
        }
        headers.insert(ERROR_HEADER.into(), text(code.as_str()));
        headers.insert(DETAIL_HEADER.into(), text(&bounded(detail.to_owned(), MAX_DETAIL_BYTES)));
        headers.insert(ROUTING_KEY_HEADER.into(), text(routing_key));
        if let Some(sender) = sender {
            headers.insert(USER_ID_HEADER.into(), text(sender));
        }
        carried_over(original, headers).with_user_id(worker_user.into())
    };

    let detail = rejection.to_string();
    let foreign = match carry {
        Carry::Headers => foreign_headers(original),
        Carry::Nothing => Vec::new(),
    };
    let whole = build(rejection.code, &detail, &foreign);
    if encoded_len(&whole) <= budget {
        return Letter { properties: whole, code: rejection.code, dropped_headers: 0 };
    }

    // Keep the smallest of the original's headers while they fit beside ours; the detail says
    // what was left out and keeps the original reason.
    let total = foreign.len();
    let mut by_size: Vec<_> = foreign.into_iter().map(|entry| (entry_len(entry), entry)).collect();
    by_size.sort_by_key(|(len, _)| *len);
    let detail = |kept: usize| {
        format!(
            "the message's {total} headers do not fit in a dead letter beside the worker's; {} were left out; \
             rejected as {detail}",
            total - kept
        )
    };
    let mut kept: Vec<(&ShortString, &AMQPValue)> = Vec::new();
    for (_, entry) in &by_size {
        kept.push(*entry);
        if encoded_len(&build(RejectCode::HeadersTooLarge, &detail(kept.len()), &kept)) > budget {
            kept.pop();
            break;
        }
    }
    let properties = build(RejectCode::HeadersTooLarge, &detail(kept.len()), &kept);
    Letter { properties, code: RejectCode::HeadersTooLarge, dropped_headers: total - kept.len() }
}

/// The original's headers that a dead letter may carry, in the table's order.
fn foreign_headers(original: &BasicProperties) -> Vec<(&ShortString, &AMQPValue)> {
    let Some(headers) = original.headers() else { return Vec::new() };
    headers.inner().iter().filter(|(name, _)| !is_reserved(name.as_str())).collect()
}

/// Headers that only the worker or the broker may write.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with(HEADER_PREFIX)
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// The most bytes of properties a content header can carry on a connection with `frame_max`.
fn properties_budget(frame_max: u32) -> usize {
    let frame_max = if frame_max == 0 { DEFAULT_FRAME_MAX } else { frame_max };
    (frame_max as usize).saturating_sub(FRAME_OVERHEAD + CONTENT_HEADER_FIXED)
}

/// The size of the properties as lapin writes them into a content header (property flags
/// included), by lapin's own encoder.
pub fn encoded_len(properties: &BasicProperties) -> usize {
    // Writing into a Vec cannot fail; a failure would mean no bound could be checked.
    cookie_factory::gen_simple(gen_properties(properties), Vec::new())
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX)
}

/// One header's size in a field table.
fn entry_len((name, value): (&ShortString, &AMQPValue)) -> usize {
    let mut table = FieldTable::default();
    table.insert(name.clone(), value.clone());
    encoded_len(&BasicProperties::default().with_headers(table))
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_MAX: u32 = 131_072;

    fn rejection() -> Rejection {
        Rejection::new(RejectCode::UnknownKind, "kind", "unknown kind `x`")
    }

    fn header(letter: &Letter, name: &str) -> Option<String> {
        match letter.properties.headers().as_ref()?.inner().get(&ShortString::from(name))? {
            AMQPValue::LongString(value) => Some(value.to_string()),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn with_headers(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), value.clone());
        }
        BasicProperties::default()
            .with_content_type(pollwatch_model::wire::JSON.into())
            .with_user_id("device-1".into())
            .with_headers(table)
    }

    #[test]
    fn a_letter_carries_the_reason_the_routing_key_the_sender_and_the_original_headers() {
        let original = with_headers(&[("trace", text("abc"))]);
        let letter = letter(&original, "report.voting", &rejection(), "worker", FRAME_MAX, Carry::Headers);
        assert_eq!(letter.code, RejectCode::UnknownKind);
        assert_eq!(header(&letter, ERROR_HEADER).as_deref(), Some("unknown_kind"));
        assert_eq!(header(&letter, DETAIL_HEADER), Some(rejection().to_string()));
        assert_eq!(header(&letter, ROUTING_KEY_HEADER).as_deref(), Some("report.voting"));
        assert_eq!(header(&letter, USER_ID_HEADER).as_deref(), Some("device-1"));
        assert_eq!(header(&letter, "trace").as_deref(), Some("abc"));
        assert_eq!(letter.properties.user_id().as_ref().map(ShortString::as_str), Some("worker"));
        assert_eq!(letter.dropped_headers, 0);
    }

    #[test]
    fn headers_a_device_could_forge_are_not_carried_over() {
        let original = with_headers(&[
            (ERROR_HEADER, text("forged")),
            (DETAIL_HEADER, text("forged")),
            (USER_ID_HEADER, text("someone-else")),
            ("x-pollwatch-anything", text("forged")),
            ("x-death", AMQPValue::FieldArray(Default::default())),
            ("x-first-death-reason", text("delivery_limit")),
            ("x-last-death-queue", text("q")),
        ]);
        let letter = letter(&original, "report.voting", &rejection(), "worker", FRAME_MAX, Carry::Headers);
        assert_eq!(header(&letter, ERROR_HEADER).as_deref(), Some("unknown_kind"));
        assert_eq!(header(&letter, USER_ID_HEADER).as_deref(), Some("device-1"));
        let names: Vec<&str> =
            letter.properties.headers().as_ref().unwrap().inner().keys().map(ShortString::as_str).collect();
        assert_eq!(names, [DETAIL_HEADER, ERROR_HEADER, ROUTING_KEY_HEADER, USER_ID_HEADER]);
    }

    #[test]
    fn a_long_detail_is_cut_to_its_bound() {
        let long = Rejection::new(RejectCode::StoreRejected, "$", "é".repeat(10_000));
        let letter =
            letter(&BasicProperties::default(), "report.x", &long, "worker", FRAME_MAX, Carry::Headers);
        let detail = header(&letter, DETAIL_HEADER).unwrap();
        assert!(detail.len() <= MAX_DETAIL_BYTES && detail.ends_with("… (cut)"), "{}", detail.len());
    }

    /// Properties with headers of 10,000 bytes and a last one that brings them to `total` bytes.
    fn near(total: usize) -> BasicProperties {
        let mut headers: Vec<(String, AMQPValue)> =
            (0..12).map(|i| (format!("h{i:02}"), text(&"x".repeat(10_000)))).collect();
        headers.push(("small".into(), text("kept")));
        let build = |headers: &[(String, AMQPValue)]| {
            let pairs: Vec<(&str, AMQPValue)> =
                headers.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
            with_headers(&pairs)
        };
        let pad = total - encoded_len(&build(&headers)) - "pad".len() - 1 - 5;
        headers.push(("pad".into(), text(&"p".repeat(pad))));
        build(&headers)
    }

    #[test]
    fn headers_that_fit_beside_ours_are_all_carried() {
        let original = near(130_000);
        let letter = letter(&original, "report.voting", &rejection(), "worker", FRAME_MAX, Carry::Headers);
        assert_eq!((letter.code, letter.dropped_headers), (RejectCode::UnknownKind, 0));
    }

    #[test]
    fn headers_that_cannot_fit_are_left_out_and_the_code_says_so() {
        // Within the frame as published, but not with the worker's headers beside them.
        let original = near(131_000);
        assert_eq!(encoded_len(&original), 131_000);
        let letter = letter(&original, "report.voting", &rejection(), "worker", FRAME_MAX, Carry::Headers);
        assert_eq!(letter.code, RejectCode::HeadersTooLarge);
        assert_eq!(letter.dropped_headers, 1, "only the largest is left out");
        assert!(encoded_len(&letter.properties) <= properties_budget(FRAME_MAX));
        assert_eq!(header(&letter, "small").as_deref(), Some("kept"), "the smallest headers are kept");
        assert_eq!(header(&letter, "pad"), None);
        let detail = header(&letter, DETAIL_HEADER).unwrap();
        assert!(detail.contains("rejected as unknown_kind at kind"), "{detail}");
        assert_eq!(header(&letter, ERROR_HEADER).as_deref(), Some("headers_too_large"));
    }

    #[test]
    fn every_code_with_worst_case_input_makes_a_letter_within_its_bounds() {
        let huge = "\u{1F5F3}\n".repeat(100_000);
        for &code in RejectCode::ALL {
            let rejection = Rejection::new(code, huge.as_str(), huge.as_str());
            for original in [BasicProperties::default(), near(131_000)] {
                let letter = letter(
                    &original,
                    &"k".repeat(255),
                    &rejection,
                    &"w".repeat(255),
                    FRAME_MAX,
                    Carry::Headers,
                );
                let detail = header(&letter, DETAIL_HEADER).unwrap();
                assert!(detail.len() <= MAX_DETAIL_BYTES, "{code}: {}", detail.len());
                assert!(encoded_len(&letter.properties) <= properties_budget(FRAME_MAX), "{code}");
            }
        }
    }

    #[test]
    fn a_letter_without_the_originals_headers_always_fits_the_smallest_frame() {
        let huge = with_headers(&[("h", text(&"x".repeat(120_000)))]);
        let letter = letter(&huge, "report.voting", &rejection(), "worker", 4096, Carry::Nothing);
        assert_eq!(letter.code, RejectCode::UnknownKind);
        assert!(encoded_len(&letter.properties) <= properties_budget(4096));
        assert_eq!(header(&letter, "h"), None);
    }

    #[test]
    fn the_size_is_lapins_own_encoding() {
        // Property flags (2), then a short string (1 + 16 bytes).
        let properties = BasicProperties::default().with_content_type("application/json".into());
        assert_eq!(encoded_len(&properties), 2 + 1 + 16);
    }
}
