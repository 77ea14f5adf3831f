//! Verify that a webhook delivery came from Herald, and sign one the way Herald does.
//!
//! Herald signs every delivery twice (docs/api.md#signatures, docs/receiving.md):
//!
//! - `X-AmCore-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`, where each `v1` is the
//!   lowercase hex of HMAC-SHA256 keyed with a secret's 32 decoded bytes over `"<t>\n<body>"`.
//!   The first `v1` is made with the endpoint secret, a second one with the organization secret
//!   when the organization has one. [`verify_amcore`] checks it.
//!   During a rotation's grace period, a `v1` made with the previous endpoint secret follows the
//!   first one.
//! - The Standard Webhooks headers `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64> [v1,<base64>] v1a,<base64>`: each `v1` an HMAC-SHA256 over
//!   `"<id>.<t>.<body>"` keyed with the endpoint secret (then the previous one, during a grace
//!   period), checked by [`verify_standard_webhooks`]; `v1a` an Ed25519 signature of the same
//!   content with the organization's key, checked with its public key alone by [`verify_v1a`].
//!
//! Every verifier rejects a timestamp further than the tolerance from the receiver's clock
//! ([`DEFAULT_TOLERANCE`] is 5 minutes); the HMAC ones compare signatures in constant time. They are pure:
//! the caller passes the current time, so tests can pin it ([`unix_now`] reads the clock).
//!
//! The crate owns the signature schemes and the header names. It must not grow an HTTP
//! framework, an async runtime or a dependency on the rest of Herald: receivers depend on it,
//! and `herald-delivery` signs with [`sign_v1`], [`sign_standard_webhooks`] and [`sign_v1a`].
//!
//! # Layout
//!
//! - [`secret`]: [`Secret`], parsed from the base64 Herald shows (or `whsec_…`).
//! - [`amcore`]: `X-AmCore-Signature`, signing and verification.
//! - [`standard`]: the Standard Webhooks signature, signing and verification.
//! - [`asymmetric`]: the Standard Webhooks Ed25519 signature (`v1a`), signing and verification.
//! - [`header`]: the header names of a delivery.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use herald_verify::{DEFAULT_TOLERANCE, Secret, VerifyError, sign_v1, verify_amcore};
//!
//! // The endpoint secret exactly as Herald showed it when the endpoint was created.
//! let secret = Secret::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let body = br#"{"id":"evt_1","type":"wallet.balance_low"}"#;
//! let now = 1_777_204_800;
//!
//! // What Herald sends (normally read from the request).
//! let header = format!("t={now},v1={}", sign_v1(secret.as_bytes(), now, body));
//!
//! let verified = verify_amcore(&header, body, &[&secret], now + 2, DEFAULT_TOLERANCE)?;
//! assert_eq!(verified.timestamp, now);
//!
//! // One changed byte, or a delivery replayed ten minutes later, is refused.
//! assert_eq!(
//!     verify_amcore(&header, b"{}", &[&secret], now, DEFAULT_TOLERANCE),
//!     Err(VerifyError::NoMatchingSignature)
//! );
//! assert_eq!(
//!     verify_amcore(&header, body, &[&secret], now + 600, Duration::from_secs(300)),
//!     Err(VerifyError::TimestampOutOfTolerance)
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod amcore;
pub mod asymmetric;
pub mod header;
pub mod secret;
pub mod standard;

pub use amcore::{sign_v1, verify_amcore};
pub use asymmetric::{public_key_from_base64url, sign_v1a, signed_content, v1a_entry, verify_v1a};
pub use ed25519_dalek::SigningKey;
pub use secret::{Secret, SecretError};
pub use standard::{sign_standard_webhooks, verify_standard_webhooks};

/// The largest distance between a signature's timestamp and the receiver's clock that Herald
/// tells receivers to accept: 5 minutes, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// What a successful verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp, in Unix seconds: when Herald made this attempt.
    pub timestamp: i64,
    /// The index, in the secrets the caller passed, of the secret that matched. During a move
    /// from one secret to another this says which one the sender used.
    pub secret_index: usize,
}

/// Why a delivery was refused. Each variant is a reason to answer 4xx and not process it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing its parts or has the wrong shape: not `t=<digits>,v1=<hex>…`, not
    /// `v1,<base64>…`, an empty message id, or a timestamp that is not decimal digits.
    #[error("malformed signature header")]
    Malformed,
    /// The signed timestamp is further from `now` than the tolerance allows, in either
    /// direction: a replay of an old delivery, or a clock far off.
    #[error("timestamp outside tolerance")]
    TimestampOutOfTolerance,
    /// No signature in the header matches the body under any of the secrets: the body was
    /// changed, or it was signed with another secret.
    #[error("no matching signature")]
    NoMatchingSignature,
    /// The public key given to [`verify_v1a`] is not an Ed25519 public key (not 32 bytes of
    /// base64url, or not a point of the curve): a configuration mistake of the receiver.
    #[error("invalid public key")]
    InvalidPublicKey,
}

/// The current time in Unix seconds, to pass as `now`.
pub fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

/// Rejects a timestamp further than `tolerance` from `now`.
fn check_tolerance(timestamp: i64, now: i64, tolerance: Duration) -> Result<(), VerifyError> {
    if timestamp.abs_diff(now) > tolerance.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    Ok(())
}

/// The answer of a check against one key: verified at `timestamp`, or no matching signature.
fn single_key_verdict(matches: bool, timestamp: i64) -> Result<Verified, VerifyError> {
    if matches {
        Ok(Verified {
            timestamp,
            secret_index: 0,
        })
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

/// Parses a timestamp as Herald writes it: decimal digits only, no sign, no spaces.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    text.parse().map_err(|_| VerifyError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/receiving.md, whose values were also computed with openssl
    /// and with the official `standardwebhooks` Python package: keep the two in step.
    #[test]
    fn the_worked_example_of_the_receiving_guide_verifies() {
        let secret = Secret::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("the guide's secret");
        let event_id = "evt_01a219e1-1500-76c4-b84e-1674a0eeb3c2";
        let body = concat!(
            r#"{"id":"evt_01a219e1-1500-76c4-b84e-1674a0eeb3c2","type":"wallet.balance_low","#,
            r#""api_version":"2026-04-01","created_at":"2026-04-26T12:00:00.000000Z","#,
            r#""org_id":"01a219b0-7f27-711b-8897-4495784a58cd","data":{"balance":"3.20"}}"#
        )
        .as_bytes();
        let header =
            "t=1777204805,v1=b44a5fd91b5ff56fad5282093a45ff678feadf3a5e4bf65b44f49277419f7cff";
        let webhook_signature = "v1,4ohyko1eRCBF9aQPj40Srjad36q10bJc7Q83GYDgt1Y=";
        let now = 1_777_204_807;

        let amcore = verify_amcore(header, body, &[&secret], now, DEFAULT_TOLERANCE);
        let standard = verify_standard_webhooks(
            event_id,
            "1777204805",
            webhook_signature,
            body,
            &secret,
            now,
            DEFAULT_TOLERANCE,
        );

        let expected = Ok(Verified {
            timestamp: 1_777_204_805,
            secret_index: 0,
        });
        assert_eq!(amcore, expected);
        assert_eq!(standard, expected);
    }
}
