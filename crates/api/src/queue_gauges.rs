//! The queue gauges of `GET /metrics` (`herald_deliveries_due`, `herald_deliveries_scheduled`,
//! `herald_oldest_due_delivery_age_seconds`), computed off the scrape.
//!
//! **A scrape never waits for the backlog.** Reading the queue costs the store work that
//! follows the endpoints with pending deliveries and [`QUEUE_COUNT_LIMIT`], and on a
//! churned PostgreSQL table more; a scrape must cost the same whatever the queue holds. So a
//! scrape serves the last computed values while they are younger than
//! [`QueueGaugeSettings::max_age`]. When they are older, it starts a computation (or joins the
//! one running: at most one per process at a time), waits for it at most
//! [`QueueGaugeSettings::wait`] (by default not at all), and otherwise serves the last values;
//! the computation goes on in its own task and its values serve the next scrape. So by
//! default a scrape's values are those of the reading the scrape before it started, and
//! `herald_queue_gauges_age_seconds` says how old: waiting even 100 ms made a scrape follow
//! the backlog again once a reading took longer (1,000,000 due over 5,000 endpoints:
//! BENCHMARKS.md, tenth session). A failed computation is retried
//! by the next scrape, whatever the age. Until a process has a successful reading there are
//! no last values to serve (the gauges would say an empty queue), so a scrape then waits up to
//! [`NO_GOOD_READING_WAIT`] instead: after a restart, when a backlog is most likely. It waits as
//! long for the retry after a failed reading, so that one failure does not leave the next
//! scrape saying storage is down (`herald_storage_up`) when the retry succeeds.
//!
//! This module must not decide `herald_storage_up` by itself: the scrape does, from its own
//! round trip to storage (`Store::ping`) and [`QueueGauges::last_failed`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_domain::Timestamp;
use herald_store::{QueueStats, Store, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// The most deliveries each queue count reads: a count at this value means "at least this
/// many" (docs/operations.md, "Metrics and alerts").
pub const QUEUE_COUNT_LIMIT: u64 = 100_000;

/// How long a scrape waits for a reading when the last did not succeed (none yet, or it
/// failed): well within Prometheus' default scrape timeout of 10 s.
pub const NO_GOOD_READING_WAIT: Duration = Duration::from_secs(5);

/// When the queue gauges are computed again, fixed at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGaugeSettings {
    /// Values younger than this are served as they are (`HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS`);
    /// zero computes them at every scrape.
    pub max_age: Duration,
    /// How long a scrape waits for the computation it started or joined before it serves the
    /// last values (a scrape with no good last values, none yet or the last reading failed,
    /// waits [`NO_GOOD_READING_WAIT`]).
    pub wait: Duration,
}

impl Default for QueueGaugeSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(5),
            wait: Duration::ZERO,
        }
    }
}

/// The queue gauges and the one computation that refreshes them.
#[derive(Debug)]
pub(crate) struct QueueGauges {
    due: Gauge,
    scheduled: Gauge,
    oldest_due_age_seconds: Gauge,
    /// Seconds since the served values were computed.
    age_seconds: Gauge,
    refresh: Mutex<Refresh>,
}

/// What the last computation left, and the running one. The lock is never held across an
/// `await`.
#[derive(Debug, Default)]
struct Refresh {
    /// When the last successful computation finished: how old the served values are.
    succeeded_at: Option<Instant>,
    /// The last computation could not read the queue.
    failed: bool,
    /// Says `true` once the running computation finished; `None` when none runs.
    running: Option<watch::Receiver<bool>>,
}

impl QueueGauges {
    /// Gauges registered by the caller; no values until the first scrape computes them.
    pub(crate) fn new(
        due: Gauge,
        scheduled: Gauge,
        oldest_due_age_seconds: Gauge,
        age_seconds: Gauge,
    ) -> Self {
        Self {
            due,
            scheduled,
            oldest_due_age_seconds,
            age_seconds,
            refresh: Mutex::new(Refresh::default()),
        }
    }

    /// Brings the gauges up to date as far as `settings` ask, without waiting longer than
    /// `settings.wait` for storage.
    pub(crate) async fn refresh(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        settings: QueueGaugeSettings,
    ) {
        let (running, wait) = {
            let mut refresh = self.lock();
            // Without a good last reading there is nothing right to serve: wait for the next.
            let wait = if refresh.succeeded_at.is_some() && !refresh.failed {
                settings.wait
            } else {
                settings.wait.max(NO_GOOD_READING_WAIT)
            };
            // After a failure the values are the last successful reading's: never fresh.
            let fresh = !refresh.failed
                && refresh
                    .succeeded_at
                    .is_some_and(|at| at.elapsed() < settings.max_age);
            let running = if fresh {
                None
            } else if let Some(running) = &refresh.running {
                Some(running.clone())
            } else {
                Some(self.start(&mut refresh, store))
            };
            (running, wait)
        };
        if let Some(mut running) = running {
            // Waiting gives up after `wait`; the computation does not.
            let _ = tokio::time::timeout(wait, running.wait_for(|done| *done)).await;
        }
        let succeeded_at = self.lock().succeeded_at;
        let age = succeeded_at.map_or(0, |at| at.elapsed().as_secs());
        self.age_seconds.set(i64::try_from(age).unwrap_or(i64::MAX));
    }

    /// Whether the last computation failed to read the queue.
    pub(crate) fn last_failed(&self) -> bool {
        self.lock().failed
    }

    fn start(
        self: &Arc<Self>,
        refresh: &mut Refresh,
        store: &Arc<dyn Store>,
    ) -> watch::Receiver<bool> {
        let (done, running) = watch::channel(false);
        refresh.running = Some(running.clone());
        let gauges = Arc::clone(self);
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let now = Timestamp::now();
            let result = store.queue_stats(now, QUEUE_COUNT_LIMIT).await;
            gauges.finish(now, result);
            done.send_replace(true);
        });
        running
    }

    fn finish(&self, now: Timestamp, result: Result<QueueStats, StoreError>) {
        let failed = match result {
            Ok(stats) => {
                self.due.set(i64::try_from(stats.due).unwrap_or(i64::MAX));
                self.scheduled
                    .set(i64::try_from(stats.scheduled).unwrap_or(i64::MAX));
                let age = stats.oldest_due_at.map_or(0, |oldest| {
                    (now.as_micros() - oldest.as_micros()) / 1_000_000
                });
                self.oldest_due_age_seconds.set(age.max(0));
                false
            }
            Err(error) => {
                tracing::warn!(error = %error, "metrics: reading the queue from storage failed");
                true
            }
        };
        let mut refresh = self.lock();
        refresh.failed = failed;
        if !failed {
            refresh.succeeded_at = Some(Instant::now());
        }
        refresh.running = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Refresh> {
        self.refresh
            .lock()
            .expect("the refresh state is never poisoned: no code panics while holding it")
    }
}
