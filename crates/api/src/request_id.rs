//! Request ids: every request gets a ULID, returned in `X-Request-Id`, written into every
//! error envelope and carried by the request's log line. The id lives in a task-local, so
//! code deep in a handler (or an extractor's rejection) reads it without plumbing.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use ulid::Ulid;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id; outside a request, a fresh one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Ulid::new().to_string())
}

/// Middleware: assigns the id, runs the request inside its scope and span (the request's
/// trace span, `telemetry.rs`), sets the header and logs one line per request.
pub(crate) async fn assign(request: Request, next: Next) -> Response {
    let request_id = Ulid::new().to_string();
    let span = crate::telemetry::request_span(&request_id, &request);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    crate::telemetry::record_status(&span, status);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
    });
    response.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&request_id).expect("a ulid is a valid header value"),
    );
    response
}
