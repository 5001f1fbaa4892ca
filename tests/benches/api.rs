//! Read API benchmark: every endpoint's latency (and the dashboard's views') under 50 concurrent clients over a store of a
//! million reports while reports are ingested at 2,000 a second, the JSON lines export's rate and
//! the serving process's peak memory. A measurement, not a test: it prints figures and asserts
//! nothing about speed.
//!
//!     cargo bench -p pollwatch-tests --bench api -- [--reports N] [--seconds S] [--connections C]
//!         [--ingest-rate R] [--rounds N] [--skip-sqlite] [--skip-postgres] [--sqlite-path FILE]
//!         [--only TEXT]
//!
//! Needs `wrk` (Debian's package) and the release build of `pollwatch-as-installed` (`cargo bench`
//! builds it). The store is filled with the sample mission's realistic mix through
//! `Store::ingest_batch`, as the worker writes; `pollwatch serve` runs as its own process; the
//! ingest load is this process calling `ingest_batch` with batches of 200, paced to the rate.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pollwatch_model::Mission;
use pollwatch_store::{Incoming, Store};
use pollwatch_tests::bench::peak_rss_mib;
use pollwatch_tests::{fixtures, free_address, http_get, pollwatch_command};

const FILL_BATCH: usize = 500;
const INGEST_BATCH: usize = 200;

struct Options {
    reports: usize,
    seconds: u64,
    connections: u32,
    ingest_rate: u64,
    /// How many times every endpoint is loaded, one after another, over the same store.
    rounds: u32,
    sqlite: bool,
    postgres: bool,
    sqlite_path: Option<String>,
    /// Only the paths that contain this.
    only: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        reports: 1_000_000,
        seconds: 10,
        connections: 50,
        ingest_rate: 2_000,
        rounds: 1,
        sqlite: true,
        postgres: true,
        sqlite_path: None,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number =
            || args.next().and_then(|v| v.replace('_', "").parse::<u64>().ok()).expect("a number");
        match arg.as_str() {
            "--reports" => options.reports = number() as usize,
            "--seconds" => options.seconds = number().max(1),
            "--connections" => options.connections = number().max(1) as u32,
            "--ingest-rate" => options.ingest_rate = number(),
            "--rounds" => options.rounds = number().max(1) as u32,
            "--skip-sqlite" => options.sqlite = false,
            "--skip-postgres" => options.postgres = false,
            "--sqlite-path" => options.sqlite_path = args.next(),
            "--only" => options.only = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

const TOKEN: &str = "pw_benchmark-token";

/// The endpoints measured, as paths.
const PATHS: &[&str] = &[
    "/api/v1/coverage?phase=opening",
    "/api/v1/results/president",
    "/api/v1/findings?phase=voting",
    "/api/v1/incidents/summary",
    "/api/v1/mission",
    "/api/v1/observers?silent_for=60m",
    "/api/v1/incidents?limit=100",
    "/api/v1/discrepancies",
    "/api/v1/reports?limit=100",
    "/api/v1/held?limit=100",
    // The dashboard's views (HTML), as its pages fetch them.
    "/ui/overview",
    "/ui/incidents",
    "/ui/results?contest=president",
];

fn generated(mission: &Mission, n: usize, seed: u64) -> Vec<Incoming> {
    let mut reports = fixtures::reports(mission, n, seed);
    reports.sort_by_key(|r| r.submitted_at);
    reports.iter().map(|r| fixtures::incoming(mission, r)).collect()
}

/// Grows the store to `target` reports.
async fn fill(store: &Store, mission: &Mission, target: usize) -> anyhow::Result<()> {
    let mut stored = store.totals().await?.reports as usize;
    let mut seed = 1_000 + stored as u64;
    let started = Instant::now();
    while stored < target {
        let n = (target - stored).min(100_000);
        for batch in generated(mission, n, seed).chunks(FILL_BATCH) {
            store.ingest_batch(batch).await?;
        }
        stored += n;
        seed += 1;
        println!("  ... {stored} reports stored ({:.0} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Ingests at `rate` reports a second until `stop`; counts what it committed.
fn ingest_load(store: Store, mission: Arc<Mission>, rate: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut seed = 1u64 << 40;
        let mut pending: Vec<Incoming> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if pending.is_empty() {
                pending = generated(&mission, 7 * 1_000, seed);
                seed += 1;
            }
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            if done.load(Ordering::Relaxed) >= due {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let batch: Vec<Incoming> = pending.drain(..INGEST_BATCH.min(pending.len())).collect();
            match store.ingest_batch(&batch).await {
                Ok(_) => {
                    done.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(error) => eprintln!("ingest load: {error}"),
            }
        }
    });
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    requests_per_second: f64,
    errors: u64,
}

/// `wrk`'s figures for one path.
async fn wrk(address: std::net::SocketAddr, path: &str, options: &Options) -> anyhow::Result<Latency> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t", "2", "-c", &options.connections.to_string(), "-d", &format!("{}s", options.seconds)])
        .args(["--latency", "--timeout", "10s", "-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("http://{address}{path}"))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "wrk: {text}{}", String::from_utf8_lossy(&output.stderr));
    let ms = |label: &str| -> anyhow::Result<f64> {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
            .ok_or_else(|| anyhow::anyhow!("no {label} in {text}"))?;
        let (number, unit) = value.split_at(value.find(|c: char| c.is_alphabetic()).unwrap_or(value.len()));
        let number: f64 = number.parse()?;
        Ok(match unit {
            "us" => number / 1_000.0,
            "ms" => number,
            "s" => number * 1_000.0,
            "m" => number * 60_000.0,
            other => anyhow::bail!("unit {other} in {text}"),
        })
    };
    let requests_per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Latency { p50_ms: ms("50%")?, p99_ms: ms("99%")?, requests_per_second, errors })
}

/// `pollwatch serve` on `address` over `url`, once ready; with its process id.
async fn start_serve(
    url: &str,
    address: std::net::SocketAddr,
) -> anyhow::Result<(tokio::process::Child, u32)> {
    let serve = pollwatch_command()?
        .args(["serve", "--mission", "missions/kg-2021"])
        .env("POLLWATCH__STORE__URL", url)
        .env("POLLWATCH__HTTP__BIND", address.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let pid = serve.id().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(address, "/readyz").await.ok().map(|(s, _)| s) != Some(200) {
        anyhow::ensure!(Instant::now() < deadline, "pollwatch serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((serve, pid))
}

/// One GET with the benchmark's token: (status, body length).
async fn http_get_with_token(address: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, usize)> {
    let response = pollwatch_tests::http_request(address, "GET", path, Some(TOKEN)).await?;
    Ok((response.status, response.body.len()))
}

async fn measure(backend: &str, url: &str, mission: &Arc<Mission>, options: &Options) -> anyhow::Result<()> {
    let store = Store::open(url).await?;
    store.import_mission(mission).await?;
    println!("{backend}: filling to {} reports ...", options.reports);
    fill(&store, mission, options.reports).await?;
    let _ = store.remove_token("benchmark").await?;
    store.add_token("benchmark", "viewer", &pollwatch_api::auth::token_hash(TOKEN)).await?;
    let totals = store.totals().await?;

    let address = free_address()?;
    let (mut serve, _pid) = start_serve(url, address).await?;

    // The ingest rate alone, then under the read load.
    let paced = |seconds: u64| {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        ingest_load(store.clone(), mission.clone(), options.ingest_rate, stop.clone(), done.clone());
        (stop, done, Instant::now(), seconds)
    };
    let (stop, done, started, seconds) = paced(options.seconds);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    let (stop, done, started, _) = paced(0);
    println!(
        "{backend} over {} reports ({} revisions), {} clients, ingesting at {}/s:",
        totals.reports, totals.revisions, options.connections, options.ingest_rate
    );
    println!(
        "  {:<36} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "endpoint", "p50 ms", "p99 ms", "req/s", "non-2xx", "first"
    );
    for round in 1..=options.rounds {
        if options.rounds > 1 {
            println!("  round {round} of {}", options.rounds);
        }
        for path in
            PATHS.iter().filter(|p| options.only.as_ref().is_none_or(|only| p.contains(only.as_str())))
        {
            // The first answer to a shared question is computed while its askers wait; it is
            // reported on its own, and the load measures what follows. In later rounds the
            // answer is already there.
            let first = Instant::now();
            let (status, _) = http_get_with_token(address, path).await?;
            anyhow::ensure!(status == 200, "{path}: {status}");
            let first_ms = first.elapsed().as_secs_f64() * 1e3;
            let latency = wrk(address, path, options).await?;
            println!(
                "  {:<36} {:>9.1} {:>9.1} {:>9.0} {:>7} {:>9.0}",
                path, latency.p50_ms, latency.p99_ms, latency.requests_per_second, latency.errors, first_ms
            );
        }
    }
    let loaded = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    // The whole audit trail as JSON lines, while the ingest goes on, from a fresh serving
    // process so that its peak memory is the export's.
    serve.kill().await?;
    let _ = serve.wait().await;
    let (mut serve, pid) = start_serve(url, address).await?;
    let revisions = store.totals().await?.revisions;
    let started_export = Instant::now();
    let export = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
        ])
        .arg(format!("http://{address}/api/v1/export/reports.jsonl"))
        .output()
        .await?;
    let export_seconds = started_export.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "  export reports.jsonl: {} ({revisions} revisions or more) in {export_seconds:.1} s: {:.0} rows/s",
        String::from_utf8_lossy(&export.stdout),
        revisions as f64 / export_seconds
    );
    println!(
        "  ingest: {alone:.0} reports/s alone, {loaded:.0} reports/s under the read load ({:+.1} %)",
        (loaded / alone - 1.0) * 100.0
    );
    println!(
        "  pollwatch serve peak RSS during the export: {:.1} MiB",
        peak_rss_mib(pid).unwrap_or(f64::NAN)
    );
    serve.kill().await?;
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    let mission = Arc::new(fixtures::kg_2021());
    let dir = tempfile::tempdir()?;
    if options.sqlite {
        let path = options
            .sqlite_path
            .clone()
            .unwrap_or_else(|| dir.path().join("api-bench.db").display().to_string());
        measure("sqlite", &format!("sqlite://{path}"), &mission, &options).await?;
    }
    if options.postgres {
        let database = pollwatch_tests::database().await?;
        measure("postgres", &database.url, &mission, &options).await?;
    }
    Ok(())
}
