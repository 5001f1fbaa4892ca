//! What `verify_audit` checks beyond the chain: that what the queries count still follows from
//! what the chain covers. The counting protocols and votes of each revision are derived from its
//! payload when it is stored, and each report's review state and each settlement from the review
//! log (and which version of a revision counts from the reviewers' picks); a row changed behind
//! the store's back there would change the results without touching a chained row, so each is
//! derived again here and compared.

use std::collections::BTreeMap;

use pollwatch_model::Content;

use crate::db::{Sql, rows_per_statement};
use crate::{Store, StoreError};

/// A protocol's figures and votes as text, comparable whichever way they were read.
type Figures = BTreeMap<String, String>;

impl Store {
    /// The first of `revisions` (chain position, seq) whose stored protocols or votes differ from
    /// those its payload holds, with why.
    pub(crate) async fn protocols_differ(
        &self,
        revisions: &[(i64, i64)],
    ) -> Result<Option<(i64, String)>, StoreError> {
        for chunk in revisions.chunks(rows_per_statement(1)) {
            let seqs: Vec<i64> = chunk.iter().map(|(_, seq)| *seq).collect();
            let mut expected: BTreeMap<i64, Figures> = BTreeMap::new();
            let mut sql = Sql::new(
                self.backend,
                "SELECT seq, payload FROM report_revisions WHERE kind = 'counting' AND seq",
            );
            sql.bind_in(seqs.clone());
            for row in sql.fetch_all(&self.pool).await? {
                let (seq, payload): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
                let figures = expected.entry(seq).or_default();
                let Ok(report) = pollwatch_model::decode(payload.as_bytes()) else {
                    figures.insert(String::new(), "a payload that no longer decodes".to_owned());
                    continue;
                };
                if let Content::Counting(body) = &report.content {
                    for p in &body.protocols {
                        let numbers = [
                            p.registered_voters,
                            p.ballots_received,
                            p.ballots_issued,
                            p.ballots_spoiled,
                            p.ballots_unused,
                            p.ballots_in_box,
                            p.invalid,
                        ];
                        let numbers: Vec<String> = numbers.iter().map(u32::to_string).collect();
                        figures.insert(format!("{} figures", p.contest), numbers.join(","));
                        for (choice, votes) in &p.votes {
                            figures.insert(format!("{} {choice}", p.contest), votes.to_string());
                        }
                    }
                }
            }
            let mut stored: BTreeMap<i64, Figures> = BTreeMap::new();
            let mut sql = Sql::new(
                self.backend,
                "SELECT revision_seq, contest, CAST(registered_voters AS TEXT) || ',' || CAST(ballots_received AS TEXT) \
                 || ',' || CAST(ballots_issued AS TEXT) || ',' || CAST(ballots_spoiled AS TEXT) || ',' || \
                 CAST(ballots_unused AS TEXT) || ',' || CAST(ballots_in_box AS TEXT) || ',' || CAST(invalid AS TEXT), \
                 votes_digest FROM protocols WHERE revision_seq",
            );
            sql.bind_in(seqs.clone());
            for row in sql.fetch_all(&self.pool).await? {
                let (seq, contest, numbers, digest): (i64, String, String, String) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                let figures = stored.entry(seq).or_default();
                figures.insert(format!("{contest} figures"), numbers);
                // The digest (read by the discrepancies) must say what the vote rows say.
                for entry in digest.split(';').filter(|e| !e.is_empty()) {
                    if let Some((choice, votes)) = entry.rsplit_once('=') {
                        figures.insert(format!("{contest} {choice} (digest)"), votes.to_owned());
                    }
                }
            }
            let mut sql = Sql::new(
                self.backend,
                "SELECT revision_seq, contest, choice, votes FROM protocol_votes WHERE revision_seq",
            );
            sql.bind_in(seqs);
            for row in sql.fetch_all(&self.pool).await? {
                let (seq, contest, choice, votes): (i64, String, String, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                stored.entry(seq).or_default().insert(format!("{contest} {choice}"), votes.to_string());
            }
            for (position, seq) in chunk {
                let mut want = expected.remove(seq).unwrap_or_default();
                // Each vote is stored twice: as a row and in the protocol's digest.
                let digests: Vec<(String, String)> = want
                    .iter()
                    .filter(|(key, _)| !key.ends_with(" figures"))
                    .map(|(key, votes)| (format!("{key} (digest)"), votes.clone()))
                    .collect();
                want.extend(digests);
                let have = stored.remove(seq).unwrap_or_default();
                if want != have {
                    let differs = want
                        .iter()
                        .find(|(key, value)| have.get(*key) != Some(*value))
                        .map(|(key, _)| key.clone())
                        .or_else(|| have.keys().find(|key| !want.contains_key(*key)).cloned())
                        .unwrap_or_default();
                    return Ok(Some((
                        *position,
                        format!(
                            "the counting protocols stored for revision {seq} differ from its payload ({differs}): \
                             a figure was changed where the results read it"
                        ),
                    )));
                }
            }
        }
        Ok(None)
    }

    /// A report whose review state, or a settlement, that does not follow from the review log
    /// and the flags its revision arrived with, if any, with why.
    pub(crate) async fn state_differs(&self) -> Result<Option<String>, StoreError> {
        let checks: [(&str, &str); 6] = [
            (
                "SELECT r.report_id FROM reports r WHERE NOT EXISTS (SELECT 1 FROM report_revisions v \
                 WHERE v.seq = r.revision_seq AND v.report_id = r.report_id AND v.revision = r.revision) \
                 OR EXISTS (SELECT 1 FROM report_revisions v WHERE v.report_id = r.report_id AND v.revision > r.revision) \
                 LIMIT 1",
                "is not at its highest stored revision",
            ),
            (
                "SELECT r.report_id FROM reports r WHERE (r.review_state = 'accepted') = r.quarantined \
                 OR r.review_state NOT IN ('accepted', 'held', 'rejected') LIMIT 1",
                "is counted against its review state",
            ),
            (
                "SELECT r.report_id FROM reports r WHERE r.decision IS NULL AND \
                 (r.review_state = 'held') <> EXISTS (SELECT 1 FROM report_flags f WHERE f.revision_seq = r.revision_seq) \
                 LIMIT 1",
                "has a state no decision set and its flags do not give",
            ),
            (
                "SELECT r.report_id FROM reports r LEFT JOIN review_log l ON l.id = r.decision \
                 WHERE r.decision IS NOT NULL AND (l.id IS NULL OR l.report_id <> r.report_id \
                 OR l.revision <> r.revision OR l.to_state <> r.review_state OR EXISTS (SELECT 1 FROM review_log m \
                 WHERE m.report_id = r.report_id AND m.revision = r.revision AND m.to_state IS NOT NULL AND m.id > l.id)) \
                 LIMIT 1",
                "has a state that is not the one its latest decision set",
            ),
            (
                "SELECT r.report_id FROM reports r JOIN report_revisions v ON v.seq = r.revision_seq \
                 WHERE v.content_hash <> COALESCE((SELECT m.chosen FROM review_log m WHERE m.action = 'pick' \
                 AND m.report_id = r.report_id AND m.revision = r.revision ORDER BY m.id DESC LIMIT 1), \
                 (SELECT w.content_hash FROM report_revisions w WHERE w.report_id = r.report_id \
                 AND w.revision = r.revision AND w.variant = 0)) LIMIT 1",
                "counts a version of its revision that is neither the one received first nor the one last picked",
            ),
            (
                "SELECT c.station FROM protocol_choices c LEFT JOIN review_log l ON l.id = c.log_id \
                 WHERE l.id IS NULL OR l.action <> 'settle' OR l.mission <> c.mission OR l.station <> c.station \
                 OR l.contest <> c.contest OR COALESCE(l.chosen, '') <> COALESCE(c.report_id, '') \
                 OR EXISTS (SELECT 1 FROM review_log m WHERE m.action = 'settle' AND m.mission = c.mission \
                 AND m.station = c.station AND m.contest = c.contest AND m.id > l.id) LIMIT 1",
                "has a settlement in force that is not the latest the review log holds",
            ),
        ];
        for (query, what) in checks {
            if let Some(row) = Sql::new(self.backend, query).fetch_all(&self.pool).await?.first() {
                let key: String = row.try_get(0)?;
                let subject = if what.starts_with("has a settlement") { "station" } else { "report" };
                return Ok(Some(format!("{subject} {key} {what}")));
            }
        }
        Ok(None)
    }
}
