//! `nodes`: one, two and three `herald serve` nodes on one PostgreSQL database, the same
//! workload on each (issue 19). PostgreSQL only: SQLite admits one process.
//!
//! Each count gets a fresh database and its nodes, all with Herald's defaults and the same
//! secrets key. One organization with 10 endpoints (each its own receiver) gets `fanout`'s
//! events (2,000, so 20,000 deliveries; `--smoke` 30), in batches of 500 from 4 clients, the
//! batches spread over the nodes in turn, so each node stores some and every node may claim
//! what another stored. The count ends when every delivery has arrived.
//!
//! On this 2-core machine the nodes share the cores with each other, PostgreSQL and the
//! harness, so the rate alone says little about scale-out. The figures that carry over to
//! bigger machines are the work per CPU-second: deliveries per CPU-second of Herald (all
//! nodes, from `/proc/<pid>/stat`) and of PostgreSQL (the backends serving this database,
//! found by their process titles in `/proc/<pid>/cmdline`; the server's shared background
//! processes — WAL writer, checkpointer — are left out, as other databases share them).
//! Duplicates are requests beyond the first per delivery (expected 0: no node dies here).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;

use crate::api::{Api, MAX_BATCH_SIZE};
use crate::cpu::PostgresCpu;
use crate::database::Backend;
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receiver};
use crate::report::Metric;
use crate::session::Session;
use crate::stats::rate;

use super::delivery::BULK_CLIENTS;
use super::{Bench, Figures, distinct};

/// Endpoints of the organization.
const ENDPOINTS: usize = 10;

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    if bench.launch.backend != Backend::Postgres {
        figures.note("nodes runs on PostgreSQL only: SQLite admits one Herald process");
        return Ok(figures);
    }
    let events = (bench.scale.events / ENDPOINTS).max(30);
    let mut single = None;
    for nodes in 1..=3 {
        let count = count(bench, nodes, events, &mut figures).await?;
        let label =
            |what: &str| format!("{nodes} node{}: {what}", if nodes == 1 { "" } else { "s" });
        figures.metric(Metric::new(
            label("delivery rate"),
            count.rate,
            "deliveries/s",
        ));
        figures.metric(Metric::new(
            label("duplicates"),
            count.duplicates as f64,
            "requests",
        ));
        figures.metric(Metric::new(label("herald CPU"), count.herald_cpu, "s"));
        figures.metric(Metric::new(label("postgres CPU"), count.postgres_cpu, "s"));
        figures.metric(Metric::new(
            label("deliveries per herald CPU-second"),
            count.delivered as f64 / count.herald_cpu,
            "deliveries/s",
        ));
        figures.metric(Metric::new(
            label("deliveries per postgres CPU-second"),
            count.delivered as f64 / count.postgres_cpu,
            "deliveries/s",
        ));
        figures.metric(Metric::new(
            label("deliveries per CPU-second, both"),
            count.delivered as f64 / (count.herald_cpu + count.postgres_cpu),
            "deliveries/s",
        ));
        let per_cpu = count.delivered as f64 / (count.herald_cpu + count.postgres_cpu);
        match single {
            None => single = Some(per_cpu),
            Some(one) => figures.metric(Metric::new(
                label("per CPU-second / 1 node"),
                per_cpu / one,
                "ratio",
            )),
        }
    }
    figures.note(format!(
        "{events} events to {ENDPOINTS} endpoints, in batches of {MAX_BATCH_SIZE} from \
         {BULK_CLIENTS} clients spread over the nodes in turn; CPU from the first publish to the \
         last receipt; postgres CPU is this database's backends only"
    ));
    Ok(figures)
}

/// What one count of nodes measured.
struct Count {
    rate: f64,
    delivered: usize,
    duplicates: usize,
    herald_cpu: f64,
    postgres_cpu: f64,
}

async fn count(
    bench: &Bench,
    nodes: usize,
    events: usize,
    figures: &mut Figures,
) -> anyhow::Result<Count> {
    let receivers: Vec<Receiver> = (0..ENDPOINTS)
        .map(|_| bench.receiver(Behaviour::Answer))
        .collect::<anyhow::Result<_>>()?;
    let mut session = Session::start(&bench.launch, HeraldSettings::default()).await?;
    let mut apis = vec![session.api.clone()];
    apis.extend(
        session
            .add_nodes(&bench.launch, &HeraldSettings::default(), nodes - 1)
            .await?,
    );
    let org = session.api.create_org("bench-nodes").await?;
    for receiver in &receivers {
        session.api.create_endpoint(&org, &receiver.url()).await?;
    }
    let database = session
        .postgres_name()
        .context("nodes runs on PostgreSQL")?
        .to_owned();
    let expected = events * ENDPOINTS;
    let deadline = bench.scale.deadline(expected);

    let (herald_before, postgres_before) =
        (session.nodes_cpu_seconds(), PostgresCpu::read(&database));
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let apis = Arc::new(apis);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BULK_CLIENTS {
        let (apis, next, org) = (Arc::clone(&apis), Arc::clone(&next), org.clone());
        tasks.spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                let first = batch * MAX_BATCH_SIZE;
                if first >= events {
                    return anyhow::Ok(());
                }
                let api: &Api = &apis[batch % apis.len()];
                api.publish_batch(&org, first..(first + MAX_BATCH_SIZE).min(events), None)
                    .await?;
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.context("a publishing client panicked")??;
    }
    let arrived = session
        .wait_until(deadline, || distinct(&receivers) >= expected)
        .await?;
    let herald_cpu = session.nodes_cpu_seconds() - herald_before;
    let postgres_cpu = PostgresCpu::read(&database).since(&postgres_before);
    let delivered = distinct(&receivers);
    if !arrived {
        figures.stopped_short(format!(
            "{nodes} nodes: only {delivered} of {expected} deliveries arrived in time"
        ));
    }
    let last = receivers
        .iter()
        .filter_map(|receiver| receiver.arrivals().into_values().max())
        .max()
        .unwrap_or(started);
    let total: usize = receivers.iter().map(Receiver::total).sum();
    session.finish().await?;
    Ok(Count {
        rate: rate(delivered, last - started),
        delivered,
        duplicates: total - delivered,
        herald_cpu,
        postgres_cpu,
    })
}
