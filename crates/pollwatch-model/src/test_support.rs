//! A small mission and report builder for unit tests.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::codes::{Flag, FlagCode, RejectCode, Rejection};
use crate::mission::{Mission, MissionSources};
use crate::validate::{Context, check};

pub(crate) const MISSION_TOML: &str = r#"
id = "test-m"
name = "Test mission"
election_day = "2021-01-10"
time_zone = "Asia/Bishkek"
polls_open = "08:00"
polls_close = "20:00"

[[regions]]
code = "north"
name = "North"
districts = [{ code = "d1", name = "District one" }]

[[regions]]
code = "south"
name = "South"

[[contests]]
id = "president"
name = "President"
kind = "candidates"
choices = [{ code = "a", name = "Candidate A" }, { code = "b", name = "Candidate B" }]

[[contests]]
id = "referendum"
name = "Referendum"
kind = "options"
choices = [{ code = "yes", name = "Yes" }, { code = "no", name = "No" }]
"#;

pub(crate) const FORMS_TOML: &str = r#"
[[forms]]
kind = "voting"
questions = [
  { code = "Q1", text = "Was the box sealed?", type = "yes_no", required = true },
  { code = "Q2", text = "How many voters queued?", type = "number", min = 0, max = 10, required = false },
  { code = "Q3", text = "How long was the queue?", type = "choice", choices = ["short", "long"], required = false },
  { code = "Q4", text = "Notes", type = "text", max_length = 5, required = false },
]
"#;

pub(crate) const STATIONS_CSV: &str = "code,name,region,district,registered_voters,lat,lon,abroad
S1,Station one,north,d1,1000,42.87,74.51,false
S2,Station two,south,,500,,,false
";

pub(crate) const OBSERVERS_CSV: &str = "id,name,team,device_user
o1,Observer One,t1,dev-o1
o2,Observer Two,t1,dev-o2
";

pub(crate) fn sources() -> MissionSources<'static> {
    MissionSources {
        mission_toml: MISSION_TOML,
        forms_toml: FORMS_TOML,
        stations_csv: STATIONS_CSV,
        observers_csv: OBSERVERS_CSV,
    }
}

pub(crate) fn mission() -> Mission {
    Mission::parse(sources()).expect("the test mission parses")
}

/// The validation clock: noon in Bishkek the day after the election.
pub(crate) fn now() -> DateTime<Utc> {
    "2021-01-11T06:00:00Z".parse().expect("a timestamp")
}

/// A voting report from o1 at S1 that passes every rule.
pub(crate) fn voting() -> Value {
    json!({
        "schema_version": 1,
        "report_id": "5e0f8c1a-2b3c-4d5e-8f70-112233445566",
        "revision": 1,
        "mission": "test-m",
        "observer": "o1",
        "station": "S1",
        "observed_at": "2021-01-10T11:00:00+06:00",
        "submitted_at": "2021-01-10T11:05:00+06:00",
        "answers": { "Q1": true },
        "assessment": "good",
        "kind": "voting"
    })
}

/// A counting report from o1 at S1 whose two protocols add up.
pub(crate) fn counting() -> Value {
    let mut report = voting();
    report["kind"] = json!("counting");
    report["answers"] = json!({});
    report["observed_at"] = json!("2021-01-10T21:30:00+06:00");
    report["submitted_at"] = json!("2021-01-10T21:40:00+06:00");
    report["body"] = json!({ "protocols": [
        { "contest": "president", "registered_voters": 1000, "ballots_received": 1000, "ballots_issued": 600,
          "ballots_spoiled": 5, "ballots_unused": 395, "ballots_in_box": 598, "invalid": 8,
          "votes": { "a": 400, "b": 190 } },
        { "contest": "referendum", "registered_voters": 1000, "ballots_received": 1000, "ballots_issued": 600,
          "ballots_spoiled": 0, "ballots_unused": 400, "ballots_in_box": 600, "invalid": 10,
          "votes": { "yes": 500, "no": 90 } }
    ]});
    report
}

/// An incident report from o1 at S1.
pub(crate) fn incident() -> Value {
    let mut report = voting();
    report["kind"] = json!("incident");
    report["answers"] = json!({});
    report["body"] = json!({
        "category": "ballot_stuffing",
        "severity": "high",
        "description": "A bundle of ballots was put into the box.",
        "occurred_at": "2021-01-10T10:50:00+06:00"
    });
    report
}

/// Checks `report` sent by `dev-o1`.
pub(crate) fn run(report: &Value) -> Result<Vec<Flag>, Rejection> {
    run_as(report, Some("dev-o1"))
}

pub(crate) fn run_as(report: &Value, sender: Option<&str>) -> Result<Vec<Flag>, Rejection> {
    let mission = mission();
    let context = Context { mission: &mission, now: now(), sender };
    check(&serde_json::to_vec(report).expect("JSON"), &context).map(|checked| checked.flags)
}

/// Asserts a rejection with `code` at `path`.
#[track_caller]
pub(crate) fn assert_rejected(report: &Value, code: RejectCode, path: &str) {
    match run(report) {
        Err(rejection) => {
            assert_eq!((rejection.code, rejection.path.as_str()), (code, path), "{rejection}");
        }
        Ok(flags) => panic!("accepted with flags {flags:?}; expected {code} at {path}"),
    }
}

/// Asserts acceptance with exactly these flags (code and path), in any order.
#[track_caller]
pub(crate) fn assert_flags(report: &Value, expected: &[(FlagCode, &str)]) {
    let flags = run(report).unwrap_or_else(|r| panic!("rejected: {r}"));
    let mut got: Vec<(FlagCode, &str)> = flags.iter().map(|f| (f.code, f.path.as_str())).collect();
    let mut expected = expected.to_vec();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{flags:#?}");
}
