//! Recovery survives `kill -9` (issue 13): a recovery of 20,000 events is stored before it is
//! answered, and advanced a chunk at a time, each chunk one transaction with its cursor; so a
//! `herald serve` killed in the middle resumes it after restart, and every matched event
//! arrives at least once.
//!
//! The real `herald` binary serves on a SQLite file. An endpoint is set inactive while 20,000
//! events are published (so none is delivered to it), set active again, and recovered with
//! `include_missing`. While the recovery's deliveries are arriving, the server is killed with
//! SIGKILL and restarted on the same database.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Launcher, Receiver, Strangers, Tenant, TestPki, assert_all_delivered, http_client,
    publish_batch, unique_pairs, wait_for_empty_queue, wait_until,
};

const EVENTS: usize = 20_000;
/// Where the kill comes: this many of the recovered events have arrived.
const KILL_AT: usize = 3_000;
/// How long all recovered events may take to arrive after the restart.
const COMPLETE_WITHIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_interrupted_by_kill_9_finishes_after_restart() {
    let started = Instant::now();

    // Arrange: a server, one endpoint, 20,000 events published while it was inactive.
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = TestPki::new();
    let ca_path = pki.write_root(dir.path());
    let generation = Arc::new(AtomicUsize::new(0));
    let receivers = Receiver::spawn_many(&pki, 1, &generation).await;
    let http = http_client();
    let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let launcher = Launcher::new(
        "herald",
        &database_url,
        &ca_path,
        dir.path().join("herald.log"),
    );
    let mut herald = launcher.start(&http).await;
    let mut tenant = Tenant::create(&http, &herald, "recovery-crash").await;
    tenant.subscribe(&http, &herald, &receivers).await;
    let endpoint_path = format!("{}/v1/webhooks/{}", herald.base, tenant.endpoint_ids[0]);
    set_active(&http, &endpoint_path, &tenant.api_key, false).await;
    let since = a_minute_ago();
    let mut published: HashMap<String, u64> = HashMap::with_capacity(EVENTS);
    let numbers: Vec<u64> = (0..EVENTS as u64).collect();
    for chunk in numbers.chunks(support::PUBLISH_BATCH) {
        published.extend(publish_batch(&http, &herald.base, &tenant.org_id, chunk, 0).await);
    }
    set_active(&http, &endpoint_path, &tenant.api_key, true).await;

    // Act: recover, kill -9 while the recovered events are arriving, restart.
    let recovery = http
        .post(format!("{endpoint_path}/recover"))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"since": since, "include_missing": true}))
        .send()
        .await
        .expect("recover");
    assert_eq!(recovery.status(), StatusCode::ACCEPTED);
    let recovery: Value = recovery.json().await.expect("JSON");
    assert_eq!(recovery["matched"], json!(EVENTS), "{recovery}");
    let recovery_id = recovery["recovery_id"].as_str().expect("an id").to_owned();
    let reached = wait_until(Duration::from_secs(60), || {
        herald.assert_running();
        unique_pairs(&receivers) >= KILL_AT
    })
    .await;
    assert!(
        reached,
        "the recovery stalled at {}",
        unique_pairs(&receivers)
    );
    herald.kill_9();
    let at_kill = unique_pairs(&receivers);
    eprintln!("recovery crash test: kill -9 with {at_kill}/{EVENTS} recovered events delivered");
    tokio::time::sleep(Duration::from_millis(250)).await;
    generation.fetch_add(1, Ordering::SeqCst);
    herald = launcher.start(&http).await;
    let restarted = Instant::now();

    // Assert: every matched event arrives (signed, with its data), the recovery is done with
    // everything enqueued, and the queue drains.
    let complete = wait_until(COMPLETE_WITHIN, || {
        herald.assert_running();
        unique_pairs(&receivers) == EVENTS
    })
    .await;
    assert!(
        at_kill < EVENTS,
        "the kill must interrupt the recovery's deliveries"
    );
    assert!(
        complete,
        "only {} of {EVENTS} recovered events arrived within {COMPLETE_WITHIN:?} of the restart",
        unique_pairs(&receivers)
    );
    assert_all_delivered(&receivers, &published, Strangers::Refused);
    let done = http
        .get(format!(
            "{}/v1/webhooks/recoveries/{recovery_id}",
            herald.base
        ))
        .bearer_auth(&tenant.api_key)
        .send()
        .await
        .expect("get recovery");
    let done: Value = done.json().await.expect("JSON");
    assert_eq!(done["status"], json!("done"), "{done}");
    assert_eq!(
        done["enqueued"],
        json!(EVENTS),
        "enqueued == matched: {done}"
    );
    let queue = wait_for_empty_queue(&http, &herald, Duration::from_secs(30)).await;
    assert_eq!(queue, Some((0, 0)), "the queue drains");
    eprintln!(
        "recovery crash test: all {EVENTS} arrived {:.1?} after the restart; finished in {:.1?}",
        restarted.elapsed(),
        started.elapsed()
    );
    let status = herald.terminate().await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

async fn set_active(http: &reqwest::Client, endpoint_path: &str, key: &str, active: bool) {
    let response = http
        .patch(endpoint_path)
        .bearer_auth(key)
        .json(&json!({"active": active}))
        .send()
        .await
        .expect("patch endpoint");
    assert_eq!(response.status(), StatusCode::OK);
}

/// A minute ago, RFC 3339: before every event the test publishes.
fn a_minute_ago() -> String {
    let now = herald_domain::Timestamp::now().as_micros();
    herald_domain::Timestamp::from_micros(now - 60_000_000).to_string()
}
