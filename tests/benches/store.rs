//! Store benchmark: ingest throughput on SQLite and PostgreSQL, and query latency over a large
//! store. A measurement, not a test: it prints figures and asserts nothing about speed.
//!
//!     cargo bench -p pollwatch-tests --bench store -- [--reports N] [--query-reports N] [--skip-postgres]
//!         [--sqlite-path FILE]
//!
//! Reports are the sample mission's realistic mix (one counting report with two protocols in
//! seven), ingested in batches of 500 as the worker does. PostgreSQL comes from the container
//! harness (or POLLWATCH_TEST_DATABASE_URL).

use std::time::{Duration, Instant};

use pollwatch_model::{Mission, ReportKind};
use pollwatch_store::{Incoming, Store};
use pollwatch_tests::fixtures;

const BATCH: usize = 500;

struct Options {
    reports: usize,
    query_reports: usize,
    postgres: bool,
    /// Where to put the SQLite file (to inspect it afterwards); a temporary folder otherwise.
    sqlite_path: Option<String>,
}

fn options() -> Options {
    let mut options =
        Options { reports: 100_000, query_reports: 1_000_000, postgres: true, sqlite_path: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|v| v.replace('_', "").parse().ok()).expect("a number");
        match arg.as_str() {
            "--reports" => options.reports = number(),
            "--query-reports" => options.query_reports = number(),
            "--skip-postgres" => options.postgres = false,
            "--sqlite-path" => options.sqlite_path = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn batch_of(mission: &Mission, n: usize, seed: u64) -> Vec<Incoming> {
    fixtures::reports(mission, n, seed).iter().map(|r| fixtures::incoming(mission, r)).collect()
}

/// Ingests `reports` in batches and returns reports per second.
async fn ingest(store: &Store, reports: &[Incoming]) -> anyhow::Result<f64> {
    let started = Instant::now();
    for chunk in reports.chunks(BATCH) {
        store.ingest_batch(chunk).await?;
    }
    Ok(reports.len() as f64 / started.elapsed().as_secs_f64())
}

/// Best of five runs of a query.
async fn time<F, Fut, T>(mut query: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, pollwatch_store::StoreError>>,
{
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        query().await?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    let mission = fixtures::kg_2021();
    println!("generating {} reports ...", options.reports);
    let reports = batch_of(&mission, options.reports, 1);

    let dir = tempfile::tempdir()?;
    let path =
        options.sqlite_path.clone().unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    let sqlite = Store::open(&format!("sqlite://{path}")).await?;
    sqlite.import_mission(&mission).await?;
    let rate = ingest(&sqlite, &reports).await?;
    println!("sqlite   ingest  {:>9} reports in batches of {BATCH}: {rate:>9.0} reports/s", options.reports);

    if options.postgres {
        let database = pollwatch_tests::database().await?;
        let postgres = Store::open(&database.url).await?;
        postgres.import_mission(&mission).await?;
        let rate = ingest(&postgres, &reports).await?;
        println!(
            "postgres ingest  {:>9} reports in batches of {BATCH}: {rate:>9.0} reports/s",
            options.reports
        );
        postgres.close().await;
    }

    // Queries over a large store: keep ingesting into the SQLite store up to the target size.
    let mut stored = options.reports;
    let mut seed = 2;
    while stored < options.query_reports {
        let n = (options.query_reports - stored).min(100_000);
        let more = batch_of(&mission, n, seed);
        ingest(&sqlite, &more).await?;
        stored += n;
        seed += 1;
        println!("  ... {stored} reports stored");
    }
    let coverage = time(|| sqlite.coverage(&mission.id, ReportKind::Opening)).await?;
    let results = time(|| sqlite.results(&mission.id, "president")).await?;
    let silent = time(|| sqlite.silent_observers(&mission.id, chrono::Utc::now())).await?;
    println!(
        "sqlite   query   coverage(opening) over {stored} reports: {:>8.1} ms",
        coverage.as_secs_f64() * 1e3
    );
    println!(
        "sqlite   query   results(president) over {stored} reports: {:>8.1} ms",
        results.as_secs_f64() * 1e3
    );
    println!(
        "sqlite   query   silent_observers over {stored} reports: {:>8.1} ms",
        silent.as_secs_f64() * 1e3
    );
    Ok(())
}
