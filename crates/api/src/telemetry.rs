//! The API's spans, as `tracing` spans that `tracing-opentelemetry` exports when the server
//! installed its layer (docs/operations.md#tracing): one per request, with the OpenTelemetry
//! HTTP server conventions' attributes, joining the caller's trace when it sent a valid
//! `traceparent`; and one per publish (in `publisher.rs`). Without the layer these are the
//! request log line's span and nothing more.
//!
//! The same fields are the log's: a request's log lines carry `trace_id` whenever the request
//! is part of a trace (the caller's, or the one export started).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use herald_domain::trace::{TRACEPARENT, TraceParent};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The request's W3C `traceparent`, when it has exactly one and it is valid. Anything else
/// is ignored, never refused: a tracing header must not stop a publish (docs/api.md#trace-context).
pub(crate) fn publisher_trace(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => TraceParent::parse(value.to_str().ok()?),
        _ => None,
    }
}

/// The span of one request: a child of the caller's span when it sent a valid
/// `traceparent`. `http.route` is recorded once routing matched ([`record_route`]), the
/// status when the answer is ready ([`record_status`]).
pub(crate) fn request_span(request_id: &str, request: &Request) -> Span {
    let method = request.method();
    let span = tracing::info_span!(
        "request",
        request_id,
        "http.request.method" = %method,
        "url.path" = request.uri().path(),
        "http.route" = Empty,
        "http.response.status_code" = Empty,
        trace_id = Empty,
        "otel.name" = %method,
        "otel.kind" = "server",
        "otel.status_code" = Empty,
    );
    match publisher_trace(request.headers()) {
        Some(caller) => {
            // Fails only when no OpenTelemetry layer is installed: the trace id is still
            // logged, since the caller's trace goes on at the receiver whether or not Herald
            // exports.
            let parent = opentelemetry::Context::new()
                .with_remote_span_context(caller.remote_span_context());
            let _ = span.set_parent(parent);
            span.record("trace_id", caller.trace_id_hex());
        }
        None => {
            let context = span.context();
            let exported = context.span().span_context().clone();
            if exported.is_valid() {
                span.record("trace_id", exported.trace_id().to_string());
            }
        }
    }
    span
}

/// Middleware on the routes: names the current request's span after the route it matched,
/// `"{method} {route}"`, as the HTTP server conventions ask.
pub(crate) async fn record_route(matched: MatchedPath, request: Request, next: Next) -> Response {
    let span = Span::current();
    span.record("http.route", matched.as_str());
    // The exported span has started by now, so its name is set on it directly (a recorded
    // `otel.name` only reaches a span not yet started); with export off there is none.
    let context = span.context();
    let exported = context.span();
    if exported.span_context().is_valid() {
        exported.update_name(format!("{} {}", request.method(), matched.as_str()));
    }
    next.run(request).await
}

/// Records the answer's status on the request's span; a 5xx marks it failed (a 4xx is the
/// caller's error, not the server's).
pub(crate) fn record_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}
