//! Committing batches of accepted reports: one transaction, one outcome per report.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use pollwatch_model::{Content, Flag, Report};
use sha2::{Digest as _, Sha256};
use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments as _, Row as _, Transaction};

use crate::{Store, StoreError};

/// How a report reached the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The broker user that published it (AMQP `user_id`), when the broker said.
    pub sender: Option<String>,
    /// Whether the broker had delivered it before (to a consumer that did not ack).
    pub redelivered: bool,
    pub received_at: DateTime<Utc>,
}

/// An accepted report on its way into the store.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub report: Report,
    /// The model's flags; a report with any is quarantined.
    pub flags: Vec<Flag>,
    /// The payload exactly as received (valid UTF-8, since it decoded), for the audit trail.
    pub payload: String,
    pub delivery: Delivery,
}

/// What became of one report in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A report not seen before; it is now current.
    Stored,
    /// A higher revision of a known report; it is now current.
    Revised,
    /// The same id, revision and content as before: nothing changed.
    Duplicate,
    /// A lower revision than the current one: kept in the history, the current one unchanged.
    Stale,
    /// The same id and revision with different content: both kept, the first stays current.
    Conflict,
    /// Stored or revised, but flagged by validation: current, visible, left out of results.
    Quarantined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Revised => "revised",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Conflict => "conflict",
            Self::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SHA-256 (hex) of the report's canonical JSON: equal for resends whatever their whitespace,
/// different whenever any field differs.
pub fn content_hash(report: &Report) -> String {
    let canonical = serde_json::to_vec(report).expect("a report serialises");
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds SQL with numbered placeholders (`$1`, `$2`, …), which both backends accept.
#[derive(Default)]
pub(crate) struct Sql {
    text: String,
    args: AnyArguments,
    /// Placeholders used so far.
    pub(crate) count: usize,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self { text: text.to_owned(), ..Self::default() }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send + 'static,
    {
        self.count += 1;
        self.text.push_str(&format!("${}", self.count));
        // Binding values of the types used here cannot fail.
        self.args.add(value).expect("binding a value");
        self
    }

    /// Binds a value for a placeholder already written into the text (for reused `$n`).
    pub(crate) fn bind_only<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send + 'static,
    {
        self.args.add(value).expect("binding a value");
        self
    }

    /// Appends `(…), (…)` rows: `fields` values per row, filled by `row`.
    pub(crate) fn values<I>(&mut self, rows: I, row: impl Fn(&mut Self, I::Item)) -> &mut Self
    where
        I: IntoIterator,
    {
        for (i, item) in rows.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            row(self, item);
            self.push(")");
        }
        self
    }

    pub(crate) fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }
}

impl Store {
    /// Commits `batch` in one transaction and returns one outcome per report, in batch order.
    /// Nothing is committed unless everything is; on `Err` the caller must not acknowledge any
    /// delivery of the batch.
    pub async fn ingest_batch(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // A fixed order over reports makes concurrent transactions take row locks in the same
        // order, so two workers with overlapping batches cannot deadlock.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&batch[a].report, &batch[b].report);
            (a.report_id, a.revision).cmp(&(b.report_id, b.revision))
        });

        let mut tx = self.pool.begin().await?;
        let mut current = current_revisions(&mut tx, batch).await?;
        let mut outcomes = vec![Outcome::Duplicate; batch.len()];
        for i in order {
            outcomes[i] = ingest_one(&mut tx, &batch[i], &mut current).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The current revision of each report in the batch that the store already has. It only labels
/// outcomes (stored or revised); which revision becomes current is decided by the upsert.
async fn current_revisions(
    tx: &mut Transaction<'static, Any>,
    batch: &[Incoming],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids: Vec<String> = batch.iter().map(|i| i.report.report_id.to_string()).collect();
    ids.sort();
    ids.dedup();
    let mut current = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("SELECT report_id, revision FROM reports WHERE report_id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.clone());
        }
        sql.push(")");
        for row in sql.query().fetch_all(&mut **tx).await? {
            current.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?);
        }
    }
    Ok(current)
}

async fn ingest_one(
    tx: &mut Transaction<'static, Any>,
    incoming: &Incoming,
    current: &mut HashMap<String, i64>,
) -> Result<Outcome, StoreError> {
    let report = &incoming.report;
    let id = report.report_id.to_string();
    let revision = i64::from(report.revision);
    let hash = content_hash(report);
    let delivery = &incoming.delivery;
    let received_at = delivery.received_at.timestamp_micros();
    let flags = serde_json::to_string(&incoming.flags).expect("flags serialise");

    let mut sql = Sql::new(
        "INSERT INTO report_revisions (report_id, revision, content_hash, mission, observer, station, kind, \
         observed_at_us, payload, flags, sender, redelivered, received_at_us) VALUES (",
    );
    sql.bind(id.clone()).push(", ").bind(revision).push(", ").bind(hash.clone()).push(", ");
    sql.bind(report.mission.clone()).push(", ").bind(report.observer.clone()).push(", ");
    sql.bind(report.station.clone()).push(", ").bind(report.kind().as_str().to_owned()).push(", ");
    sql.bind(report.observed_at.timestamp_micros()).push(", ").bind(incoming.payload.clone()).push(", ");
    sql.bind(flags).push(", ").bind(delivery.sender.clone()).push(", ").bind(delivery.redelivered);
    sql.push(", ").bind(received_at).push(") ON CONFLICT (report_id, revision) DO NOTHING RETURNING seq");
    let Some(row) = sql.query().fetch_optional(&mut **tx).await? else {
        return repeated_revision(tx, incoming, &id, revision, &hash).await;
    };
    let seq: i64 = row.try_get(0)?;
    write_derived(tx, incoming, &id, revision).await?;

    let (category, severity) = match &report.content {
        Content::Incident(body) => {
            (Some(body.category.as_str().to_owned()), Some(body.severity.as_str().to_owned()))
        }
        _ => (None, None),
    };
    let mut sql = Sql::new(
        "INSERT INTO reports (report_id, revision, revision_seq, mission, observer, station, kind, observed_at_us, \
         received_at_us, assessment, incident_category, incident_severity, quarantined) VALUES (",
    );
    sql.bind(id.clone()).push(", ").bind(revision).push(", ").bind(seq).push(", ");
    sql.bind(report.mission.clone()).push(", ").bind(report.observer.clone()).push(", ");
    sql.bind(report.station.clone()).push(", ").bind(report.kind().as_str().to_owned()).push(", ");
    sql.bind(report.observed_at.timestamp_micros()).push(", ").bind(received_at).push(", ");
    sql.bind(report.assessment.map(|a| a.as_str().to_owned())).push(", ").bind(category).push(", ");
    sql.bind(severity).push(", ").bind(!incoming.flags.is_empty());
    sql.push(
        ") ON CONFLICT (report_id) DO UPDATE SET revision = excluded.revision, revision_seq = excluded.revision_seq, \
         mission = excluded.mission, observer = excluded.observer, station = excluded.station, kind = excluded.kind, \
         observed_at_us = excluded.observed_at_us, received_at_us = excluded.received_at_us, \
         assessment = excluded.assessment, incident_category = excluded.incident_category, \
         incident_severity = excluded.incident_severity, quarantined = excluded.quarantined \
         WHERE reports.revision < excluded.revision RETURNING revision",
    );
    if sql.query().fetch_optional(&mut **tx).await?.is_none() {
        // A higher revision is current; this one stays in the history only.
        return Ok(Outcome::Stale);
    }

    let existed = current.insert(id.clone(), revision).is_some();
    Ok(match (incoming.flags.is_empty(), existed) {
        (false, _) => Outcome::Quarantined,
        (true, false) => Outcome::Stored,
        (true, true) => Outcome::Revised,
    })
}

/// A revision the store already has: the same content is a duplicate, other content a conflict.
async fn repeated_revision(
    tx: &mut Transaction<'static, Any>,
    incoming: &Incoming,
    id: &str,
    revision: i64,
    hash: &str,
) -> Result<Outcome, StoreError> {
    let mut sql = Sql::new("SELECT content_hash FROM report_revisions WHERE report_id = ");
    sql.bind(id.to_owned()).push(" AND revision = ").bind(revision);
    let existing: String = sql.query().fetch_one(&mut **tx).await?.try_get(0)?;
    if existing == hash {
        return Ok(Outcome::Duplicate);
    }
    let mut sql = Sql::new(
        "INSERT INTO conflicts (report_id, revision, content_hash, payload, sender, received_at_us) VALUES (",
    );
    sql.bind(id.to_owned()).push(", ").bind(revision).push(", ").bind(hash.to_owned()).push(", ");
    sql.bind(incoming.payload.clone()).push(", ").bind(incoming.delivery.sender.clone()).push(", ");
    sql.bind(incoming.delivery.received_at.timestamp_micros());
    sql.push(") ON CONFLICT (report_id, revision, content_hash) DO NOTHING");
    sql.query().execute(&mut **tx).await?;
    tracing::warn!(report_id = id, revision, "same report id and revision with different content");
    Ok(Outcome::Conflict)
}

/// Flags and counting protocols of a revision the store has just recorded.
async fn write_derived(
    tx: &mut Transaction<'static, Any>,
    incoming: &Incoming,
    id: &str,
    revision: i64,
) -> Result<(), StoreError> {
    if !incoming.flags.is_empty() {
        let mut sql = Sql::new("INSERT INTO report_flags (report_id, revision, code, path, message) VALUES ");
        sql.values(&incoming.flags, |sql, flag| {
            sql.bind(id.to_owned()).push(", ").bind(revision).push(", ");
            sql.bind(flag.code.as_str().to_owned()).push(", ");
            sql.bind(flag.path.clone()).push(", ").bind(flag.message.clone());
        });
        sql.query().execute(&mut **tx).await?;
    }
    let Content::Counting(body) = &incoming.report.content else { return Ok(()) };
    let mut sql = Sql::new(
        "INSERT INTO protocols (report_id, revision, contest, registered_voters, ballots_received, ballots_issued, \
         ballots_spoiled, ballots_unused, ballots_in_box, invalid, votes_digest) VALUES ",
    );
    sql.values(&body.protocols, |sql, p| {
        let digest: Vec<String> = p.votes.iter().map(|(choice, n)| format!("{choice}={n}")).collect();
        sql.bind(id.to_owned()).push(", ").bind(revision).push(", ").bind(p.contest.clone());
        for n in [
            p.registered_voters,
            p.ballots_received,
            p.ballots_issued,
            p.ballots_spoiled,
            p.ballots_unused,
            p.ballots_in_box,
            p.invalid,
        ] {
            sql.push(", ").bind(i64::from(n));
        }
        sql.push(", ").bind(digest.join(";"));
    });
    sql.query().execute(&mut **tx).await?;
    let votes: Vec<(&str, &str, u32)> = body
        .protocols
        .iter()
        .flat_map(|p| p.votes.iter().map(move |(choice, n)| (p.contest.as_str(), choice.as_str(), *n)))
        .collect();
    if !votes.is_empty() {
        let mut sql =
            Sql::new("INSERT INTO protocol_votes (report_id, revision, contest, choice, votes) VALUES ");
        sql.values(votes, |sql, (contest, choice, n)| {
            sql.bind(id.to_owned()).push(", ").bind(revision).push(", ").bind(contest.to_owned()).push(", ");
            sql.bind(choice.to_owned()).push(", ").bind(i64::from(n));
        });
        sql.query().execute(&mut **tx).await?;
    }
    Ok(())
}
