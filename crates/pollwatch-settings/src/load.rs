//! Reading the layers, refusing unknown keys, and deserialising the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, ConfigError, Environment, File, FileFormat, Map, Source, Value, ValueKind};

use crate::{DEFAULT_ENVIRONMENT, Settings};

/// `config/default.toml`, compiled in so that the binary works from any directory and every
/// key always has a value.
const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variables that override settings start with this, e.g. `POLLWATCH__AMQP__URL`.
const ENV_PREFIX: &str = "POLLWATCH";
/// Separates the prefix, the section and the key in an environment variable's name.
const ENV_SEPARATOR: &str = "__";

/// Keys whose values must not appear in error messages.
const SECRET_KEYS: [&str; 2] = ["amqp.url", "store.url"];

/// What to read besides the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Folder holding `{environment}.toml` and `local.toml`.
    pub config_dir: PathBuf,
    /// The `POLLWATCH_ENV` value; `None` means `development`, whose file may then be absent.
    pub environment: Option<String>,
    /// A further file (`--config FILE`); it must exist.
    pub extra_file: Option<PathBuf>,
    /// `--set KEY=VALUE` overrides, applied last.
    pub overrides: Vec<(String, String)>,
    /// The environment variables to read; `None` reads the process environment. Tests pass a map
    /// so that they neither depend on nor change the process environment.
    pub env_vars: Option<HashMap<String, String>>,
}

/// One source of settings, named the way an operator would look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// `config/default.toml` as compiled into the binary.
    Defaults,
    /// A TOML file on disk: the environment's file, `local.toml` or `--config FILE`.
    File(PathBuf),
    /// `POLLWATCH__SECTION__KEY` variables.
    Environment,
    /// `--set KEY=VALUE` flags.
    CommandLine,
}

impl Layer {
    /// Describes where `key` came from in this layer, precisely enough to find and fix it.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Self::Defaults => "config/default.toml (built in)".into(),
            Self::File(path) => path.display().to_string(),
            Self::Environment => format!("environment variable {}", env_var_name(key)),
            Self::CommandLine => format!("command-line flag --set {key}=…"),
        }
    }
}

/// The name of the environment variable that sets `key`.
pub(crate) fn env_var_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for part in key.split('.') {
        name.push_str(ENV_SEPARATOR);
        name.push_str(&part.to_ascii_uppercase());
    }
    name
}

/// Why settings could not be loaded. Every message names the key and where it came from, and
/// never includes a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown setting `{key}` in {origin}{}", suggestion(.did_you_mean))]
    UnknownKey { key: String, origin: String, did_you_mean: Option<String> },

    #[error("setting `{key}` in {origin}: expected {expected}, found {found}")]
    WrongType { key: String, origin: String, expected: String, found: String },

    #[error("setting `{key}` in {origin}: {message}")]
    Invalid { key: String, origin: String, message: String },

    #[error("cannot read settings from {origin}: {message}")]
    Source { origin: String, message: String },

    #[error(
        "environment name `{0}` is not valid: use letters, digits, `-` or `_` (it names config/<name>.toml)"
    )]
    BadEnvironmentName(String),

    #[error("`--set {0}` is not of the form section.key=value")]
    BadOverride(String),
}

fn suggestion(did_you_mean: &Option<String>) -> String {
    did_you_mean.as_ref().map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default()
}

/// Loaded settings with the layer that supplied each key.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The environment whose file was read.
    pub environment: String,
    /// For each `section.key`, the last layer that set it.
    pub origins: BTreeMap<String, Layer>,
}

impl Loaded {
    /// Where `key` got its value, e.g. `config/local.toml`.
    pub fn origin_of(&self, key: &str) -> String {
        self.origins.get(key).unwrap_or(&Layer::Defaults).describe(key)
    }
}

impl Settings {
    /// Reads every layer, in order, into typed settings.
    pub fn load(options: &LoadOptions) -> Result<Loaded, SettingsError> {
        let (environment, env_file_required) = match &options.environment {
            Some(name) => (name.clone(), true),
            None => (DEFAULT_ENVIRONMENT.to_owned(), false),
        };
        let valid_name = !environment.is_empty()
            && environment.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(SettingsError::BadEnvironmentName(environment));
        }

        let env_file = options.config_dir.join(format!("{environment}.toml"));
        let local_file = options.config_dir.join("local.toml");
        let mut layers: Vec<(Layer, Box<dyn Source + Send + Sync>)> = vec![
            (Layer::Defaults, Box::new(File::from_str(DEFAULT_TOML, FileFormat::Toml))),
            (Layer::File(env_file.clone()), Box::new(toml_file(&env_file, env_file_required))),
            (Layer::File(local_file.clone()), Box::new(toml_file(&local_file, false))),
            (Layer::Environment, Box::new(environment_source(options.env_vars.clone()))),
        ];
        if let Some(path) = &options.extra_file {
            layers.push((Layer::File(path.clone()), Box::new(toml_file(path, true))));
        }
        if !options.overrides.is_empty() {
            layers.push((Layer::CommandLine, Box::new(overrides_source(&options.overrides)?)));
        }

        let mut known: BTreeSet<String> = BTreeSet::new();
        let mut origins = BTreeMap::new();
        let mut builder = Config::builder();
        for (layer, source) in layers {
            let values = source.collect().map_err(|e| source_error(&layer, &e))?;
            let mut keys = Vec::new();
            flatten(&values, "", &mut keys);
            if layer == Layer::Defaults {
                known.extend(keys.iter().cloned());
            }
            for key in keys {
                if !known.contains(&key) {
                    return Err(SettingsError::UnknownKey {
                        did_you_mean: closest(&key, &known),
                        origin: layer.describe(&key),
                        key,
                    });
                }
                origins.insert(key, layer.clone());
            }
            builder = builder.add_source(vec![source]);
        }

        let describe = |key: &str| origins.get(key).unwrap_or(&Layer::Defaults).describe(key);
        let config = builder.build().map_err(|e| value_error(&e, &describe))?;
        let settings: Settings = config.try_deserialize().map_err(|e| value_error(&e, &describe))?;
        settings.validate().map_err(|(key, message)| SettingsError::Invalid {
            key: key.into(),
            origin: describe(key),
            message,
        })?;
        Ok(Loaded { settings, environment, origins })
    }
}

fn toml_file(path: &Path, required: bool) -> File<config::FileSourceFile, FileFormat> {
    File::from(path).format(FileFormat::Toml).required(required)
}

fn environment_source(vars: Option<HashMap<String, String>>) -> Environment {
    Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .source(vars.map(|vars| vars.into_iter().collect::<Map<_, _>>()))
}

fn overrides_source(overrides: &[(String, String)]) -> Result<Config, SettingsError> {
    let mut builder = Config::builder();
    for (key, value) in overrides {
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(SettingsError::BadOverride(format!("{key}={value}")));
        }
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(|_| SettingsError::BadOverride(format!("{key}=…")))?;
    }
    builder.build().map_err(|e| SettingsError::Source {
        origin: Layer::CommandLine.describe(""),
        message: e.to_string(),
    })
}

/// Collects the dotted path of every leaf value. Tables nest; keys may already contain dots
/// (the environment source produces `amqp.url` as one key).
fn flatten(values: &Map<String, Value>, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in values {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match &value.kind {
            ValueKind::Table(table) => flatten(table, &path, out),
            _ => out.push(path),
        }
    }
}

/// The known key nearest to a misspelt one, if it is near enough to be a likely typo.
fn closest(key: &str, known: &BTreeSet<String>) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.clone())
}

fn source_error(layer: &Layer, error: &ConfigError) -> SettingsError {
    let message = match error {
        ConfigError::FileParse { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    SettingsError::Source { origin: layer.describe(""), message: message.trim().to_owned() }
}

/// Turns a deserialisation error into one that names the key and its layer.
fn value_error(error: &ConfigError, describe: &dyn Fn(&str) -> String) -> SettingsError {
    match error {
        ConfigError::Type { unexpected, expected, key: Some(key), .. } => {
            let found = unexpected.to_string();
            let found = if SECRET_KEYS.contains(&key.as_str()) {
                // Keep the kind ("string", "sequence", …) and drop the value itself.
                found.split_whitespace().next().unwrap_or("another type").to_owned()
            } else {
                found
            };
            SettingsError::WrongType {
                key: key.clone(),
                origin: describe(key),
                expected: (*expected).to_owned(),
                found,
            }
        }
        ConfigError::At { error, key: Some(key), .. } => {
            let message = if SECRET_KEYS.contains(&key.as_str()) {
                "invalid value".to_owned()
            } else {
                error.to_string()
            };
            SettingsError::Invalid { key: key.clone(), origin: describe(key), message }
        }
        ConfigError::NotFound(key) => SettingsError::Invalid {
            key: key.clone(),
            origin: "config/default.toml (built in)".into(),
            message: "missing: every key needs a default in config/default.toml".into(),
        },
        other => SettingsError::Source { origin: "the merged settings".into(), message: other.to_string() },
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("environment variables"),
            Self::CommandLine => f.write_str("command-line flags"),
            other => f.write_str(&other.describe("")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::LogFormat;

    /// Options that read only `dir` and the given variables, never the process environment.
    fn options(dir: &Path, vars: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            config_dir: dir.to_owned(),
            env_vars: Some(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..LoadOptions::default()
        }
    }

    fn repo_config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
    }

    #[test]
    fn defaults_load_from_any_directory() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Settings::load(&options(&dir.path().join("absent"), &[])).unwrap();
        assert_eq!(loaded.environment, "development");
        assert_eq!(loaded.settings.amqp.prefetch, 600);
        assert_eq!(loaded.settings.store.url.expose(), "sqlite://data/pollwatch.db");
        assert_eq!(loaded.origin_of("amqp.prefetch"), "config/default.toml (built in)");
    }

    #[test]
    fn each_layer_overrides_the_ones_before_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("staging.toml"), "[amqp]\nprefetch = 10\nqueue = \"q-env\"\n").unwrap();
        fs::write(dir.path().join("local.toml"), "[amqp]\nprefetch = 20\nexchange = \"x-local\"\n").unwrap();
        let extra = dir.path().join("extra.toml");
        fs::write(&extra, "[amqp]\nprefetch = 40\n[http]\nbind = \"0.0.0.0:9000\"\n").unwrap();
        let mut opts = options(
            dir.path(),
            &[("POLLWATCH__AMQP__PREFETCH", "30"), ("POLLWATCH__TELEMETRY__FORMAT", "json")],
        );
        opts.environment = Some("staging".into());
        opts.extra_file = Some(extra.clone());
        opts.overrides = vec![("amqp.prefetch".into(), "50".into())];

        let loaded = Settings::load(&opts).unwrap();
        let s = &loaded.settings;
        assert_eq!(s.amqp.prefetch, 50);
        assert_eq!(s.amqp.queue, "q-env");
        assert_eq!(s.amqp.exchange, "x-local");
        assert_eq!(s.telemetry.format, LogFormat::Json);
        assert_eq!(s.http.bind.port(), 9000);
        assert_eq!(loaded.origin_of("amqp.prefetch"), "command-line flag --set amqp.prefetch=…");
        assert_eq!(loaded.origin_of("amqp.queue"), dir.path().join("staging.toml").display().to_string());
        assert_eq!(loaded.origin_of("telemetry.format"), "environment variable POLLWATCH__TELEMETRY__FORMAT");
        assert_eq!(loaded.origin_of("http.bind"), extra.display().to_string());
    }

    #[test]
    fn misspelt_key_in_local_file_names_the_key_the_file_and_the_likely_fix() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("local.toml"), "[amqp]\nprefech = 10\n").unwrap();
        let err = Settings::load(&options(dir.path(), &[])).unwrap_err().to_string();
        assert!(err.contains("`amqp.prefech`"), "{err}");
        assert!(err.contains(&dir.path().join("local.toml").display().to_string()), "{err}");
        assert!(err.contains("did you mean `amqp.prefetch`"), "{err}");
    }

    #[test]
    fn unknown_environment_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&options(dir.path(), &[("POLLWATCH__STORE__URI", "sqlite://x.db")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`store.uri`"), "{err}");
        assert!(err.contains("environment variable POLLWATCH__STORE__URI"), "{err}");
    }

    #[test]
    fn unrelated_variables_with_a_similar_prefix_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("POLLWATCH_ENV", "development"), ("POLLWATCH_TEST_AMQP_URL", "amqp://x")];
        assert!(Settings::load(&options(dir.path(), &vars)).is_ok());
    }

    #[test]
    fn unknown_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("local.toml"), "[amqpp]\nurl = \"amqp://h\"\n").unwrap();
        let err = Settings::load(&options(dir.path(), &[])).unwrap_err().to_string();
        assert!(err.contains("`amqpp.url`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key_the_expected_type_and_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&options(dir.path(), &[("POLLWATCH__AMQP__PREFETCH", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`amqp.prefetch`"), "{err}");
        assert!(err.contains("expected an integer"), "{err}");
        assert!(err.contains("POLLWATCH__AMQP__PREFETCH"), "{err}");
    }

    #[test]
    fn unparseable_value_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("local.toml"), "[http]\nbind = \"localhost\"\n").unwrap();
        let err = Settings::load(&options(dir.path(), &[])).unwrap_err().to_string();
        assert!(err.contains("`http.bind`"), "{err}");
        assert!(err.contains("local.toml"), "{err}");
    }

    #[test]
    fn unknown_log_format_lists_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&options(dir.path(), &[("POLLWATCH__TELEMETRY__FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`telemetry.format`"), "{err}");
        assert!(err.contains("pretty") && err.contains("json"), "{err}");
    }

    #[test]
    fn a_publish_threshold_outside_0_to_1_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&options(dir.path(), &[("POLLWATCH__PVT__PUBLISH_THRESHOLD", "1.5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`pvt.publish_threshold`"), "{err}");
        assert!(err.contains("from 0 to 1"), "{err}");
        let loaded =
            Settings::load(&options(dir.path(), &[("POLLWATCH__PVT__PUBLISH_THRESHOLD", "0.9")])).unwrap();
        assert_eq!(loaded.settings.pvt.publish_threshold, 0.9);
    }

    #[test]
    fn zero_prefetch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&options(dir.path(), &[("POLLWATCH__AMQP__PREFETCH", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`amqp.prefetch`") && err.contains("at least 1"), "{err}");
    }

    #[test]
    fn errors_about_urls_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("POLLWATCH__STORE__URL", "mysql://root:hunter2@db/pollwatch")];
        let err = Settings::load(&options(dir.path(), &vars)).unwrap_err().to_string();
        assert!(err.contains("`store.url`") && err.contains("mysql"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        fs::write(dir.path().join("local.toml"), "[amqp]\nurl = [\"amqp://u:hunter2@h\", 5]\n").unwrap();
        let err = Settings::load(&options(dir.path(), &[])).unwrap_err().to_string();
        assert!(err.contains("`amqp.url`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        // A cluster's second node, wrong: named, and still without the password.
        let vars = [("POLLWATCH__AMQP__URL", "amqp://u:hunter2@a/%2f,ftp://u:hunter2@b/")];
        let err = Settings::load(&options(dir.path(), &vars)).unwrap_err().to_string();
        assert!(err.contains("`amqp.url`") && err.contains("node 2 of 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_broker_url_lists_a_clusters_nodes_from_any_layer() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("POLLWATCH__AMQP__URL", "amqp://u:p@a:5672/%2f, amqp://u:p@b:5672/%2f")];
        let loaded = Settings::load(&options(dir.path(), &vars)).unwrap();
        assert_eq!(loaded.settings.amqp.url.expose(), ["amqp://u:p@a:5672/%2f", "amqp://u:p@b:5672/%2f"]);
        fs::write(
            dir.path().join("local.toml"),
            "[amqp]\nurl = [\"amqp://u:p@a/\", \"amqp://u:p@b/\", \"amqp://u:p@c/\"]\n",
        )
        .unwrap();
        let loaded = Settings::load(&options(dir.path(), &[])).unwrap();
        assert_eq!(loaded.settings.amqp.url.nodes().len(), 3);
        assert_eq!(loaded.settings.amqp.url.to_string(), "amqp://u:***@a/, amqp://u:***@b/, amqp://u:***@c/");
    }

    #[test]
    fn explicitly_chosen_environment_needs_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), &[]);
        opts.environment = Some("staging".into());
        let err = Settings::load(&opts).unwrap_err().to_string();
        assert!(err.contains("staging.toml"), "{err}");
    }

    #[test]
    fn environment_name_cannot_escape_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), &[]);
        opts.environment = Some("../secrets".into());
        assert!(matches!(Settings::load(&opts), Err(SettingsError::BadEnvironmentName(_))));
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("local.toml"), "[amqp\nprefetch = 1\n").unwrap();
        let err = Settings::load(&options(dir.path(), &[])).unwrap_err().to_string();
        assert!(err.contains("local.toml"), "{err}");
    }

    #[test]
    fn malformed_set_flag_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), &[]);
        opts.overrides = vec![("amqp.".into(), "1".into())];
        assert!(matches!(Settings::load(&opts), Err(SettingsError::BadOverride(_))));
    }

    #[test]
    fn every_shipped_environment_loads() {
        for env in ["development", "test", "production"] {
            let mut opts = options(&repo_config_dir(), &[]);
            opts.environment = Some(env.into());
            let loaded = Settings::load(&opts).unwrap_or_else(|e| panic!("{env}: {e}"));
            if env == "production" {
                assert_eq!(loaded.settings.telemetry.format, LogFormat::Json);
            }
        }
    }

    #[test]
    fn every_default_key_has_a_comment_above_it() {
        let mut previous = "";
        for line in DEFAULT_TOML.lines() {
            let is_key = line.contains(" = ") && !line.starts_with('#');
            assert!(!is_key || previous.starts_with('#'), "undocumented key in config/default.toml: {line}");
            previous = line;
        }
    }

    #[test]
    fn annotated_output_is_valid_toml_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("POLLWATCH__AMQP__URL", "amqp://u:secret@h/")];
        let loaded = Settings::load(&options(dir.path(), &vars)).unwrap();
        let text = loaded.to_annotated_toml();
        assert!(!text.contains("secret"), "{text}");
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["amqp"]["url"].as_str(), Some("amqp://u:***@h/"));
        assert!(text.contains("# environment variable POLLWATCH__AMQP__URL"), "{text}");
    }
}
