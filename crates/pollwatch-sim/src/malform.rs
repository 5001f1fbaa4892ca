//! Broken copies of a report, each one of the mistakes field devices and integrations make, with
//! the code the worker must dead-letter it with.

use pollwatch_model::RejectCode;
use serde_json::{Map, Value};

use pollwatch_publish::Message;

/// The ways a message is broken, in the order the simulator uses them, with the code each one
/// must be dead-lettered with.
pub const MALFORMATIONS: [(&str, RejectCode); 11] = [
    ("cut off in the middle", RejectCode::MalformedJson),
    ("a byte that is not UTF-8", RejectCode::InvalidUtf8),
    ("wrapped in an array", RejectCode::NotAnObject),
    ("without its station", RejectCode::MissingField),
    ("with a field the format does not have", RejectCode::UnknownField),
    ("with the revision as a string", RejectCode::InvalidType),
    ("for another mission", RejectCode::WrongMission),
    ("of a kind that does not exist", RejectCode::UnknownKind),
    ("with revision 0", RejectCode::InvalidRevision),
    ("with a report id that is not a UUID", RejectCode::InvalidValue),
    ("sent as text/plain", RejectCode::UnsupportedContentType),
];

/// `original` broken in the `k`-th way (cycling through [`MALFORMATIONS`]), and its code.
pub(super) fn malform(original: &Message, k: usize) -> (Message, RejectCode) {
    let (_, code) = MALFORMATIONS[k % MALFORMATIONS.len()];
    let mut message = original.clone();
    let edit = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut value: Value = serde_json::from_slice(&original.body).expect("a report is JSON");
        change(value.as_object_mut().expect("a report is an object"));
        serde_json::to_vec(&value).expect("JSON serialises")
    };
    message.body = match code {
        RejectCode::MalformedJson => {
            let mut cut = original.body.len() * 2 / 3;
            while std::str::from_utf8(&original.body[..cut]).is_err() {
                cut -= 1;
            }
            original.body[..cut].to_vec()
        }
        RejectCode::InvalidUtf8 => {
            let mut body = original.body.clone();
            let at = body.len() / 2;
            body[at] = 0xFF;
            body
        }
        RejectCode::NotAnObject => [b"[".as_slice(), &original.body, b"]"].concat(),
        RejectCode::MissingField => edit(&|report| {
            report.remove("station");
        }),
        RejectCode::UnknownField => edit(&|report| {
            let station = report["station"].clone();
            report.insert("polling_station".into(), station);
        }),
        RejectCode::InvalidType => edit(&|report| {
            report.insert("revision".into(), Value::String(report["revision"].to_string()));
        }),
        RejectCode::WrongMission => edit(&|report| {
            let other = format!("{}-other", report["mission"].as_str().unwrap_or_default());
            report.insert("mission".into(), other.into());
        }),
        RejectCode::UnknownKind => edit(&|report| {
            report.insert("kind".into(), "exit_poll".into());
        }),
        RejectCode::InvalidRevision => edit(&|report| {
            report.insert("revision".into(), 0.into());
        }),
        RejectCode::InvalidValue => edit(&|report| {
            report.insert("report_id".into(), "not-a-uuid".into());
        }),
        RejectCode::UnsupportedContentType => {
            message.content_type = Some("text/plain".into());
            original.body.clone()
        }
        other => unreachable!("no malformation gives {other}"),
    };
    (message, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{kg_2021, options, truth};
    use crate::{Fate, Why, simulate};

    /// The worker checks the content type before the body; every other malformation is the
    /// model's to find, and it must find exactly the planned code.
    #[test]
    fn the_model_rejects_each_malformed_body_with_the_planned_code() {
        let mission = kg_2021();
        let day = simulate(&mission, &truth(&mission), &options(8)).expect("a day");
        let malformed: Vec<_> = day.messages.iter().filter(|m| matches!(m.why, Why::Malformed(_))).collect();
        assert!(malformed.len() >= MALFORMATIONS.len(), "every malformation is used");
        for planned in malformed {
            let Why::Malformed(code) = planned.why else { unreachable!("filtered") };
            assert_eq!(planned.fate, Fate::DeadLettered(code), "the worker's judgement is the planned code");
            if code == RejectCode::UnsupportedContentType {
                assert_eq!(planned.message.content_type.as_deref(), Some("text/plain"));
                continue;
            }
            let context =
                pollwatch_model::Context { mission: &mission, now: chrono::Utc::now(), sender: None };
            let rejection = pollwatch_model::check(&planned.message.body, &context).expect_err("rejected");
            assert_eq!(rejection.code, code, "{rejection}");
        }
    }
}
