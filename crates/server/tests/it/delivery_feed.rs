//! The deliveries feed (docs/api.md#list-deliveries): every attempt is a record; filters combine
//! with AND and each narrows; invalid values are a 422 naming the parameter; pages walk every
//! record exactly once, newest first; another organization's records are invisible.

use std::collections::BTreeSet;

use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, Subscribed, TestApp, TestOrg, delivering, string_at, subscribed, timestamp_at,
    wait_for_received,
};

backend_tests!(
    each_filter_narrows_the_feed,
    invalid_filters_are_rejected_naming_the_parameter,
    walking_pages_returns_every_record_once_newest_first,
    one_record_is_readable_by_id_within_its_organization_only,
);

/// A feed of three records: `ok` got `wallet.balance_low` (200) and then `campaign.approved`
/// (200); `failing` got `wallet.balance_low` (500, dead at once).
struct Feed {
    app: TestApp,
    org: TestOrg,
    ok: Value,
    failing: Value,
    /// Every record, newest first.
    records: Vec<Value>,
    _receiver: Receiver,
}

async fn three_record_feed(backend: Backend) -> Feed {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let ok = app
        .create_endpoint_at(
            &org.key,
            &receiver.url("/ok"),
            &["wallet.balance_low", "campaign.approved"],
        )
        .await;
    let failing = app
        .create_endpoint_at(&org.key, &receiver.url("/fail"), &["wallet.balance_low"])
        .await;
    app.publish(org.id, "wallet.balance_low", &json!({})).await;
    wait_for_received(&receiver, 2).await;
    app.wait_for_empty_queue().await;
    // Published after the first two are recorded, so its record is strictly the newest.
    app.publish(org.id, "campaign.approved", &json!({})).await;
    wait_for_received(&receiver, 3).await;
    app.wait_for_empty_queue().await;
    let records = app.deliveries(&org.key, "").await;
    assert_eq!(records.len(), 3, "{records:?}");
    Feed {
        app,
        org,
        ok,
        failing,
        records,
        _receiver: receiver,
    }
}

async fn each_filter_narrows_the_feed(backend: Backend) {
    // Arrange
    let feed = three_record_feed(backend).await;
    let newest = timestamp_at(&feed.records[0], "occurred_at");
    let ok_id = string_at(&feed.ok, "id");
    let failing_id = string_at(&feed.failing, "id");
    let is = |field: &'static str, value: Value| move |record: &Value| record[field] == value;

    // Act and assert, one filter at a time.
    check_filter(
        &feed,
        &format!("endpoint_id={ok_id}"),
        is("endpoint_id", json!(ok_id)),
    )
    .await;
    check_filter(
        &feed,
        &format!("endpoint_id={failing_id}"),
        is("endpoint_id", json!(failing_id)),
    )
    .await;
    check_filter(
        &feed,
        "event_type=campaign.approved",
        is("event_type", json!("campaign.approved")),
    )
    .await;
    check_filter(&feed, "outcome=dead", is("outcome", json!("dead"))).await;
    check_filter(&feed, "outcome=success", is("outcome", json!("success"))).await;
    check_filter(&feed, "outcome=retry", |_| false).await;
    check_filter(&feed, &format!("since={newest}"), |record| {
        timestamp_at(record, "occurred_at") >= newest
    })
    .await;
    check_filter(&feed, &format!("until={newest}"), |record| {
        timestamp_at(record, "occurred_at") < newest
    })
    .await;
    check_filter(
        &feed,
        "http_status_min=500",
        is("response_status", json!(500)),
    )
    .await;
    check_filter(
        &feed,
        "http_status_max=299",
        is("response_status", json!(200)),
    )
    .await;
    check_filter(
        &feed,
        "http_status_min=200&http_status_max=200",
        is("response_status", json!(200)),
    )
    .await;
    // Every attempt of one event: the `wallet.balance_low` event went to both endpoints.
    let event_id = feed
        .records
        .iter()
        .find(|record| record["endpoint_id"] == json!(failing_id))
        .map(|record| string_at(record, "event_id"))
        .expect("the failing endpoint's record");
    check_filter(
        &feed,
        &format!("event_id={event_id}"),
        is("event_id", json!(event_id)),
    )
    .await;
    let of_event = feed
        .app
        .get(
            &feed.org.key,
            &format!("/v1/webhooks/deliveries?event_id={event_id}"),
        )
        .await;
    assert_eq!(of_event.body["meta"]["total"], json!(2), "{of_event}");
    check_filter(
        &feed,
        &format!("endpoint_id={ok_id}&event_type=wallet.balance_low"),
        |record| {
            record["endpoint_id"] == json!(ok_id)
                && record["event_type"] == json!("wallet.balance_low")
        },
    )
    .await;
}

/// Asserts that `query` answers exactly the records `matches` picks, newest first, that
/// `total` counts them, and that the filter really narrows the feed.
async fn check_filter(feed: &Feed, query: &str, matches: impl Fn(&Value) -> bool) {
    let reply = feed
        .app
        .get(&feed.org.key, &format!("/v1/webhooks/deliveries?{query}"))
        .await;
    reply.assert_status(StatusCode::OK);
    let expected: Vec<&Value> = feed.records.iter().filter(|r| matches(r)).collect();
    assert!(expected.len() < feed.records.len(), "{query} must narrow");
    let got: Vec<&Value> = reply.body["data"]
        .as_array()
        .map(|data| data.iter().collect())
        .unwrap_or_default();
    assert_eq!(got, expected, "{query}");
    assert_eq!(
        reply.body["meta"]["total"],
        json!(expected.len()),
        "{query}"
    );
}

async fn invalid_filters_are_rejected_naming_the_parameter(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let cases = [
        ("endpoint_id=nope", "endpoint_id"),
        ("event_type=wallet.balanse_low", "event_type"),
        ("outcome=nope", "outcome"),
        ("event_id=nope", "event_id"),
        ("event_id=01a20000-0000-7000-8000-000000000000", "event_id"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("http_status_min=99", "http_status_min"),
        ("http_status_max=600", "http_status_max"),
        ("http_status_min=abc", "http_status_min"),
        ("http_status_min=500&http_status_max=400", "http_status_min"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("colour=blue", "colour"),
    ];

    for (query, field) in cases {
        // Act
        let reply = app
            .get(&org.key, &format!("/v1/webhooks/deliveries?{query}"))
            .await;

        // Assert
        reply.assert_validation(field);
    }
    let test_type = app
        .get(&org.key, "/v1/webhooks/deliveries?event_type=webhook.test")
        .await;
    test_type.assert_status(StatusCode::OK);
}

async fn walking_pages_returns_every_record_once_newest_first(backend: Backend) {
    // Arrange: five records, each recorded before the next event is published.
    let Subscribed {
        receiver, app, org, ..
    } = subscribed(backend).await;
    for n in 1..=5 {
        app.publish(org.id, "wallet.balance_low", &json!({"n": n}))
            .await;
        wait_for_received(&receiver, n).await;
        app.wait_for_empty_queue().await;
    }

    // Act
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("limit=2&cursor={cursor}"),
            None => "limit=2".to_owned(),
        };
        let reply = app
            .get(&org.key, &format!("/v1/webhooks/deliveries?{query}"))
            .await;
        reply.assert_status(StatusCode::OK);
        assert_eq!(reply.body["meta"]["total"], json!(5), "{reply}");
        assert_eq!(reply.body["meta"]["limit"], json!(2), "{reply}");
        cursor = reply.body["meta"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
        pages.push(reply.body["data"].as_array().cloned().unwrap_or_default());
        if cursor.is_none() {
            break;
        }
        assert!(pages.len() < 10, "the walk never ends");
    }

    // Assert
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let walked: Vec<Value> = pages.into_iter().flatten().collect();
    let ids: BTreeSet<String> = walked
        .iter()
        .map(|record| string_at(record, "id"))
        .collect();
    assert_eq!(ids.len(), 5, "every record exactly once");
    let occurred: Vec<i64> = walked
        .iter()
        .map(|record| {
            let at = timestamp_at(record, "occurred_at");
            assert!(at <= herald_domain::Timestamp::now());
            at.as_micros()
        })
        .collect();
    assert!(
        occurred.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {occurred:?}"
    );
}

async fn one_record_is_readable_by_id_within_its_organization_only(backend: Backend) {
    // Arrange
    let feed = three_record_feed(backend).await;
    let stranger = feed.app.org_with_key().await;
    let write_only = feed.app.create_key(feed.org.id, &["webhooks:write"]).await;
    let record = &feed.records[1];
    let path = format!("/v1/webhooks/deliveries/{}", string_at(record, "id"));

    // Act
    let own = feed.app.get(&feed.org.key, &path).await;
    let foreign = feed.app.get(&stranger.key, &path).await;
    let unscoped = feed.app.get(&write_only, &path).await;
    let unknown = feed
        .app
        .get(
            &feed.org.key,
            &format!("/v1/webhooks/deliveries/{}", uuid::Uuid::now_v7()),
        )
        .await;
    let malformed = feed
        .app
        .get(&feed.org.key, "/v1/webhooks/deliveries/not-a-uuid")
        .await;
    let stranger_feed = feed.app.deliveries(&stranger.key, "").await;

    // Assert
    own.assert_status(StatusCode::OK);
    assert_eq!(&own.body, record);
    foreign.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    unscoped.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    unknown.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    malformed.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(stranger_feed.is_empty(), "{stranger_feed:?}");
}
