//! The audit chain: every revision stored, every conflicting version kept and every review action
//! is an entry whose hash covers its text and the previous entry's hash, so that changing,
//! removing or reordering anything stored afterwards shows.
//!
//! An entry is a line of JSON (the fields of [`RevisionEntry`], [`ConflictEntry`] or
//! [`ReviewEntry`]) kept with its hash: `hash = hex(SHA-256(previous hash, "\n", entry))`, the
//! previous hash of the first entry being 64 zeros. Entries are appended by the transaction that
//! stores what they describe, in the order those transactions commit: on SQLite one writer at a
//! time, on PostgreSQL under a transaction-scoped advisory lock taken just before the append, so
//! that concurrent workers make one chain. [`Store::verify_audit`] recomputes every hash and
//! rebuilds every entry from the rows it describes. docs/review.md states the format for anyone
//! who checks an export without this code.

use std::collections::HashSet;

use futures_core::Stream;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::db::{Sql, rows_per_statement};
use crate::segments::{CHAIN_LOCK, SEGMENT_SELECT, Segment, revision_texts};
use crate::{Backend, Store, StoreError};

/// How a conflict entry's text begins.
const CONFLICT_PREFIX: &str = "{\"type\":\"conflict\"";

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Entries read per page while verifying or exporting (in whole segments).
const VERIFY_PAGE: i64 = 2_000;

/// Lower-case hexadecimal of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// The hash of the entry after `previous`, in hexadecimal.
pub fn chain_hash(previous: &str, entry: &str) -> String {
    hex(&chain_digest(previous, entry))
}

/// [`chain_hash`] as bytes.
pub(crate) fn chain_digest(previous: &str, entry: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(entry.as_bytes());
    hasher.finalize().into()
}

/// A revision stored in `report_revisions`.
#[derive(Debug, Serialize)]
pub(crate) struct RevisionEntry<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) seq: i64,
    pub(crate) report_id: &'a str,
    pub(crate) revision: i64,
    pub(crate) channel: &'a str,
    pub(crate) sender: Option<&'a str>,
    pub(crate) received_at_us: i64,
    /// Hex SHA-256 of the payload exactly as received.
    pub(crate) payload_sha256: String,
}

impl<'a> RevisionEntry<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        seq: i64,
        report_id: &'a str,
        revision: i64,
        channel: &'a str,
        sender: Option<&'a str>,
        received_at_us: i64,
        payload: &str,
    ) -> Self {
        let payload_sha256 = payload_sha256(payload);
        Self { kind: "revision", seq, report_id, revision, channel, sender, received_at_us, payload_sha256 }
    }
}

/// Hex SHA-256 of a payload, as a revision's entry records it.
pub(crate) fn payload_sha256(payload: &str) -> String {
    hex(&Sha256::digest(payload.as_bytes()))
}

/// Another version of a revision, kept in `conflicts`.
#[derive(Debug, Serialize)]
pub(crate) struct ConflictEntry<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) report_id: &'a str,
    pub(crate) revision: i64,
    pub(crate) content_hash: &'a str,
    pub(crate) sender: Option<&'a str>,
    pub(crate) received_at_us: i64,
    pub(crate) payload_sha256: String,
}

impl<'a> ConflictEntry<'a> {
    pub(crate) fn new(
        report_id: &'a str,
        revision: i64,
        content_hash: &'a str,
        sender: Option<&'a str>,
        received_at_us: i64,
        payload: &str,
    ) -> Self {
        let payload_sha256 = hex(&Sha256::digest(payload.as_bytes()));
        Self { kind: "conflict", report_id, revision, content_hash, sender, received_at_us, payload_sha256 }
    }
}

/// One row of `review_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ReviewEntry {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) id: i64,
    pub(crate) mission: String,
    pub(crate) action: String,
    pub(crate) report_id: Option<String>,
    pub(crate) revision: Option<i64>,
    pub(crate) station: Option<String>,
    pub(crate) contest: Option<String>,
    pub(crate) chosen: Option<String>,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: Option<String>,
    pub(crate) reviewer: String,
    pub(crate) reason: String,
    pub(crate) at_us: i64,
}

/// The text of an entry.
pub(crate) fn entry_text(entry: &impl Serialize) -> String {
    serde_json::to_string(entry).expect("an entry serialises")
}

/// The columns of `review_log` in [`ReviewEntry`] order, for [`review_entry`].
pub(crate) const REVIEW_SELECT: &str = "SELECT id, mission, action, report_id, revision, station, contest, chosen, \
     from_state, to_state, reviewer, reason, at_us FROM review_log";

pub(crate) fn review_entry(row: &crate::db::Row) -> Result<ReviewEntry, StoreError> {
    review_entry_at(row, 0)
}

/// [`review_entry`] of the columns of [`REVIEW_SELECT`] from column `from` on.
pub(crate) fn review_entry_at(row: &crate::db::Row, from: usize) -> Result<ReviewEntry, StoreError> {
    Ok(ReviewEntry {
        kind: "review",
        id: row.try_get(from)?,
        mission: row.try_get(from + 1)?,
        action: row.try_get(from + 2)?,
        report_id: row.try_get(from + 3)?,
        revision: row.try_get(from + 4)?,
        station: row.try_get(from + 5)?,
        contest: row.try_get(from + 6)?,
        chosen: row.try_get(from + 7)?,
        from_state: row.try_get(from + 8)?,
        to_state: row.try_get(from + 9)?,
        reviewer: row.try_get(from + 10)?,
        reason: row.try_get(from + 11)?,
        at_us: row.try_get(from + 12)?,
    })
}

/// An entry to append: the seq of the revision it records, if it records one, and its text.
pub(crate) type Pending = (Option<i64>, String);

pub(crate) use crate::segments::append;

/// The chain's last entry: what a mission publishes so that an export can be checked later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub entries: i64,
    /// The last entry's hash ([`GENESIS`] for an empty chain).
    pub hash: String,
}

/// One entry of the chain, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub position: i64,
    pub hash: String,
    /// The exact text hashed.
    pub entry: String,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub entries: i64,
    pub head: AuditHead,
    /// The first thing that does not match, if any.
    pub failure: Option<Mismatch>,
}

/// The first entry (or stored row) that does not match the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The entry's position; `None` for rows the chain has no entry for.
    pub position: Option<i64>,
    pub reason: String,
}

/// What a verification has seen so far, for a progress bar.
pub trait Progress {
    fn total(&self, entries: i64);
    fn checked(&self, entries: i64);
}

impl Progress for () {
    fn total(&self, _: i64) {}
    fn checked(&self, _: i64) {}
}

impl Store {
    /// The chain's head: its number of entries and its last hash.
    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let sql = Sql::new(
            self.backend,
            "SELECT last_position, last_hash FROM audit_segments ORDER BY last_position DESC LIMIT 1",
        );
        Ok(match sql.fetch_all(&self.pool).await?.first() {
            Some(row) => AuditHead { entries: row.try_get(0)?, hash: row.try_get(1)? },
            None => AuditHead { entries: 0, hash: GENESIS.to_owned() },
        })
    }

    /// The positions of the chain's entries above `after` that record a conflicting version
    /// kept, lowest first, and the chain's last position they were looked for up to (for the
    /// change feed: a conflict is no revision and no review action). Positions are taken in
    /// commit order (under a lock on PostgreSQL), so none commits below one already read.
    pub async fn conflict_marks_after(&self, after: i64) -> Result<(Vec<i64>, i64), StoreError> {
        let head = self.audit_head().await?.entries;
        if head <= after {
            return Ok((Vec::new(), head.max(after)));
        }
        let mut sql =
            Sql::new(self.backend, &format!("{SEGMENT_SELECT} WHERE texts IS NOT NULL AND last_position > "));
        sql.bind(after).push(" AND last_position <= ").bind(head).push(" ORDER BY last_position");
        let mut marks = Vec::new();
        for row in sql.fetch_all(&self.pool).await? {
            let Ok(segment) = Segment::read(&row, 0)? else { continue };
            marks.extend(
                segment
                    .entries()
                    .filter(|e| e.position > after && e.text.is_some_and(|t| t.starts_with(CONFLICT_PREFIX)))
                    .map(|e| e.position),
            );
        }
        Ok((marks, head))
    }

    /// Every entry of the chain, in order, as a stream, a page of segments at a time; a
    /// revision's text rebuilt from its row (empty if the row is gone, which no check then
    /// passes). A segment that does not hold together ends the stream with an error.
    pub fn audit_entries(&self) -> impl Stream<Item = Result<AuditEntry, StoreError>> + Send + '_ {
        futures_util::stream::try_unfold(0_i64, move |after| async move {
            let segments = self
                .segments_after(after, i64::MAX, VERIFY_PAGE)
                .await?
                .into_iter()
                .map(|segment| {
                    segment.map_err(|(position, reason)| {
                        StoreError::Permanent(format!("the audit chain at entry {position}: {reason}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Each segment must start where the one before ended: a gap or an overlap ends the
            // export with an error (`audit verify` names the entry).
            let mut expected = after + 1;
            for segment in &segments {
                if segment.first != expected {
                    return Err(StoreError::Permanent(format!(
                        "the audit chain has no entry {expected} where it should (a segment starts at {}): \
                         `pollwatch audit verify` says more",
                        segment.first
                    )));
                }
                expected = segment.last() + 1;
            }
            let Some(last) = segments.last().map(Segment::last) else {
                let head = self.audit_head().await?.entries;
                if head > after {
                    return Err(StoreError::Permanent(format!(
                        "the audit chain has no entry {} but goes on to {head}: `pollwatch audit verify` says more",
                        after + 1
                    )));
                }
                return Ok(None);
            };
            let seqs = segments.iter().flat_map(|s| s.seqs.iter().flatten().copied()).collect();
            let texts = revision_texts(self, seqs).await?;
            let mut entries = Vec::new();
            for segment in &segments {
                for entry in segment.entries() {
                    let text = match (entry.text, entry.seq) {
                        (Some(text), _) => text.to_owned(),
                        (None, Some(seq)) => texts.get(&seq).cloned().unwrap_or_default(),
                        (None, None) => String::new(),
                    };
                    entries.push(Ok(AuditEntry {
                        position: entry.position,
                        hash: hex(entry.hash),
                        entry: text,
                    }));
                }
            }
            Ok(Some((futures_util::stream::iter(entries), last)))
        })
        .try_flatten()
    }

    /// Recomputes the chain and rebuilds each entry from the rows it describes: the first entry
    /// whose hash does not follow, whose row is gone or differs, or whose counting protocols no
    /// longer say what its payload says, or a stored row that has no entry, or a review state or
    /// settlement the review log does not give (`derived.rs`), is the failure. Reads a page of
    /// entries at a time.
    pub async fn verify_audit(&self, progress: &impl Progress) -> Result<Verification, StoreError> {
        let head = self.audit_head().await?;
        progress.total(head.entries);
        let mut previous = GENESIS.to_owned();
        let mut expected_position = 0_i64;
        let mut seen = Seen::default();
        let fail = |position: i64, reason: String| {
            Ok(Verification {
                entries: position,
                head: head.clone(),
                failure: Some(Mismatch { position: Some(position), reason }),
            })
        };
        loop {
            // Up to the head read first: entries appended meanwhile are the next verification's.
            let segments = self.segments_after(expected_position, head.entries, VERIFY_PAGE).await?;
            if segments.is_empty() {
                break;
            }
            let seqs = segments.iter().flatten().flat_map(|s| s.seqs.iter().flatten().copied()).collect();
            let texts = revision_texts(self, seqs).await?;
            // The entries up to the first that is out of place or whose hash does not follow;
            // rebuilt first, so that the failure named is the first in the chain's order.
            let mut page = Vec::new();
            let mut page_seqs = Vec::new();
            let mut broken = None;
            'segments: for segment in &segments {
                let segment = match segment {
                    Ok(segment) if segment.first == expected_position + 1 => segment,
                    Ok(_) => {
                        broken = Some((
                            expected_position + 1,
                            format!("entry {} is missing", expected_position + 1),
                        ));
                        break;
                    }
                    Err((_, reason)) => {
                        // Named at the position the chain has reached, wherever the row says it starts.
                        broken = Some((expected_position + 1, reason.clone()));
                        break;
                    }
                };
                for stored in segment.entries() {
                    expected_position += 1;
                    let (entry, rebuilt) = match (stored.text, stored.seq) {
                        (Some(text), _) => (text.to_owned(), false),
                        (None, Some(seq)) => match texts.get(&seq) {
                            Some(text) => (text.clone(), true),
                            None => {
                                let reason =
                                    format!("it records revision {seq}, which is gone from the store");
                                broken = Some((stored.position, reason));
                                break 'segments;
                            }
                        },
                        (None, None) => unreachable!("an entry has a seq or a text"),
                    };
                    page_seqs.push((stored.position, stored.seq));
                    if chain_digest(&previous, &entry) != *stored.hash {
                        let reason = if rebuilt {
                            format!(
                                "its hash does not follow from the previous hash and the entry rebuilt from revision {}: \
                                 the revision (its payload, sender or time) or the chain was changed",
                                stored.seq.unwrap_or_default()
                            )
                        } else {
                            "its hash does not follow from the previous hash and its text: the entry was changed"
                                .to_owned()
                        };
                        broken = Some((stored.position, reason));
                        break 'segments;
                    }
                    previous = hex(stored.hash);
                    page.push((stored.position, entry));
                }
            }
            if let Some((position, reason)) = self.rebuild_page(&page, &page_seqs, &mut seen).await? {
                return fail(position, reason);
            }
            if let Some((position, reason)) = broken {
                return fail(position, reason);
            }
            progress.checked(expected_position);
        }
        if expected_position != head.entries {
            return fail(expected_position + 1, format!("entry {} is missing", expected_position + 1));
        }
        // Rows stored after the head was read have entries after it: a head that moved means the
        // store was written meanwhile, and the counts cannot be compared (verify a quiet store).
        let unchained = if self.audit_head().await? == head {
            match self.unchained(&seen).await? {
                Some(reason) => Some(reason),
                None => self.state_differs().await?,
            }
        } else {
            tracing::warn!(
                "the store was written during verification: rows without an entry were not looked for"
            );
            None
        };
        Ok(Verification {
            entries: expected_position,
            head,
            failure: unchained.map(|reason| Mismatch { position: None, reason }),
        })
    }

    /// Rebuilds each entry of `page` from the rows it describes; the first that differs, with why.
    async fn rebuild_page(
        &self,
        page: &[(i64, String)],
        page_seqs: &[(i64, Option<i64>)],
        seen: &mut Seen,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let mut revisions = Vec::new();
        let mut conflicts = Vec::new();
        let mut reviews = Vec::new();
        for (position, entry) in page {
            let fields: serde_json::Value = serde_json::from_str(entry)
                .map_err(|e| StoreError::Permanent(format!("audit entry {position} is not JSON: {e}")))?;
            let number = |name: &str| fields.get(name).and_then(serde_json::Value::as_i64);
            let text = |name: &str| fields.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
            // The column the export joins by must say what the entry says.
            let recorded = page_seqs.iter().find(|(p, _)| p == position).and_then(|(_, seq)| *seq);
            let entry_seq = if text("type").as_deref() == Some("revision") { number("seq") } else { None };
            if recorded != entry_seq {
                return Ok(Some((
                    *position,
                    format!(
                        "the entry records revision {entry_seq:?}, but the chain's row points the export at {recorded:?}"
                    ),
                )));
            }
            match (text("type").as_deref(), number("seq"), number("id")) {
                (Some("revision"), Some(seq), _) => revisions.push((*position, seq)),
                (Some("review"), _, Some(id)) => reviews.push((*position, id)),
                (Some("conflict"), ..) => match (text("report_id"), number("revision"), text("content_hash"))
                {
                    (Some(id), Some(revision), Some(hash)) => {
                        conflicts.push((*position, (id, revision, hash)));
                    }
                    _ => return Ok(Some((*position, "a conflict entry without its key".to_owned()))),
                },
                _ => return Ok(Some((*position, "an entry of no known type".to_owned()))),
            }
        }
        let mut rebuilt: Vec<(i64, Option<String>)> = Vec::with_capacity(page.len());
        // A revision's text was rebuilt from its row to be hashed (`verify_audit`): it is what the
        // row says, and is not read again.
        let texts: std::collections::HashMap<i64, &String> = page.iter().map(|(p, e)| (*p, e)).collect();
        for (position, seq) in &revisions {
            if !seen.revisions.insert(*seq) {
                return Ok(Some((*position, format!("revision {seq} has a second entry"))));
            }
            rebuilt.push((*position, texts.get(position).map(|e| (*e).clone())));
        }
        let found = self.review_entries(reviews.iter().map(|(_, id)| *id).collect()).await?;
        for (position, id) in &reviews {
            if !seen.reviews.insert(*id) {
                return Ok(Some((*position, format!("review action {id} has a second entry"))));
            }
            rebuilt.push((*position, found.get(id).cloned()));
        }
        for (position, key) in conflicts {
            if !seen.conflicts.insert(key.clone()) {
                return Ok(Some((position, "a conflicting version with a second entry".to_owned())));
            }
            rebuilt.push((position, self.conflict_entry(&key).await?));
        }
        rebuilt.sort_by_key(|(position, _)| *position);
        for ((position, entry), (_, row)) in page.iter().zip(&rebuilt) {
            match row {
                None => return Ok(Some((*position, "what it records is gone from the store".to_owned()))),
                Some(row) if row != entry => {
                    return Ok(Some((
                        *position,
                        format!(
                            "the store no longer holds what it records: it records {entry}, the store now gives {row}"
                        ),
                    )));
                }
                Some(_) => {}
            }
        }
        self.protocols_differ(&revisions).await
    }

    /// The entry texts of the review actions `ids`, rebuilt from `review_log`, by id.
    async fn review_entries(
        &self,
        ids: Vec<i64>,
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let mut entries = std::collections::HashMap::new();
        for chunk in ids.chunks(rows_per_statement(1)) {
            let mut sql = Sql::new(self.backend, &format!("{REVIEW_SELECT} WHERE id"));
            sql.bind_in(chunk.to_vec());
            for row in sql.fetch_all(&self.pool).await? {
                let entry = review_entry(&row)?;
                entries.insert(entry.id, entry_text(&entry));
            }
        }
        Ok(entries)
    }

    /// The entry text of one conflicting version, rebuilt from `conflicts`.
    async fn conflict_entry(
        &self,
        (id, revision, hash): &(String, i64, String),
    ) -> Result<Option<String>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT sender, received_at_us, payload FROM conflicts WHERE report_id = ",
        );
        sql.bind(id.clone())
            .push(" AND revision = ")
            .bind(*revision)
            .push(" AND content_hash = ")
            .bind(hash.clone());
        let rows = sql.fetch_all(&self.pool).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let (sender, received, payload): (Option<String>, i64, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(Some(entry_text(&ConflictEntry::new(id, *revision, hash, sender.as_deref(), received, &payload))))
    }

    /// A stored row that the chain has no entry for (one added behind the chain's back), if any.
    async fn unchained(&self, seen: &Seen) -> Result<Option<String>, StoreError> {
        let counts = Sql::new(
            self.backend,
            "SELECT CAST((SELECT COUNT(*) FROM report_revisions) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM review_log) AS BIGINT), CAST((SELECT COUNT(*) FROM conflicts) AS BIGINT)",
        )
        .fetch_one(&self.pool)
        .await?;
        let (revisions, reviews, conflicts): (i64, i64, i64) =
            (counts.try_get(0)?, counts.try_get(1)?, counts.try_get(2)?);
        for (what, stored, chained) in [
            ("revisions", revisions, seen.revisions.len()),
            ("review actions", reviews, seen.reviews.len()),
            ("conflicting versions", conflicts, seen.conflicts.len()),
        ] {
            if stored != chained as i64 {
                return Ok(Some(format!(
                    "the store holds {stored} {what}, the chain has entries for {chained}"
                )));
            }
        }
        Ok(None)
    }

    /// Appends an entry for every revision stored before the chain existed (a store migrated from
    /// an earlier version), in seq order. Does nothing once the chain has entries.
    pub(crate) async fn start_chain(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            let mut sql = Sql::new(self.backend, "SELECT pg_advisory_xact_lock(");
            sql.bind(CHAIN_LOCK).push(")");
            sql.execute_in(&mut tx).await?;
        }
        let row = Sql::new(
            self.backend,
            "SELECT CAST((SELECT COUNT(*) FROM audit_segments) AS BIGINT), CAST((SELECT COUNT(*) FROM report_revisions) AS BIGINT)",
        )
        .fetch_all_in(&mut tx)
        .await?;
        let (chained, revisions): (i64, i64) = (row[0].try_get(0)?, row[0].try_get(1)?);
        if chained > 0 || revisions == 0 {
            return Ok(());
        }
        tracing::info!(revisions, "starting the audit chain over the revisions already stored");
        let mut after = 0_i64;
        loop {
            let mut sql = Sql::new(
                self.backend,
                "SELECT seq, report_id, revision, channel, sender, received_at_us, payload FROM report_revisions \
                 WHERE seq > ",
            );
            sql.bind(after).push(" ORDER BY seq LIMIT ").bind(VERIFY_PAGE);
            let rows = sql.fetch_all_in(&mut tx).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0)?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in &rows {
                let (seq, report_id, revision): (i64, String, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                let (channel, sender): (String, Option<String>) = (row.try_get(3)?, row.try_get(4)?);
                let (received, payload): (i64, String) = (row.try_get(5)?, row.try_get(6)?);
                entries.push((
                    Some(seq),
                    entry_text(&RevisionEntry::new(
                        seq,
                        &report_id,
                        revision,
                        &channel,
                        sender.as_deref(),
                        received,
                        &payload,
                    )),
                ));
            }
            append(&mut tx, self.backend, entries).await?;
        }
        let rows = Sql::new(
            self.backend,
            "SELECT report_id, revision, content_hash, sender, received_at_us, payload FROM conflicts \
             ORDER BY received_at_us, report_id, revision, content_hash",
        )
        .fetch_all_in(&mut tx)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let (id, revision, hash): (String, i64, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let (sender, received, payload): (Option<String>, i64, String) =
                (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
            let entry = ConflictEntry::new(&id, revision, &hash, sender.as_deref(), received, &payload);
            entries.push((None, entry_text(&entry)));
        }
        append(&mut tx, self.backend, entries).await?;
        tx.commit().await
    }
}

/// The entry text of the revision in `row` from column `from` on (seq, report id, revision,
/// channel, sender, received, payload); `None` when the row is absent (a NULL seq).
pub(crate) fn rebuilt_revision(row: &crate::db::Row, from: usize) -> Result<Option<String>, StoreError> {
    let Some(seq) = row.try_get::<Option<i64>>(from)? else { return Ok(None) };
    let (report_id, revision): (String, i64) = (row.try_get(from + 1)?, row.try_get(from + 2)?);
    let (channel, sender): (String, Option<String>) = (row.try_get(from + 3)?, row.try_get(from + 4)?);
    let (received, payload): (i64, String) = (row.try_get(from + 5)?, row.try_get(from + 6)?);
    let entry =
        RevisionEntry::new(seq, &report_id, revision, &channel, sender.as_deref(), received, &payload);
    Ok(Some(entry_text(&entry)))
}

/// What a verification has found entries for.
#[derive(Default)]
struct Seen {
    revisions: HashSet<i64>,
    reviews: HashSet<i64>,
    conflicts: HashSet<(String, i64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hash_covers_the_previous_hash_and_the_entry() {
        let first = chain_hash(GENESIS, "{\"a\":1}");
        assert_eq!(first.len(), 64);
        assert_ne!(first, chain_hash(GENESIS, "{\"a\":2}"));
        assert_ne!(chain_hash(&first, "{\"a\":1}"), first);
        let expected = hex(&Sha256::digest(format!("{GENESIS}\n{{\"a\":1}}").as_bytes()));
        assert_eq!(first, expected);
    }

    #[test]
    fn a_revision_entry_is_one_line_of_json_in_a_fixed_order() {
        let entry = RevisionEntry::new(7, "r-1", 2, "amqp", None, 1_000, "{}");
        assert_eq!(
            entry_text(&entry),
            "{\"type\":\"revision\",\"seq\":7,\"report_id\":\"r-1\",\"revision\":2,\"channel\":\"amqp\",\
             \"sender\":null,\"received_at_us\":1000,\
             \"payload_sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\"}"
        );
    }
}
