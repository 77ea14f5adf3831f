//! The recorder: writes the results of attempts in batches, one transaction per batch (group
//! commit, which is what keeps SQLite fast with `synchronous=FULL`), and says when recording
//! is stalled. It never drops a result: a failed write is retried until it is stored.
//!
//! While results cannot be recorded (a full disk), nothing more is claimed: what was attempted
//! keeps its lease until its result is stored, and new attempts would only add results that
//! cannot be stored either. So the dispatcher starts no claim while [`Recorder::is_stalled`],
//! sets itself no timer, and wakes on [`Recorder::stalled_changed`] when recording resumes.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{Outcome, Timestamp};
use herald_store::{AttemptRecording, Store};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use crate::metrics::DeliveryMetrics;

/// Most results written in one transaction.
const MAX_BATCH: usize = 512;

/// Results waiting for the recorder before jobs wait to hand theirs on.
const QUEUE: usize = 4096;

/// Only a batch smaller than this waits [`LINGER`] for more (see [`waits_for_more`]).
const LINGER_BELOW: usize = 32;

/// How long a small batch holding the result of a fast run of an ordering key waits for the
/// run's next results (see [`waits_for_more`]). A run's results come one at a time, a receiver
/// round trip apart, and each transaction has a fixed cost (on SQLite a commit's sync and a
/// thread hand-off per statement, on PostgreSQL round trips): a profile of a one-key run to a
/// loopback receiver put a third of Herald's CPU in the SQLite thread, most of it switching
/// threads, on the cores the run's requests need (BENCHMARKS.md, eleventh session). Tokio's
/// timer rounds it up to the next millisecond.
const LINGER: Duration = Duration::from_millis(1);

/// The dispatcher's handle on the recorder task.
pub(super) struct Recorder {
    /// Where jobs send their results; the recorder stops once every sender is gone.
    results: mpsc::Sender<AttemptRecording>,
    /// `true` while writing fails.
    stalled: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Starts recording into `store`; an endpoint failing for `auto_disable_after` is set
    /// inactive as its failures are recorded.
    /// `new_work` is signalled after a batch whose recording released the next delivery of an
    /// ordering key (an update, which the store does not announce; the deliveries of the
    /// operational events a batch publishes are, by the store at its commit).
    pub(super) fn spawn(
        store: Arc<dyn Store>,
        metrics: Option<DeliveryMetrics>,
        auto_disable_after: Duration,
        new_work: Arc<Notify>,
    ) -> Self {
        let (results, receiver) = mpsc::channel::<AttemptRecording>(QUEUE);
        let (stalled_tx, stalled) = watch::channel(false);
        let task = tokio::spawn(record_loop(
            store,
            receiver,
            stalled_tx,
            metrics,
            auto_disable_after,
            new_work,
        ));
        Self {
            results,
            stalled,
            task,
        }
    }

    /// Where a job sends its result.
    pub(super) fn results(&self) -> mpsc::Sender<AttemptRecording> {
        self.results.clone()
    }

    /// Whether writing results fails at the moment.
    pub(super) fn is_stalled(&self) -> bool {
        *self.stalled.borrow()
    }

    /// The flag [`Recorder::is_stalled`] reads, for tasks to look at.
    pub(super) fn stalled_flag(&self) -> watch::Receiver<bool> {
        self.stalled.clone()
    }

    /// Completes when recording stalls or resumes; an error once the recorder is gone.
    pub(super) async fn stalled_changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.stalled.changed().await
    }

    /// Takes no more results and gives the recorder `grace` to store those it has.
    pub(super) async fn finish(self, grace: Duration) {
        let Self { results, task, .. } = self;
        drop(results);
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!(
                "recording did not finish within the grace period; those attempts will be retried"
            );
        }
    }
}

/// Writes results in batches: whatever has arrived while the previous batch was committing
/// goes into the next transaction, up to [`MAX_BATCH`], after waiting [`LINGER`] for more
/// when [`waits_for_more`] says so.
async fn record_loop(
    store: Arc<dyn Store>,
    mut results: mpsc::Receiver<AttemptRecording>,
    stalled: watch::Sender<bool>,
    metrics: Option<DeliveryMetrics>,
    auto_disable_after: Duration,
    new_work: Arc<Notify>,
) {
    let auto_disable_after =
        chrono::Duration::from_std(auto_disable_after).unwrap_or(chrono::Duration::MAX);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = results.recv().await {
        batch.push(first);
        take_waiting(&mut results, &mut batch);
        if waits_for_more(&batch) {
            tokio::time::sleep(LINGER).await;
            take_waiting(&mut results, &mut batch);
        }
        store_batch(
            &*store,
            &mut batch,
            &mut results,
            &stalled,
            auto_disable_after,
        )
        .await;
        // Work the dispatcher cannot know of: it would wait for its next poll.
        if batch.iter().any(creates_due_work) {
            new_work.notify_one();
        }
        if let Some(metrics) = &metrics {
            for recording in &batch {
                metrics.observe(
                    recording.attempt.outcome,
                    recording.attempt.response_time_ms,
                );
            }
        }
        batch.clear();
    }
}

/// Whether `batch` waits [`LINGER`] for more results before it is written: while it is small
/// and holds the result of a run of an ordering key (an attempt whose worker went on with the
/// key's next delivery: [`AttemptRecording::successor`]) answered within `LINGER`, so that the
/// run's next result is likely to arrive meanwhile. Nothing waits on the recording of such a
/// success: its key went on without it. A batch waits not at all when anything else waits on
/// it (a result that makes the next delivery of a key due, one that reports a delivery
/// exhausted or disables an endpoint), nor when it holds no fast run's result: unordered work,
/// and runs to receivers a millisecond or more away, which the wait would not help.
fn waits_for_more(batch: &[AttemptRecording]) -> bool {
    let linger_ms = u64::try_from(LINGER.as_millis()).unwrap_or(u64::MAX);
    let fast_run = |result: &AttemptRecording| {
        result.successor.is_some() && result.attempt.response_time_ms < linger_ms
    };
    let awaited = |result: &AttemptRecording| {
        creates_due_work(result) || result.exhausted || result.disable_endpoint.is_some()
    };
    batch.len() < LINGER_BELOW && batch.iter().any(fast_run) && !batch.iter().any(awaited)
}

/// Adds the results waiting in `results` to `batch`, up to [`MAX_BATCH`].
fn take_waiting(results: &mut mpsc::Receiver<AttemptRecording>, batch: &mut Vec<AttemptRecording>) {
    while batch.len() < MAX_BATCH {
        match results.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

/// Whether storing `recording` makes a parked delivery due: the next of its ordering key (it
/// ended, and its worker is not sending that one itself).
fn creates_due_work(recording: &AttemptRecording) -> bool {
    let attempt = &recording.attempt;
    let ended = attempt.outcome != Outcome::Retry;
    attempt.ordering_key.is_some() && ended && recording.successor.is_none()
}

/// Writes one batch, retrying after a [`Backoff`] until it is stored; `stalled` says whether
/// the last write failed, and changes only when that does. Before each retry the batch takes
/// in every result that has arrived meanwhile: trying to store a result is what keeps its
/// delivery's lease from lapsing (on SQLite), so no result waits in the channel, unguarded,
/// through an outage longer than a lease, to have its delivery claimed and sent again.
async fn store_batch(
    store: &dyn Store,
    batch: &mut Vec<AttemptRecording>,
    results: &mut mpsc::Receiver<AttemptRecording>,
    stalled: &watch::Sender<bool>,
    auto_disable_after: chrono::Duration,
) {
    let mut backoff = Backoff::default();
    loop {
        let disable_failing_before = Timestamp::now().add(-auto_disable_after);
        match store.record_attempts(batch, disable_failing_before).await {
            Ok(()) => {
                stalled.send_if_modified(|stalled| std::mem::replace(stalled, false));
                return;
            }
            Err(error) => {
                stalled.send_if_modified(|stalled| !std::mem::replace(stalled, true));
                let retry_in = backoff.next_pause();
                tracing::warn!(error = %error, attempts = batch.len(), retry_in_ms = retry_in.as_millis() as u64, "recording attempts failed; claims wait until they are stored");
                tokio::time::sleep(retry_in).await;
                while let Ok(next) = results.try_recv() {
                    batch.push(next);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
