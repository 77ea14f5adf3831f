//! What the store's integration tests share: running a scenario on a fresh SQLite file or
//! PostgreSQL database, and building organizations, endpoints, events and recordings.
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
    AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, PostgresOptions, PostgresStore,
    SecretCipher, SqliteStore, Store,
};

pub(crate) const EVENT_TYPE: &str = "wallet.balance_low";
#[allow(dead_code, reason = "only the files that claim use it")]
pub(crate) const LEASE: Duration = Duration::from_secs(60);

#[allow(
    dead_code,
    reason = "not every test file runs scenarios on both backends"
)]
pub(crate) async fn on_sqlite<F, Fut>(scenario: F)
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
#[allow(
    dead_code,
    reason = "not every test file runs scenarios on both backends"
)]
pub(crate) async fn on_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_postgres_database(|store, _| scenario(store)).await;
}

/// The database a PostgreSQL scenario runs on, for changing its settings from outside.
#[allow(
    dead_code,
    reason = "not every test file changes its database from outside"
)]
#[derive(Debug, Clone)]
pub(crate) struct TestDatabase {
    /// A URL of the server's maintenance database, to run `ALTER DATABASE` through.
    pub(crate) admin_url: String,
    /// The scenario's database.
    pub(crate) name: String,
}

#[allow(
    dead_code,
    reason = "not every test file opens a second store on the scenario's database"
)]
impl TestDatabase {
    /// The URL of the scenario's database, for a second store on it (another node).
    pub(crate) fn url(&self) -> String {
        let (server, _maintenance) = self
            .admin_url
            .rsplit_once('/')
            .expect("the maintenance URL names a database");
        format!("{server}/{}", self.name)
    }
}

/// Runs `scenario` on a fresh database, which it is told about, dropped afterwards whatever
/// the outcome.
#[allow(
    dead_code,
    reason = "not every test file runs scenarios on both backends"
)]
pub(crate) async fn on_postgres_database<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<dyn Store>, TestDatabase) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fresh = herald_testkit::postgres::TestDatabase::create("herald_store").await;
    let store = PostgresStore::open(&fresh.url, &PostgresOptions::default(), cipher())
        .await
        .expect("opening PostgreSQL");
    let database = TestDatabase {
        admin_url: fresh.server_url().to_owned(),
        name: fresh.name().to_owned(),
    };
    let outcome = tokio::spawn(scenario(Arc::new(store), database)).await;
    // Dropped only now, after the scenario and its store.
    drop(fresh);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

pub(crate) fn event(org_id: OrgId, created_at: Timestamp) -> Event {
    Event {
        id: EventId::new(),
        org_id,
        event_type: EVENT_TYPE.to_owned(),
        data: "{}".to_owned(),
        idempotency_key: None,
        ordering_key: None,
        origin: EventOrigin::Publish,
        created_at,
        traceparent: None,
    }
}

pub(crate) fn cipher() -> SecretCipher {
    SecretCipher::new(&[7; 32])
}

/// A new organization named `name`, created at `now`.
#[allow(dead_code, reason = "only the files that make organizations use it")]
pub(crate) async fn create_org(store: &dyn Store, name: &str, now: Timestamp) -> Org {
    let org = Org {
        id: OrgId::new(),
        name: name.to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    org
}

pub(crate) async fn create_endpoint(
    store: &dyn Store,
    org_id: OrgId,
    now: Timestamp,
) -> EndpointId {
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
        health: herald_domain::EndpointHealth::default(),
        header_names: Vec::new(),
        client_certificate: None,
        filter: None,
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
        .create_endpoint(
            &endpoint,
            &Secret::generate(),
            &herald_domain::EndpointCredentials::default(),
            50,
            &audit,
        )
        .await
        .expect("creating an endpoint");
    endpoint.id
}

#[allow(dead_code, reason = "only the files that claim use it")]
pub(crate) async fn claim(
    store: &dyn Store,
    now: Timestamp,
    scope: ClaimScope,
) -> Vec<ClaimedDelivery> {
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

#[allow(dead_code, reason = "only the files that claim use it")]
pub(crate) fn recording(
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
            sequence: delivery.sequence,
            ordering_key: delivery.event.ordering_key.clone(),
        },
        disable_endpoint: None,
        exhausted: false,
        lease: delivery.lease,
        successor: None,
    }
}
