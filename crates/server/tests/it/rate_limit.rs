//! The per-organization write rate limit (docs/api.md#rate-limits): writes over the limit
//! answer 429 with `Retry-After`; reads are never limited.

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::json;

use crate::harness::{Backend, Reply, TestApp, TestOrg, endpoint_body, endpoint_path};

backend_tests!(
    write_over_the_limit_is_rate_limited_with_retry_after,
    every_write_route_is_limited_once_the_budget_is_spent,
    reads_are_never_rate_limited,
    write_limit_is_per_organization,
);

const WRITES_PER_MINUTE: u32 = 5;

async fn write_over_the_limit_is_rate_limited_with_retry_after(backend: Backend) {
    // Arrange
    let (app, org) = limited_app(backend).await;
    for _ in 0..WRITES_PER_MINUTE {
        app.create_endpoint(&org.key, &endpoint_body()).await;
    }

    // Act
    let reply = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    assert_rate_limited(&reply);
    let list = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(list.body["meta"]["total"], json!(WRITES_PER_MINUTE));
}

async fn every_write_route_is_limited_once_the_budget_is_spent(backend: Backend) {
    // Arrange
    let (app, org) = limited_app(backend).await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;
    let path = endpoint_path(&created);
    for _ in 1..WRITES_PER_MINUTE {
        app.patch(&org.key, &path, &json!({}))
            .await
            .assert_status(StatusCode::OK);
    }

    // Act
    let replies = [
        app.post(&org.key, "/v1/webhooks", &endpoint_body()).await,
        app.patch(&org.key, &path, &json!({})).await,
        app.post_empty(&org.key, &format!("{path}/rotate-secret"))
            .await,
        app.post_empty(&org.key, "/v1/webhook-secret/rotate").await,
        app.delete(&org.key, &path).await,
    ];

    // Assert
    for reply in &replies {
        assert_rate_limited(reply);
    }
    app.get(&org.key, &path).await.assert_status(StatusCode::OK);
}

async fn reads_are_never_rate_limited(backend: Backend) {
    // Arrange
    let (app, org) = limited_app(backend).await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;
    for _ in 1..WRITES_PER_MINUTE {
        app.create_endpoint(&org.key, &endpoint_body()).await;
    }
    assert_rate_limited(&app.post(&org.key, "/v1/webhooks", &endpoint_body()).await);

    for _ in 0..30 {
        // Act
        let list = app.get(&org.key, "/v1/webhooks").await;
        let one = app.get(&org.key, &endpoint_path(&created)).await;

        // Assert
        list.assert_status(StatusCode::OK);
        one.assert_status(StatusCode::OK);
    }
}

async fn write_limit_is_per_organization(backend: Backend) {
    // Arrange
    let (app, org_a) = limited_app(backend).await;
    let org_b = app.org_with_key().await;
    for _ in 0..WRITES_PER_MINUTE {
        app.create_endpoint(&org_a.key, &endpoint_body()).await;
    }

    // Act
    let reply = app.post(&org_b.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    reply.assert_status(StatusCode::CREATED);
}

async fn limited_app(backend: Backend) -> (TestApp, TestOrg) {
    let app = TestApp::builder()
        .backend(backend)
        .write_rate_per_minute(WRITES_PER_MINUTE)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    (app, org)
}

#[track_caller]
fn assert_rate_limited(reply: &Reply) {
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry_after = reply
        .headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} must be whole seconds"));
    assert!((1..=60).contains(&seconds), "Retry-After: {seconds}");
}
