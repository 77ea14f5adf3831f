//! Shared by the fuzz targets: an independent statement of which addresses are not public
//! (written from the IANA special-purpose registries as a table of networks, not from
//! `herald_domain::net`), and a way to run one of the API's extractors without a runtime.
//!
//! # Layout
//!
//! - [`non_public`]: the oracle the address checks are held to.
//! - [`ready`]: polls a future that never waits (an extractor over an in-memory request).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ipnet::{Ipv4Net, Ipv6Net};

/// IPv4 networks that are not public: this host, private, shared (CGNAT), loopback,
/// link-local (cloud metadata), IETF protocol assignments, documentation, benchmarking,
/// multicast, reserved and broadcast.
const NON_PUBLIC_V4: [&str; 14] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 networks that are not public whatever they carry: unspecified, loopback,
/// unique-local, link-local, site-local, multicast, documentation and discard-only.
const NON_PUBLIC_V6: [&str; 8] = [
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "2001:db8::/32",
    "100::/64",
];

/// Whether `address` is not public: in one of the tables above, or an IPv6 address that
/// carries a non-public IPv4 address by a transition mechanism (IPv4-mapped, IPv4-compatible,
/// NAT64 well-known and local-use, 6to4, Teredo's client).
pub fn non_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

/// [`non_public`] for IPv4.
pub fn non_public_v4(address: Ipv4Addr) -> bool {
    NON_PUBLIC_V4.iter().any(|network| {
        network
            .parse::<Ipv4Net>()
            .expect("the table holds networks")
            .contains(&address)
    })
}

fn non_public_v6(address: Ipv6Addr) -> bool {
    let in_table = NON_PUBLIC_V6.iter().any(|network| {
        network
            .parse::<Ipv6Net>()
            .expect("the table holds networks")
            .contains(&address)
    });
    in_table || embedded_v4(address).is_some_and(non_public_v4)
}

/// The IPv4 address a transition prefix places in `address`, by bit position.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    let within = |network: &str| {
        network
            .parse::<Ipv6Net>()
            .expect("a transition prefix")
            .contains(&address)
    };
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if within("::ffff:0:0/96")
        || within("::/96")
        || within("64:ff9b::/96")
        || within("64:ff9b:1::/48")
    {
        Some(low32)
    } else if within("2002::/16") {
        Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32))
    } else if within("2001::/32") {
        Some(Ipv4Addr::from(!((bits & 0xffff_ffff) as u32)))
    } else {
        None
    }
}

/// Runs `future` to completion on this thread. Only for futures that never wait on anything
/// outside themselves (an extractor over an in-memory request): a `Pending` is a bug.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!("an in-memory extractor kept waiting")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: bool) {
        let address: IpAddr = text.parse().expect("test address");
        assert_eq!(non_public(address), expected, "{text}");
    }

    #[test]
    fn oracle_knows_the_usual_suspects() {
        check("127.0.0.1", true);
        check("169.254.169.254", true);
        check("::ffff:10.0.0.1", true);
        check("64:ff9b::7f00:1", true);
        check("2002:c0a8:0101::", true);
        check("2001:0:4136:e378:8000:63bf:80ff:fffe", true);
        check("8.8.8.8", false);
        check("2606:4700::1111", false);
        check("64:ff9b::808:808", false);
    }
}
