//! Client certificates (docs/api.md#client-certificates): a receiver that demands mutual TLS
//! refuses an endpoint without one, with a clear error, and admits it once the endpoint holds a
//! certificate its CA signed; the pair is checked, write-only, sealed at rest, and shown only as
//! its subject and expiry.

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, delivering, endpoint_body_with, string_at, wait_for_received};

backend_tests!(
    a_receiver_demanding_mutual_tls_gets_the_endpoints_certificate,
    client_certificates_are_checked_as_a_pair,
);

async fn a_receiver_demanding_mutual_tls_gets_the_endpoints_certificate(backend: Backend) {
    // Arrange: a receiver that admits only clients its own CA signed.
    let ca = TestCa::new();
    let client_ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .require_client_certificates(client_ca.root_pem())
        .spawn()
        .await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let created = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    let path = format!("/v1/webhooks/{}", string_at(&created, "id"));

    // Act 1: without a certificate, the handshake is refused.
    let refused = app
        .post(&org.key, &format!("{path}/test"), &json!({}))
        .await;

    // Assert 1
    refused.assert_status(StatusCode::OK);
    assert_eq!(refused.body["outcome"], json!("dead"), "{refused}");
    // TLS 1.3 refuses a missing certificate after the handshake: the receiver's alert names
    // it when it arrives before the connection is torn down, a race the receiver's TCP stack
    // decides, so the error is asserted only to say the attempt failed before any answer
    // (docs/api.md#client-certificates; the alert's wording is unit-tested in describe.rs).
    let error = string_at(&refused.body, "error");
    assert!(!error.is_empty());
    assert_eq!(refused.body["response_status"], Value::Null, "{refused}");
    assert_eq!(created["client_certificate"], Value::Null);

    // Act 2: give the endpoint a certificate the receiver's CA signed.
    let leaf = client_ca.leaf(&["herald-client.example"]);
    let patched = app
        .patch(
            &org.key,
            &path,
            &json!({"client_certificate": {"cert_pem": leaf.certificate_pem(), "key_pem": leaf.key_pem()}}),
        )
        .await;
    let admitted = app
        .post(&org.key, &format!("{path}/test"), &json!({}))
        .await;
    app.publish(org.id, "wallet.balance_low", &json!({"balance": 2}))
        .await;

    // Assert 2: the test and the delivery both got through.
    patched.assert_status(StatusCode::OK);
    let summary = &patched.body["client_certificate"];
    assert!(
        summary["subject"]
            .as_str()
            .is_some_and(|subject| !subject.is_empty()),
        "{patched}"
    );
    assert!(summary["not_after"].is_string(), "{patched}");
    assert_eq!(
        summary.as_object().map(|object| object.len()),
        Some(2),
        "only subject and not_after are shown"
    );
    assert_eq!(admitted.body["outcome"], json!("success"), "{admitted}");
    wait_for_received(&receiver, 2).await;
    // The key never comes back, in any answer, and is sealed at rest.
    let key_body = leaf
        .key_pem()
        .lines()
        .nth(1)
        .expect("a PEM body line")
        .to_owned();
    let read = app.get(&org.key, &path).await;
    assert_eq!(read.body["client_certificate"], *summary);
    for text in [&patched.text, &read.text] {
        assert!(!text.contains(&key_body), "the key leaked: {text}");
    }
    let stored = app.stored_endpoint_bytes("client_certificate").await;
    assert_eq!(stored.len(), 1);
    assert!(
        !String::from_utf8_lossy(&stored[0]).contains(&key_body),
        "the key is stored in the clear"
    );

    // Act 3: `null` removes it, and the receiver refuses again.
    let removed = app
        .patch(&org.key, &path, &json!({"client_certificate": null}))
        .await;
    let refused_again = app
        .post(&org.key, &format!("{path}/test"), &json!({}))
        .await;

    // Assert 3
    assert_eq!(removed.body["client_certificate"], Value::Null);
    assert_eq!(refused_again.body["outcome"], json!("dead"));
}

async fn client_certificates_are_checked_as_a_pair(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let leaf = ca.leaf(&["one.example"]);
    let other = ca.leaf(&["two.example"]);
    let encrypted_key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0w\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases = [
        json!({"cert_pem": leaf.certificate_pem(), "key_pem": other.key_pem()}),
        json!({"cert_pem": leaf.certificate_pem(), "key_pem": encrypted_key}),
        json!({"cert_pem": "not a certificate", "key_pem": leaf.key_pem()}),
        json!({"cert_pem": leaf.certificate_pem()}),
        json!({"cert_pem": leaf.certificate_pem(), "key_pem": leaf.key_pem(), "password": "x"}),
        json!("a string"),
    ];

    for certificate in cases {
        // Act
        let reply = app
            .post(
                &org.key,
                "/v1/webhooks",
                &endpoint_body_with("client_certificate", certificate.clone()),
            )
            .await;

        // Assert
        let message = reply.assert_validation("client_certificate");
        assert!(!message.is_empty(), "{certificate}");
        assert!(
            !reply.text.contains("PRIVATE KEY"),
            "the message echoes the key"
        );
    }
    let good = app
        .post(
            &org.key,
            "/v1/webhooks",
            &endpoint_body_with(
                "client_certificate",
                json!({"cert_pem": leaf.certificate_pem(), "key_pem": leaf.key_pem()}),
            ),
        )
        .await;
    good.assert_status(StatusCode::CREATED);
    assert!(good.body["client_certificate"]["subject"].is_string());
}
