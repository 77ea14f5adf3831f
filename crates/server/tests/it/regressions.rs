//! Regressions found by the schema fuzzer (`scripts/schemathesis`) and the fuzz targets
//! (`fuzz/`): one test per finding, named for the behaviour that is now right.

use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, delivering, endpoint_body, endpoint_body_with, endpoint_path, string_at,
};

backend_tests!(
    nul_in_endpoint_text_is_a_validation_error,
    nul_in_a_replay_reason_is_a_validation_error,
    nul_in_admin_text_is_a_validation_error,
    document_marks_fields_that_refuse_null_as_not_nullable,
    document_marks_the_replay_body_optional_but_not_null,
    feed_refuses_timestamps_that_leave_rfc_3339_in_utc,
);

const NUL_MESSAGE: &str = "must not contain NUL characters";

/// Schemathesis: a description holding U+0000 was a 500 on PostgreSQL, whose `text` cannot
/// store it. Every string field of a body now refuses it with a 422, on both backends.
async fn nul_in_endpoint_text_is_a_validation_error(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    let endpoint = app.create_endpoint(&key, &endpoint_body()).await;
    let path = endpoint_path(&endpoint);

    // Act
    let created = [
        endpoint_body_with("description", json!("billing\u{0}")),
        endpoint_body_with("url", json!("https://example.com/\u{0}")),
        endpoint_body_with("events", json!(["wallet.balance_low\u{0}"])),
        endpoint_body_with("api_version", json!("2026-04-01\u{0}")),
    ];
    let mut create_replies = Vec::new();
    for body in &created {
        create_replies.push(app.post(&key, "/v1/webhooks", body).await);
    }
    let update_reply = app
        .patch(&key, &path, &json!({"description": "\u{0}"}))
        .await;
    let stored = app.get(&key, &path).await;

    // Assert
    for (reply, field) in create_replies
        .iter()
        .zip(["description", "url", "events", "api_version"])
    {
        assert_eq!(reply.assert_validation(field), NUL_MESSAGE, "{reply}");
    }
    assert_eq!(update_reply.assert_validation("description"), NUL_MESSAGE);
    stored.assert_status(StatusCode::OK);
    assert_eq!(stored.body["description"], Value::Null, "{stored}");
}

/// Schemathesis: the replay reason is written to the audit trail, so U+0000 in it was a 500
/// on PostgreSQL too.
async fn nul_in_a_replay_reason_is_a_validation_error(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    app.publish(org.id, "wallet.balance_low", &json!({"n": 1}))
        .await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "the first delivery", |records| {
            !records.is_empty()
        })
        .await;
    let replay = format!(
        "/v1/webhooks/deliveries/{}/replay",
        string_at(&records[0], "id")
    );

    // Act
    let reply = app
        .post(&org.key, &replay, &json!({"reason": "asked\u{0}"}))
        .await;

    // Assert
    assert_eq!(reply.assert_validation("reason"), NUL_MESSAGE);
}

/// The same fault on the admin API: an organization's name and an idempotency key.
async fn nul_in_admin_text_is_a_validation_error(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await;

    // Act
    let named = app
        .admin_post("/admin/v1/orgs", &json!({"name": "ac\u{0}me"}))
        .await;
    let published = app
        .admin_post(
            "/admin/v1/events",
            &json!({
                "org_id": org.to_string(),
                "type": "wallet.balance_low",
                "data": {},
                "idempotency_key": "k\u{0}",
            }),
        )
        .await;

    // Assert
    assert_eq!(named.assert_validation("name"), NUL_MESSAGE);
    assert_eq!(published.assert_validation("idempotency_key"), NUL_MESSAGE);
}

/// Schemathesis: the document declared `null` valid for `url`, `events` and `active` of an
/// update and for `api_version` of a create, which Herald refuses (README, Decisions). The
/// document now says what the API does, and the API still does it.
async fn document_marks_fields_that_refuse_null_as_not_nullable(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    let endpoint = app.create_endpoint(&key, &endpoint_body()).await;
    let document = app
        .send(app.request(Method::GET, "/openapi.json"))
        .await
        .body;
    let schemas = &document["components"]["schemas"];

    for (schema, field, nullable) in [
        ("UpdateEndpointRequest", "url", false),
        ("UpdateEndpointRequest", "events", false),
        ("UpdateEndpointRequest", "active", false),
        ("UpdateEndpointRequest", "description", true),
        ("CreateEndpointRequest", "api_version", false),
        ("CreateEndpointRequest", "description", true),
    ] {
        // Act
        let body = json!({ field: null });
        let reply = if schema == "UpdateEndpointRequest" {
            app.patch(&key, &endpoint_path(&endpoint), &body).await
        } else {
            let body = endpoint_body_with(field, Value::Null);
            app.post(&key, "/v1/webhooks", &body).await
        };

        // Assert
        assert_eq!(
            allows_null(&schemas[schema]["properties"][field]),
            nullable,
            "{schema}.{field} in the document"
        );
        assert_eq!(
            reply.status.is_success(),
            nullable,
            "{schema}.{field} = null: {reply}"
        );
    }
}

/// Schemathesis: the replay body was documented as `ReplayRequest` or `null`; a `null` body
/// is refused (400) like any body that is not an object. The document now marks the body as
/// optional instead, which is what the API does.
async fn document_marks_the_replay_body_optional_but_not_null(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    let replay = format!(
        "/v1/webhooks/deliveries/{}/replay",
        herald_domain::AttemptId::new()
    );
    let document = app
        .send(app.request(Method::GET, "/openapi.json"))
        .await
        .body;

    // Act
    let null_body = app
        .send(
            app.request(Method::POST, &replay)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body("null"),
        )
        .await;
    let no_body = app.post_empty(&key, &replay).await;

    // Assert
    let body = &document["paths"]["/v1/webhooks/deliveries/{id}/replay"]["post"]["requestBody"];
    assert_eq!(body["required"], json!(false), "{body}");
    let schema = &body["content"]["application/json"]["schema"];
    assert_eq!(
        schema["$ref"],
        json!("#/components/schemas/ReplayRequest"),
        "{schema}"
    );
    null_body.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
    no_body.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// The `query_string` fuzz target: `since=9999-12-31T23:59:59-23:59` and, once that was
/// fixed, the leap second `until=9999-12-31T23:59:60.9Z` were accepted although their instants
/// (year 10000 in UTC) have no RFC 3339 form, so they could never be written back. Such
/// instants are now refused like any malformed timestamp; the edges of the range pass.
async fn feed_refuses_timestamps_that_leave_rfc_3339_in_utc(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    let feed = "/v1/webhooks/deliveries";

    // Act
    let too_late = app
        .get(&key, &format!("{feed}?since=9999-12-31T23:59:59-23:59"))
        .await;
    let too_early = app
        .get(&key, &format!("{feed}?until=0000-01-01T00:00:00%2B00:01"))
        .await;
    let leap_second = app
        .get(&key, &format!("{feed}?until=9999-12-31T23:59:60.9Z"))
        .await;
    let edges = app
        .get(
            &key,
            &format!("{feed}?since=0000-01-01T00:00:00Z&until=9999-12-31T23:59:59.999999Z"),
        )
        .await;

    // Assert
    too_late.assert_validation("since");
    too_early.assert_validation("until");
    leap_second.assert_validation("until");
    edges.assert_status(StatusCode::OK);
}

/// Whether a property's schema admits `null`: `"type": [..., "null"]` or a `null` branch.
fn allows_null(schema: &Value) -> bool {
    let in_type = match &schema["type"] {
        Value::String(kind) => kind == "null",
        Value::Array(kinds) => kinds.iter().any(|kind| kind == "null"),
        _ => false,
    };
    let in_branch = ["oneOf", "anyOf"].iter().any(|key| {
        schema[*key]
            .as_array()
            .is_some_and(|branches| branches.iter().any(|branch| branch["type"] == "null"))
    });
    in_type || in_branch
}
