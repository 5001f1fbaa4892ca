//! What reviewers decide: the review state of a report's current revision, comments, and which
//! team's protocol counts at a disputed station. Every action is a row of `review_log` and an
//! entry of the audit chain, written in the transaction that makes the change.
//!
//! Decisions are optimistic: each names the state (and, if the reviewer saw one, the revision)
//! it decides about, and the change is a conditional update of that row. Of two reviewers who
//! decide one report at once, the second's update finds the state changed and changes nothing;
//! the second is told who changed it ([`Decided::Stale`]).

use std::fmt;

use chrono::{DateTime, Utc};
use pollwatch_model::{Context, FlagCode, Mission};
use serde::Serialize;

use crate::audit::{self, REVIEW_SELECT, ReviewEntry, entry_text, review_entry};
use crate::db::{Sql, Tx};
use crate::findings::{self, Tally};
use crate::queries::micros;
use crate::{Backend, Store, StoreError};

/// Where a report's current revision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Counted: what a revision that passed every check gets on arrival.
    Accepted,
    /// Flagged: kept out of findings and results until a reviewer decides.
    Held,
    /// Kept, never counted.
    Rejected,
}

impl ReviewState {
    pub const ALL: [Self; 3] = [Self::Accepted, Self::Held, Self::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Held => "held",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// The decision that leads to this state.
    pub fn action(self) -> &'static str {
        match self {
            Self::Accepted => "accept",
            Self::Held => "hold",
            Self::Rejected => "reject",
        }
    }

    /// The state a decision (`accept`, `hold`, `reject`) leads to.
    pub fn of_action(action: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.action() == action)
    }

    pub(crate) fn stored(text: &str) -> Result<Self, StoreError> {
        Self::parse(text)
            .ok_or_else(|| StoreError::Permanent(format!("the store holds an unknown review state {text:?}")))
    }
}

impl fmt::Display for ReviewState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts for an import of the mission's rosters.
pub const IMPORT_REVIEWER: &str = "mission import";

/// One row of the review log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewAction {
    pub id: i64,
    /// `accept`, `hold`, `reject`, `comment`, `settle` or `pick`.
    pub action: String,
    pub report_id: Option<String>,
    pub revision: Option<i64>,
    pub station: Option<String>,
    pub contest: Option<String>,
    /// For `settle`: the report whose protocol counts (`None`: none until a recount). For
    /// `pick`: the content hash of the version of the revision that counts.
    pub chosen: Option<String>,
    pub from_state: Option<ReviewState>,
    pub to_state: Option<ReviewState>,
    pub reviewer: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl ReviewAction {
    fn of(entry: ReviewEntry) -> Result<Self, StoreError> {
        let state = |s: Option<String>| s.as_deref().map(ReviewState::stored).transpose();
        Ok(Self {
            id: entry.id,
            action: entry.action,
            report_id: entry.report_id,
            revision: entry.revision,
            station: entry.station,
            contest: entry.contest,
            chosen: entry.chosen,
            from_state: state(entry.from_state)?,
            to_state: state(entry.to_state)?,
            reviewer: entry.reviewer,
            reason: entry.reason,
            at: micros(entry.at_us)?,
        })
    }
}

/// A decision about a report's current revision.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub report_id: &'a str,
    pub to: ReviewState,
    /// The state the reviewer saw; the decision is refused if it is no longer the current one.
    pub expected: ReviewState,
    /// The revision the reviewer saw, if they say; refused if another is current by now.
    pub expected_revision: Option<i64>,
    pub reviewer: &'a str,
    pub reason: &'a str,
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Made, as this action of the log.
    Done(ReviewAction),
    /// Not made: the report is in another state, or at another revision, than the decision says.
    Stale(Standing),
    /// The mission has no report with this id.
    NotFound,
}

/// A report's current revision and state, and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub revision: i64,
    /// The content hash of the version of the revision that counts (see [`Store::pick`]).
    pub in_force: String,
    pub state: ReviewState,
    /// The decision that set the state; `None` for the state it arrived with.
    pub set_by: Option<ReviewAction>,
}

/// Why a reviewer's action cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The request names something that does not exist or cannot be chosen; the message says
    /// what.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReviewError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Which report's protocol counts at a station for a contest.
#[derive(Debug, Clone)]
pub struct Settlement<'a> {
    pub station: &'a str,
    pub contest: &'a str,
    /// `None`: no protocol counts until a recount.
    pub report_id: Option<&'a str>,
    pub reviewer: &'a str,
    pub reason: &'a str,
}

/// What the store holds about a report's current revision, for a decision.
pub(crate) struct Current {
    pub(crate) revision: i64,
    pub(crate) seq: i64,
    pub(crate) state: ReviewState,
    pub(crate) kind: String,
    pub(crate) station: String,
    pub(crate) assessment: Option<String>,
    pub(crate) observer: String,
    /// The content hash of the version in force.
    pub(crate) content_hash: String,
}

/// A review log row to insert.
pub(crate) struct NewAction<'a> {
    pub(crate) mission: &'a str,
    pub(crate) action: &'a str,
    pub(crate) report_id: Option<&'a str>,
    pub(crate) revision: Option<i64>,
    pub(crate) station: Option<&'a str>,
    pub(crate) contest: Option<&'a str>,
    pub(crate) chosen: Option<&'a str>,
    pub(crate) from_state: Option<ReviewState>,
    pub(crate) to_state: Option<ReviewState>,
    pub(crate) reviewer: &'a str,
    pub(crate) reason: &'a str,
}

impl<'a> NewAction<'a> {
    pub(crate) fn on_report(mission: &'a str, action: &'a str, report_id: &'a str, revision: i64) -> Self {
        Self {
            mission,
            action,
            report_id: Some(report_id),
            revision: Some(revision),
            station: None,
            contest: None,
            chosen: None,
            from_state: None,
            to_state: None,
            reviewer: "",
            reason: "",
        }
    }
}

/// Inserts `action` into the review log and its entry into the chain's pending `entries`.
pub(crate) async fn log(
    tx: &mut Tx,
    backend: Backend,
    action: NewAction<'_>,
    entries: &mut Vec<audit::Pending>,
) -> Result<ReviewAction, StoreError> {
    let at_us = Utc::now().timestamp_micros();
    let mut sql = Sql::new(
        backend,
        "INSERT INTO review_log (mission, action, report_id, revision, station, contest, chosen, from_state, \
         to_state, reviewer, reason, at_us) VALUES (",
    );
    let owned = |s: Option<&str>| s.map(str::to_owned);
    sql.bind(action.mission.to_owned()).push(", ").bind(action.action.to_owned()).push(", ");
    sql.bind(owned(action.report_id)).push(", ").bind(action.revision).push(", ");
    sql.bind(owned(action.station)).push(", ").bind(owned(action.contest)).push(", ");
    sql.bind(owned(action.chosen)).push(", ");
    sql.bind(action.from_state.map(|s| s.as_str().to_owned())).push(", ");
    sql.bind(action.to_state.map(|s| s.as_str().to_owned())).push(", ");
    sql.bind(action.reviewer.to_owned()).push(", ").bind(action.reason.to_owned()).push(", ");
    sql.bind(at_us).push(") RETURNING id");
    let id: i64 = sql.fetch_all_in(tx).await?[0].try_get(0)?;
    let mut select = Sql::new(backend, &format!("{REVIEW_SELECT} WHERE id = "));
    select.bind(id);
    let entry = review_entry(&select.fetch_all_in(tx).await?[0])?;
    entries.push((None, entry_text(&entry)));
    ReviewAction::of(entry)
}

/// How a report counts in SQLite's finding tallies, to add or take away when a decision changes
/// whether it counts.
async fn retally(tx: &mut Tx, mission: &str, current: &Current, by: i64) -> Result<(), StoreError> {
    let mut sql = Sql::new(Backend::Sqlite, "SELECT region FROM stations WHERE mission_id = ");
    sql.bind(mission.to_owned()).push(" AND code = ").bind(current.station.clone());
    let Some(row) = sql.fetch_all_in(tx).await?.into_iter().next() else {
        // A report from a station outside the roster counts for nothing.
        return Ok(());
    };
    let region: String = row.try_get(0)?;
    let answers = findings::answers_of(tx, vec![current.seq]).await?;
    let none = findings::Given::new();
    let mut tally = Tally::default();
    let given = answers.get(&current.seq).unwrap_or(&none);
    tally.count((mission, &current.kind, &region), current.assessment.as_deref(), given, by);
    tally.write(tx).await
}

impl Store {
    /// Changes the review state of a report's current revision, if it still is in the state
    /// (and at the revision) the decision names.
    pub async fn decide(&self, mission: &str, decision: &Decision<'_>) -> Result<Decided, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = current(&mut tx, self.backend, mission, decision.report_id).await? else {
            return Ok(Decided::NotFound);
        };
        let stale = current.state != decision.expected
            || decision.expected_revision.is_some_and(|revision| revision != current.revision);
        if stale {
            drop(tx);
            return self.stale(mission, decision.report_id).await;
        }
        let mut entries = Vec::new();
        let action = NewAction {
            from_state: Some(current.state),
            to_state: Some(decision.to),
            reviewer: decision.reviewer,
            reason: decision.reason,
            ..NewAction::on_report(mission, decision.to.action(), decision.report_id, current.revision)
        };
        let logged = log(&mut tx, self.backend, action, &mut entries).await?;
        let mut sql = Sql::new(self.backend, "UPDATE reports SET review_state = ");
        sql.bind(decision.to.as_str().to_owned());
        sql.push(", quarantined = ").bind(decision.to != ReviewState::Accepted);
        sql.push(", decision = ").bind(logged.id);
        sql.push(" WHERE report_id = ").bind(decision.report_id.to_owned());
        sql.push(" AND revision = ").bind(current.revision);
        sql.push(" AND review_state = ").bind(current.state.as_str().to_owned());
        sql.push(" RETURNING report_id");
        if sql.fetch_all_in(&mut tx).await?.is_empty() {
            // Another reviewer (PostgreSQL), or a new revision, changed the row since it was read.
            drop(tx);
            return self.stale(mission, decision.report_id).await;
        }
        let counted = |state: ReviewState| state == ReviewState::Accepted;
        if self.backend == Backend::Sqlite && counted(current.state) != counted(decision.to) {
            retally(&mut tx, mission, &current, if counted(decision.to) { 1 } else { -1 }).await?;
        }
        audit::append(&mut tx, self.backend, entries).await?;
        tx.commit().await?;
        Ok(Decided::Done(logged))
    }

    /// What a decision that found the report changed is told: where it stands now.
    pub(crate) async fn stale(&self, mission: &str, report_id: &str) -> Result<Decided, StoreError> {
        self.standing(mission, report_id).await.map(|s| s.map_or(Decided::NotFound, Decided::Stale))
    }

    /// A report's current revision and review state, and who set it; `None` if the mission has
    /// no report with this id.
    pub async fn standing(&self, mission: &str, report_id: &str) -> Result<Option<Standing>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.revision, r.review_state, r.decision, v.content_hash FROM reports r \
             JOIN report_revisions v ON v.seq = r.revision_seq WHERE r.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND r.report_id = ").bind(report_id.to_owned());
        let Some(row) = sql.fetch_all(&self.pool).await?.into_iter().next() else { return Ok(None) };
        let (revision, state, decision): (i64, String, Option<i64>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let in_force: String = row.try_get(3)?;
        let set_by = match decision {
            None => None,
            Some(id) => {
                let mut sql = Sql::new(self.backend, &format!("{REVIEW_SELECT} WHERE id = "));
                sql.bind(id);
                sql.fetch_all(&self.pool)
                    .await?
                    .first()
                    .map(review_entry)
                    .transpose()?
                    .map(ReviewAction::of)
                    .transpose()?
            }
        };
        Ok(Some(Standing { revision, in_force, state: ReviewState::stored(&state)?, set_by }))
    }

    /// Adds a comment to a report's history; `None` if the mission has no report with this id.
    pub async fn comment(
        &self,
        mission: &str,
        report_id: &str,
        author: &str,
        text: &str,
    ) -> Result<Option<ReviewAction>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = current(&mut tx, self.backend, mission, report_id).await? else {
            return Ok(None);
        };
        let mut entries = Vec::new();
        let action = NewAction {
            reviewer: author,
            reason: text,
            ..NewAction::on_report(mission, "comment", report_id, current.revision)
        };
        let logged = log(&mut tx, self.backend, action, &mut entries).await?;
        audit::append(&mut tx, self.backend, entries).await?;
        tx.commit().await?;
        Ok(Some(logged))
    }

    /// Every review action about a report, oldest first.
    pub async fn review_log(&self, report_id: &str) -> Result<Vec<ReviewAction>, StoreError> {
        let mut sql = Sql::new(self.backend, &format!("{REVIEW_SELECT} WHERE report_id = "));
        sql.bind(report_id.to_owned()).push(" ORDER BY id");
        sql.fetch_all(&self.pool).await?.iter().map(|row| ReviewAction::of(review_entry(row)?)).collect()
    }

    /// Decides which report's protocol counts for `contest` at a station (or that none does
    /// until a recount). The report must be a current, accepted counting report from the
    /// station with a protocol for the contest.
    pub async fn settle(
        &self,
        mission: &str,
        settlement: &Settlement<'_>,
    ) -> Result<ReviewAction, ReviewError> {
        let mut tx = self.pool.begin().await?;
        let mut sql =
            Sql::new(self.backend, "SELECT CAST((SELECT COUNT(*) FROM stations WHERE mission_id = ");
        sql.bind(mission.to_owned()).push(" AND code = ").bind(settlement.station.to_owned());
        sql.push(") AS BIGINT), CAST((SELECT COUNT(*) FROM contests WHERE mission_id = ");
        sql.bind(mission.to_owned()).push(" AND id = ").bind(settlement.contest.to_owned());
        sql.push(") AS BIGINT)");
        let row = &sql.fetch_all_in(&mut tx).await?[0];
        let (stations, contests): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if stations == 0 {
            return Err(ReviewError::Invalid(format!("the roster has no station {}", settlement.station)));
        }
        if contests == 0 {
            return Err(ReviewError::Invalid(format!("the mission has no contest {}", settlement.contest)));
        }
        if let Some(report_id) = settlement.report_id {
            let mut sql = Sql::new(
                self.backend,
                "SELECT r.station, r.kind, r.review_state, CAST((SELECT COUNT(*) FROM protocols p \
                 WHERE p.revision_seq = r.revision_seq AND p.contest = ",
            );
            sql.bind(settlement.contest.to_owned());
            sql.push(") AS BIGINT) FROM reports r WHERE r.mission = ").bind(mission.to_owned());
            sql.push(" AND r.report_id = ").bind(report_id.to_owned());
            let Some(row) = sql.fetch_all_in(&mut tx).await?.into_iter().next() else {
                return Err(ReviewError::Invalid(format!("the mission has no report {report_id}")));
            };
            let (station, kind, state, protocols): (String, String, String, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            let why_not = if station != settlement.station {
                Some(format!("report {report_id} is from station {station}"))
            } else if kind != "counting" {
                Some(format!("report {report_id} is a {kind} report, not a counting report"))
            } else if state != ReviewState::Accepted.as_str() {
                Some(format!("report {report_id} is {state}: accept it first"))
            } else if protocols == 0 {
                Some(format!("report {report_id} has no protocol for contest {}", settlement.contest))
            } else {
                None
            };
            if let Some(why) = why_not {
                return Err(ReviewError::Invalid(why));
            }
        }
        let mut entries = Vec::new();
        let action = NewAction {
            mission,
            action: "settle",
            report_id: None,
            revision: None,
            station: Some(settlement.station),
            contest: Some(settlement.contest),
            chosen: settlement.report_id,
            from_state: None,
            to_state: None,
            reviewer: settlement.reviewer,
            reason: settlement.reason,
        };
        let logged = log(&mut tx, self.backend, action, &mut entries).await?;
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO protocol_choices (mission, station, contest, report_id, log_id) VALUES (",
        );
        sql.bind(mission.to_owned()).push(", ").bind(settlement.station.to_owned()).push(", ");
        sql.bind(settlement.contest.to_owned()).push(", ").bind(settlement.report_id.map(str::to_owned));
        sql.push(", ").bind(logged.id);
        sql.push(
            ") ON CONFLICT (mission, station, contest) DO UPDATE SET report_id = excluded.report_id, \
             log_id = excluded.log_id",
        );
        sql.execute_in(&mut tx).await?;
        audit::append(&mut tx, self.backend, entries).await?;
        tx.commit().await?;
        Ok(logged)
    }

    /// Every settlement in force for `contest`: station → (the report counted or none, the
    /// action that decided it).
    pub async fn settlements(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<(String, Option<String>, ReviewAction)>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT c.station, c.report_id, l.id, l.mission, l.action, l.report_id, l.revision, l.station, \
             l.contest, l.chosen, l.from_state, l.to_state, l.reviewer, l.reason, l.at_us \
             FROM protocol_choices c JOIN review_log l ON l.id = c.log_id WHERE c.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND c.contest = ").bind(contest.to_owned());
        sql.push(" ORDER BY c.station");
        let mut settled = Vec::new();
        for row in sql.fetch_all(&self.pool).await? {
            let entry = audit::review_entry_at(&row, 2)?;
            settled.push((row.try_get(0)?, row.try_get(1)?, ReviewAction::of(entry)?));
        }
        Ok(settled)
    }
}

impl Store {
    /// The review actions numbered above `after`, with the report kind each changes (that of
    /// the report decided or commented on; `counting` for a settlement), lowest first, at most
    /// `limit`; and the highest id of the log (0 for none).
    pub async fn review_marks_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Option<pollwatch_model::ReportKind>)>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT l.id, CASE WHEN l.action = 'settle' THEN 'counting' ELSE r.kind END FROM review_log l \
             LEFT JOIN reports r ON r.report_id = l.report_id WHERE l.id > ",
        );
        sql.bind(after).push(" ORDER BY l.id LIMIT ").bind(limit);
        sql.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let kind: Option<String> = row.try_get(1)?;
                Ok((row.try_get(0)?, kind.as_deref().and_then(pollwatch_model::ReportKind::parse)))
            })
            .collect()
    }

    /// The highest id of the review log (0 when empty).
    pub async fn latest_review(&self) -> Result<i64, StoreError> {
        let row = Sql::new(self.backend, "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM review_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// The current revision of a report, read in `tx`.
pub(crate) async fn current(
    tx: &mut Tx,
    backend: Backend,
    mission: &str,
    report_id: &str,
) -> Result<Option<Current>, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT r.revision, r.revision_seq, r.review_state, r.kind, r.station, r.assessment, r.observer, \
         v.content_hash FROM reports r JOIN report_revisions v ON v.seq = r.revision_seq WHERE r.mission = ",
    );
    sql.bind(mission.to_owned()).push(" AND r.report_id = ").bind(report_id.to_owned());
    let Some(row) = sql.fetch_all_in(tx).await?.into_iter().next() else { return Ok(None) };
    Ok(Some(Current {
        revision: row.try_get(0)?,
        seq: row.try_get(1)?,
        state: ReviewState::stored(&row.try_get::<String>(2)?)?,
        kind: row.try_get(3)?,
        station: row.try_get(4)?,
        assessment: row.try_get(5)?,
        observer: row.try_get(6)?,
        content_hash: row.try_get(7)?,
    }))
}

/// The flags a roster fix can clear.
const ROSTER_FLAGS: [FlagCode; 2] = [FlagCode::UnknownStation, FlagCode::UnknownObserver];

/// After an import has changed the rosters: the reports held on arrival only because their
/// station or observer was not in the roster are judged again against `mission`, with the sender
/// and time they arrived with, and accepted by [`IMPORT_REVIEWER`] if nothing holds them now.
/// Returns how many were accepted.
pub(crate) async fn rejudge(tx: &mut Tx, backend: Backend, mission: &Mission) -> Result<usize, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT r.report_id, r.revision, v.payload, v.sender, v.received_at_us FROM reports r \
         JOIN report_revisions v ON v.seq = r.revision_seq \
         WHERE r.quarantined AND r.review_state = 'held' AND r.decision IS NULL AND r.mission = ",
    );
    sql.bind(mission.id.clone());
    let codes: Vec<String> = ROSTER_FLAGS.iter().map(|c| c.as_str().to_owned()).collect();
    sql.push(" AND EXISTS (SELECT 1 FROM report_flags f WHERE f.revision_seq = r.revision_seq AND f.code");
    sql.bind_in(codes.clone());
    sql.push(
        ") AND NOT EXISTS (SELECT 1 FROM report_flags f WHERE f.revision_seq = r.revision_seq AND NOT f.code",
    );
    sql.bind_in(codes);
    sql.push(") ORDER BY r.revision_seq");
    let mut accepted = 0;
    let mut entries = Vec::new();
    for row in sql.fetch_all_in(tx).await? {
        let (report_id, revision, payload): (String, i64, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (sender, received): (Option<String>, i64) = (row.try_get(3)?, row.try_get(4)?);
        let context = Context { mission, now: micros(received)?, sender: sender.as_deref() };
        let still = match pollwatch_model::check(payload.as_bytes(), &context) {
            Ok(checked) => checked.flags.iter().map(|f| f.code.as_str().to_owned()).collect::<Vec<_>>(),
            Err(rejection) => vec![rejection.code.as_str().to_owned()],
        };
        if !still.is_empty() {
            tracing::info!(report_id, ?still, "still held after the roster import");
            continue;
        }
        // Only if it is still held as it arrived: a reviewer may have decided since it was read
        // (PostgreSQL; on SQLite the import holds the write lock).
        let mut sql = Sql::new(backend, "UPDATE reports SET review_state = 'accepted', quarantined = ");
        sql.bind(false)
            .push(" WHERE report_id = ")
            .bind(report_id.clone())
            .push(" AND revision = ")
            .bind(revision);
        sql.push(" AND review_state = 'held' AND decision IS NULL RETURNING report_id");
        if sql.fetch_all_in(tx).await?.is_empty() {
            continue;
        }
        let action = NewAction {
            from_state: Some(ReviewState::Held),
            to_state: Some(ReviewState::Accepted),
            reviewer: IMPORT_REVIEWER,
            reason: "judged again against the imported rosters: nothing holds it now",
            ..NewAction::on_report(&mission.id, "accept", &report_id, revision)
        };
        let logged = log(tx, backend, action, &mut entries).await?;
        let mut sql = Sql::new(backend, "UPDATE reports SET decision = ");
        sql.bind(logged.id)
            .push(" WHERE report_id = ")
            .bind(report_id)
            .push(" AND revision = ")
            .bind(revision);
        sql.execute_in(tx).await?;
        accepted += 1;
    }
    audit::append(tx, backend, entries).await?;
    Ok(accepted)
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;
    use pollwatch_model::{Context, Mission, ReportKind, sample};

    use super::*;
    use crate::queries::tests::{counting, incoming};
    use crate::{Delivery, Incoming};

    const BOTH: [&str; 2] = ["president", "referendum"];
    const T0: &str = "2021-01-10T21:00:00+06:00";
    const T1: &str = "2021-01-10T22:00:00+06:00";

    /// A SQLite store in `dir` with `mission` imported.
    pub(crate) async fn store(dir: &tempfile::TempDir, mission: &Mission) -> Store {
        let store = Store::open(&format!("sqlite://{}", dir.path().join("store.db").display()))
            .await
            .expect("a store");
        store.import_mission(mission).await.expect("the mission imports");
        store
    }

    fn decision<'a>(
        report_id: &'a str,
        to: ReviewState,
        expected: ReviewState,
        reviewer: &'a str,
    ) -> Decision<'a> {
        Decision {
            report_id,
            to,
            expected,
            expected_revision: None,
            reviewer,
            reason: "checked with the team",
        }
    }

    #[tokio::test]
    async fn a_decision_counts_a_held_report_and_a_second_decision_on_the_old_state_is_refused() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let station = mission.stations[0].code.clone();
        let report = counting(&mission, 1, 1, &station, T0, &BOTH, 3);
        store.ingest_batch(&[incoming(&report, true)]).await.expect("a batch commits");
        let id = report.report_id.to_string();
        assert_eq!(store.results(&mission.id, "president").await.expect("results").stations_counted, 0);

        let first = store
            .decide(&mission.id, &decision(&id, ReviewState::Accepted, ReviewState::Held, "ana"))
            .await
            .expect("a decision");
        let Decided::Done(action) = first else { panic!("the first decision is made: {first:?}") };
        assert_eq!(
            (action.from_state, action.to_state),
            (Some(ReviewState::Held), Some(ReviewState::Accepted))
        );
        let results = store.results(&mission.id, "president").await.expect("results");
        assert_eq!((results.stations_counted, results.invalid), (1, 1 << 3));

        let second = store
            .decide(&mission.id, &decision(&id, ReviewState::Rejected, ReviewState::Held, "bob"))
            .await
            .expect("a decision");
        let Decided::Stale(standing) = second else { panic!("the second decision is refused: {second:?}") };
        assert_eq!(standing.state, ReviewState::Accepted);
        assert_eq!(standing.set_by.map(|a| a.reviewer), Some("ana".to_owned()));
        let wrong_revision = Decision {
            expected_revision: Some(2),
            ..decision(&id, ReviewState::Rejected, ReviewState::Accepted, "bob")
        };
        assert!(matches!(
            store.decide(&mission.id, &wrong_revision).await.expect("a decision"),
            Decided::Stale(_)
        ));
        let unknown =
            decision("00000000-0000-0000-0000-00000000ffff", ReviewState::Accepted, ReviewState::Held, "bob");
        assert_eq!(store.decide(&mission.id, &unknown).await.expect("a decision"), Decided::NotFound);

        let rejected = store
            .decide(&mission.id, &decision(&id, ReviewState::Rejected, ReviewState::Accepted, "bob"))
            .await
            .expect("a decision");
        assert!(matches!(rejected, Decided::Done(_)));
        assert_eq!(store.results(&mission.id, "president").await.expect("results").stations_counted, 0);
        let log = store.review_log(&id).await.expect("the log");
        assert_eq!(log.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["accept", "reject"]);
        let verification = store.verify_audit(&()).await.expect("a verification");
        assert_eq!((verification.entries, verification.failure), (3, None));
    }

    async fn invalid(store: &Store, mission: &str) -> i64 {
        store.results(mission, "president").await.expect("results").invalid
    }

    #[tokio::test]
    async fn a_settlement_decides_which_copy_counts_and_none_counts_nothing() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let station = mission.stations[0].code.clone();
        let (early, late) = (
            counting(&mission, 1, 1, &station, T0, &BOTH, 1),
            counting(&mission, 2, 1, &station, T1, &BOTH, 2),
        );
        store
            .ingest_batch(&[incoming(&early, false), incoming(&late, false)])
            .await
            .expect("a batch commits");
        let disputed = store.disputed_stations(&mission.id, "president").await.expect("disputed");
        assert_eq!(disputed.len(), 1, "two copies that disagree");
        assert_eq!(invalid(&store, &mission.id).await, 1 << 2, "meanwhile the latest observation counts");

        let early_id = early.report_id.to_string();
        let settle = |report_id: Option<&'static str>| Settlement {
            station: "",
            contest: "president",
            report_id,
            reviewer: "ana",
            reason: "the team's copy was photographed",
        };
        let settlement = Settlement { station: &station, report_id: Some(&early_id), ..settle(None) };
        store.settle(&mission.id, &settlement).await.expect("a settlement");
        assert_eq!(invalid(&store, &mission.id).await, 1 << 1, "the chosen copy counts");
        assert!(store.disputed_stations(&mission.id, "president").await.expect("disputed").is_empty());
        assert_eq!(store.disputed_stations(&mission.id, "referendum").await.expect("disputed").len(), 1);

        let none = Settlement { station: &station, ..settle(None) };
        store.settle(&mission.id, &none).await.expect("a settlement");
        let results = store.results(&mission.id, "president").await.expect("results");
        assert_eq!(results.stations_counted, 0, "none counts until a recount");

        for (bad, why) in [
            (Settlement { station: "nowhere", ..settle(None) }, "no station"),
            (
                Settlement {
                    station: &station,
                    report_id: Some("00000000-0000-0000-0000-00000000ffff"),
                    ..settle(None)
                },
                "no report",
            ),
            (
                Settlement { station: &mission.stations[1].code, report_id: Some(&early_id), ..settle(None) },
                "is from station",
            ),
            (Settlement { station: &station, contest: "mayor", ..settle(None) }, "no contest"),
        ] {
            let error = store.settle(&mission.id, &bad).await.expect_err(why);
            assert!(matches!(&error, ReviewError::Invalid(m) if m.contains(why)), "{error}");
        }

        // The chosen report rejected: the settlement lapses and the rule applies again.
        let early_settled = Settlement { station: &station, report_id: Some(&early_id), ..settle(None) };
        store.settle(&mission.id, &early_settled).await.expect("a settlement");
        let reject = decision(&early_id, ReviewState::Rejected, ReviewState::Accepted, "bob");
        assert!(matches!(store.decide(&mission.id, &reject).await.expect("a decision"), Decided::Done(_)));
        assert_eq!(invalid(&store, &mission.id).await, 1 << 2);
        assert_eq!(store.verify_audit(&()).await.expect("a verification").failure, None);
    }

    #[tokio::test]
    async fn a_roster_that_adds_the_station_frees_a_report_held_only_for_it() {
        let full = sample::kg_2021();
        let stations = include_str!("../../../missions/kg-2021/stations.csv");
        let missing = full.stations[0].clone();
        let without: String = stations
            .lines()
            .filter(|line| !line.starts_with(&format!("{},", missing.code)))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(without.lines().count() + 1, stations.lines().count(), "one station fewer");
        let partial = Mission::parse(pollwatch_model::MissionSources {
            mission_toml: include_str!("../../../missions/kg-2021/mission.toml"),
            forms_toml: include_str!("../../../missions/kg-2021/forms.toml"),
            stations_csv: &without,
            observers_csv: include_str!("../../../missions/kg-2021/observers.csv"),
        })
        .expect("the mission without a station parses");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &partial).await;
        let mut rng = pollwatch_sim::generate::Rng::new(7);
        let observer = full.observers[0].id.clone();
        let report =
            pollwatch_sim::generate::report(&full, &missing, &observer, ReportKind::Counting, &mut rng);
        let payload = serde_json::to_string(&report).expect("a report serialises");
        let received = Utc::now();
        let context = Context { mission: &partial, now: received, sender: None };
        let checked = pollwatch_model::check(payload.as_bytes(), &context).expect("accepted");
        let codes: Vec<_> = checked.flags.iter().map(|f| f.code).collect();
        assert_eq!(codes, [FlagCode::UnknownStation]);
        let delivery = Delivery { sender: None, redelivered: false, received_at: received };
        store
            .ingest_batch(&[Incoming::new(report.clone(), checked.flags, payload, delivery)])
            .await
            .expect("commits");
        // Another report held for a slip as well stays held.
        let slipped = counting(&full, 2, 1, &missing.code, T1, &BOTH, 1);
        store.ingest_batch(&[incoming(&slipped, true)]).await.expect("commits");

        let summary = store.import_mission(&partial).await.expect("the same roster imports");
        assert_eq!(summary.freed, 0);
        let summary = store.import_mission(&full).await.expect("the corrected roster imports");
        assert_eq!(summary.freed, 1);
        let standing =
            store.standing(&full.id, &report.report_id.to_string()).await.expect("read").expect("held");
        assert_eq!(standing.state, ReviewState::Accepted);
        assert_eq!(standing.set_by.map(|a| a.reviewer), Some(IMPORT_REVIEWER.to_owned()));
        let results = store.results(&full.id, "president").await.expect("results");
        let president = full.contest("president").expect("a contest");
        assert_eq!(results, pollwatch_model::ContestResults::tally(&full, president, [&report]));
        assert_eq!(results.stations_counted, 1);
        let still =
            store.standing(&full.id, &slipped.report_id.to_string()).await.expect("read").expect("held");
        assert_eq!(still.state, ReviewState::Held);
    }

    #[tokio::test]
    async fn the_chains_export_stops_with_an_error_where_a_segment_is_gone() {
        use futures_util::TryStreamExt as _;

        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        for i in 0..3 {
            let report = counting(&mission, 40 + i, 1, &mission.stations[0].code, T0, &BOTH, 1);
            store.ingest_batch(&[incoming(&report, false)]).await.expect("a batch commits");
        }
        let entries: Vec<crate::AuditEntry> = store.audit_entries().try_collect().await.expect("the chain");
        assert_eq!(entries.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3]);

        behind_its_back(&store, "DELETE FROM audit_segments WHERE last_position = 2").await;
        let error = store.audit_entries().try_collect::<Vec<_>>().await.expect_err("a gap");
        assert!(error.to_string().contains("has no entry 2 where it should"), "{error}");
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(2), "{failure:?}");
    }

    #[tokio::test]
    async fn verification_names_the_entry_whose_revision_was_changed_and_a_row_added_behind_its_back() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let reports: Vec<_> =
            (0..5).map(|i| counting(&mission, 10 + i, 1, &mission.stations[0].code, T0, &BOTH, 1)).collect();
        let batch: Vec<_> = reports.iter().map(|r| incoming(r, false)).collect();
        store.ingest_batch(&batch).await.expect("a batch commits");
        let fine = store.verify_audit(&()).await.expect("a verification");
        assert_eq!((fine.entries, fine.failure.as_ref()), (5, None));
        assert_eq!(fine.head, store.audit_head().await.expect("the head"));

        let mut tx = store.pool.begin().await.expect("a transaction");
        Sql::new(Backend::Sqlite, "UPDATE report_revisions SET payload = REPLACE(payload, '\"invalid\":2', '\"invalid\":3') WHERE seq = 3")
            .execute_in(&mut tx)
            .await
            .expect("tampered");
        tx.commit().await.expect("committed");
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(3), "{failure:?}");
        assert!(failure.reason.contains("rebuilt from revision 3"), "{failure:?}");

        let mut tx = store.pool.begin().await.expect("a transaction");
        Sql::new(Backend::Sqlite, "UPDATE report_revisions SET payload = REPLACE(payload, '\"invalid\":3', '\"invalid\":2') WHERE seq = 3")
            .execute_in(&mut tx)
            .await
            .expect("restored");
        Sql::new(
            Backend::Sqlite,
            "UPDATE report_revisions SET received_at_us = received_at_us + 1 WHERE seq = 4",
        )
        .execute_in(&mut tx)
        .await
        .expect("tampered");
        tx.commit().await.expect("committed");
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(4), "{failure:?}");
        assert!(failure.reason.contains("hash does not follow"), "{failure:?}");

        // A segment whose range no longer says which revisions it holds fails at its first entry.
        behind_its_back(&store, "UPDATE audit_segments SET min_seq = 2 WHERE last_position = 5").await;
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(1), "{failure:?}");
        assert!(failure.reason.contains("gives the seqs Some(2) to Some(5)"), "{failure:?}");
        behind_its_back(&store, "UPDATE audit_segments SET min_seq = 1 WHERE last_position = 5").await;

        let mut tx = store.pool.begin().await.expect("a transaction");
        Sql::new(
            Backend::Sqlite,
            "UPDATE report_revisions SET received_at_us = received_at_us - 1 WHERE seq = 4",
        )
        .execute_in(&mut tx)
        .await
        .expect("restored");
        // The chain's last entry cut from its segment, the segment made to hold together again.
        Sql::new(
            Backend::Sqlite,
            "UPDATE audit_segments SET last_position = 4, max_seq = 4, seqs = '1,2,3,4', \
             hashes = substr(hashes, 1, 128), last_hash = lower(hex(substr(hashes, 97, 32))) WHERE last_position = 5",
        )
        .execute_in(&mut tx)
        .await
        .expect("removed");
        tx.commit().await.expect("committed");
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, None, "{failure:?}");
        assert!(failure.reason.contains("holds 5 revisions, the chain has entries for 4"), "{failure:?}");
    }

    /// Runs `statement` against the store's database, outside the store's own code.
    async fn behind_its_back(store: &Store, statement: &'static str) {
        let mut tx = store.pool.begin().await.expect("a transaction");
        Sql::new(Backend::Sqlite, statement).execute_in(&mut tx).await.expect("changed");
        tx.commit().await.expect("committed");
    }

    #[tokio::test]
    async fn verification_catches_a_vote_or_a_state_changed_where_the_results_read_them() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let station = &mission.stations[0].code;
        let reports: Vec<_> = (0..3).map(|i| counting(&mission, 20 + i, 1, station, T0, &BOTH, 1)).collect();
        let batch: Vec<_> = reports.iter().enumerate().map(|(i, r)| incoming(r, i == 2)).collect();
        store.ingest_batch(&batch).await.expect("a batch commits");
        assert_eq!(store.verify_audit(&()).await.expect("a verification").failure, None);

        behind_its_back(
            &store,
            "UPDATE protocol_votes SET votes = votes + 1 WHERE revision_seq = 2 AND choice = 'japarov'",
        )
        .await;
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(2), "{failure:?}");
        assert!(failure.reason.contains("president japarov"), "{failure:?}");
        behind_its_back(
            &store,
            "UPDATE protocol_votes SET votes = votes - 1 WHERE revision_seq = 2 AND choice = 'japarov'",
        )
        .await;
        behind_its_back(
            &store,
            "UPDATE protocols SET invalid = 0 WHERE revision_seq = 1 AND contest = 'referendum'",
        )
        .await;
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, Some(1), "{failure:?}");
        behind_its_back(
            &store,
            "UPDATE protocols SET invalid = 2 WHERE revision_seq = 1 AND contest = 'referendum'",
        )
        .await;
        assert_eq!(store.verify_audit(&()).await.expect("a verification").failure, None);

        // The held report counted without a decision.
        behind_its_back(
            &store,
            "UPDATE reports SET review_state = 'accepted', quarantined = 0 WHERE revision_seq = 3",
        )
        .await;
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert_eq!(failure.position, None, "{failure:?}");
        let id = reports[2].report_id.to_string();
        assert!(failure.reason.contains(&id) && failure.reason.contains("no decision"), "{failure:?}");
    }
}
