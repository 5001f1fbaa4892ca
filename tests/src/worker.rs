//! `pollwatch worker` as a process, for the tests that run it as an operator would (in the style
//! of zero-to-production's `spawn_app`): [`spawn_worker`] starts it on a test's own exchange,
//! queues and store and returns once `/readyz` says it consumes; the [`TestWorker`] owns its
//! settings, its HTTP address, what it logs, and its stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::{TestBroker, eventually, free_address, http_get, test_log, within};

/// How long a worker may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long a worker may take to exit once asked to.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// The `pollwatch` command as this package builds it (`pollwatch-as-installed`, beside the test
/// or bench executable that is running, in the same profile's folder).
pub(crate) fn pollwatch_binary() -> anyhow::Result<PathBuf> {
    let running = std::env::current_exe().context("finding the running test executable")?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/pollwatch-as-installed
    let binary = running
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("pollwatch-as-installed"))
        .context("the folder of the running test executable")?;
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p pollwatch-tests --bins`",
        binary.display()
    );
    Ok(binary)
}

/// The `pollwatch` command, run from the repository root so that `missions/kg-2021` and
/// `config/` resolve as they do for a user, with the test environment's settings, killed if
/// the test drops it, and gone soon after the test process however that ends.
pub fn pollwatch_command() -> anyhow::Result<Command> {
    let mut command = Command::new(pollwatch_binary()?);
    command
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--env", "test"])
        .env("POLLWATCH_TEST_PARENT", std::process::id().to_string())
        .kill_on_drop(true);
    Ok(command)
}

/// Starts `pollwatch worker --mission missions/kg-2021` on `broker`'s names for this test
/// (`reports`, `ingest`, `dead-letter`, `dead-letters`) and `store_url`, with `extra` settings
/// (`POLLWATCH__…` variables, which override those), and waits until it is ready: connected,
/// its exchanges, queues and bindings declared, consuming.
pub async fn spawn_worker(
    broker: &TestBroker,
    store_url: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<TestWorker> {
    spawn_worker_on(broker, store_url, extra, Path::new("missions/kg-2021")).await
}

/// [`spawn_worker`] with the mission folder `mission` (relative to the repository root, or
/// absolute): for a roster that differs from the sample mission's.
pub async fn spawn_worker_on(
    broker: &TestBroker,
    store_url: &str,
    extra: &[(&'static str, String)],
    mission: &Path,
) -> anyhow::Result<TestWorker> {
    let address = free_address()?;
    let mut settings = vec![
        ("POLLWATCH__AMQP__URL", broker.url.clone()),
        ("POLLWATCH__AMQP__EXCHANGE", broker.name("reports")),
        ("POLLWATCH__AMQP__QUEUE", broker.name("ingest")),
        ("POLLWATCH__AMQP__DEAD_LETTER_EXCHANGE", broker.name("dead-letter")),
        ("POLLWATCH__AMQP__DEAD_LETTER_QUEUE", broker.name("dead-letters")),
        ("POLLWATCH__STORE__URL", store_url.to_owned()),
        ("POLLWATCH__HTTP__BIND", address.to_string()),
    ];
    settings.extend(extra.iter().cloned());
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mission = mission.to_path_buf();
    let child = spawn(&settings, &mission, &logs)?;
    let worker = TestWorker { child, settings, mission, address, logs };
    worker.until_ready().await?;
    Ok(worker)
}

/// A `pollwatch worker` process of one test. Dropping it kills the process.
#[derive(Debug)]
pub struct TestWorker {
    child: Child,
    /// The settings it was started with, for starting it again and for the other commands a
    /// test runs against the same names and store.
    settings: Vec<(&'static str, String)>,
    /// The mission folder it is started with (read again at every start).
    mission: PathBuf,
    /// Where its HTTP endpoint listens (the same after every start).
    address: SocketAddr,
    /// The lines it has written to standard error (its logs), over every start.
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestWorker {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The process id of the running worker.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the worker has exited")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// The `pollwatch` command with this worker's settings, for the other subcommands a test
    /// runs against the same names and store (later `env` calls override them).
    pub fn command(&self) -> anyhow::Result<Command> {
        let mut command = pollwatch_command()?;
        command.envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())));
        Ok(command)
    }

    /// The worker's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, metrics) = http_get(self.address, "/metrics").await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(metrics)
    }

    /// How many lines the worker has logged that contain `text`.
    pub fn logged(&self, text: &str) -> usize {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Kills the process (SIGKILL), waits for it, and starts it again with the same settings
    /// without waiting until it is ready, so that the next kill may come at any moment.
    pub async fn kill_and_start_again(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        within(EXIT_WITHIN, "the killed worker exiting", self.child.wait()).await??;
        self.child = spawn(&self.settings, &self.mission, &self.logs)?;
        Ok(())
    }

    /// Stops the worker as a service manager does (SIGTERM) and checks that it exits with
    /// status 0.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.terminate().await
    }

    /// Restarts the worker as a deploy does: SIGTERM, a clean exit (status 0), the same
    /// settings started again, and ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.terminate().await?;
        self.child = spawn(&self.settings, &self.mission, &self.logs)?;
        self.until_ready().await
    }

    /// SIGTERM, and an exit with status 0.
    async fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = self.pid()?.to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await?;
        anyhow::ensure!(sent.success(), "sending SIGTERM to the worker");
        let status = within(EXIT_WITHIN, "the worker exiting", self.child.wait()).await??;
        anyhow::ensure!(status.success(), "the worker exited with {status}");
        Ok(())
    }

    async fn until_ready(&self) -> anyhow::Result<()> {
        eventually(READY_WITHIN, "the worker ready", async || {
            Ok(http_get(self.address, "/readyz").await.is_ok_and(|(status, _)| status == 200))
        })
        .await
    }
}

/// Starts the process; a task keeps what it logs (and prints it when `TEST_LOG=1`).
fn spawn(
    settings: &[(&'static str, String)],
    mission: &Path,
    logs: &Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Child> {
    let mut command = pollwatch_command()?;
    command
        .args(["worker", "--mission"])
        .arg(mission)
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("starting pollwatch worker")?;
    let mut lines = BufReader::new(child.stderr.take().context("the worker's standard error")?).lines();
    let logs = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if test_log() {
                eprintln!("worker: {line}");
            }
            logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        }
    });
    Ok(child)
}

/// The value of a metric without labels in the worker's metrics text (0 when absent).
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_default()
}

/// The sum of a labelled metric's series (`name{…} value`) in the worker's metrics text.
pub fn metric_total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}
