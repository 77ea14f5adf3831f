//! The delivery workloads: `throughput` (one endpoint), `fanout` (ten endpoints), both timed
//! from the first publish to the last receipt, `latency` (a steady 50 events a second to
//! one endpoint, timed per event from its publish request to its receipt), `churned` (the same
//! latency on a database that has already carried five times the scale's deliveries), and
//! `fanlag` (single publishes from 32 clients fanned out to ten endpoints, timed per delivery
//! while publishing goes on). [`bulk`] is the shared shape, which `noisy` uses too.
//!
//! Bulk runs publish in batches of 500 from 4 clients, so that publishing (which shares
//! SQLite's one writer with the worker's recorder) outpaces delivery and the figure is
//! Herald's delivery rate rather than one publisher's pace; how long publishing took and the
//! delivery rate after it ended are reported beside it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::MAX_BATCH_SIZE;
use crate::database::Backend;
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receiver, Sample};
use crate::report::{Metric, Target};
use crate::session::{Session, Usage};
use crate::stats::{Percentiles, rate};

use super::{
    Bench, Figures, OneEndpoint, Publishing, ThroughputReference, distinct, protocol_note, publish,
};

/// Publishing rate of the latency workload.
const LATENCY_EVENTS_PER_SECOND: u64 = 50;
/// Concurrent publishing clients of a bulk run.
pub(super) const BULK_CLIENTS: usize = 4;
/// Concurrent publishing clients of `fanlag`, each publishing one event a request: how most
/// platforms publish.
const SINGLE_CLIENTS: usize = 32;
/// Endpoints of the fan-out workloads.
const FANOUT_ENDPOINTS: usize = 10;
/// `fanlag`'s ceiling on the p99 publish-to-receipt time, in ms: deliveries keep up with
/// publishing (doubled on PostgreSQL, like every latency target: 1 s, issue 19's target).
const FANLAG_P99_MS: f64 = 500.0;

/// How a bulk run publishes: this many concurrent clients, this many events a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Publishers {
    pub(super) clients: usize,
    pub(super) per_request: usize,
}

impl Publishers {
    /// Batches of 500 from 4 clients: publishing outpaces delivery.
    pub(super) const BATCHED: Self = Self {
        clients: BULK_CLIENTS,
        per_request: MAX_BATCH_SIZE,
    };
    /// One event a request from 32 clients.
    const SINGLE: Self = Self {
        clients: SINGLE_CLIENTS,
        per_request: 1,
    };
}

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
    /// How the events are published.
    pub(super) publishers: Publishers,
    /// `herald serve` nodes started beside the one published to, with Herald's defaults, on
    /// the same database (PostgreSQL only): they claim what the first node stores.
    pub(super) other_nodes: usize,
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
    /// What Herald used (the node published to).
    pub(super) usage: Usage,
    /// CPU time of the other nodes from the first publish to the end, in seconds (0 without
    /// them).
    pub(super) other_nodes_cpu_seconds: f64,
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
            publishers: Publishers::BATCHED,
            other_nodes: 0,
        },
    )
    .await?;
    let mut figures = bulk_figures(&run, Some(Target::AtLeast(5_000.0)), None);
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
    let endpoints = FANOUT_ENDPOINTS;
    let run = bulk(
        bench,
        Bulk {
            name: "bench-fanout",
            healthy: endpoints,
            hanging: 0,
            events: bench.scale.events / endpoints,
            settings: HeraldSettings::default(),
            filtered: false,
            publishers: Publishers::BATCHED,
            other_nodes: 0,
        },
    )
    .await?;
    let mut figures = bulk_figures(&run, Some(Target::AtLeast(8_000.0)), None);
    figures.note(format!(
        "{} events to {endpoints} endpoints, published in batches of {MAX_BATCH_SIZE} by \
         {BULK_CLIENTS} clients",
        run.expected / endpoints
    ));
    Ok(figures)
}

/// `latency`: 500 events at 50 a second to one endpoint, each published alone.
pub(super) async fn latency(bench: &mut Bench) -> anyhow::Result<Figures> {
    let mut herald = bench.one_endpoint("bench-latency").await?;
    let mut figures = Figures::default();
    measure_latency(bench, &mut herald, 0, &mut figures).await?;
    let receiver = herald.receiver;
    figures.usage("", &herald.session.finish().await?);
    figures.note(protocol_note(std::slice::from_ref(&receiver)));
    Ok(figures)
}

/// `churned`: `latency` on a Herald whose database has already carried 100,000 deliveries (five
/// times the scale), published in batches of 500 by 4 clients to the same endpoint and all
/// delivered before the latency run starts. Every delivery leaves rows behind that the
/// database must step over or clean up (on PostgreSQL, dead row versions until a vacuum), so
/// this is the latency of a Herald that has been running a while, not of a fresh one.
pub(super) async fn churned(bench: &mut Bench) -> anyhow::Result<Figures> {
    let mut herald = bench.one_endpoint("bench-churned").await?;
    let mut figures = Figures::default();
    let churn = bench.scale.churn_deliveries();
    let deadline = bench.scale.deadline(churn);
    let publishing = publish(
        &herald.session.api,
        &herald.org,
        0..churn,
        BULK_CLIENTS,
        MAX_BATCH_SIZE,
        deadline,
    )
    .await?;
    herald
        .await_deliveries(churn, deadline, &mut figures)
        .await?;
    let took = herald
        .receiver
        .arrivals()
        .values()
        .max()
        .map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(publishing.started)
        });
    figures.metric(Metric::new(
        "churn delivery rate",
        rate(herald.receiver.distinct(), took),
        "deliveries/s",
    ));
    if figures.incomplete.is_none() {
        measure_latency(bench, &mut herald, churn, &mut figures).await?;
    }
    let receiver = herald.receiver;
    figures.usage("", &herald.session.finish().await?);
    figures.note(format!(
        "first {churn} events to the same endpoint in batches of {MAX_BATCH_SIZE} by \
         {BULK_CLIENTS} clients, all delivered; then the latency run on the same database"
    ));
    figures.note(protocol_note(std::slice::from_ref(&receiver)));
    Ok(figures)
}

/// Publishes `latency_events` events at 50 a second to `herald`'s endpoint, each alone and
/// numbered from `first`, waits for their receipts, and adds their figures to `figures`.
async fn measure_latency(
    bench: &Bench,
    herald: &mut OneEndpoint,
    first: usize,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let events = bench.scale.latency_events();
    let already = herald.receiver.distinct();

    // Open loop: each publish starts on its tick, however long the one before takes.
    let deadline = bench.scale.deadline(events);
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / LATENCY_EVENTS_PER_SECOND));
    let mut tasks = tokio::task::JoinSet::new();
    for n in first..first + events {
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
        .await_deliveries(already + events, deadline, figures)
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
    figures.note(format!(
        "{events} events at {LATENCY_EVENTS_PER_SECOND}/s, each alone; latency runs from sending \
         the publish request to the receiver reading the delivery"
    ));
    Ok(())
}

/// `fanlag`: 5,000 events (a quarter of the scale) published one a request by 32 clients to
/// ten endpoints (50,000 deliveries): whether delivery keeps up with publishing, as each
/// delivery's time from its publish request to its receipt shows.
pub(super) async fn fanlag(bench: &mut Bench) -> anyhow::Result<Figures> {
    fanlag_on(
        bench,
        "bench-fanlag",
        HeraldSettings::default(),
        0,
        "Herald",
    )
    .await
}

/// `fanlag-nodes`: `fanlag` on three nodes sharing one PostgreSQL database, every publish
/// sent to the first node, which delivers at most one at a time (`HERALD_MAX_IN_FLIGHT=1`):
/// the other two claim nearly every delivery, so the receipt times include how soon a node
/// learns of work another node stored (its `LISTEN`, with the poll as the fallback).
pub(super) async fn fanlag_nodes(bench: &mut Bench) -> anyhow::Result<Figures> {
    if bench.launch.backend != Backend::Postgres {
        let mut figures = Figures::default();
        figures.note("fanlag-nodes runs on PostgreSQL only: SQLite admits one Herald process");
        return Ok(figures);
    }
    let publishing_node = HeraldSettings {
        max_in_flight: Some(1),
        ..HeraldSettings::default()
    };
    fanlag_on(
        bench,
        "bench-fanlag-nodes",
        publishing_node,
        2,
        "one node of three (at most one delivery in flight there; the other two deliver)",
    )
    .await
}

/// `fanlag`'s run, published to a Herald with `settings` beside `other_nodes` further nodes
/// (`published_to` says which, in the report's note).
async fn fanlag_on(
    bench: &Bench,
    name: &'static str,
    settings: HeraldSettings,
    other_nodes: usize,
    published_to: &str,
) -> anyhow::Result<Figures> {
    let events = bench.scale.fanlag_events();
    let run = bulk(
        bench,
        Bulk {
            name,
            healthy: FANOUT_ENDPOINTS,
            hanging: 0,
            events,
            settings,
            filtered: false,
            publishers: Publishers::SINGLE,
            other_nodes,
        },
    )
    .await?;
    Ok(fanlag_figures(&run, events, published_to))
}

/// The figures of `fanlag` and `fanlag-nodes`: the receipt times, held to [`FANLAG_P99_MS`],
/// and the publishing rate they were measured under.
fn fanlag_figures(run: &BulkRun, events: usize, published_to: &str) -> Figures {
    // The rate follows the publishers' pace here; the receipt times are the figure.
    let mut figures = bulk_figures(run, None, Some(Target::AtMost(FANLAG_P99_MS)));
    figures.metric(Metric::new(
        "events published",
        rate(events, Duration::from_secs_f64(run.publish_seconds)),
        "events/s",
    ));
    if run.other_nodes_cpu_seconds > 0.0 {
        figures.metric(Metric::new(
            "other nodes' CPU time",
            run.other_nodes_cpu_seconds,
            "s",
        ));
    }
    figures.note(format!(
        "{events} events to {FANOUT_ENDPOINTS} endpoints, each published alone by \
         {SINGLE_CLIENTS} clients to {published_to}; receipt times run from each event's \
         publish request"
    ));
    figures
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
    session
        .add_nodes(&bench.launch, &HeraldSettings::default(), bulk.other_nodes)
        .await?;
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
    let other_nodes_cpu_before = session.other_nodes_cpu_seconds();
    let publishing = publish(
        &session.api,
        &org,
        0..bulk.events,
        bulk.publishers.clients,
        bulk.publishers.per_request,
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
    let other_nodes_cpu_seconds = session.other_nodes_cpu_seconds() - other_nodes_cpu_before;
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
        other_nodes_cpu_seconds,
        sample: healthy.first().and_then(Receiver::sample),
        hanging_requests: hanging.iter().map(Receiver::total).sum(),
        protocol: protocol_note(&healthy),
    })
}

/// The figures of a throughput-style run, its rate held to `rate_target` and its p99
/// publish-to-receipt time to `p99_target`, when given.
fn bulk_figures(run: &BulkRun, rate_target: Option<Target>, p99_target: Option<Target>) -> Figures {
    let mut figures = Figures::default();
    if run.delivered < run.expected {
        figures.stopped_short(format!(
            "only {} of {} deliveries arrived in time",
            run.delivered, run.expected
        ));
    }
    let mut delivery_rate = Metric::new("delivery rate", run.deliveries_per_second, "deliveries/s");
    if let Some(target) = rate_target {
        delivery_rate = delivery_rate.target(target);
    }
    figures.metric(delivery_rate);
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
        let mut p99 = Metric::new("publish to receipt p99", latency.p99_ms, "ms");
        if let Some(target) = p99_target {
            p99 = p99.target(target);
        }
        figures.metric(p99);
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
