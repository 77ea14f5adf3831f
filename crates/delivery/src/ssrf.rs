//! The SSRF guard at attempt time (docs/api.md#address-policy): only addresses the
//! [`AddressPolicy`] admits are ever dialled.
//!
//! Two doors lead to a socket and both are guarded here. Host names go through
//! [`PolicyResolver`], the client's only DNS resolver, which checks every resolved address and
//! hands the connector exactly the addresses it checked, so nothing is re-resolved between check
//! and connect. IP-literal hosts skip any resolver inside hyper, so [`check_url_target`] judges
//! them from the parsed URL (the `url` crate has already folded spellings such as `2130706433`,
//! `0x7f.1` and `0177.0.0.1` to `127.0.0.1`). Every failure closes the door; none is retried.
//!
//! Through the egress proxy the same two doors are guarded the same way: the URL is judged by
//! [`check_url_target`] before the request, and the tunnel connector asks [`checked_addresses`]
//! (the same [`resolve_checked`] that [`PolicyResolver`] runs) for the addresses it may ask the
//! proxy to CONNECT to, so the proxy is only ever given an address that was checked, never a
//! name to resolve.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use herald_domain::AddressPolicy;
use herald_domain::net::BlockedAddress;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a host name could not be turned into addresses that may be dialled.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed (the name does not exist, or the resolver is unreachable).
    #[error("dns: {name} did not resolve")]
    Lookup {
        /// The name as looked up.
        name: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The lookup succeeded with no addresses.
    #[error("dns: {name} did not resolve")]
    NoAddresses {
        /// The name as looked up.
        name: String,
    },
    /// At least one resolved address is not admitted; the whole name is refused.
    #[error(transparent)]
    Blocked(#[from] BlockedAddress),
}

/// Why a URL's target is refused before any resolution or connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockedTarget {
    /// The host is an IP literal the policy does not admit.
    #[error(transparent)]
    Address(#[from] BlockedAddress),
    /// Only `http` and `https` are ever dialled.
    #[error("blocked: scheme {0} is not allowed")]
    Scheme(String),
    /// The URL has no host to dial.
    #[error("blocked: url has no host")]
    MissingHost,
}

/// A [`Resolve`] that looks names up with the system resolver and fails closed unless every
/// resulting address passes the policy.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addresses = resolve_checked(name.as_str(), &policy).await?;
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// Looks `name` up and returns its addresses (port 0) only if all of them pass `policy`.
///
/// A name with one trailing dot is the same fully qualified name without it, and is looked up
/// that way; some system resolvers do not find `localhost.` in the hosts file otherwise.
pub async fn resolve_checked(
    name: &str,
    policy: &AddressPolicy,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let lookup_name = name.strip_suffix('.').unwrap_or(name);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((lookup_name, 0))
        .await
        .map_err(|source| ResolveError::Lookup {
            name: name.to_owned(),
            source,
        })?
        .collect();
    if addresses.is_empty() {
        return Err(ResolveError::NoAddresses {
            name: name.to_owned(),
        });
    }
    // One bad address refuses the name: a resolver that mixes a public and a private answer
    // is exactly what a rebinding attack looks like.
    for address in &addresses {
        policy.check(address.ip())?;
    }
    Ok(addresses)
}

/// The addresses a connector holding only a URI's host may dial (the egress proxy's tunnel): an
/// IP-literal host (`[::1]` bracketed or not) is checked by the policy without resolution, a
/// name is resolved and checked by [`resolve_checked`].
pub async fn checked_addresses(
    host: &str,
    policy: &AddressPolicy,
) -> Result<Vec<IpAddr>, ResolveError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = bare.parse::<IpAddr>() {
        policy.check(address)?;
        return Ok(vec![address]);
    }
    let addresses = resolve_checked(bare, policy).await?;
    Ok(addresses.iter().map(SocketAddr::ip).collect())
}

/// Refuses a URL whose scheme is not HTTP(S) or whose IP-literal host the policy does not admit.
/// Host names pass here; [`PolicyResolver`] judges what they resolve to.
pub fn check_url_target(url: &Url, policy: &AddressPolicy) -> Result<(), BlockedTarget> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BlockedTarget::Scheme(url.scheme().to_owned()));
    }
    let address = match url.host() {
        None => return Err(BlockedTarget::MissingHost),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        // For special schemes `url` never leaves an IPv4 spelling as a domain, but should a
        // future parser do so, hyper would dial it without asking the resolver: judge it too.
        Some(Host::Domain(domain)) => match domain.trim_end_matches('.').parse::<IpAddr>() {
            Ok(address) => address,
            Err(_) => return Ok(()),
        },
    };
    policy.check(address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Result<(), &str>) {
        let parsed = Url::parse(url).expect("test url parses");
        let outcome = check_url_target(&parsed, &AddressPolicy::default());
        assert_eq!(
            outcome.map_err(|blocked| blocked.to_string()),
            expected.map_err(str::to_owned),
            "{url}"
        );
    }

    #[test]
    fn ip_literals_are_judged_after_normalization() {
        check(
            "https://127.0.0.1/",
            Err("blocked: loopback address 127.0.0.1"),
        );
        check("https://127.1/", Err("blocked: loopback address 127.0.0.1"));
        check(
            "https://0x7f.1/",
            Err("blocked: loopback address 127.0.0.1"),
        );
        check(
            "https://0177.0.0.1/",
            Err("blocked: loopback address 127.0.0.1"),
        );
        check(
            "https://127.0.0.1./",
            Err("blocked: loopback address 127.0.0.1"),
        );
        check(
            "https://[::ffff:127.0.0.1]/",
            Err("blocked: loopback address 127.0.0.1"),
        );
        check(
            "https://[fd00:ec2::254]/",
            Err("blocked: private address fd00:ec2::254"),
        );
        check("https://93.184.216.34/", Ok(()));
        check("https://example.com/", Ok(()));
        check(
            "ftp://example.com/",
            Err("blocked: scheme ftp is not allowed"),
        );
        check(
            "file:///etc/passwd",
            Err("blocked: scheme file is not allowed"),
        );
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_reach_loopback() {
        for name in ["localhost", "localhost.", "LOCALHOST"] {
            let error = resolve_checked(name, &AddressPolicy::default())
                .await
                .expect_err("loopback is blocked");
            assert!(
                error.to_string().starts_with("blocked: loopback address "),
                "{name}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn resolver_admits_allow_listed_loopback() {
        let policy = AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid list");
        let addresses = resolve_checked("localhost.", &policy)
            .await
            .expect("allow-listed");
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }

    #[tokio::test]
    async fn checked_addresses_judge_literals_and_names_alike() {
        let policy = AddressPolicy::default();
        for host in ["127.0.0.1", "[::1]", "localhost"] {
            let error = checked_addresses(host, &policy)
                .await
                .expect_err("loopback is blocked");
            assert!(
                error.to_string().starts_with("blocked: loopback address "),
                "{host}: {error}"
            );
        }
        let allowed = AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid list");
        assert_eq!(
            checked_addresses("[::1]", &allowed).await.expect("allowed"),
            [IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]
        );
        let named = checked_addresses("localhost", &allowed)
            .await
            .expect("allowed");
        assert!(named.iter().all(IpAddr::is_loopback), "{named:?}");
    }

    #[tokio::test]
    async fn resolver_fails_closed_on_unknown_names() {
        let error = resolve_checked("no-such-host.invalid", &AddressPolicy::default())
            .await
            .expect_err("does not resolve");
        assert_eq!(
            error.to_string(),
            "dns: no-such-host.invalid did not resolve"
        );
    }
}
