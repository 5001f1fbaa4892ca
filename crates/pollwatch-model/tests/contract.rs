//! The wire contract and the sample mission, checked from the files committed in the repository:
//! the JSON Schema, the documented codes, the example messages and `missions/kg-2021`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pollwatch_model::{
    Checked, ContestKind, Context, Mission, MissionSources, RejectCode, check, codes_markdown, decode,
    report_schema,
};
use proptest::prelude::*;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Compares a committed, generated file with what the code generates now. With
/// `POLLWATCH_BLESS=1` it rewrites the file instead.
fn assert_generated(path: &str, generated: &str) {
    if std::env::var("POLLWATCH_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(repo(path), generated).unwrap();
        return;
    }
    let committed = read(path);
    assert!(
        committed == generated,
        "{path} differs from what the code generates; if the change is intended, run \
         `POLLWATCH_BLESS=1 cargo test -p pollwatch-model` and commit the result"
    );
}

fn kg_2021() -> Mission {
    let dir = "missions/kg-2021";
    let (mission, forms, stations, observers) = (
        read(&format!("{dir}/mission.toml")),
        read(&format!("{dir}/forms.toml")),
        read(&format!("{dir}/stations.csv")),
        read(&format!("{dir}/observers.csv")),
    );
    Mission::parse(MissionSources {
        mission_toml: &mission,
        forms_toml: &forms,
        stations_csv: &stations,
        observers_csv: &observers,
    })
    .unwrap_or_else(|e| panic!("{dir}: {e}"))
}

/// The morning after the election in Bishkek.
fn after_election() -> DateTime<Utc> {
    "2021-01-11T03:00:00Z".parse().unwrap()
}

fn examples() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(repo("schema/examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn schema_validator() -> jsonschema::Validator {
    // Formats (date-time, uuid) are only annotations in draft 2020-12 unless asked for.
    jsonschema::options()
        .should_validate_formats(true)
        .build(&report_schema())
        .expect("the generated schema is a valid JSON Schema")
}

fn check_against(mission: &Mission, payload: &[u8]) -> Result<Checked, pollwatch_model::Rejection> {
    check(payload, &Context { mission, now: after_election(), sender: Some("dev-obs-001") })
}

#[test]
fn committed_schema_is_what_the_code_generates() {
    let generated = serde_json::to_string_pretty(&report_schema()).unwrap() + "\n";
    assert_generated("schema/report-v1.schema.json", &generated);
}

#[test]
fn committed_code_list_is_what_the_code_generates() {
    assert_generated("docs/report-codes.md", &codes_markdown());
}

#[test]
fn there_is_an_example_for_every_kind() {
    let kinds: Vec<String> = examples()
        .iter()
        .map(|(_, text)| serde_json::from_str::<Value>(text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in pollwatch_model::ReportKind::ALL {
        assert!(kinds.iter().any(|k| k == kind.as_str()), "no example of a {kind} report");
    }
}

#[test]
fn every_example_is_accepted_without_flags_and_matches_the_schema() {
    let mission = kg_2021();
    let validator = schema_validator();
    for (name, text) in examples() {
        let checked = check_against(&mission, text.as_bytes()).unwrap_or_else(|r| panic!("{name}: {r}"));
        assert!(checked.flags.is_empty(), "{name}: {:?}", checked.flags);
        let value: Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name} fails the JSON Schema: {errors:?}");
    }
}

#[test]
fn a_broken_copy_of_every_example_is_rejected_by_both_validators_naming_the_field() {
    let mission = kg_2021();
    let validator = schema_validator();
    for (name, text) in examples() {
        let original: Value = serde_json::from_str(&text).unwrap();
        let mut breakages = vec![
            ("observer", RejectCode::MissingField, remove(&original, "observer")),
            ("revision", RejectCode::InvalidType, set(&original, "/revision", "two".into())),
            ("observed_at", RejectCode::InvalidValue, set(&original, "/observed_at", "yesterday".into())),
            ("answerz", RejectCode::UnknownField, set(&original, "/answerz", Value::Null)),
        ];
        if original["kind"] == "counting" {
            breakages.push((
                "body.protocols[0].votes.japarov",
                RejectCode::InvalidValue,
                set(&original, "/body/protocols/0/votes/japarov", (-1).into()),
            ));
        }
        if original["kind"] == "incident" {
            breakages.push((
                "body.category",
                RejectCode::UnknownCategory,
                set(&original, "/body/category", "weather".into()),
            ));
        }
        for (path, code, broken) in breakages {
            let rejection = check_against(&mission, &serde_json::to_vec(&broken).unwrap())
                .expect_err(&format!("{name} with a broken {path} was accepted"));
            assert_eq!((rejection.code, rejection.path.as_str()), (code, path), "{name}: {rejection}");
            assert!(
                rejection.to_string().contains(path),
                "{name}: the message does not name {path}: {rejection}"
            );
            assert!(!validator.is_valid(&broken), "{name} with a broken {path} passes the JSON Schema");
        }
    }
}

fn remove(value: &Value, key: &str) -> Value {
    let mut value = value.clone();
    value.as_object_mut().unwrap().remove(key);
    value
}

fn set(value: &Value, pointer: &str, new: Value) -> Value {
    let mut value = value.clone();
    match value.pointer_mut(pointer) {
        Some(slot) => *slot = new,
        None => {
            let key = pointer.trim_start_matches('/');
            value.as_object_mut().unwrap().insert(key.to_owned(), new);
        }
    }
    value
}

#[test]
fn kg_2021_matches_the_official_figures() {
    let mission = kg_2021();
    assert_eq!(mission.id, "kg-2021");
    assert_eq!(mission.election_day.to_string(), "2021-01-10");
    assert_eq!(mission.stations.len(), 2_476);
    assert_eq!(mission.registered_voters(), 3_563_574);
    let president = mission.contest("president").unwrap();
    assert_eq!((president.kind, president.choices.len()), (ContestKind::Candidates, 17));
    let referendum = mission.contest("referendum").unwrap();
    assert_eq!((referendum.kind, referendum.choices.len()), (ContestKind::Options, 3));
    let per_region = [
        ("bishkek", 228),
        ("osh_city", 80),
        ("osh", 512),
        ("chui", 406),
        ("jalal_abad", 449),
        ("issyk_kul", 248),
        ("naryn", 171),
        ("batken", 217),
        ("talas", 117),
        ("abroad", 48),
    ];
    for (region, expected) in per_region {
        let count = mission.stations.iter().filter(|s| s.region == region).count();
        assert_eq!(count, expected, "stations in {region}");
    }
    let voters_in = |region: &str| -> u64 {
        mission.stations.iter().filter(|s| s.region == region).map(|s| u64::from(s.registered_voters)).sum()
    };
    assert_eq!(voters_in("abroad"), 35_575);
    assert_eq!(voters_in("osh"), 726_311);
    assert!(mission.stations.iter().filter(|s| s.region == "abroad").all(|s| s.abroad));
    let teams: std::collections::HashSet<&str> = mission.observers.iter().map(|o| o.team.as_str()).collect();
    assert!((100..=300).contains(&mission.observers.len()), "{} observers", mission.observers.len());
    assert_eq!(teams.len() * 2, mission.observers.len(), "teams of two");
    for kind in pollwatch_model::ReportKind::ALL {
        assert!(mission.forms.contains_key(&kind), "no {kind} form");
    }
}

// ---- properties ----

fn timestamp() -> impl Strategy<Value = DateTime<chrono::FixedOffset>> {
    (1_600_000_000i64..1_700_000_000, -12i32..=14, prop::sample::select(vec![0, 30, 45])).prop_map(
        |(secs, hours, minutes)| {
            let offset = chrono::FixedOffset::east_opt(hours * 3600 + hours.signum() * minutes * 60).unwrap();
            DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&offset)
        },
    )
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..max).prop_map(|chars| chars.into_iter().collect())
}

fn answer() -> impl Strategy<Value = pollwatch_model::Answer> {
    use pollwatch_model::Answer;
    prop_oneof![
        any::<bool>().prop_map(Answer::YesNo),
        any::<i64>().prop_map(Answer::Number),
        text(40).prop_map(Answer::Text)
    ]
}

fn protocol() -> impl Strategy<Value = pollwatch_model::Protocol> {
    (
        text(10),
        prop::array::uniform7(any::<u32>()),
        prop::collection::btree_map("[a-z_]{1,12}", any::<u32>(), 0..20),
    )
        .prop_map(|(contest, n, votes)| pollwatch_model::Protocol {
            contest,
            registered_voters: n[0],
            ballots_received: n[1],
            ballots_issued: n[2],
            ballots_spoiled: n[3],
            ballots_unused: n[4],
            ballots_in_box: n[5],
            invalid: n[6],
            votes,
        })
}

fn content() -> impl Strategy<Value = pollwatch_model::Content> {
    use pollwatch_model::{Content, CountingBody, IncidentBody, IncidentCategory, Severity};
    prop_oneof![
        Just(Content::Arrival),
        Just(Content::Departure),
        Just(Content::Opening),
        Just(Content::Voting),
        Just(Content::Closing),
        prop::collection::vec(protocol(), 1..4)
            .prop_map(|protocols| Content::Counting(CountingBody { protocols })),
        (
            prop::sample::select(IncidentCategory::ALL.to_vec()),
            prop::sample::select(Severity::ALL.to_vec()),
            text(200),
            timestamp()
        )
            .prop_map(|(category, severity, description, occurred_at)| {
                Content::Incident(IncidentBody { category, severity, description, occurred_at })
            }),
    ]
}

prop_compose! {
    fn report()(
        id in any::<u128>(),
        revision in 1u32..,
        (mission, observer, station) in (text(20), text(20), text(20)),
        (observed_at, submitted_at) in (timestamp(), timestamp()),
        location in prop::option::of((-90.0f64..=90.0, -180.0f64..=180.0, prop::option::of(0.0f64..1e6))),
        answers in prop::collection::btree_map("[A-Z]{2}[0-9]{2}", answer(), 0..10),
        assessment in prop::option::of(prop::sample::select(pollwatch_model::Assessment::ALL.to_vec())),
        attachments in prop::collection::vec(("[0-9a-f]{64}", "image/[a-z]{3,8}", any::<u64>()), 0..3),
        content in content(),
    ) -> pollwatch_model::Report {
        pollwatch_model::Report {
            schema_version: 1,
            report_id: uuid::Uuid::from_u128(id),
            revision,
            mission,
            observer,
            station,
            observed_at,
            submitted_at,
            location: location.map(|(lat, lon, accuracy)| pollwatch_model::Location { lat, lon, accuracy }),
            answers,
            assessment,
            attachments: attachments
                .into_iter()
                .map(|(sha256, media_type, size)| pollwatch_model::Attachment { sha256, media_type, size })
                .collect(),
            content,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_report_survives_a_json_round_trip_unchanged(report in report()) {
        let json = serde_json::to_string(&report).unwrap();
        let decoded = decode(json.as_bytes()).map_err(|r| TestCaseError::fail(format!("{r}\n{json}")))?;
        prop_assert_eq!(&decoded, &report);
        // Equal values could still differ on the wire (a time zone offset, say): compare the text too.
        prop_assert_eq!(serde_json::to_string(&decoded).unwrap(), json);
    }

    #[test]
    fn checking_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mission = small_mission();
        let _ = check_against(&mission, &bytes);
    }

    #[test]
    fn checking_a_mangled_example_never_panics(
        which in 0usize..7,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mission = small_mission();
        let examples = examples();
        let mut bytes = examples[which % examples.len()].1.clone().into_bytes();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let keep = cut.index(bytes.len() + 1);
        let _ = check_against(&mission, &bytes[..keep.max(1).min(bytes.len())]);
        let _ = check_against(&mission, &bytes);
    }
}

/// kg-2021 parses in a few milliseconds, but property tests run hundreds of cases: parse once.
fn small_mission() -> Mission {
    static MISSION: std::sync::OnceLock<Mission> = std::sync::OnceLock::new();
    MISSION.get_or_init(kg_2021).clone()
}
