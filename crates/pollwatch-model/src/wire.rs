//! The wire contract between devices, the worker and operators' tools: the routing keys reports
//! are published with, the content type they carry, and the headers pollwatch writes. The
//! publisher, the worker, its dead letters and the simulator all read these from here, so no two
//! of them can drift apart.
//!
//! Pure: names and the functions that build or recognise them, no AMQP client.

use crate::ReportKind;

/// What every report's routing key starts with; the kind follows (`report.voting`).
const ROUTING_KEY_PREFIX: &str = "report.";

/// The binding of the ingest queue to the reports exchange: every `report.<kind>`, known kind or
/// not (the worker judges the kind, and dead-letters an unknown one with its code).
pub const BINDING_PATTERN: &str = "report.*";

/// The content type of every report.
pub const JSON: &str = "application/json";

/// What the name of every header pollwatch writes starts with. Only the worker may write them on
/// a dead letter: it strips any a device sent before it writes its own.
pub const HEADER_PREFIX: &str = "x-pollwatch-";

/// A dead letter's code (`docs/report-codes.md`).
pub const ERROR_HEADER: &str = "x-pollwatch-error";
/// A dead letter's reason, in words, bounded in size.
pub const DETAIL_HEADER: &str = "x-pollwatch-detail";
/// The routing key the report was published with, on its dead letter.
pub const ROUTING_KEY_HEADER: &str = "x-pollwatch-routing-key";
/// The original `user_id` property, kept as a header on a dead letter: RabbitMQ refuses a message
/// whose `user_id` is not the publishing connection's user, so the worker cannot republish it as a
/// property.
pub const USER_ID_HEADER: &str = "x-pollwatch-user-id";
/// When the message was published, in microseconds since the Unix epoch (pollwatch's publisher
/// sets it); the worker measures from it to the commit (`pollwatch_publish_to_commit_seconds`).
pub const PUBLISHED_AT_HEADER: &str = "x-pollwatch-published-at";

/// The routing key a report of `kind` is published with: `report.<kind>`.
pub fn routing_key(kind: ReportKind) -> String {
    format!("{ROUTING_KEY_PREFIX}{}", kind.as_str())
}

/// The kind a routing key names, as the AMQP `type` property carries it: the key without its
/// `report.` prefixes (the whole key when it has none).
pub fn kind_of(routing_key: &str) -> &str {
    routing_key.trim_start_matches(ROUTING_KEY_PREFIX)
}

/// Whether `content_type` is [`JSON`], with or without parameters such as `; charset=utf-8`.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kinds_routing_key_matches_the_binding_and_names_the_kind() {
        let prefix = BINDING_PATTERN.strip_suffix('*').expect("a one-word wildcard");
        for kind in ReportKind::ALL {
            let key = routing_key(kind);
            let word = key.strip_prefix(prefix).expect("the binding's prefix");
            assert!(!word.is_empty() && !word.contains('.'), "{key} is one word after the prefix");
            assert_eq!(kind_of(&key), kind.as_str());
        }
        assert_eq!(routing_key(ReportKind::Voting), "report.voting");
    }

    #[test]
    fn json_is_recognised_with_parameters_and_in_any_case() {
        assert!(is_json(JSON));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json(" Application/JSON "));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json(""));
    }

    #[test]
    fn every_header_we_write_carries_the_prefix_the_dead_letter_strips() {
        for header in [ERROR_HEADER, DETAIL_HEADER, ROUTING_KEY_HEADER, USER_ID_HEADER, PUBLISHED_AT_HEADER] {
            assert!(header.starts_with(HEADER_PREFIX), "{header}");
        }
    }
}
