//! `pollwatch simulate` against a running `pollwatch worker`, as an operator rehearses election
//! day: every process as installed, sender authentication on, and the store then compared with
//! the simulator's expectation file by `pollwatch verify`.

use std::time::Duration;

use pollwatch_sim::Expectation;
use pollwatch_tests::{http_request, spawn_worker, within};

const STEP: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_simulated_election_day_leaves_the_sqlite_store_exactly_as_expected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    rehearse(&format!("sqlite://{}", dir.path().join("pollwatch.db").display())).await
}

#[tokio::test]
async fn a_simulated_election_day_leaves_the_postgres_store_exactly_as_expected() -> anyhow::Result<()> {
    let database = pollwatch_tests::database().await?;
    rehearse(&database.url).await
}

/// Worker, simulator and verifier as processes on one store, with sender authentication on.
async fn rehearse(store_url: &str) -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    // The simulator stands in for every device, so it may send as any of them.
    let simulator_url =
        broker.add_user(&broker.name("simulator"), "simulator-password", "impersonator").await?;
    let dir = tempfile::tempdir()?;
    let expectation = dir.path().join("expectation.json");
    let sender_auth = [("POLLWATCH__INGEST__REQUIRE_SENDER_AUTH", "true".to_owned())];
    let worker = spawn_worker(&broker, store_url, &sender_auth).await?;

    let simulated = worker
        .command()?
        .env("POLLWATCH__AMQP__URL", &simulator_url)
        .args(["simulate", "--mission", "missions/kg-2021", "--seed", "7", "--duration", "3s"])
        .args(["--senders", "device", "--spoofed", "0.01", "--resends", "0.03", "--corrections", "0.03"])
        .arg("--expect")
        .arg(&expectation)
        .output();
    let output = within(STEP, "the simulator", simulated).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("published ") && stdout.contains("spoofed"), "{stdout}");

    // The day is what it claims to be: every kind of trouble is in it.
    let expected: Expectation = serde_json::from_slice(&std::fs::read(&expectation)?)?;
    let m = &expected.messages;
    assert!(m.reports > 2_000 && m.late > 0 && m.resends > 0 && m.corrections > 0, "{m:?}");
    assert_eq!(expected.dead_letters.get("sender_mismatch"), Some(&m.spoofed));
    assert!(m.spoofed > 0 && expected.dead_letters.len() >= 12, "{:?}", expected.dead_letters);
    assert_eq!(expected.results["president"].stations_counted, 100, "one count per team");

    let verified = worker.command()?.arg("verify").arg(&expectation).args(["--wait", "90s"]).output();
    let output = within(STEP, "pollwatch verify", verified).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("the store matches "), "{stdout}");

    // What an operator reads: the API with a viewer token, and the command line, give the
    // expectation's votes candidate by candidate; without a token, nothing.
    let added = within(
        STEP,
        "pollwatch token add",
        worker.command()?.args(["token", "add", "hom", "--role", "viewer"]).output(),
    )
    .await??;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8(added.stdout)?.trim().to_owned();
    let president = &expected.results["president"];
    let api = http_request(worker.address(), "GET", "/api/v1/results/president", Some(&token)).await?;
    assert_eq!(api.status, 200, "{}", api.text());
    let api = api.json()?;
    let cli =
        worker.command()?.args(["results", "president", "--json", "--mission", "missions/kg-2021"]).output();
    let cli = within(STEP, "pollwatch results", cli).await??;
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout)?;
    for (choice, votes) in &president.votes {
        assert_eq!(api["votes"][choice], *votes, "the API's votes for {choice}");
        assert_eq!(cli["votes"][choice], *votes, "the command line's votes for {choice}");
    }
    assert_eq!(api["votes"].as_object().map(|v| v.len()), Some(president.votes.len()));
    assert_eq!(api["stations_counted"], president.stations_counted);
    assert_eq!(api, cli, "the API and the command line answer alike");
    let anonymous = http_request(worker.address(), "GET", "/api/v1/results/president", None).await?;
    assert_eq!(anonymous.status, 401);

    // One vote more than the store holds is a difference, and named.
    let mut tampered = expected.clone();
    let president = tampered.results.get_mut("president").expect("a contest");
    president.votes.iter_mut().find(|(choice, _)| choice == "japarov").expect("a candidate").1 += 1;
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, serde_json::to_vec(&tampered)?)?;
    let output =
        within(STEP, "pollwatch verify", worker.command()?.arg("verify").arg(&wrong).output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("differs") && stdout.contains("results.president.votes.japarov: expected"),
        "{stdout}"
    );

    worker.stop().await
}
