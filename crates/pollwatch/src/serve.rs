//! `pollwatch serve`: the read API alone, over a store that workers fill (any number of these
//! against one PostgreSQL store), until SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::Context as _;
use pollwatch_api::Api;
use pollwatch_model::Mission;
use pollwatch_settings::Settings;
use pollwatch_store::Store;

use crate::http::{Endpoints, Health};

/// Serves the API for `mission`, read from the folder `dir` (where the quick count's sample is).
pub async fn run(settings: &Settings, mission: Mission, dir: &std::path::Path) -> anyhow::Result<()> {
    let store = open(settings, &mission).await?;
    let bind = settings.http.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind} (http.bind)"))?;
    tracing::info!(%bind, mission = %mission.id, "serving /api/v1, /healthz and /readyz");
    let endpoints = Endpoints {
        health: Health { metrics: None, store: store.clone() },
        api: Some(
            Api::new(store.clone(), Arc::new(mission))
                .with_mission_dir(dir)
                .with_pvt_threshold(settings.pvt.publish_threshold),
        ),
        metrics_need_token: false,
    };
    crate::http::serve(listener, endpoints, crate::worker::signal()).await.context("serving HTTP")?;
    store.close().await;
    Ok(())
}

/// Opens the store for reading `mission`, which must have been imported (by a worker, or by
/// `pollwatch mission import`).
pub async fn open(settings: &Settings, mission: &Mission) -> anyhow::Result<Store> {
    let url = &settings.store.url;
    let store = Store::open(url.expose()).await.with_context(|| format!("opening the store at {url}"))?;
    let imported = store.has_mission(&mission.id).await.context("reading the store's missions")?;
    anyhow::ensure!(
        imported,
        "the store at {url} does not hold mission {}: start `pollwatch worker` with it, or run \
         `pollwatch mission import DIR`",
        mission.id
    );
    Ok(store)
}
