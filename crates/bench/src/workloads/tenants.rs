//! `tenants`: 10,000 organizations with 3 endpoints each, and a steady publish rate spread over
//! them, against the same rate to one organization with 3 endpoints (issue 19).
//!
//! Two fresh Heralds. The first has one organization; the second 10,000 (`--events` scales
//! them, `--smoke` makes 20), made through the API before anything is timed. Each gets 3,000
//! events (100 with `--smoke`) at a steady 100 a second, open loop, each published alone
//! through the admin API: to the one organization, or each to an organization picked at random,
//! so consecutive publishes land on different tenants and nearly every publish and delivery
//! meets an organization and endpoints not touched for a while. Each event goes to its
//! organization's 3 endpoints.
//!
//! The endpoints share 16 receivers, told apart by a tag in the URL: a receiver per endpoint
//! would be 30,000 TLS servers on loopback. Herald's connections are per endpoint either way.
//!
//! Figures, for each: the publish request's p50/p99, publish-to-receipt p50/p99 (per delivery,
//! from sending the publish request to the receiver reading it), and many / one for the p99s
//! (target ≤ 2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;

use crate::api::{Api, Org};
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receiver};
use crate::report::{Metric, Target};
use crate::session::Session;
use crate::stats::Percentiles;

use super::provision::tenants;
use super::{Bench, Figures, distinct};

/// Endpoints per organization.
const ENDPOINTS: usize = 3;
/// Receivers the endpoints share.
const RECEIVERS: usize = 16;
/// Publishing rate.
const EVENTS_PER_SECOND: u64 = 100;

/// What one half measured.
struct Steady {
    publish: Option<Percentiles>,
    receipt: Option<Percentiles>,
}

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let orgs = bench.scale.grown(10_000, 20);
    let events = bench.scale.grown(3_000, 100);
    let mut figures = Figures::default();

    let one = half(bench, 1, events, &mut figures, "one organization: ").await?;
    let many = half(bench, orgs, events, &mut figures, "").await?;

    for (name, one, many) in [
        ("publish request", one.publish, many.publish),
        ("publish to receipt", one.receipt, many.receipt),
    ] {
        if let Some(one) = one {
            figures.metric(Metric::new(
                format!("{name} p50, 1 organization"),
                one.p50_ms,
                "ms",
            ));
            figures.metric(Metric::new(
                format!("{name} p99, 1 organization"),
                one.p99_ms,
                "ms",
            ));
        }
        if let Some(many) = many {
            figures.metric(Metric::new(
                format!("{name} p50, {orgs} organizations"),
                many.p50_ms,
                "ms",
            ));
            figures.metric(Metric::new(
                format!("{name} p99, {orgs} organizations"),
                many.p99_ms,
                "ms",
            ));
        }
        if let (Some(one), Some(many)) = (one, many) {
            figures.metric(
                Metric::new(
                    format!("{name} p99, many / one"),
                    many.p99_ms / one.p99_ms,
                    "ratio",
                )
                .target(Target::AtMost(2.0)),
            );
        }
    }
    figures.note(format!(
        "{events} events at {EVENTS_PER_SECOND}/s, each alone, to 1 organization and then each \
         to one of {orgs} organizations at random; {ENDPOINTS} endpoints per organization, \
         sharing {RECEIVERS} receivers"
    ));
    Ok(figures)
}

/// One fresh Herald with `orgs` organizations, `events` published at the steady rate.
async fn half(
    bench: &Bench,
    orgs: usize,
    events: usize,
    figures: &mut Figures,
    label: &str,
) -> anyhow::Result<Steady> {
    let receivers: Vec<Receiver> = (0..RECEIVERS.min(orgs * ENDPOINTS))
        .map(|_| bench.receiver(Behaviour::Answer))
        .collect::<anyhow::Result<_>>()?;
    let urls: Vec<String> = receivers.iter().map(Receiver::url).collect();
    let mut session = Session::start(&bench.launch, HeraldSettings::default()).await?;
    let setup = Instant::now();
    let made = tenants(&session.api, "bench-tenants", orgs, move |n| {
        (0..ENDPOINTS)
            .map(|e| {
                let endpoint = n * ENDPOINTS + e;
                format!("{}?to=o{n}e{e}", urls[endpoint % urls.len()])
            })
            .collect()
    })
    .await?;
    figures.metric(Metric::new(
        format!("{label}setup ({orgs} organizations)"),
        setup.elapsed().as_secs_f64(),
        "s",
    ));
    let orgs: Arc<Vec<Org>> = Arc::new(made.into_iter().map(|tenant| tenant.org).collect());

    let expected = events * ENDPOINTS;
    let deadline = bench.scale.deadline(expected);
    let (sent, publish) = steady(&session.api, &orgs, events, deadline).await?;
    let arrived = session
        .wait_until(deadline, || distinct(&receivers) >= expected)
        .await?;
    if !arrived {
        figures.stopped_short(format!(
            "{label}only {} of {expected} deliveries arrived in time",
            distinct(&receivers)
        ));
    }
    let receipts: Vec<Duration> = receivers
        .iter()
        .flat_map(|receiver| receiver.arrivals())
        .filter_map(|(key, arrived)| {
            let event_id = key.split_once('?').map_or(key.as_str(), |(id, _)| id);
            let sent = sent.get(event_id)?;
            Some(arrived.saturating_duration_since(*sent))
        })
        .collect();
    figures.usage(label, &session.finish().await?);
    Ok(Steady {
        publish: Percentiles::of(publish),
        receipt: Percentiles::of(receipts),
    })
}

/// Publishes `events` at [`EVENTS_PER_SECOND`], open loop, each to an organization of `orgs`
/// picked at random; when each event's request was sent, and each request's time.
async fn steady(
    api: &Api,
    orgs: &Arc<Vec<Org>>,
    events: usize,
    deadline: Instant,
) -> anyhow::Result<(HashMap<String, Instant>, Vec<Duration>)> {
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / EVENTS_PER_SECOND));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..events {
        ticks.tick().await;
        let org = orgs[rand::thread_rng().gen_range(0..orgs.len())].clone();
        let api = api.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let id = api.publish(&org, n).await?;
            anyhow::Ok((id, sent, sent.elapsed()))
        });
    }
    let mut sent = HashMap::with_capacity(events);
    let mut latencies = Vec::with_capacity(events);
    tokio::time::timeout_at(deadline.into(), async {
        while let Some(task) = tasks.join_next().await {
            let (id, at, took) = task.context("a publishing task panicked")??;
            sent.insert(id, at);
            latencies.push(took);
        }
        anyhow::Ok(())
    })
    .await
    .context("publishing did not finish in time")??;
    Ok((sent, latencies))
}
