//! The pages: each one's shell (at its path) and its view (at `/ui/...`, behind a token), the
//! view computed from the read API's views and shared by everyone watching.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pollwatch_api::params::Params;
use pollwatch_api::problem::Problem;
use pollwatch_api::{Api, views};
use pollwatch_model::ReportKind;
use pollwatch_store::{IncidentFilter, ReportFilter};

use crate::render;

/// The phases whose coverage the overview shows, in the order of the day.
pub(crate) const PHASES: [ReportKind; 4] =
    [ReportKind::Opening, ReportKind::Voting, ReportKind::Closing, ReportKind::Counting];

/// How long without a report makes an observer silent, on the overview and the coverage page.
pub(crate) const SILENT_FOR: Duration = Duration::from_secs(3_600);

/// Incidents on one page of the feed.
const INCIDENTS_PER_PAGE: u32 = 50;

/// Held reports on one page.
const HELD_PER_PAGE: u32 = 100;
/// Reports with open conflicts listed on the held page; the rest through the API.
const CONFLICTS_SHOWN: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Overview,
    Coverage,
    Incidents,
    Results,
    QuickCount,
    Held,
}

impl Page {
    pub(crate) const ALL: [Self; 6] =
        [Self::Overview, Self::Coverage, Self::Incidents, Self::Results, Self::QuickCount, Self::Held];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Overview => "/",
            Self::Coverage => "/coverage",
            Self::Incidents => "/incidents",
            Self::Results => "/results",
            Self::QuickCount => "/quick-count",
            Self::Held => "/held",
        }
    }

    /// Where the page's view is fetched from (with the page's query string).
    pub(crate) fn view(self) -> &'static str {
        match self {
            Self::Overview => "/ui/overview",
            Self::Coverage => "/ui/coverage",
            Self::Incidents => "/ui/incidents",
            Self::Results => "/ui/results",
            Self::QuickCount => "/ui/quick-count",
            Self::Held => "/ui/held",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Coverage => "Coverage",
            Self::Incidents => "Incidents",
            Self::Results => "Results",
            Self::QuickCount => "Quick count",
            Self::Held => "Held for review",
        }
    }
}

/// A page's shell: the same for everyone, no data in it.
pub(crate) fn shell(page: Page) -> Response {
    html(StatusCode::OK, render::shell(page).into_string())
}

fn html(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

type Answered = Result<Response, Problem>;

/// A view shared under `question` and kept up with the store ([`Api::answer_as_of`]), marked
/// with the sequence number it holds for certain: the script fetches it again while that is
/// behind the last event it has had. A view that `ages` (it shows silence) is also computed
/// again every [`SILENCE_CHECKED_EVERY`]. A view with no question (a later page of a list,
/// whose cursor anyone may choose) is computed for its request alone and kept nowhere.
async fn shared_view<F>(
    api: &Api,
    question: Option<String>,
    ages: bool,
    compute: impl FnOnce(Api) -> F + Send + 'static,
) -> Answered
where
    F: Future<Output = Result<maud::Markup, Problem>> + Send + 'static,
{
    let for_compute = api.clone();
    let fresh_for = ages.then_some(SILENCE_CHECKED_EVERY);
    let marked = move |seq: i64| async move {
        let view = compute(for_compute).await?;
        Ok(maud::html! { div.view data-seq=(seq) { (view) } }.into_string().into_bytes())
    };
    let body = match question {
        // The API's shared answers are kept in the same place: a view's question is its own.
        Some(question) => api.answer_as_of(format!("dashboard {question}"), fresh_for, marked).await?,
        None => marked(api.store.latest_seq().await?).await?.into(),
    };
    Ok(html(StatusCode::OK, body))
}

/// How old a view that shows silence may be: who has been silent for an hour is looked at
/// again at least this often, changes or none.
const SILENCE_CHECKED_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn overview(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    Params::parse(query.as_deref(), &[])?;
    shared_view(&api, Some("overview".to_owned()), true, |api: Api| async move {
        let (store, mission) = (&api.store, &*api.mission);
        let (reports, held) = store.report_counts().await?;
        let mut coverage = Vec::with_capacity(PHASES.len());
        for phase in PHASES {
            coverage.push(views::coverage(store, mission, phase, None).await?);
        }
        let incidents = views::incident_summary(store, mission, None).await?;
        let mut results = Vec::with_capacity(mission.contests.len());
        for contest in &mission.contests {
            results.push((contest, views::results(store, mission, contest, None).await?));
        }
        let silent = views::observers(store, mission, SILENT_FOR, chrono::Utc::now()).await?;
        Ok(render::overview(
            mission,
            &render::Overview { reports, held, coverage, incidents, results, silent },
        ))
    })
    .await
}

pub(crate) async fn coverage(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = Params::parse(query.as_deref(), &["phase", "region"])?;
    let phase = params.kind("phase")?.unwrap_or(ReportKind::Opening);
    let region = params.region(&api.mission)?;
    shared_view(&api, Some(format!("coverage {phase} {region:?}")), true, move |api: Api| async move {
        let (store, mission) = (&api.store, &*api.mission);
        let coverage = views::coverage(store, mission, phase, region.as_deref()).await?;
        let silent = views::observers(store, mission, SILENT_FOR, chrono::Utc::now()).await?;
        Ok(render::coverage(mission, &coverage, &silent))
    })
    .await
}

pub(crate) async fn incidents(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = Params::parse(query.as_deref(), &["severity", "category", "region", "after"])?;
    let filter = IncidentFilter {
        severity: params.severity("severity")?,
        category: params.category("category")?,
        region: params.region(&api.mission)?,
        since: None,
    };
    let after = params.cursor("after")?;
    let question = format!("incidents {:?} {:?} {:?}", filter.severity, filter.category, filter.region);
    shared_view(&api, after.is_none().then_some(question), false, move |api: Api| async move {
        let (store, mission) = (&api.store, &*api.mission);
        let page = views::incidents(store, mission, &filter, after, INCIDENTS_PER_PAGE).await?;
        Ok(render::incidents(mission, &filter, &page))
    })
    .await
}

/// The id of the contest a page's `?contest=` names (404 for one the mission lacks), or of the
/// mission's first; no other parameter is taken.
fn contest_asked(api: &Api, query: Option<&str>) -> Result<String, Problem> {
    contest_of(api, &Params::parse(query, &["contest"])?)
}

/// The contest `?contest=` names, or the mission's first.
fn contest_of(api: &Api, params: &Params) -> Result<String, Problem> {
    let contest = match params.code("contest")? {
        None => api
            .mission
            .contests
            .first()
            .ok_or_else(|| Problem::not_found("contest", "contest", "(any)", Some(Vec::new())))?,
        Some(id) => pollwatch_api::params::contest(&api.mission, "contest", &id)?,
    };
    Ok(contest.id.clone())
}

pub(crate) async fn results(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let contest = contest_asked(&api, query.as_deref())?;
    shared_view(&api, Some(format!("results {contest}")), false, move |api: Api| async move {
        let (store, mission) = (&api.store, &*api.mission);
        let contest = mission.contest(&contest).expect("a contest of the mission");
        let results = views::results(store, mission, contest, None).await?;
        let disputed = views::discrepancies(store, mission, Some(contest)).await?;
        Ok(render::results(mission, contest, &results, &disputed))
    })
    .await
}

/// The quick count: the estimate with its margins, the sample's completeness, the official
/// result against it, and the estimate over the night; or how to draw a sample, until there is one.
pub(crate) async fn quick_count(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = Params::parse(query.as_deref(), &["contest", "share_of", "as_of"])?;
    // To the millisecond, as the page's links carry it: the view, its cache key and its links
    // agree.
    let as_of = params.time("as_of")?.map(|t| chrono::SubsecRound::trunc_subsecs(t, 3));
    let contest = contest_of(&api, &params)?;
    let share_of = pollwatch_api::params::share_of(&params)?;
    let Some((sample, fingerprint)) = pollwatch_api::pvt::sample_if_any(&api).await? else {
        // Nothing of the store's in it: marked as up to date with the store, so that the script
        // does not fetch it again but after a change.
        let seq = api.store.latest_seq().await?;
        let contest = api.mission.contest(&contest).expect("a contest");
        let page = render::quick_count(&api.mission, contest, share_of, as_of, None);
        return Ok(html(StatusCode::OK, maud::html! { div.view data-seq=(seq) { (page) } }.into_string()));
    };
    let (official, official_fingerprint) = pollwatch_api::pvt::read_official(&api).await?;
    let (sample, official) = (std::sync::Arc::new(sample), std::sync::Arc::new(official));
    let question =
        format!("quick-count {contest} {share_of:?} {as_of:?} {fingerprint} {official_fingerprint}");
    shared_view(&api, Some(question), false, move |api: Api| async move {
        let (store, mission) = (&api.store, &*api.mission);
        let contest = mission.contest(&contest).expect("a contest of the mission");
        let asked = pollwatch_api::pvt::Asked {
            share_of,
            threshold: api.pvt_threshold,
            as_of,
            official: official.as_ref().as_ref().and_then(|o| o.contests.get(&contest.id)),
        };
        let view = pollwatch_api::pvt::estimate(store, mission, &sample, contest, &asked).await?;
        Ok(render::quick_count(mission, contest, share_of, as_of, Some(&view)))
    })
    .await
}

pub(crate) async fn held(State(api): State<Api>, RawQuery(query): RawQuery) -> Answered {
    let params = Params::parse(query.as_deref(), &["after"])?;
    let after = params.cursor("after")?;
    shared_view(&api, after.is_none().then(|| "held".to_owned()), false, move |api: Api| async move {
        let page = views::held(&api.store, &api.mission, after, HELD_PER_PAGE).await?;
        // Reports with a version no reviewer has picked between yet, on the first page alone.
        let conflicted = match after {
            Some(_) => None,
            None => {
                let filter = ReportFilter { conflicted: Some(true), ..ReportFilter::default() };
                Some(views::reports(&api.store, &api.mission, &filter, None, CONFLICTS_SHOWN).await?)
            }
        };
        Ok(render::held(&api.mission, &page, conflicted.as_ref()))
    })
    .await
}

/// One report with its revisions, for the details the feed and the held list open.
pub(crate) async fn report(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answered {
    Params::parse(query.as_deref(), &[])?;
    let Path(id) = path.map_err(|_| Problem::invalid_value("report_id", "", "a report id (a UUID)", None))?;
    let id = pollwatch_api::params::report_id(&id)?;
    match views::report(&api.store, &api.mission, &id).await? {
        Some(view) => Ok(html(StatusCode::OK, render::report(&api.mission, &view).into_string())),
        None => Err(Problem::not_found("report_id", "report", &id, None)),
    }
}
