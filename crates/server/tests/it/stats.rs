//! `GET /v1/webhooks/{id}/stats` (docs/api.md#endpoint-stats): an endpoint's attempts of the
//! window by outcome, counted from the records the deliveries feed shows, their latency
//! percentiles, its pending deliveries, its failure streak and its last success.

use std::time::Duration;

use herald_domain::Timestamp;
use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, TestOrg, delivering, endpoint_path, string_at};

backend_tests!(
    stats_count_what_the_feed_shows,
    stats_leave_out_attempts_older_than_the_window,
    stats_of_an_unknown_or_foreign_endpoint_are_not_found,
    stats_refuse_a_bad_window_and_unknown_parameters,
);

const EVENT: &str = "wallet.balance_low";
const OTHER_EVENT: &str = "wallet.balance_zero";
/// An hour in the microseconds `occurred_at` is stored in.
const HOUR_MICROS: i64 = 3_600_000_000;

async fn stats(app: &TestApp, key: &str, endpoint: &Value, query: &str) -> Value {
    let reply = app
        .get(key, &format!("{}/stats{query}", endpoint_path(endpoint)))
        .await;
    reply.assert_status(StatusCode::OK);
    reply.body
}

/// The feed's records of `endpoint` with `outcome`.
fn with_outcome<'a>(records: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|record| record["outcome"] == json!(outcome))
        .collect()
}

/// Nearest-rank percentiles of the records' response times, computed here independently.
fn percentiles(records: &[Value]) -> Value {
    let mut times: Vec<u64> = records
        .iter()
        .map(|record| record["response_time_ms"].as_u64().expect("an integer"))
        .collect();
    times.sort_unstable();
    let at = |percent: usize| {
        let rank = (times.len() * percent).div_ceil(100).max(1);
        times.get(rank - 1).copied()
    };
    json!({"p50": at(50), "p95": at(95), "p99": at(99)})
}

/// An app whose first retry comes after 100 ms and whose second would come after an hour,
/// with one endpoint at a receiver that fails twice and then succeeds.
async fn failing_twice(backend: Backend, ca: &TestCa) -> (Receiver, TestApp, TestOrg, Value) {
    let receiver = Receiver::builder(ca).sequence(&[500, 500]).spawn().await;
    let app = delivering(backend, ca)
        .retry_schedule(vec![Duration::from_millis(100), Duration::from_secs(3_600)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    (receiver, app, org, endpoint)
}

async fn stats_count_what_the_feed_shows(backend: Backend) {
    // Arrange: event 1 fails twice and waits an hour for its third attempt; event 2
    // succeeds. A second endpoint's receiver answers 410, which kills its delivery.
    let ca = TestCa::new();
    let (_receiver, app, org, endpoint) = failing_twice(backend, &ca).await;
    let gone_receiver = Receiver::spawn(&ca).await;
    let gone = app
        .create_endpoint_at(&org.key, &gone_receiver.url("/gone"), &[OTHER_EVENT])
        .await;
    let empty = stats(&app, &org.key, &endpoint, "").await;
    app.publish(org.id, EVENT, &json!({"n": 1})).await;
    let failed = app
        .wait_for_deliveries(&org.key, &endpoint, "two retries", |records| {
            with_outcome(records, "retry").len() == 2
        })
        .await;

    // Act: while failing, then after a success.
    let while_failing = stats(&app, &org.key, &endpoint, "").await;
    app.publish(org.id, EVENT, &json!({"n": 2})).await;
    app.publish(org.id, OTHER_EVENT, &json!({"n": 3})).await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a success", |records| {
            !with_outcome(records, "success").is_empty()
        })
        .await;
    let gone_records = app
        .wait_for_deliveries(&org.key, &gone, "a dead attempt", |records| {
            !with_outcome(records, "dead").is_empty()
        })
        .await;
    let after = stats(&app, &org.key, &endpoint, "?window=24h").await;
    let gone_stats = stats(&app, &org.key, &gone, "?window=1h").await;

    // Assert
    assert_eq!(
        empty,
        json!({"window": "24h", "attempts": {"success": 0, "retry": 0, "dead": 0},
               "latency_ms": {"p50": null, "p95": null, "p99": null}, "pending": 0,
               "failing_since": null, "last_success_at": null})
    );
    let first_failure = &failed[failed.len() - 1];
    assert_eq!(
        while_failing,
        json!({"window": "24h", "attempts": {"success": 0, "retry": 2, "dead": 0},
               "latency_ms": percentiles(&failed), "pending": 1,
               "failing_since": first_failure["occurred_at"], "last_success_at": null}),
    );
    let success = with_outcome(&records, "success")[0];
    assert_eq!(
        after,
        json!({"window": "24h",
               "attempts": {"success": 1, "retry": 2, "dead": 0},
               "latency_ms": percentiles(&records), "pending": 1,
               "failing_since": null, "last_success_at": success["occurred_at"]}),
    );
    assert_eq!(records.len(), 3, "{records:?}");
    let endpoint_now = app.get(&org.key, &endpoint_path(&gone)).await;
    assert_eq!(
        gone_stats,
        json!({"window": "1h",
               "attempts": {"success": 0, "retry": 0, "dead": 1},
               "latency_ms": percentiles(&gone_records), "pending": 0,
               "failing_since": endpoint_now.body["failing_since"], "last_success_at": null}),
    );
    assert_eq!(gone_records.len(), 1, "{gone_records:?}");
}

async fn stats_leave_out_attempts_older_than_the_window(backend: Backend) {
    // Arrange: two retries and a success, then the success moved two hours back and the
    // first retry two days back.
    let ca = TestCa::new();
    let (_receiver, app, org, endpoint) = failing_twice(backend, &ca).await;
    app.publish(org.id, EVENT, &json!({"n": 1})).await;
    app.wait_for_deliveries(&org.key, &endpoint, "two retries", |records| {
        with_outcome(records, "retry").len() == 2
    })
    .await;
    app.publish(org.id, EVENT, &json!({"n": 2})).await;
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "a success", |records| {
            !with_outcome(records, "success").is_empty()
        })
        .await;
    assert_eq!(records.len(), 3, "{records:?}");
    app.run_sql(&format!(
        "UPDATE attempts SET occurred_at = occurred_at - {} WHERE outcome = 'success'",
        2 * HOUR_MICROS
    ))
    .await;
    app.run_sql(&format!(
        "UPDATE attempts SET occurred_at = occurred_at - {} WHERE outcome = 'retry' AND attempt = 1",
        48 * HOUR_MICROS
    ))
    .await;
    let moved = app.endpoint_deliveries(&org.key, &endpoint).await;
    let moved_success = with_outcome(&moved, "success")[0].clone();

    // Act
    let hour = stats(&app, &org.key, &endpoint, "?window=1h").await;
    let day = stats(&app, &org.key, &endpoint, "?window=24h").await;
    let week = stats(&app, &org.key, &endpoint, "?window=7d").await;

    // Assert: each window counts what the feed shows since its start; the last success is
    // the same in all of them.
    let counts = |window: &Value| window["attempts"].clone();
    assert_eq!(counts(&hour), json!({"success": 0, "retry": 1, "dead": 0}));
    assert_eq!(counts(&day), json!({"success": 1, "retry": 1, "dead": 0}));
    assert_eq!(counts(&week), json!({"success": 1, "retry": 2, "dead": 0}));
    for window in [&hour, &day, &week] {
        assert_eq!(
            window["last_success_at"], moved_success["occurred_at"],
            "{window}"
        );
    }
    let since =
        |hours: i64| Timestamp::from_micros(Timestamp::now().as_micros() - hours * HOUR_MICROS);
    for (window, hours, name) in [(&hour, 1, "1h"), (&day, 24, "24h")] {
        let feed = app
            .deliveries(
                &org.key,
                &format!(
                    "endpoint_id={}&since={}",
                    string_at(&endpoint, "id"),
                    since(hours)
                ),
            )
            .await;
        assert_eq!(window["window"], json!(name));
        assert_eq!(window["latency_ms"], percentiles(&feed), "{name}");
    }
    assert_eq!(week["latency_ms"], percentiles(&moved));
}

async fn stats_of_an_unknown_or_foreign_endpoint_are_not_found(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let other = app.org_with_key().await;
    let foreign = app
        .create_endpoint_at(&other.key, "https://example.com/hook", &[EVENT])
        .await;
    let deleted = app
        .create_endpoint_at(&org.key, "https://example.com/gone", &[EVENT])
        .await;
    app.delete(&org.key, &endpoint_path(&deleted)).await;
    let unknown = format!("/v1/webhooks/{}/stats", uuid::Uuid::now_v7());

    // Act
    let replies = [
        app.get(&org.key, &unknown).await,
        app.get(&org.key, &format!("{}/stats", endpoint_path(&foreign)))
            .await,
        app.get(&org.key, &format!("{}/stats", endpoint_path(&deleted)))
            .await,
    ];

    // Assert
    for reply in &replies {
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

async fn stats_refuse_a_bad_window_and_unknown_parameters(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, "https://example.com/hook", &[EVENT])
        .await;
    let path = format!("{}/stats", endpoint_path(&endpoint));

    // Act
    let bad_window = app.get(&org.key, &format!("{path}?window=2h")).await;
    let empty_window = app.get(&org.key, &format!("{path}?window=")).await;
    let unknown = app.get(&org.key, &format!("{path}?windw=1h")).await;
    let repeated = app
        .get(&org.key, &format!("{path}?window=1h&window=7d"))
        .await;

    // Assert
    assert_eq!(
        bad_window.assert_validation("window"),
        "must be 1h, 24h or 7d"
    );
    assert_eq!(
        empty_window.assert_validation("window"),
        "must be 1h, 24h or 7d"
    );
    assert_eq!(unknown.assert_validation("windw"), "unknown parameter");
    repeated.assert_error(StatusCode::BAD_REQUEST, "INVALID_INPUT");
}
