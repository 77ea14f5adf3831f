//! A store that refuses writes (issue 11): a write that fails is reported as an outage and
//! never acknowledged, the store notices (readiness fails, `write_status` says so), and it
//! writes again by itself once the cause is gone, with every acknowledged write kept.
//!
//! SQLite meets a real full disk: a size-limited tmpfs mounted for the test (the test runs as
//! root, as CI does), filled by the store's own writes, with a filler file whose removal gives
//! space back. PostgreSQL meets a database that has turned read-only, as a standby is during a
//! failover (a full disk on the server itself stops PostgreSQL altogether, which the outage
//! tests of `herald-cli` cover).

mod support;

use std::sync::Arc;

use herald_domain::{ApiKey, ApiKeyId, Event, EventId, Org, OrgId, Outcome, Scope, Timestamp};
use herald_store::{ClaimScope, PROBE_INTERVAL, SqliteStore, Store, StoreError};
use herald_testkit::disk::{SmallDisk, sqlite_integrity_check};
use sqlx::Connection as _;

use support::{
    TestDatabase, cipher, claim, create_endpoint, event, on_postgres_database, recording,
};

/// The file system's size: the database, its WAL and the filler share it.
const DISK: &str = "8m";
/// What the filler takes, given back to end the outage: more than the rest, since once space
/// returns the first checkpoint copies what the WAL holds into the database file (and SQLite
/// reuses, rather than shrinks, the WAL file).
const FILLER_BYTES: usize = 6 << 20;
/// Each event's data, so the disk fills in a few hundred publishes.
const DATA_BYTES: usize = 4 << 10;

#[tokio::test]
async fn sqlite_a_full_disk_refuses_writes_loses_nothing_acknowledged_and_recovers_without_restart()
{
    let disk = SmallDisk::mount(DISK);
    let database = disk.path().join("herald.db");
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![1_u8; FILLER_BYTES]).expect("writing the filler");
    let store = Arc::new(
        SqliteStore::open(&database, cipher())
            .await
            .expect("opening SQLite"),
    );
    let now = Timestamp::now();
    let org = Org {
        id: OrgId::new(),
        name: "Full disk".to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    let endpoint = create_endpoint(store.as_ref(), org.id, now).await;
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id: org.id,
        scopes: vec![Scope::WebhooksRead],
        hint: "am_live_test…".to_owned(),
        created_at: now,
        revoked_at: None,
        expires_at: None,
        portal: None,
    };
    let key_hash = [9_u8; 32];
    store
        .create_api_key(&key, &key_hash)
        .await
        .expect("creating a key");

    // Act 1: publish batches of ten until the disk is full, then ten times more; then single
    // events the same way, which fill what room a batch could not use (a batch's pages
    // outnumber the readiness probe's, so only then is there no room for the probe either:
    // the room left depends on the schema's exact layout).
    let mut acknowledged: Vec<EventId> = Vec::new();
    for batch_size in [10, 1] {
        publish_until_refused(store.as_ref(), org.id, batch_size, &mut acknowledged).await;
    }
    assert!(
        !store.write_status().writable,
        "a refused write marks the store unwritable"
    );
    assert!(store.write_status().failures_total >= 20);
    assert!(
        store.ping().await.is_err(),
        "readiness fails while writes are refused"
    );

    // A revocation (one statement, answering the revoked key) is refused or stored, never
    // answered and lost (checked after the restart below); a refusal counts as one.
    let failures = store.write_status().failures_total;
    let revoked = store.revoke_api_key(key.id, Timestamp::now()).await;
    match &revoked {
        Ok(answer) => assert!(answer.revoked_at.is_some()),
        Err(error) => {
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "a revocation on a full disk is an outage, not {error:?}"
            );
            assert!(store.write_status().failures_total > failures);
        }
    }

    // Recording attempts fails the same way while the disk is full.
    let claimed = claim(
        store.as_ref(),
        Timestamp::now(),
        ClaimScope::AnyExcept(Vec::new()),
    )
    .await;
    assert!(
        !claimed.is_empty(),
        "acknowledged events have due deliveries"
    );
    let recordings: Vec<_> = claimed
        .iter()
        .map(|delivery| recording(delivery, Outcome::Success, None, Timestamp::now()))
        .collect();
    let mut recorded_while_full = false;
    for _ in 0..5 {
        match store.record_attempts(&recordings, now).await {
            Ok(()) => {
                recorded_while_full = true;
                break;
            }
            Err(error) => assert!(
                matches!(error, StoreError::Unavailable(_)),
                "recording on a full disk is an outage, not {error:?}"
            ),
        }
    }

    // Act 2: space returns. No restart: the same store must write again.
    std::fs::remove_file(&filler).expect("removing the filler");
    tokio::time::sleep(PROBE_INTERVAL).await;
    store
        .ping()
        .await
        .expect("readiness probes and recovers once space returns");
    assert!(store.write_status().writable);
    if !recorded_while_full {
        store
            .record_attempts(&recordings, now)
            .await
            .expect("recording once space returns");
    }
    let after: Vec<Event> = (0..10).map(|_| big_event(org.id)).collect();
    store
        .publish_events(&after)
        .await
        .expect("publishing once space returns");
    acknowledged.extend(after.iter().map(|event| event.id));

    // Assert: after a restart (a writer left inside a transaction that was never committed
    // would lose everything it "committed" here), every acknowledged event is stored, the
    // recorded deliveries are finished, and the file is sound.
    drop(store);
    let store = SqliteStore::open(&database, cipher())
        .await
        .expect("reopening SQLite");
    let mut missing = 0;
    for id in &acknowledged {
        if store.get_event(org.id, *id).await.is_err() {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged events were lost",
        acknowledged.len()
    );
    let still_due = claim(&store, Timestamp::now(), ClaimScope::AnyExcept(Vec::new())).await;
    assert!(
        still_due.iter().all(|delivery| claimed
            .iter()
            .all(|done| done.delivery_id != delivery.delivery_id)),
        "recorded deliveries are no longer due"
    );
    assert!(
        still_due
            .iter()
            .all(|delivery| delivery.endpoint.id == endpoint)
    );
    let kept = store
        .find_api_key(&key_hash)
        .await
        .expect("reading the key")
        .expect("the key exists");
    assert_eq!(
        kept.revoked_at.is_some(),
        revoked.is_ok(),
        "a revocation is stored exactly when it was answered: {revoked:?}"
    );
    drop(store);
    assert_eq!(sqlite_integrity_check(&database).await, "ok");
}

#[tokio::test]
async fn postgres_a_database_refusing_writes_is_an_outage_and_recovers_without_restart() {
    on_postgres_database(|store, database| async move {
        let now = Timestamp::now();
        let org = Org {
            id: OrgId::new(),
            name: "Read-only".to_owned(),
            created_at: now,
        };
        store.create_org(&org).await.expect("creating the org");
        create_endpoint(store.as_ref(), org.id, now).await;
        store.ping().await.expect("a healthy store is ready");

        // Act 1: the database turns read-only under the store.
        set_read_only(&database, true).await;
        let refused = store.publish_events(&[event(org.id, now)]).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "a read-only database is an outage, not {refused:?}"
        );
        assert!(!store.write_status().writable);
        assert!(
            store.ping().await.is_err(),
            "readiness fails while writes are refused"
        );

        // Act 2: writable again; the same store must notice by itself.
        set_read_only(&database, false).await;
        tokio::time::sleep(PROBE_INTERVAL).await;
        store
            .ping()
            .await
            .expect("readiness probes and recovers once writes are accepted");
        assert!(store.write_status().writable);
        let accepted = event(org.id, Timestamp::now());
        store
            .publish_events(std::slice::from_ref(&accepted))
            .await
            .expect("publishing once writes are accepted");
        store
            .get_event(org.id, accepted.id)
            .await
            .expect("the acknowledged event is stored");
    })
    .await;
}

/// Makes the database read-only (or writable again) for every new session, and ends the
/// store's sessions so its pool reconnects under the new setting.
async fn set_read_only(database: &TestDatabase, read_only: bool) {
    let mut admin = sqlx::postgres::PgConnection::connect(&database.admin_url)
        .await
        .expect("connecting as the administrator");
    let name = &database.name;
    let change = if read_only {
        format!("ALTER DATABASE {name} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {name} RESET default_transaction_read_only")
    };
    sqlx::query(&change)
        .execute(&mut admin)
        .await
        .expect("changing the database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut admin)
    .await
    .expect("ending the store's sessions");
}

/// Publishes batches of `batch_size` big events until ten in a row are refused, each
/// refusal an outage (`Unavailable`); adds what was acknowledged to `acknowledged`.
async fn publish_until_refused(
    store: &dyn Store,
    org_id: OrgId,
    batch_size: usize,
    acknowledged: &mut Vec<EventId>,
) {
    let mut refusals = 0;
    for _ in 0..20_000 {
        let batch: Vec<Event> = (0..batch_size).map(|_| big_event(org_id)).collect();
        match store.publish_events(&batch).await {
            Ok(published) => {
                assert_eq!(published.len(), batch.len());
                acknowledged.extend(batch.iter().map(|event| event.id));
                refusals = 0;
            }
            Err(error) => {
                assert!(
                    matches!(error, StoreError::Unavailable(_)),
                    "a full disk is an outage (Unavailable), not {error:?}"
                );
                refusals += 1;
                if refusals == 10 {
                    return;
                }
            }
        }
    }
    panic!("the {DISK} disk never filled with batches of {batch_size}");
}

fn big_event(org_id: OrgId) -> Event {
    Event {
        data: format!("{{\"pad\":\"{}\"}}", "x".repeat(DATA_BYTES)),
        ..event(org_id, Timestamp::now())
    }
}
