//! Whether the store accepts writes right now.
//!
//! A database can answer reads while refusing every write: a full disk, an I/O error, a file
//! system turned read-only, a PostgreSQL server out of space. Each backend reports the outcome
//! of its commits here; while the last one failed for such a reason, readiness answers 503
//! (probing with one small write at most once a [`PROBE_INTERVAL`], so the store is seen to
//! recover without any traffic), `/metrics` shows `herald_storage_writable 0`, and one log
//! line marks each change of state.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::StoreError;

/// How often readiness may probe a store whose writes fail: often enough to notice recovery
/// within a readiness period, rarely enough that hammering `/readyz` costs no more than one
/// small commit a second.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What `/metrics` shows of the store's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStatus {
    /// `false` from a write refused for an outage until the next write that succeeds.
    pub writable: bool,
    /// Writes refused for an outage since the process started.
    pub failures_total: u64,
}

/// The shared record of write outcomes of one store.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failing: AtomicBool,
    failures_total: AtomicU64,
    /// When readiness last probed, so a flood of probes makes at most one write a second.
    last_probe: Mutex<Option<Instant>>,
}

impl WriteHealth {
    /// A write committed: the store accepts writes.
    pub(crate) fn succeeded(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!("storage accepts writes again");
        }
    }

    /// A write failed. Only outages (`Unavailable`) count: a conflict or a missing row says
    /// nothing about the disk.
    pub(crate) fn failed(&self, error: &StoreError) {
        let StoreError::Unavailable(cause) = error else {
            return;
        };
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::error!(
                error = %cause,
                "storage refuses writes: publishing answers 503 and recording waits until it accepts them again"
            );
        }
    }

    /// Records the outcome of a write and hands it back.
    pub(crate) fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(error) => self.failed(error),
        }
        result
    }

    pub(crate) fn status(&self) -> WriteStatus {
        WriteStatus {
            writable: !self.failing.load(Ordering::Acquire),
            failures_total: self.failures_total.load(Ordering::Relaxed),
        }
    }

    /// Whether readiness should write to find out: only while writes fail, and at most once a
    /// [`PROBE_INTERVAL`]. `None` means the store is writable; `Some(false)` that it is not
    /// and was probed too recently to probe again.
    pub(crate) fn probe_due(&self) -> Option<bool> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let mut last = self
            .last_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < PROBE_INTERVAL) {
            return Some(false);
        }
        *last = Some(now);
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage() -> StoreError {
        StoreError::Unavailable(sqlx::Error::PoolTimedOut)
    }

    #[test]
    fn an_outage_makes_the_store_unwritable_until_a_write_succeeds() {
        let health = WriteHealth::default();
        assert!(health.status().writable);
        assert_eq!(health.probe_due(), None, "a writable store is not probed");

        health.failed(&StoreError::Conflict);
        assert!(health.status().writable, "a conflict is not an outage");

        health.failed(&outage());
        health.failed(&outage());
        assert_eq!(
            health.status(),
            WriteStatus {
                writable: false,
                failures_total: 2
            }
        );
        assert_eq!(health.probe_due(), Some(true), "the first probe is due");
        assert_eq!(
            health.probe_due(),
            Some(false),
            "the next waits an interval"
        );

        let _ = health.observe(Ok::<(), StoreError>(()));
        assert!(health.status().writable);
        assert_eq!(health.status().failures_total, 2);
    }
}
