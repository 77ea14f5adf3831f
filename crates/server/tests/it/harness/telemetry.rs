//! Trace export for the apps that ask for it: one pipeline per test process, as in
//! production (the `tracing` layer is part of the process's subscriber), exporting over
//! http/protobuf to one in-process [`OtlpReceiver`] with a short batch delay. Tests find their
//! own spans by a trace id of their own, so apps of several tests may share it.

use std::sync::OnceLock;
use std::time::Duration;

use herald_delivery::DeliveryTracer;
use herald_server::telemetry::{OtlpProtocol, Telemetry, TelemetryConfig};
use herald_testkit::OtlpReceiver;
use tracing_subscriber::layer::SubscriberExt as _;

/// The process's pipeline and the receiver it exports to.
struct Exported {
    receiver: OtlpReceiver,
    telemetry: Telemetry,
}

static EXPORTED: OnceLock<Exported> = OnceLock::new();

/// The receiver every exporting app sends its spans to.
pub(crate) fn otlp_receiver() -> &'static OtlpReceiver {
    &exported().receiver
}

/// The tracer an exporting app's worker gets.
pub(super) fn delivery_tracer() -> DeliveryTracer {
    exported().telemetry.delivery_tracer()
}

/// The pipeline's failure counters, which an exporting app serves on `/metrics`.
pub(super) fn export_metrics() -> herald_server::telemetry::ExportMetrics {
    exported().telemetry.export_metrics()
}

fn exported() -> &'static Exported {
    EXPORTED.get_or_init(|| {
        let receiver = OtlpReceiver::start().expect("starting the OTLP receiver");
        let config = TelemetryConfig {
            traces_endpoint: Some(receiver.traces_url()),
            protocol: OtlpProtocol::HttpProtobuf,
            service_name: herald_server::telemetry::DEFAULT_SERVICE_NAME.to_owned(),
            batch_delay: Some(Duration::from_millis(50)),
        };
        let telemetry = Telemetry::start(&config)
            .expect("starting the export pipeline")
            .expect("export is configured");
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber is installed in the test process");
        Exported {
            receiver,
            telemetry,
        }
    })
}
