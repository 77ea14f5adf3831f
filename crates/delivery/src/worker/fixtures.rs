//! What the worker's unit tests are made of.

use herald_domain::{
    DeliveryId, Endpoint, EndpointId, Event, EventId, EventOrigin, OrgId, OrgSigningKey, Secret,
    SigningMaterial, Timestamp,
};
use herald_store::{ClaimedDelivery, LeaseToken};

/// Attempt `attempt_number` of a delivery to a live endpoint.
pub(crate) fn delivery(attempt_number: u32) -> ClaimedDelivery {
    let org_id = OrgId::new();
    let now = Timestamp::now();
    ClaimedDelivery {
        delivery_id: DeliveryId::new(),
        attempt_number,
        schedule_attempt: attempt_number,
        sequence: Some(1),
        event: Event {
            id: EventId::new(),
            org_id,
            event_type: "order.created".to_owned(),
            data: "{}".to_owned(),
            idempotency_key: None,
            ordering_key: None,
            origin: EventOrigin::Publish,
            created_at: now,
            traceparent: None,
        },
        endpoint: Endpoint {
            id: EndpointId::new(),
            org_id,
            // Nothing may be sent in these tests: a name that never resolves.
            url: "https://receiver.invalid/webhooks".to_owned(),
            description: None,
            events: vec!["order.created".to_owned()],
            active: true,
            api_version: "2026-04-01".to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            health: herald_domain::EndpointHealth::default(),
            header_names: Vec::new(),
            client_certificate: None,
            filter: None,
        },
        signing: SigningMaterial {
            endpoint_secret: Secret::generate(),
            previous_secret: None,
            org_secret: None,
            org_signing_key: std::sync::Arc::new(OrgSigningKey::generate(org_id, now)),
        },
        credentials: herald_domain::EndpointCredentials::default(),
        lease: LeaseToken::new(),
    }
}
