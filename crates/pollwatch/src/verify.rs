//! `pollwatch verify`: the store and the dead-letter queue compared with a simulator's
//! expectation file, figure by figure, until they match or the wait is over.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pollwatch_model::{ContestResults, ReportKind};
use pollwatch_settings::Settings;
use pollwatch_sim::{Expectation, StoreCounts};
use pollwatch_store::Store;
use serde::Serialize;
use serde_json::Value;

/// What the store and the dead-letter queue hold, in the expectation file's terms.
#[derive(Debug, Serialize)]
struct Observed {
    store: StoreCounts,
    dead_letters: BTreeMap<String, u64>,
    coverage: BTreeMap<String, BTreeMap<String, usize>>,
    incidents: BTreeMap<String, BTreeMap<String, i64>>,
    results: BTreeMap<String, ContestResults>,
}

/// Compares until everything matches (true) or `wait` has passed (false, the differences
/// printed). The store's totals are for the whole store: verify a fresh store, holding only the
/// simulated day.
pub async fn run(settings: &Settings, file: &Path, wait: Duration) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let expected: Expectation = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an expectation file from pollwatch simulate", file.display()))?;
    let store_url = &settings.store.url;
    let store =
        Store::open(store_url.expose()).await.with_context(|| format!("opening the store at {store_url}"))?;
    let amqp = &settings.amqp;
    let connection = crate::broker_connection(settings).await?;

    if expected.require_sender_auth != settings.ingest.require_sender_auth {
        eprintln!(
            "note: {} was simulated with ingest.require_sender_auth = {}, these settings say {}; \
             what matters is what the worker ran with",
            file.display(),
            expected.require_sender_auth,
            settings.ingest.require_sender_auth
        );
    }
    let want = comparable(&expected);
    // The worker reads the same settings: its letters are the ones its broker user published.
    let worker = pollwatch_ingest::broker_user(amqp.url.first().expose());
    let deadline = Instant::now() + wait;
    let differences = loop {
        // Until the deadline, a failed look (the worker not up yet, say) is retried too.
        match observe(&store, &connection, &amqp.dead_letter_queue, &worker, &expected).await {
            Ok(observed) => {
                let mut differences = Vec::new();
                diff("", &want, &serde_json::to_value(&observed).expect("serialises"), &mut differences);
                if differences.is_empty() || Instant::now() >= deadline {
                    break differences;
                }
            }
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(error) => tracing::debug!("verify: {error:#}; trying again"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = connection.close(200, "verified".into()).await;
    store.close().await;
    if differences.is_empty() {
        let contests: Vec<&str> = expected.results.keys().map(String::as_str).collect();
        println!(
            "the store matches {}: {} reports, {} revisions, {} held for review, {} dead letters by code, \
             coverage of {} kinds, results of {}",
            file.display(),
            expected.store.reports,
            expected.store.revisions,
            expected.store.quarantined,
            expected.dead_letters.values().sum::<u64>(),
            expected.coverage.len(),
            contests.join(" and ")
        );
        return Ok(true);
    }
    println!("the store differs from {} in {} figures:", file.display(), differences.len());
    for line in &differences {
        println!("  {line}");
    }
    Ok(false)
}

/// The parts of an expectation the store and the queue can be asked about.
fn comparable(expected: &Expectation) -> Value {
    serde_json::json!({
        "store": expected.store,
        "dead_letters": expected.dead_letters,
        "coverage": expected.coverage,
        "incidents": expected.incidents,
        "results": expected.results,
    })
}

async fn observe(
    store: &Store,
    connection: &lapin::Connection,
    dead_letter_queue: &str,
    worker_user: &str,
    expected: &Expectation,
) -> anyhow::Result<Observed> {
    let mission = expected.mission.as_str();
    let totals = store.totals().await.context("counting the store's reports")?;
    let letters = pollwatch_ingest::dlq::list(connection, dead_letter_queue, worker_user)
        .await
        .with_context(|| format!("reading the dead-letter queue `{dead_letter_queue}`"))?;
    let dead_letters =
        pollwatch_ingest::dlq::stats(&letters).into_iter().map(|(code, n)| (code.to_owned(), n)).collect();
    let mut coverage = BTreeMap::new();
    for kind in ReportKind::ALL.iter().filter(|k| expected.coverage.contains_key(k.as_str())) {
        let regions = store.coverage(mission, *kind).await.context("reading coverage")?;
        coverage
            .insert(kind.as_str().to_owned(), regions.into_iter().map(|r| (r.region, r.reported)).collect());
    }
    let mut incidents: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for count in store.incident_counts(mission).await.context("reading incidents")? {
        *incidents.entry(count.category).or_default().entry(count.severity).or_default() += count.reports;
    }
    let mut results = BTreeMap::new();
    for contest in expected.results.keys() {
        let tally = store
            .results(mission, contest)
            .await
            .with_context(|| format!("reading the results of {contest}"))?;
        results.insert(contest.clone(), tally);
    }
    let store = StoreCounts {
        reports: totals.reports,
        revisions: totals.revisions,
        quarantined: totals.quarantined,
        conflicts: totals.conflicts,
    };
    Ok(Observed { store, dead_letters, coverage, incidents, results })
}

/// One line per figure that differs, named by its path in the expectation file.
fn diff(path: &str, want: &Value, have: &Value, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(want), Value::Object(have)) => {
            let keys: std::collections::BTreeSet<&String> = want.keys().chain(have.keys()).collect();
            for key in keys {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match (want.get(key), have.get(key)) {
                    (Some(w), Some(h)) => diff(&at, w, h, out),
                    (Some(w), None) => out.push(format!("{at}: expected {w}, found none")),
                    (None, Some(h)) => out.push(format!("{at}: expected none, found {h}")),
                    (None, None) => {}
                }
            }
        }
        _ if want == have => {}
        _ => out.push(format!("{path}: expected {want}, found {have}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_by_their_path() {
        let want = serde_json::json!({"store": {"reports": 3, "revisions": 4}, "dead_letters": {"malformed_json": 1}});
        let have =
            serde_json::json!({"store": {"reports": 3, "revisions": 5}, "dead_letters": {"invalid_utf8": 1}});
        let mut out = Vec::new();
        diff("", &want, &have, &mut out);
        assert_eq!(
            out,
            [
                "dead_letters.invalid_utf8: expected none, found 1",
                "dead_letters.malformed_json: expected 1, found none",
                "store.revisions: expected 4, found 5",
            ]
        );
        let mut none = Vec::new();
        diff("", &want, &want, &mut none);
        assert!(none.is_empty());
    }
}
