//! Waking this process's worker in memory when a transaction that stored pending deliveries
//! commits, on both backends: every path that stores deliveries (publish, replay, a
//! recovery's missing events, operational events) goes through
//! `shared::ordering::insert_deliveries`, which marks its transaction, so no route has to
//! remember to wake the worker, and none wakes it twice (a second wake-up made a claim that
//! found nothing, one in three at a light load: BENCHMARKS.md, `churned`). Other processes
//! sharing a PostgreSQL database are told by `NOTIFY` (`postgres::announce`).

use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// The worker of this process, once it listens.
#[derive(Debug, Default)]
pub(crate) struct LocalWakeup(OnceLock<Arc<Notify>>);

impl LocalWakeup {
    /// Wakes `wakeup` at every commit that stored deliveries from now on. Set once, by the
    /// one worker a store serves; a second caller is ignored.
    pub(crate) fn set(&self, wakeup: Arc<Notify>) {
        let _ = self.0.set(wakeup);
    }

    /// Deliveries were committed: the worker claims now rather than at its next poll.
    pub(crate) fn wake(&self) {
        if let Some(wakeup) = self.0.get() {
            wakeup.notify_one();
        }
    }
}
