//! Ordered delivery, sequence numbers and the catch-up feed (CONTRACT.md section 12): one
//! endpoint's deliveries of one ordering key are attempted one at a time in publish order, a
//! dead head releases its key, other keys go in parallel; every delivery carries its
//! endpoint's next sequence number, without gaps; and `GET /v1/webhooks/{id}/events` returns
//! the events after a sequence with the bodies the receiver got.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald_testkit::{Receiver, TestCa};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, TestOrg, delivering, endpoint_path, header, received_json, string_at,
    timestamp_at, wait_for_received,
};

backend_tests!(
    one_key_arrives_in_publish_order_through_failures_while_keys_interleave,
    a_long_run_of_one_key_stops_at_a_failure_and_goes_on_in_order,
    a_dead_head_releases_its_key,
    sequences_have_no_gaps_under_concurrent_publishers,
    the_catch_up_feed_returns_later_events_as_delivered,
    the_catch_up_feed_checks_its_bounds_and_its_organization,
    ordering_keys_are_validated,
);

const EVENT: &str = "wallet.balance_low";

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A delivering app with one organization and one endpoint of [`EVENT`], whose receiver
/// answers its requests with `statuses` in turn; failures are retried every 20 ms, `retries`
/// times.
struct Sequenced {
    /// Signs the receiver's and the app's certificates; kept for as long as they run.
    _ca: TestCa,
    receiver: Receiver,
    app: TestApp,
    org: TestOrg,
    endpoint: Value,
}

async fn sequenced(backend: Backend, statuses: &[u16], retries: usize) -> Sequenced {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(statuses).spawn().await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![millis(20); retries])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    Sequenced {
        _ca: ca,
        receiver,
        app,
        org,
        endpoint,
    }
}

/// Publishes `events` as one batch; returns their ids in order.
async fn publish_batch(app: &TestApp, events: Vec<Value>) -> Vec<String> {
    let reply = app
        .admin_post("/admin/v1/events/batch", &json!({"events": events}))
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    reply.body["events"]
        .as_array()
        .expect("one answer per event")
        .iter()
        .map(|answer| string_at(answer, "event_id"))
        .collect()
}

/// Every entry of an endpoint's catch-up feed, page by page.
async fn whole_feed(app: &TestApp, key: &str, endpoint: &Value) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let path = format!(
            "{}/events?limit=200&after_sequence={after}",
            endpoint_path(endpoint)
        );
        let reply = app.get(key, &path).await;
        reply.assert_status(StatusCode::OK);
        entries.extend(reply.body["data"].as_array().cloned().unwrap_or_default());
        match reply.body["meta"]["next_after_sequence"].as_u64() {
            Some(next) => after = next,
            None => return entries,
        }
    }
}

async fn one_key_arrives_in_publish_order_through_failures_while_keys_interleave(backend: Backend) {
    // Arrange: 10 keys × 200 events to one endpoint whose receiver answers a seeded random
    // 30 % of requests with 500 (and a few with 429 and Retry-After: 1), retried quickly.
    const KEYS: usize = 10;
    const PER_KEY: usize = 200;
    let mut rng = StdRng::seed_from_u64(7);
    let statuses: Vec<u16> = (0..KEYS * PER_KEY * 3)
        .map(|_| match rng.gen_range(0..100) {
            0..2 => 429,
            2..30 => 500,
            _ => 200,
        })
        .collect();
    let Sequenced {
        receiver,
        app,
        org,
        endpoint,
        ..
    } = sequenced(backend, &statuses, 30).await;

    // Act: publish round-robin over the keys, in batches of 50.
    let events: Vec<Value> = (0..KEYS * PER_KEY)
        .map(|n| {
            json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": n},
                   "ordering_key": format!("key-{}", n % KEYS)})
        })
        .collect();
    let mut published = Vec::new();
    for batch in events.chunks(50) {
        published.extend(publish_batch(&app, batch.to_vec()).await);
    }

    // Assert: every event is delivered (none dead).
    let total = KEYS * PER_KEY;
    crate::harness::wait_within(
        Duration::from_secs(120),
        "every event delivered",
        || async {
            let feed = whole_feed(&app, &org.key, &endpoint).await;
            let delivered = feed
                .iter()
                .filter(|entry| entry["status"] == json!("delivered"));
            (delivered.count() == total).then_some(())
        },
    )
    .await;
    // Per key, the requests follow publish order: each is the same event again (a retry) or
    // a later one, so no event was attempted before the one published before it succeeded,
    // and no two of a key were in flight at once.
    let received = receiver.received();
    let position: HashMap<&String, usize> = published.iter().zip(0..).collect();
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for request in &received {
        let key = header(request, "x-amcore-ordering-key");
        by_key
            .entry(key)
            .or_default()
            .push(position[&header(request, "x-amcore-event-id")]);
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, order) in &by_key {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            order, &sorted,
            "key {key} was attempted out of publish order"
        );
        let mut distinct = sorted;
        distinct.dedup();
        assert_eq!(distinct.len(), PER_KEY, "key {key}");
    }
    // Keys interleave: arrivals switch between keys far more often than once per key.
    let keys_in_arrival: Vec<String> = received
        .iter()
        .map(|request| header(request, "x-amcore-ordering-key"))
        .collect();
    let switches = keys_in_arrival
        .windows(2)
        .filter(|pair| pair[0] != pair[1])
        .count();
    assert!(
        switches > 3 * KEYS,
        "keys went in parallel ({switches} switches)"
    );
    let records = app.endpoint_deliveries(&org.key, &endpoint).await;
    assert!(
        records
            .iter()
            .all(|record| record["ordering_key"].is_string())
    );
    // The 429s came with `Retry-After: 1`, which outweighs the 20 ms schedule: each was
    // scheduled a second on, and its next attempt waited for that (the rest of its key
    // waited behind it, as the order above shows).
    let busy = app
        .deliveries(
            &org.key,
            &format!(
                "endpoint_id={}&http_status_min=429&http_status_max=429&limit=200",
                endpoint["id"].as_str().expect("an endpoint id")
            ),
        )
        .await;
    assert!(!busy.is_empty(), "the receiver answered some requests 429");
    for record in &busy {
        let due = timestamp_at(record, "next_attempt_at").as_micros();
        let wait = due - timestamp_at(record, "occurred_at").as_micros();
        assert!(
            wait >= 999_000,
            "Retry-After: 1 should win over a 20 ms delay, got {wait} µs: {record}"
        );
        let attempts = app
            .deliveries(
                &org.key,
                &format!("event_id={}&limit=200", string_at(record, "event_id")),
            )
            .await;
        let next_number = record["attempt"].as_u64().expect("an attempt number") + 1;
        let next = attempts
            .iter()
            .find(|attempt| attempt["attempt"].as_u64() == Some(next_number))
            .unwrap_or_else(|| panic!("the attempt after a 429 was made: {record}"));
        assert!(
            timestamp_at(next, "occurred_at").as_micros() >= due,
            "the attempt after a 429 waited for its Retry-After: {next}"
        );
    }
}

/// A run of one key long enough that its worker claims the next successors ahead, while the
/// last ones are sent (`worker/job.rs`), stops at a failure in the middle of a claimed batch
/// with another claim ahead of it: what both claims held is given back, so the key goes on
/// in order as soon as the failed event's retry succeeds, not once their leases lapse (a
/// request timeout's multiple, minutes here).
async fn a_long_run_of_one_key_stops_at_a_failure_and_goes_on_in_order(backend: Backend) {
    // Arrange: 200 events of one key, published at once. The run claims events 1–64, then
    // ahead 65–128 and 129–192: a claim ahead is made at the latest once the last of a claim
    // is all that is left, whatever the run's pace, so event 127, the last but one of the
    // second claim, fails with the third outstanding. Its retry's run claims 128–191 and
    // ahead 192–199; event 190 fails with that claim outstanding. Request 127 is event 127;
    // request 191 is then event 190.
    const EVENTS: usize = 200;
    let mut statuses = vec![200_u16; EVENTS + 2];
    statuses[127] = 500;
    statuses[191] = 500;
    let Sequenced {
        receiver,
        app,
        org,
        endpoint,
        ..
    } = sequenced(backend, &statuses, 5).await;

    // Act
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| {
            json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": n},
                   "ordering_key": "the-key"})
        })
        .collect();
    let published = publish_batch(&app, events).await;

    // Assert: every event delivered well inside a lease, each request the event before it
    // again (the two retries) or the next one.
    crate::harness::wait_within(Duration::from_secs(30), "every event delivered", || async {
        let feed = whole_feed(&app, &org.key, &endpoint).await;
        let delivered = feed
            .iter()
            .filter(|entry| entry["status"] == json!("delivered"));
        (delivered.count() == EVENTS).then_some(())
    })
    .await;
    let position: HashMap<&String, usize> = published.iter().zip(0..).collect();
    let order: Vec<usize> = receiver
        .received()
        .iter()
        .map(|request| position[&header(request, "x-amcore-event-id")])
        .collect();
    let expected: Vec<usize> = (0..EVENTS)
        .flat_map(|event| match event {
            127 | 190 => vec![event, event],
            _ => vec![event],
        })
        .collect();
    assert_eq!(
        order, expected,
        "the key's requests, in the order they came"
    );
}

async fn a_dead_head_releases_its_key(backend: Backend) {
    // Arrange: two attempts per delivery; the receiver fails the first two requests.
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(&[500, 500]).spawn().await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![millis(100)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    let event = |n: u32| json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": n}, "ordering_key": "k"});

    // Act
    let ids = publish_batch(&app, vec![event(1), event(2)]).await;

    // Assert: the head is tried twice and dies; then the second goes, once, and succeeds.
    let received = wait_for_received(&receiver, 3).await;
    let order: Vec<String> = received
        .iter()
        .map(|request| header(request, "x-amcore-event-id"))
        .collect();
    assert_eq!(order, [ids[0].clone(), ids[0].clone(), ids[1].clone()]);
    let sequences: Vec<String> = received
        .iter()
        .map(|request| header(request, "x-amcore-sequence"))
        .collect();
    assert_eq!(sequences, ["1", "1", "2"], "retries keep their sequence");
    app.wait_for_empty_queue().await;
    assert_eq!(receiver.received().len(), 3);
}

async fn sequences_have_no_gaps_under_concurrent_publishers(backend: Backend) {
    // Arrange: two endpoints subscribed to the type.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let first = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &[EVENT])
        .await;
    let second = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &[EVENT])
        .await;

    // Act: 8 publishers at once, 20 single publishes each, some keyed.
    let publishers = (0..8).map(|publisher| {
        let app = &app;
        async move {
            for n in 0..20 {
                let mut body = json!({"org_id": org.id.to_string(), "type": EVENT,
                                      "data": {"publisher": publisher, "n": n}});
                if n % 3 == 0 {
                    body["ordering_key"] = json!(format!("p{publisher}"));
                }
                app.admin_post("/admin/v1/events", &body)
                    .await
                    .assert_status(StatusCode::ACCEPTED);
            }
        }
    });
    futures::future::join_all(publishers).await;

    // Assert: each endpoint received 1..=160, once each.
    let received = wait_for_received(&receiver, 320).await;
    app.wait_for_empty_queue().await;
    for endpoint in [&first, &second] {
        let records = app.endpoint_deliveries(&org.key, endpoint).await;
        let mut sequences: Vec<u64> = records
            .iter()
            .map(|record| record["sequence"].as_u64().expect("a sequence"))
            .collect();
        sequences.sort_unstable();
        assert_eq!(sequences, (1..=160).collect::<Vec<u64>>(), "{endpoint}");
    }
    let mut headers: Vec<u64> = received
        .iter()
        .map(|request| {
            header(request, "x-amcore-sequence")
                .parse()
                .expect("a number")
        })
        .collect();
    headers.sort_unstable();
    let expected: Vec<u64> = (1..=160).flat_map(|n| [n, n]).collect();
    assert_eq!(headers, expected, "each number once per endpoint");
}

async fn the_catch_up_feed_returns_later_events_as_delivered(backend: Backend) {
    // Arrange: five events delivered.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/ok"), &[EVENT])
        .await;
    // Sent as text: bytes a re-serialization would change (a number past f64's precision, an
    // exponent, an escaped emoji) must come back from the feed as the receiver got them.
    let data = r#"{"big": 123456789012345678901234567890, "e": 1E2, "note": "\ud83d\ude00"}"#;
    for _ in 0..5 {
        let body = format!(
            r#"{{"org_id": "{}", "type": "{EVENT}", "data": {data}}}"#,
            org.id
        );
        let request = app
            .request(reqwest::Method::POST, "/admin/v1/events")
            .bearer_auth(crate::harness::ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body);
        app.send(request).await.assert_status(StatusCode::ACCEPTED);
    }
    let received = wait_for_received(&receiver, 5).await;
    app.wait_for_empty_queue().await;
    let bodies: HashMap<String, Value> = received
        .iter()
        .map(|request| (header(request, "x-amcore-sequence"), received_json(request)))
        .collect();
    let feed = |query: &str| {
        let path = format!("{}/events?{query}", endpoint_path(&endpoint));
        let app = &app;
        let key = org.key.clone();
        async move {
            let reply = app.get(&key, &path).await;
            reply.assert_status(StatusCode::OK);
            reply.body
        }
    };

    // Act
    let after_two = feed("after_sequence=2").await;
    let page_one = feed("limit=2").await;
    let page_two = feed("limit=2&after_sequence=2").await;
    let page_three = feed("limit=2&after_sequence=4").await;
    let caught_up = feed("after_sequence=5").await;

    // Assert: the feed's text holds each delivered body byte for byte.
    let whole = app
        .get(&org.key, &format!("{}/events", endpoint_path(&endpoint)))
        .await;
    for request in &received {
        let delivered = std::str::from_utf8(&request.body).expect("UTF-8");
        assert!(
            whole.text.contains(delivered),
            "the feed shows the body as delivered: {delivered} not in {}",
            whole.text
        );
    }
    let entries = after_two["data"].as_array().expect("data");
    let sequences: Vec<u64> = entries
        .iter()
        .map(|entry| entry["sequence"].as_u64().expect("n"))
        .collect();
    assert_eq!(sequences, [3, 4, 5]);
    for entry in entries {
        assert_eq!(entry["status"], json!("delivered"), "{entry}");
        assert_eq!(entry["type"], json!(EVENT));
        assert_eq!(entry["ordering_key"], Value::Null);
        let sequence = entry["sequence"].to_string();
        assert_eq!(entry["body"], bodies[&sequence], "the body as delivered");
        assert!(
            entry["body"]["data"]["big"].is_f64(),
            "parsed here, but sent as text"
        );
        assert_eq!(entry["event_id"], entry["body"]["id"]);
    }
    assert_eq!(
        after_two["meta"],
        json!({"limit": 50, "next_after_sequence": null})
    );
    assert_eq!(page_one["meta"]["next_after_sequence"], json!(2));
    assert_eq!(page_two["meta"]["next_after_sequence"], json!(4));
    assert_eq!(page_three["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(page_three["meta"]["next_after_sequence"], Value::Null);
    let exactly_full = feed("limit=5").await;
    assert_eq!(
        exactly_full["meta"]["next_after_sequence"],
        Value::Null,
        "a full page that reaches the end says the receiver is caught up"
    );
    assert_eq!(caught_up["data"], json!([]));
}

async fn the_catch_up_feed_checks_its_bounds_and_its_organization(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let other = app.org_with_key().await;
    let endpoint = app
        .create_endpoint(
            &org.key,
            &json!({"url": "https://example.com/h", "events": [EVENT]}),
        )
        .await;
    let path = format!("{}/events", endpoint_path(&endpoint));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("after_sequence=-1", "after_sequence"),
        ("after_sequence=1.5", "after_sequence"),
        ("after_sequence=9223372036854775808", "after_sequence"),
        ("cursor=abc", "cursor"),
    ] {
        app.get(&org.key, &format!("{path}?{query}"))
            .await
            .assert_validation(field);
    }
    app.get(&org.key, &format!("{path}?limit=200"))
        .await
        .assert_status(StatusCode::OK);
    app.get(&other.key, &path)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.get(
        &org.key,
        "/v1/webhooks/00000000-0000-7000-8000-000000000000/events",
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn ordering_keys_are_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    for bad in [
        json!(""),
        json!("k".repeat(129)),
        json!("line\nbreak"),
        json!(7),
    ] {
        let reply = app
            .admin_post(
                "/admin/v1/events",
                &json!({"org_id": org.id.to_string(), "type": EVENT, "data": {}, "ordering_key": bad}),
            )
            .await;
        reply.assert_validation("ordering_key");
    }
    let batch = app
        .admin_post(
            "/admin/v1/events/batch",
            &json!({"events": [
                {"org_id": org.id.to_string(), "type": EVENT, "data": {}, "ordering_key": "fine"},
                {"org_id": org.id.to_string(), "type": EVENT, "data": {}, "ordering_key": ""},
            ]}),
        )
        .await;
    batch.assert_validation("events[1].ordering_key");
    let good = app
        .admin_post(
            "/admin/v1/events",
            &json!({"org_id": org.id.to_string(), "type": EVENT, "data": {}, "ordering_key": "k".repeat(128)}),
        )
        .await;
    good.assert_status(StatusCode::ACCEPTED);
}
