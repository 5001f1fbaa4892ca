//! The `pollwatch` binary as an operator runs it: help, version, and settings from each layer.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built binary in `dir` with `vars` set and no inherited pollwatch variables, so that
/// the developer's or CI's environment cannot change the outcome.
fn pollwatch(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pollwatch"));
    command.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("POLLWATCH") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.envs(vars.iter().copied());
    command.output().expect("the pollwatch binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_describes_the_tool_and_its_settings_flags() {
    let dir = tempfile::tempdir().unwrap();
    let output = pollwatch(dir.path(), &["--help"], &[]);
    assert!(output.status.success());
    let text = stdout(&output);
    for expected in ["election observers", "config", "--config-dir", "--env", "--set"] {
        assert!(text.contains(expected), "--help lacks {expected}:\n{text}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let dir = tempfile::tempdir().unwrap();
    let output = pollwatch(dir.path(), &["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(stdout(&output).trim(), format!("pollwatch {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn environment_variable_overrides_show_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let output = pollwatch(dir.path(), &["config", "show"], &[("POLLWATCH__TELEMETRY__FORMAT", "json")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let line = text.lines().find(|l| l.starts_with("format = ")).expect("a format line");
    assert!(line.starts_with(r#"format = "json""#), "{line}");
    assert!(line.ends_with("# environment variable POLLWATCH__TELEMETRY__FORMAT"), "{line}");
}

#[test]
fn passwords_never_reach_output_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("POLLWATCH__AMQP__URL", "amqp://u:secret@h/"),
        ("POLLWATCH__STORE__URL", "postgres://pw:secret@db/pollwatch"),
        ("RUST_LOG", "trace"),
    ];
    let output = pollwatch(dir.path(), &["config", "show"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(r#"url = "amqp://u:***@h/""#), "{}", stdout(&output));
    assert!(!stdout(&output).contains("secret"), "{}", stdout(&output));
    assert!(!stderr(&output).contains("secret"), "{}", stderr(&output));
}

#[test]
fn misspelt_key_in_local_toml_fails_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/local.toml"), "[amqp]\nprefech = 300\n").unwrap();
    let output = pollwatch(dir.path(), &["config", "show"], &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("amqp.prefech") && err.contains("config/local.toml"), "{err}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn config_file_and_set_flags_override_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("extra.toml"), "[amqp]\nqueue = \"from-file\"\nprefetch = 7\n").unwrap();
    let args = ["config", "show", "--config", "extra.toml", "--set", "amqp.prefetch=9"];
    let output = pollwatch(dir.path(), &args, &[("POLLWATCH__AMQP__QUEUE", "from-env")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(r#"queue = "from-file""#), "{text}");
    assert!(text.contains("prefetch = 9 "), "{text}");
}

#[test]
fn unknown_environment_is_an_error_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = pollwatch(dir.path(), &["config", "show"], &[("POLLWATCH_ENV", "staging")]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("staging.toml"), "{}", stderr(&output));
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path).display().to_string()
}

#[test]
fn mission_check_summarises_the_sample_mission() {
    let dir = tempfile::tempdir().unwrap();
    let output = pollwatch(dir.path(), &["mission", "check", &repo("missions/kg-2021")], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "mission kg-2021",
        "2476 polling stations",
        "3563574 registered voters",
        "president (17 candidates)",
        "referendum (3 options)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn mission_check_names_the_broken_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mission = dir.path().join("m");
    std::fs::create_dir(&mission).unwrap();
    for name in ["mission.toml", "forms.toml", "stations.csv", "observers.csv"] {
        std::fs::copy(repo(&format!("missions/kg-2021/{name}")), mission.join(name)).unwrap();
    }
    let stations = std::fs::read_to_string(mission.join("stations.csv")).unwrap();
    std::fs::write(mission.join("stations.csv"), stations.replacen(",bishkek,", ",bishkekk,", 1)).unwrap();
    let output = pollwatch(dir.path(), &["mission", "check", "m"], &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("stations.csv line 2") && err.contains("bishkekk"), "{err}");
}

#[test]
fn report_check_passes_examples_and_fails_a_broken_report_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo("schema/examples/counting.json")).unwrap();
    std::fs::write(dir.path().join("good.json"), &example).unwrap();
    std::fs::write(dir.path().join("bad.json"), example.replacen("\"invalid\": 12", "\"invalid\": -12", 1))
        .unwrap();
    let mission = repo("missions/kg-2021");

    let output = pollwatch(dir.path(), &["report", "check", "--mission", &mission, "good.json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "good.json: accepted");

    let output =
        pollwatch(dir.path(), &["report", "check", "--mission", &mission, "good.json", "bad.json"], &[]);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains("bad.json: rejected: invalid_value at body.protocols[0].invalid"),
        "{}",
        stdout(&output)
    );
    assert!(stderr(&output).contains("1 of 2 reports would be rejected"), "{}", stderr(&output));
}

#[test]
fn mission_import_loads_the_store_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["mission", "import", &repo("missions/kg-2021"), "--set", "store.url=sqlite://state/pollwatch.db"];
    let output = pollwatch(dir.path(), &args, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("imported mission kg-2021 into sqlite://state/pollwatch.db"), "{text}");
    assert!(text.contains("stations: 2476 added, 0 updated, 0 removed, 0 unchanged"), "{text}");
    assert!(dir.path().join("state/pollwatch.db").exists());

    let output = pollwatch(dir.path(), &args, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("stations: 0 added, 0 updated, 0 removed, 2476 unchanged"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn mission_import_to_an_unreachable_store_fails_without_showing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "store.url=postgres://pollwatch:hunter2@127.0.0.1:1/pollwatch?connect_timeout=2";
    let output = pollwatch(dir.path(), &["mission", "import", &repo("missions/kg-2021"), "--set", url], &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("opening the store at postgres://pollwatch:***@127.0.0.1:1/pollwatch"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A copy of the sample mission whose election day is `day`.
fn mission_on(dir: &Path, day: &str) -> std::path::PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../missions/kg-2021");
    let copy = dir.join("mission");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["forms.toml", "stations.csv", "observers.csv", "ground-truth.toml"] {
        std::fs::copy(sample.join(file), copy.join(file)).unwrap();
    }
    let toml = std::fs::read_to_string(sample.join("mission.toml")).unwrap();
    std::fs::write(copy.join("mission.toml"), toml.replace("2021-01-10", day)).unwrap();
    copy
}

/// The worker rejects reports from its future, so a day that has not happened yet cannot be
/// simulated; the simulator says so before it connects to any broker.
#[test]
fn simulating_an_election_day_still_to_come_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mission = mission_on(dir.path(), "2099-01-10");
    let output = pollwatch(dir.path(), &["simulate", "--mission", mission.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("election day (2099-01-10) is not over yet"), "{text}");
    assert!(text.contains("timestamp_in_future"), "{text}");
}

#[test]
fn a_ground_truth_that_does_not_fit_the_mission_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mission = mission_on(dir.path(), "2021-01-10");
    let truth = mission.join("ground-truth.toml");
    let text = std::fs::read_to_string(&truth).unwrap().replace("japarov = ", "japarow = ");
    std::fs::write(&truth, text).unwrap();
    let output = pollwatch(dir.path(), &["simulate", "--mission", mission.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("ground-truth.toml") && text.contains("`japarow` is not a choice"), "{text}");
}
