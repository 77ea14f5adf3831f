//! Custom headers (docs/api.md#custom-headers): an endpoint's headers reach its receiver on every
//! attempt, test and replay; every answer and the deliveries feed show their values as
//! `"<redacted>"`; they are sealed at rest; a `PATCH` replaces the set, and a value sent back as
//! `"<redacted>"` keeps the stored one.

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, delivering, endpoint_body_with, header, string_at, wait_for_received,
};

backend_tests!(
    headers_reach_the_receiver_and_show_only_redacted,
    a_patch_replaces_the_set_and_redacted_keeps_a_value,
    invalid_headers_are_refused_naming_the_field,
);

const API_KEY: &str = "gw-key-5f0c1d2e3a4b";

async fn headers_reach_the_receiver_and_show_only_redacted(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let headers = json!({"X-Api-Key": API_KEY, "Authorization": "Bearer gw-token"});

    // Act: create, send a test, publish, replay.
    let created = app
        .post(
            &org.key,
            "/v1/webhooks",
            &json!({"url": receiver.url("/ok"), "events": ["wallet.balance_low"], "headers": headers}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let id = string_at(&created.body, "id");
    app.post(&org.key, &format!("/v1/webhooks/{id}/test"), &json!({}))
        .await
        .assert_status(StatusCode::OK);
    app.publish(org.id, "wallet.balance_low", &json!({"balance": 1}))
        .await;
    let records = app
        .wait_for_deliveries(&org.key, &created.body, "the event's attempt", |records| {
            records
                .iter()
                .any(|record| record["event_type"] == json!("wallet.balance_low"))
        })
        .await;
    let event_record = records
        .iter()
        .find(|record| record["event_type"] == json!("wallet.balance_low"))
        .expect("the event's record");
    app.post(
        &org.key,
        &format!(
            "/v1/webhooks/deliveries/{}/replay",
            string_at(event_record, "id")
        ),
        &json!({}),
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    let received = wait_for_received(&receiver, 3).await;

    // Assert: the receiver got the real values every time.
    for request in &received {
        assert_eq!(header(request, "x-api-key"), API_KEY);
        assert_eq!(header(request, "authorization"), "Bearer gw-token");
    }
    // Every answer shows the names, never a value.
    let redacted = json!({"Authorization": "<redacted>", "X-Api-Key": "<redacted>"});
    assert_eq!(created.body["headers"], redacted);
    let read = app.get(&org.key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(read.body["headers"], redacted);
    let listed = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(listed.body["data"][0]["headers"], redacted);
    let records = app
        .wait_for_deliveries(&org.key, &created.body, "three records", |records| {
            records.len() >= 3
        })
        .await;
    for record in &records {
        assert_eq!(record["request_headers"]["X-Api-Key"], json!("<redacted>"));
        assert_eq!(
            record["request_headers"]["Authorization"],
            json!("<redacted>")
        );
    }
    for text in [&created.text, &read.text, &listed.text] {
        assert!(!text.contains(API_KEY), "a value leaked: {text}");
    }
    let feed = app.get(&org.key, "/v1/webhooks/deliveries").await;
    assert!(!feed.text.contains(API_KEY), "a value leaked into the feed");
    // Sealed at rest: the stored bytes do not hold the value.
    let stored = app.stored_endpoint_bytes("headers").await;
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0]
            .windows(API_KEY.len())
            .any(|window| window == API_KEY.as_bytes()),
        "the value is stored in the clear"
    );
}

async fn a_patch_replaces_the_set_and_redacted_keeps_a_value(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let created = app
        .create_endpoint(
            &org.key,
            &json!({
                "url": receiver.url("/ok"),
                "events": ["wallet.balance_low"],
                "headers": {"X-Api-Key": API_KEY, "X-Tenant": "blue"},
            }),
        )
        .await;
    let path = format!("/v1/webhooks/{}", string_at(&created, "id"));

    // Act: send back what was read with one value changed, and one header dropped.
    let read = app.get(&org.key, &path).await;
    let mut headers = read.body["headers"].clone();
    headers["X-Tenant"] = json!("green");
    headers["X-Region"] = json!("eu");
    let patched = app
        .patch(&org.key, &path, &json!({"headers": headers}))
        .await;
    let test = app
        .post(&org.key, &format!("{path}/test"), &json!({}))
        .await;

    // Assert
    patched.assert_status(StatusCode::OK);
    assert_eq!(
        patched.body["headers"],
        json!({"X-Api-Key": "<redacted>", "X-Region": "<redacted>", "X-Tenant": "<redacted>"})
    );
    test.assert_status(StatusCode::OK);
    let received = wait_for_received(&receiver, 1).await;
    assert_eq!(header(&received[0], "x-api-key"), API_KEY, "kept");
    assert_eq!(header(&received[0], "x-tenant"), "green", "changed");
    assert_eq!(header(&received[0], "x-region"), "eu", "added");

    // A placeholder for a header that has no stored value is refused, and {} removes all.
    app.patch(
        &org.key,
        &path,
        &json!({"headers": {"X-Other": "<redacted>"}}),
    )
    .await
    .assert_validation("headers");
    let cleared = app.patch(&org.key, &path, &json!({"headers": {}})).await;
    assert_eq!(cleared.body["headers"], json!({}));
    app.post(&org.key, &format!("{path}/test"), &json!({}))
        .await
        .assert_status(StatusCode::OK);
    let received = wait_for_received(&receiver, 2).await;
    assert!(received[1].headers.get("x-api-key").is_none());
    // An update that leaves `headers` out leaves them alone.
    let described = app
        .patch(&org.key, &path, &json!({"description": "billing"}))
        .await;
    assert_eq!(described.body["headers"], json!({}));
}

async fn invalid_headers_are_refused_naming_the_field(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let too_many: serde_json::Map<String, Value> =
        (0..21).map(|n| (format!("X-H{n}"), json!("v"))).collect();
    let cases = [
        json!({"Content-Type": "text/plain"}),
        json!({"X-AmCore-Signature": "forged"}),
        json!({"webhook-id": "x"}),
        json!({"traceparent": "00-x"}),
        json!({"Host": "evil.example"}),
        json!({"bad name": "v"}),
        json!({"X-Long": "v".repeat(1_025)}),
        json!({"X-Break": "a\r\nInjected: yes"}),
        json!({"X-Num": 1}),
        json!({"X-Key": "<redacted>"}),
        json!(["X-Key", "v"]),
        Value::Object(too_many),
    ];

    for headers in cases {
        // Act
        let created = app
            .post(
                &org.key,
                "/v1/webhooks",
                &endpoint_body_with("headers", headers.clone()),
            )
            .await;

        // Assert
        let message = created.assert_validation("headers");
        assert!(!message.is_empty(), "{headers}");
    }
    let live = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(live.body["meta"]["total"], json!(0), "nothing was created");
}
