//! The worker in the test's own process ([`pollwatch_ingest::run`] on a task), for the tests
//! that drive its configuration and read its store and metrics directly; [`crate::spawn_worker`]
//! runs it as a process instead.

use std::sync::Arc;
use std::time::Duration;

use pollwatch_ingest::{Config, Metrics, Summary, WorkerError};
use pollwatch_model::Mission;
use pollwatch_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::within;

/// How long a worker may take to finish its batches and stop once asked to.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// A worker running in the background on a SQLite store in a folder of its own.
#[derive(Debug)]
pub struct InProcessWorker {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The store's folder, kept as long as the worker (and, after [`Self::stop`], the caller).
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Summary, WorkerError>>,
}

impl InProcessWorker {
    /// A worker on a new SQLite store with `mission` imported.
    pub async fn start(config: &Config, mission: &Mission) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&format!("sqlite://{}", dir.path().join("pollwatch.db").display())).await?;
        store.import_mission(mission).await?;
        Self::start_on(config, mission, store, dir).await
    }

    /// A worker on an existing store, whose folder `dir` it keeps.
    pub async fn start_on(
        config: &Config,
        mission: &Mission,
        store: Store,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn({
            let (config, store, mission, metrics) =
                (config.clone(), store.clone(), mission.clone(), metrics.clone());
            async move {
                pollwatch_ingest::run(&config, &store, &mission, &metrics, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        Ok(Self { store, metrics, dir, stop: Some(stop), task })
    }

    /// The worker has not returned (it never does on its own: outages are waited out).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Requests shutdown and waits for the worker; the store (and its folder) stay open.
    pub async fn stop(mut self) -> anyhow::Result<(Summary, Store, tempfile::TempDir)> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let summary = within(STOP_WITHIN, "the worker stopping", self.task).await???;
        Ok((summary, self.store, self.dir))
    }
}
