//! Signatures and the headers of a delivery on the wire (CONTRACT.md section 7).
//!
//! Everything here is pure: it turns secrets, a timestamp and the exact body bytes into header
//! values. It owns the two signature schemes, Herald's own `X-AmCore-Signature` and the Standard
//! Webhooks `webhook-signature`, and a verifier that tests (and docs) use as the reference
//! receiver. It must not read the clock, the network or storage.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_domain::{EventId, Secret, Timestamp};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `Content-Type` header name.
pub const CONTENT_TYPE: &str = "Content-Type";
/// `User-Agent` header name.
pub const USER_AGENT: &str = "User-Agent";
/// Herald's own signature header: `t=<unix seconds>,v1=<hex>[,v1=<hex>]`.
pub const SIGNATURE: &str = "X-AmCore-Signature";
/// The event id header (`evt_…`).
pub const EVENT_ID: &str = "X-AmCore-Event-Id";
/// The event type header.
pub const EVENT_TYPE: &str = "X-AmCore-Event-Type";
/// The 1-based attempt number header.
pub const DELIVERY_ATTEMPT: &str = "X-AmCore-Delivery-Attempt";
/// Standard Webhooks message id header; Herald sends the event id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks timestamp header, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks signature header: `v1,<base64>`.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The tolerance receivers are told to apply between a signature's timestamp and their clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Everything the section-7 headers of one attempt are made from.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingDelivery<'a> {
    /// The event being delivered; sent as `X-AmCore-Event-Id` and `webhook-id`.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: &'a str,
    /// The 1-based attempt number.
    pub attempt: u32,
    /// The time of this attempt: each retry is signed anew.
    pub timestamp: Timestamp,
    /// The body bytes exactly as they will be sent.
    pub body: &'a [u8],
    /// The endpoint's secret; signs both schemes.
    pub endpoint_secret: &'a Secret,
    /// The organization's secret, when one exists; adds a second `v1` to `X-AmCore-Signature`.
    pub org_secret: Option<&'a Secret>,
}

/// Why [`verify_v1`] refused a signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<digits>,v1=<hex>…`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from `now` than the tolerance allows.
    #[error("timestamp outside tolerance")]
    TimestampOutOfTolerance,
    /// No `v1` entry matches the body under the secret.
    #[error("no matching signature")]
    NoMatchingSignature,
}

/// Lowercase hex of HMAC-SHA256 keyed with the secret's 32 bytes over `"<t>\n<body>"`.
pub fn signature_v1(secret: &Secret, unix_seconds: i64, body: &[u8]) -> String {
    hex::encode(v1_mac(secret, unix_seconds, body).finalize().into_bytes())
}

/// The `X-AmCore-Signature` value: `t=<t>,v1=<hex>`, plus `,v1=<hex>` for the org secret.
pub fn amcore_signature_header(
    unix_seconds: i64,
    body: &[u8],
    endpoint_secret: &Secret,
    org_secret: Option<&Secret>,
) -> String {
    let mut header = format!(
        "t={unix_seconds},v1={}",
        signature_v1(endpoint_secret, unix_seconds, body)
    );
    if let Some(org_secret) = org_secret {
        header.push_str(",v1=");
        header.push_str(&signature_v1(org_secret, unix_seconds, body));
    }
    header
}

/// The Standard Webhooks `webhook-signature` value: `v1,<base64 HMAC over "{id}.{t}.{body}">`.
///
/// The official libraries verify it with the secret `whsec_<standard base64 of the 32 bytes>`.
pub fn standard_webhooks_signature(
    secret: &Secret,
    msg_id: &str,
    unix_seconds: i64,
    body: &[u8],
) -> String {
    standard_webhooks_signature_with_key(secret.expose_bytes(), msg_id, unix_seconds, body)
}

/// All section-7 headers for one attempt, in a stable order, with the contract's spelling.
pub fn signed_headers(delivery: &OutgoingDelivery<'_>) -> Vec<(&'static str, String)> {
    let unix_seconds = delivery.timestamp.unix_seconds();
    let event_id = delivery.event_id.to_string();
    let webhook_signature = standard_webhooks_signature(
        delivery.endpoint_secret,
        &event_id,
        unix_seconds,
        delivery.body,
    );
    vec![
        (CONTENT_TYPE, "application/json".to_owned()),
        (USER_AGENT, user_agent()),
        (
            SIGNATURE,
            amcore_signature_header(
                unix_seconds,
                delivery.body,
                delivery.endpoint_secret,
                delivery.org_secret,
            ),
        ),
        (EVENT_ID, event_id.clone()),
        (EVENT_TYPE, delivery.event_type.to_owned()),
        (DELIVERY_ATTEMPT, delivery.attempt.to_string()),
        (WEBHOOK_ID, event_id),
        (WEBHOOK_TIMESTAMP, unix_seconds.to_string()),
        (WEBHOOK_SIGNATURE, webhook_signature),
    ]
}

/// `Herald/<crate version>`.
pub fn user_agent() -> String {
    format!("Herald/{}", env!("CARGO_PKG_VERSION"))
}

/// Checks an `X-AmCore-Signature` value the way a receiver should: the timestamp within
/// `tolerance` of `now`, and any `v1` entry matching, compared in constant time.
pub fn verify_v1(
    secret: &Secret,
    header_value: &str,
    body: &[u8],
    now: Timestamp,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header_value.split(',') {
        match item.split_once('=') {
            Some(("t", value)) if timestamp.is_none() => {
                timestamp = Some(parse_unix_seconds(value)?)
            }
            Some(("v1", value)) => signatures.push(value),
            // Unknown schemes are skipped so a future `v2` does not break old receivers.
            Some((key, _)) if key != "t" => {}
            _ => return Err(VerifyError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let skew = now.unix_seconds().abs_diff(timestamp);
    if skew > tolerance.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature)
            .is_ok_and(|bytes| v1_mac(secret, timestamp, body).verify_slice(&bytes).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

/// The keyed MAC over `"<t>\n<body>"`, ready to finalize or verify.
fn v1_mac(secret: &Secret, unix_seconds: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(secret.expose_bytes());
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The Standard Webhooks scheme over raw key bytes, so the spec's published vector (whose key
/// is not 32 bytes long) can test it.
fn standard_webhooks_signature_with_key(
    key: &[u8],
    msg_id: &str,
    unix_seconds: i64,
    body: &[u8],
) -> String {
    let mut mac = new_mac(key);
    mac.update(format!("{msg_id}.{unix_seconds}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn parse_unix_seconds(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    text.parse().map_err(|_| VerifyError::Malformed)
}

#[cfg(test)]
mod tests;
