//! The egress proxy (docs/operations.md, "Egress through a proxy"): with `HERALD_EGRESS_PROXY`
//! set, published events, their retries and endpoint tests all leave through a real CONNECT
//! proxy, which is asked for the address Herald resolved and checked, never the endpoint's
//! name; a proxy that refuses the CONNECT fails the attempt with a clear error, and the
//! delivery is retried on the normal schedule.

use std::time::Duration;

use herald_testkit::{ConnectProxy, Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, Reply, TestApp, delivering, endpoint_path, has_outcome, timestamp_at,
    wait_for_received,
};

backend_tests!(
    deliveries_retries_and_tests_leave_through_the_egress_proxy,
    a_receiver_demanding_mutual_tls_gets_the_endpoints_certificate_through_the_proxy,
    a_refused_connect_fails_the_attempt_and_it_is_retried_on_schedule,
);

const EVENT: &str = "wallet.balance_low";

/// `POST /v1/webhooks/{id}/test` of `endpoint`, checked to be a 200.
async fn send_test(app: &TestApp, key: &str, endpoint: &Value) -> Reply {
    let tested = app
        .post(
            key,
            &format!("{}/test", endpoint_path(endpoint)),
            &json!({}),
        )
        .await;
    tested.assert_status(StatusCode::OK);
    tested
}

async fn deliveries_retries_and_tests_leave_through_the_egress_proxy(backend: Backend) {
    // Arrange: a receiver that fails its first request, reached by name through the proxy.
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(&[500]).spawn().await;
    let proxy = ConnectProxy::spawn().await;
    let app = delivering(backend, &ca)
        .egress_proxy(&proxy.url())
        .retry_schedule(vec![Duration::from_millis(200)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(
            &org.key,
            &receiver.url_for_host("localhost", "/sequence"),
            &[EVENT],
        )
        .await;

    // Act: a delivery that fails once and is retried, then an endpoint test.
    app.publish(org.id, EVENT, &json!({"balance": "3.20"}))
        .await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a retried success", |records| {
            has_outcome(records, "success")
        })
        .await;
    let tested = send_test(&app, &org.key, &endpoint).await;

    // Assert: the receiver got all three, and the proxy was only ever asked for the address.
    let outcomes: Vec<(Value, Value)> = records
        .iter()
        .rev()
        .map(|record| (record["outcome"].clone(), record["response_status"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [(json!("retry"), json!(500)), (json!("success"), json!(200))]
    );
    assert_eq!(tested.body["outcome"], json!("success"), "{tested}");
    let received = wait_for_received(&receiver, 3).await;
    assert_eq!(received.len(), 3);
    proxy.assert_only_asked_for(receiver.address);
}

async fn a_receiver_demanding_mutual_tls_gets_the_endpoints_certificate_through_the_proxy(
    backend: Backend,
) {
    // Arrange: a receiver that admits only clients its own CA signed, and an endpoint holding
    // a certificate that CA signed.
    let ca = TestCa::new();
    let client_ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .require_client_certificates(client_ca.root_pem())
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;
    let app = delivering(backend, &ca)
        .egress_proxy(&proxy.url())
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let leaf = client_ca.leaf(&["herald-client.example"]);
    let endpoint = app
        .create_endpoint(
            &org.key,
            &json!({
                "url": receiver.url_for_host("localhost", "/ok"),
                "events": [EVENT],
                "client_certificate": {"cert_pem": leaf.certificate_pem(), "key_pem": leaf.key_pem()},
            }),
        )
        .await;

    // Act
    let tested = send_test(&app, &org.key, &endpoint).await;

    // Assert
    assert_eq!(tested.body["outcome"], json!("success"), "{tested}");
    wait_for_received(&receiver, 1).await;
    proxy.assert_only_asked_for(receiver.address);
}

async fn a_refused_connect_fails_the_attempt_and_it_is_retried_on_schedule(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::builder()
        .refuse(StatusCode::FORBIDDEN)
        .spawn()
        .await;
    let delay = Duration::from_millis(500);
    let app = delivering(backend, &ca)
        .egress_proxy(&proxy.url())
        .retry_schedule(vec![delay, delay])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &[EVENT])
        .await;

    // Act
    app.publish(org.id, EVENT, &json!({})).await;

    // Assert: three attempts, each failed with the proxy's refusal, spaced by the schedule.
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a dead record", |records| {
            has_outcome(records, "dead")
        })
        .await;
    let summary: Vec<(Value, Value, Value, Value)> = records
        .iter()
        .rev()
        .map(|record| {
            (
                record["attempt"].clone(),
                record["outcome"].clone(),
                record["response_status"].clone(),
                record["error"].clone(),
            )
        })
        .collect();
    let refused = json!("proxy: CONNECT refused with 403");
    assert_eq!(
        summary,
        [
            (json!(1), json!("retry"), Value::Null, refused.clone()),
            (json!(2), json!("retry"), Value::Null, refused.clone()),
            (json!(3), json!("dead"), Value::Null, refused),
        ]
    );
    for pair in records.windows(2) {
        let (later, earlier) = (&pair[0], &pair[1]);
        let gap = timestamp_at(later, "occurred_at").as_micros()
            - timestamp_at(earlier, "occurred_at").as_micros();
        // The schedule's delay less its 20 % jitter.
        assert!(gap >= 400_000, "attempts {gap} µs apart: {records:?}");
    }
    assert!(receiver.received().is_empty());
    assert_eq!(proxy.targets().len(), 3, "one CONNECT per attempt");
}
