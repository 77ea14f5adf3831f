//! OpenTelemetry spans of the delivery side (docs/operations.md#tracing): one per attempt and
//! one per claim that found work. It exports nothing itself: the server builds the pipeline
//! (OTLP exporter, batch processor) and hands the worker a [`DeliveryTracer`] only when
//! export is configured, so with tracing off an attempt does no work here at all.
//!
//! An attempt's span is the span its `traceparent` header names: its trace is the event's
//! (the publisher's, `herald_domain::trace`), its parent the publisher's span, and its span id
//! the attempt id's last 8 bytes. The SDK draws ids from its `IdGenerator` and takes no ids
//! from a `SpanBuilder`, so the provider is built with [`AttemptIds`], which hands out the
//! ids set for the one span being built on this thread and random ids otherwise. Spans are
//! built after the fact, from the attempt's record, once its outcome (retry or dead) is
//! decided; the span starts at the attempt's `occurred_at`.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use herald_domain::trace::TraceParent;
use herald_domain::{Attempt, Event};
use herald_store::{ClaimRequest, ClaimScope, ClaimedDelivery, StoreError};
use opentelemetry::trace::{
    Span as _, SpanId, SpanKind, Status, TraceContextExt as _, TraceId, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

/// The instrumentation scope of the delivery side's spans.
const SCOPE: &str = "herald-delivery";

/// Builds the delivery side's spans. Present only when export is configured.
#[derive(Debug, Clone)]
pub struct DeliveryTracer {
    tracer: SdkTracer,
}

/// The SDK's id generator for Herald's provider: the ids [`DeliveryTracer`] set for the span
/// it is building on this thread (an attempt's), random ids for every other span.
#[derive(Debug, Default)]
pub struct AttemptIds {
    random: RandomIdGenerator,
}

thread_local! {
    /// The ids of the span being built on this thread: set just before and cleared just after
    /// one synchronous `build`, so no other span can take them.
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

impl IdGenerator for AttemptIds {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_IDS.get() {
            Some((trace_id, _)) => trace_id,
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT_IDS.get() {
            Some((_, span_id)) => span_id,
            None => self.random.new_span_id(),
        }
    }
}

impl DeliveryTracer {
    /// The delivery side's tracer of `provider`, which must have been built with
    /// [`AttemptIds`] (otherwise attempt spans get random ids, not their header's).
    pub fn new(provider: &SdkTracerProvider) -> Self {
        Self {
            tracer: provider.tracer(SCOPE),
        }
    }

    /// Exports the span of one attempt of `event`, described by its decided record.
    pub fn record_attempt(&self, event: &Event, attempt: &Attempt) {
        let sent = TraceParent::of_attempt(event, attempt.id);
        // The publisher's span is the remote parent; an event published without one is a
        // trace of its own (the event id's), and its attempts are its root spans.
        let parent = match &event.traceparent {
            Some(publisher) => {
                Context::new().with_remote_span_context(publisher.remote_span_context())
            }
            None => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("herald.endpoint.id", attempt.endpoint_id.to_string()),
            KeyValue::new("herald.event.id", attempt.event_id.to_string()),
            KeyValue::new("herald.delivery.id", attempt.delivery_id.to_string()),
            KeyValue::new("herald.delivery.attempt", i64::from(attempt.attempt)),
            KeyValue::new("herald.delivery.outcome", attempt.outcome.as_str()),
            KeyValue::new("http.request.method", "POST"),
        ];
        attributes.extend(url_attributes(&attempt.url));
        if let Some(status) = attempt.response_status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let failed = !matches!(attempt.outcome, herald_domain::Outcome::Success);
        if failed {
            // The semantic conventions' `error.type`: the status code, or `_OTHER` when no
            // answer came (a timeout, a refused connection, a blocked address).
            let error_type = attempt
                .response_status
                .map_or_else(|| "_OTHER".to_owned(), |status| status.to_string());
            attributes.push(KeyValue::new("error.type", error_type));
        }
        let builder = self
            .tracer
            .span_builder("POST")
            .with_kind(SpanKind::Client)
            .with_start_time(system_time(attempt.occurred_at.as_micros()))
            .with_attributes(attributes);
        NEXT_IDS.set(Some((
            TraceId::from_bytes(sent.trace_id()),
            SpanId::from_bytes(sent.parent_id()),
        )));
        let mut span = builder.start_with_context(&self.tracer, &parent);
        NEXT_IDS.set(None);
        if failed {
            span.set_status(Status::error(
                attempt.error.clone().unwrap_or_else(|| "failed".to_owned()),
            ));
        }
        span.end();
    }

    /// Exports the span of a claim that started at `started` and claimed something or failed.
    /// A claim that found nothing (the worker's poll, every 200 ms by default) is no span: it
    /// would bury the traces that matter under a root span every poll.
    pub fn record_claim(
        &self,
        started: SystemTime,
        request: &ClaimRequest,
        claimed: &Result<Vec<ClaimedDelivery>, StoreError>,
    ) {
        if matches!(claimed, Ok(rows) if rows.is_empty()) {
            return;
        }
        let scope = match &request.scope {
            ClaimScope::AnyExcept(_) => "any",
            ClaimScope::Endpoints(_) => "endpoints",
        };
        let mut span = self
            .tracer
            .span_builder("claim deliveries")
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("herald.claim.scope", scope),
                KeyValue::new("herald.claim.limit", i64::from(request.limit)),
            ])
            .start(&self.tracer);
        match claimed {
            Ok(rows) => span.set_attribute(KeyValue::new(
                "herald.claim.rows",
                i64::try_from(rows.len()).unwrap_or(i64::MAX),
            )),
            Err(error) => span.set_status(Status::error(error.to_string())),
        }
        span.end();
    }
}

/// `server.address`, `server.port` and `url.full` of an endpoint URL. `url.full` leaves out
/// the query, the fragment and any user-info: an endpoint URL may carry a token in either, and
/// spans go to a collector that customers' secrets must never reach.
fn url_attributes(url: &str) -> Vec<KeyValue> {
    let Ok(mut url) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut attributes = Vec::with_capacity(3);
    if let Some(host) = url.host_str() {
        attributes.push(KeyValue::new("server.address", host.to_owned()));
    }
    if let Some(port) = url.port_or_known_default() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    url.set_query(None);
    url.set_fragment(None);
    // Both fail only for URLs that cannot have user-info, which then has none to remove.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    attributes.push(KeyValue::new("url.full", String::from(url)));
    attributes
}

/// A record's instant (microseconds since the epoch) as the SDK's time.
fn system_time(micros: i64) -> SystemTime {
    let micros = u64::try_from(micros).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: &[(&str, &str)]) {
        let attributes: Vec<(String, String)> = url_attributes(url)
            .into_iter()
            .map(|pair| (pair.key.to_string(), pair.value.to_string()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(attributes, expected, "{url}");
    }

    #[test]
    fn url_attributes_leave_out_query_fragment_and_credentials() {
        check(
            "https://hooks.example.com/in?token=secret#frag",
            &[
                ("server.address", "hooks.example.com"),
                ("server.port", "443"),
                ("url.full", "https://hooks.example.com/in"),
            ],
        );
        check(
            "https://user:pass@hooks.example.com:8443/a/b",
            &[
                ("server.address", "hooks.example.com"),
                ("server.port", "8443"),
                ("url.full", "https://hooks.example.com:8443/a/b"),
            ],
        );
        check("not a url", &[]);
    }

    #[test]
    fn ids_are_random_unless_set_for_the_span_being_built() {
        let ids = AttemptIds::default();
        let set = (TraceId::from_bytes([7; 16]), SpanId::from_bytes([9; 8]));
        assert_ne!(ids.new_span_id(), set.1);
        NEXT_IDS.set(Some(set));
        assert_eq!((ids.new_trace_id(), ids.new_span_id()), set);
        NEXT_IDS.set(None);
        assert_ne!(ids.new_span_id(), set.1);
        assert_ne!(ids.new_trace_id(), set.0);
    }
}
