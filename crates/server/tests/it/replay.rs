//! Replay (docs/api.md#replay-a-delivery): `POST /v1/webhooks/deliveries/{id}/replay` re-sends the
//! original data to the attempt's endpoint as a new event, audits it with the reason, and is
//! refused for a deleted endpoint (404), an expired event (410) and past 10 a minute (429).

use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, TestAppBuilder, TestOrg, assert_event_id, delivering, endpoint_path, header,
    received_json, string_at, timestamp_at, wait_for_received,
};

backend_tests!(
    replay_resends_the_data_under_a_new_event_id_and_audits_the_reason,
    replay_reason_is_at_most_500_characters,
    eleventh_replay_in_a_minute_is_rate_limited,
    replay_to_a_deleted_endpoint_is_not_found,
    replay_of_another_organizations_record_is_not_found,
    replay_of_an_event_past_retention_is_gone,
);

/// An app with one delivered record to replay.
struct Delivered {
    app: TestApp,
    org: TestOrg,
    endpoint: Value,
    record: Value,
    receiver: Receiver,
}

impl Delivered {
    fn replay_path(&self) -> String {
        format!(
            "/v1/webhooks/deliveries/{}/replay",
            string_at(&self.record, "id")
        )
    }
}

async fn delivered_with(
    backend: Backend,
    tune: impl FnOnce(TestAppBuilder) -> TestAppBuilder,
) -> Delivered {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = tune(delivering(backend, &ca)).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    app.publish(
        org.id,
        "wallet.balance_low",
        &json!({"balance": "3.20", "wallet": "w_1"}),
    )
    .await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "the first delivery", |records| {
            !records.is_empty()
        })
        .await;
    let record = records[0].clone();
    Delivered {
        app,
        org,
        endpoint,
        record,
        receiver,
    }
}

async fn delivered(backend: Backend) -> Delivered {
    delivered_with(backend, |builder| builder).await
}

async fn replay_resends_the_data_under_a_new_event_id_and_audits_the_reason(backend: Backend) {
    // Arrange
    let fixture = delivered(backend).await;
    let app = &fixture.app;
    let original_id = string_at(&fixture.record, "event_id");

    // Act
    let reply = app
        .post(
            &fixture.org.key,
            &fixture.replay_path(),
            &json!({"reason": "customer asked"}),
        )
        .await;

    // Assert
    reply.assert_status(StatusCode::ACCEPTED);
    let answer = &reply.body;
    let new_event_id = string_at(answer, "new_event_id");
    assert_event_id(&new_event_id);
    assert_ne!(new_event_id, original_id);
    assert_eq!(answer["delivery_id"], fixture.record["id"], "{reply}");
    assert_eq!(answer["endpoint_id"], fixture.endpoint["id"], "{reply}");
    assert_eq!(answer["event_type"], json!("wallet.balance_low"), "{reply}");
    timestamp_at(answer, "enqueued_at");

    let received = wait_for_received(&fixture.receiver, 2).await;
    let (original, replayed) = (received_json(&received[0]), received_json(&received[1]));
    assert_eq!(header(&received[1], "x-amcore-event-id"), new_event_id);
    assert_eq!(replayed["id"], json!(new_event_id));
    assert_eq!(replayed["type"], original["type"]);
    assert_eq!(replayed["data"], original["data"]);
    let records = app
        .wait_for_deliveries(
            &fixture.org.key,
            &fixture.endpoint,
            "the replay",
            |records| records.len() == 2,
        )
        .await;
    assert_eq!(records[0]["event_id"], json!(new_event_id));
    assert_eq!(records[0]["attempt"], json!(1), "a fresh schedule");

    let log = app.audit_log(fixture.org.id).await;
    let audit = &log[0];
    assert_eq!(audit["action"], json!("delivery.replayed"), "{audit}");
    assert_eq!(audit["id"], answer["audit_log_id"], "{audit}");
    assert_eq!(audit["target_id"], fixture.record["id"], "{audit}");
    assert_eq!(audit["reason"], json!("customer asked"), "{audit}");
    assert_eq!(audit["request_id"], json!(reply.request_id()), "{audit}");
}

async fn replay_reason_is_at_most_500_characters(backend: Backend) {
    // Arrange
    let fixture = delivered(backend).await;
    let app = &fixture.app;

    // Act
    let too_long = app
        .post(
            &fixture.org.key,
            &fixture.replay_path(),
            &json!({"reason": "é".repeat(501)}),
        )
        .await;
    let longest = app
        .post(
            &fixture.org.key,
            &fixture.replay_path(),
            &json!({"reason": "é".repeat(500)}),
        )
        .await;
    let without_body = app
        .post_empty(&fixture.org.key, &fixture.replay_path())
        .await;

    // Assert
    too_long.assert_validation("reason");
    longest.assert_status(StatusCode::ACCEPTED);
    without_body.assert_status(StatusCode::ACCEPTED);
}

async fn eleventh_replay_in_a_minute_is_rate_limited(backend: Backend) {
    // Arrange
    let fixture = delivered(backend).await;
    let app = &fixture.app;
    for n in 1..=10 {
        let reply = app
            .post_empty(&fixture.org.key, &fixture.replay_path())
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "replay {n}: {reply}");
    }

    // Act
    let reply = app
        .post_empty(&fixture.org.key, &fixture.replay_path())
        .await;

    // Assert
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a whole-seconds Retry-After: {reply}"));
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
}

async fn replay_to_a_deleted_endpoint_is_not_found(backend: Backend) {
    // Arrange
    let fixture = delivered(backend).await;
    let app = &fixture.app;
    app.delete(&fixture.org.key, &endpoint_path(&fixture.endpoint))
        .await
        .assert_status(StatusCode::NO_CONTENT);

    // Act
    let reply = app
        .post_empty(&fixture.org.key, &fixture.replay_path())
        .await;

    // Assert
    reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(fixture.receiver.received().len(), 1);
}

async fn replay_of_another_organizations_record_is_not_found(backend: Backend) {
    // Arrange
    let fixture = delivered(backend).await;
    let app = &fixture.app;
    let stranger = app.org_with_key().await;

    // Act
    let foreign = app.post_empty(&stranger.key, &fixture.replay_path()).await;
    let unknown = app
        .post_empty(
            &fixture.org.key,
            &format!("/v1/webhooks/deliveries/{}/replay", uuid::Uuid::now_v7()),
        )
        .await;

    // Assert
    foreign.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    unknown.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(app.audit_log(stranger.id).await.is_empty());
}

async fn replay_of_an_event_past_retention_is_gone(backend: Backend) {
    // Arrange: events expire at once, but the purge is an hour away, so the event is still
    // stored and only its age refuses the replay.
    let fixture = delivered_with(backend, |builder| {
        builder
            .event_retention(Duration::from_millis(1))
            .retention_interval(Duration::from_secs(3600))
    })
    .await;

    // Act
    let reply = fixture
        .app
        .post_empty(&fixture.org.key, &fixture.replay_path())
        .await;

    // Assert
    reply.assert_error(StatusCode::GONE, "EVENT_EXPIRED");
    assert_eq!(fixture.receiver.received().len(), 1);
}
