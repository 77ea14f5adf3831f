//! The operator's admin API (docs/api.md#operator-api): organizations and API keys behind
//! `HERALD_ADMIN_TOKEN`, off when no token is configured.

use herald_domain::OrgId;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Backend, TestApp, string_at};

backend_tests!(
    admin_api_is_off_without_a_configured_token,
    admin_api_refuses_a_wrong_or_missing_token,
    first_start_creates_the_default_organization,
    create_org_returns_the_organization,
    create_org_rejects_a_blank_or_missing_name,
    mint_key_rejects_bad_scope_lists,
    mint_key_for_an_unknown_organization_is_not_found,
    minted_key_is_shown_once_and_never_listed,
);

async fn admin_api_is_off_without_a_configured_token(backend: Backend) {
    // Arrange
    let app = TestApp::builder()
        .backend(backend)
        .without_admin_token()
        .spawn()
        .await;

    // Act
    let list = app.admin_get("/admin/v1/orgs").await;
    let create = app
        .admin_post("/admin/v1/orgs", &json!({"name": "acme"}))
        .await;
    let anonymous = app.send(app.request(Method::GET, "/admin/v1/orgs")).await;

    // Assert
    for reply in [list, create, anonymous] {
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

async fn admin_api_refuses_a_wrong_or_missing_token(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let wrong = format!("{ADMIN_TOKEN}x");
    let prefix = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];

    for request in [
        app.request(Method::GET, "/admin/v1/orgs"),
        app.request(Method::GET, "/admin/v1/orgs")
            .bearer_auth(&wrong),
        app.request(Method::GET, "/admin/v1/orgs")
            .bearer_auth(prefix),
        app.request(Method::GET, "/admin/v1/orgs")
            .bearer_auth(&org.key),
        app.request(Method::GET, "/admin/v1/orgs")
            .basic_auth("admin", Some(ADMIN_TOKEN)),
        app.request(Method::POST, "/admin/v1/orgs")
            .bearer_auth(&wrong)
            .json(&json!({"name": "intruder"})),
    ] {
        // Act
        let reply = app.send(request).await;

        // Assert
        reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let orgs = app.admin_get("/admin/v1/orgs").await;
    assert!(!orgs.text.contains("intruder"), "{orgs}");
}

async fn first_start_creates_the_default_organization(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let reply = app.admin_get("/admin/v1/orgs").await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(names_of(&reply.body), ["default"]);
}

async fn create_org_returns_the_organization(backend: Backend) {
    // Act
    let app = TestApp::spawn(backend).await;
    let reply = app
        .admin_post("/admin/v1/orgs", &json!({"name": "  Acme Corp  "}))
        .await;

    // Assert
    reply.assert_status(StatusCode::CREATED);
    assert_eq!(reply.body["name"], json!("Acme Corp"));
    let id = string_at(&reply.body, "id");
    let fetched = app.admin_get(&format!("/admin/v1/orgs/{id}")).await;
    assert_eq!(fetched.body, reply.body);
    let list = app.admin_get("/admin/v1/orgs").await;
    assert_eq!(names_of(&list.body), ["default", "Acme Corp"]);
}

async fn create_org_rejects_a_blank_or_missing_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for body in [
        json!({"name": "   "}),
        json!({}),
        json!({"name": null}),
        json!({"name": "n".repeat(201)}),
    ] {
        let reply = app.admin_post("/admin/v1/orgs", &body).await;
        reply.assert_validation("name");
    }
}

async fn mint_key_rejects_bad_scope_lists(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await;
    let path = format!("/admin/v1/orgs/{org}/keys");

    for (scopes, fragment) in [
        (
            json!(["webhooks:read", "webhooks:delete"]),
            "webhooks:delete",
        ),
        (json!(["webhooks:read", "webhooks:read"]), "duplicate"),
        (json!([]), "at least one"),
        (json!("webhooks:read"), "array"),
        (Value::Null, "array"),
    ] {
        // Act
        let reply = app.admin_post(&path, &json!({"scopes": scopes})).await;

        // Assert
        let message = reply.assert_validation("scopes");
        assert!(message.contains(fragment), "{scopes}: {message}");
    }
    let keys = app.admin_get(&path).await;
    assert_eq!(keys.body["data"], json!([]), "{keys}");
}

async fn mint_key_for_an_unknown_organization_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app
        .admin_post(
            &format!("/admin/v1/orgs/{}/keys", OrgId::new()),
            &json!({"scopes": ["webhooks:read"]}),
        )
        .await;
    reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn minted_key_is_shown_once_and_never_listed(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await;

    // Act
    let minted = app
        .admin_post(
            &format!("/admin/v1/orgs/{org}/keys"),
            &json!({"scopes": ["webhooks:read", "webhooks:write"]}),
        )
        .await;
    let listed = app.admin_get(&format!("/admin/v1/orgs/{org}/keys")).await;

    // Assert
    minted.assert_status(StatusCode::CREATED);
    let token = string_at(&minted.body, "key");
    assert!(token.starts_with("am_live_"), "{token}");
    assert_eq!(
        minted.body["scopes"],
        json!(["webhooks:read", "webhooks:write"])
    );
    listed.assert_status(StatusCode::OK);
    let keys = listed.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["id"], minted.body["id"]);
    assert_eq!(keys[0]["scopes"], minted.body["scopes"]);
    assert!(keys[0].get("key").is_none(), "{listed}");
    assert!(!listed.text.contains(&token), "{listed}");
    let hint = string_at(&keys[0], "hint");
    assert!(token.starts_with(hint.trim_end_matches('…')), "{hint}");
}

fn names_of(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|org| string_at(org, "name"))
        .collect()
}
