//! Turns a failed request into the plain words a delivery record carries (`connect refused`,
//! `tls: certificate not valid for name localhost`, ...).
//!
//! Classification walks the typed source chain (our resolver's error, `rustls::Error`,
//! `io::ErrorKind`, the egress proxy tunnel's error, the HTTP client's own predicates) and
//! inspects error text only for a refused client certificate whose alert lost its type. Both
//! routes, direct and through the egress proxy, describe the same failure in the same words.

use std::error::Error;
use std::io;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

use super::proxied::ProxiedError;
use super::tunnel::TunnelError;
use crate::ssrf::ResolveError;

/// The plain-words reason for a failed request.
pub(super) fn request_error(
    error: &reqwest::Error,
    connect_timeout: Duration,
    total_timeout: Duration,
) -> String {
    if let Some(reason) = chain(error).find_map(typed_reason) {
        return reason;
    }
    if error.is_timeout() {
        return if error.is_connect() {
            format!("connect timeout after {}", seconds(connect_timeout))
        } else {
            format!("timeout after {}", seconds(total_timeout))
        };
    }
    if let Some(reason) = chain(error).find_map(io_cause) {
        return reason.to_owned();
    }
    let root = root_text(error);
    if let Some(reason) = certificate_required_in_text(&root) {
        return reason;
    }
    if error.is_connect() {
        format!("connect failed: {root}")
    } else if error.is_body() || error.is_decode() {
        format!("response body: {root}")
    } else {
        format!("request failed: {root}")
    }
}

/// The plain-words reason for a failed request through the egress proxy: the same words as
/// [`request_error`] for the same failure (`blocked: …`, `dns: …`, `tls: …`, `connection
/// reset`, `connect timeout after 5s`), and `proxy: …` for the proxy's own failures, e.g.
/// `proxy: CONNECT refused with 403` or `proxy: connect refused`.
pub(super) fn proxied_error(error: &ProxiedError) -> String {
    let tunnel_or_typed = |cause: &(dyn Error + 'static)| match cause.downcast_ref::<TunnelError>()
    {
        Some(tunnel) => tunnel_reason(tunnel),
        None => typed_reason(cause),
    };
    if let Some(reason) = chain(error).find_map(tunnel_or_typed) {
        return reason;
    }
    if let Some(reason) = chain(error).find_map(io_cause) {
        return reason.to_owned();
    }
    let root = root_text(error);
    if let Some(reason) = certificate_required_in_text(&root) {
        return reason;
    }
    match error {
        ProxiedError::Request(request) if request.is_connect() => {
            format!("connect failed: {root}")
        }
        ProxiedError::Body(_) => format!("response body: {root}"),
        ProxiedError::Request(_) => format!("request failed: {root}"),
    }
}

/// The words for one typed cause that reads the same on either route: our resolver's refusal
/// and TLS failures.
fn typed_reason(cause: &(dyn Error + 'static)) -> Option<String> {
    if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
        return Some(resolve.to_string());
    }
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(format!("tls: {}", tls_reason(tls)));
    }
    // An alert read after the handshake (TLS 1.3 reports a refused client certificate
    // there) arrives as an I/O error wrapping rustls's, whose `source` skips it.
    cause
        .downcast_ref::<io::Error>()
        .and_then(tls_in_io)
        .map(|tls| format!("tls: {}", tls_reason(tls)))
}

/// The words for a tunnel's failure, or `None` where its cause speaks (a TLS handshake whose
/// rustls or I/O error reads as on the direct path).
fn tunnel_reason(error: &TunnelError) -> Option<String> {
    match error {
        TunnelError::Resolve(resolve) => Some(resolve.to_string()),
        TunnelError::Timeout(limit) => Some(format!("connect timeout after {}", seconds(*limit))),
        TunnelError::ProxyConnect(io) => Some(format!(
            "proxy: {}",
            io_reason(io).unwrap_or("cannot connect to the proxy")
        )),
        TunnelError::ProxyExchange(exchange) => Some(match chain(exchange).find_map(io_cause) {
            Some(reason) => format!("proxy: CONNECT failed: {reason}"),
            None => format!("proxy: CONNECT failed: {}", root_text(exchange)),
        }),
        TunnelError::Refused(_) | TunnelError::Target | TunnelError::ServerName(_) => {
            Some(error.to_string())
        }
        TunnelError::Tls(_) => None,
    }
}

/// The innermost cause's text.
fn root_text(error: &(dyn Error + 'static)) -> String {
    chain(error)
        .last()
        .map_or_else(|| error.to_string(), ToString::to_string)
}

/// A refused or missing client certificate when only its alert's name survived the layers
/// between rustls and the HTTP client.
fn certificate_required_in_text(root: &str) -> Option<String> {
    root.contains("CertificateRequired").then(|| {
        format!(
            "tls: {}",
            tls_reason(&rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
        )
    })
}

/// A duration the way error strings show it: `15s`, or `1500ms` when not whole seconds.
pub(super) fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Lossy UTF-8 of the excerpt. When the excerpt was cut at `limit`, a character split by the
/// cut is dropped rather than shown as a replacement character.
pub(super) fn excerpt_text(bytes: &[u8], limit: usize) -> String {
    let end = if bytes.len() >= limit {
        complete_prefix_len(bytes)
    } else {
        bytes.len()
    };
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The error and its causes, outermost first. `io::Error` hides the error it wraps from
/// `source()` (it answers with that error's source instead), so it is unwrapped explicitly.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(
        Some(error),
        |&current: &&'a (dyn Error + 'static)| match current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => current.source(),
        },
    )
}

fn io_cause(cause: &(dyn Error + 'static)) -> Option<&'static str> {
    cause.downcast_ref::<io::Error>().and_then(io_reason)
}

fn io_reason(error: &io::Error) -> Option<&'static str> {
    let reason = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe => "connection closed while sending",
        io::ErrorKind::UnexpectedEof => "connection closed early",
        io::ErrorKind::TimedOut => "connect timeout",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => return None,
    };
    Some(reason)
}

/// The rustls error an I/O error carries, however deeply wrapped in other I/O errors.
fn tls_in_io(error: &io::Error) -> Option<&rustls::Error> {
    let inner = error.get_ref()?;
    inner
        .downcast_ref::<rustls::Error>()
        .or_else(|| inner.downcast_ref::<io::Error>().and_then(tls_in_io))
}

fn tls_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => certificate_reason(certificate),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the receiver requires a client certificate, and the endpoint has none".to_owned()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied),
        ) => format!("the receiver refused the endpoint's client certificate (alert {alert:?})"),
        rustls::Error::AlertReceived(alert) => format!("receiver sent alert {alert:?}"),
        rustls::Error::PeerIncompatible(reason) => format!("receiver incompatible: {reason:?}"),
        rustls::Error::NoApplicationProtocol => "no common application protocol".to_owned(),
        other => other.to_string(),
    }
}

fn certificate_reason(error: &CertificateError) -> String {
    match error {
        CertificateError::NotValidForName => "certificate not valid for name".to_owned(),
        CertificateError::NotValidForNameContext { expected, .. } => {
            format!("certificate not valid for name {}", expected.to_str())
        }
        CertificateError::UnknownIssuer => "certificate issuer unknown".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not valid yet".to_owned()
        }
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => "certificate signature invalid".to_owned(),
        other => other.to_string(),
    }
}

/// The length of `bytes` without a trailing, incomplete UTF-8 sequence.
fn complete_prefix_len(bytes: &[u8]) -> usize {
    // A UTF-8 sequence is at most four bytes, so only the last three can start a cut one.
    for back in 1..=bytes.len().min(3) {
        let index = bytes.len() - back;
        let byte = bytes[index];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let expected = match byte {
            0xf0..=0xf7 => 4,
            0xe0..=0xef => 3,
            0xc0..=0xdf => 2,
            _ => 1,
        };
        return if expected > back { index } else { bytes.len() };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(seconds(Duration::from_secs(15)), "15s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn excerpt_drops_a_character_split_by_the_limit() {
        let mut bytes = vec![b'a'; 6];
        bytes.extend_from_slice("é".as_bytes());
        assert_eq!(excerpt_text(&bytes[..7], 7), "aaaaaa");
        assert_eq!(excerpt_text(&bytes, 8), "aaaaaaé");
        assert_eq!(excerpt_text(&[b'a', 0xff, b'b'], 1024), "a\u{fffd}b");
        assert_eq!(excerpt_text("€".as_bytes(), 3), "€");
        assert_eq!(excerpt_text(&"€".as_bytes()[..2], 2), "");
    }

    #[test]
    fn io_errors_wrapping_rustls_are_unwrapped() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let found = chain(&wrapped).find_map(|cause| cause.downcast_ref::<rustls::Error>());
        assert_eq!(
            found.map(tls_reason).as_deref(),
            Some("certificate issuer unknown")
        );
    }

    #[test]
    fn a_refused_or_missing_client_certificate_reads_as_such() {
        let nested = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        ));
        let found = tls_in_io(&nested).map(tls_reason);
        assert_eq!(
            found.as_deref(),
            Some("the receiver requires a client certificate, and the endpoint has none")
        );
        let refused = tls_reason(&rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(
            refused.contains("refused the endpoint's client certificate"),
            "{refused}"
        );
    }
}
