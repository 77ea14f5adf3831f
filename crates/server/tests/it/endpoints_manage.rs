//! Get, update and delete an endpoint (docs/api.md#endpoints).

use herald_domain::EndpointId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, TestOrg, endpoint_body, endpoint_path, timestamp_at};

backend_tests!(
    get_unknown_endpoint_answers_not_found,
    update_changes_only_the_given_fields,
    update_replaces_the_whole_event_set,
    update_with_whitespace_description_clears_it,
    update_with_null_description_clears_it,
    update_deactivates_and_reactivates,
    update_rejects_api_version_as_immutable,
    update_with_empty_object_moves_only_updated_at,
    update_applies_the_create_rules_to_url_and_events,
    update_reports_unknown_fields,
    delete_answers_204_with_an_empty_body,
    deleted_endpoint_answers_not_found_everywhere,
    list_excludes_deleted_endpoints,
);

async fn get_unknown_endpoint_answers_not_found(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let reply = app
        .get(&org.key, &format!("/v1/webhooks/{}", EndpointId::new()))
        .await;

    // Assert
    reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn update_changes_only_the_given_fields(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"description": "renamed"}),
        )
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let updated = &reply.body;
    assert_eq!(updated["description"], json!("renamed"));
    for field in ["id", "url", "events", "active", "api_version", "created_at"] {
        assert_eq!(updated[field], created[field], "{field} must not change");
    }
    assert!(timestamp_at(updated, "updated_at") > timestamp_at(&created, "updated_at"));
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(fetched.body["description"], json!("renamed"), "{fetched}");
}

async fn update_replaces_the_whole_event_set(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app
        .create_endpoint(
            &org.key,
            &json!({"url": "https://example.com/hooks",
                    "events": ["wallet.balance_low", "wallet.balance_zero"]}),
        )
        .await;

    // Act
    let reply = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"events": ["campaign.approved"]}),
        )
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["events"], json!(["campaign.approved"]));
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(fetched.body["events"], json!(["campaign.approved"]));
}

async fn update_with_whitespace_description_clears_it(backend: Backend) {
    check_description_cleared(backend, json!("   ")).await;
}

async fn update_with_null_description_clears_it(backend: Backend) {
    check_description_cleared(backend, Value::Null).await;
}

async fn update_deactivates_and_reactivates(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let deactivated = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"active": false}),
        )
        .await;
    let reactivated = app
        .patch(&org.key, &endpoint_path(&created), &json!({"active": true}))
        .await;

    // Assert
    assert_eq!(created["disabled_reason"], Value::Null, "{created}");
    assert_eq!(created["failing_since"], Value::Null, "{created}");
    assert_eq!(deactivated.body["active"], json!(false), "{deactivated}");
    assert_eq!(
        deactivated.body["disabled_reason"],
        json!("manual"),
        "set inactive by the organization: {deactivated}"
    );
    assert_eq!(reactivated.body["active"], json!(true), "{reactivated}");
    assert_eq!(
        reactivated.body["disabled_reason"],
        Value::Null,
        "{reactivated}"
    );
    let listed = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(
        listed.body["data"][0]["disabled_reason"],
        Value::Null,
        "{listed}"
    );
    assert!(
        listed.body["data"][0]
            .as_object()
            .is_some_and(|object| object.contains_key("failing_since")),
        "{listed}"
    );
}

async fn update_rejects_api_version_as_immutable(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"api_version": "2026-04-01"}),
        )
        .await;

    // Assert
    assert_eq!(
        reply.assert_validation("api_version"),
        "immutable; create a new endpoint at the new version"
    );
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(fetched.body["updated_at"], created["updated_at"]);
}

async fn update_with_empty_object_moves_only_updated_at(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app
        .patch(&org.key, &endpoint_path(&created), &json!({}))
        .await;

    // Assert
    reply.assert_status(StatusCode::OK);
    let updated = &reply.body;
    for field in [
        "id",
        "org_id",
        "url",
        "description",
        "events",
        "active",
        "api_version",
        "created_at",
        "deleted_at",
        "disabled_reason",
        "failing_since",
    ] {
        assert_eq!(updated[field], created[field], "{field} must not change");
    }
    assert!(timestamp_at(updated, "updated_at") > timestamp_at(&created, "updated_at"));
}

async fn update_applies_the_create_rules_to_url_and_events(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"url": "http://example.com/hooks", "events": ["wallet.balanse_low"]}),
        )
        .await;

    // Assert
    assert_eq!(reply.assert_validation("url"), "must use https");
    assert!(
        reply
            .assert_validation("events")
            .contains("wallet.balanse_low")
    );
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(fetched.body["url"], created["url"]);
    assert_eq!(fetched.body["events"], created["events"]);
}

async fn update_reports_unknown_fields(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app
        .patch(&org.key, &endpoint_path(&created), &json!({"activ": false}))
        .await;

    // Assert
    assert_eq!(reply.assert_validation("activ"), "unknown field");
}

async fn delete_answers_204_with_an_empty_body(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;

    // Act
    let reply = app.delete(&org.key, &endpoint_path(&created)).await;

    // Assert
    reply.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(reply.text, "");
}

async fn deleted_endpoint_answers_not_found_everywhere(backend: Backend) {
    // Arrange
    let (app, org, created) = app_with_endpoint(backend).await;
    let path = endpoint_path(&created);
    app.delete(&org.key, &path)
        .await
        .assert_status(StatusCode::NO_CONTENT);

    // Act
    let get = app.get(&org.key, &path).await;
    let patch = app
        .patch(&org.key, &path, &json!({"description": "back?"}))
        .await;
    let delete = app.delete(&org.key, &path).await;
    let rotate = app
        .post_empty(&org.key, &format!("{path}/rotate-secret"))
        .await;

    // Assert
    for reply in [get, patch, delete, rotate] {
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

async fn list_excludes_deleted_endpoints(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let kept = app.create_endpoint(&org.key, &endpoint_body()).await;
    let deleted = app.create_endpoint(&org.key, &endpoint_body()).await;
    app.delete(&org.key, &endpoint_path(&deleted))
        .await
        .assert_status(StatusCode::NO_CONTENT);

    // Act
    let list = app.get(&org.key, "/v1/webhooks").await;

    // Assert
    list.assert_status(StatusCode::OK);
    assert_eq!(list.body["meta"]["total"], json!(1));
    let ids: Vec<&Value> = list.body["data"]
        .as_array()
        .map(|data| data.iter().map(|endpoint| &endpoint["id"]).collect())
        .unwrap_or_default();
    assert_eq!(ids, [&kept["id"]]);
}

/// Sets a description, then patches it with `cleared` and expects it gone.
async fn check_description_cleared(backend: Backend, cleared: Value) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let mut body = endpoint_body();
    body["description"] = json!("to be cleared");
    let created = app.create_endpoint(&org.key, &body).await;

    let reply = app
        .patch(
            &org.key,
            &endpoint_path(&created),
            &json!({"description": cleared}),
        )
        .await;

    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["description"], Value::Null);
    let fetched = app.get(&org.key, &endpoint_path(&created)).await;
    assert_eq!(fetched.body["description"], Value::Null, "{fetched}");
}

/// An app, an organization and one endpoint in it.
async fn app_with_endpoint(backend: Backend) -> (TestApp, TestOrg, Value) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = app.create_endpoint(&org.key, &endpoint_body()).await;
    (app, org, created)
}
