//! The container test harness: every integration and end-to-end test gets its broker and
//! database from here.
//!
//! - [`broker`] gives a RabbitMQ URL plus names unique to the calling test; [`database`] gives a
//!   fresh PostgreSQL database. Tests therefore run in parallel without seeing each other.
//! - By default each test process starts one RabbitMQ and one PostgreSQL container on first use
//!   (images from `POLLWATCH_TEST_RABBITMQ_IMAGE` / `POLLWATCH_TEST_POSTGRES_IMAGE`, defaulting to
//!   the official `rabbitmq:3-management` and `postgres:15`) and removes them when it exits.
//! - With `POLLWATCH_TEST_AMQP_URL` / `POLLWATCH_TEST_DATABASE_URL` set, the tests use those
//!   running services instead and start no container.
//! - [`spawn_worker`] runs `pollwatch worker` as a process on a test's broker names and store,
//!   ready to consume, and owns its settings, HTTP address, logs and stop; [`InProcessWorker`]
//!   runs the worker on a task of the test's own process.
//! - [`Browser`] is a headless Chromium under a chromedriver of the test's own, for the
//!   dashboard's tests, with the page's screenshots saved under the target folder.
//! - Every wait has a deadline ([`within`], [`eventually`]); nothing is printed unless
//!   `TEST_LOG=1`.
//! - Containers are started with testcontainers (`containers.rs` says what the harness adds)
//!   and removed when the test or the process ends, however it ends (`reaper.rs`).

pub mod bench;
mod browser;
mod cluster;
mod containers;
mod database;
pub mod fixtures;
mod in_process;
mod rabbitmq;
mod reaper;
mod wait;
mod worker;

use std::sync::Once;
use std::time::Duration;

use anyhow::Context as _;

pub use browser::{Browser, screenshots_folder};
pub use cluster::TestCluster;
pub use containers::LABEL;
pub use database::{DedicatedDatabase, TestDatabase, database};
pub use in_process::InProcessWorker;
pub use rabbitmq::{DedicatedBroker, TestBroker, broker};
use wait::retry_until;
pub use wait::{eventually, eventually_some, pause, throughout, within};
pub use worker::{TestWorker, metric, metric_total, pollwatch_command, spawn_worker, spawn_worker_on};

/// A plain HTTP/1.1 GET: (status, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).context("an HTTP status line")?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// What an HTTP/1.1 server answered.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it came chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("a JSON body, not {:?}", self.text()))
    }
}

/// A plain HTTP/1.1 request with `method`, `path` and, if given, `Authorization: Bearer TOKEN`.
pub async fn http_request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    http_send(address, method, path, token, None).await
}

/// `POST path` with `body` as application/json.
pub async fn http_post_json(
    address: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<HttpResponse> {
    http_send(address, "POST", path, token, Some(("application/json", body.to_string().into_bytes()))).await
}

/// One HTTP/1.1 request, with a body of a content type if given, and its whole response.
pub async fn http_send(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> anyhow::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let (content_type, bytes) = match body {
        Some((content_type, bytes)) => (format!("Content-Type: {content_type}\r\n"), bytes),
        None => (String::new(), Vec::new()),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(&bytes).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").context("the end of the HTTP head")?;
    let head = String::from_utf8(response[..split].to_vec()).context("an HTTP head in UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("a status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse { status, headers, body })
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// An open `text/event-stream` response, read event by event.
#[derive(Debug)]
pub struct EventStream {
    stream: tokio::net::TcpStream,
    /// Received bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked text not yet parsed into events.
    text: String,
    /// Whether the last chunk (size 0) has come.
    ended: bool,
    pub status: u16,
}

impl EventStream {
    /// GETs `path` with `token` (and `Last-Event-ID`, if given) and reads the response head.
    pub async fn open(
        address: std::net::SocketAddr,
        path: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncWriteExt as _;
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{resume}\
             Accept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut events = Self { stream, raw: Vec::new(), text: String::new(), ended: false, status: 0 };
        let head = loop {
            if let Some(end) = events.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(events.raw[..end].to_vec())?;
                events.raw.drain(..end + 4);
                break head;
            }
            events.read_more().await?;
        };
        events.status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("a status line")?;
        anyhow::ensure!(
            head.to_ascii_lowercase().contains("transfer-encoding: chunked") || events.status != 200,
            "an event stream is chunked: {head}"
        );
        Ok(events)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = [0u8; 8192];
        let n = self.stream.read(&mut buffer).await?;
        anyhow::ensure!(n > 0, "the server closed the event stream");
        self.raw.extend_from_slice(&buffer[..n]);
        Ok(())
    }

    /// Moves every whole chunk received from `raw` to `text`.
    fn dechunk(&mut self) -> anyhow::Result<()> {
        while let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&self.raw[..line])?.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).context("a chunk size")?;
            if size == 0 {
                self.ended = true;
                break;
            }
            if self.raw.len() < line + 2 + size + 2 {
                break;
            }
            self.text.push_str(std::str::from_utf8(&self.raw[line + 2..line + 2 + size])?);
            self.raw.drain(..line + 2 + size + 2);
        }
        Ok(())
    }

    /// The next event (comments and keep-alives skipped).
    pub async fn next(&mut self) -> anyhow::Result<SseEvent> {
        loop {
            self.dechunk()?;
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut event = SseEvent { id: None, event: None, data: String::new() };
                for line in block.lines() {
                    match line.split_once(':').map(|(k, v)| (k, v.strip_prefix(' ').unwrap_or(v))) {
                        Some(("id", v)) => event.id = Some(v.to_owned()),
                        Some(("event", v)) => event.event = Some(v.to_owned()),
                        Some(("data", v)) => event.data.push_str(v),
                        _ => {}
                    }
                }
                if event.event.is_some() || !event.data.is_empty() {
                    return Ok(event);
                }
                continue;
            }
            anyhow::ensure!(!self.ended, "the server ended the event stream");
            self.read_more().await?;
        }
    }
}

/// The body of a chunked HTTP/1.1 message.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").context("a chunk size line")?;
        let size = std::str::from_utf8(&rest[..line])?.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).context("a chunk size")?;
        rest = &rest[line + 2..];
        if size == 0 {
            return Ok(body);
        }
        anyhow::ensure!(rest.len() >= size + 2, "a chunk cut short");
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The letters in `queue` (read as `dlq` reads them, the worker being `worker_user`) as soon as
/// there are at least `at_least`, or whatever is there once `limit` has passed, so that the
/// caller's assertions say what is missing.
pub async fn until_dead_letters(
    connection: &lapin::Connection,
    queue: &str,
    worker_user: &str,
    at_least: usize,
    limit: Duration,
) -> anyhow::Result<Vec<pollwatch_ingest::dlq::DeadLetter>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let letters = pollwatch_ingest::dlq::list(connection, queue, worker_user).await?;
        if letters.len() >= at_least || tokio::time::Instant::now() >= deadline {
            return Ok(letters);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/readyz` at an address, polled every 50 ms until [`Readiness::seen`]: each answer that differs
/// from the one before (0 for no answer).
#[derive(Debug)]
pub struct Readiness {
    stop: tokio::sync::oneshot::Sender<()>,
    /// The answers so far, for [`Readiness::until_answered`] and [`Readiness::seen`].
    seen: tokio::sync::watch::Receiver<Vec<u16>>,
    poller: tokio::task::JoinHandle<()>,
}

impl Readiness {
    pub fn watch(address: std::net::SocketAddr) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (record, seen) = tokio::sync::watch::channel(Vec::new());
        let poller = tokio::spawn(async move {
            loop {
                let status = http_get(address, "/readyz").await.map_or(0, |(status, _)| status);
                record.send_if_modified(|seen: &mut Vec<u16>| {
                    let changed = seen.last() != Some(&status);
                    if changed {
                        seen.push(status);
                    }
                    changed
                });
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { stop, seen, poller }
    }

    /// Waits until the poller has had its first answer, so that what follows is seen from the
    /// state before it.
    pub async fn until_answered(&self) -> anyhow::Result<()> {
        let mut seen = self.seen.clone();
        within(Duration::from_secs(30), "the first answer of /readyz", seen.wait_for(|s| !s.is_empty()))
            .await?
            .map(|_| ())
            .context("the readiness poller ended")
    }

    /// Stops polling; what `/readyz` answered meanwhile.
    pub async fn seen(self) -> anyhow::Result<Vec<u16>> {
        let _ = self.stop.send(());
        within(Duration::from_secs(30), "the readiness poller", self.poller).await??;
        Ok(self.seen.borrow().clone())
    }
}

/// A free port of 127.0.0.1 for a server the test starts.
pub fn free_address() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A random lower-case hexadecimal tag for names that must not collide between tests.
pub fn unique_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Reads an environment variable, treating an empty value as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// Whether `TEST_LOG` asks for logs.
fn test_log() -> bool {
    env_var("TEST_LOG").is_some_and(|v| v != "0")
}

/// Sends the harness's and pollwatch's logs to standard error when `TEST_LOG=1`; otherwise
/// tests stay quiet.
pub fn init_test_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if test_log() {
            let settings = pollwatch_settings::TelemetrySettings {
                format: pollwatch_settings::LogFormat::Pretty,
                filter: "info,pollwatch=debug,pollwatch_tests=debug".into(),
            };
            if let Err(error) = pollwatch::telemetry::init(&settings) {
                eprintln!("TEST_LOG: {error:#}");
            }
        }
    });
}
