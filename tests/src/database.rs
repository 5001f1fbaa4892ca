//! PostgreSQL for tests: one server per test process, a fresh database per test.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::sync::OnceCell;

use testcontainers::core::Mount;
use testcontainers::{ContainerAsync, ImageExt as _};
use testcontainers_modules::postgres::Postgres;

use crate::containers::{self, Setup};
use crate::{env_var, init_test_logging, retry_until, unique_tag};

const IMAGE_VAR: &str = "POLLWATCH_TEST_POSTGRES_IMAGE";
const URL_VAR: &str = "POLLWATCH_TEST_DATABASE_URL";
const DEFAULT_IMAGE: &str = "postgres:15";
const POSTGRES_PORT: u16 = 5432;
/// Where the test server keeps its data: a tmpfs, so that its writes go neither through the
/// engine's storage driver (fuse-overlayfs here, which halved the ingest rate) nor to disk.
const DATA_TMPFS: &str = "/var/lib/pollwatch-test";

/// The server every test of this process shares.
#[derive(Debug)]
struct SharedServer {
    /// URL of a database on the server that may create databases.
    admin_url: url::Url,
    /// Whether the server is someone else's (then test databases are dropped after use).
    external: bool,
    /// Keeps the container's handle for the life of the process (the reaper removes it).
    _container: Option<ContainerAsync<Postgres>>,
}

static SHARED: OnceCell<SharedServer> = OnceCell::const_new();

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the fresh database (test credentials).
    pub url: String,
    /// Its name, `pw_test_<hex>`.
    pub name: String,
    /// Set for an external server: the database is dropped when this value is.
    drop_with: Option<url::Url>,
}

/// Creates a fresh, empty database on the shared server (started on first use).
pub async fn database() -> anyhow::Result<TestDatabase> {
    init_test_logging();
    let shared = SHARED.get_or_try_init(start).await?;
    let name = format!("pw_test_{}", unique_tag());
    let mut admin = connect(shared.admin_url.as_str()).await?;
    // The name is ours (a fixed prefix and hexadecimal digits), so building SQL from it is safe.
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating test database {name}"))?;
    let _ = admin.close().await;
    let mut url = shared.admin_url.clone();
    url.set_path(&name);
    Ok(TestDatabase {
        url: url.to_string(),
        name,
        drop_with: shared.external.then(|| shared.admin_url.clone()),
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Containers disappear with their databases; on someone else's server, clean up. Drop
        // cannot be async, so a short-lived runtime on its own thread does the work.
        let Some(admin_url) = self.drop_with.take() else { return };
        let name = self.name.clone();
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = connect(admin_url.as_str()).await.ok()?;
                let statement = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                sqlx::query(AssertSqlSafe(statement)).execute(&mut admin).await.ok()
            })
        });
        let _ = dropping.join();
    }
}

async fn start() -> anyhow::Result<SharedServer> {
    if let Some(url) = env_var(URL_VAR) {
        tracing::info!("using the PostgreSQL server named by {URL_VAR}");
        let admin_url = url::Url::parse(&url).with_context(|| format!("{URL_VAR} is not a URL"))?;
        wait_until_accepting(admin_url.as_str(), Duration::from_secs(30)).await?;
        return Ok(SharedServer { admin_url, external: true, _container: None });
    }
    let setup = Setup { ports: vec![POSTGRES_PORT], stable_ports: false, volumes: Vec::new() };
    // Durability is not under test here: the data live in memory, and without fsync.
    let request = postgres()
        .with_env_var("PGDATA", format!("{DATA_TMPFS}/data"))
        .with_mount(Mount::tmpfs_mount(DATA_TMPFS).with_mode(0o1777))
        .with_cmd(["-c", "fsync=off", "-c", "max_connections=300"]);
    let container = containers::start(request, setup).await?;
    let port = containers::host_port(&container, POSTGRES_PORT).await?;
    let admin_url = url::Url::parse(&format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"))
        .context("building the admin URL")?;
    // The image logs the ready line once for its set-up server, before the real one listens.
    wait_until_accepting(admin_url.as_str(), Duration::from_secs(60)).await?;
    Ok(SharedServer { admin_url, external: false, _container: Some(container) })
}

/// A PostgreSQL server of the calling test's own, which it may stop and start again (the shared
/// one serves every other test of the process). Its data sit in a volume, so they survive the
/// stop. Needs Docker, whatever POLLWATCH_TEST_DATABASE_URL says.
#[derive(Debug)]
pub struct DedicatedDatabase {
    /// URL of the server's `postgres` database (test credentials).
    pub url: String,
    /// Removed (with its volume) when dropped, at the end of the test.
    container: ContainerAsync<Postgres>,
}

impl DedicatedDatabase {
    pub async fn start() -> anyhow::Result<Self> {
        init_test_logging();
        // The images' own PGDATA (they create it owned by their server's user, and a new volume
        // takes over that ownership).
        const DATA: &str = "/var/lib/postgresql/data";
        let setup = Setup { ports: vec![POSTGRES_PORT], stable_ports: true, volumes: vec![DATA] };
        // A stop is a clean shutdown, which writes everything out; fsync guards only against
        // the machine failing, which these tests do not do.
        let container = containers::start(postgres().with_cmd(["-c", "fsync=off"]), setup).await?;
        let port = containers::host_port(&container, POSTGRES_PORT).await?;
        let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
        wait_until_accepting(&url, Duration::from_secs(60)).await?;
        Ok(Self { url, container })
    }

    /// Stops the server at once, as an outage would: a fast shutdown (SIGINT), which ends every
    /// session, where `docker stop`'s SIGTERM would wait for the clients to leave.
    pub async fn stop(&self) -> anyhow::Result<()> {
        containers::stop_with(&self.container, "SIGINT").await
    }

    /// Starts the stopped server on the same port and waits until it accepts connections.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        containers::start_again(&self.container).await?;
        wait_until_accepting(&self.url, Duration::from_secs(120)).await
    }
}

/// The PostgreSQL module's request (user, password and database `postgres`; the module waits for
/// "database system is ready to accept connections") for the image the environment names.
fn postgres() -> testcontainers::ContainerRequest<Postgres> {
    let (name, tag) = containers::image(IMAGE_VAR, DEFAULT_IMAGE);
    Postgres::default().with_name(name).with_tag(tag)
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .context("timed out connecting to PostgreSQL")?
        .context("connecting to PostgreSQL")
}

async fn wait_until_accepting(url: &str, limit: Duration) -> anyhow::Result<()> {
    let connection =
        retry_until(limit, Duration::from_millis(200), "PostgreSQL did not accept connections", || {
            connect(url)
        })
        .await?;
    let _ = connection.close().await;
    Ok(())
}
