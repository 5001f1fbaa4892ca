//! Store benchmark: ingest throughput on SQLite and PostgreSQL, and query latency over a large
//! store. A measurement, not a test: it prints figures and asserts nothing about speed.
//!
//!     cargo bench -p pollwatch-tests --bench store -- [--reports N] [--query-reports N] [--runs N]
//!         [--skip-sqlite] [--skip-postgres] [--sqlite-path FILE] [--random-ids] [--writers N]
//!
//! Reports are the sample mission's realistic mix (one counting report with two protocols in
//! seven), in the order devices sent them, with the UUIDv7 ids our publisher writes
//! (`--random-ids` for version 4 ids), ingested in batches of 500 as the worker does. Each backend
//! ingests `--runs` times into a fresh store; the median is the figure. PostgreSQL comes from the
//! container harness (or POLLWATCH_TEST_DATABASE_URL). `--writers N` (default 1): on PostgreSQL,
//! N stores (as N workers would open) ingest the reports at once, each its own share of the
//! batches in turn; the figure is all the reports over the time until the last one is stored.

use std::time::{Duration, Instant};

use pollwatch_model::{Mission, ReportKind};
use pollwatch_store::{Incoming, Store};
use pollwatch_tests::fixtures;

const BATCH: usize = 500;

struct Options {
    reports: usize,
    query_reports: usize,
    sqlite: bool,
    postgres: bool,
    /// Ingest runs per backend, each into a fresh store; the median is the figure.
    runs: usize,
    /// Where to put the SQLite file (to inspect it afterwards); a temporary folder otherwise.
    sqlite_path: Option<String>,
    /// Random (version 4) report ids instead of the time-ordered ones our publisher writes.
    random_ids: bool,
    /// Stores ingesting into one PostgreSQL database at once.
    writers: usize,
}

fn options() -> Options {
    let mut options = Options {
        reports: 100_000,
        query_reports: 1_000_000,
        sqlite: true,
        postgres: true,
        runs: 3,
        sqlite_path: None,
        random_ids: false,
        writers: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|v| v.replace('_', "").parse().ok()).expect("a number");
        match arg.as_str() {
            "--reports" => options.reports = number(),
            "--query-reports" => options.query_reports = number(),
            "--runs" => options.runs = number().max(1),
            "--skip-sqlite" => options.sqlite = false,
            "--skip-postgres" => options.postgres = false,
            "--sqlite-path" => options.sqlite_path = args.next(),
            "--random-ids" => options.random_ids = true,
            "--writers" => options.writers = number().max(1),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// `n` reports in the order a queue would hold them on election day: by the time the devices
/// sent them.
fn batch_of(mission: &Mission, n: usize, seed: u64, random_ids: bool) -> Vec<Incoming> {
    let mut reports = fixtures::reports(mission, n, seed);
    reports.sort_by_key(|r| r.submitted_at);
    if random_ids {
        let mut rng = fixtures::Rng::new(seed);
        for report in &mut reports {
            let bytes = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())).to_le_bytes();
            report.report_id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        }
    }
    reports.iter().map(|r| fixtures::incoming(mission, r)).collect()
}

/// Ingests `reports` in batches and returns reports per second.
async fn ingest(store: &Store, reports: &[Incoming]) -> anyhow::Result<f64> {
    let started = Instant::now();
    for chunk in reports.chunks(BATCH) {
        store.ingest_batch(chunk).await?;
    }
    Ok(reports.len() as f64 / started.elapsed().as_secs_f64())
}

/// Ingests `reports` into the database at `url` from `writers` stores at once, batch `i` by
/// writer `i % writers`, and returns reports per second.
async fn ingest_concurrently(url: &str, reports: &[Incoming], writers: usize) -> anyhow::Result<f64> {
    let mut stores = Vec::with_capacity(writers);
    for _ in 0..writers {
        stores.push(Store::open(url).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (writer, store) in stores.into_iter().enumerate() {
        let mine: Vec<Vec<Incoming>> =
            reports.chunks(BATCH).skip(writer).step_by(writers).map(<[Incoming]>::to_vec).collect();
        tasks.spawn(async move {
            for chunk in &mine {
                store.ingest_batch(chunk).await?;
            }
            store.close().await;
            Ok::<_, pollwatch_store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
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
    let reports = batch_of(&mission, options.reports, 1, options.random_ids);

    let dir = tempfile::tempdir()?;
    // A fresh SQLite store for each run.
    let sqlite_url = |run: usize| match &options.sqlite_path {
        Some(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            format!("sqlite://{path}")
        }
        None => format!("sqlite://{}", dir.path().join(format!("bench-{run}.db")).display()),
    };
    let report_runs = |backend: &str, mut rates: Vec<f64>| {
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{backend:<8} ingest  {:>9} reports in batches of {BATCH}: {:>9.0} reports/s (median of {}: {})",
            options.reports,
            rates[rates.len() / 2],
            rates.len(),
            each.join(", ")
        );
    };
    if options.sqlite {
        let mut rates = Vec::new();
        for run in 0..options.runs {
            let url = sqlite_url(run);
            let sqlite = Store::open(&url).await?;
            sqlite.import_mission(&mission).await?;
            rates.push(ingest(&sqlite, &reports).await?);
            sqlite.close().await;
            // Each run starts on a quiet disk, not behind the write-back of the one before.
            let path = url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            std::process::Command::new("sync").status()?;
        }
        report_runs("sqlite", rates);
    }
    if options.postgres {
        let mut rates = Vec::new();
        for _ in 0..options.runs {
            let database = pollwatch_tests::database().await?;
            let postgres = Store::open(&database.url).await?;
            postgres.import_mission(&mission).await?;
            if options.writers > 1 {
                postgres.close().await;
                rates.push(ingest_concurrently(&database.url, &reports, options.writers).await?);
            } else {
                rates.push(ingest(&postgres, &reports).await?);
                postgres.close().await;
            }
        }
        let label = match options.writers {
            1 => "postgres".to_owned(),
            n => format!("postgres, {n} writers,"),
        };
        report_runs(&label, rates);
    }
    if options.query_reports == 0 {
        return Ok(());
    }

    // Queries over a large store: a SQLite store grown to the target size.
    let sqlite = Store::open(&sqlite_url(options.runs)).await?;
    sqlite.import_mission(&mission).await?;
    let mut stored = 0;
    let mut seed = 1;
    while stored < options.query_reports {
        let n = (options.query_reports - stored).min(100_000);
        let more = batch_of(&mission, n, seed, options.random_ids);
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
