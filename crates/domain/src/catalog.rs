//! The event-type catalog and the supported API versions. Both come from configuration; the
//! defaults are the 17 types and version `2026-04-01` of docs/api.md#event-types-and-api-versions.

use crate::operational::OPERATIONAL_EVENT_TYPES;

/// The synthetic type that only the test operation sends; never subscribable.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// The default catalog.
pub const DEFAULT_EVENT_TYPES: [&str; 17] = [
    "brand.vetted",
    "brand.vetting_failed",
    "campaign.approved",
    "campaign.rejected",
    "campaign.shared",
    "wallet.balance_low",
    "wallet.balance_zero",
    "subscription.past_due",
    "subscription.canceled",
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "phone_number.bulk_order.completed",
    "phone_number.campaign.assigned",
    "consent_pending.confirmed",
    "consent_pending.expired",
    "lookup.completed",
];

/// What each type of the default catalog and each operational type means, for
/// `GET /v1/event-types` and the portal's catalog. A type configured by name only
/// (`HERALD_EVENT_TYPES`) that is not here has no description.
pub fn describe(event_type: &str) -> Option<&'static str> {
    let description = match event_type {
        "brand.vetted" => "A brand passed vetting and may run campaigns.",
        "brand.vetting_failed" => "A brand failed vetting; the data says why.",
        "campaign.approved" => "A campaign was approved and may send.",
        "campaign.rejected" => "A campaign was rejected; the data says why.",
        "campaign.shared" => "A campaign was shared with a partner.",
        "wallet.balance_low" => "The wallet balance fell below its low-balance threshold.",
        "wallet.balance_zero" => "The wallet balance reached zero; sending stops until a top-up.",
        "subscription.past_due" => "A subscription payment failed and is past due.",
        "subscription.canceled" => "A subscription was canceled.",
        "api_key.created" => "An API key of the organization was created.",
        "api_key.rotated" => "An API key of the organization was rotated.",
        "api_key.revoked" => "An API key of the organization was revoked.",
        "phone_number.bulk_order.completed" => "A bulk phone-number order completed.",
        "phone_number.campaign.assigned" => "A phone number was assigned to a campaign.",
        "consent_pending.confirmed" => "A pending consent was confirmed by its subject.",
        "consent_pending.expired" => "A pending consent expired unconfirmed.",
        "lookup.completed" => "A number lookup completed; the data holds its result.",
        "endpoint.disabled" => {
            "Herald disabled one of your endpoints (repeated failures or 410 Gone), or it was disabled by hand."
        }
        "endpoint.enabled" => {
            "One of your endpoints was enabled again, by hand or after a successful probe."
        }
        "delivery.exhausted" => {
            "A delivery failed its last attempt (or its receiver answered 410) and will not be retried."
        }
        _ => return None,
    };
    Some(description)
}

/// The default (and newest) API version.
pub const DEFAULT_API_VERSION: &str = "2026-04-01";

/// The event types organizations may subscribe to and the platform may publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCatalog {
    types: Vec<String>,
}

impl EventCatalog {
    /// A catalog of these types and the operational ones, which are always there
    /// ([`crate::operational`]).
    pub fn new(mut types: Vec<String>) -> Self {
        for operational in OPERATIONAL_EVENT_TYPES {
            if !types.iter().any(|known| known == operational) {
                types.push(operational.to_owned());
            }
        }
        Self { types }
    }

    /// The catalog `HERALD_EVENT_TYPES` names (comma-separated, blanks ignored), or the default
    /// one when it is unset. `herald serve` and the admin commands read it here alike.
    pub fn from_setting(setting: Option<&str>) -> Self {
        match setting {
            Some(list) => Self::new(
                list.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => Self::default(),
        }
    }

    /// Whether `event_type` is in the catalog (`webhook.test` never is).
    pub fn contains(&self, event_type: &str) -> bool {
        event_type != TEST_EVENT_TYPE && self.types.iter().any(|known| known == event_type)
    }

    /// Every type, in configuration order, the operational ones last.
    pub fn types(&self) -> &[String] {
        &self.types
    }
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::new(
            DEFAULT_EVENT_TYPES
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        )
    }
}

/// The API versions an endpoint may pin, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    supported: Vec<String>,
    deprecated: Vec<String>,
}

/// Why an `api_version` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiVersionError {
    /// Not a version Herald knows.
    #[error("unsupported api version: {0}")]
    Unknown(String),
    /// Known, but no new endpoint may pin it.
    #[error("deprecated api version: {0}")]
    Deprecated(String),
}

impl ApiVersions {
    /// `supported` lists every version Herald renders, oldest first; `deprecated` the subset
    /// that existing endpoints keep but new endpoints may not choose.
    pub fn new(supported: Vec<String>, deprecated: Vec<String>) -> Self {
        Self {
            supported,
            deprecated,
        }
    }

    /// The version a new endpoint gets when it names none: the newest non-deprecated one.
    pub fn default_version(&self) -> &str {
        self.supported
            .iter()
            .rev()
            .find(|version| !self.deprecated.contains(version))
            .map_or(DEFAULT_API_VERSION, String::as_str)
    }

    /// Checks that a new endpoint may pin `version`.
    pub fn check_new(&self, version: &str) -> Result<(), ApiVersionError> {
        if self.deprecated.iter().any(|known| known == version) {
            Err(ApiVersionError::Deprecated(version.to_owned()))
        } else if self.supported.iter().any(|known| known == version) {
            Ok(())
        } else {
            Err(ApiVersionError::Unknown(version.to_owned()))
        }
    }

    /// Every supported version, deprecated ones included.
    pub fn supported(&self) -> &[String] {
        &self.supported
    }
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self::new(vec![DEFAULT_API_VERSION.to_owned()], Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_has_seventeen_types_the_operational_ones_and_no_test_type() {
        let catalog = EventCatalog::default();
        assert_eq!(catalog.types().len(), 17 + OPERATIONAL_EVENT_TYPES.len());
        assert!(catalog.contains("endpoint.disabled"));
        let configured = EventCatalog::from_setting(Some("a.b, endpoint.enabled"));
        assert_eq!(
            configured.types(),
            [
                "a.b",
                "endpoint.enabled",
                "endpoint.disabled",
                "delivery.exhausted"
            ]
        );
        assert!(catalog.contains("wallet.balance_low"));
        assert!(!catalog.contains("wallet.balanse_low"));
        assert!(!catalog.contains(TEST_EVENT_TYPE));
    }

    #[test]
    fn deprecated_versions_are_refused_for_new_endpoints() {
        let versions = ApiVersions::new(
            vec!["2025-01-01".into(), "2026-04-01".into()],
            vec!["2025-01-01".into()],
        );
        assert_eq!(versions.default_version(), "2026-04-01");
        assert_eq!(versions.check_new("2026-04-01"), Ok(()));
        assert_eq!(
            versions.check_new("2025-01-01"),
            Err(ApiVersionError::Deprecated("2025-01-01".into()))
        );
        assert_eq!(
            versions.check_new("2030-01-01"),
            Err(ApiVersionError::Unknown("2030-01-01".into()))
        );
    }
}
