//! The schema is the contract: `decode` and the published JSON Schema must accept and refuse the
//! same documents. A seeded corpus of valid reports of every kind and of mutations of them
//! (fields dropped, added, renamed and retyped, arrays for objects, duplicate keys at any depth,
//! other forms of ids and timestamps, numbers at and past their limits, long strings, nulls,
//! nested junk, a byte-order mark) goes through both; any document that one accepts and the
//! other refuses fails the test, unless it is one of the listed semantic rejections.
//!
//! The comparison is with `decode`, not `check`: the schema states structure, types, formats
//! and limits, which are all `decode`'s; `validate` adds rules that depend on the mission and the
//! clock, which no schema of the wire format can hold.
//!
//! A few thousand documents by default; `POLLWATCH_DIFFERENTIAL=full` runs 100,000 and
//! `POLLWATCH_DIFFERENTIAL=<n>` runs n. `POLLWATCH_DIFFERENTIAL_SEED` changes the seed.

use std::fmt::Write as _;
use std::path::Path;

use pollwatch_model::{RejectCode, decode, json_text, report_schema};
use serde_json::{Map, Value, json};

/// Refusals that the schema cannot express, each with the reason. Every other disagreement is a
/// bug in the decoder or the schema.
const SEMANTIC_REJECTIONS: &[(RejectCode, &str)] = &[(
    RejectCode::DuplicateKey,
    "a validator sees the parsed value, in which the last of two equal keys has replaced the \
     first; the text's duplicate is gone before any keyword could refuse it",
)];

const DEFAULT_DOCUMENTS: usize = 5_000;
const FULL_DOCUMENTS: usize = 100_000;
const DEFAULT_SEED: u64 = 0x5EED_0013;

#[test]
fn decode_accepts_exactly_what_the_schema_accepts() {
    let documents = match std::env::var("POLLWATCH_DIFFERENTIAL").as_deref() {
        Ok("full") => FULL_DOCUMENTS,
        Ok(n) => n.parse().expect("POLLWATCH_DIFFERENTIAL is `full` or a number of documents"),
        Err(_) => DEFAULT_DOCUMENTS,
    };
    let seed = std::env::var("POLLWATCH_DIFFERENTIAL_SEED")
        .map(|s| s.parse().expect("POLLWATCH_DIFFERENTIAL_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&report_schema())
        .expect("the generated schema is a valid JSON Schema");
    let examples = examples();
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut disagreements = Vec::new();
    for i in 0..documents {
        let document = corpus_document(&mut rng, &examples);
        let verdict = compare(&validator, &document);
        tally.count(&verdict);
        if let Verdict::Disagree(why) = verdict
            && disagreements.len() < 10
        {
            disagreements.push(format!("document {i} (seed {seed}): {why}\n  {}", shown(&document)));
        }
    }
    println!(
        "differential: {} documents, {} accepted by both, {} refused by both, {} semantic rejections",
        documents, tally.accepted, tally.refused, tally.semantic
    );
    assert!(
        disagreements.is_empty(),
        "{} documents on which decode and the JSON Schema disagree; the first:\n{}",
        tally.disagreements,
        disagreements.join("\n")
    );
    // A corpus that only tests one side would pass vacuously.
    assert!(tally.accepted * 10 > documents, "too few accepted documents: {}", tally.accepted);
    assert!(tally.refused * 4 > documents, "too few refused documents: {}", tally.refused);
}

enum Verdict {
    Accepted,
    Refused,
    Semantic,
    Disagree(String),
}

#[derive(Default)]
struct Tally {
    accepted: usize,
    refused: usize,
    semantic: usize,
    disagreements: usize,
}

impl Tally {
    fn count(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Accepted => self.accepted += 1,
            Verdict::Refused => self.refused += 1,
            Verdict::Semantic => self.semantic += 1,
            Verdict::Disagree(_) => self.disagreements += 1,
        }
    }
}

/// Runs both sides on one document. The schema side parses the text as any JSON tool would
/// (serde_json, which ignores no byte-order mark itself, so it gets the text `decode` reads).
fn compare(validator: &jsonschema::Validator, document: &[u8]) -> Verdict {
    let decoded = decode(document);
    let schema: Result<(), String> = match serde_json::from_slice::<Value>(json_text(document)) {
        Err(e) => Err(format!("not JSON: {e}")),
        Ok(value) => match validator.iter_errors(&value).next() {
            None => Ok(()),
            Some(error) => Err(format!("{error} at {}", error.instance_path())),
        },
    };
    match (decoded, schema) {
        (Ok(report), Ok(())) => {
            // What decode accepted, written back, is what the schema publishes.
            let written = serde_json::to_value(&report).expect("a report serialises");
            match validator.iter_errors(&written).next() {
                None => Verdict::Accepted,
                Some(error) => {
                    Verdict::Disagree(format!("the decoded report written back fails the schema: {error}"))
                }
            }
        }
        (Err(_), Err(_)) => Verdict::Refused,
        (Err(rejection), Ok(())) if SEMANTIC_REJECTIONS.iter().any(|(code, _)| *code == rejection.code) => {
            Verdict::Semantic
        }
        (Err(rejection), Ok(())) => {
            Verdict::Disagree(format!("decode refuses ({rejection}), the schema accepts"))
        }
        (Ok(_), Err(error)) => Verdict::Disagree(format!("decode accepts, the schema refuses ({error})")),
    }
}

fn shown(document: &[u8]) -> String {
    let text = String::from_utf8_lossy(document);
    let mut shown: String = text.chars().take(1_500).collect();
    if text.chars().count() > 1_500 {
        shown.push('…');
    }
    shown
}

fn examples() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
}

// ---- the corpus ----

/// A small, seeded generator (SplitMix64): the same seed gives the same corpus everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One document: a valid report, often mutated, as bytes.
fn corpus_document(rng: &mut Rng, examples: &[Value]) -> Vec<u8> {
    let mut report = if rng.chance(30) { rng.pick(examples).clone() } else { valid_report(rng) };
    // A fifth stays valid, so that acceptance is compared as much as refusal; most of the rest
    // carry one mutation, so that the verdict turns on it.
    let mutations = match rng.below(10) {
        0 | 1 => 0,
        2..=7 => 1,
        _ => 2 + rng.below(2),
    };
    for _ in 0..mutations {
        mutate(rng, &mut report);
    }
    let duplicate = rng.chance(8).then(|| duplicate_key(rng, &report)).flatten();
    let mut text = String::new();
    write_json(&report, "", duplicate.as_ref(), &mut text);
    let mut bytes = text.into_bytes();
    if rng.chance(3) {
        bytes.splice(0..0, *b"\xEF\xBB\xBF");
    }
    if rng.chance(1) {
        bytes.splice(0..0, *b"\xEF\xBB\xBF");
    }
    bytes
}

const KINDS: &[&str] = &["arrival", "departure", "opening", "voting", "closing", "counting", "incident"];
const CATEGORIES: &[&str] = &["ballot_stuffing", "vote_buying", "group_voting", "results_falsified", "other"];
const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const ASSESSMENTS: &[&str] = &["very_good", "good", "bad", "very_bad"];
/// Every field name of the format, to add where it does not belong.
const FIELD_NAMES: &[&str] = &[
    "schema_version",
    "report_id",
    "revision",
    "mission",
    "observer",
    "station",
    "observed_at",
    "submitted_at",
    "location",
    "answers",
    "assessment",
    "attachments",
    "kind",
    "body",
    "lat",
    "lon",
    "accuracy",
    "sha256",
    "media_type",
    "size",
    "protocols",
    "contest",
    "registered_voters",
    "votes",
    "invalid",
    "category",
    "severity",
    "description",
    "occurred_at",
    "",
    "Kind",
    "answerz",
];

fn valid_report(rng: &mut Rng) -> Value {
    let kind = *rng.pick(KINDS);
    let mut report = json!({
        "schema_version": 1,
        "report_id": uuid(rng, true),
        "revision": 1 + rng.below(5),
        "mission": identifier(rng),
        "observer": identifier(rng),
        "station": identifier(rng),
        "observed_at": timestamp(rng, true),
        "submitted_at": timestamp(rng, true),
        "kind": kind,
    });
    let object = report.as_object_mut().unwrap();
    if rng.chance(50) {
        let mut location =
            json!({ "lat": rng.below(180) as f64 - 90.0 + 0.25, "lon": rng.below(360) as f64 - 180.0 });
        if rng.chance(50) {
            location["accuracy"] =
                if rng.chance(20) { Value::Null } else { json!(rng.below(100) as f64 / 4.0) };
        }
        object.insert("location".into(), if rng.chance(10) { Value::Null } else { location });
    }
    if rng.chance(70) {
        let answers: Map<String, Value> =
            (0..rng.below(12)).map(|i| (format!("Q{i:02}"), answer(rng))).collect();
        object.insert("answers".into(), answers.into());
    }
    if rng.chance(60) {
        let assessment = if rng.chance(10) { Value::Null } else { json!(rng.pick(ASSESSMENTS)) };
        object.insert("assessment".into(), assessment);
    }
    if rng.chance(40) {
        let attachments: Vec<Value> = (0..rng.below(4)).map(|_| attachment(rng)).collect();
        object.insert("attachments".into(), attachments.into());
    }
    match kind {
        "counting" => {
            let protocols: Vec<Value> = (0..1 + rng.below(3)).map(|_| protocol(rng)).collect();
            object.insert("body".into(), json!({ "protocols": protocols }));
        }
        "incident" => {
            object.insert(
                "body".into(),
                json!({
                    "category": rng.pick(CATEGORIES),
                    "severity": rng.pick(SEVERITIES),
                    "description": text(rng, 1, 300),
                    "occurred_at": timestamp(rng, true),
                }),
            );
        }
        _ => {}
    }
    report
}

fn answer(rng: &mut Rng) -> Value {
    match rng.below(3) {
        0 => json!(rng.chance(50)),
        1 => json!(rng.below(1_000) as i64 - 10),
        _ => json!(text(rng, 0, 40)),
    }
}

fn attachment(rng: &mut Rng) -> Value {
    let sha256: String = (0..64).map(|_| *rng.pick(&b"0123456789abcdef"[..]) as char).collect();
    json!({ "sha256": sha256, "media_type": "image/jpeg", "size": rng.next() >> rng.below(64) })
}

fn protocol(rng: &mut Rng) -> Value {
    let votes: Map<String, Value> =
        (0..rng.below(6)).map(|i| (format!("choice{i}"), json!(rng.below(2_000)))).collect();
    let contest = if rng.chance(50) { "president" } else { "referendum" };
    let mut figure = || json!(rng.below(3_000));
    json!({
        "contest": contest,
        "registered_voters": figure(), "ballots_received": figure(), "ballots_issued": figure(),
        "ballots_spoiled": figure(), "ballots_unused": figure(), "ballots_in_box": figure(),
        "invalid": figure(), "votes": votes,
    })
}

fn identifier(rng: &mut Rng) -> String {
    text(rng, 1, 64)
}

/// Text of `min..=max` characters, some of them outside ASCII or control characters, which the
/// schema allows (validation refuses control characters in identifiers; decoding does not).
fn text(rng: &mut Rng, min: usize, max: usize) -> String {
    const ALPHABET: &[char] =
        &['a', 'b', 'z', '0', '9', '-', '_', ' ', 'ж', 'é', '中', '😀', '"', '\\', '\n', '\0'];
    let length = min + rng.below(max - min + 1);
    (0..length).map(|_| *rng.pick(ALPHABET)).collect()
}

/// A report id: hyphenated when `valid`, else in one of the forms the schema refuses or accepts.
fn uuid(rng: &mut Rng, valid: bool) -> String {
    let hex: String = (0..32).map(|_| *rng.pick(&b"0123456789abcdef"[..]) as char).collect();
    let hyphenated =
        format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    if valid {
        return hyphenated;
    }
    match rng.below(10) {
        0 => hyphenated.to_uppercase(),
        1 => format!("{{{hyphenated}}}"),
        2 => format!("urn:uuid:{hyphenated}"),
        3 => hex,
        4 => hyphenated[1..].to_owned(),
        5 => format!("{hyphenated}0"),
        6 => hyphenated.replacen('-', "", 1) + "-",
        7 => hyphenated.replace(&hyphenated[..1], "g"),
        8 => format!(" {hyphenated}"),
        _ => hyphenated.to_uppercase().replacen(|c: char| c.is_ascii_digit(), "x", 1),
    }
}

/// A timestamp: RFC 3339 when `valid` (a second of 60 only where it is a leap second), else
/// built from parts that are each sometimes out of range or out of shape.
fn timestamp(rng: &mut Rng, valid: bool) -> String {
    if valid {
        let (h, m) = (rng.below(24), rng.below(60));
        let offset = match rng.below(4) {
            0 => "Z".to_owned(),
            1 => "z".to_owned(),
            _ => format!("{}{:02}:{:02}", rng.pick(&["+", "-"]), rng.below(24), rng.pick(&[0, 30, 45, 59])),
        };
        let fraction = *rng.pick(&["", ".5", ".250", ".123456789", ".1234567891234"]);
        return format!(
            "{:04}-{:02}-{:02}{}{h:02}:{m:02}:{:02}{fraction}{offset}",
            1990 + rng.below(40),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.pick(&["T", "t"]),
            rng.below(60),
        );
    }
    // One part, sometimes two, differs from a valid timestamp's: a corpus where every part may
    // be wrong would almost never get one wrong part past the others.
    let mut parts: Vec<String> = vec![
        "2021".into(),
        "-".into(),
        "01".into(),
        "-".into(),
        "10".into(),
        "T".into(),
        "08".into(),
        ":".into(),
        "00".into(),
        ":".into(),
        "00".into(),
        "".into(),
        "+06:00".into(),
    ];
    for _ in 0..1 + usize::from(rng.chance(30)) {
        let part = rng.below(parts.len());
        let options: &[&str] = match part {
            0 => &["0000", "9999", "-021", "+10000", "21", "2020", "1900", "2000", "2024", "20a1"],
            1 | 3 => &["/", "", "--", " "],
            2 => &["02", "12", "13", "00", "1", "99"],
            4 => &["29", "30", "31", "00", "32", "1"],
            5 => &["t", " ", "_", "TT", "", "T "],
            6 => &["00", "23", "24", "5", "99"],
            7 | 9 => &[".", "", "::"],
            8 => &["59", "60", "5"],
            10 => &["59", "60", "61", "6", "99"],
            11 => &[".", ".5", ".123456789012", ",5", ".a", ".0000000000000000000001"],
            _ => &[
                "Z",
                "z",
                "-03:30",
                "+00:00",
                "-00:00",
                "+23:59",
                "-23:59",
                "+24:00",
                "+06:60",
                "+0600",
                "+06 00",
                "+6:00",
                "",
                "UTC",
                " Z",
                "+06:00:00",
                "-01:00",
                "+01:00",
                "ZZ",
                "+06:00Z",
            ],
        };
        parts[part] = (*rng.pick(options)).to_owned();
    }
    // Leap seconds: second 60 is valid only at 23:59:60 UTC, whatever the offset.
    if rng.chance(10) {
        let (day, hour, minute, offset) = *rng.pick(&[
            ("31", "23", "59", "Z"),
            ("01", "05", "59", "+06:00"),
            ("31", "18", "29", "-05:30"),
            ("10", "20", "15", "+06:00"),
        ]);
        parts[4] = day.into();
        parts[6] = hour.into();
        parts[8] = minute.into();
        parts[10] = "60".into();
        parts[12] = offset.into();
    }
    parts.concat()
}

/// Values a field should not hold, or holds only at the edge of its range.
fn junk(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 9 } else { 11 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => rng
            .pick(&[
                json!(0),
                json!(1),
                json!(-1),
                json!(2),
                json!(u32::MAX),
                json!(u64::from(u32::MAX) + 1),
                json!(i64::MIN),
                json!(i64::MAX),
                json!(u64::MAX),
                json!(1u64 << 63),
            ])
            .clone(),
        3 => rng
            .pick(&[
                json!(1.5),
                json!(2.0),
                json!(-0.0),
                json!(1e300),
                json!(-1e300),
                json!(4294967295.0),
                json!(4294967296.0),
                json!(9.223372036854776e18),
                json!(-9.223372036854776e18),
                json!(1.8446744073709552e19),
                json!(90.0),
                json!(90.000001),
                json!(-180.0),
                json!(-180.5),
                json!(0.5),
            ])
            .clone(),
        4 => json!(text(rng, 0, 3)),
        5 => json!(long_string(rng)),
        6 => {
            let valid = rng.chance(30);
            json!(timestamp(rng, valid))
        }
        7 => {
            let valid = rng.chance(30);
            json!(uuid(rng, valid))
        }
        8 => json!(name(rng)),
        9 => Value::Array((0..rng.below(4)).map(|_| junk(rng, depth + 1)).collect()),
        _ => {
            let object: Map<String, Value> = (0..rng.below(4))
                .map(|_| (rng.pick(FIELD_NAMES).to_string(), junk(rng, depth + 1)))
                .collect();
            Value::Object(object)
        }
    }
}

/// A name from one of the format's closed sets, or a field name.
fn name(rng: &mut Rng) -> &'static str {
    let set = *rng.pick(&[KINDS, CATEGORIES, SEVERITIES, ASSESSMENTS, FIELD_NAMES]);
    rng.pick::<&str>(set)
}

/// A string at or past one of the format's length limits.
fn long_string(rng: &mut Rng) -> String {
    let length =
        *rng.pick(&[2, 3, 63, 64, 65, 99, 100, 101, 1_999, 2_000, 2_001, 3_999, 4_000, 4_001, 20_000]);
    let unit = *rng.pick(&["a", "ж", "😀", " "]);
    unit.repeat(length)
}

/// Every JSON pointer in the value, the root (`""`) included.
fn pointers(value: &Value, here: String, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                pointers(child, format!("{here}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(here);
}

fn mutate(rng: &mut Rng, report: &mut Value) {
    // Ids and timestamps have the richest formats: they get mutations of their own.
    if rng.chance(30) {
        let timestamps = ["/observed_at", "/submitted_at", "/body/occurred_at"];
        let (pointer, value) = if rng.chance(60) {
            let valid = rng.chance(20);
            (*rng.pick(&timestamps), json!(timestamp(rng, valid)))
        } else {
            ("/report_id", json!(uuid(rng, false)))
        };
        if let Some(slot) = report.pointer_mut(pointer) {
            *slot = value;
            return;
        }
    }
    let mut all = Vec::new();
    pointers(report, String::new(), &mut all);
    let pointer = rng.pick(&all).clone();
    let value = report.pointer_mut(&pointer).expect("a pointer into the report");
    match value {
        // An array of the object's values, which serde's derive would read as the struct.
        Value::Object(object) if rng.chance(15) => {
            let values = object.values().cloned().collect();
            *value = Value::Array(values);
        }
        Value::Object(object) => mutate_object(rng, object),
        Value::Array(items) => mutate_array(rng, items),
        Value::Number(_) => *value = junk(rng, 0),
        Value::String(text) => mutate_string(rng, text),
        _ => *value = junk(rng, 0),
    }
    if rng.chance(10) {
        // Another value for a field chosen by name, wherever it is.
        let target = rng.pick(&all).clone();
        if let Some(slot) = report.pointer_mut(&target) {
            *slot = junk(rng, 0);
        }
    }
}

fn mutate_object(rng: &mut Rng, object: &mut Map<String, Value>) {
    let keys: Vec<String> = object.keys().cloned().collect();
    match rng.below(7) {
        0 if !keys.is_empty() => {
            object.remove(rng.pick(&keys));
        }
        1 => {
            object.insert(rng.pick(FIELD_NAMES).to_string(), junk(rng, 0));
        }
        2 if !keys.is_empty() => {
            let key = rng.pick(&keys).clone();
            let value = object.remove(&key).unwrap();
            let renamed = match rng.below(3) {
                0 => key.to_uppercase(),
                1 => format!("{key}s"),
                _ => key.chars().skip(1).collect(),
            };
            object.insert(renamed, value);
        }
        3 => {
            // Grow to one side or the other of a count limit (answers 200, votes 100).
            let n = *rng.pick(&[99, 100, 101, 199, 200, 201]);
            for i in object.len()..n {
                object.insert(format!("k{i}"), json!(i));
            }
        }
        4 if !keys.is_empty() => {
            let key = rng.pick(&keys).clone();
            object.insert(key, junk(rng, 0));
        }
        5 if !keys.is_empty() => {
            let key = rng.pick(&keys).clone();
            object.insert(key, Value::Null);
        }
        _ => {
            object.insert(long_string(rng), json!(1));
        }
    }
}

fn mutate_array(rng: &mut Rng, items: &mut Vec<Value>) {
    match rng.below(5) {
        0 if !items.is_empty() => {
            items.remove(rng.below(items.len()));
        }
        1 if !items.is_empty() => {
            // Past a count limit (attachments 20, protocols 10) or at it.
            let n = *rng.pick(&[10, 11, 20, 21]);
            let first = items[0].clone();
            items.resize(n, first);
        }
        2 => items.clear(),
        3 => items.push(junk(rng, 0)),
        _ if !items.is_empty() => {
            let i = rng.below(items.len());
            items[i] = junk(rng, 0);
        }
        _ => items.push(junk(rng, 0)),
    }
}

fn mutate_string(rng: &mut Rng, text: &mut String) {
    *text = match rng.below(8) {
        0 => String::new(),
        1 => long_string(rng),
        2 => text.to_uppercase(),
        3 => format!("{text}x"),
        4 => {
            let valid = rng.chance(30);
            timestamp(rng, valid)
        }
        5 => {
            let valid = rng.chance(20);
            uuid(rng, valid)
        }
        6 => text.chars().rev().collect(),
        _ => name(rng).to_owned(),
    };
}

/// Where to write a key a second time: the object's pointer, the key, and the second value.
struct Duplicate {
    pointer: String,
    key: String,
    value: Value,
}

fn duplicate_key(rng: &mut Rng, report: &Value) -> Option<Duplicate> {
    let mut all = Vec::new();
    pointers(report, String::new(), &mut all);
    let objects: Vec<&String> = all
        .iter()
        .filter(|p| report.pointer(p).and_then(Value::as_object).is_some_and(|o| !o.is_empty()))
        .collect();
    if objects.is_empty() {
        return None;
    }
    let pointer = (*rng.pick(&objects)).clone();
    let object = report.pointer(&pointer)?.as_object()?;
    let keys: Vec<&String> = object.keys().collect();
    let key = (*rng.pick(&keys)).clone();
    let value = if rng.chance(50) { object[&key].clone() } else { junk(rng, 1) };
    Some(Duplicate { pointer, key, value })
}

/// JSON text of `value`; the object at `duplicate.pointer`, if any, gets its key written twice.
fn write_json(value: &Value, here: &str, duplicate: Option<&Duplicate>, out: &mut String) {
    match value {
        Value::Object(object) => {
            out.push('{');
            let mut first = true;
            for (key, child) in object {
                if !first {
                    out.push(',');
                }
                first = false;
                write!(out, "{}:", Value::String(key.clone())).unwrap();
                let pointer = format!("{here}/{}", key.replace('~', "~0").replace('/', "~1"));
                write_json(child, &pointer, duplicate, out);
            }
            if let Some(duplicate) = duplicate.filter(|d| d.pointer == here) {
                write!(out, ",{}:{}", Value::String(duplicate.key.clone()), duplicate.value).unwrap();
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(child, &format!("{here}/{i}"), duplicate, out);
            }
            out.push(']');
        }
        scalar => write!(out, "{scalar}").unwrap(),
    }
}
