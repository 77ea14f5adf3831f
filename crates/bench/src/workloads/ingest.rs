//! `ingest`: how fast Herald accepts events. One organization with one subscribed endpoint (so
//! every publish also writes its delivery, as in real use, and the worker delivers meanwhile).
//! First the events one per request from 32 concurrent clients, then, once their deliveries
//! have drained, as many again in batches of 100 from the same 32 clients.

use crate::api::BATCH_SIZE;
use crate::report::{Metric, Target};
use crate::stats::{Percentiles, rate};

use super::{Bench, Figures, publish};

/// Concurrent publishing clients.
const CLIENTS: usize = 32;

/// Runs the workload.
pub(super) async fn run(bench: &Bench) -> anyhow::Result<Figures> {
    let events = bench.scale.events;
    let mut herald = bench.one_endpoint("bench-ingest").await?;
    let (api, org) = (herald.session.api.clone(), herald.org.clone());
    let mut figures = Figures::default();

    let deadline = bench.scale.deadline(events);
    let cpu_before = herald.session.cpu_seconds();
    let single = publish(&api, &org, 0..events, CLIENTS, 1, deadline).await?;
    let elapsed = single.finished - single.started;
    figures.metric(
        Metric::new("single publish rate", rate(events, elapsed), "events/s")
            .target(Target::AtLeast(3_000.0)),
    );
    if let Some(latency) = Percentiles::of(single.request_latencies) {
        figures.metric(Metric::new("single publish p50", latency.p50_ms, "ms"));
        figures.metric(
            Metric::new("single publish p99", latency.p99_ms, "ms").target(Target::AtMost(50.0)),
        );
    }
    herald
        .await_deliveries(events, deadline, &mut figures)
        .await?;
    // What one event costs Herald from its publish request to its delivery's record, the
    // figure issue 19 judges single publishes by: CPU moves less between machines than a rate.
    if let (Some(before), Some(after)) = (cpu_before, herald.session.cpu_seconds()) {
        figures.metric(Metric::new(
            "herald CPU per single-published event",
            (after - before) * 1e3 / events as f64,
            "ms",
        ));
    }

    let deadline = bench.scale.deadline(events);
    let batched = publish(
        &api,
        &org,
        events..2 * events,
        CLIENTS,
        BATCH_SIZE,
        deadline,
    )
    .await?;
    let elapsed = batched.finished - batched.started;
    figures.metric(
        Metric::new("batch publish rate", rate(events, elapsed), "events/s")
            .target(Target::AtLeast(20_000.0)),
    );
    if let Some(latency) = Percentiles::of(batched.request_latencies) {
        figures.metric(Metric::new("batch request p99", latency.p99_ms, "ms"));
    }
    herald
        .await_deliveries(2 * events, deadline, &mut figures)
        .await?;

    figures.usage("", &herald.session.finish().await?);
    figures.note(format!(
        "{events} single publishes from {CLIENTS} clients, then {events} events in batches of \
         {BATCH_SIZE} from {CLIENTS} clients; 1 subscribed endpoint, delivered concurrently"
    ));
    Ok(figures)
}
