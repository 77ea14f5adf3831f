use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_domain::{OrgId, OrgSigningKey, PreviousSecret, SigningKeyId};
use proptest::prelude::*;

use super::*;

const T: i64 = 1_777_204_800;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;
const EVENT: &str = "evt_0190a1b2-0000-7000-8000-000000000000";

fn fixed_secret() -> Secret {
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::try_from(index).expect("index below 32");
    }
    Secret::from_bytes(bytes)
}

fn at(unix_seconds: i64) -> Timestamp {
    Timestamp::from_micros(unix_seconds * 1_000_000)
}

#[test]
fn signature_v1_matches_a_known_vector() {
    // Computed independently with Python's hmac module.
    assert_eq!(
        signature_v1(&fixed_secret(), T, BODY),
        "5ddf79ccc03de5dfd8cd567df4e7dfa28305ae19da4ef65ceeb131e8c008b4b4"
    );
}

#[test]
fn standard_webhooks_signature_matches_the_official_library() {
    // Produced by the `standardwebhooks` Python package with the secret
    // `whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=`, the base64 of bytes 0..32.
    assert_eq!(
        STANDARD.encode(fixed_secret().expose_bytes()),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    );
    assert_eq!(
        standard_webhooks_signature(&fixed_secret(), EVENT, T, BODY),
        "v1,eOU9rMmqsNkc4FQetFsueQAEwlsGr9HD8GTsUIPiWkU="
    );
}

#[test]
fn standard_webhooks_signature_matches_the_spec_vector() {
    // The example published with the Standard Webhooks reference libraries.
    let key = STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("vector key is base64");
    let signature = standard_webhooks_signature_with_key(
        &key,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn amcore_header_carries_one_v1_per_secret() {
    let endpoint_secret = fixed_secret();
    let org_secret = Secret::generate();

    let single = amcore_signature_header(T, BODY, &[&endpoint_secret]);
    let double = amcore_signature_header(T, BODY, &[&endpoint_secret, &org_secret]);

    assert_eq!(
        single,
        format!("t={T},v1={}", signature_v1(&endpoint_secret, T, BODY))
    );
    assert_eq!(
        double,
        format!("{single},v1={}", signature_v1(&org_secret, T, BODY))
    );
    assert_eq!(
        verify_v1(&org_secret, &double, BODY, at(T), DEFAULT_TOLERANCE),
        Ok(())
    );
    assert_eq!(
        verify_v1(&endpoint_secret, &double, BODY, at(T), DEFAULT_TOLERANCE),
        Ok(())
    );
}

/// The Ed25519 key whose seed is the bytes 0..32 (the verify crate's vectors use it too).
fn fixed_signing_key() -> Arc<OrgSigningKey> {
    let seed = *fixed_secret().expose_bytes();
    Arc::new(OrgSigningKey::from_seed(
        SigningKeyId::new(),
        OrgId::new(),
        at(T),
        &seed,
    ))
}

fn signing(previous_secret: Option<PreviousSecret>, org_secret: Option<Secret>) -> SigningMaterial {
    SigningMaterial {
        endpoint_secret: fixed_secret(),
        previous_secret,
        org_secret,
        org_signing_key: fixed_signing_key(),
    }
}

fn headers_at(signing: &SigningMaterial, unix_seconds: i64) -> HashMap<&'static str, String> {
    let delivery = OutgoingDelivery {
        event_id: EVENT.parse().expect("valid event id"),
        event_type: "wallet.balance_low",
        attempt: 1,
        timestamp: at(unix_seconds),
        body: BODY,
        signing,
        sequence: None,
        ordering_key: None,
    };
    signed_headers(&delivery).into_iter().collect()
}

#[test]
fn signed_headers_are_the_section_seven_set() {
    let signing = signing(None, None);
    let event_id: EventId = EVENT.parse().expect("valid event id");
    let delivery = OutgoingDelivery {
        event_id,
        event_type: "wallet.balance_low",
        attempt: 3,
        timestamp: at(T),
        body: BODY,
        signing: &signing,
        sequence: None,
        ordering_key: None,
    };

    let headers: HashMap<&str, String> = signed_headers(&delivery).into_iter().collect();
    let ordered = OutgoingDelivery {
        sequence: Some(17),
        ordering_key: Some("customer-42"),
        ..delivery
    };
    let ordered: HashMap<&str, String> = signed_headers(&ordered).into_iter().collect();
    assert_eq!(ordered.len(), 11, "the sequence and the key added");
    assert_eq!(ordered[SEQUENCE], "17");
    assert_eq!(ordered[ORDERING_KEY], "customer-42");

    assert_eq!(headers.len(), 9);
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(
        headers[USER_AGENT],
        format!("Herald/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(headers[EVENT_ID], EVENT);
    assert_eq!(headers[WEBHOOK_ID], EVENT);
    assert_eq!(headers[EVENT_TYPE], "wallet.balance_low");
    assert_eq!(headers[DELIVERY_ATTEMPT], "3");
    assert_eq!(headers[WEBHOOK_TIMESTAMP], T.to_string());
    // The `v1a` entry was computed with Python's `cryptography` package.
    assert_eq!(
        headers[WEBHOOK_SIGNATURE],
        "v1,eOU9rMmqsNkc4FQetFsueQAEwlsGr9HD8GTsUIPiWkU= \
         v1a,jMkPpA8FWLMcihI/Cmsy/ASguGg0HdJLLG3IZ4NAaAh/zE3Iy4Lq0JMh2C9g9JkJlde6P1icIhC67Af88gAnAA=="
    );
    assert_eq!(
        headers[SIGNATURE],
        format!("t={T},v1=5ddf79ccc03de5dfd8cd567df4e7dfa28305ae19da4ef65ceeb131e8c008b4b4")
    );
}

#[test]
fn a_previous_secret_signs_both_headers_until_its_grace_period_ends() {
    let previous = Secret::generate();
    let org_secret = Secret::generate();
    let signing = signing(
        Some(PreviousSecret {
            secret: previous.clone(),
            valid_until: at(T + 2),
        }),
        Some(org_secret.clone()),
    );

    let during = headers_at(&signing, T + 1);
    let at_end = headers_at(&signing, T + 2);

    // During: current, previous, then the organization's `v1`; current, previous, then `v1a`.
    let current_v1 = signature_v1(&fixed_secret(), T + 1, BODY);
    let previous_v1 = signature_v1(&previous, T + 1, BODY);
    let org_v1 = signature_v1(&org_secret, T + 1, BODY);
    assert_eq!(
        during[SIGNATURE],
        format!("t={},v1={current_v1},v1={previous_v1},v1={org_v1}", T + 1)
    );
    let entries: Vec<&str> = during[WEBHOOK_SIGNATURE].split(' ').collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(
        entries[0],
        standard_webhooks_signature(&fixed_secret(), EVENT, T + 1, BODY)
    );
    assert_eq!(
        entries[1],
        standard_webhooks_signature(&previous, EVENT, T + 1, BODY)
    );
    assert!(entries[2].starts_with("v1a,"), "{entries:?}");
    for secret in [&fixed_secret(), &previous, &org_secret] {
        assert_eq!(
            verify_v1(
                secret,
                &during[SIGNATURE],
                BODY,
                at(T + 1),
                DEFAULT_TOLERANCE
            ),
            Ok(())
        );
    }

    // From the end of the grace period on, the previous secret signs nothing.
    assert_eq!(at_end[WEBHOOK_SIGNATURE].matches("v1,").count(), 1);
    assert_eq!(at_end[SIGNATURE].matches("v1=").count(), 2);
    assert_eq!(
        verify_v1(
            &previous,
            &at_end[SIGNATURE],
            BODY,
            at(T + 2),
            DEFAULT_TOLERANCE
        ),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn every_attempt_carries_a_v1a_that_verifies_with_the_public_key_alone() {
    let signing = signing(None, None);
    let headers = headers_at(&signing, T);

    let public_key = signing.org_signing_key.public_key();
    let verified = herald_verify::verify_v1a(
        &headers[WEBHOOK_ID],
        &headers[WEBHOOK_TIMESTAMP],
        &headers[WEBHOOK_SIGNATURE],
        BODY,
        &public_key,
        T,
        DEFAULT_TOLERANCE,
    );
    let tampered = herald_verify::verify_v1a(
        &headers[WEBHOOK_ID],
        &headers[WEBHOOK_TIMESTAMP],
        &headers[WEBHOOK_SIGNATURE],
        b"{}",
        &public_key,
        T,
        DEFAULT_TOLERANCE,
    );

    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(tampered, Err(VerifyError::NoMatchingSignature));
}

fn check(header: &str, expected: Result<(), VerifyError>) {
    assert_eq!(
        verify_v1(&fixed_secret(), header, BODY, at(T), DEFAULT_TOLERANCE),
        expected,
        "{header}"
    );
}

#[test]
fn verify_refuses_malformed_and_stale_headers() {
    let good = signature_v1(&fixed_secret(), T, BODY);
    check(&format!("t={T},v1={good}"), Ok(()));
    check(&format!("t={T},v2=abc,v1={good}"), Ok(()));
    check(&format!("v1={good}"), Err(VerifyError::Malformed));
    check(&format!("t={T}"), Err(VerifyError::Malformed));
    check(&format!("t=-5,v1={good}"), Err(VerifyError::Malformed));
    check(
        &format!("t={T},t={T},v1={good}"),
        Err(VerifyError::Malformed),
    );
    check(
        &format!("t={T},garbage,v1={good}"),
        Err(VerifyError::Malformed),
    );
    check(
        &format!("t={T},v1=not-hex"),
        Err(VerifyError::NoMatchingSignature),
    );
    check(
        &format!("t={T},v1={}", &good[..32]),
        Err(VerifyError::NoMatchingSignature),
    );
    let stale = T - 301;
    let stale_signature = signature_v1(&fixed_secret(), stale, BODY);
    check(
        &format!("t={stale},v1={stale_signature}"),
        Err(VerifyError::TimestampOutOfTolerance),
    );
}

proptest! {
    #[test]
    fn verify_accepts_what_signing_produced(
        key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        unix_seconds in 0i64..4_000_000_000,
        skew in -300i64..=300,
    ) {
        let secret = Secret::from_bytes(key);
        let header = amcore_signature_header(unix_seconds, &body, &[&secret]);
        let now = at(unix_seconds + skew);
        prop_assert_eq!(verify_v1(&secret, &header, &body, now, DEFAULT_TOLERANCE), Ok(()));
    }

    #[test]
    fn verify_rejects_any_tampering(
        key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        unix_seconds in 1i64..4_000_000_000,
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
        timestamp_delta in 1i64..300,
        other_key in any::<[u8; 32]>(),
    ) {
        let secret = Secret::from_bytes(key);
        let signature = signature_v1(&secret, unix_seconds, &body);
        let now = at(unix_seconds);

        let mut tampered_body = body.clone();
        tampered_body[flip.index(body.len())] ^= 1 << bit;
        let header = format!("t={unix_seconds},v1={signature}");
        prop_assert_eq!(
            verify_v1(&secret, &header, &tampered_body, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );

        let moved = unix_seconds - timestamp_delta;
        let moved_header = format!("t={moved},v1={signature}");
        prop_assert_eq!(
            verify_v1(&secret, &moved_header, &body, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );

        prop_assume!(other_key != key);
        prop_assert_eq!(
            verify_v1(&Secret::from_bytes(other_key), &header, &body, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
    }
}
