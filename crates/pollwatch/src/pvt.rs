//! `pollwatch pvt …`: the quick count's sample, drawn into the mission folder, and its size.

use std::path::Path;

use anyhow::Context as _;
use pollwatch_model::Mission;
use pollwatch_pvt::{OFFICIAL_FILE, Official, SAMPLE_FILE, Sample, StrataBy};

use crate::cli::PvtCommand;
use crate::mission_dir;
use crate::table::{Cell, Table, thousands};
use pollwatch_api::pvt::{Asked, PvtRatioView, PvtView};
use pollwatch_settings::Settings;

pub fn run(settings: &Settings, command: &PvtCommand) -> anyhow::Result<()> {
    match command {
        PvtCommand::Estimate { mission, contest, share_of, as_of, threshold, output } => {
            let roster = mission_dir::read(&mission.dir)?;
            let sample = read_sample(&mission.dir, &roster)?;
            let contest = match contest {
                Some(id) => roster.contest(id).with_context(|| {
                    let ids: Vec<&str> = roster.contests.iter().map(|c| c.id.as_str()).collect();
                    format!("mission {} has no contest `{id}`; it has {}", roster.id, ids.join(", "))
                })?,
                None => roster.contests.first().context("the mission has no contest")?,
            };
            let threshold = threshold.unwrap_or(settings.pvt.publish_threshold);
            anyhow::ensure!(
                (0.0..=1.0).contains(&threshold),
                "the threshold is a share from 0 to 1, not {threshold}"
            );
            let official = read_official(&mission.dir, &roster)?;
            let asked = Asked {
                share_of: *share_of,
                threshold,
                as_of: as_of.map(|t| t.with_timezone(&chrono::Utc)),
                official: official.as_ref().and_then(|o| o.contests.get(&contest.id)),
            };
            let view = crate::runtime()?.block_on(async {
                let store = crate::serve::open(settings, &roster).await?;
                let view = pollwatch_api::pvt::estimate(&store, &roster, &sample, contest, &asked)
                    .await
                    .context("reading the counted protocols");
                store.close().await;
                view
            })?;
            crate::query::print(output, &view, || estimate_table(&view))
        }
        PvtCommand::Official { mission, file } => official(mission, file),
        PvtCommand::Sample { mission, size, strata, seed, replace } => {
            sample(mission, *size, *strata, *seed, *replace)
        }
        PvtCommand::Size { mission, margin, confidence, turnout } => {
            let roster = mission_dir::read(mission)?;
            print!("{}", size(&roster, *margin, *confidence, *turnout)?);
            Ok(())
        }
    }
}

fn sample(dir: &Path, size: u32, strata: StrataBy, seed: Option<u64>, replace: bool) -> anyhow::Result<()> {
    let mission = mission_dir::read(dir)?;
    let path = dir.join(SAMPLE_FILE);
    if path.exists() && !replace {
        anyhow::bail!(
            "{} already holds a sample: observers may be deployed to it. Give --replace to draw another",
            path.display()
        );
    }
    let seed = seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // Six digits are easy to read out and to write down.
        u64::from(now.subsec_nanos()) % 1_000_000
    });
    let sample = pollwatch_pvt::draw(&mission, strata, size, seed)
        .with_context(|| format!("drawing a sample of {size} from {}", dir.display()))?;
    // Written beside and renamed over, so that a reader never sees half a sample.
    let partial = dir.join(format!(".{SAMPLE_FILE}.partial"));
    std::fs::write(&partial, sample.to_csv(&mission))
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    print!("{}", summary(&mission, &sample));
    println!("wrote {} (seed {seed}: `--seed {seed}` draws it again)", path.display());
    Ok(())
}

/// The mission folder's sample, read against its roster.
pub(crate) fn read_sample(dir: &Path, mission: &Mission) -> anyhow::Result<Sample> {
    let path = dir.join(SAMPLE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("reading {}: draw the sample first, with `pollwatch pvt sample`", path.display())
    })?;
    Sample::parse(&text, mission).with_context(|| format!("{} does not fit the roster", path.display()))
}

/// The mission folder's official result, if it has one.
fn read_official(dir: &Path, mission: &Mission) -> anyhow::Result<Option<Official>> {
    let path = dir.join(OFFICIAL_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Official::parse(&text, false, mission)
            .map(Some)
            .with_context(|| format!("{} does not fit the mission", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `pollwatch pvt official FILE`: the announced figures checked against the mission and kept in
/// its folder, where the estimate sets them against itself.
fn official(dir: &Path, file: &Path) -> anyhow::Result<()> {
    let mission = mission_dir::read(dir)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let json = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let official = Official::parse(&text, json, &mission)
        .with_context(|| format!("{} is not an official result of mission {}", file.display(), mission.id))?;
    let path = dir.join(OFFICIAL_FILE);
    let replaced = path.exists();
    let partial = dir.join(format!(".{OFFICIAL_FILE}.partial"));
    let kept = format!(
        "# The official result, stored by `pollwatch pvt official {}`.\n{}",
        // A file name is one line of the comment, whatever it holds.
        file.display().to_string().escape_debug(),
        official.to_toml()
    );
    std::fs::write(&partial, kept).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    for (id, figures) in &official.contests {
        println!(
            "{id}: {} registered voters, {} took part ({:.2} %), {} valid votes",
            thousands(figures.registered_voters as i64),
            thousands(figures.ballots as i64),
            figures.turnout() * 100.0,
            thousands(figures.votes.values().sum::<u64>() as i64)
        );
    }
    println!(
        "{} {}: `pollwatch pvt estimate` now sets it against the estimate",
        if replaced { "replaced" } else { "wrote" },
        path.display()
    );
    Ok(())
}

/// The estimate as tables: the choices, turnout, the strata, and whether it may be published.
fn estimate_table(view: &PvtView) -> String {
    let share = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |m| format!("±{:.2}", m * 100.0));
    let mut header = vec!["choice", "estimate %", "95 % margin", "99 % margin"];
    if view.official {
        header.extend(["official %", "difference", "official result"]);
    }
    let mut choices = Table::new(&header);
    let row = |name: &str, ratio: &PvtRatioView| {
        let mut cells = vec![
            Cell::text(name),
            Cell::Number(format!("{:.2}", ratio.estimate * 100.0)),
            Cell::Number(share(ratio.margin_95)),
            Cell::Number(share(ratio.margin_99)),
        ];
        if view.official {
            match &ratio.official {
                Some(official) => cells.extend([
                    Cell::Number(format!("{:.2}", official.share * 100.0)),
                    Cell::Number(format!("{:+.2}", official.difference * 100.0)),
                    Cell::text(official.verdict.unwrap_or("no margin yet")),
                ]),
                None => cells.extend([Cell::text("-"), Cell::text("-"), Cell::text("-")]),
            }
        }
        cells
    };
    for choice in &view.choices {
        choices.row(row(&choice.name, &choice.ratio));
    }
    if let Some(turnout) = &view.turnout {
        choices.row(row("turnout", turnout));
    }
    let mut strata = Table::new(&["stratum", "stations", "sampled", "reported"]);
    for stratum in &view.strata {
        strata.row(vec![
            Cell::text(&stratum.stratum),
            Cell::int(stratum.stations as i64),
            Cell::int(stratum.sampled as i64),
            Cell::int(stratum.reported as i64),
        ]);
    }
    let when = view.as_of.as_deref().map_or_else(String::new, |t| format!(" as of {t}"));
    let verdict = if view.publishable {
        format!("every stratum is at least {:.0} % in: the estimate may be published", view.threshold * 100.0)
    } else {
        format!("NOT YET PUBLISHABLE: a stratum is less than {:.0} % in", view.threshold * 100.0)
    };
    let disputed = if view.disputed.is_empty() {
        String::new()
    } else {
        format!("left out until a reviewer settles them (disputed): {}\n", view.disputed.join(", "))
    };
    format!(
        "quick count, {}{when}: {} of {} sampled stations in (shares of the {}, strata by {}, seed {})\n{}\n{}{disputed}{verdict}\n",
        view.contest,
        view.reported,
        view.sampled,
        if view.share_of == "ballots" { "ballots in the box" } else { "valid votes" },
        view.strata_by,
        view.seed,
        choices.render(),
        strata.render(),
    )
}

/// The sample per stratum: the roster's stations and voters, and how many were drawn.
fn summary(mission: &Mission, sample: &Sample) -> String {
    let mut table = Table::new(&["stratum", "stations", "registered voters", "sampled"]);
    for (name, stratum) in pollwatch_pvt::strata(mission, sample.strata_by) {
        let drawn = sample.stations.iter().filter(|s| s.stratum == name).count();
        table.row(vec![
            Cell::text(name),
            Cell::int(stratum.stations.len() as i64),
            Cell::int(stratum.registered_voters as i64),
            Cell::int(drawn as i64),
        ]);
    }
    format!(
        "{} stations drawn from {} in strata by {}:\n{}",
        sample.stations.len(),
        thousands(mission.stations.len() as i64),
        sample.strata_by,
        table.render()
    )
}

/// The suggested size, with the figures it rests on.
fn size(mission: &Mission, margin: f64, confidence: f64, turnout: f64) -> anyhow::Result<String> {
    let z = pollwatch_pvt::z_for(confidence).with_context(|| {
        format!("a confidence of {confidence} is none of {}", pollwatch_pvt::CONFIDENCE_LEVELS.join(", "))
    })?;
    let registered: u64 = mission.stations.iter().map(|s| u64::from(s.registered_voters)).sum();
    let stations =
        u32::try_from(mission.stations.len()).context("a roster of more than 4 billion stations")?;
    let advice = pollwatch_pvt::advise(registered, stations, margin, z, turnout, 0.5)?;
    Ok(format!(
        "for ±{:.2} points at {:.0} % confidence (z = {z:.3}), a share of 50 % and {:.0} % turnout:\n  \
         {} votes: n = p(1−p) / (E²/z² + p(1−p)/N) with N = {} registered voters\n  \
         {} stations: n / (turnout × {} registered voters a station, the roster's mean), of {}\n\
         The formula takes voters as drawn one by one and p = 50 %; a sample of stations takes\n\
         them a station at a time, which makes its real margin wider or narrower (docs/pvt.md):\n\
         publish the margin the quick count's own estimate gives.\n",
        margin * 100.0,
        confidence * 100.0,
        turnout * 100.0,
        thousands(advice.votes.ceil() as i64),
        thousands(registered as i64),
        thousands(i64::from(advice.stations)),
        thousands(advice.mean_station.round() as i64),
        thousands(i64::from(stations)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_says_what_it_rests_on() {
        let mission = pollwatch_model::sample::kg_2021();
        let text = size(&mission, 0.01, 0.95, 0.4).expect("advice");
        assert!(
            text.starts_with(
                "for ±1.00 points at 95 % confidence (z = 1.960), a share of 50 % and 40 % turnout"
            ),
            "{text}"
        );
        assert!(text.contains("× 1,439 registered voters a station, the roster's mean), of 2,476"), "{text}");
        let error = size(&mission, 0.01, 0.8, 0.4).expect_err("no such level").to_string();
        assert!(error.contains("0.90, 0.95, 0.99"), "{error}");
    }
}
