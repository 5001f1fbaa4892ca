//! The one place that builds the process's tracing subscriber.

use anyhow::Context as _;
use pollwatch_settings::{LogFormat, TelemetrySettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: JSON lines for services, readable lines for terminals, both on
/// standard error so that standard output stays free for command output.
///
/// The filter is `RUST_LOG` when that is set and not empty, otherwise `telemetry.filter`.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<()> {
    let filter = filter(settings, std::env::var("RUST_LOG").ok())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
        }
    };
    // A second call (several tests in one process) keeps the first subscriber; that is fine.
    if let Err(error) = installed {
        tracing::debug!(%error, "tracing subscriber already installed");
    }
    Ok(())
}

fn filter(settings: &TelemetrySettings, rust_log: Option<String>) -> anyhow::Result<EnvFilter> {
    match rust_log.filter(|value| !value.trim().is_empty()) {
        Some(directives) => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG=`{directives}` is not a valid tracing filter")),
        None => EnvFilter::try_new(&settings.filter)
            .with_context(|| format!("telemetry.filter `{}` is not a valid tracing filter", settings.filter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(filter: &str) -> TelemetrySettings {
        TelemetrySettings { format: LogFormat::Pretty, filter: filter.into() }
    }

    #[test]
    fn rust_log_replaces_the_configured_filter() {
        let chosen = filter(&settings("info"), Some("pollwatch=trace".into())).unwrap();
        assert_eq!(chosen.to_string(), "pollwatch=trace");
    }

    #[test]
    fn empty_rust_log_falls_back_to_the_configured_filter() {
        let chosen = filter(&settings("warn,pollwatch=debug"), Some(" ".into())).unwrap();
        assert!(chosen.to_string().contains("pollwatch=debug"));
    }

    #[test]
    fn invalid_filter_names_its_source() {
        let err = filter(&settings("info,pollwatch=loud"), None).unwrap_err().to_string();
        assert!(err.contains("telemetry.filter"), "{err}");
    }
}
