//! The closed sets of rejection and flag codes. Operators filter dead letters and the review
//! queue on these strings, so a code, once released, keeps its name and meaning.
//! `docs/report-codes.md` lists them too; a test keeps the two in step.

use std::fmt;

use serde::Serialize;

use crate::detail::{bounded_message, bounded_path};

macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $doc:literal])+ $variant:ident => $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl $name {
            /// Every code, in documentation order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable machine-readable code, e.g. `missing_field`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)+ }
            }

            /// What the code means, for documentation and operators.
            pub fn meaning(self) -> &'static str {
                match self { $(Self::$variant => concat!($($doc),+).trim_ascii(),)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why a report cannot be accepted at all. A rejected report is dead-lettered with its code.
    RejectCode {
        /// The payload is not valid UTF-8.
        InvalidUtf8 => "invalid_utf8",
        /// The payload is not well-formed JSON.
        MalformedJson => "malformed_json",
        /// The payload is JSON but not an object.
        NotAnObject => "not_an_object",
        /// `schema_version` names a version this pollwatch does not read (it reads 1).
        UnsupportedSchemaVersion => "unsupported_schema_version",
        /// A required field is absent.
        MissingField => "missing_field",
        /// A field that the schema does not define (often a misspelling).
        UnknownField => "unknown_field",
        /// A field has the wrong JSON type, e.g. a string where a number belongs.
        InvalidType => "invalid_type",
        /// A value of the right type that cannot be right: a malformed UUID or timestamp, a negative count, a malformed checksum.
        InvalidValue => "invalid_value",
        /// `kind` is not one of the report kinds.
        UnknownKind => "unknown_kind",
        /// An incident's `category` is not in the taxonomy.
        UnknownCategory => "unknown_category",
        /// `revision` is 0; revisions start at 1.
        InvalidRevision => "invalid_revision",
        /// A timestamp lies further in the future than clock drift explains.
        TimestampInFuture => "timestamp_in_future",
        /// A latitude outside -90..90 or a longitude outside -180..180.
        CoordinateOutOfRange => "coordinate_out_of_range",
        /// A text or identifier is longer than its limit.
        TextTooLong => "text_too_long",
        /// A list or map has more entries than its limit.
        TooManyItems => "too_many_items",
        /// `mission` is not the mission this pollwatch serves.
        WrongMission => "wrong_mission",
        /// A counting protocol for a contest the mission does not hold.
        UnknownContest => "unknown_contest",
        /// Votes for a candidate or option that the contest does not have.
        UnknownChoice => "unknown_choice",
        /// Two counting protocols for the same contest in one report.
        DuplicateContest => "duplicate_contest",
        /// The message body (or what it decompresses to) is larger than the worker accepts
        /// (`ingest.max_body_bytes`).
        BodyTooLarge => "body_too_large",
        /// The message's `content_type` is not `application/json`.
        UnsupportedContentType => "unsupported_content_type",
        /// The message's `content_encoding` is neither absent nor `gzip`, or its gzip stream is
        /// broken.
        UnsupportedContentEncoding => "unsupported_content_encoding",
        /// The message lacks an AMQP property the worker requires (`content_type`).
        MissingProperty => "missing_property",
        /// The worker requires sender authentication and the message has no `user_id`.
        SenderMissing => "sender_missing",
        /// The worker requires sender authentication and the message's `user_id` is not the
        /// device account of the report's observer in the roster.
        SenderMismatch => "sender_mismatch",
        /// The store refused the report for good (a constraint it can never satisfy); the detail
        /// carries the database's message.
        StoreRejected => "store_rejected",
        /// The message's own headers do not fit in a dead letter beside the worker's reason (one
        /// AMQP frame): the dead letter carries the headers that fit and the body intact, and its
        /// detail gives the original reason.
        HeadersTooLarge => "headers_too_large",
        /// An object holds the same key twice, at any depth; the path names the second one.
        /// JSON leaves duplicates to the reader, and readers disagree on which one wins.
        DuplicateKey => "duplicate_key",
    }
}

codes! {
    /// Why an accepted report is held for review. A flagged report is stored and visible but not
    /// counted in results until an operator releases it.
    FlagCode {
        /// The station code is not in the mission's roster.
        UnknownStation => "unknown_station",
        /// The observer id is not in the mission's roster.
        UnknownObserver => "unknown_observer",
        /// The broker user that sent the report is not the observer's device account.
        SenderMismatch => "sender_mismatch",
        /// The observation was not made on election day (in the mission's time zone).
        OutsideElectionDay => "outside_election_day",
        /// Valid votes plus invalid ballots differ from the ballots found in the box.
        CountingSumMismatch => "counting_sum_mismatch",
        /// More votes than voters registered at the station.
        VotesExceedRegistered => "votes_exceed_registered",
        /// Ballots received differ from ballots issued plus spoiled plus unused.
        BallotsUnreconciled => "ballots_unreconciled",
        /// More ballots in the box than were issued.
        BallotsInBoxExceedIssued => "ballots_in_box_exceed_issued",
        /// The protocol's registered voters differ from the roster's figure for the station.
        RegisteredVotersDiffer => "registered_voters_differ",
        /// A candidate or option of the contest is missing from the protocol's votes.
        ChoiceMissing => "choice_missing",
        /// A question that the form marks as required has no answer.
        RequiredAnswerMissing => "required_answer_missing",
        /// An answer of the wrong type for its question, e.g. a number for a yes/no question.
        AnswerTypeMismatch => "answer_type_mismatch",
        /// An answer outside its question's range, choices or length.
        AnswerOutOfRange => "answer_out_of_range",
        /// An answer to a question the form for this kind does not have.
        UnknownQuestion => "unknown_question",
    }
}

/// `docs/report-codes.md`: both closed sets with their meanings, generated from this module.
pub fn codes_markdown() -> String {
    let mut out = String::from(
        "# Report codes\n\n\
         Generated from `crates/pollwatch-model/src/codes.rs`; a test fails when this file and the code differ\n\
         (`POLLWATCH_BLESS=1 cargo test -p pollwatch-model` rewrites it). Codes are stable: operators filter\n\
         dead letters and the review queue on them.\n\n\
         ## Rejections\n\n\
         A rejected report cannot be accepted at all. The worker dead-letters it with the code in the\n\
         `x-pollwatch-error` header and the message, which names the field path, in `x-pollwatch-detail`.\n\n\
         | code | meaning |\n|---|---|\n",
    );
    for code in RejectCode::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.meaning()));
    }
    out.push_str(
        "\n## Flags\n\n\
         A flagged report is accepted and stored, but held for review: it is visible to operators and left\n\
         out of results until released. One report can carry several flags.\n\n\
         | code | meaning |\n|---|---|\n",
    );
    for code in FlagCode::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.meaning()));
    }
    out
}

/// Why a report was rejected: a code, the path of the offending field, and a message for people.
/// Built with [`Rejection::new`], it is short whatever the input ([`crate::MAX_DETAIL_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code} at {path}: {message}")]
pub struct Rejection {
    pub code: RejectCode,
    /// Dotted path of the field, e.g. `body.protocols[0].votes.japarov`; `$` for the whole report.
    pub path: String,
    pub message: String,
}

impl Rejection {
    /// A rejection whose path is at most [`crate::MAX_PATH_BYTES`] and whose display is at most
    /// [`crate::MAX_DETAIL_BYTES`], control characters escaped: longer ones are cut and marked.
    pub fn new(code: RejectCode, path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = bounded_path(path.into());
        let message = bounded_message(code.as_str(), &path, message.into());
        Self { code, path, message }
    }
}

/// Why an accepted report is held for review. Built with [`Flag::new`], it is as short as a
/// [`Rejection`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub code: FlagCode,
    /// Dotted path of the field concerned; `$` for the report as a whole.
    pub path: String,
    pub message: String,
}

impl Flag {
    /// A flag bounded as [`Rejection::new`] bounds a rejection.
    pub fn new(code: FlagCode, path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = bounded_path(path.into());
        let message = bounded_message(code.as_str(), &path, message.into());
        Self { code, path, message }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.code, self.path, self.message)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_documented() {
        let reject = RejectCode::ALL.iter().map(|c| (c.as_str(), c.meaning()));
        let flag = FlagCode::ALL.iter().map(|c| (c.as_str(), c.meaning()));
        let mut seen = HashSet::new();
        for (code, meaning) in reject.chain(flag) {
            // `sender_mismatch` is the one code in both sets, with one meaning: a flag, or a
            // rejection when the worker requires sender authentication.
            assert!(seen.insert(code) || code == "sender_mismatch", "code {code} is used twice");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{code}");
            assert!(!meaning.is_empty(), "{code} has no meaning");
        }
    }

    #[test]
    fn serialised_code_is_its_string() {
        assert_eq!(serde_json::to_string(&RejectCode::MissingField).unwrap(), r#""missing_field""#);
        assert_eq!(
            serde_json::to_string(&FlagCode::CountingSumMismatch).unwrap(),
            r#""counting_sum_mismatch""#
        );
    }
}
