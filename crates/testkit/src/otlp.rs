//! An in-process OTLP receiver: a plain-HTTP axum server taking `POST /v1/traces`
//! (`http/protobuf`, uncompressed), decoding each request with `opentelemetry-proto`'s prost
//! types and keeping every span it got, for tests to search by trace id and for the benchmark
//! to count.
//!
//! It runs on a thread of its own with its own Tokio runtime, so one receiver may outlive the
//! runtime of the test that started it (a process shares one export pipeline across tests).
//! The listener is bound before that thread starts: nobody waits for readiness.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::sync::oneshot;

/// One span as the receiver decoded it. Ids are lowercase hex, as in a `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service_name: String,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The span's name.
    pub name: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
    /// The parent's span id, 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// The attributes, each value rendered as text (strings as they are, numbers in decimal).
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The attribute `key`, rendered as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver. Dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    /// Where it listens.
    pub address: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Binds a free loopback port and starts serving on a thread of its own.
    pub fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(Arc::clone(&spans));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("otlp-receiver".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => return eprintln!("otlp receiver on {address}: {error}"),
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(error) = served {
                        eprintln!("otlp receiver on {address} stopped: {error}");
                    }
                });
            })?;
        Ok(Self {
            address,
            spans,
            _stop: stop,
        })
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The traces URL, as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` takes it.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .expect("the span list is never poisoned")
            .clone()
    }

    /// The spans received so far in trace `trace_id` (hex).
    pub fn spans_of_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|span| span.trace_id == trace_id)
            .collect()
    }

    /// Waits up to `within` until `done` holds for the spans of trace `trace_id`, and returns
    /// them (whether or not it came to hold, so the caller's assertion says what is missing).
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        within: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.spans_of_trace(trace_id);
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `POST /v1/traces`: keeps the spans and answers an empty `ExportTraceServiceResponse`.
async fn export(State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>, body: Bytes) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|pair| pair.key == "service.name")
            .map(|pair| text(pair.value.as_ref()))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default();
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    scope: scope.clone(),
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: attributes(span.attributes),
                });
            }
        }
    }
    spans
        .lock()
        .expect("the span list is never poisoned")
        .extend(received);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|pair| {
            let value = text(pair.value.as_ref());
            (pair.key, value)
        })
        .collect()
}

/// An attribute value as text: strings as they are, scalars in their usual form, anything
/// else in its debug form.
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
