//! `GET /metrics` (docs/api.md#health-readiness-and-metrics): Prometheus text with publishing,
//! attempt outcomes and latency, and the queue gauges read from storage off the scrape (test
//! apps read them at every scrape and wait for the reading; a scrape never waits for a slow
//! one beyond its bound); and the committed Grafana dashboard
//! (docs/grafana/herald-dashboard.json) queries only those.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_api::QueueGaugeSettings;

use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, delivering, metric, wait_until};

backend_tests!(
    metrics_count_publishing_attempts_and_the_queue,
    queue_gauges_reflect_a_backlog,
);

/// Deliveries in the backlog of the queue gauge tests.
const BACKLOG: usize = 12;

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
    // The attempt counters move when the worker counts an attempt, the queue gauges when a
    // reading sees the recorded outcome: a scrape can fall between the two (seen in a loaded
    // CI run), so wait for both.
    let text = wait_until("both attempts to be counted and the retry read", || async {
        let text = app.metrics().await;
        let success = metric(
            &text,
            r#"herald_delivery_attempts_total{outcome="success"}"#,
        );
        let retry = metric(&text, r#"herald_delivery_attempts_total{outcome="retry"}"#);
        let scheduled = metric(&text, "herald_deliveries_scheduled");
        (success == Some(1.0) && retry == Some(1.0) && scheduled == Some(1.0)).then_some(text)
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

async fn queue_gauges_reflect_a_backlog(backend: Backend) {
    // Arrange: an endpoint that fails, so every delivery waits an hour for its retry.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_secs(3600)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/fail"), &["wallet.balance_low"])
        .await;

    // Act
    for _ in 0..BACKLOG {
        app.publish(org.id, "wallet.balance_low", &json!({})).await;
    }
    let text = wait_until("the backlog to show as scheduled", || async {
        let text = app.metrics().await;
        (metric(&text, "herald_deliveries_scheduled") == Some(BACKLOG as f64)).then_some(text)
    })
    .await;

    // Assert
    let expected = [
        ("herald_deliveries_due", 0.0),
        ("herald_oldest_due_delivery_age_seconds", 0.0),
        ("herald_queue_gauges_age_seconds", 0.0),
        ("herald_storage_up", 1.0),
    ];
    for (sample, value) in expected {
        assert_eq!(metric(&text, sample), Some(value), "{sample} in\n{text}");
    }
}

/// A scrape serves the last queue gauges instead of waiting for a reading that storage holds
/// up (here a lock on `deliveries`, which only PostgreSQL lets another connection hold against
/// readers: SQLite's readers never wait for its writer), and the reading lands once storage
/// lets it go. With the product's default wait (none), read again at every scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_scrape_does_not_wait_for_a_slow_queue_reading() {
    // Arrange: a scheduled backlog the gauges have read, read again at every scrape.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(Backend::Postgres, &ca)
        .retry_schedule(vec![Duration::from_secs(3600)])
        .queue_gauges(QueueGaugeSettings {
            max_age: Duration::ZERO,
            ..QueueGaugeSettings::default()
        })
        .spawn()
        .await;
    publish_a_scheduled_backlog(&app, &receiver).await;
    let mut lock = app.postgres_connection().await;
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("beginning");
    sqlx::query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("locking the deliveries");

    // Act: two scrapes while no reading of the queue can finish.
    let started = Instant::now();
    let first = app.metrics().await;
    let second = app.metrics().await;
    let took = started.elapsed();
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("releasing the lock");

    // Assert: both answered within their bound, with the last values and storage up.
    assert!(
        took < Duration::from_secs(2),
        "two scrapes took {took:?} while the queue could not be read"
    );
    for text in [&first, &second] {
        let scheduled = metric(text, "herald_deliveries_scheduled");
        assert_eq!(scheduled, Some(BACKLOG as f64), "{text}");
        assert_eq!(metric(text, "herald_storage_up"), Some(1.0), "{text}");
    }
    // The reading held up finishes once the lock is gone, and the next scrape is fresh.
    wait_until("a fresh reading after the lock", || async {
        let text = app.metrics().await;
        let fresh = metric(&text, "herald_queue_gauges_age_seconds") == Some(0.0)
            && metric(&text, "herald_deliveries_scheduled") == Some(BACKLOG as f64);
        fresh.then_some(())
    })
    .await;
}

/// A restarted process has no last reading to serve: its first scrape waits for the first
/// reading (up to 5 s) rather than show an empty queue, even where later scrapes would not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_first_scrape_after_a_restart_waits_for_the_first_reading() {
    // Arrange: a scheduled backlog, then a restart into gauges that wait 100 ms, and the
    // deliveries locked for a second.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = restarted_over_a_scheduled_backlog(
        &ca,
        &receiver,
        QueueGaugeSettings {
            max_age: Duration::ZERO,
            wait: Duration::from_millis(100),
        },
    )
    .await;
    let mut lock = app.postgres_connection().await;
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("beginning");
    sqlx::query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("locking the deliveries");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut lock)
            .await
            .expect("releasing the lock");
    });

    // Act
    let text = app.metrics().await;
    release.await.expect("the lock is released");

    // Assert: the backlog, not the empty queue of gauges never read.
    assert_eq!(
        metric(&text, "herald_deliveries_scheduled"),
        Some(BACKLOG as f64),
        "{text}"
    );
}

/// A process whose first readings of the queue fail has still no values to serve: its scrapes
/// go on waiting for a reading (up to 5 s) until one succeeds, rather than show the empty queue
/// of gauges never read once the first has failed. Here the readings fail while `deliveries`
/// is renamed away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scrapes_wait_for_a_successful_first_reading_after_failed_ones() {
    // Arrange: a scheduled backlog, then a restart into the product's gauges (no wait once a
    // reading has succeeded) with the table away.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app =
        restarted_over_a_scheduled_backlog(&ca, &receiver, QueueGaugeSettings::default()).await;
    let mut admin = app.postgres_connection().await;
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(&rename("deliveries", "deliveries_away"))
        .execute(&mut admin)
        .await
        .expect("renaming the deliveries away");
    let failed = app.metrics().await;
    sqlx::query(&rename("deliveries_away", "deliveries"))
        .execute(&mut admin)
        .await
        .expect("renaming the deliveries back");

    // Act
    let text = app.metrics().await;

    // Assert: the first reading failed; the scrape after it waited for one that succeeded.
    assert_eq!(metric(&failed, "herald_storage_up"), Some(0.0), "{failed}");
    assert_eq!(
        metric(&text, "herald_deliveries_scheduled"),
        Some(BACKLOG as f64),
        "{text}"
    );
    assert_eq!(metric(&text, "herald_storage_up"), Some(1.0), "{text}");
}

/// Publishes [`BACKLOG`] events to an endpoint of `receiver` that fails (the app's retry
/// schedule keeps them scheduled), and waits until the gauges show them.
async fn publish_a_scheduled_backlog(app: &TestApp, receiver: &Receiver) {
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/fail"), &["wallet.balance_low"])
        .await;
    for _ in 0..BACKLOG {
        app.publish(org.id, "wallet.balance_low", &json!({})).await;
    }
    wait_until("the backlog to show as scheduled", || async {
        let text = app.metrics().await;
        (metric(&text, "herald_deliveries_scheduled") == Some(BACKLOG as f64)).then_some(())
    })
    .await;
}

/// A PostgreSQL app whose gauges have read a backlog of [`BACKLOG`] scheduled deliveries (each
/// retried in an hour), restarted into `gauges` and answering: a process with no reading yet.
async fn restarted_over_a_scheduled_backlog(
    ca: &TestCa,
    receiver: &Receiver,
    gauges: QueueGaugeSettings,
) -> TestApp {
    let builder = delivering(Backend::Postgres, ca).retry_schedule(vec![Duration::from_secs(3600)]);
    let app = builder.clone().spawn().await;
    publish_a_scheduled_backlog(&app, receiver).await;
    let app = app.restart(builder.queue_gauges(gauges)).await;
    app.send(app.request(Method::GET, "/healthz")).await;
    app
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
