//! The test operation (docs/api.md#send-a-test): `POST /v1/webhooks/{id}/test` sends a signed
//! `webhook.test` now, whatever the endpoint subscribes to and even when it is inactive,
//! answers with that single attempt, and records it in the feed. It is never retried.

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, assert_event_id, delivering, endpoint_body, endpoint_path, header,
    received_json, string_at, verify_delivery, wait_for_received,
};

backend_tests!(
    test_send_delivers_a_signed_webhook_test_and_records_it,
    test_send_reaches_an_inactive_endpoint,
    test_send_to_a_failing_receiver_is_dead_and_not_retried,
    test_send_to_another_organizations_endpoint_is_not_found,
    test_send_needs_the_write_scope,
);

async fn test_send_delivers_a_signed_webhook_test_and_records_it(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    // Subscribed to something else: the test is sent anyway.
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["campaign.approved"])
        .await;

    // Act
    let reply = app
        .post_empty(&org.key, &format!("{}/test", endpoint_path(&endpoint)))
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let answer = &reply.body;
    let event_id = string_at(answer, "event_id");
    assert_event_id(&event_id);
    assert_eq!(answer["outcome"], json!("success"), "{reply}");
    assert_eq!(answer["response_status"], json!(200), "{reply}");
    assert_eq!(answer["url"], json!(receiver.url("/ok")), "{reply}");
    assert_eq!(answer["response_body_excerpt"], json!("thanks"), "{reply}");
    assert_eq!(answer["error"], Value::Null, "{reply}");
    assert!(answer["response_time_ms"].is_u64(), "{reply}");

    let received = receiver.received();
    assert_eq!(received.len(), 1, "the answer comes after the attempt");
    let delivery = &received[0];
    assert_eq!(header(delivery, "x-amcore-event-type"), "webhook.test");
    assert_eq!(header(delivery, "x-amcore-event-id"), event_id);
    let body = received_json(delivery);
    assert_eq!(body["type"], json!("webhook.test"));
    assert_eq!(body["id"], json!(event_id));
    let verdict = verify_delivery(
        delivery,
        &delivery.body,
        &string_at(&endpoint, "secret"),
        None,
        None,
    )
    .await;
    assert!(verdict.accepted, "{}", verdict.reason);

    let records = app.deliveries(&org.key, "event_type=webhook.test").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["id"], answer["delivery_id"]);
    assert_eq!(records[0]["event_id"], json!(event_id));
    assert_eq!(records[0]["event_type"], json!("webhook.test"));
    assert_eq!(records[0]["outcome"], json!("success"));
}

async fn test_send_reaches_an_inactive_endpoint(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    let path = endpoint_path(&endpoint);
    app.patch(&org.key, &path, &json!({"active": false}))
        .await
        .assert_status(StatusCode::OK);

    // Act
    let reply = app.post_empty(&org.key, &format!("{path}/test")).await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["outcome"], json!("success"), "{reply}");
    assert_eq!(receiver.received().len(), 1);
    let current = app.get(&org.key, &path).await;
    assert_eq!(
        current.body["active"],
        json!(false),
        "a test does not reactivate"
    );
}

async fn test_send_to_a_failing_receiver_is_dead_and_not_retried(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &["wallet.balance_low"])
        .await;

    // Act
    let reply = app
        .post_empty(&org.key, &format!("{}/test", endpoint_path(&endpoint)))
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["outcome"], json!("dead"), "{reply}");
    assert_eq!(reply.body["response_status"], json!(500), "{reply}");
    assert_eq!(reply.body["error"], json!("http 500"), "{reply}");
    app.wait_for_empty_queue().await;
    wait_for_received(&receiver, 1).await;
    let records = app.endpoint_deliveries(&org.key, &endpoint).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], json!("dead"));
    assert_eq!(receiver.received().len(), 1);
}

async fn test_send_to_another_organizations_endpoint_is_not_found(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let owner = app.org_with_key().await;
    let stranger = app.org_with_key().await;
    let endpoint = app.create_endpoint(&owner.key, &endpoint_body()).await;
    let path = format!("{}/test", endpoint_path(&endpoint));

    // Act
    let foreign = app.post_empty(&stranger.key, &path).await;
    let unknown = app
        .post_empty(
            &owner.key,
            &format!("/v1/webhooks/{}/test", uuid::Uuid::now_v7()),
        )
        .await;

    // Assert
    foreign.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    unknown.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn test_send_needs_the_write_scope(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let read_only = app.create_key(org.id, &["webhooks:read"]).await;
    let endpoint = app.create_endpoint(&org.key, &endpoint_body()).await;

    // Act
    let reply = app
        .post_empty(&read_only, &format!("{}/test", endpoint_path(&endpoint)))
        .await;

    // Assert
    reply.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    assert!(app.deliveries(&org.key, "").await.is_empty());
}
