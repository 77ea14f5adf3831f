//! Configuration: command-line flags with `HERALD_*` environment variables behind them (README.md,
//! "Configuration"; docs/api.md#operator-api). Parsing and checking happen here, once, at startup.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_api::{ApiConfig, QueueGaugeSettings};
use herald_delivery::probe::ProbeConfig;
use herald_delivery::retention::RetentionConfig;
use herald_delivery::{EgressProxy, RetrySchedule, WorkerConfig};
use herald_domain::catalog::{CatalogFormat, SchemaEnforcement};
use herald_domain::secret::{SecretText, redact_url_password};
use herald_domain::{AddressPolicy, ApiVersions, EventCatalog, Secret};
use herald_store::{OperatorHook, RateLimit};

use crate::background;
use crate::http::{self, HttpConfig};

/// Settings shared by `herald serve` and the admin commands. `Debug` redacts the secrets key
/// and any password in the database URL.
#[derive(Clone, clap::Args)]
pub struct StorageArgs {
    /// Where state lives: `sqlite://PATH` (embedded, the default) or `postgres://…`.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald-data/herald.db"
    )]
    pub database_url: String,

    /// Base64 of 32 bytes that encrypts secrets at rest. With SQLite and no key, one is
    /// generated beside the database file (mode 0600).
    #[arg(long, env = "HERALD_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<SecretText>,
}

impl fmt::Debug for StorageArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageArgs")
            .field("database_url", &redact_url_password(&self.database_url))
            .field("secrets_key", &self.secrets_key)
            .finish()
    }
}

/// Settings of `herald serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Storage location and secrets key.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Address the HTTP API listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Bearer token of the admin API (`/admin/v1/…`); the admin API is off when unset.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretText>,

    /// Networks exempt from the SSRF policy, comma-separated CIDRs (e.g. `127.0.0.0/8,::1/128`).
    #[arg(long, env = "HERALD_ALLOW_NETWORKS", default_value = "")]
    pub allow_networks: String,

    /// A PEM file of extra trusted root certificates for deliveries.
    #[arg(long, env = "HERALD_EXTRA_ROOT_CERTS")]
    pub extra_root_certs: Option<PathBuf>,

    /// An HTTP CONNECT proxy every delivery leaves through (static egress IPs),
    /// `http://[user:password@]host:port`. Herald still resolves and checks each endpoint itself
    /// and asks the proxy for the checked address.
    #[arg(long, env = "HERALD_EGRESS_PROXY", hide_env_values = true)]
    pub egress_proxy: Option<SecretText>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Write requests per organization per minute (create, update, delete, rotate, test, replay).
    #[arg(long, env = "HERALD_WRITE_RATE_PER_MINUTE", default_value_t = 1_200)]
    pub write_rate_per_minute: u32,

    /// Replays per organization per minute.
    #[arg(long, env = "HERALD_REPLAY_RATE_PER_MINUTE", default_value_t = 10)]
    pub replay_rate_per_minute: u32,

    /// The event-type catalog, comma-separated; when unset, the default catalog of 17 types.
    #[arg(long, env = "HERALD_EVENT_TYPES")]
    pub event_types: Option<String>,

    /// A catalog file (JSON, or YAML for `.yaml`/`.yml`): every event type with its description,
    /// and optionally the JSON Schema of its `data`, an example and `deprecated`. Replaces
    /// `HERALD_EVENT_TYPES`.
    #[arg(long, env = "HERALD_EVENT_CATALOG")]
    pub event_catalog: Option<PathBuf>,

    /// What publishing does with `data` that breaks its type's schema: `off`, `warn` (accept,
    /// log and count) or `reject` (422).
    #[arg(long, env = "HERALD_SCHEMA_ENFORCEMENT", default_value = "warn")]
    pub schema_enforcement: String,

    /// Supported API versions, comma-separated, oldest first.
    #[arg(long, env = "HERALD_API_VERSIONS", default_value = herald_domain::catalog::DEFAULT_API_VERSION)]
    pub api_versions: String,

    /// Supported versions that new endpoints may no longer pin, comma-separated.
    #[arg(long, env = "HERALD_DEPRECATED_API_VERSIONS", default_value = "")]
    pub deprecated_api_versions: String,

    /// Seconds to wait for a receiver's TCP and TLS handshake.
    #[arg(long, env = "HERALD_CONNECT_TIMEOUT_SECONDS", default_value_t = 5)]
    pub connect_timeout_seconds: u64,

    /// Seconds an attempt may take in all, body included.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT_SECONDS", default_value_t = 15)]
    pub request_timeout_seconds: u64,

    /// Largest event `data` accepted by the publish API, serialized, in bytes.
    #[arg(
        long,
        env = "HERALD_MAX_EVENT_BYTES",
        default_value_t = herald_domain::publish::DEFAULT_MAX_EVENT_BYTES
    )]
    pub max_event_bytes: usize,

    /// Days events and their payloads are kept.
    #[arg(long, env = "HERALD_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u64,

    /// Days attempt records are kept.
    #[arg(long, env = "HERALD_ATTEMPT_RETENTION_DAYS", default_value_t = 90)]
    pub attempt_retention_days: u64,

    /// How long an endpoint may fail without a break before it is set inactive (`5d`, `12h`).
    #[arg(long, env = "HERALD_AUTO_DISABLE_AFTER")]
    pub auto_disable_after: Option<String>,

    /// Deprecated: days of unbroken failure before an endpoint is set inactive. Read when
    /// `HERALD_AUTO_DISABLE_AFTER` is unset, with a warning.
    #[arg(long, env = "HERALD_AUTO_DISABLE_DAYS", hide = true)]
    pub auto_disable_days: Option<u64>,

    /// The delays between attempts, comma-separated (`5s,1m,5m,30m,2h,6h,12h,24h,24h` by
    /// default): one attempt more than there are delays is made in all.
    #[arg(long, env = "HERALD_RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,

    /// Time between two probes of an endpoint Herald disabled for its failures (`1h`).
    #[arg(long, env = "HERALD_PROBE_INTERVAL")]
    pub probe_interval: Option<String>,

    /// How long after it was disabled such an endpoint is still probed (`7d`).
    #[arg(long, env = "HERALD_PROBE_FOR")]
    pub probe_for: Option<String>,

    /// The operator's hook: every organization's operational events are also sent here
    /// (an https URL, checked like an endpoint's).
    #[arg(long, env = "HERALD_OPERATOR_WEBHOOK_URL")]
    pub operator_webhook_url: Option<String>,

    /// The operator hook's signing secret: standard base64 of 32 bytes.
    #[arg(long, env = "HERALD_OPERATOR_WEBHOOK_SECRET", hide_env_values = true)]
    pub operator_webhook_secret: Option<SecretText>,

    /// Most attempts in flight at once, across all endpoints.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT", default_value_t = WorkerConfig::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,

    /// What this node runs: `both` (the default), `api` (every route, no delivery) or
    /// `delivery` (delivery, recovery, probing and purge; only the health routes and
    /// `/metrics`). `api` and `delivery` need PostgreSQL (docs/operations.md, "Node roles").
    #[arg(long, env = "HERALD_ROLE", value_enum, ignore_case = true, default_value_t = Role::Both)]
    pub role: Role,

    /// How many steps nicer (lower OS priority) than the API the delivery threads run, 0 to 19:
    /// a busy worker then leaves the API a core when a request comes (docs/operations.md).
    #[arg(long, env = "HERALD_DELIVERY_NICENESS")]
    pub delivery_niceness: Option<String>,

    /// Most attempts in flight to one endpoint at once.
    #[arg(
        long,
        env = "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT",
        default_value_t = WorkerConfig::DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT
    )]
    pub max_in_flight_per_endpoint: usize,

    /// Seconds to let in-flight work finish after SIGTERM.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Seconds a client has to send a request's headers, from its connection (or from the
    /// request's first byte on a reused connection); then the connection is closed.
    #[arg(
        long,
        env = "HERALD_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = http::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
    )]
    pub header_read_timeout_seconds: u64,

    /// Seconds a kept-alive API connection may wait for its next request; keep it above the
    /// idle timeout of a load balancer in front of Herald.
    #[arg(
        long,
        env = "HERALD_IDLE_TIMEOUT_SECONDS",
        default_value_t = http::DEFAULT_IDLE_TIMEOUT.as_secs()
    )]
    pub idle_timeout_seconds: u64,

    /// Where browsers reach this server, e.g. `https://webhooks.example.com` (the base of portal
    /// session links). Default: `http://` plus the listen address.
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Who may embed the portal in a frame: the CSP `frame-ancestors` sources, e.g.
    /// `https://app.example.com`. Default `'none'`.
    #[arg(long, env = "HERALD_PORTAL_FRAME_ANCESTORS", default_value = "'none'")]
    pub portal_frame_ancestors: String,

    /// Seconds `GET /metrics` serves the queue gauges (due, scheduled, oldest due age) before it
    /// starts a new reading from storage; 0 starts one at every scrape.
    #[arg(long, env = "HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS", default_value_t = 5)]
    pub queue_gauges_max_age_seconds: u64,

    /// Most API connections open at once. By default half of what the open-files limit
    /// leaves after 64 descriptors, at most 1024 (480 under the common limit of 1024).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

/// The checked configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Storage location and secrets key.
    pub storage: StorageArgs,
    /// The API's settings.
    pub api: ApiConfig,
    /// Probing of endpoints disabled for their failures.
    pub probe: ProbeConfig,
    /// The operator's hook, if configured.
    pub operator_hook: Option<OperatorHook>,
    /// Extra trusted roots for deliveries, PEM.
    pub extra_root_certs: Option<PathBuf>,
    /// The CONNECT proxy every delivery leaves through, if configured.
    pub egress_proxy: Option<EgressProxy>,
    /// How long in-flight work may take after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// The delivery worker's settings (the retry schedule among them).
    pub worker: WorkerConfig,
    /// What this node runs.
    pub role: Role,
    /// How many steps nicer than the API the background threads run (`crate::background`).
    pub delivery_niceness: i32,
    /// The outbound client's timeouts (its policy and roots come from the fields above).
    pub connect_timeout: Duration,
    /// The whole-attempt deadline.
    pub request_timeout: Duration,
    /// How long history is kept.
    pub retention: RetentionConfig,
    /// The API server's connection limits.
    pub http: HttpConfig,
    /// The trace exporter's failure counters, served on `/metrics` when export is on (set by
    /// `herald serve` from its [`crate::telemetry::Telemetry`], like `worker.tracer`).
    pub trace_export_metrics: Option<crate::telemetry::ExportMetrics>,
}

/// Parses only [`ServeArgs`], for [`ServeArgs::from_defaults`].
#[derive(Debug, clap::Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// Every setting at its default (or its `HERALD_*` variable, where set): the starting
    /// point for embedding Herald, e.g. in tests, without a command line.
    pub fn from_defaults() -> Self {
        <DefaultsOnly as clap::Parser>::parse_from(["herald"]).args
    }

    /// Checks the flags and builds the configuration.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let address_policy = AddressPolicy::parse_allow_list(&self.allow_networks)
            .map_err(anyhow::Error::msg)
            .context("HERALD_ALLOW_NETWORKS")?;
        let catalog = load_catalog(self.event_catalog.as_deref(), self.event_types.as_deref())?;
        let schema_enforcement = SchemaEnforcement::parse(self.schema_enforcement.trim())
            .context("HERALD_SCHEMA_ENFORCEMENT must be off, warn or reject")?;
        let supported = split_list(&self.api_versions);
        if supported.is_empty() {
            bail!("HERALD_API_VERSIONS must name at least one version");
        }
        let api_versions = ApiVersions::new(supported, split_list(&self.deprecated_api_versions));
        if self.write_rate_per_minute == 0 || self.replay_rate_per_minute == 0 {
            bail!("rate limits must be at least 1 per minute");
        }
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(24 * 60 * 60);
        if self.request_timeout_seconds == 0
            || self.connect_timeout_seconds == 0
            || self.header_read_timeout_seconds == 0
            || self.idle_timeout_seconds == 0
        {
            bail!("timeouts must be at least one second");
        }
        let max_connections = self
            .max_connections
            .unwrap_or_else(|| http::default_max_connections(http::open_files_limit()));
        if !(1..=http::MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
            bail!(
                "HERALD_MAX_CONNECTIONS must be between 1 and {}",
                http::MAX_CONNECTIONS_LIMIT
            );
        }
        let request_timeout = Duration::from_secs(self.request_timeout_seconds);
        let shutdown_grace = Duration::from_secs(self.shutdown_grace_seconds);
        let worker = WorkerConfig {
            max_in_flight: self.max_in_flight.max(1),
            max_in_flight_per_endpoint: self.max_in_flight_per_endpoint.max(1),
            // A lease outlives the longest attempt, so it only lapses when its holder died.
            // An endpoint's deliveries are claimed a few rounds of attempts ahead, each round
            // at most one request timeout; herald_delivery::worker checks that
            // LEASE_IN_REQUEST_TIMEOUTS covers them.
            lease: (request_timeout * WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS)
                .max(WorkerConfig::default().lease),
            schedule: retry_schedule(self.retry_schedule.as_deref())?,
            auto_disable_after: auto_disable_after(
                self.auto_disable_after.as_deref(),
                self.auto_disable_days,
            )?,
            shutdown_grace,
            claims_in_flight: if crate::storage::is_postgres(&self.storage.database_url) {
                WorkerConfig::NETWORKED_STORE_CLAIMS_IN_FLIGHT
            } else {
                WorkerConfig::default().claims_in_flight
            },
            ..WorkerConfig::default()
        };
        let probe = ProbeConfig {
            interval: positive_duration(
                "HERALD_PROBE_INTERVAL",
                self.probe_interval.as_deref(),
                ProbeConfig::DEFAULT_INTERVAL,
            )?,
            probe_for: positive_duration(
                "HERALD_PROBE_FOR",
                self.probe_for.as_deref(),
                ProbeConfig::DEFAULT_PROBE_FOR,
            )?,
        };
        let operator_hook = operator_hook(
            self.operator_webhook_url.as_deref(),
            self.operator_webhook_secret.as_ref(),
            &address_policy,
            api_versions.default_version(),
        )?;
        let egress_proxy = egress_proxy(self.egress_proxy.as_ref())?;
        let delivery_niceness = delivery_niceness(self.delivery_niceness.as_deref())?;
        self.role.check_storage(&self.storage.database_url)?;
        let public_url = public_url(self.public_url.as_deref(), &self.listen)?;
        let portal_frame_ancestors = frame_ancestors(&self.portal_frame_ancestors)?;
        let retention = RetentionConfig {
            events: day * u32::try_from(self.event_retention_days).unwrap_or(u32::MAX),
            attempts: day * u32::try_from(self.attempt_retention_days).unwrap_or(u32::MAX),
            ..RetentionConfig::default()
        };
        Ok(Config {
            storage: self.storage,
            probe,
            operator_hook,
            api: ApiConfig {
                catalog,
                schema_enforcement,
                api_versions,
                address_policy,
                endpoint_cap: herald_domain::endpoint::MAX_ENDPOINTS_PER_ORG,
                write_rate_limit: RateLimit {
                    limit: self.write_rate_per_minute,
                    period: minute,
                },
                replay_rate_limit: RateLimit {
                    limit: self.replay_rate_per_minute,
                    period: minute,
                },
                admin_token: self.admin_token.filter(|token| !token.is_empty()),
                body_limit: self.max_body_bytes,
                max_event_bytes: self.max_event_bytes,
                event_retention: retention.events,
                public_url,
                portal_frame_ancestors,
                queue_gauges: QueueGaugeSettings {
                    max_age: Duration::from_secs(self.queue_gauges_max_age_seconds),
                    ..QueueGaugeSettings::default()
                },
            },
            extra_root_certs: self.extra_root_certs,
            egress_proxy,
            shutdown_grace,
            worker,
            role: self.role,
            delivery_niceness,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
            request_timeout,
            retention,
            http: HttpConfig {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
                idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
                max_connections,
            },
            trace_export_metrics: None,
        })
    }
}

/// The catalog `herald serve` and the admin commands work with: the catalog file
/// (`HERALD_EVENT_CATALOG`) when one is named, checked whole (schemas compiled, examples
/// validated), else the names of `HERALD_EVENT_TYPES`, else the default catalog. A file that
/// cannot be read or is refused stops the caller with a message naming the file and the type.
pub fn load_catalog(file: Option<&Path>, names: Option<&str>) -> anyhow::Result<EventCatalog> {
    let Some(path) = file else {
        return EventCatalog::from_setting(names).context("HERALD_EVENT_TYPES");
    };
    if names.is_some() {
        bail!("set HERALD_EVENT_CATALOG or HERALD_EVENT_TYPES, not both");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("HERALD_EVENT_CATALOG: cannot read {}", path.display()))?;
    let format = match path.extension().and_then(|extension| extension.to_str()) {
        Some("yaml" | "yml") => CatalogFormat::Yaml,
        _ => CatalogFormat::Json,
    };
    EventCatalog::from_file_text(&text, format)
        .with_context(|| format!("HERALD_EVENT_CATALOG {}", path.display()))
}

/// The longest delay `HERALD_RETRY_SCHEDULE` accepts between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Most delays in `HERALD_RETRY_SCHEDULE`.
const MAX_RETRY_DELAYS: usize = 100;

/// `HERALD_RETRY_SCHEDULE`, or the decided schedule when unset.
fn retry_schedule(text: Option<&str>) -> anyhow::Result<RetrySchedule> {
    let Some(text) = text else {
        return Ok(RetrySchedule::default());
    };
    let delays = split_list(text)
        .iter()
        .map(|item| {
            let delay = humantime::parse_duration(item).with_context(|| {
                format!("HERALD_RETRY_SCHEDULE: {item:?} is not a duration (e.g. 5s, 1m, 2h)")
            })?;
            if delay.is_zero() || delay > MAX_RETRY_DELAY {
                bail!("HERALD_RETRY_SCHEDULE: each delay must be more than 0 and at most 7d, not {item:?}");
            }
            Ok(delay)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if delays.is_empty() || delays.len() > MAX_RETRY_DELAYS {
        bail!("HERALD_RETRY_SCHEDULE must list 1 to {MAX_RETRY_DELAYS} delays");
    }
    Ok(RetrySchedule::new(delays))
}

/// `HERALD_AUTO_DISABLE_AFTER`; else the deprecated `HERALD_AUTO_DISABLE_DAYS`, with a
/// warning; else 5 days.
fn auto_disable_after(text: Option<&str>, days: Option<u64>) -> anyhow::Result<Duration> {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    match (text, days) {
        (Some(text), _) => {
            if days.is_some() {
                tracing::warn!(
                    "HERALD_AUTO_DISABLE_DAYS is ignored: HERALD_AUTO_DISABLE_AFTER is set"
                );
            }
            let after = humantime::parse_duration(text.trim()).with_context(|| {
                format!("HERALD_AUTO_DISABLE_AFTER: {text:?} is not a duration (e.g. 5d, 12h)")
            })?;
            if after.is_zero() {
                bail!("HERALD_AUTO_DISABLE_AFTER must be more than 0");
            }
            Ok(after)
        }
        (None, Some(days)) => {
            tracing::warn!(
                days,
                "HERALD_AUTO_DISABLE_DAYS is deprecated: set HERALD_AUTO_DISABLE_AFTER={days}d instead"
            );
            if days == 0 {
                bail!("HERALD_AUTO_DISABLE_DAYS must be at least 1");
            }
            Ok(DAY * u32::try_from(days).unwrap_or(u32::MAX))
        }
        (None, None) => Ok(WorkerConfig::default().auto_disable_after),
    }
}

/// A duration setting that must be more than zero, or `default` when unset.
fn positive_duration(
    name: &str,
    text: Option<&str>,
    default: Duration,
) -> anyhow::Result<Duration> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(default);
    };
    let duration = humantime::parse_duration(text)
        .with_context(|| format!("{name}: {text:?} is not a duration (e.g. 30m, 1h, 7d)"))?;
    if duration.is_zero() {
        bail!("{name} must be more than 0");
    }
    Ok(duration)
}

/// What a node runs (`HERALD_ROLE`). Nodes of one PostgreSQL database may split the API from
/// delivery, so that a drain never takes the API's cores and each side grows by its own count
/// of nodes; every node of the embedded database is `Both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API and delivery.
    Both,
    /// Every route; no delivery worker, recovery, probing or purge.
    Api,
    /// Delivery, recovery, probing and purge; of the routes only `/healthz`, `/readyz` and
    /// `/metrics`.
    Delivery,
}

impl Role {
    /// Whether the node serves the organization, admin and portal routes.
    pub fn serves_api(self) -> bool {
        self != Self::Delivery
    }

    /// Whether the node runs the delivery worker and the work beside it.
    pub fn delivers(self) -> bool {
        self != Self::Api
    }

    /// A role other than `Both` needs PostgreSQL: the embedded database has one node.
    pub fn check_storage(self, database_url: &str) -> anyhow::Result<()> {
        if self != Self::Both && !crate::storage::is_postgres(database_url) {
            bail!(
                "HERALD_ROLE={} needs PostgreSQL: the embedded database has one node, which \
                 must serve the API and deliver (HERALD_ROLE=both)",
                self.name()
            );
        }
        Ok(())
    }

    /// As `HERALD_ROLE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Api => "api",
            Self::Delivery => "delivery",
        }
    }
}

/// `HERALD_DELIVERY_NICENESS`: a whole number from 0 to 19, or the default when unset.
fn delivery_niceness(text: Option<&str>) -> anyhow::Result<i32> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(background::DEFAULT_NICENESS);
    };
    text.parse::<i32>()
        .ok()
        .filter(|niceness| (0..=background::MAX_NICENESS).contains(niceness))
        .with_context(|| {
            format!(
                "HERALD_DELIVERY_NICENESS must be a whole number from 0 to {}, not {text:?}",
                background::MAX_NICENESS
            )
        })
}

/// `HERALD_OPERATOR_WEBHOOK_URL` and `HERALD_OPERATOR_WEBHOOK_SECRET`: both or neither; the
/// URL passes the checks an endpoint's does, the secret is base64 of 32 bytes.
fn operator_hook(
    url: Option<&str>,
    secret: Option<&SecretText>,
    policy: &AddressPolicy,
    api_version: &str,
) -> anyhow::Result<Option<OperatorHook>> {
    let url = url.map(str::trim).filter(|url| !url.is_empty());
    let secret = secret.filter(|secret| !secret.is_empty());
    match (url, secret) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            bail!("HERALD_OPERATOR_WEBHOOK_URL is set: set HERALD_OPERATOR_WEBHOOK_SECRET too")
        }
        (None, Some(_)) => {
            bail!("HERALD_OPERATOR_WEBHOOK_SECRET is set: set HERALD_OPERATOR_WEBHOOK_URL too")
        }
        (Some(url), Some(secret)) => {
            let url = herald_domain::endpoint::validate_url(url, policy)
                .map_err(|message| anyhow::anyhow!("HERALD_OPERATOR_WEBHOOK_URL: {message}"))?;
            let bytes: [u8; 32] = STANDARD
                .decode(secret.expose().trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "HERALD_OPERATOR_WEBHOOK_SECRET must be standard base64 of 32 bytes"
                    )
                })?;
            Ok(Some(OperatorHook {
                url,
                secret: Secret::from_bytes(bytes),
                api_version: api_version.to_owned(),
            }))
        }
    }
}

/// `HERALD_EGRESS_PROXY`: an `http://host:port` CONNECT proxy, or none when unset or empty.
/// The message of a refusal never repeats the setting, which may hold a password.
fn egress_proxy(setting: Option<&SecretText>) -> anyhow::Result<Option<EgressProxy>> {
    let Some(text) = setting
        .map(SecretText::expose)
        .map(str::trim)
        .filter(|text| !text.is_empty())
    else {
        return Ok(None);
    };
    EgressProxy::parse(text)
        .map(Some)
        .map_err(|error| anyhow::anyhow!("HERALD_EGRESS_PROXY {error}"))
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `HERALD_PUBLIC_URL` without its trailing slash, or `http://` plus the listen address.
pub fn public_url(setting: Option<&str>, listen: &SocketAddr) -> anyhow::Result<String> {
    let Some(text) = setting.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(format!("http://{listen}"));
    };
    let url = url::Url::parse(text)
        .map_err(|_| anyhow::anyhow!("HERALD_PUBLIC_URL: {text:?} is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("HERALD_PUBLIC_URL must be an http or https URL with a host, not {text:?}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("HERALD_PUBLIC_URL must not have a query or a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("HERALD_PUBLIC_URL must not contain user-info");
    }
    // The portal calls `/v1` and lives at `/portal/` from the host's root.
    if url.path() != "/" {
        bail!(
            "HERALD_PUBLIC_URL must be an origin without a path, e.g. https://webhooks.example.com"
        );
    }
    // The parsed form, not the text: the parser drops tabs and newlines, lower-cases the host.
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `HERALD_PORTAL_FRAME_ANCESTORS`: CSP source expressions separated by spaces. A `;` or `,`
/// would end the directive and let the setting write others, so they are refused.
fn frame_ancestors(setting: &str) -> anyhow::Result<String> {
    let sources: Vec<&str> = setting.split_whitespace().collect();
    if sources.is_empty() {
        bail!("HERALD_PORTAL_FRAME_ANCESTORS must name at least one source, e.g. 'none'");
    }
    for source in &sources {
        if source.contains([';', ','])
            || !source.is_ascii()
            || source.chars().any(|c| c.is_ascii_control())
        {
            bail!("HERALD_PORTAL_FRAME_ANCESTORS: {source:?} is not a CSP source expression");
        }
    }
    Ok(sources.join(" "))
}

/// Decodes `HERALD_SECRETS_KEY`.
pub fn decode_secrets_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD
        .decode(text.trim())
        .context("HERALD_SECRETS_KEY is not standard base64")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("HERALD_SECRETS_KEY must decode to exactly 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_defaults_to_the_listen_address_and_loses_its_trailing_slash() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        assert_eq!(
            public_url(None, &listen).expect("default"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            public_url(Some("https://Hooks.Example.com:8443/"), &listen).expect("valid"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(
            public_url(Some("https://hooks.exa\tmple.com"), &listen).expect("valid"),
            "https://hooks.example.com",
            "the link is built from the parsed URL, not the text"
        );
        for bad in [
            "https://hooks.example.com/herald/",
            "https://user:pw@hooks.example.com",
            "hooks.example.com",
            "ftp://hooks.example.com",
            "https://hooks.example.com/?a=1",
            "https://hooks.example.com/#x",
        ] {
            assert!(
                public_url(Some(bad), &listen).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn frame_ancestors_cannot_write_other_directives() {
        assert_eq!(frame_ancestors("'none'").expect("valid"), "'none'");
        assert_eq!(
            frame_ancestors("  https://a.example.com   https://b.example.com ").expect("valid"),
            "https://a.example.com https://b.example.com"
        );
        for bad in [
            "",
            "   ",
            "'self'; script-src *",
            "https://a.example.com,x",
            "a\u{7f}",
        ] {
            assert!(frame_ancestors(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_retry_schedule_is_a_list_of_durations() {
        assert_eq!(
            retry_schedule(None).expect("default"),
            RetrySchedule::default()
        );
        let schedule = retry_schedule(Some("100ms, 2s,1m")).expect("valid");
        assert_eq!(
            schedule.delays(),
            [
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert_eq!(schedule.max_attempts(), 4, "one attempt more than delays");
        for bad in ["", "5", "5 parsecs", "0s", "8d", "1s,,x"] {
            assert!(
                retry_schedule(Some(bad)).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn probe_settings_are_positive_durations() {
        let hour = Duration::from_secs(3600);
        assert_eq!(positive_duration("X", None, hour).expect("default"), hour);
        assert_eq!(
            positive_duration("X", Some("90s"), hour).expect("valid"),
            Duration::from_secs(90)
        );
        let zero = positive_duration("HERALD_PROBE_INTERVAL", Some("0s"), hour);
        assert!(
            zero.expect_err("zero")
                .to_string()
                .contains("HERALD_PROBE_INTERVAL")
        );
        let bad = positive_duration("HERALD_PROBE_FOR", Some("a week"), hour);
        assert!(
            bad.expect_err("bad")
                .to_string()
                .contains("HERALD_PROBE_FOR")
        );
    }

    #[test]
    fn the_delivery_niceness_is_0_to_19() {
        assert_eq!(
            delivery_niceness(None).expect("default"),
            background::DEFAULT_NICENESS
        );
        assert_eq!(
            delivery_niceness(Some(" ")).expect("empty"),
            background::DEFAULT_NICENESS
        );
        assert_eq!(delivery_niceness(Some("0")).expect("off"), 0);
        assert_eq!(delivery_niceness(Some(" 19 ")).expect("lowest"), 19);
        for bad in ["-1", "20", "5.5", "low", "10x"] {
            let error = delivery_niceness(Some(bad)).expect_err(bad).to_string();
            assert!(
                error.contains("HERALD_DELIVERY_NICENESS") && error.contains(bad),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn the_operator_hook_needs_a_valid_url_and_a_32_byte_secret() {
        let policy = AddressPolicy::parse_allow_list("").expect("empty allow-list");
        let secret = SecretText::new(STANDARD.encode([7_u8; 32]));
        let hook = operator_hook(
            Some("https://ops.example.com/hook"),
            Some(&secret),
            &policy,
            "v",
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(hook.url, "https://ops.example.com/hook");
        assert_eq!(hook.secret.expose_bytes(), &[7_u8; 32]);
        assert!(
            operator_hook(None, None, &policy, "v")
                .expect("unset")
                .is_none()
        );
        let short = SecretText::new(STANDARD.encode([7_u8; 16]));
        for (url, secret, names) in [
            (
                Some("https://ops.example.com/hook"),
                None,
                "HERALD_OPERATOR_WEBHOOK_SECRET",
            ),
            (None, Some(&secret), "HERALD_OPERATOR_WEBHOOK_URL"),
            (
                Some("http://ops.example.com/hook"),
                Some(&secret),
                "HERALD_OPERATOR_WEBHOOK_URL",
            ),
            (
                Some("https://ops.example.com/hook"),
                Some(&short),
                "HERALD_OPERATOR_WEBHOOK_SECRET",
            ),
        ] {
            let error = operator_hook(url, secret, &policy, "v").expect_err("refused");
            assert!(error.to_string().contains(names), "{error}");
            assert!(
                !error
                    .to_string()
                    .contains(secret.map_or("-", SecretText::expose)),
                "{error}"
            );
        }
    }

    #[test]
    fn the_egress_proxy_must_be_an_http_connect_proxy_url() {
        let setting = |text: &str| Some(SecretText::new(text));
        assert_eq!(egress_proxy(None).expect("unset"), None);
        assert_eq!(egress_proxy(setting(" ").as_ref()).expect("empty"), None);
        let proxy = egress_proxy(setting("http://proxy.internal:3128").as_ref())
            .expect("valid")
            .expect("configured");
        assert_eq!((proxy.host(), proxy.port()), ("proxy.internal", 3128));
        for bad in [
            "https://herald:hunter2@proxy.internal:3128",
            "socks5://proxy.internal:1080",
            "proxy.internal:3128",
            "http://herald:hunter2@proxy.internal:3128/path",
        ] {
            let error = egress_proxy(setting(bad).as_ref())
                .expect_err("refused")
                .to_string();
            assert!(
                error.starts_with("HERALD_EGRESS_PROXY must be ")
                    && error.contains("http://host:port"),
                "{bad}: {error}"
            );
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn auto_disable_after_is_a_duration_and_the_old_days_setting_still_counts() {
        let day = Duration::from_secs(24 * 60 * 60);
        assert_eq!(auto_disable_after(None, None).expect("default"), day * 5);
        assert_eq!(
            auto_disable_after(Some("90m"), None).expect("valid"),
            Duration::from_secs(90 * 60)
        );
        assert_eq!(
            auto_disable_after(None, Some(2)).expect("deprecated"),
            day * 2
        );
        assert_eq!(
            auto_disable_after(Some("1h"), Some(2)).expect("the new one wins"),
            Duration::from_secs(3600)
        );
        assert!(auto_disable_after(Some("soon"), None).is_err());
        assert!(auto_disable_after(Some("0s"), None).is_err());
        assert!(auto_disable_after(None, Some(0)).is_err());
    }

    #[test]
    fn a_postgresql_node_runs_two_claims_at_once_and_an_embedded_one_one() {
        let claims_in_flight = |url: &str| {
            let mut args = ServeArgs::from_defaults();
            args.storage.database_url = url.to_owned();
            args.into_config()
                .expect("a valid configuration")
                .worker
                .claims_in_flight
        };

        assert_eq!(claims_in_flight("sqlite://herald.db"), 1);
        assert_eq!(claims_in_flight("postgres://herald@db:5432/herald"), 2);
        assert_eq!(claims_in_flight("postgresql://herald@db/herald"), 2);
    }

    #[test]
    fn a_role_other_than_both_needs_postgresql() {
        let role = |url: &str, role: Role| {
            let mut args = ServeArgs::from_defaults();
            args.storage.database_url = url.to_owned();
            args.role = role;
            args.into_config().map(|config| config.role)
        };
        for each in [Role::Both, Role::Api, Role::Delivery] {
            assert_eq!(
                role("postgres://herald@db:5432/herald", each).expect("PostgreSQL"),
                each
            );
        }
        assert_eq!(
            role("sqlite://herald.db", Role::Both).expect("embedded"),
            Role::Both
        );
        for each in [Role::Api, Role::Delivery] {
            let error = role("sqlite://herald.db", each)
                .expect_err("refused on the embedded database")
                .to_string();
            assert!(
                error.contains(&format!("HERALD_ROLE={}", each.name()))
                    && error.contains("needs PostgreSQL"),
                "{error}"
            );
        }
    }

    /// Every configuration type that holds a secret is formatted with `{:?}` (as a stray log
    /// line would) and must not show it.
    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        const ADMIN_TOKEN: &str = "admin-token-do-not-print";
        const DATABASE_PASSWORD: &str = "database-password-do-not-print";
        const PROXY_PASSWORD: &str = "proxy-password-do-not-print";
        let secrets_key = STANDARD.encode([42_u8; 32]);
        let operator_secret = STANDARD.encode([43_u8; 32]);
        let mut args = ServeArgs::from_defaults();
        args.admin_token = Some(SecretText::new(ADMIN_TOKEN));
        args.storage.database_url =
            format!("postgres://herald:{DATABASE_PASSWORD}@db:5432/herald?sslmode=require");
        args.storage.secrets_key = Some(SecretText::new(secrets_key.clone()));
        args.operator_webhook_url = Some("https://ops.example.com/hook".to_owned());
        args.operator_webhook_secret = Some(SecretText::new(operator_secret.clone()));
        args.egress_proxy = Some(SecretText::new(format!(
            "http://herald:{PROXY_PASSWORD}@proxy.internal:3128"
        )));
        let config = args.clone().into_config().expect("a valid configuration");
        for (name, text) in [
            ("ServeArgs", format!("{args:?}")),
            ("StorageArgs", format!("{:?}", args.storage)),
            ("Config", format!("{config:?}")),
            ("ApiConfig", format!("{:?}", config.api)),
        ] {
            for secret in [
                ADMIN_TOKEN,
                DATABASE_PASSWORD,
                secrets_key.as_str(),
                operator_secret.as_str(),
                PROXY_PASSWORD,
            ] {
                assert!(
                    !text.contains(secret),
                    "{name}'s Debug shows a secret: {text}"
                );
            }
            assert!(text.contains("<redacted>"), "{name}: {text}");
        }
        assert!(format!("{config:?}").contains("postgres://herald:<redacted>@db:5432/herald"));
    }
}
