//! The Standard Webhooks signature (<https://www.standardwebhooks.com>), which Herald sends
//! beside its own: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`.
//!
//! The signature is the standard base64 of HMAC-SHA256 keyed with the endpoint secret's bytes
//! over `"<id>.<timestamp>.<body>"`. The official Standard Webhooks libraries verify it with
//! the secret `whsec_<the endpoint secret's base64>`; this module is the same check for Rust
//! receivers that would rather not take another dependency.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::{Secret, Verified, VerifyError, check_tolerance, parse_timestamp, single_key_verdict};

/// The `webhook-signature` value for one message: `v1,<base64 HMAC over "<id>.<t>.<body>">`.
///
/// `key` is the secret's decoded bytes ([`Secret::as_bytes`]); Herald's secrets are 32 bytes,
/// and the Standard Webhooks specification allows other lengths, so any length is accepted.
pub fn sign_standard_webhooks(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac_standard(key, msg_id, timestamp, body))
    )
}

/// Checks the Standard Webhooks headers of a delivery against the exact body bytes received.
///
/// `msg_id`, `timestamp` and `signature_header` are the values of `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`. The signature header may list several
/// space-separated `<version>,<base64>` entries; the delivery is accepted when the timestamp is
/// within `tolerance` of `now` and any `v1` entry matches (constant-time). Entries of other
/// versions (`v1a`, [`crate::verify_v1a`]) are skipped. Herald makes these signatures with the
/// endpoint secret, and during a rotation's grace period with the previous one too, so a
/// receiver holding either secret is accepted; there is one secret to pass, and
/// [`Verified::secret_index`] is always 0.
///
/// # Errors
///
/// [`VerifyError::Malformed`] for an empty id, a timestamp that is not decimal digits, or a
/// signature header without a `v1` entry; [`VerifyError::TimestampOutOfTolerance`] and
/// [`VerifyError::NoMatchingSignature`] as for [`crate::verify_amcore`].
pub fn verify_standard_webhooks(
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    secret: &Secret,
    now: i64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    if msg_id.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let timestamp = parse_timestamp(timestamp)?;
    let signatures = entries(signature_header, "v1")?;
    check_tolerance(timestamp, now, tolerance)?;
    let expected = mac_standard(secret.as_bytes(), msg_id, timestamp, body);
    let matches = signatures.iter().any(|candidate| {
        STANDARD
            .decode(candidate)
            .is_ok_and(|bytes| bool::from(expected.as_slice().ct_eq(&bytes)))
    });
    single_key_verdict(matches, timestamp)
}

/// The base64 parts of the `version` entries (`v1`, or `v1a`) of a `webhook-signature` value.
/// Entries of other versions are skipped; a header with none of `version` is malformed.
pub(crate) fn entries<'a>(header: &'a str, version: &str) -> Result<Vec<&'a str>, VerifyError> {
    let mut signatures = Vec::new();
    for entry in header.split(' ').filter(|entry| !entry.is_empty()) {
        match entry.split_once(',') {
            Some((tag, signature)) if tag == version => signatures.push(signature),
            Some(_) => {}
            None => return Err(VerifyError::Malformed),
        }
    }
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    Ok(signatures)
}

fn mac_standard(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests;
