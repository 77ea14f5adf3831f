//! A full disk under `herald serve` on SQLite (issue 11): the real binary serves from a small
//! tmpfs while eight publishers send events as fast as it answers and a real HTTPS receiver
//! takes the deliveries. The disk fills mid-run, so publishing and the recording of attempts
//! both meet `ENOSPC`.
//!
//! Publishing: every publish is answered 202 or 503 (with `Retry-After` and the error
//! envelope), never 500; `/readyz` answers 503 and `herald_storage_writable` reads 0 while
//! writes fail; once space returns, with no restart, readiness comes back and every event
//! answered 202 arrives, each exactly once (the receiver always answers 200, so a second
//! arrival is a send whose result was lost); no event answered 503 arrives; and the database
//! passes `PRAGMA integrity_check`.
//!
//! Recording: attempts made while the disk is full are sent once and wait, leased, until their
//! results can be stored: nothing is claimed or sent again in the meantime, and once space
//! returns every delivery settles with one recorded success.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::disk::{SmallDisk, sqlite_integrity_check};
use herald_testkit::{Receiver as ScriptedReceiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{
    ADMIN_TOKEN, DuplicateReport, EVENT_TYPE, Launcher, Receiver, Strangers, Tenant, TestPki,
    all_attempts, assert_all_delivered, expect_json, http_client, metric, publish_batch, scrape,
    successes_per_pair, unique_pairs, wait_for_empty_queue, wait_until,
};

const DISK: &str = "16m";
/// What Herald has left to fill once the test has taken the rest of the disk.
const HEADROOM_BYTES: usize = 1 << 20;
/// Each event's padding, so the headroom fills in a few hundred publishes.
const PAD_BYTES: usize = 2 << 10;
const PUBLISHERS: usize = 8;
/// Publishing stops after this many 503s (or at `PUBLISH_FOR`).
const REFUSALS: usize = 200;
const PUBLISH_FOR: Duration = Duration::from_secs(60);
const RECOVER_WITHIN: Duration = Duration::from_secs(10);
const DELIVER_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers_without_restart() {
    // Arrange: a small disk holding the database, a receiver, the server, one endpoint; then
    // the disk filled but for a little headroom.
    let disk = SmallDisk::mount(DISK);
    let pki = TestPki::new();
    let ca_path = pki.write_root(disk.path());
    let log_dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = log_dir.path().join("herald.log");
    let database = disk.path().join("herald.db");
    let generation = Arc::new(AtomicUsize::new(0));
    let receivers = Receiver::spawn_many(&pki, 1, &generation).await;
    let http = http_client();
    let launcher = Launcher::new(
        "herald",
        &format!("sqlite://{}", database.display()),
        &ca_path,
        log_path.clone(),
    );
    let herald = launcher.start(&http).await;
    let mut tenant = Tenant::create(&http, &herald, "disk-full").await;
    tenant.subscribe(&http, &herald, &receivers).await;
    let filler = disk.fill_leaving(HEADROOM_BYTES);

    // Act 1: publish from eight tasks until the disk has refused many writes.
    let outcome = Arc::new(PublishOutcome::default());
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for publisher in 0..PUBLISHERS {
        let (http, base, org_id, outcome) = (
            http.clone(),
            herald.base.clone(),
            tenant.org_id.clone(),
            Arc::clone(&outcome),
        );
        publishers.spawn(async move {
            let mut n = publisher as u64 * 1_000_000;
            while outcome.refusals.load(Ordering::SeqCst) < REFUSALS
                && started.elapsed() < PUBLISH_FOR
            {
                n += 1;
                publish_one(&http, &base, &org_id, n, &outcome).await;
            }
        });
    }
    while publishers.join_next().await.is_some() {}
    let refusals = outcome.refusals.load(Ordering::SeqCst);
    let acknowledged = outcome.acknowledged.lock().expect("acknowledged").clone();
    eprintln!(
        "disk full: {} events answered 202 and {refusals} answered 503 in {:.1?}",
        acknowledged.len(),
        started.elapsed()
    );
    assert!(
        refusals >= REFUSALS,
        "the disk never filled: only {refusals} refusals in {PUBLISH_FOR:?}"
    );
    assert!(
        !acknowledged.is_empty(),
        "nothing was published before the disk filled"
    );

    // While the disk is full: not ready, and the metric says why.
    let ready = http
        .get(format!("{}/readyz", herald.base))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz while the disk is full"
    );
    assert!(ready.headers().contains_key("retry-after"));
    let metrics = scrape(&http, &herald).await;
    assert_eq!(metric(&metrics, "herald_storage_writable"), Some(0));
    assert!(metric(&metrics, "herald_storage_write_failures_total").is_some_and(|n| n > 0));

    // Act 2: space returns; the same process must recover.
    std::fs::remove_file(&filler).expect("removing the filler");
    let recovered = Instant::now();
    let mut ready_again = false;
    while recovered.elapsed() < RECOVER_WITHIN {
        let status = http
            .get(format!("{}/readyz", herald.base))
            .send()
            .await
            .expect("GET /readyz")
            .status();
        if status == StatusCode::OK {
            ready_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready_again,
        "/readyz is not 200 within {RECOVER_WITHIN:?} of space returning"
    );
    let delivered = wait_until(DELIVER_WITHIN, || {
        unique_pairs(&receivers) >= acknowledged.len()
    })
    .await;

    // Assert: everything acknowledged arrived, once; nothing refused did; the file is sound;
    // and the recorder did meet the full disk (the test exercised the path it claims to).
    assert!(
        delivered,
        "only {} of {} acknowledged events arrived within {DELIVER_WITHIN:?}",
        unique_pairs(&receivers),
        acknowledged.len()
    );
    assert_all_delivered(&receivers, &acknowledged, Strangers::Refused);
    // Deliveries that were due when the disk filled come again after their retry delay:
    // let any such repeat arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let duplicates = DuplicateReport::of(&receivers, 1);
    assert_eq!(
        duplicates.duplicates, 0,
        "{} deliveries arrived more than once although the receiver answered 200 to each",
        duplicates.duplicates
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("storage refuses writes"),
        "the log says when storage starts refusing writes"
    );
    assert!(
        log.contains("storage accepts writes again"),
        "the log says when storage accepts writes again"
    );
    let stopped = herald.terminate().await;
    assert!(
        stopped.is_some_and(|status| status.success()),
        "herald stops cleanly after the outage: {stopped:?}"
    );
    assert_eq!(sqlite_integrity_check(&database).await, "ok");
}

/// Deliveries in the recording test; the receiver fails each one's first attempt.
const RECORDED: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts_made_on_a_full_disk_wait_for_their_recording_and_are_not_sent_again() {
    // Arrange: the server on a small disk, an endpoint whose receiver answers 500 to the
    // first 20 requests and 200 after, and 20 events whose first attempts fail while the disk
    // still has room, so each is scheduled for a retry about 5 s later.
    let disk = SmallDisk::mount(DISK);
    let ca = TestCa::new();
    let ca_path = disk.path().join("ca.pem");
    std::fs::write(&ca_path, ca.root_pem()).expect("writing the CA");
    let receiver = ScriptedReceiver::builder(&ca)
        .sequence(&[500; RECORDED])
        .spawn()
        .await;
    let log_dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = log_dir.path().join("herald.log");
    let http = http_client();
    let herald = Launcher::new(
        "herald",
        &format!("sqlite://{}", disk.path().join("herald.db").display()),
        &ca_path,
        log_path.clone(),
    )
    .start(&http)
    .await;
    let tenant = Tenant::create(&http, &herald, "recording-on-a-full-disk").await;
    let created = http
        .post(format!("{}/v1/webhooks", herald.base))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"url": receiver.url("/sequence"), "events": [EVENT_TYPE]}))
        .send()
        .await
        .expect("create endpoint");
    expect_json(created, StatusCode::CREATED).await;
    let numbers: Vec<u64> = (0..RECORDED as u64).collect();
    let published = publish_batch(&http, &herald.base, &tenant.org_id, &numbers, 1).await;
    let arrived = |count: usize| receiver.received().len() >= count;
    assert!(
        wait_until(Duration::from_secs(10), || arrived(RECORDED)).await,
        "the first attempts did not arrive"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while all_attempts(&http, &herald, &tenant.api_key).await.len() < RECORDED {
        assert!(
            Instant::now() < deadline,
            "the first attempts were not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act: fill the disk before the retries come due (5 s ± 20 %). The first retries claimed
    // are sent and answered 200, and their results cannot be stored.
    let filler = disk.fill_leaving(0);
    assert!(
        wait_until(Duration::from_secs(15), || arrived(RECORDED + 1)).await,
        "no retry was sent"
    );
    let log_says = |text: &str| {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains(text)
    };
    assert!(
        wait_until(Duration::from_secs(10), || log_says(
            "recording attempts failed"
        ))
        .await,
        "recording never met the full disk"
    );
    // The other retries come due meanwhile; none may be claimed while results wait. A retry
    // claimed just before the first failed recording may still be on its way when the log
    // says so (a claim, then its send, a few milliseconds apart): count from a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let when_stalled = receiver.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_full = receiver.received().len();
    let ready = http
        .get(format!("{}/readyz", herald.base))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Space returns: the waiting results are stored and the queue empties, with no restart.
    std::fs::remove_file(&filler).expect("removing the filler");
    let queue = wait_for_empty_queue(&http, &herald, Duration::from_secs(30)).await;

    // Assert: nothing was sent while results waited; two requests per event (the failed
    // first attempt, the retry); one recorded success per delivery.
    assert_eq!(
        while_full, when_stalled,
        "deliveries were claimed and sent while results waited to be recorded"
    );
    assert_eq!(queue, Some((0, 0)), "the queue empties once space returns");
    let received = receiver.received();
    assert_eq!(
        received.len(),
        2 * RECORDED,
        "each event arrives twice in all"
    );
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in &received {
        let event_id = request.headers["x-amcore-event-id"]
            .to_str()
            .expect("an ASCII event id")
            .to_owned();
        *per_event.entry(event_id).or_default() += 1;
    }
    assert_eq!(per_event.len(), RECORDED);
    assert!(per_event.values().all(|&count| count == 2), "{per_event:?}");
    assert!(
        per_event
            .keys()
            .all(|event_id| published.contains_key(event_id))
    );
    let attempts = all_attempts(&http, &herald, &tenant.api_key).await;
    let successes = successes_per_pair(&attempts);
    assert_eq!(successes.len(), RECORDED);
    assert!(successes.values().all(|&count| count == 1), "{successes:?}");
    assert!(log_says("storage accepts writes again"));
}

#[derive(Default)]
struct PublishOutcome {
    /// Event id → `data.n` of each publish answered 202.
    acknowledged: Mutex<HashMap<String, u64>>,
    refusals: AtomicUsize,
}

/// One publish; asserts it was answered 202 or a well-formed 503.
async fn publish_one(
    http: &reqwest::Client,
    base: &str,
    org_id: &str,
    n: u64,
    outcome: &PublishOutcome,
) {
    let response = http
        .post(format!("{base}/admin/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "org_id": org_id,
            "type": EVENT_TYPE,
            "data": {"n": n, "pad": "x".repeat(PAD_BYTES)},
        }))
        .send()
        .await
        .expect("publish");
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.expect("a JSON answer");
    match status {
        StatusCode::ACCEPTED => {
            let event_id = body["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no event_id in {body}"))
                .to_owned();
            outcome
                .acknowledged
                .lock()
                .expect("acknowledged")
                .insert(event_id, n);
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(retry_after, "a 503 carries Retry-After: {body}");
            assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
            assert!(body["error"]["request_id"].is_string(), "{body}");
            outcome.refusals.fetch_add(1, Ordering::SeqCst);
            // A client told to retry later does, a little later.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        other => panic!("publish on a full disk answered {other}: {body}"),
    }
}
