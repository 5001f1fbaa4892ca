//! The sample missions `missions/kg-2021` and `missions/kg-2021-pvt` (a citizen network's quick
//! count at the same election) and their ground truth, compiled in (feature `sample`):
//! one loader for the tests, benchmarks and simulations of the crates that use the model, with
//! no file to find at run time.

use crate::mission::{Mission, MissionSources};

/// `missions/kg-2021/ground-truth.toml`, as text.
pub const KG_2021_GROUND_TRUTH: &str = include_str!("../../../missions/kg-2021/ground-truth.toml");

/// The mission folder `missions/$folder`, compiled in and parsed.
macro_rules! folder {
    ($folder:literal) => {
        Mission::parse(MissionSources {
            mission_toml: include_str!(concat!("../../../missions/", $folder, "/mission.toml")),
            forms_toml: include_str!(concat!("../../../missions/", $folder, "/forms.toml")),
            stations_csv: include_str!(concat!("../../../missions/", $folder, "/stations.csv")),
            observers_csv: include_str!(concat!("../../../missions/", $folder, "/observers.csv")),
        })
        .expect(concat!("the sample mission ", $folder, " parses"))
    };
}

/// `missions/kg-2021`, parsed.
pub fn kg_2021() -> Mission {
    folder!("kg-2021")
}

/// `missions/kg-2021-pvt`, parsed: kg-2021's election, stations and ground truth, with 2,476
/// citizen observers, each a team of one, and short checklists.
pub fn kg_2021_pvt() -> Mission {
    folder!("kg-2021-pvt")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two folders hold one election: what differs is who observes and what they answer.
    #[test]
    fn the_quick_counts_mission_is_kg_2021s_election_with_its_own_observers() {
        let (kg, pvt) = (kg_2021(), kg_2021_pvt());
        assert_eq!(pvt.id, "kg-2021-pvt");
        assert_eq!(pvt.stations, kg.stations);
        assert_eq!(pvt.contests, kg.contests);
        assert_eq!(pvt.regions, kg.regions);
        assert_eq!(
            (pvt.election_day, pvt.time_zone, pvt.polls_open, pvt.polls_close),
            (kg.election_day, kg.time_zone, kg.polls_open, kg.polls_close)
        );
        assert_eq!(include_str!("../../../missions/kg-2021-pvt/ground-truth.toml"), KG_2021_GROUND_TRUTH);
        // One observer can be posted to every station, each a team of their own.
        assert_eq!(pvt.observers.len(), pvt.stations.len());
        let teams: std::collections::BTreeSet<&str> = pvt.observers.iter().map(|o| o.team.as_str()).collect();
        assert_eq!(teams.len(), pvt.observers.len());
        assert!(pvt.observers.iter().all(|o| !kg.observers.iter().any(|k| k.id == o.id)));
    }
}
