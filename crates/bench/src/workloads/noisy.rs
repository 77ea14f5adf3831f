//! `noisy`: isolation between endpoints. 5,000 events go to 10 healthy endpoints beside 10
//! whose receivers never answer, and the healthy endpoints' delivery rate and p99 latency are
//! compared with the same run without the hanging endpoints. Both runs set
//! `HERALD_REQUEST_TIMEOUT_SECONDS` to 2, so hanging attempts end (and are retried from 5 s
//! on) within the run, and the run stays bounded; it ends when every healthy delivery arrived.

use crate::herald::HeraldSettings;
use crate::report::{Metric, Target};

use super::delivery::{Bulk, BulkRun, Publishers, bulk};
use super::{Bench, Figures};

/// Endpoints of each kind.
const ENDPOINTS: usize = 10;
/// The attempt timeout of both runs.
const REQUEST_TIMEOUT_SECONDS: u64 = 2;

/// Runs both halves and compares them.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let events = bench.scale.noisy_events();
    let settings = HeraldSettings {
        request_timeout_seconds: Some(REQUEST_TIMEOUT_SECONDS),
        ..HeraldSettings::default()
    };
    let quiet = bulk(
        bench,
        Bulk {
            name: "bench-noisy-baseline",
            healthy: ENDPOINTS,
            hanging: 0,
            events,
            settings: settings.clone(),
            filtered: false,
            publishers: Publishers::BATCHED,
            other_nodes: 0,
        },
    )
    .await?;
    let noisy = bulk(
        bench,
        Bulk {
            name: "bench-noisy",
            healthy: ENDPOINTS,
            hanging: ENDPOINTS,
            events,
            settings,
            filtered: false,
            publishers: Publishers::BATCHED,
            other_nodes: 0,
        },
    )
    .await?;

    let mut figures = Figures::default();
    for (run, label) in [(&quiet, "baseline"), (&noisy, "with hanging endpoints")] {
        if run.delivered < run.expected {
            figures.stopped_short(format!(
                "{label}: only {} of {} healthy deliveries arrived in time",
                run.delivered, run.expected
            ));
        }
    }
    figures.metric(
        Metric::new(
            "healthy rate ratio",
            noisy.deliveries_per_second / quiet.deliveries_per_second,
            "ratio",
        )
        .target(Target::AtLeast(0.8)),
    );
    if let (Some(with), Some(without)) = (noisy.latency, quiet.latency) {
        figures.metric(
            Metric::new(
                "healthy p99 latency ratio",
                with.p99_ms / without.p99_ms,
                "ratio",
            )
            .target(Target::AtMost(2.0)),
        );
    }
    add_half(&mut figures, "baseline ", &quiet);
    add_half(&mut figures, "noisy ", &noisy);
    figures.note(format!(
        "{events} events in batches of 500 to {ENDPOINTS} healthy endpoints, alone (baseline) \
         and beside {ENDPOINTS} hanging ones (noisy); HERALD_REQUEST_TIMEOUT_SECONDS={REQUEST_TIMEOUT_SECONDS} \
         in both; the hanging endpoints got {} requests",
        noisy.hanging_requests
    ));
    figures.note(format!("noisy: {}", noisy.protocol));
    Ok(figures)
}

fn add_half(figures: &mut Figures, label: &str, run: &BulkRun) {
    figures.metric(Metric::new(
        format!("{label}healthy rate"),
        run.deliveries_per_second,
        "deliveries/s",
    ));
    if let Some(latency) = run.latency {
        figures.metric(Metric::new(
            format!("{label}healthy p99"),
            latency.p99_ms,
            "ms",
        ));
    }
    figures.usage(label, &run.usage);
}
