//! Waking this node when another node stores deliveries: after every transaction that stores
//! pending deliveries commits, its node notifies the channel [`CHANNEL`] ([`announce`](super::announce)),
//! and each node keeps one connection LISTENing on it. Without it, a node learns of work published
//! through another node only at its next poll (200 ms by default), which is most of a
//! several-node cluster's publish-to-receipt latency.
//!
//! A notification is only a hint to claim now (its payload names the store that sent it,
//! nothing more), and losing one costs at most a poll interval, so the listener never blocks
//! anything. `PgListener` reconnects by itself; notifications sent while it was away are gone,
//! so a reconnection wakes the worker too. The node's own announcements wake its worker in
//! memory, so the listener ignores their echo: each carries the announcing store's token
//! ([`Announcer::node`](super::announce::Announcer::node)).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The channel new deliveries are announced on.
pub(super) const CHANNEL: &str = "herald_deliveries";

/// How long to wait before listening again after the database refused.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Listens on [`CHANNEL`] and wakes `wakeup` at each notification, until the task is aborted
/// (it ends with the runtime). The listening connection is its own, opened with the store's
/// settings, so it never takes one of the store pool's connections.
/// Notifications whose payload is `own` (this node's) are ignored.
pub(crate) fn spawn(store_pool: &PgPool, wakeup: Arc<Notify>, own: String) -> JoinHandle<()> {
    let options = (*store_pool.connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    tokio::spawn(async move {
        loop {
            let Err(error) = listen(&pool, &wakeup, &own).await;
            tracing::debug!(%error, "listening for new deliveries failed; trying again");
            tokio::time::sleep(RETRY_AFTER).await;
        }
    })
}

async fn listen(pool: &PgPool, wakeup: &Notify, own: &str) -> Result<Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Whatever was stored before the LISTEN took effect is found by the claim this causes.
    wakeup.notify_one();
    loop {
        // `try_recv` answers `None` when the connection was lost; the next call reconnects and
        // listens again, and anything notified meanwhile is lost, so the worker looks now.
        match listener.try_recv().await? {
            Some(notification) if notification.payload() == own => {}
            Some(_) | None => wakeup.notify_one(),
        }
    }
}
