//! Containers driven through the `docker` command-line client.
//!
//! The harness talks to Docker through its CLI rather than through testcontainers-rs:
//! testcontainers-rs (0.27, 0.28) pins Docker API version 1.52 without negotiating, and engines
//! older than Docker 25 — Debian bookworm's 20.10, which our CI machines run — refuse every such
//! request ("client version 1.52 is too new"). The CLI negotiates the version with any engine,
//! pulls missing images like testcontainers would, and is what the reaper needs anyway.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::reaper;

/// Label on every container the harness starts, so that CI can check none is left behind.
pub const LABEL: &str = "pollwatch.test";

/// What to run.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// `name:tag`.
    pub image: String,
    pub env: Vec<(String, String)>,
    /// Container ports to publish on a free port of 127.0.0.1.
    pub ports: Vec<u16>,
    /// Whether the host ports must stay the same when the container is stopped and started
    /// again (Docker gives ports it chose itself new numbers on every start).
    pub stable_ports: bool,
    /// Folders to mount as tmpfs (world-writable), for data that need not outlive the container:
    /// a container's own file system may go through a slow storage driver (fuse-overlayfs here).
    pub tmpfs: Vec<&'static str>,
    /// Folders to keep in anonymous volumes: on the host's disk, past the storage driver, and kept
    /// when the container is stopped and started again (unlike a tmpfs); removed with it.
    pub volumes: Vec<&'static str>,
    /// Arguments after the image name.
    pub args: Vec<String>,
    /// A line the container logs once it is ready (on stdout or stderr).
    pub ready_log: &'static str,
    /// How long the container may take to log `ready_log` after it started.
    pub ready_within: Duration,
}

/// A running container. Dropping it removes it; containers kept for the whole test run (in a
/// `static`) are removed by the reaper when the test process exits.
#[derive(Debug)]
pub struct Container {
    id: String,
    image: String,
}

impl Container {
    /// Starts the container (pulling the image if it is missing) and waits until it logs its
    /// ready line.
    pub async fn start(spec: &ContainerSpec) -> anyhow::Result<Self> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            "--label".into(),
            format!("{LABEL}={}", std::process::id()),
        ];
        for (key, value) in &spec.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        for port in &spec.ports {
            let host = if spec.stable_ports { free_port()?.to_string() } else { String::new() };
            args.extend(["--publish".into(), format!("127.0.0.1:{host}:{port}")]);
        }
        for path in &spec.tmpfs {
            args.extend(["--tmpfs".into(), format!("{path}:rw,mode=1777")]);
        }
        for path in &spec.volumes {
            args.extend(["--volume".into(), (*path).to_owned()]);
        }
        args.push(spec.image.clone());
        args.extend(spec.args.iter().cloned());

        let id = docker(&args)
            .await
            .with_context(|| format!("starting a container from image `{}`", spec.image))?;
        let container = Self { id: id.trim().to_owned(), image: spec.image.clone() };
        reaper::register(&container.id)?;
        tracing::info!(image = %spec.image, id = %container.short_id(), "container started");
        container.wait_for_log(spec.ready_log, spec.ready_within).await?;
        Ok(container)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// The port on 127.0.0.1 that `container_port` is published on.
    pub async fn host_port(&self, container_port: u16) -> anyhow::Result<u16> {
        let out = docker(&["port".into(), self.id.clone(), format!("{container_port}/tcp")]).await?;
        out.lines()
            .filter_map(|line| line.rsplit_once(':'))
            .find_map(|(_, port)| port.trim().parse().ok())
            .with_context(|| format!("container port {container_port} is not published: `{out}`"))
    }

    /// Follows the container's logs until `needle` appears, the container exits, or `within`
    /// passes.
    async fn wait_for_log(&self, needle: &str, within: Duration) -> anyhow::Result<()> {
        let mut child = Command::new("docker")
            .args(["logs", "--follow", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running `docker logs`")?;
        let mut stdout = BufReader::new(child.stdout.take().context("docker logs stdout")?).lines();
        let mut stderr = BufReader::new(child.stderr.take().context("docker logs stderr")?).lines();
        let mut recent: Vec<String> = Vec::new();
        let search = async {
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                let line = tokio::select! {
                    line = stdout.next_line(), if out_open => {
                        let line = line?;
                        out_open = line.is_some();
                        line
                    }
                    line = stderr.next_line(), if err_open => {
                        let line = line?;
                        err_open = line.is_some();
                        line
                    }
                };
                if let Some(line) = line {
                    if line.contains(needle) {
                        return Ok(true);
                    }
                    recent.push(line);
                }
            }
            Ok::<_, std::io::Error>(false)
        };
        let found = tokio::time::timeout(within, search).await;
        let _ = child.kill().await;
        let tail = || recent.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n");
        match found {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => bail!(
                "container {} ({}) exited before logging {needle:?}; its last lines:\n{}",
                self.short_id(),
                self.image,
                tail()
            ),
            Ok(Err(error)) => Err(error).context("reading container logs"),
            Err(_) => bail!(
                "container {} ({}) did not log {needle:?} within {within:?}; its last lines:\n{}",
                self.short_id(),
                self.image,
                tail()
            ),
        }
    }
}

impl Container {
    /// Stops the container as `docker stop` does (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self) -> anyhow::Result<()> {
        docker(&["stop".into(), "--time".into(), "10".into(), self.id.clone()]).await?;
        tracing::info!(id = %self.short_id(), "container stopped");
        Ok(())
    }

    /// Stops the container by sending its main process `signal` (e.g. `SIGINT`) and waiting
    /// until it has exited: for services whose stop signal would let them linger.
    pub async fn stop_with(&self, signal: &str) -> anyhow::Result<()> {
        docker(&["kill".into(), "--signal".into(), signal.into(), self.id.clone()]).await?;
        docker(&["wait".into(), self.id.clone()]).await?;
        tracing::info!(id = %self.short_id(), signal, "container stopped");
        Ok(())
    }

    /// Runs `command` inside the running container (`docker exec`); its standard output.
    pub async fn exec(&self, command: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["exec".to_owned(), self.id.clone()];
        args.extend(command.iter().map(|part| (*part).to_owned()));
        docker(&args).await
    }

    /// Starts a stopped container again; the caller waits for its service.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        docker(&["start".into(), self.id.clone()]).await?;
        tracing::info!(id = %self.short_id(), "container started again");
        Ok(())
    }
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Drop for Container {
    fn drop(&mut self) {
        // Blocking, but short: removal with --force kills the container first.
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs the docker CLI and returns its standard output; a failure carries its standard error.
pub(crate) async fn docker(args: &[String]) -> anyhow::Result<String> {
    let output =
        Command::new("docker").args(args).stdin(Stdio::null()).kill_on_drop(true).output().await.context(
            "cannot run the `docker` command: install Docker, or point the tests at running \
             services with POLLWATCH_TEST_AMQP_URL and POLLWATCH_TEST_DATABASE_URL",
        )?;
    if !output.status.success() {
        bail!(
            "`docker {}` failed ({}): {}",
            args.first().map(String::as_str).unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
