//! Review end to end, on both stores: a simulated day (corrections, counting slips, spoofs,
//! miscounted second copies, reports from stations the roster lacks) through the broker and the
//! worker as installed; a corrected roster imported; reviewers deciding every held report and
//! settling every disputed station through the API, two of them racing for one report; the
//! results then the true figures of the stations the teams counted; and the audit chain checked
//! by `pollwatch audit verify`, by a Python script written from docs/review.md, and caught out
//! by one vote changed with SQL. The chain under three workers on one PostgreSQL store is the
//! last scenario.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pollwatch_sim::Expectation;
use pollwatch_store::Store;
use pollwatch_tests::{
    EventStream, HttpResponse, TestWorker, eventually, http_post_json, http_request, spawn_worker,
    spawn_worker_on, within,
};
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(120);

/// Every third station of the sample roster is left out of the roster the worker starts with.
fn partial_roster(into: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(into)?;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../missions/kg-2021");
    for file in ["mission.toml", "forms.toml", "observers.csv", "ground-truth.toml"] {
        std::fs::copy(sample.join(file), into.join(file))?;
    }
    let stations = std::fs::read_to_string(sample.join("stations.csv"))?;
    let kept: String = stations
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || i % 3 != 0)
        .map(|(_, line)| format!("{line}\n"))
        .collect();
    std::fs::write(into.join("stations.csv"), kept)?;
    Ok(())
}

/// The corrected roster: the sample's stations, all of them.
fn correct_roster(dir: &Path) -> anyhow::Result<()> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../missions/kg-2021");
    std::fs::copy(sample.join("stations.csv"), dir.join("stations.csv"))?;
    Ok(())
}

async fn get(address: SocketAddr, path: &str, token: &str) -> anyhow::Result<Value> {
    let response = within(STEP, path, http_request(address, "GET", path, Some(token))).await??;
    anyhow::ensure!(response.status == 200, "GET {path}: {} {}", response.status, response.text());
    response.json()
}

async fn post(address: SocketAddr, path: &str, token: &str, body: &Value) -> anyhow::Result<HttpResponse> {
    within(STEP, path, http_post_json(address, path, Some(token), body)).await?
}

/// Every report held for review, page by page.
async fn held(address: SocketAddr, token: &str) -> anyhow::Result<Vec<Value>> {
    let mut reports = Vec::new();
    let mut path = "/api/v1/held?limit=500".to_owned();
    loop {
        let page = get(address, &path, token).await?;
        reports.extend(page["reports"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/held?limit=500&after={next}"),
            None => return Ok(reports),
        }
    }
}

fn flags(report: &Value) -> BTreeSet<String> {
    report["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["code"].as_str().map(str::to_owned))
        .collect()
}

/// Adds a token for `name` with `role` through the command line; returns it.
async fn token(worker: &TestWorker, name: &str, role: &str) -> anyhow::Result<String> {
    let added = within(
        STEP,
        "pollwatch token add",
        worker.command()?.args(["token", "add", name, "--role", role]).output(),
    )
    .await??;
    anyhow::ensure!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    Ok(String::from_utf8(added.stdout)?.trim().to_owned())
}

/// Runs `pollwatch ARGS` with the worker's settings; its standard output, or why it failed.
async fn pollwatch(worker: &TestWorker, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = within(STEP, "pollwatch", worker.command()?.args(args).output()).await??;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn reviewers_settle_a_simulated_day_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    reviewed_day(&format!("sqlite://{}", dir.path().join("pollwatch.db").display())).await
}

#[tokio::test]
async fn reviewers_settle_a_simulated_day_on_postgres() -> anyhow::Result<()> {
    let database = pollwatch_tests::database().await?;
    reviewed_day(&database.url).await
}

async fn reviewed_day(store_url: &str) -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let simulator_url =
        broker.add_user(&broker.name("simulator"), "simulator-password", "impersonator").await?;
    let dir = tempfile::tempdir()?;
    let roster = dir.path().join("mission");
    partial_roster(&roster)?;
    let mut worker = spawn_worker_on(&broker, store_url, &[], &roster).await?;

    let expectation = dir.path().join("expectation.json");
    let simulated = worker
        .command()?
        .env("POLLWATCH__AMQP__URL", &simulator_url)
        .args(["simulate", "--mission", "missions/kg-2021", "--seed", "23", "--duration", "3s"])
        .args(["--senders", "device", "--spoofed", "0.01", "--corrections", "0.05", "--miscounts", "0.2"])
        .arg("--expect")
        .arg(&expectation)
        .output();
    let output = within(STEP, "the simulator", simulated).await??;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expected: Expectation = serde_json::from_slice(&std::fs::read(&expectation)?)?;
    let m = &expected.messages;
    assert!(m.corrections > 0 && m.spoofed > 0 && m.miscounts > 5, "{m:?}");

    // The worker has taken the whole day once the store holds every revision the day sent.
    let store = Store::open(store_url).await?;
    eventually(STEP, "every revision stored", async || {
        Ok(store.totals().await?.revisions == expected.store.revisions)
    })
    .await?;
    let (ana, bob) = (token(&worker, "ana", "reviewer").await?, token(&worker, "bob", "reviewer").await?);
    let viewer = token(&worker, "hom", "viewer").await?;
    let address = worker.address();

    // Held: the spoofs, and what came from the stations the roster lacks, counting reports too.
    let before = held(address, &viewer).await?;
    let unknown: Vec<&Value> = before.iter().filter(|r| flags(r).contains("unknown_station")).collect();
    let freeable: Vec<&Value> =
        unknown.iter().copied().filter(|r| flags(r).len() == 1 && r["kind"] == "counting").collect();
    assert!(!freeable.is_empty(), "counting reports held only for their station: {}", before.len());
    assert!(before.iter().any(|r| flags(r).contains("sender_mismatch")));

    // A viewer may not decide; a decision needs a reason.
    let spoof = before
        .iter()
        .find(|r| flags(r) == BTreeSet::from(["sender_mismatch".to_owned()]))
        .expect("a spoof held for its sender alone");
    let spoof_id = spoof["report_id"].as_str().expect("an id").to_owned();
    let reject =
        json!({"decision": "reject", "reason": "the team did not send it", "expected_state": "held"});
    let path = format!("/api/v1/reports/{spoof_id}/review");
    assert_eq!(post(address, &path, &viewer, &reject).await?.status, 403);
    let blank = json!({"decision": "reject", "reason": "  ", "expected_state": "held"});
    assert_eq!(post(address, &path, &ana, &blank).await?.status, 400);

    // The roster fixed: `mission import` frees what only the roster held, recorded as its decision.
    correct_roster(&roster)?;
    let roster_arg = roster.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = pollwatch(&worker, &["mission", "import", &roster_arg]).await?;
    assert!(ok && stdout.contains("accepted now"), "{stdout}{stderr}");
    worker.kill_and_start_again().await?;
    eventually(STEP, "the worker ready again", async || {
        Ok(http_request(address, "GET", "/readyz", None).await.is_ok_and(|r| r.status == 200))
    })
    .await?;
    let freed = get(
        address,
        &format!("/api/v1/reports/{}", freeable[0]["report_id"].as_str().unwrap_or("")),
        &viewer,
    )
    .await?;
    assert_eq!(freed["current"]["review_state"], "accepted", "{freed}");
    assert_eq!(freed["decided_by"]["reviewer"], pollwatch_store::IMPORT_REVIEWER, "{freed}");

    // Every decision is on the event stream at once.
    let mut events = EventStream::open(address, "/api/v1/events", &viewer, None).await?;
    let ready = within(STEP, "the ready event", events.next()).await??;
    assert_eq!(ready.event.as_deref(), Some("ready"));

    // Two reviewers reject the same spoof at once: one wins, the other is told who did.
    let (a, b) = tokio::join!(post(address, &path, &ana, &reject), post(address, &path, &bob, &reject));
    let (a, b) = (a?, b?);
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    let (winner, loser) = if a.status == 200 { (&a, &b) } else { (&b, &a) };
    let (won, lost) = (winner.json()?, loser.json()?);
    assert_eq!(lost["current_state"], "rejected", "{lost}");
    assert_eq!(lost["set_by"], won["reviewer"], "{lost}");
    assert!(lost["detail"].as_str().is_some_and(|d| d.contains("rejected")), "{lost}");
    let change = within(STEP, "a change event", events.next()).await??;
    let change: Value = serde_json::from_str(&change.data)?;
    assert!(change["reviews"].as_u64() >= Some(1) && change["kinds"] == json!(["counting"]), "{change}");
    // An open event stream would hold the worker's graceful shutdown.
    drop(events);

    // Every held report decided: the wrong ones rejected, the rest accepted.
    for report in held(address, &viewer).await? {
        let id = report["report_id"].as_str().expect("an id");
        let wrong = expected.wrong_reports.contains(&id.parse()?);
        let decision = json!({
            "decision": if wrong { "reject" } else { "accept" },
            "reason": if wrong { "not the team's report" } else { "checked with the team" },
            "expected_state": "held",
            "expected_revision": report["revision"],
        });
        let response = post(address, &format!("/api/v1/reports/{id}/review"), &ana, &decision).await?;
        assert_eq!(response.status, 200, "{id}: {}", response.text());
    }
    assert!(held(address, &viewer).await?.is_empty());

    // Every disputed station settled for the team's own copy.
    let disputes = get(address, "/api/v1/discrepancies", &viewer).await?;
    let disputes = disputes["discrepancies"].as_array().cloned().unwrap_or_default();
    assert!(!disputes.is_empty(), "the miscounted copies dispute their stations");
    for dispute in &disputes {
        let copies = dispute["reports"].as_array().expect("copies");
        let right: Vec<&Value> = copies
            .iter()
            .filter(|c| {
                c["report_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .is_some_and(|id| !expected.wrong_reports.contains(&id))
            })
            .collect();
        assert_eq!(right.len(), 1, "one right copy: {dispute}");
        let body = json!({"contest": dispute["contest"], "report_id": right[0]["report_id"], "reason": "the team's photo of the protocol"});
        let station = dispute["station"].as_str().expect("a station");
        let response = post(address, &format!("/api/v1/stations/{station}/protocol"), &bob, &body).await?;
        assert_eq!(response.status, 200, "{station}: {}", response.text());
    }
    // Shared answers are served at once and computed again after the change feed's next read:
    // the next requests see the decisions.
    eventually(STEP, "no disputed station left", async || {
        Ok(get(address, "/api/v1/discrepancies", &viewer).await?["discrepancies"] == json!([]))
    })
    .await?;

    // A second content for a counted revision: kept aside, listed, picked, raced for, picked back.
    picked_conflict(&worker, &store, (&ana, &bob, &viewer), &expected).await?;

    // The results are the truth of the stations the teams counted.
    for (contest, truth) in &expected.observed_truth {
        let path = format!("/api/v1/results/{contest}");
        eventually(STEP, "the results after the decisions", async || {
            Ok(get(address, &path, &viewer).await?["disputed"] == json!([]))
        })
        .await?;
        let results = get(address, &path, &viewer).await?;
        assert_eq!(results["stations_counted"], truth.stations_counted, "{contest}");
        assert_eq!(results["registered_voters"], truth.registered_voters, "{contest}");
        assert_eq!(results["ballots_in_box"], truth.ballots_in_box, "{contest}");
        assert_eq!(results["invalid"], truth.invalid, "{contest}");
        for (choice, votes) in &truth.votes {
            assert_eq!(results["votes"][choice], *votes, "{contest}: {choice}");
        }
        assert_eq!(results["disputed"], json!([]), "{contest}");
    }

    // The chain holds every revision and every decision; the command line agrees with the API.
    let (ok, stdout, stderr) = pollwatch(&worker, &["audit", "verify"]).await?;
    assert!(ok && stdout.contains("the audit chain holds"), "{stdout}{stderr}");
    let head = get(address, "/api/v1/audit/head", &viewer).await?;
    let (ok, stdout, _) = pollwatch(&worker, &["audit", "head", "--json"]).await?;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&stdout)?, head);
    store.close().await;
    worker.stop().await
}

/// Another version of an accepted counting report's current revision (one vote moved between
/// two choices) is stored as a device would have sent it; reviewers find it among the reports
/// with an open conflict, see both versions, pick the other one (a viewer may not), race to pick
/// the first back (one wins, the other is told which version is in force), and the first
/// counts again.
async fn picked_conflict(
    worker: &TestWorker,
    store: &Store,
    (ana, bob, viewer): (&str, &str, &str),
    expected: &Expectation,
) -> anyhow::Result<()> {
    let address = worker.address();
    let counted = get(address, "/api/v1/reports?kind=counting&held=false&limit=500", viewer).await?;
    let report = counted["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["report_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .is_some_and(|id| !expected.wrong_reports.contains(&id))
        })
        .expect("an accepted counting report");
    let id = report["report_id"].as_str().expect("an id").to_owned();
    let path = format!("/api/v1/reports/{id}");
    let view = get(address, &path, viewer).await?;
    let current = view["revisions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["in_force"] == true))
        .expect("a version in force")
        .clone();
    let mut other = pollwatch_model::decode(current["payload"].as_str().expect("a payload").as_bytes())
        .map_err(|r| anyhow::anyhow!("{}", r.message))?;
    let pollwatch_model::Content::Counting(body) = &mut other.content else {
        anyhow::bail!("not a counting report")
    };
    let votes = &mut body.protocols[0].votes;
    let (from, to) = {
        let mut codes = votes.iter().filter(|(_, v)| **v > 0).map(|(c, _)| c.clone());
        (codes.next().expect("a choice with votes"), votes.keys().next().expect("a choice").clone())
    };
    let to = if to == from { votes.keys().nth(1).expect("a second choice").clone() } else { to };
    *votes.get_mut(&from).expect("votes") -= 1;
    *votes.get_mut(&to).expect("votes") += 1;
    let payload = serde_json::to_string(&other)?;
    let delivery = pollwatch_store::Delivery {
        sender: current["sender"].as_str().map(str::to_owned),
        redelivered: false,
        received_at: chrono::Utc::now(),
    };
    let incoming = pollwatch_store::Incoming::new(other, Vec::new(), payload, delivery);
    let (first, second) =
        (current["content_hash"].as_str().expect("a hash").to_owned(), incoming.content_hash().to_owned());
    assert_eq!(store.ingest_batch(&[incoming]).await?, [pollwatch_store::Outcome::Conflict]);

    let open = get(address, "/api/v1/reports?conflicted=true", viewer).await?;
    assert_eq!(
        open["reports"].as_array().map(|r| r.iter().map(|r| r["report_id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(id)]),
        "{open}"
    );
    let view = get(address, &path, viewer).await?;
    assert_eq!(view["conflicts"][0]["content_hash"], json!(second), "both versions are shown: {view}");
    assert_eq!(view["conflicts"][0]["in_force"], false);

    let pick = |keep: &str, seen: &str| json!({"revision": current["revision"], "keep": keep, "expected_version": seen, "reason": "the photo of the protocol"});
    let version = format!("{path}/version");
    assert_eq!(post(address, &version, viewer, &pick(&second, &first)).await?.status, 403);
    let bad = json!({"revision": current["revision"], "keep": "<script>", "expected_version": first, "reason": "x"});
    assert_eq!(post(address, &version, ana, &bad).await?.status, 400);
    let response = post(address, &version, ana, &pick(&second, &first)).await?;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()?["action"], "pick");
    let view = get(address, &path, viewer).await?;
    let in_force: Vec<(Value, Value)> = view["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["in_force"] == true)
        .map(|r| (r["variant"].clone(), r["content_hash"].clone()))
        .collect();
    assert_eq!(in_force, [(json!(1), json!(second))], "{view}");
    assert_eq!(view["conflicts"][0]["in_force"], true);
    assert_eq!(get(address, "/api/v1/reports?conflicted=true", viewer).await?["reports"], json!([]));

    let back = pick(&first, &second);
    let (a, b) = tokio::join!(post(address, &version, ana, &back), post(address, &version, bob, &back));
    let (a, b) = (a?, b?);
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    let lost = if a.status == 409 { a.json()? } else { b.json()? };
    assert_eq!(lost["current_version"], json!(first), "{lost}");
    let view = get(address, &path, viewer).await?;
    let hashes: Vec<Value> = view["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["in_force"] == true)
        .map(|r| r["content_hash"].clone())
        .collect();
    assert_eq!(hashes, [json!(first)], "the first version counts again: {view}");

    // The command line: `review show` lists the versions; a pick on the version in force keeps it.
    let (ok, stdout, stderr) =
        pollwatch(worker, &["review", "show", "--mission", "missions/kg-2021", &id]).await?;
    assert!(ok && stdout.contains(&format!("version {second}")), "{stdout}{stderr}");
    let args = ["review", "pick", "--mission", "missions/kg-2021", &id, "--keep", &first];
    let (ok, stdout, stderr) =
        pollwatch(worker, &[&args[..], &["--reviewer", "carol", "--reason", "checked again"]].concat())
            .await?;
    assert!(ok && stdout.contains("stays in force"), "{stdout}{stderr}");
    let (ok, _, stderr) = pollwatch(
        worker,
        &[&args[..], &["--expect", &second, "--reviewer", "carol", "--reason", "x"]].concat(),
    )
    .await?;
    assert!(!ok && stderr.contains("nothing changed"), "{stderr}");
    Ok(())
}

/// The first counting revision's payload with one vote more for its first protocol's first
/// choice; returns its seq.
async fn change_one_vote(store_url: &str) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(store_url).await?;
    let (seq, payload): (i64, String) = sqlx::query_as(
        "SELECT seq, payload FROM report_revisions WHERE kind = 'counting' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let mut report: Value = serde_json::from_str(&payload)?;
    let votes = report["body"]["protocols"][0]["votes"].as_object_mut().expect("votes");
    let first = votes.values_mut().next().expect("a choice");
    *first = json!(first.as_u64().expect("a count") + 1);
    sqlx::query("UPDATE report_revisions SET payload = $1 WHERE seq = $2")
        .bind(report.to_string())
        .bind(seq)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(seq)
}

#[tokio::test]
async fn three_workers_on_one_postgres_store_make_one_chain_that_a_changed_vote_breaks() -> anyhow::Result<()>
{
    let database = pollwatch_tests::database().await?;
    let broker = pollwatch_tests::broker().await?;
    let simulator_url =
        broker.add_user(&broker.name("simulator"), "simulator-password", "impersonator").await?;
    let mut workers = Vec::new();
    for _ in 0..3 {
        // Small batches, so that the three commit interleaved.
        let small = [("POLLWATCH__INGEST__BATCH_SIZE", "20".to_owned())];
        workers.push(spawn_worker(&broker, &database.url, &small).await?);
    }
    let dir = tempfile::tempdir()?;
    let expectation = dir.path().join("expectation.json");
    let simulated = workers[0]
        .command()?
        .env("POLLWATCH__AMQP__URL", &simulator_url)
        .args(["simulate", "--mission", "missions/kg-2021", "--seed", "29", "--duration", "3s"])
        .args(["--senders", "device", "--spoofed", "0.01", "--corrections", "0.05", "--resends", "0.05"])
        .arg("--expect")
        .arg(&expectation)
        .output();
    let output = within(STEP, "the simulator", simulated).await??;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let verified = workers[0].command()?.arg("verify").arg(&expectation).args(["--wait", "90s"]).output();
    let output = within(STEP, "pollwatch verify", verified).await??;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));

    let worker = &workers[0];
    let (ok, stdout, stderr) = pollwatch(worker, &["audit", "verify"]).await?;
    assert!(ok && stdout.contains("the audit chain holds"), "{stdout}{stderr}");
    let (_, head, _) = pollwatch(worker, &["audit", "head", "--json"]).await?;
    let head: Value = serde_json::from_str(&head)?;
    let expected: Expectation = serde_json::from_slice(&std::fs::read(&expectation)?)?;
    assert_eq!(head["entries"], expected.store.revisions, "one entry per revision, none twice");

    // The exports, checked by the script written from docs/review.md alone.
    let (audit, reports) = (dir.path().join("audit.jsonl"), dir.path().join("reports.jsonl"));
    for (what, file) in [("audit", &audit), ("reports", &reports)] {
        let file = file.to_string_lossy().into_owned();
        let args = ["export", what, "--format", "jsonl", "--mission", "missions/kg-2021", "--output", &file];
        let (ok, _, stderr) = pollwatch(worker, &args).await?;
        assert!(ok, "{stderr}");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/check_audit.py");
    let hash = head["hash"].as_str().expect("a hash");
    let checked = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&audit)
        .arg(&reports)
        .args(["--head", hash])
        .output();
    let checked = within(STEP, "docs/check_audit.py", checked).await??;
    let said =
        String::from_utf8_lossy(&checked.stdout).into_owned() + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{said}");

    // One vote changed behind the chain's back: verification fails and names the entry.
    let seq = change_one_vote(&database.url).await?;
    // Its entry's position, as the export taken before gave it.
    let position = std::fs::read_to_string(&reports)?
        .lines()
        .map(serde_json::from_str::<Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|line| line["seq"] == seq)
        .and_then(|line| line["audit_position"].as_i64())
        .expect("the changed revision is in the export, with its entry");
    let (ok, stdout, stderr) = pollwatch(worker, &["audit", "verify"]).await?;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains(&format!("at entry {position}:")), "{stderr}");
    // The export taken before still checks against the head published before: the script, given
    // a new export, does not.
    let (ok, _, stderr) = pollwatch(
        worker,
        &[
            "export",
            "reports",
            "--format",
            "jsonl",
            "--mission",
            "missions/kg-2021",
            "--output",
            &reports.to_string_lossy(),
        ],
    )
    .await?;
    assert!(ok, "{stderr}");
    let rechecked = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&audit)
        .arg(&reports)
        .args(["--head", hash])
        .output();
    let rechecked = within(STEP, "docs/check_audit.py", rechecked).await??;
    assert!(!rechecked.status.success(), "a changed payload no longer matches its entry");
    for worker in workers {
        worker.stop().await?;
    }
    Ok(())
}
