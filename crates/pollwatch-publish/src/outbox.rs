//! The device's durable outbox: a small SQLite file that keeps every report until the broker has
//! confirmed it, across app restarts and broker outages.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pollwatch_model::{Context, Mission, Rejection, wire};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Why the outbox failed (not why a report was refused: that is a [`Rejection`]).
#[derive(Debug, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(#[from] sqlx::Error);

/// A report waiting for the broker's confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Position in the outbox; reports go out in this order.
    pub seq: i64,
    pub report_id: String,
    pub revision: i64,
    /// `report.<kind>` ([`wire::routing_key`]).
    pub routing_key: String,
    pub body: Vec<u8>,
    pub queued_at: DateTime<Utc>,
}

/// Reports queued on the device, oldest first.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: SqlitePool,
}

impl Outbox {
    /// Opens (creating if needed) the outbox file. A report counts as queued once `enqueue`
    /// returns: the file is synced on every commit.
    pub async fn open(path: &Path) -> Result<Self, OutboxError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq          INTEGER PRIMARY KEY AUTOINCREMENT,
                report_id    TEXT NOT NULL,
                revision     INTEGER NOT NULL,
                routing_key  TEXT NOT NULL,
                body         BLOB NOT NULL,
                queued_at    TEXT NOT NULL,
                UNIQUE (report_id, revision)
            )",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Checks `payload` as the worker will (decoding, the mission's rules, and `sender` as the
    /// device account) and queues it. `Ok(Err(_))`: refused, with the field and the reason, and
    /// not queued. The same report id and revision queued twice is kept once.
    pub async fn enqueue(
        &self,
        payload: &[u8],
        mission: &Mission,
        sender: Option<&str>,
    ) -> Result<Result<(), Rejection>, OutboxError> {
        let now = Utc::now();
        let checked = match pollwatch_model::check(payload, &Context { mission, now, sender }) {
            Ok(checked) => checked,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let report = &checked.report;
        sqlx::query(
            "INSERT INTO outbox (report_id, revision, routing_key, body, queued_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (report_id, revision) DO NOTHING",
        )
        .bind(report.report_id.to_string())
        .bind(i64::from(report.revision))
        .bind(wire::routing_key(report.kind()))
        .bind(payload)
        .bind(now.to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(Ok(()))
    }

    /// Up to `limit` reports after `after` (a `seq`), oldest first.
    pub async fn pending(&self, after: i64, limit: u32) -> Result<Vec<Pending>, OutboxError> {
        let rows: Vec<(i64, String, i64, String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT seq, report_id, revision, routing_key, body, queued_at FROM outbox
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, report_id, revision, routing_key, body, queued_at)| Pending {
                seq,
                report_id,
                revision,
                routing_key,
                body,
                queued_at: DateTime::parse_from_rfc3339(&queued_at).map(|t| t.to_utc()).unwrap_or_default(),
            })
            .collect())
    }

    /// How many reports wait.
    pub async fn waiting(&self) -> Result<u64, OutboxError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox").fetch_one(&self.pool).await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Removes reports the broker has confirmed.
    pub async fn remove(&self, seqs: &[i64]) -> Result<(), OutboxError> {
        let mut tx = self.pool.begin().await?;
        for seq in seqs {
            sqlx::query("DELETE FROM outbox WHERE seq = ?").bind(seq).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use pollwatch_model::{RejectCode, ReportKind};

    use super::*;

    fn read(path: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn mission() -> Mission {
        pollwatch_model::sample::kg_2021()
    }

    #[tokio::test]
    async fn keeps_valid_reports_once_and_in_order_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let mission = mission();
        let outbox = Outbox::open(&path).await.unwrap();
        for kind in ["arrival", "voting", "counting"] {
            let body = read(&format!("schema/examples/{kind}.json"));
            outbox.enqueue(body.as_bytes(), &mission, Some("dev-obs-001")).await.unwrap().unwrap();
        }
        // The same report again: kept once.
        let voting = read("schema/examples/voting.json");
        outbox.enqueue(voting.as_bytes(), &mission, Some("dev-obs-001")).await.unwrap().unwrap();
        outbox.close().await;

        let outbox = Outbox::open(&path).await.unwrap();
        assert_eq!(outbox.waiting().await.unwrap(), 3);
        let pending = outbox.pending(0, 10).await.unwrap();
        let keys: Vec<&str> = pending.iter().map(|p| p.routing_key.as_str()).collect();
        let kinds = [ReportKind::Arrival, ReportKind::Voting, ReportKind::Counting];
        assert_eq!(keys, kinds.map(wire::routing_key));
        assert_eq!(pending[1].body, voting.as_bytes());
        assert_eq!(outbox.pending(pending[0].seq, 10).await.unwrap().len(), 2);
        outbox.remove(&[pending[0].seq, pending[2].seq]).await.unwrap();
        assert_eq!(outbox.pending(0, 10).await.unwrap(), vec![pending[1].clone()]);
    }

    #[tokio::test]
    async fn refuses_a_bad_report_with_its_field_and_queues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).await.unwrap();
        let mission = mission();
        let body = read("schema/examples/voting.json").replace("\"revision\": 1", "\"revision\": 0");
        let rejection = outbox.enqueue(body.as_bytes(), &mission, None).await.unwrap().unwrap_err();
        assert_eq!((rejection.code, rejection.path.as_str()), (RejectCode::InvalidRevision, "revision"));
        assert_eq!(outbox.waiting().await.unwrap(), 0);
    }
}
