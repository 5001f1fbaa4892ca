//! The store on both backends: every outcome, the audit trail, mission import, the queries,
//! concurrent workers, and a crash in the middle of a batch.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use futures_util::TryStreamExt as _;
use pollwatch_model::{Answer, Assessment, Content, Flag, FlagCode, Mission, Report, ReportKind};
use pollwatch_store::{Incoming, Outcome, ReportFilter, Store};
use pollwatch_tests::fixtures::{self, Rng};
use pollwatch_tests::within;

/// Keeps a test's database alive while its store is in use.
#[allow(dead_code)]
pub(crate) enum Keep {
    Dir(tempfile::TempDir),
    Database(pollwatch_tests::TestDatabase),
}

pub(crate) async fn sqlite() -> anyhow::Result<(Store, Keep)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("store/pollwatch.db").display());
    Ok((Store::open(&url).await?, Keep::Dir(dir)))
}

pub(crate) async fn postgres() -> anyhow::Result<(Store, Keep)> {
    let database = pollwatch_tests::database().await?;
    Ok((Store::open(&database.url).await?, Keep::Database(database)))
}

/// Runs one scenario on each backend as two tests.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                let (store, _keep) = super::sqlite().await?;
                super::$scenario(&store).await
            }

            #[tokio::test]
            async fn postgres() -> anyhow::Result<()> {
                let (store, _keep) = super::postgres().await?;
                super::$scenario(&store).await
            }
        }
    )*};
}

pub(crate) use on_both_backends;

on_both_backends!(
    every_outcome,
    repeats_within_one_batch,
    audit_trail_keeps_every_revision,
    mission_import_is_idempotent,
    queries_answer_the_core_team,
    coverage_follows_corrections_across_stations,
    findings_follow_corrections_quarantine_and_the_roster,
    silent_observers_go_by_the_latest_receipt,
    concurrent_workers_store_each_report_once,
);

fn mission() -> &'static Mission {
    static MISSION: std::sync::OnceLock<Mission> = std::sync::OnceLock::new();
    MISSION.get_or_init(fixtures::kg_2021)
}

fn sample(n: usize, seed: u64) -> Vec<Report> {
    fixtures::reports(mission(), n, seed)
}

fn incoming(report: &Report) -> Incoming {
    fixtures::incoming(mission(), report)
}

/// The same report as a correction: a higher revision with a changed answer.
fn corrected(report: &Report, revision: u32) -> Report {
    let mut report = report.clone();
    report.revision = revision;
    report.assessment =
        Some(if report.assessment == Some(Assessment::Bad) { Assessment::Good } else { Assessment::Bad });
    report
}

async fn ingest(store: &Store, reports: &[Incoming]) -> anyhow::Result<Vec<Outcome>> {
    Ok(within(Duration::from_secs(60), "ingesting a batch", store.ingest_batch(reports)).await??)
}

async fn every_outcome(store: &Store) -> anyhow::Result<()> {
    let reports = sample(4, 1);
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    let mut unknown_station = reports[3].clone();
    unknown_station.station = "99999".into();

    assert_eq!(ingest(store, &[incoming(a)]).await?, [Outcome::Stored]);
    let mut resent = incoming(a);
    resent.delivery.redelivered = true;
    assert_eq!(ingest(store, &[resent]).await?, [Outcome::Duplicate]);
    assert_eq!(ingest(store, &[incoming(&corrected(a, 2))]).await?, [Outcome::Revised]);

    // An older correction arriving late never replaces a newer one.
    assert_eq!(ingest(store, &[incoming(&corrected(b, 3))]).await?, [Outcome::Stored]);
    assert_eq!(ingest(store, &[incoming(&corrected(b, 2))]).await?, [Outcome::Stale]);

    assert_eq!(ingest(store, &[incoming(c)]).await?, [Outcome::Stored]);
    let mut different = c.clone();
    different.submitted_at += chrono::Duration::seconds(1);
    assert_eq!(ingest(store, &[incoming(&different)]).await?, [Outcome::Conflict]);
    assert_eq!(ingest(store, &[incoming(&different)]).await?, [Outcome::Conflict], "a repeated conflict");

    assert_eq!(ingest(store, &[incoming(&unknown_station)]).await?, [Outcome::Quarantined]);

    // Nobody can take over another observer's report by sending a higher revision of it, and a
    // report cannot turn into another kind.
    let mut hijack = corrected(a, 3);
    hijack.observer = mission().observers[5].id.clone();
    assert_eq!(ingest(store, &[incoming(&hijack)]).await?, [Outcome::Conflict]);
    let mut other_kind = corrected(c, 2);
    other_kind.content = Content::Arrival;
    other_kind.answers.clear();
    let mut sneaky = incoming(&other_kind);
    sneaky.flags.clear();
    assert_eq!(ingest(store, &[sneaky]).await?, [Outcome::Conflict]);

    let page = store.list_reports(&mission().id, &ReportFilter::default(), None, 100).await?;
    let current: BTreeMap<String, (i64, bool)> =
        page.reports.iter().map(|r| (r.report_id.clone(), (r.revision, r.quarantined))).collect();
    assert_eq!(current[&a.report_id.to_string()], (2, false));
    assert_eq!(current[&b.report_id.to_string()], (3, false));
    assert_eq!(current[&c.report_id.to_string()], (1, false));
    assert_eq!(current[&unknown_station.report_id.to_string()], (1, true));

    let totals = store.totals().await?;
    assert_eq!((totals.reports, totals.revisions, totals.conflicts, totals.quarantined), (4, 6, 3, 1));
    let flagged = ReportFilter { flag: Some("unknown_station".into()), ..ReportFilter::default() };
    let page = store.list_reports(&mission().id, &flagged, None, 100).await?;
    assert_eq!(page.reports.len(), 1);
    Ok(())
}

async fn repeats_within_one_batch(store: &Store) -> anyhow::Result<()> {
    let reports = sample(3, 2);
    let batch = [
        incoming(&corrected(&reports[0], 2)),
        incoming(&reports[1]),
        incoming(&reports[0]),
        incoming(&reports[1]),
        incoming(&reports[2]),
    ];
    // Outcomes come back in batch order. Within a batch the store works in (report id, revision)
    // order, so revision 1 is stored before revision 2 revises it.
    let outcomes = ingest(store, &batch).await?;
    assert_eq!(
        outcomes,
        [Outcome::Revised, Outcome::Stored, Outcome::Stored, Outcome::Duplicate, Outcome::Stored]
    );
    let page = store.list_reports(&mission().id, &ReportFilter::default(), None, 10).await?;
    let first =
        page.reports.iter().find(|r| r.report_id == reports[0].report_id.to_string()).expect("listed");
    assert_eq!(first.revision, 2);
    Ok(())
}

async fn audit_trail_keeps_every_revision(store: &Store) -> anyhow::Result<()> {
    let report = &sample(1, 3)[0];
    let mut first = incoming(report);
    first.delivery.sender = Some("dev-obs-001".into());
    let mut second = incoming(&corrected(report, 2));
    second.delivery.redelivered = true;
    ingest(store, &[first.clone()]).await?;
    ingest(store, &[second.clone()]).await?;

    let records: Vec<_> = store.export().try_collect().await?;
    assert_eq!(records.len(), 2);
    for (record, sent) in records.iter().zip([&first, &second]) {
        assert_eq!(record.report_id, sent.report().report_id.to_string());
        assert_eq!(record.revision, i64::from(sent.report().revision));
        assert_eq!(record.payload, sent.payload, "the raw payload is kept byte for byte");
        assert_eq!(record.content_hash, sent.content_hash());
        assert_eq!(record.sender, sent.delivery.sender);
        assert_eq!(record.redelivered, sent.delivery.redelivered);
        assert_eq!(record.received_at.timestamp_micros(), sent.delivery.received_at.timestamp_micros());
    }
    Ok(())
}

async fn mission_import_is_idempotent(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    let first = store.import_mission(mission).await?;
    assert_eq!((first.stations.added, first.observers.added, first.choices.added), (2_476, 200, 20));
    let again = store.import_mission(mission).await?;
    assert_eq!(again.stations.unchanged, 2_476);
    assert_eq!(again.stations.added + again.stations.updated + again.stations.removed, 0);
    assert_eq!(again.observers.unchanged, 200);

    let mut changed = mission.clone();
    changed.stations[0].registered_voters += 1;
    changed.observers.pop();
    let third = store.import_mission(&changed).await?;
    assert_eq!((third.stations.updated, third.stations.unchanged), (1, 2_475));
    assert_eq!((third.observers.removed, third.observers.unchanged), (1, 199));
    Ok(())
}

async fn queries_answer_the_core_team(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    store.import_mission(mission).await?;
    let before = Utc::now();
    let mut rng = Rng::new(7);
    let bishkek: Vec<_> = mission.stations.iter().filter(|s| s.region == "bishkek").take(3).collect();
    let (team_a, team_b) = (&mission.observers[0].id, &mission.observers[2].id);
    let mut reports = Vec::new();
    for station in &bishkek {
        for kind in fixtures::DAY {
            reports.push(fixtures::report(mission, station, team_a, kind, &mut rng));
        }
    }
    // A second team counts at the first station and copies different figures.
    let second_count = fixtures::report(mission, bishkek[0], team_b, ReportKind::Counting, &mut rng);
    // A counting report from a station outside the roster: quarantined, never counted.
    let mut stray = fixtures::report(mission, bishkek[1], team_a, ReportKind::Counting, &mut rng);
    stray.station = "99999".into();
    let batch: Vec<Incoming> = reports.iter().chain([&second_count, &stray]).map(incoming).collect();
    ingest(store, &batch).await?;

    // What the change feed reads: the revisions after a number, and numbers it saw skipped.
    let latest = store.latest_seq().await?;
    assert_eq!(latest, batch.len() as i64);
    let marks = store.revisions_after(latest - 3, vec![2, 5], 100).await?;
    let seqs: Vec<i64> = marks.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![2, 5, latest - 2, latest - 1, latest], "both branches, lowest first");
    let mut kinds: Vec<ReportKind> =
        store.revisions_after(0, vec![], 100).await?.iter().map(|m| m.kind).collect();
    let mut sent: Vec<ReportKind> = batch.iter().map(|i| i.report().kind()).collect();
    kinds.sort();
    sent.sort();
    assert_eq!(kinds, sent, "each revision's kind");
    assert_eq!(store.revisions_after(0, vec![], 4).await?.len(), 4, "at most the limit");
    assert!(store.revisions_after(latest, vec![], 100).await?.is_empty());
    // The overview's two figures, as the totals give them (the stray report is held).
    let totals = store.totals().await?;
    assert_eq!(store.report_counts().await?, (totals.reports, totals.quarantined));
    assert_eq!(totals.quarantined, 1);

    let coverage = store.coverage(&mission.id, ReportKind::Opening).await?;
    assert_eq!(coverage.len(), 10);
    assert_eq!(
        (coverage[0].region.as_str(), coverage[0].expected, coverage[0].reported),
        ("bishkek", 228, 3)
    );
    assert_eq!(coverage[0].missing.len(), 225);
    assert!(!coverage[0].missing.contains(&bishkek[0].code));
    assert!(coverage[1..].iter().all(|r| r.reported == 0 && r.missing.len() == r.expected));

    let silent = store.silent_observers(&mission.id, before).await?;
    assert_eq!(silent.len(), 198);
    assert!(silent.iter().all(|o| &o.id != team_a && &o.id != team_b && o.last_report_at.is_none()));
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.silent_observers(&mission.id, later).await?.len(), 200);

    let assessed: i64 = store.assessment_counts(&mission.id, None).await?.iter().map(|c| c.reports).sum();
    let expected = reports.iter().chain([&second_count]).filter(|r| r.assessment.is_some()).count();
    assert_eq!(assessed, expected as i64);
    let incidents: i64 = store.incident_counts(&mission.id).await?.iter().map(|c| c.reports).sum();
    assert_eq!(incidents, 3);

    // Expected tabulation, computed from the reports: per station the latest counting report
    // (ties: the greatest report id).
    let mut latest: BTreeMap<&str, &Report> = BTreeMap::new();
    for report in reports.iter().chain([&second_count]).filter(|r| r.kind() == ReportKind::Counting) {
        let entry = latest.entry(report.station.as_str()).or_insert(report);
        if (report.observed_at, report.report_id) > (entry.observed_at, entry.report_id) {
            *entry = report;
        }
    }
    for contest in &mission.contests {
        let results = store.results(&mission.id, &contest.id).await?;
        let protocols: Vec<_> = latest
            .values()
            .map(|r| match &r.content {
                Content::Counting(body) => {
                    body.protocols.iter().find(|p| p.contest == contest.id).expect("a protocol")
                }
                _ => unreachable!("counting reports only"),
            })
            .collect();
        assert_eq!(results.stations_counted, 3);
        assert_eq!(
            results.registered_voters,
            protocols.iter().map(|p| i64::from(p.registered_voters)).sum::<i64>()
        );
        assert_eq!(
            results.ballots_in_box,
            protocols.iter().map(|p| i64::from(p.ballots_in_box)).sum::<i64>()
        );
        assert_eq!(results.invalid, protocols.iter().map(|p| i64::from(p.invalid)).sum::<i64>());
        assert_eq!(results.votes.len(), contest.choices.len());
        for (choice, votes) in &results.votes {
            let expected: i64 = protocols.iter().map(|p| i64::from(p.votes[choice])).sum();
            assert_eq!(*votes, expected, "{} {choice}", contest.id);
        }
        assert_eq!(results.valid() + results.invalid, results.ballots_in_box);

        let discrepancies = store.result_discrepancies(&mission.id, &contest.id).await?;
        assert_eq!(discrepancies.len(), 1);
        assert_eq!(discrepancies[0].station, bishkek[0].code);
        assert_eq!(discrepancies[0].reports.len(), 2);
    }

    // Keyset pagination visits every current report once.
    let mut seen = HashSet::new();
    let mut after = None;
    loop {
        let page = store.list_reports(&mission.id, &ReportFilter::default(), after, 4).await?;
        for report in &page.reports {
            assert!(seen.insert(report.report_id.clone()), "listed twice");
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), batch.len());
    let filter = ReportFilter {
        kind: Some(ReportKind::Counting),
        region: Some("bishkek".into()),
        ..Default::default()
    };
    assert_eq!(store.list_reports(&mission.id, &filter, None, 100).await?.reports.len(), 4);
    let filter = ReportFilter { quarantined: Some(true), ..Default::default() };
    assert_eq!(store.list_reports(&mission.id, &filter, None, 100).await?.reports.len(), 1);
    let filter = ReportFilter {
        station: Some(bishkek[2].code.clone()),
        observer: Some(team_a.clone()),
        ..Default::default()
    };
    assert_eq!(store.list_reports(&mission.id, &filter, None, 100).await?.reports.len(), fixtures::DAY.len());
    Ok(())
}

/// Corrections that move reports between stations, in and across batches, some arriving after a
/// higher revision: coverage always equals what the current revisions say.
async fn coverage_follows_corrections_across_stations(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    store.import_mission(mission).await?;
    let mut rng = Rng::new(11);
    // Fewer reports than stations, so that moves empty stations, and some share one.
    let stations: Vec<_> = mission.stations.iter().take(16).collect();
    let observer = &mission.observers[0].id;
    let kinds = [ReportKind::Opening, ReportKind::Closing];
    let mut sent: Vec<Report> = Vec::new();
    for i in 0..24 {
        let station = stations[rng.below(stations.len() as u64) as usize];
        sent.push(fixtures::report(mission, station, observer, kinds[i % 2], &mut rng));
    }
    // Revisions 2 to 4 of half of them, each at a random station.
    let mut all: Vec<Report> = sent.clone();
    for original in &sent {
        if rng.below(2) != 0 {
            continue;
        }
        for revision in 2..=4 {
            let mut moved = original.clone();
            moved.revision = revision;
            moved.station = stations[rng.below(stations.len() as u64) as usize].code.clone();
            all.push(moved);
        }
    }
    // Shuffled, so that lower revisions also arrive after higher ones; in batches of 1 to 20.
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut rest = all.as_slice();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at((1 + rng.below(20) as usize).min(rest.len()));
        ingest(store, &batch.iter().map(incoming).collect::<Vec<_>>()).await?;
        rest = tail;
    }

    let mut current: BTreeMap<uuid::Uuid, &Report> = BTreeMap::new();
    for report in &all {
        let entry = current.entry(report.report_id).or_insert(report);
        if report.revision > entry.revision {
            *entry = report;
        }
    }
    for kind in kinds {
        let expected: HashSet<&str> =
            current.values().filter(|r| r.kind() == kind).map(|r| r.station.as_str()).collect();
        let coverage = store.coverage(&mission.id, kind).await?;
        let missing: HashSet<&str> =
            coverage.iter().flat_map(|r| r.missing.iter().map(String::as_str)).collect();
        for station in &stations {
            assert_eq!(
                !missing.contains(station.code.as_str()),
                expected.contains(station.code.as_str()),
                "{kind:?} at {}",
                station.code
            );
        }
        let reported: usize = coverage.iter().map(|r| r.reported).sum();
        assert_eq!(reported, expected.len(), "{kind:?}");
    }
    Ok(())
}

/// Findings as counted from the current revisions the test sent: per (region, kind, question,
/// answer) and per (region, kind, assessment), unquarantined reports at roster stations only.
type Findings =
    (BTreeMap<(String, String, String, Option<String>), i64>, BTreeMap<(String, String, String), i64>);

fn expected_findings(mission: &Mission, current: &[&Incoming]) -> Findings {
    let (mut answers, mut assessments) = (BTreeMap::new(), BTreeMap::new());
    for incoming in current.iter().filter(|i| i.flags.is_empty()) {
        let report = incoming.report();
        let Some(station) = mission.stations.iter().find(|s| s.code == report.station) else { continue };
        let (region, kind) = (station.region.clone(), report.kind().as_str().to_owned());
        if let Some(assessment) = report.assessment {
            *assessments
                .entry((region.clone(), kind.clone(), assessment.as_str().to_owned()))
                .or_default() += 1;
        }
        for (question, answer) in &report.answers {
            let tabulated = match answer {
                Answer::YesNo(yes) => Some(if *yes { "yes".to_owned() } else { "no".to_owned() }),
                Answer::Number(n) => Some(n.to_string()),
                Answer::Text(text) => (text.chars().count() <= 64).then(|| text.clone()),
            };
            *answers.entry((region.clone(), kind.clone(), question.clone(), tabulated)).or_default() += 1;
        }
    }
    (answers, assessments)
}

async fn stored_findings(store: &Store, mission: &Mission, kinds: &[ReportKind]) -> anyhow::Result<Findings> {
    let (mut answers, mut assessments) = (BTreeMap::new(), BTreeMap::new());
    for &kind in kinds {
        for count in store.answer_counts(&mission.id, kind).await? {
            let key = (count.region, kind.as_str().to_owned(), count.question, count.answer);
            assert!(answers.insert(key, count.reports).is_none(), "an answer counted twice");
        }
    }
    for count in store.assessment_counts(&mission.id, None).await? {
        let key = (count.region, count.kind.as_str().to_owned(), count.assessment);
        assert!(assessments.insert(key, count.reports).is_none(), "an assessment counted twice");
    }
    Ok((answers, assessments))
}

/// Corrections that change answers, assessments and stations (across regions), that flag or
/// clear a report, arriving in any order and batching, then a roster that moves a station to
/// another region: the findings always equal what the current revisions say.
async fn findings_follow_corrections_quarantine_and_the_roster(store: &Store) -> anyhow::Result<()> {
    let mut mission = mission().clone();
    store.import_mission(&mission).await?;
    let mut rng = Rng::new(13);
    // A few stations in each of three regions, so that corrections move reports between regions.
    let stations: Vec<_> = ["bishkek", "osh", "chui"]
        .into_iter()
        .flat_map(|region| mission.stations.iter().filter(move |s| s.region == region).take(3))
        .cloned()
        .collect();
    assert_eq!(stations.len(), 9, "the roster has these regions");
    let kinds = [ReportKind::Opening, ReportKind::Voting, ReportKind::Closing];
    let long_text = "a long free-text remark ".repeat(4);
    let make = |rng: &mut Rng, i: usize, revision: u32, original: Option<&Report>| -> Incoming {
        let station = &stations[rng.below(stations.len() as u64) as usize];
        let observer = &mission.observers[i % 5].id;
        let mut report = fixtures::report(&mission, station, observer, kinds[i % kinds.len()], rng);
        if let Some(original) = original {
            report.report_id = original.report_id;
        }
        report.revision = revision;
        if rng.below(5) == 0 {
            report.assessment = None;
        }
        let Incoming { mut flags, delivery, .. } = incoming(&report);
        if rng.below(4) == 0 {
            flags.push(Flag::new(FlagCode::CountingSumMismatch, "$", "held for the test"));
        }
        // A remark too long to tabulate, which validation would have flagged on a yes/no
        // question; the store counts what it is given.
        if rng.below(4) == 0 {
            let question = report.answers.keys().next().cloned().unwrap_or_else(|| "remark".into());
            report.answers.insert(question, Answer::Text(long_text.clone()));
        }
        let payload = serde_json::to_string(&report).expect("a report serialises");
        Incoming::new(report, flags, payload, delivery)
    };
    let mut all: Vec<Incoming> = Vec::new();
    for i in 0..30 {
        let first = make(&mut rng, i, 1, None);
        if rng.below(2) == 0 {
            for revision in 2..=4 {
                let next = make(&mut rng, i, revision, Some(first.report()));
                all.push(next);
            }
        }
        all.push(first);
    }
    // An unknown station: counted nowhere.
    let mut stray = all[0].report().clone();
    stray.report_id = fixtures::uuid_v7(1_610_258_400_000, &mut rng);
    stray.station = "99999".into();
    all.push(Incoming::new(
        stray.clone(),
        Vec::new(),
        serde_json::to_string(&stray)?,
        all[0].delivery.clone(),
    ));
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut rest = all.as_slice();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at((1 + rng.below(12) as usize).min(rest.len()));
        ingest(store, batch).await?;
        rest = tail;
    }

    let mut current: BTreeMap<uuid::Uuid, &Incoming> = BTreeMap::new();
    for incoming in &all {
        let entry = current.entry(incoming.report().report_id).or_insert(incoming);
        if incoming.report().revision > entry.report().revision {
            *entry = incoming;
        }
    }
    let current: Vec<&Incoming> = current.into_values().collect();
    let expected = expected_findings(&mission, &current);
    assert!(expected.0.keys().any(|k| k.3.is_none()), "some free text is counted as given");
    assert!(expected.1.len() > 3, "assessments in several regions and kinds");
    assert_eq!(stored_findings(store, &mission, &kinds).await?, expected);

    // The roster moves a station that has reports to another region.
    let moved = current
        .iter()
        .filter(|i| i.flags.is_empty())
        .find_map(|i| mission.stations.iter().position(|s| s.code == i.report().station))
        .expect("a counted report at a roster station");
    let region = if mission.stations[moved].region == "naryn" { "talas" } else { "naryn" };
    mission.stations[moved].region = region.to_owned();
    store.import_mission(&mission).await?;
    let expected_after = expected_findings(&mission, &current);
    assert_ne!(expected_after, expected);
    assert_eq!(stored_findings(store, &mission, &kinds).await?, expected_after);
    Ok(())
}

/// An observer's last report is the latest received, whatever order the deliveries came in.
async fn silent_observers_go_by_the_latest_receipt(store: &Store) -> anyhow::Result<()> {
    let mission = mission();
    store.import_mission(mission).await?;
    let mut rng = Rng::new(12);
    let observer = &mission.observers[3];
    let station = &mission.stations[5];
    let noon: chrono::DateTime<Utc> = "2021-01-10T06:00:00Z".parse()?;
    let received = |minutes: i64| noon + chrono::Duration::minutes(minutes);
    let at = |minutes: i64, kind: ReportKind, rng: &mut Rng| {
        let mut report = incoming(&fixtures::report(mission, station, &observer.id, kind, rng));
        report.delivery.received_at = received(minutes);
        report
    };
    // Two batches, the second received earlier (a redelivery after an outage), then a batch
    // whose two reports were received at different times.
    ingest(store, &[at(30, ReportKind::Arrival, &mut rng)]).await?;
    ingest(store, &[at(10, ReportKind::Opening, &mut rng)]).await?;
    let last = |silent: Vec<pollwatch_store::SilentObserver>| {
        silent.into_iter().find(|o| o.id == observer.id).map(|o| o.last_report_at)
    };
    assert_eq!(last(store.silent_observers(&mission.id, received(31)).await?), Some(Some(received(30))));
    assert_eq!(last(store.silent_observers(&mission.id, received(30)).await?), None, "not silent");
    let (later, earlier) = (at(50, ReportKind::Voting, &mut rng), at(40, ReportKind::Voting, &mut rng));
    ingest(store, &[later, earlier]).await?;
    assert_eq!(last(store.silent_observers(&mission.id, received(51)).await?), Some(Some(received(50))));
    let silent = store.silent_observers(&mission.id, received(0)).await?;
    assert_eq!(silent.len(), mission.observers.len() - 1);
    assert!(silent.iter().all(|o| o.last_report_at.is_none()));
    Ok(())
}

async fn concurrent_workers_store_each_report_once(store: &Store) -> anyhow::Result<()> {
    const N: usize = 10_000;
    let reports = sample(N, 11);
    // Every fifth report also has a correction, so revisions race as well as reports.
    let mut all: Vec<Incoming> = reports.iter().map(incoming).collect();
    all.extend(reports.iter().step_by(5).map(|r| incoming(&corrected(r, 2))));
    let mut reversed = all.clone();
    reversed.reverse();

    let worker = |batches: Vec<Incoming>| {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in batches.chunks(500) {
                // A retryable failure (a deadlock or serialization failure) is retried, as the worker does.
                loop {
                    match store.ingest_batch(chunk).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })
    };
    let (one, two) = (worker(all.clone()), worker(reversed));
    within(Duration::from_secs(300), "two workers ingesting", async {
        one.await??;
        two.await??;
        anyhow::Ok(())
    })
    .await??;

    let totals = store.totals().await?;
    assert_eq!(totals.reports, N as i64, "one current row per report");
    assert_eq!(totals.revisions, all.len() as i64, "every revision in the history exactly once");
    assert_eq!(totals.conflicts, 0);
    let current: Vec<_> = store.export().try_collect().await?;
    assert_eq!(current.len(), all.len());
    let corrected_ids: HashSet<String> = reports.iter().step_by(5).map(|r| r.report_id.to_string()).collect();
    let mut after = None;
    loop {
        let page = store.list_reports(&mission().id, &ReportFilter::default(), after, 5_000).await?;
        for report in &page.reports {
            let expected = if corrected_ids.contains(&report.report_id) { 2 } else { 1 };
            assert_eq!(report.revision, expected, "the highest revision is current");
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// Two writers on one SQLite store take turns: neither fails with "database is locked".
#[tokio::test]
async fn sqlite_writers_wait_their_turn() -> anyhow::Result<()> {
    let (store, _keep) = sqlite().await?;
    let reports: Vec<Incoming> = sample(8_000, 13).iter().map(incoming).collect();
    let (first, second) = reports.split_at(4_000);
    let writer = |batches: Vec<Incoming>| {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in batches.chunks(200) {
                store.ingest_batch(chunk).await?;
            }
            anyhow::Ok(())
        })
    };
    let (one, two) = (writer(first.to_vec()), writer(second.to_vec()));
    within(Duration::from_secs(120), "two writers", async {
        one.await??;
        two.await??;
        anyhow::Ok(())
    })
    .await??;
    assert_eq!(store.totals().await?.reports, 8_000);
    Ok(())
}

/// A SQLite store written before migration 0002 gets its coverage and activity summaries, and
/// (0004) its assessment counts, filled from the reports it already holds.
#[tokio::test]
async fn sqlite_upgrade_fills_the_summaries() -> anyhow::Result<()> {
    let mission = mission();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}", path.display());

    // The store as the first migration left it, written to directly.
    let first = dir.path().join("migrations");
    std::fs::create_dir(&first)?;
    let migrations =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/pollwatch-store/migrations");
    std::fs::copy(migrations.join("sqlite/0001_initial.sql"), first.join("0001_initial.sql"))?;
    let options = std::str::FromStr::from_str(&url)
        .map(|o: sqlx::sqlite::SqliteConnectOptions| o.create_if_missing(true))?;
    let pool = sqlx::SqlitePool::connect_with(options).await?;
    sqlx::migrate::Migrator::new(first.as_path()).await?.run(&pool).await?;
    let other_region = mission.stations.iter().find(|s| s.region != mission.stations[0].region);
    let (a, b, c) = (
        &mission.stations[0].code,
        &mission.stations[1].code,
        &other_region.expect("the roster has several regions").code,
    );
    let (x, y) = (&mission.observers[0].id, &mission.observers[1].id);
    // The mission and the three stations, as an import before 0002 left them.
    sqlx::query(
        "INSERT INTO missions (id, name, election_day, time_zone, polls_open, polls_close) \
         VALUES (?, 'old', '2021-01-10', 'Asia/Bishkek', '08:00', '20:00')",
    )
    .bind(&mission.id)
    .execute(&pool)
    .await?;
    for station in mission.stations.iter().filter(|s| [a, b, c].contains(&&s.code)) {
        sqlx::query(
            "INSERT INTO stations (mission_id, code, name, region, registered_voters, abroad) \
             VALUES (?, ?, 'old', ?, 1, 0)",
        )
        .bind(&mission.id)
        .bind(&station.code)
        .bind(&station.region)
        .execute(&pool)
        .await?;
    }
    let rows: [(&str, &str, &str, &str, i64); 4] = [
        ("r1", x, a, "opening", 1_000),
        ("r2", x, a, "opening", 3_000),
        ("r3", y, b, "opening", 2_000),
        ("r4", y, c, "closing", 500),
    ];
    for (seq, (id, observer, station, kind, received)) in rows.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO report_revisions (report_id, revision, content_hash, mission, observer, station, kind, \
             observed_at_us, payload, flags, sender, redelivered, received_at_us) \
             VALUES (?, 1, 'h', ?, ?, ?, ?, 0, '{}', '[]', NULL, 0, ?)",
        )
        .bind(id)
        .bind(&mission.id)
        .bind(observer)
        .bind(station)
        .bind(kind)
        .bind(received)
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO reports (report_id, revision, revision_seq, mission, observer, station, kind, \
             observed_at_us, received_at_us, quarantined, assessment) VALUES (?, 1, ?, ?, ?, ?, ?, 0, ?, 0, 'good')",
        )
        .bind(id)
        .bind(seq as i64 + 1)
        .bind(&mission.id)
        .bind(observer)
        .bind(station)
        .bind(kind)
        .bind(received)
        .execute(&pool)
        .await?;
    }
    pool.close().await;

    let store = Store::open(&url).await?;
    // Migration 0004 counted their assessments, by the stations' regions.
    let assessed = |counts: Vec<pollwatch_store::AssessmentCount>| -> BTreeMap<(String, String), i64> {
        counts.into_iter().map(|c| ((c.region, c.kind.as_str().to_owned()), c.reports)).collect()
    };
    let region =
        |code: &str| mission.stations.iter().find(|s| s.code == code).expect("a station").region.clone();
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (station, kind) in [(a, "opening"), (a, "opening"), (b, "opening"), (c, "closing")] {
        *expected.entry((region(station), kind.to_owned())).or_default() += 1;
    }
    assert_eq!(assessed(store.assessment_counts(&mission.id, None).await?), expected);
    store.import_mission(mission).await?;
    assert_eq!(assessed(store.assessment_counts(&mission.id, None).await?), expected);
    let covered = |coverage: Vec<pollwatch_store::RegionCoverage>| -> HashSet<String> {
        let missing: HashSet<String> = coverage.into_iter().flat_map(|r| r.missing).collect();
        mission.stations.iter().map(|s| s.code.clone()).filter(|code| !missing.contains(code)).collect()
    };
    assert_eq!(
        covered(store.coverage(&mission.id, ReportKind::Opening).await?),
        [a.clone(), b.clone()].into()
    );
    assert_eq!(covered(store.coverage(&mission.id, ReportKind::Closing).await?), [c.clone()].into());
    let micros = |us: i64| chrono::DateTime::from_timestamp_micros(us).expect("a time");
    let silent = store.silent_observers(&mission.id, micros(3_001)).await?;
    let last = |id: &str| silent.iter().find(|o| o.id == id).and_then(|o| o.last_report_at);
    assert_eq!((last(x), last(y)), (Some(micros(3_000)), Some(micros(2_000))));
    Ok(())
}

/// A worker killed with SIGKILL in the middle of a batch leaves all of it or none of it.
mod crash {
    use std::process::Stdio;
    use std::time::Duration;

    use pollwatch_store::Store;
    use pollwatch_tests::{pause, within};
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    use tokio::process::Command;

    const BATCH: usize = 20_000;

    /// Starts the child, waits until it has begun its batch, kills it after `delay`, and returns
    /// whether it had reported the commit.
    async fn run_child(url: &str, seed: u64, delay: Option<Duration>) -> anyhow::Result<bool> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pollwatch-ingest-child"))
            .args([url, &BATCH.to_string(), &seed.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines.next_line().await?;
        anyhow::ensure!(
            first.as_deref() == Some("ingesting"),
            "the child failed before its batch: {first:?}"
        );
        if let Some(delay) = delay {
            // Not a synchronisation: the moment of the kill is what the test varies.
            pause(delay).await;
            child.start_kill()?; // SIGKILL
        }
        let committed = lines.next_line().await?.as_deref() == Some("committed");
        child.wait().await?;
        Ok(committed)
    }

    async fn all_or_nothing(url: &str) -> anyhow::Result<()> {
        const CHILD: Duration = Duration::from_secs(300);
        let mut killed_mid_batch = 0;
        for (seed, delay_ms) in [(1u64, 5u64), (2, 60), (3, 250)] {
            let before = Store::open(url).await?.totals().await?.revisions;
            let delay = Some(Duration::from_millis(delay_ms));
            let committed = within(CHILD, "the killed child", run_child(url, seed, delay)).await??;
            let store = Store::open(url).await?;
            let after = store.totals().await?.revisions;
            store.close().await;
            let added = after - before;
            assert!(added == 0 || added == BATCH as i64, "a killed batch left {added} of {BATCH} revisions");
            assert_eq!(added == BATCH as i64, committed, "the store and the child disagree on the commit");
            if !committed {
                killed_mid_batch += 1;
            }
        }
        assert!(killed_mid_batch > 0, "every batch committed before its kill; the test proved nothing");
        // Unkilled, the same child commits the whole batch.
        let before = Store::open(url).await?.totals().await?.revisions;
        assert!(within(CHILD, "the child", run_child(url, 4, None)).await??);
        let after = Store::open(url).await?.totals().await?.revisions;
        assert_eq!(after - before, BATCH as i64);
        Ok(())
    }

    #[tokio::test]
    async fn sqlite() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
        all_or_nothing(&url).await
    }

    #[tokio::test]
    async fn postgres() -> anyhow::Result<()> {
        let database = pollwatch_tests::database().await?;
        all_or_nothing(&database.url).await
    }
}

/// A store whose chain was kept a row an entry (before migration 0008 on SQLite, 0007 on
/// PostgreSQL) reads the same chain after the upgrade: the same entries and hashes, the same
/// head, the export's revisions pointing at the same entries, and `audit verify` passing.
#[tokio::test]
async fn a_chain_kept_a_row_an_entry_reads_the_same_after_the_upgrade_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("pollwatch.db").display());
    chain_upgrade(&url, 8).await
}

#[tokio::test]
async fn a_chain_kept_a_row_an_entry_reads_the_same_after_the_upgrade_on_postgres() -> anyhow::Result<()> {
    let database = pollwatch_tests::database().await?;
    chain_upgrade(&database.url, 7).await
}

async fn chain_upgrade(url: &str, migration: i64) -> anyhow::Result<()> {
    let store = Store::open(url).await?;
    store.import_mission(mission()).await?;
    let reports = sample(6, 41);
    let mut batch: Vec<Incoming> = reports.iter().map(incoming).collect();
    // A second content for one revision: a conflict entry, whose text the chain keeps.
    let mut other = reports[0].clone();
    other.assessment =
        Some(if other.assessment == Some(Assessment::Bad) { Assessment::Good } else { Assessment::Bad });
    ingest(&store, &batch).await?;
    batch = vec![incoming(&other), incoming(&corrected(&reports[1], 2))];
    ingest(&store, &batch).await?;
    let entries: Vec<_> = store.audit_entries().try_collect().await?;
    let head = store.audit_head().await?;
    let exported: Vec<_> = store.export().try_collect().await?;
    assert_eq!(entries.len(), 8, "seven revisions and a conflict: {entries:?}");
    assert!(exported.iter().all(|r| r.audit.is_some()), "{exported:?}");
    store.close().await;

    // The chain as a row an entry, as the store kept it before the upgrade (the migrations from
    // the chain's new layout on forgotten, to be applied again).
    let old: Vec<(i64, Option<i64>, Option<String>, String)> = entries
        .iter()
        .map(|e| {
            let fields: serde_json::Value = serde_json::from_str(&e.entry).expect("an entry is JSON");
            match fields["type"].as_str() {
                Some("revision") => (e.position, fields["seq"].as_i64(), None, e.hash.clone()),
                _ => (e.position, None, Some(e.entry.clone()), e.hash.clone()),
            }
        })
        .collect();
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let mut statements = vec![
        "CREATE TABLE audit_chain (position BIGINT PRIMARY KEY, revision_seq BIGINT, entry TEXT, hash TEXT NOT NULL)"
            .to_owned(),
        "CREATE INDEX audit_chain_revision ON audit_chain (revision_seq)".to_owned(),
        "DROP TABLE audit_segments".to_owned(),
        format!("DELETE FROM _sqlx_migrations WHERE version >= {migration}"),
    ];
    for (position, seq, entry, hash) in &old {
        let seq = seq.map_or_else(|| "NULL".to_owned(), |s| s.to_string());
        let entry = entry.as_deref().map_or_else(|| "NULL".to_owned(), literal);
        statements
            .push(format!("INSERT INTO audit_chain VALUES ({position}, {seq}, {entry}, {})", literal(hash)));
    }
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        for statement in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await?;
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        for statement in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await?;
        }
        pool.close().await;
    }

    let store = Store::open(url).await?;
    let after: Vec<_> = store.audit_entries().try_collect().await?;
    assert_eq!(after, entries);
    assert_eq!(store.audit_head().await?, head);
    let exported_after: Vec<_> = store.export().try_collect().await?;
    let audit = |records: &[pollwatch_store::AuditRecord]| {
        records.iter().map(|r| (r.seq, r.audit.clone())).collect::<Vec<_>>()
    };
    assert_eq!(audit(&exported_after), audit(&exported));
    let verification = store.verify_audit(&()).await?;
    assert_eq!((verification.entries, verification.failure), (8, None));
    // And the chain goes on from there.
    ingest(&store, &[incoming(&corrected(&reports[2], 2))]).await?;
    assert_eq!(store.verify_audit(&()).await?.failure, None);
    Ok(())
}
