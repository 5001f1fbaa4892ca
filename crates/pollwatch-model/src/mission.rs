//! A mission definition: the election, its contests, geography, rosters and forms.
//!
//! A mission is a folder of four files, read by [`files`] (feature `mission-files`):
//! `mission.toml` (the election, regions and contests), `forms.toml` (a checklist per report
//! kind), `stations.csv` and `observers.csv` (rosters of thousands of rows).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::report::ReportKind;

#[cfg(feature = "mission-files")]
pub mod files;
#[cfg(feature = "mission-files")]
pub use files::{FORMS_FILE, MISSION_FILE, MissionError, MissionSources, OBSERVERS_FILE, STATIONS_FILE};

/// A mission definition that passed every consistency check.
#[derive(Debug, Clone)]
pub struct Mission {
    pub id: String,
    pub name: String,
    pub election_day: NaiveDate,
    pub time_zone: Tz,
    pub polls_open: NaiveTime,
    pub polls_close: NaiveTime,
    pub regions: Vec<Region>,
    pub contests: Vec<Contest>,
    pub stations: Vec<Station>,
    pub observers: Vec<Observer>,
    pub forms: BTreeMap<ReportKind, Form>,
    station_index: HashMap<String, usize>,
    observer_index: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub code: String,
    pub name: String,
    pub districts: Vec<District>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct District {
    pub code: String,
    pub name: String,
}

/// One race or question on the ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contest {
    pub id: String,
    pub name: String,
    pub kind: ContestKind,
    pub choices: Vec<Choice>,
}

impl Contest {
    pub fn choice(&self, code: &str) -> Option<&Choice> {
        self.choices.iter().find(|c| c.code == code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContestKind {
    /// An election between candidates.
    Candidates,
    /// A referendum between options.
    Options,
}

/// A candidate or a referendum option.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    pub code: String,
    pub name: String,
    pub region: String,
    pub district: Option<String>,
    pub registered_voters: u32,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub abroad: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observer {
    pub id: String,
    pub name: String,
    pub team: String,
    /// The broker user name of the observer's device; reports it sends carry it as `user_id`.
    pub device_user: String,
}

/// The checklist for one report kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub kind: ReportKind,
    pub questions: Vec<Question>,
}

impl Form {
    pub fn question(&self, code: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.code == code)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub code: String,
    pub text: String,
    pub required: bool,
    pub answer: AnswerType,
}

/// What a question accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerType {
    YesNo,
    Number { min: i64, max: i64 },
    Choice { choices: Vec<String> },
    Text { max_length: usize },
}

impl Mission {
    pub fn station(&self, code: &str) -> Option<&Station> {
        self.station_index.get(code).map(|&i| &self.stations[i])
    }

    pub fn observer(&self, id: &str) -> Option<&Observer> {
        self.observer_index.get(id).map(|&i| &self.observers[i])
    }

    pub fn contest(&self, id: &str) -> Option<&Contest> {
        self.contests.iter().find(|c| c.id == id)
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.code == code)
    }

    /// Registered voters over all stations.
    pub fn registered_voters(&self) -> u64 {
        self.stations.iter().map(|s| u64::from(s.registered_voters)).sum()
    }
}

impl fmt::Display for ContestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Candidates => "candidates",
            Self::Options => "options",
        })
    }
}
