//! The report wire format, version 1: what a field device sends, as JSON.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only wire format version this pollwatch reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest mission, observer, station, question, contest or choice identifier.
pub const MAX_ID_LEN: usize = 64;
/// Longest free-text checklist answer, in characters.
pub const MAX_ANSWER_TEXT_LEN: usize = 2_000;
/// Longest incident description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 4_000;
/// Most checklist answers in one report.
pub const MAX_ANSWERS: usize = 200;
/// Most attachment references in one report.
pub const MAX_ATTACHMENTS: usize = 20;
/// Most counting protocols in one report.
pub const MAX_PROTOCOLS: usize = 10;
/// Most vote entries in one protocol.
pub const MAX_CHOICES: usize = 100;

/// One observer report. `report_id` and `revision` identify it: a resend repeats both, a
/// correction repeats the id with a higher revision.
// Reports and their parts are read only through `crate::decode`, which reads exactly what the
// schema generated from these types accepts; `Serialize` writes the same wire format back.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(title = "pollwatch observer report, wire format v1")]
pub struct Report {
    /// Always 1 for this format.
    #[schemars(range(min = 1, max = 1))]
    pub schema_version: u32,
    /// Chosen by the device when the report is first written; stable across resends. Any UUID;
    /// UUIDv7 (time first) keeps the store's id indexes append-only.
    pub report_id: Uuid,
    /// 1 for the first version; each correction re-sends the report with a higher revision.
    #[schemars(range(min = 1))]
    pub revision: u32,
    /// The mission id, e.g. `kg-2021`.
    #[schemars(length(min = 1, max = 64))]
    pub mission: String,
    /// The observer's id in the mission roster.
    #[schemars(length(min = 1, max = 64))]
    pub observer: String,
    /// The polling station's code in the mission roster.
    #[schemars(length(min = 1, max = 64))]
    pub station: String,
    /// When the observation was made (RFC 3339 with offset).
    pub observed_at: DateTime<FixedOffset>,
    /// When the device sent this revision (RFC 3339 with offset).
    pub submitted_at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Checklist answers keyed by question code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 200))]
    pub answers: BTreeMap<String, Answer>,
    /// The observer's overall assessment of what was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    /// Photos or documents that travel separately, referenced by checksum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub attachments: Vec<Attachment>,
    /// `kind` and, for counting and incident reports, `body`.
    #[serde(flatten)]
    pub content: Content,
}

/// The report's kind and its kind-specific body.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Content {
    /// The team arrived at the station.
    Arrival,
    /// The team left the station.
    Departure,
    /// The opening of the station.
    Opening,
    /// A visit during voting.
    Voting,
    /// The closing of the station.
    Closing,
    /// The count, with the results protocol of each contest.
    Counting(CountingBody),
    /// Something that went wrong, at any time of the day.
    Incident(IncidentBody),
}

/// The report kinds, without their bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Arrival,
    Departure,
    Opening,
    Voting,
    Closing,
    Counting,
    Incident,
}

impl ReportKind {
    pub const ALL: [Self; 7] = [
        Self::Arrival,
        Self::Departure,
        Self::Opening,
        Self::Voting,
        Self::Closing,
        Self::Counting,
        Self::Incident,
    ];

    /// The wire name, also the routing key suffix (`report.<kind>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Arrival => "arrival",
            Self::Departure => "departure",
            Self::Opening => "opening",
            Self::Voting => "voting",
            Self::Closing => "closing",
            Self::Counting => "counting",
            Self::Incident => "incident",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Content {
    pub fn kind(&self) -> ReportKind {
        match self {
            Self::Arrival => ReportKind::Arrival,
            Self::Departure => ReportKind::Departure,
            Self::Opening => ReportKind::Opening,
            Self::Voting => ReportKind::Voting,
            Self::Closing => ReportKind::Closing,
            Self::Counting(_) => ReportKind::Counting,
            Self::Incident(_) => ReportKind::Incident,
        }
    }
}

impl Report {
    pub fn kind(&self) -> ReportKind {
        self.content.kind()
    }
}

/// Where the device was when the report was written.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Degrees, -90 to 90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Degrees, -180 to 180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// Radius of uncertainty in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub accuracy: Option<f64>,
}

/// A checklist answer: yes/no, a whole number, or text (a choice is its code as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Answer {
    YesNo(bool),
    Number(i64),
    Text(#[schemars(length(max = 2000))] String),
}

/// The observer's overall assessment, on the usual four-point scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Assessment {
    VeryGood,
    Good,
    Bad,
    VeryBad,
}

impl Assessment {
    pub const ALL: [Self; 4] = [Self::VeryGood, Self::Good, Self::Bad, Self::VeryBad];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryGood => "very_good",
            Self::Good => "good",
            Self::Bad => "bad",
            Self::VeryBad => "very_bad",
        }
    }
}

/// A file that belongs to the report but travels separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// SHA-256 of the file, 64 lower-case hexadecimal digits.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// e.g. `image/jpeg`.
    #[schemars(length(min = 3, max = 100))]
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// What the team saw at the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountingBody {
    /// One results protocol per contest counted at the station.
    #[schemars(length(min = 1, max = 10))]
    pub protocols: Vec<Protocol>,
}

/// A station's results protocol for one contest, as the observers copied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// The contest id, e.g. `president` or `referendum`.
    #[schemars(length(min = 1, max = 64))]
    pub contest: String,
    /// Voters on the station's list.
    pub registered_voters: u32,
    pub ballots_received: u32,
    /// Ballots handed to voters.
    pub ballots_issued: u32,
    pub ballots_spoiled: u32,
    pub ballots_unused: u32,
    /// Ballots found in the box at the count.
    pub ballots_in_box: u32,
    /// Ballots found in the box and declared invalid.
    pub invalid: u32,
    /// Valid votes per candidate or option code.
    #[schemars(extend("maxProperties" = 100))]
    pub votes: BTreeMap<String, u32>,
}

impl Protocol {
    /// All valid votes, in a type that cannot overflow.
    pub fn valid_votes(&self) -> u64 {
        self.votes.values().map(|&v| u64::from(v)).sum()
    }
}

/// Something that went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentBody {
    pub category: IncidentCategory,
    pub severity: Severity,
    /// What happened, in the observer's words.
    #[schemars(length(min = 1, max = 4000))]
    pub description: String,
    /// When it happened (RFC 3339 with offset).
    pub occurred_at: DateTime<FixedOffset>,
}

/// How serious an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

macro_rules! categories {
    ($($(#[doc = $doc:literal])+ $variant:ident => $code:literal,)+) => {
        /// The fixed incident taxonomy, after the categories OSCE/ODIHR-style missions report on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum IncidentCategory {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl IncidentCategory {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)+ }
            }
        }
    };
}

categories! {
    /// Ballots put into the box other than by voters casting their own.
    BallotStuffing => "ballot_stuffing",
    /// A person voting more than once.
    MultipleVoting => "multiple_voting",
    /// Pre-marked ballots passed between voters (a "carousel").
    CarouselVoting => "carousel_voting",
    /// Money, goods or favours offered for votes.
    VoteBuying => "vote_buying",
    /// Voters pressured, threatened or told how to vote.
    PressureOnVoters => "pressure_on_voters",
    /// Several people marking ballots together.
    GroupVoting => "group_voting",
    /// A voter's choice could be seen by others.
    SecrecyViolated => "secrecy_violated",
    /// People present who have no right to be there, or interfering.
    UnauthorisedPersons => "unauthorised_persons",
    /// Observers kept from seeing or recording the process.
    ObserverObstructed => "observer_obstructed",
    /// The results protocol was not posted for the public.
    ProtocolNotPosted => "protocol_not_posted",
    /// Voters missing from the list, or people on it who should not be.
    VoterListIrregularities => "voter_list_irregularities",
    /// Voters allowed to vote without their identity checked.
    IdentityNotChecked => "identity_not_checked",
    /// Voting for others, e.g. with their documents.
    ProxyVoting => "proxy_voting",
    /// Campaigning inside or near the station on election day.
    CampaigningNearStation => "campaigning_near_station",
    /// Violence or intimidation at or near the station.
    ViolenceOrIntimidation => "violence_or_intimidation",
    /// Police or security forces interfering with the process.
    SecurityForcesInterference => "security_forces_interference",
    /// A ballot box not sealed, or its seals broken or tampered with.
    BallotBoxTampering => "ballot_box_tampering",
    /// The count not done as the law requires.
    CountingProcedureViolated => "counting_procedure_violated",
    /// Figures changed, or a protocol filled in before or apart from the count.
    ResultsFalsified => "results_falsified",
    /// Voting or counting equipment failed (scanners, biometric readers).
    EquipmentFailure => "equipment_failure",
    /// Voters with disabilities, or voters generally, could not get in.
    StationInaccessible => "station_inaccessible",
    /// Anything else; the description says what.
    Other => "other",
}
