//! What a request answers, and the assertions every test makes on answers: the
//! error envelope (docs/api.md#errors), validation details, and reading fields out of JSON bodies.

use std::fmt;

use herald_domain::Timestamp;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// An HTTP answer: status, headers and the body, parsed as JSON when it is JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The body as JSON; `Value::Null` when empty or not JSON.
    pub(crate) body: Value,
    /// The body as text (lossy), for bodies that are not JSON.
    pub(crate) text: String,
}

impl Reply {
    /// The `X-Request-Id` header.
    #[track_caller]
    pub(crate) fn request_id(&self) -> &str {
        self.headers
            .get("x-request-id")
            .expect("every response carries X-Request-Id")
            .to_str()
            .expect("X-Request-Id is ASCII")
    }

    /// Asserts the status code.
    #[track_caller]
    pub(crate) fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "unexpected answer: {self}");
    }

    /// Asserts an error answer in the error envelope: status, code, the code's message,
    /// and a `request_id` equal to `X-Request-Id`. Returns the `error` object.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) -> &Value {
        self.assert_status(status);
        assert_eq!(self.body["success"], json!(false), "{self}");
        let error = &self.body["error"];
        assert_eq!(error["code"], json!(code), "{self}");
        if let Some(message) = contract_message(code) {
            assert_eq!(error["message"], json!(message), "{self}");
        }
        assert_eq!(error["request_id"], json!(self.request_id()), "{self}");
        error
    }

    /// Asserts a 422 `VALIDATION_FAILED` naming `field` in `details`; returns its message.
    #[track_caller]
    pub(crate) fn assert_validation(&self, field: &str) -> String {
        let error = self.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
        match &error["details"][field] {
            Value::String(message) => message.clone(),
            other => panic!("details.{field} should be a message, got {other}: {self}"),
        }
    }

    /// The names in `error.details`, sorted.
    pub(crate) fn detail_fields(&self) -> Vec<String> {
        self.body["error"]["details"]
            .as_object()
            .map(|details| details.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// A valid create body: one public HTTPS URL, one event type.
pub(crate) fn endpoint_body() -> Value {
    json!({"url": "https://example.com/hooks", "events": ["wallet.balance_low"]})
}

/// [`endpoint_body`] with `field` set to `value` (or added).
pub(crate) fn endpoint_body_with(field: &str, value: Value) -> Value {
    let mut body = endpoint_body();
    body[field] = value;
    body
}

/// The string at `field` of a JSON object.
#[track_caller]
pub(crate) fn string_at(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be a string in {value}"))
        .to_owned()
}

/// `/v1/webhooks/{id}` of an endpoint object.
#[track_caller]
pub(crate) fn endpoint_path(endpoint: &Value) -> String {
    format!("/v1/webhooks/{}", string_at(endpoint, "id"))
}

/// The RFC 3339 timestamp at `field` of a JSON object.
#[track_caller]
pub(crate) fn timestamp_at(value: &Value, field: &str) -> Timestamp {
    let text = string_at(value, field);
    Timestamp::parse(&text).unwrap_or_else(|| panic!("{field} = {text:?} is not RFC 3339"))
}

/// Parses a typed id from a JSON string.
#[track_caller]
pub(crate) fn parse_id<T: std::str::FromStr>(value: &Value) -> T {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{value} should be an id"))
}

/// The fixed message of each error code (docs/api.md#errors), where it is fixed.
fn contract_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "INVALID_INPUT" => "invalid input",
        "UNAUTHORIZED" => "authentication failed",
        "FORBIDDEN" => "missing required scope",
        "NOT_FOUND" => "not found",
        "METHOD_NOT_ALLOWED" => "method not allowed",
        "LIMIT_EXCEEDED" => "webhook endpoint limit reached (max 50)",
        "EVENT_EXPIRED" => "event expired",
        "PAYLOAD_TOO_LARGE" => "payload too large",
        "VALIDATION_FAILED" => "validation failed",
        "RATE_LIMITED" => "rate limited",
        "INTERNAL" => "internal error",
        "UNAVAILABLE" => "service unavailable",
        _ => return None,
    })
}
