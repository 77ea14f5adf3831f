//! Endpoint URLs (docs/api.md#validation-rules): `validate_url` under the default policy and under
//! an operator's allow-list. Whatever it accepts is the text as given, starts `https://`,
//! parses as an `https` URL with a non-empty host and no user-info, holds at most 2048
//! characters and no whitespace or control characters, and names no IP literal (nor
//! `localhost`) that the policy blocks, judged by the independent oracle; and accepting is
//! stable: the accepted text is accepted again.

#![no_main]

use std::net::IpAddr;

use herald_domain::AddressPolicy;
use herald_domain::endpoint::{MAX_URL_CHARS, validate_url};
use herald_fuzz::non_public;
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let policy = if selector & 1 == 0 {
        AddressPolicy::default()
    } else {
        AddressPolicy::parse_allow_list("127.0.0.0/8,::1/128,10.1.0.0/16")
            .expect("a valid allow-list")
    };
    // Most interesting inputs start like a URL: spend half the runs past the scheme.
    if selector & 2 == 0 {
        check(text, &policy);
    } else {
        check(&format!("https://{text}"), &policy);
    }
});

fn check(text: &str, policy: &AddressPolicy) {
    let Ok(accepted) = validate_url(text, policy) else {
        return;
    };
    assert_eq!(accepted, text, "the URL is stored as written");
    assert!(text.chars().count() <= MAX_URL_CHARS);
    assert!(
        !text.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{text:?}"
    );
    assert!(
        text.get(..8)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("https://")),
        "{text:?}"
    );
    let url = Url::parse(text).expect("an accepted URL parses");
    assert_eq!(url.scheme(), "https", "{text:?}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{text:?}"
    );
    match url.host().expect("an accepted URL has a host") {
        Host::Domain(name) => {
            assert!(!name.is_empty(), "{text:?}");
            // A literal address must have been recognised as one, not passed on as a name.
            assert!(name.parse::<IpAddr>().is_err(), "{text:?}");
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if !policy.allows_loopback() {
                assert!(
                    name != "localhost" && !name.ends_with(".localhost"),
                    "{text:?}"
                );
            }
        }
        Host::Ipv4(v4) => check_address(IpAddr::V4(v4), policy, text),
        Host::Ipv6(v6) => check_address(IpAddr::V6(v6), policy, text),
    }
    assert_eq!(validate_url(&accepted, policy), Ok(accepted.clone()));
}

fn check_address(address: IpAddr, policy: &AddressPolicy, text: &str) {
    let allowed = policy.allowed_networks().iter().any(|network| {
        network.contains(&address)
            || matches!(address, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| network.contains(&IpAddr::V4(v4))))
    });
    assert!(
        allowed || !non_public(address),
        "accepted a non-public address: {text:?}"
    );
}
