//! Probing in the store, on both backends: an endpoint disabled for its failures is handed out
//! for a probe once a round (so one node probes it), and a probe's 2xx re-enables it and starts
//! a recovery whose window reaches the moment of enabling, so an event published while the
//! probe was in flight is caught up too.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{DisabledReason, Org, OrgId, Outcome, Timestamp};
use herald_store::{ClaimScope, Store};

use support::{claim, create_endpoint, event, on_postgres, on_sqlite, recording};

#[tokio::test]
async fn sqlite_a_probe_re_enables_and_recovers_up_to_the_moment_of_enabling() {
    on_sqlite(probe_re_enables_and_recovers).await;
}

#[tokio::test]
async fn postgres_a_probe_re_enables_and_recovers_up_to_the_moment_of_enabling() {
    on_postgres(probe_re_enables_and_recovers).await;
}

async fn probe_re_enables_and_recovers(store: Arc<dyn Store>) {
    // Arrange: an endpoint whose first delivery failed, disabled for it at once.
    let start = Timestamp::now();
    let org = Org {
        id: OrgId::new(),
        name: "Probed".to_owned(),
        created_at: start,
    };
    store.create_org(&org).await.expect("creating the org");
    let endpoint_id = create_endpoint(store.as_ref(), org.id, start).await;
    store
        .publish_events(&[event(org.id, Timestamp::now())])
        .await
        .expect("publishing");
    let claimed = claim(
        store.as_ref(),
        Timestamp::now(),
        ClaimScope::AnyExcept(Vec::new()),
    )
    .await;
    assert_eq!(claimed.len(), 1);
    let failed_at = Timestamp::now();
    let failure = recording(&claimed[0], Outcome::Dead, None, failed_at);
    let later = Timestamp::from_micros(failed_at.as_micros() + 1);
    store
        .record_attempts(&[failure], later)
        .await
        .expect("recording the failure");
    let endpoint = store
        .get_endpoint(org.id, endpoint_id)
        .await
        .expect("the endpoint");
    assert!(!endpoint.active);
    assert_eq!(
        endpoint.health.disabled_reason,
        Some(DisabledReason::Failing)
    );

    // Act 1: two looks for probes in the same round, a second after the disable.
    let interval = Duration::from_secs(1);
    let round = Timestamp::from_micros(failed_at.as_micros() + 1_000_000);
    let week = Duration::from_secs(7 * 86_400);
    let first = store
        .take_due_probes(round, interval, week, 10)
        .await
        .expect("taking");
    let second = store
        .take_due_probes(round, interval, week, 10)
        .await
        .expect("taking");

    // Assert: handed out once.
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].endpoint.id, endpoint_id);
    assert!(
        second.is_empty(),
        "a probed endpoint is not handed out again this round"
    );

    // Act 2: an event published while the probe is in flight, then the probe's 2xx.
    let probe_sent = Timestamp::now();
    let during_probe = store
        .publish_events(&[event(org.id, Timestamp::now())])
        .await
        .expect("publishing");
    assert_eq!(
        during_probe[0].endpoints, 0,
        "the endpoint is still inactive"
    );
    let recovery = store
        .enable_after_probe(endpoint_id, probe_sent)
        .await
        .expect("enabling")
        .expect("a recovery");

    // Assert: active again, and the recovery matches the dead delivery and the event
    // published during the probe.
    let endpoint = store
        .get_endpoint(org.id, endpoint_id)
        .await
        .expect("the endpoint");
    assert!(endpoint.active);
    assert_eq!(endpoint.health.disabled_reason, None);
    assert_eq!(endpoint.health.failing_since, None);
    assert!(recovery.scope.include_missing);
    assert!(
        recovery.scope.until > probe_sent,
        "the window reaches the enabling"
    );
    assert_eq!(recovery.matched, 2, "{recovery:?}");
    assert!(
        store
            .enable_after_probe(endpoint_id, Timestamp::now())
            .await
            .expect("enabling again")
            .is_none(),
        "an endpoint already active is left alone"
    );
}
