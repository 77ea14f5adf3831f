//! `GET /v1/webhooks` pagination (docs/api.md#lists-and-pagination): newest first, `limit` from
//! 1 to 100, an opaque cursor that walks every endpoint exactly once.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, endpoint_body, string_at};

backend_tests!(
    empty_list_has_no_items_and_no_cursor,
    default_list_returns_everything_newest_first_in_one_page,
    limit_outside_1_to_100_is_a_validation_error,
    limit_at_its_bounds_is_accepted,
    limit_two_walks_every_endpoint_exactly_once,
    malformed_cursor_is_a_validation_error,
);

async fn empty_list_has_no_items_and_no_cursor(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;

    // Act
    let reply = app.get(&org.key, "/v1/webhooks").await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"success": true, "data": [],
               "meta": {"total": 0, "limit": 50, "offset": 0, "next_cursor": null}})
    );
}

async fn default_list_returns_everything_newest_first_in_one_page(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = create_endpoints(&app, &org.key, 5).await;

    // Act
    let reply = app.get(&org.key, "/v1/webhooks").await;

    // Assert
    reply.assert_status(StatusCode::OK);
    assert_eq!(reply.body["success"], json!(true));
    assert_eq!(
        reply.body["meta"],
        json!({"total": 5, "limit": 50, "offset": 0, "next_cursor": null})
    );
    let newest_first: Vec<String> = created.into_iter().rev().collect();
    assert_eq!(ids_of(&reply.body), newest_first);
}

async fn limit_outside_1_to_100_is_a_validation_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    for limit in ["0", "101", "-1", "ten", "", "1.5", "99999999999"] {
        let reply = app.get(&key, &format!("/v1/webhooks?limit={limit}")).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit={limit}: {reply}"
        );
        reply.assert_validation("limit");
    }
}

async fn limit_at_its_bounds_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    create_endpoints(&app, &key, 2).await;
    for (limit, expected_items) in [(1, 1), (100, 2)] {
        let reply = app.get(&key, &format!("/v1/webhooks?limit={limit}")).await;
        reply.assert_status(StatusCode::OK);
        assert_eq!(ids_of(&reply.body).len(), expected_items, "{reply}");
        assert_eq!(reply.body["meta"]["limit"], json!(limit));
    }
}

async fn limit_two_walks_every_endpoint_exactly_once(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let created = create_endpoints(&app, &org.key, 5).await;

    // Act
    let mut walked = Vec::new();
    let mut page_sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/webhooks?limit=2".to_owned(),
            Some(cursor) => format!("/v1/webhooks?limit=2&cursor={cursor}"),
        };
        let page = app.get(&org.key, &path).await;
        page.assert_status(StatusCode::OK);
        assert_eq!(page.body["meta"]["total"], json!(5), "{page}");
        assert_eq!(page.body["meta"]["limit"], json!(2), "{page}");
        let ids = ids_of(&page.body);
        page_sizes.push(ids.len());
        walked.extend(ids);
        match &page.body["meta"]["next_cursor"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor must be a string or null, got {other}"),
        }
        assert!(page_sizes.len() <= 5, "the walk does not end");
    }

    // Assert
    assert_eq!(page_sizes, [2, 2, 1]);
    let newest_first: Vec<String> = created.into_iter().rev().collect();
    assert_eq!(walked, newest_first);
}

async fn malformed_cursor_is_a_validation_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.org_with_key().await.key;
    for cursor in [
        "garbage!",
        "AAAA",
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let reply = app
            .get(&key, &format!("/v1/webhooks?cursor={cursor}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cursor={cursor}: {reply}"
        );
        reply.assert_validation("cursor");
    }
}

/// Creates `count` endpoints one after another; returns their ids, oldest first.
async fn create_endpoints(app: &TestApp, key: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let created = app.create_endpoint(key, &endpoint_body()).await;
        ids.push(string_at(&created, "id"));
    }
    ids
}

fn ids_of(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|endpoint| string_at(endpoint, "id"))
        .collect()
}
