//! `GET /openapi.json`: an OpenAPI 3.1 document that lists exactly the organization routes,
//! each of which is really served.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{Backend, TestApp};

backend_tests!(
    document_is_openapi_3_1_and_public,
    document_lists_exactly_the_organization_routes,
    every_documented_operation_is_routed_and_authenticated,
);

/// Every organization operation: endpoint management (issue 2), then deliveries, test and
/// replay, then recovery. A route is added here in the same change that builds it.
const EXPECTED_OPERATIONS: [(&str, &str); 19] = [
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("POST", "/v1/webhook-secret/rotate"),
    ("GET", "/v1/webhook-keys"),
    ("POST", "/v1/webhooks/{id}/test"),
    ("POST", "/v1/webhooks/filters/test"),
    ("GET", "/v1/webhooks/deliveries"),
    ("GET", "/v1/webhooks/deliveries/{id}"),
    ("POST", "/v1/webhooks/deliveries/{id}/replay"),
    ("POST", "/v1/webhooks/{id}/recover"),
    ("GET", "/v1/webhooks/recoveries/{id}"),
    ("GET", "/v1/webhooks/{id}/events"),
    ("GET", "/v1/webhooks/{id}/stats"),
    ("GET", "/v1/event-types"),
    ("GET", "/v1/me"),
];

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document_is_openapi_3_1_and_public(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let reply = app.send(app.request(Method::GET, "/openapi.json")).await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let version = reply.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi = {version:?}");
    assert!(reply.body["info"]["title"].is_string(), "{reply}");
    assert!(reply.body["paths"].is_object(), "{reply}");
}

async fn document_lists_exactly_the_organization_routes(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let document = app
        .send(app.request(Method::GET, "/openapi.json"))
        .await
        .body;

    // Assert
    let expected: BTreeSet<(String, String)> = EXPECTED_OPERATIONS
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(operations(&document), expected);
    for (method, path) in &expected {
        let operation = &document["paths"][path][method.to_lowercase()];
        assert!(
            operation["security"].is_array(),
            "{method} {path} must declare bearer security"
        );
    }
}

async fn every_documented_operation_is_routed_and_authenticated(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let document = app
        .send(app.request(Method::GET, "/openapi.json"))
        .await
        .body;
    let operations = operations(&document);
    assert!(!operations.is_empty());

    for (method, path) in operations {
        let concrete = fill_path_parameters(&path);
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");

        // Act
        let reply = app.send(app.request(method.clone(), &concrete)).await;

        // Assert
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {concrete} without a key: {reply}"
        );
        reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

/// Every (METHOD, path) the document describes.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// Replaces each `{name}` in a templated path with a fresh UUID.
fn fill_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                uuid::Uuid::now_v7().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
