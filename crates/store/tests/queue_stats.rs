//! The queue's counts (`Store::queue_stats`), on both backends: due and scheduled split at
//! `now`, the oldest due delivery found from the per-endpoint heads, and each count exact up
//! to the limit it is given and that limit above it.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;

use herald_domain::{Event, Org, OrgId, Timestamp};
use herald_store::Store;

use support::{create_endpoint, event, on_postgres, on_sqlite};

#[tokio::test]
async fn sqlite_queue_stats_split_at_now_and_stop_at_the_limit() {
    on_sqlite(queue_stats_split_at_now_and_stop_at_the_limit).await;
}

#[tokio::test]
async fn postgres_queue_stats_split_at_now_and_stop_at_the_limit() {
    on_postgres(queue_stats_split_at_now_and_stop_at_the_limit).await;
}

async fn queue_stats_split_at_now_and_stop_at_the_limit(store: Arc<dyn Store>) {
    // Arrange: 40 events, a millisecond apart, each to three endpoints: 120 deliveries.
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    let org = Org {
        id: OrgId::new(),
        name: "Counts".to_owned(),
        created_at: start,
    };
    store.create_org(&org).await.expect("creating the org");
    for _ in 0..3 {
        create_endpoint(store.as_ref(), org.id, start).await;
    }
    let backlog: Vec<Event> = (0..40)
        .map(|n| event(org.id, start.add(chrono::Duration::milliseconds(n))))
        .collect();
    store
        .publish_events(&backlog)
        .await
        .expect("publishing the backlog");
    let stats = |now: Timestamp, limit: u64| {
        let store = Arc::clone(&store);
        async move {
            let stats = store.queue_stats(now, limit).await.expect("queue stats");
            (stats.due, stats.scheduled, stats.oldest_due_at)
        }
    };

    // Act and assert: every delivery due, the oldest the first event's.
    let now = Timestamp::now();
    assert_eq!(stats(now, u64::MAX).await, (120, 0, Some(start)));
    // Before the first: all scheduled, none due.
    let before = start.add(chrono::Duration::seconds(-1));
    assert_eq!(stats(before, u64::MAX).await, (0, 120, None));
    // Between: the first 21 events' deliveries due, the other 19's scheduled.
    let between = start.add(chrono::Duration::milliseconds(20));
    assert_eq!(stats(between, u64::MAX).await, (63, 57, Some(start)));
    // A limit below a count stops that count at the limit, and only that count.
    assert_eq!(stats(between, 60).await, (60, 57, Some(start)));
    assert_eq!(stats(between, 10).await, (10, 10, Some(start)));
}
