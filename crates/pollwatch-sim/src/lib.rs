//! A simulated election day for a mission: observer teams travel between the stations they are
//! deployed to and file arrival, opening, voting, closing, counting, incident and departure
//! reports; counting protocols come from a count drawn to match a ground truth. On top of that,
//! what field devices really do: resend, deliver late, correct a report with a higher revision,
//! send malformed messages, and send a report in another observer's name.
//!
//! Everything here is deterministic from the seed and does no I/O: the CLI publishes the
//! messages and writes the [`Expectation`] — what the store and the dead-letter queue must hold
//! once the worker has taken every message. What the worker makes of each message is not guessed
//! here: it is the worker's own judgement ([`pollwatch_model::judge`]) under `Options::rules`.

mod expect;
pub mod generate;
mod malform;
pub mod truth;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone as _, Utc};
use pollwatch_model::{
    Answer, Assessment, Content, CountingBody, Envelope, Mission, Observer, RejectCode, Report, ReportKind,
    Rules, Station, judge,
};

pub use expect::{Expectation, MessageCounts, StoreCounts};
pub use malform::MALFORMATIONS;
pub use truth::{Count, GroundTruth, TruthError};

use crate::generate::{Rng, compose, content};
use pollwatch_publish::Message;

/// How the day goes wrong, and how the worker judges senders.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Share of reports a device sends twice (it did not see the broker's confirm).
    pub resends: f64,
    /// Share of reports sent late, after reports written later (the device was offline).
    pub out_of_order: f64,
    /// Share of reports first sent with a mistake and corrected by revision 2.
    pub corrections: f64,
    /// Malformed messages, as a share of the reports.
    pub malformed: f64,
    /// Reports sent from one observer's device in another observer's name, as a share of the
    /// reports. Needs `senders`.
    pub spoofed: f64,
    /// Share of counting reports that a second team copies too, with a slip that still adds up
    /// (the two leading choices' votes swapped, in every contest), a little later: the station
    /// is then disputed until a reviewer settles it.
    pub miscounts: f64,
    /// Put each device's broker user in `user_id`, as devices with their own accounts do.
    pub senders: bool,
    /// The rules the worker judges by (`ingest.max_body_bytes`, `ingest.require_sender_auth`:
    /// whether it dead-letters reports not sent by the observer's own device or holds them for
    /// review).
    pub rules: Rules,
    /// Where the observers go.
    pub deployment: Deployment,
}

/// How a mission deploys its observers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Deployment {
    /// Teams travel between seven to nine stations of a region, opening at the first and counting
    /// at the last, as international missions deploy them.
    #[default]
    Teams,
    /// One observer at each of these stations (codes of the roster) all day, from opening to the
    /// count, as citizen networks deploy them for a quick count: the roster's observers in roster
    /// order, one to each station in the order given.
    Stations(Vec<String>),
}

/// Why a message is in the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// A report, sent when it was written.
    Report,
    /// A report sent late, after reports written later.
    Late,
    /// The same message again.
    Resend,
    /// Revision 2 of a report whose revision 1 had a mistake.
    Correction,
    /// A broken copy of a report, made to be rejected with this code.
    Malformed(RejectCode),
    /// A counting report sent from one observer's device in another observer's name.
    Spoofed,
    /// A second team's copy of a station's protocol, with a slip that still adds up.
    Miscount,
}

/// What the worker does with a message: its judgement, as [`fate`] works it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Accept it: store it, or see it is a duplicate or an older revision.
    Accepted { report: Box<Report>, quarantined: bool },
    /// Dead-letter it with this code.
    DeadLettered(RejectCode),
}

/// One message of the day.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// When the device sends it, by election day's clock.
    pub at: DateTime<FixedOffset>,
    pub why: Why,
    pub message: Message,
    pub fate: Fate,
}

/// What the worker makes of `message` when it arrives at `at`: [`judge`] under `rules` decides;
/// an accepted report with flags is held for review.
pub fn fate(mission: &Mission, rules: Rules, message: &Message, at: DateTime<FixedOffset>) -> Fate {
    let envelope = Envelope {
        body: &message.body,
        content_type: message.content_type.as_deref(),
        content_encoding: None,
        user_id: message.user_id.as_deref(),
    };
    match judge(&envelope, mission, rules, at.with_timezone(&Utc)) {
        Ok(accepted) => {
            Fate::Accepted { quarantined: !accepted.flags.is_empty(), report: Box::new(accepted.report) }
        }
        Err(rejection) => Fate::DeadLettered(rejection.code),
    }
}

/// A simulated day: the messages in the order they are sent, and what must come of them.
#[derive(Debug, Clone)]
pub struct Day {
    pub messages: Vec<Planned>,
    pub expectation: Expectation,
}

/// Chance that a team witnesses an incident during one visit.
const INCIDENT_PER_VISIT: u64 = 10;

/// A mission the simulator cannot make a day for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsimulable(String);

/// Simulates election day for `mission`, its counting protocols drawn from `truth`.
pub fn simulate(mission: &Mission, truth: &GroundTruth, options: &Options) -> Result<Day, Unsimulable> {
    if mission.observers.is_empty() {
        return Err(Unsimulable(format!("mission {} has no observers to file reports", mission.id)));
    }
    let (teams, routes) = match &options.deployment {
        Deployment::Teams => {
            if mission.stations.iter().all(|s| s.abroad) {
                return Err(Unsimulable(format!(
                    "mission {} has no stations at home for its teams to visit",
                    mission.id
                )));
            }
            (teams(mission), None)
        }
        Deployment::Stations(codes) => {
            let (teams, routes) = posted(mission, codes)?;
            (teams, Some(routes))
        }
    };
    if options.senders && options.spoofed > 0.0 {
        // A spoof names any observer of the roster but the sender's team, at a station at home.
        if self::teams(mission).len() < 2 {
            return Err(Unsimulable(format!(
                "mission {} has one team: a spoofed report names an observer of another team",
                mission.id
            )));
        }
        if mission.stations.iter().all(|s| s.abroad) {
            return Err(Unsimulable(format!(
                "mission {} has no stations at home for a spoofed report to name",
                mission.id
            )));
        }
    }
    let mut rng = Rng::new(options.seed);
    let count = truth::draw(mission, truth, &mut rng);
    let station_index: BTreeMap<&str, usize> =
        mission.stations.iter().enumerate().map(|(i, s)| (s.code.as_str(), i)).collect();
    let sender = |observer: &Observer| options.senders.then(|| observer.device_user.clone());

    // Each team's reports, in the order they write them.
    let mut filed: Vec<(Report, Option<String>)> = Vec::new();
    let routes = routes.unwrap_or_else(|| deploy(mission, teams.len(), &mut rng));
    for (team, route) in teams.iter().zip(&routes) {
        let mut day = TeamDay {
            mission,
            count: &count,
            station_index: &station_index,
            team,
            turn: 0,
            filed: Vec::new(),
        };
        match (&options.deployment, route.as_slice()) {
            (Deployment::Stations(_), [station]) => day.stay(station, &mut rng),
            _ => day.walk(route, &mut rng),
        }
        filed.extend(day.filed.into_iter().map(|(report, observer)| (report, sender(observer))));
    }

    let mut messages = Vec::new();
    let reports = filed.len();
    for (report, user_id) in filed {
        let mut at = report.submitted_at;
        let mut why = Why::Report;
        if chance(&mut rng, options.out_of_order) {
            at += Duration::minutes(20 + rng.below(160) as i64);
            why = Why::Late;
        }
        let first = if chance(&mut rng, options.corrections) {
            let mistaken = mistake(&report, &mut rng);
            let mut corrected = report.clone();
            corrected.revision = 2;
            corrected.submitted_at = report.submitted_at + Duration::minutes(10 + rng.below(50) as i64);
            messages.push(planned(
                mission,
                options,
                corrected.submitted_at,
                Why::Correction,
                &corrected,
                &user_id,
            ));
            planned(mission, options, at, why, &mistaken, &user_id)
        } else {
            planned(mission, options, at, why, &report, &user_id)
        };
        if report.kind() == ReportKind::Counting && chance(&mut rng, options.miscounts) {
            messages.push(miscount(mission, &report, options, &mut rng));
        }
        if chance(&mut rng, options.resends) {
            let again = Planned {
                at: first.at + Duration::seconds(5 + rng.below(300) as i64),
                why: Why::Resend,
                ..first.clone()
            };
            messages.push(again);
        }
        messages.push(first);
    }

    // Malformed messages, each a broken copy of a report of the day, every way in turn.
    let originals: Vec<(DateTime<FixedOffset>, Message)> =
        messages.iter().filter(|m| m.why != Why::Resend).map(|m| (m.at, m.message.clone())).collect();
    if !originals.is_empty() {
        for k in 0..share(reports, options.malformed) {
            let (at, original) = &originals[rng.below(originals.len() as u64) as usize];
            let (message, code) = malform::malform(original, k);
            let at = *at + Duration::seconds(30);
            let fate = fate(mission, options.rules, &message, at);
            messages.push(Planned { at, why: Why::Malformed(code), message, fate });
        }
    }

    // Counting protocols sent from one observer's device in another observer's name, with votes
    // moved to the runner-up.
    if options.senders {
        for _ in 0..share(reports, options.spoofed) {
            messages.push(spoof(mission, &count, options, &mut rng));
        }
    }

    messages.sort_by_key(|m| m.at);
    let expectation = Expectation::of(mission, options, &count, &messages);
    Ok(Day { messages, expectation })
}

/// `rate` of `n`, rounded.
fn share(n: usize, rate: f64) -> usize {
    (n as f64 * rate.max(0.0)).round() as usize
}

fn chance(rng: &mut Rng, rate: f64) -> bool {
    rate > 0.0 && truth::unit(rng) < rate
}

/// A report as sent at `at`, and what the worker makes of it.
fn planned(
    mission: &Mission,
    options: &Options,
    at: DateTime<FixedOffset>,
    why: Why,
    report: &Report,
    user_id: &Option<String>,
) -> Planned {
    let message = Message::report(report, user_id.clone());
    let fate = fate(mission, options.rules, &message, at);
    Planned { at, why, message, fate }
}

/// The observers of each team, teams in roster order.
fn teams(mission: &Mission) -> Vec<Vec<&Observer>> {
    let mut teams: Vec<(&str, Vec<&Observer>)> = Vec::new();
    for observer in &mission.observers {
        match teams.iter_mut().find(|(team, _)| *team == observer.team) {
            Some((_, members)) => members.push(observer),
            None => teams.push((&observer.team, vec![observer])),
        }
    }
    teams.into_iter().map(|(_, members)| members).collect()
}

/// The teams of a day, and the stations each visits in order.
type TeamsAndRoutes<'a> = (Vec<Vec<&'a Observer>>, Vec<Vec<&'a Station>>);

/// For a deployment to `codes`: the roster's first observers, each a team of one, and the one
/// station each stays at.
fn posted<'a>(mission: &'a Mission, codes: &[String]) -> Result<TeamsAndRoutes<'a>, Unsimulable> {
    if codes.is_empty() {
        return Err(Unsimulable("a deployment to stations needs one station at least".to_owned()));
    }
    if codes.len() > mission.observers.len() {
        return Err(Unsimulable(format!(
            "mission {} has {} observers for {} stations: one observer stays at each",
            mission.id,
            mission.observers.len(),
            codes.len()
        )));
    }
    let mut stations = Vec::with_capacity(codes.len());
    for code in codes {
        let station = mission.station(code).ok_or_else(|| {
            Unsimulable(format!(
                "station {} is not in the roster of mission {}",
                pollwatch_model::echo(code),
                mission.id
            ))
        })?;
        if stations.iter().any(|s: &Vec<&Station>| s[0].code == station.code) {
            return Err(Unsimulable(format!("station {} is named twice", station.code)));
        }
        stations.push(vec![station]);
    }
    let teams = mission.observers.iter().take(codes.len()).map(|o| vec![o]).collect();
    Ok((teams, stations))
}

/// The stations each of `teams` teams visits, in order: teams spread over the regions at home in
/// proportion to their stations, each with its own stations (while the region has enough).
fn deploy<'a>(mission: &'a Mission, teams: usize, rng: &mut Rng) -> Vec<Vec<&'a Station>> {
    let pools: Vec<Vec<&Station>> = mission
        .regions
        .iter()
        .map(|region| mission.stations.iter().filter(|s| s.region == region.code && !s.abroad).collect())
        .filter(|pool: &Vec<&Station>| !pool.is_empty())
        .collect();
    let weights: Vec<f64> = pools.iter().map(|p| p.len() as f64).collect();
    let per_region = truth::apportion(teams as u64, &weights, &vec![u64::MAX; pools.len()]);
    let mut routes = Vec::with_capacity(teams);
    for (mut pool, deployed) in pools.into_iter().zip(per_region) {
        // Fisher-Yates: the region's stations in a random order, dealt out to its teams.
        for i in (1..pool.len()).rev() {
            pool.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut next = 0;
        for _ in 0..deployed {
            let stops = 7 + rng.below(3) as usize;
            routes.push((0..stops).map(|k| pool[(next + k) % pool.len()]).collect());
            next += stops;
        }
    }
    routes
}

/// One team's day, as it is filed.
struct TeamDay<'a> {
    mission: &'a Mission,
    count: &'a Count,
    station_index: &'a BTreeMap<&'a str, usize>,
    team: &'a [&'a Observer],
    /// Team members take turns at filing.
    turn: usize,
    filed: Vec<(Report, &'a Observer)>,
}

/// `time` on election day, in the mission's time zone.
fn on_election_day(mission: &Mission, time: NaiveTime) -> DateTime<FixedOffset> {
    let local = mission.election_day.and_time(time);
    mission.time_zone.from_local_datetime(&local).single().expect("an unambiguous time").fixed_offset()
}

impl<'a> TeamDay<'a> {
    /// Opening at the first station, voting at the middle ones, closing and counting at the
    /// last; arrival and departure at each, and now and then an incident.
    fn walk(&mut self, route: &[&'a Station], rng: &mut Rng) {
        let open = on_election_day(self.mission, self.mission.polls_open);
        let close = on_election_day(self.mission, self.mission.polls_close);
        let minutes =
            |rng: &mut Rng, from: u64, to: u64| Duration::minutes((from + rng.below(to - from)) as i64);
        let (first, rest) = route.split_first().expect("a route has stations");
        let (last, middle) = rest.split_last().expect("a route has two stations or more");

        let arrival = open - minutes(rng, 30, 55);
        let departure = open + minutes(rng, 30, 50);
        self.visit(first, arrival, ReportKind::Opening, open + minutes(rng, 10, 25), departure, rng);
        let mut now = departure;
        for station in middle {
            let arrival = now + minutes(rng, 15, 45);
            // Leave enough time to reach the closing station before the polls close.
            if arrival + Duration::minutes(100) > close {
                break;
            }
            let departure = arrival + minutes(rng, 35, 55);
            self.visit(station, arrival, ReportKind::Voting, arrival + minutes(rng, 15, 35), departure, rng);
            now = departure;
        }
        let arrival =
            (now + minutes(rng, 15, 45)).max(close - minutes(rng, 25, 45)).min(close - Duration::minutes(5));
        self.file(last, ReportKind::Arrival, arrival, rng);
        self.file(last, ReportKind::Closing, close + minutes(rng, 10, 25), rng);
        let counted = close + minutes(rng, 120, 200);
        if rng.below(INCIDENT_PER_VISIT) == 0 {
            self.file(last, ReportKind::Incident, close + minutes(rng, 30, 110), rng);
        }
        self.file(last, ReportKind::Counting, counted, rng);
        self.file(last, ReportKind::Departure, counted + minutes(rng, 10, 25), rng);
    }

    /// A day at one station: arrival before it opens, the opening, voting at midday, the
    /// closing and the count, departure; and now and then an incident.
    fn stay(&mut self, station: &'a Station, rng: &mut Rng) {
        let open = on_election_day(self.mission, self.mission.polls_open);
        let close = on_election_day(self.mission, self.mission.polls_close);
        let minutes =
            |rng: &mut Rng, from: u64, to: u64| Duration::minutes((from + rng.below(to - from)) as i64);
        self.file(station, ReportKind::Arrival, open - minutes(rng, 30, 55), rng);
        self.file(station, ReportKind::Opening, open + minutes(rng, 10, 25), rng);
        // Polling hours of any length: a mission may keep its stations open for minutes only.
        let hours = (close - open).num_minutes().max(2) as u64;
        let midday = open + Duration::minutes(hours as i64 / 2);
        self.file(station, ReportKind::Voting, midday + minutes(rng, 0, (hours / 2).min(60)), rng);
        if rng.below(INCIDENT_PER_VISIT) == 0 {
            self.file(station, ReportKind::Incident, open + minutes(rng, 0, hours), rng);
        }
        self.file(station, ReportKind::Closing, close + minutes(rng, 10, 25), rng);
        let counted = close + minutes(rng, 90, 200);
        self.file(station, ReportKind::Counting, counted, rng);
        self.file(station, ReportKind::Departure, counted + minutes(rng, 10, 25), rng);
    }

    fn visit(
        &mut self,
        station: &'a Station,
        arrival: DateTime<FixedOffset>,
        kind: ReportKind,
        observed_at: DateTime<FixedOffset>,
        departure: DateTime<FixedOffset>,
        rng: &mut Rng,
    ) {
        self.file(station, ReportKind::Arrival, arrival, rng);
        self.file(station, kind, observed_at, rng);
        if rng.below(INCIDENT_PER_VISIT) == 0 {
            let span = (departure - arrival).num_minutes().max(1) as u64;
            self.file(
                station,
                ReportKind::Incident,
                arrival + Duration::minutes(rng.below(span) as i64),
                rng,
            );
        }
        self.file(station, ReportKind::Departure, departure, rng);
    }

    fn file(
        &mut self,
        station: &'a Station,
        kind: ReportKind,
        observed_at: DateTime<FixedOffset>,
        rng: &mut Rng,
    ) {
        let observer = self.team[self.turn % self.team.len()];
        self.turn += 1;
        let protocols = |_: &mut Rng| self.count.stations[self.station_index[station.code.as_str()]].clone();
        let content = content(kind, observed_at, protocols, rng);
        let submitted_at = observed_at + Duration::minutes(1 + rng.below(8) as i64);
        let report = compose(self.mission, station, &observer.id, observed_at, submitted_at, content, rng);
        self.filed.push((report, observer));
    }
}

/// Revision 1 of a report that revision 2 corrects: a counting protocol copied with a slip (which
/// the model flags, so it is held for review), or another assessment, severity or answer.
fn mistake(report: &Report, rng: &mut Rng) -> Report {
    let mut mistaken = report.clone();
    match &mut mistaken.content {
        Content::Counting(body) => {
            // The leading choice's figure copied ten too high: the protocol no longer adds up.
            let protocol = &mut body.protocols[0];
            let leading = protocol.votes.iter().max_by_key(|(_, v)| **v).map(|(c, _)| c.clone());
            if let Some(votes) = leading.and_then(|c| protocol.votes.get_mut(&c)) {
                *votes += 10;
            }
            return mistaken;
        }
        Content::Incident(body) => {
            let others: Vec<_> =
                pollwatch_model::Severity::ALL.into_iter().filter(|s| *s != body.severity).collect();
            body.severity = others[rng.below(others.len() as u64) as usize];
        }
        _ => {
            if let Some(assessment) = &mut mistaken.assessment {
                let others: Vec<_> = Assessment::ALL.into_iter().filter(|a| a != assessment).collect();
                *assessment = others[rng.below(others.len() as u64) as usize];
            } else if let Some(answer) = mistaken.answers.values_mut().find(|a| matches!(a, Answer::YesNo(_)))
            {
                if let Answer::YesNo(yes) = answer {
                    *yes = !*yes;
                }
            } else {
                mistaken.observed_at -= Duration::minutes(5);
            }
        }
    }
    mistaken
}

/// Another team's copy of `report`'s protocols, with the two leading choices' votes swapped in
/// each contest (so that it still adds up and is accepted), observed ten minutes later, from that
/// team's own device.
fn miscount(mission: &Mission, report: &Report, options: &Options, rng: &mut Rng) -> Planned {
    let team = mission.observer(&report.observer).map(|o| o.team.as_str());
    let others: Vec<&Observer> = mission.observers.iter().filter(|o| Some(o.team.as_str()) != team).collect();
    let named = if others.is_empty() {
        &mission.observers[rng.below(mission.observers.len() as u64) as usize]
    } else {
        others[rng.below(others.len() as u64) as usize]
    };
    let mut content = report.content.clone();
    if let Content::Counting(body) = &mut content {
        for protocol in &mut body.protocols {
            let mut ranked: Vec<(String, u32)> =
                protocol.votes.iter().map(|(c, v)| (c.clone(), *v)).collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            if let [(first, a), (second, b), ..] = ranked.as_slice()
                && a != b
            {
                protocol.votes.insert(first.clone(), *b);
                protocol.votes.insert(second.clone(), *a);
            }
        }
    }
    let station = mission.station(&report.station).expect("a team files at stations of the roster");
    let observed_at = report.observed_at + Duration::minutes(10);
    let submitted_at = observed_at + Duration::minutes(2);
    let copy = compose(mission, station, &named.id, observed_at, submitted_at, content, rng);
    let sender = options.senders.then(|| named.device_user.clone());
    planned(mission, options, submitted_at, Why::Miscount, &copy, &sender)
}

/// A counting report for a random station, sent from one observer's device in the name of an
/// observer of another team, with a fifth of the leader's votes moved to the runner-up.
fn spoof(mission: &Mission, count: &Count, options: &Options, rng: &mut Rng) -> Planned {
    let domestic: Vec<usize> = (0..mission.stations.len()).filter(|&i| !mission.stations[i].abroad).collect();
    let s = domestic[rng.below(domestic.len() as u64) as usize];
    let station = &mission.stations[s];
    let device = &mission.observers[rng.below(mission.observers.len() as u64) as usize];
    let others: Vec<&Observer> = mission.observers.iter().filter(|o| o.team != device.team).collect();
    let named = others[rng.below(others.len() as u64) as usize];
    let mut protocols = count.stations[s].clone();
    for protocol in &mut protocols {
        let mut ranked: Vec<(String, u32)> = protocol.votes.iter().map(|(c, v)| (c.clone(), *v)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if let [(leader, votes), (runner_up, _), ..] = ranked.as_slice() {
            *protocol.votes.get_mut(leader).expect("a choice") -= votes / 5;
            *protocol.votes.get_mut(runner_up).expect("a choice") += votes / 5;
        }
    }
    let observed_at =
        on_election_day(mission, mission.polls_close) + Duration::minutes(150 + rng.below(60) as i64);
    let submitted_at = observed_at + Duration::minutes(5);
    let content = Content::Counting(CountingBody { protocols });
    let report = compose(mission, station, &named.id, observed_at, submitted_at, content, rng);
    planned(mission, options, submitted_at, Why::Spoofed, &report, &Some(device.device_user.clone()))
}

#[cfg(test)]
pub(crate) mod tests {
    use pollwatch_model::ReportKind;

    use super::*;

    pub(crate) fn kg_2021() -> Mission {
        pollwatch_model::sample::kg_2021()
    }

    pub(crate) fn truth(mission: &Mission) -> GroundTruth {
        GroundTruth::parse(pollwatch_model::sample::KG_2021_GROUND_TRUTH, mission)
            .expect("a valid ground truth")
    }

    /// A day without trouble: every report sent once, on time and right.
    pub(crate) fn quiet(seed: u64) -> Options {
        Options {
            resends: 0.0,
            out_of_order: 0.0,
            corrections: 0.0,
            malformed: 0.0,
            spoofed: 0.0,
            miscounts: 0.0,
            ..options(seed)
        }
    }

    /// A day with far more trouble than usual.
    pub(crate) fn noisy(seed: u64) -> Options {
        Options {
            resends: 0.05,
            out_of_order: 0.2,
            corrections: 0.2,
            malformed: 0.02,
            spoofed: 0.02,
            miscounts: 0.0,
            ..options(seed)
        }
    }

    pub(crate) fn options(seed: u64) -> Options {
        Options {
            seed,
            resends: 0.03,
            out_of_order: 0.05,
            corrections: 0.03,
            malformed: 0.01,
            spoofed: 0.01,
            miscounts: 0.0,
            senders: true,
            rules: Rules { max_body_bytes: 256 * 1024, require_sender_auth: false },
            deployment: Deployment::Teams,
        }
    }

    /// The expectation rests on the worker's judgement of each message; that judgement must be
    /// what the simulator meant each message to be, with and without sender authentication, and
    /// the same whenever the worker gets it: a team's report is accepted (held for review only
    /// when it is a counting slip that a correction follows), a malformed copy is rejected with
    /// the code it was broken for, and a report in another observer's name is held for review,
    /// or rejected as `sender_mismatch` when the worker authenticates senders.
    #[test]
    fn every_message_is_judged_as_the_simulator_meant_it() {
        let mission = kg_2021();
        let truth = truth(&mission);
        for require_sender_auth in [false, true] {
            let options = Options {
                seed: 11,
                resends: 0.05,
                out_of_order: 0.1,
                corrections: 0.1,
                malformed: 0.02,
                spoofed: 0.02,
                miscounts: 0.1,
                senders: true,
                rules: Rules { max_body_bytes: 256 * 1024, require_sender_auth },
                deployment: Deployment::Teams,
            };
            let day = simulate(&mission, &truth, &options).expect("a day");
            let corrected: std::collections::HashSet<uuid::Uuid> = day
                .messages
                .iter()
                .filter(|m| m.why == Why::Correction)
                .filter_map(|m| match &m.fate {
                    Fate::Accepted { report, .. } => Some(report.report_id),
                    Fate::DeadLettered(_) => None,
                })
                .collect();
            let now = Utc::now().fixed_offset();
            for planned in &day.messages {
                assert_eq!(
                    fate(&mission, options.rules, &planned.message, now),
                    planned.fate,
                    "{:?}",
                    planned.why
                );
                match (planned.why, &planned.fate) {
                    (Why::Malformed(code), fate) => assert_eq!(fate, &Fate::DeadLettered(code)),
                    (Why::Spoofed, Fate::Accepted { quarantined: true, .. }) if !require_sender_auth => {}
                    (Why::Spoofed, Fate::DeadLettered(RejectCode::SenderMismatch)) if require_sender_auth => {
                    }
                    (Why::Report | Why::Late | Why::Resend, Fate::Accepted { report, quarantined }) => {
                        let slip =
                            report.kind() == ReportKind::Counting && corrected.contains(&report.report_id);
                        assert!(!quarantined || slip, "{:?} held for review: {report:?}", planned.why);
                    }
                    (Why::Correction | Why::Miscount, Fate::Accepted { quarantined: false, .. }) => {}
                    (why, fate) => panic!("{why:?} judged {fate:?}"),
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_day() {
        let mission = kg_2021();
        let truth = truth(&mission);
        let (a, b) = (
            simulate(&mission, &truth, &options(9)).expect("a day"),
            simulate(&mission, &truth, &options(9)).expect("a day"),
        );
        assert_eq!(a.messages, b.messages);
        assert_ne!(a.messages, simulate(&mission, &truth, &options(10)).expect("a day").messages);
    }

    #[test]
    fn every_team_opens_votes_closes_and_counts_in_order() {
        let mission = kg_2021();
        let day = simulate(&mission, &truth(&mission), &quiet(2)).expect("a day");
        let mut by_team: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
        for planned in &day.messages {
            let Fate::Accepted { report, .. } = &planned.fate else { panic!("only reports") };
            let team = &mission.observer(&report.observer).expect("a roster observer").team;
            by_team.entry(team).or_default().push(report);
        }
        assert_eq!(by_team.len(), 100, "every team files");
        for (team, reports) in &by_team {
            let kinds: Vec<ReportKind> = reports.iter().map(|r| r.kind()).collect();
            assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Opening).count(), 1, "{team}");
            assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Counting).count(), 1, "{team}");
            assert!(kinds.iter().filter(|k| **k == ReportKind::Voting).count() >= 3, "{team}: {kinds:?}");
            let position = |kind| kinds.iter().position(|k| *k == kind).expect("filed");
            assert!(position(ReportKind::Opening) < position(ReportKind::Voting));
            assert!(position(ReportKind::Voting) < position(ReportKind::Closing));
            assert!(position(ReportKind::Closing) < position(ReportKind::Counting));
            // Both members file.
            let filers: std::collections::BTreeSet<&str> =
                reports.iter().map(|r| r.observer.as_str()).collect();
            assert_eq!(filers.len(), 2, "{team}");
        }
    }

    #[test]
    fn every_report_of_the_day_is_accepted_by_the_model_as_planned() {
        let mission = kg_2021();
        let day = simulate(&mission, &truth(&mission), &options(5)).expect("a day");
        let mut quarantined = 0;
        for planned in &day.messages {
            let Fate::Accepted { report, quarantined: held } = &planned.fate else { continue };
            let context = pollwatch_model::Context {
                mission: &mission,
                now: Utc::now(),
                sender: planned.message.user_id.as_deref(),
            };
            let checked = pollwatch_model::check(&planned.message.body, &context).expect("accepted");
            assert_eq!(&checked.report, report.as_ref());
            assert_eq!(
                checked.is_quarantined(),
                *held,
                "{:?} {:?}: {:?}",
                planned.why,
                report.kind(),
                checked.flags
            );
            quarantined += usize::from(*held);
        }
        assert!(quarantined > 0, "corrections and spoofs are held for review");
    }

    #[test]
    fn the_anomalies_come_at_their_rates() {
        let mission = kg_2021();
        let day = simulate(&mission, &truth(&mission), &options(6)).expect("a day");
        let counts = &day.expectation.messages;
        let reports = counts.reports as f64;
        assert!(reports > 2_000.0, "{counts:?}");
        let near = |n: u64, rate: f64| (n as f64 - reports * rate).abs() <= (reports * rate * 0.5).max(3.0);
        assert!(near(counts.resends, 0.03), "{counts:?}");
        assert!(near(counts.late, 0.05), "{counts:?}");
        assert!(near(counts.corrections, 0.03), "{counts:?}");
        assert_eq!(counts.malformed, (reports * 0.01).round() as u64);
        assert_eq!(counts.spoofed, (reports * 0.01).round() as u64);
        assert_eq!(counts.total as usize, day.messages.len());
        assert!(day.messages.windows(2).all(|w| w[0].at <= w[1].at), "sent in time order");
    }

    /// Deployed to stations, each observer stays at one all day and counts there: the station's
    /// own protocols, from the drawn count, one counting report a station.
    #[test]
    fn a_deployment_to_stations_posts_one_observer_at_each_all_day() {
        let mission = kg_2021();
        let truth = truth(&mission);
        // Every fourteenth station, abroad ones too: 177 stations for 200 observers.
        let codes: Vec<String> = mission.stations.iter().step_by(14).map(|s| s.code.clone()).collect();
        assert!(mission.stations.iter().step_by(14).any(|s| s.abroad));
        let options = Options { deployment: Deployment::Stations(codes.clone()), ..quiet(3) };
        let day = simulate(&mission, &truth, &options).expect("a day");
        let count = truth::draw(&mission, &truth, &mut Rng::new(3));
        let mut by_observer: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
        for planned in &day.messages {
            let Fate::Accepted { report, quarantined } = &planned.fate else { panic!("only reports") };
            assert!(!quarantined, "{report:?}");
            by_observer.entry(&report.observer).or_default().push(report);
        }
        assert_eq!(by_observer.len(), codes.len(), "one observer a station");
        for (observer, code) in mission.observers.iter().zip(&codes) {
            let reports = &by_observer[observer.id.as_str()];
            assert!(reports.iter().all(|r| &r.station == code), "{} stays at {code}", observer.id);
            let kinds: Vec<ReportKind> = reports.iter().map(|r| r.kind()).collect();
            let position = |kind| kinds.iter().position(|k| *k == kind).expect("filed");
            assert!(position(ReportKind::Arrival) < position(ReportKind::Opening), "{kinds:?}");
            assert!(position(ReportKind::Opening) < position(ReportKind::Voting), "{kinds:?}");
            assert!(position(ReportKind::Voting) < position(ReportKind::Closing), "{kinds:?}");
            assert!(position(ReportKind::Closing) < position(ReportKind::Counting), "{kinds:?}");
            assert!(position(ReportKind::Counting) < position(ReportKind::Departure), "{kinds:?}");
            let counted: Vec<&Report> =
                reports.iter().copied().filter(|r| r.kind() == ReportKind::Counting).collect();
            let [counting] = counted.as_slice() else {
                panic!("{}: one count, not {}", observer.id, counted.len())
            };
            let Content::Counting(body) = &counting.content else { unreachable!("a counting report") };
            let index = mission.stations.iter().position(|s| &s.code == code).expect("a station");
            assert_eq!(body.protocols, count.stations[index], "{code}");
        }
    }

    /// Polls open ten minutes: the day still fits, every observer still counting.
    #[test]
    fn a_deployment_to_stations_fits_polling_hours_of_any_length() {
        let mut mission = kg_2021();
        mission.polls_close = mission.polls_open + Duration::minutes(10);
        let codes: Vec<String> = mission.stations.iter().take(150).map(|s| s.code.clone()).collect();
        let options = Options { deployment: Deployment::Stations(codes), ..quiet(8) };
        let day = simulate(&mission, &truth(&mission), &options).expect("a day");
        assert_eq!(day.expectation.results["president"].stations_counted, 150);
    }

    #[test]
    fn a_deployment_to_stations_needs_an_observer_for_each_known_station() {
        let mission = kg_2021();
        let truth = truth(&mission);
        let at = |codes: Vec<String>| {
            let options = Options { deployment: Deployment::Stations(codes), ..quiet(3) };
            simulate(&mission, &truth, &options).map(|_| ()).map_err(|e| e.to_string())
        };
        let all: Vec<String> = mission.stations.iter().map(|s| s.code.clone()).collect();
        assert_eq!(
            at(all[..201].to_vec()),
            Err("mission kg-2021 has 200 observers for 201 stations: one observer stays at each".to_owned())
        );
        assert_eq!(
            at(vec!["01001".to_owned(), "x".repeat(150)]),
            Err(format!(
                "station `{}…` (150 characters) is not in the roster of mission kg-2021",
                "x".repeat(100)
            ))
        );
        assert_eq!(
            at(vec!["01001".to_owned(), "01001".to_owned()]),
            Err("station 01001 is named twice".to_owned())
        );
        assert!(at(Vec::new()).is_err());
    }
}
