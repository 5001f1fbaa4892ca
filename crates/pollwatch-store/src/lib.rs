//! Durable, idempotent storage of observer reports, and the queries the core team runs on them.
//!
//! One API over two backends chosen by URL: `sqlite://PATH` (embedded, the default; the file is
//! created on first use) and `postgres://…` (shared by several workers). Migrations are embedded
//! and applied by [`Store::open`].
//!
//! [`Store::ingest_batch`] commits a whole batch in one transaction and says what became of each
//! report; the worker acknowledges deliveries only after it returns `Ok`. Idempotency rests on
//! unique constraints and `ON CONFLICT`, never on locks held in Rust, so several workers may
//! ingest into one PostgreSQL at once.

mod error;
mod ingest;
mod mission;
mod queries;

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};

pub use error::StoreError;
pub use ingest::{Delivery, Incoming, Outcome, content_hash};
pub use mission::{Changes, ImportSummary};
pub use queries::*;

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the store, with its schema migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Set on every SQLite connection. WAL lets readers work while the worker writes;
/// `synchronous=FULL` makes a commit survive power loss, which acknowledging after commit needs.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

impl Store {
    /// Connects (creating a SQLite file and its folder if needed) and applies migrations.
    /// `url` carries credentials: it is never logged.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Permanent(
                "the store URL must start with sqlite:// or postgres://".into(),
            ));
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Permanent(format!("the store URL is not valid: {e}")))?;
        // Long enough for a busy database, short enough that a wrong URL fails while someone waits.
        let pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            // One writer at a time in SQLite; a few more connections serve queries.
            Backend::Sqlite => pool_options
                .max_connections(4)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(StoreError::from)?,
            Backend::Postgres => pool_options.max_connections(16).connect_with(options).await?,
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.map_err(|e| StoreError::Permanent(format!("applying migrations: {e}")))?;
        tracing::debug!(?backend, "store open");
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; pending work finishes first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://data/pollwatch.db` names a relative path; make its folder and ask for the file to be
/// created.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Permanent(
            "the SQLite store needs a file (sqlite://PATH); an in-memory store would lose acknowledged reports".into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Permanent(format!(
                "creating the folder {} for the SQLite store: {e}",
                parent.display()
            ))
        })?;
    }
    let query = if query.contains("mode=") { query.to_owned() } else { format!("mode=rwc&{query}") };
    Ok(format!("sqlite://{path}?{}", query.trim_end_matches('&')))
}
