//! Typed, layered settings shared by every pollwatch process.
//!
//! Settings come from layers, each overriding the ones before it:
//!
//! 1. `config/default.toml`, compiled into the binary (every key with its default);
//! 2. `config/{POLLWATCH_ENV}.toml` (`development` when the variable is unset);
//! 3. `config/local.toml`, git-ignored, for one machine's overrides;
//! 4. environment variables `POLLWATCH__SECTION__KEY`;
//! 5. a file named with `--config FILE`, then `--set section.key=value` flags.
//!
//! Loading refuses any key that `config/default.toml` does not define and names the layer it came
//! from, so a typo never silently falls back to a default.

mod load;
mod nodes;
mod render;
mod secret;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use load::{Layer, LoadOptions, Loaded, SettingsError};
pub use nodes::{BrokerUrls, MAX_NODES};
pub use secret::SecretUrl;

/// The environment used when `POLLWATCH_ENV` is not set.
pub const DEFAULT_ENVIRONMENT: &str = "development";

/// The effective settings of one pollwatch process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub ingest: IngestSettings,
    pub store: StoreSettings,
    pub http: HttpSettings,
    pub pvt: PvtSettings,
    pub telemetry: TelemetrySettings,
}

/// Where reports arrive and where rejected ones go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// The broker's node URLs, tried in order: one, or several for a cluster (a TOML list, or
    /// one string separated by commas). They carry the password, so they only ever print
    /// redacted.
    pub url: BrokerUrls,
    /// Topic exchange that field devices publish reports to.
    pub exchange: String,
    /// Queue the worker consumes reports from.
    pub queue: String,
    /// Exchange that receives rejected reports together with the reason.
    pub dead_letter_exchange: String,
    /// Queue that keeps dead letters for operators; the worker never consumes it.
    pub dead_letter_queue: String,
    /// Unacknowledged deliveries the broker may send one consumer; bounds the worker's memory.
    pub prefetch: u16,
}

/// How the worker consumes, batches and judges deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// The kind of ingest queue the worker declares.
    pub queue_type: QueueType,
    /// Deliveries of one message after which the broker dead-letters it (quorum queues only).
    pub delivery_limit: u32,
    /// Most reports committed in one store transaction; never more than `amqp.prefetch`, the
    /// most deliveries the broker sends before some are acknowledged.
    pub batch_size: u16,
    /// How long a batch waits to fill before it is committed anyway, in milliseconds.
    pub batch_linger_ms: u64,
    /// Largest accepted message body, before and after gzip decompression.
    pub max_body_bytes: u32,
    /// Whether a report must carry the AMQP `user_id` of its observer's device account.
    pub require_sender_auth: bool,
    /// Seconds the worker may take to finish its batch and close after a shutdown request.
    pub shutdown_deadline_secs: u64,
}

/// The kind of ingest queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum QueueType {
    /// Replicated, with a delivery limit (RabbitMQ's recommendation for durable work queues).
    Quorum,
    /// A classic queue (a single node; no delivery limit).
    Classic,
}

impl TryFrom<String> for QueueType {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            other => Err(format!("unknown queue type `{other}`: use `quorum` or `classic`")),
        }
    }
}

/// Where accepted reports are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://PATH` (embedded, the default) or `postgres://…` (shared by several workers).
    pub url: SecretUrl,
}

/// The HTTP endpoint for health, metrics and the core team's queries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    /// Whether the worker serves the read API (`/api/v1`) too.
    pub api: bool,
    /// Whether `/metrics` needs a bearer token.
    pub metrics_need_token: bool,
}

/// The quick count (docs/pvt.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvtSettings {
    /// The share (0 to 1) of each stratum's sampled stations that must be in before the
    /// estimate is called publishable.
    pub publish_threshold: f64,
}

/// How the process logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info,pollwatch=debug`; `RUST_LOG` wins when set.
    pub filter: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Pretty,
    /// One JSON object per line, for services and log collectors.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    // Parsed from a string rather than as a serde enum so that a wrong value gets a message that
    // lists the choices.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}`: use `pretty` or `json`")),
        }
    }
}

impl Settings {
    /// Checks what types alone cannot: value ranges and URL schemes.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.amqp.prefetch == 0 {
            return Err((
                "amqp.prefetch",
                "must be at least 1 (0 would let the broker send unlimited deliveries)".into(),
            ));
        }
        if self.ingest.batch_size == 0 {
            return Err(("ingest.batch_size", "must be at least 1".into()));
        }
        if self.ingest.max_body_bytes == 0 {
            return Err(("ingest.max_body_bytes", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.pvt.publish_threshold) {
            return Err(("pvt.publish_threshold", "must be a share from 0 to 1".into()));
        }
        self.amqp.url.check().map_err(|message| ("amqp.url", message))?;
        self.store
            .url
            .check_scheme(&["sqlite", "postgres", "postgresql"])
            .map_err(|message| ("store.url", message))?;
        for (key, name) in [
            ("amqp.exchange", &self.amqp.exchange),
            ("amqp.queue", &self.amqp.queue),
            ("amqp.dead_letter_exchange", &self.amqp.dead_letter_exchange),
            ("amqp.dead_letter_queue", &self.amqp.dead_letter_queue),
        ] {
            if name.is_empty() || name.len() > 255 {
                return Err((key, "must be a name of 1 to 255 bytes".into()));
            }
        }
        Ok(())
    }
}
