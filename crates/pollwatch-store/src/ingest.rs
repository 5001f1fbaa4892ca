//! Committing batches of accepted reports: one transaction, one outcome per report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use pollwatch_model::{Content, Flag, IncidentBody, Protocol, Report};
use sha2::{Digest as _, Sha256};

use crate::audit::{self, ConflictEntry, RevisionEntry, entry_text};
use crate::db::{Rows, Sql, Tx, rows_per_statement};
use crate::findings::{self, Tally};
use crate::{Backend, ReviewState, Store, StoreError};

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
    /// SHA-256 of `payload`, for its audit chain entry; computed here for the same reason.
    payload_sha256: String,
    /// The model's flags; a report with any is quarantined.
    pub flags: Vec<Flag>,
    /// The payload exactly as received (valid UTF-8, since it decoded), for the audit trail.
    pub payload: String,
    pub delivery: Delivery,
}

impl Incoming {
    pub fn new(report: Report, flags: Vec<Flag>, payload: String, delivery: Delivery) -> Self {
        let hash = content_hash(&report);
        let payload_sha256 = audit::payload_sha256(&payload);
        Self { report, hash, payload_sha256, flags, payload, delivery }
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

/// One report of a batch, with what the store derives from it.
struct Item<'a> {
    /// Position in the batch, for the outcome.
    index: usize,
    incoming: &'a Incoming,
    id: String,
    revision: i64,
    hash: String,
}

impl<'a> Item<'a> {
    fn new(index: usize, incoming: &'a Incoming) -> Self {
        Item {
            index,
            incoming,
            id: incoming.report.report_id.to_string(),
            revision: i64::from(incoming.report.revision),
            hash: incoming.hash.clone(),
        }
    }

    fn key(&self) -> (&str, i64) {
        (&self.id, self.revision)
    }

    fn is_quarantined(&self) -> bool {
        !self.incoming.flags.is_empty()
    }
}

impl Store {
    /// Commits `batch` in one transaction and returns one outcome per report, in batch order.
    /// Nothing is committed unless everything is; on `Err` the caller must not acknowledge any
    /// delivery of the batch.
    ///
    /// The batch is written with a few multi-row statements. Within a batch, reports are taken in
    /// (report id, revision) order, so a revision and its correction in one batch come out as
    /// stored (or revised) and then revised. Each report's outcome is [`outcome`] of what the
    /// store holds against it.
    pub async fn ingest_batch(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend;
        let items = in_write_order(batch);
        let firsts = firsts(&items);
        let mut tx = self.pool.begin().await?;
        let current = current_rows(&mut tx, backend, &firsts).await?;
        let (own, foreign) = split_foreign(&firsts, &current);
        let seqs = insert_revisions(&mut tx, backend, &own, batch.len(), None).await?;
        let (fresh, known): (Vec<&Item<'_>>, Vec<&Item<'_>>) =
            own.iter().partition(|item| seqs[item.index].is_some());
        let recorded = recorded_hashes(&mut tx, backend, &known).await?;
        write_derived(&mut tx, backend, &fresh, &seqs).await?;
        let promoted = promote(&mut tx, backend, &fresh, &seqs).await?;
        let found = Found { foreign, seqs, recorded, current, promoted };
        let outcomes = judge(&items, &found);
        let kept = insert_conflicts(&mut tx, backend, &items, &outcomes).await?;
        update_summaries(&mut tx, backend, &fresh, &found.current, &found.promoted).await?;
        audit::append(&mut tx, backend, chain_entries(&fresh, &found.seqs, &kept)).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// What the store holds against one incoming revision of a report, once the batch is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held<'a> {
    /// The report belongs to another observer or is of another kind: as the store holds it, or
    /// as the batch's first revision of a new report made it.
    Foreign,
    /// This revision was recorded before, with these content hashes (the first received, and any
    /// version a reviewer picked since): by an earlier batch, or by an earlier copy in this one.
    Recorded(&'a [String]),
    /// This revision was recorded now, and the batch made the report's highest new revision
    /// current. `current` is the revision that was current before this one (the store's, or a
    /// lower one of this batch), `None` for a new report.
    New { current: Option<i64> },
    /// This revision was recorded now, but the store holds a revision at least as high as any of
    /// the batch's as current (perhaps from another worker).
    Superseded,
}

/// The duplicate/conflict rule, one for both backends: what becomes of an incoming revision
/// given what the store holds against it. Labels are those a sequence of single inserts would
/// give; which revision is current is decided by the database's upsert (see [`promote`]).
fn outcome(revision: i64, hash: &str, quarantined: bool, held: Held<'_>) -> Outcome {
    match held {
        Held::Foreign => Outcome::Conflict,
        Held::Recorded(stored) if stored.iter().any(|s| s == hash) => Outcome::Duplicate,
        Held::Recorded(_) => Outcome::Conflict,
        Held::Superseded => Outcome::Stale,
        Held::New { current: Some(current) } if revision <= current => Outcome::Stale,
        Held::New { .. } if quarantined => Outcome::Quarantined,
        Held::New { current: Some(_) } => Outcome::Revised,
        Held::New { current: None } => Outcome::Stored,
    }
}

/// The batch's reports in the order they are written: by (report id, revision), then batch
/// order. A fixed order makes concurrent transactions take row locks in the same order, so two
/// workers with overlapping batches cannot deadlock.
fn in_write_order(batch: &[Incoming]) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> =
        batch.iter().enumerate().map(|(index, incoming)| Item::new(index, incoming)).collect();
    items.sort_by(|a, b| (&a.id, a.revision, a.index).cmp(&(&b.id, b.revision, b.index)));
    items
}

/// The first of several copies of one (id, revision) in the batch stands for them all: the
/// firsts are written, the other copies only judged against them (see [`judge`]).
fn firsts<'i, 'b>(items: &'i [Item<'b>]) -> Vec<&'i Item<'b>> {
    let mut firsts: Vec<&Item<'_>> = Vec::new();
    for item in items {
        if firsts.last().is_none_or(|first| first.key() != item.key()) {
            firsts.push(item);
        }
    }
    firsts
}

/// What the store holds as current for a report.
struct CurrentRow {
    revision: i64,
    revision_seq: i64,
    mission: String,
    observer: String,
    station: String,
    kind: String,
    assessment: Option<String>,
    quarantined: bool,
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
    for chunk in ids.chunks(rows_per_statement(1)) {
        let mut sql = Sql::new(
            backend,
            "SELECT report_id, revision, revision_seq, mission, observer, station, kind, assessment, \
             quarantined FROM reports WHERE report_id",
        );
        sql.bind_in(chunk.to_vec());
        for row in sql.fetch_all_in(tx).await? {
            let id: String = row.try_get(0)?;
            current.insert(
                id,
                CurrentRow {
                    revision: row.try_get(1)?,
                    revision_seq: row.try_get(2)?,
                    mission: row.try_get(3)?,
                    observer: row.try_get(4)?,
                    station: row.try_get(5)?,
                    kind: row.try_get(6)?,
                    assessment: row.try_get(7)?,
                    quarantined: row.try_get(8)?,
                },
            );
        }
    }
    Ok(current)
}

/// A report keeps its observer and kind across revisions: a "revision" from someone else, or of
/// another kind, is set aside (a conflict) and never written as a revision. For a report the
/// store does not hold, its first revision in the batch fixes them. Returns the revisions to
/// write and the (id, revision) of those set aside.
fn split_foreign<'i, 'b>(
    firsts: &[&'i Item<'b>],
    current: &HashMap<String, CurrentRow>,
) -> (Vec<&'i Item<'b>>, HashSet<(&'i str, i64)>) {
    let mut identity: HashMap<&str, (&str, &str)> =
        current.iter().map(|(id, row)| (id.as_str(), (row.observer.as_str(), row.kind.as_str()))).collect();
    let mut own = Vec::new();
    let mut foreign = HashSet::new();
    for &item in firsts {
        let report = &item.incoming.report;
        let claimed = (report.observer.as_str(), report.kind().as_str());
        if *identity.entry(item.id.as_str()).or_insert(claimed) == claimed {
            own.push(item);
        } else {
            tracing::warn!(
                report_id = item.id,
                revision = item.revision,
                "a revision with another observer or kind"
            );
            foreign.insert(item.key());
        }
    }
    (own, foreign)
}

/// Inserts the revisions the store does not have yet (as `variant` 0, the content received
/// first, unless told otherwise); returns the sequence number of each report of the batch that
/// was recorded now, by position in the batch.
async fn insert_revisions(
    tx: &mut Tx,
    backend: Backend,
    items: &[&Item<'_>],
    batch_len: usize,
    variant: Option<i64>,
) -> Result<Vec<Option<i64>>, StoreError> {
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
    let rows = match variant {
        Some(variant) => rows.int("variant", items.iter().map(|_| variant)),
        None => rows,
    };
    let mut new: HashMap<(String, i64), i64> = HashMap::new();
    let tail = " ON CONFLICT (report_id, revision, variant) DO NOTHING RETURNING report_id, revision, seq";
    for sql in rows.insert(backend, "report_revisions", tail) {
        for row in sql.fetch_all_in(tx).await? {
            new.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
    }
    let mut seqs = vec![None; batch_len];
    for item in items {
        seqs[item.index] = new.get(&(item.id.clone(), item.revision)).copied();
    }
    Ok(seqs)
}

/// The content hashes the store already held for the revisions of `known`, which the insert
/// found recorded: the first received and any picked since.
async fn recorded_hashes(
    tx: &mut Tx,
    backend: Backend,
    known: &[&Item<'_>],
) -> Result<HashMap<(String, i64), Vec<String>>, StoreError> {
    let mut ids: Vec<String> = known.iter().map(|i| i.id.clone()).collect();
    ids.dedup();
    let mut hashes = HashMap::new();
    for chunk in ids.chunks(rows_per_statement(1)) {
        let mut sql = Sql::new(
            backend,
            "SELECT report_id, revision, content_hash FROM report_revisions WHERE report_id",
        );
        sql.bind_in(chunk.to_vec());
        for row in sql.fetch_all_in(tx).await? {
            hashes.entry((row.try_get(0)?, row.try_get(1)?)).or_insert_with(Vec::new).push(row.try_get(2)?);
        }
    }
    Ok(hashes)
}

/// Makes the highest new revision of each report current unless the store has a higher one;
/// returns the ids of the reports it made current.
async fn promote(
    tx: &mut Tx,
    backend: Backend,
    fresh: &[&Item<'_>],
    seqs: &[Option<i64>],
) -> Result<HashSet<String>, StoreError> {
    // `fresh` is sorted by (id, revision): the last of each report's revisions is its highest.
    let highest: Vec<&Item<'_>> = fresh
        .iter()
        .enumerate()
        .filter(|(i, item)| fresh.get(i + 1).is_none_or(|next| next.id != item.id))
        .map(|(_, item)| *item)
        .collect();
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
        .bool("quarantined", highest.iter().map(|i| i.is_quarantined()))
        .text("review_state", highest.iter().map(|i| arrival_state(i).as_str().to_owned()));
    // A new revision arrives with its own state; decisions about the one it replaces stay in
    // the review log.
    let tail = " ON CONFLICT (report_id) DO UPDATE SET revision = excluded.revision, \
         revision_seq = excluded.revision_seq, mission = excluded.mission, observer = excluded.observer, \
         station = excluded.station, kind = excluded.kind, observed_at_us = excluded.observed_at_us, \
         received_at_us = excluded.received_at_us, assessment = excluded.assessment, \
         incident_category = excluded.incident_category, incident_severity = excluded.incident_severity, \
         quarantined = excluded.quarantined, review_state = excluded.review_state, decision = NULL \
         WHERE reports.revision < excluded.revision RETURNING report_id";
    let mut promoted: HashSet<String> = HashSet::new();
    for sql in rows.insert(backend, "reports", tail) {
        for row in sql.fetch_all_in(tx).await? {
            promoted.insert(row.try_get(0)?);
        }
    }
    Ok(promoted)
}

/// How every revision in this store arrives: through the broker.
const CHANNEL: &str = "amqp";

/// The state a revision arrives with: held when validation flagged it, else accepted.
fn arrival_state(item: &Item<'_>) -> ReviewState {
    if item.is_quarantined() { ReviewState::Held } else { ReviewState::Accepted }
}

/// What the phases of [`Store::ingest_batch`] found out, from which every outcome follows.
struct Found<'i> {
    /// Revisions set aside by [`split_foreign`].
    foreign: HashSet<(&'i str, i64)>,
    /// By position in the batch: the sequence number of each revision recorded now.
    seqs: Vec<Option<i64>>,
    /// The content hashes of revisions the store had recorded before.
    recorded: HashMap<(String, i64), Vec<String>>,
    /// The rows that were current before the batch.
    current: HashMap<String, CurrentRow>,
    /// The reports the batch made current.
    promoted: HashSet<String>,
}

/// Each report's [`outcome`], in batch order. `items` is in write order, so each copy of an
/// (id, revision) follows its first, and each report's revisions come lowest first.
fn judge(items: &[Item<'_>], found: &Found<'_>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    // Per report made current: the revision current before the next of its new revisions.
    let mut before: HashMap<&str, Option<i64>> = HashMap::new();
    let mut first: Option<&Item<'_>> = None;
    for item in items {
        let repeat = first.is_some_and(|f| f.key() == item.key());
        if !repeat {
            first = Some(item);
        }
        let first = first.expect("the first copy comes first");
        let held = if found.foreign.contains(&first.key()) {
            Held::Foreign
        } else if found.seqs[first.index].is_none() {
            // The insert found this revision recorded, so the store holds its hash.
            Held::Recorded(&found.recorded[&(first.id.clone(), first.revision)])
        } else if repeat {
            Held::Recorded(std::slice::from_ref(&first.hash))
        } else if !found.promoted.contains(&item.id) {
            Held::Superseded
        } else {
            let current = before
                .entry(item.id.as_str())
                .or_insert_with(|| found.current.get(&item.id).map(|row| row.revision));
            let held = Held::New { current: *current };
            *current = (*current).max(Some(item.revision));
            held
        };
        outcomes[item.index] = Some(outcome(item.revision, &item.hash, item.is_quarantined(), held));
    }
    outcomes.into_iter().map(|o| o.expect("every report has an outcome")).collect()
}

/// Keeps every conflicting version beside the audit trail (once per distinct content); returns
/// those kept now, in write order.
async fn insert_conflicts<'i, 'b>(
    tx: &mut Tx,
    backend: Backend,
    items: &'i [Item<'b>],
    outcomes: &[Outcome],
) -> Result<Vec<&'i Item<'b>>, StoreError> {
    let mut conflicts: Vec<&Item<'_>> =
        items.iter().filter(|item| outcomes[item.index] == Outcome::Conflict).collect();
    // The same global order as every other write, so that two workers cannot deadlock here.
    conflicts.sort_by(|a, b| (&a.id, a.revision, &a.hash).cmp(&(&b.id, b.revision, &b.hash)));
    for item in &conflicts {
        tracing::warn!(
            report_id = item.id,
            revision = item.revision,
            "a conflicting version of a report, kept aside"
        );
    }
    let rows = Rows::default()
        .text("report_id", conflicts.iter().map(|i| i.id.clone()))
        .int("revision", conflicts.iter().map(|i| i.revision))
        .text("content_hash", conflicts.iter().map(|i| i.hash.clone()))
        .text("payload", conflicts.iter().map(|i| i.incoming.payload.clone()))
        .optional_text("sender", conflicts.iter().map(|i| i.incoming.delivery.sender.clone()))
        .int("received_at_us", conflicts.iter().map(|i| i.incoming.delivery.received_at.timestamp_micros()));
    let tail = " ON CONFLICT (report_id, revision, content_hash) DO NOTHING RETURNING report_id, revision, content_hash";
    let mut inserted: HashSet<(String, i64, String)> = HashSet::new();
    for sql in rows.insert(backend, "conflicts", tail) {
        for row in sql.fetch_all_in(tx).await? {
            inserted.insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
    }
    // Two copies of one conflicting version in a batch are inserted once.
    conflicts.dedup_by(|a, b| (&a.id, a.revision, &a.hash) == (&b.id, b.revision, &b.hash));
    conflicts.retain(|item| inserted.contains(&(item.id.clone(), item.revision, item.hash.clone())));
    Ok(conflicts)
}

/// The audit chain's entries for what the batch stored: its new revisions in seq order, then the
/// conflicting versions it kept.
fn chain_entries(fresh: &[&Item<'_>], seqs: &[Option<i64>], kept: &[&Item<'_>]) -> Vec<audit::Pending> {
    let mut revisions: Vec<(i64, &Item<'_>)> =
        fresh.iter().map(|item| (seqs[item.index].expect("a fresh revision has a seq"), *item)).collect();
    revisions.sort_by_key(|(seq, _)| *seq);
    let received = |item: &Item<'_>| item.incoming.delivery.received_at.timestamp_micros();
    let mut entries: Vec<audit::Pending> = revisions
        .iter()
        .map(|(seq, item)| {
            let entry = RevisionEntry {
                kind: "revision",
                seq: *seq,
                report_id: &item.id,
                revision: item.revision,
                channel: CHANNEL,
                sender: item.incoming.delivery.sender.as_deref(),
                received_at_us: received(item),
                payload_sha256: item.incoming.payload_sha256.clone(),
            };
            (Some(*seq), entry_text(&entry))
        })
        .collect();
    entries.extend(kept.iter().map(|item| {
        let entry = ConflictEntry::new(
            &item.id,
            item.revision,
            &item.hash,
            item.incoming.delivery.sender.as_deref(),
            received(item),
            &item.incoming.payload,
        );
        (None, entry_text(&entry))
    }));
    entries
}

/// Stores `incoming` as version `variant` of a revision the store holds (one kept aside that a
/// reviewer picked to count), with its flags, answers and protocols, as the batch that received
/// it would have; returns its seq and its chain entry, or `None` if another transaction stored
/// that variant first.
async fn store_variant(
    tx: &mut Tx,
    backend: Backend,
    incoming: &Incoming,
    variant: i64,
) -> Result<Option<(i64, audit::Pending)>, StoreError> {
    let item = Item::new(0, incoming);
    let seqs = insert_revisions(tx, backend, &[&item], 1, Some(variant)).await?;
    let Some(seq) = seqs[0] else { return Ok(None) };
    write_derived(tx, backend, &[&item], &seqs).await?;
    let entry = chain_entries(&[&item], &seqs, &[]).pop().expect("a revision has an entry");
    Ok(Some((seq, entry)))
}

/// Makes `incoming`, a version of a report's current revision that a reviewer picked, count
/// instead of the version in force (`replaced`, the seq the reviewer saw): stores it as version
/// `variant` ([`store_variant`]), points the report at it in `state` as review action `decision`
/// set, and moves SQLite's summaries as a new revision would. Returns the new revision's chain
/// entry, or `None` if the report no longer has `replaced` in force (the caller must then roll
/// back: a version may have been written).
pub(crate) async fn put_in_force(
    tx: &mut Tx,
    backend: Backend,
    incoming: &Incoming,
    variant: i64,
    replaced: i64,
    (state, decision): (ReviewState, i64),
) -> Result<Option<audit::Pending>, StoreError> {
    let item = Item::new(0, incoming);
    let current = current_rows(tx, backend, &[&item]).await?;
    if current.get(&item.id).is_none_or(|row| row.revision_seq != replaced) {
        return Ok(None);
    }
    let Some((seq, entry)) = store_variant(tx, backend, incoming, variant).await? else { return Ok(None) };
    let report = &incoming.report;
    let mut sql = Sql::new(backend, "UPDATE reports SET revision_seq = ");
    sql.bind(seq).push(", station = ").bind(report.station.clone());
    sql.push(", observed_at_us = ").bind(report.observed_at.timestamp_micros());
    sql.push(", received_at_us = ").bind(incoming.delivery.received_at.timestamp_micros());
    sql.push(", assessment = ").bind(report.assessment.map(|a| a.as_str().to_owned()));
    sql.push(", incident_category = ").bind(incident(&item).map(|b| b.category.as_str().to_owned()));
    sql.push(", incident_severity = ").bind(incident(&item).map(|b| b.severity.as_str().to_owned()));
    sql.push(", quarantined = ").bind(state != ReviewState::Accepted);
    sql.push(", review_state = ").bind(state.as_str().to_owned()).push(", decision = ").bind(decision);
    sql.push(" WHERE report_id = ").bind(item.id.clone()).push(" AND revision_seq = ").bind(replaced);
    sql.push(" RETURNING report_id");
    if sql.fetch_all_in(tx).await?.is_empty() {
        return Ok(None);
    }
    let promoted = HashSet::from([item.id.clone()]);
    update_summaries(tx, backend, &[&item], &current, &promoted).await?;
    Ok(Some(entry))
}

/// The one writer of SQLite's summary tables, which stand in for scattered indexes and
/// repeated scans there: how many current reports each station has of each kind (migration
/// 0002, read by [`Store::coverage`]), when each observer last sent anything (0002, read by
/// [`Store::silent_observers`]), and the findings' answer and assessment counts (0004, read by
/// [`Store::answer_counts`] and [`Store::assessment_counts`]). One statement each per batch, and
/// two reads for the findings. Exact because SQLite runs one writing transaction at a time, and
/// this one read the rows it replaces (`current`) itself: had another committed since, SQLite
/// would have refused this transaction's first write.
///
/// PostgreSQL has no summary tables: it logs row changes rather than pages, and keeps the plain
/// indexes those queries read instead.
async fn update_summaries(
    tx: &mut Tx,
    backend: Backend,
    fresh: &[&Item<'_>],
    current: &HashMap<String, CurrentRow>,
    promoted: &HashSet<String>,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        return Ok(());
    }
    // `fresh` is sorted by (id, revision): the last of each report's revisions is the one promoted.
    let changes: Vec<(&Item<'_>, Option<&CurrentRow>)> = fresh
        .iter()
        .enumerate()
        .filter(|(i, item)| {
            fresh.get(i + 1).is_none_or(|next| next.id != item.id) && promoted.contains(&item.id)
        })
        .map(|(_, item)| (*item, current.get(&item.id)))
        .collect();
    update_coverage(tx, &changes).await?;
    update_activity(tx, fresh).await?;
    update_finding_tallies(tx, &changes).await
}

/// Moves each report the batch made current (`changes`, with the row it replaced) to its
/// station and kind in `station_coverage`.
async fn update_coverage(
    tx: &mut Tx,
    changes: &[(&Item<'_>, Option<&CurrentRow>)],
) -> Result<(), StoreError> {
    let mut coverage: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for (item, old) in changes {
        let report = &item.incoming.report;
        if let Some(old) = old {
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
    Ok(())
}

/// Keeps each observer's latest receipt in `observer_activity`.
async fn update_activity(tx: &mut Tx, fresh: &[&Item<'_>]) -> Result<(), StoreError> {
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

/// Adds the answers and assessment of each report the batch made current to SQLite's finding
/// tallies, and takes away those of the row it replaced; quarantined reports, and reports from
/// stations the roster does not hold, count for nothing (as in the queries PostgreSQL runs).
async fn update_finding_tallies(
    tx: &mut Tx,
    changes: &[(&Item<'_>, Option<&CurrentRow>)],
) -> Result<(), StoreError> {
    let replaced: Vec<&CurrentRow> =
        changes.iter().filter_map(|(_, old)| *old).filter(|old| !old.quarantined).collect();
    let old_answers = findings::answers_of(tx, replaced.iter().map(|old| old.revision_seq).collect()).await?;
    let mut stations: BTreeSet<(&str, &str)> =
        replaced.iter().map(|old| (old.mission.as_str(), old.station.as_str())).collect();
    for (item, _) in changes.iter().filter(|(item, _)| !item.is_quarantined()) {
        stations.insert((&item.incoming.report.mission, &item.incoming.report.station));
    }
    let regions = station_regions(tx, &stations).await?;
    let region = |mission: &str, station: &str| regions.get(&(mission.to_owned(), station.to_owned()));

    let mut tally = Tally::default();
    let none = findings::Given::new();
    for old in &replaced {
        if let Some(region) = region(&old.mission, &old.station) {
            let given = old_answers.get(&old.revision_seq).unwrap_or(&none);
            tally.count((&old.mission, &old.kind, region), old.assessment.as_deref(), given, -1);
        }
    }
    for (item, _) in changes.iter().filter(|(item, _)| !item.is_quarantined()) {
        let report = &item.incoming.report;
        if let Some(region) = region(&report.mission, &report.station) {
            let assessment = report.assessment.map(|a| a.as_str());
            let given = findings::given(report);
            tally.count((&report.mission, report.kind().as_str(), region), assessment, &given, 1);
        }
    }
    tally.write(tx).await
}

/// The region of each of `stations` (mission, station code) that the roster holds (SQLite).
async fn station_regions(
    tx: &mut Tx,
    stations: &BTreeSet<(&str, &str)>,
) -> Result<HashMap<(String, String), String>, StoreError> {
    let mut by_mission: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (mission, station) in stations {
        by_mission.entry(mission).or_default().push((*station).to_owned());
    }
    let mut regions = HashMap::new();
    for (mission, codes) in by_mission {
        for chunk in codes.chunks(rows_per_statement(1)) {
            let mut sql = Sql::new(Backend::Sqlite, "SELECT code, region FROM stations WHERE mission_id = ");
            sql.bind(mission.to_owned()).push(" AND code");
            sql.bind_in(chunk.to_vec());
            for row in sql.fetch_all_in(tx).await? {
                regions.insert((mission.to_owned(), row.try_get(0)?), row.try_get(1)?);
            }
        }
    }
    Ok(regions)
}

/// The incident a report describes, if it is an incident report.
fn incident<'a>(item: &Item<'a>) -> Option<&'a IncidentBody> {
    match &item.incoming.report.content {
        Content::Incident(body) => Some(body),
        _ => None,
    }
}

/// Flags, checklist answers and counting protocols of the revisions the store has just recorded.
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

    // SQLite keeps counts of the answers instead (see `findings`).
    if backend == Backend::Postgres {
        let answers: Vec<(&Item<'_>, String, Option<String>)> = items
            .iter()
            .flat_map(|item| {
                findings::given(&item.incoming.report).into_iter().map(move |(q, a)| (*item, q, a))
            })
            .collect();
        let rows = Rows::default()
            .int("revision_seq", answers.iter().map(|(item, ..)| seq(item)))
            .text("question", answers.iter().map(|(_, question, _)| question.clone()))
            .optional_text("answer", answers.iter().map(|(.., answer)| answer.clone()));
        for sql in rows.insert(backend, "report_answers", "") {
            sql.execute_in(tx).await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081";
    const OTHER_HASH: &str = "60303ae2";

    #[test]
    fn a_new_report_is_stored_and_a_higher_revision_revises_it() {
        assert_eq!(outcome(1, HASH, false, Held::New { current: None }), Outcome::Stored);
        assert_eq!(outcome(2, HASH, false, Held::New { current: Some(1) }), Outcome::Revised);
    }

    #[test]
    fn older_revision_never_replaces_newer() {
        assert_eq!(outcome(2, HASH, false, Held::New { current: Some(3) }), Outcome::Stale);
        assert_eq!(outcome(2, HASH, false, Held::Superseded), Outcome::Stale);
    }

    fn recorded(hashes: &[&str]) -> Vec<String> {
        hashes.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn the_same_revision_again_is_a_duplicate_only_with_the_same_content() {
        assert_eq!(outcome(1, HASH, false, Held::Recorded(&recorded(&[HASH]))), Outcome::Duplicate);
        assert_eq!(outcome(1, HASH, false, Held::Recorded(&recorded(&[OTHER_HASH]))), Outcome::Conflict);
    }

    #[test]
    fn a_version_a_reviewer_picked_is_a_duplicate_when_it_comes_again() {
        let both = recorded(&[OTHER_HASH, HASH]);
        assert_eq!(outcome(1, HASH, false, Held::Recorded(&both)), Outcome::Duplicate);
        assert_eq!(outcome(1, OTHER_HASH, false, Held::Recorded(&both)), Outcome::Duplicate);
        assert_eq!(outcome(1, "a third", false, Held::Recorded(&both)), Outcome::Conflict);
    }

    #[test]
    fn a_revision_from_another_observer_or_of_another_kind_is_a_conflict_whatever_its_revision() {
        assert_eq!(outcome(1, HASH, false, Held::Foreign), Outcome::Conflict);
        assert_eq!(outcome(9, HASH, true, Held::Foreign), Outcome::Conflict);
    }

    #[test]
    fn a_flagged_revision_that_becomes_current_is_quarantined_and_otherwise_keeps_its_outcome() {
        assert_eq!(outcome(1, HASH, true, Held::New { current: None }), Outcome::Quarantined);
        assert_eq!(outcome(2, HASH, true, Held::New { current: Some(1) }), Outcome::Quarantined);
        assert_eq!(outcome(1, HASH, true, Held::New { current: Some(2) }), Outcome::Stale);
        assert_eq!(outcome(1, HASH, true, Held::Superseded), Outcome::Stale);
        assert_eq!(outcome(1, HASH, true, Held::Recorded(&recorded(&[HASH]))), Outcome::Duplicate);
        assert_eq!(outcome(1, HASH, true, Held::Recorded(&recorded(&[OTHER_HASH]))), Outcome::Conflict);
    }
}
