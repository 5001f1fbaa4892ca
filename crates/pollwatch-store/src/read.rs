//! The rest of the core team's questions, for the API and the operators' commands: checklist
//! answers, incidents one by one, results per region, disputed stations with every team's
//! figures, a report's whole history, what is held and why, and each station's result.
//!
//! The rules are those of `queries.rs` (and `pollwatch_model::tally`): quarantined reports count
//! for nothing here but the held list and a report's history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pollwatch_model::{ContestResults, ReportKind};

use crate::db::{Row, Sql};
use crate::queries::{AuditRecord, ReportFilter, ReportSummary, audit_record, micros, summary};
use crate::{Backend, ReviewState, Store, StoreError};

/// How many current, unquarantined reports of one kind from one region gave `answer` to
/// `question`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCount {
    pub region: String,
    pub question: String,
    /// `yes`/`no`, a number in decimal or a short text; `None` for a free text too long to
    /// tabulate.
    pub answer: Option<String>,
    pub reports: i64,
}

/// Filters for [`Store::list_incidents`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub severity: Option<String>,
    pub category: Option<String>,
    pub region: Option<String>,
    /// Only incidents observed at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// One incident report, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Position in the listing (newest first); pass the last one as `after` for the next page.
    pub cursor: i64,
    pub report_id: String,
    pub revision: i64,
    pub observer: String,
    pub station: String,
    pub region: String,
    pub category: String,
    pub severity: String,
    pub description: String,
    pub occurred_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    pub next: Option<i64>,
}

/// Incidents of one category and severity in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentCount {
    pub region: String,
    pub category: String,
    pub severity: String,
    pub reports: i64,
}

/// One team's copy of a station's protocol for one contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolCopy {
    pub report_id: String,
    pub observer: String,
    pub observed_at: DateTime<Utc>,
    pub registered_voters: i64,
    pub ballots_received: i64,
    pub ballots_issued: i64,
    pub ballots_spoiled: i64,
    pub ballots_unused: i64,
    pub ballots_in_box: i64,
    pub invalid: i64,
    /// Votes per choice code, in code order.
    pub votes: Vec<(String, i64)>,
}

impl ProtocolCopy {
    fn figures(&self) -> impl PartialEq + '_ {
        (
            [
                self.registered_voters,
                self.ballots_received,
                self.ballots_issued,
                self.ballots_spoiled,
                self.ballots_unused,
                self.ballots_in_box,
                self.invalid,
            ],
            &self.votes,
        )
    }
}

/// A station where observer teams copied different figures for one contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub station: String,
    pub region: String,
    pub contest: String,
    /// Every current, unquarantined copy, the counted one (by the station result rule) first.
    pub reports: Vec<ProtocolCopy>,
}

/// A report's current state and everything the store received for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub current: ReportSummary,
    /// Every revision in the audit trail, in the order received.
    pub revisions: Vec<AuditRecord>,
    /// Versions of a revision that differed from the one recorded first.
    pub conflicts: Vec<ConflictRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord {
    pub revision: i64,
    pub content_hash: String,
    pub sender: Option<String>,
    pub received_at: DateTime<Utc>,
    pub payload: String,
}

/// Why a revision is held, as validation said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRecord {
    pub code: String,
    pub path: String,
    pub message: String,
}

/// A report held for review, with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReport {
    pub report: ReportSummary,
    pub flags: Vec<FlagRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPage {
    pub reports: Vec<HeldReport>,
    pub next: Option<i64>,
}

/// One station's result for one contest: its counted protocol, or none yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationResult {
    pub station: String,
    pub region: String,
    pub counted: Option<CountedProtocol>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedProtocol {
    pub report_id: String,
    pub observer: String,
    pub observed_at: DateTime<Utc>,
    /// When the store received the revision that counts.
    pub received_at: DateTime<Utc>,
    pub registered_voters: i64,
    pub ballots_in_box: i64,
    pub invalid: i64,
    /// Votes per choice code, in code order.
    pub votes: Vec<(String, i64)>,
}

impl Store {
    /// Checklist answers per region and question, for reports of `kind`.
    pub async fn answer_counts(
        &self,
        mission: &str,
        kind: ReportKind,
    ) -> Result<Vec<AnswerCount>, StoreError> {
        // SQLite keeps the counts (findings.rs); PostgreSQL counts.
        let mut sql = match self.backend {
            Backend::Sqlite => Sql::new(
                self.backend,
                "SELECT region, question, CASE WHEN free_text THEN NULL ELSE answer END, reports \
                 FROM answer_tally WHERE reports <> 0 AND mission = ",
            ),
            Backend::Postgres => Sql::new(
                self.backend,
                "SELECT s.region, a.question, a.answer, CAST(COUNT(*) AS BIGINT) FROM reports r \
                 JOIN report_answers a ON a.revision_seq = r.revision_seq \
                 JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
                 WHERE NOT r.quarantined AND r.mission = ",
            ),
        };
        sql.bind(mission.to_owned()).push(" AND kind = ").bind(kind.as_str().to_owned());
        if self.backend == Backend::Postgres {
            sql.push(" GROUP BY s.region, a.question, a.answer");
        }
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AnswerCount {
                    region: row.try_get(0)?,
                    question: row.try_get(1)?,
                    answer: row.try_get(2)?,
                    reports: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Incidents by region, category and severity, quarantined reports left out.
    pub async fn incident_counts(&self, mission: &str) -> Result<Vec<IncidentCount>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT s.region, r.incident_category, r.incident_severity, CAST(COUNT(*) AS BIGINT) FROM reports r \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             WHERE r.kind = 'incident' AND NOT r.quarantined AND r.mission = ",
        );
        sql.bind(mission.to_owned()).push(
            " GROUP BY s.region, r.incident_category, r.incident_severity \
             ORDER BY s.region, r.incident_category, r.incident_severity",
        );
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(IncidentCount {
                    region: row.try_get(0)?,
                    category: row.try_get(1)?,
                    severity: row.try_get(2)?,
                    reports: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Current, unquarantined incident reports matching `filter`, newest first, `limit` at a
    /// time; pass the previous page's `next` as `after` for the following page.
    pub async fn list_incidents(
        &self,
        mission: &str,
        filter: &IncidentFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<IncidentPage, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.revision_seq, r.report_id, r.revision, r.observer, r.station, s.region, \
             r.incident_category, r.incident_severity, r.observed_at_us, r.received_at_us, v.payload \
             FROM reports r JOIN report_revisions v ON v.seq = r.revision_seq \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             WHERE r.kind = 'incident' AND NOT r.quarantined AND r.mission = ",
        );
        sql.bind(mission.to_owned());
        if let Some(severity) = &filter.severity {
            sql.push(" AND r.incident_severity = ").bind(severity.clone());
        }
        if let Some(category) = &filter.category {
            sql.push(" AND r.incident_category = ").bind(category.clone());
        }
        if let Some(region) = &filter.region {
            sql.push(" AND s.region = ").bind(region.clone());
        }
        if let Some(since) = filter.since {
            sql.push(" AND r.observed_at_us >= ").bind(since.timestamp_micros());
        }
        if let Some(after) = after {
            sql.push(" AND r.revision_seq < ").bind(after);
        }
        let limit = limit.clamp(1, 10_000);
        sql.push(" ORDER BY r.revision_seq DESC LIMIT ").bind(i64::from(limit));
        let incidents: Vec<Incident> =
            sql.fetch_all(&self.pool).await?.iter().map(incident).collect::<Result<_, _>>()?;
        let next = (incidents.len() == limit as usize).then(|| incidents.last().map(|i| i.cursor)).flatten();
        Ok(IncidentPage { incidents, next })
    }

    /// Each region's results for `contest` (every region of the mission, in its order), by the
    /// station result rule of [`Store::results`].
    pub async fn results_by_region(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<(String, ContestResults)>, StoreError> {
        let choices = self.codes("choices", mission, Some(contest)).await?;
        let mut regions: Vec<(String, ContestResults)> = self
            .codes("regions", mission, None)
            .await?
            .into_iter()
            .map(|region| (region, ContestResults::empty(contest, choices.iter().cloned())))
            .collect();
        let mut sql = Sql::new(self.backend, "");
        picked(&mut sql, mission, contest);
        sql.push(
            "SELECT region, '' AS choice, CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(registered_voters), 0) AS BIGINT), \
             CAST(COALESCE(SUM(ballots_in_box), 0) AS BIGINT), CAST(COALESCE(SUM(invalid), 0) AS BIGINT) \
             FROM picked GROUP BY region UNION ALL SELECT k.region, v.choice, CAST(0 AS BIGINT), \
             CAST(SUM(v.votes) AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM picked k \
             JOIN protocol_votes v ON v.revision_seq = k.revision_seq AND v.contest = k.contest \
             GROUP BY k.region, v.choice",
        );
        for row in &sql.fetch_all(&self.pool).await? {
            let (region, choice): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let Some((_, results)) = regions.iter_mut().find(|(code, _)| *code == region) else {
                return Err(StoreError::Permanent(format!(
                    "a station of mission {mission} is in region {region:?}, which the mission does not have"
                )));
            };
            if choice.is_empty() {
                results.stations_counted = row.try_get(2)?;
                results.registered_voters = row.try_get(3)?;
                results.ballots_in_box = row.try_get(4)?;
                results.invalid = row.try_get(5)?;
            } else if let Some((_, votes)) = results.votes.iter_mut().find(|(code, _)| *code == choice) {
                // Votes for a code that is not (or no longer) a choice of the contest are left
                // out, as `ContestResults::add` leaves them out.
                *votes = row.try_get(3)?;
            }
        }
        Ok(regions)
    }

    /// Stations where current, unquarantined counting reports disagree on any figure of
    /// `contest`, with every team's figures.
    pub async fn result_discrepancies(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<Discrepancy>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.station, s.region, r.report_id, r.observer, r.observed_at_us, p.registered_voters, \
             p.ballots_received, p.ballots_issued, p.ballots_spoiled, p.ballots_unused, p.ballots_in_box, \
             p.invalid, p.votes_digest FROM protocols p JOIN reports r ON r.revision_seq = p.revision_seq \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             WHERE NOT r.quarantined AND r.kind = 'counting' AND r.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND p.contest = ").bind(contest.to_owned());
        sql.push(" AND NOT ");
        settled(&mut sql, contest);
        // The station result rule's precedence: the counted copy comes first.
        sql.push(" ORDER BY r.station, r.observed_at_us DESC, r.report_id DESC");
        let mut stations: BTreeMap<String, (String, Vec<ProtocolCopy>)> = BTreeMap::new();
        for row in sql.fetch_all(&self.pool).await? {
            let copy = ProtocolCopy {
                report_id: row.try_get(2)?,
                observer: row.try_get(3)?,
                observed_at: micros(row.try_get(4)?)?,
                registered_voters: row.try_get(5)?,
                ballots_received: row.try_get(6)?,
                ballots_issued: row.try_get(7)?,
                ballots_spoiled: row.try_get(8)?,
                ballots_unused: row.try_get(9)?,
                ballots_in_box: row.try_get(10)?,
                invalid: row.try_get(11)?,
                votes: digest_votes(&row.try_get::<String>(12)?)?,
            };
            let (station, region): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            stations.entry(station).or_insert_with(|| (region, Vec::new())).1.push(copy);
        }
        Ok(stations
            .into_iter()
            .filter(|(_, (_, copies))| copies.iter().any(|c| c.figures() != copies[0].figures()))
            .map(|(station, (region, reports))| Discrepancy {
                station,
                region,
                contest: contest.to_owned(),
                reports,
            })
            .collect())
    }

    /// The codes of the stations whose current, unquarantined counting reports disagree on any
    /// figure of `contest` (those [`Store::result_discrepancies`] lists), with their regions; the
    /// disagreement found in SQL, so only the stations come back.
    pub async fn disputed_stations(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT r.station, s.region FROM protocols p JOIN reports r ON r.revision_seq = p.revision_seq \
             JOIN stations s ON s.mission_id = r.mission AND s.code = r.station \
             WHERE NOT r.quarantined AND r.kind = 'counting' AND r.mission = ",
        );
        sql.bind(mission.to_owned()).push(" AND p.contest = ").bind(contest.to_owned());
        sql.push(" AND NOT ");
        settled(&mut sql, contest);
        sql.push(
            " GROUP BY r.station, s.region HAVING COUNT(DISTINCT CAST(p.registered_voters AS TEXT) || ',' || \
             CAST(p.ballots_received AS TEXT) || ',' || CAST(p.ballots_issued AS TEXT) || ',' || \
             CAST(p.ballots_spoiled AS TEXT) || ',' || CAST(p.ballots_unused AS TEXT) || ',' || \
             CAST(p.ballots_in_box AS TEXT) || ',' || CAST(p.invalid AS TEXT) || ',' || p.votes_digest) > 1 \
             ORDER BY r.station",
        );
        sql.fetch_all(&self.pool).await?.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Every station of the roster (in region order, then by code) with its result for
    /// `contest`, if it has one.
    pub async fn station_results(
        &self,
        mission: &str,
        contest: &str,
    ) -> Result<Vec<StationResult>, StoreError> {
        let mut sql = Sql::new(self.backend, "");
        picked(&mut sql, mission, contest);
        sql.push(
            "SELECT s.code, s.region, k.report_id, k.observer, k.observed_at_us, k.registered_voters, \
             k.ballots_in_box, k.invalid, k.votes_digest, k.received_at_us FROM stations s \
             JOIN regions g ON g.mission_id = s.mission_id AND g.code = s.region \
             LEFT JOIN picked k ON k.station = s.code WHERE s.mission_id = ",
        );
        sql.bind(mission.to_owned()).push(" ORDER BY g.position, s.code");
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let counted = match row.try_get::<Option<String>>(2)? {
                    None => None,
                    Some(report_id) => Some(CountedProtocol {
                        report_id,
                        observer: row.try_get(3)?,
                        observed_at: micros(row.try_get(4)?)?,
                        received_at: micros(row.try_get(9)?)?,
                        registered_voters: row.try_get(5)?,
                        ballots_in_box: row.try_get(6)?,
                        invalid: row.try_get(7)?,
                        votes: digest_votes(&row.try_get::<String>(8)?)?,
                    }),
                };
                Ok(StationResult { station: row.try_get(0)?, region: row.try_get(1)?, counted })
            })
            .collect()
    }

    /// The report's current revision and everything received for it; `None` if the mission
    /// has no report with this id.
    pub async fn report_history(
        &self,
        mission: &str,
        report_id: &str,
    ) -> Result<Option<History>, StoreError> {
        let mut sql =
            Sql::new(self.backend, &format!("{} WHERE r.mission = ", crate::queries::SUMMARY_SELECT));
        sql.bind(mission.to_owned()).push(" AND r.report_id = ").bind(report_id.to_owned());
        let Some(current) = sql.fetch_all(&self.pool).await?.first().map(summary).transpose()? else {
            return Ok(None);
        };
        let mut sql =
            Sql::new(self.backend, &format!("{} WHERE v.report_id = ", crate::queries::AUDIT_SELECT));
        sql.bind(report_id.to_owned()).push(" ORDER BY v.seq");
        let mut revisions: Vec<AuditRecord> =
            sql.fetch_all(&self.pool).await?.iter().map(audit_record).collect::<Result<_, _>>()?;
        let seqs: Vec<i64> = revisions.iter().map(|r| r.seq).collect();
        let mut entries = self.revision_entries(&seqs).await?;
        for revision in &mut revisions {
            revision.audit = entries.remove(&revision.seq);
        }
        let mut sql = Sql::new(
            self.backend,
            "SELECT revision, content_hash, sender, received_at_us, payload FROM conflicts WHERE report_id = ",
        );
        sql.bind(report_id.to_owned()).push(" ORDER BY received_at_us, content_hash");
        let conflicts = sql
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ConflictRecord {
                    revision: row.try_get(0)?,
                    content_hash: row.try_get(1)?,
                    sender: row.try_get(2)?,
                    received_at: micros(row.try_get(3)?)?,
                    payload: row.try_get(4)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(History { current, revisions, conflicts }))
    }

    /// Current reports held for review (in state `held`; rejected ones are not listed), with their
    /// flags, oldest change first.
    pub async fn held(&self, mission: &str, after: Option<i64>, limit: u32) -> Result<HeldPage, StoreError> {
        let filter = ReportFilter {
            quarantined: Some(true),
            state: Some(ReviewState::Held),
            ..ReportFilter::default()
        };
        let page = self.list_reports(mission, &filter, after, limit).await?;
        let mut flags = self.flags_of(page.reports.iter().map(|r| r.cursor).collect()).await?;
        let reports = page
            .reports
            .into_iter()
            .map(|report| HeldReport { flags: flags.remove(&report.cursor).unwrap_or_default(), report })
            .collect();
        Ok(HeldPage { reports, next: page.next })
    }

    /// The flags of the revisions with these sequence numbers.
    async fn flags_of(&self, seqs: Vec<i64>) -> Result<BTreeMap<i64, Vec<FlagRecord>>, StoreError> {
        let mut flags: BTreeMap<i64, Vec<FlagRecord>> = BTreeMap::new();
        if seqs.is_empty() {
            return Ok(flags);
        }
        for chunk in seqs.chunks(crate::db::rows_per_statement(1)) {
            let mut sql = Sql::new(
                self.backend,
                "SELECT revision_seq, code, path, message FROM report_flags WHERE revision_seq",
            );
            sql.bind_in(chunk.to_vec());
            sql.push(" ORDER BY revision_seq, code, path");
            for row in sql.fetch_all(&self.pool).await? {
                flags.entry(row.try_get(0)?).or_default().push(FlagRecord {
                    code: row.try_get(1)?,
                    path: row.try_get(2)?,
                    message: row.try_get(3)?,
                });
            }
        }
        Ok(flags)
    }

    /// The codes of a mission's regions, or of a contest's choices, in their order.
    pub(crate) async fn codes(
        &self,
        table: &str,
        mission: &str,
        contest: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut sql = Sql::new(self.backend, &format!("SELECT code FROM {table} WHERE mission_id = "));
        sql.bind(mission.to_owned());
        if let Some(contest) = contest {
            sql.push(" AND contest = ").bind(contest.to_owned());
        }
        sql.push(" ORDER BY position");
        sql.fetch_all(&self.pool).await?.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}

/// `EXISTS (…)`: whether a settlement in force decides the result of `contest` at the station
/// of `r` (a row of `reports` whose mission and station are `r.mission`, `r.station`); see
/// [`picked`].
fn settled(sql: &mut Sql, contest: &str) {
    sql.push("EXISTS (SELECT 1 FROM protocol_choices c WHERE c.mission = r.mission AND c.station = r.station AND c.contest = ");
    sql.bind(contest.to_owned());
    sql.push(" AND ");
    choice_in_force(sql, contest);
    sql.push(")");
}

/// Whether the settlement `c` (a row of `protocol_choices`) is in force: it counts no protocol,
/// or its report is still a current, accepted counting report from the station with a protocol
/// for `contest`. A settlement whose report has since been rejected, moved or lost the contest
/// lapses, and the station result rule applies again.
fn choice_in_force(sql: &mut Sql, contest: &str) {
    sql.push(
        "(c.report_id IS NULL OR EXISTS (SELECT 1 FROM reports x JOIN protocols xp ON xp.revision_seq = x.revision_seq \
         AND xp.contest = ",
    );
    sql.bind(contest.to_owned());
    sql.push(
        " WHERE x.report_id = c.report_id AND x.mission = c.mission AND x.station = c.station AND x.kind = 'counting' \
         AND NOT x.quarantined))",
    );
}

/// `WITH chosen AS …, picked AS …`: for each station of the roster, the protocol for `contest`
/// that counts, with the station's code and region and the report's id, observer and
/// observation time. Where a reviewer's settlement is in force (`protocol_choices`), its report
/// (or none); elsewhere the station result rule of `pollwatch_model::tally`: the latest current,
/// accepted counting report among those with one (whose [`pollwatch_model::Precedence`] is this
/// `ORDER BY`) — one index seek per station, whatever the number of reports.
pub(crate) fn picked(sql: &mut Sql, mission: &str, contest: &str) {
    sql.push(
        "WITH chosen AS (SELECT s.code AS station, s.region AS region, CASE WHEN c.station IS NOT NULL AND ",
    );
    choice_in_force(sql, contest);
    sql.push(" THEN c.report_id ELSE (SELECT r.report_id FROM reports r JOIN protocols p ON p.revision_seq = r.revision_seq AND p.contest = ");
    sql.bind(contest.to_owned());
    sql.push(
        " WHERE r.mission = s.mission_id AND r.station = s.code AND r.kind = 'counting' AND NOT r.quarantined \
         ORDER BY r.observed_at_us DESC, r.report_id DESC LIMIT 1) END AS report_id FROM stations s \
         LEFT JOIN protocol_choices c ON c.mission = s.mission_id AND c.station = s.code AND c.contest = ",
    );
    sql.bind(contest.to_owned());
    sql.push(" WHERE s.mission_id = ");
    sql.bind(mission.to_owned());
    sql.push(
        "), picked AS (SELECT c.station, c.region, r.report_id, r.observer, r.observed_at_us, r.received_at_us, p.* \
         FROM chosen c JOIN reports r ON r.report_id = c.report_id \
         JOIN protocols p ON p.revision_seq = r.revision_seq AND p.contest = ",
    );
    sql.bind(contest.to_owned()).push(") ");
}

/// The votes of a protocol from its digest, `code=n;code=n` (written by `ingest_batch`).
fn digest_votes(digest: &str) -> Result<Vec<(String, i64)>, StoreError> {
    digest
        .split(';')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry.rsplit_once('=').and_then(|(code, n)| Some((code.to_owned(), n.parse().ok()?))).ok_or_else(
                || {
                    StoreError::Permanent(format!(
                        "the store holds a votes digest it cannot read: {digest:?}"
                    ))
                },
            )
        })
        .collect()
}

fn incident(row: &Row) -> Result<Incident, StoreError> {
    let cursor: i64 = row.try_get(0)?;
    let payload: String = row.try_get(10)?;
    let unreadable =
        |what: &str| StoreError::Permanent(format!("the incident of revision {cursor} has {what}"));
    let value: serde_json::Value =
        serde_json::from_str(&payload).map_err(|_| unreadable("a payload that is not JSON"))?;
    let body = &value["body"];
    let description = body["description"].as_str().ok_or_else(|| unreadable("no description"))?.to_owned();
    let occurred_at = body["occurred_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| unreadable("no time of occurrence"))?
        .to_utc();
    Ok(Incident {
        cursor,
        report_id: row.try_get(1)?,
        revision: row.try_get(2)?,
        observer: row.try_get(3)?,
        station: row.try_get(4)?,
        region: row.try_get(5)?,
        category: row.try_get(6)?,
        severity: row.try_get(7)?,
        description,
        occurred_at,
        observed_at: micros(row.try_get(8)?)?,
        received_at: micros(row.try_get(9)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_votes_digest_reads_back_and_a_broken_one_is_an_error() {
        assert_eq!(digest_votes("a=1;b=20").expect("a digest"), [("a".to_owned(), 1), ("b".to_owned(), 20)]);
        assert_eq!(digest_votes("").expect("no votes"), []);
        assert!(digest_votes("a=1;b").is_err());
        assert!(digest_votes("a=x").is_err());
    }
}
