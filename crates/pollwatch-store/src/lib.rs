//! Durable, idempotent storage of observer reports, and the queries the core team runs on them.
//!
//! One API over two backends chosen by URL: `sqlite://PATH` (embedded, the default; the file is
//! created on first use) and `postgres://…` (shared by several workers), each through its native
//! sqlx driver (`db.rs`). Migrations are embedded and applied by [`Store::open`].
//!
//! [`Store::ingest_batch`] commits a whole batch in one transaction and says what became of each
//! report; the worker acknowledges deliveries only after it returns `Ok`. Idempotency rests on
//! unique constraints and `ON CONFLICT`, never on locks held in Rust, so several workers may
//! ingest into one PostgreSQL at once.

mod audit;
mod conflict;
mod db;
mod derived;
mod error;
mod findings;
mod ingest;
mod mission;
mod queries;
mod read;
mod review;
mod segments;
mod tokens;

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::db::{Pool, Sql};

pub use audit::{AuditEntry, AuditHead, GENESIS, Mismatch, Progress, Verification, chain_hash};
pub use conflict::{Pick, is_content_hash};
pub use error::StoreError;
pub use ingest::{Delivery, Incoming, Outcome, content_hash};
pub use mission::{Changes, ImportSummary};
pub use queries::*;
pub use read::*;
pub use review::{
    Decided, Decision, IMPORT_REVIEWER, ReviewAction, ReviewError, ReviewState, Settlement, Standing,
};
pub use tokens::TokenRecord;
// `results` returns the model's type, so that predictions of the results can hold it too.
pub use pollwatch_model::ContestResults;

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the store, with its schema migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects (creating a SQLite file and its folder if needed) and applies migrations.
    /// `url` carries credentials: it is never logged.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // Long enough for a busy database, short enough that a wrong URL fails while someone waits.
        let acquire_timeout = Duration::from_secs(10);
        let invalid = |e: sqlx::Error| StoreError::Permanent(format!("the store URL is not valid: {e}"));
        let migration_failed =
            |e: sqlx::migrate::MigrateError| StoreError::Permanent(format!("applying migrations: {e}"));
        let (pool, backend) = if url.starts_with("sqlite:") {
            // WAL lets readers work while the worker writes; `synchronous=FULL` makes a commit
            // survive power loss, which acknowledging after commit needs.
            let options = SqliteConnectOptions::from_str(&sqlite_url(url)?)
                .map_err(invalid)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // 16 MiB of page cache per connection (SQLite's default is 2 MiB): the pages a
                // batch updates stay in memory instead of being read back for every batch. The
                // inserts append (time-ordered ids, sequence numbers), so the pages they touch are
                // few and recent; 64 MiB bought nothing more and took the worker past its memory
                // budget (docs/benchmarks.md).
                .pragma("cache_size", "-16384")
                // Rows of a statement's result stream to the caller while SQLite works; with
                // sqlx's default of 50, a batch's RETURNING rows stall SQLite's thread until the
                // async side has taken each fifty.
                .row_buffer_size(4096)
                // The commit that finds more than 1,000 pages (4 MiB) in the WAL copies it back
                // into the database before it returns. 40 MiB wrote a page updated by many batches
                // back fewer times, but held a few hundred reports each time it ran: p99 at 2,000
                // reports/s 159 ms against 94 (docs/benchmarks.md).
                .pragma("wal_autocheckpoint", "1000")
                // Statement journals (a multi-row insert keeps one to undo itself on error) and
                // temporary sort tables in memory, not in temporary files.
                .pragma("temp_store", "memory");
            // One writer at a time in SQLite; a few more connections serve queries.
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await.map_err(migration_failed)?;
            (Pool::Sqlite(pool), Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(invalid)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await.map_err(migration_failed)?;
            (Pool::Postgres(pool), Backend::Postgres)
        } else {
            return Err(StoreError::Permanent(
                "the store URL must start with sqlite:// or postgres://".into(),
            ));
        };
        tracing::debug!(?backend, "store open");
        let store = Self { pool, backend };
        store.start_chain().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers a trivial query (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        Sql::new(self.backend, "SELECT 1").fetch_all(&self.pool).await.map(drop)
    }

    /// Closes every connection; pending work finishes first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether [`Store::close`] has been called (by any clone): nothing will be answered again.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}

/// `sqlite://data/pollwatch.db` names a relative path; make its folder.
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
    Ok(if query.is_empty() { format!("sqlite://{path}") } else { format!("sqlite://{path}?{query}") })
}
