//! The cap of 50 live endpoints per organization (docs/api.md#create-an-endpoint), sequential and
//! under concurrent creates.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Backend, TestApp, endpoint_body, string_at};

backend_tests!(
    create_beyond_fifty_live_endpoints_answers_limit_exceeded,
    deleting_an_endpoint_frees_a_slot_under_the_cap,
    inactive_endpoints_count_toward_the_cap,
    concurrent_creates_never_exceed_the_cap,
);

const CAP: usize = 50;

async fn create_beyond_fifty_live_endpoints_answers_limit_exceeded(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    fill_to_cap(&app, &org.key).await;

    // Act
    let reply = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    let error = reply.assert_error(StatusCode::CONFLICT, "LIMIT_EXCEEDED");
    assert_eq!(
        error["message"],
        json!("webhook endpoint limit reached (max 50)")
    );
    let list = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(list.body["meta"]["total"], json!(CAP), "{list}");
}

async fn deleting_an_endpoint_frees_a_slot_under_the_cap(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let ids = fill_to_cap(&app, &org.key).await;
    app.post(&org.key, "/v1/webhooks", &endpoint_body())
        .await
        .assert_error(StatusCode::CONFLICT, "LIMIT_EXCEEDED");

    // Act
    app.delete(&org.key, &format!("/v1/webhooks/{}", ids[0]))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let reply = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    reply.assert_status(StatusCode::CREATED);
    app.post(&org.key, "/v1/webhooks", &endpoint_body())
        .await
        .assert_error(StatusCode::CONFLICT, "LIMIT_EXCEEDED");
}

async fn inactive_endpoints_count_toward_the_cap(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let ids = fill_to_cap(&app, &org.key).await;
    for id in &ids[..5] {
        app.patch(
            &org.key,
            &format!("/v1/webhooks/{id}"),
            &json!({"active": false}),
        )
        .await
        .assert_status(StatusCode::OK);
    }

    // Act
    let reply = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    reply.assert_error(StatusCode::CONFLICT, "LIMIT_EXCEEDED");
}

async fn concurrent_creates_never_exceed_the_cap(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let body = endpoint_body();

    // Act
    let replies = join_all((0..60).map(|_| app.post(&org.key, "/v1/webhooks", &body))).await;

    // Assert
    let created = replies
        .iter()
        .filter(|reply| reply.status == StatusCode::CREATED)
        .count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|reply| reply.status != StatusCode::CREATED)
        .collect();
    assert_eq!(created, CAP);
    assert_eq!(refused.len(), 10);
    for reply in refused {
        reply.assert_error(StatusCode::CONFLICT, "LIMIT_EXCEEDED");
    }
    let list = app.get(&org.key, "/v1/webhooks?limit=100").await;
    assert_eq!(list.body["meta"]["total"], json!(CAP), "{list}");
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(CAP));
}

/// Creates endpoints one by one until the organization holds 50; returns their ids.
async fn fill_to_cap(app: &TestApp, key: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(CAP);
    for _ in 0..CAP {
        let created = app.create_endpoint(key, &endpoint_body()).await;
        ids.push(string_at(&created, "id"));
    }
    ids
}
