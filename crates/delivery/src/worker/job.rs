//! One delivery's task: wait for a slot of its endpoint, attempt, decide what comes next
//! (success, a retry along the schedule, or dead), and hand the result to the recorder. It
//! never writes to the store itself: the recorder does, in batches.
//!
//! A delivery with an ordering key that succeeds is followed, in the same task and slot, by
//! the next deliveries of its key ([`Store::claim_successors`], a few at a time, the next
//! claim made while the last of the previous one are sent): a key's deliveries go one at a
//! time, so without this each would wait for its predecessor's recording and a claim,
//! several database round trips between two requests. Each successor is sent only after
//! the one before it succeeded, and its predecessor's recording names it ([`HandOn`]), so
//! the store passes the key's turn to it rather than making it due for another claim
//! (docs/api.md#ordering-and-sequence-numbers). While one
//! delivery of a run is in flight, the task renders and signs the next ([`prepare`]), so that
//! what lies between two of a key's requests is the receiver's round trip and little else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use herald_domain::trace::TraceParent;
use herald_domain::{DeliveryId, Endpoint, Outcome, Timestamp};
use herald_store::{AttemptRecording, ClaimedDelivery, HandOn, LeaseToken, Store, StoreError};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::WorkerConfig;
use super::slots::EndpointSlots;
use crate::attempt::{
    AttemptPlan, AttemptReport, PreparedAttempt, execute, not_sent, prepare, send,
};
use crate::client::{DeliveryClient, OutcomeClass};
use crate::retry::RetrySchedule;
use crate::telemetry::DeliveryTracer;

/// Most successors of a key one claim takes: one claim per this many deliveries of a busy key.
/// At 16, a one-key run on PostgreSQL sent an event every 2.6 receiver round trips; at 64,
/// every 1.1 (SQLite) to 1.7 (PostgreSQL), with each claim between two requests
/// (BENCHMARKS.md, the `ordered` workload); claimed ahead ([`CLAIM_AHEAD_WHEN_LEFT`]), it is
/// off that path.
const SUCCESSORS_PER_CLAIM: u32 = 64;

/// How long before a run has sent the last of a full claim's successors it makes the next
/// claim, behind the last of them, at least: long enough for a claim of several database round
/// trips to end first. With only a few successors' worth of lead (16 at a loopback receiver's
/// pace, 3.5 ms), a claim on either backend came back late at a third of the switches, each a
/// stall of 1–2.5 ms; with 7 ms, none did (BENCHMARKS.md, seventeenth session). A run whose
/// claims take longer (a database across a network) leads by twice its last claim's time.
const CLAIM_AHEAD_BY: Duration = Duration::from_millis(8);

/// Most successors left to send when the next claim is made (a fast run's lead: 32 are 7 ms
/// at a loopback receiver's pace).
const CLAIM_AHEAD_WHEN_LEFT: usize = 32;
const _: () = assert!(CLAIM_AHEAD_WHEN_LEFT < SUCCESSORS_PER_CLAIM as usize);

/// How many successors are left when the next claim is made, for a run whose attempts take
/// `per_event` and whose last claim took `claim_took`: as many as it sends in [`CLAIM_AHEAD_BY`]
/// or twice its last claim's time, whichever is longer, at least one, at most
/// [`CLAIM_AHEAD_WHEN_LEFT`]. (The rule is read once the next delivery is taken off, so the
/// lead is that and one attempt more.) No more than that: the next batch's lease counts from
/// its claim, so a claim made earlier than it needs to be shortens the run behind it (a run
/// stops once half a lease is gone), by an attempt's time for each successor left.
fn claim_ahead_when_left(per_event: Duration, claim_took: Duration) -> usize {
    if per_event.is_zero() {
        return CLAIM_AHEAD_WHEN_LEFT;
    }
    let lead = CLAIM_AHEAD_BY.max(claim_took.saturating_mul(2));
    let in_time = lead.as_nanos().div_ceil(per_event.as_nanos());
    usize::try_from(in_time)
        .unwrap_or(usize::MAX)
        .clamp(1, CLAIM_AHEAD_WHEN_LEFT)
}

/// One delivery's task.
pub(super) struct Job {
    pub(super) client: DeliveryClient,
    pub(super) schedule: RetrySchedule,
    /// Where the result goes: the recorder.
    pub(super) record_tx: mpsc::Sender<AttemptRecording>,
    pub(super) slots: Arc<EndpointSlots>,
    /// Signalled when the endpoint drops to its low water, so the dispatcher refills it.
    pub(super) unsaturated: Arc<Notify>,
    /// Exports the attempt's span, when tracing is on.
    pub(super) tracer: Option<DeliveryTracer>,
    /// Where the successors of an ordering key are claimed.
    pub(super) store: Arc<dyn Store>,
    /// How long a claim of successors holds them.
    pub(super) lease: Duration,
    /// Cancelled at shutdown: a run of a key then stops before its next delivery.
    pub(super) stop: CancellationToken,
    /// `true` while the recorder cannot store results: a run of a key then stops, as the
    /// dispatcher stops claiming (what it sent could not be recorded either).
    pub(super) recording_stalled: watch::Receiver<bool>,
}

impl Job {
    pub(super) async fn run(self, delivery: ClaimedDelivery, endpoint_slot: Arc<Semaphore>) {
        let endpoint_id = delivery.endpoint.id;
        let permit = endpoint_slot.acquire_owned().await;
        let mut successors = Successors::new(Arc::clone(&self.store));
        let holding_since = Instant::now();
        let mut delivery = delivery;
        // The attempt of `delivery` prepared while its predecessor was in flight.
        let mut prepared = None;
        loop {
            // Boxed, so the attempt's state (the HTTP exchange, kilobytes, and the next
            // attempt being prepared) is allocated only once the task holds a slot: the many
            // tasks claimed ahead and waiting stay small.
            let attempt_started = Instant::now();
            let (mut recording, prepared_next) =
                Box::pin(self.attempt(&delivery, prepared.take(), successors.waiting.front()))
                    .await;
            let delivered = recording.attempt.outcome == Outcome::Success;
            let next = match delivered {
                true => {
                    successors.note_sent(attempt_started.elapsed());
                    self.next_of_key(&delivery, &mut successors, holding_since)
                        .await
                }
                false => None,
            };
            if next.is_none() {
                // The run ends with this delivery: what it holds behind it is given back
                // before this delivery's recording releases the key, so that the claim the
                // release wakes finds the key's next one free.
                successors.give_back().await;
            }
            let handed_on = next.is_some();
            if let Some(next) = next {
                recording.successor = Some(HandOn {
                    delivery_id: next.delivery_id,
                    lease: next.lease,
                    lease_until: successors.lease_until,
                });
                // Assigned to the endpoint before this one is freed, so that the endpoint
                // never looks emptier than it is.
                self.slots.assign(endpoint_id);
                // Held with the waiting until the recording that names it is queued, so that
                // a job aborted meanwhile gives it back too.
                successors.waiting.push_front(next);
            }
            if self.slots.release(endpoint_id, delivered) {
                self.unsaturated.notify_one();
            }
            // A closed channel means the recorder is gone (shutdown); the lease will bring the
            // delivery back, and a run stops: nothing more it sent could be recorded.
            let recorded = self.record_tx.send(recording).await.is_ok();
            if !(handed_on && recorded) {
                break;
            }
            let Some(next) = successors.waiting.pop_front() else {
                break;
            };
            prepared = prepared_next
                .filter(|(id, _)| *id == next.delivery_id)
                .map(|(_, attempt)| attempt);
            delivery = next;
        }
        drop(permit);
        successors.give_back().await;
    }

    /// Attempts `delivery` (the task holds its endpoint's slot; `prepared`, if any, is its
    /// attempt, prepared already) and exports its span. Meanwhile it prepares the attempt of
    /// `next`, the delivery of its key that would follow it, and returns that too.
    async fn attempt(
        &self,
        delivery: &ClaimedDelivery,
        prepared: Option<Box<PreparedAttempt>>,
        next: Option<&ClaimedDelivery>,
    ) -> (AttemptRecording, Option<(DeliveryId, Box<PreparedAttempt>)>) {
        // The attempt's log lines carry its trace id. A debug span: with the default `info`
        // logging it is disabled at its call site, and its fields are never formatted.
        let span = tracing::debug_span!(
            "attempt",
            trace_id = %TraceParent::trace_id_hex_of(&delivery.event),
            endpoint_id = %delivery.endpoint.id,
            event_id = %delivery.event.id,
            attempt = delivery.attempt_number,
        );
        let attempt =
            attempt_prepared(&self.client, &self.schedule, delivery, prepared).instrument(span);
        let prepare_next = async {
            let next = next?;
            // The attempt's first poll hands its request to its connection's task, which runs
            // once this task yields: the request goes out first, and this work fills the wait
            // for its answer.
            tokio::task::yield_now().await;
            let prepared = prepare(plan_of(next)).ok()?;
            Some((next.delivery_id, Box::new(prepared)))
        };
        let (recording, prepared_next) = tokio::join!(attempt, prepare_next);
        if let Some(tracer) = &self.tracer {
            tracer.record_attempt(&delivery.event, &recording.attempt);
        }
        (recording, prepared_next)
    }

    /// The delivery of `sent`'s ordering key to send next, now that `sent` succeeded: the
    /// next of those claimed behind it, taking the claim made ahead (or claiming) when none
    /// is left, and making the next claim ahead once [`claim_ahead_when_left`] are left.
    /// `None` for a delivery without a key, when none waits, at shutdown, while recording is
    /// stalled, or once half the successors' lease is gone: an attempt (at most a request
    /// timeout, a sixth of a lease) then still ends well inside it.
    ///
    /// While other deliveries of the endpoint wait for a slot, a run gives its slot up after
    /// one claim of successors ([`SUCCESSORS_PER_CLAIM`] deliveries) or once it has held the
    /// slot for half a request timeout (`holding_since`), whichever comes first. The waiting
    /// ones were claimed ahead on the promise that each slot frees within a request timeout
    /// a round (`slots.rs`, [`ROUNDS_ASSIGNED`](super::slots::ROUNDS_ASSIGNED) rounds inside a
    /// lease); a run may stretch its round by half of one, which still leaves the last
    /// round's attempt inside the lease.
    async fn next_of_key(
        &self,
        sent: &ClaimedDelivery,
        successors: &mut Successors,
        holding_since: Instant,
    ) -> Option<ClaimedDelivery> {
        if sent.event.ordering_key.is_none()
            || self.stop.is_cancelled()
            || *self.recording_stalled.borrow()
        {
            return None;
        }
        let yield_after = self.lease / (2 * WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS);
        let others_wait = || self.slots.has_waiting(sent.endpoint.id);
        if holding_since.elapsed() >= yield_after && others_wait() {
            return None;
        }
        if successors.waiting.is_empty() {
            if successors.claims > 0 && others_wait() {
                return None;
            }
            successors.claims += 1;
            // The lease is counted from before the claim, and so is the half of it a run may
            // use: a slow claim, or one made ahead, shortens the run, never the lease.
            // Each claim is awaited in place, so that a job aborted meanwhile still gives
            // back what it takes (`Successors::drop`).
            let made_ahead = successors.claim.is_some();
            let claim = successors
                .claim
                .get_or_insert_with(|| SuccessorClaim::start(&self.store, sent, self.lease));
            let mut claimed = (&mut claim.task).await;
            let (mut claim_now, mut claim_started) = (claim.now, claim.started);
            if made_ahead && matches!(&claimed, Ok(done) if done.took_none()) {
                // Nothing waited when the claim ahead was made; more may have come since.
                let claim =
                    successors
                        .claim
                        .insert(SuccessorClaim::start(&self.store, sent, self.lease));
                claimed = (&mut claim.task).await;
                (claim_now, claim_started) = (claim.now, claim.started);
            }
            successors.claim = None;
            successors.claimed_at = claim_started;
            let Ok(ClaimDone { claimed, took }) = claimed else {
                tracing::error!("the claim of an ordering key's next deliveries panicked");
                return None;
            };
            successors.claim_took = took;
            match claimed {
                Ok(claimed) => {
                    let lease =
                        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
                    successors.last_claim_full = claimed.len() >= SUCCESSORS_PER_CLAIM as usize;
                    successors.waiting = claimed.into();
                    successors.lease_until = claim_now.add(lease);
                }
                Err(error) => {
                    // The key is released as it would be without a run: nothing is lost.
                    tracing::warn!(error = %error, "claiming the next deliveries of an ordering key failed");
                    return None;
                }
            }
        }
        if successors.claimed_at.elapsed() > self.lease / 2 {
            return None;
        }
        let next = successors.waiting.pop_front();
        // Near the end of a full claim, the next one is made behind its last delivery while
        // the rest are sent, so that a long run never waits for a claim between two requests
        // (on PostgreSQL a claim is a transaction of several round trips).
        let claim_ahead = successors.last_claim_full
            && successors.claim.is_none()
            && successors.waiting.len()
                <= claim_ahead_when_left(
                    successors.pace.unwrap_or_default(),
                    successors.claim_took,
                )
            && !others_wait();
        if claim_ahead && let Some(last) = successors.waiting.back() {
            successors.claim = Some(SuccessorClaim::start(&self.store, last, self.lease));
        }
        next
    }
}

/// A claim of successors on its way.
struct SuccessorClaim {
    task: JoinHandle<ClaimDone>,
    /// What the claim's lease is counted from.
    now: Timestamp,
    started: Instant,
}

impl SuccessorClaim {
    /// Starts a claim of the deliveries of `last`'s key behind it, on a task of its own.
    fn start(store: &Arc<dyn Store>, last: &ClaimedDelivery, lease: Duration) -> Self {
        let now = Timestamp::now();
        let started = Instant::now();
        let store = Arc::clone(store);
        let last = last.clone();
        let claim = async move {
            let claimed = store
                .claim_successors(&last, SUCCESSORS_PER_CLAIM, lease, now)
                .await;
            ClaimDone {
                claimed,
                took: started.elapsed(),
            }
        };
        let task = tokio::spawn(claim.in_current_span());
        Self { task, now, started }
    }
}

/// What a claim of successors took, and how long it took (which the next claim's lead follows:
/// [`claim_ahead_when_left`]).
struct ClaimDone {
    claimed: Result<Vec<ClaimedDelivery>, StoreError>,
    took: Duration,
}

impl ClaimDone {
    /// Whether it succeeded and found none waiting.
    fn took_none(&self) -> bool {
        matches!(&self.claimed, Ok(claimed) if claimed.is_empty())
    }
}

/// The deliveries of a key claimed behind the one a task is sending, in order.
struct Successors {
    waiting: VecDeque<ClaimedDelivery>,
    /// Claims of successors made so far.
    claims: u32,
    /// How long the run's successful attempts take, averaged over the last eight or so: its
    /// pace, without the waits between attempts (a claim waited for).
    pace: Option<Duration>,
    /// How long the run's last claim of successors took.
    claim_took: Duration,
    claimed_at: Instant,
    /// When their lease lapses.
    lease_until: Timestamp,
    /// Whether the last claim took all it could: more may wait behind.
    last_claim_full: bool,
    /// The claim of successors on its way: made ahead, behind the last of `waiting` while
    /// they are sent, or behind the delivery just sent when none was.
    claim: Option<SuccessorClaim>,
    /// Where what is never sent is given back.
    store: Arc<dyn Store>,
}

impl Successors {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            waiting: VecDeque::new(),
            claims: 0,
            pace: None,
            claim_took: Duration::ZERO,
            claimed_at: Instant::now(),
            lease_until: Timestamp::from_micros(0),
            last_claim_full: false,
            claim: None,
            store,
        }
    }

    /// Counts a successful attempt of the run that took `took`.
    fn note_sent(&mut self, took: Duration) {
        self.pace = Some(next_pace(self.pace, took));
    }

    /// Gives back those never sent, and those the claim on its way takes once it is done: the
    /// key's next release makes them due in turn. (On SQLite their leases live in memory
    /// and would otherwise keep them from every claim for a lease.)
    async fn give_back(&mut self) {
        self.give_back_waiting();
        if !self.store.releases_unsent() {
            // Nothing to give back (PostgreSQL: the next claim overwrites the tokens of what
            // this one parks), so nothing to wait for: a claim held up by a database in
            // trouble must not hold up the recording of what was sent. It finishes detached.
            self.claim = None;
            return;
        }
        if let Some(claim) = &mut self.claim {
            // Awaited in place, so that a task aborted meanwhile still gives it back (`drop`).
            let claimed = (&mut claim.task).await;
            self.claim = None;
            give_back_claimed(self.store.as_ref(), claimed);
        }
    }

    fn give_back_waiting(&mut self) {
        if !self.waiting.is_empty() {
            self.store.release_unsent(self.waiting.make_contiguous());
            self.waiting.clear();
        }
    }
}

/// Gives back what a finished claim of successors took (nothing, if it failed).
fn give_back_claimed(store: &dyn Store, claimed: Result<ClaimDone, tokio::task::JoinError>) {
    if let Ok(ClaimDone {
        claimed: Ok(claimed),
        ..
    }) = claimed
    {
        store.release_unsent(&claimed);
    }
}

/// A run's pace (`None` before its first success) after a successful attempt that took
/// `took`: an average over about the last eight.
fn next_pace(pace: Option<Duration>, took: Duration) -> Duration {
    pace.map_or(took, |pace| (pace * 7 + took) / 8)
}

impl Drop for Successors {
    /// A job aborted or panicking mid-run gives back what it holds too: the waiting at once,
    /// a claim on its way when it is done.
    fn drop(&mut self) {
        self.give_back_waiting();
        let Some(claim) = self.claim.take().filter(|_| self.store.releases_unsent()) else {
            return;
        };
        let store = Arc::clone(&self.store);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { give_back_claimed(store.as_ref(), claim.task.await) });
        }
    }
}

/// Attempts one claimed delivery and decides its fate. Exposed so tests can drive a single
/// step without the dispatcher.
pub async fn attempt_delivery(
    client: &DeliveryClient,
    schedule: &RetrySchedule,
    delivery: &ClaimedDelivery,
) -> AttemptRecording {
    attempt_prepared(client, schedule, delivery, None).await
}

/// [`attempt_delivery`], sending `prepared` (prepared from `delivery`) when given.
async fn attempt_prepared(
    client: &DeliveryClient,
    schedule: &RetrySchedule,
    delivery: &ClaimedDelivery,
    prepared: Option<Box<PreparedAttempt>>,
) -> AttemptRecording {
    let plan = plan_of(delivery);
    // An endpoint deleted or disabled after publish gets no attempt, only a record of why.
    if let Some(reason) = why_withheld(&delivery.endpoint) {
        let report = not_sent(plan, Timestamp::now(), reason.to_owned());
        return decide(
            report,
            OnFailure::Dead,
            schedule,
            delivery.schedule_attempt,
            &mut rand::thread_rng(),
            delivery.lease,
        );
    }
    let report = match prepared {
        Some(prepared) => send(client, plan, *prepared).await,
        None => execute(client, plan).await,
    };
    decide(
        report,
        OnFailure::Retry,
        schedule,
        delivery.schedule_attempt,
        &mut rand::thread_rng(),
        delivery.lease,
    )
}

/// What an attempt of `delivery` is made from.
pub(super) fn plan_of(delivery: &ClaimedDelivery) -> AttemptPlan<'_> {
    AttemptPlan {
        delivery_id: delivery.delivery_id,
        attempt_number: delivery.attempt_number,
        event: &delivery.event,
        endpoint: &delivery.endpoint,
        signing: &delivery.signing,
        sequence: delivery.sequence,
        credentials: &delivery.credentials,
    }
}

/// Why the endpoint takes no more attempts, if it does not.
fn why_withheld(endpoint: &Endpoint) -> Option<&'static str> {
    if endpoint.deleted_at.is_some() {
        Some("endpoint deleted")
    } else if !endpoint.active {
        Some("endpoint inactive")
    } else {
        None
    }
}

/// What a failed attempt leads to, apart from a `410 Gone`, which is always dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// Another attempt along the schedule, or dead after its last attempt.
    Retry,
    /// Dead: the endpoint was deleted or set inactive, so no request was sent.
    Dead,
}

/// Turns a report into what to store: success, a scheduled retry, or dead.
///
/// A 2xx is a success. A 410 is dead and disables the endpoint. Any other failure is retried
/// after the schedule's next delay for the attempt that failed (its place in the schedule,
/// `schedule_attempt`, which a recovery starts afresh; jittered with `rng`, and at least the
/// receiver's `Retry-After`), unless that was the schedule's last attempt or `on_failure`
/// says dead.
fn decide(
    mut report: AttemptReport,
    on_failure: OnFailure,
    schedule: &RetrySchedule,
    schedule_attempt: u32,
    rng: &mut impl Rng,
    lease: LeaseToken,
) -> AttemptRecording {
    let attempt = &mut report.attempt;
    let mut disable_endpoint = None;
    let mut exhausted = false;
    match (report.outcome.class, on_failure) {
        (OutcomeClass::Success, _) => attempt.outcome = Outcome::Success,
        (OutcomeClass::Gone, _) => {
            attempt.outcome = Outcome::Dead;
            disable_endpoint = Some("receiver answered 410 Gone".to_owned());
            exhausted = true;
        }
        (OutcomeClass::Failure, OnFailure::Dead) => attempt.outcome = Outcome::Dead,
        (OutcomeClass::Failure, OnFailure::Retry) => {
            let delay = schedule.next_delay(schedule_attempt, rng, report.outcome.retry_after);
            match delay.and_then(|delay| chrono::Duration::from_std(delay).ok()) {
                Some(delay) => {
                    attempt.outcome = Outcome::Retry;
                    attempt.next_attempt_at = Some(attempt.occurred_at.add(delay));
                }
                None => {
                    attempt.outcome = Outcome::Dead;
                    exhausted = true;
                }
            }
        }
    }
    AttemptRecording {
        attempt: report.attempt,
        disable_endpoint,
        exhausted,
        lease,
        successor: None,
    }
}

#[cfg(test)]
mod tests;
