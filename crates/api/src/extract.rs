//! Extractors: authentication with a required scope, path ids, JSON bodies and query strings. Each
//! rejection is an [`ApiError`], so a bad header, path, body or query gets the error envelope
//! (docs/api.md#errors). axum's own `Path` and `DefaultBodyLimit` are refused by `clippy.toml`:
//! their rejections are plain text, so handlers use [`PathId`] and routes [`body_limit`] instead.

use std::marker::PhantomData;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use herald_domain::secret::{ApiKeyToken, SecretText};
use herald_domain::{ApiKey, FieldErrors, OrgId, Scope, Timestamp};
use herald_store::RateDecision;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::state::AppState;

/// A scope an operation requires, as a type, so handlers declare it in their signature.
pub trait RequiredScope {
    /// The scope.
    const SCOPE: Scope;
    /// Whether the operation changes state, and so counts against the write rate limit.
    const IS_WRITE: bool;
}

/// Marker for `webhooks:read`.
#[derive(Debug)]
pub struct ReadWebhooks;
/// Marker for `webhooks:write`.
#[derive(Debug)]
pub struct WriteWebhooks;
/// Marker for `org:admin:write`.
#[derive(Debug)]
pub struct AdminOrg;

impl RequiredScope for ReadWebhooks {
    const SCOPE: Scope = Scope::WebhooksRead;
    const IS_WRITE: bool = false;
}
impl RequiredScope for WriteWebhooks {
    const SCOPE: Scope = Scope::WebhooksWrite;
    const IS_WRITE: bool = true;
}
impl RequiredScope for AdminOrg {
    const SCOPE: Scope = Scope::OrgAdminWrite;
    const IS_WRITE: bool = true;
}

/// An authenticated organization API key that carries scope `S`. Write operations are also
/// counted against the organization's write rate limit here, before any work is done.
#[derive(Debug)]
pub struct Authorized<S> {
    /// The key that made the request.
    pub key: ApiKey,
    scope: PhantomData<S>,
}

impl<S> Authorized<S> {
    /// The organization the request acts in.
    pub fn org_id(&self) -> OrgId {
        self.key.org_id
    }
}

impl<S, St> FromRequestParts<St> for Authorized<S>
where
    S: RequiredScope + Send + Sync,
    AppState: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let key = authenticate(parts, &state).await?;
        if !key.has_scope(S::SCOPE) {
            return Err(ApiError::Forbidden);
        }
        if S::IS_WRITE {
            let bucket = format!("writes:{}", key.org_id);
            let decision = state
                .store
                .acquire_rate_limit(&bucket, state.config.write_rate_limit, Timestamp::now())
                .await?;
            if let RateDecision::Limited { retry_after } = decision {
                return Err(ApiError::RateLimited { retry_after });
            }
        }
        Ok(Self {
            key,
            scope: PhantomData,
        })
    }
}

/// Any valid organization credential, whatever its scopes: for `GET /v1/me`, which tells a
/// client what its token may do.
#[derive(Debug)]
pub struct Authenticated {
    /// The key (or portal session) that made the request.
    pub key: ApiKey,
}

impl<St> FromRequestParts<St> for Authenticated
where
    AppState: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let key = authenticate(parts, &state).await?;
        Ok(Self { key })
    }
}

/// The key behind the request's bearer token: known, not revoked and, for a portal session,
/// not expired; anything else is a 401.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<ApiKey, ApiError> {
    let token = bearer_token(parts)
        .and_then(ApiKeyToken::parse)
        .ok_or(ApiError::Unauthorized)?;
    let key = state
        .store
        .find_api_key(&token.hash())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if key.is_valid_at(Timestamp::now()) {
        Ok(key)
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The operator, authenticated with `HERALD_ADMIN_TOKEN`. When no token is configured the
/// admin API does not exist: every admin route answers 404.
#[derive(Debug)]
pub struct Admin;

impl<St> FromRequestParts<St> for Admin
where
    AppState: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let expected = state
            .config
            .admin_token
            .as_ref()
            .map(SecretText::expose)
            .ok_or(ApiError::NotFound)?;
        let given = bearer_token(parts).ok_or(ApiError::Unauthorized)?;
        // Constant-time comparison: timing must not reveal a prefix of the token.
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The one `{id}` segment of a route's path, percent-decoded. A segment that cannot be decoded
/// (`/v1/webhooks/%ff%fe` is not UTF-8) names nothing that exists: 404 `NOT_FOUND`, like an id
/// that is not a UUID (docs/api.md#conventions), where axum's `Path` would answer a plain-text 400.
#[derive(Debug)]
pub struct PathId(pub String);

impl<St> FromRequestParts<St> for PathId
where
    St: Send + Sync,
{
    type Rejection = ApiError;

    #[expect(
        clippy::disallowed_types,
        reason = "the one use of axum's Path, whose rejections become the envelope here"
    )]
    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Self(id)),
            // The route has no parameter: a handler registered on the wrong path, a bug.
            Err(PathRejection::MissingPathParams(missing)) => {
                Err(ApiError::Internal(Box::new(missing)))
            }
            Err(_) => Err(ApiError::NotFound),
        }
    }
}

/// The body cap of the routes a router or route is layered with: axum stops reading a body at
/// `bytes`, and the JSON extractors refuse a body whose `Content-Length` announces more before
/// reading any of it (413 `PAYLOAD_TOO_LARGE`), so a client cannot hold a connection by
/// announcing a large body and sending it slowly. The innermost layer wins, as with axum's
/// limit.
#[expect(
    clippy::disallowed_types,
    reason = "axum's limit is set here, together with the cap the extractors read"
)]
pub fn body_limit(bytes: usize) -> (axum::extract::DefaultBodyLimit, Extension<BodyLimit>) {
    (
        axum::extract::DefaultBodyLimit::max(bytes),
        Extension(BodyLimit(bytes)),
    )
}

/// The body cap in force for a request, set by [`body_limit`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Whether the request's `Content-Length` announces more than its route's cap. hyper has
/// already refused a malformed `Content-Length`, or two that disagree, with 400.
fn declares_too_large(request: &Request) -> bool {
    let Some(BodyLimit(limit)) = request.extensions().get::<BodyLimit>().copied() else {
        return false;
    };
    declared_length(request.headers())
        .is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A JSON object body. The content type must be JSON, the bytes must be UTF-8 JSON, and the
/// top level must be an object; field-level checks belong to [`Fields`].
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<St> FromRequest<St> for JsonObject
where
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &St) -> Result<Self, Self::Rejection> {
        JsonObjectWithBytes::from_request(request, state)
            .await
            .map(|body| Self(body.map))
    }
}

/// A [`JsonObject`] that also keeps the body's bytes exactly as sent, for a handler that must
/// pass part of the body on untouched (the `data` of a published event).
#[derive(Debug)]
pub struct JsonObjectWithBytes {
    /// The parsed object.
    pub map: Map<String, Value>,
    /// The body as received; valid UTF-8 JSON, since it parsed.
    pub bytes: Bytes,
}

impl<St> FromRequest<St> for JsonObjectWithBytes
where
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &St) -> Result<Self, Self::Rejection> {
        if declares_too_large(&request) {
            return Err(ApiError::PayloadTooLarge);
        }
        if !has_json_content_type(request.headers()) {
            return Err(invalid_input(
                "body",
                "Content-Type must be application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    invalid_input("body", "could not read the request body")
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self { map, bytes }),
            Ok(_) => Err(invalid_input("body", "must be a JSON object")),
            Err(error) => Err(invalid_input("body", format!("not valid JSON: {error}"))),
        }
    }
}

/// An optional JSON object body: an empty body (with or without a content type) is `{}`.
#[derive(Debug)]
pub struct OptionalJsonObject(pub Map<String, Value>);

impl<St> FromRequest<St> for OptionalJsonObject
where
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &St) -> Result<Self, Self::Rejection> {
        let declared_empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() == b"0");
        let has_type = request.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty
            || (!has_type && request.headers().get(header::TRANSFER_ENCODING).is_none())
        {
            return Ok(Self(Map::new()));
        }
        JsonObject::from_request(request, state)
            .await
            .map(|JsonObject(map)| Self(map))
    }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
}

fn invalid_input(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidInput(FieldErrors::from([(field.to_owned(), message.into())]))
}

/// Reads typed fields out of a JSON object while collecting every problem, so one response
/// reports all the fields at fault. Whatever is left unread at [`Fields::finish`] is an
/// unknown field. No string it returns contains U+0000, which PostgreSQL cannot store.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    errors: FieldErrors,
}

impl Fields {
    /// Starts reading `map`.
    pub fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            errors: FieldErrors::new(),
        }
    }

    /// Records a problem with `field`; the first problem per field wins.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// A field that must be present and a string.
    pub fn required_string(&mut self, field: &str) -> Option<String> {
        match self.map.remove(field) {
            None => {
                self.error(field, "is required");
                None
            }
            Some(Value::String(text)) => self.storable(field, text),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// A field that may be absent; present, it must be a string (`null` is refused).
    pub fn optional_string(&mut self, field: &str) -> Option<String> {
        match self.map.remove(field) {
            None => None,
            Some(Value::String(text)) => self.storable(field, text),
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// A field that may be absent or `null` (outer `None` = absent, `Some(None)` = null).
    pub fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.map.remove(field) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(text)) => self.storable(field, text).map(Some),
            Some(_) => {
                self.error(field, "must be a string or null");
                None
            }
        }
    }

    /// A field that may be absent; present, it must be a boolean.
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.map.remove(field) {
            None => None,
            Some(Value::Bool(flag)) => Some(flag),
            Some(_) => {
                self.error(field, "must be a boolean");
                None
            }
        }
    }

    /// An array of strings; `Err(())` once the problem is recorded. Absent is `Ok(None)`.
    pub fn optional_string_array(&mut self, field: &str) -> Option<Vec<String>> {
        match self.map.remove(field) {
            None => None,
            Some(Value::Array(items)) => {
                let mut strings = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(text) => strings.push(self.storable(field, text)?),
                        other => {
                            self.error(
                                field,
                                format!("must be an array of strings, found {}", kind_of(&other)),
                            );
                            return None;
                        }
                    }
                }
                Some(strings)
            }
            Some(other) => {
                self.error(
                    field,
                    format!("must be an array of strings, found {}", kind_of(&other)),
                );
                None
            }
        }
    }

    /// An array of strings that must be present.
    pub fn required_string_array(&mut self, field: &str) -> Option<Vec<String>> {
        if !self.map.contains_key(field) {
            self.error(field, "is required");
            return None;
        }
        self.optional_string_array(field)
    }

    /// Any JSON value, present or not.
    pub fn take_value(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field)
    }

    /// Passes `text` through unless it contains U+0000, which PostgreSQL `text` cannot hold:
    /// such a string is refused on every backend alike, as a 422 naming the field, instead
    /// of failing at insert time as a 500.
    fn storable(&mut self, field: &str, text: String) -> Option<String> {
        if text.contains('\0') {
            self.error(field, "must not contain NUL characters");
            None
        } else {
            Some(text)
        }
    }

    /// Whether a problem was recorded for `field`.
    pub fn has_error(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    /// Ends reading: unknown fields become errors; any error makes the request a 422.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for field in unknown {
            self.error(&field, "unknown field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The query string as name → value pairs. Repeated names and undecodable text are a 400;
/// names the operation does not know are a 422, so a typo in a filter is never ignored.
#[derive(Debug)]
pub struct QueryParams(Vec<(String, String)>);

impl<St: Send + Sync> FromRequestParts<St> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for piece in raw.split('&').filter(|piece| !piece.is_empty()) {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let name = percent_decode(name)
                .ok_or_else(|| invalid_input("query", "malformed query string"))?;
            let value = percent_decode(value)
                .ok_or_else(|| invalid_input(&name, "malformed query string"))?;
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(invalid_input(&name, "given more than once"));
            }
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }
}

impl QueryParams {
    /// Removes and returns a parameter.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(seen, _)| seen == name)?;
        Some(self.0.remove(index).1)
    }

    /// The names not taken, reported as unknown into `errors`.
    pub fn report_unknown(self, errors: &mut FieldErrors) {
        for (name, _) in self.0 {
            errors
                .entry(name)
                .or_insert_with(|| "unknown parameter".to_owned());
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_rejects_broken_escapes_and_non_utf8() {
        assert_eq!(percent_decode("a%20b+c"), Some("a b c".to_owned()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn an_announced_length_over_the_route_cap_is_too_large() {
        fn check(cap: Option<usize>, content_length: Option<&str>, expected: bool) {
            let mut request = Request::new(axum::body::Body::empty());
            if let Some(cap) = cap {
                request.extensions_mut().insert(BodyLimit(cap));
            }
            if let Some(length) = content_length {
                request.headers_mut().insert(
                    header::CONTENT_LENGTH,
                    length.parse().expect("a valid header value"),
                );
            }
            assert_eq!(
                declares_too_large(&request),
                expected,
                "cap {cap:?}, Content-Length {content_length:?}"
            );
        }
        check(Some(1024), Some("1025"), true);
        check(Some(1024), Some("100000000"), true);
        check(Some(1024), Some("1024"), false);
        check(Some(1024), Some("0"), false);
        check(Some(1024), None, false);
        // No cap recorded: axum's own limit still stops the read.
        check(None, Some("100000000"), false);
    }

    #[test]
    fn fields_report_every_problem_and_unknown_fields() {
        let map = serde_json::json!({"url": 5, "extra": true})
            .as_object()
            .cloned()
            .expect("object");
        let mut fields = Fields::new(map);
        assert_eq!(fields.required_string("url"), None);
        assert_eq!(fields.required_string_array("events"), None);
        let Err(ApiError::Validation(errors)) = fields.finish() else {
            panic!("expected a validation error")
        };
        assert_eq!(
            errors.get("url").map(String::as_str),
            Some("must be a string")
        );
        assert_eq!(
            errors.get("events").map(String::as_str),
            Some("is required")
        );
        assert_eq!(
            errors.get("extra").map(String::as_str),
            Some("unknown field")
        );
    }
}
