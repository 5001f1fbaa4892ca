//! The dashboard's own tests: shells without data, views behind the token, bad queries as
//! problems, names as the mission spells them and escaped, views kept up with the store.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use pollwatch_api::Api;
use pollwatch_model::{Context, Mission, sample};
use pollwatch_store::{Delivery, Incoming, Store};
use tower::ServiceExt as _;

use super::*;

struct Fixture {
    router: Router,
    api: Api,
    store: Store,
    mission: Mission,
    token: String,
    _dir: tempfile::TempDir,
}

/// Names the sample spells in Latin letters, spelt in Cyrillic (and one with markup in it), as a
/// mission may spell them.
const CYRILLIC_REGION: &str = "Чүй облусу";
const CYRILLIC_CANDIDATE: &str = "Садыр Жапаров";
const CYRILLIC_STATION: &str = "УИК №1001 <Бишкек> & Co";

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store =
        Store::open(&format!("sqlite://{}", dir.path().join("store.db").display())).await.expect("a store");
    let mut mission = sample::kg_2021();
    mission.regions.iter_mut().find(|r| r.code == "chui").expect("Chui").name = CYRILLIC_REGION.to_owned();
    let president = mission.contests.iter_mut().find(|c| c.id == "president").expect("the election");
    president.choices[3].name = CYRILLIC_CANDIDATE.to_owned();
    mission.stations[0].name = CYRILLIC_STATION.to_owned();
    store.import_mission(&mission).await.expect("the mission imports");
    let token = pollwatch_api::auth::new_token();
    store.add_token("analyst", "viewer", &pollwatch_api::auth::token_hash(&token)).await.expect("a token");
    let api = Api::new(store.clone(), Arc::new(mission.clone()));
    let router = router(api.clone());
    Fixture { router, api, store, mission, token, _dir: dir }
}

struct Answer {
    status: u16,
    content_type: String,
    csp: Option<String>,
    body: String,
}

async fn get(router: &Router, path: &str, token: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response =
        router.clone().oneshot(request.body(Body::empty()).expect("a request")).await.expect("an answer");
    let text = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, content_type, csp) = (
        response.status().as_u16(),
        text(header::CONTENT_TYPE).unwrap_or_default(),
        text(header::CONTENT_SECURITY_POLICY),
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    Answer { status, content_type, csp, body: String::from_utf8(bytes.to_vec()).expect("UTF-8") }
}

/// The wire format's incident example, as a new report with `category`, `severity` and
/// `description`, checked as the worker checks it.
fn incident(mission: &Mission, category: &str, severity: &str, description: &str) -> Incoming {
    let mut report: serde_json::Value =
        serde_json::from_str(include_str!("../../../schema/examples/incident.json")).expect("the example");
    report["report_id"] = uuid::Uuid::new_v4().to_string().into();
    report["body"]["category"] = category.into();
    report["body"]["severity"] = severity.into();
    report["body"]["description"] = description.into();
    let payload = report.to_string();
    let now: chrono::DateTime<chrono::Utc> = "2021-01-10T08:30:00Z".parse().expect("a time");
    let sender =
        mission.observer(report["observer"].as_str().expect("an observer")).map(|o| o.device_user.clone());
    let context = Context { mission, now, sender: sender.as_deref() };
    let checked = pollwatch_model::check(payload.as_bytes(), &context).expect("the report is accepted");
    Incoming::new(
        checked.report,
        checked.flags,
        payload,
        Delivery { sender, redelivered: false, received_at: now },
    )
}

#[tokio::test]
async fn a_shell_carries_no_data_and_every_view_needs_a_token() {
    let f = fixture().await;
    for page in pages::Page::ALL {
        let shell = get(&f.router, page.path(), None).await;
        assert_eq!(shell.status, 200, "{}", page.path());
        assert_eq!(shell.content_type, "text/html; charset=utf-8");
        assert!(shell.csp.is_some_and(|csp| csp.contains("script-src 'self'")), "a security policy");
        assert!(shell.body.contains("id=\"sign-in\"") && shell.body.contains(assets::SCRIPT_PATH));
        assert!(!shell.body.contains(&f.mission.name), "no mission data before sign-in");
        assert!(!shell.body.contains(&f.mission.regions[0].name), "no mission data before sign-in");

        assert_eq!(get(&f.router, page.view(), None).await.status, 401, "{}", page.view());
        assert_eq!(get(&f.router, page.view(), Some("pw_not-a-token")).await.status, 401, "{}", page.view());
        let view = get(&f.router, page.view(), Some(&f.token)).await;
        assert_eq!(
            (view.status, view.content_type.as_str()),
            (200, "text/html; charset=utf-8"),
            "{}",
            page.view()
        );
        assert!(view.body.contains(&f.mission.name), "{}: the view names the mission", page.view());
    }
    let script = get(&f.router, assets::SCRIPT_PATH, None).await;
    assert_eq!((script.status, script.content_type.as_str()), (200, "text/javascript; charset=utf-8"));
    assert_eq!(get(&f.router, assets::STYLE_PATH, None).await.status, 200);
}

#[tokio::test]
async fn the_overview_names_regions_as_the_mission_spells_them() {
    let f = fixture().await;
    let overview = get(&f.router, "/ui/overview", Some(&f.token)).await;
    for region in &f.mission.regions {
        assert!(overview.body.contains(&region.name), "{} is named", region.name);
    }
    assert!(overview.body.contains(CYRILLIC_REGION));
    let results = get(&f.router, "/ui/results?contest=president", Some(&f.token)).await;
    for choice in &f.mission.contest("president").expect("a contest").choices {
        assert!(results.body.contains(&choice.name), "{} is named", choice.name);
    }
    assert!(results.body.contains(CYRILLIC_CANDIDATE));
    let coverage = get(&f.router, "/ui/coverage?phase=opening&region=bishkek", Some(&f.token)).await;
    assert!(coverage.body.contains("УИК №1001 &lt;Бишкек&gt; &amp; Co"), "as spelt, escaped");
}

#[tokio::test]
async fn a_bad_query_is_a_problem_naming_the_parameter() {
    let f = fixture().await;
    for (path, parameter) in [
        ("/ui/overview?x=1", "x"),
        ("/ui/coverage?phase=lunch", "phase"),
        ("/ui/coverage?region=atlantis", "region"),
        ("/ui/incidents?severity=apocalyptic", "severity"),
        ("/ui/incidents?after=-3", "after"),
        ("/ui/results?contest=mayor", "contest"),
        ("/ui/quick-count?contest=mayor", "contest"),
        ("/ui/quick-count?share_of=everyone", "share_of"),
        ("/ui/quick-count?as_of=yesterday", "as_of"),
        ("/ui/quick-count?as_of=2021-01-10T25:00:00Z", "as_of"),
        ("/ui/held?after=x", "after"),
        ("/ui/reports/not-a-uuid", "report_id"),
    ] {
        let answer = get(&f.router, path, Some(&f.token)).await;
        assert!(matches!(answer.status, 400 | 404), "{path}: {}", answer.status);
        assert_eq!(answer.content_type, pollwatch_api::problem::PROBLEM_JSON, "{path}");
        let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("problem JSON");
        assert_eq!(problem["parameter"], parameter, "{path}");
    }
    let missing = get(&f.router, &format!("/ui/reports/{}", uuid::Uuid::nil()), Some(&f.token)).await;
    assert_eq!(missing.status, 404);
    // A replay moment of 20,000 characters: named, and echoed only in part.
    let long = get(&f.router, &format!("/ui/quick-count?as_of={}", "9".repeat(20_000)), Some(&f.token)).await;
    assert_eq!(long.status, 400);
    assert!(long.body.len() < 2_048, "{} bytes", long.body.len());
}

#[tokio::test]
async fn what_an_observer_wrote_is_shown_as_text_never_as_markup() {
    let f = fixture().await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let report = incident(&f.mission, "ballot_stuffing", "critical", hostile);
    let id = report.report().report_id.to_string();
    f.store.ingest_batch(&[report]).await.expect("stored");
    for path in ["/ui/incidents".to_owned(), format!("/ui/reports/{id}")] {
        let view = get(&f.router, &path, Some(&f.token)).await;
        assert_eq!(view.status, 200, "{path}");
        assert!(
            !view.body.contains("<script") && !view.body.contains("<img"),
            "{path}: no markup from a report"
        );
        assert!(view.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: the text, escaped");
    }
}

#[tokio::test]
async fn a_view_is_computed_again_once_the_store_has_changed() {
    let f = fixture().await;
    let tile = |body: &str| {
        let start = body.find("id=\"tile-incidents\"").expect("the incidents tile");
        let figure = &body[start..];
        let at = figure.find("class=\"figure\">").expect("a figure") + "class=\"figure\">".len();
        figure[at..figure[at..].find('<').map(|end| at + end).expect("the figure ends")].to_owned()
    };
    assert_eq!(tile(&get(&f.router, "/ui/overview", Some(&f.token)).await.body), "0");
    f.store
        .ingest_batch(&[incident(&f.mission, "violence_or_intimidation", "high", "Men outside")])
        .await
        .expect("stored");
    // The feed notices within a poll; the next request after that starts a new computation and
    // is answered with the old view meanwhile, which says what it holds (its `data-seq`).
    let latest = f.store.latest_seq().await.expect("the seq");
    let holds =
        |body: &str| body.split("data-seq=\"").nth(1).and_then(|v| v.split('"').next()?.parse::<i64>().ok());
    let mut seen = (String::new(), None);
    for _ in 0..40 {
        let body = get(&f.router, "/ui/overview", Some(&f.token)).await.body;
        seen = (tile(&body), holds(&body));
        if seen.1 >= Some(latest) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, ("1".to_owned(), Some(latest)), "the overview holds the new incident, and says so");
}

#[test]
fn the_results_page_stays_a_page_however_many_teams_disagree() {
    use pollwatch_api::views::{DiscrepanciesView, DiscrepancyView, Ordered, ProtocolCopyView, ResultsView};
    let mission = sample::kg_2021();
    let contest = mission.contest("president").expect("a contest");
    let copy = |i: usize| ProtocolCopyView {
        report_id: format!("r{i}"),
        observer: mission.observers[i % mission.observers.len()].id.clone(),
        observed_at: chrono::Utc::now(),
        registered_voters: 1_000,
        ballots_received: 1_000,
        ballots_issued: 600,
        ballots_spoiled: 0,
        ballots_unused: 400,
        ballots_in_box: 600,
        invalid: i as i64,
        votes: Ordered(Vec::new()),
    };
    let disputed = DiscrepanciesView {
        discrepancies: mission.stations[..40]
            .iter()
            .map(|s| DiscrepancyView {
                station: s.code.clone(),
                region: s.region.clone(),
                contest: contest.id.clone(),
                counted: "r0".into(),
                reports: (0..30).map(copy).collect(),
            })
            .collect(),
    };
    let results = ResultsView {
        region: None,
        totals: pollwatch_api::views::ResultFigures::of(
            &pollwatch_model::ContestResults::empty(
                &contest.id,
                contest.choices.iter().map(|c| c.code.clone()),
            ),
            2_476,
        ),
        by_region: Vec::new(),
        disputed: Vec::new(),
        rule: String::new(),
    };
    let page = render::results(&mission, contest, &results, &disputed).into_string();
    assert_eq!(page.matches("class=\"dispute\"").count(), 25, "the first 25 stations");
    assert_eq!(page.matches("<tr class=\"copy counted\"").count(), 25, "the counted copy of each");
    assert_eq!(page.matches("<tr class=\"copy").count(), 25 * 10, "ten copies of each");
    assert!(page.contains("40 disputed") && page.contains("/api/v1/discrepancies?contest=president"));
}

#[tokio::test]
async fn a_view_is_never_the_api_answer_to_the_same_question() {
    let f = fixture().await;
    let api = pollwatch_api::router(f.api.clone());
    for (json, view) in [
        ("/api/v1/coverage?phase=counting", "/ui/coverage?phase=counting"),
        ("/api/v1/results/president", "/ui/results?contest=president"),
    ] {
        assert_eq!(get(&api, json, Some(&f.token)).await.content_type, "application/json");
        let answer = get(&f.router, view, Some(&f.token)).await;
        assert!(
            answer.body.starts_with("<div class=\"view\""),
            "{view}: {}",
            &answer.body[..40.min(answer.body.len())]
        );
    }
}

#[test]
fn the_quick_count_page_shows_the_estimate_the_official_verdict_and_the_night() {
    use pollwatch_api::pvt::{
        PvtChoiceView, PvtOfficialView, PvtPointView, PvtRatioView, PvtStratumView, PvtView,
    };
    let mission = sample::kg_2021();
    let contest = mission.contest("president").expect("a contest");
    let ratio = |estimate: f64, margin: f64, official: Option<(f64, &'static str)>| PvtRatioView {
        estimate,
        standard_error: Some(margin / 1.96),
        margin_95: Some(margin),
        margin_99: Some(margin * 1.31),
        official: official.map(|(share, verdict)| PvtOfficialView {
            share,
            difference: share - estimate,
            verdict: Some(verdict),
        }),
    };
    let ratio_without_margin = |estimate: f64| PvtRatioView {
        estimate,
        standard_error: None,
        margin_95: None,
        margin_99: None,
        official: None,
    };
    let (leader, other) = (&contest.choices[3], &contest.choices[0]);
    // A protocol a minute from 21:00 at the stations (15:00 UTC).
    let point = |reported: u64, estimate: f64| PvtPointView {
        at: format!("2021-01-10T{:02}:{:02}:00Z", 15 + reported / 60, reported % 60),
        reported,
        choices: [(leader.code.clone(), ratio(estimate, 0.02, None))].into(),
        turnout: None,
    };
    let view = PvtView {
        contest: contest.id.clone(),
        share_of: "valid",
        as_of: None,
        strata_by: "region".to_owned(),
        seed: 7,
        sampled: 300,
        reported: 120,
        choices: vec![
            PvtChoiceView {
                choice: leader.code.clone(),
                name: leader.name.clone(),
                ratio: ratio(0.8073, 0.0015, Some((0.8571, "outside the margin"))),
            },
            PvtChoiceView {
                choice: other.code.clone(),
                name: other.name.clone(),
                ratio: ratio(0.0028, 0.0004, Some((0.0027, "consistent"))),
            },
        ],
        turnout: Some(ratio(0.3916, 0.0079, Some((0.3916, "consistent")))),
        strata: vec![
            PvtStratumView { stratum: "bishkek".into(), stations: 228, sampled: 41, reported: 40 },
            PvtStratumView { stratum: "osh".into(), stations: 512, sampled: 61, reported: 10 },
        ],
        threshold: 0.8,
        publishable: false,
        official: true,
        disputed: vec!["01001".to_owned()],
        history: vec![
            point(20, 0.79),
            point(40, 0.795),
            // A stratum with one station in: no margin at that moment.
            PvtPointView {
                choices: [(leader.code.clone(), ratio_without_margin(0.80))].into(),
                ..point(60, 0.0)
            },
            point(90, 0.805),
            point(120, 0.8073),
        ],
    };
    let as_of = Some(chrono::DateTime::parse_from_rfc3339("2021-01-10T17:30:00Z").expect("a time").to_utc());
    let page = render::quick_count(&mission, contest, pollwatch_pvt::ShareOf::Ballots, as_of, Some(&view))
        .into_string();
    assert!(page.contains("Not yet publishable: a stratum is less than 80.0 % in"), "{page}");
    assert!(page.contains("120 of 300 sampled stations"), "{page}");
    let row = |code: &str| {
        let start = page.find(&format!("<tr data-choice=\"{code}\"")).expect("a row");
        page[start..].split("</tr>").next().expect("a row").to_owned()
    };
    let leading = row(&leader.code);
    assert!(leading.contains("80.73") && leading.contains("±0.15") && leading.contains("85.71"), "{leading}");
    assert!(leading.contains("+4.98") && leading.contains("outside the margin"), "{leading}");
    assert!(leading.contains("class=\"verdict outside\""), "marked: {leading}");
    assert!(row(&other.code).contains("consistent") && !row(&other.code).contains("outside"));
    assert!(row("turnout").contains("39.16"));
    assert!(page.contains("Left out until a reviewer settles them (disputed): 01001"));
    assert!(
        page.contains("Shares of the ballots in the box (those who took part), from the accepted"),
        "{page}"
    );
    assert!(
        page.contains(
            "href=\"/quick-count?contest=referendum&amp;share_of=ballots&amp;as_of=2021-01-10T17:30:00Z\""
        ),
        "the other contest, the same shares: {page}"
    );
    assert_eq!(page.matches("<polyline").count(), 1, "the estimate over the night");
    assert_eq!(page.matches("<polygon").count(), 2, "the interval, broken where there is none: {page}");
    assert!(page.contains("points=\"0.00,"), "the line starts at the left: {page}");
    assert!(
        page.contains("from 79.00 % at 21:20:00 with 20 stations in to 80.73 % at 23:00:00 with 120"),
        "{page}"
    );
    // Against time: 21:20, 21:40, (22:00), 22:30 and 23:00 over the 100 points of the width.
    assert!(page.contains(" 100.00,"), "{page}");
    assert!(page.contains("<polygon class=\"band\" points=\"0.00,") && page.contains(" 70.00,"), "{page}");
    assert!(page.contains("Replayed as of 23:30:00 (Asia/Bishkek)"), "{page}");
    assert!(
        page.contains(
            "href=\"/quick-count?contest=president&amp;share_of=valid&amp;as_of=2021-01-10T17:30:00Z\""
        ),
        "the other shares, the same moment: {page}"
    );
    assert!(
        page.contains("<a href=\"/quick-count?contest=president&amp;share_of=ballots\">Now</a>"),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"short\" data-stratum=\"osh\"")
            || page.contains("data-stratum=\"osh\" class=\"short\""),
        "{page}"
    );
    assert!(!page.contains("data-stratum=\"bishkek\" class=\"short\""));

    let none =
        render::quick_count(&mission, contest, pollwatch_pvt::ShareOf::Valid, None, None).into_string();
    assert!(none.contains("no quick-count sample yet") && none.contains("pollwatch pvt sample"), "{none}");
}
