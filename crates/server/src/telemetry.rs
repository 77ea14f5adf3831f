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

use std::time::Duration;

use anyhow::{Context as _, bail};
use herald_delivery::DeliveryTracer;
use herald_delivery::telemetry::AttemptIds;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
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
        let disabled = lookup("OTEL_SDK_DISABLED").is_some_and(|value| value == "true")
            || lookup("OTEL_TRACES_EXPORTER").is_some_and(|value| value == "none");
        let traces_endpoint = match lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            _ if disabled => None,
            Some(endpoint) => Some(endpoint),
            None => lookup("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                OtlpProtocol::Grpc => base,
            }),
        };
        let service_name = lookup("OTEL_SERVICE_NAME")
            .or_else(|| {
                lookup("OTEL_RESOURCE_ATTRIBUTES")?
                    .split(',')
                    .find_map(|pair| pair.trim().strip_prefix("service.name=").map(str::to_owned))
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
        .with_context(|| format!("building the OTLP exporter for {endpoint}"))?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(delay) = config.batch_delay {
            batch = batch.with_scheduled_delay(delay);
        }
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
        Ok(Some(Self { provider }))
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
    }

    #[test]
    fn an_unsupported_protocol_is_refused() {
        let refused = TelemetryConfig::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_owned())
        });
        assert!(refused.is_err());
    }
}
