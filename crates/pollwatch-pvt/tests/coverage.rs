//! The estimator's intervals cover the truth as often as they say: over one simulated count of
//! every kg-2021 station (the population, so the true shares are known exactly), 1,000 samples
//! of 300 stations stratified by region, drawn with seeds 1 to 1,000. The 95 % interval must hold
//! the leading candidate's true share in 93–97 % of the samples and the 99 % interval in at least
//! 98 %; the same for turnout and for the share of ballots. The rates are printed
//! (`cargo test -p pollwatch-pvt --test coverage -- --nocapture`).

use std::collections::BTreeMap;

use pollwatch_pvt::{Counted, ShareOf, StrataBy, Z95, Z99, contest, draw};

const SAMPLES: u64 = 1_000;
const SIZE: u32 = 300;

#[test]
fn intervals_cover_the_true_share_as_often_as_they_say() {
    let mission = pollwatch_model::sample::kg_2021();
    let truth = pollwatch_sim::GroundTruth::parse(pollwatch_model::sample::KG_2021_GROUND_TRUTH, &mission)
        .expect("the sample's ground truth");
    let count = pollwatch_sim::truth::draw(&mission, &truth, &mut pollwatch_sim::generate::Rng::new(2021));
    let president = mission.contest("president").expect("the presidential contest");
    let index = mission.contests.iter().position(|c| c.id == "president").expect("a contest");
    let population: BTreeMap<&str, Counted> = mission
        .stations
        .iter()
        .zip(&count.stations)
        .map(|(station, protocols)| (station.code.as_str(), Counted::from(&protocols[index])))
        .collect();
    let national = &count.national["president"];
    let leader = president.choices.iter().max_by_key(|c| national.votes_for(&c.code)).expect("a choice");
    let valid: f64 = population.values().map(|c| c.votes.values().sum::<u64>() as f64).sum();
    let ballots: f64 = population.values().map(|c| c.ballots_in_box as f64).sum();
    let registered: f64 = population.values().map(|c| c.registered_voters as f64).sum();
    let votes = national.votes_for(&leader.code) as f64;
    let truths = [
        (format!("{}'s share of valid votes", leader.code), votes / valid),
        (format!("{}'s share of ballots", leader.code), votes / ballots),
        ("turnout".to_owned(), ballots / registered),
    ];

    let mut covered = [[0_u32; 2]; 3];
    let mut margins = [0.0_f64; 3];
    for seed in 1..=SAMPLES {
        let sample = draw(&mission, StrataBy::Region, SIZE, seed).expect("a sample");
        let sampled: BTreeMap<&str, Counted> = sample
            .stations
            .iter()
            .map(|s| (s.station.as_str(), population[s.station.as_str()].clone()))
            .collect();
        let of_valid = contest(&mission, &sample, president, &sampled, ShareOf::Valid);
        let of_ballots = contest(&mission, &sample, president, &sampled, ShareOf::Ballots);
        let estimates = [
            of_valid.shares[&leader.code],
            of_ballots.shares[&leader.code],
            of_valid.turnout.expect("turnout"),
        ];
        for (i, (estimate, (_, truth))) in estimates.iter().zip(&truths).enumerate() {
            margins[i] += estimate.margin(Z95).expect("a margin") / SAMPLES as f64;
            for (j, z) in [Z95, Z99].into_iter().enumerate() {
                if estimate.covers(*truth, z).expect("every stratum has two reports") {
                    covered[i][j] += 1;
                }
            }
        }
    }
    for (((what, truth), [c95, c99]), margin) in truths.iter().zip(covered).zip(margins) {
        let (r95, r99) = (f64::from(c95) / SAMPLES as f64, f64::from(c99) / SAMPLES as f64);
        println!(
            "coverage of {what} (true {truth:.4}) over {SAMPLES} samples of {SIZE}: 95 % interval {:.1} %, 99 % interval {:.1} % (95 % margin ±{:.2} points on average)",
            100.0 * r95,
            100.0 * r99,
            100.0 * margin
        );
        assert!((0.93..=0.97).contains(&r95), "{what}: the 95 % interval covered in {r95}");
        assert!(r99 >= 0.98, "{what}: the 99 % interval covered in {r99}");
    }
}
