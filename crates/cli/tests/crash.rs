//! Crash safety (issue 3): deliveries survive `kill -9`.
//!
//! The real `herald` binary serves on a SQLite file while five real HTTPS receivers in this
//! process record what arrives. 2,000 events fan out to 5 endpoints (10,000 deliveries); the
//! server is killed with SIGKILL three times at random points of the delivery and restarted on
//! the same database each time. Every (event, endpoint) pair must arrive at least once, with a
//! valid signature; the queue must end empty; herald must have recorded exactly one success per
//! pair, so that every duplicate is a send a kill cut off before it was recorded; and the
//! duplicates are reported, per kill.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;

use support::{
    DuplicateReport, Launcher, Receiver, Strangers, Tenant, TestPki, all_attempts,
    assert_all_delivered, http_client, publish_batch, queue_metrics, successes_per_pair,
    unique_pairs, wait_for_empty_queue, wait_until,
};

const EVENTS: usize = 2_000;
const ENDPOINTS: usize = 5;
const PAIRS: usize = EVENTS * ENDPOINTS;
const KILLS: usize = 3;

/// How long the deliveries may take to complete after the last restart. Attempts that failed
/// because the server died mid-request come back after the first retry delay (5 s ± 20 %).
/// Kept below the 60 s lease, so the test fails if a restart did not release the leases the
/// dead process held and deliveries only resumed once those lapsed.
const COMPLETE_WITHIN: Duration = Duration::from_secs(45);
/// How long after a kill the receivers get to finish handling what the dead process sent.
const SETTLE: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_delivery_arrives_across_three_kill_9_restarts() {
    let started = Instant::now();

    // Arrange: a CA the server trusts, five HTTPS receivers, the server, an organization with
    // a key and one endpoint per receiver, and 2,000 published events.
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = TestPki::new();
    let ca_path = pki.write_root(dir.path());
    let generation = Arc::new(AtomicUsize::new(0));
    let receivers = Receiver::spawn_many(&pki, ENDPOINTS, &generation).await;
    let http = http_client();
    let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let launcher = Launcher::new(
        "herald",
        &database_url,
        &ca_path,
        dir.path().join("herald.log"),
    );
    let mut herald = launcher.start(&http).await;

    let mut tenant = Tenant::create(&http, &herald, "crash-test").await;
    tenant.subscribe(&http, &herald, &receivers).await;
    let mut published: HashMap<String, u64> = HashMap::with_capacity(EVENTS);
    let numbers: Vec<u64> = (0..EVENTS as u64).collect();
    for chunk in numbers.chunks(support::PUBLISH_BATCH) {
        published
            .extend(publish_batch(&http, &herald.base, &tenant.org_id, chunk, ENDPOINTS).await);
    }
    assert_eq!(published.len(), EVENTS, "every event has its own id");
    let publish_done = unique_pairs(&receivers);
    eprintln!(
        "crash test: published {EVENTS} events in {:.1?}; {publish_done}/{PAIRS} pairs already delivered",
        started.elapsed()
    );

    // Act: three times, let delivery reach a random point, `kill -9` the server and restart it
    // on the same database.
    let mut kills = Vec::new();
    for round in 1..=KILLS {
        let target = kill_target(unique_pairs(&receivers), KILLS - round);
        let reached = wait_until(Duration::from_secs(30), || {
            herald.assert_running();
            unique_pairs(&receivers) >= target
        })
        .await;
        if !reached {
            let metrics = queue_metrics(&http, &herald).await;
            panic!(
                "delivery stalled at {} pairs, below {target}, before kill {round}; herald says:\n{metrics}",
                unique_pairs(&receivers)
            );
        }
        herald.kill_9();
        let at = unique_pairs(&receivers);
        kills.push(at);
        eprintln!("crash test: kill -9 #{round} with {at}/{PAIRS} pairs delivered");
        // Requests the dead process finished sending are still being handled; let them land in
        // its generation before the next process starts sending.
        tokio::time::sleep(SETTLE).await;
        generation.fetch_add(1, Ordering::SeqCst);
        herald = launcher.start(&http).await;
    }
    let restarted = Instant::now();
    let complete = wait_until(COMPLETE_WITHIN, || {
        herald.assert_running();
        unique_pairs(&receivers) == PAIRS
    })
    .await;
    let completed_after = restarted.elapsed();
    let queue = wait_for_empty_queue(&http, &herald, Duration::from_secs(30)).await;

    // Assert: every pair arrived, correctly signed and carrying its data; nothing is pending
    // or dead; herald recorded each pair's success once, so every duplicate is a send a kill
    // cut off before it was recorded; and each kill caused few.
    assert!(
        complete,
        "only {} of {PAIRS} (event, endpoint) pairs arrived within {COMPLETE_WITHIN:?} of the last restart",
        unique_pairs(&receivers)
    );
    assert!(
        kills.iter().all(|&at| at < PAIRS),
        "every kill must interrupt delivery, but they came at {kills:?}"
    );
    assert_all_delivered(&receivers, &published, Strangers::Refused);
    assert_eq!(
        queue,
        Some((0, 0)),
        "herald_deliveries_due and herald_deliveries_scheduled must drop to 0"
    );
    let attempts = all_attempts(&http, &herald, &tenant.api_key).await;
    let outcomes = |outcome: &str| {
        attempts
            .iter()
            .filter(|attempt| attempt["outcome"] == outcome)
            .count()
    };
    assert_eq!(outcomes("dead"), 0, "no delivery may end dead");
    let recorded = successes_per_pair(&attempts);
    let twice = recorded.values().filter(|&&count| count > 1).count();
    let strangers = recorded
        .keys()
        .filter(|(endpoint, event)| {
            !tenant.endpoint_ids.contains(endpoint) || !published.contains_key(event)
        })
        .count();
    assert!(
        recorded.len() == PAIRS && twice == 0 && strangers == 0,
        "herald must record exactly one success per pair: {} pairs recorded, {twice} of them \
         more than once, {strangers} not published here",
        recorded.len()
    );

    let report = DuplicateReport::of(&receivers, KILLS + 1);
    eprintln!(
        "crash test: kills at {kills:?} pairs; all {PAIRS} pairs delivered {completed_after:.1?} \
         after the last restart; {} deliveries received, {} duplicates ({:.2} %), by kill {:?}; \
         {} attempts recorded, {} of them retries",
        report.received,
        report.duplicates,
        report.duplicates as f64 * 100.0 / PAIRS as f64,
        &report.by_phase[1..],
        attempts.len(),
        outcomes("retry"),
    );
    // Herald recorded one success per pair, so every duplicate is a delivery that a killed
    // process sent and never recorded: its attempts in flight (16 per endpoint by default, so
    // 80 here) and the answers waiting for the recorder's next group commit. That is typically
    // 50 to 300 per kill in a debug build, and about 700 at worst seen on two busy cores; a
    // tenth of all deliveries from a single kill would mean the recorder has fallen far behind.
    let most = report.worst_phase();
    assert!(
        most < PAIRS / 10,
        "one kill caused {most} duplicates (by kill: {:?}); the recorder is far behind the sends",
        &report.by_phase[1..]
    );

    let status = herald.terminate().await;
    assert!(
        status.is_some_and(|status| status.success()),
        "herald must exit 0 soon after SIGTERM, got {status:?}"
    );
    eprintln!("crash test: finished in {:.1?}", started.elapsed());
}

/// Picks the next kill point: a random number of pairs beyond `delivered`, leaving room for
/// `kills_after` more kills before delivery completes.
fn kill_target(delivered: usize, kills_after: usize) -> usize {
    let remaining = PAIRS.saturating_sub(delivered);
    let share = remaining / (kills_after + 2);
    delivered + rand::thread_rng().gen_range(share / 4..=share.max(1))
}
