//! A RabbitMQ broker for tests: one container per test process, unique names per test.

use std::time::Duration;

use anyhow::Context as _;
use lapin::Connection;
use tokio::sync::OnceCell;

use testcontainers::{ContainerAsync, ImageExt as _};
use testcontainers_modules::rabbitmq::RabbitMq;

use crate::containers::{self, Setup};
use crate::{env_var, init_test_logging, retry_until, unique_tag};

pub(crate) const IMAGE_VAR: &str = "POLLWATCH_TEST_RABBITMQ_IMAGE";
const URL_VAR: &str = "POLLWATCH_TEST_AMQP_URL";
pub(crate) const DEFAULT_IMAGE: &str = "rabbitmq:3-management";
pub(crate) const AMQP_PORT: u16 = 5672;
const MANAGEMENT_PORT: u16 = 15672;
/// The management API of a broker named by `URL_VAR` (e.g. `http://localhost:15672`), for the
/// tests that create broker users.
const MANAGEMENT_VAR: &str = "POLLWATCH_TEST_AMQP_MANAGEMENT_URL";

/// The broker every test of this process shares.
#[derive(Debug)]
struct SharedBroker {
    url: String,
    /// `host:port` of the management API, when known.
    management: Option<String>,
    /// Keeps the container's handle for the life of the process (the reaper removes it).
    _container: Option<ContainerAsync<RabbitMq>>,
}

static SHARED: OnceCell<SharedBroker> = OnceCell::const_new();

/// A broker for one test, with a name prefix no other test uses.
#[derive(Debug, Clone)]
pub struct TestBroker {
    /// AMQP URL with credentials (test credentials, so printing it is harmless).
    pub url: String,
    /// `host:port` of the management API, when known.
    pub management: Option<String>,
    /// Prefix for this test's exchanges and queues, e.g. `t-3f2a9c1b0d4e`.
    pub prefix: String,
}

impl TestBroker {
    /// The broker as a publisher's one node.
    pub fn nodes(&self) -> std::sync::Arc<pollwatch_publish::Nodes> {
        let nodes = pollwatch_publish::Nodes::new(vec![self.url.clone()]);
        std::sync::Arc::new(nodes.expect("one node"))
    }

    /// A name for an exchange or queue that belongs to this test only.
    pub fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.prefix)
    }

    /// Opens a connection, failing after a deadline rather than hanging.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        connect(&self.url).await
    }

    /// A channel with publisher confirms, on a connection of its own.
    pub async fn publisher(&self) -> anyhow::Result<lapin::Channel> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await?;
        Ok(channel)
    }

    /// Creates a broker user with full rights on the default virtual host and the given tags
    /// (comma-separated, e.g. `impersonator`), through the management API as `guest`, and
    /// returns the AMQP URL that logs in as it.
    pub async fn add_user(&self, name: &str, password: &str, tags: &str) -> anyhow::Result<String> {
        let management = self.management.as_deref().with_context(|| {
            format!("creating broker users needs the management API: set {MANAGEMENT_VAR}")
        })?;
        let user = format!(r#"{{"password": "{password}", "tags": "{tags}"}}"#);
        management_put(management, &format!("/api/users/{name}"), &user).await?;
        let rights = r#"{"configure": ".*", "write": ".*", "read": ".*"}"#;
        management_put(management, &format!("/api/permissions/%2F/{name}"), rights).await?;
        Ok(self.url.replacen("guest:guest", &format!("{name}:{password}"), 1))
    }
}

/// A PUT to RabbitMQ's management API as `guest`; fails unless it answers 2xx.
async fn management_put(address: &str, path: &str, body: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to the management API at {address}"))?;
    // "guest:guest" in base64.
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split(' ').nth(1).unwrap_or_default();
    anyhow::ensure!(status.starts_with('2'), "PUT {path}: {}", response.lines().next().unwrap_or_default());
    Ok(())
}

/// The shared broker (started on first use) with a fresh name prefix for the calling test.
pub async fn broker() -> anyhow::Result<TestBroker> {
    init_test_logging();
    let shared = SHARED.get_or_try_init(start).await?;
    Ok(TestBroker {
        url: shared.url.clone(),
        management: shared.management.clone(),
        prefix: format!("t-{}", unique_tag()),
    })
}

/// A broker of the calling test's own, in a container it may stop and start again (the shared
/// one serves every other test of the process). Needs Docker, whatever POLLWATCH_TEST_AMQP_URL
/// says.
#[derive(Debug)]
pub struct DedicatedBroker {
    pub broker: TestBroker,
    /// Removed when dropped, at the end of the test.
    container: ContainerAsync<RabbitMq>,
}

impl DedicatedBroker {
    pub async fn start() -> anyhow::Result<Self> {
        init_test_logging();
        let (container, url, management) = start_container(true).await?;
        let broker = TestBroker { url, management: Some(management), prefix: format!("t-{}", unique_tag()) };
        Ok(Self { broker, container })
    }

    /// Stops the broker, keeps it down for `down`, starts it again on the same port and waits
    /// until it accepts connections.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        self.stop().await?;
        crate::pause(down).await;
        self.start_again().await
    }

    pub async fn stop(&self) -> anyhow::Result<()> {
        containers::stop(&self.container).await
    }

    /// Runs `rabbitmqctl` with `args` in the broker's container, e.g. `close_all_connections`.
    pub async fn rabbitmqctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let command: Vec<&str> = std::iter::once("rabbitmqctl").chain(args.iter().copied()).collect();
        containers::exec(&self.container, &command).await
    }

    /// Starts the stopped broker on the same port and waits until it accepts connections.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        containers::start_again(&self.container).await?;
        wait_until_accepting(&self.broker.url, Duration::from_secs(120)).await
    }
}

async fn start() -> anyhow::Result<SharedBroker> {
    if let Some(url) = env_var(URL_VAR) {
        tracing::info!("using the broker named by {URL_VAR}");
        wait_until_accepting(&url, Duration::from_secs(30)).await?;
        let management =
            env_var(MANAGEMENT_VAR).map(|u| u.trim_start_matches("http://").trim_end_matches('/').to_owned());
        return Ok(SharedBroker { url, management, _container: None });
    }
    let (container, url, management) = start_container(false).await?;
    Ok(SharedBroker { url, management: Some(management), _container: Some(container) })
}

/// A broker container (the module waits for "Server startup complete"), accepting connections:
/// the container, its AMQP URL and the `host:port` of its management API.
async fn start_container(stable_ports: bool) -> anyhow::Result<(ContainerAsync<RabbitMq>, String, String)> {
    let (name, tag) = containers::image(IMAGE_VAR, DEFAULT_IMAGE);
    let setup = Setup { ports: vec![AMQP_PORT, MANAGEMENT_PORT], stable_ports, volumes: Vec::new() };
    let container = containers::start(RabbitMq::default().with_name(name).with_tag(tag), setup).await?;
    let port = containers::host_port(&container, AMQP_PORT).await?;
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    wait_until_accepting(&url, Duration::from_secs(30)).await?;
    let management = format!("127.0.0.1:{}", containers::host_port(&container, MANAGEMENT_PORT).await?);
    Ok((container, url, management))
}

async fn connect(url: &str) -> anyhow::Result<Connection> {
    pollwatch_publish::connect(url, pollwatch_publish::CONNECT_TIMEOUT)
        .await
        .context("connecting to the broker")
}

/// Retries a connection until the broker accepts one or `limit` passes.
pub(crate) async fn wait_until_accepting(url: &str, limit: Duration) -> anyhow::Result<()> {
    let connection =
        retry_until(limit, Duration::from_millis(250), "the broker did not accept connections", || {
            connect(url)
        })
        .await?;
    let _ = connection.close(200, "ready".into()).await;
    Ok(())
}
