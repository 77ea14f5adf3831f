//! Rotation with overlap and the Ed25519 `v1a` signature (docs/api.md#signatures): what real
//! HTTPS receivers get during and after a rotation's grace period, checked with the official
//! `standardwebhooks` package and a plain HMAC; and `v1a`, checked with Python's `cryptography`
//! using only the public key `GET /v1/webhook-keys` lists.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_domain::Timestamp;
use herald_testkit::{Received, Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, delivering, endpoint_body, endpoint_path, header, string_at, timestamp_at,
    verify_delivery, verify_delivery_with, wait_for_received,
};

backend_tests!(
    during_a_grace_period_deliveries_verify_with_both_secrets_and_after_it_only_the_new_one,
    rotation_without_grace_stops_the_old_secret_at_once,
    rotate_body_is_validated,
    the_previous_secret_is_never_shown_and_stored_sealed,
    v1a_on_attempt_test_and_replay_verifies_with_the_listed_public_key,
    organizations_have_different_keys_and_each_keeps_its_own,
    concurrent_first_uses_make_exactly_one_key,
    an_organization_has_its_signing_key_from_its_creation,
);

/// A receiver, an app delivering to it, and one endpoint there.
struct Arranged {
    receiver: Receiver,
    app: TestApp,
    key: String,
    org: herald_domain::OrgId,
    endpoint: Value,
}

async fn arrange(backend: Backend) -> Arranged {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    Arranged {
        receiver,
        app,
        key: org.key,
        org: org.id,
        endpoint,
    }
}

impl Arranged {
    async fn rotate(&self, body: Option<&Value>) -> Value {
        let path = format!("{}/rotate-secret", endpoint_path(&self.endpoint));
        let reply = match body {
            Some(body) => self.app.post(&self.key, &path, body).await,
            None => self.app.post_empty(&self.key, &path).await,
        };
        reply.assert_status(StatusCode::OK);
        reply.body
    }

    /// Publishes one event and returns the `count`-th request the receiver got.
    async fn deliver(&self, count: usize) -> Received {
        self.app
            .publish(self.org, "wallet.balance_low", &json!({"balance": "3.20"}))
            .await;
        wait_for_received(&self.receiver, count).await[count - 1].clone()
    }
}

fn v1_count(received: &Received) -> (usize, usize) {
    (
        header(received, "x-amcore-signature")
            .matches("v1=")
            .count(),
        header(received, "webhook-signature")
            .split(' ')
            .filter(|entry| entry.starts_with("v1,"))
            .count(),
    )
}

async fn during_a_grace_period_deliveries_verify_with_both_secrets_and_after_it_only_the_new_one(
    backend: Backend,
) {
    // Arrange
    let arranged = arrange(backend).await;
    let old_secret = string_at(&arranged.endpoint, "secret");

    // Act
    let rotated = arranged
        .rotate(Some(&json!({"grace_period_seconds": 2})))
        .await;
    let new_secret = string_at(&rotated, "secret");
    let during = arranged.deliver(1).await;
    let test = arranged
        .app
        .post_empty(
            &arranged.key,
            &format!("{}/test", endpoint_path(&arranged.endpoint)),
        )
        .await;
    test.assert_status(StatusCode::OK);
    let test_during = wait_for_received(&arranged.receiver, 2).await[1].clone();
    // The window ends two seconds after the rotation: wait past it.
    let until = timestamp_at(&rotated, "previous_valid_until");
    let left = until.as_micros() - Timestamp::now().as_micros();
    tokio::time::sleep(
        Duration::from_micros(left.max(0).unsigned_abs()) + Duration::from_millis(200),
    )
    .await;
    let after = arranged.deliver(3).await;

    // Assert
    assert_eq!(seconds_between(&rotated), 2, "{rotated}");
    let both = json!({"previous_secret": old_secret});
    for received in [&during, &test_during] {
        assert_eq!(v1_count(received), (2, 2), "{:?}", received.headers);
        let verdict = verify_delivery_with(received, &received.body, &new_secret, &both).await;
        assert!(verdict.accepted, "{}", verdict.reason);
    }
    assert_eq!(v1_count(&after), (1, 1), "{:?}", after.headers);
    let new_only = verify_delivery(&after, &after.body, &new_secret, None, None).await;
    let old_only = verify_delivery(&after, &after.body, &old_secret, None, None).await;
    assert!(new_only.accepted, "{}", new_only.reason);
    assert!(
        !old_only.accepted,
        "the old secret still verifies after the window"
    );
    let rotations = arranged
        .app
        .audit_log(arranged.org)
        .await
        .into_iter()
        .filter(|record| record["action"] == json!("endpoint.secret_rotated"))
        .count();
    assert_eq!(rotations, 1, "a rotation with overlap is one audit record");
}

async fn rotation_without_grace_stops_the_old_secret_at_once(backend: Backend) {
    // Arrange
    let arranged = arrange(backend).await;
    let mut secrets = vec![string_at(&arranged.endpoint, "secret")];

    // Act: no body, an empty object, and an explicit 0, each a rotation without grace.
    let mut answers = Vec::new();
    for body in [
        None,
        Some(json!({})),
        Some(json!({"grace_period_seconds": 0})),
    ] {
        let rotated = arranged.rotate(body.as_ref()).await;
        secrets.push(string_at(&rotated, "secret"));
        answers.push(rotated);
    }
    let received = arranged.deliver(1).await;

    // Assert
    for rotated in &answers {
        assert_eq!(
            timestamp_at(rotated, "previous_valid_until"),
            timestamp_at(rotated, "updated_at"),
            "{rotated}"
        );
    }
    assert_eq!(v1_count(&received), (1, 1), "{:?}", received.headers);
    let current = secrets.last().expect("three rotations");
    let verdict = verify_delivery(&received, &received.body, current, None, None).await;
    assert!(verdict.accepted, "{}", verdict.reason);
    for old in &secrets[..secrets.len() - 1] {
        let verdict = verify_delivery(&received, &received.body, old, None, None).await;
        assert!(!verdict.accepted, "an old secret still verifies");
    }
}

async fn rotate_body_is_validated(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let endpoint = app.create_endpoint(&org.key, &endpoint_body()).await;
    let path = format!("{}/rotate-secret", endpoint_path(&endpoint));
    let cases = [
        (json!({"grace_period_seconds": -1}), "grace_period_seconds"),
        (
            json!({"grace_period_seconds": 604_801}),
            "grace_period_seconds",
        ),
        (json!({"grace_period_seconds": 1.5}), "grace_period_seconds"),
        (
            json!({"grace_period_seconds": "60"}),
            "grace_period_seconds",
        ),
        (
            json!({"grace_period_seconds": null}),
            "grace_period_seconds",
        ),
        (json!({"grace": 60}), "grace"),
    ];

    // Act
    let mut refused = Vec::new();
    for (body, field) in &cases {
        refused.push((app.post(&org.key, &path, body).await, *field));
    }
    let longest = app
        .post(&org.key, &path, &json!({"grace_period_seconds": 604_800}))
        .await;

    // Assert
    for (reply, field) in &refused {
        reply.assert_validation(field);
    }
    longest.assert_status(StatusCode::OK);
    assert_eq!(seconds_between(&longest.body), 604_800);
}

async fn the_previous_secret_is_never_shown_and_stored_sealed(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;
    let old_secret = string_at(&created, "secret");

    // Act
    let rotated = app
        .post(
            &org.key,
            &format!("{}/rotate-secret", endpoint_path(&created)),
            &json!({"grace_period_seconds": 300}),
        )
        .await;
    let get = app.get(&org.key, &endpoint_path(&created)).await;
    let list = app.get(&org.key, "/v1/webhooks").await;
    let keys = app.get(&org.key, "/v1/webhook-keys").await;
    let stored = app
        .stored_bytes("SELECT previous_secret FROM endpoints WHERE previous_secret IS NOT NULL")
        .await;

    // Assert
    rotated.assert_status(StatusCode::OK);
    for reply in [&rotated, &get, &list, &keys] {
        assert!(!reply.text.contains(&old_secret), "{reply}");
    }
    assert_eq!(
        stored.len(),
        1,
        "the previous secret is kept for the window"
    );
    let plaintext = STANDARD.decode(&old_secret).expect("base64");
    assert!(
        !contains(&stored[0], &plaintext),
        "raw previous secret stored"
    );
    assert!(!contains(&stored[0], old_secret.as_bytes()));
}

async fn v1a_on_attempt_test_and_replay_verifies_with_the_listed_public_key(backend: Backend) {
    // Arrange
    let arranged = arrange(backend).await;
    let secret = string_at(&arranged.endpoint, "secret");

    // Act
    let keys = arranged.app.get(&arranged.key, "/v1/webhook-keys").await;
    let attempt = arranged.deliver(1).await;
    let test = arranged
        .app
        .post_empty(
            &arranged.key,
            &format!("{}/test", endpoint_path(&arranged.endpoint)),
        )
        .await;
    test.assert_status(StatusCode::OK);
    let records = arranged
        .app
        .wait_for_deliveries(
            &arranged.key,
            &arranged.endpoint,
            "two records",
            |records| records.len() >= 2,
        )
        .await;
    let original = records
        .iter()
        .find(|record| record["event_type"] == json!("wallet.balance_low"))
        .expect("the attempt is in the feed");
    let replay = arranged
        .app
        .post_empty(
            &arranged.key,
            &format!(
                "/v1/webhooks/deliveries/{}/replay",
                string_at(original, "id")
            ),
        )
        .await;
    replay.assert_status(StatusCode::ACCEPTED);
    let received = wait_for_received(&arranged.receiver, 3).await;

    // Assert
    keys.assert_status(StatusCode::OK);
    let key = &keys.body["keys"][0];
    assert_eq!(
        keys.body["keys"].as_array().map(Vec::len),
        Some(1),
        "{keys}"
    );
    assert_eq!(key["alg"], json!("EdDSA"));
    assert_eq!(key["crv"], json!("Ed25519"));
    assert!(string_at(key, "kid").parse::<uuid::Uuid>().is_ok(), "{key}");
    timestamp_at(key, "created_at");
    let x = string_at(key, "x");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&x)
            .map(|bytes| bytes.len()),
        Ok(32)
    );
    let with_key = json!({"public_key": x});
    assert_eq!(received[0].body, attempt.body);
    for delivery in &received {
        let entries = header(delivery, "webhook-signature");
        assert_eq!(entries.matches("v1a,").count(), 1, "{entries}");
        let verdict = verify_delivery_with(delivery, &delivery.body, &secret, &with_key).await;
        assert!(verdict.accepted, "{}", verdict.reason);
        let tampered = String::from_utf8(delivery.body.to_vec())
            .expect("UTF-8 body")
            .replacen('{', "{ ", 1)
            .into_bytes();
        // Only the public key can pass: the HMAC checks are given the secret that signed, and
        // so fail on the tampered body too; a key that signs nothing must fail alone.
        let tampered = verify_delivery_with(delivery, &tampered, &secret, &with_key).await;
        assert!(!tampered.accepted, "a tampered body verified");
    }
    let other_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ed25519_public_key_of_another_org(&arranged.app).await);
    let wrong = verify_delivery_with(
        &received[0],
        &received[0].body,
        &secret,
        &json!({"public_key": other_key}),
    )
    .await;
    assert!(!wrong.accepted, "another organization's key verified");
}

async fn organizations_have_different_keys_and_each_keeps_its_own(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let first = app.org_with_key().await;
    let second = app.org_with_key().await;

    // Act
    let mut listed = Vec::new();
    for key in [&first.key, &second.key, &first.key] {
        let reply = app.get(key, "/v1/webhook-keys").await;
        reply.assert_status(StatusCode::OK);
        listed.push(reply.body["keys"][0].clone());
    }

    // Assert
    assert_eq!(listed[0], listed[2], "a key is stable");
    assert_ne!(listed[0]["x"], listed[1]["x"]);
    assert_ne!(listed[0]["kid"], listed[1]["kid"]);
}

async fn concurrent_first_uses_make_exactly_one_key(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let before = stored_keys(&app).await;

    // Act: sixteen first uses at once, none of which finds the key in the process's memory.
    let replies =
        futures::future::join_all((0..16).map(|_| app.get(&org.key, "/v1/webhook-keys"))).await;
    let stored = stored_keys(&app).await;

    // Assert
    let mut kids = Vec::new();
    for reply in &replies {
        reply.assert_status(StatusCode::OK);
        kids.push(string_at(&reply.body["keys"][0], "kid"));
    }
    kids.dedup();
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(
        stored, before,
        "no key stored beside the one made with the org"
    );
}

/// The key is made with the organization, so no delivery (the first one to a quiet tenant)
/// writes it on its way out.
async fn an_organization_has_its_signing_key_from_its_creation(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    app.org_with_key().await;
    let before = stored_keys(&app).await;

    // Act: another organization, and nothing that uses its key.
    app.org_with_key().await;

    // Assert
    let stored = stored_keys(&app).await;
    assert_eq!(
        stored - before,
        1,
        "the new organization's key is stored with it"
    );
}

/// How many signing keys `app` stores (the bootstrap's `default` organization has one too).
async fn stored_keys(app: &TestApp) -> usize {
    app.stored_bytes("SELECT public_key FROM org_signing_keys")
        .await
        .len()
}

/// The public key of a fresh organization of `app`.
async fn ed25519_public_key_of_another_org(app: &TestApp) -> Vec<u8> {
    let other = app.org_with_key().await;
    let reply = app.get(&other.key, "/v1/webhook-keys").await;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(string_at(&reply.body["keys"][0], "x"))
        .expect("base64url")
}

/// The grace period a rotation's answer states: `previous_valid_until - updated_at`, in seconds.
fn seconds_between(rotated: &Value) -> i64 {
    let until = timestamp_at(rotated, "previous_valid_until").as_micros();
    (until - timestamp_at(rotated, "updated_at").as_micros()) / 1_000_000
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
