//! `GET /metrics`: Prometheus text. Counters live in memory and are incremented where things
//! happen; the queue gauges are read from storage off the scrape ([`crate::queue_gauges`]), so
//! every node reports the shared queue as it was a few seconds ago at most, and a scrape costs
//! the same whatever the queue holds. When storage cannot be read, a scrape still answers: the
//! counters are this process's own, the queue gauges keep their last values, and
//! `herald_storage_up` says 0 (from the scrape's own round trip to storage), so an outage
//! shows on the dashboards instead of blanking them. `herald_storage_writable` says whether
//! storage accepts writes, which a full disk can stop while reads go on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use herald_store::StoreError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::queue_gauges::QueueGauges;
use crate::state::AppState;

/// The label of the schema violations counter: the event's type (a catalog type, so the
/// label set stays as small as the catalog).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabel {
    /// The event's type.
    pub event_type: String,
}

/// The API's own metrics and the registry every component registered into.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    registry: Arc<Registry>,
    events_published: Counter,
    queue: Arc<QueueGauges>,
    storage_up: Gauge,
    storage_writable: Gauge,
    storage_write_failures: Counter,
    schema_violations: Family<EventTypeLabel, Counter>,
}

/// The API's handles, registered before the registry is frozen.
#[derive(Debug, Clone)]
pub struct ApiMetricHandles {
    events_published: Counter,
    due: Gauge,
    scheduled: Gauge,
    oldest_due_age_seconds: Gauge,
    queue_gauges_age_seconds: Gauge,
    storage_up: Gauge,
    storage_writable: Gauge,
    storage_write_failures: Counter,
    schema_violations: Family<EventTypeLabel, Counter>,
}

impl ApiMetricHandles {
    /// Creates and registers the API's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let handles = Self {
            events_published: Counter::default(),
            due: Gauge::default(),
            scheduled: Gauge::default(),
            oldest_due_age_seconds: Gauge::default(),
            queue_gauges_age_seconds: Gauge::default(),
            storage_up: Gauge::default(),
            storage_writable: Gauge::default(),
            storage_write_failures: Counter::default(),
            schema_violations: Family::default(),
        };
        registry.register(
            "herald_events_published",
            "Events accepted by the publish API",
            handles.events_published.clone(),
        );
        registry.register(
            "herald_deliveries_due",
            "Pending deliveries due now",
            handles.due.clone(),
        );
        registry.register(
            "herald_deliveries_scheduled",
            "Pending deliveries due later",
            handles.scheduled.clone(),
        );
        registry.register(
            "herald_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has been waiting",
            handles.oldest_due_age_seconds.clone(),
        );
        registry.register(
            "herald_queue_gauges_age_seconds",
            "Seconds since the queue gauges (due, scheduled, oldest due age) were read from storage",
            handles.queue_gauges_age_seconds.clone(),
        );
        registry.register(
            "herald_storage_up",
            "1 when this scrape reached storage and the last reading of the queue succeeded; 0 otherwise, and the queue gauges hold their last values",
            handles.storage_up.clone(),
        );
        registry.register(
            "herald_storage_writable",
            "1 while storage accepts writes; 0 from a write refused for an outage (a full disk, an I/O error) until a write succeeds again",
            handles.storage_writable.clone(),
        );
        registry.register(
            "herald_storage_write_failures",
            "Writes storage refused for an outage (a full disk, an I/O error)",
            handles.storage_write_failures.clone(),
        );
        registry.register(
            "herald_schema_violations",
            "Published events whose data broke their type's schema, by type (HERALD_SCHEMA_ENFORCEMENT warn or reject)",
            handles.schema_violations.clone(),
        );
        handles
    }

    /// Freezes the registry into the scrape handle.
    pub fn finish(self, registry: Registry) -> ApiMetrics {
        ApiMetrics {
            registry: Arc::new(registry),
            events_published: self.events_published,
            queue: Arc::new(QueueGauges::new(
                self.due,
                self.scheduled,
                self.oldest_due_age_seconds,
                self.queue_gauges_age_seconds,
            )),
            storage_up: self.storage_up,
            storage_writable: self.storage_writable,
            storage_write_failures: self.storage_write_failures,
            schema_violations: self.schema_violations,
        }
    }
}

impl ApiMetrics {
    /// Counts newly published events.
    pub fn count_published(&self, events: u64) {
        self.events_published.inc_by(events);
    }

    /// Counts one event whose `data` broke its type's schema.
    pub fn count_schema_violation(&self, event_type: &str) {
        self.schema_violations
            .get_or_create(&EventTypeLabel {
                event_type: event_type.to_owned(),
            })
            .inc();
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        ApiMetricHandles::register(&mut registry).finish(registry)
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let metrics = &state.metrics;
    let writes = state.store.write_status();
    metrics.storage_writable.set(i64::from(writes.writable));
    // The store counts; the counter follows it (fetch_max, so concurrent scrapes agree).
    metrics
        .storage_write_failures
        .inner()
        .fetch_max(writes.failures_total, std::sync::atomic::Ordering::Relaxed);
    // The scrape's own round trip says whether storage answers now; the queue's counts come
    // from the last reading, which a slow backlog cannot make the scrape wait for. A store
    // that refuses writes still answers reads.
    let reached = match state.store.ping().await {
        Ok(()) | Err(StoreError::NotWritable) => true,
        Err(error) => {
            tracing::warn!(error = %error, "metrics: storage did not answer");
            false
        }
    };
    if reached {
        metrics
            .queue
            .refresh(&state.store, state.config.queue_gauges)
            .await;
    }
    metrics
        .storage_up
        .set(i64::from(reached && !metrics.queue.last_failed()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
