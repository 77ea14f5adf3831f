//! The test operation's single attempt (docs/api.md#send-a-test): a synthetic `webhook.test`
//! event, enveloped and signed exactly like a real delivery, sent once, never retried.

use herald_domain::{
    Attempt, DeliveryId, Endpoint, EndpointCredentials, Event, EventId, EventOrigin, Outcome,
    SigningMaterial, TEST_EVENT_TYPE, Timestamp,
};

use crate::attempt::{AttemptPlan, execute};
use crate::client::{DeliveryClient, OutcomeClass};

/// The event a test sends.
pub fn test_event(endpoint: &Endpoint) -> Event {
    Event {
        id: EventId::new(),
        org_id: endpoint.org_id,
        event_type: TEST_EVENT_TYPE.to_owned(),
        data: serde_json::json!({
            "message": "This is a test delivery from Herald.",
            "endpoint_id": endpoint.id.to_string(),
        })
        .to_string(),
        idempotency_key: None,
        ordering_key: None,
        origin: EventOrigin::Test,
        created_at: Timestamp::now(),
        traceparent: None,
    }
}

/// Sends `event` to `endpoint` once and returns the attempt: `success` or `dead`.
pub async fn send_test(
    client: &DeliveryClient,
    event: &Event,
    endpoint: &Endpoint,
    signing: &SigningMaterial,
    credentials: &EndpointCredentials,
) -> Attempt {
    let plan = AttemptPlan {
        delivery_id: DeliveryId::new(),
        attempt_number: 1,
        event,
        endpoint,
        signing,
        sequence: None,
        credentials,
    };
    let report = execute(client, plan).await;
    let mut attempt = report.attempt;
    attempt.outcome = if report.outcome.class == OutcomeClass::Success {
        Outcome::Success
    } else {
        Outcome::Dead
    };
    attempt
}
