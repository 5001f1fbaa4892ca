//! The answers to the core team's questions, as the API returns them and `pollwatch` prints
//! them: one function per question over the store and the mission, one type per answer. The
//! HTTP handlers and the command line both call these, so the two never disagree.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use pollwatch_model::{AnswerType, Assessment, Contest, ContestResults, Mission, ReportKind};
use pollwatch_store::{
    AuditRecord, IncidentFilter, ReportFilter, ReportSummary, ReviewAction, Store, StoreError,
};
use schemars::JsonSchema;
use serde::{Serialize, Serializer};

/// How a station's result is chosen, as `GET /api/v1/results/{contest}` states it.
pub const RESULT_RULE: &str = "Each station counts once. Only accepted reports count: held and \
rejected ones count for nothing. Where a reviewer has settled the station for the contest (POST \
/api/v1/stations/{code}/protocol), the protocol of the report they chose counts, or none until a \
recount. Elsewhere the protocol for the contest of the station's latest current, accepted \
counting report that has one counts (latest observation time first, then the greatest report \
id). A station is `disputed` when the accepted protocols of several teams disagree on any figure \
and no settlement is in force; meanwhile the rule above counts the first one listed by \
/api/v1/discrepancies.";

/// A map that keeps its keys in the order given (ballot order, form order, region order).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<V: JsonSchema> JsonSchema for Ordered<V> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl<V> Ordered<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

// ---------------------------------------------------------------------------------------------
// The mission

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MissionView {
    pub id: String,
    pub name: String,
    pub election_day: NaiveDate,
    /// The IANA time zone of the election, e.g. `Asia/Bishkek`.
    pub time_zone: String,
    /// When polls open and close, local time (`HH:MM`).
    pub polls_open: String,
    pub polls_close: String,
    pub regions: Vec<RegionView>,
    /// Contests in ballot order, each with its choices in ballot order.
    pub contests: Vec<ContestView>,
    pub stations: usize,
    pub observers: usize,
    pub teams: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionView {
    pub code: String,
    pub name: String,
    pub stations: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ContestView {
    pub id: String,
    pub name: String,
    /// `candidates` or `options`.
    pub kind: String,
    pub choices: Vec<ChoiceView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChoiceView {
    pub code: String,
    pub name: String,
}

pub fn mission(mission: &Mission) -> MissionView {
    let teams: std::collections::BTreeSet<&str> = mission.observers.iter().map(|o| o.team.as_str()).collect();
    MissionView {
        id: mission.id.clone(),
        name: mission.name.clone(),
        election_day: mission.election_day,
        time_zone: mission.time_zone.name().to_owned(),
        polls_open: mission.polls_open.format("%H:%M").to_string(),
        polls_close: mission.polls_close.format("%H:%M").to_string(),
        regions: mission
            .regions
            .iter()
            .map(|r| RegionView {
                code: r.code.clone(),
                name: r.name.clone(),
                stations: mission.stations.iter().filter(|s| s.region == r.code).count(),
            })
            .collect(),
        contests: mission
            .contests
            .iter()
            .map(|c| ContestView {
                id: c.id.clone(),
                name: c.name.clone(),
                kind: c.kind.to_string(),
                choices: c
                    .choices
                    .iter()
                    .map(|ch| ChoiceView { code: ch.code.clone(), name: ch.name.clone() })
                    .collect(),
            })
            .collect(),
        stations: mission.stations.len(),
        observers: mission.observers.len(),
        teams: teams.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CoverageView {
    /// The report kind asked about.
    pub phase: ReportKind,
    /// The region asked about, if one was.
    pub region: Option<String>,
    pub national: CoverageTotals,
    /// Per region, in the mission's order.
    pub regions: Vec<RegionCoverageView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CoverageTotals {
    pub expected: usize,
    pub reported: usize,
    pub missing: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionCoverageView {
    pub region: String,
    pub expected: usize,
    pub reported: usize,
    /// Codes of the stations with no report of this kind yet.
    pub missing: Vec<String>,
}

pub async fn coverage(
    store: &Store,
    mission: &Mission,
    phase: ReportKind,
    region: Option<&str>,
) -> Result<CoverageView, StoreError> {
    let regions: Vec<RegionCoverageView> = store
        .coverage(&mission.id, phase)
        .await?
        .into_iter()
        .filter(|r| region.is_none_or(|code| r.region == code))
        .map(|r| RegionCoverageView {
            region: r.region,
            expected: r.expected,
            reported: r.reported,
            missing: r.missing,
        })
        .collect();
    let expected = regions.iter().map(|r| r.expected).sum();
    let reported = regions.iter().map(|r| r.reported).sum();
    Ok(CoverageView {
        phase,
        region: region.map(str::to_owned),
        national: CoverageTotals { expected, reported, missing: expected - reported },
        regions,
    })
}

// ---------------------------------------------------------------------------------------------
// Observers

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ObserversView {
    /// Observers with nothing received since this time are listed.
    pub since: DateTime<Utc>,
    pub silent_for_seconds: u64,
    pub observers: Vec<SilentObserverView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SilentObserverView {
    pub id: String,
    pub name: String,
    pub team: String,
    /// When the store last received a report from this observer; null for never.
    pub last_report_at: Option<DateTime<Utc>>,
}

pub async fn observers(
    store: &Store,
    mission: &Mission,
    silent_for: Duration,
    now: DateTime<Utc>,
) -> Result<ObserversView, StoreError> {
    let since = chrono::Duration::from_std(silent_for)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let observers = store
        .silent_observers(&mission.id, since)
        .await?
        .into_iter()
        .map(|o| SilentObserverView {
            id: o.id,
            name: o.name,
            team: o.team,
            last_report_at: o.last_report_at,
        })
        .collect();
    Ok(ObserversView { since, silent_for_seconds: silent_for.as_secs(), observers })
}

// ---------------------------------------------------------------------------------------------
// Findings

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FindingsView {
    pub phase: ReportKind,
    pub region: Option<String>,
    /// Overall assessments over the region asked about, or nationally.
    pub assessments: AssessmentView,
    /// Overall assessments per region, in the mission's order.
    pub by_region: Vec<RegionAssessmentView>,
    /// Each question of the phase's checklist, in form order, with the distribution of answers.
    pub questions: Vec<QuestionFindings>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AssessmentView {
    /// Reports with an overall assessment.
    pub reports: i64,
    /// Reports per assessment, `very_good` to `very_bad`.
    pub counts: Ordered<i64>,
    /// Each assessment's fraction of `reports` (0 when there are none).
    pub shares: Ordered<f64>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionAssessmentView {
    pub region: String,
    #[serde(flatten)]
    pub assessments: AssessmentView,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QuestionFindings {
    pub code: String,
    pub text: String,
    /// `yes_no`, `number`, `choice` or `text`.
    pub answer_type: String,
    /// Reports that answered the question.
    pub answered: i64,
    /// Yes/no questions: how many answered yes and no.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no: Option<i64>,
    /// Choice questions: how many gave each choice, in form order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Ordered<i64>>,
    /// Number questions: the smallest, median and largest answer (null when none answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numbers: Option<NumberSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct NumberSummary {
    pub min: Option<i64>,
    /// The middle answer; with an even number of answers, the mean of the two middle ones.
    pub median: Option<f64>,
    pub max: Option<i64>,
}

fn assessment_view(counts: &BTreeMap<String, i64>) -> AssessmentView {
    let reports: i64 = Assessment::ALL.iter().map(|a| counts.get(a.as_str()).copied().unwrap_or(0)).sum();
    let count = |a: &Assessment| counts.get(a.as_str()).copied().unwrap_or(0);
    AssessmentView {
        reports,
        counts: Ordered(Assessment::ALL.iter().map(|a| (a.as_str().to_owned(), count(a))).collect()),
        shares: Ordered(
            Assessment::ALL.iter().map(|a| (a.as_str().to_owned(), share(count(a), reports))).collect(),
        ),
    }
}

/// `part` over `whole`, 0 when `whole` is 0.
pub fn share(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// The median of a distribution of whole numbers given as (value, count).
pub fn median(values: &BTreeMap<i64, i64>) -> Option<f64> {
    let total: i64 = values.values().sum();
    if total == 0 {
        return None;
    }
    // The values at positions (total - 1) / 2 and total / 2, counting from 0.
    let (low, high) = ((total - 1) / 2, total / 2);
    let (mut seen, mut low_value, mut high_value) = (0, None, None);
    for (&value, &count) in values {
        if low_value.is_none() && seen + count > low {
            low_value = Some(value);
        }
        if seen + count > high {
            high_value = Some(value);
            break;
        }
        seen += count;
    }
    Some((low_value? as f64 + high_value? as f64) / 2.0)
}

pub async fn findings(
    store: &Store,
    mission: &Mission,
    phase: ReportKind,
    region: Option<&str>,
) -> Result<FindingsView, StoreError> {
    let in_scope = |r: &str| region.is_none_or(|code| code == r);
    let mut national: BTreeMap<String, i64> = BTreeMap::new();
    let mut regional: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for count in store.assessment_counts(&mission.id, Some(phase)).await? {
        if count.kind != phase || !in_scope(&count.region) {
            continue;
        }
        *national.entry(count.assessment.clone()).or_default() += count.reports;
        if let Some(r) = mission.region(&count.region) {
            *regional.entry(r.code.as_str()).or_default().entry(count.assessment).or_default() +=
                count.reports;
        }
    }
    let by_region = mission
        .regions
        .iter()
        .filter(|r| in_scope(&r.code))
        .map(|r| RegionAssessmentView {
            region: r.code.clone(),
            assessments: assessment_view(regional.get(r.code.as_str()).unwrap_or(&BTreeMap::new())),
        })
        .collect();

    // question → answer → reports, over the regions in scope.
    let mut answers: BTreeMap<String, BTreeMap<Option<String>, i64>> = BTreeMap::new();
    for count in store.answer_counts(&mission.id, phase).await? {
        if in_scope(&count.region) {
            *answers.entry(count.question).or_default().entry(count.answer).or_default() += count.reports;
        }
    }
    let empty = BTreeMap::new();
    let questions = mission
        .forms
        .get(&phase)
        .map(|form| form.questions.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|question| {
            let given = answers.get(&question.code).unwrap_or(&empty);
            let count = |answer: &str| given.get(&Some(answer.to_owned())).copied().unwrap_or(0);
            let mut findings = QuestionFindings {
                code: question.code.clone(),
                text: question.text.clone(),
                answer_type: String::new(),
                answered: given.values().sum(),
                yes: None,
                no: None,
                choices: None,
                numbers: None,
            };
            match &question.answer {
                AnswerType::YesNo => {
                    findings.answer_type = "yes_no".into();
                    findings.yes = Some(count("yes"));
                    findings.no = Some(count("no"));
                }
                AnswerType::Choice { choices } => {
                    findings.answer_type = "choice".into();
                    findings.choices = Some(Ordered(choices.iter().map(|c| (c.clone(), count(c))).collect()));
                }
                AnswerType::Number { .. } => {
                    findings.answer_type = "number".into();
                    let values: BTreeMap<i64, i64> = given
                        .iter()
                        .filter_map(|(answer, n)| Some((answer.as_deref()?.parse::<i64>().ok()?, *n)))
                        .collect();
                    findings.numbers = Some(NumberSummary {
                        min: values.keys().next().copied(),
                        median: median(&values),
                        max: values.keys().next_back().copied(),
                    });
                }
                AnswerType::Text { .. } => findings.answer_type = "text".into(),
            }
            findings
        })
        .collect();
    Ok(FindingsView {
        phase,
        region: region.map(str::to_owned),
        assessments: assessment_view(&national),
        by_region,
        questions,
    })
}

// ---------------------------------------------------------------------------------------------
// Incidents

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IncidentsView {
    /// Newest first.
    pub incidents: Vec<IncidentView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IncidentView {
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

pub async fn incidents(
    store: &Store,
    mission: &Mission,
    filter: &IncidentFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<IncidentsView, StoreError> {
    let page = store.list_incidents(&mission.id, filter, after, limit).await?;
    Ok(IncidentsView {
        incidents: page
            .incidents
            .into_iter()
            .map(|i| IncidentView {
                report_id: i.report_id,
                revision: i.revision,
                observer: i.observer,
                station: i.station,
                region: i.region,
                category: i.category,
                severity: i.severity,
                description: i.description,
                occurred_at: i.occurred_at,
                observed_at: i.observed_at,
                received_at: i.received_at,
            })
            .collect(),
        next: page.next.map(|n| n.to_string()),
    })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IncidentSummaryView {
    pub region: Option<String>,
    /// Incidents (not held) over the regions in scope.
    pub total: i64,
    /// Incidents per category, then severity (`low` to `critical`); only categories with any.
    pub by_category: Ordered<Ordered<i64>>,
    /// The same per region, in the mission's order.
    pub by_region: Vec<RegionIncidentsView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionIncidentsView {
    pub region: String,
    pub total: i64,
    pub by_category: Ordered<Ordered<i64>>,
}

fn by_category(counts: &BTreeMap<(String, String), i64>) -> Ordered<Ordered<i64>> {
    use pollwatch_model::{IncidentCategory, Severity};
    Ordered(
        IncidentCategory::ALL
            .iter()
            .filter(|c| counts.keys().any(|(category, _)| category == c.as_str()))
            .map(|c| {
                let severities = Severity::ALL
                    .iter()
                    .map(|s| {
                        let n =
                            counts.get(&(c.as_str().to_owned(), s.as_str().to_owned())).copied().unwrap_or(0);
                        (s.as_str().to_owned(), n)
                    })
                    .collect();
                (c.as_str().to_owned(), Ordered(severities))
            })
            .collect(),
    )
}

pub async fn incident_summary(
    store: &Store,
    mission: &Mission,
    region: Option<&str>,
) -> Result<IncidentSummaryView, StoreError> {
    let mut national: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut regional: BTreeMap<String, BTreeMap<(String, String), i64>> = BTreeMap::new();
    for count in store.incident_counts(&mission.id).await? {
        if region.is_some_and(|code| code != count.region) {
            continue;
        }
        let key = (count.category, count.severity);
        *national.entry(key.clone()).or_default() += count.reports;
        *regional.entry(count.region).or_default().entry(key).or_default() += count.reports;
    }
    let empty = BTreeMap::new();
    let by_region = mission
        .regions
        .iter()
        .filter(|r| region.is_none_or(|code| code == r.code))
        .map(|r| {
            let counts = regional.get(&r.code).unwrap_or(&empty);
            RegionIncidentsView {
                region: r.code.clone(),
                total: counts.values().sum(),
                by_category: by_category(counts),
            }
        })
        .collect();
    Ok(IncidentSummaryView {
        region: region.map(str::to_owned),
        total: national.values().sum(),
        by_category: by_category(&national),
        by_region,
    })
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResultsView {
    /// The region asked about, if one was; the figures below are then that region's.
    pub region: Option<String>,
    #[serde(flatten)]
    pub totals: ResultFigures,
    /// The same figures per region, in the mission's order.
    pub by_region: Vec<RegionResultsView>,
    /// Stations whose teams' current protocols disagree (see `rule` and /api/v1/discrepancies).
    pub disputed: Vec<String>,
    /// How each station's counted protocol is chosen.
    pub rule: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RegionResultsView {
    pub region: String,
    #[serde(flatten)]
    pub figures: ResultFigures,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ResultFigures {
    pub contest: String,
    /// Stations with a counted protocol for the contest.
    pub stations_counted: i64,
    /// Stations of the roster in scope.
    pub stations_expected: i64,
    pub registered_voters: i64,
    pub ballots_in_box: i64,
    pub invalid: i64,
    pub valid: i64,
    /// Ballots in the box over registered voters, at the stations counted.
    pub turnout: f64,
    /// Valid votes per choice, in ballot order.
    pub votes: Ordered<i64>,
    /// Each choice's fraction of the valid votes (0 when there are none).
    pub shares: Ordered<f64>,
}

impl ResultFigures {
    pub fn of(results: &ContestResults, stations_expected: i64) -> Self {
        let valid = results.valid();
        Self {
            contest: results.contest.clone(),
            stations_counted: results.stations_counted,
            stations_expected,
            registered_voters: results.registered_voters,
            ballots_in_box: results.ballots_in_box,
            invalid: results.invalid,
            valid,
            turnout: results.turnout(),
            votes: Ordered(results.votes.clone()),
            shares: Ordered(results.votes.iter().map(|(c, n)| (c.clone(), share(*n, valid))).collect()),
        }
    }
}

pub async fn results(
    store: &Store,
    mission: &Mission,
    contest: &Contest,
    region: Option<&str>,
) -> Result<ResultsView, StoreError> {
    let stations_in = |code: &str| mission.stations.iter().filter(|s| s.region == code).count() as i64;
    let mut total = ContestResults::empty(&contest.id, contest.choices.iter().map(|c| c.code.clone()));
    let mut by_region = Vec::new();
    for (code, results) in store.results_by_region(&mission.id, &contest.id).await? {
        if region.is_some_and(|r| r != code) {
            continue;
        }
        total.absorb(&results);
        by_region.push(RegionResultsView {
            figures: ResultFigures::of(&results, stations_in(&code)),
            region: code,
        });
    }
    let expected = by_region.iter().map(|r| r.figures.stations_expected).sum();
    let disputed = store
        .disputed_stations(&mission.id, &contest.id)
        .await?
        .into_iter()
        .filter(|(_, in_region)| region.is_none_or(|r| r == in_region))
        .map(|(station, _)| station)
        .collect();
    Ok(ResultsView {
        region: region.map(str::to_owned),
        totals: ResultFigures::of(&total, expected),
        by_region,
        disputed,
        rule: RESULT_RULE.to_owned(),
    })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiscrepanciesView {
    pub discrepancies: Vec<DiscrepancyView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiscrepancyView {
    pub station: String,
    pub region: String,
    pub contest: String,
    /// The report whose protocol counts (the first of `reports`).
    pub counted: String,
    /// Every team's current, not-held protocol, the counted one first.
    pub reports: Vec<ProtocolCopyView>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProtocolCopyView {
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
    /// Votes per choice, in ballot order.
    pub votes: Ordered<i64>,
}

/// Every choice of `contest` in ballot order with the votes `votes` gives it, then any code
/// `votes` has that the contest does not.
fn in_ballot_order(contest: &Contest, votes: &[(String, i64)]) -> Ordered<i64> {
    let of = |code: &str| votes.iter().find(|(c, _)| c == code).map_or(0, |(_, n)| *n);
    let mut ordered: Vec<(String, i64)> =
        contest.choices.iter().map(|c| (c.code.clone(), of(&c.code))).collect();
    ordered.extend(votes.iter().filter(|(c, _)| contest.choice(c).is_none()).cloned());
    Ordered(ordered)
}

pub async fn discrepancies(
    store: &Store,
    mission: &Mission,
    contest: Option<&Contest>,
) -> Result<DiscrepanciesView, StoreError> {
    let mut discrepancies = Vec::new();
    for contest in mission.contests.iter().filter(|c| contest.is_none_or(|only| only.id == c.id)) {
        for d in store.result_discrepancies(&mission.id, &contest.id).await? {
            discrepancies.push(DiscrepancyView {
                counted: d.reports.first().map(|r| r.report_id.clone()).unwrap_or_default(),
                station: d.station,
                region: d.region,
                contest: d.contest,
                reports: d
                    .reports
                    .into_iter()
                    .map(|r| ProtocolCopyView {
                        votes: in_ballot_order(contest, &r.votes),
                        report_id: r.report_id,
                        observer: r.observer,
                        observed_at: r.observed_at,
                        registered_voters: r.registered_voters,
                        ballots_received: r.ballots_received,
                        ballots_issued: r.ballots_issued,
                        ballots_spoiled: r.ballots_spoiled,
                        ballots_unused: r.ballots_unused,
                        ballots_in_box: r.ballots_in_box,
                        invalid: r.invalid,
                    })
                    .collect(),
            });
        }
    }
    Ok(DiscrepanciesView { discrepancies })
}

// ---------------------------------------------------------------------------------------------
// Reports

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReportsView {
    /// Oldest change first.
    pub reports: Vec<ReportSummaryView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A report's current revision.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReportSummaryView {
    pub report_id: String,
    pub revision: i64,
    pub kind: ReportKind,
    pub observer: String,
    pub station: String,
    pub observed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub assessment: Option<String>,
    /// Left out of findings and results: its review state is not `accepted`.
    pub held: bool,
    /// `accepted` (counted), `held` (flagged, waiting for a reviewer) or `rejected` (kept, never
    /// counted).
    pub review_state: String,
}

impl From<ReportSummary> for ReportSummaryView {
    fn from(r: ReportSummary) -> Self {
        Self {
            report_id: r.report_id,
            revision: r.revision,
            kind: r.kind,
            observer: r.observer,
            station: r.station,
            observed_at: r.observed_at,
            received_at: r.received_at,
            assessment: r.assessment,
            held: r.quarantined,
            review_state: r.review_state.as_str().to_owned(),
        }
    }
}

pub async fn reports(
    store: &Store,
    mission: &Mission,
    filter: &ReportFilter,
    after: Option<i64>,
    limit: u32,
) -> Result<ReportsView, StoreError> {
    let page = store.list_reports(&mission.id, filter, after, limit).await?;
    Ok(ReportsView {
        reports: page.reports.into_iter().map(ReportSummaryView::from).collect(),
        next: page.next.map(|n| n.to_string()),
    })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReportView {
    pub current: ReportSummaryView,
    /// Every revision received, in the order received.
    pub revisions: Vec<RevisionView>,
    /// Versions of a revision whose content differed from the one recorded first.
    pub conflicts: Vec<ConflictView>,
    /// Who set the current review state (`null`: the state it arrived with).
    pub decided_by: Option<ReviewActionView>,
    /// Every decision and comment about the report, oldest first.
    pub review: Vec<ReviewActionView>,
}

/// One action of the review log.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReviewActionView {
    pub id: i64,
    /// `accept`, `hold`, `reject`, `comment`, `settle` or `pick`.
    pub action: String,
    pub report_id: Option<String>,
    /// The revision decided about or commented on.
    pub revision: Option<i64>,
    pub station: Option<String>,
    pub contest: Option<String>,
    /// For `settle`: the report whose protocol counts (`null`: none until a recount). For
    /// `pick`: the content hash of the version of the revision that counts.
    pub chosen: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    /// The reviewer (their token's name, or the name given to the command).
    pub reviewer: String,
    /// Why, or the comment's text.
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl From<ReviewAction> for ReviewActionView {
    fn from(a: ReviewAction) -> Self {
        Self {
            id: a.id,
            action: a.action,
            report_id: a.report_id,
            revision: a.revision,
            station: a.station,
            contest: a.contest,
            chosen: a.chosen,
            from_state: a.from_state.map(|s| s.as_str().to_owned()),
            to_state: a.to_state.map(|s| s.as_str().to_owned()),
            reviewer: a.reviewer,
            reason: a.reason,
            at: a.at,
        }
    }
}

/// One revision from the audit trail.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RevisionView {
    /// Position in the audit trail.
    pub seq: i64,
    pub revision: i64,
    /// SHA-256 of the report's canonical JSON.
    pub content_hash: String,
    /// The broker user that published it, when the broker said.
    pub sender: Option<String>,
    /// How it reached the store: `amqp`.
    pub channel: String,
    pub received_at: DateTime<Utc>,
    /// Whether the broker had delivered it before.
    pub redelivered: bool,
    /// Why validation held it, if it did.
    pub flags: Vec<FlagView>,
    /// The report exactly as received.
    pub payload: String,
    /// The position of this revision's entry in the audit chain, and its hash.
    pub audit_position: Option<i64>,
    pub audit_hash: Option<String>,
    /// 0 for the version received first; 1, 2, … for a version kept aside (see `conflicts`)
    /// that a reviewer picked to count, stored again.
    pub variant: i64,
    /// Whether this is the version that counts now.
    pub in_force: bool,
}

/// A version of a revision whose content differed from the one received first, kept aside. A
/// reviewer picks which version counts (`POST /api/v1/reports/{report_id}/version`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConflictView {
    pub revision: i64,
    pub content_hash: String,
    pub sender: Option<String>,
    pub received_at: DateTime<Utc>,
    pub payload: String,
    /// Whether a reviewer picked this version, and it counts now.
    pub in_force: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FlagView {
    /// The flag's code (docs/report-codes.md).
    pub code: String,
    /// Where in the report, e.g. `body.protocols[0]`.
    pub path: String,
    pub message: String,
}

impl RevisionView {
    fn of(record: AuditRecord, in_force: i64) -> Result<Self, StoreError> {
        let flags = serde_json::from_value::<Vec<StoredFlag>>(record.flags.clone()).map_err(|e| {
            StoreError::Permanent(format!(
                "the flags of revision {} are not a list of flags: {e}",
                record.seq
            ))
        })?;
        Ok(Self {
            seq: record.seq,
            revision: record.revision,
            content_hash: record.content_hash,
            sender: record.sender,
            channel: record.channel,
            received_at: record.received_at,
            redelivered: record.redelivered,
            flags: flags
                .into_iter()
                .map(|f| FlagView { code: f.code, path: f.path, message: f.message })
                .collect(),
            payload: record.payload,
            audit_position: record.audit.as_ref().map(|(position, _)| *position),
            audit_hash: record.audit.map(|(_, hash)| hash),
            variant: record.variant,
            in_force: record.seq == in_force,
        })
    }
}

/// A flag as the audit trail stores it (the model's `Flag` serialised).
#[derive(Debug, serde::Deserialize)]
struct StoredFlag {
    code: String,
    path: String,
    message: String,
}

pub async fn report(
    store: &Store,
    mission: &Mission,
    report_id: &str,
) -> Result<Option<ReportView>, StoreError> {
    let Some(history) = store.report_history(&mission.id, report_id).await? else {
        return Ok(None);
    };
    let review: Vec<ReviewActionView> =
        store.review_log(report_id).await?.into_iter().map(ReviewActionView::from).collect();
    let decided_by = store
        .standing(&mission.id, report_id)
        .await?
        .and_then(|standing| standing.set_by)
        .map(ReviewActionView::from);
    // The report's cursor is the seq of the version in force.
    let in_force = history.current.cursor;
    let revisions: Vec<RevisionView> =
        history.revisions.into_iter().map(|r| RevisionView::of(r, in_force)).collect::<Result<_, _>>()?;
    let counted = revisions.iter().find(|r| r.in_force).map(|r| (r.revision, r.content_hash.clone()));
    Ok(Some(ReportView {
        decided_by,
        review,
        current: history.current.into(),
        revisions,
        conflicts: history
            .conflicts
            .into_iter()
            .map(|c| ConflictView {
                in_force: counted.as_ref() == Some(&(c.revision, c.content_hash.clone())),
                revision: c.revision,
                content_hash: c.content_hash,
                sender: c.sender,
                received_at: c.received_at,
                payload: c.payload,
            })
            .collect(),
    }))
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HeldView {
    /// Oldest change first.
    pub reports: Vec<HeldReportView>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HeldReportView {
    #[serde(flatten)]
    pub report: ReportSummaryView,
    pub flags: Vec<FlagView>,
}

pub async fn held(
    store: &Store,
    mission: &Mission,
    after: Option<i64>,
    limit: u32,
) -> Result<HeldView, StoreError> {
    let page = store.held(&mission.id, after, limit).await?;
    Ok(HeldView {
        reports: page
            .reports
            .into_iter()
            .map(|h| HeldReportView {
                report: h.report.into(),
                flags: h
                    .flags
                    .into_iter()
                    .map(|f| FlagView { code: f.code, path: f.path, message: f.message })
                    .collect(),
            })
            .collect(),
        next: page.next.map(|n| n.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_answer_or_the_mean_of_the_two_middle_ones() {
        let of = |pairs: &[(i64, i64)]| median(&pairs.iter().copied().collect());
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[(7, 1)]), Some(7.0));
        assert_eq!(of(&[(1, 1), (2, 1)]), Some(1.5));
        assert_eq!(of(&[(1, 2), (9, 1)]), Some(1.0));
        assert_eq!(of(&[(1, 1), (5, 2), (9, 1)]), Some(5.0));
        assert_eq!(of(&[(1, 3), (9, 3)]), Some(5.0));
        assert_eq!(of(&[(0, 0), (4, 2)]), Some(4.0));
    }

    #[test]
    fn shares_of_nothing_are_zero() {
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(1, 4), 0.25);
    }
}
