//! Retention (docs/api.md#retention): events and their payloads are kept 30 days, attempt
//! records 90 days, then purged in bounded batches so one purge never holds the database long.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::Timestamp;
use herald_store::{PurgeReport, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How long things are kept, and how often the purge runs.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Events older than this are purged (once no delivery of theirs is pending).
    pub events: Duration,
    /// Attempt records older than this are purged.
    pub attempts: Duration,
    /// Time between purges.
    pub interval: Duration,
    /// Rows of each kind per transaction.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: Duration::from_secs(30 * 24 * 60 * 60),
            attempts: Duration::from_secs(90 * 24 * 60 * 60),
            interval: Duration::from_secs(10 * 60),
            batch: 1_000,
        }
    }
}

/// Purges everything expired now, batch after batch, and reports the totals.
pub async fn purge_once(
    store: &dyn Store,
    config: &RetentionConfig,
) -> Result<PurgeReport, StoreError> {
    let now = Timestamp::now();
    let before =
        |age: Duration| now.add(-chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
    let mut total = PurgeReport::default();
    loop {
        let report = store
            .purge_expired(before(config.events), before(config.attempts), config.batch)
            .await?;
        total.events += report.events;
        total.attempts += report.attempts;
        if report.events < u64::from(config.batch) && report.attempts < u64::from(config.batch) {
            return Ok(total);
        }
    }
}

/// Runs [`purge_once`] every `interval` until shutdown.
pub async fn run(store: Arc<dyn Store>, config: RetentionConfig, shutdown: CancellationToken) {
    loop {
        match purge_once(store.as_ref(), &config).await {
            Ok(report) if report.events + report.attempts > 0 => {
                tracing::info!(
                    events = report.events,
                    attempts = report.attempts,
                    "purged expired history"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "retention purge failed; will try again"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
