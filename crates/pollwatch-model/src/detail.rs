//! How much of a hostile report a rejection or flag may carry. A detail travels in an AMQP
//! header, a log line and the review queue, so it is short and printable whatever the input:
//! quoted input is cut to [`MAX_ECHO_CHARS`] characters, a path to [`MAX_PATH_BYTES`] bytes, and
//! the whole `{code} at {path}: {message}` to [`MAX_DETAIL_BYTES`] bytes. Control characters are
//! escaped, so that a detail never holds a raw line break or NUL.

use std::fmt::Write as _;

/// Most characters of one piece of input that a message quotes.
pub const MAX_ECHO_CHARS: usize = 100;
/// Longest path of a rejection or flag, in bytes.
pub const MAX_PATH_BYTES: usize = 200;
/// Longest rejection or flag as displayed (`{code} at {path}: {message}`), in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// What ends a path or message that was cut to its limit.
const CUT: &str = "… (cut)";

/// Quotes a piece of input for a message: in backticks, control characters escaped, and cut
/// after [`MAX_ECHO_CHARS`] characters with its full length said, e.g.
/// `` `aaaa…` (200000 characters) ``. Short, printable input comes back only quoted.
pub fn echo(input: &str) -> String {
    let mut out = String::with_capacity(input.len().min(4 * MAX_ECHO_CHARS) + 2);
    out.push('`');
    let mut chars = input.chars();
    for c in chars.by_ref().take(MAX_ECHO_CHARS) {
        push_printable(&mut out, c);
    }
    if chars.next().is_some() {
        let _ = write!(out, "…` ({} characters)", input.chars().count());
    } else {
        out.push('`');
    }
    out
}

/// A path bounded for a rejection or flag: control characters escaped, cut to
/// [`MAX_PATH_BYTES`] bytes. A path holds the names of the input's keys, so it can be as long as
/// the input.
pub(crate) fn bounded_path(path: String) -> String {
    bounded(path, MAX_PATH_BYTES)
}

/// A message bounded so that `{code} at {path}: {message}` fits in [`MAX_DETAIL_BYTES`].
pub(crate) fn bounded_message(code: &str, path: &str, message: String) -> String {
    let fixed = code.len() + " at ".len() + path.len() + ": ".len();
    bounded(message, MAX_DETAIL_BYTES.saturating_sub(fixed))
}

/// `text` with control characters escaped, cut on a character boundary to `limit` bytes with
/// [`CUT`] at its end. Text that is already printable and short enough is returned as it is.
/// Whatever echoes text it did not write (a dead letter's detail, a header an operator reads)
/// bounds it with this.
pub fn bounded(text: String, limit: usize) -> String {
    if text.len() <= limit && !text.chars().any(char::is_control) {
        return text;
    }
    // Escaping only lengthens, so the work stops one character past the limit.
    let mut out = String::with_capacity(limit.min(text.len()) + 16);
    for c in text.chars() {
        push_printable(&mut out, c);
        if out.len() > limit {
            break;
        }
    }
    if out.len() <= limit {
        return out;
    }
    let mut end = limit.saturating_sub(CUT.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.push_str(CUT);
    out
}

fn push_printable(out: &mut String, c: char) {
    if c.is_control() {
        let _ = write!(out, "{}", c.escape_debug());
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_input_is_only_quoted() {
        assert_eq!(echo("lunch"), "`lunch`");
        assert_eq!(echo("жж"), "`жж`");
        assert_eq!(echo(""), "``");
    }

    #[test]
    fn long_input_is_cut_with_its_length_said() {
        let echoed = echo(&"a".repeat(200_000));
        assert_eq!(echoed, format!("`{}…` (200000 characters)", "a".repeat(MAX_ECHO_CHARS)));
    }

    #[test]
    fn input_of_exactly_the_limit_is_not_cut() {
        let input = "ж".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&input), format!("`{input}`"));
    }

    #[test]
    fn control_characters_in_input_are_escaped() {
        assert_eq!(echo("a\nb\0c\u{1b}"), r"`a\nb\0c\u{1b}`");
    }

    #[test]
    fn a_long_path_is_cut_on_a_character_boundary_and_marked() {
        let path = bounded_path("ж".repeat(1_000));
        assert!(path.len() <= MAX_PATH_BYTES, "{}", path.len());
        assert!(path.ends_with(CUT), "{path}");
    }

    #[test]
    fn a_short_path_is_unchanged() {
        assert_eq!(bounded_path("body.protocols[0].votes.japarov".into()), "body.protocols[0].votes.japarov");
    }

    #[test]
    fn a_path_with_a_line_break_is_escaped() {
        assert_eq!(bounded_path("answers.Q\n1".into()), r"answers.Q\n1");
    }

    #[test]
    fn a_message_is_cut_so_that_the_whole_detail_fits() {
        let path = "p".repeat(MAX_PATH_BYTES);
        let message = bounded_message("invalid_value", &path, "\0".repeat(100_000));
        let detail = format!("invalid_value at {path}: {message}");
        assert!(detail.len() <= MAX_DETAIL_BYTES, "{}", detail.len());
        assert!(message.ends_with(CUT), "{message}");
    }

    // ---- every rejection and flag the model makes, driven with hostile input ----

    use serde_json::{Value, json};

    use crate::codes::{FlagCode, RejectCode};
    use crate::test_support::{counting, incident, mission, now, run_as, voting};
    use crate::validate::{Context, check};

    /// Longer than any limit, and than any echo: 200,000 characters.
    fn huge() -> String {
        "a".repeat(200_000)
    }

    #[track_caller]
    fn assert_bounded(detail: &str, path: &str) {
        assert!(detail.len() <= MAX_DETAIL_BYTES, "{} bytes: {}…", detail.len(), &detail[..200]);
        assert!(path.len() <= MAX_PATH_BYTES, "a path of {} bytes", path.len());
        assert!(!detail.chars().any(char::is_control), "a control character in {detail:?}");
    }

    fn rejected(payload: &[u8]) -> crate::Rejection {
        let mission = mission();
        let context = Context { mission: &mission, now: now(), sender: Some("dev-o1") };
        check(payload, &context).expect_err("rejected")
    }

    fn with(mut report: Value, pointer: &str, value: Value) -> Vec<u8> {
        match report.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                report.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_owned(), value);
            }
        }
        serde_json::to_vec(&report).unwrap()
    }

    /// For each code the model can produce, a payload that makes it with as much hostile input
    /// as the code allows, and whether the message quotes that input (and so must mark a cut).
    fn hostile_payloads() -> Vec<(RejectCode, Vec<u8>, bool)> {
        let huge = huge();
        let with_key = |report: Value, pointer: &str, key: &str| {
            let mut report = report;
            report.pointer_mut(pointer).unwrap().as_object_mut().unwrap().insert(key.to_owned(), json!(1));
            serde_json::to_vec(&report).unwrap()
        };
        let mut duplicate = serde_json::to_string(&voting()).unwrap();
        duplicate.insert_str(1, &format!(r#""{huge}":1,"{huge}":2,"#));
        let mut missing = counting();
        missing["body"]["protocols"][0].as_object_mut().unwrap().remove("invalid");
        vec![
            (RejectCode::InvalidUtf8, vec![0xff; 200_000], false),
            (RejectCode::MalformedJson, format!("\"{huge}").into_bytes(), false),
            (RejectCode::NotAnObject, serde_json::to_vec(&huge).unwrap(), false),
            (RejectCode::UnsupportedSchemaVersion, with(voting(), "/schema_version", json!(2e300)), false),
            (RejectCode::MissingField, serde_json::to_vec(&missing).unwrap(), false),
            (RejectCode::UnknownField, with_key(counting(), "/body/protocols/0", &huge), true),
            (RejectCode::InvalidType, with(voting(), "/revision", json!(huge)), false),
            (RejectCode::InvalidValue, with(voting(), "/report_id", json!(huge)), true),
            (RejectCode::InvalidValue, with(voting(), "/observed_at", json!(huge)), true),
            (RejectCode::UnknownKind, with(voting(), "/kind", json!(huge)), true),
            (RejectCode::UnknownCategory, with(incident(), "/body/category", json!(huge)), true),
            (RejectCode::InvalidRevision, with(voting(), "/revision", json!(0)), false),
            (
                RejectCode::TimestampInFuture,
                with(voting(), "/observed_at", json!("9999-12-31T23:59:59Z")),
                false,
            ),
            (
                RejectCode::CoordinateOutOfRange,
                with(voting(), "/location", json!({"lat": -1e308, "lon": 0})),
                false,
            ),
            (RejectCode::TextTooLong, with(voting(), "/station", json!(huge)), false),
            (
                RejectCode::TooManyItems,
                with(voting(), "/answers", (0..201).map(|i| (format!("Q{i}"), json!(1))).collect()),
                false,
            ),
            (RejectCode::WrongMission, with(voting(), "/mission", json!("m".repeat(64))), false),
            (
                RejectCode::UnknownContest,
                with(counting(), "/body/protocols/0/contest", json!("\u{0}\n".repeat(32))),
                false,
            ),
            (RejectCode::UnknownChoice, with_key(counting(), "/body/protocols/0/votes", &huge), true),
            (
                RejectCode::DuplicateContest,
                {
                    let mut report = counting();
                    report["body"]["protocols"][1] = report["body"]["protocols"][0].clone();
                    serde_json::to_vec(&report).unwrap()
                },
                false,
            ),
            (RejectCode::DuplicateKey, duplicate.into_bytes(), true),
        ]
    }

    #[test]
    fn every_rejection_stays_within_its_bound_whatever_the_input() {
        let payloads = hostile_payloads();
        for (code, payload, echoes) in &payloads {
            let rejection = rejected(payload);
            assert_eq!(rejection.code, *code, "{rejection}");
            assert_bounded(&rejection.to_string(), &rejection.path);
            if *echoes {
                assert!(rejection.to_string().contains("…"), "the echo is not marked as cut: {rejection}");
            }
        }
        // Every code the model makes is driven; the others are the worker's and the store's.
        let worker = [
            RejectCode::BodyTooLarge,
            RejectCode::UnsupportedContentType,
            RejectCode::UnsupportedContentEncoding,
            RejectCode::MissingProperty,
            RejectCode::SenderMissing,
            RejectCode::SenderMismatch,
            RejectCode::StoreRejected,
            RejectCode::HeadersTooLarge,
        ];
        for code in RejectCode::ALL.iter().filter(|code| !worker.contains(code)) {
            assert!(payloads.iter().any(|(c, ..)| c == code), "{code} is not driven");
        }
    }

    #[test]
    fn a_rejection_of_normal_input_is_unchanged() {
        let mut report = voting();
        report["kind"] = json!("lunch");
        let rejection = rejected(&serde_json::to_vec(&report).unwrap());
        assert_eq!(
            rejection.to_string(),
            "unknown_kind at kind: unknown kind `lunch`; expected one of arrival, departure, opening, \
             voting, closing, counting, incident"
        );
    }

    #[test]
    fn a_rejection_made_by_the_worker_is_bounded_too() {
        let rejection =
            crate::Rejection::new(RejectCode::StoreRejected, huge(), format!("{}\n{}", huge(), huge()));
        assert_bounded(&rejection.to_string(), &rejection.path);
        assert!(rejection.path.ends_with(CUT) && rejection.message.ends_with(CUT), "{rejection}");
    }

    #[test]
    fn every_flag_stays_within_its_bound_whatever_the_input() {
        let huge = huge();
        let mut choice = voting();
        choice["answers"]["Q3"] = json!("ж".repeat(2_000));
        let cases = [
            (FlagCode::SenderMismatch, run_as(&voting(), Some(&huge)), true),
            (FlagCode::AnswerOutOfRange, run_as(&choice, None), true),
        ];
        for (code, flags, echoes) in cases {
            let flags = flags.expect("accepted");
            let flag =
                flags.iter().find(|f| f.code == code).unwrap_or_else(|| panic!("no {code}: {flags:?}"));
            assert_bounded(&flag.to_string(), &flag.path);
            if echoes {
                assert!(flag.message.contains("…"), "the echo is not marked as cut: {flag}");
            }
        }
    }
}
