//! `GET /metrics` (docs/api.md#health-readiness-and-metrics): Prometheus text with publishing,
//! attempt outcomes and latency, and the queue gauges read from storage at scrape time; and
//! the committed Grafana dashboard (docs/grafana/herald-dashboard.json) queries only those.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, delivering, metric, wait_until};

backend_tests!(metrics_count_publishing_attempts_and_the_queue);

async fn metrics_count_publishing_attempts_and_the_queue(backend: Backend) {
    // Arrange: one endpoint succeeds, the other fails and waits a minute for its retry.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_secs(60)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    for path in ["/ok", "/fail"] {
        app.create_endpoint_at(&org.key, &receiver.url(path), &["wallet.balance_low"])
            .await;
    }

    // Act
    app.publish(org.id, "wallet.balance_low", &json!({})).await;
    let text = wait_until("both attempts to be counted", || async {
        let text = app.metrics().await;
        let success = metric(
            &text,
            r#"herald_delivery_attempts_total{outcome="success"}"#,
        );
        let retry = metric(&text, r#"herald_delivery_attempts_total{outcome="retry"}"#);
        (success == Some(1.0) && retry == Some(1.0)).then_some(text)
    })
    .await;

    // Assert
    let expected = [
        ("herald_events_published_total", 1.0),
        ("herald_delivery_attempt_duration_seconds_count", 2.0),
        ("herald_deliveries_due", 0.0),
        ("herald_deliveries_scheduled", 1.0),
        ("herald_oldest_due_delivery_age_seconds", 0.0),
        ("herald_storage_up", 1.0),
    ];
    for (sample, value) in expected {
        assert_eq!(metric(&text, sample), Some(value), "{sample} in\n{text}");
    }
    assert!(
        text.contains("herald_delivery_attempt_duration_seconds_bucket{le="),
        "{text}"
    );
    // Every metric the committed Grafana dashboard queries is one `/metrics` shows.
    for name in dashboard_metric_names() {
        let sampled = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .any(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            });
        assert!(
            sampled,
            "the dashboard queries {name}, which /metrics lacks:\n{text}"
        );
    }
    let reply = app.send(app.request(Method::GET, "/metrics")).await;
    reply.assert_status(StatusCode::OK);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

/// The metric names in the queries of `docs/grafana/herald-dashboard.json`: every word of an
/// `expr` that starts with `herald_`.
fn dashboard_metric_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/herald-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("reading the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"].as_str().expect("a Prometheus query");
        let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        names.extend(
            words
                .filter(|word| word.starts_with("herald_"))
                .map(str::to_owned),
        );
    }
    assert!(names.len() >= 8, "the dashboard queries {names:?}");
    names
}
