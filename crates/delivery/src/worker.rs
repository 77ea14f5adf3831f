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
//! when its assignments drop to a low water mark or when its last claim came back full; it
//! claims *over every endpoint* (skipping full ones) at start, when a publish signals new
//! work, and every poll interval, busy or not, so retries coming due at other endpoints are
//! found while one endpoint's backlog keeps it busy ([`ClaimPlan`]). So a busy endpoint is
//! fed from its own index range however large the backlog, and a publish for an idle
//! endpoint is claimed at once. Claims run as tasks of their own, up to
//! [`WorkerConfig::claims_in_flight`] at once (one by default: on two cores a second claim
//! measured no faster, BENCHMARKS.md).
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
    AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, LeaseToken, Store, StoreError,
};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
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
    /// Claims on their way at once: while one waits for the database, the next may start
    /// (for endpoints other than those the first is refilling).
    pub claims_in_flight: usize,
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
            claims_in_flight: 1,
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
/// the global bound on work in flight to the endpoints that answer. So is an endpoint not
/// heard from yet: a receiver that hangs would otherwise be claimed 3 × limit ahead before
/// its first timeout, and ten of them held half the global bound (the `noisy` benchmark);
/// a receiver that answers is refilled at the larger size from its first success on. Everything assigned is
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
    /// Whether its last finished attempt succeeded (false until one has finished).
    answering: bool,
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
            Some(slot) if slot.answering => self.limit.saturating_mul(2),
            _ => self.limit / 2,
        }
    }

    /// Most of the endpoint's deliveries one refill takes.
    fn refill_batch(&self, slot: Option<&EndpointSlot>) -> usize {
        match slot {
            Some(slot) if slot.answering => self.limit.saturating_mul(2),
            _ => self.limit,
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
            answering: false,
        });
        slot.assigned += 1;
        Arc::clone(&slot.semaphore)
    }

    /// Frees one of the endpoint's assignments after an attempt that `delivered` or not;
    /// `true` when that takes it down to its low water, or when it starts answering at or
    /// below its (now higher) low water, so the dispatcher, which skipped it, has its backlog
    /// to claim again.
    fn release(&self, endpoint_id: EndpointId, delivered: bool) -> bool {
        let mut slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        let Some(slot) = slots.get_mut(&endpoint_id) else {
            return false;
        };
        let started_answering = delivered && !slot.answering;
        slot.answering = delivered;
        let low_water = self.low_water(Some(slot));
        let reached_low_water =
            slot.assigned - 1 <= low_water && (slot.assigned > low_water || started_answering);
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
    /// filled up again meanwhile and those a claim is refilling already (when it comes back
    /// it asks again for any it may have left more of).
    fn take_refills(&self, refilling: &[EndpointId]) -> Vec<(EndpointId, u32)> {
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
            .filter(|id| !refilling.contains(id))
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

/// What the dispatcher claims next, and when.
///
/// Refills come first (an endpoint at its low water), each endpoint in at most one claim at a
/// time. A claim over every endpoint runs at start, after a publish signals new work, every
/// poll interval, and again while such claims come back full; only one runs at a time, it
/// skips full endpoints and those being refilled, and one that found nothing pauses the next
/// for four times as long as it took, so publishes arriving by the thousand cannot keep the
/// database busy with scans that find nothing. After a failed claim none starts until a
/// backoff (100 ms, doubling to 5 s) has passed.
struct ClaimPlan {
    /// Whether to claim over every endpoint.
    look_everywhere: bool,
    /// No claim over every endpoint starts before this (pacing after an empty one).
    look_everywhere_after: Instant,
    /// When the poll next asks for a claim over every endpoint. Kept across iterations, so a
    /// steady stream of refills cannot postpone it: retries coming due elsewhere are found.
    next_poll: Instant,
    /// No claim starts before this (after a failure).
    paused_until: Instant,
    backoff: Duration,
    /// Claims on their way.
    in_flight: HashMap<tokio::task::Id, Arc<ClaimRequest>>,
}

impl ClaimPlan {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);

    fn new(now: Instant) -> Self {
        Self {
            look_everywhere: true,
            look_everywhere_after: now,
            next_poll: now,
            paused_until: now,
            backoff: Self::FIRST_BACKOFF,
            in_flight: HashMap::new(),
        }
    }

    /// Deliveries the claims on their way may bring: counted against the global bound.
    fn reserved(&self) -> usize {
        self.in_flight
            .values()
            .map(|request| request.limit as usize)
            .sum()
    }

    /// The next claim to start, if one should start now with room for `capacity` deliveries.
    fn next(
        &mut self,
        slots: &EndpointSlots,
        capacity: usize,
        config: &WorkerConfig,
        now: Instant,
    ) -> Option<ClaimRequest> {
        if capacity == 0 || now < self.paused_until {
            return None;
        }
        if now >= self.next_poll {
            self.look_everywhere = true;
        }
        let refilling: Vec<EndpointId> = self
            .in_flight
            .values()
            .flat_map(|request| match &request.scope {
                ClaimScope::Endpoints(endpoints) => endpoints.iter().map(|(id, _)| *id).collect(),
                ClaimScope::AnyExcept(_) => Vec::new(),
            })
            .collect();
        let refills = slots.take_refills(&refilling);
        let scanning = self
            .in_flight
            .values()
            .any(|request| matches!(request.scope, ClaimScope::AnyExcept(_)));
        let scope = if !refills.is_empty() {
            ClaimScope::Endpoints(refills)
        } else if self.look_everywhere && !scanning && now >= self.look_everywhere_after {
            self.look_everywhere = false;
            self.next_poll = now + config.poll_interval;
            let mut except = slots.full();
            except.extend(refilling);
            ClaimScope::AnyExcept(except)
        } else {
            return None;
        };
        Some(ClaimRequest {
            now: Timestamp::now(),
            limit: u32::try_from(capacity)
                .unwrap_or(u32::MAX)
                .min(config.claim_batch),
            lease: config.lease,
            scope,
            per_endpoint_limit: u32::try_from(config.max_in_flight_per_endpoint)
                .unwrap_or(u32::MAX),
        })
    }

    fn started(&mut self, id: tokio::task::Id, request: Arc<ClaimRequest>) {
        self.in_flight.insert(id, request);
    }

    fn finished(&mut self, id: tokio::task::Id) -> Option<Arc<ClaimRequest>> {
        self.in_flight.remove(&id)
    }

    fn succeeded(&mut self, request: &ClaimRequest, claimed: usize, took: Duration) {
        tracing::debug!(
            claimed,
            refill = matches!(request.scope, ClaimScope::Endpoints(_)),
            took_us = took.as_micros() as u64,
            "claimed deliveries"
        );
        self.backoff = Self::FIRST_BACKOFF;
        if matches!(request.scope, ClaimScope::AnyExcept(_)) {
            if claimed == request.limit as usize {
                // A full claim may have left more behind.
                self.look_everywhere = true;
            } else if claimed == 0 {
                // Scanning at most a fifth of the time.
                self.look_everywhere_after = Instant::now() + took * 4;
            }
        }
    }

    /// Pauses claiming after a failure; returns for how long.
    fn failed(&mut self, now: Instant) -> Duration {
        let retry_in = self.backoff;
        self.paused_until = now + retry_in;
        self.backoff = (self.backoff * 2).min(Self::MAX_BACKOFF);
        self.look_everywhere = true;
        retry_in
    }

    /// When a claim could start that cannot start now, if nothing else wakes the dispatcher
    /// first: a claim over every endpoint waiting for its pacing, the next poll, or the end of
    /// a pause after a failure.
    /// While a claim over every endpoint is on its way there is none: its return wakes the
    /// dispatcher.
    fn wake_at(&self) -> Option<Instant> {
        let scanning = self
            .in_flight
            .values()
            .any(|request| matches!(request.scope, ClaimScope::AnyExcept(_)));
        let look = match (scanning, self.look_everywhere) {
            (true, _) => return None,
            (false, true) => self.look_everywhere_after,
            (false, false) => self.next_poll,
        };
        Some(look.max(self.paused_until))
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
        // While results cannot be recorded (a full disk), nothing more is claimed: what was
        // attempted keeps its lease until its result is stored, and new attempts would only
        // add results that cannot be stored either.
        let (recording_stalled_tx, mut recording_stalled) = watch::channel(false);
        let recorder = tokio::spawn(record_loop(
            Arc::clone(&self.store),
            record_rx,
            recording_stalled_tx,
            self.metrics.clone(),
            self.config.auto_disable_after,
        ));
        let slots = Arc::new(EndpointSlots::new(self.config.max_in_flight_per_endpoint));
        // Signalled when a full endpoint drops to its low water: its backlog may be due, and
        // waiting for the next poll would leave it idle.
        let unsaturated = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let mut claims: JoinSet<(Duration, Result<Vec<ClaimedDelivery>, StoreError>)> =
            JoinSet::new();
        let mut plan = ClaimPlan::new(Instant::now());
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            // Start claims while there is room: one waiting for the database need not hold up
            // the next endpoint's refill.
            let claims_full = loop {
                if claims.len() >= self.config.claims_in_flight.max(1) {
                    break true;
                }
                if *recording_stalled.borrow() {
                    break false;
                }
                let capacity = self.capacity(&tasks, &plan);
                let Some(request) = plan.next(&slots, capacity, &self.config, Instant::now())
                else {
                    break false;
                };
                let store = Arc::clone(&self.store);
                let claim = Arc::new(request);
                let handle = claims.spawn({
                    let claim = Arc::clone(&claim);
                    async move {
                        let started = Instant::now();
                        let claimed = store.claim_due_deliveries(&claim).await;
                        (started.elapsed(), claimed)
                    }
                });
                plan.started(handle.id(), claim);
            };
            let at_capacity = self.capacity(&tasks, &plan) == 0;
            // Only a dispatcher that could start a claim waits for a time: one at capacity
            // waits for a task to finish, one with all its claims out for one to come back.
            let wake_at = if claims_full || at_capacity || *recording_stalled.borrow() {
                None
            } else {
                plan.wake_at()
            };
            tokio::select! {
                Some(done) = claims.join_next_with_id(), if !claims.is_empty() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(error) => (error.id(), None),
                    };
                    let Some(request) = plan.finished(id) else { continue };
                    match outcome {
                        Some((took, Ok(claimed))) => {
                            plan.succeeded(&request, claimed.len(), took);
                            self.assign(&request, claimed, &slots, &unsaturated, &record_tx, &mut tasks);
                        }
                        Some((_, Err(error))) => {
                            let retry_in = plan.failed(Instant::now());
                            tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "claiming deliveries failed");
                        }
                        None => {
                            let retry_in = plan.failed(Instant::now());
                            tracing::error!(retry_in_ms = retry_in.as_millis() as u64, "a claim panicked");
                        }
                    }
                }
                Some(_) = tasks.join_next(), if at_capacity && !tasks.is_empty() => {}
                () = self.wakeup.notified() => plan.look_everywhere = true,
                () = unsaturated.notified() => {}
                Ok(()) = recording_stalled.changed() => {}
                () = sleep_until_some(wake_at), if wake_at.is_some() => {}
                () = shutdown.cancelled() => break,
            }
        }
        // Claims still on their way have leased their deliveries: hand those to tasks, which
        // the grace period covers like the rest, instead of leaving them to their leases.
        let claims_back = tokio::time::timeout(self.config.shutdown_grace, async {
            while let Some(done) = claims.join_next_with_id().await {
                let Ok((id, (_, Ok(claimed)))) = done else {
                    continue;
                };
                if let Some(request) = plan.finished(id) {
                    self.assign(
                        &request,
                        claimed,
                        &slots,
                        &unsaturated,
                        &record_tx,
                        &mut tasks,
                    );
                }
            }
        })
        .await;
        if claims_back.is_err() {
            tracing::warn!(
                "a claim did not come back within the grace period; its deliveries wait for their lease"
            );
        }
        self.drain(tasks, record_tx, recorder).await;
    }

    /// Deliveries that may still be claimed without exceeding the global bound: tasks running
    /// or waiting, and what the claims on their way may bring, count against it.
    fn capacity(&self, tasks: &JoinSet<()>, plan: &ClaimPlan) -> usize {
        self.config
            .max_in_flight
            .saturating_sub(tasks.len() + plan.reserved())
    }

    /// Hands claimed deliveries to tasks, and asks for the next refill of every endpoint the
    /// claim may have left more of.
    fn assign(
        &self,
        request: &ClaimRequest,
        claimed: Vec<ClaimedDelivery>,
        slots: &Arc<EndpointSlots>,
        unsaturated: &Arc<Notify>,
        record_tx: &mpsc::Sender<AttemptRecording>,
        tasks: &mut JoinSet<()>,
    ) {
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
                slots: Arc::clone(slots),
                unsaturated: Arc::clone(unsaturated),
            };
            tasks.spawn(job.run(delivery, semaphore));
        }
        // An endpoint whose share came back full may have more; so may every endpoint of a
        // refill cut short by the claim's overall limit.
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

/// Sleeps until `deadline`; never completes without one (a `select!` branch guards on it).
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
/// goes into the next transaction. A failed write is retried (100 ms, doubling to 5 s), never
/// dropped, and while it fails `stalled` says so and the dispatcher claims nothing.
async fn record_loop(
    store: Arc<dyn Store>,
    mut results: mpsc::Receiver<AttemptRecording>,
    stalled: watch::Sender<bool>,
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
                Ok(()) => {
                    stalled.send_if_modified(|stalled| std::mem::replace(stalled, false));
                    break;
                }
                Err(error) => {
                    stalled.send_if_modified(|stalled| !std::mem::replace(stalled, true));
                    tracing::warn!(error = %error, attempts = batch.len(), retry_in_ms = backoff.as_millis() as u64, "recording attempts failed; claims wait until they are stored");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_not_heard_from_is_claimed_ahead_like_a_failing_one_until_it_answers() {
        let slots = EndpointSlots::new(16);
        let endpoint = EndpointId::new();
        for _ in 0..16 {
            slots.assign(endpoint);
        }
        assert_eq!(
            slots.full(),
            vec![endpoint],
            "16 assigned is above the low water (8) of an endpoint not heard from"
        );
        assert!(
            !slots.release(endpoint, false),
            "a failure at 15 assigned stays above 8"
        );
        assert!(
            slots.release(endpoint, true),
            "its first success raises the low water to 32, which 14 assigned is under"
        );
        assert_eq!(slots.take_refills(&[]), vec![(endpoint, 32)]);
        assert!(
            !slots.release(endpoint, true),
            "an answering endpoint below its low water is not asked for again on each answer"
        );
    }

    #[test]
    fn a_failing_endpoint_is_refilled_at_half_its_slots_and_an_answering_one_at_twice() {
        let slots = EndpointSlots::new(16);
        let failing = EndpointId::new();
        for _ in 0..10 {
            slots.assign(failing);
        }
        assert!(!slots.release(failing, false), "10 → 9: above 8");
        assert!(slots.release(failing, false), "9 → 8: the low water");
        assert_eq!(slots.take_refills(&[]), vec![(failing, 16)]);

        let answering = EndpointId::new();
        for _ in 0..34 {
            slots.assign(answering);
        }
        assert!(!slots.release(answering, true), "34 → 33: above 32");
        assert!(slots.release(answering, true), "33 → 32: the low water");
        assert!(
            slots.take_refills(&[answering]).is_empty(),
            "an endpoint a claim is refilling already is left out"
        );
    }
}
