//! The API's one error type and the JSON envelope of docs/api.md#errors. Status codes,
//! error codes and messages live in [`ApiError::into_response`] and nowhere else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_domain::FieldErrors;
use herald_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;

/// Every way an API request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or query string cannot be read at all.
    #[error("invalid input")]
    InvalidInput(FieldErrors),
    /// 401: missing, malformed, unknown or revoked credentials.
    #[error("authentication failed")]
    Unauthorized,
    /// 403: the key lacks the operation's scope.
    #[error("missing required scope")]
    Forbidden,
    /// 404: no such object for this caller, or no such route.
    #[error("not found")]
    NotFound,
    /// 405: known path, wrong method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the organization holds the most live endpoints allowed.
    #[error("webhook endpoint limit reached")]
    LimitExceeded {
        /// The cap, shown in the message.
        max: u32,
    },
    /// 409: the operation needs an active endpoint.
    #[error("endpoint is inactive")]
    EndpointInactive,
    /// 410: the event is past retention.
    #[error("event expired")]
    EventExpired,
    /// 413: the body is over the configured cap.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 422: one or more fields break a rule.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 429: over a rate limit.
    #[error("rate limited")]
    RateLimited {
        /// How long until a retry may succeed.
        retry_after: Duration,
    },
    /// 503: storage cannot be reached.
    #[error("service unavailable")]
    Unavailable,
    /// 500: a bug. The cause goes to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 422 naming one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(FieldErrors::from([(field.to_owned(), message.into())]))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::LimitExceeded => ApiError::LimitExceeded {
                max: herald_domain::endpoint::MAX_ENDPOINTS_PER_ORG,
            },
            StoreError::Unavailable(_) | StoreError::NotWritable => {
                if let Some(suppressed) = STORAGE_WARNINGS.allow() {
                    tracing::warn!(error = %error_chain(&error), suppressed, "storage unavailable");
                }
                ApiError::Unavailable
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// The error envelope on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

/// The `error` member of the envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `VALIDATION_FAILED`.
    pub code: &'static str,
    /// A short human-readable message.
    pub message: String,
    /// The request's id, equal to its `X-Request-Id` header.
    pub request_id: String,
    /// Field name → what is wrong with it; present on 422 and on 400 when a field is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>, nullable = false)]
    pub details: Option<FieldErrors>,
}

impl ApiError {
    /// The envelope's status, `code` and `message`. The API renders them with the request's id;
    /// the admin commands of the CLI print them, so both report one failure alike.
    pub fn status_code_message(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::InvalidInput(_) => (
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                "invalid input".to_owned(),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication failed".to_owned(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "missing required scope".to_owned(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "not found".to_owned()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed".to_owned(),
            ),
            ApiError::LimitExceeded { max } => (
                StatusCode::CONFLICT,
                "LIMIT_EXCEEDED",
                format!("webhook endpoint limit reached (max {max})"),
            ),
            ApiError::EndpointInactive => (
                StatusCode::CONFLICT,
                "ENDPOINT_INACTIVE",
                "endpoint is inactive".to_owned(),
            ),
            ApiError::EventExpired => (
                StatusCode::GONE,
                "EVENT_EXPIRED",
                "event expired".to_owned(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "payload too large".to_owned(),
            ),
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                "validation failed".to_owned(),
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "rate limited".to_owned(),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "service unavailable".to_owned(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error".to_owned(),
            ),
        }
    }

    /// The envelope's `details`: the field-by-field problems, where a field is to blame.
    pub fn details(&self) -> Option<&FieldErrors> {
        match self {
            ApiError::Validation(details) => Some(details),
            ApiError::InvalidInput(details) if !details.is_empty() => Some(details),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
        }
        let (status, code, message) = self.status_code_message();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(whole_seconds_at_least_one(*retry_after)),
            ApiError::Unavailable => Some(1),
            _ => None,
        };
        let details = self.details().cloned();
        let envelope = ErrorEnvelope {
            success: false,
            error: ErrorBody {
                code,
                message,
                request_id: request_id::current(),
                details,
            },
        };
        let mut response = (status, Json(envelope)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Warnings of requests refused because storage is unavailable: at most one a second, however
/// many requests meet the outage (the store logs the outage itself once; a full disk is no time
/// to write tens of thousands of log lines to it).
pub(crate) static STORAGE_WARNINGS: RareLog = RareLog::new();

/// Lets a repeated log line through at most once a second, counting the ones it held back.
#[derive(Debug)]
pub(crate) struct RareLog {
    /// The second (since the Unix epoch) of the last line let through.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RareLog {
    pub(crate) const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when this line may be written.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        if now > last
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn whole_seconds_at_least_one(duration: Duration) -> u64 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    seconds.max(1)
}

/// Renders an error and its causes on one line, for logs.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rare_log_lets_one_line_a_second_through_and_counts_the_rest() {
        let log = RareLog::new();
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        log.last.store(0, Ordering::Relaxed);
        assert_eq!(log.allow(), Some(2), "the two held back are counted");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds_at_least_one(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_at_least_one(Duration::from_millis(5_001)), 6);
        assert_eq!(whole_seconds_at_least_one(Duration::from_secs(6)), 6);
        assert_eq!(whole_seconds_at_least_one(Duration::ZERO), 1);
    }
}
