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
    // Every sampled station but the last three reports; one station outside the sample does too.
    let reporting = &sample.stations[..sample.stations.len() - 3];
    let mut reports: Vec<_> = reporting.iter().map(|s| counting(&s.station, 0, &mut rng)).collect();
    let outside = mission.stations.iter().find(|s| !sample.stations.iter().any(|x| x.station == s.code));
    reports.push(counting(&outside.expect("a station outside the sample").code, 0, &mut rng));
    // A second team copies other figures at the first sampled station: disputed, left out.
    let disputed = &reporting[0].station;
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
    let batch: Vec<_> = reports.iter().map(|r| fixtures::incoming(&mission, r)).collect();
    store.ingest_batch(&batch).await?;

    let view =
        pollwatch_api::pvt::estimate(store, &mission, &sample, president, ShareOf::Valid, 0.8, None).await?;
    let counted: BTreeMap<&str, Counted> = reporting[1..]
        .iter()
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
    let reported: u64 = view.strata.iter().map(|s| s.reported).sum();
    assert_eq!(reported, counted.len() as u64);
    assert_eq!(view.publishable, expected.complete(0.8));

    // As of a moment before anything arrived: nothing in, nothing to publish.
    let then =
        pollwatch_api::pvt::estimate(store, &mission, &sample, president, ShareOf::Valid, 0.8, Some(before))
            .await?;
    assert_eq!((then.reported, then.choices.len(), then.publishable), (0, 0, false));

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
    // A sample that no longer fits the roster says so.
    let broken = sample.to_csv(&mission).replace(&format!("\n{},", sample.stations[0].station), "\n99999,");
    std::fs::write(folder.path().join(pollwatch_pvt::SAMPLE_FILE), broken)?;
    let broken = get("/api/v1/pvt").await??;
    assert_eq!(broken.status, 500, "{}", broken.text());
    assert!(broken.text().contains("not in the roster"), "{}", broken.text());
    Ok(())
}

const TOKEN: &str = "pw_test-token-for-the-quick-count";
