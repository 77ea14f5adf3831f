//! An endpoint's custom headers (docs/api.md#custom-headers): what a receiver's gateway demands
//! (an API key, a routing tag), sent on every attempt, test, replay, recovery and probe. Their
//! values may be credentials, so they are sealed at rest like secrets and every answer shows
//! them as [`REDACTED`].

use std::fmt;

use serde_json::{Map, Value};

/// Most custom headers on one endpoint.
pub const MAX_HEADERS: usize = 20;
/// Longest header name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest header value, in characters.
pub const MAX_VALUE_CHARS: usize = 1_024;
/// What every answer shows instead of a value; sent back in a `PATCH`, it keeps the stored one.
pub const REDACTED: &str = "<redacted>";

/// Names Herald sets itself, compared without case; `x-amcore-` and `webhook-` are prefixes.
const RESERVED_NAMES: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "traceparent",
    "tracestate",
];
const RESERVED_PREFIXES: [&str; 2] = ["x-amcore-", "webhook-"];
/// Connection-level headers: HTTP/2 forbids them and they would change how the request itself
/// is framed, not what it says.
const CONNECTION_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An endpoint's custom headers, name and value, in name order. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CustomHeaders(Vec<(String, String)>);

impl CustomHeaders {
    /// Headers already checked (read back from storage).
    pub fn from_checked(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Checks the `headers` member of a create request: an object of at most 20
    /// `name: value` strings.
    pub fn parse(value: &Value) -> Result<Self, String> {
        Self::parse_members(value, None)
    }

    /// Checks the `headers` member of an update request, where a value of `"<redacted>"` keeps
    /// the value `stored` under that name (the endpoint's current set, read only when a
    /// placeholder was sent: see [`CustomHeaders::placeholders`]).
    pub fn parse_update(value: &Value, stored: &CustomHeaders) -> Result<Self, String> {
        Self::parse_members(value, Some(stored))
    }

    /// Whether the `headers` member of an update names a stored value (`"<redacted>"`), so the
    /// stored set must be read first.
    pub fn placeholders(value: &Value) -> bool {
        value
            .as_object()
            .is_some_and(|members| members.values().any(|value| value == REDACTED))
    }

    fn parse_members(value: &Value, stored: Option<&CustomHeaders>) -> Result<Self, String> {
        let Value::Object(members) = value else {
            return Err("must be an object of header names to values".to_owned());
        };
        let members: &Map<String, Value> = members;
        if members.len() > MAX_HEADERS {
            return Err(format!("must hold at most {MAX_HEADERS} headers"));
        }
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(members.len());
        for (name, value) in members {
            check_name(name)?;
            if pairs
                .iter()
                .any(|(seen, _)| seen.eq_ignore_ascii_case(name))
            {
                return Err(format!("{name}: named twice (names are case-insensitive)"));
            }
            let Value::String(value) = value else {
                return Err(format!("{name}: the value must be a string"));
            };
            let value = if value == REDACTED {
                stored
                    .and_then(|stored| stored.value_of(name))
                    .ok_or_else(|| {
                        format!("{name}: \"{REDACTED}\" keeps a stored value, and there is none")
                    })?
                    .to_owned()
            } else {
                check_value(name, value)?;
                value.clone()
            };
            pairs.push((name.clone(), value));
        }
        pairs.sort_by_key(|(name, _)| name.to_ascii_lowercase());
        Ok(Self(pairs))
    }

    /// The stored value of the header named `name` (without case).
    fn value_of(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(stored, _)| stored.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Name and value pairs, to send.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: {REDACTED}")))
            .finish()
    }
}

/// A header name: an HTTP token (RFC 9110) of 1 to 64 characters, not one Herald sets.
fn check_name(name: &str) -> Result<(), String> {
    let is_token_char =
        |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.bytes().all(is_token_char) {
        return Err(format!(
            "{name:?} is not a header name (1 to {MAX_NAME_CHARS} letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_NAMES.contains(&lower.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
    {
        return Err(format!("{name} is set by Herald and cannot be overridden"));
    }
    if CONNECTION_HEADERS.contains(&lower.as_str()) {
        return Err(format!("{name} is a connection header and cannot be set"));
    }
    Ok(())
}

/// A header value: at most 1,024 printable ASCII characters (spaces inside, not at the ends).
fn check_value(name: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(format!(
            "{name}: the value must be at most {MAX_VALUE_CHARS} characters"
        ));
    }
    if !value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return Err(format!(
            "{name}: the value must be printable ASCII characters"
        ));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(format!(
            "{name}: the value must not start or end with a space"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn gateway_headers_are_accepted_in_name_order() {
        let headers = CustomHeaders::parse(
            &json!({"X-Api-Key": "k-123", "Authorization": "Bearer abc.def", "x-tag": ""}),
        )
        .expect("valid");
        assert_eq!(headers.names(), ["Authorization", "X-Api-Key", "x-tag"]);
        assert_eq!(headers.pairs()[1].1, "k-123");
    }

    #[test]
    fn names_herald_sets_and_connection_headers_are_refused() {
        for name in [
            "Content-Type",
            "content-length",
            "HOST",
            "User-Agent",
            "traceparent",
            "TraceState",
            "X-AmCore-Signature",
            "x-amcore-anything",
            "webhook-id",
            "Webhook-Signature",
            "Connection",
            "Transfer-Encoding",
        ] {
            let refused = CustomHeaders::parse(&json!({ name: "v" }));
            assert!(refused.is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn malformed_names_values_and_shapes_are_refused() {
        let long_name = "x".repeat(65);
        let long_value = "v".repeat(1_025);
        let too_many: Map<String, Value> =
            (0..21).map(|n| (format!("x-h{n}"), json!("v"))).collect();
        for bad in [
            json!({"bad name": "v"}),
            json!({"": "v"}),
            json!({"x-é": "v"}),
            json!({ long_name: "v" }),
            json!({"x-a": long_value}),
            json!({"x-a": "line\nbreak"}),
            json!({"x-a": "tab\there"}),
            json!({"x-a": "café"}),
            json!({"x-a": " padded"}),
            json!({"x-a": 7}),
            json!({"x-a": "1", "X-A": "2"}),
            json!(["x-a", "v"]),
            json!("x-a: v"),
            Value::Object(too_many),
        ] {
            assert!(CustomHeaders::parse(&bad).is_err(), "{bad} was accepted");
        }
        assert!(CustomHeaders::parse(&json!({})).expect("empty").is_empty());
    }

    #[test]
    fn redacted_keeps_the_stored_value_and_only_when_there_is_one() {
        let stored =
            CustomHeaders::parse(&json!({"X-Api-Key": "secret-1", "X-Tag": "a"})).expect("valid");
        let updated =
            CustomHeaders::parse_update(&json!({"x-api-key": REDACTED, "X-Tag": "b"}), &stored)
                .expect("valid");
        assert_eq!(
            updated.pairs(),
            [
                ("x-api-key".to_owned(), "secret-1".to_owned()),
                ("X-Tag".to_owned(), "b".to_owned())
            ]
        );
        assert!(CustomHeaders::parse_update(&json!({"X-New": REDACTED}), &stored).is_err());
        assert!(CustomHeaders::parse(&json!({"X-Api-Key": REDACTED})).is_err());
        assert!(CustomHeaders::placeholders(&json!({"X-Api-Key": REDACTED})));
        assert!(!CustomHeaders::placeholders(&json!({"X-Api-Key": "v"})));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let headers = CustomHeaders::parse(&json!({"X-Api-Key": "very-secret"})).expect("valid");
        let printed = format!("{headers:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("X-Api-Key"), "{printed}");
    }
}
