//! The types of the delivery half of the [`Store`](crate::Store): publishing with fan-out,
//! claiming due deliveries under a lease, recording attempts, and reading the feed.

use std::time::Duration;

use herald_domain::{
    Attempt, Endpoint, EndpointCredentials, EndpointId, Event, EventId, Outcome, Secret,
    SigningMaterial, Timestamp,
};
use uuid::Uuid;

/// The answer for one published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The event's id: the new one, or the original one for a repeated idempotency key.
    pub event_id: EventId,
    /// How many deliveries the event fanned out to.
    pub endpoints: u32,
    /// Whether an earlier event with the same idempotency key was returned instead.
    pub duplicate: bool,
}

/// A delivery handed to a worker, with everything needed to attempt it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery_id: herald_domain::DeliveryId,
    /// The number this attempt will carry (1-based).
    pub attempt_number: u32,
    /// This attempt's place in its retry schedule (1-based): the attempt number, except after
    /// a recovery, which starts a fresh schedule while attempt numbers go on.
    pub schedule_attempt: u32,
    /// The delivery's number in its endpoint's sequence (`None` for one made before sequences
    /// existed).
    pub sequence: Option<u64>,
    /// The event to send.
    pub event: Event,
    /// The endpoint as it is now (it may have become inactive or deleted since publish).
    pub endpoint: Endpoint,
    /// What signs the attempt: the endpoint's secrets, the organization's secret and key.
    pub signing: SigningMaterial,
    /// The endpoint's custom headers and client certificate, opened.
    pub credentials: EndpointCredentials,
    /// The claim's token: recording the attempt needs it.
    pub lease: LeaseToken,
}

/// Where a delivery of the catch-up feed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStatus {
    /// Not yet delivered; attempts go on (or wait for an earlier one of its key).
    Pending,
    /// A 2xx came back.
    Delivered,
    /// No more attempts.
    Dead,
}

impl FeedStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::Pending => "pending",
            FeedStatus::Delivered => "delivered",
            FeedStatus::Dead => "dead",
        }
    }
}

/// One entry of an endpoint's catch-up feed.
#[derive(Debug, Clone)]
pub struct Sequenced {
    /// The delivery's number in the endpoint's sequence.
    pub sequence: u64,
    /// Where the delivery is.
    pub status: FeedStatus,
    /// The event.
    pub event: Event,
}

/// The operator's hook as configured: where every organization's operational events go too.
#[derive(Debug, Clone)]
pub struct OperatorHook {
    /// `HERALD_OPERATOR_WEBHOOK_URL`.
    pub url: String,
    /// `HERALD_OPERATOR_WEBHOOK_SECRET`.
    pub secret: Secret,
    /// The API version its bodies are rendered in (the newest).
    pub api_version: String,
}

/// An endpoint due for a probe, with what signing it takes.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The endpoint (inactive, disabled for `failing`).
    pub endpoint: Endpoint,
    /// What signs the probe, as it signs a delivery.
    pub signing: SigningMaterial,
    /// Its custom headers and client certificate, opened: a probe is sent as a delivery is.
    pub credentials: EndpointCredentials,
}

/// Proof of one claim. Each claim stamps its deliveries with a fresh token; recording an
/// attempt moves the delivery on only while it still carries that token, so a worker whose
/// lease lapsed (and was taken by another) records what it did without overwriting the newer
/// claimant's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(Uuid);

impl LeaseToken {
    /// A fresh token.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The token as stored.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

/// What to store after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecording {
    /// The attempt record; its `outcome` decides the delivery's next state.
    pub attempt: Attempt,
    /// Set the endpoint inactive, with this reason in the audit trail (410 Gone).
    pub disable_endpoint: Option<String>,
    /// Whether the attempt ended its delivery after a request that failed (the schedule's
    /// last attempt, or a 410): a `delivery.exhausted` event reports it. A delivery withheld
    /// from an endpoint that was set inactive or deleted is dead without being exhausted:
    /// `endpoint.disabled` told already, and a recovery brings it back.
    pub exhausted: bool,
    /// The token of the claim the attempt was made under.
    pub lease: LeaseToken,
    /// The next delivery of the attempt's ordering key, which the same worker claimed behind
    /// it ([`Store::claim_successors`](crate::Store::claim_successors)) and sends next: when
    /// this success is recorded, the key's turn passes to that delivery, leased, instead of
    /// making it due for any claim. `None` for every other attempt.
    pub successor: Option<HandOn>,
}

/// A delivery a worker claimed behind the one it was attempting, and the lease it holds it
/// under: see [`AttemptRecording::successor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandOn {
    /// The successor.
    pub delivery_id: herald_domain::DeliveryId,
    /// The token it was claimed with.
    pub lease: LeaseToken,
    /// When its lease lapses (and it is due again, should its worker have died).
    pub lease_until: Timestamp,
}

/// Settings of a claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Due at or before this instant.
    pub now: Timestamp,
    /// At most this many.
    pub limit: u32,
    /// The claim holds for this long; afterwards another worker may take it.
    pub lease: Duration,
    /// Which endpoints' deliveries to look at.
    pub scope: ClaimScope,
    /// At most this many deliveries of any one endpoint in a claim over every endpoint, so a
    /// claim never takes more of a slow endpoint's backlog than it can attempt before the
    /// lease lapses (a refill names its own numbers).
    pub per_endpoint_limit: u32,
}

/// Where a claim looks for due deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimScope {
    /// The due deliveries of any endpoint except these, which already have as many attempts
    /// in flight as allowed: at most `per_endpoint_limit` of each, the endpoints with the
    /// oldest due deliveries first. Finds the endpoints with a loose scan of the per-endpoint
    /// index (a seek or two per endpoint with pending deliveries), however large the backlog.
    AnyExcept(Vec<EndpointId>),
    /// Only these endpoints' oldest due deliveries, at most the given number of each: each
    /// has room for more. Reads one short range of the per-endpoint index per endpoint,
    /// however large the backlog.
    Endpoints(Vec<(EndpointId, u32)>),
}

impl ClaimRequest {
    /// How many endpoints with due deliveries a claim over every endpoint asks for: enough to
    /// fill it at one delivery each after leaving out the excepted ones.
    pub(crate) fn endpoints_to_find(&self) -> u32 {
        match &self.scope {
            ClaimScope::AnyExcept(except) => self
                .limit
                .saturating_add(u32::try_from(except.len()).unwrap_or(u32::MAX)),
            ClaimScope::Endpoints(endpoints) => u32::try_from(endpoints.len()).unwrap_or(u32::MAX),
        }
    }

    /// This claim as a refill of `due` (endpoints with due deliveries, oldest first): a claim
    /// over every endpoint takes at most `per_endpoint_limit` of each one it does not except;
    /// a refill stays as it is.
    pub(crate) fn over_endpoints(&self, due: impl IntoIterator<Item = EndpointId>) -> Self {
        let scope = match &self.scope {
            ClaimScope::AnyExcept(except) => ClaimScope::Endpoints(
                due.into_iter()
                    .filter(|endpoint_id| !except.contains(endpoint_id))
                    .take(self.limit as usize)
                    .map(|endpoint_id| (endpoint_id, self.per_endpoint_limit))
                    .collect(),
            ),
            ClaimScope::Endpoints(endpoints) => ClaimScope::Endpoints(endpoints.clone()),
        };
        Self {
            scope,
            ..self.clone()
        }
    }

    /// The most this claim takes of one endpoint.
    pub fn most_for(&self, endpoint_id: EndpointId) -> u32 {
        match &self.scope {
            ClaimScope::AnyExcept(_) => self.per_endpoint_limit,
            ClaimScope::Endpoints(endpoints) => endpoints
                .iter()
                .find(|(id, _)| *id == endpoint_id)
                .map_or(0, |(_, most)| *most),
        }
    }
}

/// Filters of the deliveries feed, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFilter {
    /// Only this endpoint's attempts.
    pub endpoint_id: Option<EndpointId>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this event's attempts.
    pub event_id: Option<EventId>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// At or after this instant.
    pub since: Option<Timestamp>,
    /// Strictly before this instant.
    pub until: Option<Timestamp>,
    /// Response status at least this.
    pub http_status_min: Option<u16>,
    /// Response status at most this.
    pub http_status_max: Option<u16>,
}

/// The state of the delivery queue, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Pending deliveries due now.
    pub due: u64,
    /// Pending deliveries due later.
    pub scheduled: u64,
    /// When the oldest due delivery became due.
    pub oldest_due_at: Option<Timestamp>,
}

/// One batch of a retention purge: what has expired, how much to remove, and where the walk
/// through the expired events has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeBatch {
    /// Events created before this are removed, once no delivery of theirs is pending.
    pub events_before: Timestamp,
    /// Attempts made before this are removed.
    pub attempts_before: Timestamp,
    /// At most this many attempts are removed, and this many expired events looked at.
    pub size: u32,
    /// The events looked at start after this one (`None`: from the oldest).
    pub events_after: Option<PurgePosition>,
}

/// An expired event a purge has looked at, in the order it walks them: by `created_at`,
/// then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgePosition {
    pub created_at: Timestamp,
    pub event_id: EventId,
}

/// What a retention purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Events removed (with their finished deliveries).
    pub events: u64,
    /// Attempt records removed.
    pub attempts: u64,
    /// The last expired event the batch looked at, removed or kept because a delivery of it
    /// is still pending: the next batch starts after it, so an event kept is looked at once a
    /// purge rather than once a batch.
    pub events_reached: Option<PurgePosition>,
    /// Whether the batch looked at every expired event left: fewer than its size.
    pub events_done: bool,
}

/// The outcome of a delivery, derived from its latest attempt.
pub(crate) fn delivery_status(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Retry => "pending",
        Outcome::Dead => "dead",
    }
}

/// One step of an attempt batch's effect on its endpoints, in an order that gives the same
/// result as applying the attempts one by one.
#[derive(Debug)]
pub(crate) enum EndpointStep<'a> {
    /// These endpoints had a success: their run of failures is over.
    ClearFailing(Vec<EndpointId>),
    /// A failed attempt: the endpoint's run of failures goes on (or begins), and may disable it.
    Failure(&'a AttemptRecording),
}

/// Plans the endpoint side of recording `recordings`. Successes are gathered into one
/// statement; a failure of an endpoint with a gathered success flushes them first, so each
/// endpoint sees its own attempts in order.
pub(crate) fn endpoint_steps(recordings: &[AttemptRecording]) -> Vec<EndpointStep<'_>> {
    let mut steps = Vec::new();
    let mut succeeded: Vec<EndpointId> = Vec::new();
    for recording in recordings {
        let endpoint_id = recording.attempt.endpoint_id;
        if recording.attempt.outcome == Outcome::Success {
            if !succeeded.contains(&endpoint_id) {
                succeeded.push(endpoint_id);
            }
            continue;
        }
        if succeeded.contains(&endpoint_id) {
            steps.push(EndpointStep::ClearFailing(std::mem::take(&mut succeeded)));
        }
        steps.push(EndpointStep::Failure(recording));
    }
    if !succeeded.is_empty() {
        steps.push(EndpointStep::ClearFailing(succeeded));
    }
    steps
}
