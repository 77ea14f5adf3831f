//! What an attempt has learned so far, and the [`AttemptOutcome`] it makes: one implementation
//! for the direct path and the egress proxy's, so both record an attempt in exactly the same
//! shape (status, timing, excerpt, `Retry-After`, error text, class).

use std::time::{Duration, Instant};

use herald_domain::Timestamp;
use http::StatusCode;
use http::header::{HeaderMap, RETRY_AFTER};

use super::{AttemptOutcome, EXCERPT_LIMIT, OutcomeClass, describe};
use crate::retry::parse_retry_after;

/// What an attempt has learned so far. It is filled as the answer arrives, so that a deadline
/// that cuts the attempt short still leaves the status behind.
#[derive(Debug, Default)]
pub(super) struct Progress {
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    excerpt: Vec<u8>,
}

impl Progress {
    /// Notes the answer's status, and its `Retry-After` when the status is 429 or 503.
    pub(super) fn record_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            self.retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, Timestamp::now()));
        }
    }

    /// Whether the excerpt still has room: once it is full, no more of the body is read.
    pub(super) fn wants_body(&self) -> bool {
        self.excerpt.len() < EXCERPT_LIMIT
    }

    /// Keeps what fits of `chunk` in the excerpt.
    pub(super) fn record_body(&mut self, chunk: &[u8]) {
        let room = EXCERPT_LIMIT - self.excerpt.len().min(EXCERPT_LIMIT);
        self.excerpt
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The attempt's record: `error` is why it failed on the way, `None` when the exchange
    /// completed (the status then decides).
    pub(super) fn into_outcome(self, started: Instant, error: Option<String>) -> AttemptOutcome {
        let response_time_ms = elapsed_ms(started);
        let excerpt = self
            .status
            .map(|_| describe::excerpt_text(&self.excerpt, EXCERPT_LIMIT));
        let response_status = self.status.map(|status| status.as_u16());
        let (class, error) = match (self.status, error) {
            (_, Some(error)) => (OutcomeClass::Failure, Some(error)),
            (Some(status), None) if status.is_success() => (OutcomeClass::Success, None),
            (Some(StatusCode::GONE), None) => (OutcomeClass::Gone, Some("http 410".to_owned())),
            (Some(status), None) if status.is_redirection() => (
                OutcomeClass::Failure,
                Some(format!("redirect not followed ({})", status.as_u16())),
            ),
            (Some(status), None) => (
                OutcomeClass::Failure,
                Some(format!("http {}", status.as_u16())),
            ),
            (None, None) => (OutcomeClass::Failure, Some("no response".to_owned())),
        };
        AttemptOutcome {
            response_status,
            response_time_ms,
            response_body_excerpt: excerpt,
            retry_after: self.retry_after,
            error,
            class,
        }
    }
}

impl AttemptOutcome {
    /// An attempt that never reached the network.
    pub(super) fn failed(started: Instant, reason: String) -> Self {
        Self {
            response_status: None,
            response_time_ms: elapsed_ms(started),
            response_body_excerpt: None,
            retry_after: None,
            error: Some(reason),
            class: OutcomeClass::Failure,
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
