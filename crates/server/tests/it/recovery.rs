//! Recovery (CONTRACT.md section 10): `POST /v1/webhooks/{id}/recover` puts an endpoint's dead
//! deliveries of a window (and, with `include_missing`, the events it missed while inactive)
//! back on the queue under their original event ids, with attempt numbers continued and a fresh
//! retry schedule; `GET /v1/webhooks/recoveries/{id}` follows it to `done`. Pending deliveries
//! and the test operation's events are never matched, an identical request while one runs
//! answers the same recovery (sent back to back or at the same time, each event is delivered
//! exactly once more), and every request leaves one `recover` audit record.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_domain::{OrgId, Timestamp};
use herald_testkit::{Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, Reply, TestApp, TestOrg, delivering, endpoint_body, endpoint_path, header,
    received_json, string_at, timestamp_at, verify_delivery, wait_for_received, wait_until,
    wait_within,
};

backend_tests!(
    dead_deliveries_are_recovered_under_their_original_ids_with_continued_attempts,
    dry_run_counts_the_matches_and_sends_nothing,
    include_missing_catches_up_events_published_while_inactive,
    two_thousand_dead_deliveries_are_counted_by_a_dry_run_then_recovered_once_each,
    a_hundred_events_missed_while_inactive_match_only_with_include_missing,
    pending_delivery_is_not_matched,
    test_operation_events_are_never_matched,
    identical_request_while_one_runs_answers_the_same_recovery,
    concurrent_identical_requests_start_one_recovery,
    every_request_writes_one_recover_audit_record,
    since_not_before_until_is_refused,
    since_older_than_event_retention_is_refused,
    missing_or_malformed_since_is_refused,
    unknown_or_empty_event_types_are_refused,
    more_than_fifty_event_types_are_refused,
    unknown_fields_and_wrong_types_are_refused,
    recovery_of_an_inactive_endpoint_is_a_conflict,
    recovery_of_an_unknown_foreign_or_deleted_endpoint_is_not_found,
    unknown_or_foreign_recovery_is_not_found,
    recovery_needs_the_write_scope,
);

const EVENT: &str = "wallet.balance_low";

/// The fields of the 202 answer to `POST /v1/webhooks/{id}/recover`.
const ANSWER_FIELDS: [&str; 7] = [
    "dry_run",
    "endpoint_id",
    "matched",
    "recovery_id",
    "since",
    "status",
    "until",
];

/// The fields of a recovery object.
const RECOVERY_FIELDS: [&str; 10] = [
    "created_at",
    "dry_run",
    "endpoint_id",
    "enqueued",
    "finished_at",
    "id",
    "matched",
    "since",
    "status",
    "until",
];

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
/// The wait limit of the tests that move hundreds of deliveries.
const SLOW: Duration = Duration::from_secs(60);

fn millis(delays: &[u64]) -> Vec<Duration> {
    delays.iter().copied().map(Duration::from_millis).collect()
}

/// The instant `duration` before now.
fn ago(duration: Duration) -> Timestamp {
    let micros = i64::try_from(duration.as_micros()).expect("a short duration");
    Timestamp::from_micros(Timestamp::now().as_micros() - micros)
}

/// The instant `duration` after now.
fn from_now(duration: Duration) -> Timestamp {
    let micros = i64::try_from(duration.as_micros()).expect("a short duration");
    Timestamp::from_micros(Timestamp::now().as_micros() + micros)
}

/// `/v1/webhooks/{id}/recover` of an endpoint object.
fn recover_path(endpoint: &Value) -> String {
    format!("{}/recover", endpoint_path(endpoint))
}

/// `/v1/webhooks/recoveries/{id}`.
fn recovery_path(id: &str) -> String {
    format!("/v1/webhooks/recoveries/{id}")
}

/// A recover body covering the last minute, with `extra` fields merged in.
fn last_minute(extra: &Value) -> Value {
    let mut body = json!({"since": ago(MINUTE).to_string()});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// The sorted keys of a JSON object.
fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

fn count_outcome(records: &[Value], outcome: &str) -> usize {
    records
        .iter()
        .filter(|record| record["outcome"] == json!(outcome))
        .count()
}

/// The `matched` count of an answer or recovery, as a number.
#[track_caller]
fn matched(value: &Value) -> u64 {
    value["matched"]
        .as_u64()
        .unwrap_or_else(|| panic!("matched should be a count in {value}"))
}

/// The event ids of `values` at `field`, as a set.
fn id_set<'a>(values: impl IntoIterator<Item = &'a Value>, field: &str) -> BTreeSet<String> {
    values
        .into_iter()
        .map(|value| string_at(value, field))
        .collect()
}

impl TestApp {
    /// `POST /v1/webhooks/{id}/recover` with `body`.
    async fn recover(&self, key: &str, endpoint: &Value, body: &Value) -> Reply {
        self.post(key, &recover_path(endpoint), body).await
    }

    /// Recovers with `body`, checks the 202 and its shape, and returns the answer.
    async fn recover_accepted(&self, key: &str, endpoint: &Value, body: &Value) -> Value {
        let reply = self.recover(key, endpoint, body).await;
        reply.assert_status(StatusCode::ACCEPTED);
        assert_eq!(keys(&reply.body), ANSWER_FIELDS, "answer fields: {reply}");
        assert_eq!(reply.body["endpoint_id"], endpoint["id"], "{reply}");
        reply.body
    }

    /// Polls `GET /v1/webhooks/recoveries/{id}` until the recovery is `done`; returns it.
    async fn wait_for_recovery_done(&self, key: &str, recovery_id: &str) -> Value {
        wait_until(&format!("recovery {recovery_id} to be done"), || async {
            let reply = self.get(key, &recovery_path(recovery_id)).await;
            reply.assert_status(StatusCode::OK);
            (reply.body["status"] == json!("done")).then_some(reply.body)
        })
        .await
    }

    /// Recovers the last minute of `endpoint` twice, without and then with
    /// `include_missing`; returns both answers.
    async fn recover_without_and_with_missing(
        &self,
        key: &str,
        endpoint: &Value,
    ) -> (Value, Value) {
        let without = self
            .recover_accepted(key, endpoint, &last_minute(&json!({})))
            .await;
        let with = self
            .recover_accepted(
                key,
                endpoint,
                &last_minute(&json!({"include_missing": true})),
            )
            .await;
        (without, with)
    }

    /// The `recover` records of `org`'s audit log, newest first.
    async fn recover_audits(&self, org: OrgId) -> Vec<Value> {
        self.audit_log(org)
            .await
            .into_iter()
            .filter(|record| record["action"] == json!("recover"))
            .collect()
    }
}

/// An endpoint whose every delivery died, at a receiver that now answers 200.
struct Dead {
    app: TestApp,
    org: TestOrg,
    endpoint: Value,
    receiver: Receiver,
    /// The published events' ids, in publish order.
    event_ids: Vec<String>,
}

/// `events` events, each dead after two attempts (a schedule of one 50 ms delay) at a receiver
/// that answers 500 twice as many times, and 200 from then on.
async fn dead_deliveries(backend: Backend, events: usize) -> Dead {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .sequence(&vec![500; 2 * events])
        .spawn()
        .await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[50]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    let mut event_ids = Vec::new();
    for n in 0..events {
        let published = app.publish(org.id, EVENT, &json!({"n": n})).await;
        event_ids.push(string_at(&published, "event_id"));
    }
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "every delivery to die", |records| {
            count_outcome(records, "dead") == events
        })
        .await;
    assert_eq!(records.len(), 2 * events, "two attempts each: {records:?}");
    assert_eq!(receiver.received().len(), 2 * events);
    Dead {
        app,
        org,
        endpoint,
        receiver,
        event_ids,
    }
}

async fn dead_deliveries_are_recovered_under_their_original_ids_with_continued_attempts(
    backend: Backend,
) {
    // Arrange: two events, each dead after attempts 1 and 2; the receiver now answers 200.
    let dead = dead_deliveries(backend, 2).await;
    let app = &dead.app;
    let key = &dead.org.key;
    let since = ago(MINUTE);
    let before = Timestamp::now();

    // Act
    let answer = app
        .recover_accepted(key, &dead.endpoint, &json!({"since": since.to_string()}))
        .await;
    let after = Timestamp::now();

    // Assert: the answer.
    assert_eq!(answer["status"], json!("queued"), "{answer}");
    assert_eq!(matched(&answer), 2, "both dead deliveries match: {answer}");
    assert_eq!(answer["dry_run"], json!(false), "{answer}");
    assert_eq!(timestamp_at(&answer, "since"), since, "{answer}");
    let until = timestamp_at(&answer, "until");
    assert!(
        before <= until && until <= after,
        "until defaults to now: {until} not within [{before}, {after}]"
    );
    let recovery_id = string_at(&answer, "recovery_id");

    // The receiver gets each event once more, under its original id, as attempt 3, signed.
    let received = wait_for_received(&dead.receiver, 6).await;
    let recovered = &received[4..];
    let original: BTreeSet<String> = dead.event_ids.iter().cloned().collect();
    let by_header: BTreeSet<String> = recovered
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    assert_eq!(
        by_header, original,
        "redelivered under the original event ids"
    );
    let secret = string_at(&dead.endpoint, "secret");
    for request in recovered {
        let event_id = header(request, "x-amcore-event-id");
        assert_eq!(
            header(request, "webhook-id"),
            event_id,
            "webhook-id is the original event id"
        );
        assert_eq!(
            header(request, "x-amcore-delivery-attempt"),
            "3",
            "attempt numbers continue after the two failed attempts of {event_id}"
        );
        assert_eq!(received_json(request)["id"], json!(event_id));
        let verdict = verify_delivery(request, &request.body, &secret, None, None).await;
        assert!(verdict.accepted, "re-signed: {}", verdict.reason);
    }

    // The recovery is done with everything put back.
    let recovery = app.wait_for_recovery_done(key, &recovery_id).await;
    assert_eq!(
        keys(&recovery),
        RECOVERY_FIELDS,
        "recovery fields: {recovery}"
    );
    assert_eq!(recovery["id"], json!(recovery_id), "{recovery}");
    assert_eq!(recovery["endpoint_id"], dead.endpoint["id"], "{recovery}");
    assert_eq!(matched(&recovery), 2, "{recovery}");
    assert_eq!(
        recovery["enqueued"],
        json!(2),
        "enqueued == matched: {recovery}"
    );
    assert_eq!(recovery["dry_run"], json!(false), "{recovery}");
    assert_eq!(timestamp_at(&recovery, "since"), since, "{recovery}");
    assert_eq!(timestamp_at(&recovery, "until"), until, "{recovery}");
    let created_at = timestamp_at(&recovery, "created_at");
    assert!(
        timestamp_at(&recovery, "finished_at") >= created_at,
        "{recovery}"
    );

    // The feed shows a success at attempt 3 for each event, and nothing else new.
    let records = app
        .wait_for_deliveries(key, &dead.endpoint, "two successes", |records| {
            count_outcome(records, "success") == 2
        })
        .await;
    let successes: Vec<&Value> = records
        .iter()
        .filter(|record| record["outcome"] == json!("success"))
        .collect();
    assert_eq!(id_set(successes.iter().copied(), "event_id"), original);
    for record in &successes {
        assert_eq!(record["attempt"], json!(3), "{record}");
    }
    app.wait_for_empty_queue().await;
    assert_eq!(
        dead.receiver.received().len(),
        6,
        "each event is delivered exactly once more"
    );
    assert_eq!(app.endpoint_deliveries(key, &dead.endpoint).await.len(), 6);
}

async fn dry_run_counts_the_matches_and_sends_nothing(backend: Backend) {
    // Arrange
    let dead = dead_deliveries(backend, 2).await;
    let app = &dead.app;
    let key = &dead.org.key;

    // Act
    let answer = app
        .recover_accepted(key, &dead.endpoint, &last_minute(&json!({"dry_run": true})))
        .await;

    // Assert
    assert_eq!(
        answer["status"],
        json!("done"),
        "a dry run is done at once: {answer}"
    );
    assert_eq!(answer["dry_run"], json!(true), "{answer}");
    assert_eq!(matched(&answer), 2, "{answer}");
    let recovery_id = string_at(&answer, "recovery_id");
    let recovery = app.get(key, &recovery_path(&recovery_id)).await;
    recovery.assert_status(StatusCode::OK);
    assert_eq!(recovery.body["status"], json!("done"), "{recovery}");
    assert_eq!(recovery.body["dry_run"], json!(true), "{recovery}");
    assert_eq!(matched(&recovery.body), 2, "{recovery}");
    assert_eq!(recovery.body["enqueued"], json!(0), "{recovery}");
    assert!(recovery.body["finished_at"].is_string(), "{recovery}");

    // Nothing was queued: the queue is empty and nobody got anything new.
    app.wait_for_empty_queue().await;
    assert_eq!(dead.receiver.received().len(), 4, "a dry run sends nothing");
    assert_eq!(app.endpoint_deliveries(key, &dead.endpoint).await.len(), 4);

    // And nothing changed: a real run afterwards still finds both.
    let real = app
        .recover_accepted(key, &dead.endpoint, &last_minute(&json!({})))
        .await;
    assert_eq!(
        matched(&real),
        2,
        "the dry run left the deliveries dead: {real}"
    );
    assert_eq!(real["dry_run"], json!(false), "{real}");
}

async fn include_missing_catches_up_events_published_while_inactive(backend: Backend) {
    // Arrange: an event before the endpoint existed, three events of its type and one of
    // another type while it was inactive, and one delivered normally after.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let key = &org.key;
    let before_endpoint = app.publish(org.id, EVENT, &json!({"n": "before"})).await;
    assert_eq!(before_endpoint["endpoints"], json!(0), "{before_endpoint}");
    let endpoint = app
        .create_endpoint_at(key, &receiver.url("/ok"), &[EVENT])
        .await;
    let path = endpoint_path(&endpoint);
    app.patch(key, &path, &json!({"active": false}))
        .await
        .assert_status(StatusCode::OK);
    let mut missed = BTreeSet::new();
    for n in 0..3 {
        let published = app.publish(org.id, EVENT, &json!({"n": n})).await;
        assert_eq!(published["endpoints"], json!(0), "inactive: {published}");
        missed.insert(string_at(&published, "event_id"));
    }
    let other_type = app
        .publish(org.id, "wallet.balance_zero", &json!({"n": "other"}))
        .await;
    assert_eq!(other_type["endpoints"], json!(0), "{other_type}");
    app.patch(key, &path, &json!({"active": true}))
        .await
        .assert_status(StatusCode::OK);
    let live = app.publish(org.id, EVENT, &json!({"n": "live"})).await;
    assert_eq!(live["endpoints"], json!(1), "{live}");
    wait_for_received(&receiver, 1).await;

    // Act
    let (without, with) = app.recover_without_and_with_missing(key, &endpoint).await;

    // Assert
    assert_eq!(
        matched(&without),
        0,
        "without include_missing, events with no delivery do not match: {without}"
    );
    let without = app
        .wait_for_recovery_done(key, &string_at(&without, "recovery_id"))
        .await;
    assert_eq!(without["enqueued"], json!(0), "{without}");

    assert_eq!(
        matched(&with),
        3,
        "only the three events of a subscribed type published while inactive: {with}"
    );
    let received = wait_for_received(&receiver, 4).await;
    let caught_up = &received[1..];
    let ids: BTreeSet<String> = caught_up
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    assert_eq!(ids, missed, "the missed events, under their original ids");
    for request in caught_up {
        assert_eq!(
            header(request, "webhook-id"),
            header(request, "x-amcore-event-id")
        );
        assert_eq!(
            header(request, "x-amcore-delivery-attempt"),
            "1",
            "a first attempt"
        );
        assert_eq!(received_json(request)["type"], json!(EVENT));
    }
    let with = app
        .wait_for_recovery_done(key, &string_at(&with, "recovery_id"))
        .await;
    assert_eq!(with["enqueued"], json!(3), "{with}");
    app.wait_for_empty_queue().await;
    assert_eq!(
        receiver.received().len(),
        4,
        "nothing else: not the event from before the endpoint, not the other type, not the \
         live one again"
    );
}

async fn two_thousand_dead_deliveries_are_counted_by_a_dry_run_then_recovered_once_each(
    backend: Backend,
) {
    // Arrange: a receiver down while 2,000 deliveries died; it answers 200 now.
    let dead = many_dead_deliveries(backend, 2_000).await;
    let (app, key) = (&dead.app, &dead.org.key);
    let body = last_minute(&json!({}));

    // Act 1: a dry run.
    let mut dry_body = body.clone();
    dry_body["dry_run"] = json!(true);
    let dry = app.recover_accepted(key, &dead.endpoint, &dry_body).await;

    // Assert: it counts all 2,000, is done at once, and sends nothing.
    assert_eq!(matched(&dry), 2_000, "{dry}");
    assert_eq!(dry["status"], json!("done"), "{dry}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.wait_for_empty_queue().await;
    assert_eq!(
        dead.receiver.received().len(),
        2_000,
        "a dry run sends nothing"
    );

    // Act 2: the real run.
    let real = app.recover_accepted(key, &dead.endpoint, &body).await;

    // Assert: done with enqueued == matched, and each event delivered exactly once more,
    // under its original id, signed anew.
    assert_eq!(matched(&real), 2_000, "{real}");
    let done = app
        .wait_for_recovery_done(key, &string_at(&real, "recovery_id"))
        .await;
    assert_eq!(done["enqueued"], json!(2_000), "{done}");
    wait_within(SLOW, "2,000 redeliveries", || async {
        (dead.receiver.received().len() >= 4_000).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    let received = dead.receiver.received();
    assert_eq!(received.len(), 4_000, "exactly once more each");
    let redelivered: Vec<String> = received[2_000..]
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    let unique: BTreeSet<&String> = redelivered.iter().collect();
    assert_eq!(unique.len(), 2_000, "no event twice");
    let original: BTreeSet<String> = dead.event_ids.iter().cloned().collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        original
    );
    let secret = string_at(&dead.endpoint, "secret");
    for request in &received[2_000..] {
        assert_eq!(
            header(request, "webhook-id"),
            header(request, "x-amcore-event-id")
        );
        assert_eq!(header(request, "x-amcore-delivery-attempt"), "2");
    }
    // The independent verifier checks a sample (it is a process per delivery).
    for request in received[2_000..].iter().step_by(400) {
        let verdict = verify_delivery(request, &request.body, &secret, None, None).await;
        assert!(verdict.accepted, "re-signed: {}", verdict.reason);
    }
}

async fn a_hundred_events_missed_while_inactive_match_only_with_include_missing(backend: Backend) {
    // Arrange: 100 events published (in one batch) while the endpoint was inactive.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let key = &org.key;
    let endpoint = app
        .create_endpoint_at(key, &receiver.url("/ok"), &[EVENT])
        .await;
    let path = endpoint_path(&endpoint);
    app.patch(key, &path, &json!({"active": false}))
        .await
        .assert_status(StatusCode::OK);
    let events: Vec<Value> = (0..100)
        .map(|n| json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": n}}))
        .collect();
    let reply = app
        .admin_post("/admin/v1/events/batch", &json!({"events": events}))
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    let missed: BTreeSet<String> = reply.body["events"]
        .as_array()
        .expect("one answer per event")
        .iter()
        .map(|answer| string_at(answer, "event_id"))
        .collect();
    assert_eq!(missed.len(), 100);
    app.patch(key, &path, &json!({"active": true}))
        .await
        .assert_status(StatusCode::OK);

    // Act
    let (without, with) = app.recover_without_and_with_missing(key, &endpoint).await;

    // Assert
    assert_eq!(matched(&without), 0, "{without}");
    assert_eq!(matched(&with), 100, "{with}");
    let received = wait_for_received(&receiver, 100).await;
    app.wait_for_empty_queue().await;
    let ids: BTreeSet<String> = received
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    assert_eq!(
        ids, missed,
        "the 100 missed events, under their original ids"
    );
    assert_eq!(receiver.received().len(), 100, "each once");
}

async fn pending_delivery_is_not_matched(backend: Backend) {
    // Arrange: a delivery that failed once and waits a minute for its next attempt.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(millis(&[60_000]))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let key = &org.key;
    let endpoint = app
        .create_endpoint_at(key, &receiver.url("/fail"), &[EVENT])
        .await;
    app.publish(org.id, EVENT, &json!({})).await;
    app.wait_for_deliveries(key, &endpoint, "a retry record", |records| {
        count_outcome(records, "retry") == 1
    })
    .await;

    // Act
    let plain = app
        .recover_accepted(key, &endpoint, &last_minute(&json!({})))
        .await;
    let with_missing = app
        .recover_accepted(
            key,
            &endpoint,
            &last_minute(&json!({"include_missing": true})),
        )
        .await;

    // Assert
    assert_eq!(
        matched(&plain),
        0,
        "a pending delivery is not dead: {plain}"
    );
    assert_eq!(
        matched(&with_missing),
        0,
        "a pending delivery is a delivery, so not missing either: {with_missing}"
    );
    for answer in [&plain, &with_missing] {
        let recovery = app
            .wait_for_recovery_done(key, &string_at(answer, "recovery_id"))
            .await;
        assert_eq!(recovery["enqueued"], json!(0), "{recovery}");
    }
    assert_eq!(receiver.received().len(), 1, "no attempt was added");
    let records = app.endpoint_deliveries(key, &endpoint).await;
    assert_eq!(records.len(), 1, "{records:?}");
}

async fn test_operation_events_are_never_matched(backend: Backend) {
    // Arrange: a dead `webhook.test` in the feed of an endpoint that subscribes to nothing
    // else that was published.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let key = &org.key;
    let endpoint = app
        .create_endpoint_at(key, &receiver.url("/fail"), &[EVENT])
        .await;
    let sent = app
        .post_empty(key, &format!("{}/test", endpoint_path(&endpoint)))
        .await;
    sent.assert_status(StatusCode::OK);
    assert_eq!(sent.body["outcome"], json!("dead"), "{sent}");

    // Act
    let answer = app
        .recover_accepted(
            key,
            &endpoint,
            &last_minute(&json!({"include_missing": true})),
        )
        .await;

    // Assert
    assert_eq!(
        matched(&answer),
        0,
        "the test event is never recovered: {answer}"
    );
    let recovery = app
        .wait_for_recovery_done(key, &string_at(&answer, "recovery_id"))
        .await;
    assert_eq!(recovery["enqueued"], json!(0), "{recovery}");
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 1);
}

/// An endpoint with `events` deliveries dead after a single attempt (published in batches of
/// 500), at a receiver that answers 500 that many times and 200 from then on. With more than
/// 500 matches, a recovery takes more than one chunk of work.
async fn many_dead_deliveries(backend: Backend, events: usize) -> Dead {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .sequence(&vec![500; events])
        .spawn()
        .await;
    let app = delivering(backend, &ca)
        .retry_schedule(Vec::new())
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    let mut event_ids = Vec::new();
    let all: Vec<usize> = (0..events).collect();
    for batch in all.chunks(500) {
        let events: Vec<Value> = batch
            .iter()
            .map(|n| json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": n}}))
            .collect();
        let reply = app
            .admin_post("/admin/v1/events/batch", &json!({"events": events}))
            .await;
        reply.assert_status(StatusCode::ACCEPTED);
        let answers = reply.body["events"].as_array().cloned().unwrap_or_default();
        event_ids.extend(answers.iter().map(|answer| string_at(answer, "event_id")));
    }
    assert_eq!(event_ids.len(), events);
    wait_within(SLOW, &format!("{events} deliveries to die"), || async {
        (receiver.received().len() >= events).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), events);
    Dead {
        app,
        org,
        endpoint,
        receiver,
        event_ids,
    }
}

/// Asserts that two identical recovery requests, answered `a` and `b`, either got the same
/// recovery or got two that never ran at the same time; that each matched event was delivered
/// exactly once more; and that each request was audited.
async fn assert_recovered_once(dead: &Dead, a: &Reply, b: &Reply) {
    let (app, key) = (&dead.app, &dead.org.key);
    let events = dead.event_ids.len();
    a.assert_status(StatusCode::ACCEPTED);
    b.assert_status(StatusCode::ACCEPTED);
    let a_id = string_at(&a.body, "recovery_id");
    let b_id = string_at(&b.body, "recovery_id");
    if a_id == b_id {
        assert_eq!(matched(&a.body), events as u64, "{a}");
        assert_eq!(b.body["matched"], a.body["matched"], "{b}");
        let done = app.wait_for_recovery_done(key, &a_id).await;
        assert_eq!(done["enqueued"], json!(events), "{done}");
    } else {
        // Two recoveries are only allowed when one had finished before the other was matched
        // (`created_at` is stamped before the request's transaction, so it cannot tell):
        // then everything was already back in the queue and the later one matches nothing.
        let a_done = app.wait_for_recovery_done(key, &a_id).await;
        let b_done = app.wait_for_recovery_done(key, &b_id).await;
        let (earlier, later) = if matched(&a_done) >= matched(&b_done) {
            (a_done, b_done)
        } else {
            (b_done, a_done)
        };
        assert_eq!(matched(&earlier), events as u64, "{earlier}");
        assert_eq!(earlier["enqueued"], json!(events), "{earlier}");
        assert_eq!(
            matched(&later),
            0,
            "a second recovery {later} was started while the identical {earlier} still had \
             matches to put back"
        );
    }
    wait_within(SLOW, "every event once more", || async {
        (dead.receiver.received().len() >= 2 * events).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    let received = dead.receiver.received();
    assert_eq!(
        received.len(),
        2 * events,
        "each event is delivered exactly once more, however many requests asked"
    );
    let redelivered: BTreeSet<String> = received[events..]
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    let original: BTreeSet<String> = dead.event_ids.iter().cloned().collect();
    assert_eq!(redelivered, original);
    assert_eq!(
        app.recover_audits(dead.org.id).await.len(),
        2,
        "one audit record per request"
    );
}

async fn identical_request_while_one_runs_answers_the_same_recovery(backend: Backend) {
    // Arrange: 600 dead deliveries, two chunks of recovery work.
    let dead = many_dead_deliveries(backend, 600).await;
    let body = last_minute(&json!({}));

    // Act: the same body twice, back to back.
    let first = dead.app.recover(&dead.org.key, &dead.endpoint, &body).await;
    let second = dead.app.recover(&dead.org.key, &dead.endpoint, &body).await;

    // Assert
    assert_recovered_once(&dead, &first, &second).await;
}

async fn concurrent_identical_requests_start_one_recovery(backend: Backend) {
    // Arrange
    let dead = many_dead_deliveries(backend, 600).await;
    let body = last_minute(&json!({}));

    // Act: the same body twice, at the same time (a client retrying a slow request).
    let (one, other) = tokio::join!(
        dead.app.recover(&dead.org.key, &dead.endpoint, &body),
        dead.app.recover(&dead.org.key, &dead.endpoint, &body),
    );

    // Assert
    assert_recovered_once(&dead, &one, &other).await;
}

async fn every_request_writes_one_recover_audit_record(backend: Backend) {
    // Arrange
    let dead = dead_deliveries(backend, 1).await;
    let app = &dead.app;
    let key = &dead.org.key;

    // Act
    let dry = app
        .recover(key, &dead.endpoint, &last_minute(&json!({"dry_run": true})))
        .await;
    let real = app
        .recover(key, &dead.endpoint, &last_minute(&json!({})))
        .await;

    // Assert
    dry.assert_status(StatusCode::ACCEPTED);
    real.assert_status(StatusCode::ACCEPTED);
    let audits = app.recover_audits(dead.org.id).await;
    assert_eq!(
        audits.len(),
        2,
        "one per request, dry runs included: {audits:?}"
    );
    for (record, reply) in audits.iter().zip([&real, &dry]) {
        assert_eq!(record["action"], json!("recover"), "{record}");
        assert_eq!(record["target_id"], dead.endpoint["id"], "{record}");
        assert_eq!(record["org_id"], json!(dead.org.id.to_string()), "{record}");
        assert_eq!(
            record["api_key_id"],
            json!(dead.org.key_id.to_string()),
            "the acting key: {record}"
        );
        assert_eq!(record["request_id"], json!(reply.request_id()), "{record}");
        assert!(record["occurred_at"].is_string(), "{record}");
    }
}

/// An app with an organization and one active endpoint (no receiver: nothing is delivered).
async fn app_with_endpoint(backend: Backend) -> (TestApp, TestOrg, Value) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let endpoint = app.create_endpoint(&org.key, &endpoint_body()).await;
    (app, org, endpoint)
}

/// Asserts that refused requests left no `recover` audit record.
async fn assert_no_recover_audit(app: &TestApp, org: &TestOrg) {
    let audits = app.recover_audits(org.id).await;
    assert!(
        audits.is_empty(),
        "a refused request was audited: {audits:?}"
    );
}

async fn since_not_before_until_is_refused(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let instant = ago(MINUTE).to_string();
    let earlier = ago(2 * MINUTE).to_string();

    // Act
    let equal = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": instant, "until": instant}),
        )
        .await;
    let after = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": instant, "until": earlier}),
        )
        .await;
    let future = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": from_now(MINUTE).to_string()}),
        )
        .await;

    // Assert
    equal.assert_validation("since");
    after.assert_validation("since");
    future.assert_validation("since"); // `until` defaults to now.
    assert_no_recover_audit(&app, &org).await;
}

async fn since_older_than_event_retention_is_refused(backend: Backend) {
    // Arrange: the default retention is 30 days.
    let (app, org, endpoint) = app_with_endpoint(backend).await;

    // Act
    let too_old = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": ago(31 * DAY).to_string()}),
        )
        .await;
    let within = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": ago(29 * DAY).to_string(), "dry_run": true}),
        )
        .await;

    // Assert
    let message = too_old.assert_validation("since");
    assert!(
        message.to_lowercase().contains("retention"),
        "details.since should say the window is past retention: {message:?}"
    );
    within.assert_status(StatusCode::ACCEPTED);
}

async fn missing_or_malformed_since_is_refused(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let since = ago(MINUTE).to_string();

    // Act
    let missing = app.recover(&org.key, &endpoint, &json!({})).await;
    let null = app
        .recover(&org.key, &endpoint, &json!({"since": null}))
        .await;
    let prose = app
        .recover(&org.key, &endpoint, &json!({"since": "yesterday"}))
        .await;
    let number = app
        .recover(&org.key, &endpoint, &json!({"since": 1_777_204_800}))
        .await;
    let bad_until = app
        .recover(
            &org.key,
            &endpoint,
            &json!({"since": since, "until": "soon"}),
        )
        .await;

    // Assert
    for reply in [&missing, &null, &prose, &number] {
        reply.assert_validation("since");
    }
    bad_until.assert_validation("until");
    assert_no_recover_audit(&app, &org).await;
}

async fn unknown_or_empty_event_types_are_refused(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;

    // Act
    let mut answers = Vec::new();
    for (case, types) in [
        ("unknown", json!(["wallet.balance_sky_high"])),
        ("one unknown among known", json!([EVENT, "nope.nope"])),
        ("empty", json!([])),
        ("not a list", json!(EVENT)),
    ] {
        let body = last_minute(&json!({"event_types": types}));
        answers.push((case, app.recover(&org.key, &endpoint, &body).await));
    }
    let known = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"event_types": [EVENT, "campaign.approved"]})),
        )
        .await;

    // Assert
    for (case, reply) in &answers {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {reply}"
        );
        reply.assert_validation("event_types");
    }
    known.assert_status(StatusCode::ACCEPTED);
}

async fn more_than_fifty_event_types_are_refused(backend: Backend) {
    // Arrange: the catalog's types, cycled to 51 entries.
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let catalog = herald_domain::EventCatalog::default();
    let fifty_one: Vec<&str> = catalog.names().into_iter().cycle().take(51).collect();

    // Act
    let too_many = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"event_types": fifty_one})),
        )
        .await;
    let whole_catalog = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"event_types": catalog.names()})),
        )
        .await;

    // Assert
    too_many.assert_validation("event_types");
    whole_catalog.assert_status(StatusCode::ACCEPTED);
}

async fn unknown_fields_and_wrong_types_are_refused(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;

    // Act
    let unknown = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"colour": "blue"})),
        )
        .await;
    let dry_run = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"dry_run": "yes"})),
        )
        .await;
    let include_missing = app
        .recover(
            &org.key,
            &endpoint,
            &last_minute(&json!({"include_missing": 1})),
        )
        .await;

    // Assert
    assert_eq!(unknown.assert_validation("colour"), "unknown field");
    assert_eq!(unknown.detail_fields(), ["colour"]);
    dry_run.assert_validation("dry_run");
    include_missing.assert_validation("include_missing");
    assert_no_recover_audit(&app, &org).await;
}

async fn recovery_of_an_inactive_endpoint_is_a_conflict(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    app.patch(
        &org.key,
        &endpoint_path(&endpoint),
        &json!({"active": false}),
    )
    .await
    .assert_status(StatusCode::OK);

    // Act
    let reply = app
        .recover(&org.key, &endpoint, &last_minute(&json!({})))
        .await;
    let dry_run = app
        .recover(&org.key, &endpoint, &last_minute(&json!({"dry_run": true})))
        .await;

    // Assert
    for reply in [&reply, &dry_run] {
        let error = reply.assert_error(StatusCode::CONFLICT, "ENDPOINT_INACTIVE");
        assert_eq!(error["message"], json!("endpoint is inactive"), "{reply}");
    }
    assert_no_recover_audit(&app, &org).await;
}

async fn recovery_of_an_unknown_foreign_or_deleted_endpoint_is_not_found(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let stranger = app.org_with_key().await;
    let deleted = app.create_endpoint(&org.key, &endpoint_body()).await;
    app.delete(&org.key, &endpoint_path(&deleted))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let body = last_minute(&json!({}));

    // Act
    let foreign = app.recover(&stranger.key, &endpoint, &body).await;
    let gone = app.recover(&org.key, &deleted, &body).await;
    let unknown = app
        .recover(
            &org.key,
            &json!({"id": uuid::Uuid::now_v7().to_string()}),
            &body,
        )
        .await;
    let malformed = app
        .post(&org.key, "/v1/webhooks/not-a-uuid/recover", &body)
        .await;

    // Assert
    for (case, reply) in [
        ("foreign", &foreign),
        ("deleted", &gone),
        ("unknown", &unknown),
        ("malformed", &malformed),
    ] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{case}: {reply}");
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    assert_no_recover_audit(&app, &org).await;
    assert_no_recover_audit(&app, &stranger).await;
}

async fn unknown_or_foreign_recovery_is_not_found(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let stranger = app.org_with_key().await;
    let answer = app
        .recover_accepted(&org.key, &endpoint, &last_minute(&json!({"dry_run": true})))
        .await;
    let path = recovery_path(&string_at(&answer, "recovery_id"));

    // Act
    let own = app.get(&org.key, &path).await;
    let foreign = app.get(&stranger.key, &path).await;
    let unknown = app
        .get(&org.key, &recovery_path(&uuid::Uuid::now_v7().to_string()))
        .await;
    let malformed = app.get(&org.key, &recovery_path("not-an-id")).await;

    // Assert
    own.assert_status(StatusCode::OK);
    for (case, reply) in [
        ("foreign", &foreign),
        ("unknown", &unknown),
        ("malformed", &malformed),
    ] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{case}: {reply}");
        reply.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

async fn recovery_needs_the_write_scope(backend: Backend) {
    // Arrange
    let (app, org, endpoint) = app_with_endpoint(backend).await;
    let reader = app.create_key(org.id, &["webhooks:read"]).await;
    let answer = app
        .recover_accepted(&org.key, &endpoint, &last_minute(&json!({"dry_run": true})))
        .await;

    // Act
    let refused = app
        .recover(&reader, &endpoint, &last_minute(&json!({"dry_run": true})))
        .await;
    let read = app
        .get(&reader, &recovery_path(&string_at(&answer, "recovery_id")))
        .await;

    // Assert
    refused.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    read.assert_status(StatusCode::OK);
    assert_eq!(read.body["id"], answer["recovery_id"], "{read}");
    assert_eq!(
        app.recover_audits(org.id).await.len(),
        1,
        "only the accepted request is audited"
    );
}
