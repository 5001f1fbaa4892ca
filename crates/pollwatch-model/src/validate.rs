//! Which decoded reports are accepted, and which of those are held for review.
//!
//! Rejections are reports that cannot be right whatever the roster says; flags are reports that
//! may be right but need a person to look: the report is stored, visible, and kept out of the
//! results until released.
//!
//! A report reaches validation decoded ([`crate::decode`]), so every rule of the JSON Schema —
//! types, formats, lengths, counts, ranges — already holds. What is here is what the schema does
//! not say: blank or control characters in identifiers, NUL in text, the mission, the clock,
//! the contests and the roster. Input quoted in a message goes through [`echo`].

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone as _, Utc};

use crate::codes::{Flag, FlagCode, RejectCode, Rejection};
use crate::decode::decode;
use crate::detail::echo;
use crate::mission::{AnswerType, Mission, Station};
use crate::report::*;

/// How far in the future a timestamp may be before it is taken for an impossible value rather
/// than a device clock that runs a little fast.
pub const CLOCK_TOLERANCE: Duration = Duration::minutes(15);

/// Counting goes on after midnight; observations up to this time on the day after election day
/// still belong to it.
const DAY_AFTER_UNTIL: NaiveTime = match NaiveTime::from_hms_opt(12, 0, 0) {
    Some(t) => t,
    None => panic!("a valid time"),
};

/// What validation needs besides the report.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub mission: &'a Mission,
    /// The current time. The caller supplies it, so that validation is repeatable.
    pub now: DateTime<Utc>,
    /// The broker user that published the report (AMQP `user_id`), when the transport says.
    pub sender: Option<&'a str>,
}

/// An accepted report and the reasons, if any, to hold it for review.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub report: Report,
    pub flags: Vec<Flag>,
}

impl Checked {
    /// Whether the report must be kept out of results until an operator releases it.
    pub fn is_quarantined(&self) -> bool {
        !self.flags.is_empty()
    }
}

/// Decodes and validates a payload: the one call a consumer needs.
pub fn check(payload: &[u8], context: &Context<'_>) -> Result<Checked, Rejection> {
    let report = decode(payload)?;
    let flags = validate(&report, context)?;
    Ok(Checked { report, flags })
}

/// Applies every rule to a decoded report: `Err` for the first rejection, else all flags.
pub fn validate(report: &Report, context: &Context<'_>) -> Result<Vec<Flag>, Rejection> {
    reject_impossible(report, context)?;
    let mut flags = Vec::new();
    flag_roster(report, context, &mut flags);
    flag_answers(report, context.mission, &mut flags);
    if let Content::Counting(body) = &report.content {
        let station = context.mission.station(&report.station);
        for (i, protocol) in body.protocols.iter().enumerate() {
            flag_protocol(protocol, i, station, context.mission, &mut flags);
        }
    }
    Ok(flags)
}

fn reject(code: RejectCode, path: impl Into<String>, message: impl Into<String>) -> Result<(), Rejection> {
    Err(Rejection::new(code, path, message))
}

fn reject_impossible(report: &Report, context: &Context<'_>) -> Result<(), Rejection> {
    for (path, value) in
        [("mission", &report.mission), ("observer", &report.observer), ("station", &report.station)]
    {
        check_identifier(path, value)?;
    }
    if report.mission != context.mission.id {
        reject(
            RejectCode::WrongMission,
            "mission",
            format!(
                "report is for mission {}, this is mission `{}`",
                echo(&report.mission),
                context.mission.id
            ),
        )?;
    }
    check_timestamp("observed_at", &report.observed_at, context.now)?;
    check_timestamp("submitted_at", &report.submitted_at, context.now)?;
    for (code, answer) in &report.answers {
        check_identifier(&format!("answers.{code}"), code)?;
        if let Answer::Text(text) = answer {
            check_text(&format!("answers.{code}"), text)?;
        }
    }
    check_attachments(&report.attachments)?;
    match &report.content {
        Content::Counting(body) => check_counting(body, context.mission),
        Content::Incident(body) => check_incident(body, context.now),
        _ => Ok(()),
    }
}

/// Decoding bounds the envelope's identifiers; an answer's question code is bounded here, as the
/// schema leaves the keys of `answers` free.
fn check_identifier(path: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        reject(RejectCode::InvalidValue, path, "must not be empty")?;
    }
    if value.chars().any(char::is_control) {
        reject(RejectCode::InvalidValue, path, "an identifier cannot contain control characters")?;
    }
    if value.chars().take(MAX_ID_LEN + 1).count() > MAX_ID_LEN {
        reject(RejectCode::TextTooLong, path, format!("at most {MAX_ID_LEN} characters"))?;
    }
    Ok(())
}

/// Free text may hold line breaks, but not NUL, which PostgreSQL cannot store in text (one such
/// report would otherwise fail its whole batch).
fn check_text(path: &str, value: &str) -> Result<(), Rejection> {
    if value.contains('\0') {
        reject(RejectCode::InvalidValue, path, "text cannot contain the NUL character")?;
    }
    Ok(())
}

/// A timestamp is RFC 3339 by the time it is decoded (leap seconds included); here only the
/// clock can refuse it.
fn check_timestamp(path: &str, at: &DateTime<FixedOffset>, now: DateTime<Utc>) -> Result<(), Rejection> {
    if at.with_timezone(&Utc) > now + CLOCK_TOLERANCE {
        reject(
            RejectCode::TimestampInFuture,
            path,
            format!("{} is in the future (now is {})", at.to_rfc3339(), now.to_rfc3339()),
        )?;
    }
    Ok(())
}

/// Decoding bounds the count, the checksum and the media type's length; what a media type
/// looks like is a rule of ours the schema does not state.
fn check_attachments(attachments: &[Attachment]) -> Result<(), Rejection> {
    for (i, attachment) in attachments.iter().enumerate() {
        let media_type = &attachment.media_type;
        if !media_type.contains('/') || media_type.chars().any(char::is_control) {
            reject(
                RejectCode::InvalidValue,
                format!("attachments[{i}].media_type"),
                "a media type looks like image/jpeg",
            )?;
        }
    }
    Ok(())
}

/// Decoding bounds the number of protocols and of vote entries; which contests and choices
/// exist is the mission's.
fn check_counting(body: &CountingBody, mission: &Mission) -> Result<(), Rejection> {
    for (i, protocol) in body.protocols.iter().enumerate() {
        let path = format!("body.protocols[{i}]");
        let Some(contest) = mission.contest(&protocol.contest) else {
            let held = mission.contests.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ");
            return Err(Rejection::new(
                RejectCode::UnknownContest,
                format!("{path}.contest"),
                format!(
                    "mission {} holds no contest {} (it holds {held})",
                    mission.id,
                    echo(&protocol.contest)
                ),
            ));
        };
        if body.protocols[..i].iter().any(|p| p.contest == protocol.contest) {
            reject(
                RejectCode::DuplicateContest,
                format!("{path}.contest"),
                format!("a second protocol for contest {}", echo(&protocol.contest)),
            )?;
        }
        if let Some(code) = protocol.votes.keys().find(|code| contest.choice(code).is_none()) {
            reject(
                RejectCode::UnknownChoice,
                format!("{path}.votes.{code}"),
                format!("contest `{}` has no candidate or option {}", contest.id, echo(code)),
            )?;
        }
    }
    Ok(())
}

/// Decoding bounds the description's length; a blank one or a NUL is ours to refuse.
fn check_incident(body: &IncidentBody, now: DateTime<Utc>) -> Result<(), Rejection> {
    if body.description.trim().is_empty() {
        reject(RejectCode::InvalidValue, "body.description", "describe what happened")?;
    }
    check_text("body.description", &body.description)?;
    check_timestamp("body.occurred_at", &body.occurred_at, now)
}

fn flag_roster(report: &Report, context: &Context<'_>, flags: &mut Vec<Flag>) {
    let mission = context.mission;
    if mission.station(&report.station).is_none() {
        flags.push(Flag::new(
            FlagCode::UnknownStation,
            "station",
            format!("station {} is not in the roster of mission {}", echo(&report.station), mission.id),
        ));
    }
    match mission.observer(&report.observer) {
        None => flags.push(Flag::new(
            FlagCode::UnknownObserver,
            "observer",
            format!("observer {} is not in the roster of mission {}", echo(&report.observer), mission.id),
        )),
        Some(observer) => {
            if let Some(sender) = context.sender
                && sender != observer.device_user
            {
                flags.push(Flag::new(
                    FlagCode::SenderMismatch,
                    "observer",
                    format!(
                        "sent by {}, but observer {}'s device is `{}`",
                        echo(sender),
                        observer.id,
                        observer.device_user
                    ),
                ));
            }
        }
    }
    let first =
        mission.time_zone.from_local_datetime(&mission.election_day.and_time(NaiveTime::MIN)).earliest();
    let last = mission
        .election_day
        .succ_opt()
        .and_then(|next| mission.time_zone.from_local_datetime(&next.and_time(DAY_AFTER_UNTIL)).latest());
    if let (Some(first), Some(last)) = (first, last) {
        let observed = report.observed_at.with_timezone(&mission.time_zone);
        if observed < first || observed >= last {
            flags.push(Flag::new(
                FlagCode::OutsideElectionDay,
                "observed_at",
                format!(
                    "observed at {} local time; election day is {} (counting may run to noon the day after)",
                    observed.format("%Y-%m-%d %H:%M"),
                    mission.election_day
                ),
            ));
        }
    }
}

fn flag_answers(report: &Report, mission: &Mission, flags: &mut Vec<Flag>) {
    let kind = report.kind();
    let Some(form) = mission.forms.get(&kind) else {
        for code in report.answers.keys() {
            flags.push(Flag::new(
                FlagCode::UnknownQuestion,
                format!("answers.{code}"),
                format!("mission {} has no form for {kind} reports", mission.id),
            ));
        }
        return;
    };
    for (code, answer) in &report.answers {
        let path = format!("answers.{code}");
        let Some(question) = form.question(code) else {
            flags.push(Flag::new(
                FlagCode::UnknownQuestion,
                path,
                format!("the {kind} form has no question {code}"),
            ));
            continue;
        };
        let problem = match (&question.answer, answer) {
            (AnswerType::YesNo, Answer::YesNo(_)) => None,
            (AnswerType::Number { min, max }, Answer::Number(n)) => (!(min..=max).contains(&n))
                .then(|| (FlagCode::AnswerOutOfRange, format!("{n} is outside {min}..{max}"))),
            (AnswerType::Choice { choices }, Answer::Text(choice)) => {
                (!choices.contains(choice)).then(|| {
                    (
                        FlagCode::AnswerOutOfRange,
                        format!("{} is not one of {}", echo(choice), choices.join(", ")),
                    )
                })
            }
            (AnswerType::Text { max_length }, Answer::Text(text)) => {
                let length = text.chars().count();
                (length > *max_length).then(|| {
                    (FlagCode::AnswerOutOfRange, format!("{length} characters; at most {max_length}"))
                })
            }
            (expected, _) => Some((
                FlagCode::AnswerTypeMismatch,
                format!("question {code} expects {}", describe(expected)),
            )),
        };
        if let Some((code, message)) = problem {
            flags.push(Flag::new(code, path, message));
        }
    }
    for question in form.questions.iter().filter(|q| q.required && !report.answers.contains_key(&q.code)) {
        flags.push(Flag::new(
            FlagCode::RequiredAnswerMissing,
            format!("answers.{}", question.code),
            format!("the {kind} form requires an answer to {}: {}", question.code, question.text),
        ));
    }
}

fn describe(answer: &AnswerType) -> &'static str {
    match answer {
        AnswerType::YesNo => "true or false",
        AnswerType::Number { .. } => "a whole number",
        AnswerType::Choice { .. } => "one of its choices, as text",
        AnswerType::Text { .. } => "text",
    }
}

fn flag_protocol(
    protocol: &Protocol,
    index: usize,
    station: Option<&Station>,
    mission: &Mission,
    flags: &mut Vec<Flag>,
) {
    let path = format!("body.protocols[{index}]");
    let valid = protocol.valid_votes();
    let invalid = u64::from(protocol.invalid);
    let in_box = u64::from(protocol.ballots_in_box);
    if valid + invalid != in_box {
        flags.push(Flag::new(
            FlagCode::CountingSumMismatch,
            format!("{path}.ballots_in_box"),
            format!(
                "{valid} valid + {invalid} invalid = {} but {in_box} ballots were in the box",
                valid + invalid
            ),
        ));
    }
    if valid + invalid > u64::from(protocol.registered_voters) {
        flags.push(Flag::new(
            FlagCode::VotesExceedRegistered,
            format!("{path}.votes"),
            format!("{} votes cast but {} voters registered", valid + invalid, protocol.registered_voters),
        ));
    }
    let accounted = u64::from(protocol.ballots_issued)
        + u64::from(protocol.ballots_spoiled)
        + u64::from(protocol.ballots_unused);
    if accounted != u64::from(protocol.ballots_received) {
        flags.push(Flag::new(
            FlagCode::BallotsUnreconciled,
            format!("{path}.ballots_received"),
            format!("{} received but issued + spoiled + unused = {accounted}", protocol.ballots_received),
        ));
    }
    if protocol.ballots_in_box > protocol.ballots_issued {
        flags.push(Flag::new(
            FlagCode::BallotsInBoxExceedIssued,
            format!("{path}.ballots_in_box"),
            format!(
                "{} ballots in the box but only {} issued",
                protocol.ballots_in_box, protocol.ballots_issued
            ),
        ));
    }
    if let Some(station) = station
        && station.registered_voters != protocol.registered_voters
    {
        flags.push(Flag::new(
            FlagCode::RegisteredVotersDiffer,
            format!("{path}.registered_voters"),
            format!(
                "the protocol says {} registered voters, the roster {} for station {}",
                protocol.registered_voters, station.registered_voters, station.code
            ),
        ));
    }
    if let Some(contest) = mission.contest(&protocol.contest) {
        let missing: Vec<&str> = contest
            .choices
            .iter()
            .map(|c| c.code.as_str())
            .filter(|c| !protocol.votes.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            flags.push(Flag::new(
                FlagCode::ChoiceMissing,
                format!("{path}.votes"),
                format!("no figure for {}", missing.join(", ")),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::codes::{FlagCode as F, RejectCode as R};
    use crate::test_support::*;

    fn raw(payload: &[u8]) -> crate::Rejection {
        let mission = mission();
        let context = super::Context { mission: &mission, now: now(), sender: None };
        super::check(payload, &context).expect_err("rejected")
    }

    #[test]
    fn a_clean_report_of_each_body_kind_is_accepted_without_flags() {
        assert_flags(&voting(), &[]);
        assert_flags(&counting(), &[]);
        assert_flags(&incident(), &[]);
    }

    // ---- rejections: the payload ----

    #[test]
    fn invalid_utf8_is_rejected() {
        assert_eq!(raw(b"{\"kind\": \"\xff\"}").code, R::InvalidUtf8);
    }

    #[test]
    fn malformed_json_is_rejected() {
        assert_eq!(raw(br#"{"schema_version": 1,"#).code, R::MalformedJson);
    }

    #[test]
    fn a_json_array_is_not_a_report() {
        assert_eq!(raw(b"[1, 2]").code, R::NotAnObject);
    }

    #[test]
    fn deeply_nested_json_is_rejected_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(raw(deep.as_bytes()).code, R::MalformedJson);
    }

    #[test]
    fn another_schema_version_is_rejected_before_anything_else() {
        let mut report = voting();
        report["schema_version"] = json!(2);
        report["surprise"] = json!(true);
        assert_rejected(&report, R::UnsupportedSchemaVersion, "schema_version");
    }

    #[test]
    fn missing_field_is_named() {
        let mut report = voting();
        report.as_object_mut().unwrap().remove("observer");
        assert_rejected(&report, R::MissingField, "observer");
    }

    #[test]
    fn missing_field_inside_the_body_has_its_full_path() {
        let mut report = counting();
        report["body"]["protocols"][1].as_object_mut().unwrap().remove("invalid");
        assert_rejected(&report, R::MissingField, "body.protocols[1].invalid");
    }

    #[test]
    fn misspelt_field_is_rejected_not_ignored() {
        let mut report = voting();
        report["assesment"] = json!("good");
        assert_rejected(&report, R::UnknownField, "assesment");
    }

    #[test]
    fn mistyped_field_is_rejected() {
        let mut report = voting();
        report["revision"] = json!("1");
        assert_rejected(&report, R::InvalidType, "revision");
    }

    #[test]
    fn an_answer_that_is_a_fraction_is_mistyped() {
        let mut report = voting();
        report["answers"]["Q2"] = json!(1.5);
        assert_rejected(&report, R::InvalidType, "answers.Q2");
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let mut report = voting();
        report["kind"] = json!("lunch");
        assert_rejected(&report, R::UnknownKind, "kind");
    }

    #[test]
    fn unknown_incident_category_is_rejected() {
        let mut report = incident();
        report["body"]["category"] = json!("alien_landing");
        assert_rejected(&report, R::UnknownCategory, "body.category");
    }

    #[test]
    fn unknown_assessment_is_an_invalid_value() {
        let mut report = voting();
        report["assessment"] = json!("splendid");
        assert_rejected(&report, R::InvalidValue, "assessment");
    }

    #[test]
    fn negative_count_is_rejected_with_its_path() {
        let mut report = counting();
        report["body"]["protocols"][0]["ballots_issued"] = json!(-3);
        assert_rejected(&report, R::InvalidValue, "body.protocols[0].ballots_issued");
    }

    #[test]
    fn malformed_report_id_is_rejected() {
        let mut report = voting();
        report["report_id"] = json!("not-a-uuid");
        assert_rejected(&report, R::InvalidValue, "report_id");
    }

    #[test]
    fn timestamp_without_offset_is_rejected() {
        let mut report = voting();
        report["observed_at"] = json!("2021-01-10T11:00:00");
        assert_rejected(&report, R::InvalidValue, "observed_at");
    }

    #[test]
    fn a_checklist_kind_cannot_carry_a_body() {
        let mut report = voting();
        report["body"] = json!({ "protocols": [] });
        assert_rejected(&report, R::UnknownField, "body");
    }

    #[test]
    fn a_counting_report_needs_a_body() {
        let mut report = counting();
        report.as_object_mut().unwrap().remove("body");
        assert_rejected(&report, R::MissingField, "body");
    }

    // ---- rejections: impossible values ----

    #[test]
    fn revision_zero_is_rejected() {
        let mut report = voting();
        report["revision"] = json!(0);
        assert_rejected(&report, R::InvalidRevision, "revision");
    }

    #[test]
    fn observation_far_in_the_future_is_rejected() {
        let mut report = voting();
        report["observed_at"] = json!("2021-01-12T06:00:00+06:00");
        assert_rejected(&report, R::TimestampInFuture, "observed_at");
    }

    #[test]
    fn a_device_clock_a_few_minutes_fast_is_tolerated() {
        let mut report = voting();
        report["submitted_at"] = json!("2021-01-11T12:10:00+06:00"); // now + 10 minutes
        assert_flags(&report, &[]);
    }

    // Found by `cargo fuzz run check_report` (fuzz/README.md): the input had submitted_at
    // 2021-01-10T20:15:60+06:00, accepted although the published JSON Schema refuses it.
    #[test]
    fn a_second_60_that_is_not_a_leap_second_at_midnight_utc_is_rejected() {
        let mut report = voting();
        report["submitted_at"] = json!("2021-01-10T20:15:60+06:00");
        assert_rejected(&report, R::InvalidValue, "submitted_at");
        let mut report = voting();
        report["observed_at"] = json!("2021-01-10T11:00:60+06:00");
        assert_rejected(&report, R::InvalidValue, "observed_at");
        let mut report = incident();
        report["body"]["occurred_at"] = json!("2021-01-10T10:50:60+06:00");
        assert_rejected(&report, R::InvalidValue, "body.occurred_at");
    }

    #[test]
    fn a_leap_second_at_23_59_60_utc_is_accepted_in_any_offset() {
        let mut report = voting();
        report["submitted_at"] = json!("2021-01-10T05:59:60+06:00");
        assert_flags(&report, &[]);
        report["submitted_at"] = json!("2021-01-09T23:59:60Z");
        assert_flags(&report, &[]);
    }

    #[test]
    fn incident_time_in_the_future_is_rejected() {
        let mut report = incident();
        report["body"]["occurred_at"] = json!("2021-01-12T10:00:00+06:00");
        assert_rejected(&report, R::TimestampInFuture, "body.occurred_at");
    }

    #[test]
    fn latitude_out_of_range_is_rejected() {
        let mut report = voting();
        report["location"] = json!({ "lat": 91.0, "lon": 74.5 });
        assert_rejected(&report, R::CoordinateOutOfRange, "location.lat");
    }

    #[test]
    fn negative_location_accuracy_is_rejected() {
        let mut report = voting();
        report["location"] = json!({ "lat": 42.0, "lon": 74.5, "accuracy": -1.0 });
        assert_rejected(&report, R::InvalidValue, "location.accuracy");
    }

    #[test]
    fn empty_station_code_is_rejected() {
        let mut report = voting();
        report["station"] = json!(" ");
        assert_rejected(&report, R::InvalidValue, "station");
    }

    #[test]
    fn identifier_with_a_nul_character_is_rejected() {
        let mut report = voting();
        report["observer"] = json!("o1\u{0}");
        assert_rejected(&report, R::InvalidValue, "observer");
    }

    #[test]
    fn free_text_with_a_nul_character_is_rejected_but_line_breaks_are_fine() {
        let mut report = incident();
        report["body"]["description"] = json!("two\nlines");
        assert_flags(&report, &[]);
        report["body"]["description"] = json!("cut\u{0}off");
        assert_rejected(&report, R::InvalidValue, "body.description");
        let mut report = voting();
        report["answers"]["Q3"] = json!("short\u{0}");
        assert_rejected(&report, R::InvalidValue, "answers.Q3");
    }

    #[test]
    fn overlong_identifier_is_rejected() {
        let mut report = voting();
        report["observer"] = json!("o".repeat(65));
        assert_rejected(&report, R::TextTooLong, "observer");
    }

    #[test]
    fn description_over_its_limit_is_rejected() {
        let mut report = incident();
        report["body"]["description"] = json!("x".repeat(4_001));
        assert_rejected(&report, R::TextTooLong, "body.description");
    }

    #[test]
    fn description_limit_counts_characters_not_bytes() {
        let mut report = incident();
        report["body"]["description"] = json!("ж".repeat(4_000));
        assert_flags(&report, &[]);
    }

    #[test]
    fn answer_text_over_the_wire_limit_is_rejected() {
        let mut report = voting();
        report["answers"]["Q4"] = json!("x".repeat(2_001));
        assert_rejected(&report, R::TextTooLong, "answers.Q4");
    }

    #[test]
    fn too_many_attachments_are_rejected() {
        let mut report = voting();
        let one = json!({ "sha256": "a".repeat(64), "media_type": "image/jpeg", "size": 10 });
        report["attachments"] = json!(vec![one; 21]);
        assert_rejected(&report, R::TooManyItems, "attachments");
    }

    #[test]
    fn malformed_checksum_is_rejected() {
        let mut report = voting();
        report["attachments"] = json!([{ "sha256": "ABC", "media_type": "image/jpeg", "size": 10 }]);
        assert_rejected(&report, R::InvalidValue, "attachments[0].sha256");
    }

    #[test]
    fn report_for_another_mission_is_rejected() {
        let mut report = voting();
        report["mission"] = json!("ua-2024");
        assert_rejected(&report, R::WrongMission, "mission");
    }

    #[test]
    fn protocol_for_a_contest_the_mission_does_not_hold_is_rejected() {
        let mut report = counting();
        report["body"]["protocols"][1]["contest"] = json!("parliament");
        assert_rejected(&report, R::UnknownContest, "body.protocols[1].contest");
    }

    #[test]
    fn votes_for_an_unknown_candidate_are_rejected() {
        let mut report = counting();
        report["body"]["protocols"][0]["votes"]["zed"] = json!(1);
        assert_rejected(&report, R::UnknownChoice, "body.protocols[0].votes.zed");
    }

    #[test]
    fn two_protocols_for_one_contest_are_rejected() {
        let mut report = counting();
        report["body"]["protocols"][1] = report["body"]["protocols"][0].clone();
        assert_rejected(&report, R::DuplicateContest, "body.protocols[1].contest");
    }

    #[test]
    fn counting_report_without_protocols_is_rejected() {
        let mut report = counting();
        report["body"]["protocols"] = json!([]);
        assert_rejected(&report, R::InvalidValue, "body.protocols");
    }

    // ---- flags: roster ----

    #[test]
    fn station_not_in_the_roster_is_flagged() {
        let mut report = voting();
        report["station"] = json!("S9");
        assert_flags(&report, &[(F::UnknownStation, "station")]);
    }

    #[test]
    fn observer_not_in_the_roster_is_flagged() {
        let mut report = voting();
        report["observer"] = json!("o9");
        assert_flags(&report, &[(F::UnknownObserver, "observer")]);
    }

    #[test]
    fn report_sent_from_another_observers_device_is_flagged() {
        let flags = run_as(&voting(), Some("dev-o2")).unwrap();
        assert_eq!(flags.len(), 1);
        assert_eq!((flags[0].code, flags[0].path.as_str()), (F::SenderMismatch, "observer"));
        assert!(flags[0].message.contains("dev-o2"), "{}", flags[0].message);
    }

    #[test]
    fn report_without_a_known_sender_is_not_flagged_for_it() {
        assert_eq!(run_as(&voting(), None).unwrap(), vec![]);
    }

    #[test]
    fn observation_the_day_before_is_flagged() {
        let mut report = voting();
        report["observed_at"] = json!("2021-01-09T23:59:00+06:00");
        assert_flags(&report, &[(F::OutsideElectionDay, "observed_at")]);
    }

    #[test]
    fn counting_after_midnight_still_belongs_to_election_day() {
        let mut report = counting();
        report["observed_at"] = json!("2021-01-10T19:30:00Z"); // 01:30 in Bishkek on the 11th
        assert_flags(&report, &[]);
    }

    // ---- flags: the counting protocol ----

    #[test]
    fn votes_that_do_not_add_up_to_the_ballots_in_the_box_are_flagged() {
        let mut report = counting();
        report["body"]["protocols"][0]["votes"]["a"] = json!(401);
        assert_flags(&report, &[(F::CountingSumMismatch, "body.protocols[0].ballots_in_box")]);
    }

    #[test]
    fn more_votes_than_registered_voters_are_flagged() {
        let mut report = counting();
        let protocol = &mut report["body"]["protocols"][1];
        protocol["registered_voters"] = json!(550);
        assert_flags(
            &report,
            &[
                (F::VotesExceedRegistered, "body.protocols[1].votes"),
                (F::RegisteredVotersDiffer, "body.protocols[1].registered_voters"),
            ],
        );
    }

    #[test]
    fn ballots_that_cannot_be_accounted_for_are_flagged() {
        let mut report = counting();
        report["body"]["protocols"][0]["ballots_unused"] = json!(300);
        assert_flags(&report, &[(F::BallotsUnreconciled, "body.protocols[0].ballots_received")]);
    }

    #[test]
    fn more_ballots_in_the_box_than_issued_are_flagged() {
        let mut report = counting();
        let protocol = &mut report["body"]["protocols"][1];
        protocol["ballots_issued"] = json!(590);
        protocol["ballots_unused"] = json!(410);
        assert_flags(&report, &[(F::BallotsInBoxExceedIssued, "body.protocols[1].ballots_in_box")]);
    }

    #[test]
    fn protocol_registered_voters_differing_from_the_roster_are_flagged() {
        let mut report = counting();
        report["body"]["protocols"][0]["registered_voters"] = json!(999);
        assert_flags(&report, &[(F::RegisteredVotersDiffer, "body.protocols[0].registered_voters")]);
    }

    #[test]
    fn a_candidate_missing_from_the_protocol_is_flagged() {
        let mut report = counting();
        let protocol = &mut report["body"]["protocols"][0];
        protocol["votes"] = json!({ "a": 590 });
        assert_flags(&report, &[(F::ChoiceMissing, "body.protocols[0].votes")]);
    }

    #[test]
    fn protocol_at_an_unknown_station_is_not_compared_with_the_roster() {
        let mut report = counting();
        report["station"] = json!("S9");
        report["body"]["protocols"][0]["registered_voters"] = json!(999);
        assert_flags(&report, &[(F::UnknownStation, "station")]);
    }

    // ---- flags: the checklist ----

    #[test]
    fn missing_required_answer_is_flagged() {
        let mut report = voting();
        report["answers"] = json!({});
        assert_flags(&report, &[(F::RequiredAnswerMissing, "answers.Q1")]);
    }

    #[test]
    fn number_outside_the_questions_range_is_flagged() {
        let mut report = voting();
        report["answers"]["Q2"] = json!(11);
        assert_flags(&report, &[(F::AnswerOutOfRange, "answers.Q2")]);
    }

    #[test]
    fn choice_not_offered_is_flagged() {
        let mut report = voting();
        report["answers"]["Q3"] = json!("medium");
        assert_flags(&report, &[(F::AnswerOutOfRange, "answers.Q3")]);
    }

    #[test]
    fn text_longer_than_the_form_allows_is_flagged() {
        let mut report = voting();
        report["answers"]["Q4"] = json!("123456");
        assert_flags(&report, &[(F::AnswerOutOfRange, "answers.Q4")]);
    }

    #[test]
    fn answer_of_the_wrong_type_is_flagged() {
        let mut report = voting();
        report["answers"]["Q1"] = json!("yes");
        assert_flags(&report, &[(F::AnswerTypeMismatch, "answers.Q1")]);
    }

    #[test]
    fn answer_to_a_question_the_form_lacks_is_flagged() {
        let mut report = voting();
        report["answers"]["Q99"] = json!(true);
        assert_flags(&report, &[(F::UnknownQuestion, "answers.Q99")]);
    }

    #[test]
    fn answers_for_a_kind_without_a_form_are_flagged() {
        let mut report = incident();
        report["answers"] = json!({ "Q1": true });
        assert_flags(&report, &[(F::UnknownQuestion, "answers.Q1")]);
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let mut report = counting();
        report["station"] = json!("S9");
        report["observer"] = json!("o9");
        report["body"]["protocols"][0]["votes"]["a"] = json!(401);
        let flags = run(&report).unwrap();
        let codes: Vec<F> = flags.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec![F::UnknownStation, F::UnknownObserver, F::CountingSumMismatch]);
    }
}
