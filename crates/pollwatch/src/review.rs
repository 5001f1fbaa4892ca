//! The reviewers' commands: `review list|show|accept|reject|hold|comment`, `dispute list|settle`
//! and `audit verify|head`. They act on the store directly, through the store's own decisions,
//! the same the API's `POST` endpoints make; the reviewer's name comes from `--reviewer`.

use anyhow::Context as _;
use pollwatch_api::views;
use pollwatch_model::Mission;
use pollwatch_settings::Settings;
use pollwatch_store::{Decided, Decision, Pick, ReportFilter, ReviewError, ReviewState, Settlement, Store};

use crate::cli::{AuditCommand, Command, DecideArgs, DisputeCommand, ReviewCommand};
use crate::query::{held_table, print, report_text};
use crate::table::{Cell, Table, thousands};

/// Runs one of the reviewers' commands; `None` if `command` is not one.
pub fn run(settings: &Settings, command: &Command) -> Option<anyhow::Result<()>> {
    let dir = match command {
        Command::Review { command } => Some(match command {
            ReviewCommand::List { mission, .. }
            | ReviewCommand::Show { mission, .. }
            | ReviewCommand::Comment { mission, .. }
            | ReviewCommand::Pick { mission, .. } => &mission.dir,
            ReviewCommand::Accept(args) | ReviewCommand::Reject(args) | ReviewCommand::Hold(args) => {
                &args.mission.dir
            }
        }),
        Command::Dispute { command } => Some(match command {
            DisputeCommand::List { mission, .. } | DisputeCommand::Settle { mission, .. } => &mission.dir,
        }),
        Command::Audit { .. } => None,
        _ => return None,
    };
    Some((|| {
        let mission = dir.map(|dir| crate::mission_dir::read(dir)).transpose()?;
        crate::runtime()?.block_on(async {
            let store = match &mission {
                Some(mission) => crate::serve::open(settings, mission).await?,
                None => {
                    let url = &settings.store.url;
                    Store::open(url.expose()).await.with_context(|| format!("opening the store at {url}"))?
                }
            };
            let result = match (command, &mission) {
                (Command::Review { command }, Some(mission)) => review(&store, mission, command).await,
                (Command::Dispute { command }, Some(mission)) => dispute(&store, mission, command).await,
                (Command::Audit { command }, _) => audit(&store, command).await,
                _ => unreachable!("a mission is read for review and dispute commands"),
            };
            store.close().await;
            result
        })
    })())
}

fn state(name: &str) -> ReviewState {
    ReviewState::parse(name).expect("clap allows only review states")
}

async fn review(store: &Store, mission: &Mission, command: &ReviewCommand) -> anyhow::Result<()> {
    match command {
        ReviewCommand::List { state: name, limit, output, .. } => {
            if name == "held" {
                let view = views::held(store, mission, None, *limit).await.context("reading held reports")?;
                return print(output, &view, || held_table(&view));
            }
            let filter = ReportFilter { state: Some(state(name)), ..ReportFilter::default() };
            let view =
                views::reports(store, mission, &filter, None, *limit).await.context("reading the reports")?;
            print(output, &view, || {
                let mut table = Table::new(&["report", "kind", "station", "observer", "revision"]);
                for r in &view.reports {
                    table.row(vec![
                        Cell::text(&r.report_id),
                        Cell::text(r.kind.as_str()),
                        Cell::text(&r.station),
                        Cell::text(&r.observer),
                        Cell::Number(r.revision.to_string()),
                    ]);
                }
                let more = if view.next.is_some() { " (more: raise --limit)" } else { "" };
                format!("{} reports {name}{more}\n\n{}", thousands(view.reports.len() as i64), table.render())
            })
        }
        ReviewCommand::Show { id, output, .. } => {
            let id = report_id(id)?;
            let view = views::report(store, mission, &id).await.context("reading the report")?;
            let view = view.with_context(|| format!("mission {} has no report {id}", mission.id))?;
            print(output, &view, || report_text(&view))
        }
        ReviewCommand::Accept(args) => decide(store, mission, args, ReviewState::Accepted).await,
        ReviewCommand::Reject(args) => decide(store, mission, args, ReviewState::Rejected).await,
        ReviewCommand::Hold(args) => decide(store, mission, args, ReviewState::Held).await,
        ReviewCommand::Pick { id, keep, expect, reviewer, reason, .. } => {
            pick(store, mission, id, (keep, expect.as_deref()), (reviewer, reason)).await
        }
        ReviewCommand::Comment { id, reviewer, text, .. } => {
            let id = report_id(id)?;
            let (reviewer, text) = (words("--reviewer", reviewer)?, words("--text", text)?);
            let action = store.comment(&mission.id, &id, &reviewer, &text).await.context("commenting")?;
            action.with_context(|| format!("mission {} has no report {id}", mission.id))?;
            println!("comment added to report {id}");
            Ok(())
        }
    }
}

/// A report id as the store writes it (lower-case hyphenated), or why it is not one.
fn report_id(id: &str) -> anyhow::Result<String> {
    uuid::Uuid::parse_str(id.trim())
        .map(|id| id.to_string())
        .map_err(|_| anyhow::anyhow!("{} is not a report id (a UUID)", pollwatch_model::echo(id)))
}

/// A reviewer's name, reason or comment: not blank, without control characters.
fn words(option: &str, text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    anyhow::ensure!(!text.is_empty(), "{option} must say something");
    anyhow::ensure!(
        !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')),
        "{option} holds a control character"
    );
    anyhow::ensure!(text.chars().count() <= pollwatch_api::review::MAX_REASON_CHARS, "{option} is too long");
    Ok(text.to_owned())
}

async fn decide(store: &Store, mission: &Mission, args: &DecideArgs, to: ReviewState) -> anyhow::Result<()> {
    let id = report_id(&args.id)?;
    let (reviewer, reason) = (words("--reviewer", &args.reviewer)?, words("--reason", &args.reason)?);
    let expected = match &args.expect {
        Some(name) => state(name),
        None => {
            let standing = store.standing(&mission.id, &id).await.context("reading the report")?;
            standing.with_context(|| format!("mission {} has no report {id}", mission.id))?.state
        }
    };
    let decision = Decision {
        report_id: &id,
        to,
        expected,
        expected_revision: args.revision.map(i64::from),
        reviewer: &reviewer,
        reason: &reason,
    };
    match store.decide(&mission.id, &decision).await.context("recording the decision")? {
        Decided::Done(action) => {
            println!(
                "report {id} revision {}: {expected} → {to} (review action {})",
                action.revision.unwrap_or_default(),
                action.id
            );
            Ok(())
        }
        Decided::NotFound => anyhow::bail!("mission {} has no report {id}", mission.id),
        Decided::Stale(standing) => {
            let by = standing.set_by.map_or_else(
                || "the state it arrived with".to_owned(),
                |a| format!("set by {} at {}: {}", a.reviewer, a.at.to_rfc3339(), a.reason),
            );
            anyhow::bail!(
                "nothing changed: report {id} is {} at revision {} ({by}), not {expected}{}; look at it again \
                 (`pollwatch review show {id}`)",
                standing.state,
                standing.revision,
                args.revision.map_or_else(String::new, |r| format!(" at revision {r}"))
            )
        }
    }
}

async fn pick(
    store: &Store,
    mission: &Mission,
    id: &str,
    (keep, expect): (&str, Option<&str>),
    (reviewer, reason): (&str, &str),
) -> anyhow::Result<()> {
    let id = report_id(id)?;
    let (reviewer, reason) = (words("--reviewer", reviewer)?, words("--reason", reason)?);
    for (option, hash) in [("--keep", Some(keep)), ("--expect", expect)] {
        if let Some(hash) = hash {
            anyhow::ensure!(
                pollwatch_store::is_content_hash(hash),
                "{option} is a content hash: 64 lower-case hexadecimal digits"
            );
        }
    }
    let standing = store.standing(&mission.id, &id).await.context("reading the report")?;
    let standing = standing.with_context(|| format!("mission {} has no report {id}", mission.id))?;
    let expected = expect.map_or_else(|| standing.in_force.clone(), str::to_owned);
    let pick = Pick {
        report_id: &id,
        revision: standing.revision,
        keep,
        expected: &expected,
        reviewer: &reviewer,
        reason: &reason,
    };
    match store.pick(mission, &pick).await {
        Ok(Decided::Done(action)) => {
            let what = match action.to_state {
                Some(state) => format!("version {keep} counts now, {state}"),
                None => format!("version {keep} stays in force"),
            };
            println!("report {id} revision {}: {what} (review action {})", standing.revision, action.id);
            Ok(())
        }
        Ok(Decided::NotFound) => anyhow::bail!("mission {} has no report {id}", mission.id),
        Ok(Decided::Stale(now)) => anyhow::bail!(
            "nothing changed: report {id} has version {} in force at revision {}, not {expected}; look at it \
             again (`pollwatch review show {id}`)",
            now.in_force,
            now.revision
        ),
        Err(ReviewError::Invalid(why)) => anyhow::bail!("nothing changed: {why}"),
        Err(ReviewError::Store(error)) => Err(error).context("recording the pick"),
    }
}

async fn dispute(store: &Store, mission: &Mission, command: &DisputeCommand) -> anyhow::Result<()> {
    match command {
        DisputeCommand::List { contest, output, .. } => {
            let contest = match contest {
                Some(id) => Some(mission.contest(id).with_context(|| {
                    let ids: Vec<&str> = mission.contests.iter().map(|c| c.id.as_str()).collect();
                    format!("mission {} has no contest {id}; it has {}", mission.id, ids.join(", "))
                })?),
                None => None,
            };
            let view = views::discrepancies(store, mission, contest).await.context("reading disputes")?;
            print(output, &view, || {
                let mut table =
                    Table::new(&["contest", "station", "region", "report", "observer", "in box", "invalid"]);
                for d in &view.discrepancies {
                    for (i, copy) in d.reports.iter().enumerate() {
                        table.row(vec![
                            Cell::text(if i == 0 { d.contest.as_str() } else { "" }),
                            Cell::text(if i == 0 { d.station.as_str() } else { "" }),
                            Cell::text(if i == 0 { d.region.as_str() } else { "" }),
                            Cell::text(&copy.report_id),
                            Cell::text(&copy.observer),
                            Cell::Number(copy.ballots_in_box.to_string()),
                            Cell::Number(copy.invalid.to_string()),
                        ]);
                    }
                }
                format!(
                    "{} disputed stations (the first copy of each counts until settled: `pollwatch dispute settle`)\n\n{}",
                    thousands(view.discrepancies.len() as i64),
                    table.render()
                )
            })
        }
        DisputeCommand::Settle { station, contest, report, reviewer, reason, .. } => {
            anyhow::ensure!(
                mission.station(station).is_some(),
                "mission {} has no station {}",
                mission.id,
                pollwatch_model::echo(station)
            );
            let report = report.as_deref().map(report_id).transpose()?;
            let (reviewer, reason) = (words("--reviewer", reviewer)?, words("--reason", reason)?);
            let settlement = Settlement {
                station,
                contest,
                report_id: report.as_deref(),
                reviewer: &reviewer,
                reason: &reason,
            };
            match store.settle(&mission.id, &settlement).await {
                Ok(action) => {
                    match &report {
                        Some(id) => println!(
                            "station {station}, {contest}: report {id}'s protocol counts (review action {})",
                            action.id
                        ),
                        None => println!(
                            "station {station}, {contest}: no protocol counts until a recount (review action {})",
                            action.id
                        ),
                    }
                    Ok(())
                }
                Err(ReviewError::Invalid(why)) => anyhow::bail!("nothing changed: {why}"),
                Err(ReviewError::Store(error)) => Err(error).context("recording the settlement"),
            }
        }
    }
}

async fn audit(store: &Store, command: &AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Head { output } => {
            let head = store.audit_head().await.context("reading the audit chain")?;
            let view = pollwatch_api::review::AuditHeadView { entries: head.entries, hash: head.hash };
            print(output, &view, || format!("{} entries\nhead {}\n", thousands(view.entries), view.hash))
        }
        AuditCommand::Verify => {
            let bar = Bar(indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries {per_sec} {eta}")
                    .expect("a valid template"),
            ));
            let verification = store.verify_audit(&bar).await.context("reading the audit chain")?;
            bar.0.finish_and_clear();
            match verification.failure {
                None => {
                    println!(
                        "the audit chain holds: {} entries, each hash follows, every entry matches the store\nhead {}",
                        thousands(verification.entries),
                        verification.head.hash
                    );
                    Ok(())
                }
                Some(mismatch) => match mismatch.position {
                    Some(position) => anyhow::bail!(
                        "the audit chain does not hold at entry {position}: {}",
                        mismatch.reason
                    ),
                    None => anyhow::bail!("the audit chain does not hold: {}", mismatch.reason),
                },
            }
        }
    }
}

/// A progress bar that a verification moves.
struct Bar(indicatif::ProgressBar);

impl pollwatch_store::Progress for Bar {
    fn total(&self, entries: i64) {
        self.0.set_length(u64::try_from(entries).unwrap_or(0));
    }

    fn checked(&self, entries: i64) {
        self.0.set_position(u64::try_from(entries).unwrap_or(0));
    }
}
