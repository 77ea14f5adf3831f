//! A delivery on the wire (docs/api.md#a-delivery-on-the-wire), as a real HTTPS receiver sees it:
//! the envelope, the headers, both signature schemes, and interoperability with an independent
//! verifier built on the official Standard Webhooks package.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{
    ADMIN_TOKEN, Backend, Subscribed, assert_event_id, delivering, header, received_json,
    string_at, subscribed, timestamp_at, verify_delivery, wait_for_received,
};

backend_tests!(
    delivery_is_a_post_with_the_contract_envelope_and_headers,
    published_data_reaches_the_receiver_byte_for_byte,
    feed_record_describes_exactly_what_was_sent,
    independent_verifier_accepts_a_delivery_and_rejects_tampering,
    after_org_secret_rotation_deliveries_carry_both_signatures,
);

async fn delivery_is_a_post_with_the_contract_envelope_and_headers(backend: Backend) {
    // Arrange
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;

    // Act
    let published = app
        .publish(org.id, "wallet.balance_low", &json!({"balance": "3.20"}))
        .await;

    // Assert
    let event_id = string_at(&published, "event_id");
    assert_event_id(&event_id);
    let received = wait_for_received(&receiver, 1).await;
    let delivery = &received[0];
    assert_eq!(delivery.path, "/ok");
    let body = received_json(delivery);
    let keys: Vec<&str> = body
        .as_object()
        .expect("the envelope is an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected_keys = ["api_version", "created_at", "data", "id", "org_id", "type"];
    expected_keys.sort_unstable();
    assert_eq!(keys, expected_keys, "{body}");
    assert_eq!(body["id"], json!(event_id));
    assert_eq!(body["type"], json!("wallet.balance_low"));
    assert_eq!(body["api_version"], json!("2026-04-01"));
    assert_eq!(body["org_id"], json!(org.id.to_string()));
    assert_eq!(body["data"], json!({"balance": "3.20"}));
    timestamp_at(&body, "created_at");

    assert_eq!(header(delivery, "content-type"), "application/json");
    let user_agent = header(delivery, "user-agent");
    assert!(user_agent.starts_with("Herald/"), "{user_agent}");
    assert_eq!(header(delivery, "x-amcore-event-id"), event_id);
    assert_eq!(
        header(delivery, "x-amcore-event-type"),
        "wallet.balance_low"
    );
    assert_eq!(header(delivery, "x-amcore-delivery-attempt"), "1");
    assert_eq!(header(delivery, "webhook-id"), event_id);
    let (timestamp, signatures) = amcore_signature(&header(delivery, "x-amcore-signature"));
    assert_eq!(signatures.len(), 1, "one v1 without an organization secret");
    assert!(signatures[0].len() == 64 && signatures[0].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(header(delivery, "webhook-timestamp"), timestamp.to_string());
    let now = herald_domain::Timestamp::now().unix_seconds();
    assert!(
        (now - timestamp).abs() < 60,
        "signed at {timestamp}, now {now}"
    );
    let standard = header(delivery, "webhook-signature");
    let (hmac, ed25519) = standard
        .split_once(' ')
        .unwrap_or_else(|| panic!("webhook-signature {standard} holds two entries"));
    let encoded = hmac
        .strip_prefix("v1,")
        .unwrap_or_else(|| panic!("webhook-signature {standard} starts with v1,"));
    assert_eq!(STANDARD.decode(encoded).map(|mac| mac.len()), Ok(32));
    let encoded = ed25519
        .strip_prefix("v1a,")
        .unwrap_or_else(|| panic!("webhook-signature {standard} ends with v1a,"));
    assert_eq!(
        STANDARD.decode(encoded).map(|signature| signature.len()),
        Ok(64)
    );
}

async fn published_data_reaches_the_receiver_byte_for_byte(backend: Backend) {
    // Arrange
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    // Unsorted keys, spaces, a trailing-zero decimal and an escape: a re-serialization would
    // change every one of them.
    let data = r#"{"wallet_id": "wal_01", "balance": {"amount": 3.20, "currency": "USD"}, "note": "caf\u00e9 \"ok\"", "tags": []}"#;
    let event = format!(
        r#"{{"org_id": "{}", "type": "wallet.balance_low", "data": {data}}}"#,
        org.id
    );
    let batch = format!(r#"{{"events": [{event}, {event}]}}"#);

    // Act
    for (path, body) in [
        ("/admin/v1/events", event),
        ("/admin/v1/events/batch", batch),
    ] {
        let reply = app
            .send(
                app.request(Method::POST, path)
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        reply.assert_status(StatusCode::ACCEPTED);
    }

    // Assert
    let received = wait_for_received(&receiver, 3).await;
    for delivery in &received {
        let text = String::from_utf8(delivery.body.to_vec()).expect("UTF-8 body");
        assert!(
            text.contains(&format!(r#""data":{data}}}"#)),
            "data should be spliced in as published: {text}"
        );
        let parsed: Value = serde_json::from_str(&text).expect("the envelope is still JSON");
        assert_eq!(parsed["data"]["note"], json!("café \"ok\""));
    }
}

async fn feed_record_describes_exactly_what_was_sent(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;

    // Act
    let published = app
        .publish(org.id, "wallet.balance_low", &json!({"balance": "3.20"}))
        .await;

    // Assert
    let received = wait_for_received(&receiver, 1).await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "the success record", |records| {
            !records.is_empty()
        })
        .await;
    let record = &records[0];
    let body = &received[0].body;
    assert_eq!(record["event_id"], published["event_id"]);
    assert_eq!(record["event_type"], json!("wallet.balance_low"));
    assert_eq!(record["url"], json!(receiver.url("/ok")));
    assert_eq!(record["attempt"], json!(1));
    assert_eq!(record["outcome"], json!("success"));
    assert_eq!(record["response_status"], json!(200));
    assert_eq!(record["response_body_excerpt"], json!("thanks"));
    assert_eq!(record["error"], Value::Null);
    assert_eq!(record["next_attempt_at"], Value::Null);
    assert_eq!(
        record["request_body_sha256"],
        json!(hex::encode(Sha256::digest(body)))
    );
    assert_eq!(record["request_body_bytes"], json!(body.len()));
    let sent = record["request_headers"]
        .as_object()
        .expect("request_headers is an object");
    let sent_signature = sent
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amcore-signature"))
        .map(|(_, value)| value.clone());
    assert_eq!(
        sent_signature,
        Some(json!(header(&received[0], "x-amcore-signature")))
    );
}

async fn independent_verifier_accepts_a_delivery_and_rejects_tampering(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    let secret = string_at(&endpoint, "secret");
    app.publish(org.id, "wallet.balance_low", &json!({"balance": "3.20"}))
        .await;
    let received = wait_for_received(&receiver, 1).await;
    let delivery = &received[0];
    let body = delivery.body.to_vec();
    let tampered = String::from_utf8(body.clone())
        .expect("UTF-8 body")
        .replace("3.20", "9.20")
        .into_bytes();
    let wrong_secret = STANDARD.encode([7u8; 32]);
    let (timestamp, _) = amcore_signature(&header(delivery, "x-amcore-signature"));

    // Act
    let genuine = verify_delivery(delivery, &body, &secret, None, None).await;
    let rejections = [
        (
            "tampered body",
            verify_delivery(delivery, &tampered, &secret, None, None).await,
        ),
        (
            "wrong secret",
            verify_delivery(delivery, &body, &wrong_secret, None, None).await,
        ),
        (
            "ten minutes later",
            verify_delivery(delivery, &body, &secret, None, Some(timestamp + 600)).await,
        ),
    ];

    // Assert
    assert!(genuine.accepted, "{}", genuine.reason);
    for (case, verdict) in rejections {
        assert!(!verdict.accepted, "the verifier accepted a {case}");
    }
}

async fn after_org_secret_rotation_deliveries_carry_both_signatures(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    let endpoint_secret = string_at(&endpoint, "secret");

    // Act
    let rotated = app.post_empty(&org.key, "/v1/webhook-secret/rotate").await;
    app.publish(org.id, "wallet.balance_low", &json!({"balance": "3.20"}))
        .await;

    // Assert
    rotated.assert_status(StatusCode::OK);
    let org_secret = string_at(&rotated.body, "webhook_secret");
    let received = wait_for_received(&receiver, 1).await;
    let delivery = &received[0];
    let (_, signatures) = amcore_signature(&header(delivery, "x-amcore-signature"));
    assert_eq!(signatures.len(), 2, "endpoint and organization signatures");
    let both = verify_delivery(
        delivery,
        &delivery.body,
        &endpoint_secret,
        Some(&org_secret),
        None,
    )
    .await;
    assert!(both.accepted, "{}", both.reason);
    let wrong_org_secret = STANDARD.encode([9u8; 32]);
    let wrong = verify_delivery(
        delivery,
        &delivery.body,
        &endpoint_secret,
        Some(&wrong_org_secret),
        None,
    )
    .await;
    assert!(
        !wrong.accepted,
        "a wrong organization secret must not verify"
    );
}

/// Splits `t=<t>,v1=<hex>[,v1=<hex>]` into the timestamp and the signatures.
#[track_caller]
fn amcore_signature(value: &str) -> (i64, Vec<String>) {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in value.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse().ok(),
            Some(("v1", signature)) => signatures.push(signature.to_owned()),
            _ => panic!("unexpected part {part:?} in X-AmCore-Signature {value}"),
        }
    }
    let timestamp = timestamp.unwrap_or_else(|| panic!("no t= in {value}"));
    (timestamp, signatures)
}
