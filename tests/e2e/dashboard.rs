//! The dashboard in a real browser: headless Chromium (over chromedriver) against `pollwatch
//! worker` on a real broker, after `pollwatch simulate` has played an election day into it.
//! The page must show what the API gives, follow new reports without a reload, come back
//! after the worker restarts, and show nothing but the sign-in to a bad token. Every page is
//! saved as a PNG under `<target>/dashboard-screenshots/` for a reviewer to look at.
//!
//! How fast a change reaches the page is measured here and printed, but not asserted: the 2 s
//! target is the benchmark's (`docs/benchmarks.md`). The waits below are deadlines for it to
//! happen at all.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::Channel;
use pollwatch_model::{Mission, ReportKind, wire};
use pollwatch_sim::generate::{Rng, report};
use pollwatch_tests::{
    Browser, TestBroker, TestWorker, eventually, http_post_json, http_request, spawn_worker, within,
};
use serde_json::Value;

use crate::worker::{json, publish};

const STEP: Duration = Duration::from_secs(120);

/// How long the page may take to show a change (a deadline; the target is 2 s, benchmarked).
const SHOWN_WITHIN: Duration = Duration::from_secs(15);

/// How long a restarted worker may take to be back and the page with it.
const BACK_WITHIN: Duration = Duration::from_secs(90);

fn mission() -> Mission {
    pollwatch_model::sample::kg_2021()
}

/// The digits of a figure as the page prints it (with thin spaces between thousands).
fn number(text: &str) -> i64 {
    text.chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(-1)
}

async fn api(worker: &TestWorker, token: &str, path: &str) -> anyhow::Result<Value> {
    let response = http_request(worker.address(), "GET", path, Some(token)).await?;
    anyhow::ensure!(response.status == 200, "{path}: {} {}", response.status, response.text());
    response.json()
}

/// Types `token` into the sign-in form and submits it.
async fn sign_in(browser: &Browser, token: &str) -> anyhow::Result<()> {
    browser
        .run(
            "document.getElementById('token').value = arguments[0]; \
             document.getElementById('sign-in-form').requestSubmit();",
            vec![token.into()],
        )
        .await?;
    Ok(())
}

/// Opens the dashboard at `base`, signs in with `token` and waits until the page is live.
pub(crate) async fn sign_in_at(browser: &Browser, base: &str, token: &str) -> anyhow::Result<()> {
    browser.client.goto(&format!("{base}/")).await?;
    sign_in(browser, token).await?;
    browser.until_text(SHOWN_WITHIN, "#status", |s| s == "live").await?;
    Ok(())
}

/// Opens `path` and waits until the page is live and its view is shown.
pub(crate) async fn open(browser: &Browser, base: &str, path: &str, shown: &str) -> anyhow::Result<()> {
    browser.client.goto(&format!("{base}{path}")).await?;
    browser.until_text(SHOWN_WITHIN, "#status", |s| s == "live").await?;
    let waited = eventually(SHOWN_WITHIN, shown, async || browser.shown(shown).await).await;
    if waited.is_err() {
        let view = browser.text("#view").await?.unwrap_or_default();
        let view: String = view.chars().take(300).collect();
        return waited.context(format!("{path}: the view shows {view:?}"));
    }
    waited
}

/// Publishes `report` (as JSON, possibly edited by `edit`) to the worker's exchange.
async fn send(
    broker: &TestBroker,
    channel: &Channel,
    report: &pollwatch_model::Report,
    edit: impl FnOnce(&mut Value),
) -> anyhow::Result<()> {
    let mut body = serde_json::to_value(report)?;
    edit(&mut body);
    let key = wire::routing_key(report.kind());
    publish(channel, &broker.name("reports"), &key, &serde_json::to_vec(&body)?, json()).await
}

/// The national coverage of `phase` on the overview: reported, expected.
async fn shown_coverage(browser: &Browser, phase: &str) -> anyhow::Result<(i64, i64)> {
    let cell = format!("#coverage-national td[data-phase={phase}]");
    let reported = browser.text(&format!("{cell} .reported")).await?.unwrap_or_default();
    let expected = browser.text(&format!("{cell} .expected")).await?.unwrap_or_default();
    Ok((number(&reported), number(&expected)))
}

#[tokio::test]
async fn the_dashboard_follows_a_simulated_day_in_a_real_browser() -> anyhow::Result<()> {
    let mission = mission();
    let broker = pollwatch_tests::broker().await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    let mut worker = spawn_worker(&broker, &store_url, &[]).await?;

    // An election day, played into the worker and checked in the store.
    let expectation = dir.path().join("expectation.json");
    let simulated = worker
        .command()?
        .args(["simulate", "--mission", "missions/kg-2021", "--seed", "11", "--duration", "3s"])
        .args(["--resends", "0.03", "--corrections", "0.03"])
        .arg("--expect")
        .arg(&expectation)
        .output();
    let output = within(STEP, "the simulator", simulated).await??;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let verified = worker.command()?.arg("verify").arg(&expectation).args(["--wait", "90s"]).output();
    let output = within(STEP, "pollwatch verify", verified).await??;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let added = worker.command()?.args(["token", "add", "analyst", "--role", "viewer"]).output();
    let added = within(STEP, "pollwatch token add", added).await??;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8(added.stdout)?.trim().to_owned();

    let browser = Browser::start(1440, 1800).await?;
    let base = format!("http://{}", worker.address());

    // A bad token: the sign-in again, with why, and no data anywhere on the page.
    browser.client.goto(&format!("{base}/")).await?;
    assert!(browser.shown("#sign-in").await?, "the sign-in first");
    sign_in(&browser, "pw_this-token-was-never-made").await?;
    browser.until_text(SHOWN_WITHIN, "#sign-in-error", |t| t.contains("not accepted")).await?;
    assert!(browser.shown("#sign-in").await?, "the sign-in again");
    assert_eq!(browser.text("#view").await?.as_deref(), Some(""), "no view");
    let page = browser.run("return document.documentElement.outerHTML;", vec![]).await?;
    let page = page.as_str().unwrap_or_default();
    assert!(!page.contains(&mission.name) && !page.contains(&mission.regions[1].name), "no mission data");
    browser.screenshot("sign-in").await?;

    // The right token: the overview, with the API's figures.
    sign_in(&browser, &token).await?;
    browser.until_text(SHOWN_WITHIN, "#status", |s| s == "live").await?;
    browser.until_text(SHOWN_WITHIN, "#tile-incidents .figure", |t| !t.is_empty()).await?;
    assert!(!browser.shown("#sign-in").await?);
    for phase in ["opening", "voting", "closing", "counting"] {
        let coverage = api(&worker, &token, &format!("/api/v1/coverage?phase={phase}")).await?;
        let national = &coverage["national"];
        assert_eq!(
            shown_coverage(&browser, phase).await?,
            (national["reported"].as_i64().unwrap_or(-2), national["expected"].as_i64().unwrap_or(-2)),
            "{phase} coverage"
        );
    }
    let incidents = api(&worker, &token, "/api/v1/incidents/summary").await?;
    let shown = number(&browser.text("#tile-incidents .figure").await?.unwrap_or_default());
    assert_eq!(Some(shown), incidents["total"].as_i64(), "incidents");
    assert!(shown > 0, "the day had incidents");
    for contest in &mission.contests {
        let results = api(&worker, &token, &format!("/api/v1/results/{}", contest.id)).await?;
        let shown = browser.text(&format!(".contest[data-contest={}] .counted", contest.id)).await?;
        assert_eq!(
            Some(number(&shown.unwrap_or_default())),
            results["stations_counted"].as_i64(),
            "{}",
            contest.id
        );
        let turnout = browser.text(&format!(".contest[data-contest={}] .turnout", contest.id)).await?;
        let expected = format!("{:.1} %", results["turnout"].as_f64().unwrap_or(-1.0) * 100.0);
        assert_eq!(turnout.as_deref(), Some(expected.as_str()), "{} turnout", contest.id);
    }
    let held = api(&worker, &token, "/api/v1/held?limit=1000").await?;
    let held_count = held["reports"].as_array().map_or(0, Vec::len) as i64;
    assert_eq!(number(&browser.text("#tile-held .figure").await?.unwrap_or_default()), held_count, "held");
    browser.screenshot("overview").await?;

    // Every page, and a report's details.
    open(&browser, &base, "/coverage?phase=counting", "#coverage-total").await?;
    let missing =
        api(&worker, &token, "/api/v1/coverage?phase=counting").await?["national"]["missing"].as_i64();
    assert_eq!(Some(number(&browser.text("#missing-count").await?.unwrap_or_default())), missing);
    browser.screenshot("coverage").await?;
    open(&browser, &base, "/incidents", ".feed").await?;
    browser.screenshot("incidents").await?;
    browser.run("document.querySelector('.feed button.details').click();", vec![]).await?;
    browser.until_text(SHOWN_WITHIN, "#details-body .report h2", |t| t.contains("incident")).await?;
    browser.screenshot("incident-details").await?;
    open(&browser, &base, "/results?contest=president", "#by-region").await?;
    browser.screenshot("results").await?;
    open(&browser, &base, "/results?contest=referendum", "#by-region").await?;
    browser.screenshot("results-referendum").await?;
    open(&browser, &base, "/held", "main .page").await?;
    browser.screenshot("held").await?;

    // Reports published while the overview is open appear without a reload.
    open(&browser, &base, "/", "#coverage").await?;
    browser.run("window.pollwatchNotReloaded = true;", vec![]).await?;
    let (opening_before, _) = shown_coverage(&browser, "opening").await?;
    let incidents_before = number(&browser.text("#tile-incidents .figure").await?.unwrap_or_default());
    let counted_before =
        number(&browser.text(".contest[data-contest=president] .counted").await?.unwrap_or_default());
    let opening = api(&worker, &token, "/api/v1/coverage?phase=opening").await?;
    let counting = api(&worker, &token, "/api/v1/coverage?phase=counting").await?;
    let first_missing = |coverage: &Value| -> anyhow::Result<String> {
        coverage["regions"]
            .as_array()
            .and_then(|regions| regions.iter().find_map(|r| r["missing"].as_array()?.first()?.as_str()))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no station is missing"))
    };
    let station = |code: String| mission.station(&code).cloned().expect("a station of the roster");
    let (open_at, count_at) = (station(first_missing(&opening)?), station(first_missing(&counting)?));
    let observer = &mission.observers[0].id;
    let mut rng = Rng::new(20_210_110);
    let channel = broker.publisher().await?;
    let published = Instant::now();
    send(&broker, &channel, &report(&mission, &open_at, observer, ReportKind::Opening, &mut rng), |_| {})
        .await?;
    let incident = report(&mission, &open_at, observer, ReportKind::Incident, &mut rng);
    send(&broker, &channel, &incident, |_| {}).await?;
    send(&broker, &channel, &report(&mission, &count_at, observer, ReportKind::Counting, &mut rng), |_| {})
        .await?;
    let wanted = (opening_before + 1, incidents_before + 1, counted_before + 1);
    eventually(SHOWN_WITHIN, "the overview showing the three new reports", async || {
        let (opening, _) = shown_coverage(&browser, "opening").await?;
        let incidents = number(&browser.text("#tile-incidents .figure").await?.unwrap_or_default());
        let counted =
            number(&browser.text(".contest[data-contest=president] .counted").await?.unwrap_or_default());
        Ok((opening, incidents, counted) == wanted)
    })
    .await?;
    eprintln!(
        "dashboard: the overview showed 3 new reports {:?} after they were confirmed",
        published.elapsed()
    );
    let not_reloaded = browser.run("return window.pollwatchNotReloaded === true;", vec![]).await?;
    assert_eq!(not_reloaded, Value::Bool(true), "the page was not reloaded");

    // An incident appears at the top of the feed.
    open(&browser, &base, "/incidents", ".feed").await?;
    browser.run("window.pollwatchNotReloaded = true;", vec![]).await?;
    let critical = report(&mission, &open_at, observer, ReportKind::Incident, &mut rng);
    let published = Instant::now();
    send(&broker, &channel, &critical, |body| {
        body["body"]["severity"] = "critical".into();
        body["body"]["description"] = "Ballot box carried out of the station — seen by both observers".into();
    })
    .await?;
    let first = ".feed tbody tr:first-child .description";
    browser.until_text(SHOWN_WITHIN, first, |t| t.starts_with("Ballot box carried out")).await?;
    eprintln!("dashboard: the feed showed the new incident {:?} after it was confirmed", published.elapsed());
    let row = browser.run("return document.querySelector('.feed tbody tr').className;", vec![]).await?;
    assert!(row.as_str().unwrap_or_default().contains("sev-critical"), "highlighted: {row}");
    assert_eq!(browser.run("return window.pollwatchNotReloaded === true;", vec![]).await?, Value::Bool(true));
    browser.screenshot("incidents-live").await?;

    // The worker restarts: the page says so, reconnects, and catches up with what came meanwhile.
    worker.kill_and_start_again().await?;
    browser.until_text(SHOWN_WITHIN, "#status", |s| s.starts_with("reconnecting")).await?;
    let meanwhile = report(&mission, &count_at, observer, ReportKind::Incident, &mut rng);
    send(&broker, &channel, &meanwhile, |body| {
        body["body"]["description"] = "Reported while the worker was down".into();
    })
    .await?;
    browser.until_text(BACK_WITHIN, "#status", |s| s == "live").await?;
    browser.until_text(SHOWN_WITHIN, first, |t| t == "Reported while the worker was down").await?;
    assert_eq!(browser.run("return window.pollwatchNotReloaded === true;", vec![]).await?, Value::Bool(true));

    // Review: a reviewer rejects a held report from its details; deciding on a state another
    // reviewer has changed meanwhile is refused, and the page says who changed it.
    let added = worker.command()?.args(["token", "add", "reviewer-1", "--role", "reviewer"]).output();
    let added = within(STEP, "pollwatch token add", added).await??;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let reviewer = String::from_utf8(added.stdout)?.trim().to_owned();
    let mut unknown = Vec::new();
    for _ in 0..2 {
        let held = report(&mission, &open_at, observer, ReportKind::Opening, &mut rng);
        send(&broker, &channel, &held, |body| body["station"] = "99999".into()).await?;
        unknown.push(held.report_id.to_string());
    }
    browser.run("document.getElementById('sign-out').click();", vec![]).await?;
    sign_in(&browser, &reviewer).await?;
    open(&browser, &base, "/held", "main .page").await?;
    let row = |id: &str| format!("tr[data-report='{id}'] button.details");
    eventually(SHOWN_WITHIN, "the held reports listed", async || {
        Ok(browser.shown(&row(&unknown[0])).await? && browser.shown(&row(&unknown[1])).await?)
    })
    .await?;
    browser.run(&format!("document.querySelector(\"{}\").click();", row(&unknown[0])), vec![]).await?;
    browser.until_text(SHOWN_WITHIN, "#review-state strong", |t| t == "held").await?;
    browser
        .run(
            "const form = document.querySelector('#details-body form.review'); \
             form.elements.reason.value = 'checked with the team by phone'; \
             form.requestSubmit(form.querySelector('button[value=reject]'));",
            vec![],
        )
        .await?;
    browser.until_text(SHOWN_WITHIN, "#details-body .review-message", |t| t == "Recorded.").await?;
    browser.until_text(SHOWN_WITHIN, "#review-state strong", |t| t == "rejected").await?;
    browser.screenshot("review-decided").await?;
    let rejected = api(&worker, &token, &format!("/api/v1/reports/{}", unknown[0])).await?;
    assert_eq!(rejected["current"]["review_state"], "rejected");
    assert_eq!(rejected["decided_by"]["reviewer"], "reviewer-1");
    browser.run("document.getElementById('details').close();", vec![]).await?;

    // The second report's details open; another reviewer accepts it through the API; then
    // this page's decision, made on what it showed, is refused with who got there first.
    browser.run(&format!("document.querySelector(\"{}\").click();", row(&unknown[1])), vec![]).await?;
    browser.until_text(SHOWN_WITHIN, "#review-state strong", |t| t == "held").await?;
    let body = serde_json::json!({"decision": "accept", "reason": "the station opened late", "expected_state": "held"});
    let path = format!("/api/v1/reports/{}/review", unknown[1]);
    let first = http_post_json(worker.address(), &path, Some(&reviewer), &body).await?;
    assert_eq!(first.status, 200, "{}", first.text());
    browser
        .run(
            "const form = document.querySelector('#details-body form.review'); \
             form.elements.reason.value = 'a second look'; \
             form.requestSubmit(form.querySelector('button[value=hold]'));",
            vec![],
        )
        .await?;
    browser
        .until_text(SHOWN_WITHIN, "#details-body .review-message", |t| {
            t.starts_with("Someone else got there first")
        })
        .await?;
    let message = browser.text("#details-body .review-message").await?.unwrap_or_default();
    assert!(message.contains("accepted") && message.contains("reviewer-1"), "{message}");
    browser.screenshot("review-conflict").await?;
    browser.run("document.getElementById('details').close();", vec![]).await?;

    // A report sent again with the same revision and other content: the held page lists it as
    // it arrives, its details show both versions side by side, and the reviewer counts the one
    // kept aside with its button; a pick made on a version another reviewer has changed
    // meanwhile is refused, with what counts now.
    let twice = report(&mission, &count_at, observer, ReportKind::Incident, &mut rng);
    send(&broker, &channel, &twice, |body| body["body"]["description"] = "Queue outside at noon".into())
        .await?;
    let id = twice.report_id.to_string();
    eventually(SHOWN_WITHIN, "the first version stored", async || {
        let response =
            http_request(worker.address(), "GET", &format!("/api/v1/reports/{id}"), Some(&token)).await?;
        Ok(response.status == 200)
    })
    .await?;
    send(&broker, &channel, &twice, |body| {
        body["body"]["description"] = "Queue outside at noon, and a fight".into();
    })
    .await?;
    let listed = format!("#conflicted tr[data-report='{id}'] button.details");
    let revision = twice.revision.to_string();
    browser
        .until_text(SHOWN_WITHIN, &format!("#conflicted tr[data-report='{id}'] td.num"), |t| t == revision)
        .await?;
    browser.run(&format!("document.querySelector(\"{listed}\").click();"), vec![]).await?;
    browser
        .until_text(SHOWN_WITHIN, "#details-body form.pick .version.counted h4", |t| {
            t.contains("First received")
        })
        .await?;
    let stored = api(&worker, &token, &format!("/api/v1/reports/{id}")).await?;
    let aside = stored["conflicts"][0]["content_hash"].as_str().context("a version kept aside")?.to_owned();
    let first_hash = stored["revisions"][0]["content_hash"].as_str().context("the first version")?.to_owned();
    assert!(
        stored["conflicts"][0]["payload"].as_str().unwrap_or_default().contains("and a fight"),
        "{stored}"
    );
    browser
        .run(
            "const form = document.querySelector('#details-body form.pick'); \
             form.elements.reason.value = 'the observer phoned: the second message is the right one'; \
             form.requestSubmit(form.querySelector('button[name=keep]'));",
            vec![],
        )
        .await?;
    browser
        .until_text(SHOWN_WITHIN, "#details-body .pick-message", |t| {
            t == "Recorded: that version counts now."
        })
        .await?;
    let counted = browser
        .run("return document.querySelector('#details-body .version.counted').dataset.version;", vec![])
        .await?;
    assert_eq!(counted.as_str(), Some(aside.as_str()), "the version kept aside counts now");
    browser.screenshot("conflict-picked").await?;
    let picked = api(&worker, &token, &format!("/api/v1/reports/{id}")).await?;
    assert_eq!(picked["conflicts"][0]["in_force"], true, "{picked}");
    assert_eq!(picked["review"][0]["action"], "pick", "{picked}");
    assert_eq!(picked["review"][0]["chosen"], aside.as_str(), "{picked}");
    eventually(SHOWN_WITHIN, "the conflict gone from the held page's list", async || {
        Ok(!browser.shown(&listed).await?)
    })
    .await?;

    // Another reviewer counts the first version again through the API; the page's pick, made
    // on the version it shows in force, is refused and says what counts now.
    let body = serde_json::json!({"revision": twice.revision, "keep": first_hash, "expected_version": aside,
        "reason": "the team leader's copy says otherwise"});
    let back =
        http_post_json(worker.address(), &format!("/api/v1/reports/{id}/version"), Some(&reviewer), &body)
            .await?;
    assert_eq!(back.status, 200, "{}", back.text());
    browser
        .run(
            "const form = document.querySelector('#details-body form.pick'); \
             form.elements.reason.value = 'a second look'; \
             form.requestSubmit(form.querySelector('button[name=keep]'));",
            vec![],
        )
        .await?;
    browser
        .until_text(SHOWN_WITHIN, "#details-body .pick-message", |t| {
            t.starts_with("Someone else got there first")
        })
        .await?;
    let message = browser.text("#details-body .pick-message").await?.unwrap_or_default();
    assert!(message.contains(&first_hash[..12]) && message.contains("reviewer-1"), "{message}");
    let counted = browser
        .run("return document.querySelector('#details-body .version.counted').dataset.version;", vec![])
        .await?;
    assert_eq!(counted.as_str(), Some(first_hash.as_str()), "the page shows what counts now");
    browser.screenshot("conflict-pick-refused").await?;

    browser.close().await?;
    worker.stop().await
}
