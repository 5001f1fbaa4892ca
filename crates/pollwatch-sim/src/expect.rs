//! The expectation file: what the store and the dead-letter queue must hold once the worker has
//! taken every message of a simulated day, worked out from the messages by the store's rules.
//!
//! Each message's fate is the worker's own judgement of it ([`pollwatch_model::judge`], worked out
//! by the simulator); what the accepted ones add up to follows the store's rules as
//! [`pollwatch_model::tally`] states them: a report id is stored once, its highest revision
//! current; quarantined reports count for coverage but not for incidents or results; the results
//! are [`ContestResults::tally`] over the current, unquarantined reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pollwatch_model::{Content, ContestResults, Mission, Report, ReportKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::truth::Count;
use crate::{Fate, Options, Planned, Why};

/// What a simulated day must leave behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub mission: String,
    pub seed: u64,
    /// Whether the worker was taken to dead-letter reports without the observer's own sender.
    pub require_sender_auth: bool,
    pub messages: MessageCounts,
    pub store: StoreCounts,
    /// Dead letters per code.
    pub dead_letters: BTreeMap<String, u64>,
    /// Per report kind, per region: stations with a current report of that kind.
    pub coverage: BTreeMap<String, BTreeMap<String, usize>>,
    /// Current, unquarantined incident reports per category, then per severity.
    pub incidents: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per contest: the tabulation over the stations where a counting report counts.
    pub results: BTreeMap<String, ContestResults>,
    /// Per contest: the national figures the whole count adds up to (every station, observed or
    /// not), as drawn from the ground truth. For reference: the store only knows the stations
    /// the teams counted at.
    pub ground_truth: BTreeMap<String, ContestResults>,
    /// Per contest: the true figures summed over the stations a team counted at (those with a
    /// team's own counting report). What the results are once reviewers have rejected every
    /// spoof and settled every miscounted station for the right copy.
    #[serde(default)]
    pub observed_truth: BTreeMap<String, ContestResults>,
    /// The ids of the reports that are wrong though the worker may accept them: spoofs and
    /// miscounted copies. What a reviewer who checked with the teams would reject, or not count.
    #[serde(default)]
    pub wrong_reports: BTreeSet<Uuid>,
}

/// The messages the simulator sent, by why they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub total: u64,
    /// Reports written by the teams (first revisions), whether sent on time or late.
    pub reports: u64,
    /// Of those, sent late, after reports written later.
    pub late: u64,
    pub resends: u64,
    pub corrections: u64,
    pub malformed: u64,
    pub spoofed: u64,
    /// Second teams' copies of a protocol with a slip that still adds up.
    #[serde(default)]
    pub miscounts: u64,
}

/// What the store must count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounts {
    /// Distinct report ids.
    pub reports: i64,
    /// Distinct (report id, revision) pairs in the audit trail.
    pub revisions: i64,
    /// Current reports held for review.
    pub quarantined: i64,
    /// Same id and revision with different content.
    pub conflicts: i64,
}

impl Expectation {
    /// Works out what must come of `messages`, sent in their order.
    pub(super) fn of(mission: &Mission, options: &Options, count: &Count, messages: &[Planned]) -> Self {
        let mut counts = MessageCounts { total: messages.len() as u64, ..MessageCounts::default() };
        let mut dead_letters: BTreeMap<String, u64> = BTreeMap::new();
        let mut current: HashMap<Uuid, (&Report, bool)> = HashMap::new();
        let mut revisions: BTreeSet<(Uuid, u32)> = BTreeSet::new();
        for planned in messages {
            match planned.why {
                Why::Report => counts.reports += 1,
                Why::Late => {
                    counts.reports += 1;
                    counts.late += 1;
                }
                Why::Resend => counts.resends += 1,
                Why::Correction => counts.corrections += 1,
                Why::Malformed(_) => counts.malformed += 1,
                Why::Spoofed => counts.spoofed += 1,
                Why::Miscount => counts.miscounts += 1,
            }
            match &planned.fate {
                Fate::DeadLettered(code) => *dead_letters.entry(code.as_str().to_owned()).or_default() += 1,
                Fate::Accepted { report, quarantined } => {
                    let report = report.as_ref();
                    revisions.insert((report.report_id, report.revision));
                    let entry = current.entry(report.report_id).or_insert((report, *quarantined));
                    if report.revision > entry.0.revision {
                        *entry = (report, *quarantined);
                    }
                }
            }
        }

        let region_of: HashMap<&str, &str> =
            mission.stations.iter().map(|s| (s.code.as_str(), s.region.as_str())).collect();
        let mut covered: BTreeMap<ReportKind, BTreeSet<&str>> = BTreeMap::new();
        let mut incidents: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        // The reports whose figures count: current and not held for review.
        let mut counting: Vec<&Report> = Vec::new();
        for (report, quarantined) in current.values() {
            covered.entry(report.kind()).or_default().insert(report.station.as_str());
            if *quarantined {
                continue;
            }
            counting.push(report);
            if let Content::Incident(body) = &report.content {
                *incidents
                    .entry(body.category.as_str().to_owned())
                    .or_default()
                    .entry(body.severity.as_str().to_owned())
                    .or_default() += 1;
            }
        }
        let coverage = ReportKind::ALL
            .iter()
            .map(|kind| {
                let stations = covered.get(kind);
                let per_region = mission
                    .regions
                    .iter()
                    .map(|region| {
                        let reported = stations.map_or(0, |s| {
                            s.iter()
                                .filter(|code| region_of.get(*code) == Some(&region.code.as_str()))
                                .count()
                        });
                        (region.code.clone(), reported)
                    })
                    .collect();
                (kind.as_str().to_owned(), per_region)
            })
            .collect();
        // The stations a team counted at: those of its own counting reports.
        let observed: BTreeSet<&str> = messages
            .iter()
            .filter(|m| matches!(m.why, Why::Report | Why::Late | Why::Correction))
            .filter_map(|m| match &m.fate {
                Fate::Accepted { report, .. } if report.kind() == ReportKind::Counting => {
                    Some(report.station.as_str())
                }
                _ => None,
            })
            .collect();
        let observed_truth = mission
            .contests
            .iter()
            .map(|contest| {
                let mut results =
                    ContestResults::empty(&contest.id, contest.choices.iter().map(|c| c.code.clone()));
                for (station, protocols) in mission.stations.iter().zip(&count.stations) {
                    if observed.contains(station.code.as_str())
                        && let Some(protocol) = protocols.iter().find(|p| p.contest == contest.id)
                    {
                        results.add(protocol);
                    }
                }
                (contest.id.clone(), results)
            })
            .collect();
        let results = mission
            .contests
            .iter()
            .map(|contest| {
                (contest.id.clone(), ContestResults::tally(mission, contest, counting.iter().copied()))
            })
            .collect();
        Expectation {
            mission: mission.id.clone(),
            seed: options.seed,
            require_sender_auth: options.rules.require_sender_auth,
            messages: counts,
            store: StoreCounts {
                reports: current.len() as i64,
                revisions: revisions.len() as i64,
                quarantined: current.values().filter(|(_, q)| *q).count() as i64,
                conflicts: 0,
            },
            dead_letters,
            coverage,
            incidents,
            results,
            ground_truth: count.national.clone(),
            observed_truth,
            wrong_reports: messages
                .iter()
                .filter(|m| matches!(m.why, Why::Spoofed | Why::Miscount))
                .filter_map(|m| match &m.fate {
                    Fate::Accepted { report, .. } => Some(report.report_id),
                    Fate::DeadLettered(_) => None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{kg_2021, noisy, quiet, truth};
    use pollwatch_model::Rules;

    use crate::{Options, simulate};

    #[test]
    fn a_day_without_anomalies_stores_each_report_once_and_counts_every_team_station() {
        let mission = kg_2021();
        let day = simulate(&mission, &truth(&mission), &quiet(3)).expect("a day");
        let e = &day.expectation;
        assert_eq!(e.store.reports as u64, e.messages.total);
        assert_eq!(e.store.revisions, e.store.reports);
        assert_eq!(e.store.quarantined, 0);
        assert!(e.dead_letters.is_empty());
        // One counting station per team, each a station of its own.
        assert_eq!(e.results["president"].stations_counted, 100);
        assert_eq!(e.coverage["counting"].values().sum::<usize>(), 100);
        assert_eq!(e.coverage["counting"]["abroad"], 0, "teams stay in the country");
    }

    #[test]
    fn corrections_replace_mistakes_and_spoofs_stay_out_of_results() {
        let mission = kg_2021();
        let truth = truth(&mission);
        let (calm, rough) = (
            simulate(&mission, &truth, &quiet(4)).expect("a day"),
            simulate(&mission, &truth, &noisy(4)).expect("a day"),
        );
        // The teams' own reports are drawn the same way: the same stations are counted, and the
        // corrected protocols count as if they had been right the first time.
        assert_eq!(rough.expectation.results, calm.expectation.results);
        let e = &rough.expectation;
        assert_eq!(e.store.reports as u64, e.messages.reports + e.messages.spoofed);
        assert_eq!(
            e.store.revisions as u64,
            e.messages.reports + e.messages.corrections + e.messages.spoofed
        );
        assert_eq!(e.store.quarantined as u64, e.messages.spoofed, "every mistake corrected; spoofs held");
        assert_eq!(e.dead_letters.values().sum::<u64>(), e.messages.malformed);

        let noisy = noisy(4);
        let strict = Options { rules: Rules { require_sender_auth: true, ..noisy.rules }, ..noisy };
        let strict = simulate(&mission, &truth, &strict).expect("a day").expectation;
        assert_eq!(strict.dead_letters["sender_mismatch"], strict.messages.spoofed);
        assert_eq!(strict.store.quarantined, 0);
    }

    #[test]
    fn the_observed_truth_is_what_the_teams_own_copies_add_up_to_whatever_else_is_sent() {
        let mission = kg_2021();
        let truth = truth(&mission);
        let calm = simulate(&mission, &truth, &quiet(5)).expect("a day").expectation;
        assert_eq!(calm.observed_truth, calm.results, "a quiet day counts every team's own copy");
        let rough = Options { miscounts: 0.5, ..noisy(5) };
        let rough = simulate(&mission, &truth, &rough).expect("a day").expectation;
        assert!(rough.messages.miscounts > 10, "{:?}", rough.messages);
        assert_eq!(rough.observed_truth, calm.results);
        assert_ne!(rough.results, rough.observed_truth, "a later miscounted copy counts until settled");
        assert_eq!(rough.store.quarantined as u64, rough.messages.spoofed, "a miscount adds up: accepted");
    }
}
