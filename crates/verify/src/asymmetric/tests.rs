use proptest::prelude::*;

use super::*;
use crate::DEFAULT_TOLERANCE;

const T: i64 = 1_777_204_800;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;
const EVENT: &str = "evt_0190a1b2-0000-7000-8000-000000000000";
/// Computed with Python's `cryptography` package: the Ed25519 key whose seed is the bytes
/// 0..32, over `"<EVENT>.<T>.<BODY>"`.
const KNOWN_SIGNATURE: &str =
    "v1a,jMkPpA8FWLMcihI/Cmsy/ASguGg0HdJLLG3IZ4NAaAh/zE3Iy4Lq0JMh2C9g9JkJlde6P1icIhC67Af88gAnAA==";
/// The same key's public half, as a JWK's `x`.
const KNOWN_PUBLIC_KEY: &str = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";

fn counting_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|index| {
        u8::try_from(index).expect("index below 32")
    }))
}

fn public_key() -> [u8; 32] {
    public_key_from_base64url(KNOWN_PUBLIC_KEY).expect("the known key decodes")
}

fn check(msg_id: &str, timestamp: &str, signature: &str, expected: Result<Verified, VerifyError>) {
    let result = verify_v1a(
        msg_id,
        timestamp,
        signature,
        BODY,
        &public_key(),
        T,
        DEFAULT_TOLERANCE,
    );
    assert_eq!(result, expected, "{msg_id} {timestamp} {signature}");
}

const ACCEPTED: Result<Verified, VerifyError> = Ok(Verified {
    timestamp: T,
    secret_index: 0,
});

#[test]
fn sign_matches_an_independent_implementation() {
    assert_eq!(sign_v1a(&counting_key(), EVENT, T, BODY), KNOWN_SIGNATURE);
    assert_eq!(counting_key().verifying_key().to_bytes(), public_key());
}

#[test]
fn verify_accepts_a_v1a_entry_among_others() {
    let t = T.to_string();
    check(EVENT, &t, KNOWN_SIGNATURE, ACCEPTED);
    check(
        EVENT,
        &t,
        &format!("v1,bm90IGEgbWFj v1,YW5vdGhlcg== {KNOWN_SIGNATURE}"),
        ACCEPTED,
    );
}

#[test]
fn verify_refuses_malformed_headers() {
    let t = T.to_string();
    check("", &t, KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, "", KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, "-1", KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, &t, "", Err(VerifyError::Malformed));
    check(EVENT, &t, "v1a", Err(VerifyError::Malformed));
    // Only HMAC entries: nothing to check with a public key.
    check(EVENT, &t, "v1,abcd", Err(VerifyError::Malformed));
}

#[test]
fn verify_refuses_what_does_not_match() {
    let t = T.to_string();
    let other_event = "evt_0190a1b2-0000-7000-8000-000000000001";
    check(
        other_event,
        &t,
        KNOWN_SIGNATURE,
        Err(VerifyError::NoMatchingSignature),
    );
    check(
        EVENT,
        &(T + 1).to_string(),
        KNOWN_SIGNATURE,
        Err(VerifyError::NoMatchingSignature),
    );
    check(
        EVENT,
        &t,
        "v1a,not-base64!",
        Err(VerifyError::NoMatchingSignature),
    );
    check(EVENT, &t, "v1a,AAAA", Err(VerifyError::NoMatchingSignature));
    // The `v1a` entry made by another key.
    let other = SigningKey::from_bytes(&[9u8; 32]);
    check(
        EVENT,
        &t,
        &sign_v1a(&other, EVENT, T, BODY),
        Err(VerifyError::NoMatchingSignature),
    );
}

#[test]
fn verify_refuses_stale_and_future_timestamps() {
    for skew in [-301, 301, -3600] {
        let timestamp = T + skew;
        let header = sign_v1a(&counting_key(), EVENT, timestamp, BODY);
        check(
            EVENT,
            &timestamp.to_string(),
            &header,
            Err(VerifyError::TimestampOutOfTolerance),
        );
    }
}

#[test]
fn public_keys_that_are_not_32_bytes_or_not_on_the_curve_are_refused() {
    assert_eq!(
        public_key_from_base64url("AAAA"),
        Err(VerifyError::InvalidPublicKey)
    );
    assert_eq!(
        public_key_from_base64url("!!"),
        Err(VerifyError::InvalidPublicKey)
    );
    assert_eq!(
        public_key_from_base64url(&format!("{KNOWN_PUBLIC_KEY}=")),
        Ok(public_key())
    );
    // y = 2 does not decompress to a point of the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let result = verify_v1a(
        EVENT,
        &T.to_string(),
        KNOWN_SIGNATURE,
        BODY,
        &not_a_point,
        T,
        DEFAULT_TOLERANCE,
    );
    assert_eq!(result, Err(VerifyError::InvalidPublicKey));
}

proptest! {
    #[test]
    fn verify_accepts_what_signing_produced(
        seed in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        timestamp in 0i64..4_000_000_000,
    ) {
        let key = SigningKey::from_bytes(&seed);
        let header = sign_v1a(&key, EVENT, timestamp, &body);
        let verified = verify_v1a(
            EVENT,
            &timestamp.to_string(),
            &header,
            &body,
            &key.verifying_key().to_bytes(),
            timestamp,
            DEFAULT_TOLERANCE,
        );
        prop_assert_eq!(verified, Ok(Verified { timestamp, secret_index: 0 }));
    }

    #[test]
    fn verify_rejects_tampering(
        seed in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let key = SigningKey::from_bytes(&seed);
        let header = sign_v1a(&key, EVENT, T, &body);
        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= flip;
        let verified = verify_v1a(
            EVENT,
            &T.to_string(),
            &header,
            &tampered,
            &key.verifying_key().to_bytes(),
            T,
            DEFAULT_TOLERANCE,
        );
        prop_assert_eq!(verified, Err(VerifyError::NoMatchingSignature));
    }
}
