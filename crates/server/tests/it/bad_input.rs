//! Bad input never answers 500: every malformed body, path, query, route and method gets the
//! error envelope with the right code (docs/api.md#errors).

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;

use crate::harness::{Backend, Reply, TestApp, endpoint_body, endpoint_body_with};

backend_tests!(
    malformed_json_is_invalid_input,
    json_that_is_not_an_object_is_invalid_input,
    wrong_or_missing_content_type_is_invalid_input,
    non_utf8_body_is_invalid_input,
    deeply_nested_json_is_invalid_input,
    unknown_field_is_named_in_details,
    wrong_type_is_named_in_details,
    null_for_a_required_field_is_named_in_details,
    ten_thousand_events_are_a_validation_error,
    every_field_error_of_a_request_comes_back_together,
    body_over_the_default_cap_is_payload_too_large,
    body_over_a_configured_cap_is_payload_too_large,
    path_id_that_is_not_a_uuid_is_not_found,
    unknown_route_is_not_found,
    wrong_method_on_a_known_path_is_method_not_allowed,
    malformed_query_string_is_invalid_input,
    unknown_query_parameter_is_a_validation_error,
);

async fn malformed_json_is_invalid_input(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for body in [r#"{"url": "#, "{'url': 1}", "", "{}}"] {
        let reply = check(&app, json_post(&app, &key, body), StatusCode::BAD_REQUEST).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
    }
}

async fn json_that_is_not_an_object_is_invalid_input(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for body in [
        r#"[{"url": "https://example.com"}]"#,
        r#""a string""#,
        "42",
        "null",
        "true",
    ] {
        let reply = check(&app, json_post(&app, &key, body), StatusCode::BAD_REQUEST).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
    }
}

async fn wrong_or_missing_content_type_is_invalid_input(backend: Backend) {
    // Arrange
    let (app, key) = app_with_key(backend).await;
    let body = endpoint_body().to_string();
    let post = || app.request(Method::POST, "/v1/webhooks").bearer_auth(&key);

    // Act
    let text_plain = post().header(CONTENT_TYPE, "text/plain").body(body.clone());
    let form = post()
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.clone());
    let missing = post().body(body);

    // Assert
    for request in [text_plain, form, missing] {
        let reply = check(&app, request, StatusCode::BAD_REQUEST).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
    }
}

async fn non_utf8_body_is_invalid_input(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let bytes: Vec<u8> = b"{\"url\": \"https://example.com/\xff\xfe\", \"events\": []}".to_vec();
    let request = app
        .request(Method::POST, "/v1/webhooks")
        .bearer_auth(&key)
        .header(CONTENT_TYPE, "application/json")
        .body(bytes);
    let reply = check(&app, request, StatusCode::BAD_REQUEST).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
}

async fn deeply_nested_json_is_invalid_input(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let body = format!(r#"{{"url": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let reply = check(&app, json_post(&app, &key, &body), StatusCode::BAD_REQUEST).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
}

async fn unknown_field_is_named_in_details(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let body = endpoint_body_with("colour", json!("blue"));
    let reply = check(
        &app,
        app_post(&app, &key, &body),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(reply.assert_validation("colour"), "unknown field");
    assert_eq!(reply.detail_fields(), ["colour"]);
}

async fn wrong_type_is_named_in_details(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for (field, value) in [
        ("events", json!("wallet.balance_low")),
        ("events", json!([1, 2])),
        ("url", json!(443)),
        ("description", json!(["a"])),
        ("api_version", json!(20260401)),
    ] {
        let body = endpoint_body_with(field, value);
        let reply = check(
            &app,
            app_post(&app, &key, &body),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        reply.assert_validation(field);
    }
}

async fn null_for_a_required_field_is_named_in_details(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for field in ["url", "events", "api_version"] {
        let body = endpoint_body_with(field, json!(null));
        let reply = check(
            &app,
            app_post(&app, &key, &body),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        reply.assert_validation(field);
    }
}

async fn ten_thousand_events_are_a_validation_error(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let body = endpoint_body_with("events", json!(vec!["wallet.balance_low"; 10_000]));
    let reply = check(
        &app,
        app_post(&app, &key, &body),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        reply.assert_validation("events").contains("at most 50"),
        "{reply}"
    );
}

async fn every_field_error_of_a_request_comes_back_together(backend: Backend) {
    // Arrange
    let (app, key) = app_with_key(backend).await;
    let body = json!({
        "url": "http://example.com/hooks",
        "events": ["wallet.balanse_low"],
        "colour": "blue",
    });

    // Act
    let reply = check(
        &app,
        app_post(&app, &key, &body),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Assert
    assert_eq!(reply.detail_fields(), ["colour", "events", "url"]);
    assert_eq!(reply.assert_validation("url"), "must use https");
    assert!(
        reply
            .assert_validation("events")
            .contains("wallet.balanse_low")
    );
    assert_eq!(reply.assert_validation("colour"), "unknown field");
}

async fn body_over_the_default_cap_is_payload_too_large(backend: Backend) {
    // Arrange
    let (app, key) = app_with_key(backend).await;
    let description = "x".repeat(3 * 1024 * 1024);
    let body = endpoint_body_with("description", json!(description));

    // Act
    let reply = check(
        &app,
        app_post(&app, &key, &body),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Assert
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

async fn body_over_a_configured_cap_is_payload_too_large(backend: Backend) {
    // Arrange
    let app = TestApp::builder()
        .backend(backend)
        .max_body_bytes(1024)
        .spawn()
        .await;
    let key = app.org_with_key().await.key;
    let small = endpoint_body_with("description", json!("x".repeat(100)));
    let large = endpoint_body_with("description", json!("x".repeat(2_000)));

    // Act
    let accepted = app.post(&key, "/v1/webhooks", &small).await;
    let refused = check(
        &app,
        app_post(&app, &key, &large),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Assert
    accepted.assert_status(StatusCode::CREATED);
    refused.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
}

async fn path_id_that_is_not_a_uuid_is_not_found(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for id in [
        "not-a-uuid",
        "0190a1b2",
        "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
        "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
        "%00",
    ] {
        let path = format!("/v1/webhooks/{id}");
        let requests = [
            app.request(Method::GET, &path).bearer_auth(&key),
            app.request(Method::PATCH, &path)
                .bearer_auth(&key)
                .json(&json!({})),
            app.request(Method::DELETE, &path).bearer_auth(&key),
            app.request(Method::POST, &format!("{path}/rotate-secret"))
                .bearer_auth(&key),
        ];
        for request in requests {
            let reply = check(&app, request, StatusCode::NOT_FOUND).await;
            reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        }
    }
}

async fn unknown_route_is_not_found(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for path in [
        "/",
        "/v1",
        "/v1/nothing",
        "/v2/webhooks",
        "/v1/webhooks/a/b/c",
    ] {
        for request in [
            app.request(Method::GET, path),
            app.request(Method::GET, path).bearer_auth(&key),
        ] {
            let reply = check(&app, request, StatusCode::NOT_FOUND).await;
            reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        }
    }
}

async fn wrong_method_on_a_known_path_is_method_not_allowed(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let one = format!("/v1/webhooks/{}", herald_domain::EndpointId::new());
    for (method, path) in [
        (Method::PUT, "/v1/webhooks".to_owned()),
        (Method::DELETE, "/v1/webhooks".to_owned()),
        (Method::PATCH, "/v1/webhooks".to_owned()),
        (Method::POST, one.clone()),
        (Method::PUT, one.clone()),
        (Method::GET, format!("{one}/rotate-secret")),
        (Method::GET, "/v1/webhook-secret/rotate".to_owned()),
        (Method::POST, "/healthz".to_owned()),
    ] {
        let request = app.request(method, &path).bearer_auth(&key);
        let reply = check(&app, request, StatusCode::METHOD_NOT_ALLOWED).await;
        reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    }
}

async fn malformed_query_string_is_invalid_input(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    for query in ["limit=%zz", "limit=%ff", "limit=1&limit=2"] {
        let request = app
            .request(Method::GET, &format!("/v1/webhooks?{query}"))
            .bearer_auth(&key);
        let reply = check(&app, request, StatusCode::BAD_REQUEST).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
    }
}

async fn unknown_query_parameter_is_a_validation_error(backend: Backend) {
    let (app, key) = app_with_key(backend).await;
    let request = app
        .request(Method::GET, "/v1/webhooks?limt=2")
        .bearer_auth(&key);
    let reply = check(&app, request, StatusCode::UNPROCESSABLE_ENTITY).await;
    reply.assert_validation("limt");
}

/// Sends `request`, asserting the expected status and that nothing answers 500; returns the
/// reply for the caller's detailed assertions.
async fn check(app: &TestApp, request: RequestBuilder, expected: StatusCode) -> Reply {
    let reply = app.send(request).await;
    assert!(!reply.status.is_server_error(), "server error: {reply}");
    assert_eq!(reply.status, expected, "{reply}");
    reply
}

async fn app_with_key(backend: Backend) -> (TestApp, String) {
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    (app, key)
}

/// `POST /v1/webhooks` with raw text declared as JSON.
fn json_post(app: &TestApp, key: &str, body: &str) -> RequestBuilder {
    app.request(Method::POST, "/v1/webhooks")
        .bearer_auth(key)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned())
}

/// `POST /v1/webhooks` with a JSON value.
fn app_post(app: &TestApp, key: &str, body: &serde_json::Value) -> RequestBuilder {
    app.request(Method::POST, "/v1/webhooks")
        .bearer_auth(key)
        .json(body)
}
