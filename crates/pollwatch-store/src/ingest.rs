//! Committing batches of accepted reports: one transaction, one outcome per report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use pollwatch_model::{Content, Flag, IncidentBody, Protocol, Report};
use sha2::{Digest as _, Sha256};

use crate::db::{Rows, Sql, Tx};
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
    report: Report,
    /// [`content_hash`] of `report`, computed with the report (the worker does it while decoding,
    /// on another core than the one committing the previous batch).
    hash: String,
    /// The model's flags; a report with any is quarantined.
    pub flags: Vec<Flag>,
    /// The payload exactly as received (valid UTF-8, since it decoded), for the audit trail.
    pub payload: String,
    pub delivery: Delivery,
}

impl Incoming {
    pub fn new(report: Report, flags: Vec<Flag>, payload: String, delivery: Delivery) -> Self {
        let hash = content_hash(&report);
        Self { report, hash, flags, payload, delivery }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report's [`content_hash`].
    pub fn content_hash(&self) -> &str {
        &self.hash
    }
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
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
                hash: incoming.hash.clone(),
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
        // The sequence number of each report of the batch that was recorded now, by position.
        let mut seqs: Vec<Option<i64>> = vec![None; batch.len()];
        for item in &firsts {
            seqs[item.index] = new.get(&(item.id.clone(), item.revision)).copied();
        }
        // What the store held for each (id, revision) before, or what this batch stored.
        let mut known: HashMap<(String, i64), String> =
            existing_hashes(&mut tx, self.backend, &firsts, &seqs).await?;
        for item in firsts.iter().filter(|i| seqs[i.index].is_none()) {
            let stored = &known[&(item.id.clone(), item.revision)];
            outcomes[item.index] = Some(if *stored == item.hash {
                Outcome::Duplicate
            } else {
                conflicts.push(item);
                Outcome::Conflict
            });
        }
        for item in firsts.iter().filter(|i| seqs[i.index].is_some()) {
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

        let fresh: Vec<&Item<'_>> = firsts.iter().copied().filter(|i| seqs[i.index].is_some()).collect();
        write_derived(&mut tx, self.backend, &fresh, &seqs).await?;
        let promoted = label_current(&mut tx, self.backend, &fresh, &seqs, &current, &mut outcomes).await?;
        if self.backend == Backend::Sqlite {
            update_summaries(&mut tx, &fresh, &current, &promoted).await?;
        }
        tx.commit().await?;
        Ok(outcomes.into_iter().map(|o| o.expect("every report has an outcome")).collect())
    }
}

/// What the store holds as current for a report.
struct CurrentRow {
    revision: i64,
    mission: String,
    observer: String,
    station: String,
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
    let mut ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    ids.dedup();
    let mut current = HashMap::new();
    for chunk in ids.chunks(MAX_PARAMS) {
        let mut sql = Sql::new(
            backend,
            "SELECT report_id, revision, mission, observer, station, kind FROM reports WHERE report_id",
        );
        sql.bind_in(chunk.to_vec());
        for row in sql.fetch_all_in(tx).await? {
            let id: String = row.try_get(0)?;
            current.insert(
                id,
                CurrentRow {
                    revision: row.try_get(1)?,
                    mission: row.try_get(2)?,
                    observer: row.try_get(3)?,
                    station: row.try_get(4)?,
                    kind: row.try_get(5)?,
                },
            );
        }
    }
    Ok(current)
}

/// Inserts the revisions the store does not have yet; returns their sequence numbers.
async fn insert_revisions(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
) -> Result<HashMap<(String, i64), i64>, StoreError> {
    let rows = Rows::default()
        .text("report_id", items.iter().map(|i| i.id.clone()))
        .int("revision", items.iter().map(|i| i.revision))
        .text("content_hash", items.iter().map(|i| i.hash.clone()))
        .text("mission", items.iter().map(|i| i.incoming.report.mission.clone()))
        .text("observer", items.iter().map(|i| i.incoming.report.observer.clone()))
        .text("station", items.iter().map(|i| i.incoming.report.station.clone()))
        .text("kind", items.iter().map(|i| i.incoming.report.kind().as_str().to_owned()))
        .int("observed_at_us", items.iter().map(|i| i.incoming.report.observed_at.timestamp_micros()))
        .text("payload", items.iter().map(|i| i.incoming.payload.clone()))
        .text(
            "flags",
            items.iter().map(|i| serde_json::to_string(&i.incoming.flags).expect("flags serialise")),
        )
        .optional_text("sender", items.iter().map(|i| i.incoming.delivery.sender.clone()))
        .bool("redelivered", items.iter().map(|i| i.incoming.delivery.redelivered))
        .int("received_at_us", items.iter().map(|i| i.incoming.delivery.received_at.timestamp_micros()));
    let mut new = HashMap::new();
    let tail = " ON CONFLICT (report_id, revision) DO NOTHING RETURNING report_id, revision, seq";
    for sql in rows.insert(backend, "report_revisions", tail) {
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
    seqs: &[Option<i64>],
) -> Result<HashMap<(String, i64), String>, StoreError> {
    let mut ids: Vec<String> =
        firsts.iter().filter(|i| seqs[i.index].is_none()).map(|i| i.id.clone()).collect();
    ids.dedup();
    let mut hashes = HashMap::new();
    for chunk in ids.chunks(MAX_PARAMS) {
        let mut sql = Sql::new(
            backend,
            "SELECT report_id, revision, content_hash FROM report_revisions WHERE report_id",
        );
        sql.bind_in(chunk.to_vec());
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
    let rows = Rows::default()
        .text("report_id", items.iter().map(|i| i.id.clone()))
        .int("revision", items.iter().map(|i| i.revision))
        .text("content_hash", items.iter().map(|i| i.hash.clone()))
        .text("payload", items.iter().map(|i| i.incoming.payload.clone()))
        .optional_text("sender", items.iter().map(|i| i.incoming.delivery.sender.clone()))
        .int("received_at_us", items.iter().map(|i| i.incoming.delivery.received_at.timestamp_micros()));
    let tail = " ON CONFLICT (report_id, revision, content_hash) DO NOTHING";
    for sql in rows.insert(backend, "conflicts", tail) {
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
    seqs: &[Option<i64>],
    current: &HashMap<String, CurrentRow>,
    outcomes: &mut [Option<Outcome>],
) -> Result<HashSet<String>, StoreError> {
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
    let rows = Rows::default()
        .text("report_id", highest.iter().map(|i| i.id.clone()))
        .int("revision", highest.iter().map(|i| i.revision))
        .int("revision_seq", highest.iter().map(|i| seqs[i.index].expect("a fresh revision has a seq")))
        .text("mission", highest.iter().map(|i| i.incoming.report.mission.clone()))
        .text("observer", highest.iter().map(|i| i.incoming.report.observer.clone()))
        .text("station", highest.iter().map(|i| i.incoming.report.station.clone()))
        .text("kind", highest.iter().map(|i| i.incoming.report.kind().as_str().to_owned()))
        .int("observed_at_us", highest.iter().map(|i| i.incoming.report.observed_at.timestamp_micros()))
        .int("received_at_us", highest.iter().map(|i| i.incoming.delivery.received_at.timestamp_micros()))
        .optional_text(
            "assessment",
            highest.iter().map(|i| i.incoming.report.assessment.map(|a| a.as_str().to_owned())),
        )
        .optional_text(
            "incident_category",
            highest.iter().map(|i| incident(i).map(|b| b.category.as_str().to_owned())),
        )
        .optional_text(
            "incident_severity",
            highest.iter().map(|i| incident(i).map(|b| b.severity.as_str().to_owned())),
        )
        .bool("quarantined", highest.iter().map(|i| !i.incoming.flags.is_empty()));
    let tail = " ON CONFLICT (report_id) DO UPDATE SET revision = excluded.revision, \
         revision_seq = excluded.revision_seq, mission = excluded.mission, observer = excluded.observer, \
         station = excluded.station, kind = excluded.kind, observed_at_us = excluded.observed_at_us, \
         received_at_us = excluded.received_at_us, assessment = excluded.assessment, \
         incident_category = excluded.incident_category, incident_severity = excluded.incident_severity, \
         quarantined = excluded.quarantined WHERE reports.revision < excluded.revision RETURNING report_id";
    let mut promoted: HashSet<String> = HashSet::new();
    for sql in rows.insert(backend, "reports", tail) {
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
    Ok(promoted)
}

/// SQLite only: the summary tables that stand in for scattered indexes there (migration 0002):
/// how many current reports each station has of each kind, and when each observer last sent
/// anything. One statement each per batch. Exact because SQLite runs one writing transaction at
/// a time, and this one read the rows it replaces (`current`) itself: had another committed since,
/// SQLite would have refused this transaction's first write.
async fn update_summaries(
    tx: &mut Tx,
    fresh: &[&Item<'_>],
    current: &HashMap<String, CurrentRow>,
    promoted: &HashSet<String>,
) -> Result<(), StoreError> {
    // `fresh` is sorted by (id, revision): the last of each report's revisions is the one promoted.
    let mut coverage: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for (i, item) in fresh.iter().enumerate() {
        let highest = fresh.get(i + 1).is_none_or(|next| next.id != item.id);
        if !highest || !promoted.contains(&item.id) {
            continue;
        }
        let report = &item.incoming.report;
        if let Some(old) = current.get(&item.id) {
            if (old.mission.as_str(), old.station.as_str())
                == (report.mission.as_str(), report.station.as_str())
            {
                continue;
            }
            *coverage.entry((&old.mission, &old.kind, &old.station)).or_default() -= 1;
        }
        *coverage.entry((&report.mission, report.kind().as_str(), &report.station)).or_default() += 1;
    }
    coverage.retain(|_, change| *change != 0);
    let rows = Rows::default()
        .text("mission", coverage.keys().map(|k| k.0.to_owned()))
        .text("kind", coverage.keys().map(|k| k.1.to_owned()))
        .text("station", coverage.keys().map(|k| k.2.to_owned()))
        .int("reports", coverage.values().copied());
    let tail = " ON CONFLICT (mission, kind, station) DO UPDATE SET reports = reports + excluded.reports";
    for sql in rows.insert(Backend::Sqlite, "station_coverage", tail) {
        sql.execute_in(tx).await?;
    }

    let mut activity: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for item in fresh {
        let (report, received) =
            (&item.incoming.report, item.incoming.delivery.received_at.timestamp_micros());
        let latest = activity.entry((&report.mission, &report.observer)).or_insert(received);
        *latest = (*latest).max(received);
    }
    let rows = Rows::default()
        .text("mission", activity.keys().map(|k| k.0.to_owned()))
        .text("observer", activity.keys().map(|k| k.1.to_owned()))
        .int("received_at_us", activity.values().copied());
    let tail = " ON CONFLICT (mission, observer) DO UPDATE \
         SET received_at_us = MAX(received_at_us, excluded.received_at_us)";
    for sql in rows.insert(Backend::Sqlite, "observer_activity", tail) {
        sql.execute_in(tx).await?;
    }
    Ok(())
}

/// The incident a report describes, if it is an incident report.
fn incident<'a>(item: &Item<'a>) -> Option<&'a IncidentBody> {
    match &item.incoming.report.content {
        Content::Incident(body) => Some(body),
        _ => None,
    }
}

/// Flags and counting protocols of the revisions the store has just recorded.
async fn write_derived(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
    seqs: &[Option<i64>],
) -> Result<(), StoreError> {
    let seq = |item: &Item<'_>| seqs[item.index].expect("a fresh revision has a seq");
    let flags: Vec<(&Item<'_>, &Flag)> =
        items.iter().flat_map(|item| item.incoming.flags.iter().map(move |flag| (*item, flag))).collect();
    let rows = Rows::default()
        .int("revision_seq", flags.iter().map(|(item, _)| seq(item)))
        .text("code", flags.iter().map(|(_, flag)| flag.code.as_str().to_owned()))
        .text("path", flags.iter().map(|(_, flag)| flag.path.clone()))
        .text("message", flags.iter().map(|(_, flag)| flag.message.clone()));
    for sql in rows.insert(backend, "report_flags", "") {
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
    let figure = |get: fn(&Protocol) -> u32| protocols.iter().map(move |(_, p)| i64::from(get(p)));
    let rows = Rows::default()
        .int("revision_seq", protocols.iter().map(|(item, _)| seq(item)))
        .text("contest", protocols.iter().map(|(_, p)| p.contest.clone()))
        .int("registered_voters", figure(|p| p.registered_voters))
        .int("ballots_received", figure(|p| p.ballots_received))
        .int("ballots_issued", figure(|p| p.ballots_issued))
        .int("ballots_spoiled", figure(|p| p.ballots_spoiled))
        .int("ballots_unused", figure(|p| p.ballots_unused))
        .int("ballots_in_box", figure(|p| p.ballots_in_box))
        .int("invalid", figure(|p| p.invalid))
        .text(
            "votes_digest",
            protocols.iter().map(|(_, p)| {
                p.votes.iter().map(|(choice, n)| format!("{choice}={n}")).collect::<Vec<_>>().join(";")
            }),
        );
    for sql in rows.insert(backend, "protocols", "") {
        sql.execute_in(tx).await?;
    }

    let votes: Vec<(&Item<'_>, &str, &str, u32)> = protocols
        .iter()
        .flat_map(|(item, p)| {
            p.votes.iter().map(move |(choice, n)| (*item, p.contest.as_str(), choice.as_str(), *n))
        })
        .collect();
    let rows = Rows::default()
        .int("revision_seq", votes.iter().map(|(item, ..)| seq(item)))
        .text("contest", votes.iter().map(|(_, contest, ..)| (*contest).to_owned()))
        .text("choice", votes.iter().map(|(_, _, choice, _)| (*choice).to_owned()))
        .int("votes", votes.iter().map(|(.., n)| i64::from(*n)));
    for sql in rows.insert(backend, "protocol_votes", "") {
        sql.execute_in(tx).await?;
    }
    Ok(())
}
