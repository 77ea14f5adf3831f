//! Leases, on both backends: a leased delivery is not claimable until its lease lapses, a
//! refill claim reads only the endpoints it names, and a worker whose lease lapsed and was
//! taken over records its attempt without overwriting the newer claimant's outcome.
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each run gets a fresh database, dropped
//! afterwards.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use herald_domain::{
    Attempt, AttemptId, AuditAction, AuditId, AuditRecord, Endpoint, EndpointId, Event, EventId,
    EventOrigin, Org, OrgId, Outcome, Secret, Timestamp,
};
use herald_store::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, PageRequest,
    PostgresOptions, PostgresStore, SecretCipher, SqliteStore, Store,
};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

const EVENT_TYPE: &str = "wallet.balance_low";
const LEASE: Duration = Duration::from_secs(60);

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

async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&directory.path().join("herald.db"), cipher())
        .await
        .expect("opening SQLite");
    scenario(Arc::new(store)).await;
}

/// Runs `scenario` on a fresh database, dropped afterwards whatever the outcome.
async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin = std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("herald_store_{}", uuid::Uuid::now_v7().simple());
    let mut connection = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL is not reachable at {admin}: {error}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .expect("creating the test database");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let store = PostgresStore::open(
        &format!("{base}/{name}"),
        &PostgresOptions::default(),
        cipher(),
    )
    .await
    .expect("opening PostgreSQL");
    let outcome = tokio::spawn(scenario(Arc::new(store))).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .expect("dropping the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
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

fn event(org_id: OrgId, created_at: Timestamp) -> Event {
    Event {
        id: EventId::new(),
        org_id,
        event_type: EVENT_TYPE.to_owned(),
        data: "{}".to_owned(),
        idempotency_key: None,
        origin: EventOrigin::Publish,
        created_at,
    }
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
        origin: EventOrigin::Publish,
        created_at: now,
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
    let stats = store.queue_stats(now).await.expect("queue stats");
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
        .queue_stats(retry_at.add(chrono::Duration::seconds(-1)))
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

fn cipher() -> SecretCipher {
    SecretCipher::new(&[7; 32])
}

async fn create_endpoint(store: &dyn Store, org_id: OrgId, now: Timestamp) -> EndpointId {
    let endpoint = Endpoint {
        id: EndpointId::new(),
        org_id,
        url: "https://receiver.example/hook".to_owned(),
        description: None,
        events: vec![EVENT_TYPE.to_owned()],
        active: true,
        api_version: herald_domain::catalog::DEFAULT_API_VERSION.to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let audit = AuditRecord {
        id: AuditId::new(),
        org_id,
        api_key_id: None,
        action: AuditAction::EndpointCreated,
        target_id: endpoint.id.to_string(),
        occurred_at: now,
        request_id: None,
        reason: None,
    };
    store
        .create_endpoint(&endpoint, &Secret::generate(), 50, &audit)
        .await
        .expect("creating an endpoint");
    endpoint.id
}

async fn claim(store: &dyn Store, now: Timestamp, scope: ClaimScope) -> Vec<ClaimedDelivery> {
    store
        .claim_due_deliveries(&ClaimRequest {
            now,
            limit: 100,
            lease: LEASE,
            scope,
            per_endpoint_limit: 16,
        })
        .await
        .expect("claiming")
}

fn recording(
    delivery: &ClaimedDelivery,
    outcome: Outcome,
    next_attempt_at: Option<Timestamp>,
    at: Timestamp,
) -> AttemptRecording {
    AttemptRecording {
        attempt: Attempt {
            id: AttemptId::new(),
            org_id: delivery.event.org_id,
            delivery_id: delivery.delivery_id,
            endpoint_id: delivery.endpoint.id,
            event_id: delivery.event.id,
            event_type: delivery.event.event_type.clone(),
            url: delivery.endpoint.url.clone(),
            attempt: delivery.attempt_number,
            outcome,
            response_status: Some(if outcome == Outcome::Success {
                200
            } else {
                500
            }),
            response_time_ms: 3,
            request_body_sha256: "0".repeat(64),
            request_body_bytes: 2,
            request_headers: Vec::new(),
            response_body_excerpt: None,
            error: None,
            next_attempt_at,
            occurred_at: at,
        },
        disable_endpoint: None,
        lease: delivery.lease,
    }
}
