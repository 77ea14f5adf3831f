//! Events and attempts (docs/api.md#the-delivery-record and docs/api.md#the-envelope): what was
//! published, and the record of each try to deliver it.

use std::fmt;

use crate::ids::{AttemptId, DeliveryId, EndpointId, EventId, OrgId};
use crate::time::Timestamp;
use crate::trace::TraceParent;

/// How an event came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrigin {
    /// Published by the platform.
    Publish,
    /// A replay of an earlier attempt's event.
    Replay,
    /// The synthetic `webhook.test` of the test operation (and of a probe).
    Test,
    /// An operational event Herald published itself (`endpoint.disabled`, …).
    Herald,
}

impl EventOrigin {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventOrigin::Publish => "publish",
            EventOrigin::Replay => "replay",
            EventOrigin::Test => "test",
            EventOrigin::Herald => "herald",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            EventOrigin::Publish,
            EventOrigin::Replay,
            EventOrigin::Test,
            EventOrigin::Herald,
        ]
        .into_iter()
        .find(|origin| origin.as_str() == text)
    }
}

/// A published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id (`evt_…` on the wire).
    pub id: EventId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// Its type, from the catalog (or `webhook.test`).
    pub event_type: String,
    /// The `data` object as JSON text, byte for byte as published.
    pub data: String,
    /// The publisher's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The publisher's ordering key, if any: one endpoint's deliveries of one key go one at a
    /// time, in publish order.
    pub ordering_key: Option<String>,
    /// How it came to be.
    pub origin: EventOrigin,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// The publisher's trace context (its `traceparent`, when valid): every attempt of the
    /// event's deliveries sends a `traceparent` in that trace. `None`: the event is a trace
    /// of its own (`TraceParent::of_attempt`).
    pub traceparent: Option<TraceParent>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A 2xx answer in time.
    Success,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed; no more attempts.
    Dead,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        [Outcome::Success, Outcome::Retry, Outcome::Dead]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt's id.
    pub id: AttemptId,
    /// The organization.
    pub org_id: OrgId,
    /// The delivery (event, endpoint) it belongs to.
    pub delivery_id: DeliveryId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// The endpoint's URL at attempt time.
    pub url: String,
    /// 1-based attempt number within the delivery.
    pub attempt: u32,
    /// What came of it.
    pub outcome: Outcome,
    /// The HTTP status, or `None` when no response came.
    pub response_status: Option<u16>,
    /// How long it took.
    pub response_time_ms: u64,
    /// Lowercase hex SHA-256 of the exact body sent.
    pub request_body_sha256: String,
    /// Size of the body sent.
    pub request_body_bytes: u64,
    /// The headers sent, signatures included, in order.
    pub request_headers: Vec<(String, String)>,
    /// The first 1 KiB of the response body, lossy UTF-8.
    pub response_body_excerpt: Option<String>,
    /// Why it failed, in plain words.
    pub error: Option<String>,
    /// When the next attempt is due (only for `Retry`).
    pub next_attempt_at: Option<Timestamp>,
    /// The delivery's number in its endpoint's sequence (`None` for a test send or a probe).
    pub sequence: Option<u64>,
    /// The event's ordering key, if any.
    pub ordering_key: Option<String>,
    /// When it was made.
    pub occurred_at: Timestamp,
}
