//! The endpoint object (docs/api.md#the-endpoint-object) and the rules its fields obey
//! (docs/api.md#validation-rules).
//! Each rule is a plain function returning the human-readable message that ends up in the
//! error envelope's `details`, so the API can report every failing field at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::catalog::{EventCatalog, TEST_EVENT_TYPE};
use crate::client_certificate::{CertificateSummary, ClientCertificate};
use crate::custom_headers::CustomHeaders;
use crate::filter::Filter;
use crate::ids::{EndpointId, OrgId};
use crate::net::AddressPolicy;
use crate::time::Timestamp;

/// Most live endpoints one organization may hold *(decided)*.
pub const MAX_ENDPOINTS_PER_ORG: u32 = 50;
/// Longest accepted URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest accepted description, in Unicode scalar values.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Most event types one endpoint may subscribe to.
pub const MAX_EVENTS: usize = 50;

/// Field name → message, ordered so responses are deterministic.
pub type FieldErrors = BTreeMap<String, String>;

/// A webhook endpoint, as stored (its secret lives apart and is never part of this type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's id.
    pub id: EndpointId,
    /// The owning organization.
    pub org_id: OrgId,
    /// Where deliveries go; HTTPS only.
    pub url: String,
    /// Free text, at most 200 characters; never whitespace-only.
    pub description: Option<String>,
    /// The subscribed event types: 1 to 50 distinct entries, each a catalog type, a
    /// `prefix.*` wildcard or `*` ([`subscription_matches`]).
    pub events: Vec<String>,
    /// `false` stops delivery without deleting.
    pub active: bool,
    /// The envelope version, fixed at creation.
    pub api_version: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Moves on every update and rotation.
    pub updated_at: Timestamp,
    /// Soft-delete marker; deleted endpoints are invisible to the API.
    pub deleted_at: Option<Timestamp>,
    /// Why it is inactive, and since when its deliveries fail.
    pub health: EndpointHealth,
    /// The names of its custom headers (their values are sealed apart, like the secret).
    pub header_names: Vec<String>,
    /// What answers show of its client certificate, if it has one (the pair is sealed apart).
    pub client_certificate: Option<CertificateSummary>,
    /// Which of the subscribed events it takes; `None` takes them all.
    pub filter: Option<Filter>,
}

/// What an attempt presents to the receiver besides its signature: the endpoint's custom
/// headers and client certificate, opened. Kept apart from [`Endpoint`], like the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointCredentials {
    /// Sent after Herald's own headers.
    pub custom_headers: CustomHeaders,
    /// Presented when the receiver asks for a client certificate.
    pub client_certificate: Option<ClientCertificate>,
}

/// What an endpoint's deliveries have been doing lately, kept by Herald (read-only on the API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Why the endpoint is inactive; `None` while it is active.
    pub disabled_reason: Option<DisabledReason>,
    /// The first failure of the current streak of failures; cleared by a success.
    pub failing_since: Option<Timestamp>,
}

/// Why an endpoint is inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// Herald set it inactive after its deliveries failed for the auto-disable period.
    Failing,
    /// Herald set it inactive because its receiver answered `410 Gone`.
    Gone,
    /// The organization set it inactive (`PATCH active: false`).
    Manual,
}

impl DisabledReason {
    /// The wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Failing => "failing",
            DisabledReason::Gone => "gone",
            DisabledReason::Manual => "manual",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failing" => Some(DisabledReason::Failing),
            "gone" => Some(DisabledReason::Gone),
            "manual" => Some(DisabledReason::Manual),
            _ => None,
        }
    }
}

impl Endpoint {
    /// Whether the endpoint takes new deliveries of `event_type` (before its filter, if it
    /// has one, looks at the event).
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.active
            && self.deleted_at.is_none()
            && self
                .events
                .iter()
                .any(|subscribed| subscription_matches(subscribed, event_type))
    }
}

/// The subscription entry that takes every type but `webhook.test`.
pub const ALL_EVENTS: &str = "*";

/// Whether the subscription entry `subscribed` takes `event_type`: a type takes itself,
/// `prefix.*` every type whose name starts with `prefix.`, `*` every type; none takes
/// `webhook.test`. Resolved when an event is fanned out, so a type added to the catalog later
/// reaches the wildcards that cover it.
pub fn subscription_matches(subscribed: &str, event_type: &str) -> bool {
    if event_type == TEST_EVENT_TYPE {
        return false;
    }
    match subscribed.strip_suffix('*') {
        None => subscribed == event_type,
        Some(prefix) => event_type.starts_with(prefix),
    }
}

/// Whether `entry` is a wildcard, and if so whether it is well formed (`*`, or a prefix of
/// non-empty dot-separated segments followed by `.*`).
fn check_wildcard(entry: &str) -> Option<Result<(), String>> {
    if !entry.contains('*') {
        return None;
    }
    let well_formed = entry == ALL_EVENTS
        || entry
            .strip_suffix(".*")
            .is_some_and(|prefix| !prefix.contains('*') && !prefix.split('.').any(str::is_empty));
    Some(if well_formed {
        Ok(())
    } else {
        Err(format!(
            "invalid wildcard: {entry} (only a final .* after a prefix, or * alone)"
        ))
    })
}

/// Checks an endpoint URL: absolute `https`, at most 2048 characters, a host, no user-info,
/// and no non-public target (IP literal or `localhost`) unless the policy allows it.
/// Returns the URL as the user wrote it.
pub fn validate_url(text: &str, policy: &AddressPolicy) -> Result<String, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    // The stored text is what the API shows back, so it must be exactly what gets dialled:
    // no whitespace or control characters for the parser to strip, and the full `https://`
    // form rather than a spelling the parser would repair.
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let url = Url::parse(text).map_err(|_| "must be an absolute URL".to_owned())?;
    if url.scheme() == "https"
        && !text
            .get(..8)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("https://"))
    {
        return Err("must start with https://".to_owned());
    }
    if text.get(8..).is_some_and(|rest| rest.starts_with('/')) {
        return Err("must have a host".to_owned());
    }
    if url.scheme() != "https" {
        return Err("must use https".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user-info".to_owned());
    }
    // The `url` crate already turned `2130706433` or `0x7f.1` into an IPv4 host, so the
    // parsed host, not the text, is what gets judged.
    match url.host() {
        None => Err("must have a host".to_owned()),
        Some(Host::Domain("")) => Err("must have a host".to_owned()),
        Some(Host::Domain(name)) => check_name(name, policy).map(|()| text.to_owned()),
        Some(Host::Ipv4(v4)) => check_ip(IpAddr::V4(v4), policy).map(|()| text.to_owned()),
        Some(Host::Ipv6(v6)) => check_ip(IpAddr::V6(v6), policy).map(|()| text.to_owned()),
    }
}

fn check_name(name: &str, policy: &AddressPolicy) -> Result<(), String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let is_loopback_name = name == "localhost" || name.ends_with(".localhost");
    if is_loopback_name && !policy.allows_loopback() {
        return Err(format!("must not target a non-public host ({name})"));
    }
    // Other names are resolved and checked at every attempt; their addresses can change.
    Ok(())
}

fn check_ip(address: IpAddr, policy: &AddressPolicy) -> Result<(), String> {
    policy
        .check(address)
        .map_err(|blocked| format!("must not target a non-public address ({})", blocked.address))
}

/// Checks a subscription list: 1 to 50 distinct entries, each a catalog type or a wildcard
/// (`prefix.*`, `*`) that covers at least one catalog type today (so a typo such as
/// `walet.*` is refused like `walet.balance_low`), never `webhook.test`.
pub fn validate_events(events: &[String], catalog: &EventCatalog) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err("must contain at least 1 event type".to_owned());
    }
    if events.len() > MAX_EVENTS {
        return Err(format!(
            "must contain at most {MAX_EVENTS} event types, got {}",
            events.len()
        ));
    }
    for (index, event_type) in events.iter().enumerate() {
        if event_type == TEST_EVENT_TYPE {
            return Err(format!("{TEST_EVENT_TYPE} is not subscribable"));
        }
        match check_wildcard(event_type) {
            Some(Err(message)) => return Err(message),
            Some(Ok(())) => {
                let covers_one = catalog
                    .types()
                    .iter()
                    .any(|known| subscription_matches(event_type, &known.name));
                if !covers_one {
                    return Err(format!("wildcard matches no event type: {event_type}"));
                }
            }
            None if !catalog.contains(event_type) => {
                return Err(format!("unknown event type: {event_type}"));
            }
            None => {}
        }
        if events[..index].contains(event_type) {
            return Err(format!("duplicate event type: {event_type}"));
        }
    }
    Ok(events.to_vec())
}

/// Checks a description: at most 200 characters; whitespace-only becomes `None`.
pub fn normalize_description(text: &str) -> Result<Option<String>, String> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if text.trim().is_empty() {
        Ok(None)
    } else {
        Ok(Some(text.to_owned()))
    }
}

/// The loopback addresses that the name `localhost` stands for.
pub const LOCALHOST_ADDRESSES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check_url(text: &str, expected: Result<(), &str>) {
        let result = validate_url(text, &AddressPolicy::default()).map(|_| ());
        assert_eq!(result, expected.map_err(str::to_owned), "{text}");
    }

    #[test]
    fn url_rules() {
        check_url("https://example.com/hooks", Ok(()));
        check_url("http://example.com/hooks", Err("must use https"));
        check_url("ftp://example.com/", Err("must use https"));
        check_url(
            " https://example.com/",
            Err("must not contain whitespace or control characters"),
        );
        check_url(
            "https://exa\tmple.com/",
            Err("must not contain whitespace or control characters"),
        );
        check_url("https:example.com", Err("must start with https://"));
        check_url("https:///example.com", Err("must have a host"));
        check_url("https://", Err("must be an absolute URL"));
        check_url("/relative", Err("must be an absolute URL"));
        check_url(
            "https://user:pass@example.com/",
            Err("must not contain user-info"),
        );
        check_url(
            "https://127.0.0.1/",
            Err("must not target a non-public address (127.0.0.1)"),
        );
        check_url(
            "https://2130706433/",
            Err("must not target a non-public address (127.0.0.1)"),
        );
        check_url(
            "https://0x7f000001/",
            Err("must not target a non-public address (127.0.0.1)"),
        );
        check_url(
            "https://[::1]/",
            Err("must not target a non-public address (::1)"),
        );
        check_url(
            "https://localhost/",
            Err("must not target a non-public host (localhost)"),
        );
        check_url(
            "https://LOCALHOST./",
            Err("must not target a non-public host (localhost)"),
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS - 20));
        assert_eq!(long.len(), MAX_URL_CHARS);
        check_url(&long, Ok(()));
        check_url(&format!("{long}a"), Err("must be at most 2048 characters"));
    }

    #[test]
    fn allow_list_admits_loopback_targets() {
        let policy = AddressPolicy::parse_allow_list("127.0.0.0/8").expect("valid");
        assert!(validate_url("https://127.0.0.1:8443/", &policy).is_ok());
        assert!(validate_url("https://localhost:8443/", &policy).is_ok());
        assert!(validate_url("https://10.0.0.1/", &policy).is_err());
    }

    #[test]
    fn event_rules() {
        let catalog = EventCatalog::default();
        let events = |names: &[&str]| {
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        assert!(validate_events(&events(&["wallet.balance_low"]), &catalog).is_ok());
        assert_eq!(
            validate_events(&[], &catalog),
            Err("must contain at least 1 event type".into())
        );
        assert_eq!(
            validate_events(&events(&["wallet.balanse_low"]), &catalog),
            Err("unknown event type: wallet.balanse_low".into())
        );
        assert_eq!(
            validate_events(
                &events(&["wallet.balance_low", "wallet.balance_low"]),
                &catalog
            ),
            Err("duplicate event type: wallet.balance_low".into())
        );
        assert_eq!(
            validate_events(&events(&["webhook.test"]), &catalog),
            Err("webhook.test is not subscribable".into())
        );
        let many = vec!["wallet.balance_low".to_owned(); 51];
        assert_eq!(
            validate_events(&many, &catalog),
            Err("must contain at most 50 event types, got 51".into())
        );
    }

    #[test]
    fn wildcard_rules() {
        let catalog = EventCatalog::default();
        let check = |entry: &str, expected: Result<(), &str>| {
            let verdict = validate_events(&[entry.to_owned()], &catalog).map(|_| ());
            assert_eq!(verdict, expected.map_err(str::to_owned), "{entry}");
        };
        check("*", Ok(()));
        check("wallet.*", Ok(()));
        check("phone_number.*", Ok(()));
        check("phone_number.campaign.*", Ok(()));
        check("endpoint.*", Ok(()));
        check("walet.*", Err("wildcard matches no event type: walet.*"));
        check(
            "webhook.*",
            Err("wildcard matches no event type: webhook.*"),
        );
        for malformed in [
            "wallet*",
            "*.*",
            "wallet.*.*",
            "wal*et.x",
            ".*",
            "a..*",
            "**",
        ] {
            check(
                malformed,
                Err(&format!(
                    "invalid wildcard: {malformed} (only a final .* after a prefix, or * alone)"
                )),
            );
        }
        assert_eq!(
            validate_events(&["*".to_owned(), "*".to_owned()], &catalog),
            Err("duplicate event type: *".into())
        );
    }

    #[test]
    fn wildcards_match_by_prefix_and_never_the_test_type() {
        assert!(subscription_matches("*", "wallet.balance_low"));
        assert!(subscription_matches("*", "anything.new"));
        assert!(!subscription_matches("*", TEST_EVENT_TYPE));
        assert!(!subscription_matches("webhook.*", TEST_EVENT_TYPE));
        assert!(subscription_matches("wallet.*", "wallet.balance_low"));
        assert!(subscription_matches("wallet.*", "wallet.deep.type"));
        assert!(!subscription_matches("wallet.*", "wallets.balance_low"));
        assert!(!subscription_matches("wallet.*", "wallet"));
        assert!(subscription_matches(
            "wallet.balance_low",
            "wallet.balance_low"
        ));
        assert!(!subscription_matches(
            "wallet.balance_low",
            "wallet.balance_zero"
        ));
    }

    #[test]
    fn description_rules() {
        assert_eq!(normalize_description("   "), Ok(None));
        assert_eq!(
            normalize_description(&"é".repeat(200)),
            Ok(Some("é".repeat(200)))
        );
        assert!(normalize_description(&"é".repeat(201)).is_err());
    }
}
