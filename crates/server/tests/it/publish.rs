//! Publishing as the platform (docs/api.md#publishing-events): `POST /admin/v1/events` and its
//! batch form fan an event out to every live, active, subscribed endpoint, answer 202 once that is
//! committed, and honour idempotency keys.

use std::collections::BTreeSet;

use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, Backend, Subscribed, TestApp, assert_event_id, delivering, endpoint_path, header,
    metric, received_json, string_at, subscribed, wait_for_received,
};

backend_tests!(
    publish_fans_out_to_live_active_subscribed_endpoints_only,
    publish_rejects_bad_events_naming_the_field,
    organizations_seen_before_do_not_let_an_unknown_one_through,
    same_idempotency_key_returns_the_first_event_and_delivers_once,
    batch_publishes_every_event_in_order,
    batch_repeating_an_idempotency_key_publishes_it_once,
    batch_names_the_invalid_item_and_publishes_nothing,
    publishing_requires_the_admin_token,
    concurrent_publishes_are_each_committed_once,
);

async fn publish_fans_out_to_live_active_subscribed_endpoints_only(backend: Backend) {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let url = receiver.url("/ok");
    let subscribed = app
        .create_endpoint_at(&org.key, &url, &["wallet.balance_low"])
        .await;
    let also_subscribed = app
        .create_endpoint_at(&org.key, &url, &["campaign.approved", "wallet.balance_low"])
        .await;
    let inactive = app
        .create_endpoint_at(&org.key, &url, &["wallet.balance_low"])
        .await;
    app.patch(
        &org.key,
        &endpoint_path(&inactive),
        &json!({"active": false}),
    )
    .await
    .assert_status(StatusCode::OK);
    let deleted = app
        .create_endpoint_at(&org.key, &url, &["wallet.balance_low"])
        .await;
    app.delete(&org.key, &endpoint_path(&deleted))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.create_endpoint_at(&org.key, &url, &["campaign.approved"])
        .await;

    // Act
    let published = app
        .publish(org.id, "wallet.balance_low", &json!({"balance": "3.20"}))
        .await;

    // Assert
    let event_id = string_at(&published, "event_id");
    assert_event_id(&event_id);
    assert_eq!(published["endpoints"], json!(2), "{published}");
    assert_eq!(published["duplicate"], json!(false), "{published}");
    wait_for_received(&receiver, 2).await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 2);
    let reached: BTreeSet<String> = app
        .deliveries(&org.key, "")
        .await
        .iter()
        .map(|record| string_at(record, "endpoint_id"))
        .collect();
    let expected: BTreeSet<String> = [&subscribed, &also_subscribed]
        .iter()
        .map(|endpoint| string_at(endpoint, "id"))
        .collect();
    assert_eq!(reached, expected);
}

async fn publish_rejects_bad_events_naming_the_field(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await.to_string();
    let stranger = uuid::Uuid::now_v7().to_string();
    let data = json!({"balance": "3.20"});
    let cases = [
        (
            json!({"org_id": org, "type": "wallet.balanse_low", "data": data}),
            "type",
        ),
        (json!({"org_id": org, "data": data}), "type"),
        (
            json!({"org_id": org, "type": "webhook.test", "data": data}),
            "type",
        ),
        (
            json!({"org_id": org, "type": "wallet.balance_low", "data": [1, 2]}),
            "data",
        ),
        (
            json!({"org_id": org, "type": "wallet.balance_low", "data": "text"}),
            "data",
        ),
        (json!({"org_id": org, "type": "wallet.balance_low"}), "data"),
        (
            json!({"type": "wallet.balance_low", "data": data}),
            "org_id",
        ),
        (
            json!({"org_id": "acme", "type": "wallet.balance_low", "data": data}),
            "org_id",
        ),
        (
            json!({"org_id": stranger, "type": "wallet.balance_low", "data": data}),
            "org_id",
        ),
        (
            json!({"org_id": org, "type": "wallet.balance_low", "data": data, "extra": 1}),
            "extra",
        ),
    ];

    for (body, field) in cases {
        // Act
        let reply = app.admin_post("/admin/v1/events", &body).await;

        // Assert
        reply.assert_validation(field);
    }
}

/// Publishes remember organizations they found (`crates/api/src/known_orgs.rs`); an unknown
/// one is never remembered, single or batched, before or after known ones were published.
async fn organizations_seen_before_do_not_let_an_unknown_one_through(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await.to_string();
    let stranger = uuid::Uuid::now_v7().to_string();
    let event = |org: &str| json!({"org_id": org, "type": "wallet.balance_low", "data": {}});

    for _ in 0..3 {
        // Act and assert: the known one is taken each time, the unknown one refused each time.
        let reply = app.admin_post("/admin/v1/events", &event(&org)).await;
        reply.assert_status(StatusCode::ACCEPTED);
        let reply = app.admin_post("/admin/v1/events", &event(&stranger)).await;
        reply.assert_validation("org_id");
        let batch = json!({"events": [event(&org), event(&stranger)]});
        let reply = app.admin_post("/admin/v1/events/batch", &batch).await;
        reply.assert_validation("events[1].org_id");
    }
}

async fn same_idempotency_key_returns_the_first_event_and_delivers_once(backend: Backend) {
    // Arrange
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    let body = json!({
        "org_id": org.id.to_string(),
        "type": "wallet.balance_low",
        "data": {"balance": "3.20"},
        "idempotency_key": "balance-low-2026-04-26",
    });

    // Act
    let first = app.admin_post("/admin/v1/events", &body).await;
    let second = app.admin_post("/admin/v1/events", &body).await;

    // Assert
    first.assert_status(StatusCode::ACCEPTED);
    second.assert_status(StatusCode::ACCEPTED);
    assert_eq!(first.body["event_id"], second.body["event_id"]);
    assert_eq!(first.body["duplicate"], json!(false), "{first}");
    assert_eq!(second.body["duplicate"], json!(true), "{second}");
    assert_eq!(second.body["endpoints"], json!(1), "{second}");
    let received = wait_for_received(&receiver, 1).await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        header(&received[0], "x-amcore-event-id"),
        string_at(&first.body, "event_id")
    );
}

async fn concurrent_publishes_are_each_committed_once(backend: Backend) {
    // Arrange: concurrent publishes are gathered into shared transactions; each must still
    // get its own answer, and one idempotency key must win exactly once across them.
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    let body = |n: usize, key: Option<&str>| {
        json!({
            "org_id": org.id.to_string(),
            "type": "wallet.balance_low",
            "data": {"n": n},
            "idempotency_key": key,
        })
    };

    // Act
    let distinct_bodies: Vec<Value> = (0..40).map(|n| body(n, None)).collect();
    let shared_bodies: Vec<Value> = (0..20).map(|n| body(1_000 + n, Some("shared"))).collect();
    let distinct = futures::future::join_all(
        distinct_bodies
            .iter()
            .map(|body| app.admin_post("/admin/v1/events", body)),
    );
    let same_key = futures::future::join_all(
        shared_bodies
            .iter()
            .map(|body| app.admin_post("/admin/v1/events", body)),
    );
    let (distinct, same_key) = futures::join!(distinct, same_key);

    // Assert
    let mut ids = BTreeSet::new();
    for reply in &distinct {
        reply.assert_status(StatusCode::ACCEPTED);
        assert_eq!(reply.body["duplicate"], json!(false), "{reply}");
        ids.insert(string_at(&reply.body, "event_id"));
    }
    assert_eq!(ids.len(), 40, "every distinct publish gets its own event");
    let winners = same_key
        .iter()
        .filter(|reply| reply.body["duplicate"] == json!(false))
        .count();
    assert_eq!(winners, 1, "one idempotency key publishes exactly once");
    let shared: BTreeSet<String> = same_key
        .iter()
        .map(|reply| string_at(&reply.body, "event_id"))
        .collect();
    assert_eq!(shared.len(), 1, "every repeat returns the first event");
    wait_for_received(&receiver, 41).await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 41);
}

async fn batch_repeating_an_idempotency_key_publishes_it_once(backend: Backend) {
    // Arrange: events of one batch are stored together, so a key repeated inside the batch
    // must still find its first use.
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    let event = |n: u32, key: Option<&str>| {
        json!({"org_id": org.id.to_string(), "type": "wallet.balance_low", "data": {"n": n},
               "idempotency_key": key})
    };
    let events = vec![event(1, Some("k")), event(2, None), event(3, Some("k"))];

    // Act
    let reply = app
        .admin_post("/admin/v1/events/batch", &json!({"events": events}))
        .await;

    // Assert
    reply.assert_status(StatusCode::ACCEPTED);
    let answers = reply.body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(answers.len(), 3, "{reply}");
    assert_eq!(
        answers
            .iter()
            .map(|answer| answer["duplicate"].clone())
            .collect::<Vec<_>>(),
        vec![json!(false), json!(false), json!(true)],
        "{reply}"
    );
    assert_eq!(answers[2]["event_id"], answers[0]["event_id"], "{reply}");
    assert_eq!(
        answers[2]["endpoints"],
        json!(1),
        "the first use's fan-out: {reply}"
    );
    assert_ne!(answers[1]["event_id"], answers[0]["event_id"], "{reply}");
    wait_for_received(&receiver, 2).await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 2);
}

async fn batch_publishes_every_event_in_order(backend: Backend) {
    // Arrange
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    let events: Vec<Value> = (1..=3)
        .map(|n| {
            json!({"org_id": org.id.to_string(), "type": "wallet.balance_low", "data": {"n": n}})
        })
        .collect();

    // Act
    let reply = app
        .admin_post("/admin/v1/events/batch", &json!({"events": events}))
        .await;

    // Assert
    reply.assert_status(StatusCode::ACCEPTED);
    let answers = reply.body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(answers.len(), 3, "{reply}");
    let ids: Vec<String> = answers
        .iter()
        .map(|answer| string_at(answer, "event_id"))
        .collect();
    for (answer, id) in answers.iter().zip(&ids) {
        assert_event_id(id);
        assert_eq!(answer["endpoints"], json!(1), "{answer}");
        assert_eq!(answer["duplicate"], json!(false), "{answer}");
    }
    let received = wait_for_received(&receiver, 3).await;
    let mut delivered: Vec<(i64, String)> = received
        .iter()
        .map(|request| {
            let body = received_json(request);
            let n = body["data"]["n"].as_i64().expect("data.n is a number");
            (n, string_at(&body, "id"))
        })
        .collect();
    delivered.sort();
    let in_order: Vec<(i64, String)> = (1..=3).zip(ids).collect();
    assert_eq!(delivered, in_order, "the n-th answer names the n-th event");
}

async fn batch_names_the_invalid_item_and_publishes_nothing(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.create_org("acme").await.to_string();
    let events = json!([
        {"org_id": org, "type": "wallet.balance_low", "data": {}},
        {"org_id": org, "type": "wallet.nope", "data": {}},
        {"org_id": org, "type": "wallet.balance_low", "data": {}},
    ]);

    // Act
    let reply = app
        .admin_post("/admin/v1/events/batch", &json!({"events": events}))
        .await;
    let empty = app
        .admin_post("/admin/v1/events/batch", &json!({"events": []}))
        .await;

    // Assert
    let message = reply.assert_validation("events[1].type");
    assert!(message.contains("wallet.nope"), "{message}");
    assert_eq!(reply.detail_fields(), ["events[1].type"]);
    empty.assert_validation("events");
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "herald_events_published_total"), Some(0.0));
}

async fn publishing_requires_the_admin_token(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let event = json!({"org_id": org.id.to_string(), "type": "wallet.balance_low", "data": {}});
    let batch = json!({"events": [event]});

    for (path, body) in [
        ("/admin/v1/events", &event),
        ("/admin/v1/events/batch", &batch),
    ] {
        for token in [None, Some(org.key.as_str()), Some("not-the-admin-token")] {
            // Act
            let mut request = app.request(Method::POST, path).json(body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = app.send(request).await;

            // Assert
            reply.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        }
        let accepted = app
            .send(
                app.request(Method::POST, path)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(body),
            )
            .await;
        accepted.assert_status(StatusCode::ACCEPTED);
    }
}
