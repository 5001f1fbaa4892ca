//! The core team's read surface: the JSON API under `/api/v1` (axum), its OpenAPI description,
//! and the views — one function per question — that the API returns and the `pollwatch`
//! command prints.
//!
//! Reads are GETs over the store and the mission; reviewers' decisions are POSTs ([`review`]),
//! which need a reviewer's token. Every request but `/api/v1/openapi.json` needs a bearer token
//! ([`auth`]); every error is `application/problem+json` ([`problem`]).

pub mod auth;
pub mod cache;
pub mod events;
pub mod export;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod pvt;
pub mod review;
mod routes;
pub mod views;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::Uri;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use pollwatch_model::Mission;
use pollwatch_store::Store;

use crate::problem::Problem;

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Api {
    pub store: Store,
    pub mission: Arc<Mission>,
    /// The mission folder, where the quick count's sample is read from (none: no quick count).
    pub mission_dir: Option<Arc<std::path::PathBuf>>,
    /// `pvt.publish_threshold`.
    pub pvt_threshold: f64,
    tokens: auth::Tokens,
    answers: cache::Answers,
    feed: events::Feed,
}

impl Api {
    pub fn new(store: Store, mission: Arc<Mission>) -> Self {
        Self {
            store,
            mission,
            mission_dir: None,
            pvt_threshold: pvt::THRESHOLD,
            tokens: auth::Tokens::default(),
            answers: cache::Answers::default(),
            feed: events::Feed::default(),
        }
    }
}

impl Api {
    /// The same, reading the quick count's sample from the mission folder `dir`.
    pub fn with_mission_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.mission_dir = Some(Arc::new(dir.into()));
        self
    }

    /// The same, calling the quick count publishable once every stratum is `threshold` in.
    pub fn with_pvt_threshold(mut self, threshold: f64) -> Self {
        self.pvt_threshold = threshold;
        self
    }

    /// The answer to `question`, shared by everyone asking it and kept up with the store's
    /// changes as this process's change feed sees them ([`cache::Answers::as_of`]).
    /// `compute` is given the highest sequence number the answer holds for certain, for the
    /// answer to say (so that a client can tell it is behind an event it has had). An answer
    /// that also depends on the time is computed again once older than `fresh_for`. Before the
    /// feed has read the store once, `compute` runs for each request and nothing is kept.
    pub async fn answer_as_of<F>(
        &self,
        question: String,
        fresh_for: Option<std::time::Duration>,
        compute: impl FnOnce(i64) -> F + Send + 'static,
    ) -> Result<axum::body::Bytes, Problem>
    where
        F: Future<Output = Result<Vec<u8>, Problem>> + Send + 'static,
    {
        // The first request of a process waits for the feed's first read, so that its answer
        // is kept: computed without a version, everyone asking next would compute it again.
        match self.feed.version_within(&self.store, std::time::Duration::from_secs(2)).await {
            Some((version, seq)) => {
                self.answers.as_of(question, version, fresh_for, move || compute(seq)).await
            }
            None => {
                let seq = self.store.latest_seq().await?;
                compute(seq).await.map(axum::body::Bytes::from)
            }
        }
    }
}

/// The routes under `/api/v1`, with a problem+json answer for paths and methods it lacks.
pub fn router(api: Api) -> Router {
    let protected = Router::new()
        .route("/api/v1/mission", get(routes::mission))
        .route("/api/v1/coverage", get(routes::coverage))
        .route("/api/v1/observers", get(routes::observers))
        .route("/api/v1/findings", get(routes::findings))
        .route("/api/v1/incidents", get(routes::incidents))
        .route("/api/v1/incidents/summary", get(routes::incident_summary))
        .route("/api/v1/results/{contest}", get(routes::results))
        .route("/api/v1/discrepancies", get(routes::discrepancies))
        .route("/api/v1/pvt", get(routes::pvt))
        .route("/api/v1/reports", get(routes::reports))
        .route("/api/v1/reports/{report_id}", get(routes::report))
        .route("/api/v1/held", get(routes::held))
        .route("/api/v1/reports/{report_id}/review", post(review::review))
        .route("/api/v1/reports/{report_id}/comments", post(review::comment))
        .route("/api/v1/reports/{report_id}/version", post(review::version))
        .route("/api/v1/stations/{code}/protocol", post(review::protocol))
        .route("/api/v1/audit/head", get(review::audit_head))
        .route("/api/v1/export/audit.jsonl", get(routes::export_audit_jsonl))
        .route("/api/v1/events", get(routes::events))
        .route("/api/v1/export/reports.jsonl", get(routes::export_reports_jsonl))
        .route("/api/v1/export/reports.csv", get(routes::export_reports_csv))
        .route("/api/v1/export/results.csv", get(routes::export_results_csv))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), auth::require_token))
        // A larger body is refused before it is read whole (review bodies are a few hundred bytes).
        .layer(axum::extract::DefaultBodyLimit::max(review::MAX_BODY_BYTES));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .merge(protected)
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed().into_response() })
        .fallback(|uri: Uri| async move { Problem::no_such_endpoint(uri.path()).into_response() })
        .with_state(api)
}

async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    routes::json(DOCUMENT.get_or_init(openapi::document))
}
