//! The pause before retrying a store call that failed: [`FIRST_BACKOFF`], doubling up to
//! [`MAX_BACKOFF`]. The dispatcher pauses claims with it and the recorder retries writes with
//! it. Pure: the caller sleeps.

use std::time::Duration;

/// The pause after the first failure in a row.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause: doubling stops here.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Pauses between retries of a call that keeps failing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The pause after one more failure; the next one will be twice as long, up to
    /// [`MAX_BACKOFF`].
    pub(super) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }

    /// After a success the next failure pauses [`FIRST_BACKOFF`] again.
    pub(super) fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}
