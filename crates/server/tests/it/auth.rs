//! Authentication and scopes (docs/api.md#authentication-and-scopes): every organization route
//! wants a live key of its organization carrying the route's scope.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, ALL_SCOPES, Backend, TestApp, endpoint_body, endpoint_path, string_at,
};

backend_tests!(
    every_route_refuses_a_key_lacking_its_scope,
    every_route_accepts_a_key_with_only_its_scope,
    every_route_refuses_a_request_without_a_key,
    malformed_authorization_headers_are_unauthorized,
    unknown_key_is_unauthorized,
    admin_token_is_not_an_organization_key,
    revoked_key_is_refused_on_the_very_next_request,
);

/// One organization route, with the scope it requires.
struct Route {
    method: Method,
    path: String,
    scope: &'static str,
    body: Option<Value>,
}

async fn every_route_refuses_a_key_lacking_its_scope(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;

    for route in routes(&string_at(&created, "id")) {
        let others: Vec<&str> = ALL_SCOPES
            .into_iter()
            .filter(|scope| *scope != route.scope)
            .collect();
        let key = app.create_key(org.id, &others).await;

        // Act
        let reply = app.send(request(&app, &route).bearer_auth(&key)).await;

        // Assert
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{} {}",
            route.method,
            route.path
        );
        reply.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(
        fetched.body,
        without_secret(&created),
        "a refused request changed nothing"
    );
}

async fn every_route_accepts_a_key_with_only_its_scope(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;

    for route in routes(&string_at(&created, "id")) {
        let key = app.create_key(org.id, &[route.scope]).await;

        // Act
        let reply = app.send(request(&app, &route).bearer_auth(&key)).await;

        // Assert
        assert!(
            reply.status.is_success(),
            "{} {} with only {}: {reply}",
            route.method,
            route.path,
            route.scope
        );
    }
}

async fn every_route_refuses_a_request_without_a_key(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;

    for route in routes(&string_at(&created, "id")) {
        // Act
        let reply = app.send(request(&app, &route)).await;

        // Assert
        reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

async fn malformed_authorization_headers_are_unauthorized(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    for header in [
        String::new(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        org.key.clone(),
        format!("Basic {}", org.key),
        format!("Bearer {}", org.key.replace("am_live_", "am_test_")),
        format!("Bearer {}!", org.key),
        "Bearer am_live_short".to_owned(),
        format!("Bearer {}", "x".repeat(5_000)),
    ] {
        // Act
        let reply = app
            .send(
                app.request(Method::GET, "/v1/webhooks")
                    .header(AUTHORIZATION, header.as_str()),
            )
            .await;

        // Assert
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header:?}");
        reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

async fn unknown_key_is_unauthorized(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let never_minted = format!("am_live_{}", "A1b2C3d4E5".repeat(4));

    // Act
    let reply = app.get(&never_minted, "/v1/webhooks").await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn admin_token_is_not_an_organization_key(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let reply = app.get(ADMIN_TOKEN, "/v1/webhooks").await;

    // Assert
    reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn revoked_key_is_refused_on_the_very_next_request(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    app.get(&org.key, "/v1/webhooks")
        .await
        .assert_status(StatusCode::OK);

    // Act
    let revoked = app
        .admin_post(&format!("/admin/v1/keys/{}/revoke", org.key_id), &json!({}))
        .await;
    let read = app.get(&org.key, "/v1/webhooks").await;
    let write = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    revoked.assert_status(StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string(), "{revoked}");
    read.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    write.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

/// Every organization route of issue 2, acting on endpoint `id`. Delete comes last so the
/// endpoint survives the routes before it.
fn routes(id: &str) -> Vec<Route> {
    let route = |method: Method, path: String, scope, body| Route {
        method,
        path,
        scope,
        body,
    };
    let one = format!("/v1/webhooks/{id}");
    vec![
        route(
            Method::POST,
            "/v1/webhooks".into(),
            "webhooks:write",
            Some(endpoint_body()),
        ),
        route(Method::GET, "/v1/webhooks".into(), "webhooks:read", None),
        route(Method::GET, one.clone(), "webhooks:read", None),
        route(Method::GET, format!("{one}/stats"), "webhooks:read", None),
        route(
            Method::PATCH,
            one.clone(),
            "webhooks:write",
            Some(json!({"description": "x"})),
        ),
        route(
            Method::POST,
            format!("{one}/rotate-secret"),
            "webhooks:write",
            None,
        ),
        route(
            Method::POST,
            "/v1/webhook-secret/rotate".into(),
            "org:admin:write",
            None,
        ),
        route(
            Method::POST,
            format!("{one}/rotate-secret"),
            "webhooks:write",
            Some(json!({"grace_period_seconds": 60})),
        ),
        route(
            Method::GET,
            "/v1/webhook-keys".into(),
            "webhooks:read",
            None,
        ),
        route(Method::GET, "/v1/event-types".into(), "webhooks:read", None),
        route(
            Method::POST,
            "/v1/webhooks/filters/test".into(),
            "webhooks:read",
            Some(json!({"filter": {"type": "wallet.balance_low"},
                        "event": {"type": "wallet.balance_low", "data": {}}})),
        ),
        route(Method::DELETE, one, "webhooks:write", None),
    ]
}

fn request(app: &TestApp, route: &Route) -> reqwest::RequestBuilder {
    let request = app.request(route.method.clone(), &route.path);
    match &route.body {
        Some(body) => request.json(body),
        None => request,
    }
}

fn without_secret(created: &Value) -> Value {
    let mut endpoint = created.clone();
    if let Some(object) = endpoint.as_object_mut() {
        object.remove("secret");
        object.remove("secret_displayed_once");
    }
    endpoint
}
