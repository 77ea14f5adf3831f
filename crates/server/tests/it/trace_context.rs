//! Trace context (docs/api.md#trace-context): the publisher's `traceparent` is kept with the
//! event and every attempt sends one in that trace with a span id of its own; an event
//! published without one (or with an invalid one) is a trace of its own.

use std::time::Duration;

use herald_testkit::{Received, Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, Backend, Subscribed, TestApp, delivering, header, string_at, subscribed,
    wait_for_received,
};

backend_tests!(
    attempts_join_the_publishers_trace_with_a_span_each,
    a_batch_shares_the_requests_trace,
    an_event_without_a_traceparent_is_a_trace_of_its_own,
    an_invalid_traceparent_is_ignored,
);

const EVENT: &str = "wallet.balance_low";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

/// The parts of a `traceparent`: trace id, span id, flags; panics unless it is a valid
/// version `00` header.
fn parts(traceparent: &str) -> (String, String, String) {
    let pieces: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(pieces.len(), 4, "{traceparent}");
    assert_eq!(pieces[0], "00", "{traceparent}");
    let lower_hex = |piece: &str, length: usize| {
        piece.len() == length
            && piece
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let not_zero = |piece: &str| piece.bytes().any(|byte| byte != b'0');
    assert!(
        lower_hex(pieces[1], 32) && not_zero(pieces[1]),
        "trace id of {traceparent}"
    );
    assert!(
        lower_hex(pieces[2], 16) && not_zero(pieces[2]),
        "span id of {traceparent}"
    );
    assert!(lower_hex(pieces[3], 2), "flags of {traceparent}");
    (
        pieces[1].to_owned(),
        pieces[2].to_owned(),
        pieces[3].to_owned(),
    )
}

fn traceparent_of(received: &Received) -> (String, String, String) {
    parts(&header(received, "traceparent"))
}

/// `POST /admin/v1/events` (or `/batch`) with `traceparent` when given.
async fn publish_traced(app: &TestApp, path: &str, body: &Value, traceparents: &[&str]) -> Value {
    let mut request = app
        .request(Method::POST, path)
        .bearer_auth(ADMIN_TOKEN)
        .json(body);
    // Each value is a header of its own: reqwest appends.
    for traceparent in traceparents {
        request = request.header("traceparent", *traceparent);
    }
    let reply = app.send(request).await;
    reply.assert_status(StatusCode::ACCEPTED);
    reply.body
}

fn event_body(org: &str, n: u32) -> Value {
    json!({"org_id": org, "type": EVENT, "data": {"n": n}})
}

async fn attempts_join_the_publishers_trace_with_a_span_each(backend: Backend) {
    // Arrange: the first attempt fails, the retry succeeds.
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(&[500]).spawn().await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_millis(50)])
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/sequence"), &[EVENT])
        .await;
    let publisher = format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01");

    // Act
    publish_traced(
        &app,
        "/admin/v1/events",
        &event_body(&org.id.to_string(), 1),
        &[&publisher],
    )
    .await;

    // Assert: both attempts are in the publisher's trace, each its own span, with the
    // publisher's flags; the feed records what was sent.
    let received = wait_for_received(&receiver, 2).await;
    let (first_trace, first_span, first_flags) = traceparent_of(&received[0]);
    let (second_trace, second_span, second_flags) = traceparent_of(&received[1]);
    assert_eq!(header(&received[0], "x-amcore-delivery-attempt"), "1");
    assert_eq!(header(&received[1], "x-amcore-delivery-attempt"), "2");
    assert_eq!(first_trace, TRACE_ID);
    assert_eq!(second_trace, TRACE_ID);
    assert_eq!((first_flags.as_str(), second_flags.as_str()), ("01", "01"));
    assert_ne!(first_span, second_span);
    assert_ne!(first_span, PUBLISHER_SPAN);
    let records = app
        .wait_for_deliveries(&org.key, &endpoint, "two records", |records| {
            records.len() == 2
        })
        .await;
    let sent: Vec<String> = records
        .iter()
        .rev()
        .map(|record| string_at(&record["request_headers"], "traceparent"))
        .collect();
    assert_eq!(
        sent,
        [
            header(&received[0], "traceparent"),
            header(&received[1], "traceparent")
        ]
    );
    // The span id is the last 16 hex digits of the delivery record's id.
    for record in &records {
        let id = string_at(record, "id").replace('-', "");
        let (_, span, _) = parts(&string_at(&record["request_headers"], "traceparent"));
        assert_eq!(span, id[16..], "{record}");
    }
}

async fn a_batch_shares_the_requests_trace(backend: Backend) {
    // Arrange
    let Subscribed { receiver, app, org } = subscribed(backend).await;
    let org_id = org.id.to_string();

    // Act
    publish_traced(
        &app,
        "/admin/v1/events/batch",
        &json!({"events": [event_body(&org_id, 1), event_body(&org_id, 2)]}),
        &[&format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-00")],
    )
    .await;

    // Assert
    let received = wait_for_received(&receiver, 2).await;
    for delivery in &received {
        let (trace, _, flags) = traceparent_of(delivery);
        assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "00"));
    }
}

async fn an_event_without_a_traceparent_is_a_trace_of_its_own(backend: Backend) {
    // Arrange: two endpoints, so each event has two deliveries.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    for path in ["/ok", "/ok?second"] {
        app.create_endpoint_at(&org.key, &receiver.url(path), &[EVENT])
            .await;
    }

    // Act
    let first = app.publish(org.id, EVENT, &json!({"n": 1})).await;
    let second = app.publish(org.id, EVENT, &json!({"n": 2})).await;

    // Assert: one trace per event, shared by its deliveries, sampled so a receiver that
    // follows its parent records it.
    let received = wait_for_received(&receiver, 4).await;
    for published in [&first, &second] {
        let event_id = string_at(published, "event_id");
        let traces: Vec<(String, String, String)> = received
            .iter()
            .filter(|delivery| header(delivery, "x-amcore-event-id") == event_id)
            .map(traceparent_of)
            .collect();
        assert_eq!(traces.len(), 2, "{event_id}");
        assert_eq!(traces[0].0, traces[1].0, "{event_id}");
        assert_ne!(traces[0].1, traces[1].1, "{event_id}");
        assert_eq!(traces[0].2, "01");
        let uuid = event_id.trim_start_matches("evt_").replace('-', "");
        assert_eq!(traces[0].0, uuid, "the trace id is the event id");
    }
}

async fn an_invalid_traceparent_is_ignored(backend: Backend) {
    // Arrange
    let Subscribed { receiver, app, org } = subscribed(backend).await;
    let org_id = org.id.to_string();
    let valid = format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01");
    let invalid: [Vec<String>; 9] = [
        vec![format!("00-{}-{PUBLISHER_SPAN}-01", "0".repeat(32))],
        vec![format!("00-{TRACE_ID}-{}-01", "0".repeat(16))],
        vec![format!(
            "00-{}-{PUBLISHER_SPAN}-01",
            TRACE_ID.to_uppercase()
        )],
        vec![format!("ff-{TRACE_ID}-{PUBLISHER_SPAN}-01")],
        vec![format!("00-{TRACE_ID}-{PUBLISHER_SPAN}")],
        vec!["not a trace".to_owned()],
        // A valid header followed by 6 KB more, and the header sent twice (which one is
        // meant is unknowable, so neither is).
        vec![format!("{valid}-{}", "a".repeat(6_000))],
        vec![valid.clone(), valid.clone()],
        vec![valid.clone(), "not a trace".to_owned()],
    ];

    // Act: each publish is accepted.
    let mut published = Vec::new();
    for (n, traceparents) in (1..).zip(&invalid) {
        let body = event_body(&org_id, n);
        let traceparents: Vec<&str> = traceparents.iter().map(String::as_str).collect();
        published.push(publish_traced(&app, "/admin/v1/events", &body, &traceparents).await);
    }

    // Assert: each event is a trace of its own, never the invalid header's.
    let received = wait_for_received(&receiver, invalid.len()).await;
    for delivery in &received {
        let (trace, _, _) = traceparent_of(delivery);
        let event_id = header(delivery, "x-amcore-event-id");
        assert_ne!(trace, TRACE_ID);
        assert_eq!(trace, event_id.trim_start_matches("evt_").replace('-', ""));
    }
    assert_eq!(published.len(), invalid.len());
}
