use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::*;
use crate::DEFAULT_TOLERANCE;

const T: i64 = 1_777_204_800;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;
const EVENT: &str = "evt_0190a1b2-0000-7000-8000-000000000000";
/// Produced by the official `standardwebhooks` Python package with the secret
/// `whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=` (the bytes 0..32).
const KNOWN_SIGNATURE: &str = "v1,eOU9rMmqsNkc4FQetFsueQAEwlsGr9HD8GTsUIPiWkU=";

fn counting_secret() -> Secret {
    Secret::from_bytes(std::array::from_fn(|index| {
        u8::try_from(index).expect("index below 32")
    }))
}

fn check(msg_id: &str, timestamp: &str, signature: &str, expected: Result<Verified, VerifyError>) {
    let result = verify_standard_webhooks(
        msg_id,
        timestamp,
        signature,
        BODY,
        &counting_secret(),
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
fn sign_matches_the_official_library() {
    assert_eq!(
        sign_standard_webhooks(counting_secret().as_bytes(), EVENT, T, BODY),
        KNOWN_SIGNATURE
    );
}

#[test]
fn sign_matches_the_specification_vector() {
    // The example published with the Standard Webhooks reference libraries.
    let key = STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("vector key is base64");
    assert_eq!(
        sign_standard_webhooks(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn verify_accepts_good_headers() {
    let t = T.to_string();
    check(EVENT, &t, KNOWN_SIGNATURE, ACCEPTED);
    check(EVENT, &t, &format!("v1a,abc {KNOWN_SIGNATURE}"), ACCEPTED);
    check(EVENT, &t, &format!("v1,AAAA {KNOWN_SIGNATURE}"), ACCEPTED);
}

#[test]
fn verify_refuses_malformed_headers() {
    let t = T.to_string();
    check("", &t, KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, "", KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, "-1", KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, "12.5", KNOWN_SIGNATURE, Err(VerifyError::Malformed));
    check(EVENT, &t, "", Err(VerifyError::Malformed));
    check(EVENT, &t, "v1a,abc", Err(VerifyError::Malformed));
    check(
        EVENT,
        &t,
        "eOU9rMmqsNkc4FQetFsueQAEwlsGr9HD8GTsUIPiWkU=",
        Err(VerifyError::Malformed),
    );
}

#[test]
fn verify_refuses_what_does_not_match() {
    let t = T.to_string();
    check(
        "evt_other",
        &t,
        KNOWN_SIGNATURE,
        Err(VerifyError::NoMatchingSignature),
    );
    check(
        EVENT,
        &t,
        "v1,not-base64!",
        Err(VerifyError::NoMatchingSignature),
    );
    check(EVENT, &t, "v1,AAAA", Err(VerifyError::NoMatchingSignature));
    check(
        EVENT,
        &(T - 1).to_string(),
        KNOWN_SIGNATURE,
        Err(VerifyError::NoMatchingSignature),
    );
}

#[test]
fn verify_refuses_stale_and_future_timestamps() {
    let secret = counting_secret();
    for timestamp in [T - 301, T + 301, T - 600] {
        let signature = sign_standard_webhooks(secret.as_bytes(), EVENT, timestamp, BODY);
        check(
            EVENT,
            &timestamp.to_string(),
            &signature,
            Err(VerifyError::TimestampOutOfTolerance),
        );
    }
}

proptest! {
    #[test]
    fn verify_accepts_what_signing_produced(
        key in any::<[u8; 32]>(),
        msg_id in "[a-z_0-9-]{1,40}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
        timestamp in 0i64..4_000_000_000,
        skew in -300i64..=300,
    ) {
        let signature = sign_standard_webhooks(&key, &msg_id, timestamp, &body);
        let result = verify_standard_webhooks(
            &msg_id, &timestamp.to_string(), &signature, &body,
            &Secret::from_bytes(key), timestamp + skew, DEFAULT_TOLERANCE,
        );
        prop_assert_eq!(result, Ok(Verified { timestamp, secret_index: 0 }));
    }

    #[test]
    fn verify_rejects_tampering(
        key in any::<[u8; 32]>(),
        other_key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        timestamp in 0i64..4_000_000_000,
        other_timestamp in 0i64..4_000_000_000,
        position in any::<proptest::sample::Index>(),
        change in 1u8..=255,
    ) {
        let secret = Secret::from_bytes(key);
        let signature = sign_standard_webhooks(&key, EVENT, timestamp, &body);
        let verify = |msg_id: &str, timestamp: i64, body: &[u8], secret: &Secret| {
            verify_standard_webhooks(
                msg_id, &timestamp.to_string(), &signature, body, secret, timestamp,
                DEFAULT_TOLERANCE,
            )
        };

        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= change;
        prop_assert_eq!(verify(EVENT, timestamp, &tampered, &secret), Err(VerifyError::NoMatchingSignature));
        prop_assert_eq!(verify("evt_other", timestamp, &body, &secret), Err(VerifyError::NoMatchingSignature));
        if other_timestamp != timestamp {
            prop_assert_eq!(verify(EVENT, other_timestamp, &body, &secret), Err(VerifyError::NoMatchingSignature));
        }
        if other_key != key {
            prop_assert_eq!(
                verify(EVENT, timestamp, &body, &Secret::from_bytes(other_key)),
                Err(VerifyError::NoMatchingSignature)
            );
        }
    }
}
