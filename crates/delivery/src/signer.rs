//! Signatures and the headers of a delivery on the wire (docs/api.md#headers and
//! docs/api.md#signatures).
//!
//! Everything here is pure: it turns secrets, a signing key, a timestamp and the exact body
//! bytes into header values. The signature schemes themselves, Herald's own `X-AmCore-Signature`
//! and the Standard Webhooks `webhook-signature` (`v1` HMAC and `v1a` Ed25519 entries), live in
//! `herald-verify`, the crate receivers verify with, so sender and receivers share one
//! implementation; this module binds them to the domain's `SigningMaterial` and `Timestamp` and
//! assembles the headers of an attempt. It must not read the clock, the network or storage.
//!
//! Which signatures an attempt carries, in this order:
//!
//! - `X-AmCore-Signature: t=<t>,v1=<endpoint secret>[,v1=<previous secret>][,v1=<org secret>]`;
//! - `webhook-signature: v1,<endpoint secret>[ v1,<previous secret>] v1a,<organization key>`,
//!
//! where the previous secret signs only while its grace period runs at the attempt's timestamp.
//! The one costly step is the Ed25519 signature (about ten microseconds); the key comes opened,
//! and a fan-out's deliveries of one event share one signature ([`recent`]).

mod recent;

use std::time::Duration;

use herald_domain::{EventId, Secret, SigningMaterial, Timestamp};
pub use herald_verify::VerifyError;
pub use herald_verify::header::{
    DELIVERY_ATTEMPT, EVENT_ID, EVENT_TYPE, ORDERING_KEY, SEQUENCE, SIGNATURE, WEBHOOK_ID,
    WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
use recent::RECENT_SIGNATURES;

/// `Content-Type` header name.
pub const CONTENT_TYPE: &str = "Content-Type";
/// `User-Agent` header name.
pub const USER_AGENT: &str = "User-Agent";

/// The tolerance receivers are told to apply between a signature's timestamp and their clock.
pub const DEFAULT_TOLERANCE: Duration = herald_verify::DEFAULT_TOLERANCE;

/// Everything the headers of one attempt (docs/api.md#headers) are made from.
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
    /// What signs it: the endpoint's secrets, the organization's secret and key.
    pub signing: &'a SigningMaterial,
    /// The delivery's number in its endpoint's sequence (none for a test send).
    pub sequence: Option<u64>,
    /// The event's ordering key, if any.
    pub ordering_key: Option<&'a str>,
}

/// Lowercase hex of HMAC-SHA256 keyed with the secret's 32 bytes over `"<t>\n<body>"`.
pub fn signature_v1(secret: &Secret, unix_seconds: i64, body: &[u8]) -> String {
    herald_verify::sign_v1(secret.expose_bytes(), unix_seconds, body)
}

/// The `X-AmCore-Signature` value: `t=<t>` and one `,v1=<hex>` per secret, in order.
pub fn amcore_signature_header(unix_seconds: i64, body: &[u8], secrets: &[&Secret]) -> String {
    let mut header = format!("t={unix_seconds}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature_v1(secret, unix_seconds, body));
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

/// All headers of one attempt (docs/api.md#headers), in a stable order, spelled as documented.
pub fn signed_headers(delivery: &OutgoingDelivery<'_>) -> Vec<(&'static str, String)> {
    let unix_seconds = delivery.timestamp.unix_seconds();
    let event_id = delivery.event_id.to_string();
    let signing = delivery.signing;
    let mut endpoint_secrets = vec![&signing.endpoint_secret];
    if let Some(previous) = signing
        .previous_secret
        .as_ref()
        .filter(|previous| previous.signs_at(delivery.timestamp))
    {
        endpoint_secrets.push(&previous.secret);
    }
    let mut webhook_signature = String::with_capacity(200);
    for secret in &endpoint_secrets {
        webhook_signature.push_str(&standard_webhooks_signature(
            secret,
            &event_id,
            unix_seconds,
            delivery.body,
        ));
        webhook_signature.push(' ');
    }
    let v1a_content = herald_verify::signed_content(&event_id, unix_seconds, delivery.body);
    webhook_signature.push_str(&herald_verify::v1a_entry(
        &RECENT_SIGNATURES.sign(&signing.org_signing_key, v1a_content),
    ));
    let mut amcore_secrets = endpoint_secrets;
    if let Some(org_secret) = &signing.org_secret {
        amcore_secrets.push(org_secret);
    }
    let mut headers = vec![
        (CONTENT_TYPE, "application/json".to_owned()),
        (USER_AGENT, user_agent()),
        (
            SIGNATURE,
            amcore_signature_header(unix_seconds, delivery.body, &amcore_secrets),
        ),
        (EVENT_ID, event_id.clone()),
        (EVENT_TYPE, delivery.event_type.to_owned()),
        (DELIVERY_ATTEMPT, delivery.attempt.to_string()),
        (WEBHOOK_ID, event_id),
        (WEBHOOK_TIMESTAMP, unix_seconds.to_string()),
        (WEBHOOK_SIGNATURE, webhook_signature),
    ];
    if let Some(sequence) = delivery.sequence {
        headers.push((SEQUENCE, sequence.to_string()));
    }
    if let Some(key) = delivery.ordering_key {
        headers.push((ORDERING_KEY, key.to_owned()));
    }
    headers
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
    let secret = herald_verify::Secret::from_bytes(*secret.expose_bytes());
    herald_verify::verify_amcore(
        header_value,
        body,
        &[&secret],
        now.unix_seconds(),
        tolerance,
    )
    .map(|_| ())
}

/// The Standard Webhooks scheme over raw key bytes, so the spec's published vector (whose key
/// is not 32 bytes long) can test it.
fn standard_webhooks_signature_with_key(
    key: &[u8],
    msg_id: &str,
    unix_seconds: i64,
    body: &[u8],
) -> String {
    herald_verify::sign_standard_webhooks(key, msg_id, unix_seconds, body)
}

#[cfg(test)]
mod tests;
