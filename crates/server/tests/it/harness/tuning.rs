//! Delivery settings of a test app: trusted roots, the retry schedule, timeouts, auto-disable,
//! probing, the operator's hook, retention and trace export; and the API server's connection limits. They are applied to the checked
//! [`Config`] after `into_config()`, because tests need sub-second durations that the day- and
//! second-granular flags cannot express.
//!
//! Loopback is reached through the same allow-list setting production uses: the SSRF policy
//! stays on.

use std::path::Path;
use std::time::Duration;

use herald_api::QueueGaugeSettings;
use herald_delivery::RetrySchedule;
use herald_domain::Secret;
use herald_server::Config;
use herald_store::OperatorHook;

use super::TestAppBuilder;

/// The networks `.allow_loopback()` exempts from the SSRF policy.
const LOOPBACK_NETWORKS: &str = "127.0.0.0/8,::1/128";

/// Overrides of the checked configuration; `None` keeps the product's default.
#[derive(Debug, Clone, Default)]
pub(super) struct Tuning {
    extra_root_certs: Option<Vec<u8>>,
    retry_schedule: Option<Vec<Duration>>,
    auto_disable_after: Option<Duration>,
    event_retention: Option<Duration>,
    attempt_retention: Option<Duration>,
    retention_interval: Option<Duration>,
    request_timeout: Option<Duration>,
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    probe_interval: Option<Duration>,
    probe_for: Option<Duration>,
    operator_hook: Option<(String, [u8; 32])>,
    export_traces: bool,
    delivery_niceness: Option<i32>,
    queue_gauges: Option<QueueGaugeSettings>,
}

/// The queue gauges of test apps: read at every scrape, and waited for, so a test that
/// scrapes after a change sees it (the product's default serves the last reading at once).
const FRESH_QUEUE_GAUGES: QueueGaugeSettings = QueueGaugeSettings {
    max_age: Duration::ZERO,
    wait: Duration::from_secs(10),
};

impl TestAppBuilder {
    /// Lets deliveries reach loopback receivers (`127.0.0.0/8,::1/128`).
    pub(crate) fn allow_loopback(self) -> Self {
        self.allow_networks(LOOPBACK_NETWORKS)
    }

    /// Extra trusted root certificates (PEM) for deliveries, written into the app's directory
    /// and named by `extra_root_certs`, as `HERALD_EXTRA_ROOT_CERTS` would.
    pub(crate) fn extra_root_certs(mut self, pem: Vec<u8>) -> Self {
        self.tuning.extra_root_certs = Some(pem);
        self
    }

    /// The base delays between attempts; one attempt more than there are delays is made.
    pub(crate) fn retry_schedule(mut self, delays: Vec<Duration>) -> Self {
        self.tuning.retry_schedule = Some(delays);
        self
    }

    /// How long an endpoint's deliveries must all have failed before it is set inactive.
    pub(crate) fn auto_disable_after(mut self, after: Duration) -> Self {
        self.tuning.auto_disable_after = Some(after);
        self
    }

    /// How long events are kept, for the purge and for replay's 410 alike.
    pub(crate) fn event_retention(mut self, retention: Duration) -> Self {
        self.tuning.event_retention = Some(retention);
        self
    }

    /// How long attempt records are kept.
    pub(crate) fn attempt_retention(mut self, retention: Duration) -> Self {
        self.tuning.attempt_retention = Some(retention);
        self
    }

    /// Time between retention purges (the first runs at start).
    pub(crate) fn retention_interval(mut self, interval: Duration) -> Self {
        self.tuning.retention_interval = Some(interval);
        self
    }

    /// The whole-attempt deadline.
    pub(crate) fn request_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.request_timeout = Some(timeout);
        self
    }

    /// How long a client has to send a request's headers.
    pub(crate) fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.header_read_timeout = Some(timeout);
        self
    }

    /// How long a kept-alive connection may wait for its next request.
    pub(crate) fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.idle_timeout = Some(timeout);
        self
    }

    /// How many steps nicer than the API's threads the delivery threads run.
    pub(crate) fn delivery_niceness(mut self, niceness: i32) -> Self {
        self.tuning.delivery_niceness = Some(niceness);
        self
    }

    /// Time between two probes of an endpoint disabled for its failures.
    pub(crate) fn probe_interval(mut self, interval: Duration) -> Self {
        self.tuning.probe_interval = Some(interval);
        self
    }

    /// How long after it was disabled an endpoint is still probed.
    pub(crate) fn probe_for(mut self, probe_for: Duration) -> Self {
        self.tuning.probe_for = Some(probe_for);
        self
    }

    /// The operator's hook: its URL and the 32 bytes of its signing secret.
    pub(crate) fn operator_hook(mut self, url: String, secret: [u8; 32]) -> Self {
        self.tuning.operator_hook = Some((url, secret));
        self
    }

    /// Exports traces to the test process's OTLP receiver (`harness::otlp_receiver`), as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` would.
    pub(crate) fn export_traces(mut self) -> Self {
        self.tuning.export_traces = true;
        self
    }

    /// When `/metrics` reads the queue gauges again ([`FRESH_QUEUE_GAUGES`] by default).
    pub(crate) fn queue_gauges(mut self, settings: QueueGaugeSettings) -> Self {
        self.tuning.queue_gauges = Some(settings);
        self
    }

    /// Most API connections open at once.
    pub(crate) fn max_connections(mut self, connections: usize) -> Self {
        self.tuning.max_connections = Some(connections);
        self
    }
}

impl Tuning {
    /// Applies the overrides; `directory` is the app's temporary directory.
    pub(super) fn apply(self, config: &mut Config, directory: &Path) {
        if let Some(pem) = self.extra_root_certs {
            let path = directory.join("extra-root-certs.pem");
            std::fs::write(&path, pem).expect("writing the extra root certificates");
            config.extra_root_certs = Some(path);
        }
        if let Some(delays) = self.retry_schedule {
            config.worker.schedule = RetrySchedule::new(delays);
        }
        if let Some(after) = self.auto_disable_after {
            config.worker.auto_disable_after = after;
        }
        if let Some(retention) = self.event_retention {
            config.retention.events = retention;
            config.api.event_retention = retention;
        }
        if let Some(retention) = self.attempt_retention {
            config.retention.attempts = retention;
        }
        if let Some(interval) = self.retention_interval {
            config.retention.interval = interval;
        }
        if let Some(timeout) = self.request_timeout {
            config.request_timeout = timeout;
            // A lease must outlive the longest attempt, or a slow attempt is claimed twice.
            config.worker.lease = config.worker.lease.max(timeout * 4);
        }
        if let Some(timeout) = self.header_read_timeout {
            config.http.header_read_timeout = timeout;
        }
        if let Some(timeout) = self.idle_timeout {
            config.http.idle_timeout = timeout;
        }
        if let Some(connections) = self.max_connections {
            config.http.max_connections = connections;
        }
        config.api.queue_gauges = self.queue_gauges.unwrap_or(FRESH_QUEUE_GAUGES);
        if let Some(niceness) = self.delivery_niceness {
            config.delivery_niceness = niceness;
        }
        if let Some(interval) = self.probe_interval {
            config.probe.interval = interval;
        }
        if let Some(probe_for) = self.probe_for {
            config.probe.probe_for = probe_for;
        }
        if self.export_traces {
            config.worker.tracer = Some(super::telemetry::delivery_tracer());
            config.trace_export_metrics = Some(super::telemetry::export_metrics());
        }
        if let Some((url, secret)) = self.operator_hook {
            config.operator_hook = Some(OperatorHook {
                url,
                secret: Secret::from_bytes(secret),
                api_version: config.api.api_versions.default_version().to_owned(),
            });
        }
    }
}
