//! From bytes to a [`Report`]: the wire format's structure, types, formats and limits. Every
//! failure is a [`Rejection`] with a stable code and the path of the field at fault.
//!
//! `decode` accepts exactly what the published JSON Schema (`schema/report-v1.schema.json`,
//! [`crate::report_schema`]) accepts, and refuses one thing more that a schema cannot see in a
//! parsed value: an object with the same key twice (`duplicate_key`). The differential test
//! (`tests/differential.rs`) holds the two to this. What depends on the mission or the clock —
//! the roster, the contests, timestamps in the future — is [`crate::validate`]'s.
//!
//! The payload is UTF-8 JSON text. One leading UTF-8 byte-order mark is ignored (RFC 8259,
//! section 8.1, lets a parser do so); [`crate::json_text`] gives the text without it, which is
//! what the worker stores. A second mark is malformed JSON; a UTF-16 or UTF-32 mark is not UTF-8
//! (`invalid_utf8`).
//!
//! The report is read field by field from the parsed value rather than with serde's derive,
//! which reads a JSON array as a struct (`[lat, lon]` as a location) and says what went wrong
//! only in text that repeats the input.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Timelike as _, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::codes::{RejectCode, Rejection};
use crate::detail::echo;
use crate::json::{self, Path, json_text};
use crate::report::*;

/// The envelope's fields, in the order they are read and listed in messages.
const ENVELOPE_FIELDS: &[&str] = &[
    "schema_version",
    "report_id",
    "revision",
    "mission",
    "observer",
    "station",
    "observed_at",
    "submitted_at",
    "location",
    "answers",
    "assessment",
    "attachments",
    "kind",
    "body",
];
const LOCATION_FIELDS: &[&str] = &["lat", "lon", "accuracy"];
const ATTACHMENT_FIELDS: &[&str] = &["sha256", "media_type", "size"];
const COUNTING_FIELDS: &[&str] = &["protocols"];
const PROTOCOL_FIELDS: &[&str] = &[
    "contest",
    "registered_voters",
    "ballots_received",
    "ballots_issued",
    "ballots_spoiled",
    "ballots_unused",
    "ballots_in_box",
    "invalid",
    "votes",
];
const INCIDENT_FIELDS: &[&str] = &["category", "severity", "description", "occurred_at"];

/// Parses a payload into a report, checking its structure, types, formats and wire limits, but
/// nothing that depends on the mission.
pub fn decode(payload: &[u8]) -> Result<Report, Rejection> {
    let text = utf8(json_text(payload))?;
    let value = json::parse(text)?;
    let Value::Object(object) = &value else {
        return Err(Rejection::new(
            RejectCode::NotAnObject,
            "$",
            format!("a report is a JSON object, not {}", json_type(&value)),
        ));
    };
    check_schema_version(object)?;
    let kind = check_kind(object)?;
    let root = Path::Root;
    let fields = Fields::of(object, &root, ENVELOPE_FIELDS)?;
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        report_id: fields.required("report_id", report_id)?,
        revision: fields.required("revision", revision)?,
        mission: fields.required("mission", identifier)?,
        observer: fields.required("observer", identifier)?,
        station: fields.required("station", identifier)?,
        observed_at: fields.required("observed_at", timestamp)?,
        submitted_at: fields.required("submitted_at", timestamp)?,
        location: fields.optional("location", location)?.flatten(),
        answers: fields.optional("answers", answers)?.unwrap_or_default(),
        assessment: fields.optional("assessment", assessment)?.flatten(),
        attachments: fields.optional("attachments", attachments)?.unwrap_or_default(),
        content: content(kind, object)?,
    })
}

fn utf8(payload: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidUtf8,
            "$",
            format!("the payload is not UTF-8: invalid byte at offset {}", e.valid_up_to()),
        )
    })
}

/// The version comes first: a report of another version may differ in anything else.
fn check_schema_version(object: &Map<String, Value>) -> Result<(), Rejection> {
    let path = "schema_version";
    match object.get(path) {
        None => Err(Rejection::new(RejectCode::MissingField, path, "`schema_version` is required")),
        Some(Value::Number(n)) => match whole_number(n) {
            Some(v) if v == i128::from(SCHEMA_VERSION) => Ok(()),
            _ => Err(Rejection::new(
                RejectCode::UnsupportedSchemaVersion,
                path,
                format!("schema version {n} is not supported; this pollwatch reads version {SCHEMA_VERSION}"),
            )),
        },
        Some(other) => Err(mistyped(other, &Path::Root.key(path), "a number")),
    }
}

/// The kind gets its own code, so it is checked before the envelope as a whole.
fn check_kind(object: &Map<String, Value>) -> Result<ReportKind, Rejection> {
    match object.get("kind") {
        None => Err(Rejection::new(RejectCode::MissingField, "kind", "`kind` is required")),
        Some(Value::String(name)) => ReportKind::parse(name).ok_or_else(|| {
            Rejection::new(
                RejectCode::UnknownKind,
                "kind",
                format!(
                    "unknown kind {}; expected one of {}",
                    echo(name),
                    names(&ReportKind::ALL, |k| k.as_str())
                ),
            )
        }),
        Some(other) => Err(mistyped(other, &Path::Root.key("kind"), "a string")),
    }
}

/// `body` is what the kind says it is; only counting and incident reports have one.
fn content(kind: ReportKind, object: &Map<String, Value>) -> Result<Content, Rejection> {
    let root = Path::Root;
    let body = object.get("body");
    let needs_body =
        || Rejection::new(RejectCode::MissingField, "body", format!("a {kind} report needs a `body`"));
    Ok(match (kind, body) {
        (ReportKind::Counting, Some(body)) => Content::Counting(counting_body(body, &root.key("body"))?),
        (ReportKind::Incident, Some(body)) => Content::Incident(incident_body(body, &root.key("body"))?),
        (ReportKind::Counting | ReportKind::Incident, None) => return Err(needs_body()),
        (_, Some(_)) => {
            return Err(Rejection::new(
                RejectCode::UnknownField,
                "body",
                format!("a {kind} report has no `body`; checklist answers go in `answers`"),
            ));
        }
        (ReportKind::Arrival, None) => Content::Arrival,
        (ReportKind::Departure, None) => Content::Departure,
        (ReportKind::Opening, None) => Content::Opening,
        (ReportKind::Voting, None) => Content::Voting,
        (ReportKind::Closing, None) => Content::Closing,
    })
}

// ---- records ----

/// An object read as one of the wire format's records, once it is known to hold only the
/// record's fields.
struct Fields<'v, 'p> {
    object: &'v Map<String, Value>,
    at: &'p Path<'p>,
}

impl<'v, 'p> Fields<'v, 'p> {
    /// The record at `at`: an object whose keys are all in `known`. A key that is not is reported
    /// first, in document order: a misspelt field explains a missing one.
    fn of(object: &'v Map<String, Value>, at: &'p Path<'p>, known: &[&str]) -> Result<Self, Rejection> {
        if let Some(key) = object.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(Rejection::new(
                RejectCode::UnknownField,
                at.key(key).to_string(),
                format!("unknown field {}, expected one of {}", echo(key), known.join(", ")),
            ));
        }
        Ok(Self { object, at })
    }

    /// Reads the record at `at` from `value`, which must be an object.
    fn read(value: &'v Value, at: &'p Path<'p>, known: &[&str]) -> Result<Self, Rejection> {
        match value {
            Value::Object(object) => Self::of(object, at, known),
            other => Err(mistyped(other, at, "an object")),
        }
    }

    fn required<T>(
        &self,
        name: &str,
        read: impl FnOnce(&'v Value, &Path<'_>) -> Result<T, Rejection>,
    ) -> Result<T, Rejection> {
        let at = self.at.key(name);
        match self.object.get(name) {
            Some(value) => read(value, &at),
            None => {
                Err(Rejection::new(RejectCode::MissingField, at.to_string(), format!("`{name}` is required")))
            }
        }
    }

    fn optional<T>(
        &self,
        name: &str,
        read: impl FnOnce(&'v Value, &Path<'_>) -> Result<T, Rejection>,
    ) -> Result<Option<T>, Rejection> {
        self.object.get(name).map(|value| read(value, &self.at.key(name))).transpose()
    }
}

fn location(value: &Value, at: &Path<'_>) -> Result<Option<Location>, Rejection> {
    if value.is_null() {
        return Ok(None);
    }
    let fields = Fields::read(value, at, LOCATION_FIELDS)?;
    Ok(Some(Location {
        lat: fields.required("lat", |v, at| coordinate(v, at, "latitude", 90.0))?,
        lon: fields.required("lon", |v, at| coordinate(v, at, "longitude", 180.0))?,
        accuracy: fields.optional("accuracy", accuracy)?.flatten(),
    }))
}

fn answers(value: &Value, at: &Path<'_>) -> Result<BTreeMap<String, Answer>, Rejection> {
    let object = object(value, at)?;
    if object.len() > MAX_ANSWERS {
        return Err(Rejection::new(
            RejectCode::TooManyItems,
            at.to_string(),
            format!("at most {MAX_ANSWERS} answers"),
        ));
    }
    object
        .iter()
        .map(|(code, answer_value)| Ok((code.clone(), answer(answer_value, &at.key(code))?)))
        .collect()
}

fn answer(value: &Value, at: &Path<'_>) -> Result<Answer, Rejection> {
    match value {
        Value::Bool(yes) => Ok(Answer::YesNo(*yes)),
        Value::Number(n) => match whole_number(n) {
            Some(n) => i64::try_from(n).map(Answer::Number).map_err(|_| {
                Rejection::new(
                    RejectCode::InvalidValue,
                    at.to_string(),
                    format!("a whole-number answer lies in {}..={}", i64::MIN, i64::MAX),
                )
            }),
            None => Err(mistyped(value, at, "true or false, a whole number, or text")),
        },
        Value::String(text) => Ok(Answer::Text(bounded_text(text, at, 0, MAX_ANSWER_TEXT_LEN, "an answer")?)),
        other => Err(mistyped(other, at, "true or false, a whole number, or text")),
    }
}

fn assessment(value: &Value, at: &Path<'_>) -> Result<Option<Assessment>, Rejection> {
    if value.is_null() {
        return Ok(None);
    }
    one_of(value, at, &Assessment::ALL, |a| a.as_str(), RejectCode::InvalidValue, "assessment").map(Some)
}

fn attachments(value: &Value, at: &Path<'_>) -> Result<Vec<Attachment>, Rejection> {
    let items = array(value, at)?;
    if items.len() > MAX_ATTACHMENTS {
        return Err(Rejection::new(
            RejectCode::TooManyItems,
            at.to_string(),
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    items.iter().enumerate().map(|(i, item)| attachment(item, &at.index(i))).collect()
}

fn attachment(value: &Value, at: &Path<'_>) -> Result<Attachment, Rejection> {
    let fields = Fields::read(value, at, ATTACHMENT_FIELDS)?;
    Ok(Attachment {
        sha256: fields.required("sha256", sha256)?,
        media_type: fields.required("media_type", media_type)?,
        size: fields.required("size", |v, at| whole_in(v, at, 0, u64::MAX))?,
    })
}

fn counting_body(value: &Value, at: &Path<'_>) -> Result<CountingBody, Rejection> {
    let fields = Fields::read(value, at, COUNTING_FIELDS)?;
    Ok(CountingBody { protocols: fields.required("protocols", protocols)? })
}

fn protocols(value: &Value, at: &Path<'_>) -> Result<Vec<Protocol>, Rejection> {
    let items = array(value, at)?;
    if items.is_empty() {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            "a counting report carries at least one protocol",
        ));
    }
    if items.len() > MAX_PROTOCOLS {
        return Err(Rejection::new(
            RejectCode::TooManyItems,
            at.to_string(),
            format!("at most {MAX_PROTOCOLS} protocols"),
        ));
    }
    items.iter().enumerate().map(|(i, item)| protocol(item, &at.index(i))).collect()
}

fn protocol(value: &Value, at: &Path<'_>) -> Result<Protocol, Rejection> {
    let fields = Fields::read(value, at, PROTOCOL_FIELDS)?;
    let figure = |name| fields.required(name, count);
    Ok(Protocol {
        contest: fields.required("contest", identifier)?,
        registered_voters: figure("registered_voters")?,
        ballots_received: figure("ballots_received")?,
        ballots_issued: figure("ballots_issued")?,
        ballots_spoiled: figure("ballots_spoiled")?,
        ballots_unused: figure("ballots_unused")?,
        ballots_in_box: figure("ballots_in_box")?,
        invalid: figure("invalid")?,
        votes: fields.required("votes", votes)?,
    })
}

fn votes(value: &Value, at: &Path<'_>) -> Result<BTreeMap<String, u32>, Rejection> {
    let object = object(value, at)?;
    if object.len() > MAX_CHOICES {
        return Err(Rejection::new(
            RejectCode::TooManyItems,
            at.to_string(),
            format!("at most {MAX_CHOICES} entries"),
        ));
    }
    object.iter().map(|(choice, n)| Ok((choice.clone(), count(n, &at.key(choice))?))).collect()
}

fn incident_body(value: &Value, at: &Path<'_>) -> Result<IncidentBody, Rejection> {
    let fields = Fields::read(value, at, INCIDENT_FIELDS)?;
    Ok(IncidentBody {
        category: fields.required("category", |v, at| {
            one_of(
                v,
                at,
                IncidentCategory::ALL,
                |c| c.as_str(),
                RejectCode::UnknownCategory,
                "incident category",
            )
        })?,
        severity: fields.required("severity", |v, at| {
            one_of(v, at, &Severity::ALL, |s| s.as_str(), RejectCode::InvalidValue, "severity")
        })?,
        description: fields.required("description", |v, at| {
            bounded_text(string(v, at)?, at, 1, MAX_DESCRIPTION_LEN, "a description")
        })?,
        occurred_at: fields.required("occurred_at", timestamp)?,
    })
}

// ---- values ----

/// A report id is a UUID written as the schema's `uuid` format has it: 8-4-4-4-12 hexadecimal
/// digits, either case. The braced, `urn:uuid:` and unhyphenated forms that the `uuid` crate also
/// reads are refused, not normalised: another reader of the same report would refuse them.
fn report_id(value: &Value, at: &Path<'_>) -> Result<Uuid, Rejection> {
    let text = string(value, at)?;
    let hyphenated = text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    match hyphenated.then(|| Uuid::try_parse(text)) {
        Some(Ok(id)) => Ok(id),
        _ => Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            format!(
                "a report id is a UUID of 32 hexadecimal digits in groups of 8-4-4-4-12, e.g. \
                 0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05; found {}",
                echo(text)
            ),
        )),
    }
}

fn revision(value: &Value, at: &Path<'_>) -> Result<u32, Rejection> {
    match count(value, at)? {
        0 => Err(Rejection::new(RejectCode::InvalidRevision, at.to_string(), "revisions start at 1")),
        revision => Ok(revision),
    }
}

/// A mission, observer, station or contest id: 1 to [`MAX_ID_LEN`] characters. Blank ids and
/// control characters are validation's: the schema allows them.
fn identifier(value: &Value, at: &Path<'_>) -> Result<String, Rejection> {
    bounded_text(string(value, at)?, at, 1, MAX_ID_LEN, "an identifier")
}

/// Text of `min..=max` characters (not bytes, as JSON Schema's `minLength` and `maxLength`).
fn bounded_text(text: &str, at: &Path<'_>, min: usize, max: usize, what: &str) -> Result<String, Rejection> {
    // Counting stops past the limit: a 200,000-character string costs no more than one of 4,001.
    let length = text.chars().take(max + 1).count();
    if length < min {
        return Err(Rejection::new(RejectCode::InvalidValue, at.to_string(), "must not be empty"));
    }
    if length > max {
        return Err(Rejection::new(
            RejectCode::TextTooLong,
            at.to_string(),
            format!("{what} is at most {max} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// Reads an RFC 3339 timestamp, exactly as the schema's `date-time` format reads it.
fn timestamp(value: &Value, at: &Path<'_>) -> Result<DateTime<FixedOffset>, Rejection> {
    let text = string(value, at)?;
    let invalid = |reason: String| {
        Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            format!("expected an RFC 3339 timestamp with offset, e.g. 2021-01-10T08:00:00+06:00 ({reason})"),
        )
    };
    if !rfc3339_shape(text) {
        return Err(invalid(format!("found {}", echo(text))));
    }
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| invalid(e.to_string()))?;
    check_leap_second(&parsed, at)?;
    Ok(parsed)
}

/// Whether `text` is `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` and `Z` in either
/// case: RFC 3339's `date-time` production. chrono's parser also reads a space for the `T`, which
/// the schema's `date-time` refuses; the ranges of the fields are chrono's to check.
fn rfc3339_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits =
        |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, allowed: &[u8]| bytes.get(i).is_some_and(|b| allowed.contains(b));
    let date_and_time = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !date_and_time {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// chrono reads second 60 at any minute; RFC 3339 and the schema's `date-time` allow it only as
/// a leap second, 23:59:60 UTC (chrono keeps a leap second as a nanosecond count of a second or
/// more).
fn check_leap_second(at_time: &DateTime<FixedOffset>, at: &Path<'_>) -> Result<(), Rejection> {
    let utc = at_time.with_timezone(&Utc);
    if utc.nanosecond() >= 1_000_000_000 && (utc.hour(), utc.minute()) != (23, 59) {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            format!(
                "{} has second 60, which only a leap second at 23:59:60 UTC can have",
                at_time.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn coordinate(value: &Value, at: &Path<'_>, what: &str, limit: f64) -> Result<f64, Rejection> {
    let degrees = number(value, at)?;
    if !(-limit..=limit).contains(&degrees) {
        return Err(Rejection::new(
            RejectCode::CoordinateOutOfRange,
            at.to_string(),
            format!("{what} {degrees} is not in -{limit}..{limit}"),
        ));
    }
    Ok(degrees)
}

fn accuracy(value: &Value, at: &Path<'_>) -> Result<Option<f64>, Rejection> {
    if value.is_null() {
        return Ok(None);
    }
    let metres = number(value, at)?;
    if metres < 0.0 {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            "accuracy is a distance and cannot be negative",
        ));
    }
    Ok(Some(metres))
}

fn sha256(value: &Value, at: &Path<'_>) -> Result<String, Rejection> {
    let text = string(value, at)?;
    let hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            "a SHA-256 is 64 lower-case hexadecimal digits",
        ));
    }
    Ok(text.to_owned())
}

/// A media type of 3 to 100 characters; that it looks like one (`type/subtype`) is validation's.
fn media_type(value: &Value, at: &Path<'_>) -> Result<String, Rejection> {
    let text = string(value, at)?;
    if !(3..=100).contains(&text.chars().take(101).count()) {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            at.to_string(),
            "a media type looks like image/jpeg",
        ));
    }
    Ok(text.to_owned())
}

/// A count of voters or ballots: a whole number that fits in 32 bits.
fn count(value: &Value, at: &Path<'_>) -> Result<u32, Rejection> {
    whole_in(value, at, 0, u32::MAX)
}

/// A whole number in `min..=max`. JSON Schema's `integer` is a number without a fractional part,
/// so `3.0` and `3e0` are 3.
fn whole_in<T: TryFrom<i128> + Into<i128> + Copy + std::fmt::Display>(
    value: &Value,
    at: &Path<'_>,
    min: T,
    max: T,
) -> Result<T, Rejection> {
    let Value::Number(n) = value else {
        return Err(mistyped(value, at, "a whole number"));
    };
    let Some(whole) = whole_number(n) else {
        return Err(mistyped(value, at, "a whole number"));
    };
    if whole < min.into() {
        let message =
            if min.into() == 0 { "cannot be negative".to_owned() } else { format!("at least {min}") };
        return Err(Rejection::new(RejectCode::InvalidValue, at.to_string(), message));
    }
    T::try_from(whole)
        .ok()
        .filter(|v| (*v).into() <= max.into())
        .ok_or_else(|| Rejection::new(RejectCode::InvalidValue, at.to_string(), format!("at most {max}")))
}

/// The number as a whole number, if it has no fractional part. Floats past `i128` saturate,
/// which keeps them outside every range the wire format has.
fn whole_number(n: &serde_json::Number) -> Option<i128> {
    if let Some(v) = n.as_u64() {
        return Some(v.into());
    }
    if let Some(v) = n.as_i64() {
        return Some(v.into());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0).then_some(f as i128)
}

fn number(value: &Value, at: &Path<'_>) -> Result<f64, Rejection> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| mistyped(value, at, "a number")),
        other => Err(mistyped(other, at, "a number")),
    }
}

fn string<'v>(value: &'v Value, at: &Path<'_>) -> Result<&'v str, Rejection> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(mistyped(other, at, "a string")),
    }
}

fn object<'v>(value: &'v Value, at: &Path<'_>) -> Result<&'v Map<String, Value>, Rejection> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(mistyped(other, at, "an object")),
    }
}

fn array<'v>(value: &'v Value, at: &Path<'_>) -> Result<&'v [Value], Rejection> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(mistyped(other, at, "an array")),
    }
}

/// One of a closed set of names, e.g. a severity. An unknown name gets `code`.
fn one_of<T: Copy>(
    value: &Value,
    at: &Path<'_>,
    all: &[T],
    name: fn(T) -> &'static str,
    code: RejectCode,
    what: &str,
) -> Result<T, Rejection> {
    let text = string(value, at)?;
    all.iter().copied().find(|&item| name(item) == text).ok_or_else(|| {
        Rejection::new(
            code,
            at.to_string(),
            format!("unknown {what} {}; expected one of {}", echo(text), names(all, name)),
        )
    })
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|&item| name(item)).collect::<Vec<_>>().join(", ")
}

fn mistyped(value: &Value, at: &Path<'_>, expected: &str) -> Rejection {
    let found = match value {
        // A fraction where a whole number belongs is shown: it is the reason, and a number is short.
        Value::Number(n) => format!("the number {n}"),
        other => json_type(other).to_owned(),
    };
    Rejection::new(RejectCode::InvalidType, at.to_string(), format!("expected {expected}, found {found}"))
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(payload: &str) -> Rejection {
        decode(payload.as_bytes()).expect_err("rejected")
    }

    const ENVELOPE: &str = r#""schema_version":1,"report_id":"0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05","revision":1,
        "mission":"m","observer":"o","station":"s","observed_at":"2021-01-10T08:00:00+06:00",
        "submitted_at":"2021-01-10T08:00:00+06:00""#;

    fn closing(extra: &str) -> String {
        format!(r#"{{{ENVELOPE},"kind":"closing"{extra}}}"#)
    }

    #[track_caller]
    fn assert_rejected(payload: &str, code: RejectCode, path: &str) {
        let rejection = rejection(payload);
        assert_eq!((rejection.code, rejection.path.as_str()), (code, path), "{rejection}");
    }

    // Found by `cargo fuzz run check_report` (fuzz/README.md): observed_at was
    // `-021-01-20T11:40:00+06:00`, accepted, and written back as `-0021-01-20T11:40:00+06:00`.
    #[test]
    fn a_timestamp_that_is_not_strict_rfc_3339_is_an_invalid_value() {
        let envelope = r#""schema_version":1,"report_id":"0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05","revision":1,
            "mission":"m","observer":"o","station":"s","kind":"closing","#;
        for observed_at in [
            "-021-01-20T11:40:00+06:00",
            "-0021-01-20T11:40:00+06:00",
            "+10000-01-20T11:40:00+06:00",
            "2-1-10T2:2:0+06:00",
            "2021-01-10T08:00:00+0600",
            "2021-01-10T08:00:00 UTC",
            "2021-01-10 T 08:00:00Z",
            // chrono reads a space for the `T`; the schema's `date-time` does not.
            "2021-01-10 08:00:00-03:30",
            "2021-01-10T08:00:00.Z",
            "2021-01-10T08:00:00+06 00",
        ] {
            let payload = format!(
                r#"{{{envelope}"observed_at":"{observed_at}","submitted_at":"2021-01-10T08:00:00Z"}}"#
            );
            let rejection = rejection(&payload);
            assert_eq!(
                (rejection.code, rejection.path.as_str()),
                (RejectCode::InvalidValue, "observed_at"),
                "{observed_at}: {rejection}"
            );
        }
    }

    #[test]
    fn rfc_3339_timestamps_keep_their_offset_and_fraction() {
        let envelope = r#""schema_version":1,"report_id":"0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05","revision":1,
            "mission":"m","observer":"o","station":"s","kind":"closing","#;
        for (observed_at, written) in [
            ("2021-01-10T08:00:00+06:00", "2021-01-10T08:00:00+06:00"),
            ("2021-01-10t08:00:00.250z", "2021-01-10T08:00:00.250Z"),
            ("2021-01-10T08:00:00-03:30", "2021-01-10T08:00:00-03:30"),
        ] {
            let payload = format!(
                r#"{{{envelope}"observed_at":"{observed_at}","submitted_at":"2021-01-10T08:00:00Z"}}"#
            );
            let report = decode(payload.as_bytes()).unwrap_or_else(|r| panic!("{observed_at}: {r}"));
            assert_eq!(serde_json::to_value(report.observed_at).unwrap(), written, "{observed_at}");
        }
    }

    #[test]
    fn a_timestamp_that_is_not_a_string_is_mistyped() {
        // The first timestamp of the envelope is `observed_at`.
        let payload = closing("").replacen(r#""2021-01-10T08:00:00+06:00""#, "1610244000", 1);
        assert_rejected(&payload, RejectCode::InvalidType, "observed_at");
    }

    // Found by `cargo fuzz run check_report` (fuzz/README.md), minimised.
    #[test]
    fn an_unknown_field_with_an_empty_name_is_rejected_with_a_path_not_an_empty_one() {
        assert_rejected(r#"{"schema_version":1,"":"","kind":"closing"}"#, RejectCode::UnknownField, "$");
    }

    #[test]
    fn an_unknown_field_with_an_empty_name_inside_an_object_ends_its_path_with_a_dot() {
        let location = format!(r#"{{{ENVELOPE},"kind":"closing","location":{{"":1}}}}"#);
        let body = format!(r#"{{{ENVELOPE},"kind":"incident","body":{{"":1}}}}"#);
        for (payload, path) in [(location, "location."), (body, "body.")] {
            assert_rejected(&payload, RejectCode::UnknownField, path);
        }
    }

    #[test]
    fn an_array_where_an_object_belongs_is_mistyped() {
        let attachment = r#","attachments":[["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","image/jpeg",1]]"#;
        let protocol = r#"{"protocols":[["president",1,1,1,0,0,1,0,{}]]}"#;
        let incident = r#"["other","low","x","2021-01-10T08:00:00+06:00"]"#;
        for (payload, path) in [
            (closing(r#","location":[42.8,74.5]"#), "location"),
            (closing(attachment), "attachments[0]"),
            (format!(r#"{{{ENVELOPE},"kind":"counting","body":{protocol}}}"#), "body.protocols[0]"),
            (format!(r#"{{{ENVELOPE},"kind":"counting","body":[[]]}}"#), "body"),
            (format!(r#"{{{ENVELOPE},"kind":"incident","body":{incident}}}"#), "body"),
            (closing(r#","answers":[true]"#), "answers"),
        ] {
            assert_rejected(&payload, RejectCode::InvalidType, path);
        }
    }

    #[test]
    fn a_duplicate_key_is_rejected_naming_its_path() {
        assert_rejected(&closing(r#","station":"s2""#), RejectCode::DuplicateKey, "station");
        assert_rejected(
            &closing(r#","location":{"lat":1,"lon":2,"lat":3}"#),
            RejectCode::DuplicateKey,
            "location.lat",
        );
    }

    #[test]
    fn a_report_id_in_another_form_than_8_4_4_4_12_is_an_invalid_value() {
        for id in [
            "{0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05}",
            "urn:uuid:0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05",
            "0b6c7c1e5d7a4f0e9a432f1d8c6e0a05",
            "0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a0",
            "0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a0g",
            "0b6c7c1e-5d7a4-f0e-9a43-2f1d8c6e0a05",
        ] {
            let payload = closing("").replace("0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05", id);
            assert_rejected(&payload, RejectCode::InvalidValue, "report_id");
        }
    }

    #[test]
    fn a_report_id_in_upper_case_hexadecimal_is_the_same_id() {
        let payload = closing("")
            .replace("0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05", "0B6C7C1E-5D7A-4F0E-9A43-2F1D8C6E0A05");
        let report = decode(payload.as_bytes()).unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(report.report_id.to_string(), "0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05");
    }

    #[test]
    fn one_leading_byte_order_mark_is_ignored_and_a_second_is_malformed() {
        let payload = closing("");
        let marked = [b"\xEF\xBB\xBF".as_slice(), payload.as_bytes()].concat();
        assert_eq!(decode(&marked).unwrap(), decode(payload.as_bytes()).unwrap());
        let twice = [b"\xEF\xBB\xBF".as_slice(), &marked].concat();
        assert_eq!(decode(&twice).unwrap_err().code, RejectCode::MalformedJson);
    }

    #[test]
    fn a_whole_number_written_with_a_fraction_or_exponent_is_that_number() {
        let payload =
            closing(r#","answers":{"Q1":2.0,"Q2":3e2}"#).replace(r#""revision":1"#, r#""revision":2.0"#);
        let report = decode(payload.as_bytes()).unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(report.revision, 2);
        assert_eq!(report.answers["Q1"], Answer::Number(2));
        assert_eq!(report.answers["Q2"], Answer::Number(300));
    }

    #[test]
    fn a_count_past_32_bits_is_an_invalid_value() {
        let payload = closing("").replace(r#""revision":1"#, r#""revision":4294967296"#);
        assert_rejected(&payload, RejectCode::InvalidValue, "revision");
    }

    #[test]
    fn a_checklist_report_with_a_null_body_is_refused_as_the_schema_refuses_it() {
        assert_rejected(&closing(r#","body":null"#), RejectCode::UnknownField, "body");
    }
}
