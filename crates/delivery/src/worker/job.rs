//! One delivery's task: wait for a slot of its endpoint, attempt, decide what comes next
//! (success, a retry along the schedule, or dead), and hand the result to the recorder. It
//! never writes to the store itself: the recorder does, in batches.

use std::sync::Arc;

use herald_domain::trace::TraceParent;
use herald_domain::{Endpoint, Outcome, Timestamp};
use herald_store::{AttemptRecording, ClaimedDelivery, LeaseToken};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc};
use tracing::Instrument as _;

use super::slots::EndpointSlots;
use crate::attempt::{AttemptPlan, AttemptReport, execute, not_sent};
use crate::client::{DeliveryClient, OutcomeClass};
use crate::retry::RetrySchedule;
use crate::telemetry::DeliveryTracer;

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
}

impl Job {
    pub(super) async fn run(self, delivery: ClaimedDelivery, endpoint_slot: Arc<Semaphore>) {
        let endpoint_id = delivery.endpoint.id;
        let permit = endpoint_slot.acquire_owned().await;
        // Boxed, so the attempt's state (the HTTP exchange, kilobytes) is allocated only once
        // the task holds a slot: the many tasks claimed ahead and waiting stay small.
        // The attempt's log lines carry its trace id. A debug span: with the default `info`
        // logging it is disabled at its call site, and its fields are never formatted.
        let span = tracing::debug_span!(
            "attempt",
            trace_id = %TraceParent::trace_id_hex_of(&delivery.event),
            endpoint_id = %endpoint_id,
            event_id = %delivery.event.id,
            attempt = delivery.attempt_number,
        );
        let recording = Box::pin(attempt_delivery(&self.client, &self.schedule, &delivery))
            .instrument(span)
            .await;
        drop(permit);
        if let Some(tracer) = &self.tracer {
            tracer.record_attempt(&delivery.event, &recording.attempt);
        }
        let delivered = recording.attempt.outcome == Outcome::Success;
        if self.slots.release(endpoint_id, delivered) {
            self.unsaturated.notify_one();
        }
        // A closed channel means the recorder is gone (shutdown); the lease will bring the
        // delivery back.
        let _ = self.record_tx.send(recording).await;
    }
}

/// Attempts one claimed delivery and decides its fate. Exposed so tests can drive a single
/// step without the dispatcher.
pub async fn attempt_delivery(
    client: &DeliveryClient,
    schedule: &RetrySchedule,
    delivery: &ClaimedDelivery,
) -> AttemptRecording {
    let plan = AttemptPlan {
        delivery_id: delivery.delivery_id,
        attempt_number: delivery.attempt_number,
        event: &delivery.event,
        endpoint: &delivery.endpoint,
        signing: &delivery.signing,
        sequence: delivery.sequence,
        credentials: &delivery.credentials,
    };
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
    let report = execute(client, plan).await;
    decide(
        report,
        OnFailure::Retry,
        schedule,
        delivery.schedule_attempt,
        &mut rand::thread_rng(),
        delivery.lease,
    )
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
    }
}

#[cfg(test)]
mod tests;
