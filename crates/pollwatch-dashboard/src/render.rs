//! The HTML: the shell every page starts as, and each page's view. maud escapes every value it
//! is given, so a station name or an observer's free text is shown as written and never read
//! as markup. Names come from the mission as it spells them; a code the roster lacks is shown
//! as the code. Bars and charts are SVG drawn here, coloured by the style sheet (the page's
//! security policy allows no inline style).

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use pollwatch_api::pvt::{PvtRatioView, PvtView};
use pollwatch_api::views::{
    CoverageView, DiscrepanciesView, HeldView, IncidentSummaryView, IncidentsView, ObserversView,
    ReportSummaryView, ReportView, ReportsView, ResultFigures, ResultsView,
};
use pollwatch_model::{Contest, IncidentCategory, Mission, ReportKind, Severity};
use pollwatch_pvt::ShareOf;
use pollwatch_store::IncidentFilter;

use crate::assets::{SCRIPT_PATH, STYLE_PATH};
use crate::pages::{PHASES, Page, SILENT_FOR};

/// What the overview shows.
#[derive(Debug)]
pub(crate) struct Overview<'m> {
    /// Current reports, and those held for review.
    pub reports: i64,
    pub held: i64,
    pub coverage: Vec<CoverageView>,
    pub incidents: IncidentSummaryView,
    pub results: Vec<(&'m Contest, ResultsView)>,
    pub silent: ObserversView,
}

/// The report kinds whose changes a view shows: the script fetches it again only after a change
/// of one of them (and once a minute, for silence).
fn kinds(kinds: &[ReportKind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn shell(page: Page) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title()) " · pollwatch" }
                link rel="stylesheet" href=(STYLE_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body data-page=(page.path()) data-view=(page.view()) {
                header.top {
                    a.brand href="/" { "pollwatch" }
                    nav {
                        @for other in Page::ALL {
                            a href=(other.path()) aria-current=[(other == page).then_some("page")] { (other.title()) }
                        }
                    }
                    span #status data-state="idle" role="status" { "not signed in" }
                    button #sign-out type="button" hidden { "Sign out" }
                }
                section #sign-in hidden {
                    form #sign-in-form autocomplete="off" {
                        h1 { "Sign in" }
                        p { "Paste your viewer token (an administrator makes one with " code { "pollwatch token add" } "). "
                            "It is kept in this browser tab only, until you close it or sign out." }
                        label { "Token " input #token type="password" name="token" required maxlength="256" spellcheck="false"; }
                        button type="submit" { "Sign in" }
                        p #sign-in-error .error role="alert" {}
                    }
                }
                main #view {}
                dialog #details {
                    div #details-body {}
                    form method="dialog" { button { "Close" } }
                }
                noscript { p.error { "The dashboard needs JavaScript (its own script, served by pollwatch)." } }
            }
        }
    }
}

/// A horizontal bar: `part` of `whole`.
fn bar(part: i64, whole: i64, class: &str) -> Markup {
    let width = if whole > 0 { (part.clamp(0, whole) as f64 * 100.0 / whole as f64).max(0.0) } else { 0.0 };
    html! {
        svg class={"bar " (class)} viewBox="0 0 100 10" preserveAspectRatio="none" role="img"
            aria-label={(part) " of " (whole)} {
            rect.track width="100" height="10" {}
            rect.fill width=(format!("{width:.2}")) height="10" {}
        }
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

fn count(n: impl Into<i64>) -> String {
    let digits = n.into().to_string();
    let (sign, digits) = digits.strip_prefix('-').map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn usize_count(n: usize) -> String {
    count(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A time in the mission's time zone: the time alone on election day, else the date too.
fn local(mission: &Mission, at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&mission.time_zone);
    if local.date_naive() == mission.election_day {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

fn region_name<'m>(mission: &'m Mission, code: &'m str) -> &'m str {
    mission.region(code).map_or(code, |r| r.name.as_str())
}

fn station(mission: &Mission, code: &str) -> Markup {
    html! {
        span.station title=(code) {
            @match mission.station(code) {
                Some(station) => { (station.name) " " span.code { (code) } },
                None => { span.code { (code) } " " span.muted { "(not in the roster)" } },
            }
        }
    }
}

fn observer(mission: &Mission, id: &str) -> Markup {
    html! {
        @match mission.observer(id) {
            Some(o) => span title=(id) { (o.name) },
            None => span.code { (id) },
        }
    }
}

fn label(code: &str) -> String {
    code.replace('_', " ")
}

fn severity_badge(severity: &str) -> Markup {
    html! { span class={"badge sev-" (severity)} { (severity) } }
}

/// The heading every view starts with, and the kinds it shows.
fn view(mission: &Mission, title: &str, shows: &[ReportKind], body: &Markup) -> Markup {
    html! {
        div.page data-kinds=(kinds(shows)) {
            div.heading {
                h1 { (title) }
                p.mission { (mission.name) " · " (mission.election_day.format("%-d %B %Y"))
                    " · polls " (mission.polls_open.format("%H:%M")) "–" (mission.polls_close.format("%H:%M"))
                    " (" (mission.time_zone.name()) ")" }
            }
            (body)
        }
    }
}

pub(crate) fn overview(mission: &Mission, o: &Overview<'_>) -> Markup {
    let by_severity = |severity: Severity| -> i64 {
        o.incidents.by_category.0.iter().filter_map(|(_, s)| s.get(severity.as_str())).sum()
    };
    let urgent = by_severity(Severity::Critical) + by_severity(Severity::High);
    let body = html! {
        section.tiles {
            div.tile #tile-reports { span.figure { (count(o.reports)) } span.caption { "reports received" } }
            a.tile #tile-held href="/held" { span.figure { (count(o.held)) } span.caption { "held for review" } }
            a.tile #tile-incidents href="/incidents" { span.figure { (count(o.incidents.total)) } span.caption { "incidents" } }
            a.tile.urgent[urgent > 0] #tile-urgent href="/incidents?severity=critical" {
                span.figure { (count(urgent)) } span.caption { "critical or high" } }
            a.tile #tile-silent href="/coverage#silent" {
                span.figure { (usize_count(o.silent.observers.len())) }
                span.caption { "observers silent " (SILENT_FOR.as_secs() / 60) " min" } }
        }
        section #coverage {
            h2 { "Coverage" }
            table.coverage {
                thead { tr { th { "Region" } @for phase in PHASES { th { (label(phase.as_str())) } } } }
                tbody {
                    @for region in &mission.regions {
                        tr data-region=(region.code) {
                            th scope="row" { (region.name) }
                            @for (phase, view) in PHASES.iter().zip(&o.coverage) {
                                @if let Some(r) = view.regions.iter().find(|r| r.region == region.code) {
                                    (coverage_cell(*phase, Some(&region.code), r.reported, r.expected))
                                } @else { td {} }
                            }
                        }
                    }
                }
                tfoot {
                    tr #coverage-national {
                        th scope="row" { "All regions" }
                        @for (phase, view) in PHASES.iter().zip(&o.coverage) {
                            (coverage_cell(*phase, None, view.national.reported, view.national.expected))
                        }
                    }
                }
            }
        }
        div.columns {
            section #incidents {
                h2 { "Incidents by severity" }
                ul.severities {
                    @for severity in Severity::ALL.iter().rev() {
                        li { a href={"/incidents?severity=" (severity.as_str())} {
                            (severity_badge(severity.as_str())) " "
                            span.figure data-severity=(severity.as_str()) { (count(by_severity(*severity))) } } }
                    }
                }
                table.compact {
                    tbody {
                        @for (category, severities) in &o.incidents.by_category.0 {
                            tr { th scope="row" { a href={"/incidents?category=" (category)} { (label(category)) } }
                                 td.num { (count(severities.0.iter().map(|(_, n)| n).sum::<i64>())) } }
                        }
                    }
                }
            }
            section #silent {
                h2 { "Silent observers" }
                @if o.silent.observers.is_empty() {
                    p.muted { "Every observer has reported in the last " (SILENT_FOR.as_secs() / 60) " minutes." }
                } @else {
                    table.compact {
                        tbody {
                            @for s in o.silent.observers.iter().take(10) {
                                tr { td { (s.name) } td.muted { (s.team) } td.num {
                                    @match s.last_report_at { Some(at) => (local(mission, at)), None => "never" } } }
                            }
                        }
                    }
                    @if o.silent.observers.len() > 10 {
                        p { a href="/coverage#silent" { "All " (o.silent.observers.len()) " silent observers" } }
                    }
                }
            }
        }
        section #results {
            h2 { "Results so far" }
            div.columns {
                @for (contest, results) in &o.results {
                    div.contest data-contest=(contest.id) {
                        h3 { a href={"/results?contest=" (contest.id)} { (contest.name) } }
                        (figures_line(&results.totals))
                        (share_chart(contest, &results.totals, Some(5)))
                    }
                }
            }
        }
    };
    view(mission, "Overview", &ReportKind::ALL, &body)
}

fn coverage_cell(phase: ReportKind, region: Option<&str>, reported: usize, expected: usize) -> Markup {
    let missing = expected.saturating_sub(reported);
    let link = match region {
        Some(code) => format!("/coverage?phase={phase}&region={code}"),
        None => format!("/coverage?phase={phase}"),
    };
    let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    html! {
        td.cell data-phase=(phase.as_str()) {
            (bar(as_i64(reported), as_i64(expected), "coverage"))
            span.reported { (usize_count(reported)) } " / " span.expected { (usize_count(expected)) }
            @if missing > 0 { " " a.missing href=(link) { (usize_count(missing)) " missing" } }
        }
    }
}

fn figures_line(figures: &ResultFigures) -> Markup {
    html! {
        p.figures {
            span.counted { (count(figures.stations_counted)) } " of " (count(figures.stations_expected)) " stations counted"
            " · turnout " span.turnout { (percent(figures.turnout)) }
            " · " (count(figures.valid)) " valid, " (count(figures.invalid)) " invalid"
        }
    }
}

/// A bar per choice, its share of the valid votes; the `top` most voted only, when given.
fn share_chart(contest: &Contest, figures: &ResultFigures, top: Option<usize>) -> Markup {
    let mut rows: Vec<(&str, i64, f64)> = figures
        .votes
        .0
        .iter()
        .map(|(code, votes)| (code.as_str(), *votes, figures.shares.get(code).copied().unwrap_or(0.0)))
        .collect();
    if let Some(top) = top {
        rows.sort_by_key(|row| std::cmp::Reverse(row.1));
        rows.truncate(top);
    }
    let widest = rows.iter().map(|r| r.2).fold(0.0_f64, f64::max);
    html! {
        table.shares {
            tbody {
                @for (code, votes, share) in &rows {
                    tr data-choice=(code) {
                        th scope="row" { (contest.choice(code).map_or(*code, |c| c.name.as_str())) }
                        td.chart { (share_bar(*share, widest)) }
                        td.num.share { (percent(*share)) }
                        td.num.votes { (count(*votes)) }
                    }
                }
            }
        }
    }
}

/// A share's bar, scaled so that the largest share fills the column.
fn share_bar(share: f64, widest: f64) -> Markup {
    let width = if widest > 0.0 { (share / widest * 100.0).clamp(0.0, 100.0) } else { 0.0 };
    html! {
        svg.bar.share viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label=(percent(share)) {
            rect.fill width=(format!("{width:.2}")) height="10" {}
        }
    }
}

pub(crate) fn coverage(mission: &Mission, coverage: &CoverageView, silent: &ObserversView) -> Markup {
    let phases = ReportKind::ALL.iter().filter(|k| **k != ReportKind::Incident);
    let here = |phase: ReportKind, region: Option<&str>| match region {
        Some(region) => format!("/coverage?phase={phase}&region={region}"),
        None => format!("/coverage?phase={phase}"),
    };
    let body = html! {
        nav.tabs aria-label="Phase" {
            @for phase in phases {
                a href=(here(*phase, coverage.region.as_deref()))
                  aria-current=[(*phase == coverage.phase).then_some("page")] { (label(phase.as_str())) }
            }
        }
        nav.tabs aria-label="Region" {
            a href=(here(coverage.phase, None)) aria-current=[coverage.region.is_none().then_some("page")] { "All regions" }
            @for region in &mission.regions {
                a href=(here(coverage.phase, Some(&region.code)))
                  aria-current=[(coverage.region.as_deref() == Some(region.code.as_str())).then_some("page")] { (region.name) }
            }
        }
        p.figures #coverage-total {
            (bar(coverage.national.reported as i64, coverage.national.expected as i64, "coverage"))
            (usize_count(coverage.national.reported)) " of " (usize_count(coverage.national.expected))
            " stations have a " (label(coverage.phase.as_str())) " report; "
            span #missing-count { (usize_count(coverage.national.missing)) } " missing"
        }
        @for region in &coverage.regions {
            section.region data-region=(region.region) {
                h2 { (region_name(mission, &region.region)) " "
                    span.muted { (usize_count(region.reported)) " / " (usize_count(region.expected)) ", "
                        (usize_count(region.missing.len())) " missing" } }
                @if !region.missing.is_empty() {
                    table.list {
                        thead { tr { th { "Station" } th { "Code" } th { "District" } } }
                        tbody {
                            @for code in &region.missing {
                                @let found = mission.station(code);
                                tr data-station=(code) {
                                    td { (found.map_or("", |s| s.name.as_str())) }
                                    td.code { (code) }
                                    td { (found.and_then(|s| s.district.as_deref()).unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #silent {
            h2 { "Silent observers " span.muted { "(nothing for " (SILENT_FOR.as_secs() / 60) " minutes or more)" } }
            table.list {
                thead { tr { th { "Observer" } th { "Team" } th { "Last report" } } }
                tbody {
                    @for s in &silent.observers {
                        tr data-observer=(s.id) { td { (s.name) } td { (s.team) } td {
                            @match s.last_report_at { Some(at) => (local(mission, at)), None => span.muted { "never" } } } }
                    }
                }
            }
        }
    };
    view(mission, "Coverage", &ReportKind::ALL, &body)
}

pub(crate) fn incidents(mission: &Mission, filter: &IncidentFilter, page: &IncidentsView) -> Markup {
    let older = page.next.as_ref().map(|next| {
        let mut query = url_query(&[
            ("severity", filter.severity.as_deref()),
            ("category", filter.category.as_deref()),
            ("region", filter.region.as_deref()),
        ]);
        query.push(if query.is_empty() { '?' } else { '&' });
        format!("/incidents{query}after={next}")
    });
    let body = html! {
        form.filters method="get" action="/incidents" {
            (select("severity", "Severity", filter.severity.as_deref(),
                Severity::ALL.iter().rev().map(|s| (s.as_str().to_owned(), s.as_str().to_owned()))))
            (select("category", "Category", filter.category.as_deref(),
                IncidentCategory::ALL.iter().map(|c| (c.as_str().to_owned(), label(c.as_str())))))
            (select("region", "Region", filter.region.as_deref(),
                mission.regions.iter().map(|r| (r.code.clone(), r.name.clone()))))
            button type="submit" { "Filter" }
        }
        @if page.incidents.is_empty() {
            p.muted #no-incidents { "No incidents reported" @if filter.severity.is_some() || filter.category.is_some() || filter.region.is_some() { " that match" } "." }
        } @else {
            table.list.feed {
                thead { tr { th { "Received" } th { "Observed" } th { "Severity" } th { "Category" } th { "Station" } th { "Region" }
                    th { "Observer" } th { "What happened" } th {} } }
                tbody {
                    @for i in &page.incidents {
                        tr class={"incident sev-" (i.severity)} data-report=(i.report_id) {
                            td.time { (local(mission, i.received_at)) }
                            td.time { (local(mission, i.observed_at)) }
                            td { (severity_badge(&i.severity)) }
                            td { (label(&i.category)) }
                            td { (station(mission, &i.station)) }
                            td { (region_name(mission, &i.region)) }
                            td { (observer(mission, &i.observer)) }
                            td.description { (i.description) }
                            td { button.details type="button" data-report=(i.report_id) { "Details" } }
                        }
                    }
                }
            }
        }
        @if let Some(older) = older { p { a.older href=(older) { "Older incidents →" } } }
    };
    view(mission, "Incidents", &[ReportKind::Incident], &body)
}

/// A query string of the given parameters that have values (which are codes: no escaping needed
/// beyond what the template does).
fn url_query(pairs: &[(&str, Option<&str>)]) -> String {
    let present: Vec<String> =
        pairs.iter().filter_map(|(name, value)| value.map(|v| format!("{name}={v}"))).collect();
    if present.is_empty() { String::new() } else { format!("?{}", present.join("&")) }
}

fn select(
    name: &str,
    caption: &str,
    chosen: Option<&str>,
    options: impl Iterator<Item = (String, String)>,
) -> Markup {
    html! {
        label { (caption) " "
            select name=(name) {
                option value="" selected[chosen.is_none()] { "any" }
                @for (value, text) in options {
                    option value=(value) selected[chosen == Some(value.as_str())] { (text) }
                }
            }
        }
    }
}

/// Disputed stations shown on the results page, and teams' copies shown for each: a page stays
/// a page however many teams disagree (the API lists them all).
const DISPUTES_SHOWN: usize = 25;
const COPIES_SHOWN: usize = 10;

pub(crate) fn results(
    mission: &Mission,
    contest: &Contest,
    results: &ResultsView,
    disputed: &DiscrepanciesView,
) -> Markup {
    let body = html! {
        nav.tabs aria-label="Contest" {
            @for other in &mission.contests {
                a href={"/results?contest=" (other.id)} aria-current=[(other.id == contest.id).then_some("page")] { (other.name) }
            }
        }
        section.contest data-contest=(contest.id) {
            h2 { (contest.name) }
            (figures_line(&results.totals))
            (share_chart(contest, &results.totals, None))
            p.muted.rule { (results.rule) }
        }
        section #by-region {
            h2 { "By region" }
            div.scroll {
                table.list.regions {
                    thead { tr {
                        th { "Region" } th { "Counted" } th { "Turnout" }
                        @for choice in &contest.choices { th.num title=(choice.name) { (choice.name) } }
                    } }
                    tbody {
                        @for region in &results.by_region {
                            tr data-region=(region.region) {
                                th scope="row" { (region_name(mission, &region.region)) }
                                td.num { (count(region.figures.stations_counted)) " / " (count(region.figures.stations_expected)) }
                                td.num { (percent(region.figures.turnout)) }
                                @for choice in &contest.choices {
                                    td.num { (percent(region.figures.shares.get(&choice.code).copied().unwrap_or(0.0))) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #disputed {
            h2 { "Disputed stations " span.muted { "(teams' protocols disagree)" } }
            @if disputed.discrepancies.is_empty() {
                p.muted { "None: where two teams copied a station's protocol, they agree." }
            } @else {
                p #disputed-count { (usize_count(disputed.discrepancies.len())) " disputed "
                    @if disputed.discrepancies.len() > DISPUTES_SHOWN {
                        "; the first " (DISPUTES_SHOWN) " by station code below, every one in "
                        code { "/api/v1/discrepancies?contest=" (contest.id) }
                    }
                }
            }
            @for d in disputed.discrepancies.iter().take(DISPUTES_SHOWN) {
                div.dispute data-station=(d.station) {
                    h3 { (station(mission, &d.station)) " · " (region_name(mission, &d.region)) }
                    div.scroll {
                        table.list {
                            thead { tr {
                                th { "Observer" } th { "Observed" } th.num { "In box" } th.num { "Invalid" }
                                @for choice in &contest.choices { th.num title=(choice.name) { (choice.code) } }
                                th {}
                            } }
                            tbody {
                                @for copy in d.reports.iter().take(COPIES_SHOWN) {
                                    tr.copy.counted[copy.report_id == d.counted] {
                                        td { (observer(mission, &copy.observer)) }
                                        td.time { (local(mission, copy.observed_at)) }
                                        td.num { (count(copy.ballots_in_box)) }
                                        td.num { (count(copy.invalid)) }
                                        @for choice in &contest.choices {
                                            td.num { (count(copy.votes.get(&choice.code).copied().unwrap_or(0))) }
                                        }
                                        td { @if copy.report_id == d.counted { span.badge { "counted" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    view(mission, "Results", &[ReportKind::Counting], &body)
}

/// The quick count's page: the estimate per choice with its margins and the official result
/// against it, the sample's completeness per stratum, and the leading choice's estimate over the
/// night; or, without a sample, how to draw one.
pub(crate) fn quick_count(
    mission: &Mission,
    contest: &Contest,
    share_of: ShareOf,
    as_of: Option<DateTime<Utc>>,
    estimate: Option<&PvtView>,
) -> Markup {
    let margin = |m: Option<f64>| m.map_or_else(|| "–".to_owned(), |m| format!("±{:.2}", m * 100.0));
    let points = |x: f64| format!("{:.2}", x * 100.0);
    // In `Z` form, which a query string carries as it is (but for a year's sign past 9999).
    let replayed = as_of.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).replace('+', "%2B"));
    let link = |contest: &str, share_of: ShareOf| {
        let at = replayed.as_ref().map(|t| format!("&as_of={t}")).unwrap_or_default();
        format!("/quick-count?contest={contest}&share_of={}{at}", share_of.code())
    };
    let shares = [
        (ShareOf::Valid, "Shares of the valid votes"),
        (ShareOf::Ballots, "Shares of the ballots in the box (those who took part)"),
    ];
    let body = html! {
        nav.tabs aria-label="Contest" {
            @for other in &mission.contests {
                a href=(link(&other.id, share_of)) aria-current=[(other.id == contest.id).then_some("page")] { (other.name) }
            }
        }
        nav.tabs #share-of aria-label="Shares of" {
            @for (choice, label) in shares {
                a href=(link(&contest.id, choice)) data-share-of=(choice.code()) aria-current=[(choice == share_of).then_some("page")] { (label) }
            }
        }
        @match estimate {
            None => {
                section #no-sample {
                    p { "This mission has no quick-count sample yet. Draw one into the mission folder with "
                        code { "pollwatch pvt sample --mission DIR --size N --seed S" }
                        " (docs/pvt.md); this page shows the estimate as the sampled stations' protocols come in." }
                }
            }
            Some(view) => {
                section.contest data-contest=(contest.id) {
                    h2 { (contest.name) }
                    @if let Some(at) = as_of {
                        p #replayed role="status" { "Replayed as of " (local(mission, at)) " (" (mission.time_zone.name()) "): protocols received later are left out; disputes and reviewers' decisions are as they are now. "
                            a href={"/quick-count?contest=" (contest.id) "&share_of=" (share_of.code())} { "Now" } }
                    }
                    @if view.publishable {
                        p #publishable.ok { "Every stratum is at least " (percent(view.threshold)) " in: the estimate may be published." }
                    } @else {
                        p #publishable.error role="status" { "Not yet publishable: a stratum is less than " (percent(view.threshold))
                            " in. " (count(view.reported as i64)) " of " (count(view.sampled as i64)) " sampled stations have reported." }
                    }
                    div.scroll {
                        table.list #estimate {
                            thead { tr {
                                th { "Choice" } th.num { "Estimate %" } th.num { "95 % margin" } th.num { "99 % margin" }
                                @if view.official { th.num { "Official %" } th.num { "Difference" } th { "Official result" } }
                            } }
                            tbody {
                                @for choice in &view.choices {
                                    (estimate_row(&choice.name, &choice.choice, &choice.ratio, view.official, &margin, &points))
                                }
                                @if let Some(turnout) = &view.turnout {
                                    (estimate_row("Turnout", "turnout", turnout, view.official, &margin, &points))
                                }
                            }
                        }
                    }
                    p.muted { (shares.iter().find(|(c, _)| *c == share_of).map_or("", |(_, label)| label)) ", from the accepted counting protocols of the sampled stations; "
                        "stratified by " (view.strata_by) ", seed " (view.seed) ". "
                        @if !view.disputed.is_empty() { "Left out until a reviewer settles them (disputed): " (view.disputed.join(", ")) ". " }
                        "The formulas: docs/pvt.md." }
                }
                @if let Some(leader) = view.choices.iter().max_by(|a, b| a.ratio.estimate.total_cmp(&b.ratio.estimate)) {
                    section #over-time {
                        h2 { (leader.name) " over the night " span.muted { "(estimate and its 95 % interval as the sample came in)" } }
                        (history_chart(mission, view, &leader.choice))
                    }
                }
                section #strata {
                    h2 { "The sample by stratum" }
                    table.list {
                        thead { tr { th { "Stratum" } th.num { "Stations" } th.num { "Sampled" } th.num { "Reported" } th.num { "In" } } }
                        tbody {
                            @for s in &view.strata {
                                tr data-stratum=(s.stratum) .short[s.sampled > 0 && (s.reported as f64) < view.threshold * s.sampled as f64] {
                                    th scope="row" { (region_name(mission, &s.stratum)) }
                                    td.num { (count(s.stations as i64)) }
                                    td.num { (count(s.sampled as i64)) }
                                    td.num { (count(s.reported as i64)) }
                                    td.num { (percent(if s.sampled == 0 { 1.0 } else { s.reported as f64 / s.sampled as f64 })) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    view(mission, "Quick count", &[ReportKind::Counting], &body)
}

/// One row of the estimate's table.
fn estimate_row(
    name: &str,
    code: &str,
    ratio: &PvtRatioView,
    with_official: bool,
    margin: &dyn Fn(Option<f64>) -> String,
    points: &dyn Fn(f64) -> String,
) -> Markup {
    html! {
        tr data-choice=(code) {
            th scope="row" { (name) }
            td.num.estimate { (points(ratio.estimate)) }
            td.num { (margin(ratio.margin_95)) }
            td.num { (margin(ratio.margin_99)) }
            @if with_official {
                @match &ratio.official {
                    Some(official) => {
                        td.num { (points(official.share)) }
                        td.num { (format!("{:+.2}", official.difference * 100.0)) }
                        td.verdict.outside[official.verdict == Some(pollwatch_api::pvt::OUTSIDE)] { (official.verdict.unwrap_or("no margin yet")) }
                    }
                    None => { td {} td {} td {} }
                }
            }
        }
    }
}

/// The estimate of `choice` and its 95 % interval over the night, as an SVG line in a band.
fn history_chart(mission: &Mission, view: &PvtView, choice: &str) -> Markup {
    // (received, stations in, estimate, 95 % margin) at each moment.
    let points: Vec<(DateTime<Utc>, u64, f64, Option<f64>)> = view
        .history
        .iter()
        .filter_map(|p| {
            let at = DateTime::parse_from_rfc3339(&p.at).ok()?.to_utc();
            p.choices.get(choice).map(|r| (at, p.reported, r.estimate, r.margin_95))
        })
        .collect();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return html! { p.muted { "No protocol of the sample has come in yet." } };
    };
    let margin = |p: &(DateTime<Utc>, u64, f64, Option<f64>)| p.3.unwrap_or(0.0);
    let low = points.iter().map(|p| p.2 - margin(p)).fold(f64::INFINITY, f64::min).max(0.0);
    let high = points.iter().map(|p| p.2 + margin(p)).fold(f64::NEG_INFINITY, f64::max).min(1.0);
    let span_y = (high - low).max(1e-6);
    // Against the time each moment's last protocol arrived; all in one millisecond (the
    // times' resolution), against the stations in.
    let span_ms = (last.0 - first.0).num_milliseconds();
    let x = |p: &(DateTime<Utc>, u64, f64, Option<f64>)| {
        if span_ms > 0 {
            (p.0 - first.0).num_milliseconds() as f64 / span_ms as f64 * 100.0
        } else {
            (p.1 - first.1) as f64 / (last.1 - first.1).max(1) as f64 * 100.0
        }
    };
    let y = |share: f64| 40.0 - (share - low) / span_y * 40.0;
    let line: Vec<String> = points.iter().map(|p| format!("{:.2},{:.2}", x(p), y(p.2))).collect();
    // The interval where there is one: a moment whose estimate has no margin yet (a stratum
    // with fewer than two stations in) breaks the band rather than narrowing it to nothing.
    let bands: Vec<String> = points
        .split(|p| p.3.is_none())
        .filter(|run| run.len() > 1)
        .map(|run| {
            let corner = |p: &(DateTime<Utc>, u64, f64, Option<f64>), up: f64| {
                format!("{:.2},{:.2}", x(p), y(p.2 + up * margin(p)))
            };
            let upper = run.iter().map(|p| corner(p, 1.0));
            upper.chain(run.iter().rev().map(|p| corner(p, -1.0))).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let label = format!(
        "from {:.2} % at {} with {} stations in to {:.2} % at {} with {}",
        first.2 * 100.0,
        local(mission, first.0),
        first.1,
        last.2 * 100.0,
        local(mission, last.0),
        last.1
    );
    html! {
        svg.history viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label=(label) {
            @for band in &bands { polygon.band points=(band) {} }
            polyline.estimate points=(line.join(" ")) {}
        }
        p.muted.axis { (format!("{:.2}", low * 100.0)) "–" (format!("{:.2}", high * 100.0)) " % against the time each protocol arrived (" (mission.time_zone.name()) "): " (label) "." }
    }
}

pub(crate) fn held(mission: &Mission, page: &HeldView, conflicted: Option<&ReportsView>) -> Markup {
    let body = html! {
        @if let Some(conflicted) = conflicted.filter(|c| !c.reports.is_empty()) {
            section #conflicted {
                h2 { "Conflicting versions" }
                p.muted { "Reports sent again with the same revision and other content. The first version received counts until a reviewer picks one in the report's details."
                    @if conflicted.next.is_some() { " The first " (conflicted.reports.len()) " are listed; every one in " code { "/api/v1/reports?conflicted=true" } "." } }
                table.list {
                    thead { tr { th { "Received" } th { "Kind" } th { "Station" } th { "Observer" } th { "Revision" } th {} } }
                    tbody {
                        @for r in &conflicted.reports {
                            tr data-report=(r.report_id) {
                                (listed(mission, r))
                                td.num { (r.revision) }
                                td { button.details type="button" data-report=(r.report_id) { "Details" } }
                            }
                        }
                    }
                }
            }
            h2 { "Held reports" }
        }
        p.muted { "Reports validation held back: they count in no finding and no result until reviewed." }
        @if page.reports.is_empty() {
            p #no-held { "Nothing is held." }
        } @else {
            table.list.held {
                thead { tr { th { "Received" } th { "Kind" } th { "Station" } th { "Observer" } th { "Why it is held" } th {} } }
                tbody {
                    @for h in &page.reports {
                        tr data-report=(h.report.report_id) {
                            (listed(mission, &h.report))
                            td { ul.flags { @for f in &h.flags { li { span.code { (f.code) } " " (f.message)
                                @if !f.path.is_empty() { " " span.muted { "(" (f.path) ")" } } } } } }
                            td { button.details type="button" data-report=(h.report.report_id) { "Details" } }
                        }
                    }
                }
            }
            @if let Some(next) = &page.next { p { a.older href={"/held?after=" (next)} { "More →" } } }
        }
    };
    view(mission, "Held for review", &ReportKind::ALL, &body)
}

/// A listed report's cells: received, kind, station, observer.
fn listed(mission: &Mission, r: &ReportSummaryView) -> Markup {
    html! {
        td.time { (local(mission, r.received_at)) }
        td { (r.kind.as_str()) }
        td { (station(mission, &r.station)) }
        td { (observer(mission, &r.observer)) }
    }
}

/// The payload, indented when it is JSON (as it always is once stored).
fn pretty(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| payload.to_owned())
}

pub(crate) fn report(mission: &Mission, view: &ReportView) -> Markup {
    let current = &view.current;
    html! {
        article.report data-report=(current.report_id) {
            h2 { (label(current.kind.as_str())) " report" @if current.held { " " span.badge.sev-high { "held" } } }
            dl {
                dt { "Station" } dd { (station(mission, &current.station)) }
                dt { "Observer" } dd { (observer(mission, &current.observer)) }
                dt { "Observed" } dd { (local(mission, current.observed_at)) }
                dt { "Revision" } dd { (current.revision) " of " (view.revisions.iter().filter(|r| r.variant == 0).count()) " received" }
                dt { "Report id" } dd.code { (current.report_id) }
            }
            h3 { "Revisions" }
            @for r in view.revisions.iter().rev() {
                details open[r.in_force] {
                    summary { "Revision " (r.revision) " · received " (local(mission, r.received_at))
                        " · " (r.channel) @if let Some(sender) = &r.sender { " from " (sender) }
                        @if r.redelivered { " · redelivered" }
                        @if r.variant > 0 { " · a conflicting version, stored again when a reviewer picked it" }
                        @if r.in_force { " · " span.badge { "counts" } } }
                    @if !r.flags.is_empty() {
                        ul.flags { @for f in &r.flags { li { span.code { (f.code) } " " (f.message) } } }
                    }
                    pre { (pretty(&r.payload)) }
                }
            }
            @if !view.conflicts.is_empty() { (versions(mission, view)) }
            (review(mission, view))
        }
    }
}

/// A report's conflicting versions side by side: which one counts, and for each other version of
/// the current revision a button that counts it instead (the script posts the form to
/// `POST /api/v1/reports/{id}/version`, naming the version shown in force, and explains a 409).
fn versions(mission: &Mission, view: &ReportView) -> Markup {
    let current = &view.current;
    let in_force = view.revisions.iter().find(|r| r.in_force).map_or("", |r| r.content_hash.as_str());
    let first = view.revisions.iter().find(|r| r.revision == current.revision && r.variant == 0);
    let aside: Vec<_> = view.conflicts.iter().filter(|c| c.revision == current.revision).collect();
    let older = view.conflicts.iter().filter(|c| c.revision != current.revision);
    let card = |heading: &str, received_at: DateTime<Utc>, hash: &str, payload: &str| {
        let counts = hash == in_force;
        html! {
            div.version.counted[counts] data-version=(hash) {
                h4 { @if counts { span.badge { "counts" } " " } (heading) ", received " (local(mission, received_at)) }
                p.code.muted { (hash) }
                pre { (pretty(payload)) }
                @if !counts { button type="submit" name="keep" value=(hash) { "Count this version" } }
            }
        }
    };
    html! {
        h3 { "Conflicting versions" }
        p.muted { "Same revision, other content. One version counts (the first received, until a reviewer picks another); the others are kept beside it." }
        @if let (Some(first), false) = (first, aside.is_empty()) {
            form.pick data-report=(current.report_id) data-revision=(current.revision) data-expected=(in_force) {
                div.side-by-side {
                    (card("First received", first.received_at, &first.content_hash, &first.payload))
                    @for c in &aside { (card("Kept aside", c.received_at, &c.content_hash, &c.payload)) }
                }
                label { "Reason for counting another version (required; kept in the review log)"
                    textarea name="reason" rows="2" maxlength="2000" required {} }
                p.pick-message role="status" {}
            }
        }
        @for c in older {
            details { summary { "Kept aside: a version of revision " (c.revision) ", received " (local(mission, c.received_at)) }
                pre { (pretty(&c.payload)) } }
        }
    }
}

/// A report's review: its state and who set it, every decision and comment, and the form a
/// reviewer decides with (the script posts it to `POST /api/v1/reports/{id}/review`, naming the
/// state and revision shown here, and explains a 409 in words).
fn review(mission: &Mission, view: &ReportView) -> Markup {
    let current = &view.current;
    html! {
        section.review {
            h3 { "Review" }
            p #review-state data-state=(current.review_state) {
                "This revision is " strong { (current.review_state) }
                @match &view.decided_by {
                    Some(by) => { ", decided by " (by.reviewer) " at " (local(mission, by.at)) ": " q { (by.reason) } }
                    None => { @if current.held { " as it arrived (validation flagged it)" } @else { " as it arrived" } }
                }
                "."
            }
            @if !view.review.is_empty() {
                ol.review-log {
                    @for a in &view.review {
                        li { span.time { (local(mission, a.at)) } " " strong { (a.reviewer) } " "
                            (a.action)
                            @if let (Some(from), Some(to)) = (&a.from_state, &a.to_state) { " (" (from) " → " (to) ")" }
                            ": " (a.reason) }
                    }
                }
            }
            form.review data-report=(current.report_id) data-state=(current.review_state) data-revision=(current.revision) {
                label { "Reason (required; kept in the review log)" textarea name="reason" rows="2" maxlength="2000" required {} }
                div.buttons {
                    button type="submit" name="decision" value="accept" { "Accept (count it)" }
                    button type="submit" name="decision" value="hold" { "Hold" }
                    button type="submit" name="decision" value="reject" { "Reject (never count it)" }
                }
                p.review-message role="status" {}
            }
        }
    }
}
