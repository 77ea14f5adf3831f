//! Receivers that misbehave (docs/api.md#delivery-rules): one that never answers must not delay
//! anybody else, one that answers 50 MiB is read only up to the excerpt, and one that
//! trickles its answer runs into the deadline.

use std::time::{Duration, Instant};

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, delivering, string_at, wait_for_received, wait_until, wait_within};

backend_tests!(
    hanging_endpoint_does_not_delay_a_healthy_one,
    huge_answer_is_read_only_up_to_the_excerpt,
    trickling_answer_runs_into_the_deadline,
);

fn batch_of(org: &str, event_type: &str, count: usize) -> Value {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"org_id": org, "type": event_type, "data": {"n": n}}))
        .collect();
    json!({"events": events})
}

async fn hanging_endpoint_does_not_delay_a_healthy_one(backend: Backend) {
    // Arrange: twenty attempts hang on one endpoint until their 5 s deadline.
    let ca = TestCa::new();
    let hanging = Receiver::spawn(&ca).await;
    let healthy = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .request_timeout(Duration::from_secs(5))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let stuck = app
        .create_endpoint_at(&org.key, &hanging.url("/hang"), &["campaign.approved"])
        .await;
    app.create_endpoint_at(&org.key, &healthy.url("/ok"), &["wallet.balance_low"])
        .await;
    let org_id = org.id.to_string();
    app.admin_post(
        "/admin/v1/events/batch",
        &batch_of(&org_id, "campaign.approved", 20),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    // The per-endpoint limit (16) is in flight and hanging.
    wait_for_received(&hanging, 16).await;
    let hung_since = Instant::now();

    // Act
    app.admin_post(
        "/admin/v1/events/batch",
        &batch_of(&org_id, "wallet.balance_low", 20),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);

    // Assert
    wait_within(
        Duration::from_secs(3),
        "all 20 deliveries at the healthy receiver",
        || async { (healthy.received().len() >= 20).then_some(()) },
    )
    .await;
    assert!(hung_since.elapsed() < Duration::from_secs(4));
    let stuck_records = app.endpoint_deliveries(&org.key, &stuck).await;
    assert!(
        stuck_records.is_empty(),
        "no hanging attempt has timed out yet: {stuck_records:?}"
    );
    assert_eq!(healthy.received().len(), 20);
}

async fn huge_answer_is_read_only_up_to_the_excerpt(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/huge"), &["wallet.balance_low"])
        .await;

    // Act
    app.publish(org.id, "wallet.balance_low", &json!({})).await;

    // Assert
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "the attempt", |records| {
            !records.is_empty()
        })
        .await;
    let record = &records[0];
    assert_eq!(record["outcome"], json!("success"), "{record}");
    assert_eq!(record["response_status"], json!(200), "{record}");
    let excerpt = string_at(record, "response_body_excerpt");
    assert_eq!(excerpt, "a".repeat(1024));
    let took = record["response_time_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(took < 5_000, "reading 50 MiB would take longer: {took} ms");
}

async fn trickling_answer_runs_into_the_deadline(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .request_timeout(Duration::from_secs(1))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/trickle"), &["wallet.balance_low"])
        .await;

    // Act
    app.publish(org.id, "wallet.balance_low", &json!({})).await;

    // Assert
    let record = wait_until("the attempt", || async {
        let records = app.endpoint_deliveries(&org.key, &endpoint).await;
        records.into_iter().next()
    })
    .await;
    assert_eq!(record["outcome"], json!("dead"), "{record}");
    assert_eq!(record["error"], json!("timeout after 1s"), "{record}");
    let took = record["response_time_ms"].as_u64().unwrap_or_default();
    assert!((1_000..3_000).contains(&took), "took {took} ms");
}
