//! Operational events: what Herald itself publishes about an organization's endpoints and
//! deliveries (docs/api.md#operational-events), into that organization, fanned out like any
//! event, and to the operator's hook when one is configured.
//!
//! The operator's hook is an endpoint of its own organization, [`OPERATOR_ORG`], which no API
//! key, listing or admin route ever shows: deliveries to it are stored, claimed, retried and
//! recorded like every other, under that organization, so an organization's feed never shows
//! them.

use serde_json::json;
use uuid::Uuid;

use crate::delivery::{Event, EventOrigin};
use crate::endpoint::DisabledReason;
use crate::ids::{EndpointId, EventId, OrgId};
use crate::time::Timestamp;

/// Herald set an endpoint inactive (`failing` or `gone`).
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
/// An inactive endpoint became active again (`by: "probe"` or `"api"`).
pub const ENDPOINT_ENABLED: &str = "endpoint.enabled";
/// A delivery's last attempt failed.
pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";

/// Every operational type: always in the catalog, subscribable, never published by the
/// platform.
pub const OPERATIONAL_EVENT_TYPES: [&str; 3] =
    [ENDPOINT_DISABLED, ENDPOINT_ENABLED, DELIVERY_EXHAUSTED];

/// The hidden organization that owns the operator's hook (the nil UUID; migration 0008).
pub const OPERATOR_ORG: OrgId = OrgId::from_uuid(Uuid::nil());
/// The operator's hook: the one endpoint of [`OPERATOR_ORG`].
pub const OPERATOR_HOOK: EndpointId = EndpointId::from_uuid(Uuid::from_u128(1));

/// Whether `event_type` is one Herald publishes itself.
pub fn is_operational(event_type: &str) -> bool {
    OPERATIONAL_EVENT_TYPES.contains(&event_type)
}

/// Who made an inactive endpoint active again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnabledBy {
    /// A probe's 2xx.
    Probe,
    /// `PATCH active: true`.
    Api,
}

impl EnabledBy {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EnabledBy::Probe => "probe",
            EnabledBy::Api => "api",
        }
    }
}

/// `endpoint.disabled`: Herald set `endpoint_id` inactive for `reason` at `disabled_at`.
pub fn endpoint_disabled(
    org_id: OrgId,
    endpoint_id: EndpointId,
    url: &str,
    reason: DisabledReason,
    failing_since: Option<Timestamp>,
    disabled_at: Timestamp,
) -> Event {
    let data = json!({
        "endpoint_id": endpoint_id.to_string(),
        "url": url,
        "reason": reason.as_str(),
        "failing_since": failing_since.map(|at| at.to_string()),
        "disabled_at": disabled_at.to_string(),
    });
    operational_event(org_id, ENDPOINT_DISABLED, &data, disabled_at)
}

/// `endpoint.enabled`: `endpoint_id` became active again at `at`.
pub fn endpoint_enabled(
    org_id: OrgId,
    endpoint_id: EndpointId,
    url: &str,
    by: EnabledBy,
    at: Timestamp,
) -> Event {
    let data = json!({
        "endpoint_id": endpoint_id.to_string(),
        "url": url,
        "by": by.as_str(),
    });
    operational_event(org_id, ENDPOINT_ENABLED, &data, at)
}

/// What `delivery.exhausted` says about the delivery that died.
#[derive(Debug, Clone)]
pub struct Exhausted<'a> {
    /// The organization of the event.
    pub org_id: OrgId,
    /// The endpoint it was for.
    pub endpoint_id: EndpointId,
    /// The event that was not delivered.
    pub event_id: EventId,
    /// Its type.
    pub event_type: &'a str,
    /// Attempts made, the last one included.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: String,
    /// When it failed.
    pub at: Timestamp,
}

/// `delivery.exhausted`, unless the delivery that died was itself of a `delivery.exhausted`
/// event (one dead receiver must not set off an endless chain) or to the operator's hook.
pub fn delivery_exhausted(dead: &Exhausted<'_>) -> Option<Event> {
    if dead.event_type == DELIVERY_EXHAUSTED || dead.org_id == OPERATOR_ORG {
        return None;
    }
    let data = json!({
        "endpoint_id": dead.endpoint_id.to_string(),
        "event_id": dead.event_id.to_string(),
        "event_type": dead.event_type,
        "attempts": dead.attempts,
        "last_error": dead.last_error,
    });
    Some(operational_event(
        dead.org_id,
        DELIVERY_EXHAUSTED,
        &data,
        dead.at,
    ))
}

fn operational_event(
    org_id: OrgId,
    event_type: &str,
    data: &serde_json::Value,
    at: Timestamp,
) -> Event {
    Event {
        id: EventId::new(),
        org_id,
        event_type: event_type.to_owned(),
        data: data.to_string(),
        idempotency_key: None,
        ordering_key: None,
        origin: EventOrigin::Herald,
        created_at: at,
        traceparent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(event_type: &str, org_id: OrgId) -> Exhausted<'_> {
        Exhausted {
            org_id,
            endpoint_id: EndpointId::new(),
            event_id: EventId::new(),
            event_type,
            attempts: 3,
            last_error: "HTTP 500".to_owned(),
            at: Timestamp::now(),
        }
    }

    #[test]
    fn exhausted_is_never_about_exhausted_nor_the_operator_hook() {
        let org = OrgId::new();
        let event = delivery_exhausted(&dead("wallet.balance_low", org)).expect("published");
        assert_eq!(event.event_type, DELIVERY_EXHAUSTED);
        assert_eq!(event.org_id, org);
        assert_eq!(event.origin, EventOrigin::Herald);
        let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
        assert_eq!(data["attempts"], 3);
        assert_eq!(data["event_type"], "wallet.balance_low");
        assert!(delivery_exhausted(&dead(DELIVERY_EXHAUSTED, org)).is_none());
        assert!(delivery_exhausted(&dead("wallet.balance_low", OPERATOR_ORG)).is_none());
    }

    #[test]
    fn disabled_and_enabled_carry_the_contract_fields() {
        let org = OrgId::new();
        let endpoint = EndpointId::new();
        let at = Timestamp::now();
        let disabled = endpoint_disabled(
            org,
            endpoint,
            "https://example.com/h",
            DisabledReason::Gone,
            None,
            at,
        );
        let data: serde_json::Value = serde_json::from_str(&disabled.data).expect("JSON");
        assert_eq!(data["reason"], "gone");
        assert_eq!(data["failing_since"], serde_json::Value::Null);
        assert_eq!(data["disabled_at"], at.to_string());
        let enabled =
            endpoint_enabled(org, endpoint, "https://example.com/h", EnabledBy::Probe, at);
        let data: serde_json::Value = serde_json::from_str(&enabled.data).expect("JSON");
        assert_eq!(data["by"], "probe");
        assert_eq!(data["endpoint_id"], endpoint.to_string());
    }
}
