//! The change feed behind `GET /api/v1/events` (Server-Sent Events): what the store has
//! recorded since a client last heard, a few times a second however fast reports arrive.
//!
//! One poller per process reads the audit trail's new sequence numbers (an index range, so a
//! few microseconds when nothing changed) every [`POLL_EVERY`], from whichever process wrote
//! them: the same code serves the worker's listener and a `pollwatch serve` beside several
//! workers on PostgreSQL. Each poll that found revisions becomes one [`Change`]; a client is
//! sent the changes it has not seen, merged into one event, so a burst of thousands of reports
//! is a few events a second, and a slow client skips nothing but intermediate states. An
//! event's id is the highest sequence number it covers; a client that reconnects with
//! `Last-Event-ID` is sent what came after it (all of it, merged, when that is older than the
//! changes kept).
//!
//! On PostgreSQL a transaction can take a sequence number and commit after one that took a
//! higher number; the poller keeps the numbers it saw skipped for [`GAP_KEPT_FOR`] and reads
//! them again, so such a revision is reported when it commits (with the event id it comes in).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use pollwatch_model::ReportKind;
use pollwatch_store::Store;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::watch;

use crate::Api;
use crate::problem::Problem;

/// How often the poller reads the audit trail.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// How long a skipped sequence number is read again (a transaction that long is not ours).
const GAP_KEPT_FOR: Duration = Duration::from_secs(60);

/// Most skipped numbers kept (duplicates resent to PostgreSQL use up numbers too).
const MOST_GAPS: usize = 4_096;

/// Revisions read per poll; a larger burst is read over the next polls, back to back.
const READ_PER_POLL: i64 = 10_000;

/// Changes kept for clients that fall behind or reconnect.
const CHANGES_KEPT: usize = 1_024;

/// Review actions read again on each poll below the highest seen: on PostgreSQL one may commit
/// after another that took a higher id, and reviewers act a few times a minute, not thousands.
const REVIEWS_REREAD: i64 = 64;

/// What one poll found.
#[derive(Debug, Clone)]
struct Change {
    /// Its place among this process's changes (from 1).
    no: u64,
    /// The highest sequence number seen once this change is counted (its event id). A change
    /// that only found skipped numbers has the id of the one before.
    seq: i64,
    kinds: BTreeSet<ReportKind>,
    revisions: u64,
    reviews: u64,
    conflicts: u64,
}

/// One event of the feed, as sent (`data:` is this as JSON).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChangeEvent {
    /// The highest audit-trail sequence number covered; also the event's id.
    pub seq: i64,
    /// The report kinds of the revisions recorded since the previous event: the views to read
    /// again (coverage for that phase; incidents; results for counting). Every kind when the
    /// client was too far behind to say.
    pub kinds: Vec<String>,
    /// How many revisions were recorded since the previous event (0 in the first event, which
    /// says where the feed stands; a lower bound when the client was too far behind).
    pub revisions: u64,
    /// How many review actions (decisions, comments, settlements) were taken since the previous
    /// event; their reports' kinds are among `kinds`.
    pub reviews: u64,
    /// How many conflicting versions (a report sent again with the same revision and other
    /// content) were kept since the previous event; `kinds` then names every kind.
    pub conflicts: u64,
}

/// Where the feed stands: the changes kept, and the position before the oldest of them.
#[derive(Debug)]
struct Log {
    changes: VecDeque<Change>,
    /// The highest sequence number before the oldest change kept; -1 until the first read.
    floor: i64,
    /// The highest sequence number seen.
    highest: i64,
}

#[derive(Debug)]
struct Shared {
    log: Mutex<Log>,
    /// The number of the latest change (0 before any), for waking clients.
    latest: watch::Sender<u64>,
    started: std::sync::Once,
}

/// The process's change feed, started by the first client.
#[derive(Debug, Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

impl Default for Feed {
    fn default() -> Self {
        let log = Log { changes: VecDeque::new(), floor: -1, highest: -1 };
        Self {
            shared: Arc::new(Shared {
                log: Mutex::new(log),
                latest: watch::Sender::new(0),
                started: std::sync::Once::new(),
            }),
        }
    }
}

/// What a client has been sent: changes up to `no`, the store up to `seq`.
#[derive(Debug, Clone, Copy)]
struct Seen {
    no: u64,
    seq: i64,
}

impl Feed {
    /// Starts the poller once; it runs for as long as the process.
    fn start(&self, store: &Store) {
        self.shared.started.call_once(|| {
            let (shared, store) = (Arc::clone(&self.shared), store.clone());
            tokio::spawn(poll(shared, store));
        });
    }

    /// Where a client starts: at the present, or after `last_event_id` (a sequence number),
    /// with the changes since then merged. `None` until the poller has read the store once.
    fn join(&self, last_event_id: Option<i64>) -> Option<(Seen, ChangeEvent)> {
        let log = self.shared.log.lock().expect("not poisoned");
        if log.floor < 0 {
            return None;
        }
        let no = log.changes.back().map_or(0, |c| c.no);
        let mut event =
            ChangeEvent { seq: log.highest, kinds: Vec::new(), revisions: 0, reviews: 0, conflicts: 0 };
        match last_event_id {
            Some(seq) if seq < log.floor => {
                // Older than what is kept: every kind may have changed.
                event.kinds = ReportKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
                event.revisions = log.changes.iter().map(|c| c.revisions).sum();
                event.reviews = log.changes.iter().map(|c| c.reviews).sum();
                event.conflicts = log.changes.iter().map(|c| c.conflicts).sum();
            }
            Some(seq) => merge(log.changes.iter().filter(|c| c.seq > seq), &mut event),
            None => {}
        }
        Some((Seen { no, seq: log.highest }, event))
    }

    /// How far the feed has read the store, starting the poller if it has not started: the
    /// number of the latest change (each poll that found revisions, including those that
    /// filled gaps, is one) and the highest sequence number seen. `None` until the poller has
    /// read the store once. An answer computed after reading these holds every revision they
    /// count.
    pub fn version(&self, store: &Store) -> Option<(u64, i64)> {
        self.start(store);
        let log = self.shared.log.lock().expect("not poisoned");
        (log.floor >= 0).then(|| (log.changes.back().map_or(0, |c| c.no), log.highest))
    }

    /// [`Feed::version`], waiting up to `limit` for the poller's first read of the store (one
    /// query) when it has not read it yet.
    pub async fn version_within(&self, store: &Store, limit: Duration) -> Option<(u64, i64)> {
        let mut receiver = self.shared.latest.subscribe();
        if let Some(version) = self.version(store) {
            return Some(version);
        }
        let _ = tokio::time::timeout(limit, receiver.changed()).await;
        self.version(store)
    }

    /// The changes after `seen`, merged; `None` when there are none.
    fn since(&self, seen: Seen) -> Option<(Seen, ChangeEvent)> {
        let log = self.shared.log.lock().expect("not poisoned");
        let last = log.changes.back().filter(|c| c.no > seen.no)?;
        let next = Seen { no: last.no, seq: log.highest.max(seen.seq) };
        let mut event =
            ChangeEvent { seq: next.seq, kinds: Vec::new(), revisions: 0, reviews: 0, conflicts: 0 };
        merge(log.changes.iter().filter(|c| c.no > seen.no), &mut event);
        if log.changes.front().is_some_and(|first| first.no > seen.no + 1) {
            // Changes this client had not been sent were dropped: every kind may have changed.
            event.kinds = ReportKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
        }
        Some((next, event))
    }
}

/// Adds `changes`' kinds and revisions to `event`.
fn merge<'a>(changes: impl Iterator<Item = &'a Change>, event: &mut ChangeEvent) {
    let mut kinds = BTreeSet::new();
    for change in changes {
        kinds.extend(change.kinds.iter().copied());
        event.revisions += change.revisions;
        event.reviews += change.reviews;
        event.conflicts += change.conflicts;
    }
    event.kinds = kinds.into_iter().map(|k| k.as_str().to_owned()).collect();
}

async fn poll(shared: Arc<Shared>, store: Store) {
    let (mut highest, mut reviewed) = loop {
        match tokio::try_join!(store.latest_seq(), store.latest_review()) {
            Ok(latest) => break latest,
            Err(_) if store.is_closed() => return,
            Err(error) => {
                tracing::warn!(%error, "the change feed cannot read the store yet");
                tokio::time::sleep(POLL_EVERY * 4).await;
            }
        }
    };
    {
        let mut log = shared.log.lock().expect("not poisoned");
        (log.floor, log.highest) = (highest, highest);
    }
    shared.latest.send_modify(|_| {});
    let mut gaps: BTreeMap<i64, Instant> = BTreeMap::new();
    // The review actions seen among the last few ids (see `REVIEWS_REREAD`).
    let mut reviews_seen: BTreeSet<i64> =
        match store.review_marks_after(reviewed - REVIEWS_REREAD, REVIEWS_REREAD).await {
            Ok(marks) => marks.into_iter().map(|(id, _)| id).collect(),
            Err(_) => BTreeSet::new(),
        };
    // The chain's position the conflicts were looked for up to.
    let mut chained = match store.audit_head().await {
        Ok(head) => head.entries,
        Err(_) => 0,
    };
    let mut no = 0;
    loop {
        let reviews = match store.review_marks_after(reviewed - REVIEWS_REREAD, READ_PER_POLL).await {
            Ok(marks) => marks,
            Err(_) if store.is_closed() => return,
            Err(error) => {
                tracing::warn!(%error, "the change feed could not read the review log");
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            }
        };
        let reviews: Vec<_> = reviews
            .into_iter()
            .filter(|(id, _)| {
                *id > reviewed || (*id > reviewed - REVIEWS_REREAD && !reviews_seen.contains(id))
            })
            .collect();
        for (id, _) in &reviews {
            reviews_seen.insert(*id);
            reviewed = reviewed.max(*id);
        }
        reviews_seen.retain(|id| *id > reviewed - REVIEWS_REREAD);
        let also: Vec<i64> = gaps.keys().copied().collect();
        let marks = match store.revisions_after(highest, also, READ_PER_POLL).await {
            Ok(marks) => marks,
            // The process is closing its store on its way out: nothing more will change.
            Err(_) if store.is_closed() => return,
            Err(error) => {
                tracing::warn!(%error, "the change feed could not read the store");
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            }
        };
        let conflicts = match store.conflict_marks_after(chained).await {
            Ok((marks, head)) => {
                chained = head;
                marks.len() as u64
            }
            Err(_) if store.is_closed() => return,
            Err(error) => {
                tracing::warn!(%error, "the change feed could not read the audit chain");
                0
            }
        };
        let now = Instant::now();
        gaps.retain(|_, since| now.duration_since(*since) < GAP_KEPT_FOR);
        let mut kinds: BTreeSet<ReportKind> = reviews.iter().filter_map(|(_, kind)| *kind).collect();
        // A conflict is rare, and its kind is in its entry's payload: every view is read again.
        if conflicts > 0 {
            kinds.extend(ReportKind::ALL);
        }
        for mark in &marks {
            if gaps.remove(&mark.seq).is_none() {
                for skipped in (highest + 1..mark.seq).take(MOST_GAPS) {
                    gaps.insert(skipped, now);
                }
                highest = highest.max(mark.seq);
            }
            kinds.insert(mark.kind);
        }
        while gaps.len() > MOST_GAPS {
            gaps.pop_first();
        }
        if !marks.is_empty() || !reviews.is_empty() || conflicts > 0 {
            no += 1;
            let change = Change {
                no,
                seq: highest,
                kinds,
                revisions: marks.len() as u64,
                reviews: reviews.len() as u64,
                conflicts,
            };
            let mut log = shared.log.lock().expect("not poisoned");
            log.changes.push_back(change);
            log.highest = highest;
            while log.changes.len() > CHANGES_KEPT {
                let dropped = log.changes.pop_front().expect("more than kept");
                log.floor = dropped.seq;
            }
            drop(log);
            shared.latest.send_replace(no);
        }
        if (marks.len() as i64) < READ_PER_POLL {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// The `Last-Event-ID` a reconnecting client sends: a sequence number, or a 400 naming it.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .ok()
        .filter(|v| (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i64>().ok());
    match parsed {
        Some(seq) => Ok(Some(seq)),
        None => Err(Problem::invalid_value(
            "Last-Event-ID",
            &String::from_utf8_lossy(value.as_bytes()),
            "an event id this feed sent (a number)",
            None,
        )),
    }
}

/// How often a stream asks whether its token is still known: a removed token's streams end
/// within this plus the time a found token is trusted (`auth`).
const TOKEN_CHECKED_EVERY: Duration = Duration::from_secs(5);

/// The event stream for one client: a `ready` event where it starts (with what changed since
/// `last_event_id`, if it gave one), then a `change` event whenever the store has recorded more.
/// It ends when `token` is removed.
pub(crate) fn stream(
    api: &Api,
    token: String,
    last_event_id: Option<i64>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    api.feed.start(&api.store);
    let receiver = api.feed.shared.latest.subscribe();
    let state = (api.clone(), token, receiver, None, Instant::now());
    let events = futures_util::stream::unfold(state, move |(api, token, mut receiver, seen, mut checked)| {
        async move {
            loop {
                if checked.elapsed() >= TOKEN_CHECKED_EVERY {
                    checked = Instant::now();
                    // A store that does not answer ends nothing; an unknown token ends the stream.
                    if let Ok(None) = api.tokens.find(&api.store, &token).await {
                        return None;
                    }
                }
                receiver.borrow_and_update();
                let next = match seen {
                    None => api.feed.join(last_event_id).map(|(seen, event)| (seen, "ready", event)),
                    Some(seen) => api.feed.since(seen).map(|(seen, event)| (seen, "change", event)),
                };
                let Some((next, name, event)) = next else {
                    let wait = TOKEN_CHECKED_EVERY.saturating_sub(checked.elapsed());
                    if let Ok(changed) = tokio::time::timeout(wait, receiver.changed()).await {
                        changed.ok()?;
                    }
                    continue;
                };
                let sent = Event::default()
                    .id(event.seq.to_string())
                    .event(name)
                    .data(serde_json::to_string(&event).expect("an event serialises"));
                return Some((Ok(sent), (api, token, receiver, Some(next), checked)));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(floor: i64, changes: &[(u64, i64, &[ReportKind], u64)]) -> Feed {
        let feed = Feed::default();
        let mut log = feed.shared.log.lock().expect("not poisoned");
        log.floor = floor;
        log.highest = changes.last().map_or(floor, |c| c.1);
        for &(no, seq, kinds, revisions) in changes {
            log.changes.push_back(Change {
                no,
                seq,
                kinds: kinds.iter().copied().collect(),
                revisions,
                reviews: 0,
                conflicts: 0,
            });
        }
        drop(log);
        feed
    }

    fn kinds(event: &ChangeEvent) -> Vec<&str> {
        event.kinds.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_client_joins_at_the_present_or_is_told_what_came_after_its_last_event() {
        use ReportKind::{Counting, Incident, Opening};
        let feed = feed(10, &[(1, 12, &[Opening], 2), (2, 15, &[Incident], 3), (3, 15, &[Counting], 1)]);
        let (seen, event) = feed.join(None).expect("the feed has read the store");
        assert_eq!((seen.no, seen.seq, event.seq, event.revisions), (3, 15, 15, 0));
        assert!(event.kinds.is_empty());

        let (_, event) = feed.join(Some(12)).expect("joined");
        assert_eq!((kinds(&event), event.revisions), (vec!["counting", "incident"], 4));

        let (_, event) = feed.join(Some(3)).expect("joined");
        assert_eq!(event.kinds.len(), ReportKind::ALL.len(), "older than kept: every kind");
    }

    #[test]
    fn a_live_client_gets_every_change_it_has_not_seen_merged_including_those_that_filled_gaps() {
        use ReportKind::{Counting, Incident, Opening};
        let feed = feed(10, &[(1, 12, &[Opening], 2), (2, 15, &[Incident], 3), (3, 15, &[Counting], 1)]);
        let (next, event) = feed.since(Seen { no: 2, seq: 15 }).expect("a change not seen");
        assert_eq!((next.no, event.seq, kinds(&event), event.revisions), (3, 15, vec!["counting"], 1));
        assert!(feed.since(next).is_none(), "nothing more");

        // Changes dropped before this client was sent them: every kind may have changed.
        let behind = self::feed(14, &[(7, 15, &[Incident], 1), (8, 16, &[Opening], 1)]);
        let (_, event) = behind.since(Seen { no: 2, seq: 12 }).expect("changes");
        assert_eq!((event.kinds.len(), event.revisions), (ReportKind::ALL.len(), 2));
    }

    #[test]
    fn last_event_id_is_a_number_or_a_400_naming_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("last-event-id", value.parse().expect("a header value"));
            last_event_id(&headers)
        };
        assert_eq!(last_event_id(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(with("42").ok(), Some(Some(42)));
        for bad in ["abc", "-1", "4 2", "1234567890123456789", ""] {
            let problem = with(bad).expect_err(bad);
            assert_eq!((problem.status, problem.parameter.as_deref()), (400, Some("Last-Event-ID")), "{bad}");
        }
    }
}
