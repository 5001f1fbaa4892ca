//! Committing batches of accepted reports: one transaction, one outcome per report.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use pollwatch_model::{Content, Flag, Protocol, Report};
use sha2::{Digest as _, Sha256};

use crate::db::{Sql, Tx};
use crate::{Backend, Store, StoreError};

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

/// Most bound values in one statement; well under SQLite's and PostgreSQL's limits.
const MAX_PARAMS: usize = 6_000;

/// One report of a batch, with what the store derives from it.
struct Item<'a> {
    /// Position in the batch, for the outcome.
    index: usize,
    incoming: &'a Incoming,
    id: String,
    revision: i64,
    hash: String,
}

impl Store {
    /// Commits `batch` in one transaction and returns one outcome per report, in batch order.
    /// Nothing is committed unless everything is; on `Err` the caller must not acknowledge any
    /// delivery of the batch.
    ///
    /// The batch is written with a few multi-row statements. Within a batch, reports are taken in
    /// (report id, revision) order, so a revision and its correction in one batch come out as
    /// stored (or revised) and then revised.
    pub async fn ingest_batch(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut items: Vec<Item<'_>> = batch
            .iter()
            .enumerate()
            .map(|(index, incoming)| Item {
                index,
                incoming,
                id: incoming.report.report_id.to_string(),
                revision: i64::from(incoming.report.revision),
                hash: content_hash(&incoming.report),
            })
            .collect();
        // A fixed order makes concurrent transactions take row locks in the same order, so two
        // workers with overlapping batches cannot deadlock.
        items.sort_by(|a, b| (&a.id, a.revision, a.index).cmp(&(&b.id, b.revision, b.index)));

        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut tx = self.pool.begin().await?;

        // The first of several copies of one (id, revision) in the batch stands for them all.
        let mut firsts: Vec<&Item<'_>> = Vec::new();
        let mut repeats: Vec<&Item<'_>> = Vec::new();
        for item in &items {
            match firsts.last() {
                Some(first) if first.id == item.id && first.revision == item.revision => repeats.push(item),
                _ => firsts.push(item),
            }
        }

        // A report keeps its observer and kind across revisions: a "revision" from someone else,
        // or of another kind, is kept aside as a conflict and never becomes current.
        let current = current_rows(&mut tx, self.backend, &firsts).await?;
        let mut identity: HashMap<&str, (&str, &str)> = current
            .iter()
            .map(|(id, row)| (id.as_str(), (row.observer.as_str(), row.kind.as_str())))
            .collect();
        let mut conflicts: Vec<&Item<'_>> = Vec::new();
        let mut foreign: HashSet<(&str, i64)> = HashSet::new();
        firsts.retain(|item| {
            let report = &item.incoming.report;
            let own = (report.observer.as_str(), report.kind().as_str());
            let expected = *identity.entry(item.id.as_str()).or_insert(own);
            if expected == own {
                return true;
            }
            tracing::warn!(
                report_id = item.id,
                revision = item.revision,
                "a revision with another observer or kind"
            );
            foreign.insert((item.id.as_str(), item.revision));
            outcomes[item.index] = Some(Outcome::Conflict);
            conflicts.push(item);
            false
        });

        let new = insert_revisions(&mut tx, self.backend, &firsts).await?;
        // What the store held for each (id, revision) before, or what this batch stored.
        let mut known: HashMap<(String, i64), String> =
            existing_hashes(&mut tx, self.backend, &firsts, &new).await?;
        for item in firsts.iter().filter(|i| !new.contains_key(&(i.id.clone(), i.revision))) {
            let stored = &known[&(item.id.clone(), item.revision)];
            outcomes[item.index] = Some(if *stored == item.hash {
                Outcome::Duplicate
            } else {
                conflicts.push(item);
                Outcome::Conflict
            });
        }
        for item in firsts.iter().filter(|i| new.contains_key(&(i.id.clone(), i.revision))) {
            known.insert((item.id.clone(), item.revision), item.hash.clone());
        }
        for item in &repeats {
            let duplicate = !foreign.contains(&(item.id.as_str(), item.revision))
                && known[&(item.id.clone(), item.revision)] == item.hash;
            outcomes[item.index] = Some(if duplicate {
                Outcome::Duplicate
            } else {
                conflicts.push(item);
                Outcome::Conflict
            });
        }
        insert_conflicts(&mut tx, self.backend, &mut conflicts).await?;

        let fresh: Vec<&Item<'_>> =
            firsts.iter().copied().filter(|i| new.contains_key(&(i.id.clone(), i.revision))).collect();
        write_derived(&mut tx, self.backend, &fresh, &new).await?;
        label_current(&mut tx, self.backend, &fresh, &new, &current, &mut outcomes).await?;
        tx.commit().await?;
        Ok(outcomes.into_iter().map(|o| o.expect("every report has an outcome")).collect())
    }
}

/// What the store holds as current for a report.
struct CurrentRow {
    revision: i64,
    observer: String,
    kind: String,
}

/// The current rows of the batch's reports. Read before writing, they label outcomes (stored or
/// revised) and fix each report's observer and kind; which revision becomes current is decided
/// by the upsert itself, so a concurrent worker can make a label wrong but never the data.
async fn current_rows(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
) -> Result<HashMap<String, CurrentRow>, StoreError> {
    let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    ids.dedup();
    let mut current = HashMap::new();
    for chunk in ids.chunks(MAX_PARAMS) {
        let mut sql =
            Sql::new(backend, "SELECT report_id, revision, observer, kind FROM reports WHERE report_id IN ");
        sql.bind_list(chunk.iter().copied());
        for row in sql.fetch_all_in(tx).await? {
            let id: String = row.try_get(0)?;
            current.insert(
                id,
                CurrentRow { revision: row.try_get(1)?, observer: row.try_get(2)?, kind: row.try_get(3)? },
            );
        }
    }
    Ok(current)
}

/// The columns of `report_revisions` that a batch writes, in statement order.
const REVISION_COLUMNS: &str = "report_id, revision, content_hash, mission, observer, station, kind, \
     observed_at_us, payload, flags, sender, redelivered, received_at_us";

/// Inserts the revisions the store does not have yet; returns their sequence numbers.
async fn insert_revisions(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
) -> Result<HashMap<(String, i64), i64>, StoreError> {
    let flags = |item: &Item<'_>| serde_json::to_string(&item.incoming.flags).expect("flags serialise");
    let mut statements = Vec::new();
    match backend {
        // One array per column: thirteen parameters whatever the batch size.
        Backend::Postgres => {
            let mut sql = Sql::new(
                backend,
                &format!("INSERT INTO report_revisions ({REVISION_COLUMNS}) SELECT * FROM UNNEST("),
            );
            let column =
                |f: &dyn Fn(&Item<'_>) -> String| items.iter().map(|i| f(i)).collect::<Vec<String>>();
            sql.bind_array(column(&|i| i.id.clone()), "text").push(", ");
            sql.bind_array(items.iter().map(|i| i.revision).collect::<Vec<i64>>(), "bigint").push(", ");
            sql.bind_array(column(&|i| i.hash.clone()), "text").push(", ");
            sql.bind_array(column(&|i| i.incoming.report.mission.clone()), "text").push(", ");
            sql.bind_array(column(&|i| i.incoming.report.observer.clone()), "text").push(", ");
            sql.bind_array(column(&|i| i.incoming.report.station.clone()), "text").push(", ");
            sql.bind_array(column(&|i| i.incoming.report.kind().as_str().to_owned()), "text").push(", ");
            let observed: Vec<i64> =
                items.iter().map(|i| i.incoming.report.observed_at.timestamp_micros()).collect();
            sql.bind_array(observed, "bigint").push(", ");
            sql.bind_array(column(&|i| i.incoming.payload.clone()), "text").push(", ");
            sql.bind_array(column(&|i| flags(i)), "text").push(", ");
            let senders: Vec<Option<String>> =
                items.iter().map(|i| i.incoming.delivery.sender.clone()).collect();
            sql.bind_array(senders, "text").push(", ");
            let redelivered: Vec<bool> = items.iter().map(|i| i.incoming.delivery.redelivered).collect();
            sql.bind_array(redelivered, "boolean").push(", ");
            let received: Vec<i64> =
                items.iter().map(|i| i.incoming.delivery.received_at.timestamp_micros()).collect();
            sql.bind_array(received, "bigint").push(")");
            statements.push(sql);
        }
        Backend::Sqlite => {
            for chunk in items.chunks(MAX_PARAMS / 13) {
                let mut sql =
                    Sql::new(backend, &format!("INSERT INTO report_revisions ({REVISION_COLUMNS}) VALUES "));
                sql.values(chunk, |sql, item| {
                    let (report, delivery) = (&item.incoming.report, &item.incoming.delivery);
                    sql.bind(item.id.clone()).push(", ").bind(item.revision).push(", ");
                    sql.bind(item.hash.clone()).push(", ").bind(report.mission.clone()).push(", ");
                    sql.bind(report.observer.clone()).push(", ").bind(report.station.clone()).push(", ");
                    sql.bind(report.kind().as_str().to_owned()).push(", ");
                    sql.bind(report.observed_at.timestamp_micros()).push(", ");
                    sql.bind(item.incoming.payload.clone()).push(", ").bind(flags(item)).push(", ");
                    sql.bind(delivery.sender.clone()).push(", ").bind(delivery.redelivered).push(", ");
                    sql.bind(delivery.received_at.timestamp_micros());
                });
                statements.push(sql);
            }
        }
    }
    let mut new = HashMap::new();
    for mut sql in statements {
        sql.push(" ON CONFLICT (report_id, revision) DO NOTHING RETURNING report_id, revision, seq");
        for row in sql.fetch_all_in(tx).await? {
            new.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
    }
    Ok(new)
}

/// The content hashes already stored for the batch's revisions that were not new.
async fn existing_hashes(
    tx: &mut Tx,
    backend: Backend,
    firsts: &[&Item<'_>],
    new: &HashMap<(String, i64), i64>,
) -> Result<HashMap<(String, i64), String>, StoreError> {
    let mut ids: Vec<&str> = firsts
        .iter()
        .filter(|i| !new.contains_key(&(i.id.clone(), i.revision)))
        .map(|i| i.id.as_str())
        .collect();
    ids.dedup();
    let mut hashes = HashMap::new();
    for chunk in ids.chunks(MAX_PARAMS) {
        let mut sql = Sql::new(
            backend,
            "SELECT report_id, revision, content_hash FROM report_revisions WHERE report_id IN ",
        );
        sql.bind_list(chunk.iter().copied());
        for row in sql.fetch_all_in(tx).await? {
            hashes.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
    }
    Ok(hashes)
}

/// Keeps every conflicting version beside the audit trail (once per distinct content).
async fn insert_conflicts(tx: &mut Tx, backend: Backend, items: &mut [&Item<'_>]) -> Result<(), StoreError> {
    // The same global order as every other write, so that two workers cannot deadlock here.
    items.sort_by(|a, b| (&a.id, a.revision, &a.hash).cmp(&(&b.id, b.revision, &b.hash)));
    for item in items.iter() {
        tracing::warn!(
            report_id = item.id,
            revision = item.revision,
            "a conflicting version of a report, kept aside"
        );
    }
    for chunk in items.chunks(MAX_PARAMS / 6) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO conflicts (report_id, revision, content_hash, payload, sender, received_at_us) VALUES ",
        );
        sql.values(chunk, |sql, item| {
            let delivery = &item.incoming.delivery;
            sql.bind(item.id.clone())
                .push(", ")
                .bind(item.revision)
                .push(", ")
                .bind(item.hash.clone())
                .push(", ");
            sql.bind(item.incoming.payload.clone()).push(", ").bind(delivery.sender.clone()).push(", ");
            sql.bind(delivery.received_at.timestamp_micros());
        });
        sql.push(" ON CONFLICT (report_id, revision, content_hash) DO NOTHING");
        sql.execute_in(tx).await?;
    }
    Ok(())
}

/// Makes the highest new revision of each report current unless the store has a higher one,
/// and labels every new revision as a sequence of single inserts would have.
async fn label_current(
    tx: &mut Tx,
    backend: Backend,
    fresh: &[&Item<'_>],
    new: &HashMap<(String, i64), i64>,
    current: &HashMap<String, CurrentRow>,
    outcomes: &mut [Option<Outcome>],
) -> Result<(), StoreError> {
    // `fresh` is sorted by (id, revision): group it by report.
    let mut groups: Vec<&[&Item<'_>]> = Vec::new();
    let mut start = 0;
    for i in 1..=fresh.len() {
        if i == fresh.len() || fresh[i].id != fresh[start].id {
            groups.push(&fresh[start..i]);
            start = i;
        }
    }

    let highest: Vec<&Item<'_>> = groups.iter().map(|g| *g.last().expect("groups are not empty")).collect();
    let mut promoted: HashSet<String> = HashSet::new();
    for chunk in highest.chunks(MAX_PARAMS / 13) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO reports (report_id, revision, revision_seq, mission, observer, station, kind, \
             observed_at_us, received_at_us, assessment, incident_category, incident_severity, quarantined) VALUES ",
        );
        sql.values(chunk, |sql, item| {
            let report = &item.incoming.report;
            let (category, severity) = match &report.content {
                Content::Incident(body) => {
                    (Some(body.category.as_str().to_owned()), Some(body.severity.as_str().to_owned()))
                }
                _ => (None, None),
            };
            sql.bind(item.id.clone()).push(", ").bind(item.revision).push(", ");
            sql.bind(new[&(item.id.clone(), item.revision)]).push(", ");
            sql.bind(report.mission.clone()).push(", ").bind(report.observer.clone()).push(", ");
            sql.bind(report.station.clone()).push(", ").bind(report.kind().as_str().to_owned()).push(", ");
            sql.bind(report.observed_at.timestamp_micros()).push(", ");
            sql.bind(item.incoming.delivery.received_at.timestamp_micros()).push(", ");
            sql.bind(report.assessment.map(|a| a.as_str().to_owned())).push(", ").bind(category).push(", ");
            sql.bind(severity).push(", ").bind(!item.incoming.flags.is_empty());
        });
        sql.push(
            " ON CONFLICT (report_id) DO UPDATE SET revision = excluded.revision, revision_seq = excluded.revision_seq, \
             mission = excluded.mission, observer = excluded.observer, station = excluded.station, kind = excluded.kind, \
             observed_at_us = excluded.observed_at_us, received_at_us = excluded.received_at_us, \
             assessment = excluded.assessment, incident_category = excluded.incident_category, \
             incident_severity = excluded.incident_severity, quarantined = excluded.quarantined \
             WHERE reports.revision < excluded.revision RETURNING report_id",
        );
        for row in sql.fetch_all_in(tx).await? {
            promoted.insert(row.try_get(0)?);
        }
    }

    for group in groups {
        let id = &group[0].id;
        // Not promoted: the store already has a higher revision (perhaps from another worker).
        let mut now_current =
            if promoted.contains(id) { current.get(id).map(|row| row.revision) } else { Some(i64::MAX) };
        for item in group {
            let outcome = if now_current.is_some_and(|c| item.revision <= c) {
                Outcome::Stale
            } else if !item.incoming.flags.is_empty() {
                Outcome::Quarantined
            } else if now_current.is_some() {
                Outcome::Revised
            } else {
                Outcome::Stored
            };
            if outcome != Outcome::Stale {
                now_current = Some(item.revision);
            }
            outcomes[item.index] = Some(outcome);
        }
    }
    Ok(())
}

/// Flags and counting protocols of the revisions the store has just recorded.
async fn write_derived(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
    new: &HashMap<(String, i64), i64>,
) -> Result<(), StoreError> {
    let seq = |item: &Item<'_>| new[&(item.id.clone(), item.revision)];
    let flags: Vec<(&Item<'_>, &Flag)> =
        items.iter().flat_map(|item| item.incoming.flags.iter().map(move |flag| (*item, flag))).collect();
    for chunk in flags.chunks(MAX_PARAMS / 5) {
        let mut sql =
            Sql::new(backend, "INSERT INTO report_flags (revision_seq, code, path, message) VALUES ");
        sql.values(chunk, |sql, (item, flag)| {
            sql.bind(seq(item)).push(", ");
            sql.bind(flag.code.as_str().to_owned()).push(", ").bind(flag.path.clone()).push(", ");
            sql.bind(flag.message.clone());
        });
        sql.execute_in(tx).await?;
    }
    let protocols: Vec<(&Item<'_>, &Protocol)> = items
        .iter()
        .filter_map(|item| match &item.incoming.report.content {
            Content::Counting(body) => Some(body.protocols.iter().map(move |p| (*item, p))),
            _ => None,
        })
        .flatten()
        .collect();
    for chunk in protocols.chunks(MAX_PARAMS / 11) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO protocols (revision_seq, contest, registered_voters, ballots_received, \
             ballots_issued, ballots_spoiled, ballots_unused, ballots_in_box, invalid, votes_digest) VALUES ",
        );
        sql.values(chunk, |sql, (item, p)| {
            let digest: Vec<String> = p.votes.iter().map(|(choice, n)| format!("{choice}={n}")).collect();
            sql.bind(seq(item)).push(", ").bind(p.contest.clone());
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
        sql.execute_in(tx).await?;
    }
    let votes: Vec<(&Item<'_>, &str, &str, u32)> = protocols
        .iter()
        .flat_map(|(item, p)| {
            p.votes.iter().map(move |(choice, n)| (*item, p.contest.as_str(), choice.as_str(), *n))
        })
        .collect();
    for chunk in votes.chunks(MAX_PARAMS / 5) {
        let mut sql =
            Sql::new(backend, "INSERT INTO protocol_votes (revision_seq, contest, choice, votes) VALUES ");
        sql.values(chunk, |sql, (item, contest, choice, n)| {
            sql.bind(seq(item)).push(", ").bind((*contest).to_owned());
            sql.push(", ").bind((*choice).to_owned()).push(", ").bind(i64::from(*n));
        });
        sql.execute_in(tx).await?;
    }
    Ok(())
}
