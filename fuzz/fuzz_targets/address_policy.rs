//! The address policy (docs/api.md#address-policy) over arbitrary IPv4 and IPv6 addresses. The
//! default policy never admits an address that the independent oracle calls non-public
//! (loopback, private, link-local, unique-local, CGNAT, multicast, unspecified, reserved,
//! documentation, and the same carried inside IPv4-mapped, IPv4-compatible, NAT64, 6to4 and
//! Teredo addresses), and for IPv4 it blocks exactly those. A refusal names the address that
//! would really be dialled. An allow-list admits exactly its networks on top of the default,
//! and `parse_allow_list` either refuses text or yields networks that survive a round trip.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use herald_domain::AddressPolicy;
use herald_fuzz::{non_public, non_public_v4};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input {
    /// One address under the default policy.
    Address(Address),
    /// One address under a policy that allows one network.
    AllowListed {
        address: Address,
        network: Address,
        prefix: u8,
    },
    /// The text of `HERALD_ALLOW_NETWORKS`.
    AllowListText(String),
}

#[derive(Debug, Arbitrary)]
enum Address {
    V4([u8; 4]),
    V6([u8; 16]),
    /// IPv6 forms that carry an IPv4 address, so the fuzzer reaches them often.
    Carrying {
        form: u8,
        v4: [u8; 4],
        filler: [u8; 8],
    },
}

impl Address {
    fn ip(&self) -> IpAddr {
        match *self {
            Address::V4(octets) => IpAddr::V4(Ipv4Addr::from(octets)),
            Address::V6(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
            Address::Carrying { form, v4, filler } => {
                let v4 = u128::from(u32::from_be_bytes(v4));
                let filler = u128::from(u64::from_be_bytes(filler));
                let bits = match form % 6 {
                    0 => (0xffff << 32) | v4,
                    1 => v4,
                    2 => (0x0064_ff9b << 96) | v4,
                    3 => (0x0064_ff9b_0001 << 80) | ((filler & 0xffff_ffff_ffff) << 32) | v4,
                    4 => (0x2002 << 112) | (v4 << 80) | filler,
                    _ => (0x2001_0000 << 96) | ((filler & 0xffff_ffff) << 64) | (!v4 & 0xffff_ffff),
                };
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Address(address) => check_default(address.ip()),
    Input::AllowListed {
        address,
        network,
        prefix,
    } => check_allow_listed(address.ip(), network.ip(), prefix),
    Input::AllowListText(text) => check_allow_list_text(&text),
});

fn check_default(address: IpAddr) {
    let policy = AddressPolicy::default();
    match policy.check(address) {
        Ok(()) => assert!(!non_public(address), "admitted {address}"),
        Err(blocked) => assert_eq!(blocked.address, dialled(address), "{address}"),
    }
    if let IpAddr::V4(v4) = address {
        assert_eq!(
            policy.check(address).is_err(),
            non_public_v4(v4),
            "{address}"
        );
    }
}

fn check_allow_listed(address: IpAddr, network: IpAddr, prefix: u8) {
    let max = if network.is_ipv4() { 32 } else { 128 };
    let network = IpNet::new(network, prefix % (max + 1))
        .expect("prefix in range")
        .trunc();
    let policy = AddressPolicy::new(vec![network]);
    let listed = network.contains(&dialled(address));
    let by_default = AddressPolicy::default().check(address).is_ok();
    assert_eq!(
        policy.check(address).is_ok(),
        listed || by_default,
        "{address} under {network}"
    );
}

fn check_allow_list_text(text: &str) {
    let Ok(policy) = AddressPolicy::parse_allow_list(text) else {
        return;
    };
    let rendered: Vec<String> = policy
        .allowed_networks()
        .iter()
        .map(ToString::to_string)
        .collect();
    let again =
        AddressPolicy::parse_allow_list(&rendered.join(",")).expect("rendered networks parse");
    assert_eq!(again, policy);
}

/// The address a connection really goes to: IPv4-mapped IPv6 is IPv4 on the wire.
fn dialled(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}
