//! One delivery as the worker judges it: the model's [`pollwatch_model::judge`] decides what
//! becomes of its message; an accepted report becomes the store's [`Incoming`], with what the
//! broker says of the delivery. Nothing here talks to the broker or the store.

use chrono::{DateTime, Utc};
use pollwatch_model::{Accepted, Envelope, Mission, Rejection, Rules};
use pollwatch_store::{Delivery, Incoming};

/// Judges a message received at `now`: the report to commit, with whether the broker delivered
/// it before, or why it is dead-lettered.
pub(crate) fn judge(
    message: &Envelope<'_>,
    redelivered: bool,
    mission: &Mission,
    rules: Rules,
    now: DateTime<Utc>,
) -> Result<Incoming, Rejection> {
    let Accepted { report, flags, payload, sender } = pollwatch_model::judge(message, mission, rules, now)?;
    let delivery = Delivery { sender, redelivered, received_at: now };
    Ok(Incoming::new(report, flags, payload, delivery))
}

#[cfg(test)]
mod tests {
    use pollwatch_model::{RejectCode, wire};

    use super::*;

    const RULES: Rules = Rules { max_body_bytes: 64 * 1024, require_sender_auth: true };

    /// The committed example voting report, by observer `obs-001`.
    fn report() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/examples/voting.json");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The morning after the election in Bishkek.
    fn now() -> DateTime<Utc> {
        "2021-01-11T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_valid_report_is_accepted_with_its_delivery() {
        let body = report();
        let mission = pollwatch_model::sample::kg_2021();
        let device = mission.observer("obs-001").unwrap().device_user.clone();
        let envelope = Envelope {
            body: &body,
            content_type: Some(wire::JSON),
            content_encoding: None,
            user_id: Some(&device),
        };
        let incoming = judge(&envelope, true, &mission, RULES, now()).unwrap();
        assert_eq!(incoming.payload.as_bytes(), body.as_slice());
        assert!(incoming.delivery.redelivered);
        assert_eq!(incoming.delivery.received_at, now());
        assert_eq!(incoming.delivery.sender.as_deref(), Some(device.as_str()));
    }

    #[test]
    fn a_rejection_is_the_models() {
        let mission = pollwatch_model::sample::kg_2021();
        let envelope =
            Envelope { body: b"{", content_type: Some(wire::JSON), content_encoding: None, user_id: None };
        let rejection = judge(&envelope, false, &mission, RULES, now()).expect_err("a rejection");
        assert_eq!(rejection.code, RejectCode::SenderMissing);
    }
}
