//! Realistic reports for a mission, made deterministically from a seed: teams visiting stations
//! and filing every kind, with answers that satisfy the forms and counting protocols that add up.
//! The simulator publishes them; the tests use them as fixtures.

use chrono::{DateTime, Duration, FixedOffset, TimeZone as _};
use pollwatch_model::{
    Answer, AnswerType, Assessment, Content, CountingBody, IncidentBody, IncidentCategory, Mission, Protocol,
    Report, ReportKind, Severity, Station,
};

/// A small, fast pseudo-random generator (xorshift64*): the same seed gives the same reports.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Bishkek's offset, in which devices stamp their reports.
fn bishkek() -> FixedOffset {
    FixedOffset::east_opt(6 * 3600).expect("a valid offset")
}

fn at(hour: u32, minute: u32) -> DateTime<FixedOffset> {
    bishkek().with_ymd_and_hms(2021, 1, 10, hour, minute, 0).single().expect("a valid time")
}

/// The reports a team files at one station over the day, in the order they file them.
pub const DAY: [ReportKind; 7] = [
    ReportKind::Arrival,
    ReportKind::Opening,
    ReportKind::Voting,
    ReportKind::Closing,
    ReportKind::Counting,
    ReportKind::Incident,
    ReportKind::Departure,
];

/// `n` accepted reports for `mission`: teams visiting stations and filing every kind, with
/// answers that satisfy the forms and counting protocols that add up.
pub fn reports(mission: &Mission, n: usize, seed: u64) -> Vec<Report> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let station = &mission.stations[(i / DAY.len()) % mission.stations.len()];
            let observer = &mission.observers[(i / DAY.len()) % mission.observers.len()];
            let kind = DAY[i % DAY.len()];
            report(mission, station, &observer.id, kind, &mut rng)
        })
        .collect()
}

/// One report of `kind` from `observer` at `station`.
pub fn report(
    mission: &Mission,
    station: &Station,
    observer: &str,
    kind: ReportKind,
    rng: &mut Rng,
) -> Report {
    let (hour, minute) = match kind {
        ReportKind::Arrival => (7, 30),
        ReportKind::Opening => (8, 10),
        ReportKind::Voting => (10 + rng.below(8) as u32, rng.below(60) as u32),
        ReportKind::Closing => (20, 5),
        ReportKind::Counting => (22, rng.below(60) as u32),
        ReportKind::Incident => (9 + rng.below(10) as u32, rng.below(60) as u32),
        ReportKind::Departure => (23, 30),
    };
    // Teams do not all write at the same second.
    let observed_at = at(hour, minute) + Duration::seconds(rng.below(60) as i64);
    let protocols =
        |rng: &mut Rng| mission.contests.iter().map(|c| protocol(station, &c.id, &c.choices, rng)).collect();
    let content = content(kind, observed_at, protocols, rng);
    let submitted_at = observed_at + Duration::minutes(rng.below(20) as i64);
    compose(mission, station, observer, observed_at, submitted_at, content, rng)
}

/// What a report of `kind` observed at `observed_at` holds: nothing more than its kind, an
/// incident, or counting protocols (from `protocols`).
pub fn content(
    kind: ReportKind,
    observed_at: DateTime<FixedOffset>,
    protocols: impl FnOnce(&mut Rng) -> Vec<Protocol>,
    rng: &mut Rng,
) -> Content {
    match kind {
        ReportKind::Arrival => Content::Arrival,
        ReportKind::Departure => Content::Departure,
        ReportKind::Opening => Content::Opening,
        ReportKind::Voting => Content::Voting,
        ReportKind::Closing => Content::Closing,
        ReportKind::Counting => Content::Counting(CountingBody { protocols: protocols(rng) }),
        ReportKind::Incident => incident(observed_at, rng),
    }
}

/// An incident of a random category and severity that occurred shortly before `observed_at`.
pub fn incident(observed_at: DateTime<FixedOffset>, rng: &mut Rng) -> Content {
    Content::Incident(IncidentBody {
        category: IncidentCategory::ALL[rng.below(IncidentCategory::ALL.len() as u64) as usize],
        // Most incidents are minor; a few are critical.
        severity: Severity::ALL[[0, 0, 0, 0, 1, 1, 1, 2, 2, 3][rng.below(10) as usize]],
        description: "Observed by the team and reported to the PEC chair.".into(),
        occurred_at: observed_at - Duration::minutes(10),
    })
}

/// A first revision with `content`, filed by `observer` at `station`: answers that satisfy the
/// mission's form for its kind, an overall assessment where the kind has one, and a UUIDv7 id
/// from the submission time.
pub fn compose(
    mission: &Mission,
    station: &Station,
    observer: &str,
    observed_at: DateTime<FixedOffset>,
    submitted_at: DateTime<FixedOffset>,
    content: Content,
    rng: &mut Rng,
) -> Report {
    let kind = content.kind();
    let answers = mission
        .forms
        .get(&kind)
        .map(|form| {
            form.questions
                .iter()
                .map(|q| {
                    let answer = match &q.answer {
                        AnswerType::YesNo => Answer::YesNo(rng.below(10) != 0),
                        AnswerType::Number { min, max } => {
                            Answer::Number(*min + rng.below((max - min).min(50) as u64 + 1) as i64)
                        }
                        AnswerType::Choice { choices } => {
                            Answer::Text(choices[rng.below(choices.len() as u64) as usize].clone())
                        }
                        AnswerType::Text { .. } => Answer::Text("Nothing further to note.".into()),
                    };
                    (q.code.clone(), answer)
                })
                .collect()
        })
        .unwrap_or_default();
    let assessment = match kind {
        ReportKind::Opening | ReportKind::Voting | ReportKind::Closing | ReportKind::Counting => {
            Some(Assessment::ALL[[0, 1, 1, 1, 1, 1, 1, 2, 2, 3][rng.below(10) as usize]])
        }
        _ => None,
    };
    Report {
        schema_version: 1,
        report_id: uuid_v7(submitted_at.timestamp_millis(), rng),
        revision: 1,
        mission: mission.id.clone(),
        observer: observer.to_owned(),
        station: station.code.clone(),
        observed_at,
        submitted_at,
        location: station.lat.zip(station.lon).map(|(lat, lon)| pollwatch_model::Location {
            lat,
            lon,
            accuracy: Some(15.0),
        }),
        answers,
        assessment,
        attachments: Vec::new(),
        content,
    }
}

/// A UUIDv7 (RFC 9562): the Unix time in milliseconds when the device wrote the report, then
/// random bits. Our publisher writes these, as the wire format recommends.
pub fn uuid_v7(unix_ms: i64, rng: &mut Rng) -> uuid::Uuid {
    let millis = u64::try_from(unix_ms).expect("a time after 1970") & 0xffff_ffff_ffff;
    let high = millis << 16 | 0x7000 | (rng.next_u64() & 0x0fff);
    let low = 0x8000_0000_0000_0000 | (rng.next_u64() & 0x3fff_ffff_ffff_ffff);
    uuid::Uuid::from_u64_pair(high, low)
}

/// A protocol that adds up, with turnout around 40 % and one candidate well ahead.
fn protocol(
    station: &Station,
    contest: &str,
    choices: &[pollwatch_model::Choice],
    rng: &mut Rng,
) -> Protocol {
    let registered = station.registered_voters;
    let received = registered + registered / 50;
    let issued = registered * (30 + rng.below(20) as u32) / 100;
    let spoiled = rng.below(4) as u32;
    let in_box = issued - rng.below(u64::from(issued.min(3))) as u32;
    let invalid = in_box * rng.below(3) as u32 / 100;
    let mut valid = in_box - invalid;
    let mut votes = std::collections::BTreeMap::new();
    for (i, choice) in choices.iter().enumerate() {
        let share = if i + 1 == choices.len() {
            valid
        } else if i == 0 {
            valid * 3 / 5
        } else {
            (valid / 8).min(rng.below(u64::from(valid / 4 + 1)) as u32)
        };
        votes.insert(choice.code.clone(), share);
        valid -= share;
    }
    Protocol {
        contest: contest.to_owned(),
        registered_voters: registered,
        ballots_received: received,
        ballots_issued: issued,
        ballots_spoiled: spoiled,
        ballots_unused: received - issued - spoiled,
        ballots_in_box: in_box,
        invalid,
        votes,
    }
}
