//! `POST /v1/webhooks`: the created object and every rule of docs/api.md#validation-rules,
//! one test per rule and boundary.

use reqwest::StatusCode;
use serde_json::{Value, json};

use self::Expected::{Created, Rejected};

use crate::harness::{
    Backend, TestApp, TestAppBuilder, endpoint_body, endpoint_body_with, string_at,
};

backend_tests!(
    create_returns_the_endpoint_object_with_its_secret,
    create_rejects_http_url,
    create_rejects_ftp_url,
    create_rejects_url_without_host,
    create_rejects_relative_url,
    create_rejects_url_with_user_info,
    create_rejects_url_longer_than_2048_characters,
    create_accepts_url_of_exactly_2048_characters,
    create_rejects_private_ip_literal_by_default,
    create_rejects_loopback_ip_literal_by_default,
    create_rejects_localhost_by_default,
    create_accepts_loopback_ip_literal_when_its_network_is_allowed,
    create_accepts_localhost_when_loopback_is_allowed,
    create_rejects_private_network_outside_the_allow_list,
    create_rejects_missing_url,
    create_rejects_missing_events,
    create_rejects_empty_events,
    create_accepts_one_event,
    create_accepts_fifty_events,
    create_rejects_fifty_one_events,
    create_rejects_duplicate_event_type,
    create_rejects_unknown_event_type,
    create_rejects_webhook_test_event_type,
    create_accepts_description_of_200_characters,
    create_rejects_description_of_201_characters,
    create_accepts_description_of_200_accented_characters,
    create_rejects_description_of_201_accented_characters,
    create_stores_whitespace_only_description_as_null,
    create_rejects_unknown_api_version,
    create_rejects_deprecated_api_version,
    create_accepts_supported_api_version,
    create_defaults_api_version_to_newest_supported,
);

async fn create_returns_the_endpoint_object_with_its_secret(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let body = json!({
        "url": "https://example.com/hooks",
        "events": ["wallet.balance_low", "brand.vetted"],
        "description": "billing alerts",
    });

    // Act
    let reply = app.post(&org.key, "/v1/webhooks", &body).await;

    // Assert
    reply.assert_status(StatusCode::CREATED);
    let created = &reply.body;
    let id = string_at(created, "id");
    assert_eq!(
        uuid::Uuid::parse_str(&id).map(|id| id.get_version_num()),
        Ok(7)
    );
    assert_eq!(created["org_id"], json!(org.id.to_string()));
    assert_eq!(created["url"], json!("https://example.com/hooks"));
    assert_eq!(created["description"], json!("billing alerts"));
    assert_eq!(
        created["events"],
        json!(["wallet.balance_low", "brand.vetted"])
    );
    assert_eq!(created["active"], json!(true));
    assert_eq!(created["api_version"], json!("2026-04-01"));
    assert!(string_at(created, "created_at").ends_with('Z'), "{created}");
    assert_eq!(created["created_at"], created["updated_at"]);
    assert_eq!(created["deleted_at"], Value::Null);
    assert_eq!(created["secret_displayed_once"], json!(true));
    let fetched = app.get(&org.key, &format!("/v1/webhooks/{id}")).await;
    fetched.assert_status(StatusCode::OK);
    for field in ["id", "org_id", "url", "description", "events", "created_at"] {
        assert_eq!(fetched.body[field], created[field], "{field}");
    }
}

async fn create_rejects_http_url(backend: Backend) {
    let body = endpoint_body_with("url", json!("http://example.com/hooks"));
    check(
        default_app(backend),
        body,
        Rejected("url", "must use https"),
    )
    .await;
}

async fn create_rejects_ftp_url(backend: Backend) {
    let body = endpoint_body_with("url", json!("ftp://example.com/hooks"));
    check(
        default_app(backend),
        body,
        Rejected("url", "must use https"),
    )
    .await;
}

async fn create_rejects_url_without_host(backend: Backend) {
    let body = endpoint_body_with("url", json!("https://"));
    check(default_app(backend), body, Rejected("url", "")).await;
}

async fn create_rejects_relative_url(backend: Backend) {
    let body = endpoint_body_with("url", json!("/hooks"));
    check(default_app(backend), body, Rejected("url", "absolute")).await;
}

async fn create_rejects_url_with_user_info(backend: Backend) {
    let body = endpoint_body_with("url", json!("https://user:pass@example.com/hooks"));
    check(default_app(backend), body, Rejected("url", "user-info")).await;
}

async fn create_rejects_url_longer_than_2048_characters(backend: Backend) {
    let body = endpoint_body_with("url", json!(url_of_length(2049)));
    check(default_app(backend), body, Rejected("url", "2048")).await;
}

async fn create_accepts_url_of_exactly_2048_characters(backend: Backend) {
    let url = url_of_length(2048);
    let created = check(
        default_app(backend),
        endpoint_body_with("url", json!(url)),
        Created,
    )
    .await;
    assert_eq!(created["url"], json!(url));
}

async fn create_rejects_private_ip_literal_by_default(backend: Backend) {
    let body = endpoint_body_with("url", json!("https://10.0.0.7/hooks"));
    check(default_app(backend), body, Rejected("url", "10.0.0.7")).await;
}

async fn create_rejects_loopback_ip_literal_by_default(backend: Backend) {
    let body = endpoint_body_with("url", json!("https://127.0.0.1:8443/hooks"));
    check(default_app(backend), body, Rejected("url", "127.0.0.1")).await;
}

async fn create_rejects_localhost_by_default(backend: Backend) {
    let body = endpoint_body_with("url", json!("https://localhost:8443/hooks"));
    check(default_app(backend), body, Rejected("url", "localhost")).await;
}

async fn create_accepts_loopback_ip_literal_when_its_network_is_allowed(backend: Backend) {
    let app = TestApp::builder()
        .backend(backend)
        .allow_networks("127.0.0.0/8,::1/128");
    let body = endpoint_body_with("url", json!("https://127.0.0.1:8443/hooks"));
    check(app, body, Created).await;
}

async fn create_accepts_localhost_when_loopback_is_allowed(backend: Backend) {
    let app = TestApp::builder()
        .backend(backend)
        .allow_networks("127.0.0.0/8");
    let body = endpoint_body_with("url", json!("https://localhost:8443/hooks"));
    check(app, body, Created).await;
}

async fn create_rejects_private_network_outside_the_allow_list(backend: Backend) {
    let app = TestApp::builder()
        .backend(backend)
        .allow_networks("127.0.0.0/8");
    let body = endpoint_body_with("url", json!("https://192.168.1.10/hooks"));
    check(app, body, Rejected("url", "192.168.1.10")).await;
}

async fn create_rejects_missing_url(backend: Backend) {
    let body = json!({"events": ["wallet.balance_low"]});
    check(default_app(backend), body, Rejected("url", "required")).await;
}

async fn create_rejects_missing_events(backend: Backend) {
    let body = json!({"url": "https://example.com/hooks"});
    check(default_app(backend), body, Rejected("events", "required")).await;
}

async fn create_rejects_empty_events(backend: Backend) {
    let body = endpoint_body_with("events", json!([]));
    check(default_app(backend), body, Rejected("events", "at least 1")).await;
}

async fn create_accepts_one_event(backend: Backend) {
    let body = endpoint_body_with("events", json!(["lookup.completed"]));
    let created = check(default_app(backend), body, Created).await;
    assert_eq!(created["events"], json!(["lookup.completed"]));
}

async fn create_accepts_fifty_events(backend: Backend) {
    // The default catalog has 17 types, so 50 distinct ones need a bigger catalog.
    let app = TestApp::builder()
        .backend(backend)
        .event_types(&synthetic_catalog(60).join(","));
    let events = synthetic_catalog(50);
    let created = check(app, endpoint_body_with("events", json!(events)), Created).await;
    assert_eq!(created["events"], json!(events));
}

async fn create_rejects_fifty_one_events(backend: Backend) {
    let app = TestApp::builder()
        .backend(backend)
        .event_types(&synthetic_catalog(60).join(","));
    let body = endpoint_body_with("events", json!(synthetic_catalog(51)));
    check(app, body, Rejected("events", "at most 50")).await;
}

async fn create_rejects_duplicate_event_type(backend: Backend) {
    let body = endpoint_body_with(
        "events",
        json!(["brand.vetted", "wallet.balance_low", "brand.vetted"]),
    );
    check(
        default_app(backend),
        body,
        Rejected("events", "brand.vetted"),
    )
    .await;
}

async fn create_rejects_unknown_event_type(backend: Backend) {
    let body = endpoint_body_with("events", json!(["wallet.balanse_low"]));
    check(
        default_app(backend),
        body,
        Rejected("events", "wallet.balanse_low"),
    )
    .await;
}

async fn create_rejects_webhook_test_event_type(backend: Backend) {
    let body = endpoint_body_with("events", json!(["wallet.balance_low", "webhook.test"]));
    check(
        default_app(backend),
        body,
        Rejected("events", "webhook.test"),
    )
    .await;
}

async fn create_accepts_description_of_200_characters(backend: Backend) {
    let description = "d".repeat(200);
    let body = endpoint_body_with("description", json!(description));
    let created = check(default_app(backend), body, Created).await;
    assert_eq!(created["description"], json!(description));
}

async fn create_rejects_description_of_201_characters(backend: Backend) {
    let body = endpoint_body_with("description", json!("d".repeat(201)));
    check(default_app(backend), body, Rejected("description", "200")).await;
}

async fn create_accepts_description_of_200_accented_characters(backend: Backend) {
    // 400 bytes of UTF-8, but 200 characters: the limit counts characters.
    let description = "é".repeat(200);
    let body = endpoint_body_with("description", json!(description));
    let created = check(default_app(backend), body, Created).await;
    assert_eq!(created["description"], json!(description));
}

async fn create_rejects_description_of_201_accented_characters(backend: Backend) {
    let body = endpoint_body_with("description", json!("é".repeat(201)));
    check(default_app(backend), body, Rejected("description", "200")).await;
}

async fn create_stores_whitespace_only_description_as_null(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let created = app
        .create_endpoint(
            &org.key,
            &endpoint_body_with("description", json!(" \t\n  ")),
        )
        .await;

    // Assert
    assert_eq!(created["description"], Value::Null);
    let id = string_at(&created, "id");
    let fetched = app.get(&org.key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(fetched.body["description"], Value::Null, "{fetched}");
}

async fn create_rejects_unknown_api_version(backend: Backend) {
    let body = endpoint_body_with("api_version", json!("2024-01-01"));
    check(
        versioned_app(backend),
        body,
        Rejected("api_version", "2024-01-01"),
    )
    .await;
}

async fn create_rejects_deprecated_api_version(backend: Backend) {
    let body = endpoint_body_with("api_version", json!("2025-01-01"));
    check(
        versioned_app(backend),
        body,
        Rejected("api_version", "deprecated"),
    )
    .await;
}

async fn create_accepts_supported_api_version(backend: Backend) {
    let body = endpoint_body_with("api_version", json!("2026-04-01"));
    let created = check(versioned_app(backend), body, Created).await;
    assert_eq!(created["api_version"], json!("2026-04-01"));
}

async fn create_defaults_api_version_to_newest_supported(backend: Backend) {
    let created = check(versioned_app(backend), endpoint_body(), Created).await;
    assert_eq!(created["api_version"], json!("2026-04-01"));
}

/// What a create should answer.
enum Expected {
    /// 201 Created.
    Created,
    /// 422 `VALIDATION_FAILED` with `details.<field>` containing the fragment.
    Rejected(&'static str, &'static str),
}

/// Starts the app, creates an endpoint from `body` with an all-scope key and checks the
/// answer against `expected`. Returns the answer's body.
async fn check(app: TestAppBuilder, body: Value, expected: Expected) -> Value {
    let app = app.spawn().await;
    let org = app.org_with_key().await;
    let reply = app.post(&org.key, "/v1/webhooks", &body).await;
    match expected {
        Created => reply.assert_status(StatusCode::CREATED),
        Rejected(field, fragment) => {
            let message = reply.assert_validation(field);
            assert!(
                message.contains(fragment),
                "details.{field} = {message:?} should mention {fragment:?}"
            );
            assert_eq!(reply.detail_fields(), [field], "{reply}");
        }
    }
    reply.body
}

fn default_app(backend: Backend) -> TestAppBuilder {
    TestApp::builder().backend(backend)
}

/// An app supporting `2025-01-01` (deprecated) and `2026-04-01`.
fn versioned_app(backend: Backend) -> TestAppBuilder {
    TestApp::builder()
        .backend(backend)
        .api_versions("2025-01-01,2026-04-01")
        .deprecated_api_versions("2025-01-01")
}

/// An `https` URL of exactly `length` characters.
fn url_of_length(length: usize) -> String {
    let prefix = "https://example.com/";
    format!("{prefix}{}", "a".repeat(length - prefix.len()))
}

/// `count` distinct event type names, `test.type_01` onwards.
fn synthetic_catalog(count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("test.type_{n:02}")).collect()
}
