//! What the results are: the rules by which the store turns the reports it holds into counts,
//! and the result rule as pure code, so that anything that predicts or checks the store's figures
//! applies the store's rule rather than a copy of it.
//!
//! The store (`pollwatch-store`) applies these rules:
//!
//! - **Current revision.** Of a report id's revisions, the highest is current; a lower one that
//!   arrives later is kept in the history and changes nothing. A second version of one revision
//!   (same id and revision, other content) is kept aside as a conflict: the first stays current.
//!   A report keeps its observer and kind: a revision from another observer, or of another kind,
//!   is a conflict and never becomes current.
//! - **Quarantine.** A current report with flags is quarantined: it counts for coverage and for
//!   observer activity (the team was there), but not for findings (assessments, incidents) or
//!   results, until an operator releases it.
//! - **Station result.** For each contest, a station of the mission's roster has at most one
//!   result: the protocol for that contest of the station's current, unquarantined counting
//!   report that comes first by [`Precedence`] — the latest observation, then the greatest report
//!   id — among those that *have* a protocol for the contest. A later report that lacks the
//!   contest does not hide an earlier one that has it ([`station_result`]). A contest's results
//!   are the sum of its stations' results ([`ContestResults::tally`]).
//!
//! The store applies the station result rule in SQL, for speed; its tests put the cases where
//! the rule is easy to get wrong into a store and compare its results with
//! [`ContestResults::tally`] of the same reports.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::mission::{Contest, Mission};
use crate::report::{Content, Protocol, Report};

/// A contest's tabulation over the stations with a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestResults {
    pub contest: String,
    pub stations_counted: i64,
    pub registered_voters: i64,
    pub ballots_in_box: i64,
    pub invalid: i64,
    /// Votes per candidate or option, in ballot order; every choice is listed. Written as a map
    /// from choice code to votes, in that order.
    #[serde(with = "in_ballot_order")]
    pub votes: Vec<(String, i64)>,
}

impl ContestResults {
    /// Nothing counted yet, with every choice (in ballot order) at zero.
    pub fn empty(contest: impl Into<String>, choices: impl IntoIterator<Item = String>) -> Self {
        Self {
            contest: contest.into(),
            stations_counted: 0,
            registered_voters: 0,
            ballots_in_box: 0,
            invalid: 0,
            votes: choices.into_iter().map(|choice| (choice, 0)).collect(),
        }
    }

    /// Adds one station's result. Votes for a code that is not one of the contest's choices are
    /// left out, as the store lists only the contest's choices (validation rejects such votes).
    pub fn add(&mut self, protocol: &Protocol) {
        self.stations_counted += 1;
        self.registered_voters += i64::from(protocol.registered_voters);
        self.ballots_in_box += i64::from(protocol.ballots_in_box);
        self.invalid += i64::from(protocol.invalid);
        for (choice, votes) in &mut self.votes {
            if let Some(n) = protocol.votes.get(choice) {
                *votes += i64::from(*n);
            }
        }
    }

    /// Tabulates `contest` over `reports`, which are the current, unquarantined reports of
    /// `mission` (of any kind, in any order): the sum of the [`station_result`] of each station
    /// of the roster. Reports of another mission or from a station outside the roster count for
    /// nothing.
    pub fn tally<'a>(
        mission: &Mission,
        contest: &Contest,
        reports: impl IntoIterator<Item = &'a Report>,
    ) -> Self {
        let mut stations: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
        for report in reports {
            if report.mission == mission.id && mission.station(&report.station).is_some() {
                stations.entry(report.station.as_str()).or_default().push(report);
            }
        }
        let mut results = Self::empty(&contest.id, contest.choices.iter().map(|c| c.code.clone()));
        for reports in stations.into_values() {
            if let Some(protocol) = station_result(reports, &contest.id) {
                results.add(protocol);
            }
        }
        results
    }

    /// Adds another tabulation of the same contest (a region's, say) to this one.
    pub fn absorb(&mut self, other: &Self) {
        debug_assert_eq!(self.contest, other.contest, "tabulations of one contest");
        self.stations_counted += other.stations_counted;
        self.registered_voters += other.registered_voters;
        self.ballots_in_box += other.ballots_in_box;
        self.invalid += other.invalid;
        for (choice, votes) in &mut self.votes {
            *votes += other.votes_for(choice);
        }
    }

    /// The votes for `choice` (0 for a code that is not among the choices).
    pub fn votes_for(&self, choice: &str) -> i64 {
        self.votes.iter().find(|(code, _)| code == choice).map_or(0, |(_, votes)| *votes)
    }

    /// All valid votes.
    pub fn valid(&self) -> i64 {
        self.votes.iter().map(|(_, n)| n).sum()
    }

    /// Ballots in the box over registered voters, at the stations counted.
    pub fn turnout(&self) -> f64 {
        if self.registered_voters == 0 {
            0.0
        } else {
            self.ballots_in_box as f64 / self.registered_voters as f64
        }
    }
}

/// Which of a station's counting reports comes first for its result: the greater precedence.
///
/// The observation time is taken to the microsecond, the precision the store keeps, so that two
/// reports the store holds as observed at the same time tie here too. Report ids compare as the
/// store compares their text (lower-case hyphenated, byte by byte), which is the order of
/// [`Uuid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Precedence {
    /// The observation time, in microseconds since 1970 (first: the latest observation wins).
    pub observed_at_us: i64,
    /// The tie-break: the greatest id wins.
    pub report_id: Uuid,
}

impl Precedence {
    pub fn of(report: &Report) -> Self {
        Self { observed_at_us: report.observed_at.timestamp_micros(), report_id: report.report_id }
    }
}

/// The protocol for `contest` that is a station's result, given the station's current,
/// unquarantined reports: that of the report of greatest [`Precedence`] among those with a
/// protocol for `contest`. `None` when none has one.
pub fn station_result<'a>(
    reports: impl IntoIterator<Item = &'a Report>,
    contest: &str,
) -> Option<&'a Protocol> {
    reports
        .into_iter()
        .filter_map(|report| Some((Precedence::of(report), protocol(report, contest)?)))
        .max_by_key(|(precedence, _)| *precedence)
        .map(|(_, protocol)| protocol)
}

/// The report's protocol for `contest`, if it is a counting report with one.
fn protocol<'a>(report: &'a Report, contest: &str) -> Option<&'a Protocol> {
    match &report.content {
        Content::Counting(body) => body.protocols.iter().find(|p| p.contest == contest),
        _ => None,
    }
}

/// Votes as a map from choice code to votes that keeps its order both ways (a `BTreeMap` would
/// sort the codes, losing the ballot order).
mod in_ballot_order {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        votes: &[(String, i64)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(votes.iter().map(|(choice, n)| (choice, n)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, i64)>, D::Error> {
        deserializer.deserialize_map(InOrder)
    }

    struct InOrder;

    impl<'de> Visitor<'de> for InOrder {
        type Value = Vec<(String, i64)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map from choice code to votes")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut votes = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                votes.push(entry);
            }
            Ok(votes)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::decode;
    use crate::test_support::{counting, mission};

    /// A counting report at `station` with `id`, observed at `observed_at`, whose president
    /// protocol has `a` votes for candidate a (and the referendum protocol unless `president_only`).
    fn report(id: &str, station: &str, observed_at: &str, a: u32, president_only: bool) -> Report {
        let mut report = counting();
        report["report_id"] = json!(id);
        report["station"] = json!(station);
        report["observed_at"] = json!(observed_at);
        report["body"]["protocols"][0]["votes"]["a"] = json!(a);
        if president_only {
            report["body"]["protocols"].as_array_mut().expect("protocols").pop();
        }
        decoded(&report)
    }

    fn decoded(report: &Value) -> Report {
        decode(&serde_json::to_vec(report).expect("JSON")).expect("a report")
    }

    fn votes_for_a(protocol: Option<&Protocol>) -> Option<u32> {
        protocol.map(|p| p.votes["a"])
    }

    const ID_1: &str = "00000000-0000-4000-8000-000000000001";
    const ID_2: &str = "00000000-0000-4000-8000-000000000002";
    const ID_3: &str = "00000000-0000-4000-8000-000000000003";

    #[test]
    fn the_latest_observation_is_the_station_result() {
        let early = report(ID_2, "S1", "2021-01-10T21:00:00+06:00", 1, false);
        let late = report(ID_1, "S1", "2021-01-10T21:30:00+06:00", 2, false);
        assert_eq!(votes_for_a(station_result([&early, &late], "president")), Some(2));
        assert_eq!(votes_for_a(station_result([&late, &early], "president")), Some(2), "in any order");
    }

    #[test]
    fn the_greatest_report_id_breaks_a_tie() {
        let one = report(ID_1, "S1", "2021-01-10T21:30:00+06:00", 1, false);
        let three = report(ID_3, "S1", "2021-01-10T15:30:00Z", 3, false); // the same instant
        let two = report(ID_2, "S1", "2021-01-10T21:30:00+06:00", 2, false);
        assert_eq!(votes_for_a(station_result([&one, &three, &two], "president")), Some(3));
    }

    #[test]
    fn times_tie_at_the_microsecond_the_store_keeps() {
        let one = report(ID_1, "S1", "2021-01-10T21:30:00.0000019+06:00", 1, false);
        let two = report(ID_2, "S1", "2021-01-10T21:30:00.0000011+06:00", 2, false);
        assert_eq!(Precedence::of(&one).observed_at_us, Precedence::of(&two).observed_at_us);
        assert_eq!(votes_for_a(station_result([&one, &two], "president")), Some(2));
    }

    #[test]
    fn a_later_report_without_the_contest_does_not_hide_an_earlier_one() {
        let earlier = report(ID_1, "S1", "2021-01-10T21:00:00+06:00", 1, false);
        let later = report(ID_2, "S1", "2021-01-10T21:30:00+06:00", 2, true);
        assert_eq!(votes_for_a(station_result([&earlier, &later], "president")), Some(2));
        let referendum = station_result([&earlier, &later], "referendum");
        assert_eq!(referendum.map(|p| p.votes["yes"]), Some(500), "the earlier report's referendum");
        assert_eq!(station_result([&later], "referendum"), None);
    }

    #[test]
    fn a_tally_sums_one_result_per_roster_station_with_every_choice_in_ballot_order() {
        let mission = mission();
        let president = mission.contest("president").expect("a contest");
        let s1 = report(ID_1, "S1", "2021-01-10T21:00:00+06:00", 400, false);
        let s1_later = report(ID_2, "S1", "2021-01-10T21:30:00+06:00", 410, false);
        let mut s2 = report(ID_3, "S2", "2021-01-10T21:00:00+06:00", 100, false);
        if let Content::Counting(body) = &mut s2.content {
            body.protocols[0].votes.remove("b");
        }
        let outside =
            report("00000000-0000-4000-8000-000000000004", "S9", "2021-01-10T21:00:00+06:00", 7, false);
        let voting = decoded(&crate::test_support::voting());
        let results = ContestResults::tally(&mission, president, [&s1, &voting, &s1_later, &s2, &outside]);
        assert_eq!(
            results,
            ContestResults {
                contest: "president".into(),
                stations_counted: 2,
                registered_voters: 2_000,
                ballots_in_box: 1_196,
                invalid: 16,
                votes: vec![("a".into(), 510), ("b".into(), 190)],
            }
        );
        assert_eq!(results.valid(), 700);
        assert!((results.turnout() - 0.598).abs() < 1e-9);
    }

    #[test]
    fn nothing_counted_has_zero_turnout_and_lists_every_choice() {
        let results = ContestResults::empty("referendum", ["yes".to_owned(), "no".to_owned()]);
        assert_eq!(results.votes, vec![("yes".to_owned(), 0), ("no".to_owned(), 0)]);
        assert_eq!((results.valid(), results.turnout()), (0, 0.0));
    }

    #[test]
    fn results_serialise_their_votes_as_a_map_in_ballot_order() {
        let mut results = ContestResults::empty("president", ["zed".to_owned(), "abe".to_owned()]);
        results.votes[0].1 = 3;
        let text = serde_json::to_string(&results).expect("serialises");
        assert!(text.ends_with(r#""votes":{"zed":3,"abe":0}}"#), "{text}");
        let back: ContestResults = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, results);
    }
}
