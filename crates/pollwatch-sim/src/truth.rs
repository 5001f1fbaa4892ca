//! The ground truth a simulated election day is drawn from, and the count at every station drawn
//! from it so that the national totals are exactly what the ground truth says.
//!
//! Per contest the ground truth gives turnout (ballots in the box over registered voters), the
//! share of invalid ballots and each choice's share of the valid votes. The national figures are
//! rounded once, from those shares; every station's protocol is then drawn around them (turnout
//! and each choice's strength vary by station and region), and the stations add up exactly to
//! the national figures.

use std::collections::BTreeMap;

use pollwatch_model::{ContestResults, Mission, Protocol};
use serde::Deserialize;

use crate::generate::Rng;

/// The `ground-truth.toml` of a mission folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruth {
    pub contests: BTreeMap<String, ContestTruth>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContestTruth {
    /// Ballots in the box over registered voters, nationally (0 < turnout ≤ 1).
    pub turnout: f64,
    /// Invalid ballots over ballots in the box (0 ≤ invalid < 1).
    pub invalid: f64,
    /// Each choice's relative weight among valid votes; they need not add up to exactly 1.
    pub shares: BTreeMap<String, f64>,
}

/// A ground-truth file that does not fit the mission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TruthError(String);

impl GroundTruth {
    /// Reads a ground-truth file's text and checks it against `mission`: every contest and
    /// every choice named, nothing unknown, every figure in range.
    pub fn parse(text: &str, mission: &Mission) -> Result<Self, TruthError> {
        let truth: Self = toml::from_str(text).map_err(|e| TruthError(e.to_string()))?;
        for id in truth.contests.keys() {
            if mission.contest(id).is_none() {
                return Err(TruthError(format!("contest `{id}` is not in mission {}", mission.id)));
            }
        }
        for contest in &mission.contests {
            let Some(figures) = truth.contests.get(&contest.id) else {
                return Err(TruthError(format!(
                    "contest `{}` has no [contests.{}] table",
                    contest.id, contest.id
                )));
            };
            let at = |what: &str| format!("contests.{}.{what}", contest.id);
            if !(figures.turnout > 0.0 && figures.turnout <= 1.0) {
                return Err(TruthError(format!(
                    "{} is {}; it must be above 0 and at most 1",
                    at("turnout"),
                    figures.turnout
                )));
            }
            if !(figures.invalid >= 0.0 && figures.invalid < 1.0) {
                return Err(TruthError(format!(
                    "{} is {}; it must be at least 0 and below 1",
                    at("invalid"),
                    figures.invalid
                )));
            }
            for choice in figures.shares.keys() {
                if contest.choice(choice).is_none() {
                    return Err(TruthError(format!(
                        "{}: `{choice}` is not a choice of the contest",
                        at("shares")
                    )));
                }
            }
            for choice in &contest.choices {
                match figures.shares.get(&choice.code) {
                    None => {
                        return Err(TruthError(format!(
                            "{}: `{}` has no share (write 0 for none)",
                            at("shares"),
                            choice.code
                        )));
                    }
                    Some(share) if !(*share >= 0.0 && share.is_finite()) => {
                        return Err(TruthError(format!(
                            "{}.{} is {share}; shares are not negative",
                            at("shares"),
                            choice.code
                        )));
                    }
                    Some(_) => {}
                }
            }
            if figures.shares.values().sum::<f64>() <= 0.0 {
                return Err(TruthError(format!("{}: every share is 0", at("shares"))));
            }
        }
        Ok(truth)
    }

    /// The national figures of `contest` over `registered` voters, rounded from the shares.
    pub fn national(
        &self,
        mission: &Mission,
        contest: &str,
        stations: i64,
        registered: i64,
    ) -> ContestResults {
        let figures = &self.contests[contest];
        let choices = &mission.contest(contest).expect("a contest of the mission").choices;
        let in_box = (figures.turnout * registered as f64).round() as i64;
        let invalid = (figures.invalid * in_box as f64).round() as i64;
        let weights: Vec<f64> = choices.iter().map(|c| figures.shares[&c.code]).collect();
        let caps = vec![u64::MAX; choices.len()];
        let votes = apportion((in_box - invalid) as u64, &weights, &caps);
        ContestResults {
            contest: contest.to_owned(),
            stations_counted: stations,
            registered_voters: registered,
            ballots_in_box: in_box,
            invalid,
            votes: choices.iter().zip(votes).map(|(c, v)| (c.code.clone(), v as i64)).collect(),
        }
    }
}

/// Every station's protocols (in the mission's contest order) and the national figures they add
/// up to.
#[derive(Debug, Clone)]
pub struct Count {
    /// Per station, in roster order: one protocol per contest.
    pub stations: Vec<Vec<Protocol>>,
    /// Per contest id.
    pub national: BTreeMap<String, ContestResults>,
}

/// Draws the count at every station of `mission` so that the national totals of each contest
/// are exactly [`GroundTruth::national`].
pub fn draw(mission: &Mission, truth: &GroundTruth, rng: &mut Rng) -> Count {
    let registered: Vec<u64> = mission.stations.iter().map(|s| u64::from(s.registered_voters)).collect();
    let national_registered = registered.iter().sum::<u64>() as i64;
    // How keen each station's voters are, shared by the contests on the same day.
    let keenness: Vec<f64> = registered.iter().map(|_| 0.7 + 0.6 * unit(rng)).collect();
    let regions: BTreeMap<&str, usize> =
        mission.regions.iter().enumerate().map(|(i, r)| (r.code.as_str(), i)).collect();
    let region_of: Vec<usize> = mission.stations.iter().map(|s| regions[s.region.as_str()]).collect();

    let mut stations: Vec<Vec<Protocol>> = vec![Vec::with_capacity(mission.contests.len()); registered.len()];
    let mut national = BTreeMap::new();
    for contest in &mission.contests {
        let target = truth.national(mission, &contest.id, registered.len() as i64, national_registered);
        let weights: Vec<f64> = registered.iter().zip(&keenness).map(|(&r, k)| r as f64 * k).collect();
        let in_box = apportion(target.ballots_in_box as u64, &weights, &registered);
        let weights: Vec<f64> = in_box.iter().map(|&b| b as f64 * (0.5 + unit(rng))).collect();
        let invalid = apportion(target.invalid as u64, &weights, &in_box);
        let mut left: Vec<u64> = in_box.iter().zip(&invalid).map(|(b, i)| b - i).collect();
        // Smallest national total first; the largest takes what is left at each station, which
        // is exactly its national total.
        let mut order: Vec<usize> = (0..contest.choices.len()).collect();
        order.sort_by_key(|&i| (target.votes_for(&contest.choices[i].code), i));
        let mut votes = vec![vec![0u64; contest.choices.len()]; registered.len()];
        let (&last, rest) = order.split_last().expect("a contest has choices");
        for &choice in rest {
            let strength: Vec<f64> = mission.regions.iter().map(|_| 0.5 + unit(rng)).collect();
            let weights: Vec<f64> = left
                .iter()
                .zip(&region_of)
                .map(|(&l, &region)| l as f64 * strength[region] * (0.8 + 0.4 * unit(rng)))
                .collect();
            let total = target.votes_for(&contest.choices[choice].code) as u64;
            for (station, given) in apportion(total, &weights, &left).into_iter().enumerate() {
                votes[station][choice] = given;
                left[station] -= given;
            }
        }
        for (station, remainder) in left.iter().enumerate() {
            votes[station][last] = *remainder;
        }
        for (s, station) in mission.stations.iter().enumerate() {
            let spoiled = rng.below(4) as u32;
            let in_box = in_box[s] as u32;
            // A few voters take their ballot away instead of casting it.
            let issued = in_box + rng.below(3) as u32;
            let received = station.registered_voters + station.registered_voters / 50 + 5;
            stations[s].push(Protocol {
                contest: contest.id.clone(),
                registered_voters: station.registered_voters,
                ballots_received: received,
                ballots_issued: issued,
                ballots_spoiled: spoiled,
                ballots_unused: received - issued - spoiled,
                ballots_in_box: in_box,
                invalid: invalid[s] as u32,
                votes: contest
                    .choices
                    .iter()
                    .zip(&votes[s])
                    .map(|(c, &v)| (c.code.clone(), v as u32))
                    .collect(),
            });
        }
        national.insert(contest.id.clone(), target);
    }
    Count { stations, national }
}

/// A number in `[0, 1)`.
pub(super) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits `total` into whole parts proportional to `weights`, none above its cap, adding up to
/// exactly `total` (largest remainders first). The caps must leave room for the total.
pub fn apportion(total: u64, weights: &[f64], caps: &[u64]) -> Vec<u64> {
    assert_eq!(weights.len(), caps.len());
    assert!(
        caps.iter().map(|&c| u128::from(c)).sum::<u128>() >= u128::from(total),
        "the caps leave no room for {total}"
    );
    let mut parts = vec![0u64; weights.len()];
    let mut left = total;
    let mut open: Vec<usize> = (0..weights.len()).filter(|&i| caps[i] > 0).collect();
    while left > 0 {
        let sum: f64 = open.iter().map(|&i| weights[i].max(0.0)).sum();
        // Where every open part weighs nothing, what is left is shared evenly among them.
        let weight = |i: usize| if sum > 0.0 { weights[i].max(0.0) / sum } else { 1.0 / open.len() as f64 };
        let mut remainders = Vec::with_capacity(open.len());
        let mut given = 0u64;
        for &i in &open {
            let ideal = left as f64 * weight(i);
            let room = caps[i] - parts[i];
            let whole = (ideal.floor() as u64).min(room);
            parts[i] += whole;
            given += whole;
            if parts[i] < caps[i] {
                remainders.push((ideal - whole as f64, i));
            }
        }
        left -= given.min(left);
        remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &remainders {
            if left == 0 {
                break;
            }
            parts[i] += 1;
            left -= 1;
        }
        open.retain(|&i| parts[i] < caps[i]);
        assert!(left == 0 || !open.is_empty(), "the caps are checked above");
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{kg_2021, truth};

    #[test]
    fn apportioned_parts_add_up_and_respect_caps() {
        let parts = apportion(1_000, &[1.0, 1.0, 1.0], &[100, 1_000, 1_000]);
        assert_eq!(parts.iter().sum::<u64>(), 1_000);
        assert_eq!(parts[0], 100);
        assert_eq!(apportion(10, &[0.0, 0.0], &[3, 20]).iter().sum::<u64>(), 10);
        assert_eq!(apportion(7, &[2.0, 1.0], &[u64::MAX, u64::MAX]), vec![5, 2]);
    }

    #[test]
    fn station_counts_add_up_to_the_national_ground_truth_exactly() {
        let mission = kg_2021();
        let truth = truth(&mission);
        let count = draw(&mission, &truth, &mut Rng::new(3));
        for (c, contest) in mission.contests.iter().enumerate() {
            let mut sum = ContestResults::empty(&contest.id, contest.choices.iter().map(|c| c.code.clone()));
            for protocols in &count.stations {
                sum.add(&protocols[c]);
            }
            assert_eq!(sum, count.national[&contest.id], "{}", contest.id);
            let share = |code: &str| sum.votes_for(code) as f64 / (sum.ballots_in_box - sum.invalid) as f64;
            let figures = &truth.contests[&contest.id];
            let total: f64 = figures.shares.values().sum();
            for (code, weight) in &figures.shares {
                assert!(
                    (share(code) - weight / total).abs() < 1e-4,
                    "{code}: {} vs {}",
                    share(code),
                    weight / total
                );
            }
            let turnout = sum.ballots_in_box as f64 / sum.registered_voters as f64;
            assert!((turnout - figures.turnout).abs() < 1e-6, "turnout {turnout}");
        }
    }

    /// The sample's ground truth is written so that the official figures come out.
    #[test]
    fn the_sample_ground_truth_gives_the_official_kg_2021_figures() {
        let mission = kg_2021();
        let count = draw(&mission, &truth(&mission), &mut Rng::new(1));
        let president = &count.national["president"];
        assert_eq!(president.registered_voters, 3_563_574);
        assert_eq!(president.ballots_in_box, 1_395_513);
        assert_eq!(president.votes_for("japarov"), 1_105_248);
        let referendum = &count.national["referendum"];
        let percent =
            |code: &str| (referendum.votes_for(code) * 10_000) as f64 / referendum.ballots_in_box as f64;
        assert_eq!(
            [
                percent("presidential").round(),
                percent("parliamentary").round(),
                percent("against_all").round()
            ],
            [8_149.0, 1_091.0, 447.0]
        );
    }

    #[test]
    fn every_drawn_protocol_passes_the_model_without_flags() {
        let mission = kg_2021();
        let count = draw(&mission, &truth(&mission), &mut Rng::new(4));
        for (station, protocols) in mission.stations.iter().zip(&count.stations) {
            let report = crate::generate::compose(
                &mission,
                station,
                "obs-001",
                chrono::DateTime::parse_from_rfc3339("2021-01-10T22:30:00+06:00").expect("a time"),
                chrono::DateTime::parse_from_rfc3339("2021-01-10T22:40:00+06:00").expect("a time"),
                pollwatch_model::Content::Counting(pollwatch_model::CountingBody {
                    protocols: protocols.clone(),
                }),
                &mut Rng::new(5),
            );
            let context =
                pollwatch_model::Context { mission: &mission, now: chrono::Utc::now(), sender: None };
            let flags = pollwatch_model::validate(&report, &context).expect("accepted");
            assert!(flags.is_empty(), "station {}: {flags:?}", station.code);
        }
    }

    #[test]
    fn a_ground_truth_that_misses_a_choice_is_refused_with_its_name() {
        let mission = kg_2021();
        let text = "[contests.president]\nturnout = 0.4\ninvalid = 0.02\nshares = { japarov = 1.0 }\n";
        let error = GroundTruth::parse(text, &mission).expect_err("incomplete");
        assert!(error.to_string().contains("`kasenov` has no share"), "{error}");
        let text = "[contests.presidnt]\nturnout = 0.4\ninvalid = 0.02\nshares = {}\n";
        let error = GroundTruth::parse(text, &mission).expect_err("unknown contest");
        assert!(error.to_string().contains("contest `presidnt` is not in mission kg-2021"), "{error}");
    }
}
