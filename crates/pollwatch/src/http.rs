//! The worker's HTTP endpoint: `/healthz` (the process answers), `/readyz` (connected to the
//! broker and the store answers; 503 otherwise, with the reason) and `/metrics` (Prometheus).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use pollwatch_ingest::Metrics;
use pollwatch_store::Store;

/// How long `/readyz` waits for the store before it calls it unreachable.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints report on.
#[derive(Debug, Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub store: Store,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn ready(State(health): State<Health>) -> (StatusCode, &'static str) {
    if !health.metrics.broker_connected() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: not connected to the broker\n");
    }
    match tokio::time::timeout(STORE_PING_TIMEOUT, health.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store does not answer\n"),
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], health.metrics.render())
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health)).with_graceful_shutdown(shutdown).await
}
