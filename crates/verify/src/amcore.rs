//! Herald's own signature header, `X-AmCore-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`.
//!
//! Each `v1` is the lowercase hex of HMAC-SHA256 keyed with a secret's 32 bytes over
//! `"<t>\n<body>"`: the timestamp in decimal, one newline byte, then the body bytes exactly as
//! received. Herald signs with the endpoint secret, and adds a second `v1` made with the
//! organization secret when one exists.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::{Secret, Verified, VerifyError, check_tolerance, parse_timestamp};

/// The length of a `v1` value: 32 bytes in hex.
const V1_HEX_LEN: usize = 64;

/// Lowercase hex of HMAC-SHA256 keyed with `key` over `"<timestamp>\n<body>"`: one `v1` value.
///
/// `key` is the secret's decoded bytes ([`Secret::as_bytes`]), never its base64 text.
pub fn sign_v1(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac_v1(key, timestamp, body))
}

/// Checks an `X-AmCore-Signature` value against the exact body bytes received.
///
/// Accepts when the timestamp is within `tolerance` of `now` (Unix seconds) and any `v1` in the
/// header matches the body under any of `secrets`; the comparison is constant-time. Entries of
/// other schemes (`v2=…`) are skipped, so a future scheme does not break this receiver.
///
/// # Errors
///
/// [`VerifyError::Malformed`] when the header is not `t=<digits>` followed by at least one
/// `v1=`; [`VerifyError::TimestampOutOfTolerance`] when the timestamp is too old or too far
/// ahead; [`VerifyError::NoMatchingSignature`] when no `v1` matches.
pub fn verify_amcore(
    header: &str,
    body: &[u8],
    secrets: &[&Secret],
    now: i64,
    tolerance: Duration,
) -> Result<Verified, VerifyError> {
    let parsed = parse_header(header)?;
    check_tolerance(parsed.timestamp, now, tolerance)?;
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| mac_v1(secret.as_bytes(), parsed.timestamp, body))
        .collect();
    for candidate in &parsed.signatures {
        let Some(candidate) = decode_v1(candidate) else {
            continue;
        };
        let matched = expected
            .iter()
            .position(|tag| bool::from(tag.ct_eq(&candidate)));
        if let Some(secret_index) = matched {
            return Ok(Verified {
                timestamp: parsed.timestamp,
                secret_index,
            });
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// A header split into its timestamp and its `v1` values (not yet decoded).
struct ParsedHeader<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.split_once('=') {
            Some(("t", value)) if timestamp.is_none() => timestamp = Some(parse_timestamp(value)?),
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
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

/// A `v1` value as bytes, or `None` when it is not 64 hex digits (it then matches nothing).
fn decode_v1(text: &str) -> Option<[u8; 32]> {
    if text.len() != V1_HEX_LEN {
        return None;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

fn mac_v1(key: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests;
