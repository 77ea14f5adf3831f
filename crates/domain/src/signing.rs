//! What signs a delivery besides the endpoint's current secret (docs/api.md#signatures): the
//! previous secret during a rotation's grace period, and the organization's Ed25519 signing key
//! (`v1a`). Neither type prints its key material in `Debug`.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use rand::Rng as _;
use rand::rngs::OsRng;
use zeroize::Zeroize as _;

use crate::{FieldErrors, OrgId, Secret, SigningKeyId, Timestamp};

/// The longest grace period a rotation may give the previous endpoint secret: 7 days.
pub const MAX_GRACE_PERIOD_SECONDS: u32 = 7 * 24 * 60 * 60;

/// The body field of `POST /v1/webhooks/{id}/rotate-secret` that sets the grace period.
pub const GRACE_PERIOD_FIELD: &str = "grace_period_seconds";

/// Checks a requested grace period: a whole number of seconds from 0 to
/// [`MAX_GRACE_PERIOD_SECONDS`]. `value` is the JSON value as sent.
///
/// # Errors
///
/// The field error naming [`GRACE_PERIOD_FIELD`] otherwise (a fraction, a negative number, a
/// string, `null`, or more than 7 days).
pub fn parse_grace_period(value: &serde_json::Value) -> Result<u32, FieldErrors> {
    value
        .as_u64()
        .and_then(|seconds| u32::try_from(seconds).ok())
        .filter(|seconds| *seconds <= MAX_GRACE_PERIOD_SECONDS)
        .ok_or_else(|| {
            FieldErrors::from([(
                GRACE_PERIOD_FIELD.to_owned(),
                format!("must be a whole number of seconds from 0 to {MAX_GRACE_PERIOD_SECONDS}"),
            )])
        })
}

/// Everything that signs one endpoint's deliveries: each attempt, test and probe carries a
/// signature made with each of these that applies (docs/api.md#signatures).
#[derive(Debug, Clone)]
pub struct SigningMaterial {
    /// The endpoint's current secret: the first `v1` of both headers.
    pub endpoint_secret: Secret,
    /// The secret a rotation with a grace period replaced, while the period runs: a second `v1`
    /// in both headers.
    pub previous_secret: Option<PreviousSecret>,
    /// The organization's webhook secret, if it has one: one more `v1` in `X-AmCore-Signature`.
    pub org_secret: Option<Secret>,
    /// The organization's Ed25519 key: the `v1a` entry of `webhook-signature`. Shared, because
    /// it is opened once per process and kept (opening derives the public key, which costs as
    /// much as a signature).
    pub org_signing_key: Arc<OrgSigningKey>,
}

/// The secret a rotation replaced, while its grace period runs: deliveries are signed with it
/// too (a second `v1` after the current one) until `valid_until`.
#[derive(Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    /// The replaced secret.
    pub secret: Secret,
    /// The end of the grace period: a delivery signed at or after it no longer carries it.
    pub valid_until: Timestamp,
}

impl PreviousSecret {
    /// Whether an attempt signed at `at` is still signed with the previous secret.
    pub fn signs_at(&self, at: Timestamp) -> bool {
        at < self.valid_until
    }
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("secret", &self.secret)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

/// An organization's Ed25519 signing key. Made on the organization's first need, sealed at rest,
/// and never shown: only its public half leaves Herald (`GET /v1/webhook-keys`).
///
/// Signing is aws-lc's (its x86-64 assembly takes about half of ed25519-dalek's time, and every
/// delivery pays for one signature); Ed25519 is deterministic (RFC 8032), so the signatures
/// are the very bytes any other implementation makes, which the tests check against dalek.
pub struct OrgSigningKey {
    /// The key's id, the `kid` receivers select it by.
    pub id: SigningKeyId,
    /// The organization whose deliveries it signs.
    pub org_id: OrgId,
    /// When it was made.
    pub created_at: Timestamp,
    seed: [u8; 32],
    key_pair: Ed25519KeyPair,
}

impl OrgSigningKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(org_id: OrgId, created_at: Timestamp) -> Self {
        let mut seed = [0_u8; 32];
        OsRng.fill(&mut seed);
        Self::from_seed(SigningKeyId::new(), org_id, created_at, &seed)
    }

    /// A key read back from storage: its 32-byte seed (RFC 8032's private key).
    pub fn from_seed(
        id: SigningKeyId,
        org_id: OrgId,
        created_at: Timestamp,
        seed: &[u8; 32],
    ) -> Self {
        #[expect(
            clippy::expect_used,
            reason = "every 32-byte string is an Ed25519 seed: aws-lc refuses only other lengths"
        )]
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .expect("a 32-byte Ed25519 seed is always accepted");
        Self {
            id,
            org_id,
            created_at,
            seed: *seed,
            key_pair,
        }
    }

    /// The 32-byte seed, for sealing; nothing else may read it.
    pub fn expose_seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0_u8; 64];
        signature.copy_from_slice(self.key_pair.sign(message).as_ref());
        signature
    }

    /// The 32-byte public key (a JWK's `x`, decoded).
    pub fn public_key(&self) -> [u8; 32] {
        let mut public_key = [0_u8; 32];
        public_key.copy_from_slice(self.key_pair.public_key().as_ref());
        public_key
    }
}

impl Drop for OrgSigningKey {
    fn drop(&mut self) {
        // aws-lc wipes its own copy; this one is ours.
        self.seed.zeroize();
    }
}

impl fmt::Debug for OrgSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgSigningKey")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("created_at", &self.created_at)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(value: &serde_json::Value, expected: Option<u32>) {
        assert_eq!(parse_grace_period(value).ok(), expected, "{value}");
    }

    #[test]
    fn grace_periods_are_whole_seconds_up_to_seven_days() {
        check(&json!(0), Some(0));
        check(&json!(2), Some(2));
        check(&json!(604_800), Some(604_800));
        check(&json!(604_801), None);
        check(&json!(-1), None);
        check(&json!(1.5), None);
        check(&json!("60"), None);
        check(&json!(null), None);
        check(&json!(u64::MAX), None);
    }

    #[test]
    fn a_previous_secret_signs_until_its_end_and_not_at_it() {
        let previous = PreviousSecret {
            secret: Secret::generate(),
            valid_until: Timestamp::from_micros(2_000_000),
        };
        assert!(previous.signs_at(Timestamp::from_micros(1_999_999)));
        assert!(!previous.signs_at(Timestamp::from_micros(2_000_000)));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let seed_hex: String = key
            .expose_seed()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let printed = format!("{key:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains(&seed_hex), "{printed}");
        assert!(
            !printed.contains(&format!("{:?}", key.expose_seed())),
            "{printed}"
        );

        let previous = PreviousSecret {
            secret: Secret::generate(),
            valid_until: Timestamp::now(),
        };
        assert!(!format!("{previous:?}").contains(&previous.secret.expose_base64()));
    }

    #[test]
    fn signatures_and_public_keys_are_those_of_an_independent_implementation() {
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let dalek = ed25519_dalek::SigningKey::from_bytes(key.expose_seed());
        assert_eq!(key.public_key(), dalek.verifying_key().to_bytes());
        for message in [&b""[..], b"evt_1.1777204800.{}", &[0xA5; 5000]] {
            let signature = key.sign(message);
            assert_eq!(
                signature,
                ed25519_dalek::Signer::sign(&dalek, message).to_bytes()
            );
            dalek
                .verifying_key()
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature))
                .expect("dalek verifies aws-lc's signature");
        }
    }

    #[test]
    fn a_key_read_back_from_its_seed_is_the_same_key() {
        let key = OrgSigningKey::generate(OrgId::new(), Timestamp::now());
        let again = OrgSigningKey::from_seed(key.id, key.org_id, key.created_at, key.expose_seed());
        assert_eq!(again.public_key(), key.public_key());
        assert_ne!(
            key.public_key(),
            OrgSigningKey::generate(key.org_id, key.created_at).public_key()
        );
    }
}
