//! The audit trail (docs/api.md#audit-trail), read through `GET /admin/v1/orgs/{id}/audit-log`:
//! every change records who, what, which object and which request; never a secret.

use herald_domain::OrgId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, Reply, TestApp, endpoint_body, endpoint_path, string_at};

backend_tests!(
    every_change_writes_an_audit_record_with_its_request_id,
    reads_and_refused_changes_write_no_audit_record,
    audit_log_shows_only_its_organization,
    audit_log_of_an_unknown_organization_is_not_found,
);

async fn every_change_writes_an_audit_record_with_its_request_id(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let create = app.post(&org.key, "/v1/webhooks", &endpoint_body()).await;
    let path = endpoint_path(&create.body);
    let update = app
        .patch(&org.key, &path, &json!({"description": "audited"}))
        .await;
    let rotate = app
        .post_empty(&org.key, &format!("{path}/rotate-secret"))
        .await;
    let org_rotate = app.post_empty(&org.key, "/v1/webhook-secret/rotate").await;
    let delete = app.delete(&org.key, &path).await;

    // Assert
    let endpoint_id = string_at(&create.body, "id");
    let org_id = org.id.to_string();
    let expected = [
        (&delete, "endpoint.deleted", endpoint_id.as_str()),
        (&org_rotate, "org.secret_rotated", org_id.as_str()),
        (&rotate, "endpoint.secret_rotated", endpoint_id.as_str()),
        (&update, "endpoint.updated", endpoint_id.as_str()),
        (&create, "endpoint.created", endpoint_id.as_str()),
    ];
    let log = app
        .admin_get(&format!("/admin/v1/orgs/{}/audit-log", org.id))
        .await;
    log.assert_status(StatusCode::OK);
    let records = log.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), expected.len(), "{log}");
    assert_eq!(log.body["meta"]["total"], json!(expected.len()));
    for (record, (reply, action, target_id)) in records.iter().zip(expected) {
        assert!(reply.status.is_success(), "{reply}");
        assert_eq!(record["action"], json!(action), "{record}");
        assert_eq!(record["target_id"], json!(target_id), "{record}");
        assert_eq!(record["org_id"], json!(org_id), "{record}");
        assert_eq!(
            record["api_key_id"],
            json!(org.key_id.to_string()),
            "{record}"
        );
        assert_eq!(record["request_id"], json!(reply.request_id()), "{record}");
        assert!(record["occurred_at"].is_string(), "{record}");
    }
    for secret in [
        string_at(&create.body, "secret"),
        string_at(&rotate.body, "secret"),
        string_at(&org_rotate.body, "webhook_secret"),
    ] {
        assert!(
            !log.text.contains(&secret),
            "a secret leaked into the audit log"
        );
    }
    assert!(
        !log.text.contains(&org.key),
        "an API key leaked into the audit log"
    );
}

async fn reads_and_refused_changes_write_no_audit_record(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let read_only = app.create_key(org.id, &["webhooks:read"]).await;

    // Act
    let replies = [
        app.get(&org.key, "/v1/webhooks").await,
        app.post(
            &org.key,
            "/v1/webhooks",
            &json!({"url": "http://example.com", "events": []}),
        )
        .await,
        app.post(&read_only, "/v1/webhooks", &endpoint_body()).await,
        app.delete(&org.key, &format!("/v1/webhooks/{}", uuid::Uuid::now_v7()))
            .await,
    ];

    // Assert
    assert!(
        replies
            .iter()
            .all(|reply| reply.status != StatusCode::CREATED)
    );
    let log = audit_log(&app, org.id).await;
    assert_eq!(log.body["data"], json!([]), "{log}");
}

async fn audit_log_shows_only_its_organization(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org_a = app.org_with_key().await;
    let org_b = app.org_with_key().await;
    app.create_endpoint(&org_a.key, &endpoint_body()).await;
    app.create_endpoint(&org_b.key, &endpoint_body()).await;

    // Act
    let log = audit_log(&app, org_a.id).await;

    // Assert
    let records: &[Value] = log.body["data"].as_array().map_or(&[], Vec::as_slice);
    assert_eq!(records.len(), 1, "{log}");
    assert_eq!(records[0]["org_id"], json!(org_a.id.to_string()));
}

async fn audit_log_of_an_unknown_organization_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = audit_log(&app, OrgId::new()).await;
    reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn audit_log(app: &TestApp, org: OrgId) -> Reply {
    app.admin_get(&format!("/admin/v1/orgs/{org}/audit-log"))
        .await
}
