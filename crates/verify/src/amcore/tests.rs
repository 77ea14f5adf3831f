use proptest::prelude::*;

use super::*;
use crate::DEFAULT_TOLERANCE;

const T: i64 = 1_777_204_800;
const BODY: &[u8] = br#"{"id":"evt_1"}"#;
/// HMAC-SHA256 of `"1777204800\n{"id":"evt_1"}"` under the bytes 0..32, computed independently
/// with Python's `hmac` module (the same vector `herald-delivery` signs with).
const KNOWN_V1: &str = "5ddf79ccc03de5dfd8cd567df4e7dfa28305ae19da4ef65ceeb131e8c008b4b4";

fn counting_secret() -> Secret {
    Secret::from_bytes(std::array::from_fn(|index| {
        u8::try_from(index).expect("index below 32")
    }))
}

fn check(header: &str, expected: Result<Verified, VerifyError>) {
    assert_eq!(
        verify_amcore(header, BODY, &[&counting_secret()], T, DEFAULT_TOLERANCE),
        expected,
        "{header}"
    );
}

fn verified(timestamp: i64, secret_index: usize) -> Result<Verified, VerifyError> {
    Ok(Verified {
        timestamp,
        secret_index,
    })
}

#[test]
fn sign_v1_matches_a_known_vector() {
    assert_eq!(sign_v1(counting_secret().as_bytes(), T, BODY), KNOWN_V1);
}

#[test]
fn verify_accepts_good_headers() {
    check(&format!("t={T},v1={KNOWN_V1}"), verified(T, 0));
    // Another scheme, or another secret's `v1`, next to the good one does not matter.
    check(&format!("t={T},v2=abc,v1={KNOWN_V1}"), verified(T, 0));
    check(
        &format!("t={T},v1={},v1={KNOWN_V1}", "0".repeat(64)),
        verified(T, 0),
    );
    check(&format!("v1={KNOWN_V1},t={T}"), verified(T, 0));
    check(
        &format!("t={T},v1={}", KNOWN_V1.to_uppercase()),
        verified(T, 0),
    );
}

#[test]
fn verify_refuses_malformed_headers() {
    for header in [
        String::new(),
        format!("v1={KNOWN_V1}"),
        format!("t={T}"),
        format!("t={T},v2={KNOWN_V1}"),
        format!("t=-5,v1={KNOWN_V1}"),
        format!("t=+{T},v1={KNOWN_V1}"),
        format!("t= {T},v1={KNOWN_V1}"),
        format!("t=,v1={KNOWN_V1}"),
        format!("t=99999999999999999999,v1={KNOWN_V1}"),
        format!("t={T},t={T},v1={KNOWN_V1}"),
        format!("t={T},garbage,v1={KNOWN_V1}"),
    ] {
        check(&header, Err(VerifyError::Malformed));
    }
}

#[test]
fn verify_refuses_signatures_that_do_not_match() {
    for v1 in ["not-hex", &KNOWN_V1[..32], &format!("{KNOWN_V1}00"), ""] {
        check(
            &format!("t={T},v1={v1}"),
            Err(VerifyError::NoMatchingSignature),
        );
    }
    let other = Secret::from_bytes([7; 32]);
    let signed_by_other = sign_v1(other.as_bytes(), T, BODY);
    check(
        &format!("t={T},v1={signed_by_other}"),
        Err(VerifyError::NoMatchingSignature),
    );
}

#[test]
fn verify_refuses_stale_and_future_timestamps() {
    let secret = counting_secret();
    for (timestamp, expected) in [
        (T - 300, verified(T - 300, 0)),
        (T + 300, verified(T + 300, 0)),
        (T - 301, Err(VerifyError::TimestampOutOfTolerance)),
        (T + 301, Err(VerifyError::TimestampOutOfTolerance)),
        (T - 600, Err(VerifyError::TimestampOutOfTolerance)),
        (0, Err(VerifyError::TimestampOutOfTolerance)),
    ] {
        let header = format!(
            "t={timestamp},v1={}",
            sign_v1(secret.as_bytes(), timestamp, BODY)
        );
        check(&header, expected);
    }
}

#[test]
fn verify_reports_which_secret_matched() {
    let endpoint = counting_secret();
    let organization = Secret::from_bytes([9; 32]);
    let header = format!("t={T},v1={}", sign_v1(organization.as_bytes(), T, BODY));

    let result = verify_amcore(
        &header,
        BODY,
        &[&endpoint, &organization],
        T,
        DEFAULT_TOLERANCE,
    );

    assert_eq!(result, verified(T, 1));
    assert_eq!(
        verify_amcore(&header, BODY, &[], T, DEFAULT_TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

fn herald_header(keys: &[[u8; 32]], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for key in keys {
        header.push_str(",v1=");
        header.push_str(&sign_v1(key, timestamp, body));
    }
    header
}

proptest! {
    #[test]
    fn verify_accepts_what_signing_produced(
        endpoint_key in any::<[u8; 32]>(),
        organization_key in proptest::option::of(any::<[u8; 32]>()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        timestamp in 0i64..4_000_000_000,
        skew in -300i64..=300,
    ) {
        let keys: Vec<[u8; 32]> = std::iter::once(endpoint_key).chain(organization_key).collect();
        let header = herald_header(&keys, timestamp, &body);
        for key in &keys {
            let secret = Secret::from_bytes(*key);
            let result = verify_amcore(&header, &body, &[&secret], timestamp + skew, DEFAULT_TOLERANCE);
            prop_assert_eq!(result.map(|verified| verified.timestamp), Ok(timestamp));
        }
    }

    #[test]
    fn verify_rejects_any_single_byte_tamper_of_the_body(
        key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        timestamp in 0i64..4_000_000_000,
        position in any::<proptest::sample::Index>(),
        change in 1u8..=255,
    ) {
        let header = herald_header(&[key], timestamp, &body);
        let mut tampered = body.clone();
        tampered[position.index(body.len())] ^= change;

        let result = verify_amcore(&header, &tampered, &[&Secret::from_bytes(key)], timestamp, DEFAULT_TOLERANCE);

        prop_assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_rejects_any_other_timestamp(
        key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        timestamp in 0i64..4_000_000_000,
        other in 0i64..4_000_000_000,
    ) {
        prop_assume!(other != timestamp);
        let signature = sign_v1(&key, timestamp, &body);
        let header = format!("t={other},v1={signature}");

        // Even with the receiver's clock at the claimed time, the signature does not match.
        let result = verify_amcore(&header, &body, &[&Secret::from_bytes(key)], other, DEFAULT_TOLERANCE);

        prop_assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_rejects_any_other_secret(
        key in any::<[u8; 32]>(),
        other_key in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        timestamp in 0i64..4_000_000_000,
    ) {
        prop_assume!(other_key != key);
        let header = herald_header(&[key], timestamp, &body);

        let result = verify_amcore(&header, &body, &[&Secret::from_bytes(other_key)], timestamp, DEFAULT_TOLERANCE);

        prop_assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_accepts_exactly_the_timestamps_within_tolerance(
        key in any::<[u8; 32]>(),
        timestamp in 1_000_000i64..4_000_000_000,
        skew in -100_000i64..100_000,
        tolerance in 0u64..50_000,
    ) {
        let header = herald_header(&[key], timestamp, BODY);
        let tolerance = Duration::from_secs(tolerance);

        let result = verify_amcore(&header, BODY, &[&Secret::from_bytes(key)], timestamp + skew, tolerance);

        if skew.unsigned_abs() <= tolerance.as_secs() {
            prop_assert_eq!(result, verified(timestamp, 0));
        } else {
            prop_assert_eq!(result, Err(VerifyError::TimestampOutOfTolerance));
        }
    }

    #[test]
    fn verify_never_accepts_or_panics_on_arbitrary_headers(header in "\\PC{0,200}") {
        let result = verify_amcore(&header, BODY, &[&counting_secret()], T, DEFAULT_TOLERANCE);
        prop_assert!(result.is_err());
    }
}
