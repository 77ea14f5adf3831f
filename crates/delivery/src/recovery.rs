//! Advances recoveries in the background: each step puts one chunk of the oldest unfinished
//! recovery's matches back in the queue (the store's `advance_recoveries`, one transaction),
//! then wakes the worker. Steps follow each other while there is work; then the task waits to
//! be told of a new recovery, or polls, since another node (or a run before a restart) may
//! have left one unfinished.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::Timestamp;
use herald_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events of the window one step looks at, and so the most matches it puts back in the
/// queue: enough that a large recovery moves fast, few enough that a step's transaction stays
/// short.
pub const CHUNK: u32 = 500;

/// How often an idle task looks for recoveries it was not told about.
pub const POLL: Duration = Duration::from_secs(1);

/// After a failed step (the database is away), the wait before the next.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: advances recoveries, waking `deliveries` after each step that put
/// work in the queue. `started` is signalled when a recovery is asked for.
pub async fn run(
    store: Arc<dyn Store>,
    started: Arc<Notify>,
    deliveries: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match store.advance_recoveries(Timestamp::now(), CHUNK).await {
            Ok(true) => {
                deliveries.notify_one();
                // Yield between chunks, so a long recovery shares the runtime fairly.
                tokio::task::yield_now().await;
                continue;
            }
            Ok(false) => POLL,
            Err(error) => {
                tracing::warn!(error = %error, "advancing a recovery failed; will try again");
                RETRY_AFTER_FAILURE
            }
        };
        tokio::select! {
            () = started.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
