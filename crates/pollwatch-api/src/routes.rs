//! The endpoints: each one's path, parameters and answer, described once in [`ENDPOINTS`] (which
//! the OpenAPI document is generated from and each handler parses its query string by), and its
//! handler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pollwatch_model::{IncidentCategory, Severity};
use pollwatch_store::{IncidentFilter, ReportFilter};
use schemars::{Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Value, json};

use crate::events;
use crate::export::{self, Export};
use crate::params::{Params, kind_names};
use crate::problem::Problem;
use crate::{Api, views};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum In {
    Query,
    Path,
    Header,
}

/// One parameter, as documented and as parsed.
#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub description: &'static str,
    pub schema: fn() -> Value,
}

/// What an endpoint answers with (200).
pub(crate) enum Answer {
    Json(fn(&mut SchemaGenerator) -> Schema),
    Csv,
    Jsonl,
    /// Server-Sent Events whose `data:` is this schema's JSON.
    Events(fn(&mut SchemaGenerator) -> Schema),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json(_) => "Json",
            Self::Csv => "Csv",
            Self::Jsonl => "Jsonl",
            Self::Events(_) => "Events",
        })
    }
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    pub answer: Answer,
    /// Whether a path parameter may name something the mission does not have (404).
    pub may_be_missing: bool,
    pub method: Method,
    /// The JSON body a `POST` takes.
    pub body: Option<fn(&mut SchemaGenerator) -> Schema>,
}

/// How an endpoint is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Reads; any token.
    Get,
    /// Decides; a reviewer's token ([`crate::auth::may_review`]).
    Post,
}

impl Endpoint {
    fn query_names(&self) -> Vec<&'static str> {
        self.params.iter().filter(|p| p.location == In::Query).map(|p| p.name).collect()
    }

    pub(crate) fn params(&self, query: Option<&str>) -> Result<Params, Problem> {
        Params::parse(query, &self.query_names())
    }
}

fn string() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64})
}

fn kind() -> Value {
    json!({"type": "string", "enum": kind_names()})
}

fn region() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "examples": ["bishkek"]})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time", "examples": ["2021-01-10T08:00:00+06:00"]})
}

fn cursor() -> Value {
    json!({"type": "string", "pattern": "^[0-9]{1,18}$"})
}

fn limit() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": crate::params::MAX_LIMIT, "default": crate::params::DEFAULT_LIMIT})
}

fn boolean() -> Value {
    json!({"type": "string", "enum": ["true", "false"]})
}

fn duration() -> Value {
    json!({"type": "string", "pattern": "^[0-9]{1,7}[smhd]?$", "examples": ["60m", "90s", "2h"]})
}

fn severity() -> Value {
    json!({"type": "string", "enum": Severity::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()})
}

fn category() -> Value {
    json!({"type": "string", "enum": IncidentCategory::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()})
}

fn contest() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "examples": ["president", "referendum"]})
}

fn share_of() -> Value {
    json!({"type": "string", "enum": ["valid", "ballots"], "default": "valid"})
}

fn station() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "examples": ["01001"]})
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

const fn query(name: &'static str, description: &'static str, schema: fn() -> Value) -> Param {
    Param { name, location: In::Query, required: false, description, schema }
}

const fn required(name: &'static str, description: &'static str, schema: fn() -> Value) -> Param {
    Param { name, location: In::Query, required: true, description, schema }
}

const fn path(name: &'static str, description: &'static str, schema: fn() -> Value) -> Param {
    Param { name, location: In::Path, required: true, description, schema }
}

const REGION: Param =
    query("region", "Only this region (its code); 404 for a region the mission does not have", region);
const AFTER: Param = query("after", "The `next` of the previous page", cursor);
const LIMIT: Param = query("limit", "Most items on the page", limit);

pub(crate) static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/api/v1/mission",
        operation_id: "mission",
        summary: "The mission: election day, regions, contests with their choices in ballot order, roster sizes",
        params: &[],
        answer: Answer::Json(|g| g.subschema_for::<views::MissionView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/coverage",
        operation_id: "coverage",
        summary: "Which stations have a report of a kind, per region, with the codes of those that have not",
        params: &[required("phase", "The report kind", kind), REGION],
        answer: Answer::Json(|g| g.subschema_for::<views::CoverageView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/observers",
        operation_id: "observers",
        summary: "Observers from whom nothing was received for a while (or ever)",
        params: &[query("silent_for", "How long without a report, e.g. 60m (default 60m)", duration)],
        answer: Answer::Json(|g| g.subschema_for::<views::ObserversView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/findings",
        operation_id: "findings",
        summary: "Overall assessments and the distribution of checklist answers for a phase; held reports left out",
        params: &[required("phase", "The report kind", kind), REGION],
        answer: Answer::Json(|g| g.subschema_for::<views::FindingsView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/incidents",
        operation_id: "incidents",
        summary: "Incident reports, newest first, a page at a time; held reports left out",
        params: &[
            query("severity", "Only this severity", severity),
            query("category", "Only this category", category),
            REGION,
            query("since", "Only incidents observed at or after this time", time),
            AFTER,
            LIMIT,
        ],
        answer: Answer::Json(|g| g.subschema_for::<views::IncidentsView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/incidents/summary",
        operation_id: "incident_summary",
        summary: "Incidents by category and severity, nationally and per region",
        params: &[REGION],
        answer: Answer::Json(|g| g.subschema_for::<views::IncidentSummaryView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/results/{contest}",
        operation_id: "results",
        summary: "A contest's results from the observers' copies of the protocols, nationally and per region",
        params: &[path("contest", "The contest id, e.g. president", contest), REGION],
        answer: Answer::Json(|g| g.subschema_for::<views::ResultsView>()),
        may_be_missing: true,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/pvt",
        operation_id: "pvt",
        summary: "The quick count: each choice's estimated share with its 95 % and 99 % margins, turnout, and how far each stratum's sample is in (docs/pvt.md); 404 until the mission folder has a sample",
        params: &[
            query("contest", "The contest (default: the mission's first)", contest),
            query("share_of", "What a share is of: the valid votes, or the ballots in the box", share_of),
            query("as_of", "Estimate as of this moment: protocols received later are left out", time),
        ],
        answer: Answer::Json(|g| g.subschema_for::<crate::pvt::PvtView>()),
        may_be_missing: true,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/discrepancies",
        operation_id: "discrepancies",
        summary: "Stations where teams' current protocols disagree, with every team's figures",
        params: &[query("contest", "Only this contest", contest)],
        answer: Answer::Json(|g| g.subschema_for::<views::DiscrepanciesView>()),
        may_be_missing: true,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/reports",
        operation_id: "reports",
        summary: "Current reports, oldest change first, a page at a time",
        params: &[
            query("kind", "Only this kind", kind),
            query("station", "Only this station's", string),
            query("observer", "Only this observer's", string),
            REGION,
            query("held", "Only held (true) or only not held (false)", boolean),
            query("flag", "Only reports carrying this flag code", string),
            query("since", "Only reports whose current revision was received at or after this time", time),
            query(
                "conflicted",
                "Only reports whose current revision has a conflicting version no reviewer has picked between (true), \
                 or none such (false)",
                boolean,
            ),
            AFTER,
            LIMIT,
        ],
        answer: Answer::Json(|g| g.subschema_for::<views::ReportsView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/reports/{report_id}",
        operation_id: "report",
        summary: "A report's current revision and its whole history",
        params: &[path("report_id", "The report id (a UUID)", uuid)],
        answer: Answer::Json(|g| g.subschema_for::<views::ReportView>()),
        may_be_missing: true,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/held",
        operation_id: "held",
        summary: "Reports held for review, with the flags that hold them",
        params: &[AFTER, LIMIT],
        answer: Answer::Json(|g| g.subschema_for::<views::HeldView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/reports/{report_id}/review",
        operation_id: "review",
        summary: "Decide a report's review state (accept, hold, reject), if it is still in the state the reviewer saw; \
                  a 409 names the state it is in and who set it",
        params: &[path("report_id", "The report id (a UUID)", uuid)],
        answer: Answer::Json(|g| g.subschema_for::<views::ReviewActionView>()),
        may_be_missing: true,
        method: Method::Post,
        body: Some(|g| g.subschema_for::<crate::review::ReviewRequest>()),
    },
    Endpoint {
        path: "/api/v1/reports/{report_id}/comments",
        operation_id: "comment",
        summary: "Add a comment to a report's history",
        params: &[path("report_id", "The report id (a UUID)", uuid)],
        answer: Answer::Json(|g| g.subschema_for::<views::ReviewActionView>()),
        may_be_missing: true,
        method: Method::Post,
        body: Some(|g| g.subschema_for::<crate::review::CommentRequest>()),
    },
    Endpoint {
        path: "/api/v1/reports/{report_id}/version",
        operation_id: "version",
        summary: "Pick which version of a report's current revision counts, when versions with other content \
                  arrived for it (its `conflicts`); every version stays stored. A 409 if another is in force by now",
        params: &[path("report_id", "The report id (a UUID)", uuid)],
        answer: Answer::Json(|g| g.subschema_for::<views::ReviewActionView>()),
        may_be_missing: true,
        method: Method::Post,
        body: Some(|g| g.subschema_for::<crate::review::VersionRequest>()),
    },
    Endpoint {
        path: "/api/v1/stations/{code}/protocol",
        operation_id: "protocol",
        summary: "Settle a disputed station: which report's protocol counts for a contest, or none until a recount",
        params: &[path("code", "The station's code", station)],
        answer: Answer::Json(|g| g.subschema_for::<views::ReviewActionView>()),
        may_be_missing: true,
        method: Method::Post,
        body: Some(|g| g.subschema_for::<crate::review::ProtocolRequest>()),
    },
    Endpoint {
        path: "/api/v1/audit/head",
        operation_id: "audit_head",
        summary: "The audit chain's head: its number of entries and last hash, for the mission to publish",
        params: &[],
        answer: Answer::Json(|g| g.subschema_for::<crate::review::AuditHeadView>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/events",
        operation_id: "events",
        summary: "What the store has recorded, as it happens (Server-Sent Events): a `ready` event, \
                  then a `change` event a few times a second at most, naming the report kinds to read again",
        params: &[Param {
            name: "Last-Event-ID",
            location: In::Header,
            required: false,
            description: "The id of the last event received: the stream starts with what changed since",
            schema: || json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
        }],
        answer: Answer::Events(|g| g.subschema_for::<events::ChangeEvent>()),
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/export/reports.jsonl",
        operation_id: "export_reports_jsonl",
        summary: "Every revision of the audit trail, one JSON object per line, in the order received",
        params: &[],
        answer: Answer::Jsonl,
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/export/audit.jsonl",
        operation_id: "export_audit_jsonl",
        summary: "The audit chain, one entry per line in order: its position, hash and the exact text hashed (docs/review.md)",
        params: &[],
        answer: Answer::Jsonl,
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/export/reports.csv",
        operation_id: "export_reports_csv",
        summary: "Every revision of the audit trail as CSV, in the order received",
        params: &[],
        answer: Answer::Csv,
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
    Endpoint {
        path: "/api/v1/export/results.csv",
        operation_id: "export_results_csv",
        summary: "Every station's counted result, one row per station and contest",
        params: &[],
        answer: Answer::Csv,
        may_be_missing: false,
        method: Method::Get,
        body: None,
    },
];

pub(crate) fn endpoint(operation_id: &str) -> &'static Endpoint {
    ENDPOINTS.iter().find(|e| e.operation_id == operation_id).expect("an endpoint of the table")
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    json_bytes(serde_json::to_vec(value).expect("a view serialises"))
}

fn json_bytes(body: impl Into<Body>) -> Response {
    let body: Body = body.into();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) type Answered = Result<Response, Problem>;

/// The shared answer to `question` (`crate::cache`): computed by `compute`, a view serialised.
async fn shared<F, V>(
    api: &Api,
    question: String,
    compute: impl Fn(Api) -> F + Send + Sync + 'static,
) -> Answered
where
    F: Future<Output = Result<V, pollwatch_store::StoreError>> + Send + 'static,
    V: Serialize,
{
    let for_compute = api.clone();
    let compute = Arc::new(compute);
    let answer = api
        .answers
        .get(question, move || {
            let (api, compute) = (for_compute.clone(), Arc::clone(&compute));
            async move {
                let view = compute(api).await?;
                Ok(serde_json::to_vec(&view).expect("a view serialises"))
            }
        })
        .await?;
    Ok(json_bytes(answer))
}

/// The default of `/observers?silent_for`.
const DEFAULT_SILENT_FOR: Duration = Duration::from_secs(3_600);

pub(crate) async fn mission(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    endpoint("mission").params(query.as_deref())?;
    Ok(json(&views::mission(&api.mission)))
}

pub(crate) async fn coverage(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("coverage").params(query.as_deref())?;
    let (phase, region) = (params.required_kind("phase")?, params.region(&api.mission)?);
    let question = format!("coverage {phase} {region:?}");
    shared(&api, question, move |api: Api| {
        let region = region.clone();
        async move { views::coverage(&api.store, &api.mission, phase, region.as_deref()).await }
    })
    .await
}

pub(crate) async fn observers(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("observers").params(query.as_deref())?;
    let silent_for = params.duration("silent_for")?.unwrap_or(DEFAULT_SILENT_FOR);
    Ok(json(&views::observers(&api.store, &api.mission, silent_for, chrono::Utc::now()).await?))
}

pub(crate) async fn findings(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("findings").params(query.as_deref())?;
    let (phase, region) = (params.required_kind("phase")?, params.region(&api.mission)?);
    let question = format!("findings {phase} {region:?}");
    shared(&api, question, move |api: Api| {
        let region = region.clone();
        async move { views::findings(&api.store, &api.mission, phase, region.as_deref()).await }
    })
    .await
}

pub(crate) async fn incidents(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("incidents").params(query.as_deref())?;
    let filter = IncidentFilter {
        severity: params.severity("severity")?,
        category: params.category("category")?,
        region: params.region(&api.mission)?,
        since: params.time("since")?,
    };
    let (after, limit) = (params.cursor("after")?, params.limit()?);
    Ok(json(&views::incidents(&api.store, &api.mission, &filter, after, limit).await?))
}

pub(crate) async fn incident_summary(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("incident_summary").params(query.as_deref())?;
    let region = params.region(&api.mission)?;
    let question = format!("incident summary {region:?}");
    shared(&api, question, move |api: Api| {
        let region = region.clone();
        async move { views::incident_summary(&api.store, &api.mission, region.as_deref()).await }
    })
    .await
}

pub(crate) fn path_value(path: Result<Path<String>, PathRejection>, name: &str) -> Result<String, Problem> {
    path.map(|Path(value)| value)
        .map_err(|_| Problem::invalid_value(name, "", "a well-formed path segment", None))
}

pub(crate) async fn results(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answered {
    let params = endpoint("results").params(query.as_deref())?;
    let id = path_value(path, "contest")?;
    let contest = crate::params::contest(&api.mission, "contest", &id)?.id.clone();
    let region = params.region(&api.mission)?;
    let question = format!("results {contest} {region:?}");
    shared(&api, question, move |api: Api| {
        let (contest, region) = (contest.clone(), region.clone());
        async move {
            let contest = api.mission.contest(&contest).expect("a contest of the mission");
            views::results(&api.store, &api.mission, contest, region.as_deref()).await
        }
    })
    .await
}

pub(crate) async fn pvt(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("pvt").params(query.as_deref())?;
    let contest = match params.code("contest")? {
        Some(id) => crate::params::contest(&api.mission, "contest", &id)?.id.clone(),
        None => match api.mission.contests.first() {
            Some(contest) => contest.id.clone(),
            None => return Err(Problem::not_found("contest", "contest", "", None)),
        },
    };
    let share_of = crate::params::share_of(&params)?;
    let as_of = params.time("as_of")?;
    let (sample, fingerprint) = crate::pvt::read_sample(&api).await?;
    let (official, official_fingerprint) = crate::pvt::read_official(&api).await?;
    let (sample, official) = (Arc::new(sample), Arc::new(official));
    let question = format!("pvt {contest} {share_of:?} {as_of:?} {fingerprint} {official_fingerprint}");
    shared(&api, question, move |api: Api| {
        let (contest, sample, official) = (contest.clone(), Arc::clone(&sample), Arc::clone(&official));
        async move {
            let figures = official.as_ref().as_ref().and_then(|o| o.contests.get(&contest));
            let contest = api.mission.contest(&contest).expect("a contest of the mission");
            let asked =
                crate::pvt::Asked { share_of, threshold: api.pvt_threshold, as_of, official: figures };
            crate::pvt::estimate(&api.store, &api.mission, &sample, contest, &asked).await
        }
    })
    .await
}

pub(crate) async fn discrepancies(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("discrepancies").params(query.as_deref())?;
    let contest = match params.code("contest")? {
        Some(id) => Some(crate::params::contest(&api.mission, "contest", &id)?.id.clone()),
        None => None,
    };
    let question = format!("discrepancies {contest:?}");
    shared(&api, question, move |api: Api| {
        let contest = contest.clone();
        async move {
            let contest = contest.as_deref().and_then(|id| api.mission.contest(id));
            views::discrepancies(&api.store, &api.mission, contest).await
        }
    })
    .await
}

pub(crate) async fn reports(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("reports").params(query.as_deref())?;
    let filter = ReportFilter {
        kind: params.kind("kind")?,
        region: params.region(&api.mission)?,
        station: params.code("station")?,
        observer: params.code("observer")?,
        flag: params.code("flag")?,
        quarantined: params.bool("held")?,
        state: None,
        since: params.time("since")?,
        conflicted: params.bool("conflicted")?,
    };
    let (after, limit) = (params.cursor("after")?, params.limit()?);
    Ok(json(&views::reports(&api.store, &api.mission, &filter, after, limit).await?))
}

pub(crate) async fn report(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answered {
    endpoint("report").params(query.as_deref())?;
    let id = crate::params::report_id(&path_value(path, "report_id")?)?;
    match views::report(&api.store, &api.mission, &id).await? {
        Some(view) => Ok(json(&view)),
        None => Err(Problem::not_found("report_id", "report", &id, None)),
    }
}

pub(crate) async fn held(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = endpoint("held").params(query.as_deref())?;
    let (after, limit) = (params.cursor("after")?, params.limit()?);
    Ok(json(&views::held(&api.store, &api.mission, after, limit).await?))
}

/// Chunks in flight between the export and the connection: the memory an export holds.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

async fn stream_export(api: Api, format: Export, operation_id: &str, query: Option<&str>) -> Answered {
    endpoint(operation_id).params(query)?;
    // Fail before the 200 if the store does not answer at all.
    api.store.ping().await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<export::Chunk>(EXPORT_CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        match export::run(&api.store, &api.mission, format, sender).await {
            Ok(rows) => tracing::debug!(rows, export = format.file_name(), "export finished"),
            // The response has begun: ending it early is all that is left; the reader sees a
            // truncated body (no final newline), and the log says why.
            Err(error) => {
                tracing::warn!(%error, export = format.file_name(), "export ended by a store error");
            }
        }
    });
    let chunks = futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx).map(|chunk| chunk.map(|c| Ok::<_, std::convert::Infallible>(c.bytes)))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    let disposition = format!("attachment; filename=\"{}\"", format.file_name());
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("a plain header"));
    Ok(response)
}

pub(crate) async fn export_reports_jsonl(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    stream_export(api, Export::ReportsJsonl, "export_reports_jsonl", query.as_deref()).await
}

pub(crate) async fn export_audit_jsonl(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    stream_export(api, Export::AuditJsonl, "export_audit_jsonl", query.as_deref()).await
}

pub(crate) async fn export_reports_csv(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    stream_export(api, Export::ReportsCsv, "export_reports_csv", query.as_deref()).await
}

pub(crate) async fn export_results_csv(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    stream_export(api, Export::ResultsCsv, "export_results_csv", query.as_deref()).await
}

/// `GET /api/v1/events`.
pub(crate) async fn events(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answered {
    endpoint("events").params(query.as_deref())?;
    let last_event_id = events::last_event_id(&headers)?;
    // The middleware has checked it; the stream checks it again while it lasts.
    let token = crate::auth::bearer(&headers).unwrap_or_default().to_owned();
    Ok(events::stream(&api, token, last_event_id).into_response())
}
