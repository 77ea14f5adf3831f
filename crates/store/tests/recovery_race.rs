//! Two different recoveries of one endpoint, both with `include_missing` and advanced at once
//! by two nodes, put each missed event back in the queue once: every (event, endpoint) pair
//! has at most one delivery. Without the endpoint's sequence row locked before a chunk reads
//! what is missing, both nodes found the same events missing and each inserted a delivery.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

mod support;

use std::sync::Arc;

use herald_domain::recovery::{Recovery, RecoveryScope, RecoveryStatus};
use herald_domain::{AuditAction, AuditId, AuditRecord, Org, OrgId, RecoveryId, Timestamp};
use herald_store::postgres::{PostgresOptions, PostgresStore};
use herald_store::{EndpointPatch, Store};
use sqlx::Connection as _;

use support::{EVENT_TYPE, cipher, create_endpoint, event, on_postgres_database};

/// Events the endpoint missed: published while it did not subscribe to their type.
const MISSED: usize = 600;
/// Events per chunk: small, so the two recoveries' chunks overlap many times.
const BATCH: u32 = 25;
const OTHER_TYPE: &str = "wallet.refunded";

#[tokio::test]
async fn postgres_two_recoveries_advanced_at_once_enqueue_each_missed_event_once() {
    on_postgres_database(|first, database| async move {
        let started = Timestamp::now();
        let org = Org {
            id: OrgId::new(),
            name: "Race".to_owned(),
            created_at: started,
        };
        first.create_org(&org).await.expect("creating the org");
        let endpoint_id = create_endpoint(first.as_ref(), org.id, started).await;
        let mut missed: Vec<_> = (0..MISSED).map(|_| event(org.id, started)).collect();
        for (index, event) in missed.iter_mut().enumerate() {
            event.event_type = OTHER_TYPE.to_owned();
            // Distinct, increasing times after the endpoint was made, inside the window.
            event.created_at =
                Timestamp::from_micros(started.as_micros() + 1_000 + i64::try_from(index).unwrap());
        }
        first.publish_events(&missed).await.expect("publishing");
        let patch = EndpointPatch {
            events: Some(vec![EVENT_TYPE.to_owned(), OTHER_TYPE.to_owned()]),
            ..EndpointPatch::default()
        };
        first
            .update_endpoint(org.id, endpoint_id, &patch, &audit(org.id, endpoint_id))
            .await
            .expect("subscribing to the missed type");

        let now = Timestamp::from_micros(started.as_micros() + 10_000_000);
        // Two recoveries that differ (one names the type, one does not), so neither answers
        // for the other: both match all the missed events.
        for event_types in [None, Some(vec![OTHER_TYPE.to_owned()])] {
            let recovery = Recovery {
                id: RecoveryId::new(),
                org_id: org.id,
                endpoint_id,
                status: RecoveryStatus::Queued,
                scope: RecoveryScope {
                    since: started,
                    until: now,
                    event_types: event_types.clone(),
                    include_missing: true,
                },
                dry_run: false,
                matched: 0,
                enqueued: 0,
                created_at: now,
                finished_at: None,
            };
            let fingerprint = format!("{event_types:?}");
            let (stored, new) = first
                .start_recovery(&recovery, &fingerprint, &audit(org.id, endpoint_id))
                .await
                .expect("starting a recovery");
            assert!(new, "two different requests make two recoveries");
            assert_eq!(stored.matched, MISSED as u64, "every missed event matches");
        }

        let second: Arc<dyn Store> = Arc::new(
            PostgresStore::open(&database.url(), &PostgresOptions::default(), cipher())
                .await
                .expect("opening a second store on the database"),
        );
        let advance = |store: Arc<dyn Store>| async move {
            while store
                .advance_recoveries(now, BATCH)
                .await
                .expect("advancing")
            {}
        };
        tokio::join!(advance(Arc::clone(&first)), advance(second));

        let mut connection = sqlx::PgConnection::connect(&database.url())
            .await
            .expect("connecting");
        let (deliveries, pairs): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM deliveries WHERE endpoint_id = $1",
        )
        .bind(endpoint_id.as_uuid())
        .fetch_one(&mut connection)
        .await
        .expect("counting deliveries");
        assert_eq!(
            pairs, MISSED as i64,
            "every missed event was put back in the queue"
        );
        assert_eq!(
            deliveries, pairs,
            "no event has two deliveries to the endpoint"
        );
        let (enqueued,): (i64,) = sqlx::query_as(
            "SELECT SUM(enqueued)::BIGINT FROM recoveries WHERE endpoint_id = $1 AND status = 'done'",
        )
        .bind(endpoint_id.as_uuid())
        .fetch_one(&mut connection)
        .await
        .expect("summing what the recoveries enqueued");
        assert_eq!(
            enqueued, MISSED as i64,
            "the two recoveries together enqueued each missed event once, and both finished"
        );
    })
    .await;
}

fn audit(org_id: OrgId, endpoint_id: herald_domain::EndpointId) -> AuditRecord {
    AuditRecord {
        id: AuditId::new(),
        org_id,
        api_key_id: None,
        action: AuditAction::Recover,
        target_id: endpoint_id.to_string(),
        occurred_at: Timestamp::now(),
        request_id: None,
        reason: None,
    }
}
