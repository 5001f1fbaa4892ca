//! The HTTP endpoint of `pollwatch worker` and `pollwatch serve`: `/healthz` (the process
//! answers), `/readyz` (the store answers and, for the worker, it is connected to the broker;
//! 503 otherwise, with the reason), `/metrics` (Prometheus, the worker only) and the read API
//! under `/api/v1` (`pollwatch_api`) with the dashboard's pages beside it (`pollwatch_dashboard`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use pollwatch_api::Api;
use pollwatch_ingest::Metrics;
use pollwatch_store::Store;

/// How long `/readyz` waits for the store before it calls it unreachable.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the health endpoints report on.
#[derive(Debug, Clone)]
pub struct Health {
    /// The worker's metrics; `None` for `pollwatch serve`, which has no broker.
    pub metrics: Option<Arc<Metrics>>,
    pub store: Store,
}

/// What the listener serves.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub health: Health,
    /// The read API, when this process serves it.
    pub api: Option<Api>,
    /// Whether `/metrics` needs a token (only with the API, whose tokens it takes).
    pub metrics_need_token: bool,
}

impl Endpoints {
    /// The health endpoints alone.
    pub fn health(health: Health) -> Self {
        Self { health, api: None, metrics_need_token: false }
    }
}

pub fn router(endpoints: Endpoints) -> Router {
    let Endpoints { health, api, metrics_need_token } = endpoints;
    let mut metrics = Router::new();
    if health.metrics.is_some() {
        metrics = metrics.route("/metrics", get(render_metrics));
        if let (true, Some(api)) = (metrics_need_token, &api) {
            metrics = metrics.route_layer(axum::middleware::from_fn_with_state(
                api.clone(),
                pollwatch_api::auth::require_token,
            ));
        }
    }
    let health = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(metrics)
        .with_state(health);
    match api {
        Some(api) => health.merge(pollwatch_api::router(api.clone())).merge(pollwatch_dashboard::router(api)),
        None => health,
    }
}

async fn ready(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.metrics.as_ref().is_some_and(|m| !m.broker_connected()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: not connected to the broker\n");
    }
    match tokio::time::timeout(STORE_PING_TIMEOUT, health.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store does not answer\n"),
    }
}

async fn render_metrics(State(health): State<Health>) -> impl IntoResponse {
    let text = health.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(endpoints)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn endpoints(api: bool, metrics_need_token: bool) -> (Endpoints, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::open(&url).await.expect("a store");
        let mission = pollwatch_model::sample::kg_2021();
        store.import_mission(&mission).await.expect("the mission imports");
        let health = Health { metrics: Some(Arc::new(Metrics::default())), store: store.clone() };
        let api = api.then(|| Api::new(store, Arc::new(mission)));
        (Endpoints { health, api, metrics_need_token }, dir)
    }

    async fn status(endpoints: &Endpoints, path: &str) -> u16 {
        let request = Request::get(path).body(Body::empty()).expect("a request");
        router(endpoints.clone()).oneshot(request).await.expect("an answer").status().as_u16()
    }

    #[tokio::test]
    async fn metrics_need_a_token_only_when_the_setting_says_so() {
        let (open, _dir) = endpoints(true, false).await;
        assert_eq!(status(&open, "/metrics").await, 200);
        let (closed, _dir) = endpoints(true, true).await;
        assert_eq!(status(&closed, "/metrics").await, 401);
        assert_eq!(status(&closed, "/healthz").await, 200, "health stays open");
        assert_eq!(status(&closed, "/api/v1/mission").await, 401);
    }

    #[tokio::test]
    async fn without_the_api_only_health_and_metrics_are_served() {
        let (endpoints, _dir) = endpoints(false, false).await;
        assert_eq!(status(&endpoints, "/api/v1/mission").await, 404);
        assert_eq!(status(&endpoints, "/api/v1/openapi.json").await, 404);
        assert_eq!(status(&endpoints, "/metrics").await, 200);
    }
}
