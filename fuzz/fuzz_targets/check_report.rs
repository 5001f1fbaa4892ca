//! Fuzzes `pollwatch_model::check` (decode + validate) against the kg-2021 sample mission.
//!
//! Any input may be rejected; none may panic, overflow, hang or exhaust memory. For an accepted
//! report the target also asserts what acceptance promises:
//!
//! - the report keeps every wire limit that validation enforces (identifiers, texts, counts,
//!   coordinates, timestamps no later than `now` plus the clock tolerance, known contests and
//!   choices);
//! - written back with serde_json it is accepted again, as the same report with the same flags,
//!   and writing it again gives the same bytes;
//! - what pollwatch writes conforms to its own published JSON Schema (`report_schema()`);
//! - the sender only ever adds or removes one `sender_mismatch` flag.
//!
//! A rejection must carry a non-empty path (`$` for the whole report) and message.

#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use pollwatch_model::{
    Answer, CLOCK_TOLERANCE, Checked, Content, Context, FlagCode, MAX_ANSWER_TEXT_LEN, MAX_ANSWERS,
    MAX_ATTACHMENTS, MAX_CHOICES, MAX_DESCRIPTION_LEN, MAX_ID_LEN, MAX_PROTOCOLS, Mission,
    Report, SCHEMA_VERSION, check, report_schema,
};

fn mission() -> &'static Mission {
    static MISSION: OnceLock<Mission> = OnceLock::new();
    MISSION.get_or_init(pollwatch_model::sample::kg_2021)
}

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&report_schema())
            .expect("the generated schema is a valid JSON Schema")
    })
}

/// Midnight UTC after election day (06:00 in Bishkek): every example report is in the past.
fn now() -> DateTime<Utc> {
    "2021-01-11T00:00:00Z".parse().expect("a fixed timestamp")
}

fn context(sender: Option<&'static str>) -> Context<'static> {
    Context { mission: mission(), now: now(), sender }
}

fuzz_target!(|data: &[u8]| {
    match check(data, &context(None)) {
        Err(rejection) => {
            assert!(!rejection.path.is_empty(), "a rejection without a path: {rejection:?}");
            assert!(!rejection.message.is_empty(), "a rejection without a message: {rejection:?}");
        }
        Ok(checked) => accepted(&checked),
    }
});

fn accepted(checked: &Checked) {
    let report = &checked.report;
    within_limits(report);
    for flag in &checked.flags {
        assert!(!flag.path.is_empty() && !flag.message.is_empty(), "an empty flag: {flag:?}");
    }

    // Written back, the report is accepted again unchanged, with the same flags.
    let bytes = serde_json::to_vec(report).expect("an accepted report serialises");
    let again = check(&bytes, &context(None)).unwrap_or_else(|rejection| {
        panic!("the re-serialised report is rejected: {rejection}\n{}", String::from_utf8_lossy(&bytes))
    });
    assert_eq!(&again.report, report, "the report changed in a round trip");
    assert_eq!(again.flags, checked.flags, "the flags changed in a round trip");
    let bytes_again = serde_json::to_vec(&again.report).expect("an accepted report serialises");
    assert_eq!(
        String::from_utf8_lossy(&bytes_again),
        String::from_utf8_lossy(&bytes),
        "writing the report twice gives different JSON"
    );

    // What pollwatch writes is what its schema publishes.
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("serde_json reads its own output");
    let errors: Vec<String> =
        schema().iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "an accepted report fails the published JSON Schema: {errors:?}\n{}",
        String::from_utf8_lossy(&bytes)
    );

    // The sender affects exactly one flag, and only for an observer in the roster.
    let observer = mission().observer(&report.observer);
    let own = observer.map(|o| o.device_user.as_str()).unwrap_or("dev-nobody");
    let as_own = check(&bytes, &context(Some(own))).expect("the sender cannot cause a rejection");
    assert_eq!(as_own.flags, checked.flags, "the observer's own device changed the flags");
    let as_other =
        check(&bytes, &context(Some("dev-someone-else"))).expect("the sender cannot cause a rejection");
    let mismatches = as_other.flags.iter().filter(|f| f.code == FlagCode::SenderMismatch).count();
    assert_eq!(mismatches, usize::from(observer.is_some()), "{:?}", as_other.flags);
    let rest: Vec<_> =
        as_other.flags.iter().filter(|f| f.code != FlagCode::SenderMismatch).cloned().collect();
    assert_eq!(rest, checked.flags, "another sender changed flags other than sender_mismatch");
}

fn identifier(what: &str, value: &str) {
    assert!(!value.trim().is_empty(), "accepted a blank {what}");
    assert!(value.chars().count() <= MAX_ID_LEN, "accepted a {what} over {MAX_ID_LEN} characters");
    assert!(!value.chars().any(char::is_control), "accepted a {what} with a control character: {value:?}");
}

fn not_future(what: &str, at: &DateTime<chrono::FixedOffset>) {
    assert!(at.with_timezone(&Utc) <= now() + CLOCK_TOLERANCE, "accepted {what} {at} in the future");
}

fn within_limits(report: &Report) {
    let mission = mission();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert!(report.revision >= 1, "accepted revision 0");
    assert_eq!(report.mission, mission.id, "accepted a report for another mission");
    identifier("mission", &report.mission);
    identifier("observer", &report.observer);
    identifier("station", &report.station);
    not_future("observed_at", &report.observed_at);
    not_future("submitted_at", &report.submitted_at);
    if let Some(location) = &report.location {
        assert!((-90.0..=90.0).contains(&location.lat), "accepted latitude {}", location.lat);
        assert!((-180.0..=180.0).contains(&location.lon), "accepted longitude {}", location.lon);
        assert!(location.accuracy.is_none_or(|a| a >= 0.0), "accepted accuracy {:?}", location.accuracy);
    }
    assert!(report.answers.len() <= MAX_ANSWERS, "accepted {} answers", report.answers.len());
    for (code, answer) in &report.answers {
        identifier("question code", code);
        if let Answer::Text(text) = answer {
            assert!(text.chars().count() <= MAX_ANSWER_TEXT_LEN, "accepted an answer over the limit");
            assert!(!text.contains('\0'), "accepted an answer with NUL");
        }
    }
    assert!(report.attachments.len() <= MAX_ATTACHMENTS, "accepted {} attachments", report.attachments.len());
    for attachment in &report.attachments {
        let hex = attachment.sha256.len() == 64
            && attachment.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        assert!(hex, "accepted checksum {:?}", attachment.sha256);
        assert!(attachment.media_type.contains('/'), "accepted media type {:?}", attachment.media_type);
    }
    match &report.content {
        Content::Counting(body) => {
            assert!(
                (1..=MAX_PROTOCOLS).contains(&body.protocols.len()),
                "accepted {} protocols",
                body.protocols.len()
            );
            for (i, protocol) in body.protocols.iter().enumerate() {
                let contest = mission.contest(&protocol.contest).expect("accepted an unknown contest");
                assert!(
                    body.protocols[..i].iter().all(|p| p.contest != protocol.contest),
                    "accepted two protocols for {}",
                    protocol.contest
                );
                assert!(
                    protocol.votes.len() <= MAX_CHOICES,
                    "accepted {} vote entries",
                    protocol.votes.len()
                );
                for code in protocol.votes.keys() {
                    assert!(contest.choice(code).is_some(), "accepted votes for unknown choice {code:?}");
                }
            }
        }
        Content::Incident(body) => {
            assert!(!body.description.trim().is_empty(), "accepted a blank description");
            assert!(
                body.description.chars().count() <= MAX_DESCRIPTION_LEN,
                "accepted a description over the limit"
            );
            assert!(!body.description.contains('\0'), "accepted a description with NUL");
            not_future("occurred_at", &body.occurred_at);
        }
        Content::Arrival | Content::Departure | Content::Opening | Content::Voting | Content::Closing => {}
    }
}
