//! How the audit chain is stored: a row of `audit_segments` per run of consecutive entries that
//! one append wrote (a batch's, a review action's), not a row per entry. Each row keeps, per
//! entry, the seq of the revision it records or the entry's text, and the entry's 32-byte hash;
//! and the seqs' range, so that a revision's entry is found by seq through one index. A row per
//! entry made the chain a third of ingest's cost on PostgreSQL (docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap};

use crate::audit::{GENESIS, chain_digest, hex};
use crate::db::{Row, Sql, Tx, rows_per_statement};
use crate::{Backend, Store, StoreError};

/// The key of the advisory lock that serialises appends on PostgreSQL ("pwaudit" in ASCII).
pub(crate) const CHAIN_LOCK: i64 = 0x0070_7761_7564_6974;

/// The most entries a segment holds.
const SEGMENT_ENTRIES: usize = 4_096;

/// A segment's revision seqs lie within this span (`max_seq - min_seq < SEQ_SPAN`): the entry of
/// revision `s` is in a segment whose `min_seq` is in `(s - SEQ_SPAN, s]`.
pub(crate) const SEQ_SPAN: i64 = 4_096;

/// Consecutive entries of the chain, as one row stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) first: i64,
    /// Per entry: the revision it records, or `None` for an entry whose text is kept.
    pub(crate) seqs: Vec<Option<i64>>,
    /// The kept texts, one per `None` of `seqs`, in order.
    pub(crate) texts: Vec<String>,
    /// Per entry, its hash.
    pub(crate) hashes: Vec<[u8; 32]>,
}

/// One entry of a segment: its position, hash, and the revision it records or its text.
pub(crate) struct Stored<'a> {
    pub(crate) position: i64,
    pub(crate) hash: &'a [u8; 32],
    pub(crate) seq: Option<i64>,
    pub(crate) text: Option<&'a str>,
}

impl Segment {
    fn new(first: i64) -> Self {
        Self { first, seqs: Vec::new(), texts: Vec::new(), hashes: Vec::new() }
    }

    pub(crate) fn last(&self) -> i64 {
        self.first + self.seqs.len() as i64 - 1
    }

    /// The lowest and highest revision seq it records.
    fn seq_range(&self) -> Option<(i64, i64)> {
        let mut seqs = self.seqs.iter().flatten();
        let first = *seqs.next()?;
        Some(seqs.fold((first, first), |(low, high), &s| (low.min(s), high.max(s))))
    }

    /// Whether an entry recording `seq` can join it without breaking [`SEQ_SPAN`] or
    /// [`SEGMENT_ENTRIES`].
    fn takes(&self, seq: Option<i64>) -> bool {
        if self.seqs.len() >= SEGMENT_ENTRIES {
            return false;
        }
        match (seq, self.seq_range()) {
            (Some(seq), Some((low, high))) => seq.max(high) - seq.min(low) < SEQ_SPAN,
            _ => true,
        }
    }

    fn push(&mut self, seq: Option<i64>, text: String, hash: [u8; 32]) {
        self.seqs.push(seq);
        if seq.is_none() {
            self.texts.push(text);
        }
        self.hashes.push(hash);
    }

    /// Its entries in order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Stored<'_>> {
        let mut texts = self.texts.iter();
        self.seqs.iter().zip(&self.hashes).enumerate().map(move |(i, (seq, hash))| Stored {
            position: self.first + i as i64,
            hash,
            seq: *seq,
            text: if seq.is_none() { texts.next().map(String::as_str) } else { None },
        })
    }

    /// Reads a row of [`SEGMENT_SELECT`] from column `from` on; `Err` with what is wrong with
    /// a row that does not hold together (one changed by hand), and its first position.
    pub(crate) fn read(row: &Row, from: usize) -> Result<Result<Self, (i64, String)>, StoreError> {
        let (last, first): (i64, i64) = (row.try_get(from)?, row.try_get(from + 1)?);
        let (min_seq, max_seq): (Option<i64>, Option<i64>) = (row.try_get(from + 2)?, row.try_get(from + 3)?);
        let (last_hash, seqs): (String, String) = (row.try_get(from + 4)?, row.try_get(from + 5)?);
        let (texts, hashes): (Option<String>, Vec<u8>) = (row.try_get(from + 6)?, row.try_get(from + 7)?);
        Ok(Self::decode(first, &seqs, texts.as_deref(), &hashes)
            .and_then(|segment| {
                if segment.last() != last {
                    Err(format!("its segment says it ends at {last} but holds entries to {}", segment.last()))
                } else if segment.seq_range() != min_seq.zip(max_seq) {
                    Err(format!(
                        "its segment gives the seqs {min_seq:?} to {max_seq:?} but records {:?}",
                        segment.seq_range()
                    ))
                } else if segment.hashes.last().map(|h| hex(h)) != Some(last_hash) {
                    Err("its segment's last hash is not its last entry's".to_owned())
                } else {
                    Ok(segment)
                }
            })
            .map_err(|reason| (first, reason)))
    }

    fn decode(first: i64, seqs: &str, texts: Option<&str>, hashes: &[u8]) -> Result<Self, String> {
        let seqs: Vec<Option<i64>> = seqs
            .split(',')
            .map(|s| if s.is_empty() { Ok(None) } else { s.parse().map(Some) })
            .collect::<Result<_, _>>()
            .map_err(|_| "its segment's seqs are not numbers".to_owned())?;
        let texts: Vec<String> = match texts {
            Some(texts) => {
                serde_json::from_str(texts).map_err(|_| "its segment's texts are not a JSON list")?
            }
            None => Vec::new(),
        };
        if texts.len() != seqs.iter().filter(|s| s.is_none()).count() {
            return Err("its segment keeps a text for other than each entry without a seq".to_owned());
        }
        if hashes.len() != seqs.len() * 32 {
            return Err("its segment keeps other than one hash an entry".to_owned());
        }
        // What `append` never writes: more entries or a wider span of seqs than a segment holds
        // (a revision's entry would then not be found by its seq), or positions out of range.
        if seqs.len() > SEGMENT_ENTRIES {
            return Err(format!("its segment holds {} entries, more than {SEGMENT_ENTRIES}", seqs.len()));
        }
        if first < 1 || first.checked_add(seqs.len() as i64).is_none() {
            return Err(format!("its segment starts at position {first}"));
        }
        let segment = Self {
            first,
            seqs,
            texts,
            hashes: hashes.chunks_exact(32).map(|h| h.try_into().expect("32 bytes")).collect(),
        };
        if let Some((low, high)) = segment.seq_range()
            && high - low >= SEQ_SPAN
        {
            return Err(format!("its segment's seqs span {low} to {high}, more than {SEQ_SPAN} apart"));
        }
        Ok(segment)
    }

    async fn insert(&self, tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
        let seqs: Vec<String> =
            self.seqs.iter().map(|s| s.map(|s| s.to_string()).unwrap_or_default()).collect();
        let texts = (!self.texts.is_empty())
            .then(|| serde_json::to_string(&self.texts).expect("a list of strings serialises"));
        let range = self.seq_range();
        let mut sql = Sql::new(
            backend,
            "INSERT INTO audit_segments (last_position, first_position, min_seq, max_seq, last_hash, seqs, \
             texts, hashes) VALUES (",
        );
        sql.bind(self.last())
            .push(", ")
            .bind(self.first)
            .push(", ")
            .bind(range.map(|r| r.0))
            .push(", ")
            .bind(range.map(|r| r.1))
            .push(", ")
            .bind(hex(self.hashes.last().expect("a segment has entries")))
            .push(", ")
            .bind(seqs.join(","))
            .push(", ")
            .bind(texts)
            .push(", ")
            .bind(self.hashes.concat())
            .push(")");
        sql.execute_in(tx).await
    }
}

/// The columns [`Segment::read`] reads.
pub(crate) const SEGMENT_SELECT: &str = "SELECT last_position, first_position, min_seq, max_seq, last_hash, seqs, \
    texts, hashes FROM audit_segments";

/// Appends `entries` (each with the seq of the revision it records, if it records one, and its
/// text) to the chain, in `tx`, as one segment (more if they span more than [`SEQ_SPAN`] seqs).
/// On PostgreSQL this takes the chain's lock until `tx` ends: call it last, just before the
/// commit.
pub(crate) async fn append(
    tx: &mut Tx,
    backend: Backend,
    entries: Vec<(Option<i64>, String)>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (mut position, mut previous) = head_in(tx, backend).await?.unwrap_or((0, GENESIS.to_owned()));
    let mut segments = vec![Segment::new(position + 1)];
    for (seq, text) in entries {
        position += 1;
        let hash = chain_digest(&previous, &text);
        previous = hex(&hash);
        if !segments.last().expect("one segment at least").takes(seq) {
            segments.push(Segment::new(position));
        }
        segments.last_mut().expect("one segment at least").push(seq, text, hash);
    }
    for segment in &segments {
        segment.insert(tx, backend).await?;
    }
    Ok(())
}

/// The chain's last position and hash, read in `tx`; on PostgreSQL after taking the chain's lock
/// (held until `tx` ends), in one round trip: the two statements of one simple query, each with
/// its own snapshot, so that the head read is the one the last holder of the lock committed.
async fn head_in(tx: &mut Tx, backend: Backend) -> Result<Option<(i64, String)>, StoreError> {
    const HEAD: &str =
        "SELECT last_position, last_hash FROM audit_segments ORDER BY last_position DESC LIMIT 1";
    match tx {
        Tx::Postgres(tx) => {
            let both = format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK}); {HEAD}");
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(both)).fetch_all(&mut **tx).await?;
            // The lock's row has one column (void); the head's, if the chain has one, two.
            rows.iter()
                .find(|row| sqlx::Row::len(*row) == 2)
                .map(|row| Ok((sqlx::Row::try_get(row, 0)?, sqlx::Row::try_get(row, 1)?)))
                .transpose()
        }
        Tx::Sqlite(_) => {
            let rows = Sql::new(backend, HEAD).fetch_all_in(tx).await?;
            rows.first().map(|row| Ok((row.try_get::<i64>(0)?, row.try_get::<String>(1)?))).transpose()
        }
    }
}

impl Store {
    /// The segments up to `upto` that start within `entries` positions after `after`, in
    /// order, each read or what is wrong with it. A range of the primary key: a segment holds at
    /// most [`SEGMENT_ENTRIES`], so those end within that many more. None when the next position
    /// is in no segment (a gap, or a segment made longer by hand), which a caller tells from the
    /// chain's head.
    pub(crate) async fn segments_after(
        &self,
        after: i64,
        upto: i64,
        entries: i64,
    ) -> Result<Vec<Result<Segment, (i64, String)>>, StoreError> {
        let starts_by = after.saturating_add(entries.max(1));
        let ends_by = upto.min(starts_by.saturating_add(SEGMENT_ENTRIES as i64 - 1));
        let mut sql = Sql::new(self.backend, &format!("{SEGMENT_SELECT} WHERE last_position > "));
        sql.bind(after).push(" AND last_position <= ").bind(ends_by);
        sql.push(" AND first_position <= ").bind(starts_by).push(" ORDER BY last_position");
        sql.fetch_all(&self.pool).await?.iter().map(|row| Segment::read(row, 0)).collect()
    }

    /// The segments that may record a revision with a seq in `(above, high]`, given that those in
    /// `(.., above]` were read before: those with `min_seq` in `(above, high]`.
    async fn segments_starting(&self, above: i64, high: i64) -> Result<Vec<Segment>, StoreError> {
        let mut sql = Sql::new(self.backend, &format!("{SEGMENT_SELECT} WHERE min_seq > "));
        sql.bind(above).push(" AND min_seq <= ").bind(high);
        let mut segments = Vec::new();
        for row in sql.fetch_all(&self.pool).await? {
            // A segment changed by hand is left out: its revisions show no entry, and
            // `audit verify` names it.
            if let Ok(segment) = Segment::read(&row, 0)? {
                segments.push(segment);
            }
        }
        Ok(segments)
    }

    /// The entry of each revision in `seqs`, as (position, hex hash).
    pub(crate) async fn revision_entries(
        &self,
        seqs: &[i64],
    ) -> Result<HashMap<i64, (i64, String)>, StoreError> {
        let mut found = HashMap::new();
        for &seq in seqs {
            let mut finder = EntryFinder::default();
            if let Some(entry) = finder.find(self, seq, seq).await?.remove(&seq) {
                found.insert(seq, entry);
            }
        }
        Ok(found)
    }
}

/// Finds the entries of revisions asked for in rising seq order (an export), reading each
/// segment once and keeping only those that may still be asked for.
#[derive(Default)]
pub(crate) struct EntryFinder {
    /// The segments with `min_seq` up to this were read.
    read_up_to: Option<i64>,
    /// Position and hex hash by seq, of the segments read.
    entries: BTreeMap<i64, (i64, String)>,
}

impl EntryFinder {
    /// The entries of the revisions with seqs in `[low, high]`; no seq below `low` may be asked
    /// for afterwards.
    pub(crate) async fn find(
        &mut self,
        store: &Store,
        low: i64,
        high: i64,
    ) -> Result<BTreeMap<i64, (i64, String)>, StoreError> {
        let above = self.read_up_to.unwrap_or(i64::MIN).max(low.saturating_sub(SEQ_SPAN));
        if high > above {
            for segment in store.segments_starting(above, high).await? {
                for entry in segment.entries() {
                    if let Some(seq) = entry.seq {
                        self.entries.insert(seq, (entry.position, hex(entry.hash)));
                    }
                }
            }
            self.read_up_to = Some(high);
        }
        self.entries = self.entries.split_off(&low);
        let later = self.entries.split_off(&high.saturating_add(1));
        Ok(std::mem::replace(&mut self.entries, later))
    }
}

/// The text of each revision in `seqs` that the store holds, rebuilt from its row.
pub(crate) async fn revision_texts(
    store: &Store,
    seqs: Vec<i64>,
) -> Result<HashMap<i64, String>, StoreError> {
    let mut texts = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(rows_per_statement(1)) {
        let mut sql = Sql::new(
            store.backend,
            "SELECT seq, report_id, revision, channel, sender, received_at_us, payload FROM report_revisions \
             WHERE seq",
        );
        sql.bind_in(chunk.to_vec());
        for row in sql.fetch_all(&store.pool).await? {
            if let Some(text) = crate::audit::rebuilt_revision(&row, 0)? {
                texts.insert(row.try_get(0)?, text);
            }
        }
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_breaks_where_its_seqs_would_span_too_far() {
        let mut segment = Segment::new(1);
        segment.push(Some(10), String::new(), [0; 32]);
        segment.push(None, "{}".to_owned(), [1; 32]);
        assert!(segment.takes(Some(10 + SEQ_SPAN - 1)));
        assert!(!segment.takes(Some(10 + SEQ_SPAN)));
        assert!(!segment.takes(Some(10 - SEQ_SPAN)));
        assert!(segment.takes(None));
        assert_eq!(segment.seq_range(), Some((10, 10)));
        assert_eq!(segment.last(), 2);
        let entries: Vec<_> = segment.entries().map(|e| (e.position, e.seq, e.text)).collect();
        assert_eq!(entries, vec![(1, Some(10), None), (2, None, Some("{}"))]);
    }

    #[test]
    fn a_segment_reads_back_as_written_and_one_that_does_not_hold_together_is_refused() {
        let hashes = [[7_u8; 32], [9_u8; 32]].concat();
        let segment = Segment::decode(5, "12,", Some("[\"{\\\"a\\\":1}\"]"), &hashes).expect("a segment");
        assert_eq!(segment.seqs, vec![Some(12), None]);
        assert_eq!(segment.texts, vec!["{\"a\":1}".to_owned()]);
        assert_eq!(segment.hashes, vec![[7; 32], [9; 32]]);
        assert!(Segment::decode(5, "12,", None, &hashes).is_err(), "a text missing");
        assert!(Segment::decode(5, "12,13", Some("[\"x\"]"), &hashes).is_err(), "a text too many");
        assert!(Segment::decode(5, "12,x", None, &hashes).is_err(), "a seq not a number");
        assert!(Segment::decode(5, "12", None, &hashes).is_err(), "a hash too many");
        let span = format!("1,{}", 1 + SEQ_SPAN);
        assert!(
            Segment::decode(5, &span, None, &hashes).expect_err("too wide").contains("more than 4096 apart")
        );
        assert!(Segment::decode(i64::MAX, "12,", Some("[\"x\"]"), &hashes).is_err(), "positions overflow");
        assert!(Segment::decode(0, "12,", Some("[\"x\"]"), &hashes).is_err(), "positions start at 1");
    }
}
