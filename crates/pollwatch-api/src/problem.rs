//! Errors as `application/problem+json` (RFC 9457): what was wrong, which parameter, and what
//! it may be. Nothing a client sent is echoed unbounded, and no internal detail (a SQL error, a
//! backtrace) reaches the client: it goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pollwatch_store::StoreError;
use schemars::JsonSchema;
use serde::Serialize;

/// The media type of every error the API returns.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response (boxed: it travels in every handler's `Err`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem(Box<ProblemDetails>);

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;

    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

/// What an error response says (RFC 9457).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(rename = "Problem")]
pub struct ProblemDetails {
    /// A URI naming the kind of problem; relative to the API, e.g. `/problems/unknown-parameter`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
    /// The query or path parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The values (or names) the parameter may take, when they are few enough to list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// For a decision refused because the report changed (409): its review state now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// For a 409: its current revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    /// For a 409: who set the current state (`null` when it is the state the report arrived
    /// with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
    /// For a 409: the content hash of the version of its revision that counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
}

/// Most allowed values listed in one problem.
const MAX_ALLOWED: usize = 50;

/// Longest parameter name echoed back.
const MAX_NAME_BYTES: usize = 64;

impl Problem {
    fn new(status: StatusCode, kind: &str, title: &str, detail: String) -> Self {
        Self(Box::new(ProblemDetails {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: pollwatch_model::bounded(detail, pollwatch_model::MAX_DETAIL_BYTES),
            parameter: None,
            allowed: None,
            current_state: None,
            current_revision: None,
            set_by: None,
            current_version: None,
        }))
    }

    /// A token that may read but not do what was asked.
    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail.to_owned())
    }

    /// A request body that is not what the endpoint takes; `field` names the part at fault.
    pub fn invalid_body(field: Option<&str>, detail: String) -> Self {
        let mut problem = Self::new(StatusCode::BAD_REQUEST, "invalid-body", "Invalid request body", detail);
        problem.parameter = field.map(|f| pollwatch_model::bounded(f.to_owned(), MAX_NAME_BYTES));
        problem
    }

    /// A body larger than the endpoint takes.
    pub fn too_large(most: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("the body is larger than the {most} bytes this endpoint takes"),
        )
    }

    /// A body of another media type than JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json".to_owned(),
        )
    }

    /// A well-formed request that cannot be carried out as it stands (the detail says why).
    pub fn unprocessable(detail: String) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "Cannot be done", detail)
    }

    /// A decision about a state, revision or version that is no longer the report's.
    pub fn stale_decision(detail: String, standing: &pollwatch_store::Standing) -> Self {
        let mut problem = Self::new(StatusCode::CONFLICT, "stale-decision", "The report has changed", detail);
        problem.current_state = Some(standing.state.as_str().to_owned());
        problem.current_revision = Some(standing.revision);
        problem.set_by = standing.set_by.as_ref().map(|a| a.reviewer.clone());
        problem.current_version = Some(standing.in_force.clone());
        problem
    }

    /// A parameter the endpoint does not take.
    pub fn unknown_parameter(name: &str, allowed: &[&str]) -> Self {
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "unknown-parameter",
            "Unknown parameter",
            format!("this endpoint takes no parameter {}", quoted(name)),
        );
        problem.parameter = Some(pollwatch_model::bounded(name.to_owned(), MAX_NAME_BYTES));
        problem.allowed = Some(allowed.iter().map(|name| (*name).to_owned()).collect());
        problem
    }

    /// A parameter given twice.
    pub fn repeated_parameter(name: &str) -> Self {
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "repeated-parameter",
            "Parameter given more than once",
            format!("{} may be given once", quoted(name)),
        );
        problem.parameter = Some(name.to_owned());
        problem
    }

    /// A required parameter that is missing.
    pub fn missing_parameter(name: &str, allowed: Option<Vec<String>>) -> Self {
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "missing-parameter",
            "Missing parameter",
            format!("{} is required", quoted(name)),
        );
        problem.parameter = Some(name.to_owned());
        problem.allowed = allowed.map(truncated);
        problem
    }

    /// A value the parameter cannot take; `expected` says what it may be.
    pub fn invalid_value(name: &str, value: &str, expected: &str, allowed: Option<Vec<String>>) -> Self {
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-value",
            "Invalid parameter value",
            format!("{} is not {expected}: {}", quoted(name), quoted(value)),
        );
        problem.parameter = Some(name.to_owned());
        problem.allowed = allowed.map(truncated);
        problem
    }

    /// A contest, region or report the mission does not have.
    pub fn not_found(parameter: &str, what: &str, value: &str, allowed: Option<Vec<String>>) -> Self {
        let mut problem = Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("the mission has no {what} {}", quoted(value)),
        );
        problem.parameter = Some(parameter.to_owned());
        problem.allowed = allowed.map(truncated);
        problem
    }

    /// The mission folder has no quick-count sample.
    pub fn no_pvt_sample() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-pvt-sample",
            "No quick-count sample",
            "the mission folder has no quick-count sample (pvt-sample.csv): draw one with `pollwatch pvt sample`"
                .to_owned(),
        )
    }

    /// A quick-count file of the mission folder (the sample, the official result) that cannot be
    /// read or does not fit the mission.
    pub fn invalid_pvt_file(file: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid-pvt-file",
            "A quick-count file of the mission folder does not fit the mission",
            format!("{file}: {}", quoted(reason)),
        )
    }

    /// No path under the API matches.
    pub fn no_such_endpoint(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-such-endpoint",
            "No such endpoint",
            format!("there is no endpoint at {}; GET /api/v1/openapi.json lists them", quoted(path)),
        )
    }

    /// A method other than GET.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not take that method: GET reads; POST, where an endpoint takes it, decides"
                .to_owned(),
        )
    }

    /// No token, or one the store does not know.
    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail.to_owned())
    }

    /// The store did not answer, or could not read what it holds.
    pub fn store(error: &StoreError) -> Self {
        if error.is_retryable() {
            tracing::warn!(%error, "the store did not answer an API request");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
                "the store does not answer; try again shortly".to_owned(),
            )
        } else {
            tracing::error!(%error, "the store failed an API request");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store-error",
                "Store error",
                "the store could not answer this request; the server's log says why".to_owned(),
            )
        }
    }

    /// A failure of ours that is not the store's (its cause goes to the log, not the client).
    pub fn internal(detail: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error", detail.to_owned())
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        Self::store(&error)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&*self.0).expect("a problem serialises");
        let mut response = (self.status(), body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED.as_u16() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `value` in backquotes, bounded and with control characters escaped.
fn quoted(value: &str) -> String {
    pollwatch_model::echo(value)
}

fn truncated(mut values: Vec<String>) -> Vec<String> {
    values.truncate(MAX_ALLOWED);
    values
}
