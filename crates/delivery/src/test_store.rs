//! A real SQLite (or PostgreSQL) store holding events to one endpoint, for the unit tests that
//! need the store's own rules (leases, purges) rather than a worker's fixtures alone.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{
    AuditAction, AuditId, AuditRecord, EndpointCredentials, Event, EventId, Org, Secret, Timestamp,
};
use herald_store::{
    ClaimRequest, ClaimScope, PostgresOptions, PostgresStore, SecretCipher, SqliteStore, Store,
};

use crate::worker::fixtures::delivery;

/// How long the tests' claims hold what they take.
pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// A SQLite store in `directory` with one endpoint and `count` events to it, each with
/// `ordering_key` when given.
pub(crate) async fn sqlite_with_events(
    directory: &tempfile::TempDir,
    count: usize,
    ordering_key: Option<&str>,
) -> Arc<dyn Store> {
    let cipher = SecretCipher::new(&[7; 32]);
    let store = SqliteStore::open(&directory.path().join("herald.db"), cipher)
        .await
        .expect("opening SQLite");
    with_events(Arc::new(store), count, ordering_key).await
}

/// The same on the PostgreSQL database at `url` (a fresh one: the tests' `TestDatabase`).
pub(crate) async fn postgres_with_events(
    url: &str,
    count: usize,
    ordering_key: Option<&str>,
) -> Arc<dyn Store> {
    let cipher = SecretCipher::new(&[7; 32]);
    let store = PostgresStore::open(url, &PostgresOptions::default(), cipher)
        .await
        .expect("opening PostgreSQL");
    with_events(Arc::new(store), count, ordering_key).await
}

/// `store`, given one endpoint and `count` events to it.
async fn with_events(
    store: Arc<dyn Store>,
    count: usize,
    ordering_key: Option<&str>,
) -> Arc<dyn Store> {
    let template = delivery(1);
    let (org_id, now) = (template.event.org_id, template.event.created_at);
    let org = Org {
        id: org_id,
        name: "Tests".to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    let audit = AuditRecord {
        id: AuditId::new(),
        org_id,
        api_key_id: None,
        action: AuditAction::EndpointCreated,
        target_id: template.endpoint.id.to_string(),
        occurred_at: now,
        request_id: None,
        reason: None,
    };
    let credentials = EndpointCredentials::default();
    store
        .create_endpoint(
            &template.endpoint,
            &Secret::generate(),
            &credentials,
            50,
            &audit,
        )
        .await
        .expect("creating the endpoint");
    let events: Vec<Event> = (0..count)
        .map(|_| Event {
            id: EventId::new(),
            ordering_key: ordering_key.map(str::to_owned),
            ..template.event.clone()
        })
        .collect();
    store.publish_events(&events).await.expect("publishing");
    store
}

/// A claim of up to `limit` due deliveries of any endpoint, now.
pub(crate) fn unscoped_claim(limit: u32) -> ClaimRequest {
    ClaimRequest {
        now: Timestamp::now(),
        limit,
        lease: LEASE,
        scope: ClaimScope::AnyExcept(Vec::new()),
        per_endpoint_limit: limit,
    }
}
