//! A store wakes its own worker as it commits deliveries, on both backends, and several nodes on
//! one PostgreSQL database learn of each other's deliveries at once: a store that stores
//! deliveries wakes every store that listens (LISTEN/NOTIFY, sent after the commit), instead of
//! leaving them to their next poll. Storing anything else wakes no one.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{Event, Timestamp};
use herald_store::Store;
use herald_store::postgres::{PostgresOptions, PostgresStore};
use tokio::sync::Notify;
use tokio::time::timeout;

use support::{
    cipher, create_endpoint, create_org, event, on_postgres, on_postgres_database, on_sqlite,
};

/// Far longer than a notification takes on loopback, short enough for a failing test.
const WAKE_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn postgres_a_publish_on_one_node_wakes_another() {
    on_postgres_database(|publishing, database| async move {
        let (_listening, wakeup) = listening_node(&database.url()).await;
        let now = Timestamp::now();
        let org = create_org(publishing.as_ref(), "Two nodes", now).await;
        create_endpoint(publishing.as_ref(), org.id, now).await;
        assert!(
            timeout(Duration::from_millis(500), wakeup.notified())
                .await
                .is_err(),
            "an organization and an endpoint are no deliveries"
        );

        let published = publishing
            .publish_events(&[event(org.id, now)])
            .await
            .expect("publishing on the first node");
        assert_eq!(published[0].endpoints, 1);
        timeout(WAKE_WITHIN, wakeup.notified())
            .await
            .expect("the second node is woken by the first node's publish");
    })
    .await;
}

#[tokio::test]
async fn postgres_a_process_that_exits_right_after_publishing_still_wakes_the_other_nodes() {
    on_postgres_database(|store, database| async move {
        let (_listening, wakeup) = listening_node(&database.url()).await;
        let now = Timestamp::now();
        let org = create_org(store.as_ref(), "A short-lived publisher", now).await;
        create_endpoint(store.as_ref(), org.id, now).await;

        // Like `herald events publish`: a runtime of its own, dropped (with every task still
        // on it) as soon as the publish and its announcement are done. A current-thread
        // runtime runs a spawned task only when the main one waits, so a notification left
        // on its way is lost every time, not only when the exit wins a race.
        let url = database.url();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let publishing = PostgresStore::open(&url, &PostgresOptions::default(), cipher())
                    .await
                    .expect("opening the publisher's store");
                let published = publishing
                    .publish_events(&[event(org.id, now)])
                    .await
                    .expect("publishing");
                assert_eq!(published[0].endpoints, 1);
                publishing.flush_announcements().await;
            });
        })
        .await
        .expect("the publishing process");

        timeout(WAKE_WITHIN, wakeup.notified())
            .await
            .expect("the running node is told before the publisher exits");
    })
    .await;
}

#[tokio::test]
async fn sqlite_a_store_wakes_its_own_worker_when_it_commits_deliveries() {
    on_sqlite(|store| a_store_wakes_its_own_worker_when_it_commits_deliveries(store, false)).await;
}

#[tokio::test]
async fn postgres_a_store_wakes_its_own_worker_when_it_commits_deliveries() {
    on_postgres(|store| a_store_wakes_its_own_worker_when_it_commits_deliveries(store, true)).await;
}

/// No route wakes the worker for a publish: the store does, at the commit. `listens`: the
/// store also wakes it once when its listener starts (PostgreSQL).
async fn a_store_wakes_its_own_worker_when_it_commits_deliveries(
    store: Arc<dyn Store>,
    listens: bool,
) {
    let wakeup = Arc::new(Notify::new());
    store.wake_on_new_deliveries(Arc::clone(&wakeup));
    if listens {
        timeout(WAKE_WITHIN, wakeup.notified())
            .await
            .expect("the listener wakes the worker once it listens");
    }
    let not_woken = |what: &'static str| {
        let wakeup = Arc::clone(&wakeup);
        async move {
            assert!(
                timeout(Duration::from_millis(300), wakeup.notified())
                    .await
                    .is_err(),
                "{what} woke the worker"
            );
        }
    };

    let now = Timestamp::now();
    let org = create_org(store.as_ref(), "One node", now).await;
    let published = store
        .publish_events(&[event(org.id, now)])
        .await
        .expect("publishing to no endpoint");
    assert_eq!(published[0].endpoints, 0);
    not_woken("an event nobody is subscribed to").await;
    create_endpoint(store.as_ref(), org.id, now).await;
    not_woken("an organization and an endpoint").await;

    let published = store
        .publish_events(&[event(org.id, now)])
        .await
        .expect("publishing");
    assert_eq!(published[0].endpoints, 1);
    timeout(Duration::from_secs(1), wakeup.notified())
        .await
        .expect("the publish's commit wakes the worker");
    not_woken("the echo of its own notification").await;

    let keyed = || Event {
        ordering_key: Some("subscription-1".to_owned()),
        ..event(org.id, now)
    };
    store.publish_events(&[keyed()]).await.expect("publishing");
    timeout(Duration::from_secs(1), wakeup.notified())
        .await
        .expect("the first event of a key is due at once");
    store.publish_events(&[keyed()]).await.expect("publishing");
    not_woken("an event parked behind its key's pending one").await;
}

/// Another node on the database at `url`, and the wake-up of its worker, once its listener has
/// started: a node that starts listening wakes its worker once, to look for work it may have
/// missed before, and that wake-up is taken here.
async fn listening_node(url: &str) -> (PostgresStore, Arc<Notify>) {
    let listening = PostgresStore::open(url, &PostgresOptions::default(), cipher())
        .await
        .expect("opening the listening node's store");
    let wakeup = Arc::new(Notify::new());
    listening.wake_on_new_deliveries(Arc::clone(&wakeup));
    timeout(WAKE_WITHIN, wakeup.notified())
        .await
        .expect("the listener wakes the worker once it listens");
    (listening, wakeup)
}
