//! The reviewers' endpoints: decide a report's review state, comment on it, pick which version of
//! a conflicting revision counts, settle which team's protocol counts at a disputed station; and
//! the audit chain's head. Every `POST` needs a token
//! whose role may review ([`crate::auth::may_review`]); the reviewer recorded is the token's name.
//!
//! A body is JSON of at most [`MAX_BODY_BYTES`], read whole and judged as a whole: an unknown
//! field, a missing one or a value of the wrong shape is a 400 whose detail names it.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use pollwatch_store::{
    Decided, Decision, Pick, ReviewError, ReviewState, Settlement, Standing, TokenRecord, is_content_hash,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;
use crate::routes::{Answered, endpoint, json, path_value};
use crate::views::ReviewActionView;
use crate::{Api, auth};

/// Largest request body taken (a reason is at most [`MAX_REASON_CHARS`] characters).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest reason or comment.
pub const MAX_REASON_CHARS: usize = 2_000;

/// A decision about a report's current revision.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// What to do: `accept` (count it), `hold` (keep it out, waiting) or `reject` (never count it).
    pub decision: DecisionName,
    /// Why, for the review log (1 to 2,000 characters, not only spaces, no control characters
    /// but line breaks and tabs).
    #[schemars(length(min = 1, max = 2000), regex(pattern = r"\S"))]
    pub reason: String,
    /// The state the reviewer saw; if the report is in another state by now, nothing changes
    /// and the answer is a 409 naming its state and who set it.
    pub expected_state: StateName,
    /// The revision the reviewer saw; a 409 if another is current by now.
    #[serde(default)]
    pub expected_revision: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionName {
    Accept,
    Hold,
    Reject,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Accepted,
    Held,
    Rejected,
}

impl From<DecisionName> for ReviewState {
    fn from(name: DecisionName) -> Self {
        match name {
            DecisionName::Accept => Self::Accepted,
            DecisionName::Hold => Self::Held,
            DecisionName::Reject => Self::Rejected,
        }
    }
}

impl From<StateName> for ReviewState {
    fn from(name: StateName) -> Self {
        match name {
            StateName::Accepted => Self::Accepted,
            StateName::Held => Self::Held,
            StateName::Rejected => Self::Rejected,
        }
    }
}

/// A comment on a report.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// 1 to 2,000 characters, not only spaces, no control characters but line breaks and tabs.
    #[schemars(length(min = 1, max = 2000), regex(pattern = r"\S"))]
    pub text: String,
}

/// Which report's protocol counts at a station for a contest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolRequest {
    /// The contest id, e.g. `president`.
    #[schemars(length(min = 1, max = 64))]
    pub contest: String,
    /// The report whose protocol counts: a current, accepted counting report from the station
    /// with a protocol for the contest. `null`: none counts until a recount.
    pub report_id: Option<uuid::Uuid>,
    /// Why, for the review log (1 to 2,000 characters, not only spaces, no control characters
    /// but line breaks and tabs).
    #[schemars(length(min = 1, max = 2000), regex(pattern = r"\S"))]
    pub reason: String,
}

/// Which version of a report's current revision counts: one received for it, by content hash.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionRequest {
    /// The revision decided about (the report's current one); a 409 if another is current by now.
    pub revision: u32,
    /// The content hash of the version to count: the one in force, or one of the report's
    /// `conflicts` for this revision.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub keep: String,
    /// The content hash of the version the reviewer saw in force; if another is in force by
    /// now, nothing changes and the answer is a 409 naming it and who set it.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub expected_version: String,
    /// Why, for the review log (1 to 2,000 characters, not only spaces, no control characters
    /// but line breaks and tabs).
    #[schemars(length(min = 1, max = 2000), regex(pattern = r"\S"))]
    pub reason: String,
}

/// The reviewer a request acts for: its token's name, if its role may review.
fn reviewer(token: &TokenRecord) -> Result<&str, Problem> {
    if auth::may_review(&token.role) {
        Ok(&token.name)
    } else {
        Err(Problem::forbidden(&format!(
            "a {} token may read but not review; ask for a reviewer token (`pollwatch token add NAME --role reviewer`)",
            token.role
        )))
    }
}

/// The body as `T`, or a 415, 413 or 400 saying what is wrong with it.
fn body<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::unsupported_media_type());
    }
    let bytes = match bytes {
        Ok(bytes) if bytes.len() <= MAX_BODY_BYTES => bytes,
        Ok(_) | Err(BytesRejection::FailedToBufferBody(_)) => return Err(Problem::too_large(MAX_BODY_BYTES)),
        Err(_) => return Err(Problem::invalid_body(None, "the body could not be read".to_owned())),
    };
    // serde's message names the field that is unknown, missing or of the wrong kind.
    let value = serde_json::from_slice(&bytes).map_err(|error| {
        Problem::invalid_body(None, format!("the body is not what this endpoint takes: {error}"))
    })?;
    Ok(value)
}

/// A reason or comment: not blank, not too long, no control characters but line breaks and tabs.
fn text(field: &str, value: &str) -> Result<String, Problem> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Problem::invalid_body(Some(field), format!("`{field}` must say something")));
    }
    if value.chars().count() > MAX_REASON_CHARS {
        return Err(Problem::invalid_body(
            Some(field),
            format!("`{field}` is longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err(Problem::invalid_body(Some(field), format!("`{field}` holds a control character")));
    }
    Ok(value.to_owned())
}

/// The 409 for a decision about a state or revision the report no longer has, in words.
fn stale(report_id: &str, standing: &Standing) -> Problem {
    let by = match &standing.set_by {
        None => "it arrived in that state (validation)".to_owned(),
        Some(action) => format!(
            "{} decided `{}` at {}: {}",
            action.reviewer,
            action.action,
            action.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pollwatch_model::echo(&action.reason)
        ),
    };
    let detail = format!(
        "report {report_id} is {} at revision {} by now, version {} in force; {by}. Nothing was changed: look at \
         it again and decide on what it is now",
        standing.state,
        standing.revision,
        short_hash(&standing.in_force)
    );
    Problem::stale_decision(detail, standing)
}

/// The first 12 digits of a content hash, as the dashboard shows it.
fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `POST /api/v1/reports/{report_id}/review`.
pub(crate) async fn review(
    State(api): State<Api>,
    Extension(token): Extension<TokenRecord>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Answered {
    endpoint("review").params(query.as_deref())?;
    let reviewer = reviewer(&token)?;
    let id = crate::params::report_id(&path_value(path, "report_id")?)?;
    let request: ReviewRequest = body(&headers, bytes)?;
    let reason = text("reason", &request.reason)?;
    let decision = Decision {
        report_id: &id,
        to: request.decision.into(),
        expected: request.expected_state.into(),
        expected_revision: request.expected_revision.map(i64::from),
        reviewer,
        reason: &reason,
    };
    match api.store.decide(&api.mission.id, &decision).await? {
        Decided::Done(action) => Ok(json(&ReviewActionView::from(action))),
        Decided::Stale(standing) => Err(stale(&id, &standing)),
        Decided::NotFound => Err(Problem::not_found("report_id", "report", &id, None)),
    }
}

/// `POST /api/v1/reports/{report_id}/comments`.
pub(crate) async fn comment(
    State(api): State<Api>,
    Extension(token): Extension<TokenRecord>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Answered {
    endpoint("comment").params(query.as_deref())?;
    let reviewer = reviewer(&token)?;
    let id = crate::params::report_id(&path_value(path, "report_id")?)?;
    let request: CommentRequest = body(&headers, bytes)?;
    let text = text("text", &request.text)?;
    match api.store.comment(&api.mission.id, &id, reviewer, &text).await? {
        Some(action) => Ok(json(&ReviewActionView::from(action))),
        None => Err(Problem::not_found("report_id", "report", &id, None)),
    }
}

/// `POST /api/v1/reports/{report_id}/version`.
pub(crate) async fn version(
    State(api): State<Api>,
    Extension(token): Extension<TokenRecord>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Answered {
    endpoint("version").params(query.as_deref())?;
    let reviewer = reviewer(&token)?;
    let id = crate::params::report_id(&path_value(path, "report_id")?)?;
    let request: VersionRequest = body(&headers, bytes)?;
    for (field, hash) in [("keep", &request.keep), ("expected_version", &request.expected_version)] {
        if !is_content_hash(hash) {
            return Err(Problem::invalid_body(
                Some(field),
                format!("`{field}` is a content hash: 64 lower-case hexadecimal digits"),
            ));
        }
    }
    let reason = text("reason", &request.reason)?;
    let pick = Pick {
        report_id: &id,
        revision: i64::from(request.revision),
        keep: &request.keep,
        expected: &request.expected_version,
        reviewer,
        reason: &reason,
    };
    match api.store.pick(&api.mission, &pick).await {
        Ok(Decided::Done(action)) => Ok(json(&ReviewActionView::from(action))),
        Ok(Decided::Stale(standing)) => Err(stale(&id, &standing)),
        Ok(Decided::NotFound) => Err(Problem::not_found("report_id", "report", &id, None)),
        Err(ReviewError::Invalid(why)) => Err(Problem::unprocessable(why)),
        Err(ReviewError::Store(error)) => Err(error.into()),
    }
}

/// `POST /api/v1/stations/{code}/protocol`.
pub(crate) async fn protocol(
    State(api): State<Api>,
    Extension(token): Extension<TokenRecord>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Answered {
    endpoint("protocol").params(query.as_deref())?;
    let reviewer = reviewer(&token)?;
    let code = path_value(path, "code")?;
    if api.mission.station(&code).is_none() {
        return Err(Problem::not_found("code", "station", &code, None));
    }
    let request: ProtocolRequest = body(&headers, bytes)?;
    if api.mission.contest(&request.contest).is_none() {
        let allowed = api.mission.contests.iter().map(|c| c.id.clone()).collect();
        return Err(Problem::invalid_value(
            "contest",
            &request.contest,
            "a contest of the mission",
            Some(allowed),
        ));
    }
    let reason = text("reason", &request.reason)?;
    let report_id = request.report_id.map(|id| id.to_string());
    let settlement = Settlement {
        station: &code,
        contest: &request.contest,
        report_id: report_id.as_deref(),
        reviewer,
        reason: &reason,
    };
    match api.store.settle(&api.mission.id, &settlement).await {
        Ok(action) => Ok(json(&ReviewActionView::from(action))),
        Err(ReviewError::Invalid(why)) => Err(Problem::unprocessable(why)),
        Err(ReviewError::Store(error)) => Err(error.into()),
    }
}

/// `GET /api/v1/audit/head`.
pub(crate) async fn audit_head(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    endpoint("audit_head").params(query.as_deref())?;
    let head = api.store.audit_head().await?;
    Ok(json(&AuditHeadView { entries: head.entries, hash: head.hash }))
}

/// The audit chain's head.
#[derive(Debug, Clone, serde::Serialize, JsonSchema)]
pub struct AuditHeadView {
    /// Entries in the chain.
    pub entries: i64,
    /// The last entry's hash (64 zeros for an empty chain): publish it with the statement.
    pub hash: String,
}
