//! `backlog`: a receiver outage leaves a million deliveries due across 5,000 endpoints, then the
//! receivers come back and Herald drains them (issue 19).
//!
//! The backlog is published through the admin batch API, as a platform publishing through an
//! outage would: 100 organizations of 50 endpoints (the cap), 200 events each, so every event
//! fans out to its organization's 50 endpoints (1,000,000 deliveries at the default scale;
//! `--events` scales it, `--smoke` is 3,000 to 15 endpoints). While it is published, the
//! receivers hang (one HTTPS receiver per organization, its endpoints told apart by a tag in
//! the URL) and the Herald that takes the publishes runs with `HERALD_MAX_IN_FLIGHT=1` and
//! `HERALD_REQUEST_TIMEOUT_SECONDS=1`: its worker has one attempt at a time hanging, so nearly
//! every delivery stays due, as an outage leaves them. Then that Herald is stopped, the
//! receivers answer 200 from then on, and a Herald with the defaults starts on the same
//! database and drains it. The workload ends when every delivery has arrived.
//!
//! Figures: the drain's rate overall and in each tenth of it (by arrival order: the rate over
//! the time the tenth's deliveries took), the first and last tenth against the median one
//! (target ≥ 0.8: the rate must neither start low nor fall as the backlog shrinks); ordinary
//! API requests at 200 a second, their p99 while the first Herald is idle on the empty database
//! against their p99 during the drain (target ≤ 2×); and the `/metrics` scrape's time (median
//! of five) on the empty queue, on the full backlog, at the start of the drain and at its end.
//!
//! `backlog-roles` (PostgreSQL only) is the same but for who drains: node roles as
//! docs/operations.md describes them, an API node (`HERALD_ROLE=api`) that the ordinary
//! requests and scrapes go to, and a delivery node (`HERALD_ROLE=delivery`) on the same
//! database that sends. On this machine both share the two cores with PostgreSQL and the
//! receivers, so it shows what separating the API from delivery inside Herald buys, not what
//! cores of its own would. Both report the drain's CPU split between Herald, PostgreSQL's
//! backends and the harness, and how busy the whole machine was meanwhile.
//!
//! The scrapes are spaced as a scraper spaces them: both Heralds read the queue again once the
//! last reading is a second old (`HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS=1`, for a default of 5)
//! and the five scrapes are [`SCRAPE_SPACING`] apart, so each one starts a reading and none
//! arrives while the one before it still reads, as with Prometheus every 15 s against
//! readings every 5 s. Five scrapes back to back instead timed four of them beside the
//! reading the first one started (about 200 ms of a core at a million due), which no
//! scraper sees (BENCHMARKS.md, twelfth session).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api::{Api, Org};
use crate::cpu::{self, MachineTicks, PostgresCpu};
use crate::database::Backend;
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receiver};
use crate::report::{Metric, Target};
use crate::session::Session;
use crate::stats::{Percentiles, rate};

use super::probe::{PROBES_PER_SECOND, Prober, took_between};
use super::provision::{Tenant, tenants};
use super::{Bench, Figures, distinct};

/// Deliveries per endpoint (so 1,000,000 deliveries are 5,000 endpoints).
const PER_ENDPOINT: usize = 200;
/// Endpoints per organization: the cap.
const ENDPOINTS_PER_ORG: usize = 50;
/// Concurrent publishing clients.
const CLIENTS: usize = 4;
/// Scrapes timed at each point; their median is reported.
const SCRAPES: usize = 5;
/// Both Heralds' `HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS`: a scrape starts a reading once the last
/// is this old.
const GAUGES_MAX_AGE_SECONDS: u64 = 1;
/// Time between two timed scrapes: past [`GAUGES_MAX_AGE_SECONDS`], so each scrape starts a
/// reading, and longer than a reading of the full backlog takes, so none overlaps the next.
const SCRAPE_SPACING: Duration = Duration::from_millis(1_500);
/// How long ordinary requests are timed while Herald is idle.
const IDLE: Duration = Duration::from_secs(4);

/// Who drains the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drain {
    /// One Herald with the defaults, which answers the API too.
    OneNode,
    /// An API node, which the API requests go to, and a delivery node.
    Roles,
}

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench, drain: Drain) -> anyhow::Result<Figures> {
    if drain == Drain::Roles && bench.launch.backend != Backend::Postgres {
        let mut figures = Figures::default();
        figures.note("backlog-roles runs on PostgreSQL only: SQLite admits one Herald process");
        return Ok(figures);
    }
    let deliveries = bench.scale.grown(1_000_000, 3_000);
    let endpoints = (deliveries / PER_ENDPOINT).max(1);
    let orgs = endpoints.div_ceil(ENDPOINTS_PER_ORG);
    let receivers: Vec<Receiver> = (0..orgs)
        .map(|_| bench.receiver(Behaviour::Hang))
        .collect::<anyhow::Result<_>>()?;
    let urls: Vec<String> = receivers.iter().map(Receiver::url).collect();
    let scraped = HeraldSettings {
        queue_gauges_max_age_seconds: Some(GAUGES_MAX_AGE_SECONDS),
        ..HeraldSettings::default()
    };
    let loader = HeraldSettings {
        max_in_flight: Some(1),
        request_timeout_seconds: Some(1),
        ..scraped.clone()
    };
    let mut session = Session::start(&bench.launch, loader).await?;
    let mut figures = Figures::default();

    // Endpoint `e` (0-based over all organizations) belongs to organization e / 50.
    let tenants = tenants(&session.api, "bench-backlog", orgs, move |n| {
        let first = n * ENDPOINTS_PER_ORG;
        let last = ((n + 1) * ENDPOINTS_PER_ORG).min(endpoints);
        (first..last)
            .map(|e| format!("{}?to=e{e}", urls[n]))
            .collect()
    })
    .await?;
    let expected: usize = tenants
        .iter()
        .map(|t| t.endpoints.len() * PER_ENDPOINT)
        .sum();
    let probe_target = tenants.first().context("no organization was made")?;
    let (probe_org, probe_endpoint) = (probe_target.org.clone(), probe_target.endpoints[0].clone());

    let empty_scrape = scrape_median(&session.api).await?;
    let idle_from = Instant::now();
    let prober = Prober::start(&session.api, probe_org.clone(), probe_endpoint.clone())?;
    tokio::time::sleep(IDLE).await;
    let idle_probes = prober.stop().await?;

    let deadline = bench.scale.deadline(expected);
    let loading = Instant::now();
    publish_backlog(&session.api, &tenants, deadline).await?;
    let loaded_after = loading.elapsed();
    let full_scrape = scrape_median(&session.api).await?;

    // The outage ends: the receivers answer, and a Herald with the defaults drains.
    for receiver in &receivers {
        receiver.set_behaviour(Behaviour::Answer);
    }
    let restarting = Instant::now();
    let loader_usage = match drain {
        Drain::OneNode => session.restart(&bench.launch, scraped).await?,
        Drain::Roles => {
            let api_node = HeraldSettings {
                role: Some("api"),
                ..scraped.clone()
            };
            let usage = session.restart(&bench.launch, api_node).await?;
            let delivery_node = HeraldSettings {
                role: Some("delivery"),
                ..scraped
            };
            session.add_nodes(&bench.launch, &delivery_node, 1).await?;
            usage
        }
    };
    let cpu_before = DrainCpu::read(&session);
    let prober = Prober::start(&session.api, probe_org, probe_endpoint)?;
    let start_scrape = scrape_median(&session.api).await?;
    let deadline = bench.scale.deadline(expected);
    let drained = session
        .wait_until(deadline, || distinct(&receivers) >= expected)
        .await?;
    let drain_end = Instant::now();
    let drain_cpu = DrainCpu::read(&session).since(&cpu_before);
    let drain_probes = prober.stop().await?;
    let end_scrape = scrape_median(&session.api).await?;
    let delivery_node_rss = session.other_nodes_peak_rss_bytes();
    let usage = session.finish().await?;
    if !drained {
        figures.stopped_short(format!(
            "only {} of {expected} deliveries arrived in time",
            distinct(&receivers)
        ));
    }

    // First arrivals after the restart, in order; the few the loader's one hanging attempt
    // at a time saw arrived (and hung) before it.
    let mut arrivals: Vec<Instant> = receivers
        .iter()
        .flat_map(|receiver| receiver.arrivals().into_values())
        .filter(|arrived| *arrived >= restarting)
        .collect();
    arrivals.sort_unstable();
    let before_restart = distinct(&receivers) - arrivals.len();
    if let Some(last) = arrivals.last() {
        figures.metric(Metric::new(
            "drain rate",
            rate(arrivals.len(), *last - restarting),
            "deliveries/s",
        ));
    }
    let tenths = tenths(&arrivals);
    for (n, tenth) in tenths.iter().enumerate() {
        figures.metric(Metric::new(
            format!("drain rate, tenth {}", n + 1),
            *tenth,
            "deliveries/s",
        ));
    }
    if tenths.len() == 10 {
        let mut sorted = tenths.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let median = (sorted[4] + sorted[5]) / 2.0;
        figures.metric(
            Metric::new("first tenth / median tenth", tenths[0] / median, "ratio")
                .target(Target::AtLeast(0.8)),
        );
        figures.metric(
            Metric::new("last tenth / median tenth", tenths[9] / median, "ratio")
                .target(Target::AtLeast(0.8)),
        );
    }

    let idle = Percentiles::of(took_between(&idle_probes, idle_from, loading));
    let busy = Percentiles::of(took_between(&drain_probes, restarting, drain_end));
    let failed = drain_probes
        .iter()
        .chain(&idle_probes)
        .filter(|probe| probe.error.is_some())
        .count();
    if failed > 0 {
        figures.stopped_short(format!("{failed} ordinary API requests failed"));
    }
    if let Some(idle) = idle {
        figures.metric(Metric::new(
            "API p50 idle (empty database)",
            idle.p50_ms,
            "ms",
        ));
        figures.metric(Metric::new(
            "API p99 idle (empty database)",
            idle.p99_ms,
            "ms",
        ));
    }
    if let Some(busy) = busy {
        figures.metric(Metric::new("API p50 during the drain", busy.p50_ms, "ms"));
        figures.metric(Metric::new("API p99 during the drain", busy.p99_ms, "ms"));
    }
    if let (Some(idle), Some(busy)) = (idle, busy) {
        figures.metric(
            Metric::new(
                "API p99 during the drain / idle",
                busy.p99_ms / idle.p99_ms,
                "ratio",
            )
            .target(Target::AtMost(2.0)),
        );
    }
    figures.metric(Metric::new("scrape, empty queue", empty_scrape, "ms"));
    figures.metric(Metric::new("scrape, full backlog", full_scrape, "ms"));
    figures.metric(Metric::new("scrape, drain start", start_scrape, "ms"));
    figures.metric(Metric::new("scrape, drain end", end_scrape, "ms"));
    figures.metric(
        Metric::new(
            "scrape, full backlog / empty queue",
            full_scrape / empty_scrape,
            "ratio",
        )
        .target(Target::AtMost(2.0)),
    );
    figures.metric(Metric::new(
        "backlog published in",
        loaded_after.as_secs_f64(),
        "s",
    ));
    figures.usage("loader ", &loader_usage);
    match drain {
        Drain::OneNode => figures.usage("", &usage),
        Drain::Roles => {
            figures.usage("API node ", &usage);
            // The node that drains, held to the same memory bound as one that does both.
            if let Some(bytes) = delivery_node_rss {
                figures.metric(
                    Metric::new("delivery node peak RSS", bytes as f64 / 1e6, "MB")
                        .target(Target::Below(super::RSS_TARGET_MB)),
                );
            }
        }
    }
    drain_cpu.report(&mut figures, drain);
    figures.note(format!(
        "{expected} deliveries: {orgs} organizations, {endpoints} endpoints ({ENDPOINTS_PER_ORG} per \
         organization, {PER_ENDPOINT} events each, published in batches of {PER_ENDPOINT} by \
         {CLIENTS} clients) while the receivers hung and the publishing Herald had \
         HERALD_MAX_IN_FLIGHT=1; drained by {} with the defaults but the gauges' age; \
         {before_restart} deliveries arrived (and hung) before the restart and are left out of \
         the tenths",
        match drain {
            Drain::OneNode => "a Herald",
            Drain::Roles => "a delivery node beside an API node (which the requests and scrapes went to), both",
        }
    ));
    figures.note(format!(
        "ordinary requests (GET /v1/webhooks and GET /v1/webhooks/{{id}} alternately) at \
         {PROBES_PER_SECOND}/s, open loop: {} while idle before publishing, {} during the drain; \
         each scrape figure is the median of {SCRAPES} GET /metrics {:.1} s apart, each \
         starting a queue reading (HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS={GAUGES_MAX_AGE_SECONDS})",
        idle_probes.len(),
        drain_probes.len(),
        SCRAPE_SPACING.as_secs_f64()
    ));
    let total: usize = receivers.iter().map(Receiver::total).sum();
    figures.note(format!(
        "receivers got {total} requests for {} distinct deliveries",
        distinct(&receivers)
    ));
    Ok(figures)
}

/// CPU time so far, split by who used it, to give the drain's.
struct DrainCpu {
    /// The first node: the one Herald, or the API node.
    first_node: f64,
    /// Every node.
    herald: f64,
    /// This database's PostgreSQL backends (none on SQLite).
    postgres: Option<PostgresCpu>,
    /// The harness: receivers, prober, scrapes, these readings.
    harness: f64,
    machine: Option<MachineTicks>,
    at: Instant,
}

impl DrainCpu {
    fn read(session: &Session) -> Self {
        Self {
            first_node: session.cpu_seconds().unwrap_or(0.0),
            herald: session.nodes_cpu_seconds(),
            postgres: session.postgres_name().map(PostgresCpu::read),
            harness: cpu::harness_seconds(),
            machine: MachineTicks::now(),
            at: Instant::now(),
        }
    }

    /// What was used between `earlier` and this reading.
    fn since(&self, earlier: &Self) -> Spent {
        Spent {
            first_node: self.first_node - earlier.first_node,
            herald: self.herald - earlier.herald,
            postgres: self
                .postgres
                .as_ref()
                .zip(earlier.postgres.as_ref())
                .map(|(now, then)| now.since(then)),
            harness: self.harness - earlier.harness,
            machine_busy: self
                .machine
                .zip(earlier.machine)
                .and_then(|(now, then)| now.busy_since(then)),
            seconds: (self.at - earlier.at).as_secs_f64(),
        }
    }
}

/// The drain's CPU, by who used it.
struct Spent {
    first_node: f64,
    herald: f64,
    postgres: Option<f64>,
    harness: f64,
    machine_busy: Option<f64>,
    seconds: f64,
}

impl Spent {
    fn report(&self, figures: &mut Figures, drain: Drain) {
        let cores = |seconds: f64| seconds / self.seconds;
        figures.metric(Metric::new(
            "drain: Herald cores busy (all nodes)",
            cores(self.herald),
            "cores",
        ));
        if drain == Drain::Roles {
            figures.metric(Metric::new(
                "drain: API node cores busy",
                cores(self.first_node),
                "cores",
            ));
        }
        if let Some(postgres) = self.postgres {
            figures.metric(Metric::new(
                "drain: PostgreSQL backends cores busy",
                cores(postgres),
                "cores",
            ));
        }
        figures.metric(Metric::new(
            "drain: harness cores busy",
            cores(self.harness),
            "cores",
        ));
        if let Some(busy) = self.machine_busy {
            figures.metric(Metric::new("drain: machine busy", busy, "fraction"));
        }
    }
}

/// Publishes every tenant's [`PER_ENDPOINT`] events in one batch each, from [`CLIENTS`]
/// clients.
async fn publish_backlog(api: &Api, tenants: &[Tenant], deadline: Instant) -> anyhow::Result<()> {
    let orgs: Arc<Vec<Org>> = Arc::new(tenants.iter().map(|t| t.org.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (api, orgs, next) = (api.clone(), Arc::clone(&orgs), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(org) = orgs.get(n) else {
                    return anyhow::Ok(());
                };
                api.publish_batch(org, 0..PER_ENDPOINT, None).await?;
            }
        });
    }
    tokio::time::timeout_at(deadline.into(), async {
        while let Some(task) = tasks.join_next().await {
            task.context("a publishing client panicked")??;
        }
        anyhow::Ok(())
    })
    .await
    .context("publishing the backlog did not finish in time")?
}

/// The median time of [`SCRAPES`] `GET /metrics`, [`SCRAPE_SPACING`] apart, in milliseconds.
async fn scrape_median(api: &Api) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(SCRAPES);
    for scrape in 0..SCRAPES {
        if scrape > 0 {
            tokio::time::sleep(SCRAPE_SPACING).await;
        }
        times.push(api.scrape_time().await?);
    }
    Ok(Percentiles::of(times).map_or(0.0, |p| p.p50_ms))
}

/// The rate of each tenth of `arrivals` (sorted): a tenth's deliveries over the time from the
/// arrival before it (the first arrival, for the first tenth) to its last. Fewer than 20
/// arrivals give none.
fn tenths(arrivals: &[Instant]) -> Vec<f64> {
    if arrivals.len() < 20 {
        return Vec::new();
    }
    let bound = |k: usize| arrivals[(k * arrivals.len() / 10).saturating_sub(1)];
    (1..=10)
        .map(|k| {
            let (from, to) = (bound(k - 1), bound(k));
            let count = k * arrivals.len() / 10 - (k - 1) * arrivals.len() / 10;
            count as f64 / (to - from).as_secs_f64().max(1e-6)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_are_rates_over_each_tenth_of_the_arrivals() {
        let start = Instant::now();
        // 100 arrivals 10 ms apart, then 100 more 20 ms apart: the first five tenths at
        // 100/s, the last five at 50/s.
        let arrivals: Vec<Instant> = (0..200)
            .map(|n| {
                let ms = if n < 100 { n * 10 } else { 990 + (n - 99) * 20 };
                start + Duration::from_millis(ms)
            })
            .collect();
        let rates = tenths(&arrivals);
        assert_eq!(rates.len(), 10);
        assert!((rates[1] - 100.0).abs() < 1.0, "{rates:?}");
        assert!((rates[8] - 50.0).abs() < 1.0, "{rates:?}");
        assert!(tenths(&arrivals[..10]).is_empty());
    }
}
