//! The event catalog as a product (docs/api.md#the-catalog-file, #schema-enforcement,
//! #wildcards, #filters): a catalog file with schemas and examples, schema enforcement at
//! publish, wildcard subscriptions resolved at fan-out, and payload filters.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use herald_server::ServeArgs;
use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{
    Backend, TestApp, delivering, endpoint_body_with, endpoint_path, metric, string_at,
};

backend_tests!(
    the_catalog_file_is_listed_with_schemas_examples_and_operational_types,
    warn_accepts_data_breaking_its_schema_and_counts_it,
    reject_refuses_data_breaking_its_schema_naming_pointer_and_rule,
    reject_refuses_a_whole_batch_for_one_bad_event_naming_its_index,
    off_checks_nothing,
    wildcard_endpoints_receive_the_types_they_cover,
    wildcards_are_validated,
    a_type_added_to_the_catalog_reaches_a_star_endpoint_after_restart,
    filtered_endpoints_receive_only_matching_events,
    filters_are_returned_patched_and_cleared,
    malformed_filters_are_refused_with_the_pointer_of_the_fault,
    filters_test_answers_whether_a_filter_takes_an_event,
    recovering_missed_events_follows_wildcards_and_the_filter,
    the_document_declares_the_catalog_as_enums_and_webhooks,
);

/// Two types with a schema, one without; `wallet.balance_low` requires a string `balance`.
const CATALOG: &str = r#"
- name: wallet.balance_low
  description: The balance fell below its threshold.
  schema:
    type: object
    required: [balance]
    properties:
      balance: {type: string}
  example: {balance: "3.20"}
- name: wallet.balance_zero
  description: The balance reached zero.
  schema: {type: object, properties: {balance: {const: "0"}}}
- name: brand.vetted
  description: A brand passed vetting.
  deprecated: true
"#;

/// Writes `text` as `catalog.yaml` in a fresh directory, kept as long as the directory.
fn catalog_file(text: &str) -> (TempDir, PathBuf) {
    let directory = tempfile::tempdir().expect("creating a temporary directory");
    let path = directory.path().join("catalog.yaml");
    std::fs::write(&path, text).expect("writing the catalog file");
    (directory, path)
}

async fn app_with_catalog(backend: Backend, path: &Path, enforcement: &str) -> TestApp {
    TestApp::builder()
        .backend(backend)
        .event_catalog(path)
        .schema_enforcement(enforcement)
        .spawn()
        .await
}

fn violations(metrics: &str, event_type: &str) -> f64 {
    metric(
        metrics,
        &format!("herald_schema_violations_total{{event_type=\"{event_type}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn the_catalog_file_is_listed_with_schemas_examples_and_operational_types(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "warn").await;
    let org = app.org_with_key().await;

    // Act
    let listed = app.get(&org.key, "/v1/event-types").await;

    // Assert
    listed.assert_status(StatusCode::OK);
    let types = listed.body["data"].as_array().expect("a list");
    let names: Vec<&str> = types
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names,
        [
            "wallet.balance_low",
            "wallet.balance_zero",
            "brand.vetted",
            "endpoint.disabled",
            "endpoint.enabled",
            "delivery.exhausted"
        ]
    );
    assert_eq!(
        types[0],
        json!({"name": "wallet.balance_low", "description": "The balance fell below its threshold.",
               "deprecated": false,
               "schema": {"type": "object", "required": ["balance"],
                          "properties": {"balance": {"type": "string"}}},
               "example": {"balance": "3.20"}})
    );
    assert_eq!(types[2]["deprecated"], json!(true));
    assert_eq!(types[2]["schema"], Value::Null);
    assert!(types[3]["description"].is_string(), "{}", types[3]);
    // A type outside the file is not in the catalog.
    app.create_endpoint_at(&org.key, "https://example.com/a", &["wallet.balance_low"])
        .await;
    let unknown = app
        .post(
            &org.key,
            "/v1/webhooks",
            &endpoint_body_with("events", json!(["campaign.approved"])),
        )
        .await;
    assert_eq!(
        unknown.assert_validation("events"),
        "unknown event type: campaign.approved"
    );
}

async fn warn_accepts_data_breaking_its_schema_and_counts_it(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "warn").await;
    let org = app.create_org("acme").await;

    // Act
    app.publish(org, "wallet.balance_low", &json!({"balance": 3}))
        .await;
    let batch = app
        .admin_post(
            "/admin/v1/events/batch",
            &json!({"events": [
                {"org_id": org.to_string(), "type": "wallet.balance_low", "data": {"balance": "1"}},
                {"org_id": org.to_string(), "type": "wallet.balance_low", "data": {}},
                {"org_id": org.to_string(), "type": "brand.vetted", "data": {"any": 1}},
            ]}),
        )
        .await;

    // Assert
    batch.assert_status(StatusCode::ACCEPTED);
    let metrics = app.metrics().await;
    assert_eq!(violations(&metrics, "wallet.balance_low"), 2.0, "{metrics}");
    assert_eq!(violations(&metrics, "brand.vetted"), 0.0);
    assert_eq!(metric(&metrics, "herald_events_published_total"), Some(4.0));
}

async fn reject_refuses_data_breaking_its_schema_naming_pointer_and_rule(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "reject").await;
    let org = app.create_org("acme").await.to_string();
    let publish =
        |event_type: &str, data: Value| json!({"org_id": org, "type": event_type, "data": data});

    // Act
    let wrong_type = app
        .admin_post(
            "/admin/v1/events",
            &publish("wallet.balance_low", json!({"balance": 3})),
        )
        .await;
    let missing = app
        .admin_post(
            "/admin/v1/events",
            &publish("wallet.balance_low", json!({})),
        )
        .await;
    let valid = app
        .admin_post(
            "/admin/v1/events",
            &publish(
                "wallet.balance_low",
                json!({"balance": "3.20", "extra": true}),
            ),
        )
        .await;
    let without_schema = app
        .admin_post(
            "/admin/v1/events",
            &publish("brand.vetted", json!({"anything": [1, 2]})),
        )
        .await;

    // Assert
    assert_eq!(
        wrong_type.assert_validation("data"),
        r#"/balance: value is not of type "string""#
    );
    let message = missing.assert_validation("data");
    assert!(
        message.starts_with("(root): ") && message.contains("balance"),
        "{message}"
    );
    valid.assert_status(StatusCode::ACCEPTED);
    without_schema.assert_status(StatusCode::ACCEPTED);
    let metrics = app.metrics().await;
    assert_eq!(violations(&metrics, "wallet.balance_low"), 2.0, "{metrics}");
    assert_eq!(metric(&metrics, "herald_events_published_total"), Some(2.0));
}

async fn reject_refuses_a_whole_batch_for_one_bad_event_naming_its_index(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "reject").await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, "https://example.com/a", &["wallet.*"])
        .await;
    let event = |event_type: &str, data: Value| json!({"org_id": org.id.to_string(), "type": event_type, "data": data});

    // Act
    let refused = app
        .admin_post(
            "/admin/v1/events/batch",
            &json!({"events": [
                event("wallet.balance_low", json!({"balance": "1"})),
                event("wallet.balance_low", json!({"balance": 5})),
            ]}),
        )
        .await;

    // Assert
    assert_eq!(
        refused.assert_validation("events[1].data"),
        r#"/balance: value is not of type "string""#
    );
    assert_eq!(refused.detail_fields(), ["events[1].data"]);
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "herald_events_published_total"), Some(0.0));
    let stored = app
        .get(
            &org.key,
            &format!("/v1/webhooks/{}/events", string_at(&endpoint, "id")),
        )
        .await;
    stored.assert_status(StatusCode::OK);
    assert_eq!(
        stored.body["data"],
        json!([]),
        "nothing of the batch was stored"
    );
}

async fn off_checks_nothing(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "off").await;
    let org = app.create_org("acme").await;

    // Act
    app.publish(org, "wallet.balance_low", &json!({"balance": 3}))
        .await;

    // Assert
    let metrics = app.metrics().await;
    assert_eq!(violations(&metrics, "wallet.balance_low"), 0.0);
}

async fn wildcard_endpoints_receive_the_types_they_cover(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let url = receiver.url("/ok");
    let wallet = app.create_endpoint_at(&org.key, &url, &["wallet.*"]).await;
    let everything = app.create_endpoint_at(&org.key, &url, &["*"]).await;
    let exact = app
        .create_endpoint_at(&org.key, &url, &["campaign.approved", "phone_number.*"])
        .await;

    // Act
    let low = app
        .publish(org.id, "wallet.balance_low", &json!({"balance": "1"}))
        .await;
    let approved = app.publish(org.id, "campaign.approved", &json!({})).await;
    let bulk = app
        .publish(org.id, "phone_number.bulk_order.completed", &json!({}))
        .await;
    let vetted = app.publish(org.id, "brand.vetted", &json!({})).await;
    let test_type = app
        .admin_post(
            "/admin/v1/events",
            &json!({"org_id": org.id.to_string(), "type": "webhook.test", "data": {}}),
        )
        .await;
    let test_send = app
        .post_empty(&org.key, &format!("{}/test", endpoint_path(&everything)))
        .await;

    // Assert
    assert_eq!(low["endpoints"], json!(2), "{low}");
    assert_eq!(approved["endpoints"], json!(2), "{approved}");
    assert_eq!(bulk["endpoints"], json!(2), "{bulk}");
    assert_eq!(vetted["endpoints"], json!(1), "{vetted}");
    test_type.assert_validation("type");
    test_send.assert_status(StatusCode::OK);
    assert_eq!(test_send.body["outcome"], json!("success"), "{test_send}");
    app.wait_for_empty_queue().await;
    let types_of = |records: Vec<Value>| -> BTreeSet<String> {
        records
            .iter()
            .map(|record| string_at(record, "event_type"))
            .collect()
    };
    assert_eq!(
        types_of(app.endpoint_deliveries(&org.key, &wallet).await),
        BTreeSet::from(["wallet.balance_low".to_owned()])
    );
    assert_eq!(
        types_of(app.endpoint_deliveries(&org.key, &everything).await),
        BTreeSet::from(
            [
                "wallet.balance_low",
                "campaign.approved",
                "phone_number.bulk_order.completed",
                "brand.vetted",
                "webhook.test"
            ]
            .map(str::to_owned)
        )
    );
    assert_eq!(
        types_of(app.endpoint_deliveries(&org.key, &exact).await),
        BTreeSet::from(
            ["campaign.approved", "phone_number.bulk_order.completed"].map(str::to_owned)
        )
    );
    assert_eq!(receiver.received().len(), 8);
}

async fn wildcards_are_validated(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let cases = [
        (
            json!(["walet.*"]),
            "wildcard matches no event type: walet.*",
        ),
        (
            json!(["webhook.*"]),
            "wildcard matches no event type: webhook.*",
        ),
        (
            json!(["wallet*"]),
            "invalid wildcard: wallet* (only a final .* after a prefix, or * alone)",
        ),
        (
            json!(["*.balance_low"]),
            "invalid wildcard: *.balance_low (only a final .* after a prefix, or * alone)",
        ),
        (json!(["*", "*"]), "duplicate event type: *"),
    ];

    for (events, expected) in cases {
        // Act
        let reply = app
            .post(
                &org.key,
                "/v1/webhooks",
                &endpoint_body_with("events", events.clone()),
            )
            .await;

        // Assert
        assert_eq!(reply.assert_validation("events"), expected, "{events}");
    }
    let both = app
        .create_endpoint(
            &org.key,
            &endpoint_body_with("events", json!(["*", "wallet.*", "wallet.balance_low"])),
        )
        .await;
    assert_eq!(
        both["events"],
        json!(["*", "wallet.*", "wallet.balance_low"])
    );
    let patched = app
        .patch(
            &org.key,
            &endpoint_path(&both),
            &json!({"events": ["brand.*"]}),
        )
        .await;
    patched.assert_status(StatusCode::OK);
    assert_eq!(patched.body["events"], json!(["brand.*"]));
}

async fn a_type_added_to_the_catalog_reaches_a_star_endpoint_after_restart(backend: Backend) {
    // Arrange: a catalog of one type, and an endpoint subscribed to everything.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let (_directory, path) =
        catalog_file("[{\"name\": \"wallet.balance_low\", \"description\": \"Low.\"}]");
    let app = delivering(backend, &ca).event_catalog(&path).spawn().await;
    let org = app.org_with_key().await;
    let star = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["*"])
        .await;
    let prefixed = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.*"])
        .await;
    let refused = app
        .admin_post(
            "/admin/v1/events",
            &json!({"org_id": org.id.to_string(), "type": "wallet.topped_up", "data": {}}),
        )
        .await;
    refused.assert_validation("type");

    // Act: the operator adds a type and restarts.
    std::fs::write(
        &path,
        "[{\"name\": \"wallet.balance_low\", \"description\": \"Low.\"},
          {\"name\": \"wallet.topped_up\", \"description\": \"Money came in.\"}]",
    )
    .expect("rewriting the catalog file");
    let app = app
        .restart(delivering(backend, &ca).event_catalog(&path))
        .await;
    let published = app
        .publish(org.id, "wallet.topped_up", &json!({"amount": "10"}))
        .await;

    // Assert
    assert_eq!(published["endpoints"], json!(2), "{published}");
    app.wait_for_empty_queue().await;
    for endpoint in [&star, &prefixed] {
        let records = app.endpoint_deliveries(&org.key, endpoint).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["event_type"], json!("wallet.topped_up"));
        assert_eq!(records[0]["outcome"], json!("success"));
    }
}

async fn filtered_endpoints_receive_only_matching_events(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let url = receiver.url("/ok");
    let small = app
        .create_endpoint(
            &org.key,
            &json!({"url": url, "events": ["wallet.*"],
                    "filter": {"data": {"balance": {"$lt": 100}}}}),
        )
        .await;
    let euro = app
        .create_endpoint(
            &org.key,
            &json!({"url": url, "events": ["*"],
                    "filter": {"$or": [{"data": {"currency": "EUR"}}, {"type": "brand.vetted"}]}}),
        )
        .await;
    let unfiltered = app
        .create_endpoint_at(&org.key, &url, &["wallet.balance_low"])
        .await;

    // Act
    let cheap_usd = app
        .publish(
            org.id,
            "wallet.balance_low",
            &json!({"balance": 50, "currency": "USD"}),
        )
        .await;
    let rich_eur = app
        .publish(
            org.id,
            "wallet.balance_low",
            &json!({"balance": 500.5, "currency": "EUR"}),
        )
        .await;
    let string_balance = app
        .publish(org.id, "wallet.balance_low", &json!({"balance": "50"}))
        .await;
    let vetted = app.publish(org.id, "brand.vetted", &json!({})).await;
    let batch = app
        .admin_post(
            "/admin/v1/events/batch",
            &json!({"events": [
                {"org_id": org.id.to_string(), "type": "wallet.balance_zero", "data": {"balance": 0, "currency": "EUR"}},
                {"org_id": org.id.to_string(), "type": "campaign.approved", "data": {}},
            ]}),
        )
        .await;

    // Assert
    assert_eq!(cheap_usd["endpoints"], json!(2), "small and unfiltered");
    assert_eq!(rich_eur["endpoints"], json!(2), "euro and unfiltered");
    assert_eq!(
        string_balance["endpoints"],
        json!(1),
        "a string is not < 100"
    );
    assert_eq!(vetted["endpoints"], json!(1), "euro, by type");
    batch.assert_status(StatusCode::ACCEPTED);
    assert_eq!(batch.body["events"][0]["endpoints"], json!(2), "{batch}");
    assert_eq!(batch.body["events"][1]["endpoints"], json!(0), "{batch}");
    app.wait_for_empty_queue().await;
    let count = |records: Vec<Value>| records.len();
    assert_eq!(count(app.endpoint_deliveries(&org.key, &small).await), 2);
    assert_eq!(count(app.endpoint_deliveries(&org.key, &euro).await), 3);
    assert_eq!(
        count(app.endpoint_deliveries(&org.key, &unfiltered).await),
        3
    );
    assert_eq!(receiver.received().len(), 8);
}

async fn filters_are_returned_patched_and_cleared(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let filter = json!({"data": {"balance": {"$gte": 10, "$lt": 100}}});
    let created = app
        .create_endpoint(&org.key, &endpoint_body_with("filter", filter.clone()))
        .await;
    let path = endpoint_path(&created);

    // Act
    let read = app.get(&org.key, &path).await;
    let listed = app.get(&org.key, "/v1/webhooks").await;
    let untouched = app
        .patch(&org.key, &path, &json!({"description": "x"}))
        .await;
    let replaced = app
        .patch(
            &org.key,
            &path,
            &json!({"filter": {"type": "wallet.balance_low"}}),
        )
        .await;
    let cleared = app.patch(&org.key, &path, &json!({"filter": null})).await;
    let plain = app
        .create_endpoint(&org.key, &endpoint_body_with("description", json!("none")))
        .await;

    // Assert
    assert_eq!(created["filter"], filter);
    assert_eq!(read.body["filter"], filter);
    assert_eq!(listed.body["data"][0]["filter"], filter);
    assert_eq!(untouched.body["filter"], filter);
    assert_eq!(
        replaced.body["filter"],
        json!({"type": "wallet.balance_low"})
    );
    cleared.assert_status(StatusCode::OK);
    assert_eq!(cleared.body["filter"], Value::Null);
    assert_eq!(app.get(&org.key, &path).await.body["filter"], Value::Null);
    assert_eq!(plain["filter"], Value::Null);
}

async fn malformed_filters_are_refused_with_the_pointer_of_the_fault(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let existing = app
        .create_endpoint(&org.key, &endpoint_body_with("description", json!("x")))
        .await;
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}});
    let cases = [
        (json!([1]), "must be a JSON object".to_owned()),
        (json!("x"), "must be a JSON object".to_owned()),
        (
            json!({"data": {"balance": {"$lt": true}}}),
            "/data/balance/$lt: must be a number or a string".to_owned(),
        ),
        (
            json!({"data": {"balance": {"$between": [1, 2]}}}),
            "/data/balance/$between: unknown operator $between".to_owned(),
        ),
        (
            json!({"data": {"balance": {"$lt": 1, "currency": "EUR"}}}),
            "/data/balance: must not mix operators and field names".to_owned(),
        ),
        (
            json!({"$or": [{"type": "a"}, "b"]}),
            "/$or/1: must be a JSON object".to_owned(),
        ),
        (
            deep,
            "/a/b/c/d/e/f/g/h: nests deeper than 8 levels".to_owned(),
        ),
        (
            json!({"data": {"s": "x".repeat(4100)}}),
            format!(
                "must be at most 4096 bytes serialized, got {}",
                4100 + r#"{"data":{"s":""}}"#.len()
            ),
        ),
    ];

    for (filter, expected) in cases {
        // Act
        let created = app
            .post(
                &org.key,
                "/v1/webhooks",
                &endpoint_body_with("filter", filter.clone()),
            )
            .await;
        let patched = app
            .patch(
                &org.key,
                &endpoint_path(&existing),
                &json!({"filter": filter}),
            )
            .await;

        // Assert
        assert_eq!(created.assert_validation("filter"), expected);
        assert_eq!(patched.assert_validation("filter"), expected);
    }
    let listed = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(
        listed.body["meta"]["total"],
        json!(1),
        "nothing was created"
    );
}

async fn filters_test_answers_whether_a_filter_takes_an_event(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let reader = app.create_key(org.id, &["webhooks:read"]).await;
    let filter = json!({"data": {"balance": {"$lt": 100}}});
    let try_on = |data: Value| json!({"filter": filter, "event": {"type": "wallet.balance_low", "data": data}});

    // Act
    let taken = app
        .post(
            &reader,
            "/v1/webhooks/filters/test",
            &try_on(json!({"balance": 5})),
        )
        .await;
    let not_taken = app
        .post(
            &reader,
            "/v1/webhooks/filters/test",
            &try_on(json!({"balance": 500})),
        )
        .await;
    let malformed = app
        .post(
            &reader,
            "/v1/webhooks/filters/test",
            &json!({"filter": {"data": {"$gt": null}}, "event": {"type": "nope", "data": 1}, "x": 1}),
        )
        .await;
    let empty = app
        .post(&reader, "/v1/webhooks/filters/test", &json!({}))
        .await;

    // Assert
    taken.assert_status(StatusCode::OK);
    assert_eq!(taken.body, json!({"matches": true}));
    assert_eq!(not_taken.body, json!({"matches": false}));
    assert_eq!(
        malformed.assert_validation("filter"),
        "/data/$gt: must be a number or a string"
    );
    assert_eq!(
        malformed.detail_fields(),
        ["event.data", "event.type", "filter", "x"]
    );
    assert_eq!(
        malformed.body["error"]["details"]["event.type"],
        json!("unknown event type: nope")
    );
    assert_eq!(empty.detail_fields(), ["event", "filter"]);
}

async fn recovering_missed_events_follows_wildcards_and_the_filter(backend: Backend) {
    // Arrange: an inactive endpoint misses four events, two of which it would have taken.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint(
            &org.key,
            &json!({"url": receiver.url("/ok"), "events": ["wallet.*", "brand.vetted"],
                    "filter": {"$or": [{"type": "brand.vetted"},
                                       {"data": {"balance": {"$lt": 100}}}]}}),
        )
        .await;
    let path = endpoint_path(&endpoint);
    app.patch(&org.key, &path, &json!({"active": false}))
        .await
        .assert_status(StatusCode::OK);
    let since = herald_domain::Timestamp::from_micros(
        herald_domain::Timestamp::now().as_micros() - 60_000_000,
    );
    for (event_type, data) in [
        ("wallet.balance_low", json!({"balance": 5})),
        ("wallet.balance_zero", json!({"balance": 500})),
        ("brand.vetted", json!({})),
        ("campaign.approved", json!({"balance": 1})),
    ] {
        let published = app.publish(org.id, event_type, &data).await;
        assert_eq!(published["endpoints"], json!(0), "{published}");
    }
    app.patch(&org.key, &path, &json!({"active": true}))
        .await
        .assert_status(StatusCode::OK);

    // Act
    let recovery = app
        .post(
            &org.key,
            &format!("{path}/recover"),
            &json!({"since": since.to_string(), "include_missing": true}),
        )
        .await;

    // Assert
    recovery.assert_status(StatusCode::ACCEPTED);
    let recovery_id = string_at(&recovery.body, "recovery_id");
    crate::harness::wait_until("the recovery to be done", || async {
        let reply = app
            .get(&org.key, &format!("/v1/webhooks/recoveries/{recovery_id}"))
            .await;
        (reply.body["status"] == json!("done")).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    let delivered: BTreeSet<String> = app
        .endpoint_deliveries(&org.key, &endpoint)
        .await
        .iter()
        .map(|record| string_at(record, "event_type"))
        .collect();
    assert_eq!(
        delivered,
        BTreeSet::from(["wallet.balance_low".to_owned(), "brand.vetted".to_owned()])
    );
}

async fn the_document_declares_the_catalog_as_enums_and_webhooks(backend: Backend) {
    // Arrange
    let (_directory, path) = catalog_file(CATALOG);
    let app = app_with_catalog(backend, &path, "warn").await;

    // Act
    let document = app
        .send(app.request(reqwest::Method::GET, "/openapi.json"))
        .await
        .body;

    // Assert
    let schemas = &document["components"]["schemas"];
    let events = &schemas["CreateEndpointRequest"]["properties"]["events"];
    assert_eq!(
        events["items"]["enum"],
        json!([
            "wallet.balance_low",
            "wallet.balance_zero",
            "brand.vetted",
            "endpoint.disabled",
            "endpoint.enabled",
            "delivery.exhausted",
            "wallet.*",
            "brand.*",
            "endpoint.*",
            "delivery.*",
            "*"
        ])
    );
    assert_eq!(events["uniqueItems"], json!(true));
    assert_eq!(
        schemas["UpdateEndpointRequest"]["properties"]["events"]["items"],
        events["items"]
    );
    assert_eq!(
        schemas["CreateEndpointRequest"]["properties"]["api_version"]["enum"],
        json!(["2026-04-01"])
    );
    let parameters = document["paths"]["/v1/webhooks/deliveries"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let event_type = parameters
        .iter()
        .find(|parameter| parameter["name"] == json!("event_type"))
        .expect("the event_type parameter");
    assert_eq!(event_type["schema"]["enum"][6], json!("webhook.test"));
    let webhooks = document["webhooks"]
        .as_object()
        .expect("a webhooks section");
    assert_eq!(webhooks.len(), 6);
    let low = &webhooks["wallet.balance_low"]["post"];
    let body = &low["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["properties"]["data"],
        json!({"type": "object", "required": ["balance"],
               "properties": {"balance": {"type": "string"}}})
    );
    assert_eq!(
        body["schema"]["properties"]["type"],
        json!({"type": "string", "const": "wallet.balance_low"})
    );
    assert_eq!(body["example"]["data"], json!({"balance": "3.20"}));
    assert_eq!(webhooks["brand.vetted"]["post"]["deprecated"], json!(true));
}

/// A catalog file that does not parse, whose schema does not compile, or whose example breaks
/// its schema stops `herald serve` at start, with a message naming the type.
#[test]
fn a_broken_catalog_file_stops_start_naming_the_type() {
    fn start_error(text: &str, file_name: &str) -> String {
        let directory = tempfile::tempdir().expect("creating a temporary directory");
        let path = directory.path().join(file_name);
        std::fs::write(&path, text).expect("writing the catalog file");
        let args = ServeArgs {
            event_catalog: Some(path),
            ..ServeArgs::from_defaults()
        };
        format!("{:#}", args.into_config().expect_err(text))
    }
    let example = start_error(
        "- name: wallet.balance_low\n  description: Low.\n  schema: {properties: {balance: {type: string}}}\n  example: {balance: 3}\n",
        "catalog.yaml",
    );
    assert!(
        example.contains(
            r#"event type wallet.balance_low: example breaks its schema: /balance: value is not of type "string""#
        ),
        "{example}"
    );
    let schema = start_error(
        r#"[{"name": "a.b", "description": "x", "schema": {"type": 12}}]"#,
        "catalog.json",
    );
    assert!(
        schema.contains("event type a.b: schema does not compile"),
        "{schema}"
    );
    let syntax = start_error("[{", "catalog.json");
    assert!(syntax.contains("event catalog does not parse"), "{syntax}");
    let missing = {
        let args = ServeArgs {
            event_catalog: Some(PathBuf::from("/nonexistent/catalog.json")),
            ..ServeArgs::from_defaults()
        };
        format!("{:#}", args.into_config().expect_err("no file"))
    };
    assert!(
        missing.contains("cannot read /nonexistent/catalog.json"),
        "{missing}"
    );
    let both = ServeArgs {
        event_catalog: Some(PathBuf::from("/nonexistent/catalog.json")),
        event_types: Some("a.b".to_owned()),
        ..ServeArgs::from_defaults()
    };
    assert!(
        format!("{:#}", both.into_config().expect_err("both")).contains("not both"),
        "both settings"
    );
    let mode = ServeArgs {
        schema_enforcement: "strict".to_owned(),
        ..ServeArgs::from_defaults()
    };
    assert!(
        format!("{:#}", mode.into_config().expect_err("bad mode"))
            .contains("HERALD_SCHEMA_ENFORCEMENT must be off, warn or reject")
    );
}
