//! Probes and request ids (docs/api.md#request-ids and docs/api.md#health-readiness-and-metrics):
//! `/healthz` and `/readyz` answer without credentials, and every response carries a ULID in
//! `X-Request-Id`.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestApp, endpoint_body, endpoint_path};

backend_tests!(
    healthz_answers_ok_without_credentials,
    readyz_answers_ready_when_storage_answers,
    every_response_carries_a_distinct_ulid_request_id,
);

async fn healthz_answers_ok_without_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app.send(app.request(Method::GET, "/healthz")).await;
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

async fn readyz_answers_ready_when_storage_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app.send(app.request(Method::GET, "/readyz")).await;
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ready"}));
}

async fn every_response_carries_a_distinct_ulid_request_id(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;
    let path = endpoint_path(&created.body);

    // Act
    let replies = vec![
        created,
        app.send(app.request(Method::GET, "/healthz")).await,
        app.send(app.request(Method::GET, "/readyz")).await,
        app.send(app.request(Method::GET, "/openapi.json")).await,
        app.send(app.request(Method::GET, "/nowhere")).await,
        app.send(app.request(Method::PUT, "/v1/webhooks")).await,
        app.send(app.request(Method::GET, "/v1/webhooks")).await,
        app.get(&org.key, "/v1/webhooks").await,
        app.get(&org.key, &path).await,
        app.patch(&org.key, &path, &json!({"url": "ftp://x"})).await,
        app.delete(&org.key, &path).await,
        app.admin_get("/admin/v1/orgs").await,
    ];

    // Assert
    let mut seen = BTreeSet::new();
    for reply in &replies {
        let request_id = reply.request_id();
        assert!(
            is_ulid(request_id),
            "{request_id:?} is not a ULID ({reply})"
        );
        assert!(seen.insert(request_id.to_owned()), "{request_id} repeated");
    }
}

/// 26 characters of Crockford base32 (no I, L, O or U), the first at most `7` so the value
/// fits 128 bits.
fn is_ulid(text: &str) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    text.len() == 26
        && text.chars().all(|c| ALPHABET.contains(c))
        && text.starts_with(['0', '1', '2', '3', '4', '5', '6', '7'])
}
