//! Pending retries to an endpoint that stops taking deliveries
//! (docs/api.md#410-and-automatic-disabling): deleting it abandons them at once, and making it
//! inactive ends each when it comes due; either way the feed says why and the receiver hears
//! nothing more.

use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, delivering, endpoint_path};

backend_tests!(
    deleting_an_endpoint_abandons_its_pending_retry,
    pending_retry_to_an_endpoint_made_inactive_is_recorded_dead,
);

const EVENT: &str = "wallet.balance_low";

async fn deleting_an_endpoint_abandons_its_pending_retry(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_secs(60)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &[EVENT])
        .await;
    app.publish(org.id, EVENT, &json!({})).await;
    app.wait_for_deliveries(&org.key, &endpoint, "the first attempt", |records| {
        records
            .iter()
            .any(|record| record["outcome"] == json!("retry"))
    })
    .await;

    // Act
    let deleted = app.delete(&org.key, &endpoint_path(&endpoint)).await;

    // Assert
    deleted.assert_status(StatusCode::NO_CONTENT);
    let records = app.endpoint_deliveries(&org.key, &endpoint).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let abandoned = &records[0];
    assert_eq!(abandoned["outcome"], json!("dead"), "{abandoned}");
    assert_eq!(abandoned["error"], json!("endpoint deleted"), "{abandoned}");
    assert_eq!(abandoned["attempt"], json!(2), "{abandoned}");
    assert_eq!(abandoned["response_status"], Value::Null, "{abandoned}");
    assert_eq!(abandoned["event_id"], records[1]["event_id"]);
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 1);
}

async fn pending_retry_to_an_endpoint_made_inactive_is_recorded_dead(backend: Backend) {
    // Arrange: the retry is due two seconds after the first attempt, long after the update.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_secs(2)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &[EVENT])
        .await;
    app.publish(org.id, EVENT, &json!({})).await;
    app.wait_for_deliveries(&org.key, &endpoint, "the first attempt", |records| {
        records
            .iter()
            .any(|record| record["outcome"] == json!("retry"))
    })
    .await;

    // Act
    let updated = app
        .patch(
            &org.key,
            &endpoint_path(&endpoint),
            &json!({"active": false}),
        )
        .await;

    // Assert
    updated.assert_status(StatusCode::OK);
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "the due retry", |records| {
            records
                .iter()
                .any(|record| record["outcome"] == json!("dead"))
        })
        .await;
    assert_eq!(records.len(), 2, "{records:?}");
    let ended = &records[0];
    assert_eq!(ended["error"], json!("endpoint inactive"), "{ended}");
    assert_eq!(ended["attempt"], json!(2), "{ended}");
    assert_eq!(ended["response_status"], Value::Null, "{ended}");
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 1);
}
