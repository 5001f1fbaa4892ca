//! The core team's questions: coverage, silent observers, findings, results, listings, export.
//!
//! Quarantined reports count for coverage and for observer activity (the team was there), but
//! not for findings or results until an operator releases them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::StreamExt as _;
use pollwatch_model::ReportKind;

use crate::db::{Row, Sql};
use crate::{Backend, Store, StoreError};

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
    pub kind: String,
    pub assessment: String,
    pub reports: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentCount {
    pub category: String,
    pub severity: String,
    pub reports: i64,
}

/// A contest's tabulation over the stations with a counting protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ContestResults {
    pub contest: String,
    pub stations_counted: i64,
    pub registered_voters: i64,
    pub ballots_in_box: i64,
    pub invalid: i64,
    /// Votes per candidate or option, in ballot order; every choice is listed.
    pub votes: Vec<(String, i64)>,
}

impl ContestResults {
    pub fn valid(&self) -> i64 {
        self.votes.iter().map(|(_, n)| n).sum()
    }

    /// Ballots in the box over registered voters, at the stations counted.
    pub fn turnout(&self) -> f64 {
        if self.registered_voters == 0 {
            0.0
        } else {
            self.ballots_in_box as f64 / self.registered_voters as f64
        }
    }
}

/// A station where observer teams copied different figures for one contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub station: String,
    /// `(report_id, observer)` of every current counting report for the station.
    pub reports: Vec<(String, String)>,
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
    /// Only reports whose current revision was received at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// The current revision of a report, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSummary {
    /// Position in the listing; pass the last one as `after` to get the next page.
    pub cursor: i64,
    pub report_id: String,
    pub revision: i64,
    pub kind: String,
    pub observer: String,
    pub station: String,
    pub observed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub assessment: Option<String>,
    pub quarantined: bool,
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
    pub redelivered: bool,
    pub received_at: DateTime<Utc>,
    /// The model's flags for this revision, as JSON.
    pub flags: serde_json::Value,
    /// The report exactly as received.
    pub payload: String,
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl Store {
    /// Per region (in the mission's order), which stations have a report of `kind`.
    pub async fn coverage(&self, mission: &str, kind: ReportKind) -> Result<Vec<RegionCoverage>, StoreError> {
        // SQLite keeps a count per station and kind (migration 0002); PostgreSQL an index.
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
        // SQLite keeps each observer's latest time (migration 0002); PostgreSQL an index.
        let activity = match self.backend {
            Backend::Sqlite => "observer_activity",
            Backend::Postgres => "report_revisions",
        };
        let mut sql = Sql::new(
            self.backend,
            &format!(
                "SELECT o.id, o.name, o.team, CAST(MAX(v.received_at_us) AS BIGINT) FROM observers o \
                 LEFT JOIN {activity} v ON v.mission = o.mission_id AND v.observer = o.id WHERE o.mission_id = "
            ),
        );
        sql.bind(mission.to_owned());
        sql.push(
            " GROUP BY o.id, o.name, o.team HAVING MAX(v.received_at_us) IS NULL OR MAX(v.received_at_us) < ",
        );
        sql.bind(since.timestamp_micros()).push(" ORDER BY o.id");
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(SilentObserver {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    team: row.try_get(2)?,
                    last_report_at: row.try_get::<Option<i64>>(3)?.map(micros),
                })
            })
            .collect()
    }

    /// Overall assessments per region and phase, quarantined reports left out.
    pub async fn assessment_counts(&self, mission: &str) -> Result<Vec<AssessmentCount>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT s.region, r.kind, r.assessment, CAST(COUNT(*) AS BIGINT) FROM reports r \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             WHERE NOT r.quarantined AND r.assessment IS NOT NULL AND r.mission = ",
        );
        sql.bind(mission.to_owned())
            .push(" GROUP BY s.region, r.kind, r.assessment ORDER BY s.region, r.kind, r.assessment");
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AssessmentCount {
                    region: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    assessment: row.try_get(2)?,
                    reports: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Incidents by category and severity, quarantined reports left out.
    pub async fn incident_counts(&self, mission: &str) -> Result<Vec<IncidentCount>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT incident_category, incident_severity, CAST(COUNT(*) AS BIGINT) FROM reports \
             WHERE kind = 'incident' AND NOT quarantined AND mission = ",
        );
        sql.bind(mission.to_owned()).push(
            " GROUP BY incident_category, incident_severity ORDER BY incident_category, incident_severity",
        );
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(IncidentCount {
                    category: row.try_get(0)?,
                    severity: row.try_get(1)?,
                    reports: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Sums, over stations, each station's current counting protocol for `contest`. Where teams
    /// filed several, the latest observation counts (ties: the greatest report id; see
    /// [`Store::result_discrepancies`]).
    pub async fn results(&self, mission: &str, contest: &str) -> Result<ContestResults, StoreError> {
        // One pass over the picked protocols: a totals row (empty choice) and a row per choice.
        let mut sql = Sql::new(self.backend, "");
        picked(&mut sql, mission, contest);
        sql.push(
            "SELECT '' AS choice, CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(registered_voters), 0) AS BIGINT), \
             CAST(COALESCE(SUM(ballots_in_box), 0) AS BIGINT), CAST(COALESCE(SUM(invalid), 0) AS BIGINT) \
             FROM picked UNION ALL SELECT v.choice, CAST(0 AS BIGINT), CAST(SUM(v.votes) AS BIGINT), \
             CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM picked k JOIN protocol_votes v ON v.revision_seq = k.revision_seq \
             AND v.contest = k.contest GROUP BY v.choice",
        );
        let rows = sql.fetch_all(&self.pool).await?;
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        let mut results = ContestResults {
            contest: contest.to_owned(),
            stations_counted: 0,
            registered_voters: 0,
            ballots_in_box: 0,
            invalid: 0,
            votes: Vec::new(),
        };
        for row in &rows {
            let choice: String = row.try_get(0)?;
            if choice.is_empty() {
                results.stations_counted = row.try_get(1)?;
                results.registered_voters = row.try_get(2)?;
                results.ballots_in_box = row.try_get(3)?;
                results.invalid = row.try_get(4)?;
            } else {
                sums.insert(choice, row.try_get(2)?);
            }
        }
        // Every choice of the contest, in ballot order, with zero where nobody voted for it.
        let mut sql = Sql::new(self.backend, "SELECT code FROM choices WHERE mission_id = ");
        sql.bind(mission.to_owned())
            .push(" AND contest = ")
            .bind(contest.to_owned())
            .push(" ORDER BY position");
        for row in sql.fetch_all(&self.pool).await? {
            let code: String = row.try_get(0)?;
            let votes = sums.get(&code).copied().unwrap_or(0);
            results.votes.push((code, votes));
        }
        Ok(results)
    }

    /// Stations where current, unquarantined counting reports disagree on any figure of `contest`.
    pub async fn result_discrepancies(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<Discrepancy>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.station, r.report_id, r.observer, CAST(p.registered_voters AS TEXT) || ',' || \
             CAST(p.ballots_received AS TEXT) || ',' || CAST(p.ballots_issued AS TEXT) || ',' || \
             CAST(p.ballots_spoiled AS TEXT) || ',' || CAST(p.ballots_unused AS TEXT) || ',' || \
             CAST(p.ballots_in_box AS TEXT) || ',' || CAST(p.invalid AS TEXT) || ',' || p.votes_digest \
             FROM protocols p JOIN reports r ON r.revision_seq = p.revision_seq \
             WHERE NOT r.quarantined AND r.kind = 'counting' AND r.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND p.contest = ").bind(contest.to_owned());
        sql.push(" ORDER BY r.station, r.report_id");
        let mut stations: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
        for row in sql.fetch_all(&self.pool).await? {
            stations.entry(row.try_get(0)?).or_default().push((
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ));
        }
        Ok(stations
            .into_iter()
            .filter(|(_, reports)| reports.iter().any(|(_, _, figures)| *figures != reports[0].2))
            .map(|(station, reports)| Discrepancy {
                station,
                reports: reports.into_iter().map(|(id, observer, _)| (id, observer)).collect(),
            })
            .collect())
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
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.revision_seq, r.report_id, r.revision, r.kind, r.observer, r.station, r.observed_at_us, \
             r.received_at_us, r.assessment, CAST(CASE WHEN r.quarantined THEN 1 ELSE 0 END AS BIGINT) \
             FROM reports r WHERE r.mission = ",
        );
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
        if let Some(quarantined) = filter.quarantined {
            sql.push(" AND r.quarantined = ").bind(quarantined);
        }
        if let Some(since) = filter.since {
            sql.push(" AND r.received_at_us >= ").bind(since.timestamp_micros());
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
        Sql::new(
            self.backend,
            "SELECT seq, report_id, revision, content_hash, sender, \
             CAST(CASE WHEN redelivered THEN 1 ELSE 0 END AS BIGINT), received_at_us, flags, payload \
             FROM report_revisions ORDER BY seq",
        )
        .fetch(&self.pool)
        .map(|row| {
            let row = row?;
            Ok(AuditRecord {
                seq: row.try_get(0)?,
                report_id: row.try_get(1)?,
                revision: row.try_get(2)?,
                content_hash: row.try_get(3)?,
                sender: row.try_get(4)?,
                redelivered: row.try_get::<i64>(5)? != 0,
                received_at: micros(row.try_get(6)?),
                flags: serde_json::from_str(&row.try_get::<String>(7)?).unwrap_or_default(),
                payload: row.try_get(8)?,
            })
        })
    }
}

/// `WITH chosen AS …, picked AS …`: for each station of the roster, the protocol for `contest`
/// of its latest current, unquarantined counting report — one index seek per station, whatever
/// the number of reports.
fn picked(sql: &mut Sql, mission: &str, contest: &str) {
    sql.push(
        "WITH chosen AS (SELECT (SELECT r.report_id FROM reports r \
         JOIN protocols p ON p.revision_seq = r.revision_seq AND p.contest = ",
    );
    sql.bind(contest.to_owned());
    sql.push(
        " WHERE r.mission = s.mission_id AND r.station = s.code AND r.kind = 'counting' AND NOT r.quarantined \
         ORDER BY r.observed_at_us DESC, r.report_id DESC LIMIT 1) AS report_id FROM stations s WHERE s.mission_id = ",
    );
    sql.bind(mission.to_owned());
    sql.push(
        "), picked AS (SELECT p.* FROM chosen c JOIN reports r ON r.report_id = c.report_id \
         JOIN protocols p ON p.revision_seq = r.revision_seq AND p.contest = ",
    );
    sql.bind(contest.to_owned()).push(") ");
}

fn summary(row: &Row) -> Result<ReportSummary, StoreError> {
    Ok(ReportSummary {
        cursor: row.try_get(0)?,
        report_id: row.try_get(1)?,
        revision: row.try_get(2)?,
        kind: row.try_get(3)?,
        observer: row.try_get(4)?,
        station: row.try_get(5)?,
        observed_at: micros(row.try_get(6)?),
        received_at: micros(row.try_get(7)?),
        assessment: row.try_get(8)?,
        quarantined: row.try_get::<i64>(9)? != 0,
    })
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
