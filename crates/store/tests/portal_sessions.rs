//! Portal sessions in the store, on both backends: a session is an API key with an expiry and
//! its portal settings, read back whole, left out of the key listing, and deleted by the
//! retention sweep a day after it expired (a plain key never is).
//!
//! PostgreSQL is the server at `HERALD_TEST_POSTGRES_URL` (see `support`).

#[allow(
    dead_code,
    reason = "this test needs only the database helpers of the shared support module"
)]
mod support;

use std::sync::Arc;

use herald_domain::portal::{PortalSession, PortalTheme};
use herald_domain::{ApiKey, ApiKeyId, Org, OrgId, Scope, Timestamp};
use herald_store::{PurgeBatch, Store};

use support::{on_postgres, on_sqlite};

#[tokio::test]
async fn sqlite_sessions_are_kept_whole_and_purged_a_day_after_expiry() {
    on_sqlite(sessions_are_kept_whole_and_purged).await;
}

#[tokio::test]
async fn postgres_sessions_are_kept_whole_and_purged_a_day_after_expiry() {
    on_postgres(sessions_are_kept_whole_and_purged).await;
}

fn key(org_id: OrgId, expires_at: Option<Timestamp>, portal: Option<PortalSession>) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        org_id,
        scopes: vec![Scope::WebhooksRead],
        hint: "am_live_abc…".to_owned(),
        created_at: Timestamp::now(),
        revoked_at: None,
        expires_at,
        portal,
    }
}

async fn sessions_are_kept_whole_and_purged(store: Arc<dyn Store>) {
    // Arrange: a plain key, a session that expired two days ago, and one that expired an hour
    // ago.
    let now = Timestamp::now();
    let org = Org {
        id: OrgId::new(),
        name: "Portal".to_owned(),
        created_at: now,
    };
    store.create_org(&org).await.expect("creating the org");
    let settings = PortalSession {
        read_only: true,
        return_url: Some("https://app.example.com/settings".to_owned()),
        theme: Some(PortalTheme {
            accent_color: Some("#0a7cff".to_owned()),
            logo_url: None,
            name: Some("Acme Cloud".to_owned()),
        }),
    };
    let plain = key(org.id, None, None);
    let old = key(
        org.id,
        Some(now.add(chrono::Duration::days(-2))),
        Some(settings.clone()),
    );
    let recent = key(
        org.id,
        Some(now.add(chrono::Duration::hours(-1))),
        Some(settings.clone()),
    );
    for (key, hash) in [(&plain, [1_u8; 32]), (&old, [2; 32]), (&recent, [3; 32])] {
        store
            .create_api_key(key, &hash)
            .await
            .expect("creating a key");
    }

    // Act
    let read_back = store.find_api_key(&[3; 32]).await.expect("reading");
    let listed = store.list_api_keys(org.id).await.expect("listing");
    let far_past = Timestamp::from_micros(0);
    store
        .purge_expired(&PurgeBatch {
            events_before: far_past,
            attempts_before: far_past,
            size: 100,
            events_after: None,
        })
        .await
        .expect("purging");

    // Assert
    let read_back = read_back.expect("the session");
    assert_eq!(read_back.expires_at, recent.expires_at);
    assert_eq!(read_back.portal, Some(settings));
    assert_eq!(
        listed.iter().map(|key| key.id).collect::<Vec<_>>(),
        vec![plain.id],
        "sessions are not listed with the keys"
    );
    assert!(
        store
            .find_api_key(&[1; 32])
            .await
            .expect("reading")
            .is_some()
    );
    assert!(
        store
            .find_api_key(&[2; 32])
            .await
            .expect("reading")
            .is_none(),
        "a session expired two days ago is purged"
    );
    assert!(
        store
            .find_api_key(&[3; 32])
            .await
            .expect("reading")
            .is_some(),
        "a session expired an hour ago is kept for a day"
    );
}
