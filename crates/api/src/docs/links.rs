//! OpenAPI links: from each answer that carries an id to the operations that take it. A client
//! generator can follow them, and Schemathesis's stateful phase does: it creates an endpoint,
//! then reads, updates, tests, recovers and deletes that endpoint, replays the attempt a test
//! made, follows the recovery it started, instead of guessing ids that only ever find 404.

//!
//! They are added to the JSON document: utoipa 5.5's `Link` serializes its fields in snake
//! case (`operation_id`), which no OpenAPI tool reads.

use serde_json::{Value, json};

/// The operations that take an endpoint's id in their path.
const ENDPOINT_OPERATIONS: [&str; 8] = [
    "get_endpoint",
    "update_endpoint",
    "delete_endpoint",
    "rotate_endpoint_secret",
    "test_endpoint",
    "recover_endpoint",
    "list_endpoint_events",
    "get_endpoint_stats",
];

/// The operations that take a delivery attempt's id in their path.
const DELIVERY_OPERATIONS: [&str; 2] = ["get_delivery", "replay_delivery"];

/// Where an answer's ids lead: (operation, status, where the id is in the answer, operations
/// that take it as `{id}`).
const PATH_LINKS: [(&str, &str, &str, &[&str]); 9] = [
    ("create_endpoint", "201", "/id", &ENDPOINT_OPERATIONS),
    ("list_endpoints", "200", "/data/0/id", &ENDPOINT_OPERATIONS),
    ("update_endpoint", "200", "/id", &["get_endpoint"]),
    ("test_endpoint", "200", "/delivery_id", &DELIVERY_OPERATIONS),
    ("list_deliveries", "200", "/data/0/id", &DELIVERY_OPERATIONS),
    (
        "list_deliveries",
        "200",
        "/data/0/endpoint_id",
        &["get_endpoint"],
    ),
    ("get_delivery", "200", "/endpoint_id", &["get_endpoint"]),
    ("replay_delivery", "202", "/endpoint_id", &["get_endpoint"]),
    ("recover_endpoint", "202", "/recovery_id", &["get_recovery"]),
];

/// Ids that lead to a filtered deliveries feed: (operation, status, where, query parameter).
const FEED_LINKS: [(&str, &str, &str, &str); 4] = [
    ("create_endpoint", "201", "/id", "endpoint_id"),
    ("list_endpoints", "200", "/data/0/id", "endpoint_id"),
    ("test_endpoint", "200", "/event_id", "event_id"),
    ("replay_delivery", "202", "/new_event_id", "event_id"),
];

/// Adds every link to the responses of `document`; a link from or to an operation the
/// document lacks is a bug the document's test reports.
pub(super) fn add(document: &mut Value) {
    for (from, status, pointer, targets) in PATH_LINKS {
        for target in targets {
            let name = format!("{target}{}", link_suffix(pointer));
            add_link(document, from, status, &name, target, "id", pointer);
        }
    }
    for (from, status, pointer, parameter) in FEED_LINKS {
        let name = format!("list_deliveries_by_{parameter}");
        add_link(
            document,
            from,
            status,
            &name,
            "list_deliveries",
            parameter,
            pointer,
        );
    }
}

/// Tells apart two links from one answer to the same operation (`/data/0/endpoint_id`).
fn link_suffix(pointer: &str) -> String {
    match pointer.rsplit('/').next() {
        Some("id") | None => String::new(),
        Some(field) => format!("_by_{field}"),
    }
}

fn add_link(
    document: &mut Value,
    from: &str,
    status: &str,
    name: &str,
    target: &str,
    parameter: &str,
    pointer: &str,
) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let response = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .find(|operation| operation["operationId"] == from)
        .and_then(|operation| operation.pointer_mut(&format!("/responses/{status}")));
    let Some(Value::Object(response)) = response else {
        return;
    };
    let links = response.entry("links").or_insert_with(|| json!({}));
    links[name] = json!({
        "operationId": target,
        "parameters": {parameter: format!("$response.body#{pointer}")},
    });
}
