//! SQLite's running counts of findings (migration 0004): per mission, kind and region, how many
//! current, unquarantined reports gave each answer to each checklist question (`answer_tally`)
//! and each overall assessment (`assessment_tally`). [`Store::answer_counts`] and
//! [`Store::assessment_counts`] read them there; PostgreSQL counts its `report_answers` on each
//! request instead.
//!
//! SQLite keeps no answer rows: they made each batch write a third more pages, and its ingest a
//! third slower (`docs/benchmarks.md`). A report's answers are in its payload, which the audit
//! trail keeps anyway; the rare reads of them (a correction replacing a counted revision, a
//! recount) decode it.
//!
//! [`Store::answer_counts`]: crate::Store::answer_counts
//! [`Store::assessment_counts`]: crate::Store::assessment_counts

use std::collections::{BTreeMap, HashMap};

use pollwatch_model::{Answer, Report};

use crate::db::{Rows, Sql, Tx, rows_per_statement};
use crate::{Backend, StoreError};

/// Longest text answer kept for tabulation (a choice code is at most 64 characters).
pub(crate) const MAX_TABULATED_TEXT: usize = 64;

/// How a checklist answer is counted: `yes`/`no`, the number in decimal, or the text if it is
/// short enough to be a choice; `None` for free text longer than that, counted only as given.
pub(crate) fn tabulated(answer: &Answer) -> Option<String> {
    match answer {
        Answer::YesNo(true) => Some("yes".to_owned()),
        Answer::YesNo(false) => Some("no".to_owned()),
        Answer::Number(n) => Some(n.to_string()),
        Answer::Text(text) => (text.chars().count() <= MAX_TABULATED_TEXT).then(|| text.clone()),
    }
}

/// A report's checklist answers as they are counted: (question, [`tabulated`] answer).
pub(crate) type Given = Vec<(String, Option<String>)>;

pub(crate) fn given(report: &Report) -> Given {
    report.answers.iter().map(|(question, answer)| (question.clone(), tabulated(answer))).collect()
}

/// The answers in a stored payload. Every payload decoded when it was accepted; one that no
/// longer does (a decoder that has since changed) is logged and counts no answers, rather than
/// stopping every later batch.
pub(crate) fn given_in_payload(seq: i64, payload: &str) -> Given {
    match pollwatch_model::decode(payload.as_bytes()) {
        Ok(report) => given(&report),
        Err(rejection) => {
            tracing::warn!(revision_seq = seq, %rejection, "a stored payload no longer decodes; its answers are not counted");
            Vec::new()
        }
    }
}

/// Changes to the tallies, added to them by [`Tally::write`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (mission, kind, region, question, answer) → change; `None` for free text.
    answers: BTreeMap<(String, String, String, String, Option<String>), i64>,
    /// (mission, kind, region, assessment) → change.
    assessments: BTreeMap<(String, String, String, String), i64>,
}

impl Tally {
    /// Counts one report `by` times (1 for a report made current, -1 for the one it replaces).
    pub(crate) fn count(
        &mut self,
        (mission, kind, region): (&str, &str, &str),
        assessment: Option<&str>,
        given: &Given,
        by: i64,
    ) {
        if let Some(assessment) = assessment {
            let key = (mission.to_owned(), kind.to_owned(), region.to_owned(), assessment.to_owned());
            *self.assessments.entry(key).or_default() += by;
        }
        for (question, answer) in given {
            let key =
                (mission.to_owned(), kind.to_owned(), region.to_owned(), question.clone(), answer.clone());
            *self.answers.entry(key).or_default() += by;
        }
    }

    /// Adds the changes to the tables, one multi-row upsert each.
    pub(crate) async fn write(mut self, tx: &mut Tx) -> Result<(), StoreError> {
        self.answers.retain(|_, change| *change != 0);
        let keys = || self.answers.keys();
        let rows = Rows::default()
            .text("mission", keys().map(|k| k.0.clone()))
            .text("kind", keys().map(|k| k.1.clone()))
            .text("region", keys().map(|k| k.2.clone()))
            .text("question", keys().map(|k| k.3.clone()))
            .bool("free_text", keys().map(|k| k.4.is_none()))
            .text("answer", keys().map(|k| k.4.clone().unwrap_or_default()))
            .int("reports", self.answers.values().copied());
        let tail = " ON CONFLICT (mission, kind, region, question, free_text, answer) \
             DO UPDATE SET reports = reports + excluded.reports";
        for sql in rows.insert(Backend::Sqlite, "answer_tally", tail) {
            sql.execute_in(tx).await?;
        }

        self.assessments.retain(|_, change| *change != 0);
        let keys = || self.assessments.keys();
        let rows = Rows::default()
            .text("mission", keys().map(|k| k.0.clone()))
            .text("kind", keys().map(|k| k.1.clone()))
            .text("region", keys().map(|k| k.2.clone()))
            .text("assessment", keys().map(|k| k.3.clone()))
            .int("reports", self.assessments.values().copied());
        let tail = " ON CONFLICT (mission, kind, region, assessment) DO UPDATE SET reports = reports + excluded.reports";
        for sql in rows.insert(Backend::Sqlite, "assessment_tally", tail) {
            sql.execute_in(tx).await?;
        }
        Ok(())
    }
}

/// The answers of the revisions `seqs`, decoded from their payloads, by revision.
pub(crate) async fn answers_of(tx: &mut Tx, seqs: Vec<i64>) -> Result<HashMap<i64, Given>, StoreError> {
    let mut answers = HashMap::new();
    for chunk in seqs.chunks(rows_per_statement(1)) {
        let mut sql = Sql::new(Backend::Sqlite, "SELECT seq, payload FROM report_revisions WHERE seq");
        sql.bind_in(chunk.to_vec());
        for row in sql.fetch_all_in(tx).await? {
            let (seq, payload): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            answers.insert(seq, given_in_payload(seq, &payload));
        }
    }
    Ok(answers)
}

/// Current reports read per statement by [`recount`].
const RECOUNT_PAGE: i64 = 5_000;

/// Counts a mission's findings afresh from its current reports: a report counts in its
/// station's region, which a mission import may have changed. Reads the reports a page at a
/// time, in report id order, so that memory stays bounded however large the store.
pub(crate) async fn recount(tx: &mut Tx, mission: &str) -> Result<(), StoreError> {
    for table in ["answer_tally", "assessment_tally"] {
        let mut sql = Sql::new(Backend::Sqlite, &format!("DELETE FROM {table} WHERE mission = "));
        sql.bind(mission.to_owned());
        sql.execute_in(tx).await?;
    }
    let mut tally = Tally::default();
    let mut after = String::new();
    loop {
        let mut sql = Sql::new(
            Backend::Sqlite,
            "SELECT r.report_id, r.kind, s.region, r.assessment, r.revision_seq, v.payload FROM reports r \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             JOIN report_revisions v ON v.seq = r.revision_seq \
             WHERE NOT r.quarantined AND r.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND r.report_id > ").bind(after.clone());
        sql.push(" ORDER BY r.report_id LIMIT ").bind(RECOUNT_PAGE);
        let rows = sql.fetch_all_in(tx).await?;
        for row in &rows {
            let (kind, region): (String, String) = (row.try_get(1)?, row.try_get(2)?);
            let (assessment, seq): (Option<String>, i64) = (row.try_get(3)?, row.try_get(4)?);
            let given = given_in_payload(seq, &row.try_get::<String>(5)?);
            tally.count((mission, &kind, &region), assessment.as_deref(), &given, 1);
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == RECOUNT_PAGE => after = last.try_get(0)?,
            _ => break,
        }
    }
    tally.write(tx).await
}
