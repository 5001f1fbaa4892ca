//! The read API over real HTTP on both stores: every endpoint family with a good request and at
//! least one bad parameter, the held and disputed cases, tokens, exports and the OpenAPI
//! document served.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pollwatch_api::Api;
use pollwatch_model::{Content, ContestResults, Mission, Report, ReportKind};
use pollwatch_store::{Incoming, Store};
use pollwatch_tests::fixtures;
use pollwatch_tests::{EventStream, HttpResponse, SseEvent, free_address, http_request, within};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::store::{on_both_backends, postgres, sqlite};

on_both_backends!(every_endpoint_answers_the_core_team, the_event_feed_follows_the_store);

const TOKEN: &str = "pw_test-token-for-the-api-suite";

fn mission() -> &'static Mission {
    static MISSION: std::sync::OnceLock<Mission> = std::sync::OnceLock::new();
    MISSION.get_or_init(fixtures::kg_2021)
}

/// The API on a free port of this process, until dropped.
struct Served {
    address: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(store: &Store) -> anyhow::Result<Served> {
    let address = free_address()?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let endpoints = pollwatch::http::Endpoints {
        health: pollwatch::http::Health { metrics: None, store: store.clone() },
        api: Some(Api::new(store.clone(), Arc::new(mission().clone()))),
        metrics_need_token: false,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(pollwatch::http::serve(listener, endpoints, async {
        let _ = stopped.await;
    }));
    Ok(Served { address, _stop: stop })
}

impl Served {
    async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        within(Duration::from_secs(30), path, http_request(self.address, "GET", path, Some(TOKEN))).await?
    }

    /// A 200 with a JSON body.
    async fn json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.get(path).await?;
        anyhow::ensure!(response.status == 200, "GET {path}: {} {}", response.status, response.text());
        anyhow::ensure!(
            response.header("content-type") == Some("application/json"),
            "GET {path}: {:?}",
            response.headers
        );
        response.json()
    }

    /// A problem with `status`, naming `parameter`.
    async fn problem(&self, path: &str, status: u16, parameter: Option<&str>) -> anyhow::Result<Value> {
        let response = self.get(path).await?;
        anyhow::ensure!(response.status == status, "GET {path}: {} {}", response.status, response.text());
        anyhow::ensure!(
            response.header("content-type") == Some("application/problem+json"),
            "GET {path}: {:?}",
            response.headers
        );
        let problem = response.json()?;
        assert_eq!(problem["status"], status, "{path}: {problem}");
        assert_eq!(problem["parameter"].as_str(), parameter, "{path}: {problem}");
        Ok(problem)
    }
}

/// A counting report of `observer` at `station` whose president protocol differs from `other`'s
/// by a vote moved between the first two candidates.
fn disagreeing(other: &Report, observer: &str, rng: &mut fixtures::Rng) -> Report {
    let station = mission().station(&other.station).expect("a station of the roster");
    let mut report = fixtures::report(mission(), station, observer, ReportKind::Counting, rng);
    report.content = other.content.clone();
    if let Content::Counting(body) = &mut report.content {
        let votes = &mut body.protocols[0].votes;
        let codes: Vec<String> = votes.keys().take(2).cloned().collect();
        if votes[&codes[0]] > 0 {
            *votes.get_mut(&codes[0]).expect("a choice") -= 1;
            *votes.get_mut(&codes[1]).expect("a choice") += 1;
        }
    }
    report
}

async fn every_endpoint_answers_the_core_team(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    store.import_mission(mission).await?;
    store.add_token("analyst", "viewer", &pollwatch_api::auth::token_hash(TOKEN)).await?;

    // A day at 40 stations, one held report, a corrected report and a disputed station.
    let mut reports = fixtures::reports(mission, 40 * fixtures::DAY.len(), 7);
    let mut rng = fixtures::Rng::new(99);
    let counted =
        reports.iter().find(|r| r.kind() == ReportKind::Counting).expect("a counting report").clone();
    let other_observer =
        &mission.observers.iter().find(|o| o.id != counted.observer).expect("another observer").id;
    let dispute = disagreeing(&counted, other_observer, &mut rng);
    reports.push(dispute.clone());
    let mut incoming: Vec<Incoming> = reports.iter().map(|r| fixtures::incoming(mission, r)).collect();
    let mut held = reports.iter().find(|r| r.kind() == ReportKind::Opening).expect("an opening").clone();
    held.report_id = uuid::Uuid::new_v4();
    held.station = "99999".into();
    let held = fixtures::incoming(mission, &held);
    anyhow::ensure!(!held.flags.is_empty(), "a report from a station outside the roster is held");
    incoming.push(held.clone());
    let mut corrected = reports[1].clone();
    corrected.revision = 2;
    corrected.assessment = Some(pollwatch_model::Assessment::VeryBad);
    incoming.push(fixtures::incoming(mission, &corrected));
    for batch in incoming.chunks(100) {
        store.ingest_batch(batch).await?;
    }
    let totals = store.totals().await?;
    let served = serve(store).await?;

    // Access: no token, a wrong one, the OpenAPI document without one, a write method.
    for token in [None, Some("pw_not-a-token")] {
        let response = http_request(served.address, "GET", "/api/v1/mission", token).await?;
        assert_eq!(response.status, 401, "{token:?}");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(response.header("content-type"), Some("application/problem+json"));
    }
    let openapi = http_request(served.address, "GET", "/api/v1/openapi.json", None).await?;
    assert_eq!(openapi.status, 200);
    assert_eq!(openapi.json()?["openapi"], "3.1.0");
    let post = http_request(served.address, "POST", "/api/v1/mission", Some(TOKEN)).await?;
    assert_eq!(post.status, 405, "{}", post.text());
    served.problem("/api/v1/nothing-here", 404, None).await?;

    // The mission.
    let view = served.json("/api/v1/mission").await?;
    assert_eq!(view["id"], mission.id);
    assert_eq!(view["stations"], mission.stations.len());
    let president: Vec<&str> = view["contests"][0]["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    let ballot: Vec<&str> = mission.contests[0].choices.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(president, ballot, "choices in ballot order");
    served.problem("/api/v1/mission?verbose=1", 400, Some("verbose")).await?;

    // Coverage: what the store says, per region and nationally, held reports included.
    let coverage = served.json("/api/v1/coverage?phase=opening").await?;
    let regions = store.coverage(&mission.id, ReportKind::Opening).await?;
    let reported: usize = regions.iter().map(|r| r.reported).sum();
    assert_eq!(coverage["national"]["reported"], reported);
    assert_eq!(coverage["national"]["expected"], mission.stations.len());
    assert_eq!(coverage["regions"].as_array().map(Vec::len), Some(mission.regions.len()));
    let region = &mission.regions[0].code;
    let one = served.json(&format!("/api/v1/coverage?phase=opening&region={region}")).await?;
    assert_eq!(one["regions"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["regions"][0]["missing"].as_array().map(Vec::len), Some(regions[0].missing.len()));
    served.problem("/api/v1/coverage", 400, Some("phase")).await?;
    let bad = served.problem("/api/v1/coverage?phase=lunch", 400, Some("phase")).await?;
    assert!(bad["allowed"].as_array().is_some_and(|a| a.contains(&Value::from("opening"))), "{bad}");
    let nowhere =
        served.problem("/api/v1/coverage?phase=opening&region=atlantis", 404, Some("region")).await?;
    assert!(
        nowhere["allowed"].as_array().is_some_and(|a| a.contains(&Value::from(region.as_str()))),
        "{nowhere}"
    );
    served.problem("/api/v1/coverage?phase=opening&phase=closing", 400, Some("phase")).await?;

    // Observers: everyone reported just now, so none is silent for an hour; all are for 0s.
    let silent = served.json("/api/v1/observers?silent_for=60m").await?;
    let quiet: HashSet<&str> = reports.iter().map(|r| r.observer.as_str()).collect();
    let listed = silent["observers"].as_array().expect("observers");
    assert_eq!(listed.len(), mission.observers.len() - quiet.len(), "only those who never reported");
    assert!(listed.iter().all(|o| o["last_report_at"].is_null()));
    let all = served.json("/api/v1/observers?silent_for=0s").await?;
    assert_eq!(all["observers"].as_array().map(Vec::len), Some(mission.observers.len()));
    served.problem("/api/v1/observers?silent_for=soon", 400, Some("silent_for")).await?;

    // Findings: assessments of the current, not-held reports; answers per question.
    let findings = served.json("/api/v1/findings?phase=opening").await?;
    let current: BTreeMap<uuid::Uuid, &Report> =
        reports.iter().chain(std::iter::once(&corrected)).fold(BTreeMap::new(), |mut m, r| {
            let entry = m.entry(r.report_id).or_insert(r);
            if r.revision > entry.revision {
                *entry = r;
            }
            m
        });
    let openings: Vec<&&Report> = current.values().filter(|r| r.kind() == ReportKind::Opening).collect();
    let assessed = openings.iter().filter(|r| r.assessment.is_some()).count();
    assert_eq!(findings["assessments"]["reports"], assessed, "{}", findings["assessments"]);
    let very_bad =
        openings.iter().filter(|r| r.assessment == Some(pollwatch_model::Assessment::VeryBad)).count();
    assert_eq!(findings["assessments"]["counts"]["very_bad"], very_bad);
    let form = &mission.forms[&ReportKind::Opening];
    let questions = findings["questions"].as_array().expect("questions");
    assert_eq!(questions.len(), form.questions.len());
    let first = &form.questions[0];
    let yes = openings
        .iter()
        .filter(|r| r.answers.get(&first.code) == Some(&pollwatch_model::Answer::YesNo(true)))
        .count();
    assert_eq!(questions[0]["code"], first.code.as_str());
    assert_eq!(questions[0]["yes"], yes, "{}", questions[0]);
    let numbers = questions.iter().find(|q| q["answer_type"] == "number").expect("a number question");
    assert!(numbers["numbers"]["min"].as_i64() <= numbers["numbers"]["max"].as_i64(), "{numbers}");
    served.problem("/api/v1/findings?phase=opening&region=", 404, Some("region")).await?;

    // Incidents: every not-held incident once over the pages, newest first; the summary agrees.
    let incidents = current.values().filter(|r| r.kind() == ReportKind::Incident).count();
    let (mut seen, mut after, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = served.json(&format!("/api/v1/incidents?limit=3{after}")).await?;
        seen.extend(page["incidents"].as_array().expect("incidents").iter().map(|i| i["report_id"].clone()));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), incidents, "after {pages} pages");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), incidents, "each once");
    let summary = served.json("/api/v1/incidents/summary").await?;
    assert_eq!(summary["total"], incidents);
    let by_region: i64 =
        summary["by_region"].as_array().expect("regions").iter().filter_map(|r| r["total"].as_i64()).sum();
    assert_eq!(by_region, incidents as i64);
    let high = served.json("/api/v1/incidents?severity=high&limit=1000").await?;
    assert!(high["incidents"].as_array().expect("incidents").iter().all(|i| i["severity"] == "high"));
    served.problem("/api/v1/incidents?severity=extreme", 400, Some("severity")).await?;
    served.problem("/api/v1/incidents?after=yesterday", 400, Some("after")).await?;
    served.problem("/api/v1/incidents?limit=0", 400, Some("limit")).await?;
    served.problem("/api/v1/incidents?since=noon", 400, Some("since")).await?;

    // Results: the model's tally of the current, not-held reports; the dispute listed.
    let results = served.json("/api/v1/results/president").await?;
    let contest = mission.contest("president").expect("the presidential contest");
    let tally = ContestResults::tally(mission, contest, current.values().copied());
    for (choice, votes) in &tally.votes {
        assert_eq!(results["votes"][choice], *votes, "{choice}");
    }
    assert_eq!(results["stations_counted"], tally.stations_counted);
    assert_eq!(results["valid"], tally.valid());
    assert_eq!(results["stations_expected"], mission.stations.len());
    let regional: i64 = results["by_region"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r["stations_counted"].as_i64())
        .sum();
    assert_eq!(regional, tally.stations_counted);
    assert_eq!(results["disputed"], serde_json::json!([counted.station]));
    let shares: f64 = results["shares"].as_object().expect("shares").values().filter_map(Value::as_f64).sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    let unknown = served.problem("/api/v1/results/mayor", 404, Some("contest")).await?;
    assert_eq!(unknown["allowed"], serde_json::json!(["president", "referendum"]));
    served.problem("/api/v1/results/president?region=atlantis", 404, Some("region")).await?;
    served.problem("/api/v1/results/president?by_region=true", 400, Some("by_region")).await?;

    // Discrepancies: both teams' figures, the counted one first.
    let discrepancies = served.json("/api/v1/discrepancies?contest=president").await?;
    let listed = discrepancies["discrepancies"].as_array().expect("discrepancies");
    assert_eq!(listed.len(), 1, "{discrepancies}");
    assert_eq!(listed[0]["station"], counted.station.as_str());
    assert_eq!(listed[0]["reports"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed[0]["counted"], listed[0]["reports"][0]["report_id"]);
    served.problem("/api/v1/discrepancies?contest=mayor", 404, Some("contest")).await?;

    // Reports: every current report once over the pages; the held ones; one report's history.
    let (mut listed, mut after) = (0, String::new());
    loop {
        let page = served.json(&format!("/api/v1/reports?limit=97{after}")).await?;
        listed += page["reports"].as_array().map_or(0, Vec::len);
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(listed as i64, totals.reports);
    let flagged = served.json("/api/v1/reports?held=true").await?;
    assert_eq!(flagged["reports"].as_array().map(Vec::len), Some(totals.quarantined as usize));
    served.problem("/api/v1/reports?held=maybe", 400, Some("held")).await?;
    served.problem("/api/v1/reports?kind=letter", 400, Some("kind")).await?;
    let history = served.json(&format!("/api/v1/reports/{}", corrected.report_id)).await?;
    assert_eq!(history["current"]["revision"], 2);
    let revisions = history["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 2);
    assert!(
        revisions
            .iter()
            .all(|r| r["channel"] == "amqp" && r["content_hash"].as_str().is_some_and(|h| h.len() == 64))
    );
    served.problem("/api/v1/reports/not-a-uuid", 400, Some("report_id")).await?;
    served.problem(&format!("/api/v1/reports/{}", uuid::Uuid::new_v4()), 404, Some("report_id")).await?;

    // Held: the report from outside the roster, with its flag.
    let held_view = served.json("/api/v1/held").await?;
    let held_reports = held_view["reports"].as_array().expect("held reports");
    assert_eq!(held_reports.len(), totals.quarantined as usize);
    let ours =
        held_reports.iter().find(|r| r["report_id"] == held.report().report_id.to_string()).expect("listed");
    assert_eq!(ours["flags"][0]["code"], held.flags[0].code.as_str());
    served.problem("/api/v1/held?limit=5000", 400, Some("limit")).await?;

    // Exports: every revision once, and a row per station and contest.
    let jsonl = served.get("/api/v1/export/reports.jsonl").await?;
    assert_eq!(jsonl.status, 200);
    let lines: Vec<Value> = jsonl.text().lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len() as i64, totals.revisions);
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()), "in the order received");
    let csv = served.get("/api/v1/export/reports.csv").await?;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let rows = csv::Reader::from_reader(csv.body.as_slice()).records().collect::<Result<Vec<_>, _>>()?;
    assert_eq!(rows.len() as i64, totals.revisions);
    let results_csv = served.get("/api/v1/export/results.csv").await?;
    let mut reader = csv::Reader::from_reader(results_csv.body.as_slice());
    let rows = reader.records().collect::<Result<Vec<_>, _>>()?;
    assert_eq!(rows.len(), mission.stations.len() * mission.contests.len());
    let counted_rows = rows.iter().filter(|r| r[0] == *"president" && !r[3].is_empty()).count() as i64;
    assert_eq!(counted_rows, tally.stations_counted);
    served.problem("/api/v1/export/reports.jsonl?since=today", 400, Some("since")).await?;

    // The dashboard's views, on the same listener and store: HTML with the same figures.
    for view in ["/ui/overview", "/ui/coverage?phase=counting", "/ui/incidents", "/ui/results", "/ui/held"] {
        let page = served.get(view).await?;
        assert_eq!(
            (page.status, page.header("content-type")),
            (200, Some("text/html; charset=utf-8")),
            "{view}"
        );
        assert!(page.text().contains(&mission.name), "{view}");
    }
    let overview = served.get("/ui/overview").await?.text();
    let tile = overview.split("id=\"tile-reports\"><span class=\"figure\">").nth(1).unwrap_or_default();
    let figure: String =
        tile.split('<').next().unwrap_or_default().chars().filter(char::is_ascii_digit).collect();
    assert_eq!(figure, totals.reports.to_string(), "the overview counts the reports");
    Ok(())
}

/// The next event of `events`, within 30 s, with its `data:` as JSON.
async fn next_event(events: &mut EventStream) -> anyhow::Result<(SseEvent, Value)> {
    let event = within(Duration::from_secs(30), "the next event", events.next()).await??;
    let data = serde_json::from_str(&event.data)?;
    Ok((event, data))
}

/// `/api/v1/events`: a `ready` event where the store stands, a `change` event naming the kinds
/// recorded since, a burst of batches coalesced into at most one event a batch that together count
/// every revision once, a reconnect with `Last-Event-ID` told everything since, and a malformed
/// `Last-Event-ID` or a missing token refused, and a stream ended when its token is removed.
async fn the_event_feed_follows_the_store(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    store.import_mission(mission).await?;
    store.add_token("analyst", "viewer", &pollwatch_api::auth::token_hash(TOKEN)).await?;
    let day: Vec<Incoming> = fixtures::reports(mission, 4 * fixtures::DAY.len(), 21)
        .iter()
        .map(|r| fixtures::incoming(mission, r))
        .collect();
    let (before, rest) = day.split_at(7);
    store.ingest_batch(before).await?;
    let served = serve(store).await?;

    let mut events = EventStream::open(served.address, "/api/v1/events", TOKEN, None).await?;
    assert_eq!(events.status, 200);
    let (ready, data) = next_event(&mut events).await?;
    let start = store.latest_seq().await?;
    assert_eq!(ready.event.as_deref(), Some("ready"));
    assert_eq!(ready.id, Some(start.to_string()));
    assert_eq!((data["seq"].as_i64(), data["revisions"].as_u64()), (Some(start), Some(0)));

    let incident = rest.iter().find(|i| i.report().kind() == ReportKind::Incident).expect("an incident");
    store.ingest_batch(std::slice::from_ref(incident)).await?;
    let (change, data) = next_event(&mut events).await?;
    assert_eq!(change.event.as_deref(), Some("change"));
    assert_eq!(data["kinds"], serde_json::json!(["incident"]));
    assert_eq!(data["revisions"].as_u64(), Some(1));
    assert_eq!(change.id, Some(store.latest_seq().await?.to_string()));

    // A burst: ten batches back to back.
    let burst: Vec<Incoming> =
        fixtures::reports(mission, 2_000, 22).iter().map(|r| fixtures::incoming(mission, r)).collect();
    for batch in burst.chunks(200) {
        store.ingest_batch(batch).await?;
    }
    let end = store.latest_seq().await?;
    let (mut seen, mut revisions, mut kinds) = (0, 0, HashSet::new());
    while revisions < 2_000 {
        let (event, data) = next_event(&mut events).await?;
        seen += 1;
        revisions += data["revisions"].as_u64().unwrap_or(0);
        kinds.extend(
            data["kinds"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned)),
        );
        assert!(event.id.as_deref().and_then(|id| id.parse::<i64>().ok()).is_some_and(|id| id <= end));
    }
    assert_eq!(revisions, 2_000, "every revision counted once");
    assert!(seen <= 10, "{seen} events for 10 batches");
    let sent: HashSet<String> = burst.iter().map(|i| i.report().kind().as_str().to_owned()).collect();
    assert_eq!(kinds, sent);

    // Reconnecting after the ready event: told everything since, at once.
    let mut resumed =
        EventStream::open(served.address, "/api/v1/events", TOKEN, Some(&start.to_string())).await?;
    let (ready, data) = next_event(&mut resumed).await?;
    assert_eq!(ready.event.as_deref(), Some("ready"));
    assert_eq!((data["seq"].as_i64(), data["revisions"].as_u64()), (Some(end), Some(2_001)));

    let refused = EventStream::open(served.address, "/api/v1/events", TOKEN, Some("12abc")).await?;
    assert_eq!(refused.status, 400);
    let bad = http_request(served.address, "GET", "/api/v1/events?since=1", Some(TOKEN)).await?;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()?["parameter"], "since");
    let anonymous = http_request(served.address, "GET", "/api/v1/events", None).await?;
    assert_eq!(anonymous.status, 401);

    // A removed token's streams end: within the 5 s a found token is trusted plus the 5 s
    // between a stream's checks.
    store.remove_token("analyst").await?;
    let ended = within(Duration::from_secs(30), "the stream to end", async {
        loop {
            if let Err(error) = resumed.next().await {
                return error.to_string();
            }
        }
    })
    .await?;
    assert!(ended.contains("ended the event stream"), "{ended}");
    Ok(())
}
