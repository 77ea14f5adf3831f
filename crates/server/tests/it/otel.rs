//! OpenTelemetry export (docs/operations.md#tracing): with export on, a publish carrying a
//! `traceparent` is exported as the request's span and the publish's span in the caller's
//! trace, and every attempt of its delivery, the retry included, as a span of that trace whose
//! span id is the one its `traceparent` header named, with the attempt's attributes.

use std::time::Duration;

use herald_testkit::{ReceivedSpan, Receiver, TestCa};
use rand::Rng as _;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{
    ADMIN_TOKEN, Backend, delivering, header, otlp_receiver, string_at, wait_for_received,
};

backend_tests!(a_publish_and_each_attempt_are_exported_in_the_publishers_trace);

const EVENT: &str = "wallet.balance_low";

/// How long the export of a test's spans may take (the batch delay is 50 ms).
const EXPORTED_WITHIN: Duration = Duration::from_secs(15);

async fn a_publish_and_each_attempt_are_exported_in_the_publishers_trace(backend: Backend) {
    // Arrange: a trace of this test's own; the first attempt fails, the retry succeeds; the
    // endpoint URL carries a token in its query, which no span may show.
    let otlp = otlp_receiver();
    let mut random = rand::thread_rng();
    let trace_id = hex::encode(random.r#gen::<[u8; 16]>());
    let publisher_span = hex::encode(random.r#gen::<[u8; 8]>());
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca).sequence(&[500]).spawn().await;
    let app = delivering(backend, &ca)
        .retry_schedule(vec![Duration::from_millis(50)])
        .export_traces()
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(
            &org.key,
            &receiver.url("/sequence?token=secret-in-query"),
            &[EVENT],
        )
        .await;
    let endpoint_id = string_at(&endpoint, "id");

    // Act
    let reply = app
        .send(
            app.request(Method::POST, "/admin/v1/events")
                .bearer_auth(ADMIN_TOKEN)
                .header("traceparent", format!("00-{trace_id}-{publisher_span}-01"))
                .json(&json!({"org_id": org.id.to_string(), "type": EVENT, "data": {"n": 1}})),
        )
        .await;
    reply.assert_status(StatusCode::ACCEPTED);
    let event_id = string_at(&reply.body, "event_id");
    let received = wait_for_received(&receiver, 2).await;
    let spans = otlp
        .wait_for_trace(&trace_id, EXPORTED_WITHIN, |spans| {
            attempts(spans).len() == 2 && named(spans, "publish").is_some()
        })
        .await;

    // Assert: the request's span is the caller's child, with the HTTP server conventions.
    let request = spans
        .iter()
        .find(|span| span.attribute("http.route") == Some("/admin/v1/events"))
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(request.name, "POST /admin/v1/events");
    assert_eq!(request.parent_span_id, publisher_span);
    assert_eq!(request.service_name, "herald");
    assert_eq!(request.attribute("http.request.method"), Some("POST"));
    assert_eq!(request.attribute("url.path"), Some("/admin/v1/events"));
    assert_eq!(request.attribute("http.response.status_code"), Some("202"));
    // The publish's span is the request's child and names what it published.
    let publish = named(&spans, "publish").expect("waited for");
    assert_eq!(publish.parent_span_id, request.span_id);
    assert_eq!(publish.attribute("herald.event.count"), Some("1"));
    assert_eq!(
        publish.attribute("herald.event.ids"),
        Some(event_id.as_str())
    );
    assert_eq!(
        publish.attribute("herald.org.id"),
        Some(org.id.to_string().as_str())
    );
    // Each attempt is the span its `traceparent` header named, a child of the publisher's.
    let mut attempts = attempts(&spans);
    attempts.sort_by_key(|span| span.attribute("herald.delivery.attempt").map(str::to_owned));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for (number, (span, delivery)) in attempts.iter().zip(&received).enumerate() {
        let sent = header(delivery, "traceparent");
        assert_eq!(sent, format!("00-{trace_id}-{}-01", span.span_id));
        assert_eq!(span.parent_span_id, publisher_span);
        assert_eq!(span.name, "POST");
        assert_eq!(
            span.attribute("herald.delivery.attempt"),
            Some((number + 1).to_string().as_str())
        );
        assert_eq!(
            span.attribute("herald.endpoint.id"),
            Some(endpoint_id.as_str())
        );
        assert_eq!(span.attribute("herald.event.id"), Some(event_id.as_str()));
        assert_eq!(span.attribute("http.request.method"), Some("POST"));
        assert_eq!(span.attribute("server.address"), Some("127.0.0.1"));
        let url = span.attribute("url.full").expect("url.full");
        assert_eq!(url, receiver.url("/sequence"), "no query in url.full");
    }
    let outcomes: Vec<(Option<&str>, Option<&str>)> = attempts
        .iter()
        .map(|span| {
            (
                span.attribute("http.response.status_code"),
                span.attribute("herald.delivery.outcome"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [(Some("500"), Some("retry")), (Some("200"), Some("success"))]
    );
    assert_eq!(attempts[0].attribute("error.type"), Some("500"));
    assert_eq!(attempts[1].attribute("error.type"), None);
    // The claims that found the deliveries are exported too, as spans of their own.
    let claims: Vec<ReceivedSpan> = otlp
        .spans()
        .into_iter()
        .filter(|span| span.name == "claim deliveries")
        .collect();
    assert!(
        claims.iter().any(|span| span
            .attribute("herald.claim.rows")
            .is_some_and(|rows| rows != "0")),
        "{claims:#?}"
    );
    // The collector took every batch: the export failure counters are served, and zero.
    let metrics = app.metrics().await;
    for line in [
        "herald_trace_export_failures_total 0",
        "herald_trace_spans_not_exported_total 0",
    ] {
        assert!(metrics.lines().any(|served| served == line), "{metrics}");
    }
}

/// The attempt spans among `spans`.
fn attempts(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.scope == "herald-delivery")
        .collect()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|span| span.name == name)
}
