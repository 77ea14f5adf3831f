//! Leases, on both backends: a leased delivery is not claimable until its lease lapses, a
//! refill claim reads only the endpoints it names, and a worker whose lease lapsed and was
//! taken over records its attempt without overwriting the newer claimant's outcome.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;

use herald_domain::{Event, EventId, EventOrigin, Org, OrgId, Outcome, Timestamp};
use herald_store::{AttemptFilter, ClaimScope, PageRequest, Store};

use support::{EVENT_TYPE, claim, create_endpoint, event, on_postgres, on_sqlite, recording};

#[tokio::test]
async fn sqlite_lease_lapse_and_takeover() {
    on_sqlite(lease_lapse_and_takeover).await;
}

#[tokio::test]
async fn postgres_lease_lapse_and_takeover() {
    on_postgres(lease_lapse_and_takeover).await;
}

#[tokio::test]
async fn sqlite_claim_over_every_endpoint() {
    on_sqlite(claim_over_every_endpoint).await;
}

#[tokio::test]
async fn postgres_claim_over_every_endpoint() {
    on_postgres(claim_over_every_endpoint).await;
}

/// A claim over every endpoint finds every endpoint with due deliveries, however large
/// another's backlog, takes at most `per_endpoint_limit` of each, oldest first, and leaves
/// out the endpoints it is told to.
async fn claim_over_every_endpoint(store: Arc<dyn Store>) {
    // Arrange: a backlog of 40 events on one endpoint, then one event for two others.
    let start = Timestamp::now().add(chrono::Duration::seconds(-10));
    let org = Org {
        id: OrgId::new(),
        name: "Scan".to_owned(),
        created_at: start,
    };
    store.create_org(&org).await.expect("creating the org");
    let backlogged = create_endpoint(store.as_ref(), org.id, start).await;
    let backlog: Vec<Event> = (0..40)
        .map(|n| event(org.id, start.add(chrono::Duration::milliseconds(n))))
        .collect();
    store
        .publish_events(&backlog)
        .await
        .expect("publishing the backlog");
    let quiet = create_endpoint(store.as_ref(), org.id, start).await;
    let excepted = create_endpoint(store.as_ref(), org.id, start).await;
    let late = start.add(chrono::Duration::seconds(1));
    let published = store
        .publish_events(&[event(org.id, late)])
        .await
        .expect("publishing the late event");
    assert_eq!(
        published[0].endpoints, 3,
        "the late event fans out to all three"
    );

    // Act: claim over every endpoint but one, at most 16 of each.
    let now = Timestamp::now();
    let claimed = claim(store.as_ref(), now, ClaimScope::AnyExcept(vec![excepted])).await;

    // Assert: 16 of the backlog (its oldest), the quiet endpoint's one, nothing excepted.
    let of = |endpoint_id| {
        claimed
            .iter()
            .filter(|delivery| delivery.endpoint.id == endpoint_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(backlogged).len(),
        16,
        "at most per_endpoint_limit of one endpoint"
    );
    assert!(
        of(backlogged)
            .iter()
            .all(|delivery| delivery.event.created_at
                < start.add(chrono::Duration::milliseconds(16))),
        "the backlog's oldest first"
    );
    assert_eq!(
        of(quiet).len(),
        1,
        "an endpoint behind another's backlog is found"
    );
    assert!(
        of(excepted).is_empty(),
        "an excepted endpoint is left alone"
    );

    // A second claim over every endpoint takes the backlog's next 16, never the same twice.
    let again = claim(store.as_ref(), now, ClaimScope::AnyExcept(vec![excepted])).await;
    assert_eq!(again.len(), 16);
    assert!(
        again.iter().all(|delivery| claimed
            .iter()
            .all(|first| first.delivery_id != delivery.delivery_id)),
        "a leased delivery is not claimed again"
    );
}

async fn lease_lapse_and_takeover(store: Arc<dyn Store>) {
    // Arrange: one organization, two endpoints, one event fanned out to both.
    let now = Timestamp::now();
    let org = Org {
        id: OrgId::new(),
        name: "Leases".to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    let first = create_endpoint(store.as_ref(), org.id, now).await;
    let second = create_endpoint(store.as_ref(), org.id, now).await;
    let event = Event {
        id: EventId::new(),
        org_id: org.id,
        event_type: EVENT_TYPE.to_owned(),
        data: "{}".to_owned(),
        idempotency_key: None,
        ordering_key: None,
        origin: EventOrigin::Publish,
        created_at: now,
        traceparent: None,
    };
    let published = store.publish_events(&[event]).await.expect("publishing");
    assert_eq!(published[0].endpoints, 2);

    // A refill names one endpoint and gets only its delivery.
    let mut claimed = claim(
        store.as_ref(),
        now,
        ClaimScope::Endpoints(vec![(first, 16)]),
    )
    .await;
    assert_eq!(
        claimed.len(),
        1,
        "a refill of one endpoint takes its one delivery"
    );
    let held = claimed.remove(0);
    assert_eq!(held.endpoint.id, first);
    let stats = store.queue_stats(now, u64::MAX).await.expect("queue stats");
    assert_eq!(
        (stats.due, stats.scheduled),
        (1, 1),
        "the leased delivery is not due until its lease ends"
    );

    // While the lease holds, nobody can claim the delivery again.
    let others = claim(store.as_ref(), now, ClaimScope::AnyExcept(Vec::new())).await;
    assert_eq!(
        others
            .iter()
            .map(|delivery| delivery.endpoint.id)
            .collect::<Vec<_>>(),
        vec![second],
        "only the unleased delivery is claimable"
    );
    let disable_before = now.add(chrono::Duration::days(-5));
    store
        .record_attempts(
            &[recording(&others[0], Outcome::Success, None, now)],
            disable_before,
        )
        .await
        .expect("recording a success under a live lease");

    // Once it lapses, another worker takes it over under a new token.
    let lapsed = now.add(chrono::Duration::seconds(61));
    let mut taken = claim(store.as_ref(), lapsed, ClaimScope::AnyExcept(vec![second])).await;
    assert_eq!(
        taken.len(),
        1,
        "the lapsed lease makes the delivery claimable"
    );
    let takeover = taken.remove(0);
    assert_eq!(takeover.delivery_id, held.delivery_id);
    assert_ne!(takeover.lease, held.lease);

    // Act: the new claimant schedules a retry; then the old one reports a success late.
    let retry_at = lapsed.add(chrono::Duration::seconds(600));
    store
        .record_attempts(
            &[recording(&takeover, Outcome::Retry, Some(retry_at), lapsed)],
            disable_before,
        )
        .await
        .expect("recording the new claimant's attempt");
    store
        .record_attempts(
            &[recording(&held, Outcome::Success, None, lapsed)],
            disable_before,
        )
        .await
        .expect("recording the stale attempt");

    // Assert: both attempts are on record, and the delivery follows the new claimant.
    let attempts = store
        .list_attempts(
            org.id,
            &AttemptFilter {
                endpoint_id: Some(first),
                ..AttemptFilter::default()
            },
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await
        .expect("listing attempts");
    assert_eq!(attempts.items.len(), 2, "every attempt made is recorded");
    let stats = store
        .queue_stats(retry_at.add(chrono::Duration::seconds(-1)), u64::MAX)
        .await
        .expect("queue stats");
    assert_eq!(
        (stats.due, stats.scheduled),
        (0, 1),
        "the stale success must not settle the delivery: it waits for the retry"
    );
    let due = claim(
        store.as_ref(),
        retry_at,
        ClaimScope::Endpoints(vec![(first, 16)]),
    )
    .await;
    assert_eq!(
        due.len(),
        1,
        "the retry comes due when the new claimant said"
    );
    assert_eq!(due[0].attempt_number, 2);
}
