//! From bytes to a [`Report`]: structure and types only. Every failure is a [`Rejection`] with a
//! stable code and the path of the field at fault.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::codes::{RejectCode, Rejection};
use crate::report::{Answer, Assessment, Attachment, Content, Location, Report, ReportKind, SCHEMA_VERSION};

/// The wire envelope as read. The body stays JSON until the kind says which type it is, so that
/// errors inside it keep their path (serde loses paths through `#[serde(flatten)]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    schema_version: u32,
    report_id: Uuid,
    revision: u32,
    mission: String,
    observer: String,
    station: String,
    #[serde(deserialize_with = "rfc3339")]
    observed_at: DateTime<FixedOffset>,
    #[serde(deserialize_with = "rfc3339")]
    submitted_at: DateTime<FixedOffset>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    answers: BTreeMap<String, Answer>,
    #[serde(default)]
    assessment: Option<Assessment>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    kind: ReportKind,
    #[serde(default)]
    body: Option<Value>,
}

/// Reads a timestamp as RFC 3339, strictly. chrono's own `Deserialize` takes a relaxed form
/// (unpadded fields, signed years outside 0000..=9999, spaces between fields) and writes some of
/// it back in forms that RFC 3339 and the schema's `date-time` refuse, e.g. a year `-0021`.
pub(crate) fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<FixedOffset>, D::Error> {
    struct Rfc3339;

    impl serde::de::Visitor<'_> for Rfc3339 {
        type Value = DateTime<FixedOffset>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp with offset")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(value).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(Rfc3339)
}

/// Parses a payload into a report, checking its structure and types but not its values.
pub fn decode(payload: &[u8]) -> Result<Report, Rejection> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidUtf8,
            "$",
            format!("the payload is not UTF-8: invalid byte at offset {}", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(RejectCode::MalformedJson, "$", format!("the payload is not JSON: {e}"))
    })?;
    let Value::Object(object) = &value else {
        return Err(Rejection::new(
            RejectCode::NotAnObject,
            "$",
            format!("a report is a JSON object, not {}", json_type(&value)),
        ));
    };
    check_schema_version(object)?;
    check_kind(object)?;
    let envelope: Envelope = typed(value, "")?;
    let content = match (envelope.kind, envelope.body) {
        (ReportKind::Counting, Some(body)) => Content::Counting(typed(body, "body")?),
        (ReportKind::Incident, Some(body)) => Content::Incident(typed(body, "body")?),
        (kind @ (ReportKind::Counting | ReportKind::Incident), None) => {
            return Err(Rejection::new(
                RejectCode::MissingField,
                "body",
                format!("a {kind} report needs a `body`"),
            ));
        }
        (kind, Some(body)) if !body.is_null() => {
            return Err(Rejection::new(
                RejectCode::UnknownField,
                "body",
                format!("a {kind} report has no `body`; checklist answers go in `answers`"),
            ));
        }
        (ReportKind::Arrival, _) => Content::Arrival,
        (ReportKind::Departure, _) => Content::Departure,
        (ReportKind::Opening, _) => Content::Opening,
        (ReportKind::Voting, _) => Content::Voting,
        (ReportKind::Closing, _) => Content::Closing,
    };
    Ok(Report {
        schema_version: envelope.schema_version,
        report_id: envelope.report_id,
        revision: envelope.revision,
        mission: envelope.mission,
        observer: envelope.observer,
        station: envelope.station,
        observed_at: envelope.observed_at,
        submitted_at: envelope.submitted_at,
        location: envelope.location,
        answers: envelope.answers,
        assessment: envelope.assessment,
        attachments: envelope.attachments,
        content,
    })
}

fn check_schema_version(object: &Map<String, Value>) -> Result<(), Rejection> {
    let path = "schema_version";
    match object.get(path) {
        None => Err(Rejection::new(RejectCode::MissingField, path, "`schema_version` is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v == u64::from(SCHEMA_VERSION) => Ok(()),
            _ => Err(Rejection::new(
                RejectCode::UnsupportedSchemaVersion,
                path,
                format!("schema version {n} is not supported; this pollwatch reads version {SCHEMA_VERSION}"),
            )),
        },
        Some(other) => Err(Rejection::new(
            RejectCode::InvalidType,
            path,
            format!("expected a number, found {}", json_type(other)),
        )),
    }
}

/// The kind gets its own code, so it is checked before the envelope as a whole.
fn check_kind(object: &Map<String, Value>) -> Result<(), Rejection> {
    match object.get("kind") {
        None => Err(Rejection::new(RejectCode::MissingField, "kind", "`kind` is required")),
        Some(Value::String(name)) if ReportKind::parse(name).is_some() => Ok(()),
        Some(Value::String(name)) => Err(Rejection::new(
            RejectCode::UnknownKind,
            "kind",
            format!(
                "unknown kind `{name}`; expected one of {}",
                ReportKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
        Some(other) => Err(Rejection::new(
            RejectCode::InvalidType,
            "kind",
            format!("expected a string, found {}", json_type(other)),
        )),
    }
}

/// Deserialises `value`, prefixing error paths with `prefix`.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, Rejection> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        // No segments means `value` itself. A key that is the empty string is a segment too, shown
        // as nothing: `location.` for `{"location": {"": 1}}`, as validation writes `answers.`.
        let path = match (prefix, e.path().iter().next().is_none()) {
            (prefix, true) => prefix.to_owned(),
            ("", false) => e.path().to_string(),
            (prefix, false) => format!("{prefix}.{}", e.path()),
        };
        classify(&path, &e.inner().to_string())
    })
}

/// Maps a serde error to a code. serde says what went wrong only as text, so the code is chosen
/// from the message's fixed prefixes.
fn classify(path: &str, message: &str) -> Rejection {
    let field = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    let quoted = || message.split('`').nth(1).unwrap_or_default().to_owned();
    if message.starts_with("missing field") {
        let name = quoted();
        return Rejection::new(RejectCode::MissingField, field(&name), format!("`{name}` is required"));
    }
    // Empty only for the report itself, or for a top-level field whose name is the empty string.
    let path = if path.is_empty() { "$" } else { path };
    if message.starts_with("unknown field") {
        // Unlike a missing field, an unknown one is already the last segment of the path.
        return Rejection::new(RejectCode::UnknownField, path, message);
    }
    let code = if message.starts_with("unknown variant") && path.ends_with("category") {
        RejectCode::UnknownCategory
    } else if message.starts_with("invalid type") || message.contains("did not match any variant") {
        RejectCode::InvalidType
    } else {
        RejectCode::InvalidValue
    };
    let message = if message.contains("did not match any variant of untagged enum Answer") {
        "an answer is true or false, a whole number, or text".to_owned()
    } else if path.ends_with("_at") && code == RejectCode::InvalidValue {
        format!("expected an RFC 3339 timestamp with offset, e.g. 2021-01-10T08:00:00+06:00 ({message})")
    } else {
        message.to_owned()
    };
    Rejection::new(code, path, message)
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
            ("2021-01-10 08:00:00-03:30", "2021-01-10T08:00:00-03:30"),
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
        let payload = r#"{"schema_version":1,"kind":"closing","observed_at":1610244000}"#;
        let rejection = rejection(payload);
        assert_eq!((rejection.code, rejection.path.as_str()), (RejectCode::InvalidType, "observed_at"));
    }

    // Found by `cargo fuzz run check_report` (fuzz/README.md), minimised.
    #[test]
    fn an_unknown_field_with_an_empty_name_is_rejected_with_a_path_not_an_empty_one() {
        let rejection = rejection(r#"{"schema_version":1,"":"","kind":"closing"}"#);
        assert_eq!((rejection.code, rejection.path.as_str()), (RejectCode::UnknownField, "$"), "{rejection}");
    }

    #[test]
    fn an_unknown_field_with_an_empty_name_inside_an_object_ends_its_path_with_a_dot() {
        let envelope = r#""schema_version":1,"report_id":"0b6c7c1e-5d7a-4f0e-9a43-2f1d8c6e0a05","revision":1,
            "mission":"m","observer":"o","station":"s","observed_at":"2021-01-10T08:00:00+06:00",
            "submitted_at":"2021-01-10T08:00:00+06:00""#;
        let location = format!(r#"{{{envelope},"kind":"closing","location":{{"":1}}}}"#);
        let body = format!(r#"{{{envelope},"kind":"incident","body":{{"":1}}}}"#);
        for (payload, path) in [(location, "location."), (body, "body.")] {
            let rejection = rejection(&payload);
            assert_eq!(
                (rejection.code, rejection.path.as_str()),
                (RejectCode::UnknownField, path),
                "{rejection}"
            );
        }
    }
}
