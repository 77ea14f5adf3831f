//! The egress proxy setting (`HERALD_EGRESS_PROXY`, docs/operations.md "Egress through a
//! proxy"): where the HTTP CONNECT proxy listens and the credentials it asks for.
//!
//! Only `http://[user:password@]host[:port]` is accepted: Herald speaks plain HTTP to the proxy
//! and asks it for a tunnel, inside which the endpoint's own TLS runs end to end. The
//! credentials become a `Proxy-Authorization: Basic` value at parse time and are never shown:
//! neither `Debug` nor any error names them, and no error repeats the setting's text.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use percent_encoding::percent_decode_str;
use url::{Host, Url};

/// A checked `HERALD_EGRESS_PROXY`. `Debug` shows the proxy's address and whether it has
/// credentials, never the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy {
    /// The proxy's host as the connection needs it: a name, or an IP address without brackets.
    host: String,
    /// The proxy's port; 80 when the URL names none, as for any `http://` URL.
    port: u16,
    /// `Basic <base64(user:password)>`, marked sensitive; `None` without credentials.
    authorization: Option<HeaderValue>,
}

/// Why a `HERALD_EGRESS_PROXY` value is refused. No message repeats the value, which may hold a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressProxyError {
    /// Not an absolute URL.
    #[error("must be an http://host:port URL")]
    NotAUrl,
    /// A scheme other than `http`: TLS to the proxy (`https://`) and SOCKS are not spoken.
    #[error(
        "must be an http://host:port URL: an HTTP CONNECT proxy (https:// and socks proxies are not supported)"
    )]
    Scheme,
    /// No host to connect to.
    #[error("must name the proxy's host: http://host:port")]
    MissingHost,
    /// A path, query or fragment, which a CONNECT proxy has no use for.
    #[error("must be http://host:port, without a path, query or fragment")]
    Extra,
}

impl EgressProxy {
    /// Checks `text` (`http://[user:password@]host[:port]`) and prepares what every CONNECT
    /// sends.
    pub fn parse(text: &str) -> Result<Self, EgressProxyError> {
        let url = Url::parse(text.trim()).map_err(|_| EgressProxyError::NotAUrl)?;
        if url.scheme() != "http" {
            return Err(EgressProxyError::Scheme);
        }
        let host = match url.host() {
            None => return Err(EgressProxyError::MissingHost),
            Some(Host::Domain(name)) => name.to_owned(),
            Some(Host::Ipv4(address)) => address.to_string(),
            Some(Host::Ipv6(address)) => address.to_string(),
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(EgressProxyError::Extra);
        }
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(basic_authorization(
                url.username(),
                url.password().unwrap_or(""),
            ))
        };
        Ok(Self {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            authorization,
        })
    }

    /// The proxy's host: a name, or an IP address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Proxy-Authorization` value every CONNECT carries, if the URL had credentials.
    pub(crate) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `Basic <base64(user:password)>` from the URL's percent-encoded user-info.
fn basic_authorization(user: &str, password: &str) -> HeaderValue {
    let mut pair = percent_decode_str(user).collect::<Vec<u8>>();
    pair.push(b':');
    pair.extend(percent_decode_str(password));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(&pair)))
        .expect("base64 text is a valid header value");
    // Marks the value for redaction wherever hyper or http would show it.
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(&str, u16, Option<&str>), EgressProxyError>) {
        let parsed = EgressProxy::parse(text).map(|proxy| {
            let authorization = proxy
                .authorization()
                .map(|value| value.to_str().expect("ascii").to_owned());
            (proxy.host().to_owned(), proxy.port(), authorization)
        });
        let expected = expected.map(|(host, port, authorization)| {
            (host.to_owned(), port, authorization.map(str::to_owned))
        });
        assert_eq!(parsed, expected, "{text}");
    }

    #[test]
    fn only_http_host_port_urls_are_proxies() {
        check(
            "http://proxy.internal:3128",
            Ok(("proxy.internal", 3128, None)),
        );
        check(" http://10.0.0.5:8080/ ", Ok(("10.0.0.5", 8080, None)));
        check("http://[fd00::5]:3128", Ok(("fd00::5", 3128, None)));
        check("http://proxy.internal", Ok(("proxy.internal", 80, None)));
        check("https://proxy.internal:3128", Err(EgressProxyError::Scheme));
        check(
            "socks5://proxy.internal:1080",
            Err(EgressProxyError::Scheme),
        );
        check("proxy.internal:3128", Err(EgressProxyError::Scheme));
        check("3128", Err(EgressProxyError::NotAUrl));
        check("", Err(EgressProxyError::NotAUrl));
        check("http://:3128", Err(EgressProxyError::NotAUrl));
        check(
            "http://proxy.internal:3128/path",
            Err(EgressProxyError::Extra),
        );
        check(
            "http://proxy.internal:3128/?a=1",
            Err(EgressProxyError::Extra),
        );
        check(
            "http://proxy.internal:3128/#x",
            Err(EgressProxyError::Extra),
        );
    }

    #[test]
    fn credentials_become_a_basic_authorization() {
        // "herald:p@ss:w0rd" in base64.
        check(
            "http://herald:p%40ss:w0rd@proxy.internal:3128",
            Ok((
                "proxy.internal",
                3128,
                Some("Basic aGVyYWxkOnBAc3M6dzByZA=="),
            )),
        );
        // "herald:" in base64: a user without a password.
        check(
            "http://herald@proxy.internal:3128",
            Ok(("proxy.internal", 3128, Some("Basic aGVyYWxkOg=="))),
        );
        check(
            "http://herald:a%0Ab@proxy.internal:3128",
            Ok(("proxy.internal", 3128, Some("Basic aGVyYWxkOmEKYg=="))),
        );
    }

    #[test]
    fn neither_debug_nor_errors_show_the_password() {
        let proxy = EgressProxy::parse("http://herald:hunter2@proxy.internal:3128").expect("valid");
        let shown = format!("{proxy:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            !shown.contains(&STANDARD.encode("herald:hunter2")),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(proxy.authorization().is_some_and(HeaderValue::is_sensitive));
        for bad in [
            "https://herald:hunter2@proxy.internal:3128",
            "http://herald:hunter2@proxy.internal:3128/path",
        ] {
            let error = EgressProxy::parse(bad).expect_err("refused").to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
