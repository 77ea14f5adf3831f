//! Organizations never see each other (docs/api.md#authentication-and-scopes): another
//! organization's ids answer 404, never 403, and lists hold only the caller's objects.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, endpoint_body, endpoint_path, string_at};

backend_tests!(
    another_organizations_endpoint_is_not_found_on_every_route,
    list_shows_only_the_callers_endpoints,
    endpoint_cap_is_per_organization,
);

async fn another_organizations_endpoint_is_not_found_on_every_route(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org_a = app.org_with_key().await;
    let org_b = app.org_with_key().await;
    let endpoint = app.create_endpoint(&org_a.key, &endpoint_body()).await;
    let path = endpoint_path(&endpoint);

    // Act
    let replies = [
        app.get(&org_b.key, &path).await,
        app.patch(&org_b.key, &path, &json!({"active": false}))
            .await,
        app.post_empty(&org_b.key, &format!("{path}/rotate-secret"))
            .await,
        app.delete(&org_b.key, &path).await,
    ];

    // Assert
    for reply in replies {
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let untouched = app.get(&org_a.key, &path).await;
    untouched.assert_status(StatusCode::OK);
    assert_eq!(untouched.body["active"], json!(true));
    assert_eq!(untouched.body["updated_at"], endpoint["updated_at"]);
}

async fn list_shows_only_the_callers_endpoints(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org_a = app.org_with_key().await;
    let org_b = app.org_with_key().await;
    let mut ids_a = BTreeSet::new();
    let mut ids_b = BTreeSet::new();
    for _ in 0..2 {
        let created = app.create_endpoint(&org_a.key, &endpoint_body()).await;
        ids_a.insert(string_at(&created, "id"));
    }
    for _ in 0..3 {
        let created = app.create_endpoint(&org_b.key, &endpoint_body()).await;
        ids_b.insert(string_at(&created, "id"));
    }

    // Act
    let list_a = app.get(&org_a.key, "/v1/webhooks").await;
    let list_b = app.get(&org_b.key, "/v1/webhooks").await;

    // Assert
    assert_eq!(listed_ids(&list_a.body), ids_a);
    assert_eq!(list_a.body["meta"]["total"], json!(2));
    assert_eq!(listed_ids(&list_b.body), ids_b);
    assert_eq!(list_b.body["meta"]["total"], json!(3));
    for endpoint in list_a.body["data"].as_array().into_iter().flatten() {
        assert_eq!(endpoint["org_id"], json!(org_a.id.to_string()));
    }
}

async fn endpoint_cap_is_per_organization(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org_a = app.org_with_key().await;
    let org_b = app.org_with_key().await;
    for _ in 0..50 {
        app.create_endpoint(&org_a.key, &endpoint_body()).await;
    }

    // Act
    let reply = app.post(&org_b.key, "/v1/webhooks", &endpoint_body()).await;

    // Assert
    reply.assert_status(StatusCode::CREATED);
}

fn listed_ids(list: &Value) -> BTreeSet<String> {
    list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|endpoint| string_at(endpoint, "id"))
        .collect()
}
