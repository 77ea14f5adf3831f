//! Retention (docs/api.md#retention): events and their payloads are kept 30 days, attempt
//! records 90 days, then purged in bounded batches so one purge never holds the database long.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::Timestamp;
use herald_store::{PurgeBatch, Store, StoreError};
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

/// What one purge removed in all its batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Events removed (with their finished deliveries).
    pub events: u64,
    /// Attempt records removed.
    pub attempts: u64,
}

/// Purges everything expired now, batch after batch, and reports the totals. It stops between
/// two batches once `shutdown` is cancelled: a node's first purge of months of history takes
/// minutes, far longer than a shutdown may (what is left is the next purge's).
pub async fn purge_once(
    store: &dyn Store,
    config: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Result<Purged, StoreError> {
    let now = Timestamp::now();
    let before =
        |age: Duration| now.add(-chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
    let mut batch = PurgeBatch {
        events_before: before(config.events),
        attempts_before: before(config.attempts),
        size: config.batch,
        events_after: None,
    };
    let mut total = Purged::default();
    loop {
        let report = store.purge_expired(&batch).await?;
        total.events += report.events;
        total.attempts += report.attempts;
        let done = report.events_done && report.attempts < u64::from(config.batch);
        if done || shutdown.is_cancelled() {
            return Ok(total);
        }
        batch.events_after = report.events_reached;
    }
}

/// Runs [`purge_once`] every `interval` until shutdown.
pub async fn run(store: Arc<dyn Store>, config: RetentionConfig, shutdown: CancellationToken) {
    loop {
        match purge_once(store.as_ref(), &config, &shutdown).await {
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

#[cfg(test)]
mod tests {
    use herald_domain::Outcome;
    use herald_store::ClaimedDelivery;

    use super::*;
    use crate::client::{ClientConfig, DeliveryClient};
    use crate::retry::RetrySchedule;
    use crate::test_store::{sqlite_with_events, unscoped_claim};

    /// Ends every delivery of `claimed` dead at once (its endpoint seen as inactive, nothing
    /// is sent), so its event and attempt may be purged.
    async fn end_dead(store: &dyn Store, claimed: Vec<ClaimedDelivery>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = DeliveryClient::new(ClientConfig::default()).expect("the client builds");
        let mut recordings = Vec::new();
        for mut delivery in claimed {
            delivery.endpoint.active = false;
            let recording =
                crate::worker::attempt_delivery(&client, &RetrySchedule::default(), &delivery)
                    .await;
            assert_eq!(recording.attempt.outcome, Outcome::Dead);
            recordings.push(recording);
        }
        store
            .record_attempts(&recordings, Timestamp::from_micros(0))
            .await
            .expect("recording");
    }

    #[tokio::test]
    async fn a_purge_stops_between_batches_once_shutdown_is_asked() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = sqlite_with_events(&directory, 5, None).await;
        // All five events and their attempts may be purged.
        let claimed = store
            .claim_due_deliveries(&unscoped_claim(10))
            .await
            .expect("claiming");
        assert_eq!(claimed.len(), 5);
        end_dead(store.as_ref(), claimed).await;
        let config = RetentionConfig {
            events: Duration::ZERO,
            attempts: Duration::ZERO,
            batch: 2,
            ..RetentionConfig::default()
        };

        let stopping = CancellationToken::new();
        stopping.cancel();
        let first = purge_once(store.as_ref(), &config, &stopping)
            .await
            .expect("purging");
        assert_eq!(
            (first.events, first.attempts),
            (2, 2),
            "one batch, then it stops for the shutdown"
        );
        let rest = purge_once(store.as_ref(), &config, &CancellationToken::new())
            .await
            .expect("purging");
        assert_eq!(
            (rest.events, rest.attempts),
            (3, 3),
            "the next purge takes the rest"
        );
    }

    #[tokio::test]
    async fn a_purge_goes_on_past_expired_events_kept_for_a_pending_delivery() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = sqlite_with_events(&directory, 6, None).await;
        let mut claimed = store
            .claim_due_deliveries(&unscoped_claim(10))
            .await
            .expect("claiming");
        assert_eq!(claimed.len(), 6);
        // The events share their creation time, so a purge walks them by id: the first three
        // keep their deliveries pending (claimed, never recorded), more than a batch of two.
        claimed.sort_by_key(|delivery| delivery.event.id.as_uuid());
        end_dead(store.as_ref(), claimed.split_off(3)).await;
        let config = RetentionConfig {
            events: Duration::ZERO,
            attempts: Duration::from_secs(3600),
            batch: 2,
            ..RetentionConfig::default()
        };

        let purged = tokio::time::timeout(
            Duration::from_secs(10),
            purge_once(store.as_ref(), &config, &CancellationToken::new()),
        )
        .await
        .expect("a purge ends, however many kept events come first")
        .expect("purging");

        assert_eq!(
            purged.events, 3,
            "the three finished events, behind the kept ones"
        );
        for delivery in &claimed {
            assert!(
                store
                    .get_event(delivery.event.org_id, delivery.event.id)
                    .await
                    .is_ok(),
                "an event whose delivery is pending is kept"
            );
        }
    }
}
