//! Failures and what follows them (docs/api.md#retries): retries on the schedule, `dead`
//! after the last attempt, the receiver's `Retry-After`, `410 Gone`, redirects, timeouts and
//! auto-disable. Schedules are tens of milliseconds so no test waits long.

use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, TestOrg, delivering, endpoint_path, has_outcome, header, string_at,
    timestamp_at, wait_for_received, wait_until,
};

backend_tests!(
    failed_attempt_is_retried_and_then_succeeds,
    failing_receiver_is_dead_after_the_last_scheduled_attempt,
    retry_after_of_a_busy_receiver_delays_the_next_attempt,
    gone_receiver_kills_the_delivery_and_disables_the_endpoint,
    redirect_is_not_followed,
    hanging_receiver_times_out_without_a_status,
    endpoint_failing_longer_than_auto_disable_is_set_inactive,
);

const EVENT: &str = "wallet.balance_low";

fn millis(delays: &[u64]) -> Vec<Duration> {
    delays.iter().copied().map(Duration::from_millis).collect()
}

async fn failed_attempt_is_retried_and_then_succeeds(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(&[500]).spawn().await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[1_500]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    let path = endpoint_path(&endpoint);

    // Act
    let published = app.publish(org.id, EVENT, &json!({"n": 1})).await;

    // Assert: the failure starts a streak (seen before the retry, 1.2 s or more later), the
    // success ends it.
    let failed = app
        .wait_for_deliveries(&org.key, &endpoint, "a retry record", |records| {
            has_outcome(records, "retry")
        })
        .await;
    let failing = app.get(&org.key, &path).await;
    assert_eq!(
        failing.body["failing_since"], failed[0]["occurred_at"],
        "{failing}"
    );
    assert_eq!(
        failing.body["disabled_reason"],
        Value::Null,
        "still active: {failing}"
    );
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a success", |records| {
            has_outcome(records, "success")
        })
        .await;
    assert_eq!(records.len(), 2, "{records:?}");
    let (second, first) = (&records[0], &records[1]);
    assert_eq!(first["attempt"], json!(1));
    assert_eq!(first["outcome"], json!("retry"));
    assert_eq!(first["response_status"], json!(500));
    assert_eq!(first["error"], json!("http 500"));
    assert!(
        timestamp_at(first, "next_attempt_at") > timestamp_at(first, "occurred_at"),
        "{first}"
    );
    assert_eq!(second["attempt"], json!(2));
    assert_eq!(second["outcome"], json!("success"));
    assert_eq!(second["next_attempt_at"], Value::Null);
    for record in &records {
        assert_eq!(record["event_id"], published["event_id"]);
    }
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let attempts: Vec<String> = received
        .iter()
        .map(|request| header(request, "x-amcore-delivery-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2"]);
    assert_eq!(
        header(&received[0], "webhook-id"),
        header(&received[1], "webhook-id")
    );
    let recovered = app.get(&org.key, &path).await;
    assert_eq!(
        recovered.body["failing_since"],
        Value::Null,
        "a success ends the streak: {recovered}"
    );
}

async fn failing_receiver_is_dead_after_the_last_scheduled_attempt(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[50, 50]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    app.wait_for_deliveries(&org.key, &endpoint, "a dead record", |records| {
        has_outcome(records, "dead")
    })
    .await;
    app.wait_for_empty_queue().await;
    let records = app.endpoint_deliveries(&org.key, &endpoint).await;
    let summary: Vec<(Value, Value)> = records
        .iter()
        .map(|record| (record["attempt"].clone(), record["outcome"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!(3), json!("dead")),
            (json!(2), json!("retry")),
            (json!(1), json!("retry")),
        ]
    );
    assert_eq!(records[0]["next_attempt_at"], Value::Null);
    assert_eq!(records[0]["response_status"], json!(500));
    assert_eq!(receiver.received().len(), 3);
}

async fn retry_after_of_a_busy_receiver_delays_the_next_attempt(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[50]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/busy"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a retry", |records| {
            has_outcome(records, "retry")
        })
        .await;
    let record = &records[0];
    assert_eq!(record["response_status"], json!(429));
    let wait = timestamp_at(record, "next_attempt_at").as_micros()
        - timestamp_at(record, "occurred_at").as_micros();
    assert!(
        (6_999_000..8_000_000).contains(&wait),
        "Retry-After: 7 should win over a 50 ms delay, got {wait} µs"
    );
    assert_eq!(receiver.received().len(), 1);
}

async fn gone_receiver_kills_the_delivery_and_disables_the_endpoint(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[50, 50]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/gone"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a dead record", |records| {
            has_outcome(records, "dead")
        })
        .await;
    app.wait_for_empty_queue().await;
    assert_eq!(records.len(), 1, "a 410 is never retried: {records:?}");
    assert_eq!(records[0]["response_status"], json!(410));
    assert_eq!(receiver.received().len(), 1);
    let current = app.get(&org.key, &endpoint_path(&endpoint)).await;
    assert_eq!(current.body["active"], json!(false), "{current}");
    assert_eq!(current.body["disabled_reason"], json!("gone"), "{current}");
    assert_eq!(
        current.body["failing_since"], records[0]["occurred_at"],
        "the 410 began the failure streak: {current}"
    );
    assert_disabled_with_reason(&app, &org, &endpoint).await;
    let again = app.publish(org.id, EVENT, &json!({})).await;
    assert_eq!(
        again["endpoints"],
        json!(0),
        "an inactive endpoint gets no events"
    );
}

async fn redirect_is_not_followed(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let target = Receiver::spawn(&ca).await;
    let receiver = Receiver::builder(&ca)
        .redirect_to(target.url("/ok"))
        .spawn()
        .await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/redirect"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a dead record", |records| {
            has_outcome(records, "dead")
        })
        .await;
    let record = &records[0];
    assert_eq!(record["response_status"], json!(302));
    let error = string_at(record, "error");
    assert!(error.contains("redirect not followed"), "{error}");
    assert_eq!(receiver.received().len(), 1);
    assert!(target.received().is_empty(), "the redirect was followed");
}

async fn hanging_receiver_times_out_without_a_status(backend: Backend) {
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
        .create_endpoint_at(&org.key, &receiver.url("/hang"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a dead record", |records| {
            has_outcome(records, "dead")
        })
        .await;
    let record = &records[0];
    assert_eq!(record["error"], json!("timeout after 1s"), "{record}");
    assert_eq!(record["response_status"], Value::Null);
    assert_eq!(record["response_body_excerpt"], Value::Null);
    let took = record["response_time_ms"].as_u64().unwrap_or_default();
    assert!((1_000..5_000).contains(&took), "took {took} ms");
    wait_for_received(&receiver, 1).await;
}

async fn endpoint_failing_longer_than_auto_disable_is_set_inactive(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[50, 50, 50]))
        .auto_disable_after(Duration::from_millis(1))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &[EVENT])
        .await;
    let path = endpoint_path(&endpoint);

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert
    wait_until("the endpoint to be set inactive", || async {
        let current = app.get(&org.key, &path).await;
        (current.body["active"] == json!(false)).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    let records = app.endpoint_deliveries(&org.key, &endpoint).await;
    assert_eq!(records[0]["outcome"], json!("dead"), "{records:?}");
    let sent = receiver.received().len();
    assert!(
        (1..=2).contains(&sent),
        "disabled by the second failure at the latest, yet {sent} attempts were sent"
    );
    let current = app.get(&org.key, &path).await;
    assert_eq!(
        current.body["disabled_reason"],
        json!("failing"),
        "{current}"
    );
    let first_failure = records
        .iter()
        .map(|record| string_at(record, "occurred_at"))
        .min()
        .expect("at least one attempt");
    assert_eq!(
        current.body["failing_since"],
        json!(first_failure),
        "failing_since is the first failure of the streak: {current}"
    );
    assert_disabled_with_reason(&app, &org, &endpoint).await;

    // Set active again by the organization: no reason, and a fresh streak.
    let enabled = app.patch(&org.key, &path, &json!({"active": true})).await;
    assert_eq!(enabled.body["active"], json!(true), "{enabled}");
    assert_eq!(enabled.body["disabled_reason"], Value::Null, "{enabled}");
    assert_eq!(enabled.body["failing_since"], Value::Null, "{enabled}");
}

/// Asserts an `endpoint.disabled` audit record for `endpoint`, made by Herald itself, with a
/// reason.
async fn assert_disabled_with_reason(app: &TestApp, org: &TestOrg, endpoint: &Value) {
    let log = app.audit_log(org.id).await;
    let disabled: Vec<&Value> = log
        .iter()
        .filter(|record| record["action"] == json!("endpoint.disabled"))
        .collect();
    assert_eq!(disabled.len(), 1, "{log:?}");
    let record = disabled[0];
    assert_eq!(record["target_id"], endpoint["id"], "{record}");
    assert_eq!(record["api_key_id"], Value::Null, "{record}");
    let reason = string_at(record, "reason");
    assert!(!reason.trim().is_empty(), "{record}");
}
