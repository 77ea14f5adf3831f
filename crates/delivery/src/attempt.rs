//! One attempt, start to finish: render the envelope, sign it, send it through the client, and
//! describe the result as an [`Attempt`] record. Deciding what happens next (retry, dead) is
//! the caller's; this module only reports. Every attempt sends the event's trace context
//! (`herald_domain::trace`) as a `traceparent` of its own.

use bytes::Bytes;
use herald_domain::custom_headers::REDACTED;
use herald_domain::trace::{TRACEPARENT, TraceParent};
use herald_domain::{
    Attempt, AttemptId, DeliveryId, Endpoint, EndpointCredentials, Event, Outcome, SigningMaterial,
    Timestamp,
};
use sha2::{Digest, Sha256};

use crate::client::{AttemptOutcome, DeliveryClient, OutcomeClass};
use crate::envelope;
use crate::signer::{OutgoingDelivery, signed_headers};

/// Everything one attempt needs.
#[derive(Debug, Clone, Copy)]
pub struct AttemptPlan<'a> {
    /// The delivery being attempted.
    pub delivery_id: DeliveryId,
    /// The 1-based number of this attempt.
    pub attempt_number: u32,
    /// The event.
    pub event: &'a Event,
    /// The endpoint, as it is now.
    pub endpoint: &'a Endpoint,
    /// What signs it.
    pub signing: &'a SigningMaterial,
    /// The delivery's number in its endpoint's sequence (none for a test send).
    pub sequence: Option<u64>,
    /// The endpoint's custom headers (sent after Herald's own) and client certificate.
    pub credentials: &'a EndpointCredentials,
}

/// The record of an attempt (with `outcome` provisional: `Success` or `Dead`, and `Retry`
/// left to the scheduler) plus what the client saw.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The record to store.
    pub attempt: Attempt,
    /// The client's classification and the receiver's `Retry-After`.
    pub outcome: AttemptOutcome,
}

/// Sends one attempt now.
pub async fn execute(client: &DeliveryClient, plan: AttemptPlan<'_>) -> AttemptReport {
    match prepare(plan) {
        Ok(prepared) => send(client, plan, prepared).await,
        Err(not_sent) => *not_sent,
    }
}

/// An attempt rendered and signed, ready to go: most of what an attempt does before its
/// request leaves. A run of an ordering key prepares its next attempt while the one before it
/// is in flight (`worker/job.rs`), so that its receiver's round trip is most of what lies
/// between two of its requests. The attempt's id (and the `traceparent` that names it) is
/// taken as it is sent, so the feed, newest first by id, lists attempts in the order they
/// were made.
pub struct PreparedAttempt {
    body: Bytes,
    body_sha256: String,
    /// When it was signed: its signature carries the second.
    signed_at: Timestamp,
    /// Herald's signed headers.
    signed: Vec<(&'static str, String)>,
    /// The same, as the attempt's record shows them.
    recorded: Vec<(String, String)>,
}

#[cfg(test)]
impl PreparedAttempt {
    /// When it was signed.
    pub(crate) fn signed_at(&self) -> Timestamp {
        self.signed_at
    }

    /// The `webhook-signature` it carries.
    pub(crate) fn webhook_signature(&self) -> Option<&str> {
        let signature = self
            .signed
            .iter()
            .find(|(name, _)| *name == crate::signer::WEBHOOK_SIGNATURE);
        signature.map(|(_, value)| value.as_str())
    }
}

/// Renders and signs an attempt of `plan`, to send later with [`send`]; the record of an
/// attempt that cannot be sent (its version has no renderer) when there is none to send.
pub fn prepare(plan: AttemptPlan<'_>) -> Result<PreparedAttempt, Box<AttemptReport>> {
    let now = Timestamp::now();
    let body = match envelope::render(&plan.endpoint.api_version, plan.event) {
        Ok(body) => body,
        Err(unsupported) => {
            return Err(Box::new(not_sent(plan, now, unsupported.to_string())));
        }
    };
    let signed = sign(plan, &body, now);
    Ok(PreparedAttempt {
        body_sha256: hex::encode(Sha256::digest(&body)),
        body: Bytes::from(body),
        signed_at: now,
        recorded: as_recorded(&signed),
        signed,
    })
}

/// `headers` as the attempt's record keeps them.
fn as_recorded(headers: &[(&str, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// Herald's signed headers of an attempt of `plan` with `body`, made `at`.
fn sign(plan: AttemptPlan<'_>, body: &[u8], at: Timestamp) -> Vec<(&'static str, String)> {
    signed_headers(&OutgoingDelivery {
        event_id: plan.event.id,
        event_type: &plan.event.event_type,
        attempt: plan.attempt_number,
        timestamp: at,
        body,
        signing: plan.signing,
        sequence: plan.sequence,
        ordering_key: plan.event.ordering_key.as_deref(),
    })
}

/// Sends an attempt [`prepare`]d from the same `plan`. The attempt occurs now, and is signed
/// again if its signature would not be the one made now: signed in an earlier second (the
/// signature carries the second), or across the end of the endpoint's previous secret's grace
/// period (which then signs no more).
pub async fn send(
    client: &DeliveryClient,
    plan: AttemptPlan<'_>,
    prepared: PreparedAttempt,
) -> AttemptReport {
    let PreparedAttempt {
        body,
        body_sha256,
        signed_at,
        mut signed,
        mut recorded,
    } = prepared;
    let now = Timestamp::now().max(signed_at);
    let previous_secret_ended = plan
        .signing
        .previous_secret
        .as_ref()
        .is_some_and(|previous| previous.signs_at(signed_at) != previous.signs_at(now));
    if now.unix_seconds() != signed_at.unix_seconds() || previous_secret_ended {
        signed = sign(plan, &body, now);
        recorded = as_recorded(&signed);
    }
    // Each attempt is a span of the event's trace, named by the attempt's own id, which is
    // taken as it goes out.
    let attempt_id = AttemptId::new();
    let traceparent = TraceParent::of_attempt(plan.event, attempt_id).header_value();
    recorded.push((TRACEPARENT.to_owned(), traceparent.clone()));
    let mut headers: Vec<(&str, String)> = signed;
    headers.push((TRACEPARENT, traceparent));
    // The record shows what was sent, except the custom headers' values, which may be
    // credentials: stored and shown as "<redacted>", like every answer shows them.
    for (name, value) in plan.credentials.custom_headers.pairs() {
        headers.push((name.as_str(), value.clone()));
        recorded.push((name.clone(), REDACTED.to_owned()));
    }
    let request = SentRequest {
        body_sha256,
        body_bytes: body.len() as u64,
        headers: recorded,
    };
    let outcome = client
        .send_with(
            &plan.endpoint.url,
            &headers,
            body,
            plan.credentials.client_certificate.as_ref(),
        )
        .await;
    report(plan, (attempt_id, now), request, outcome)
}

/// The record of an attempt that was decided without sending anything (the endpoint became
/// inactive, its version has no renderer): always `Dead`.
pub fn not_sent(plan: AttemptPlan<'_>, occurred_at: Timestamp, reason: String) -> AttemptReport {
    let outcome = AttemptOutcome {
        response_status: None,
        response_time_ms: 0,
        response_body_excerpt: None,
        retry_after: None,
        error: Some(reason),
        class: OutcomeClass::Failure,
    };
    let request = SentRequest {
        body_sha256: hex::encode(Sha256::digest(b"")),
        body_bytes: 0,
        headers: Vec::new(),
    };
    report(plan, (AttemptId::new(), occurred_at), request, outcome)
}

/// What went out on the wire (nothing, for an attempt that was not sent).
struct SentRequest {
    body_sha256: String,
    body_bytes: u64,
    headers: Vec<(String, String)>,
}

fn report(
    plan: AttemptPlan<'_>,
    (attempt_id, occurred_at): (AttemptId, Timestamp),
    request: SentRequest,
    outcome: AttemptOutcome,
) -> AttemptReport {
    let attempt = Attempt {
        id: attempt_id,
        // The endpoint's organization: the event's, except for the operator's hook, whose
        // attempts belong to its own hidden organization and so to no organization's feed.
        org_id: plan.endpoint.org_id,
        delivery_id: plan.delivery_id,
        endpoint_id: plan.endpoint.id,
        event_id: plan.event.id,
        event_type: plan.event.event_type.clone(),
        url: plan.endpoint.url.clone(),
        attempt: plan.attempt_number,
        outcome: if outcome.class == OutcomeClass::Success {
            Outcome::Success
        } else {
            Outcome::Dead
        },
        response_status: outcome.response_status,
        response_time_ms: outcome.response_time_ms,
        request_body_sha256: request.body_sha256,
        request_body_bytes: request.body_bytes,
        request_headers: request.headers,
        response_body_excerpt: outcome.response_body_excerpt.clone(),
        error: outcome.error.clone(),
        next_attempt_at: None,
        occurred_at,
        sequence: plan.sequence,
        ordering_key: plan.event.ordering_key.clone(),
    };
    AttemptReport { attempt, outcome }
}
