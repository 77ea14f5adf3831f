//! The worker's Prometheus metrics: attempts by outcome and attempt latency. Queue depth is
//! read from storage at scrape time by the API, not counted here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of the attempts counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `success`, `retry` or `dead`.
    pub outcome: &'static str,
}

/// Handles to the worker's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    attempts: Family<OutcomeLabel, Counter>,
    latency_seconds: Histogram,
}

impl DeliveryMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let attempts = Family::<OutcomeLabel, Counter>::default();
        // 1 ms to about 33 s: the whole range from a local receiver to the total timeout.
        let latency_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "herald_delivery_attempts",
            "Delivery attempts by outcome",
            attempts.clone(),
        );
        registry.register(
            "herald_delivery_attempt_duration_seconds",
            "Time from sending an attempt to its answer",
            latency_seconds.clone(),
        );
        Self {
            attempts,
            latency_seconds,
        }
    }

    /// Counts one recorded attempt.
    pub fn observe(&self, outcome: herald_domain::Outcome, response_time_ms: u64) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        self.latency_seconds
            .observe(response_time_ms as f64 / 1000.0);
    }
}
