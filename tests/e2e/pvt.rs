//! The quick count. From a store, on both backends: the sampled stations' counting reports
//! stored as the worker stores them, one from a station outside the sample, one from a station
//! whose two teams disagree, one held for review; the estimate then equals the estimator's over exactly the sampled
//! stations that count, and replaying it before the reports arrived finds none in. The API
//! serves the same view once the mission folder has the sample.
//!
//! And as a citizen network runs it, every process as installed: `pollwatch pvt sample` draws
//! 300 stations of kg-2021-pvt, `pollwatch simulate --deploy pvt` posts an observer at each for
//! the day, the worker stores their reports, and the API, the command line and the page set the
//! estimate against the true count and against the official result, as announced and as raised.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use pollwatch_api::Api;
use pollwatch_model::{Content, ReportKind};
use pollwatch_pvt::{Counted, ShareOf, StrataBy};
use pollwatch_store::Store;
use pollwatch_tests::fixtures::{self, Rng};
use pollwatch_tests::{Browser, broker, free_address, http_request, spawn_worker_on, within};

use crate::store::{on_both_backends, postgres, sqlite};

on_both_backends!(the_estimate_reads_the_sampled_stations_that_count);

async fn the_estimate_reads_the_sampled_stations_that_count(store: &Store) -> anyhow::Result<()> {
    let mission = fixtures::kg_2021();
    store.import_mission(&mission).await?;
    let truth = pollwatch_sim::GroundTruth::parse(pollwatch_model::sample::KG_2021_GROUND_TRUTH, &mission)?;
    let count = pollwatch_sim::truth::draw(&mission, &truth, &mut Rng::new(5));
    let protocols: BTreeMap<&str, _> =
        mission.stations.iter().zip(&count.stations).map(|(s, p)| (s.code.as_str(), p.clone())).collect();
    let sample = pollwatch_pvt::draw(&mission, StrataBy::Region, 40, 11)?;
    let president = mission.contest("president").expect("a contest");

    let mut rng = Rng::new(3);
    let counting = |station: &str, team: usize, rng: &mut Rng| {
        let station = mission.stations.iter().find(|s| s.code == station).expect("a station");
        let observer = &mission.observers[team].id;
        let mut report = fixtures::report(&mission, station, observer, ReportKind::Counting, rng);
        report.content = Content::Counting(pollwatch_model::CountingBody {
            protocols: protocols[station.code.as_str()].clone(),
        });
        report
    };
    // Every sampled station but three of the largest stratum's reports (each stratum keeps two
    // or more, and so a margin); one station outside the sample does too.
    let silent: Vec<&str> = sample
        .stations
        .iter()
        .filter(|s| s.stratum == "osh")
        .skip(2)
        .take(3)
        .map(|s| s.station.as_str())
        .collect();
    assert_eq!(silent.len(), 3, "osh has five sampled stations at least");
    let reporting: Vec<_> =
        sample.stations.iter().filter(|s| !silent.contains(&s.station.as_str())).collect();
    let mut reports: Vec<_> = reporting.iter().map(|s| counting(&s.station, 0, &mut rng)).collect();
    let outside = mission.stations.iter().find(|s| !sample.stations.iter().any(|x| x.station == s.code));
    reports.push(counting(&outside.expect("a station outside the sample").code, 0, &mut rng));
    // A second team copies other figures at a station of the largest stratum: disputed, left out.
    let disputed = &reporting.iter().find(|s| s.stratum == "osh").expect("osh is sampled").station;
    let mut other = counting(disputed, 2, &mut rng);
    if let Content::Counting(body) = &mut other.content {
        let votes = &mut body.protocols[0].votes;
        // Five votes of the leading choice copied as another's: the sums still add up.
        let first = votes.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c.clone()).expect("a choice");
        let second = votes.keys().find(|c| **c != first).cloned().expect("two choices");
        let moved = votes[&first].min(5);
        assert!(moved > 0, "the leading choice has votes to move");
        *votes.get_mut(&first).expect("a choice") -= moved;
        *votes.get_mut(&second).expect("a choice") += moved;
    }
    reports.push(other);
    // A sampled station of another stratum whose protocol does not add up: held for review, out.
    let held = reporting.iter().find(|s| s.stratum == "bishkek").expect("bishkek is sampled").station.clone();
    let slip = reports.iter_mut().find(|r| r.station == held).expect("its report");
    if let Content::Counting(body) = &mut slip.content {
        *body.protocols[0].votes.values_mut().next().expect("a choice") += 10;
    }
    let before = Utc::now() - Duration::seconds(1);
    let asked =
        |as_of| pollwatch_api::pvt::Asked { share_of: ShareOf::Valid, threshold: 0.8, as_of, official: None };
    let batch: Vec<_> = reports.iter().map(|r| fixtures::incoming(&mission, r)).collect();
    let flagged = batch.iter().zip(&reports).filter(|(incoming, _)| !incoming.flags.is_empty());
    let flagged: Vec<&str> = flagged.map(|(_, r)| r.station.as_str()).collect();
    assert_eq!(flagged, vec![held.as_str()], "only the slip is held");
    store.ingest_batch(&batch).await?;

    let view = pollwatch_api::pvt::estimate(store, &mission, &sample, president, &asked(None)).await?;
    let counted: BTreeMap<&str, Counted> = reporting
        .iter()
        .filter(|s| &s.station != disputed && s.station != held)
        .map(|s| (s.station.as_str(), Counted::from(&protocols[s.station.as_str()][0])))
        .collect();
    let expected = pollwatch_pvt::contest(&mission, &sample, president, &counted, ShareOf::Valid);
    assert_eq!(view.disputed, vec![disputed.clone()]);
    assert_eq!(view.reported, counted.len() as u64);
    assert_eq!(view.sampled, 40);
    for choice in &view.choices {
        let ratio = expected.shares[&choice.choice];
        assert_eq!(choice.ratio.estimate, ratio.estimate, "{}", choice.choice);
        assert_eq!(choice.ratio.standard_error, ratio.standard_error, "{}", choice.choice);
    }
    assert_eq!(view.turnout.map(|t| t.estimate), expected.turnout.map(|t| t.estimate));
    // The night's history ends at the estimate above, each point counting more.
    let last = view.history.last().expect("a history");
    assert_eq!(last.reported, view.reported);
    for choice in &view.choices {
        assert_eq!(last.choices[&choice.choice].estimate, choice.ratio.estimate, "{}", choice.choice);
    }
    assert!(view.history.len() <= pollwatch_api::pvt::HISTORY_POINTS, "{}", view.history.len());
    assert!(view.history.windows(2).all(|w| w[0].reported < w[1].reported && w[0].at <= w[1].at));
    let reported: u64 = view.strata.iter().map(|s| s.reported).sum();
    assert_eq!(reported, counted.len() as u64);
    assert_eq!(view.publishable, expected.complete(0.8));

    // As of a moment before anything arrived: nothing in, nothing to publish.
    let then =
        pollwatch_api::pvt::estimate(store, &mission, &sample, president, &asked(Some(before))).await?;
    assert_eq!((then.reported, then.choices.len(), then.publishable), (0, 0, false));
    assert!(then.history.is_empty());

    // The same through the API: 404 until the mission folder has the sample, then the view.
    let folder = tempfile::tempdir()?;
    let address = free_address()?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let endpoints = pollwatch::http::Endpoints {
        health: pollwatch::http::Health { metrics: None, store: store.clone() },
        api: Some(Api::new(store.clone(), Arc::new(mission.clone())).with_mission_dir(folder.path())),
        metrics_need_token: false,
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pollwatch::http::serve(listener, endpoints, async {
        let _ = stopped.await;
    }));
    store.add_token("statistician", "viewer", &pollwatch_api::auth::token_hash(TOKEN)).await?;
    let get = |path: &'static str| {
        within(std::time::Duration::from_secs(30), path, http_request(address, "GET", path, Some(TOKEN)))
    };
    let missing = get("/api/v1/pvt").await??;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(missing.text().contains("pollwatch pvt sample"), "{}", missing.text());
    std::fs::write(folder.path().join(pollwatch_pvt::SAMPLE_FILE), sample.to_csv(&mission))?;
    let answer = get("/api/v1/pvt?contest=president").await??;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()?, serde_json::to_value(&view)?);
    let then = get("/api/v1/pvt?as_of=2000-01-01T00:00:00Z&share_of=ballots").await??.json()?;
    assert_eq!((then["reported"].as_u64(), then["share_of"].as_str()), (Some(0), Some("ballots")));
    let bad = get("/api/v1/pvt?share_of=everyone").await??;
    assert_eq!(bad.status, 400, "{}", bad.text());
    // The official result, as the whole count gives it: the leader's share is within the 99 %
    // interval; raised by 5 points of the ballots, it is outside it.
    let leader =
        view.choices.iter().max_by(|a, b| a.ratio.estimate.total_cmp(&b.ratio.estimate)).expect("choices");
    let mut figures =
        pollwatch_pvt::OfficialContest { registered_voters: 0, ballots: 0, votes: BTreeMap::new() };
    for protocol in protocols.values() {
        let president = &protocol[0];
        figures.registered_voters += u64::from(president.registered_voters);
        figures.ballots += u64::from(president.ballots_in_box);
        for (code, n) in &president.votes {
            *figures.votes.entry(code.clone()).or_default() += u64::from(*n);
        }
    }
    let official = |figures: &pollwatch_pvt::OfficialContest| {
        pollwatch_pvt::Official { contests: [("president".to_owned(), figures.clone())].into() }.to_toml()
    };
    std::fs::write(folder.path().join(pollwatch_pvt::OFFICIAL_FILE), official(&figures))?;
    let checked = get("/api/v1/pvt").await??.json()?;
    assert_eq!(checked["official"], true);
    let verdict = |view: &serde_json::Value, code: &str| {
        view["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["choice"] == code))
            .map(|c| c["official"].clone())
    };
    let true_share = figures.share(&leader.choice, ShareOf::Valid).expect("a share");
    let seen = verdict(&checked, &leader.choice).expect("the leader");
    assert_eq!(seen["share"].as_f64(), Some(true_share));
    assert_eq!(seen["verdict"], "consistent", "{seen}");
    let raised = figures.ballots / 20;
    figures.ballots += raised;
    *figures.votes.get_mut(&leader.choice).expect("the leader") += raised;
    std::fs::write(folder.path().join(pollwatch_pvt::OFFICIAL_FILE), official(&figures))?;
    let checked = get("/api/v1/pvt").await??.json()?;
    assert_eq!(verdict(&checked, &leader.choice).expect("the leader")["verdict"], "outside the margin");

    // A sample that no longer fits the roster says so.
    let broken = sample.to_csv(&mission).replace(&format!("\n{},", sample.stations[0].station), "\n99999,");
    std::fs::write(folder.path().join(pollwatch_pvt::SAMPLE_FILE), broken)?;
    let broken = get("/api/v1/pvt").await??;
    assert_eq!(broken.status, 500, "{}", broken.text());
    assert!(broken.text().contains("not in the roster"), "{}", broken.text());
    Ok(())
}

const TOKEN: &str = "pw_test-token-for-the-quick-count";

/// How long one command of the day may take (a deadline, not a target).
const STEP: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test]
async fn a_quick_count_day_finds_the_true_result_and_the_official_one_consistent() -> anyhow::Result<()> {
    // The mission folder, as a network keeps it: the sample is drawn into it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let folder = tempfile::tempdir()?;
    for file in ["mission.toml", "forms.toml", "stations.csv", "observers.csv", "ground-truth.toml"] {
        std::fs::copy(root.join("missions/kg-2021-pvt").join(file), folder.path().join(file))?;
    }
    let dir = folder.path().to_str().expect("a UTF-8 path").to_owned();
    let mission = pollwatch_model::sample::kg_2021_pvt();
    let drawn = run(pollwatch_tests::pollwatch_command()?.args([
        "pvt",
        "sample",
        "--mission",
        &dir,
        "--size",
        "300",
        "--seed",
        "7",
    ]))
    .await?;
    assert!(drawn.contains("seed 7"), "{drawn}");

    let broker = broker().await?;
    let simulator_url =
        broker.add_user(&broker.name("simulator"), "simulator-password", "impersonator").await?;
    let store = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", store.path().join("pollwatch.db").display());
    let settings = [
        ("POLLWATCH__INGEST__REQUIRE_SENDER_AUTH", "true".to_owned()),
        ("POLLWATCH__PVT__PUBLISH_THRESHOLD", "0.9".to_owned()),
    ];
    let worker = spawn_worker_on(&broker, &store_url, &settings, folder.path()).await?;
    let expectation = store.path().join("expectation.json");
    let simulated = run(worker
        .command()?
        .env("POLLWATCH__AMQP__URL", &simulator_url)
        .args(["simulate", "--mission", &dir, "--deploy", "pvt", "--seed", "7", "--duration", "5s"])
        .args(["--senders", "device", "--resends", "0.03", "--corrections", "0.03", "--out-of-order", "0.05"])
        .arg("--expect")
        .arg(&expectation))
    .await?;
    assert!(simulated.contains("published "), "{simulated}");
    let expected: pollwatch_sim::Expectation = serde_json::from_slice(&std::fs::read(&expectation)?)?;
    assert_eq!(expected.results["president"].stations_counted, 300, "one count a sampled station");
    let verified = run(worker.command()?.arg("verify").arg(&expectation).args(["--wait", "90s"])).await?;
    assert!(verified.starts_with("the store matches "), "{verified}");

    let token = run(worker.command()?.args(["token", "add", "statistician", "--role", "viewer"])).await?;
    let token = token.trim().to_owned();
    let address = worker.address();
    let get = |path: String| {
        let token = token.clone();
        async move {
            let answer =
                within(STEP, "GET /api/v1/pvt", http_request(address, "GET", &path, Some(&token))).await??;
            anyhow::ensure!(answer.status == 200, "{path}: {} {}", answer.status, answer.text());
            answer.json()
        }
    };
    let choice = |view: &serde_json::Value, code: &str| {
        view["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["choice"] == code))
            .cloned()
            .expect("a choice")
    };
    let within_margin = |ratio: &serde_json::Value, truth: f64| {
        let (estimate, margin) = (ratio["estimate"].as_f64(), ratio["margin_95"].as_f64());
        let (Some(estimate), Some(margin)) = (estimate, margin) else {
            panic!("an estimate with a margin: {ratio}")
        };
        println!(
            "estimate {:.2} % ± {:.2} (95 %), true {:.2} %",
            estimate * 100.0,
            margin * 100.0,
            truth * 100.0
        );
        (estimate - truth).abs() <= margin
    };

    // The whole count is known: 1,105,248 of the 1,395,513 ballots for Japarov (79.20 %), and
    // 1,395,513 of 3,563,574 registered voters took part (39.16 %).
    let view = get("/api/v1/pvt?contest=president&share_of=ballots".to_owned()).await?;
    assert_eq!((view["sampled"].as_u64(), view["reported"].as_u64()), (Some(300), Some(300)), "{view}");
    assert_eq!(
        (view["publishable"].as_bool(), view["threshold"].as_f64()),
        (Some(true), Some(0.9)),
        "{view}"
    );
    assert_eq!(view["official"], false);
    assert!(within_margin(&choice(&view, "japarov"), 1_105_248.0 / 1_395_513.0), "Japarov: {view}");
    assert!(within_margin(&view["turnout"], 1_395_513.0 / 3_563_574.0), "turnout: {view}");
    assert!(view["history"].as_array().is_some_and(|h| h.len() > 1), "the night: {view}");

    // The official result as announced: every choice, and turnout, consistent with the sample.
    let announced = root.join("missions/kg-2021/official-result.toml");
    let imported = run(pollwatch_tests::pollwatch_command()?
        .args(["pvt", "official", "--mission", &dir])
        .arg(&announced))
    .await?;
    assert!(imported.contains("president: 3,563,574 registered voters"), "{imported}");
    let checked = get("/api/v1/pvt?contest=president&share_of=ballots".to_owned()).await?;
    assert_eq!(checked["official"], true);
    let verdicts = |view: &serde_json::Value| -> Vec<(String, String)> {
        let choices = view["choices"].as_array().expect("choices").iter();
        choices
            .chain([&view["turnout"]])
            .map(|c| {
                (c["choice"].as_str().unwrap_or("turnout").to_owned(), c["official"]["verdict"].to_string())
            })
            .collect()
    };
    let all = verdicts(&checked);
    assert_eq!(all.len(), mission.contest("president").expect("a contest").choices.len() + 1);
    assert!(all.iter().all(|(_, v)| v == "\"consistent\""), "{all:?}");
    let referendum = get("/api/v1/pvt?contest=referendum&share_of=ballots".to_owned()).await?;
    assert!(verdicts(&referendum).iter().all(|(_, v)| v == "\"consistent\""), "{:?}", verdicts(&referendum));
    // The command line says the same.
    let printed = run(worker.command()?.args([
        "pvt",
        "estimate",
        "--mission",
        &dir,
        "--share-of",
        "ballots",
        "--json",
    ]))
    .await?;
    let printed: serde_json::Value = serde_json::from_str(&printed)?;
    assert_eq!(verdicts(&printed), all);
    assert_eq!(printed["choices"], checked["choices"]);

    // The page, in a real browser: the estimate as shares of the ballots, as the commission
    // announces them, with its verdicts, the night and the strata.
    let browser = Browser::start(1280, 1500).await?;
    let base = format!("http://{address}");
    crate::dashboard::sign_in_at(&browser, &base, &token).await?;
    crate::dashboard::open(&browser, &base, "/quick-count?contest=president&share_of=ballots", "#estimate")
        .await?;
    let row = |code: &'static str| {
        let browser = &browser;
        async move {
            browser.text(&format!("#estimate tr[data-choice={code}]")).await.map(|t| t.unwrap_or_default())
        }
    };
    let japarov = row("japarov").await?;
    assert!(
        japarov.contains("Japarov") && japarov.contains("79.20") && japarov.contains("consistent"),
        "{japarov}"
    );
    let estimate = choice(&checked, "japarov")["estimate"].as_f64().expect("an estimate");
    assert!(japarov.contains(&format!("{:.2}", estimate * 100.0)), "the API's figure: {japarov}");
    assert!(browser.shown("#publishable.ok").await?, "publishable");
    assert!(browser.shown("#over-time svg").await?, "the chart of the night");
    let strata = browser.text("#strata").await?.unwrap_or_default();
    assert!(strata.contains("Osh region") && strata.contains("100.0 %"), "{strata}");
    browser.screenshot("quick-count").await?;
    // Replayed at a moment of the night, as the API's history gives it: the page counts what
    // the API counts as of then, part of the sample and not all.
    // (A point's time, rounded up to the millisecond, is before the last point's.)
    let history = checked["history"].as_array().expect("a history");
    let last = &history.last().expect("a point")["at"];
    let moment = history.iter().rev().map(|p| &p["at"]).find(|at| *at != last);
    let moment = moment.and_then(|at| at.as_str()).expect("a moment before the last").to_owned();
    let then = get(format!("/api/v1/pvt?contest=president&share_of=ballots&as_of={moment}")).await?;
    let reported = then["reported"].as_u64().expect("a count");
    assert!(reported > 0 && reported < 300, "mid-night: {then}");
    let replay = format!("/quick-count?contest=president&share_of=ballots&as_of={moment}");
    crate::dashboard::open(&browser, &base, &replay, "#replayed").await?;
    let summed = "return [...document.querySelectorAll('#strata tbody tr')]\
        .reduce((n, row) => n + Number(row.cells[3].textContent.replace(/,/g, '')), 0);";
    let summed = browser.run(summed, vec![]).await?;
    assert_eq!(summed.as_u64(), Some(reported), "the strata's reported stations as of {moment}");

    // Japarov's official share raised by 5 points of the ballots, the votes taken from the
    // others in proportion: his is now outside the margin, and the page says so.
    let mut official =
        pollwatch_pvt::Official::parse(&std::fs::read_to_string(&announced)?, false, &mission)?;
    let president = official.contests.get_mut("president").expect("the president's result");
    let raised = president.ballots * 5 / 100;
    let others: u64 = president.votes.iter().filter(|(c, _)| *c != "japarov").map(|(_, n)| n).sum();
    let mut taken = 0;
    for (_, votes) in president.votes.iter_mut().filter(|(c, _)| *c != "japarov") {
        let share = *votes * raised / others;
        *votes -= share;
        taken += share;
    }
    let runner_up = president
        .votes
        .iter()
        .filter(|(c, _)| *c != "japarov")
        .max_by_key(|(_, n)| **n)
        .map(|(c, _)| c.clone());
    *president.votes.get_mut(&runner_up.expect("a runner-up")).expect("a choice") -= raised - taken;
    *president.votes.get_mut("japarov").expect("Japarov") += raised;
    let doctored = folder.path().join("doctored.toml");
    std::fs::write(&doctored, official.to_toml())?;
    run(pollwatch_tests::pollwatch_command()?.args(["pvt", "official", "--mission", &dir]).arg(&doctored))
        .await?;
    let checked = get("/api/v1/pvt?contest=president&share_of=ballots".to_owned()).await?;
    let japarov_official = &choice(&checked, "japarov")["official"];
    assert_eq!(japarov_official["verdict"], "outside the margin", "{japarov_official}");
    let difference = japarov_official["difference"].as_f64().expect("a difference");
    assert!(difference > 0.04, "{japarov_official}");
    assert_eq!(checked["turnout"]["official"]["verdict"], "consistent", "the same turnout");
    // The page reads the folder's official result at each request: opened again, it shows the
    // new one.
    crate::dashboard::open(&browser, &base, "/quick-count?contest=president&share_of=ballots", "#estimate")
        .await?;
    let japarov = row("japarov").await?;
    assert!(japarov.contains("outside the margin"), "{japarov}");
    browser.screenshot("quick-count-outside").await?;
    browser.close().await?;
    Ok(())
}

/// What `command` prints, once it has succeeded.
async fn run(command: &mut tokio::process::Command) -> anyhow::Result<String> {
    let output = within(STEP, "a pollwatch command", command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    Ok(stdout)
}
