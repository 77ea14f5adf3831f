//! Retention (docs/api.md#retention): attempt records and events older than the configured
//! retention are purged by the periodic purge, so they leave the feed.

use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use serde_json::json;

use crate::harness::{Backend, delivering, metric, wait_for_received, wait_until};

backend_tests!(delivered_attempts_are_purged_after_retention);

async fn delivered_attempts_are_purged_after_retention(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .event_retention(Duration::from_millis(1))
        .attempt_retention(Duration::from_millis(1))
        .retention_interval(Duration::from_millis(100))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;

    // Act
    app.publish(org.id, "wallet.balance_low", &json!({})).await;

    // Assert: the attempt was recorded (the counter moves only after the commit), and then
    // the purge took it out of the feed.
    wait_for_received(&receiver, 1).await;
    wait_until("the attempt to be recorded and then purged", || async {
        let recorded = metric(
            &app.metrics().await,
            r#"herald_delivery_attempts_total{outcome="success"}"#,
        ) == Some(1.0);
        let reply = app.get(&org.key, "/v1/webhooks/deliveries").await;
        let purged = reply.body["meta"]["total"] == json!(0);
        (recorded && purged).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 1, "purging never re-sends");
}
