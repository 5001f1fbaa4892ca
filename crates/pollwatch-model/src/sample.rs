//! The sample mission `missions/kg-2021` and its ground truth, compiled in (feature `sample`):
//! one loader for the tests, benchmarks and simulations of the crates that use the model, with
//! no file to find at run time.

use crate::mission::{Mission, MissionSources};

/// `missions/kg-2021/ground-truth.toml`, as text.
pub const KG_2021_GROUND_TRUTH: &str = include_str!("../../../missions/kg-2021/ground-truth.toml");

/// `missions/kg-2021`, parsed.
pub fn kg_2021() -> Mission {
    Mission::parse(MissionSources {
        mission_toml: include_str!("../../../missions/kg-2021/mission.toml"),
        forms_toml: include_str!("../../../missions/kg-2021/forms.toml"),
        stations_csv: include_str!("../../../missions/kg-2021/stations.csv"),
        observers_csv: include_str!("../../../missions/kg-2021/observers.csv"),
    })
    .expect("the sample mission parses")
}
