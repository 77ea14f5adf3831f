//! The Standard Webhooks asymmetric signature, `v1a`: an Ed25519 signature over the same
//! signed content as `v1` (`"<id>.<timestamp>.<body>"`), carried as one more space-separated
//! `v1a,<base64>` entry of `webhook-signature`.
//!
//! Herald signs it with its organization's private key; a receiver verifies it with the public
//! key alone (`GET /v1/webhook-keys`, the `x` of a JWK), so it holds no secret at all. Public-key
//! verification has nothing secret to leak, so it needs no constant-time comparison; the
//! timestamp is checked against the same tolerance as the HMAC schemes.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::{Verified, VerifyError, check_tolerance, parse_timestamp, single_key_verdict};

/// The version tag of the entry in `webhook-signature`.
pub const VERSION: &str = "v1a";

/// The `webhook-signature` entry for one message: `v1a,<base64 Ed25519 over "<id>.<t>.<body>">`.
pub fn sign_v1a(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    v1a_entry(
        &key.sign(&signed_content(msg_id, timestamp, body))
            .to_bytes(),
    )
}

/// The `webhook-signature` entry of an Ed25519 signature made elsewhere over
/// [`signed_content`]: `v1a,<standard base64>`.
pub fn v1a_entry(signature: &[u8; 64]) -> String {
    format!("{VERSION},{}", STANDARD.encode(signature))
}

/// Decodes a public key as `GET /v1/webhook-keys` lists it: the base64url (no padding) `x` of
/// an Ed25519 JWK. Padding is tolerated.
///
/// # Errors
///
/// [`VerifyError::InvalidPublicKey`] when the text is not base64url of 32 bytes.
pub fn public_key_from_base64url(x: &str) -> Result<[u8; 32], VerifyError> {
    URL_SAFE_NO_PAD
        .decode(x.trim().trim_end_matches('='))
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(VerifyError::InvalidPublicKey)
}

/// Checks the `v1a` signature of a delivery's Standard Webhooks headers with the organization's
/// 32-byte Ed25519 public key, against the exact body bytes received.
///
/// `msg_id`, `timestamp` and `signature_header` are the values of `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`. The delivery is accepted when the timestamp is
/// within `tolerance` of `now` and any `v1a` entry is a valid signature (strict Ed25519
/// verification: no malleable signatures, no small-order keys). `v1` entries are skipped; they
/// need the endpoint secret ([`crate::verify_standard_webhooks`]).
///
/// # Errors
///
/// [`VerifyError::InvalidPublicKey`] when the 32 bytes are not an Ed25519 public key;
/// [`VerifyError::Malformed`] for an empty id, a timestamp that is not decimal digits, or a
/// header without a `v1a` entry; [`VerifyError::TimestampOutOfTolerance`] and
/// [`VerifyError::NoMatchingSignature`] as for [`crate::verify_amcore`].
pub fn verify_v1a(
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    public_key: &[u8; 32],
    now: i64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| VerifyError::InvalidPublicKey)?;
    if msg_id.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let timestamp = parse_timestamp(timestamp)?;
    let signatures = crate::standard::entries(signature_header, VERSION)?;
    check_tolerance(timestamp, now, tolerance)?;
    let content = signed_content(msg_id, timestamp, body);
    let matches = signatures.iter().any(|candidate| {
        STANDARD
            .decode(candidate)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .is_some_and(|signature| key.verify_strict(&content, &signature).is_ok())
    });
    single_key_verdict(matches, timestamp)
}

/// The Standard Webhooks signed content, `"<id>.<timestamp>.<body>"`, in one buffer: Ed25519
/// hashes its message twice, so it cannot be fed in pieces. What `v1a` signs.
pub fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests;
