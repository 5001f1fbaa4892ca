//! The core team's questions: coverage, silent observers, findings, results, listings, export.
//!
//! The rules they apply — which revision is current, what quarantine leaves out, which counting
//! report is a station's result — are written down, and the result rule written as pure code, in
//! `pollwatch_model::tally`. A stored value a query cannot read back (a time out of range, an
//! unknown kind, flags that are not JSON) is an error, never a default.

use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::StreamExt as _;
use pollwatch_model::{ContestResults, ReportKind};

use crate::db::{Row, Sql};
use crate::segments::EntryFinder;
use crate::{Backend, ReviewState, Store, StoreError};

/// Revisions the export finds the chain's entries for at a time.
const EXPORT_CHUNK: usize = 1_000;

/// Stations expected and reported in one region, for one phase (report kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCoverage {
    pub region: String,
    pub expected: usize,
    pub reported: usize,
    /// Codes of the stations without a report of this kind.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentObserver {
    pub id: String,
    pub name: String,
    pub team: String,
    /// When the store last received anything from this observer; `None` for never.
    pub last_report_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentCount {
    pub region: String,
    pub kind: ReportKind,
    pub assessment: String,
    pub reports: i64,
}

/// Filters for [`Store::list_reports`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub kind: Option<ReportKind>,
    pub region: Option<String>,
    pub station: Option<String>,
    pub observer: Option<String>,
    /// Only reports carrying this flag code.
    pub flag: Option<String>,
    pub quarantined: Option<bool>,
    /// Only reports in this review state.
    pub state: Option<ReviewState>,
    /// Only reports whose current revision was received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only reports whose current revision has a conflicting version received after the last
    /// reviewer's pick between its versions, or with no pick (`true`); or none such (`false`).
    pub conflicted: Option<bool>,
}

/// The current revision of a report, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    /// Position in the listing; pass the last one as `after` to get the next page.
    pub cursor: i64,
    pub report_id: String,
    pub revision: i64,
    pub kind: ReportKind,
    pub observer: String,
    pub station: String,
    pub observed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub assessment: Option<String>,
    /// Whether it is left out of findings and results: its state is not `accepted`.
    pub quarantined: bool,
    pub review_state: ReviewState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub reports: Vec<ReportSummary>,
    /// The cursor for the next page, if there may be one.
    pub next: Option<i64>,
}

/// One revision from the audit trail, as exported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub report_id: String,
    pub revision: i64,
    pub content_hash: String,
    pub sender: Option<String>,
    /// How the revision reached the store: `amqp` (through the broker).
    pub channel: String,
    pub redelivered: bool,
    pub received_at: DateTime<Utc>,
    /// The model's flags for this revision, as JSON.
    pub flags: serde_json::Value,
    /// The report exactly as received.
    pub payload: String,
    /// The audit chain's entry for this revision: its position and hash.
    pub audit: Option<(i64, String)>,
    /// 0 for the version received first; 1, 2, … for versions kept aside that a reviewer picked
    /// to count, stored again as rows of their revision.
    pub variant: i64,
}

/// A report (`r`) whose current revision has a conflicting version that no reviewer has picked
/// between: one received after the last pick on the revision, or with none.
pub(crate) const OPEN_CONFLICT: &str = "EXISTS (SELECT 1 FROM conflicts c WHERE c.report_id = r.report_id \
    AND c.revision = r.revision AND NOT EXISTS (SELECT 1 FROM review_log m WHERE m.report_id = c.report_id \
    AND m.revision = c.revision AND m.action = 'pick' AND m.at_us >= c.received_at_us))";

/// The columns of a [`ReportSummary`], for [`summary`].
pub(crate) const SUMMARY_SELECT: &str = "SELECT r.revision_seq, r.report_id, r.revision, r.kind, r.observer, \
    r.station, r.observed_at_us, r.received_at_us, r.assessment, \
    CAST(CASE WHEN r.quarantined THEN 1 ELSE 0 END AS BIGINT), r.review_state FROM reports r";

/// The columns of an [`AuditRecord`], for [`audit_record`].
pub(crate) const AUDIT_SELECT: &str = "SELECT v.seq, v.report_id, v.revision, v.content_hash, v.sender, \
    v.channel, CAST(CASE WHEN v.redelivered THEN 1 ELSE 0 END AS BIGINT), v.received_at_us, v.flags, v.payload, \
    v.variant FROM report_revisions v";

pub(crate) fn audit_record(row: &Row) -> Result<AuditRecord, StoreError> {
    let seq = row.try_get(0)?;
    Ok(AuditRecord {
        seq,
        report_id: row.try_get(1)?,
        revision: row.try_get(2)?,
        content_hash: row.try_get(3)?,
        sender: row.try_get(4)?,
        channel: row.try_get(5)?,
        redelivered: row.try_get::<i64>(6)? != 0,
        received_at: micros(row.try_get(7)?)?,
        flags: serde_json::from_str(&row.try_get::<String>(8)?)
            .map_err(|e| StoreError::Permanent(format!("the flags of revision {seq} are not JSON: {e}")))?,
        payload: row.try_get(9)?,
        audit: None,
        variant: row.try_get(10)?,
    })
}

/// A time the store holds, in microseconds since 1970.
pub(crate) fn micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Permanent(format!("the store holds a time out of range: {us} µs")))
}

/// A report kind the store holds, by its wire name.
fn kind(name: &str) -> Result<ReportKind, StoreError> {
    ReportKind::parse(name)
        .ok_or_else(|| StoreError::Permanent(format!("the store holds a report of unknown kind {name:?}")))
}

impl Store {
    /// Per region (in the mission's order), which stations have a report of `kind`.
    pub async fn coverage(&self, mission: &str, kind: ReportKind) -> Result<Vec<RegionCoverage>, StoreError> {
        // SQLite keeps a count per station and kind (`update_summaries` in ingest.rs);
        // PostgreSQL an index.
        let exists = match self.backend {
            Backend::Sqlite => {
                "SELECT 1 FROM station_coverage c WHERE c.mission = s.mission_id AND c.station = s.code \
                 AND c.reports > 0 AND c.kind = "
            }
            Backend::Postgres => {
                "SELECT 1 FROM reports r WHERE r.mission = s.mission_id AND r.station = s.code AND r.kind = "
            }
        };
        let mut sql = Sql::new(self.backend, "SELECT s.region, s.code, CAST(CASE WHEN EXISTS (");
        sql.push(exists).bind(kind.as_str().to_owned());
        sql.push(
            ") THEN 1 ELSE 0 END AS BIGINT) FROM stations s JOIN regions g ON g.mission_id = s.mission_id \
             AND g.code = s.region WHERE s.mission_id = ",
        );
        sql.bind(mission.to_owned()).push(" ORDER BY g.position, s.code");
        let mut regions: Vec<RegionCoverage> = Vec::new();
        for row in sql.fetch_all(&self.pool).await? {
            let (region, code, reported): (String, String, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if regions.last().is_none_or(|r| r.region != region) {
                regions.push(RegionCoverage { region, expected: 0, reported: 0, missing: Vec::new() });
            }
            let entry = regions.last_mut().expect("just pushed");
            entry.expected += 1;
            if reported == 1 {
                entry.reported += 1;
            } else {
                entry.missing.push(code);
            }
        }
        Ok(regions)
    }

    /// Observers from whom nothing was received at or after `since`.
    pub async fn silent_observers(
        &self,
        mission: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SilentObserver>, StoreError> {
        // SQLite keeps each observer's latest time (`update_summaries` in ingest.rs);
        // PostgreSQL an index.
        let activity = match self.backend {
            Backend::Sqlite => "observer_activity",
            Backend::Postgres => "report_revisions",
        };
        // One index seek per observer for its latest time, rather than a pass over every
        // revision grouped by observer.
        let mut sql = Sql::new(
            self.backend,
            &format!(
                "SELECT id, name, team, last_us FROM (SELECT o.id, o.name, o.team, \
                 (SELECT CAST(MAX(v.received_at_us) AS BIGINT) FROM {activity} v \
                 WHERE v.mission = o.mission_id AND v.observer = o.id) AS last_us \
                 FROM observers o WHERE o.mission_id = "
            ),
        );
        sql.bind(mission.to_owned());
        sql.push(") t WHERE last_us IS NULL OR last_us < ");
        sql.bind(since.timestamp_micros()).push(" ORDER BY id");
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(SilentObserver {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    team: row.try_get(2)?,
                    last_report_at: row.try_get::<Option<i64>>(3)?.map(micros).transpose()?,
                })
            })
            .collect()
    }

    /// Overall assessments per region and phase (of one `kind`, or of all), quarantined reports
    /// left out.
    pub async fn assessment_counts(
        &self,
        mission: &str,
        only: Option<ReportKind>,
    ) -> Result<Vec<AssessmentCount>, StoreError> {
        // SQLite keeps the counts (findings.rs); PostgreSQL counts.
        let mut sql = match self.backend {
            Backend::Sqlite => Sql::new(
                self.backend,
                "SELECT region, kind, assessment, reports FROM assessment_tally \
                 WHERE reports <> 0 AND mission = ",
            ),
            Backend::Postgres => Sql::new(
                self.backend,
                "SELECT s.region, r.kind, r.assessment, CAST(COUNT(*) AS BIGINT) FROM reports r \
                 JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
                 WHERE NOT r.quarantined AND r.assessment IS NOT NULL AND r.mission = ",
            ),
        };
        sql.bind(mission.to_owned());
        if let Some(only) = only {
            sql.push(" AND kind = ").bind(only.as_str().to_owned());
        }
        sql.push(match self.backend {
            Backend::Sqlite => " ORDER BY region, kind, assessment",
            Backend::Postgres => {
                " GROUP BY s.region, r.kind, r.assessment ORDER BY s.region, r.kind, r.assessment"
            }
        });
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AssessmentCount {
                    region: row.try_get(0)?,
                    kind: kind(&row.try_get::<String>(1)?)?,
                    assessment: row.try_get(2)?,
                    reports: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Sums, over the roster's stations, each station's result for `contest`: the rule of
    /// `pollwatch_model::tally` (where teams filed several, the latest observation among those
    /// with a protocol for the contest counts; ties: the greatest report id; see
    /// [`Store::result_discrepancies`]), applied in SQL.
    pub async fn results(&self, mission: &str, contest: &str) -> Result<ContestResults, StoreError> {
        let choices = self.codes("choices", mission, Some(contest)).await?;
        let mut national = ContestResults::empty(contest, choices);
        for (_, region) in self.results_by_region(mission, contest).await? {
            national.absorb(&region);
        }
        Ok(national)
    }

    /// Current reports matching `filter`, oldest change first, `limit` at a time. Pass the
    /// previous page's `next` as `after` for the following page.
    ///
    /// The order is the sequence number of each report's current revision, assigned when the
    /// revision was inserted: a report revised while someone pages moves to the end, and with
    /// several workers a transaction that commits late can land behind a page already read. Page
    /// through for a view of the store, not to follow changes.
    pub async fn list_reports(
        &self,
        mission: &str,
        filter: &ReportFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let mut sql = Sql::new(self.backend, &format!("{SUMMARY_SELECT} WHERE r.mission = "));
        sql.bind(mission.to_owned());
        if let Some(kind) = filter.kind {
            sql.push(" AND r.kind = ").bind(kind.as_str().to_owned());
        }
        if let Some(region) = &filter.region {
            sql.push(" AND EXISTS (SELECT 1 FROM stations s WHERE s.mission_id = r.mission AND s.code = r.station AND s.region = ");
            sql.bind(region.clone()).push(")");
        }
        if let Some(station) = &filter.station {
            sql.push(" AND r.station = ").bind(station.clone());
        }
        if let Some(observer) = &filter.observer {
            sql.push(" AND r.observer = ").bind(observer.clone());
        }
        if let Some(flag) = &filter.flag {
            sql.push(
                " AND EXISTS (SELECT 1 FROM report_flags f WHERE f.revision_seq = r.revision_seq AND f.code = ",
            );
            sql.bind(flag.clone()).push(")");
        }
        // Written out rather than bound, so that SQLite can use the partial index of held
        // reports (`reports_held`), which a bound value would not match.
        match filter.quarantined {
            Some(true) => {
                sql.push(" AND r.quarantined");
            }
            Some(false) => {
                sql.push(" AND NOT r.quarantined");
            }
            None => {}
        }
        if let Some(state) = filter.state {
            sql.push(" AND r.review_state = ").bind(state.as_str().to_owned());
        }
        if let Some(since) = filter.since {
            sql.push(" AND r.received_at_us >= ").bind(since.timestamp_micros());
        }
        if let Some(conflicted) = filter.conflicted {
            sql.push(if conflicted { " AND " } else { " AND NOT " });
            sql.push(OPEN_CONFLICT);
        }
        if let Some(after) = after {
            sql.push(" AND r.revision_seq > ").bind(after);
        }
        let limit = limit.clamp(1, 10_000);
        sql.push(" ORDER BY r.revision_seq LIMIT ").bind(i64::from(limit));
        let reports: Vec<ReportSummary> =
            sql.fetch_all(&self.pool).await?.iter().map(summary).collect::<Result<_, _>>()?;
        let next = (reports.len() == limit as usize).then(|| reports.last().map(|r| r.cursor)).flatten();
        Ok(Page { reports, next })
    }

    /// Every revision in the audit trail, in the order received, as a stream (the trail can be
    /// far larger than memory).
    pub fn export(&self) -> impl Stream<Item = Result<AuditRecord, StoreError>> + Send + '_ {
        let records = Sql::new(self.backend, &format!("{AUDIT_SELECT} ORDER BY v.seq"))
            .fetch(&self.pool)
            .map(|row| audit_record(&row?))
            .ready_chunks(EXPORT_CHUNK);
        // Each chunk's entries are found by its seqs, which rise.
        futures_util::stream::unfold(
            (Box::pin(records), EntryFinder::default()),
            move |(mut records, mut finder)| async move {
                let chunk = records.next().await?;
                let chunk = self.with_entries(&mut finder, chunk).await;
                Some((futures_util::stream::iter(chunk), (records, finder)))
            },
        )
        .flatten()
    }

    /// `records` (in rising seq order, later than any asked of `finder` before) with their
    /// entries' positions and hashes; an error for the whole chunk if they cannot be read.
    async fn with_entries(
        &self,
        finder: &mut EntryFinder,
        records: Vec<Result<AuditRecord, StoreError>>,
    ) -> Vec<Result<AuditRecord, StoreError>> {
        let seqs: Vec<i64> = records.iter().flatten().map(|r| r.seq).collect();
        let (Some(&low), Some(&high)) = (seqs.first(), seqs.last()) else { return records };
        let mut entries = match finder.find(self, low, high).await {
            Ok(entries) => entries,
            Err(e) => return vec![Err(e)],
        };
        records
            .into_iter()
            .map(|record| record.map(|record| AuditRecord { audit: entries.remove(&record.seq), ..record }))
            .collect()
    }
}

pub(crate) fn summary(row: &Row) -> Result<ReportSummary, StoreError> {
    Ok(ReportSummary {
        cursor: row.try_get(0)?,
        report_id: row.try_get(1)?,
        revision: row.try_get(2)?,
        kind: kind(&row.try_get::<String>(3)?)?,
        observer: row.try_get(4)?,
        station: row.try_get(5)?,
        observed_at: micros(row.try_get(6)?)?,
        received_at: micros(row.try_get(7)?)?,
        assessment: row.try_get(8)?,
        quarantined: row.try_get::<i64>(9)? != 0,
        review_state: ReviewState::stored(&row.try_get::<String>(10)?)?,
    })
}

/// A recorded revision as the change feed sees it: its place in the audit trail and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionMark {
    pub seq: i64,
    pub kind: ReportKind,
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Reports with a current revision.
    pub reports: i64,
    /// Revisions in the audit trail.
    pub revisions: i64,
    /// Conflicting versions kept beside the audit trail.
    pub conflicts: i64,
    /// Current reports held for review.
    pub quarantined: i64,
}

impl Store {
    /// The highest sequence number in the audit trail (0 for an empty store).
    pub async fn latest_seq(&self) -> Result<i64, StoreError> {
        let row =
            Sql::new(self.backend, "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM report_revisions")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get(0)?)
    }

    /// Revisions recorded with a sequence number above `after`, or numbered `also` (numbers a
    /// reader saw skipped: on PostgreSQL a transaction may commit after one that took a higher
    /// number; only the first `rows_per_statement(1)`, 4,096, of them are read), lowest first, at
    /// most `limit`.
    pub async fn revisions_after(
        &self,
        after: i64,
        also: Vec<i64>,
        limit: i64,
    ) -> Result<Vec<RevisionMark>, StoreError> {
        // Read from the index on (seq, kind) alone (migration 0005): a poll touches a few small
        // pages, not the rows with their payloads. The skipped numbers are a second branch,
        // looked up one by one, so that they do not turn the range into a scan.
        let mut sql = Sql::new(
            self.backend,
            "SELECT seq, kind FROM (SELECT seq, kind FROM report_revisions WHERE seq > ",
        );
        sql.bind(after);
        if !also.is_empty() {
            let most = crate::db::rows_per_statement(1);
            sql.push(" UNION ALL SELECT seq, kind FROM report_revisions WHERE seq")
                .bind_in(also.into_iter().take(most).collect());
        }
        sql.push(") AS marks ORDER BY seq LIMIT ").bind(limit);
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok(RevisionMark { seq: row.try_get(0)?, kind: kind(&row.try_get::<String>(1)?)? }))
            .collect()
    }

    /// Current reports, and those of them held for review: [`Store::totals`]' first and last
    /// figures without its passes over the audit trail and the conflicts (for the dashboard's
    /// overview, computed again after every change).
    pub async fn report_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = Sql::new(
            self.backend,
            "SELECT CAST((SELECT COUNT(*) FROM reports) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM reports WHERE quarantined) AS BIGINT)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let row = Sql::new(
            self.backend,
            "SELECT CAST((SELECT COUNT(*) FROM reports) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM report_revisions) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM conflicts) AS BIGINT), \
             CAST((SELECT COUNT(*) FROM reports WHERE quarantined) AS BIGINT)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Totals {
            reports: row.try_get(0)?,
            revisions: row.try_get(1)?,
            conflicts: row.try_get(2)?,
            quarantined: row.try_get(3)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use chrono::{DateTime, Utc};
    use pollwatch_model::{
        Content, ContestResults, CountingBody, Flag, FlagCode, Mission, Protocol, Report, sample,
    };
    use uuid::Uuid;

    use crate::{Delivery, Incoming, Outcome, Store};

    /// A counting report whose every figure is `1 << bit` (times a constant), so that a sum of
    /// such figures names the reports it was taken from.
    pub(crate) fn counting(
        mission: &Mission,
        id: u128,
        revision: u32,
        station: &str,
        at: &str,
        contests: &[&str],
        bit: u32,
    ) -> Report {
        let figure = 1 << bit;
        let protocols = contests
            .iter()
            .map(|id| {
                let contest = mission.contest(id).expect("a contest of the mission");
                Protocol {
                    contest: contest.id.clone(),
                    registered_voters: 10 * figure,
                    ballots_received: 10 * figure,
                    ballots_issued: 6 * figure,
                    ballots_spoiled: 0,
                    ballots_unused: 4 * figure,
                    ballots_in_box: 6 * figure,
                    invalid: figure,
                    votes: contest
                        .choices
                        .iter()
                        .zip(1..)
                        .map(|(c, n)| (c.code.clone(), n * figure))
                        .collect(),
                }
            })
            .collect();
        let at = DateTime::parse_from_rfc3339(at).expect("a time");
        Report {
            schema_version: 1,
            report_id: Uuid::from_u128(id),
            revision,
            mission: mission.id.clone(),
            observer: mission.observers[0].id.clone(),
            station: station.to_owned(),
            observed_at: at,
            submitted_at: at,
            location: None,
            answers: Default::default(),
            assessment: None,
            attachments: Vec::new(),
            content: Content::Counting(CountingBody { protocols }),
        }
    }

    pub(crate) fn incoming(report: &Report, flagged: bool) -> Incoming {
        let flags = if flagged {
            vec![Flag::new(FlagCode::CountingSumMismatch, "body.protocols[0]", "held for review")]
        } else {
            Vec::new()
        };
        let payload = serde_json::to_string(report).expect("a report serialises");
        Incoming::new(
            report.clone(),
            flags,
            payload,
            Delivery { sender: None, redelivered: false, received_at: Utc::now() },
        )
    }

    /// The SQL of `results` and the model's pure rule are one rule: on the cases where a station
    /// result is easy to get wrong, the store's results equal the tally of the same reports.
    #[tokio::test]
    async fn results_are_the_model_tally_of_the_current_unquarantined_reports() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("store.db").display()))
            .await
            .expect("a store");
        store.import_mission(&mission).await.expect("the mission imports");
        let station = |i: usize| mission.stations[i].code.as_str();
        let both = ["president", "referendum"];
        let (t0, t0_utc, t0_plus_400ns) =
            ("2021-01-10T21:00:00+06:00", "2021-01-10T15:00:00Z", "2021-01-10T21:00:00.0000004+06:00");
        let (t0_30m, t1, t2, t3) = (
            "2021-01-10T21:30:00+06:00",
            "2021-01-10T22:00:00+06:00",
            "2021-01-10T23:00:00+06:00",
            "2021-01-11T00:00:00+06:00",
        );
        let c = |id, revision, at_station, at, contests: &[&str], bit| {
            counting(&mission, id, revision, at_station, at, contests, bit)
        };
        // In the order sent, one batch each; with whether validation flagged each.
        let sent: Vec<(Report, bool)> = vec![
            // Three at one instant, to the microsecond: the greatest id wins, not the nanoseconds.
            (c(0x0a, 1, station(0), t0, &both, 0), false),
            (c(0x09, 1, station(0), t0_utc, &both, 1), false),
            (c(0x08, 1, station(0), t0_plus_400ns, &both, 2), false),
            // A later report that lacks the referendum: the earlier one's referendum counts.
            (c(0x10, 1, station(1), t0, &both, 3), false),
            (c(0x11, 1, station(1), t1, &["president"], 4), false),
            // A later report held for review does not count.
            (c(0x20, 1, station(2), t0, &both, 5), false),
            (c(0x21, 1, station(2), t1, &both, 6), true),
            // A revision observed later overtakes another team's report.
            (c(0x30, 1, station(3), t0, &both, 7), false),
            (c(0x31, 1, station(3), t0_30m, &both, 8), false),
            (c(0x30, 2, station(3), t1, &both, 9), false),
            // A lower revision arriving late, observed latest, changes nothing.
            (c(0x40, 2, station(4), t0, &both, 10), false),
            (c(0x41, 1, station(4), t1, &both, 11), false),
            (c(0x40, 1, station(4), t2, &both, 12), false),
            // A flagged revision takes its report out of the results.
            (c(0x50, 1, station(5), t0, &both, 13), false),
            (c(0x51, 1, station(5), t1, &both, 14), false),
            (c(0x51, 2, station(5), t1, &both, 15), true),
            // A correction moves a report to another station.
            (c(0x60, 1, station(6), t1, &both, 16), false),
            (c(0x60, 2, station(7), t1, &both, 17), false),
            // A conflicting version of one revision: the first stays current.
            (c(0x70, 1, station(8), t0, &both, 18), false),
            (c(0x70, 1, station(8), t3, &both, 19), false),
            // A station outside the roster counts for nothing.
            (c(0x80, 1, "99999", t0, &both, 20), false),
        ];
        let mut outcomes = Vec::new();
        for (report, flagged) in &sent {
            outcomes
                .extend(store.ingest_batch(&[incoming(report, *flagged)]).await.expect("a batch commits"));
        }
        use Outcome::*;
        #[rustfmt::skip]
        assert_eq!(outcomes, [
            Stored, Stored, Stored, Stored, Stored, Stored, Quarantined, Stored, Stored, Revised,
            Stored, Stored, Stale, Stored, Stored, Quarantined, Stored, Revised, Stored, Conflict, Stored,
        ]);

        // The current revision of each report (the highest; of one revision, the first sent),
        // quarantined ones left out.
        let mut current: HashMap<Uuid, &(Report, bool)> = HashMap::new();
        for sent in &sent {
            let entry = current.entry(sent.0.report_id).or_insert(sent);
            if sent.0.revision > entry.0.revision {
                *entry = sent;
            }
        }
        let counted: Vec<&Report> =
            current.values().filter(|(_, flagged)| !flagged).map(|(r, _)| r).collect();

        let bits = |bits: &[u32]| bits.iter().map(|b| 1_i64 << b).sum::<i64>();
        for (contest, picked) in [
            ("president", bits(&[0, 4, 5, 9, 11, 13, 17, 18])),
            ("referendum", bits(&[0, 3, 5, 9, 11, 13, 17, 18])),
        ] {
            let results = store.results(&mission.id, contest).await.expect("results");
            let contest = mission.contest(contest).expect("a contest");
            assert_eq!(
                results,
                ContestResults::tally(&mission, contest, counted.iter().copied()),
                "{}",
                contest.id
            );
            assert_eq!((results.stations_counted, results.invalid), (8, picked), "{}", contest.id);
        }
    }
}
