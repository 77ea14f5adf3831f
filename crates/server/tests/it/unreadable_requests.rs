//! Requests that cannot be read as sent (issue 11, item 5). A path whose percent-encoding
//! decodes to invalid UTF-8 names nothing: 404 in the error envelope, on every route with
//! an id, after the credentials are checked. What hyper refuses before Herald sees a request
//! gets hyper's status, with an empty body, at the limits docs/operations.md states.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN_TOKEN, Backend, TestApp, raw_exchange};

backend_tests!(
    a_path_that_decodes_to_invalid_utf8_is_not_found_in_the_envelope,
    a_path_that_decodes_to_invalid_utf8_still_needs_credentials_first,
    more_than_100_headers_are_refused_with_431,
    a_request_head_over_408_kib_is_refused_with_431,
    a_uri_over_65534_bytes_is_refused_with_414,
    raw_non_ascii_bytes_in_the_request_line_are_refused_with_400,
);

/// Ids whose percent-decoding is not UTF-8.
const UNDECODABLE: [&str; 3] = ["%ff%fe", "%C3%28", "0190a1b2-%80"];

/// Every route with an id in its path: method, path with `{id}`, and whether it takes the
/// admin token (else an organization key).
const ROUTES_WITH_IDS: [(Method, &str, bool); 12] = [
    (Method::GET, "/v1/webhooks/{id}", false),
    (Method::PATCH, "/v1/webhooks/{id}", false),
    (Method::DELETE, "/v1/webhooks/{id}", false),
    (Method::POST, "/v1/webhooks/{id}/rotate-secret", false),
    (Method::POST, "/v1/webhooks/{id}/test", false),
    (Method::GET, "/v1/webhooks/deliveries/{id}", false),
    (Method::POST, "/v1/webhooks/deliveries/{id}/replay", false),
    (Method::GET, "/admin/v1/orgs/{id}", true),
    (Method::GET, "/admin/v1/orgs/{id}/keys", true),
    (Method::POST, "/admin/v1/orgs/{id}/keys", true),
    (Method::GET, "/admin/v1/orgs/{id}/audit-log", true),
    (Method::POST, "/admin/v1/keys/{id}/revoke", true),
];

async fn a_path_that_decodes_to_invalid_utf8_is_not_found_in_the_envelope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    for id in UNDECODABLE {
        for (method, route, admin) in ROUTES_WITH_IDS {
            let path = route.replace("{id}", id);
            let token = if admin { ADMIN_TOKEN } else { key.as_str() };
            let request = app
                .request(method.clone(), &path)
                .bearer_auth(token)
                .json(&json!({}));

            let reply = app.send(request).await;

            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {reply}"
            );
            reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        }
    }
}

async fn a_path_that_decodes_to_invalid_utf8_still_needs_credentials_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (method, route, _) in ROUTES_WITH_IDS {
        let path = route.replace("{id}", "%ff%fe");

        let reply = app.send(app.request(method.clone(), &path)).await;

        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {reply}"
        );
        reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

async fn more_than_100_headers_are_refused_with_431(backend: Backend) {
    // Arrange: `Host` and 99 more headers is hyper's limit of 100; one more is over it.
    let app = TestApp::spawn(backend).await;
    let at_the_limit = request_with_headers("/healthz", 99);
    let over_the_limit = request_with_headers("/healthz", 100);

    // Act
    let served = raw_exchange(app.address, at_the_limit.as_bytes(), PROMPTLY).await;
    let refused = raw_exchange(app.address, over_the_limit.as_bytes(), PROMPTLY).await;

    // Assert
    served.assert_status(StatusCode::OK);
    refused.assert_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(refused.text, "", "hyper answers without a body");
}

async fn a_request_head_over_408_kib_is_refused_with_431(backend: Backend) {
    // Arrange: heads of exactly the limit and one byte more.
    let app = TestApp::spawn(backend).await;
    let limit = herald_server::http::MAX_REQUEST_HEAD_BYTES;
    let at_the_limit = request_of_length("/healthz", limit);
    let over_the_limit = request_of_length("/healthz", limit + 1);

    // Act
    let served = raw_exchange(app.address, at_the_limit.as_bytes(), PROMPTLY).await;
    let refused = raw_exchange(app.address, over_the_limit.as_bytes(), PROMPTLY).await;

    // Assert
    served.assert_status(StatusCode::OK);
    refused.assert_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(refused.text, "", "hyper answers without a body");
}

async fn a_uri_over_65534_bytes_is_refused_with_414(backend: Backend) {
    // Arrange: unknown paths, so that a URI hyper lets through gets Herald's 404.
    let app = TestApp::spawn(backend).await;
    let longest = format!("/{}", "a".repeat(65_533));
    let too_long = format!("/{}", "a".repeat(65_534));

    // Act
    let served = raw_exchange(app.address, get(&longest).as_bytes(), PROMPTLY).await;
    let refused = raw_exchange(app.address, get(&too_long).as_bytes(), PROMPTLY).await;

    // Assert
    served.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    refused.assert_status(StatusCode::URI_TOO_LONG);
    assert_eq!(refused.text, "", "hyper answers without a body");
}

async fn raw_non_ascii_bytes_in_the_request_line_are_refused_with_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut request = b"GET /v1/webhooks/".to_vec();
    request.extend_from_slice(&[0xff, 0xfe]);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: herald\r\n\r\n");

    let refused = raw_exchange(app.address, &request, PROMPTLY).await;

    refused.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(refused.text, "", "hyper answers without a body");
}

/// Far below any timeout involved.
const PROMPTLY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET path` with `Host` and `Connection: close`.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n")
}

/// `GET path` whose head is exactly `length` bytes, padded with one long header.
fn request_of_length(path: &str, length: usize) -> String {
    let start = format!("GET {path} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\nX-Filler: ");
    let end = "\r\n\r\n";
    let padding = length - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(padding))
}

/// `GET path` with `Host` and `extra` more headers (`Connection: close` among them).
fn request_with_headers(path: &str, extra: usize) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n");
    for n in 1..extra {
        request.push_str(&format!("X-Filler-{n}: {n}\r\n"));
    }
    request.push_str("\r\n");
    request
}
