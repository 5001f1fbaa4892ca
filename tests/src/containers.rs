//! Containers through testcontainers: what the harness adds to the RabbitMQ and PostgreSQL
//! modules' requests, and the operations the fault tests need (exec, stop, start).
//!
//! Every container the harness starts
//! - carries the label [`LABEL`] (its value this process's id), which CI's leftover check and the
//!   [reaper](crate::reaper) look for;
//! - publishes its ports on 127.0.0.1 only, on ports Docker chooses or, for a container a test
//!   stops and starts again, on free ports chosen once so that its URL stays the same;
//! - must log its ready line within [`READY_WITHIN`].
//!
//! The `docker` command-line client is used in one place only, where testcontainers has no
//! equivalent: the reaper, which removes this process's containers after it has exited however
//! it ended, SIGKILL included. testcontainers removes a container when its handle is dropped,
//! which never happens to one kept in a `static` nor to any when the process is killed;
//! testcontainers-rs 0.27 has no Ryuk (the reaper container other testcontainers libraries
//! use), and its image could not be pulled here anyway.
//!
//! testcontainers 0.27 sends unversioned API paths over the Unix socket, which any engine serves
//! at its own API version (Docker Engine 20.10 on CI). Should a later version send versioned
//! paths that the engine refuses ("client version 1.5x is too new"), point `DOCKER_HOST` at
//! `../shared/tools/docker-api-shim --daemon --print-env`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use testcontainers::bollard::models::{
    EndpointSettings, HostConfig, Mount, MountTypeEnum, NetworkConnectRequest, NetworkDisconnectRequest,
    PortBinding,
};
use testcontainers::bollard::query_parameters::{KillContainerOptions, WaitContainerOptions};
use testcontainers::core::{CmdWaitFor, ExecCommand};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, ContainerRequest, Image, ImageExt as _};

use crate::{reaper, within};

/// Label on every container the harness starts, so that CI can check none is left behind.
pub const LABEL: &str = "pollwatch.test";

/// How long a container may take to log its ready line after it started.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(120);

/// Deadline of one Docker operation (an exec, a stop, a start).
const DOCKER_STEP: Duration = Duration::from_secs(60);

/// What the harness adds to a module's request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Setup {
    /// Container ports to publish on 127.0.0.1.
    pub(crate) ports: Vec<u16>,
    /// Whether the host ports must stay the same when the container is stopped and started
    /// again (Docker gives ports it chose itself new numbers on every start).
    pub(crate) stable_ports: bool,
    /// Folders to keep in anonymous volumes: on the host's disk, past the storage driver, and
    /// kept when the container is stopped and started again (unlike a tmpfs); removed with it.
    pub(crate) volumes: Vec<&'static str>,
}

/// `(name, tag)` of the image named by the environment variable `var`, or of `default`.
pub(crate) fn image(var: &str, default: &str) -> (String, String) {
    let reference = crate::env_var(var).unwrap_or_else(|| default.to_owned());
    // A colon after the last slash separates the tag; one before it belongs to a registry's port.
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (reference, "latest".to_owned()),
    }
}

/// Starts `request` with the harness's label, ports and volumes, and waits until the image's
/// ready line (the module's wait condition) has been logged.
pub(crate) async fn start<I: Image>(
    request: ContainerRequest<I>,
    setup: Setup,
) -> anyhow::Result<ContainerAsync<I>> {
    // Before the container exists, so that no moment is left in which it would outlive us.
    let session = reaper::session()?;
    let mut bindings = HashMap::new();
    for port in &setup.ports {
        let host_port = if setup.stable_ports {
            crate::free_address().context("finding a free port")?.port().to_string()
        } else {
            String::new()
        };
        let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port) };
        bindings.insert(format!("{port}/tcp"), Some(vec![binding]));
    }
    let volumes: Vec<Mount> = setup
        .volumes
        .iter()
        .map(|target| Mount {
            target: Some((*target).to_owned()),
            typ: Some(MountTypeEnum::VOLUME),
            ..Mount::default()
        })
        .collect();
    let request = request
        .with_label(LABEL, session)
        .with_startup_timeout(READY_WITHIN)
        .with_host_config_modifier(move |host: &mut HostConfig| {
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(bindings.clone());
            host.mounts.get_or_insert_with(Vec::new).extend(volumes.iter().cloned());
        });
    let image = request.descriptor();
    // Past the ready line's own deadline, for creating the container.
    let container = within(READY_WITHIN + DOCKER_STEP, "a container starting", request.start())
        .await?
        .with_context(|| format!("starting a container from image `{image}`"))?;
    tracing::info!(%image, id = %short(container.id()), "container started");
    Ok(container)
}

/// The port on 127.0.0.1 that `container_port` is published on.
pub(crate) async fn host_port<I: Image>(
    container: &ContainerAsync<I>,
    container_port: u16,
) -> anyhow::Result<u16> {
    container
        .get_host_port_ipv4(container_port)
        .await
        .with_context(|| format!("the host port of container port {container_port}"))
}

/// Runs `command` in the running container; its standard output. Fails with its standard error
/// unless it exits with status 0.
pub(crate) async fn exec<I: Image>(
    container: &ContainerAsync<I>,
    command: &[&str],
) -> anyhow::Result<String> {
    let what = format!("`{}` in container {}", command.join(" "), short(container.id()));
    let exec = ExecCommand::new(command.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit());
    within(DOCKER_STEP, &what, async {
        let mut result = container.exec(exec).await.with_context(|| format!("running {what}"))?;
        let stdout = result.stdout_to_vec().await?;
        let stderr = result.stderr_to_vec().await?;
        let status = result.exit_code().await?;
        anyhow::ensure!(
            status == Some(0),
            "{what} failed (exit status {status:?}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    })
    .await?
}

/// Stops the container as `docker stop` does (its stop signal, SIGKILL after 10 s).
pub(crate) async fn stop<I: Image>(container: &ContainerAsync<I>) -> anyhow::Result<()> {
    within(DOCKER_STEP, "a container stopping", container.stop_with_timeout(Some(10))).await??;
    tracing::info!(id = %short(container.id()), "container stopped");
    Ok(())
}

/// Stops the container by sending its main process `signal` (e.g. `SIGINT`) and waiting until
/// it has exited: for services whose stop signal would let them linger. testcontainers has no
/// call for this; the Docker API client it is built on (and hands out) does.
pub(crate) async fn stop_with<I: Image>(container: &ContainerAsync<I>, signal: &str) -> anyhow::Result<()> {
    let docker = testcontainers::core::client::docker_client_instance().await?;
    let id = container.id();
    within(DOCKER_STEP, "a container exiting on a signal", async {
        docker.kill_container(id, Some(KillContainerOptions { signal: signal.to_owned() })).await?;
        let mut waiting = docker.wait_container(id, None::<WaitContainerOptions>);
        while let Some(exited) = waiting.next().await {
            match exited {
                // The wait reports a non-zero exit (137 after SIGKILL, say) as an error: it
                // exited all the same.
                Ok(_) | Err(testcontainers::bollard::errors::Error::DockerContainerWaitError { .. }) => {}
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("container {} exiting on {signal}", short(id)));
                }
            }
        }
        anyhow::Ok(())
    })
    .await??;
    tracing::info!(id = %short(id), signal, "container stopped");
    Ok(())
}

/// Takes the container off `network` (its other peers no longer reach it).
pub(crate) async fn disconnect<I: Image>(container: &ContainerAsync<I>, network: &str) -> anyhow::Result<()> {
    let docker = testcontainers::core::client::docker_client_instance().await?;
    let request = NetworkDisconnectRequest { container: container.id().to_owned(), force: Some(true) };
    within(DOCKER_STEP, "a container leaving a network", docker.disconnect_network(network, request))
        .await??;
    tracing::info!(id = %short(container.id()), network, "container disconnected");
    Ok(())
}

/// Puts the container back on `network`, reachable there as `alias`.
pub(crate) async fn reconnect<I: Image>(
    container: &ContainerAsync<I>,
    network: &str,
    alias: &str,
) -> anyhow::Result<()> {
    let docker = testcontainers::core::client::docker_client_instance().await?;
    let endpoint = EndpointSettings { aliases: Some(vec![alias.to_owned()]), ..EndpointSettings::default() };
    let request =
        NetworkConnectRequest { container: container.id().to_owned(), endpoint_config: Some(endpoint) };
    within(DOCKER_STEP, "a container joining a network", docker.connect_network(network, request)).await??;
    tracing::info!(id = %short(container.id()), network, "container reconnected");
    Ok(())
}

/// Starts a stopped container again; the caller waits for its service.
pub(crate) async fn start_again<I: Image>(container: &ContainerAsync<I>) -> anyhow::Result<()> {
    within(DOCKER_STEP, "a container starting again", container.start()).await??;
    tracing::info!(id = %short(container.id()), "container started again");
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
