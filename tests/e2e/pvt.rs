//! The quick count's estimate from a store, on both backends: the sampled stations' counting
//! reports stored as the worker stores them, one from a station outside the sample, one from a
//! station whose two teams disagree; the estimate then equals the estimator's over exactly the
//! sampled stations that count, and replaying it before the reports arrived finds none in. The
//! API serves the same view once the mission folder has the sample.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use pollwatch_api::Api;
use pollwatch_model::{Content, ReportKind};
use pollwatch_pvt::{Counted, ShareOf, StrataBy};
use pollwatch_store::Store;
use pollwatch_tests::fixtures::{self, Rng};
use pollwatch_tests::{free_address, http_request, within};

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
    let before = Utc::now() - Duration::seconds(1);
    let asked =
        |as_of| pollwatch_api::pvt::Asked { share_of: ShareOf::Valid, threshold: 0.8, as_of, official: None };
    let batch: Vec<_> = reports.iter().map(|r| fixtures::incoming(&mission, r)).collect();
    store.ingest_batch(&batch).await?;

    let view = pollwatch_api::pvt::estimate(store, &mission, &sample, president, &asked(None)).await?;
    let counted: BTreeMap<&str, Counted> = reporting
        .iter()
        .filter(|s| &s.station != disputed)
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
