//! The retention purge's walk through expired events (`Store::purge_expired`), on both
//! backends: a batch looks at no more expired events than its size, kept ones (a delivery
//! still pending) included, and the next batch goes on after the last it looked at, ties of
//! `created_at` broken by id; only events whose deliveries are finished go.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use herald_domain::{Event, EventId, Outcome, Timestamp};
use herald_store::{ClaimScope, PurgeBatch, PurgePosition, Store, StoreError};

use support::{claim, create_endpoint, create_org, event, on_postgres, on_sqlite, recording};

#[tokio::test]
async fn sqlite_a_purge_batch_looks_at_its_size_of_expired_events_and_goes_on_after_them() {
    on_sqlite(a_purge_batch_looks_at_its_size_and_goes_on).await;
}

#[tokio::test]
async fn postgres_a_purge_batch_looks_at_its_size_of_expired_events_and_goes_on_after_them() {
    on_postgres(a_purge_batch_looks_at_its_size_and_goes_on).await;
}

async fn a_purge_batch_looks_at_its_size_and_goes_on(store: Arc<dyn Store>) {
    // Arrange: six expired events to one endpoint, three created at one instant and three at
    // the next, so that ties of `created_at` fall inside and across batches of two.
    let now = Timestamp::now();
    let first = now.add(chrono::Duration::seconds(-20));
    let second = now.add(chrono::Duration::seconds(-19));
    let org = create_org(store.as_ref(), "Retention", first).await;
    create_endpoint(store.as_ref(), org.id, first).await;
    let events: Vec<Event> = [first, first, first, second, second, second]
        .into_iter()
        .map(|created_at| event(org.id, created_at))
        .collect();
    store.publish_events(&events).await.expect("publishing");
    // The order the purge walks them in.
    let mut walk: Vec<PurgePosition> = events
        .iter()
        .map(|event| PurgePosition {
            created_at: event.created_at,
            event_id: event.id,
        })
        .collect();
    walk.sort_by_key(|at| (at.created_at, at.event_id.as_uuid()));
    // The first, fourth and sixth keep a delivery pending; the others finish.
    let finished: HashSet<EventId> = [1, 2, 4].map(|n| walk[n].event_id).into();
    let claimed = claim(store.as_ref(), now, ClaimScope::AnyExcept(Vec::new())).await;
    assert_eq!(claimed.len(), 6, "one delivery per event");
    let done: Vec<_> = claimed
        .iter()
        .filter(|delivery| finished.contains(&delivery.event.id))
        .map(|delivery| recording(delivery, Outcome::Success, None, now))
        .collect();
    store
        .record_attempts(&done, Timestamp::from_micros(0))
        .await
        .expect("recording");
    let purge = |events_after| {
        let store = Arc::clone(&store);
        async move {
            let report = store
                .purge_expired(&PurgeBatch {
                    events_before: now,
                    // No attempt expires: only the events' walk is under test.
                    attempts_before: Timestamp::from_micros(0),
                    size: 2,
                    events_after,
                })
                .await
                .expect("purging");
            (report.events, report.events_reached, report.events_done)
        }
    };

    // Act and assert: each batch looks at two, removes the finished among them only, and the
    // next starts after them.
    assert_eq!(purge(None).await, (1, Some(walk[1]), false));
    assert_eq!(purge(Some(walk[1])).await, (1, Some(walk[3]), false));
    assert_eq!(purge(Some(walk[3])).await, (1, Some(walk[5]), false));
    assert_eq!(purge(Some(walk[5])).await, (0, Some(walk[5]), true));
    for at in &walk {
        let kept = store.get_event(org.id, at.event_id).await;
        if finished.contains(&at.event_id) {
            assert!(
                matches!(kept, Err(StoreError::NotFound)),
                "a finished event is removed"
            );
        } else {
            assert!(kept.is_ok(), "an event with a pending delivery is kept");
        }
    }
    // A purge that starts again from the oldest looks at the kept ones once more.
    assert_eq!(purge(None).await, (0, Some(walk[3]), false));
}
