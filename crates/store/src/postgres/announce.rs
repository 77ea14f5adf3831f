//! Telling every node that deliveries were stored: after a transaction that stored pending
//! deliveries commits, this node sends `NOTIFY` on [`CHANNEL`](super::listen::CHANNEL) in a
//! statement of its own, which every node's listener ([`listen`](super::listen)) hears.
//!
//! Not from inside the storing transaction (migration 0017 had a trigger do that): PostgreSQL
//! takes one database-wide lock for a transaction that notifies, at its commit, and holds it
//! until the commit has reached the disk, so every publish waited for every other publish's
//! disk flush in turn. 32 clients each inserting deliveries committed 261 transactions a
//! second with the trigger and 1,876 without it (pgbench on this machine, BENCHMARKS.md). A
//! transaction that only notifies writes nothing to the log, so it holds that lock for
//! microseconds.
//!
//! Notifications are folded: while one is on its way, any number of further announcements
//! make one more, sent after it. A notification is a hint to claim now, so one that follows
//! every commit is all a listener needs; a lost one costs at most a poll.
//!
//! This node's own worker is woken in memory at once, and its notifications carry this
//! store's [`node`](Announcer::node) token, by which its own listener knows and ignores its
//! echo. Woken by the echo too, the worker made a second claim for every lone publish, which
//! found nothing: one claim in three at a light, steady load (BENCHMARKS.md, `churned`).

use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::Notify;

use super::listen::CHANNEL;
use crate::wakeup::LocalWakeup;

/// Longest [`Announcer::flushed`] waits.
const FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the notifications of one store.
#[derive(Debug)]
pub(crate) struct Announcer {
    pool: PgPool,
    state: Mutex<State>,
    /// This store's token, the payload of its notifications.
    node: String,
    /// This node's worker, once it listens.
    local: LocalWakeup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No notification on its way.
    Idle,
    /// One on its way.
    Sending,
    /// One on its way, and deliveries stored since it was sent: one more follows.
    SendingAgain,
}

impl Announcer {
    /// Notifies through connections of `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            state: Mutex::new(State::Idle),
            node: uuid::Uuid::now_v7().to_string(),
            local: LocalWakeup::default(),
        }
    }

    /// The payload of this store's notifications, unique to it.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Wakes `wakeup` at every announcement from now on, in memory.
    pub(crate) fn wake_locally(&self, wakeup: Arc<Notify>) {
        self.local.set(wakeup);
    }

    /// Tells this node's worker now and every node soon that deliveries were committed: a
    /// notification starts now unless one is on its way, in which case one more follows it.
    pub(crate) fn announce(self: &Arc<Self>) {
        self.local.wake();
        let mut state = self
            .state
            .lock()
            .expect("the announcer lock is never poisoned");
        match *state {
            State::Idle => {
                *state = State::Sending;
                tokio::spawn(Arc::clone(self).send());
            }
            State::Sending => *state = State::SendingAgain,
            State::SendingAgain => {}
        }
    }

    /// Waits until no notification is on its way, or [`FLUSH_WITHIN`] has passed (a
    /// database that does not answer costs the other nodes a poll, not the caller's exit).
    /// Polled, for the one caller that needs it, a process about to exit.
    pub(crate) async fn flushed(&self) {
        let deadline = tokio::time::Instant::now() + FLUSH_WITHIN;
        while *self
            .state
            .lock()
            .expect("the announcer lock is never poisoned")
            != State::Idle
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Sends notifications until no announcement is left unsent.
    async fn send(self: Arc<Self>) {
        loop {
            let notify = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&self.node);
            if let Err(error) = notify.execute(&self.pool).await {
                // The other nodes find the deliveries at their next poll.
                tracing::debug!(%error, "announcing new deliveries failed");
            }
            let mut state = self
                .state
                .lock()
                .expect("the announcer lock is never poisoned");
            if *state == State::SendingAgain {
                *state = State::Sending;
            } else {
                *state = State::Idle;
                return;
            }
        }
    }
}
