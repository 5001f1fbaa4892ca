//! The official result, as announced, set against the estimate: per choice the official share,
//! the difference from the estimate, and whether it lies within the estimate's 99 % interval.

use std::collections::BTreeMap;

use pollwatch_model::Mission;
use serde::{Deserialize, Serialize};

use crate::estimate::{Ratio, ShareOf, Z99};

/// The name of the official result's file in a mission folder.
pub const OFFICIAL_FILE: &str = "pvt-official.toml";

/// The announced figures, per contest id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Official {
    pub contests: BTreeMap<String, OfficialContest>,
}

/// One contest's announced figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialContest {
    pub registered_voters: u64,
    /// Ballots in the box, valid and invalid: those who took part.
    pub ballots: u64,
    /// Valid votes per choice code; every choice of the contest.
    pub votes: BTreeMap<String, u64>,
}

/// Why an official result cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OfficialError(String);

impl Official {
    /// Reads `text` (JSON if `json`, TOML otherwise) and checks it against `mission`: known
    /// contests, each with every choice and no other, and figures that fit together.
    pub fn parse(text: &str, json: bool, mission: &Mission) -> Result<Self, OfficialError> {
        let official: Self = if json {
            serde_json::from_str(text)
                .map_err(|e| OfficialError(format!("not the official result's JSON: {e}")))?
        } else {
            toml::from_str(text).map_err(|e| OfficialError(format!("not the official result's TOML: {e}")))?
        };
        if official.contests.is_empty() {
            return Err(OfficialError("it gives no contest".to_owned()));
        }
        for (id, figures) in &official.contests {
            let Some(contest) = mission.contest(id) else {
                let ids: Vec<&str> = mission.contests.iter().map(|c| c.id.as_str()).collect();
                return Err(OfficialError(format!(
                    "mission {} has no contest `{id}`; it has {}",
                    mission.id,
                    ids.join(", ")
                )));
            };
            let codes: Vec<&str> = contest.choices.iter().map(|c| c.code.as_str()).collect();
            if let Some(unknown) = figures.votes.keys().find(|code| !codes.contains(&code.as_str())) {
                return Err(OfficialError(format!(
                    "contest {id} has no choice `{unknown}`; it has {}",
                    codes.join(", ")
                )));
            }
            if let Some(missing) = codes.iter().find(|code| !figures.votes.contains_key(**code)) {
                return Err(OfficialError(format!(
                    "contest {id}: the votes of `{missing}` are missing (write 0 for none)"
                )));
            }
            let valid: u64 = figures.votes.values().sum();
            if figures.ballots < valid {
                return Err(OfficialError(format!(
                    "contest {id}: {} ballots cannot hold {valid} valid votes",
                    figures.ballots
                )));
            }
            if figures.registered_voters < figures.ballots || figures.registered_voters == 0 {
                return Err(OfficialError(format!(
                    "contest {id}: {} registered voters cannot have cast {} ballots",
                    figures.registered_voters, figures.ballots
                )));
            }
        }
        Ok(official)
    }

    /// As the mission folder keeps it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the official result serialises")
    }
}

impl OfficialContest {
    /// `choice`'s official share of what `share_of` says.
    pub fn share(&self, choice: &str, share_of: ShareOf) -> Option<f64> {
        let of = match share_of {
            ShareOf::Valid => self.votes.values().sum::<u64>(),
            ShareOf::Ballots => self.ballots,
        };
        let votes = *self.votes.get(choice)?;
        (of > 0).then(|| votes as f64 / of as f64)
    }

    pub fn turnout(&self) -> f64 {
        self.ballots as f64 / self.registered_voters as f64
    }
}

/// An official figure set against its estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub official: f64,
    /// Official minus estimate.
    pub difference: f64,
    /// Whether the official figure lies within the estimate's 99 % interval (`None` without a
    /// margin).
    pub consistent: Option<bool>,
}

/// `official` against `estimate`.
pub fn compare(estimate: &Ratio, official: f64) -> Comparison {
    Comparison {
        official,
        difference: official - estimate.estimate,
        consistent: estimate.covers(official, Z99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The referendum's votes from the announced percentages (missions/kg-2021/README.md):
    /// 81.49, 10.91 and 4.47 % of the 1,395,513 who took part.
    const KG: &str = r#"
[contests.referendum]
registered_voters = 3563574
ballots = 1395513
votes = { presidential = 1137204, parliamentary = 152250, against_all = 62379 }
"#;

    /// `missions/kg-2021/official-result.toml` is the count the simulator draws to, contest by
    /// contest: the official figures where they are official (the ground truth gives them), the
    /// ground truth's synthetic ones elsewhere. `POLLWATCH_BLESS=1` writes it anew.
    #[test]
    fn the_shipped_official_result_is_the_simulated_counts_total() {
        let mission = pollwatch_model::sample::kg_2021();
        let truth =
            pollwatch_sim::GroundTruth::parse(pollwatch_model::sample::KG_2021_GROUND_TRUTH, &mission)
                .expect("the ground truth");
        let count = pollwatch_sim::truth::draw(&mission, &truth, &mut pollwatch_sim::generate::Rng::new(1));
        let contests = count
            .national
            .iter()
            .map(|(id, national)| {
                let figures = OfficialContest {
                    registered_voters: national.registered_voters as u64,
                    ballots: national.ballots_in_box as u64,
                    votes: national.votes.iter().map(|(code, n)| (code.clone(), *n as u64)).collect(),
                };
                (id.clone(), figures)
            })
            .collect();
        let expected = Official { contests };
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../missions/kg-2021/official-result.toml");
        if std::env::var_os("POLLWATCH_BLESS").is_some() {
            let header = std::fs::read_to_string(path).unwrap_or_default();
            let header: String =
                header.lines().take_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
            std::fs::write(path, format!("{header}\n{}", expected.to_toml())).expect("blessed");
        }
        let shipped = std::fs::read_to_string(path).expect("the shipped official result");
        let official = Official::parse(&shipped, false, &mission).expect("an official result of kg-2021");
        assert_eq!(official, expected, "POLLWATCH_BLESS=1 writes it anew");
        let president = &official.contests["president"];
        assert_eq!((president.ballots, president.votes["japarov"]), (1_395_513, 1_105_248));
    }

    #[test]
    fn an_official_result_is_read_against_the_mission_and_compared() {
        let mission = pollwatch_model::sample::kg_2021();
        let official = Official::parse(KG, false, &mission).expect("an official result");
        let referendum = &official.contests["referendum"];
        // 1,137,204 of 1,395,513 ballots: 81.49 %, as announced.
        let share = referendum.share("presidential", ShareOf::Ballots).expect("a share");
        assert!((share - 0.814_900).abs() < 1e-6, "{share}");
        assert!((referendum.turnout() - 1_395_513.0 / 3_563_574.0).abs() < 1e-12);
        assert_eq!(Official::parse(&official.to_toml(), false, &mission), Ok(official.clone()));

        // Within the 99 % interval (±2.576 · 0.01) it is consistent; beyond it, not.
        let estimate = Ratio { estimate: 0.80, standard_error: Some(0.01) };
        let near = compare(&estimate, share);
        assert!((near.difference - (share - 0.80)).abs() < 1e-12);
        assert_eq!(near.consistent, Some(true));
        assert_eq!(compare(&estimate, 0.83).consistent, Some(false));
        assert_eq!(compare(&Ratio { estimate: 0.8, standard_error: None }, 0.8).consistent, None);
    }

    #[test]
    fn an_official_result_that_does_not_fit_is_refused_with_the_reason() {
        let mission = pollwatch_model::sample::kg_2021();
        let refused = |text: &str| Official::parse(text, false, &mission).expect_err("refused").0;
        assert!(refused(&KG.replace("referendum]", "senate]")).contains("has no contest `senate`"));
        assert!(refused(&KG.replace(", against_all = 62379", "")).contains("`against_all` are missing"));
        assert!(refused(&KG.replace("against_all", "abstain")).contains("no choice `abstain`"));
        assert!(refused(&KG.replace("ballots = 1395513", "ballots = 1000")).contains("cannot hold"));
        assert!(refused(&KG.replace("3563574", "1000000")).contains("cannot have cast"));
        assert!(refused("contests = {}").contains("no contest"));
        let json = r#"{"contests": {"referendum": {"registered_voters": 10, "ballots": 3, "votes": {"presidential": 1, "parliamentary": 1, "against_all": 1}}}}"#;
        assert!(Official::parse(json, true, &mission).is_ok());
    }
}
