//! OpenTelemetry trace export (docs/operations.md#tracing): the `OTEL_*` settings, the OTLP
//! pipeline (exporter, batch span processor, provider) and the two ways spans reach it: the
//! `tracing-opentelemetry` layer, which exports the API's `tracing` spans (request, publish),
//! and the [`DeliveryTracer`], which the worker uses for its attempt and claim spans.
//!
//! Export is off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set. Off means no pipeline, no layer and no tracer: the worker's
//! `WorkerConfig::tracer` stays `None`, so a delivery does no tracing work at all.
//!
//! The pipeline belongs to the process, not to one `run`: the `tracing` layer lives in the
//! process's subscriber, which `herald`'s `main` installs before it starts serving, and which
//! flushes and shuts the pipeline down ([`Telemetry::shutdown`]) after `run` returned.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald_delivery::DeliveryTracer;
use herald_delivery::telemetry::AttemptIds;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData,
    SpanExporter as ExportsSpans,
};
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing::{Level, Metadata};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "herald";

/// The instrumentation scope of the spans the `tracing` layer exports.
const API_SCOPE: &str = "herald-api";

/// What to export and where; [`TelemetryConfig::from_env`] reads it from the `OTEL_*`
/// variables. The OTLP exporter itself still reads `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (and their `_TRACES_` forms), the SDK `OTEL_BSP_*`,
/// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_RESOURCE_ATTRIBUTES` and the span
/// limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The full URL spans are sent to (for http/protobuf, ending in `/v1/traces`); `None`
    /// turns export off.
    pub traces_endpoint: Option<String>,
    /// The OTLP transport.
    pub protocol: OtlpProtocol,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The batch processor's delay between exports, when not the SDK's (5 s, or
    /// `OTEL_BSP_SCHEDULE_DELAY`); tests shorten it.
    pub batch_delay: Option<Duration>,
}

/// The OTLP transports Herald speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`, the specification's default.
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

/// A running export pipeline. Dropping it without [`Telemetry::shutdown`] may lose the spans
/// of the last batch.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    metrics: ExportMetrics,
}

impl TelemetryConfig {
    /// Reads the `OTEL_*` variables of the process (see [`TelemetryConfig::from_lookup`]).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// Reads the settings through `lookup` (a variable's non-empty value): export is on when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (a base: `/v1/traces` is appended for http/protobuf) is set, unless
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The protocol comes from
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let protocol = match lookup("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| lookup("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not {other:?} \
                 (http/json is not supported)"
            ),
        };
        // The specification reads booleans and enumerations without case: `TRUE` and `None`
        // turn export off as surely as `true` and `none` (an operator silencing a misbehaving
        // collector must not find it still fed).
        let disabled = lookup("OTEL_SDK_DISABLED")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
            || lookup("OTEL_TRACES_EXPORTER")
                .is_some_and(|value| value.trim().eq_ignore_ascii_case("none"));
        let traces_endpoint = match lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            _ if disabled => None,
            Some(endpoint) => Some(endpoint),
            None => lookup("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                OtlpProtocol::Grpc => base,
            }),
        };
        // The http/protobuf exporter's client has no TLS: an `https://` (or scheme-less)
        // endpoint would build, then fail every export without a word. Refused here, as the
        // gRPC exporter refuses `https://` when it is built. The message does not repeat the
        // URL, which may carry credentials.
        if protocol == OtlpProtocol::HttpProtobuf
            && let Some(endpoint) = &traces_endpoint
            && !endpoint
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
        {
            bail!(
                "OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) must be an http:// URL with \
                 http/protobuf: Herald's exporter has no TLS; send to a collector nearby, which \
                 forwards over TLS"
            );
        }
        let service_name = lookup("OTEL_SERVICE_NAME")
            .or_else(|| {
                // Values are percent-encoded (the specification's W3C Baggage octet rule).
                lookup("OTEL_RESOURCE_ATTRIBUTES")?
                    .split(',')
                    .find_map(|pair| pair.trim().strip_prefix("service.name="))
                    .map(|name| {
                        percent_decode_str(name.trim())
                            .decode_utf8_lossy()
                            .into_owned()
                    })
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Ok(Self {
            traces_endpoint,
            protocol,
            service_name,
            batch_delay: None,
        })
    }
}

impl Telemetry {
    /// Starts the pipeline `config` describes, or `None` when export is off. With gRPC it
    /// must be called within a Tokio runtime, whose tasks carry the connection.
    pub fn start(config: &TelemetryConfig) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &config.traces_endpoint else {
            return Ok(None);
        };
        let exporter = match config.protocol {
            OtlpProtocol::HttpProtobuf => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build(),
            OtlpProtocol::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build(),
        }
        // Not naming the endpoint: its URL may carry credentials.
        .context("building the OTLP exporter for OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(delay) = config.batch_delay {
            batch = batch.with_scheduled_delay(delay);
        }
        let metrics = ExportMetrics::default();
        let exporter = CountingExporter::new(exporter, metrics.clone());
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // Attempt spans take the ids their `traceparent` header names.
            .with_id_generator(AttemptIds::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Self { provider, metrics }))
    }

    /// The exporter's failure counters, for `/metrics`.
    pub fn export_metrics(&self) -> ExportMetrics {
        self.metrics.clone()
    }

    /// The `tracing` layer that exports the API's spans (request, publish). Only Herald's own
    /// spans become OpenTelemetry spans; events of level `info` and above inside them become
    /// span events.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(API_SCOPE))
            .with_filter(FilterFn::new(exported))
    }

    /// The tracer of the delivery worker's attempt and claim spans.
    pub fn delivery_tracer(&self) -> DeliveryTracer {
        DeliveryTracer::new(&self.provider)
    }

    /// Exports every span ended so far, waiting for the collector's answer.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.provider
            .force_flush()
            .context("flushing spans to the collector")
    }

    /// Exports what is left and stops the pipeline: the last step of a graceful shutdown.
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.provider
            .shutdown()
            .context("exporting the last spans to the collector")
    }
}

/// What the collector did not take: failed export calls and the spans they carried. The SDK
/// keeps its own diagnostics to itself (its internal logs are off), so without these a
/// collector that is down or refusing would lose every span silently.
#[derive(Debug, Clone, Default)]
pub struct ExportMetrics {
    failed_exports: Counter,
    spans_not_exported: Counter,
}

impl ExportMetrics {
    /// Registers the counters: `herald_trace_export_failures_total` and
    /// `herald_trace_spans_not_exported_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_trace_export_failures",
            "Calls that failed to export a batch of spans to the OTLP collector",
            self.failed_exports.clone(),
        );
        registry.register(
            "herald_trace_spans_not_exported",
            "Spans in batches the OTLP collector did not take",
            self.spans_not_exported.clone(),
        );
    }

    fn failed(&self, spans: usize) {
        self.failed_exports.inc();
        self.spans_not_exported.inc_by(spans as u64);
    }
}

/// How often, at most, a failing export is logged: a collector that is down fails every
/// batch (every 5 s by default, more under load), and one line a minute says enough.
const EXPORT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The OTLP exporter, counting what it fails to export and warning about it now and then.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    metrics: ExportMetrics,
    last_warning: Mutex<Option<Instant>>,
}

impl<E> CountingExporter<E> {
    fn new(inner: E, metrics: ExportMetrics) -> Self {
        Self {
            inner,
            metrics,
            last_warning: Mutex::new(None),
        }
    }

    fn failed(&self, spans: usize, error: &OTelSdkError) {
        self.metrics.failed(spans);
        let now = Instant::now();
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|last| now.duration_since(last) < EXPORT_WARNING_INTERVAL) {
            return;
        }
        *last = Some(now);
        // The SDK's message may quote the collector's URL, which may carry credentials.
        let error = without_credentials(&error.to_string());
        tracing::warn!(
            spans,
            %error,
            "exporting spans to the OTLP collector failed; they are dropped \
             (herald_trace_export_failures_total counts every failure)"
        );
    }
}

impl<E: ExportsSpans> ExportsSpans for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.failed(spans, error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `text` with the user information of every URL in it (`scheme://user:secret@host`) cut out.
fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_len = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ')')
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_len].rfind('@') {
            out.push_str("<redacted>@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Which `tracing` callsites the OpenTelemetry layer sees: the API's spans, and events of
/// level `info` and above (which join the span they occur in, if it is exported). Delivery
/// spans are built by [`DeliveryTracer`], not here, and the delivery side's debug `attempt`
/// span exists only for the log.
fn exported(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    if metadata.is_span() {
        target.starts_with("herald_api")
    } else {
        target.starts_with("herald") && *metadata.level() <= Level::INFO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(variables: &[(&str, &str)], expected: Option<(&str, OtlpProtocol, &str)>) {
        let config = TelemetryConfig::from_lookup(|name| {
            variables
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .expect("valid settings");
        let actual = config
            .traces_endpoint
            .as_deref()
            .map(|endpoint| (endpoint, config.protocol, config.service_name.as_str()));
        assert_eq!(actual, expected, "{variables:?}");
    }

    #[test]
    fn settings_follow_the_otel_variables() {
        use OtlpProtocol::{Grpc, HttpProtobuf};
        check(&[], None);
        check(&[("OTEL_SERVICE_NAME", "x")], None);
        check(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
            Some(("http://collector:4318/v1/traces", HttpProtobuf, "herald")),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://other:4318/spans",
                ),
            ],
            Some(("http://other:4318/spans", HttpProtobuf, "herald")),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_SERVICE_NAME", "herald-eu"),
            ],
            Some(("http://collector:4317", Grpc, "herald-eu")),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod, service.name=hooks",
                ),
            ],
            Some(("http://collector:4317", Grpc, "hooks")),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=herald%20eu%2Cwest",
                ),
            ],
            Some((
                "http://collector:4318/v1/traces",
                HttpProtobuf,
                "herald eu,west",
            )),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            None,
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            None,
        );
        // Booleans and enumerations are read without case (the specification's rule).
        for (variable, value) in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_SDK_DISABLED", "True"),
            ("OTEL_TRACES_EXPORTER", "NONE"),
            ("OTEL_TRACES_EXPORTER", "None"),
        ] {
            check(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                    (variable, value),
                ],
                None,
            );
        }
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "false"),
            ],
            Some(("http://collector:4318/v1/traces", HttpProtobuf, "herald")),
        );
    }

    /// A collector that takes connections and never answers (a hung one, or a black hole a
    /// firewall made): ending spans costs the same as with a healthy one, for both
    /// transports, and shutting down is bounded.
    #[test]
    fn a_collector_that_never_answers_slows_neither_spans_nor_shutdown() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        use std::time::Instant;

        let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = hung.local_addr().expect("local address");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in hung.incoming() {
                held.push(stream);
            }
        });
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        for (protocol, endpoint) in [
            (
                OtlpProtocol::HttpProtobuf,
                format!("http://{address}/v1/traces"),
            ),
            (OtlpProtocol::Grpc, format!("http://{address}")),
        ] {
            // The gRPC exporter's connection runs on the runtime, as `herald serve` builds it.
            let _runtime = runtime.enter();
            let telemetry = Telemetry::start(&TelemetryConfig {
                traces_endpoint: Some(endpoint),
                protocol,
                service_name: DEFAULT_SERVICE_NAME.to_owned(),
                batch_delay: Some(Duration::from_millis(10)),
            })
            .expect("a valid configuration")
            .expect("export is on");
            let tracer = telemetry.provider.tracer("test");

            // Far more spans than the queue holds (2,048): the rest are dropped, not waited on.
            let started = Instant::now();
            for _ in 0..50_000 {
                tracer.start("attempt").end();
            }
            let spent = started.elapsed();
            assert!(spent < Duration::from_secs(3), "{protocol:?}: {spent:?}");

            let started = Instant::now();
            let _ = telemetry.shutdown();
            let spent = started.elapsed();
            assert!(spent < Duration::from_secs(12), "{protocol:?}: {spent:?}");
        }
    }

    #[test]
    fn an_endpoint_the_http_exporter_cannot_reach_is_refused_without_repeating_it() {
        for (variable, endpoint) in [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://herald:hunter2@api.example.com",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://api.example.com/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector"),
        ] {
            let refused = TelemetryConfig::from_lookup(|name| {
                (name == variable).then(|| endpoint.to_owned())
            })
            .expect_err(endpoint)
            .to_string();
            assert!(refused.contains("must be an http:// URL"), "{refused}");
            assert!(!refused.contains("hunter2"), "{refused}");
        }
        // A scheme is read without case; gRPC's own builder judges its endpoints.
        check(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "HTTP://collector:4318")],
            Some((
                "HTTP://collector:4318/v1/traces",
                OtlpProtocol::HttpProtobuf,
                "herald",
            )),
        );
        check(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            Some(("collector:4317", OtlpProtocol::Grpc, "herald")),
        );
    }

    /// A collector that is not there (nothing listens on its port): every failed export is
    /// counted with its spans, for both transports; a healthy one is tested end to end
    /// (`crates/server/tests/it/otel.rs`).
    #[test]
    fn failed_exports_are_counted_with_their_spans() {
        use opentelemetry::trace::{Span as _, Tracer as _};

        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            let address = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.local_addr().expect("local address")
            };
            let endpoint = match protocol {
                OtlpProtocol::HttpProtobuf => format!("http://{address}/v1/traces"),
                OtlpProtocol::Grpc => format!("http://{address}"),
            };
            let _runtime = runtime.enter();
            let telemetry = Telemetry::start(&TelemetryConfig {
                traces_endpoint: Some(endpoint),
                protocol,
                service_name: DEFAULT_SERVICE_NAME.to_owned(),
                batch_delay: Some(Duration::from_secs(3_600)),
            })
            .expect("a valid configuration")
            .expect("export is on");
            let metrics = telemetry.export_metrics();
            let tracer = telemetry.provider.tracer("test");
            for _ in 0..7 {
                tracer.start("attempt").end();
            }
            let _ = telemetry.flush();
            assert_eq!(metrics.failed_exports.get(), 1, "{protocol:?}");
            assert_eq!(metrics.spans_not_exported.get(), 7, "{protocol:?}");
            let _ = telemetry.shutdown();
        }
    }

    #[test]
    fn credentials_in_an_export_error_are_cut_out() {
        for (text, expected) in [
            (
                "error sending request for url (http://herald:hunter2@collector:4318/v1/traces)",
                "error sending request for url (http://<redacted>@collector:4318/v1/traces)",
            ),
            (
                "http://a@b then https://c:d@e",
                "http://<redacted>@b then https://<redacted>@e",
            ),
            ("no url here", "no url here"),
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
            ),
            ("ends with http://", "ends with http://"),
        ] {
            assert_eq!(without_credentials(text), expected);
        }
    }

    #[test]
    fn an_unsupported_protocol_is_refused() {
        let refused = TelemetryConfig::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_owned())
        });
        assert!(refused.is_err());
    }
}
