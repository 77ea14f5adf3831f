//! Endpoint secrets and the per-organization secret (docs/api.md#endpoints and
//! docs/api.md#the-organization-secret): shown once, 32 random bytes, never listed, never stored in
//! the clear.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, endpoint_body, endpoint_path, string_at, timestamp_at};

backend_tests!(
    create_returns_a_32_byte_secret_shown_once,
    rotate_returns_a_different_secret_and_moves_updated_at,
    get_and_list_never_contain_a_secret,
    stored_secrets_are_not_the_plaintext,
    org_secret_rotation_returns_the_secret_and_its_grace_window,
    org_secret_rotation_mints_a_new_secret_each_time,
);

async fn create_returns_a_32_byte_secret_shown_once(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;

    // Assert
    assert_eq!(decoded_secret(&created, "secret").len(), 32);
    assert_eq!(created["secret_displayed_once"], json!(true));
}

async fn rotate_returns_a_different_secret_and_moves_updated_at(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;

    // Act
    let reply = app
        .post_empty(
            &org.key,
            &format!("{}/rotate-secret", endpoint_path(&created)),
        )
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let rotated = &reply.body;
    assert_eq!(decoded_secret(rotated, "secret").len(), 32);
    assert_ne!(rotated["secret"], created["secret"]);
    assert_eq!(rotated["secret_displayed_once"], json!(true));
    assert_eq!(rotated["id"], created["id"]);
    assert!(timestamp_at(rotated, "updated_at") > timestamp_at(&created, "updated_at"));
}

async fn get_and_list_never_contain_a_secret(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;
    let rotated = app
        .post_empty(
            &org.key,
            &format!("{}/rotate-secret", endpoint_path(&created)),
        )
        .await;
    rotated.assert_status(StatusCode::OK);

    // Act
    let get = app.get(&org.key, &endpoint_path(&created)).await;
    let list = app.get(&org.key, "/v1/webhooks").await;
    let update = app
        .patch(&org.key, &endpoint_path(&created), &json!({}))
        .await;

    // Assert
    let secrets = [
        string_at(&created, "secret"),
        string_at(&rotated.body, "secret"),
    ];
    for reply in [&get, &list, &update] {
        reply.assert_status(StatusCode::OK);
        assert!(!reply.text.contains("\"secret"), "{reply}");
        for secret in &secrets {
            assert!(!reply.text.contains(secret.as_str()), "{reply}");
        }
    }
}

async fn stored_secrets_are_not_the_plaintext(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let mut secrets = Vec::new();
    for _ in 0..3 {
        let created = app.create_endpoint(&org.key, &endpoint_body()).await;
        secrets.push(string_at(&created, "secret"));
    }

    // Act
    let stored = app.stored_endpoint_secrets().await;

    // Assert
    assert_eq!(stored.len(), secrets.len());
    for secret in &secrets {
        let plaintext = STANDARD.decode(secret).expect("base64");
        for column in &stored {
            assert!(!contains(column, &plaintext), "raw secret stored");
            assert!(!contains(column, secret.as_bytes()), "base64 secret stored");
        }
    }
}

async fn org_secret_rotation_returns_the_secret_and_its_grace_window(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let reply = app.post_empty(&org.key, "/v1/webhook-secret/rotate").await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let body = &reply.body;
    assert_eq!(decoded_secret(body, "webhook_secret").len(), 32);
    let rotated_at = timestamp_at(body, "rotated_at");
    let previous_valid_until = timestamp_at(body, "previous_valid_until");
    assert_eq!(
        previous_valid_until.as_micros() - rotated_at.as_micros(),
        5 * 60 * 1_000_000
    );
}

async fn org_secret_rotation_mints_a_new_secret_each_time(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let first = app.post_empty(&org.key, "/v1/webhook-secret/rotate").await;
    let second = app.post_empty(&org.key, "/v1/webhook-secret/rotate").await;

    // Assert
    first.assert_status(StatusCode::OK);
    second.assert_status(StatusCode::OK);
    assert_ne!(first.body["webhook_secret"], second.body["webhook_secret"]);
}

/// Decodes the standard-base64 secret at `field`.
#[track_caller]
fn decoded_secret(object: &Value, field: &str) -> Vec<u8> {
    let text = string_at(object, field);
    STANDARD
        .decode(&text)
        .unwrap_or_else(|error| panic!("{field} = {text:?} is not standard base64: {error}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
