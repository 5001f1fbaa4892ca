//! Reading a mission folder (feature `mission-files`): `mission.toml` and `forms.toml` (TOML),
//! `stations.csv` and `observers.csv`, parsed and cross-checked into a [`Mission`]. A field device's
//! library (`pollwatch-publish`) only takes a parsed mission; the application that embeds it turns
//! this feature on to read the folder.

use std::collections::{BTreeMap, HashSet};

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{
    AnswerType, Choice, Contest, ContestKind, District, Form, Mission, Observer, Question, Region, Station,
};
use crate::report::{MAX_ID_LEN, ReportKind};

/// File names inside a mission folder.
pub const MISSION_FILE: &str = "mission.toml";
pub const FORMS_FILE: &str = "forms.toml";
pub const STATIONS_FILE: &str = "stations.csv";
pub const OBSERVERS_FILE: &str = "observers.csv";

/// The text of a mission folder's four files.
#[derive(Debug, Clone, Copy)]
pub struct MissionSources<'a> {
    pub mission_toml: &'a str,
    pub forms_toml: &'a str,
    pub stations_csv: &'a str,
    pub observers_csv: &'a str,
}

/// Why a mission folder could not be read, with the file and, for rosters, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", .line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct MissionError {
    pub file: &'static str,
    pub line: Option<u64>,
    pub message: String,
}

impl MissionError {
    fn new(file: &'static str, message: impl Into<String>) -> Self {
        Self { file, line: None, message: message.into() }
    }

    fn at(file: &'static str, line: Option<u64>, message: impl Into<String>) -> Self {
        Self { file, line, message: message.into() }
    }
}

// ---- the files as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMission {
    id: String,
    name: String,
    election_day: NaiveDate,
    time_zone: String,
    polls_open: String,
    polls_close: String,
    regions: Vec<RawRegion>,
    contests: Vec<RawContest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    code: String,
    name: String,
    #[serde(default)]
    districts: Vec<District>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContest {
    id: String,
    name: String,
    kind: ContestKind,
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForms {
    forms: Vec<RawForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForm {
    kind: ReportKind,
    questions: Vec<RawQuestion>,
}

/// Type-specific keys are optional here and checked against `type` afterwards, which gives
/// clearer errors than a tagged enum would.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuestion {
    code: String,
    text: String,
    #[serde(rename = "type")]
    kind: String,
    required: bool,
    min: Option<i64>,
    max: Option<i64>,
    choices: Option<Vec<String>>,
    max_length: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    code: String,
    name: String,
    region: String,
    #[serde(default)]
    district: Option<String>,
    registered_voters: u32,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lon: Option<f64>,
    abroad: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserver {
    id: String,
    name: String,
    team: String,
    device_user: String,
}

impl Mission {
    /// Parses and cross-checks a mission folder's files.
    pub fn parse(sources: MissionSources<'_>) -> Result<Self, MissionError> {
        let raw: RawMission = toml::from_str(sources.mission_toml)
            .map_err(|e| MissionError::new(MISSION_FILE, toml_message(&e)))?;
        let forms: RawForms = toml::from_str(sources.forms_toml)
            .map_err(|e| MissionError::new(FORMS_FILE, toml_message(&e)))?;

        let err = |message: String| MissionError::new(MISSION_FILE, message);
        check_id(&raw.id, "mission id").map_err(err)?;
        let time_zone: Tz = raw.time_zone.parse().map_err(|_| {
            err(format!("time_zone `{}` is not an IANA time zone name such as `Asia/Bishkek`", raw.time_zone))
        })?;
        let polls_open = parse_time(&raw.polls_open, "polls_open").map_err(err)?;
        let polls_close = parse_time(&raw.polls_close, "polls_close").map_err(err)?;
        if polls_close <= polls_open {
            return Err(err("polls_close must be later than polls_open".into()));
        }
        let regions = regions(raw.regions).map_err(err)?;
        let contests = contests(raw.contests).map_err(err)?;
        let forms = parse_forms(forms).map_err(|m| MissionError::new(FORMS_FILE, m))?;
        let stations = stations(sources.stations_csv, &regions)?;
        let observers = observers(sources.observers_csv)?;

        let station_index = stations.iter().enumerate().map(|(i, s)| (s.code.clone(), i)).collect();
        let observer_index = observers.iter().enumerate().map(|(i, o)| (o.id.clone(), i)).collect();
        Ok(Self {
            id: raw.id,
            name: raw.name,
            election_day: raw.election_day,
            time_zone,
            polls_open,
            polls_close,
            regions,
            contests,
            stations,
            observers,
            forms,
            station_index,
            observer_index,
        })
    }
}

fn toml_message(error: &toml::de::Error) -> String {
    error.to_string().trim().replace('\n', " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_time(text: &str, key: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("{key} `{text}` is not a time of day like 08:00"))
}

/// Identifiers appear in reports, URLs and CSV exports: keep them short and plain.
fn check_id(id: &str, what: &str) -> Result<(), String> {
    let plain = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if id.is_empty() || id.len() > MAX_ID_LEN || !plain {
        return Err(format!(
            "{what} `{id}` must be 1 to {MAX_ID_LEN} ASCII letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
}

fn unique<'a>(ids: impl IntoIterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for id in ids {
        check_id(id, what)?;
        if !seen.insert(id) {
            return Err(format!("{what} `{id}` appears twice"));
        }
    }
    Ok(())
}

fn regions(raw: Vec<RawRegion>) -> Result<Vec<Region>, String> {
    if raw.is_empty() {
        return Err("a mission needs at least one region".into());
    }
    unique(raw.iter().map(|r| r.code.as_str()), "region code")?;
    for region in &raw {
        unique(
            region.districts.iter().map(|d| d.code.as_str()),
            &format!("district code in region {}", region.code),
        )?;
    }
    Ok(raw.into_iter().map(|r| Region { code: r.code, name: r.name, districts: r.districts }).collect())
}

fn contests(raw: Vec<RawContest>) -> Result<Vec<Contest>, String> {
    if raw.is_empty() {
        return Err("a mission needs at least one contest".into());
    }
    unique(raw.iter().map(|c| c.id.as_str()), "contest id")?;
    for contest in &raw {
        if contest.choices.is_empty() {
            return Err(format!("contest `{}` has no choices", contest.id));
        }
        unique(
            contest.choices.iter().map(|c| c.code.as_str()),
            &format!("choice code in contest {}", contest.id),
        )?;
    }
    Ok(raw
        .into_iter()
        .map(|c| Contest { id: c.id, name: c.name, kind: c.kind, choices: c.choices })
        .collect())
}

fn parse_forms(raw: RawForms) -> Result<BTreeMap<ReportKind, Form>, String> {
    let mut forms = BTreeMap::new();
    for form in raw.forms {
        let kind = form.kind;
        unique(form.questions.iter().map(|q| q.code.as_str()), &format!("question code in the {kind} form"))?;
        let questions = form
            .questions
            .into_iter()
            .map(|q| question(q).map_err(|m| format!("{kind} form: {m}")))
            .collect::<Result<Vec<_>, _>>()?;
        if forms.insert(kind, Form { kind, questions }).is_some() {
            return Err(format!("two forms for kind `{kind}`"));
        }
    }
    Ok(forms)
}

fn question(raw: RawQuestion) -> Result<Question, String> {
    let code = raw.code;
    let stray = |keys: &[(&str, bool)]| -> Result<(), String> {
        match keys.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(format!("question {code}: `{key}` does not apply to type `{}`", raw.kind)),
            None => Ok(()),
        }
    };
    let (has_range, has_choices, has_length) =
        (raw.min.is_some() || raw.max.is_some(), raw.choices.is_some(), raw.max_length.is_some());
    let answer = match raw.kind.as_str() {
        "yes_no" => {
            stray(&[("min/max", has_range), ("choices", has_choices), ("max_length", has_length)])?;
            AnswerType::YesNo
        }
        "number" => {
            stray(&[("choices", has_choices), ("max_length", has_length)])?;
            let (min, max) = (raw.min.unwrap_or(0), raw.max.unwrap_or(i64::MAX));
            if min > max {
                return Err(format!("question {code}: min {min} is above max {max}"));
            }
            AnswerType::Number { min, max }
        }
        "choice" => {
            stray(&[("min/max", has_range), ("max_length", has_length)])?;
            let choices = raw.choices.unwrap_or_default();
            if choices.is_empty() {
                return Err(format!("question {code}: a choice question needs `choices`"));
            }
            unique(choices.iter().map(String::as_str), &format!("choice of question {code}"))?;
            AnswerType::Choice { choices }
        }
        "text" => {
            stray(&[("min/max", has_range), ("choices", has_choices)])?;
            let max_length = raw.max_length.unwrap_or(crate::report::MAX_ANSWER_TEXT_LEN);
            if max_length == 0 || max_length > crate::report::MAX_ANSWER_TEXT_LEN {
                return Err(format!(
                    "question {code}: max_length must be 1 to {}",
                    crate::report::MAX_ANSWER_TEXT_LEN
                ));
            }
            AnswerType::Text { max_length }
        }
        other => {
            return Err(format!(
                "question {code}: type `{other}` is not one of yes_no, number, choice, text"
            ));
        }
    };
    Ok(Question { code, text: raw.text, required: raw.required, answer })
}

/// Reads a CSV roster, each row with its line number (the header is line 1).
fn csv_rows<T: serde::de::DeserializeOwned>(
    file: &'static str,
    text: &str,
) -> Result<Vec<(Option<u64>, T)>, MissionError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| MissionError::new(file, e.to_string()))?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record
            .map_err(|e| MissionError::at(file, e.position().map(csv::Position::line), e.to_string()))?;
        let line = record.position().map(csv::Position::line);
        let row = record.deserialize(Some(&headers)).map_err(|e| {
            let message = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => {
                    match err.field().and_then(|i| headers.get(i as usize)) {
                        Some(column) => format!("column `{column}`: {}", err.kind()),
                        None => err.kind().to_string(),
                    }
                }
                _ => e.to_string(),
            };
            MissionError::at(file, line, message)
        })?;
        rows.push((line, row));
    }
    Ok(rows)
}

fn stations(text: &str, regions: &[Region]) -> Result<Vec<Station>, MissionError> {
    let rows: Vec<(Option<u64>, RawStation)> = csv_rows(STATIONS_FILE, text)?;
    let mut seen = HashSet::new();
    let mut stations = Vec::with_capacity(rows.len());
    for (line, raw) in rows {
        let fail = |message: String| MissionError::at(STATIONS_FILE, line, message);
        check_id(&raw.code, "station code").map_err(fail)?;
        if !seen.insert(raw.code.clone()) {
            return Err(fail(format!("station code `{}` appears twice", raw.code)));
        }
        let Some(region) = regions.iter().find(|r| r.code == raw.region) else {
            let known = regions.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ");
            return Err(fail(format!(
                "region `{}` is not defined in {MISSION_FILE} (known: {known})",
                raw.region
            )));
        };
        let district = raw.district.filter(|d| !d.is_empty());
        if let Some(district) = &district
            && !region.districts.iter().any(|d| &d.code == district)
        {
            return Err(fail(format!("district `{district}` is not a district of region `{}`", region.code)));
        }
        if raw.registered_voters == 0 {
            return Err(fail(format!("station `{}` has no registered voters", raw.code)));
        }
        match (raw.lat, raw.lon) {
            (Some(lat), Some(lon)) if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) => {
                return Err(fail(format!("coordinates {lat}, {lon} are out of range")));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(fail("give both lat and lon, or neither".into()));
            }
            _ => {}
        }
        stations.push(Station {
            code: raw.code,
            name: raw.name,
            region: raw.region,
            district,
            registered_voters: raw.registered_voters,
            lat: raw.lat,
            lon: raw.lon,
            abroad: raw.abroad,
        });
    }
    if stations.is_empty() {
        return Err(MissionError::new(STATIONS_FILE, "the station roster is empty"));
    }
    Ok(stations)
}

fn observers(text: &str) -> Result<Vec<Observer>, MissionError> {
    let rows: Vec<(Option<u64>, RawObserver)> = csv_rows(OBSERVERS_FILE, text)?;
    let (mut ids, mut devices) = (HashSet::new(), HashSet::new());
    let mut observers = Vec::with_capacity(rows.len());
    for (line, raw) in rows {
        let fail = |message: String| MissionError::at(OBSERVERS_FILE, line, message);
        check_id(&raw.id, "observer id").map_err(fail)?;
        check_id(&raw.team, "team").map_err(fail)?;
        check_id(&raw.device_user, "device user").map_err(fail)?;
        if !ids.insert(raw.id.clone()) {
            return Err(fail(format!("observer id `{}` appears twice", raw.id)));
        }
        if !devices.insert(raw.device_user.clone()) {
            return Err(fail(format!("device user `{}` belongs to two observers", raw.device_user)));
        }
        observers.push(Observer { id: raw.id, name: raw.name, team: raw.team, device_user: raw.device_user });
    }
    Ok(observers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{self, FORMS_TOML, MISSION_TOML, OBSERVERS_CSV, STATIONS_CSV};

    fn parse_with(edit: impl FnOnce(&mut [String; 4])) -> Result<Mission, MissionError> {
        let mut texts = [MISSION_TOML, FORMS_TOML, STATIONS_CSV, OBSERVERS_CSV].map(String::from);
        edit(&mut texts);
        Mission::parse(MissionSources {
            mission_toml: &texts[0],
            forms_toml: &texts[1],
            stations_csv: &texts[2],
            observers_csv: &texts[3],
        })
    }

    #[test]
    fn the_test_mission_parses_with_its_indexes() {
        let mission = test_support::mission();
        assert_eq!(mission.station("S2").map(|s| s.registered_voters), Some(500));
        assert_eq!(mission.station("S1").and_then(|s| s.district.as_deref()), Some("d1"));
        assert_eq!(mission.station("S2").and_then(|s| s.lat), None);
        assert_eq!(mission.observer("o2").map(|o| o.device_user.as_str()), Some("dev-o2"));
        assert_eq!(mission.registered_voters(), 1500);
        assert_eq!(mission.time_zone, chrono_tz::Asia::Bishkek);
        let voting = &mission.forms[&ReportKind::Voting];
        assert_eq!(voting.question("Q2").map(|q| &q.answer), Some(&AnswerType::Number { min: 0, max: 10 }));
    }

    #[test]
    fn station_in_an_undefined_region_names_file_line_and_region() {
        let err = parse_with(|t| t[2].push_str("S3,Station three,west,,10,,,false\n")).unwrap_err();
        assert_eq!((err.file, err.line), (STATIONS_FILE, Some(4)));
        assert!(err.message.contains("`west`") && err.message.contains("north"), "{err}");
    }

    #[test]
    fn duplicate_station_code_is_an_error() {
        let err = parse_with(|t| t[2].push_str("S1,Again,south,,10,,,false\n")).unwrap_err();
        assert!(err.to_string().starts_with("stations.csv line 4: station code `S1` appears twice"), "{err}");
    }

    #[test]
    fn a_roster_value_of_the_wrong_type_names_its_column() {
        let err = parse_with(|t| t[2].push_str("S3,Three,south,,many,,,false\n")).unwrap_err();
        assert!(err.message.contains("registered_voters"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn district_outside_its_region_is_an_error() {
        let err = parse_with(|t| t[2].push_str("S3,Three,south,d1,10,,,false\n")).unwrap_err();
        assert!(err.message.contains("district `d1`"), "{err}");
    }

    #[test]
    fn a_station_with_half_a_position_is_an_error() {
        let err = parse_with(|t| t[2].push_str("S3,Three,south,,10,42.1,,false\n")).unwrap_err();
        assert!(err.message.contains("both lat and lon"), "{err}");
    }

    #[test]
    fn one_device_for_two_observers_is_an_error() {
        let err = parse_with(|t| t[3].push_str("o3,Observer Three,t2,dev-o1\n")).unwrap_err();
        assert!(err.message.contains("dev-o1"), "{err}");
    }

    #[test]
    fn unknown_key_in_the_mission_file_is_an_error() {
        let err = parse_with(|t| {
            t[0] = t[0].replacen("name = \"Test mission\"", "name = \"T\"\nelection_date = \"x\"", 1);
        })
        .unwrap_err();
        assert_eq!(err.file, MISSION_FILE);
        assert!(err.message.contains("election_date"), "{err}");
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        let err = parse_with(|t| t[0] = t[0].replace("Asia/Bishkek", "Asia/Atlantis")).unwrap_err();
        assert!(err.message.contains("Asia/Atlantis"), "{err}");
    }

    #[test]
    fn a_contest_with_a_repeated_choice_is_an_error() {
        let err = parse_with(|t| {
            t[0] = t[0].replace(r#"{ code = "b", name = "Candidate B" }"#, r#"{ code = "a", name = "B" }"#);
        })
        .unwrap_err();
        assert!(err.message.contains("`a` appears twice"), "{err}");
    }

    #[test]
    fn a_question_key_that_does_not_fit_its_type_is_an_error() {
        let err = parse_with(|t| {
            t[1] = t[1].replace(r#"type = "yes_no", required"#, r#"type = "yes_no", max = 3, required"#);
        })
        .unwrap_err();
        assert_eq!(err.file, FORMS_FILE);
        assert!(err.message.contains("Q1") && err.message.contains("min/max"), "{err}");
    }

    #[test]
    fn a_number_question_with_min_above_max_is_an_error() {
        let err = parse_with(|t| t[1] = t[1].replace("min = 0, max = 10", "min = 11, max = 10")).unwrap_err();
        assert!(err.message.contains("min 11 is above max 10"), "{err}");
    }

    #[test]
    fn two_forms_for_one_kind_are_an_error() {
        let err = parse_with(|t| {
            let copy = t[1].clone();
            t[1].push_str(&copy);
        })
        .unwrap_err();
        assert!(err.message.contains("two forms") || err.message.contains("appears twice"), "{err}");
    }
}
