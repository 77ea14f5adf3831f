//! The delivery workloads: `throughput` (one endpoint), `fanout` (ten endpoints), both timed
//! from the first publish to the last receipt, and `latency` (a steady 50 events a second to
//! one endpoint, timed per event from its publish request to its receipt). [`bulk`] is the
//! shared shape, which `noisy` uses too.
//!
//! Bulk runs publish in batches of 500 from 4 clients, so that publishing (which shares
//! SQLite's one writer with the worker's recorder) outpaces delivery and the figure is
//! Herald's delivery rate rather than one publisher's pace; how long publishing took and the
//! delivery rate after it ended are reported beside it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::MAX_BATCH_SIZE;
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receiver, Sample};
use crate::report::{Metric, Target};
use crate::session::{Session, Usage};
use crate::stats::{Percentiles, rate};

use super::{Bench, Figures, Publishing, ThroughputReference, distinct, protocol_note, publish};

/// Publishing rate of the latency workload.
const LATENCY_EVENTS_PER_SECOND: u64 = 50;
/// Concurrent publishing clients of a bulk run.
pub(super) const BULK_CLIENTS: usize = 4;

/// A bulk run: `events` published in batches of 500 by 4 clients to an organization whose
/// `healthy` endpoints answer at once and whose `hanging` endpoints never answer.
#[derive(Debug, Clone)]
pub(super) struct Bulk {
    pub(super) name: &'static str,
    pub(super) healthy: usize,
    pub(super) hanging: usize,
    pub(super) events: usize,
    pub(super) settings: HeraldSettings,
    /// Every healthy endpoint has a payload filter: those of even index match every event,
    /// the others none, so half of them receive the events.
    pub(super) filtered: bool,
}

/// What a bulk run measured, over the healthy endpoints only.
#[derive(Debug)]
pub(super) struct BulkRun {
    /// Deliveries expected at healthy endpoints.
    pub(super) expected: usize,
    /// Deliveries that arrived there before the deadline.
    pub(super) delivered: usize,
    /// `delivered` over the time from the first publish to the last receipt.
    pub(super) deliveries_per_second: f64,
    /// How long publishing took.
    pub(super) publish_seconds: f64,
    /// From the end of publishing to the last receipt.
    pub(super) tail_seconds: f64,
    /// Deliveries that arrived after publishing ended, over `tail_seconds`.
    pub(super) tail_per_second: f64,
    /// Per delivery: from its publish request to its receipt.
    pub(super) latency: Option<Percentiles>,
    /// What Herald used.
    pub(super) usage: Usage,
    /// A request Herald sent to a healthy endpoint.
    pub(super) sample: Option<Sample>,
    /// Requests the hanging endpoints got.
    pub(super) hanging_requests: usize,
    /// Which protocol the healthy receivers were reached by.
    pub(super) protocol: String,
}

/// `throughput`: 20,000 events to one endpoint.
pub(super) async fn throughput(bench: &mut Bench) -> anyhow::Result<Figures> {
    let run = bulk(
        bench,
        Bulk {
            name: "bench-throughput",
            healthy: 1,
            hanging: 0,
            events: bench.scale.events,
            settings: HeraldSettings::default(),
            filtered: false,
        },
    )
    .await?;
    let mut figures = bulk_figures(&run, Target::AtLeast(5_000.0));
    if let Some(sample) = run.sample.clone() {
        bench.throughput = Some(ThroughputReference {
            deliveries_per_second: run.deliveries_per_second,
            sample,
        });
    }
    figures.note(format!(
        "{} events to 1 endpoint, published in batches of {MAX_BATCH_SIZE} by {BULK_CLIENTS} clients",
        run.expected
    ));
    Ok(figures)
}

/// `fanout`: 2,000 events to ten endpoints.
pub(super) async fn fanout(bench: &mut Bench) -> anyhow::Result<Figures> {
    let endpoints = 10;
    let run = bulk(
        bench,
        Bulk {
            name: "bench-fanout",
            healthy: endpoints,
            hanging: 0,
            events: bench.scale.events / endpoints,
            settings: HeraldSettings::default(),
            filtered: false,
        },
    )
    .await?;
    let mut figures = bulk_figures(&run, Target::AtLeast(8_000.0));
    figures.note(format!(
        "{} events to {endpoints} endpoints, published in batches of {MAX_BATCH_SIZE} by \
         {BULK_CLIENTS} clients",
        run.expected / endpoints
    ));
    Ok(figures)
}

/// `latency`: 500 events at 50 a second to one endpoint, each published alone.
pub(super) async fn latency(bench: &mut Bench) -> anyhow::Result<Figures> {
    let events = bench.scale.latency_events();
    let mut herald = bench.one_endpoint("bench-latency").await?;
    let mut figures = Figures::default();

    // Open loop: each publish starts on its tick, however long the one before takes.
    let deadline = bench.scale.deadline(events);
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / LATENCY_EVENTS_PER_SECOND));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..events {
        ticks.tick().await;
        let (api, org) = (herald.session.api.clone(), herald.org.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let id = api.publish(&org, n).await?;
            anyhow::Ok((id, sent, sent.elapsed()))
        });
    }
    let mut sent = std::collections::HashMap::with_capacity(events);
    let mut publish_latencies = Vec::with_capacity(events);
    let joined = tokio::time::timeout_at(deadline.into(), async {
        while let Some(task) = tasks.join_next().await {
            let (id, at, took) = task??;
            sent.insert(id, (at, at + took));
            publish_latencies.push(took);
        }
        anyhow::Ok(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => figures.stopped_short("publishing did not finish in time"),
    }
    herald
        .await_deliveries(events, deadline, &mut figures)
        .await?;
    let arrivals = herald.receiver.arrivals();
    // Per event: from sending the publish request, and from reading its 202 (zero when the
    // delivery arrived first), to the receipt.
    let (latencies, after_answer): (Vec<Duration>, Vec<Duration>) = sent
        .iter()
        .filter_map(|(id, (at, answered))| {
            let arrived = arrivals.get(id)?;
            Some((
                arrived.saturating_duration_since(*at),
                arrived.saturating_duration_since(*answered),
            ))
        })
        .unzip();
    if let Some(latency) = Percentiles::of(latencies) {
        figures.metric(
            Metric::new("publish to receipt p50", latency.p50_ms, "ms").target(Target::AtMost(3.0)),
        );
        figures.metric(
            Metric::new("publish to receipt p99", latency.p99_ms, "ms")
                .target(Target::AtMost(10.0)),
        );
        figures.metric(Metric::new("publish to receipt max", latency.max_ms, "ms"));
    }
    if let Some(latency) = Percentiles::of(publish_latencies) {
        figures.metric(Metric::new("publish request p50", latency.p50_ms, "ms"));
        figures.metric(Metric::new("publish request p99", latency.p99_ms, "ms"));
    }
    if let Some(latency) = Percentiles::of(after_answer) {
        figures.metric(Metric::new("202 to receipt p50", latency.p50_ms, "ms"));
        figures.metric(Metric::new("202 to receipt p99", latency.p99_ms, "ms"));
    }
    let receiver = herald.receiver;
    figures.usage("", &herald.session.finish().await?);
    figures.note(format!(
        "{events} events at {LATENCY_EVENTS_PER_SECOND}/s, each alone; latency runs from sending \
         the publish request to the receiver reading the delivery"
    ));
    figures.note(protocol_note(std::slice::from_ref(&receiver)));
    Ok(figures)
}

/// Runs `bulk` on a fresh Herald and measures its healthy endpoints.
pub(super) async fn bulk(bench: &Bench, bulk: Bulk) -> anyhow::Result<BulkRun> {
    let healthy: Vec<Receiver> = (0..bulk.healthy)
        .map(|_| bench.receiver(Behaviour::Answer))
        .collect::<anyhow::Result<_>>()?;
    let hanging: Vec<Receiver> = (0..bulk.hanging)
        .map(|_| bench.receiver(Behaviour::Hang))
        .collect::<anyhow::Result<_>>()?;
    let mut session = Session::start(&bench.launch, bulk.settings).await?;
    let org = session.api.create_org(bulk.name).await?;
    // The bench's events carry `"n": <its number>` and `"currency": "EUR"` (api.rs).
    let matching = json!({ "data": { "n": { "$gte": 0 }, "currency": "EUR" } });
    let never = json!({ "data": { "currency": { "$in": ["USD", "GBP"] } } });
    let mut subscribed = 0;
    for (index, receiver) in healthy.iter().enumerate() {
        let filter = bulk
            .filtered
            .then_some(if index % 2 == 0 { &matching } else { &never });
        subscribed += usize::from(filter != Some(&never));
        session
            .api
            .create_filtered_endpoint(&org, &receiver.url(), filter)
            .await?;
    }
    for receiver in &hanging {
        session.api.create_endpoint(&org, &receiver.url()).await?;
    }

    let expected = bulk.events * subscribed;
    let deadline = bench.scale.deadline(expected);
    let publishing = publish(
        &session.api,
        &org,
        0..bulk.events,
        BULK_CLIENTS,
        MAX_BATCH_SIZE,
        deadline,
    )
    .await?;
    session
        .wait_until(deadline, || distinct(&healthy) >= expected)
        .await?;
    let delivered = distinct(&healthy);
    let arrivals = Arrivals::of(&publishing, &healthy);
    let last = arrivals.last.unwrap_or(publishing.finished);
    let tail = last.saturating_duration_since(publishing.finished);
    let usage = session.finish().await?;
    Ok(BulkRun {
        expected,
        delivered,
        deliveries_per_second: rate(delivered, last - publishing.started),
        publish_seconds: (publishing.finished - publishing.started).as_secs_f64(),
        tail_seconds: tail.as_secs_f64(),
        tail_per_second: rate(arrivals.after_publishing, tail),
        latency: Percentiles::of(arrivals.latencies),
        usage,
        sample: healthy.first().and_then(Receiver::sample),
        hanging_requests: hanging.iter().map(Receiver::total).sum(),
        protocol: protocol_note(&healthy),
    })
}

/// The figures of a throughput-style run, its rate held to `target`.
fn bulk_figures(run: &BulkRun, target: Target) -> Figures {
    let mut figures = Figures::default();
    if run.delivered < run.expected {
        figures.stopped_short(format!(
            "only {} of {} deliveries arrived in time",
            run.delivered, run.expected
        ));
    }
    figures.metric(
        Metric::new("delivery rate", run.deliveries_per_second, "deliveries/s").target(target),
    );
    figures.metric(Metric::new("publishing took", run.publish_seconds, "s"));
    figures.metric(Metric::new(
        "last receipt after publishing",
        run.tail_seconds,
        "s",
    ));
    figures.metric(Metric::new(
        "rate after publishing",
        run.tail_per_second,
        "deliveries/s",
    ));
    if let Some(latency) = run.latency {
        figures.metric(Metric::new("publish to receipt p50", latency.p50_ms, "ms"));
        figures.metric(Metric::new("publish to receipt p99", latency.p99_ms, "ms"));
    }
    figures.usage("", &run.usage);
    figures.note(run.protocol.clone());
    figures
}

/// What the receivers of a bulk run saw, against when each event was published.
struct Arrivals {
    /// Per delivery: from its publish request to its first arrival.
    latencies: Vec<Duration>,
    /// The last first arrival.
    last: Option<Instant>,
    /// Deliveries whose first arrival came after publishing ended.
    after_publishing: usize,
}

impl Arrivals {
    fn of(publishing: &Publishing, receivers: &[Receiver]) -> Self {
        let mut arrivals = Self {
            latencies: Vec::new(),
            last: None,
            after_publishing: 0,
        };
        for receiver in receivers {
            for (event_id, arrived) in receiver.arrivals() {
                if let Some(sent) = publishing.sent.get(&event_id) {
                    arrivals
                        .latencies
                        .push(arrived.saturating_duration_since(*sent));
                }
                if arrived > publishing.finished {
                    arrivals.after_publishing += 1;
                }
                arrivals.last = arrivals.last.max(Some(arrived));
            }
        }
        arrivals
    }
}
