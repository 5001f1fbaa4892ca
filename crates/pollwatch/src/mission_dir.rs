//! Reading a mission folder from disk into the model's [`Mission`].

use std::path::Path;

use anyhow::Context as _;
use pollwatch_model::{FORMS_FILE, MISSION_FILE, Mission, MissionSources, OBSERVERS_FILE, STATIONS_FILE};

/// Reads and parses `dir/mission.toml`, `forms.toml`, `stations.csv` and `observers.csv`.
pub fn read(dir: &Path) -> anyhow::Result<Mission> {
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (mission, forms, stations, observers) =
        (file(MISSION_FILE)?, file(FORMS_FILE)?, file(STATIONS_FILE)?, file(OBSERVERS_FILE)?);
    Mission::parse(MissionSources {
        mission_toml: &mission,
        forms_toml: &forms,
        stations_csv: &stations,
        observers_csv: &observers,
    })
    .with_context(|| format!("mission folder {} is not valid", dir.display()))
}

/// A few lines that let an operator confirm the right mission was read.
pub fn summary(mission: &Mission) -> String {
    let teams: std::collections::BTreeSet<&str> = mission.observers.iter().map(|o| o.team.as_str()).collect();
    let contests: Vec<String> =
        mission.contests.iter().map(|c| format!("{} ({} {})", c.id, c.choices.len(), c.kind)).collect();
    let forms: Vec<String> =
        mission.forms.values().map(|f| format!("{} {}", f.kind, f.questions.len())).collect();
    let abroad = mission.stations.iter().filter(|s| s.abroad).count();
    format!(
        "mission {}: {}\n\
         election day {} ({}), polls {}-{}\n\
         {} regions, {} polling stations ({abroad} abroad), {} registered voters\n\
         contests: {}\n\
         {} observers in {} teams\n\
         form questions: {}\n",
        mission.id,
        mission.name,
        mission.election_day,
        mission.time_zone,
        mission.polls_open.format("%H:%M"),
        mission.polls_close.format("%H:%M"),
        mission.regions.len(),
        mission.stations.len(),
        mission.registered_voters(),
        contests.join(", "),
        mission.observers.len(),
        teams.len(),
        forms.join(", "),
    )
}
