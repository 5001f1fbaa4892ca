//! The operators' questions on the command line: `coverage`, `results`, `findings`,
//! `incidents`, `observers`, `report show`, `held`, `export` and `token`. Each reads the store
//! directly through the views the API returns (`pollwatch_api::views`), and prints them as a
//! table or, with `--json`, as the API's JSON.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use pollwatch_api::export::{Chunk, Export};
use pollwatch_api::views;
use pollwatch_model::{IncidentCategory, Mission, Severity};
use pollwatch_settings::Settings;
use pollwatch_store::{IncidentFilter, Store};
use serde::Serialize;

use crate::cli::{Command, ExportFormat, ExportWhat, OutputArgs, ReportCommand, TokenCommand};
use crate::table::{Cell, Table, thousands};

/// Runs one of the query commands; `None` if `command` is not one.
pub fn run(settings: &Settings, command: &Command) -> Option<anyhow::Result<()>> {
    let dir = match command {
        Command::Coverage { mission, .. }
        | Command::Results { mission, .. }
        | Command::Findings { mission, .. }
        | Command::Incidents { mission, .. }
        | Command::Observers { mission, .. }
        | Command::Held { mission, .. }
        | Command::Export { mission, .. }
        | Command::Report { command: ReportCommand::Show { mission, .. } } => Some(&mission.dir),
        Command::Token { .. } => None,
        _ => return None,
    };
    Some((|| {
        let mission = dir.map(|dir| crate::mission_dir::read(dir)).transpose()?;
        crate::runtime()?.block_on(async {
            match &mission {
                Some(mission) => {
                    let store = crate::serve::open(settings, mission).await?;
                    let result = answer(&store, mission, command).await;
                    store.close().await;
                    result
                }
                None => token(settings, command).await,
            }
        })
    })())
}

async fn answer(store: &Store, mission: &Mission, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Coverage { phase, region, missing, output, .. } => {
            let region = region_of(mission, region.as_deref())?;
            let view = views::coverage(store, mission, *phase, region).await.context("reading coverage")?;
            print(output, &view, || coverage_table(&view, *missing))
        }
        Command::Results { contest, region, by_region, output, .. } => {
            let Some(contest) = mission.contest(contest) else {
                let contests: Vec<&str> = mission.contests.iter().map(|c| c.id.as_str()).collect();
                anyhow::bail!(
                    "mission {} has no contest `{contest}`; it has {}",
                    mission.id,
                    contests.join(", ")
                );
            };
            let region = region_of(mission, region.as_deref())?;
            let view = views::results(store, mission, contest, region).await.context("reading results")?;
            print(output, &view, || results_table(mission, &view, *by_region))
        }
        Command::Findings { phase, region, output, .. } => {
            let region = region_of(mission, region.as_deref())?;
            let view = views::findings(store, mission, *phase, region).await.context("reading findings")?;
            print(output, &view, || findings_table(&view))
        }
        Command::Incidents { severity, category, region, since, limit, summary, output, .. } => {
            let region = region_of(mission, region.as_deref())?;
            if *summary {
                let view =
                    views::incident_summary(store, mission, region).await.context("reading incidents")?;
                return print(output, &view, || incident_summary_table(&view));
            }
            let filter = IncidentFilter {
                severity: one_of("severity", severity.as_deref(), Severity::ALL.iter().map(|s| s.as_str()))?,
                category: one_of(
                    "category",
                    category.as_deref(),
                    IncidentCategory::ALL.iter().map(|c| c.as_str()),
                )?,
                region: region.map(str::to_owned),
                since: since
                    .as_deref()
                    .map(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .map(|t| t.to_utc())
                            .with_context(|| format!("--since `{t}` is not an RFC 3339 time"))
                    })
                    .transpose()?,
            };
            let limit = (*limit).clamp(1, pollwatch_api::params::MAX_LIMIT);
            let view =
                views::incidents(store, mission, &filter, None, limit).await.context("reading incidents")?;
            print(output, &view, || incidents_table(&view))
        }
        Command::Observers { silent_for, output, .. } => {
            let duration = pollwatch_api::params::parse_duration(silent_for).with_context(|| {
                format!(
                    "--silent-for `{silent_for}` is not a duration such as 90s, 60m or 2h (at most 31 days)"
                )
            })?;
            let view = views::observers(store, mission, duration, chrono::Utc::now())
                .await
                .context("reading observer activity")?;
            print(output, &view, || observers_table(&view))
        }
        Command::Held { limit, output, .. } => {
            let limit = (*limit).clamp(1, pollwatch_api::params::MAX_LIMIT);
            let view = views::held(store, mission, None, limit).await.context("reading held reports")?;
            print(output, &view, || held_table(&view))
        }
        Command::Report { command: ReportCommand::Show { id, output, .. } } => {
            let uuid =
                uuid::Uuid::try_parse(id).with_context(|| format!("`{id}` is not a report id (a UUID)"))?;
            let id = uuid.hyphenated().to_string();
            let view = views::report(store, mission, &id)
                .await
                .context("reading the report")?
                .with_context(|| format!("mission {} has no report {id}", mission.id))?;
            print(output, &view, || report_text(&view))
        }
        Command::Export { what, format, output, .. } => {
            export(store, mission, *what, *format, output.as_deref()).await
        }
        _ => unreachable!("run() passes query commands only"),
    }
}

fn region_of<'a>(mission: &Mission, region: Option<&'a str>) -> anyhow::Result<Option<&'a str>> {
    match region {
        Some(code) if mission.region(code).is_none() => {
            let codes: Vec<&str> = mission.regions.iter().map(|r| r.code.as_str()).collect();
            anyhow::bail!("mission {} has no region `{code}`; it has {}", mission.id, codes.join(", "))
        }
        region => Ok(region),
    }
}

fn one_of<'a>(
    option: &str,
    value: Option<&str>,
    allowed: impl Iterator<Item = &'a str>,
) -> anyhow::Result<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let allowed: Vec<&str> = allowed.collect();
    anyhow::ensure!(allowed.contains(&value), "--{option} `{value}` is not one of {}", allowed.join(", "));
    Ok(Some(value.to_owned()))
}

/// Prints `view` as JSON or as the table `table` renders.
pub(crate) fn print<T: Serialize>(
    output: &OutputArgs,
    view: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let text = if output.json {
        let mut json = serde_json::to_string_pretty(view).context("writing JSON")?;
        json.push('\n');
        json
    } else {
        table()
    };
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("writing to standard output")
}

fn coverage_table(view: &views::CoverageView, missing: bool) -> String {
    let mut table = Table::new(&["region", "expected", "reported", "missing", "reported %"]);
    for r in &view.regions {
        table.row(vec![
            Cell::text(&r.region),
            Cell::int(r.expected as i64),
            Cell::int(r.reported as i64),
            Cell::int(r.missing.len() as i64),
            Cell::share(views::share(r.reported as i64, r.expected as i64)),
        ]);
    }
    let n = &view.national;
    table.row(vec![
        Cell::text("all"),
        Cell::int(n.expected as i64),
        Cell::int(n.reported as i64),
        Cell::int(n.missing as i64),
        Cell::share(views::share(n.reported as i64, n.expected as i64)),
    ]);
    let mut out = format!("coverage of {}\n\n{}", view.phase, table.render());
    if missing {
        for r in view.regions.iter().filter(|r| !r.missing.is_empty()) {
            out.push_str(&format!("\nnot reported in {} ({}):\n", r.region, r.missing.len()));
            for chunk in r.missing.chunks(10) {
                out.push_str(&format!("  {}\n", chunk.join(" ")));
            }
        }
    }
    out
}

fn results_table(mission: &Mission, view: &views::ResultsView, by_region: bool) -> String {
    let figures = |f: &views::ResultFigures, title: &str| {
        let names = mission.contest(&f.contest).map(|c| &c.choices);
        let mut table = Table::new(&["choice", "votes", "share"]);
        for (code, votes) in &f.votes.0 {
            let name =
                names.and_then(|c| c.iter().find(|ch| &ch.code == code)).map_or(code.as_str(), |c| &c.name);
            table.row(vec![
                Cell::text(name),
                Cell::int(*votes),
                Cell::share(f.shares.get(code).copied().unwrap_or(0.0)),
            ]);
        }
        format!(
            "{title}: {} of {} stations counted, {} registered voters, {} ballots in the box, {} invalid, {} valid, turnout {}\n\n{}",
            thousands(f.stations_counted),
            thousands(f.stations_expected),
            thousands(f.registered_voters),
            thousands(f.ballots_in_box),
            thousands(f.invalid),
            thousands(f.valid),
            crate::table::percent(f.turnout),
            table.render()
        )
    };
    let scope = view.region.as_deref().map_or_else(|| "national".to_owned(), |r| format!("region {r}"));
    let mut out = figures(&view.totals, &format!("{} ({scope})", view.totals.contest));
    if by_region {
        for region in &view.by_region {
            out.push('\n');
            out.push_str(&figures(
                &region.figures,
                &format!("{} ({})", region.figures.contest, region.region),
            ));
        }
    }
    if !view.disputed.is_empty() {
        out.push_str(&format!(
            "\n{} disputed stations (teams' protocols disagree; GET /api/v1/discrepancies gives every team's figures): {}\n",
            view.disputed.len(),
            view.disputed.join(" ")
        ));
    }
    out
}

fn findings_table(view: &views::FindingsView) -> String {
    let mut table = Table::new(&["region", "reports", "very good", "good", "bad", "very bad"]);
    let row = |table: &mut Table, name: &str, a: &views::AssessmentView| {
        let mut cells = vec![Cell::text(name), Cell::int(a.reports)];
        cells.extend(a.shares.0.iter().map(|(_, s)| Cell::share(*s)));
        table.row(cells);
    };
    for region in &view.by_region {
        row(&mut table, &region.region, &region.assessments);
    }
    row(&mut table, "all", &view.assessments);
    let mut questions = Table::new(&["question", "answered", "answers"]);
    for q in &view.questions {
        let answers = match (&q.yes, &q.no, &q.choices, &q.numbers) {
            (Some(yes), Some(no), _, _) => format!("yes {}, no {}", thousands(*yes), thousands(*no)),
            (_, _, Some(choices), _) => {
                choices.0.iter().map(|(c, n)| format!("{c} {}", thousands(*n))).collect::<Vec<_>>().join(", ")
            }
            (_, _, _, Some(n)) => match (n.min, n.median, n.max) {
                (Some(min), Some(median), Some(max)) => {
                    format!("min {}, median {median}, max {}", thousands(min), thousands(max))
                }
                _ => "-".to_owned(),
            },
            _ => "(free text)".to_owned(),
        };
        questions.row(vec![Cell::text(&q.code), Cell::int(q.answered), Cell::text(answers)]);
    }
    format!(
        "assessments of {} (held reports left out)\n\n{}\n{}",
        view.phase,
        table.render(),
        questions.render()
    )
}

fn incidents_table(view: &views::IncidentsView) -> String {
    let mut table = Table::new(&["observed", "severity", "category", "station", "region", "description"]);
    for i in &view.incidents {
        let description: String = i.description.chars().take(60).collect();
        table.row(vec![
            Cell::text(i.observed_at.format("%Y-%m-%d %H:%M").to_string()),
            Cell::text(&i.severity),
            Cell::text(&i.category),
            Cell::text(&i.station),
            Cell::text(&i.region),
            Cell::text(pollwatch_model::bounded(description.replace('\n', " "), 240)),
        ]);
    }
    table.render()
}

fn incident_summary_table(view: &views::IncidentSummaryView) -> String {
    let mut table = Table::new(&["category", "low", "medium", "high", "critical"]);
    for (category, severities) in &view.by_category.0 {
        let mut cells = vec![Cell::text(category)];
        cells.extend(severities.0.iter().map(|(_, n)| Cell::int(*n)));
        table.row(cells);
    }
    let mut regions = Table::new(&["region", "incidents"]);
    for r in &view.by_region {
        regions.row(vec![Cell::text(&r.region), Cell::int(r.total)]);
    }
    format!(
        "{} incidents (held reports left out)\n\n{}\n{}",
        thousands(view.total),
        table.render(),
        regions.render()
    )
}

fn observers_table(view: &views::ObserversView) -> String {
    let mut table = Table::new(&["observer", "name", "team", "last report"]);
    for o in &view.observers {
        let last = o
            .last_report_at
            .map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        table.row(vec![Cell::text(&o.id), Cell::text(&o.name), Cell::text(&o.team), Cell::text(last)]);
    }
    format!(
        "{} observers with no report since {}\n\n{}",
        thousands(view.observers.len() as i64),
        view.since.format("%Y-%m-%d %H:%M:%S UTC"),
        table.render()
    )
}

pub(crate) fn held_table(view: &views::HeldView) -> String {
    let mut table = Table::new(&["report", "kind", "station", "observer", "flags"]);
    for h in &view.reports {
        let flags: Vec<&str> = h.flags.iter().map(|f| f.code.as_str()).collect();
        table.row(vec![
            Cell::text(&h.report.report_id),
            Cell::text(h.report.kind.as_str()),
            Cell::text(&h.report.station),
            Cell::text(&h.report.observer),
            Cell::text(flags.join(", ")),
        ]);
    }
    let more = if view.next.is_some() { " (more: raise --limit)" } else { "" };
    format!("{} reports held for review{more}\n\n{}", thousands(view.reports.len() as i64), table.render())
}

pub(crate) fn report_text(view: &views::ReportView) -> String {
    let c = &view.current;
    let mut out = format!(
        "report {} ({}), revision {} current{}\n  observer {} at station {}, observed {}, received {}\n\n",
        c.report_id,
        c.kind,
        c.revision,
        match c.review_state.as_str() {
            "held" => ", held for review",
            "rejected" => ", rejected",
            _ => "",
        },
        c.observer,
        c.station,
        c.observed_at.to_rfc3339(),
        c.received_at.to_rfc3339()
    );
    let mut table =
        Table::new(&["seq", "revision", "received", "sender", "channel", "redelivered", "hash", "flags"]);
    for r in &view.revisions {
        let flags: Vec<&str> = r.flags.iter().map(|f| f.code.as_str()).collect();
        table.row(vec![
            Cell::Number(r.seq.to_string()),
            Cell::Number(r.revision.to_string()),
            Cell::text(r.received_at.to_rfc3339()),
            Cell::text(r.sender.as_deref().unwrap_or("-")),
            Cell::text(&r.channel),
            Cell::text(if r.redelivered { "yes" } else { "no" }),
            Cell::text(&r.content_hash[..r.content_hash.len().min(12)]),
            Cell::text(flags.join(", ")),
        ]);
    }
    out.push_str(&table.render());
    for r in view.revisions.iter().flat_map(|r| r.flags.iter().map(move |f| (r.revision, f))) {
        out.push_str(&format!("  revision {}: {} at {}: {}\n", r.0, r.1.code, r.1.path, r.1.message));
    }
    if !view.conflicts.is_empty() {
        out.push_str(&format!(
            "\n{} conflicting versions kept aside (same revision, other content; `pollwatch review pick` decides \
             which counts):\n",
            view.conflicts.len()
        ));
        let in_force = view.revisions.iter().find(|r| r.in_force);
        if let Some(r) = in_force {
            out.push_str(&format!("  in force: revision {} version {}\n", r.revision, r.content_hash));
        }
        for c in &view.conflicts {
            out.push_str(&format!(
                "  revision {} version {} received {} from {}{}\n",
                c.revision,
                c.content_hash,
                c.received_at.to_rfc3339(),
                c.sender.as_deref().unwrap_or("-"),
                if c.in_force { " (picked, in force)" } else { "" }
            ));
        }
    }
    if !view.review.is_empty() {
        out.push_str("\nreview:\n");
        for action in &view.review {
            let change = match (&action.from_state, &action.to_state) {
                (Some(from), Some(to)) => format!(" ({from} → {to})"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {} {} {}{change} on revision {}: {}\n",
                action.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                action.reviewer,
                action.action,
                action.revision.map_or_else(|| "-".to_owned(), |r| r.to_string()),
                action.reason
            ));
        }
    }
    out
}

async fn export(
    store: &Store,
    mission: &Mission,
    what: ExportWhat,
    format: ExportFormat,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let export = match (what, format) {
        (ExportWhat::Reports, ExportFormat::Jsonl) => Export::ReportsJsonl,
        (ExportWhat::Reports, ExportFormat::Csv) => Export::ReportsCsv,
        (ExportWhat::Results, ExportFormat::Csv) => Export::ResultsCsv,
        (ExportWhat::Audit, ExportFormat::Jsonl) => Export::AuditJsonl,
        (ExportWhat::Audit, ExportFormat::Csv) => {
            anyhow::bail!("the audit chain exports as JSON lines only (`--format jsonl`)")
        }
        (ExportWhat::Results, ExportFormat::Jsonl) => {
            anyhow::bail!(
                "results export as CSV only (`--format csv`); the API's /api/v1/results/{{contest}} gives JSON"
            )
        }
    };
    // A progress bar when writing a file: the total is the revisions (or stations × contests).
    let total = match what {
        ExportWhat::Reports => store.totals().await.context("counting the revisions")?.revisions as u64,
        ExportWhat::Results => (mission.stations.len() * mission.contests.len()) as u64,
        ExportWhat::Audit => {
            store.audit_head().await.context("reading the audit chain's head")?.entries as u64
        }
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(4);
    let (store_, mission_) = (store.clone(), mission.clone());
    let producer =
        tokio::spawn(async move { pollwatch_api::export::run(&store_, &mission_, export, sender).await });
    match output {
        Some(path) => {
            let bar = indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {eta}")
                    .expect("a valid template"),
            );
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut file = std::io::BufWriter::new(file);
            while let Some(chunk) = receiver.recv().await {
                file.write_all(&chunk.bytes).with_context(|| format!("writing {}", path.display()))?;
                bar.inc(chunk.rows);
            }
            file.flush().with_context(|| format!("writing {}", path.display()))?;
            bar.finish_and_clear();
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = receiver.recv().await {
                stdout.write_all(&chunk.bytes).context("writing to standard output")?;
            }
            stdout.flush().context("writing to standard output")?;
        }
    }
    let rows = producer.await.context("the export task")?.context("reading the store")?;
    if let Some(path) = output {
        eprintln!("wrote {} rows to {}", thousands(rows as i64), path.display());
    }
    Ok(())
}

async fn token(settings: &Settings, command: &Command) -> anyhow::Result<()> {
    let Command::Token { command } = command else { unreachable!("run() passes token commands here") };
    let url = &settings.store.url;
    let store = Store::open(url.expose()).await.with_context(|| format!("opening the store at {url}"))?;
    let result = async {
        match command {
            TokenCommand::Add { name, role } => {
                let token = pollwatch_api::auth::new_token();
                let added = store
                    .add_token(name, role, &pollwatch_api::auth::token_hash(&token))
                    .await
                    .context("storing the token's hash")?;
                anyhow::ensure!(
                    added,
                    "a token named `{name}` exists; remove it first (`pollwatch token remove {name}`)"
                );
                eprintln!("token `{name}` ({role}) added; it is shown this once and cannot be read back:");
                println!("{token}");
            }
            TokenCommand::List => {
                let mut table = Table::new(&["name", "role", "created"]);
                for t in store.tokens().await.context("reading tokens")? {
                    table.row(vec![
                        Cell::text(t.name),
                        Cell::text(t.role),
                        Cell::text(t.created_at.to_rfc3339()),
                    ]);
                }
                print!("{}", table.render());
            }
            TokenCommand::Remove { name } => {
                let removed = store.remove_token(name).await.context("removing the token")?;
                anyhow::ensure!(removed, "there is no token named `{name}`");
                println!("token `{name}` removed");
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}
