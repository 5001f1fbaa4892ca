//! Judging one message off the wire: what the worker will do with it, decided without I/O from
//! the message's body and transport properties. Either an [`Accepted`] report (with its flags,
//! the JSON text to keep and the authenticated sender) or a [`Rejection`] with a code for the
//! dead-letter queue.
//!
//! The worker judges every delivery with [`judge`]; a simulator or a test that wants to know a
//! message's fate calls the same function rather than re-deriving the rules.

use std::io::Read as _;

use chrono::{DateTime, Utc};

use crate::codes::{Flag, RejectCode, Rejection};
use crate::detail::echo;
use crate::json::json_text;
use crate::mission::Mission;
use crate::report::Report;
use crate::validate::{Context, check};
use crate::wire;

/// What judging needs to know of a message: its body and the AMQP properties that say how to
/// read it and who sent it.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// The AMQP `user_id`, which RabbitMQ checks against the publishing connection's user.
    pub user_id: Option<&'a str>,
}

/// The rules a message is judged by (from the `[ingest]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Largest accepted body, before and after gzip decompression.
    pub max_body_bytes: usize,
    /// Whether a report must carry the `user_id` of its observer's device account.
    pub require_sender_auth: bool,
}

/// A message judged acceptable: what the store keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub report: Report,
    /// The model's flags; a report with any is held for review.
    pub flags: Vec<Flag>,
    /// The JSON text as received (decompressed, without a leading byte-order mark), for the
    /// audit trail.
    pub payload: String,
    /// The message's `user_id`, when it has a non-empty one: with `require_sender_auth`, the
    /// observer's device account.
    pub sender: Option<String>,
}

/// Checks a message's transport (size, `content_type`, `content_encoding`), then decodes,
/// validates and, with `rules.require_sender_auth`, authenticates its report.
pub fn judge(
    envelope: &Envelope<'_>,
    mission: &Mission,
    rules: Rules,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejection> {
    check_size(envelope.body, rules.max_body_bytes)?;
    check_content_type(envelope.content_type)?;
    let payload = decompress(envelope, rules.max_body_bytes)?;
    let sender = envelope.user_id.filter(|user| !user.is_empty());
    if rules.require_sender_auth && sender.is_none() {
        return Err(transport(
            RejectCode::SenderMissing,
            "the message has no user_id; this worker requires the observer's device account".into(),
        ));
    }
    let checked = check(&payload, &Context { mission, now, sender })?;
    if rules.require_sender_auth {
        check_sender(mission, &checked.report, sender.expect("checked above"))?;
    }
    // `check` accepted it, so it is UTF-8; what is kept is the JSON text, without the byte-order
    // mark that RFC 8259 lets a sender put before it.
    let payload = std::str::from_utf8(json_text(&payload)).expect("an accepted payload is UTF-8").to_owned();
    Ok(Accepted { report: checked.report, flags: checked.flags, payload, sender: sender.map(str::to_owned) })
}

/// A problem with the message rather than with the report in it: it has no field path.
fn transport(code: RejectCode, message: String) -> Rejection {
    Rejection::new(code, "$", message)
}

fn check_size(body: &[u8], limit: usize) -> Result<(), Rejection> {
    if body.len() > limit {
        return Err(transport(
            RejectCode::BodyTooLarge,
            format!("the body has {} bytes; the limit is {limit}", body.len()),
        ));
    }
    Ok(())
}

fn check_content_type(content_type: Option<&str>) -> Result<(), Rejection> {
    match content_type {
        None => Err(transport(
            RejectCode::MissingProperty,
            format!("the message has no content_type; reports are {}", wire::JSON),
        )),
        Some(content_type) if !wire::is_json(content_type) => Err(transport(
            RejectCode::UnsupportedContentType,
            format!("content_type is {}; reports are {}", echo(content_type), wire::JSON),
        )),
        Some(_) => Ok(()),
    }
}

/// The body as the sender wrote it: as it came, or gunzipped.
fn decompress(envelope: &Envelope<'_>, limit: usize) -> Result<Vec<u8>, Rejection> {
    match envelope.content_encoding.map(str::trim) {
        None | Some("" | "identity") => Ok(envelope.body.to_vec()),
        Some(encoding) if encoding.eq_ignore_ascii_case("gzip") => gunzip(envelope.body, limit),
        Some(other) => Err(transport(
            RejectCode::UnsupportedContentEncoding,
            format!("content_encoding is {}; only gzip is accepted", echo(other)),
        )),
    }
}

/// Decompresses at most `limit` bytes: a small body cannot expand into an unbounded one. Every
/// member of the stream is read: RFC 1952 lets a gzip file be several members one after the
/// other (what `cat a.gz b.gz` makes), meaning their contents joined.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body).take(limit_plus_one).read_to_end(&mut out).map_err(|e| {
        transport(RejectCode::UnsupportedContentEncoding, format!("the gzip body is broken: {e}"))
    })?;
    if out.len() > limit {
        return Err(transport(
            RejectCode::BodyTooLarge,
            format!("the body decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// With sender authentication, the `user_id` must be the device account of the report's
/// observer: the broker vouches for the user, the roster for whose device it is.
fn check_sender(mission: &Mission, report: &Report, sender: &str) -> Result<(), Rejection> {
    let device = mission.observer(&report.observer).map(|o| o.device_user.as_str());
    if device == Some(sender) {
        return Ok(());
    }
    let message = match device {
        Some(device) => format!(
            "sent by {}, but observer {}'s device account is `{device}`",
            echo(sender),
            report.observer
        ),
        None => format!(
            "sent by {} for observer {}, who is not in the roster",
            echo(sender),
            echo(&report.observer)
        ),
    };
    Err(Rejection::new(RejectCode::SenderMismatch, "observer", message))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const RULES: Rules = Rules { max_body_bytes: 64 * 1024, require_sender_auth: false };

    fn read(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn mission() -> Mission {
        crate::sample::kg_2021()
    }

    /// The morning after the election in Bishkek.
    fn now() -> DateTime<Utc> {
        "2021-01-11T03:00:00Z".parse().unwrap()
    }

    /// The committed example voting report.
    fn report() -> Vec<u8> {
        read("schema/examples/voting.json").into_bytes()
    }

    fn envelope(body: &[u8]) -> Envelope<'_> {
        Envelope { body, content_type: Some(wire::JSON), content_encoding: None, user_id: None }
    }

    fn code(result: Result<Accepted, Rejection>) -> RejectCode {
        result.expect_err("a rejection").code
    }

    #[test]
    fn a_valid_report_is_accepted_with_its_payload() {
        let body = report();
        let mission = mission();
        let accepted = judge(&envelope(&body), &mission, RULES, now()).unwrap();
        assert_eq!(accepted.payload.as_bytes(), body.as_slice());
        assert_eq!(accepted.sender, None);
    }

    #[test]
    fn transport_problems_have_their_own_codes() {
        let body = report();
        let mission = mission();
        let judge = |e: Envelope<'_>| judge(&e, &mission, RULES, now());
        assert_eq!(
            code(judge(Envelope { content_type: None, ..envelope(&body) })),
            RejectCode::MissingProperty
        );
        assert_eq!(
            code(judge(Envelope { content_type: Some("text/plain"), ..envelope(&body) })),
            RejectCode::UnsupportedContentType
        );
        assert_eq!(
            code(judge(Envelope { content_encoding: Some("br"), ..envelope(&body) })),
            RejectCode::UnsupportedContentEncoding
        );
        assert_eq!(
            code(judge(Envelope { content_encoding: Some("gzip"), ..envelope(&body) })),
            RejectCode::UnsupportedContentEncoding,
            "not a gzip stream"
        );
        let big = vec![b' '; RULES.max_body_bytes + 1];
        assert_eq!(code(judge(envelope(&big))), RejectCode::BodyTooLarge);
        assert_eq!(code(judge(envelope(b"{\"report_id\": "))), RejectCode::MalformedJson);
        assert_eq!(code(judge(envelope(b"\xff\xfe"))), RejectCode::InvalidUtf8);
        assert!(
            judge(Envelope { content_type: Some("application/json; charset=utf-8"), ..envelope(&body) })
                .is_ok()
        );
    }

    #[test]
    fn gzip_bodies_are_decompressed_within_the_limit() {
        let body = report();
        let mission = mission();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&body).unwrap();
        let gzipped = encoder.finish().unwrap();
        let gzip = Envelope { content_encoding: Some("gzip"), ..envelope(&gzipped) };
        assert_eq!(judge(&gzip, &mission, RULES, now()).unwrap().payload.as_bytes(), body.as_slice());

        // A bomb: small compressed, large decompressed.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 10 * RULES.max_body_bytes]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < RULES.max_body_bytes);
        let bomb = Envelope { content_encoding: Some("gzip"), ..envelope(&bomb) };
        assert_eq!(code(judge(&bomb, &mission, RULES, now())), RejectCode::BodyTooLarge);
    }

    #[test]
    fn a_byte_order_mark_is_accepted_and_not_kept() {
        let body = report();
        let mission = mission();
        let marked = [b"\xEF\xBB\xBF".as_slice(), &body].concat();
        let accepted = judge(&envelope(&marked), &mission, RULES, now()).unwrap();
        assert_eq!(accepted.payload.as_bytes(), body.as_slice());
    }

    #[test]
    fn a_gzip_body_of_several_members_is_read_whole() {
        let body = report();
        let mission = mission();
        let (head, tail) = body.split_at(body.len() / 2);
        let mut members = Vec::new();
        for part in [head, tail] {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(part).unwrap();
            members.extend(encoder.finish().unwrap());
        }
        let gzip = Envelope { content_encoding: Some("gzip"), ..envelope(&members) };
        assert_eq!(judge(&gzip, &mission, RULES, now()).unwrap().payload.as_bytes(), body.as_slice());
    }

    #[test]
    fn required_sender_must_be_the_observers_device() {
        let body = report();
        let mission = mission();
        let rules = Rules { require_sender_auth: true, ..RULES };
        let device = mission.observer("obs-001").unwrap().device_user.clone();
        let other = mission.observers.iter().find(|o| o.device_user != device).unwrap().device_user.clone();
        let judge = |user: Option<&str>| {
            judge(&Envelope { user_id: user, ..envelope(&body) }, &mission, rules, now())
        };
        assert_eq!(code(judge(None)), RejectCode::SenderMissing);
        assert_eq!(code(judge(Some(&other))), RejectCode::SenderMismatch);
        let accepted = judge(Some(&device)).unwrap();
        assert_eq!(accepted.sender.as_deref(), Some(device.as_str()));
        assert!(accepted.flags.is_empty());
    }
}
