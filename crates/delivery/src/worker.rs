//! The delivery worker: claims due deliveries under a lease, attempts each through the one
//! client, decides what happens next, and records the attempt.
//!
//! Three parts run side by side:
//! - the dispatcher ([`Worker::run`]) claims batches and spawns one task per delivery;
//! - each task waits for a slot of its endpoint, attempts, and hands the result on;
//! - the recorder writes results in batches, one transaction per batch (group commit), which
//!   is what keeps SQLite fast with `synchronous=FULL`.
//!
//! What the dispatcher claims: an endpoint has `limit` slots and up to `4 × limit` deliveries
//! assigned (sending, or claimed ahead and waiting; fewer while it fails), see
//! [`EndpointSlots`]. It *refills* an endpoint, reading just that endpoint's oldest due rows,
//! when its assignments drop to a low water mark or when its last claim came back full; it claims *over every endpoint* (skipping full ones) at
//! start, when a publish signals new work, and every poll interval. So a busy endpoint is fed
//! from its own index range however large the backlog, and a publish for an idle endpoint is
//! claimed at once.
//!
//! Isolation between endpoints: a task holds only its endpoint's slot while it sends, and the
//! dispatcher claims nothing for a full endpoint, so a slow or failing endpoint backs up only
//! itself. A delivery stays leased until its attempt is recorded; if the process dies first,
//! the lease lapses and the delivery is attempted again (at least once, never lost). The
//! lease outlasts four rounds of the longest attempt (the server sets it to six), so the
//! deliveries claimed ahead are sent before it lapses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use herald_domain::{EndpointId, Outcome, Timestamp};
use herald_store::{
    AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, LeaseToken, Store,
};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::attempt::{AttemptPlan, AttemptReport, execute, not_sent};
use crate::client::{DeliveryClient, OutcomeClass};
use crate::metrics::DeliveryMetrics;
use crate::retry::RetrySchedule;

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Delays between attempts.
    pub schedule: RetrySchedule,
    /// Most deliveries in flight (sending or waiting for their endpoint) at once.
    pub max_in_flight: usize,
    /// Most attempts in flight to one endpoint at once.
    pub max_in_flight_per_endpoint: usize,
    /// Most deliveries claimed per query.
    pub claim_batch: u32,
    /// How long a claim holds; must exceed four times the client's total timeout, since an
    /// endpoint's deliveries are claimed up to four rounds of attempts ahead.
    pub lease: Duration,
    /// How often to look for due deliveries when nobody signals new work.
    pub poll_interval: Duration,
    /// An endpoint whose deliveries have all failed for this long is set inactive.
    pub auto_disable_after: Duration,
    /// How long in-flight attempts may take to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            max_in_flight: 1024,
            max_in_flight_per_endpoint: 16,
            claim_batch: 256,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            auto_disable_after: Duration::from_secs(5 * 24 * 60 * 60),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// The worker. Build it, then [`Worker::run`] it until shutdown.
pub struct Worker {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    config: WorkerConfig,
    wakeup: Arc<Notify>,
    metrics: Option<DeliveryMetrics>,
}

/// Slots per endpoint, shared by the dispatcher and the tasks.
///
/// An endpoint may have `limit` attempts sending at once; more are claimed ahead and wait for
/// a slot, so when a burst of answers frees the slots the next attempts start at once instead
/// of after a claim's round trip. An endpoint whose last attempt succeeded is refilled
/// 2 × limit at a time whenever its assignments (sending or waiting) drop to 2 × limit, which
/// keeps between 2 and 4 × limit assigned while its backlog lasts: at least `limit` waiting
/// while a refill is on its way, and one claim per 2 × limit deliveries. An endpoint whose
/// last attempt failed gains nothing from waiting work (it answers slowly or not at all), so
/// it is refilled `limit` at a time at `limit / 2`, holding at most 1.5 × limit and leaving
/// the global bound on work in flight to the endpoints that answer. Everything assigned is
/// sent within four rounds of the longest attempt, inside the lease (the server sets the
/// lease to six).
struct EndpointSlots {
    /// Attempts sending at once to one endpoint.
    limit: usize,
    slots: Mutex<HashMap<EndpointId, EndpointSlot>>,
    /// Endpoints that dropped to their low water since the dispatcher last looked: their
    /// backlog is claimed next, by endpoint, without scanning everyone's due deliveries.
    refills: Mutex<Vec<EndpointId>>,
}

struct EndpointSlot {
    semaphore: Arc<Semaphore>,
    /// Tasks assigned to the endpoint, sending or waiting.
    assigned: usize,
    /// Whether its last finished attempt failed.
    failing: bool,
}

impl EndpointSlots {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            slots: Mutex::default(),
            refills: Mutex::default(),
        }
    }

    /// At or below this many assigned, the endpoint is refilled.
    fn low_water(&self, slot: Option<&EndpointSlot>) -> usize {
        match slot {
            Some(slot) if slot.failing => self.limit / 2,
            _ => self.limit.saturating_mul(2),
        }
    }

    /// Most of the endpoint's deliveries one refill takes.
    fn refill_batch(&self, slot: Option<&EndpointSlot>) -> usize {
        match slot {
            Some(slot) if slot.failing => self.limit,
            _ => self.limit.saturating_mul(2),
        }
    }

    fn assign(&self, endpoint_id: EndpointId) -> Arc<Semaphore> {
        let mut slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        let slot = slots.entry(endpoint_id).or_insert_with(|| EndpointSlot {
            semaphore: Arc::new(Semaphore::new(self.limit)),
            assigned: 0,
            failing: false,
        });
        slot.assigned += 1;
        Arc::clone(&slot.semaphore)
    }

    /// Frees one of the endpoint's assignments after an attempt that `delivered` or not;
    /// `true` when that takes it down to its low water, so the dispatcher, which skipped it,
    /// has its backlog to claim again.
    fn release(&self, endpoint_id: EndpointId, delivered: bool) -> bool {
        let mut slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        let Some(slot) = slots.get_mut(&endpoint_id) else {
            return false;
        };
        slot.failing = !delivered;
        let low_water = self.low_water(Some(slot));
        let reached_low_water = slot.assigned > low_water && slot.assigned - 1 <= low_water;
        slot.assigned -= 1;
        if slot.assigned == 0 {
            slots.remove(&endpoint_id);
        }
        drop(slots);
        if reached_low_water {
            self.refills
                .lock()
                .expect("endpoint refills lock is never poisoned")
                .push(endpoint_id);
        }
        reached_low_water
    }

    /// Asks for a refill of an endpoint whose claim came back full (its backlog may go on)
    /// and that still has room for more.
    fn refill_if_room(&self, endpoint_id: EndpointId) {
        let has_room = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned")
            .get(&endpoint_id)
            .is_some_and(|slot| slot.assigned <= self.low_water(Some(slot)));
        if has_room {
            self.refills
                .lock()
                .expect("endpoint refills lock is never poisoned")
                .push(endpoint_id);
        }
    }

    /// The endpoints to refill, each once and with how many to take, leaving those that
    /// filled up again meanwhile.
    fn take_refills(&self) -> Vec<(EndpointId, u32)> {
        let mut refills = std::mem::take(
            &mut *self
                .refills
                .lock()
                .expect("endpoint refills lock is never poisoned"),
        );
        refills.sort_unstable();
        refills.dedup();
        let slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        refills
            .into_iter()
            .filter_map(|id| {
                let slot = slots.get(&id);
                let has_room = slot.is_none_or(|slot| slot.assigned <= self.low_water(Some(slot)));
                has_room.then(|| {
                    let batch = u32::try_from(self.refill_batch(slot)).unwrap_or(u32::MAX);
                    (id, batch)
                })
            })
            .collect()
    }

    /// Endpoints above their low water: a claim over everyone skips them.
    fn full(&self) -> Vec<EndpointId> {
        let slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        slots
            .iter()
            .filter(|(_, slot)| slot.assigned > self.low_water(Some(slot)))
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Worker {
    /// A worker over `store` sending through `client`. `wakeup` is signalled by publishers so
    /// new work is claimed at once instead of at the next poll.
    pub fn new(
        store: Arc<dyn Store>,
        client: DeliveryClient,
        config: WorkerConfig,
        wakeup: Arc<Notify>,
        metrics: Option<DeliveryMetrics>,
    ) -> Self {
        Self {
            store,
            client,
            config,
            wakeup,
            metrics,
        }
    }

    /// Claims and delivers until `shutdown` is cancelled, then lets in-flight attempts finish
    /// within the grace period and records their results.
    pub async fn run(self, shutdown: CancellationToken) {
        let (record_tx, record_rx) = mpsc::channel::<AttemptRecording>(4096);
        let recorder = tokio::spawn(record_loop(
            Arc::clone(&self.store),
            record_rx,
            self.metrics.clone(),
            self.config.auto_disable_after,
        ));
        let per_endpoint_limit = self.config.max_in_flight_per_endpoint;
        let slots = Arc::new(EndpointSlots::new(per_endpoint_limit));
        // Signalled when a full endpoint drops to its low water: its backlog may be due, and
        // waiting for the next poll would leave it idle.
        let unsaturated = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        // Whether to claim over every endpoint: at start, after a publish or a poll interval,
        // and while such claims come back full.
        let mut look_everywhere = true;
        // A claim over every endpoint that found nothing may have scanned a long backlog of
        // full endpoints (which refills serve); the next one waits four times as long as it
        // took, so publishes arriving by the thousand cannot keep the database busy with
        // scans that find nothing.
        let mut look_everywhere_after = Instant::now();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let capacity = self.config.max_in_flight.saturating_sub(tasks.len());
            if capacity == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let refills = slots.take_refills();
            let scope = if !refills.is_empty() {
                ClaimScope::Endpoints(refills)
            } else if look_everywhere && Instant::now() >= look_everywhere_after {
                ClaimScope::AnyExcept(slots.full())
            } else {
                let next_look = if look_everywhere {
                    look_everywhere_after
                } else {
                    Instant::now() + self.config.poll_interval
                };
                tokio::select! {
                    () = self.wakeup.notified() => look_everywhere = true,
                    () = unsaturated.notified() => {}
                    () = tokio::time::sleep_until(next_look) => look_everywhere = true,
                    () = shutdown.cancelled() => break,
                }
                continue;
            };
            let request = ClaimRequest {
                now: Timestamp::now(),
                limit: u32::try_from(capacity)
                    .unwrap_or(u32::MAX)
                    .min(self.config.claim_batch),
                lease: self.config.lease,
                scope,
                per_endpoint_limit: u32::try_from(per_endpoint_limit).unwrap_or(u32::MAX),
            };
            let claim_started = Instant::now();
            let claimed = match self.store.claim_due_deliveries(&request).await {
                Ok(claimed) => {
                    let took = claim_started.elapsed();
                    tracing::debug!(
                        claimed = claimed.len(),
                        refill = matches!(request.scope, ClaimScope::Endpoints(_)),
                        in_flight = tasks.len(),
                        took_us = took.as_micros() as u64,
                        "claimed deliveries"
                    );
                    backoff = Duration::from_millis(100);
                    if matches!(request.scope, ClaimScope::AnyExcept(_)) {
                        // A full claim may have left more behind.
                        look_everywhere = claimed.len() == request.limit as usize;
                        if claimed.is_empty() {
                            // Scanning at most a fifth of the time.
                            look_everywhere_after = Instant::now() + took * 4;
                        }
                    }
                    claimed
                }
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "claiming deliveries failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    look_everywhere = true;
                    continue;
                }
            };
            let mut claimed_per_endpoint: HashMap<EndpointId, usize> = HashMap::new();
            for delivery in &claimed {
                *claimed_per_endpoint
                    .entry(delivery.endpoint.id)
                    .or_default() += 1;
            }
            for delivery in claimed {
                let semaphore = slots.assign(delivery.endpoint.id);
                let job = Job {
                    client: self.client.clone(),
                    schedule: self.config.schedule.clone(),
                    record_tx: record_tx.clone(),
                    slots: Arc::clone(&slots),
                    unsaturated: Arc::clone(&unsaturated),
                };
                tasks.spawn(job.run(delivery, semaphore));
            }
            // An endpoint whose share came back full may have more; so may every endpoint of
            // a refill cut short by the claim's overall limit.
            let cut_short = claimed_per_endpoint.values().sum::<usize>() >= request.limit as usize;
            for (endpoint_id, count) in &claimed_per_endpoint {
                if *count >= request.most_for(*endpoint_id) as usize {
                    slots.refill_if_room(*endpoint_id);
                }
            }
            if let (true, ClaimScope::Endpoints(refilled)) = (cut_short, &request.scope) {
                for (endpoint_id, _) in refilled {
                    slots.refill_if_room(*endpoint_id);
                }
            }
        }
        self.drain(tasks, record_tx, recorder).await;
    }

    async fn drain(
        &self,
        mut tasks: JoinSet<()>,
        record_tx: mpsc::Sender<AttemptRecording>,
        recorder: tokio::task::JoinHandle<()>,
    ) {
        tracing::info!(
            in_flight = tasks.len(),
            "worker stopping; letting in-flight attempts finish"
        );
        let grace = self.config.shutdown_grace;
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "grace period over; unfinished attempts will be retried after their lease"
            );
            tasks.abort_all();
        }
        drop(record_tx);
        if tokio::time::timeout(grace, recorder).await.is_err() {
            tracing::warn!(
                "recording did not finish within the grace period; those attempts will be retried"
            );
        }
    }
}

/// One delivery's task.
struct Job {
    client: DeliveryClient,
    schedule: RetrySchedule,
    record_tx: mpsc::Sender<AttemptRecording>,
    slots: Arc<EndpointSlots>,
    unsaturated: Arc<Notify>,
}

impl Job {
    async fn run(self, delivery: ClaimedDelivery, endpoint_slot: Arc<Semaphore>) {
        let endpoint_id = delivery.endpoint.id;
        let permit = endpoint_slot.acquire_owned().await;
        // Boxed, so the attempt's state (the HTTP exchange, kilobytes) is allocated only once
        // the task holds a slot: the many tasks claimed ahead and waiting stay small.
        let recording = Box::pin(attempt_delivery(&self.client, &self.schedule, &delivery)).await;
        drop(permit);
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
        endpoint_secret: &delivery.endpoint_secret,
        org_secret: delivery.org_secret.as_ref(),
    };
    // An endpoint deleted or disabled after publish gets no attempt, only a record of why.
    if delivery.endpoint.deleted_at.is_some() {
        return decide(
            not_sent(plan, Timestamp::now(), "endpoint deleted".to_owned()),
            schedule,
            false,
            delivery.lease,
        );
    }
    if !delivery.endpoint.active {
        return decide(
            not_sent(plan, Timestamp::now(), "endpoint inactive".to_owned()),
            schedule,
            false,
            delivery.lease,
        );
    }
    let report = execute(client, plan).await;
    decide(report, schedule, true, delivery.lease)
}

/// Turns a report into what to store: success, a scheduled retry, or dead.
fn decide(
    mut report: AttemptReport,
    schedule: &RetrySchedule,
    retryable: bool,
    lease: LeaseToken,
) -> AttemptRecording {
    let attempt = &mut report.attempt;
    let mut disable_endpoint = None;
    match report.outcome.class {
        OutcomeClass::Success if attempt.outcome == Outcome::Success => {}
        OutcomeClass::Gone => {
            attempt.outcome = Outcome::Dead;
            disable_endpoint = Some("receiver answered 410 Gone".to_owned());
        }
        _ if !retryable => attempt.outcome = Outcome::Dead,
        _ => {
            let delay = schedule.next_delay(
                attempt.attempt,
                &mut rand::thread_rng(),
                report.outcome.retry_after,
            );
            match delay.and_then(|delay| chrono::Duration::from_std(delay).ok()) {
                Some(delay) => {
                    attempt.outcome = Outcome::Retry;
                    attempt.next_attempt_at = Some(attempt.occurred_at.add(delay));
                }
                None => attempt.outcome = Outcome::Dead,
            }
        }
    }
    AttemptRecording {
        attempt: report.attempt,
        disable_endpoint,
        lease,
    }
}

/// Writes results in batches: whatever has arrived while the previous batch was committing
/// goes into the next transaction. A failed write is retried, never dropped.
async fn record_loop(
    store: Arc<dyn Store>,
    mut results: mpsc::Receiver<AttemptRecording>,
    metrics: Option<DeliveryMetrics>,
    auto_disable_after: Duration,
) {
    const MAX_BATCH: usize = 512;
    let auto_disable_after =
        chrono::Duration::from_std(auto_disable_after).unwrap_or(chrono::Duration::MAX);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = results.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match results.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let disable_failing_before = Timestamp::now().add(-auto_disable_after);
            match store.record_attempts(&batch, disable_failing_before).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %error, attempts = batch.len(), "recording attempts failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
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
