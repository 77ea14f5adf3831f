//! The delivery queue is vacuumed by the store when autovacuum does not (this project's
//! PostgreSQL runs with `autovacuum = off`, as CI's does): once enough deliveries were settled
//! and their dead row versions pass the store's threshold, `deliveries` is vacuumed, and a
//! store told never to (`vacuum_after_dead_rows = 0`) leaves it alone. And migrations, the
//! other upkeep of a store's start, are not bound by the statement timeout of its requests.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::time::{Duration, Instant};

use herald_domain::{Org, OrgId, Outcome, Timestamp};
use herald_store::postgres::{PostgresOptions, PostgresStore};
use herald_store::{ClaimRequest, ClaimScope, Store};
use sqlx::Connection as _;

use support::{LEASE, cipher, create_endpoint, event, on_postgres_database, recording};

/// Deliveries per round: the store looks at the table every 2,000 settled deliveries.
const ROUND: usize = 2_000;

#[tokio::test]
async fn postgres_the_store_vacuums_the_queue_once_enough_rows_are_dead() {
    on_postgres_database(|_, database| async move {
        let options = PostgresOptions {
            vacuum_after_dead_rows: 1_000,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::open(&database.url(), &options, cipher())
            .await
            .expect("opening the store");
        churn(&store).await;
        let vacuums = wait_for_vacuum(&database.url(), Duration::from_secs(20)).await;
        assert!(
            vacuums > 0,
            "4,000 settled deliveries leave 8,000 dead rows, past the threshold: deliveries is vacuumed"
        );
    })
    .await;
}

#[tokio::test]
async fn postgres_a_store_told_not_to_vacuum_leaves_the_queue_to_autovacuum() {
    on_postgres_database(|_, database| async move {
        let options = PostgresOptions {
            vacuum_after_dead_rows: 0,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::open(&database.url(), &options, cipher())
            .await
            .expect("opening the store");
        churn(&store).await;
        let vacuums = wait_for_vacuum(&database.url(), Duration::from_secs(3)).await;
        assert_eq!(vacuums, 0, "no VACUUM was run on deliveries");
    })
    .await;
}

/// A node whose migrations must wait (here for a lock on the migration table; in a rolling
/// upgrade, for sqlx's migration lock while another node builds an index) waits however much
/// longer than the statement timeout that takes: its migrations run on a connection of their
/// own. On the pool, the wait was cancelled at the statement timeout and the node failed to
/// start.
#[tokio::test]
async fn postgres_a_node_starting_waits_for_another_nodes_migration_past_the_statement_timeout() {
    on_postgres_database(|_, database| async move {
        let mut other_node = sqlx::PgConnection::connect(&database.url())
            .await
            .expect("connecting as another node");
        let mut migrating = other_node.begin().await.expect("a transaction");
        sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *migrating)
            .await
            .expect("locking the migration table");
        let options = PostgresOptions {
            statement_timeout: Duration::from_millis(200),
            ..PostgresOptions::default()
        };
        let url = database.url();
        let starting =
            tokio::spawn(async move { PostgresStore::open(&url, &options, cipher()).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!starting.is_finished(), "the node waits for the lock");
        migrating
            .commit()
            .await
            .expect("ending the other migration");
        let started = tokio::time::timeout(Duration::from_secs(10), starting)
            .await
            .expect("the node starts once the lock is gone")
            .expect("the start did not panic");
        assert!(
            started.is_ok(),
            "waiting 1 s past a 200 ms statement timeout, the node started: {:?}",
            started.err()
        );
    })
    .await;
}

/// Two rounds of [`ROUND`] deliveries published, claimed and settled; the statistics of the
/// first reach the server's counters (flushed at most a second after a transaction) before
/// the second round's check.
async fn churn(store: &PostgresStore) {
    let now = Timestamp::now();
    let org = Org {
        id: OrgId::new(),
        name: "Churn".to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    let endpoint = create_endpoint(store, org.id, now).await;
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        let events: Vec<_> = (0..ROUND).map(|_| event(org.id, now)).collect();
        store.publish_events(&events).await.expect("publishing");
        let mut settled = 0;
        while settled < ROUND {
            let claimed = store
                .claim_due_deliveries(&ClaimRequest {
                    now: Timestamp::now(),
                    limit: 500,
                    lease: LEASE,
                    scope: ClaimScope::Endpoints(vec![(endpoint, 500)]),
                    per_endpoint_limit: 500,
                })
                .await
                .expect("claiming");
            assert!(!claimed.is_empty(), "every published delivery is claimable");
            let recordings: Vec<_> = claimed
                .iter()
                .map(|delivery| recording(delivery, Outcome::Success, None, Timestamp::now()))
                .collect();
            store
                .record_attempts(&recordings, now)
                .await
                .expect("recording");
            settled += claimed.len();
        }
    }
}

/// How many times `deliveries` was vacuumed by hand (not by autovacuum), once that is more
/// than none or `within` has passed.
async fn wait_for_vacuum(url: &str, within: Duration) -> i64 {
    let mut connection = sqlx::postgres::PgConnection::connect(url)
        .await
        .expect("connecting to the scenario's database");
    let deadline = Instant::now() + within;
    loop {
        // A fresh snapshot of the statistics each time, not the transaction's cached one.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut connection)
            .await
            .expect("clearing the statistics snapshot");
        let vacuums: i64 = sqlx::query_scalar(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'deliveries'",
        )
        .fetch_one(&mut connection)
        .await
        .expect("reading the table's statistics");
        if vacuums > 0 || Instant::now() >= deadline {
            return vacuums;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
