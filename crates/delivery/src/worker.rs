//! The delivery worker: claims due deliveries under a lease, attempts each through the one
//! client, decides what happens next, and records the attempt.
//!
//! Three parts run side by side:
//! - the dispatcher ([`Worker::run`], in this file) starts the claims the claim plan
//!   (`claim_plan.rs`) asks for and spawns one task per claimed delivery;
//! - each task (`job.rs`) waits for a slot of its endpoint (`slots.rs`), attempts, decides
//!   what comes next, and hands the result on;
//! - the recorder (`recorder.rs`) writes results in batches, one transaction per batch (group
//!   commit), and while it cannot write the dispatcher claims nothing.
//!
//! What the dispatcher claims: an endpoint has [`WorkerConfig::max_in_flight_per_endpoint`]
//! slots and a few times that many deliveries assigned (sending, or claimed ahead and waiting;
//! fewer while it fails), see `EndpointSlots`. It *refills* an endpoint, reading just that
//! endpoint's oldest due rows, when its assignments drop to a low water mark or when its last
//! claim came back full; it claims *over every endpoint* (skipping full ones) at start, when a
//! publish signals new work, and every [`WorkerConfig::poll_interval`], busy or not, so
//! retries coming due at other endpoints are found while one endpoint's backlog keeps it busy
//! (see `ClaimPlan`). So a busy endpoint is fed from its own index range however large the
//! backlog, and a publish for an idle endpoint is claimed at once. Claims run as tasks of
//! their own, up to [`WorkerConfig::claims_in_flight`] at once (one by default, where a second
//! claim measured no faster on SQLite; two on PostgreSQL, where a claim is a few round trips to
//! the server and endpoints ran dry waiting for the one before: BENCHMARKS.md).
//!
//! Isolation between endpoints: a task holds only its endpoint's slot while it sends, and the
//! dispatcher claims nothing for a full endpoint, so a slow or failing endpoint backs up only
//! itself. A delivery stays leased until its attempt is recorded; if the process dies first,
//! the lease lapses and the delivery is attempted again (at least once, never lost). What an
//! endpoint has assigned is sent within `ROUNDS_ASSIGNED` rounds of the longest attempt, and
//! the server sets the lease to more ([`WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS`] request
//! timeouts), so the deliveries claimed ahead are sent before it lapses.

mod backoff;
mod claim_plan;
#[cfg(test)]
pub(crate) mod fixtures;
mod job;
mod recorder;
mod slots;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald_domain::EndpointId;
use herald_store::{ClaimRequest, ClaimScope, ClaimedDelivery, Store, StoreError};
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::claim_plan::ClaimPlan;
use self::job::Job;
use self::recorder::Recorder;
use self::slots::{EndpointSlots, ROUNDS_ASSIGNED};
use crate::client::DeliveryClient;
use crate::metrics::DeliveryMetrics;
use crate::retry::RetrySchedule;
use crate::telemetry::DeliveryTracer;

pub use self::job::attempt_delivery;

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Delays between attempts.
    pub schedule: RetrySchedule,
    /// Most deliveries in flight (sending or waiting for their endpoint) at once.
    pub max_in_flight: usize,
    /// Most attempts in flight to one endpoint at once: its slots.
    pub max_in_flight_per_endpoint: usize,
    /// Most deliveries claimed per query.
    pub claim_batch: u32,
    /// How long a claim holds. An endpoint's deliveries are claimed up to `ROUNDS_ASSIGNED`
    /// rounds of attempts ahead, so it must exceed that many times the client's total timeout
    /// (the server sets it to [`WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS`] request timeouts).
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
    /// Exports a span per attempt and per claim; `None` (tracing off) costs nothing.
    pub tracer: Option<DeliveryTracer>,
}

impl WorkerConfig {
    /// The default [`WorkerConfig::max_in_flight`]: far above slots × failing endpoints in
    /// ordinary operation.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

    /// The default [`WorkerConfig::max_in_flight_per_endpoint`].
    pub const DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT: usize = 16;

    /// [`WorkerConfig::claims_in_flight`] for a store whose claims are round trips to a
    /// database server (PostgreSQL): while one claim waits for its answer, an endpoint that ran
    /// low meanwhile is refilled by a second rather than after it, so it does not run dry
    /// (BENCHMARKS.md, "2026-12-04 (ninth session)"). An embedded store's claims are local
    /// reads, and there a second one measured no faster: it keeps the default, one.
    pub const NETWORKED_STORE_CLAIMS_IN_FLIGHT: usize = 2;

    /// A lease should last this many request timeouts: more than the rounds of attempts an
    /// endpoint has assigned, so a lease lapses only when its holder died.
    pub const LEASE_IN_REQUEST_TIMEOUTS: u32 = 6;
}

const _: () = assert!(
    WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS as usize > ROUNDS_ASSIGNED,
    "a lease must outlast the rounds of attempts claimed ahead"
);

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_endpoint: Self::DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
            claim_batch: 256,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            claims_in_flight: 1,
            auto_disable_after: Duration::from_secs(5 * 24 * 60 * 60),
            shutdown_grace: Duration::from_secs(20),
            tracer: None,
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

impl Worker {
    /// A worker over `store` sending through `client`. `wakeup` is signalled when deliveries
    /// are stored (by the store, at the commit: `Store::wake_on_new_deliveries`) or made due
    /// (a recovery's revival, a key's release), so new work is claimed at once instead of at
    /// the next poll.
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
        let mut dispatcher = Dispatcher::new(&self, shutdown.clone());
        while !shutdown.is_cancelled() {
            dispatcher.forget_finished_tasks();
            dispatcher.start_claims();
            let at_capacity = dispatcher.at_capacity();
            let wake_at = dispatcher.wake_at();
            // Any of these may let a claim start: a claim's return, a task's end at capacity,
            // a publish, an endpoint down to its low water, recording stalling or resuming,
            // the plan's next time; or it is time to stop.
            tokio::select! {
                Some(done) = dispatcher.claims.join_next_with_id(), if !dispatcher.claims.is_empty() => {
                    dispatcher.claim_returned(done);
                }
                Some(_) = dispatcher.tasks.join_next(), if at_capacity && !dispatcher.tasks.is_empty() => {}
                () = self.wakeup.notified() => dispatcher.plan.new_work(),
                () = dispatcher.unsaturated.notified() => {}
                Ok(()) = dispatcher.recorder.stalled_changed() => {}
                () = sleep_until_some(wake_at), if wake_at.is_some() => {}
                () = shutdown.cancelled() => break,
            }
        }
        dispatcher.assign_claims_on_their_way().await;
        dispatcher.drain().await;
    }
}

/// What a claim's task brings back.
struct ClaimAnswer {
    /// How long the store took.
    took: Duration,
    claimed: Result<Vec<ClaimedDelivery>, StoreError>,
}

/// The state of one [`Worker::run`].
struct Dispatcher<'a> {
    worker: &'a Worker,
    /// One task per delivery, sending or waiting for a slot of its endpoint.
    tasks: JoinSet<()>,
    /// Claims on their way, at most [`WorkerConfig::claims_in_flight`].
    claims: JoinSet<ClaimAnswer>,
    plan: ClaimPlan,
    slots: Arc<EndpointSlots>,
    /// Signalled when a full endpoint drops to its low water: its backlog may be due, and
    /// waiting for the next poll would leave it idle.
    unsaturated: Arc<Notify>,
    recorder: Recorder,
    /// Cancelled at shutdown; tasks stop a run of an ordering key on it.
    stop: CancellationToken,
}

impl<'a> Dispatcher<'a> {
    fn new(worker: &'a Worker, stop: CancellationToken) -> Self {
        let config = &worker.config;
        Self {
            recorder: Recorder::spawn(
                Arc::clone(&worker.store),
                worker.metrics.clone(),
                config.auto_disable_after,
                Arc::clone(&worker.wakeup),
            ),
            slots: Arc::new(EndpointSlots::new(config.max_in_flight_per_endpoint)),
            unsaturated: Arc::new(Notify::new()),
            tasks: JoinSet::new(),
            claims: JoinSet::new(),
            plan: ClaimPlan::new(Instant::now()),
            worker,
            stop,
        }
    }

    fn forget_finished_tasks(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// Deliveries that may still be claimed without exceeding the global bound: tasks running
    /// or waiting, and what the claims on their way may bring, count against it.
    fn capacity(&self) -> usize {
        self.worker
            .config
            .max_in_flight
            .saturating_sub(self.tasks.len() + self.plan.reserved())
    }

    fn at_capacity(&self) -> bool {
        self.capacity() == 0
    }

    fn claims_full(&self) -> bool {
        self.claims.len() >= self.worker.config.claims_in_flight.max(1)
    }

    /// Starts the claims the plan asks for while there is room: one waiting for the database
    /// need not hold up the next endpoint's refill. None starts while recording is stalled.
    fn start_claims(&mut self) {
        while !self.claims_full() && !self.recorder.is_stalled() {
            let capacity = self.capacity();
            let next = self
                .plan
                .next(&self.slots, capacity, &self.worker.config, Instant::now());
            let Some(request) = next else {
                break;
            };
            let store = Arc::clone(&self.worker.store);
            let tracer = self.worker.config.tracer.clone();
            let request = Arc::new(request);
            let handle = self.claims.spawn({
                let request = Arc::clone(&request);
                async move {
                    let started = Instant::now();
                    let started_at = tracer.as_ref().map(|_| std::time::SystemTime::now());
                    let claimed = store.claim_due_deliveries(&request).await;
                    if let (Some(tracer), Some(started_at)) = (&tracer, started_at) {
                        tracer.record_claim(started_at, &request, &claimed);
                    }
                    ClaimAnswer {
                        took: started.elapsed(),
                        claimed,
                    }
                }
            });
            self.plan.started(handle.id(), request);
        }
    }

    /// When to wake if nothing else does. Only a dispatcher that could start a claim waits
    /// for a time: one at capacity waits for a task to finish, one with all its claims out for
    /// one to come back, and one whose recording is stalled for it to resume.
    fn wake_at(&self) -> Option<Instant> {
        if self.claims_full() || self.at_capacity() || self.recorder.is_stalled() {
            None
        } else {
            self.plan.wake_at()
        }
    }

    /// A claim came back (or its task panicked): hands what it claimed to tasks, or pauses
    /// claiming after a failure.
    fn claim_returned(&mut self, done: Result<(tokio::task::Id, ClaimAnswer), JoinError>) {
        let (id, answer) = match done {
            Ok((id, answer)) => (id, Some(answer)),
            Err(error) => (error.id(), None),
        };
        let Some(request) = self.plan.finished(id) else {
            return;
        };
        match answer {
            Some(ClaimAnswer {
                took,
                claimed: Ok(claimed),
            }) => {
                self.plan
                    .succeeded(&request, claimed.len(), took, Instant::now());
                self.assign(&request, claimed);
            }
            Some(ClaimAnswer {
                claimed: Err(error),
                ..
            }) => {
                let retry_in = self.plan.failed(Instant::now());
                tracing::warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "claiming deliveries failed");
            }
            None => {
                let retry_in = self.plan.failed(Instant::now());
                tracing::error!(
                    retry_in_ms = retry_in.as_millis() as u64,
                    "a claim panicked"
                );
            }
        }
    }

    /// Hands claimed deliveries to tasks, and asks for the next refill of every endpoint the
    /// claim may have left more of.
    fn assign(&mut self, request: &ClaimRequest, claimed: Vec<ClaimedDelivery>) {
        let mut claimed_per_endpoint: HashMap<EndpointId, usize> = HashMap::new();
        for delivery in &claimed {
            *claimed_per_endpoint
                .entry(delivery.endpoint.id)
                .or_default() += 1;
        }
        for delivery in claimed {
            let semaphore = self.slots.assign(delivery.endpoint.id);
            let job = Job {
                client: self.worker.client.clone(),
                schedule: self.worker.config.schedule.clone(),
                record_tx: self.recorder.results(),
                slots: Arc::clone(&self.slots),
                unsaturated: Arc::clone(&self.unsaturated),
                tracer: self.worker.config.tracer.clone(),
                store: Arc::clone(&self.worker.store),
                lease: self.worker.config.lease,
                stop: self.stop.clone(),
                recording_stalled: self.recorder.stalled_flag(),
            };
            self.tasks.spawn(job.run(delivery, semaphore));
        }
        // An endpoint whose share came back full may have more; so may every endpoint of a
        // refill cut short by the claim's overall limit.
        let cut_short = claimed_per_endpoint.values().sum::<usize>() >= request.limit as usize;
        for (endpoint_id, count) in &claimed_per_endpoint {
            if *count >= request.most_for(*endpoint_id) as usize {
                self.slots.refill_if_room(*endpoint_id);
            }
        }
        if let (true, ClaimScope::Endpoints(refilled)) = (cut_short, &request.scope) {
            for (endpoint_id, _) in refilled {
                self.slots.refill_if_room(*endpoint_id);
            }
        }
    }

    /// At shutdown: claims still on their way have leased their deliveries, so hands those to
    /// tasks, which the grace period covers like the rest, instead of leaving them to their
    /// leases.
    async fn assign_claims_on_their_way(&mut self) {
        let grace = self.worker.config.shutdown_grace;
        let claims_back = tokio::time::timeout(grace, async {
            while let Some(done) = self.claims.join_next_with_id().await {
                let Ok((
                    id,
                    ClaimAnswer {
                        claimed: Ok(claimed),
                        ..
                    },
                )) = done
                else {
                    continue;
                };
                if let Some(request) = self.plan.finished(id) {
                    self.assign(&request, claimed);
                }
            }
        })
        .await;
        if claims_back.is_err() {
            tracing::warn!(
                "a claim did not come back within the grace period; its deliveries wait for their lease"
            );
        }
    }

    /// Lets the tasks finish within the grace period, then the recorder store their results.
    async fn drain(mut self) {
        tracing::info!(
            in_flight = self.tasks.len(),
            "worker stopping; letting in-flight attempts finish"
        );
        let grace = self.worker.config.shutdown_grace;
        let finished = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                abandoned = self.tasks.len(),
                "grace period over; unfinished attempts will be retried after their lease"
            );
            self.tasks.abort_all();
        }
        self.recorder.finish(grace).await;
    }
}

/// Sleeps until `deadline`; never completes without one (a `select!` branch guards on it).
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
