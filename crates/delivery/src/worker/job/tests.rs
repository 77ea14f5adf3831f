use std::ops::RangeInclusive;
use std::time::Duration;

use herald_domain::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::client::{AttemptOutcome, ClientConfig};
use crate::test_store::{LEASE, postgres_with_events, sqlite_with_events, unscoped_claim};
use crate::worker::fixtures::delivery;

const HOUR: Duration = Duration::from_secs(60 * 60);

/// The report of attempt `attempt_number` that the receiver answered with `status` (and
/// `Retry-After`), as the client classifies it.
fn answered(status: u16, attempt_number: u32, retry_after: Option<Duration>) -> AttemptReport {
    let delivery = delivery(attempt_number);
    let mut report = not_sent(plan_of(&delivery), Timestamp::now(), String::new());
    let class = match status {
        200..=299 => OutcomeClass::Success,
        410 => OutcomeClass::Gone,
        _ => OutcomeClass::Failure,
    };
    report.outcome = AttemptOutcome {
        response_status: Some(status),
        response_time_ms: 12,
        response_body_excerpt: Some(String::new()),
        retry_after,
        error: (class != OutcomeClass::Success).then(|| format!("receiver answered {status}")),
        class,
    };
    // As `attempt::execute` reports it: success or, provisionally, dead.
    report.attempt.outcome = if class == OutcomeClass::Success {
        Outcome::Success
    } else {
        Outcome::Dead
    };
    report.attempt.response_status = Some(status);
    report
}

/// What `decide` must make of a report.
#[derive(Debug)]
enum Expected {
    Success,
    /// Retried, the next attempt due this long after this one.
    RetryIn(RangeInclusive<Duration>),
    Dead,
    /// Dead, and the endpoint set inactive.
    DeadAndDisabled,
}

/// `base` with the schedule's ±20 % jitter (and a millisecond for rounding).
fn jittered(base: Duration) -> RangeInclusive<Duration> {
    base.mul_f64(0.8) - Duration::from_millis(1)..=base.mul_f64(1.2) + Duration::from_millis(1)
}

fn exactly(wait: Duration) -> RangeInclusive<Duration> {
    wait..=wait
}

/// Decides `report` under the default schedule with many random seeds; each must give
/// `expected`.
fn check(report: &AttemptReport, on_failure: OnFailure, expected: &Expected) {
    let case = format!(
        "attempt {} answered {:?} (Retry-After {:?}), {on_failure:?} on failure",
        report.attempt.attempt, report.outcome.response_status, report.outcome.retry_after
    );
    let lease = LeaseToken::new();
    for seed in 0..32 {
        let mut rng = StdRng::seed_from_u64(seed);
        let recording = decide(
            report.clone(),
            on_failure,
            &RetrySchedule::default(),
            report.attempt.attempt,
            &mut rng,
            lease,
        );
        let attempt = &recording.attempt;
        assert_eq!(recording.lease, lease, "{case}");
        let (outcome, disabled) = match expected {
            Expected::Success => (Outcome::Success, false),
            Expected::RetryIn(_) => (Outcome::Retry, false),
            Expected::Dead => (Outcome::Dead, false),
            Expected::DeadAndDisabled => (Outcome::Dead, true),
        };
        assert_eq!(attempt.outcome, outcome, "{case}");
        assert_eq!(
            recording.disable_endpoint.as_deref(),
            disabled.then_some("receiver answered 410 Gone"),
            "{case}"
        );
        // Dead after a request that failed is exhausted; dead without one (withheld) is not.
        let exhausted = match expected {
            Expected::Dead => on_failure == OnFailure::Retry,
            Expected::DeadAndDisabled => true,
            Expected::Success | Expected::RetryIn(_) => false,
        };
        assert_eq!(recording.exhausted, exhausted, "{case}");
        match expected {
            Expected::RetryIn(range) => {
                let next = attempt.next_attempt_at.expect("a retry has a due time");
                let micros = next.as_micros() - attempt.occurred_at.as_micros();
                let wait = Duration::from_micros(u64::try_from(micros).expect("later"));
                assert!(range.contains(&wait), "{case}: next attempt in {wait:?}");
            }
            _ => assert_eq!(attempt.next_attempt_at, None, "{case}"),
        }
    }
}

#[test]
fn decide_follows_the_outcome_rules() {
    let retry = OnFailure::Retry;
    // A 2xx is a success, the last attempt included.
    check(&answered(200, 1, None), retry, &Expected::Success);
    check(&answered(204, 10, None), retry, &Expected::Success);
    // Other failures are retried after the schedule's delay for the attempt that failed.
    let first = jittered(Duration::from_secs(5));
    check(
        &answered(503, 1, None),
        retry,
        &Expected::RetryIn(first.clone()),
    );
    let second = jittered(Duration::from_secs(60));
    check(&answered(500, 2, None), retry, &Expected::RetryIn(second));
    let ninth = jittered(24 * HOUR);
    check(&answered(502, 9, None), retry, &Expected::RetryIn(ninth));
    // The tenth attempt is the last: its failure is dead.
    check(&answered(503, 10, None), retry, &Expected::Dead);
    // `Retry-After` is a floor: a longer one sets the delay, a shorter one changes nothing,
    // and none is followed past a day.
    let long = Some(Duration::from_secs(600));
    check(
        &answered(429, 1, long),
        retry,
        &Expected::RetryIn(exactly(Duration::from_secs(600))),
    );
    let short = Some(Duration::from_secs(1));
    check(&answered(503, 1, short), retry, &Expected::RetryIn(first));
    let too_long = Some(48 * HOUR);
    check(
        &answered(503, 2, too_long),
        retry,
        &Expected::RetryIn(exactly(24 * HOUR)),
    );
    check(&answered(503, 10, long), retry, &Expected::Dead);
    // A 410 is dead at once and disables the endpoint.
    check(&answered(410, 1, None), retry, &Expected::DeadAndDisabled);
    check(&answered(410, 10, None), retry, &Expected::DeadAndDisabled);
    // A failure that may not be retried is dead, whatever the schedule says.
    let dead = OnFailure::Dead;
    check(&answered(503, 1, None), dead, &Expected::Dead);
    check(&answered(410, 1, None), dead, &Expected::DeadAndDisabled);
}

/// Attempts `delivery`, which must not be sent, and checks it is recorded dead for `reason`.
async fn check_withheld(delivery: ClaimedDelivery, reason: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = DeliveryClient::new(ClientConfig::default()).expect("the client builds");

    let recording = attempt_delivery(&client, &RetrySchedule::default(), &delivery).await;

    let attempt = &recording.attempt;
    assert_eq!(attempt.outcome, Outcome::Dead, "{reason}");
    assert_eq!(attempt.error.as_deref(), Some(reason));
    assert_eq!(attempt.response_status, None, "{reason}");
    assert!(
        attempt.request_headers.is_empty(),
        "{reason}: nothing was sent"
    );
    assert_eq!(attempt.next_attempt_at, None, "{reason}");
    assert_eq!(recording.disable_endpoint, None, "{reason}");
    assert!(!recording.exhausted, "{reason}: withheld, not exhausted");
    assert_eq!(recording.lease, delivery.lease, "{reason}");
}

#[tokio::test]
async fn an_endpoint_deleted_or_set_inactive_since_publish_gets_no_request_and_a_dead_record() {
    let mut deleted = delivery(1);
    deleted.endpoint.deleted_at = Some(Timestamp::now());
    check_withheld(deleted, "endpoint deleted").await;

    let mut inactive = delivery(1);
    inactive.endpoint.active = false;
    check_withheld(inactive, "endpoint inactive").await;
}

#[test]
fn a_recovered_delivery_starts_a_fresh_schedule_while_its_attempt_numbers_go_on() {
    // The eleventh attempt overall, the first of the schedule a recovery started.
    let report = answered(500, 11, None);
    let recording = decide(
        report,
        OnFailure::Retry,
        &RetrySchedule::default(),
        1,
        &mut StdRng::seed_from_u64(7),
        LeaseToken::new(),
    );
    assert_eq!(recording.attempt.attempt, 11, "the number goes on");
    assert_eq!(
        recording.attempt.outcome,
        Outcome::Retry,
        "the first failure of a fresh schedule is retried"
    );
    let wait = recording
        .attempt
        .next_attempt_at
        .expect("a retry has a due time")
        .as_micros()
        - recording.attempt.occurred_at.as_micros();
    assert!(
        (4_000_000..=6_000_000).contains(&wait),
        "after the schedule's first delay (5 s ± 20 %), not {wait} µs"
    );
}

/// The value of the header `name` an attempt recorded.
fn recorded_header<'a>(report: &'a AttemptReport, name: &str) -> &'a str {
    let headers = &report.attempt.request_headers;
    let found = headers.iter().find(|(header, _)| header == name);
    found
        .map(|(_, value)| value.as_str())
        .expect("the header was recorded")
}

/// Sleeps into the next second, a little past its start.
async fn sleep_into_the_next_second() {
    let into_second = Duration::from_micros((Timestamp::now().as_micros() % 1_000_000) as u64);
    tokio::time::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_prepared_attempt_goes_out_as_signed_within_its_second_and_is_signed_again_after() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = DeliveryClient::new(ClientConfig::default()).expect("the client builds");
    let mut delivery = delivery(1);
    // Refused by the address policy before anything leaves: the record still shows what
    // would have been sent.
    delivery.endpoint.url = "https://127.0.0.1:9/webhooks".to_owned();

    sleep_into_the_next_second().await;
    let prepared = prepare(plan_of(&delivery)).expect("the envelope renders");
    let signature = prepared.webhook_signature().expect("signed").to_owned();
    let report = send(&client, plan_of(&delivery), prepared).await;
    assert_eq!(
        recorded_header(&report, "webhook-signature"),
        signature,
        "sent within its second, the prepared signature goes out"
    );
    let sent_in = report.attempt.occurred_at.unix_seconds();
    assert_eq!(
        recorded_header(&report, "webhook-timestamp"),
        sent_in.to_string()
    );

    let prepared = prepare(plan_of(&delivery)).expect("the envelope renders");
    let signature = prepared.webhook_signature().expect("signed").to_owned();
    let signed_in = prepared.signed_at().unix_seconds();
    sleep_into_the_next_second().await;
    let report = send(&client, plan_of(&delivery), prepared).await;
    let sent_in = report.attempt.occurred_at.unix_seconds();
    assert!(sent_in > signed_in, "sent {sent_in}, signed {signed_in}");
    assert_ne!(
        recorded_header(&report, "webhook-signature"),
        signature,
        "signed again"
    );
    assert_eq!(
        recorded_header(&report, "webhook-timestamp"),
        sent_in.to_string(),
        "the signature carries the second the attempt was sent in"
    );
    assert!(
        report.attempt.error.is_some(),
        "the address policy refused it"
    );
}

#[tokio::test]
async fn a_prepared_attempt_is_signed_again_when_the_previous_secret_stops_signing_before_it_goes()
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = DeliveryClient::new(ClientConfig::default()).expect("the client builds");
    let mut delivery = delivery(1);
    delivery.endpoint.url = "https://127.0.0.1:9/webhooks".to_owned();
    // A rotation whose grace period ends 300 ms from now, inside this second.
    sleep_into_the_next_second().await;
    let grace_ends = Timestamp::now().add(chrono::Duration::milliseconds(300));
    delivery.signing.previous_secret = Some(herald_domain::PreviousSecret {
        secret: herald_domain::Secret::generate(),
        valid_until: grace_ends,
    });
    let prepared = prepare(plan_of(&delivery)).expect("the envelope renders");
    let signature = prepared.webhook_signature().expect("signed").to_owned();
    assert_eq!(
        signature.matches("v1,").count(),
        2,
        "signed by the secret and the previous one: {signature}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let report = send(&client, plan_of(&delivery), prepared).await;
    assert!(report.attempt.occurred_at > grace_ends);
    let sent = recorded_header(&report, "webhook-signature");
    assert_eq!(
        sent.matches("v1,").count(),
        1,
        "after the grace period the previous secret signs nothing: {sent}"
    );
}

#[test]
fn a_run_claims_ahead_by_its_own_pace() {
    let micros = Duration::from_micros;
    let quick_claim = micros(2_000);
    // A loopback receiver's pace: the most, 32 (7 ms of sending).
    assert_eq!(
        claim_ahead_when_left(micros(200), quick_claim),
        CLAIM_AHEAD_WHEN_LEFT
    );
    assert_eq!(
        claim_ahead_when_left(Duration::ZERO, quick_claim),
        CLAIM_AHEAD_WHEN_LEFT
    );
    // As many as are sent in 8 ms, rounded up.
    assert_eq!(claim_ahead_when_left(micros(1_000), quick_claim), 8);
    assert_eq!(claim_ahead_when_left(micros(3_300), quick_claim), 3);
    // Claims of 12 ms (a database across a network): a lead of twice that.
    assert_eq!(claim_ahead_when_left(micros(1_000), micros(12_000)), 24);
    // A slow receiver: the last one, so the next batch's lease loses no more than its
    // round trip.
    assert_eq!(
        claim_ahead_when_left(Duration::from_millis(300), quick_claim),
        1
    );
}

#[test]
fn a_runs_pace_follows_its_attempts() {
    let micros = Duration::from_micros;
    let mut pace = next_pace(None, micros(250));
    assert_eq!(pace, micros(250), "the first: its attempt's time");
    for _ in 0..20 {
        pace = next_pace(Some(pace), micros(200));
    }
    assert!(
        pace < micros(205),
        "it settles on the attempts' time: {pace:?}"
    );
    // One slow attempt moves it an eighth of the way.
    pace = next_pace(Some(pace), micros(1_800));
    assert!(pace < micros(405), "{pace:?}");
    assert!(claim_ahead_when_left(pace, Duration::ZERO) >= 20);
}

/// A SQLite store holding one endpoint and `count` events of one ordering key to it, and the
/// key's first delivery, claimed.
async fn one_key_claimed(
    count: usize,
    directory: &tempfile::TempDir,
) -> (Arc<dyn Store>, ClaimedDelivery) {
    claim_the_head(sqlite_with_events(directory, count, Some("account-1")).await).await
}

/// `store` and the first delivery of its one ordering key, claimed.
async fn claim_the_head(store: Arc<dyn Store>) -> (Arc<dyn Store>, ClaimedDelivery) {
    let mut head = store
        .claim_due_deliveries(&unscoped_claim(10))
        .await
        .expect("claiming");
    assert_eq!(head.len(), 1, "one delivery of a key at a time");
    (store, head.remove(0))
}

/// Whether `head`'s holder can claim its successors again within a few seconds: only once
/// whoever held them gave them back (otherwise their leases last a minute).
async fn successors_given_back(store: &dyn Store, head: &ClaimedDelivery, expected: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let claimed = store
            .claim_successors(head, SUCCESSORS_PER_CLAIM, LEASE, Timestamp::now())
            .await
            .expect("claiming successors");
        if claimed.len() == expected {
            store.release_unsent(&claimed);
            return true;
        }
        store.release_unsent(&claimed);
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_dropped_midway_gives_back_its_successors_and_its_claim_on_the_way() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (store, head) = one_key_claimed(4, &directory).await;
    let claimed = store
        .claim_successors(&head, 1, LEASE, Timestamp::now())
        .await
        .expect("claiming a successor");
    assert_eq!(claimed.len(), 1);
    let mut successors = Successors::new(Arc::clone(&store));
    let on_its_way = SuccessorClaim::start(&store, &claimed[0], LEASE);
    // Done, so that it holds the 3rd and 4th when the run is dropped.
    while !on_its_way.task.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    successors.claim = Some(on_its_way);
    successors.waiting = claimed.into();
    // As a job aborted or panicking mid-run drops it.
    drop(successors);
    assert!(
        successors_given_back(store.as_ref(), &head, 3).await,
        "the waiting successor and the two the claim on its way took are claimable again"
    );
}

/// (That it is given back before `give_back` returns, rather than on a task of its own, is
/// not asserted: the test's own claim would race such a task.)
#[tokio::test]
async fn a_run_that_ends_gives_back_the_claim_on_its_way() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (store, head) = one_key_claimed(3, &directory).await;
    let mut successors = Successors::new(Arc::clone(&store));
    successors.claim = Some(SuccessorClaim::start(&store, &head, LEASE));
    successors.give_back().await;
    let claimed = store
        .claim_successors(&head, SUCCESSORS_PER_CLAIM, LEASE, Timestamp::now())
        .await
        .expect("claiming successors");
    assert_eq!(
        claimed.len(),
        2,
        "what the claim on its way took is claimable again"
    );
}

/// On PostgreSQL a run's end has nothing to give back (the next claim overwrites the tokens of
/// what a claim parks), so it must not wait for a claim of successors on its way: one held up
/// by the database would hold up the recording of what the run sent.
#[tokio::test]
async fn postgres_a_run_that_ends_does_not_wait_for_a_claim_held_up_on_its_way() {
    use sqlx::Connection as _;

    let database = herald_testkit::postgres::TestDatabase::create("job_claim_on_its_way").await;
    let store = postgres_with_events(&database.url, 3, Some("account-1")).await;
    let (store, head) = claim_the_head(store).await;
    // Another session holds the deliveries table against writers until it rolls back, so
    // the claim of the head's successors waits behind it.
    let mut blocker = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connecting the blocking session");
    sqlx::raw_sql("BEGIN; LOCK TABLE deliveries IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("locking the deliveries");
    let mut successors = Successors::new(Arc::clone(&store));
    let claim = SuccessorClaim::start(&store, &head, LEASE);
    // The claim waits behind the lock.
    herald_testkit::postgres::wait_for_a_lock_wait(&database.url).await;
    successors.claim = Some(claim);
    tokio::time::timeout(Duration::from_secs(2), successors.give_back())
        .await
        .expect("the run's end returns while its claim on the way is held up");
    // What the claim left to finish does once the lock goes is the store's
    // (`successors::postgres_a_claim_that_waited_does_not_stamp_over_the_keys_next_holder`).
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("releasing the lock");
}
