//! Which IP addresses Herald may dial (docs/api.md#address-policy), shared by the endpoint
//! validation at create time and the delivery client's check at attempt time.
//!
//! Only public unicast addresses pass, unless the operator listed a network in the
//! allow-list. Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
//! 6to4, Teredo) are judged by the address they embed as well as by their own range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 ranges and IPv6 unique-local `fc00::/7`.
    Private,
    /// `169.254.0.0/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Documentation, benchmarking, broadcast and other reserved ranges.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedAddressSpace => "shared (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// An address the policy refused, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("blocked: {class} address {address}")]
pub struct BlockedAddress {
    /// The address that was refused.
    pub address: IpAddr,
    /// Why it is not public.
    pub class: AddressClass,
}

/// The operator's address policy: public addresses plus the allow-listed networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed_networks: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy that admits public addresses and anything inside `allowed_networks`.
    pub fn new(allowed_networks: Vec<IpNet>) -> Self {
        Self { allowed_networks }
    }

    /// Parses `HERALD_ALLOW_NETWORKS`: comma-separated CIDRs (a bare address is a /32 or /128).
    pub fn parse_allow_list(text: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let network = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("not a CIDR network: {item}"))?;
            networks.push(network);
        }
        Ok(Self::new(networks))
    }

    /// The allow-listed networks.
    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allowed_networks
    }

    /// Admits `address` if it is public or allow-listed.
    pub fn check(&self, address: IpAddr) -> Result<(), BlockedAddress> {
        let address = canonical(address);
        if self
            .allowed_networks
            .iter()
            .any(|network| network.contains(&address))
        {
            return Ok(());
        }
        match classify(address) {
            None => Ok(()),
            Some(class) => Err(BlockedAddress { address, class }),
        }
    }

    /// Whether a loopback target (the name `localhost`) is allow-listed.
    pub fn allows_loopback(&self) -> bool {
        self.check(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok()
            || self.check(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_ok()
    }
}

/// Folds IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to plain IPv4, so that allow-lists
/// and error messages see the address that is really dialled.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The class of a non-public address, or `None` for a public one.
pub fn classify(address: IpAddr) -> Option<AddressClass> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(address: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = address.octets();
    let class = match (a, b, c) {
        (0, _, _) if address.is_unspecified() => AddressClass::Unspecified,
        (0, _, _) => AddressClass::Reserved,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (192, 168, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, 64..=127, _) => AddressClass::SharedAddressSpace,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        // IETF protocol assignments, TEST-NETs and the benchmarking range.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Reserved,
        (198, 18..=19, _) => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(address: Ipv6Addr) -> Option<AddressClass> {
    if let Some(embedded) = embedded_ipv4(address) {
        // A translation prefix is only as dangerous as the address it carries.
        return classify_v4(embedded);
    }
    let segments = address.segments();
    let class = if address.is_unspecified() {
        AddressClass::Unspecified
    } else if address.is_loopback() {
        AddressClass::Loopback
    } else if segments[0] & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
        AddressClass::LinkLocal
    } else if segments[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0])
        || segments[0..6] == [0, 0, 0, 0, 0, 0]
    {
        // Documentation, discard-only, and deprecated IPv4-compatible addresses.
        AddressClass::Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address embedded in an IPv6 address by a transition mechanism, if any.
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let low32 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match segments {
        // IPv4-mapped ::ffff:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low32(hi, lo)),
        // IPv4-compatible ::a.b.c.d (but not :: and ::1, which are IPv6's own).
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => {
            Some(low32(hi, lo))
        }
        // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low32(hi, lo)),
        [0x64, 0xff9b, 1, _, _, _, hi, lo] => Some(low32(hi, lo)),
        // 6to4 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => Some(low32(hi, lo)),
        // Teredo 2001:0::/32: the client address is the last 32 bits, inverted.
        [0x2001, 0, _, _, _, _, hi, lo] => {
            Some(Ipv4Addr::from(!((u32::from(hi) << 16) | u32::from(lo))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, expected: Option<AddressClass>) {
        let address: IpAddr = text.parse().expect("test address parses");
        assert_eq!(classify(canonical(address)), expected, "{text}");
    }

    #[test]
    fn classifies_the_dangerous_ranges() {
        check("127.0.0.1", Some(AddressClass::Loopback));
        check("0.0.0.0", Some(AddressClass::Unspecified));
        check("10.0.0.1", Some(AddressClass::Private));
        check("172.16.0.1", Some(AddressClass::Private));
        check("172.31.255.255", Some(AddressClass::Private));
        check("192.168.1.1", Some(AddressClass::Private));
        check("100.64.0.1", Some(AddressClass::SharedAddressSpace));
        check("169.254.169.254", Some(AddressClass::LinkLocal));
        check("224.0.0.1", Some(AddressClass::Multicast));
        check("255.255.255.255", Some(AddressClass::Reserved));
        check("::1", Some(AddressClass::Loopback));
        check("::", Some(AddressClass::Unspecified));
        check("::ffff:127.0.0.1", Some(AddressClass::Loopback));
        check("::ffff:7f00:1", Some(AddressClass::Loopback));
        check("::127.0.0.1", Some(AddressClass::Loopback));
        check("fc00::1", Some(AddressClass::Private));
        check("fd00:ec2::254", Some(AddressClass::Private));
        check("fe80::1", Some(AddressClass::LinkLocal));
        check("ff02::1", Some(AddressClass::Multicast));
        check("64:ff9b::7f00:1", Some(AddressClass::Loopback));
        check("64:ff9b::a9fe:a9fe", Some(AddressClass::LinkLocal));
        check("2002:7f00:1::", Some(AddressClass::Loopback));
        check(
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            Some(AddressClass::Loopback),
        );
    }

    #[test]
    fn public_addresses_pass() {
        check("93.184.216.34", None);
        check("8.8.8.8", None);
        check("172.32.0.1", None);
        check("2606:4700::1111", None);
        check("64:ff9b::808:808", None);
    }

    #[test]
    fn allow_list_admits_listed_networks_only() {
        let policy = AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid list");
        assert!(policy.check("127.0.0.1".parse().expect("ip")).is_ok());
        assert!(
            policy
                .check("::ffff:127.0.0.1".parse().expect("ip"))
                .is_ok()
        );
        assert!(policy.check("::1".parse().expect("ip")).is_ok());
        assert!(policy.check("10.0.0.1".parse().expect("ip")).is_err());
        assert!(policy.allows_loopback());
        assert!(!AddressPolicy::default().allows_loopback());
        assert!(AddressPolicy::parse_allow_list("not-a-network").is_err());
    }

    #[test]
    fn blocked_message_names_class_and_address() {
        let error = AddressPolicy::default()
            .check("10.0.0.7".parse().expect("ip"))
            .expect_err("private");
        assert_eq!(error.to_string(), "blocked: private address 10.0.0.7");
    }

    proptest! {
        #[test]
        fn never_admits_loopback_private_or_link_local(host in any::<u32>(), bits in any::<u128>()) {
            let policy = AddressPolicy::default();
            for base in [0x7f00_0000u32, 0x0a00_0000, 0xa9fe_0000] {
                let v4 = Ipv4Addr::from(base | (host & 0x0000_ffff));
                prop_assert!(policy.check(IpAddr::V4(v4)).is_err());
                prop_assert!(policy.check(IpAddr::V6(v4.to_ipv6_mapped())).is_err());
            }
            let unique_local = Ipv6Addr::from((0xfc00u128 << 112) | (bits >> 9));
            prop_assert!(policy.check(IpAddr::V6(unique_local)).is_err());
            let link_local = Ipv6Addr::from((0xfe80u128 << 112) | (bits >> 10));
            prop_assert!(policy.check(IpAddr::V6(link_local)).is_err());
        }
    }
}
