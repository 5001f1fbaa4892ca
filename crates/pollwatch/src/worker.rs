//! `pollwatch worker`: the ingest service, configured from settings, stopped by a signal; it
//! serves the read API too unless `http.api` is off.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pollwatch_ingest::{Config, Metrics, QueueKind, Rules};
use pollwatch_model::Mission;
use pollwatch_settings::{QueueType, Settings};
use pollwatch_store::Store;

use pollwatch_api::Api;

use crate::http::{Endpoints, Health};

/// The worker's configuration from the `[amqp]` and `[ingest]` settings.
pub fn config(settings: &Settings) -> Config {
    let (amqp, ingest) = (&settings.amqp, &settings.ingest);
    Config {
        amqp_url: amqp.url.clone(),
        exchange: amqp.exchange.clone(),
        queue: amqp.queue.clone(),
        dead_letter_exchange: amqp.dead_letter_exchange.clone(),
        dead_letter_queue: amqp.dead_letter_queue.clone(),
        prefetch: amqp.prefetch,
        queue_kind: match ingest.queue_type {
            QueueType::Quorum => QueueKind::Quorum,
            QueueType::Classic => QueueKind::Classic,
        },
        delivery_limit: ingest.delivery_limit,
        batch_size: usize::from(ingest.batch_size),
        batch_linger: Duration::from_millis(ingest.batch_linger_ms),
        rules: rules(settings),
        shutdown_deadline: Duration::from_secs(ingest.shutdown_deadline_secs),
    }
}

/// The rules the worker judges messages by, from the `[ingest]` settings.
pub fn rules(settings: &Settings) -> Rules {
    let ingest = &settings.ingest;
    Rules {
        max_body_bytes: usize::try_from(ingest.max_body_bytes).unwrap_or(usize::MAX),
        require_sender_auth: ingest.require_sender_auth,
    }
}

/// Opens the store, imports the mission, starts the HTTP endpoint and runs the worker until
/// SIGTERM or SIGINT. `mission` was read from the folder `dir`, where the API reads the quick
/// count's sample.
pub async fn run(settings: &Settings, mission: &Mission, dir: &std::path::Path) -> anyhow::Result<()> {
    let url = &settings.store.url;
    let store = Store::open(url.expose()).await.with_context(|| format!("opening the store at {url}"))?;
    store.import_mission(mission).await.context("importing the mission into the store")?;
    let bind = settings.http.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind} (http.bind)"))?;
    let metrics = Arc::new(Metrics::default());
    let api = settings.http.api.then(|| {
        Api::new(store.clone(), Arc::new(mission.clone()))
            .with_mission_dir(dir)
            .with_pvt_threshold(settings.pvt.publish_threshold)
    });
    tracing::info!(
        %bind,
        "HTTP endpoint: /healthz, /readyz, /metrics{}",
        if api.is_some() { ", /api/v1" } else { "" }
    );
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoints = Endpoints {
        health: Health { metrics: Some(Arc::clone(&metrics)), store: store.clone() },
        api,
        metrics_need_token: settings.http.metrics_need_token,
    };
    let http = tokio::spawn(crate::http::serve(listener, endpoints, async {
        let _ = http_stopped.await;
    }));
    let summary = pollwatch_ingest::run(&config(settings), &store, mission, &metrics, signal()).await;
    let _ = http_stop.send(());
    if let Ok(Err(error)) = http.await {
        tracing::warn!(%error, "the HTTP endpoint failed");
    }
    let summary = summary?;
    store.close().await;
    tracing::info!(
        committed = summary.committed,
        dead_lettered = summary.dead_lettered,
        reconnects = summary.reconnects,
        "worker exited"
    );
    Ok(())
}

/// Completes on SIGTERM (what service managers send) or SIGINT (Ctrl-C).
pub(crate) async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
