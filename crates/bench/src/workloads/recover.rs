//! `recover`: 20,000 dead deliveries recovered to a healthy receiver (issue 13).
//!
//! Herald runs with `HERALD_RETRY_SCHEDULE=10ms` (two attempts) and
//! `HERALD_AUTO_DISABLE_AFTER=30d` (so the endpoint stays active however long it fails). The
//! endpoint first points at a path its receiver answers 404, so every delivery dies within a
//! few milliseconds of its publish; once `/metrics` counts them all dead, the endpoint is
//! pointed at the receiver's healthy path and `POST /v1/webhooks/{id}/recover` is sent with
//! `since` = the endpoint's `created_at`. The workload ends when every dead delivery has
//! arrived, each under an event id that was published.
//!
//! Meanwhile ordinary API requests (the endpoint list and the endpoint, alternately) are sent
//! at a steady 200 a second, open loop, from just after the switch to the last receipt: first
//! while Herald is idle (1,000 requests), then through the recovery. The figures are the
//! recovery's rate (from the recover request to the last receipt) against the throughput
//! workload's in the same run, and the API's p99 during the recovery against its p99 while
//! idle: each the nearest-rank 99th percentile of the answered requests sent in its window,
//! timed from just before sending to the end of the answer's body.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::api::{Api, MAX_BATCH_SIZE, Org, string_field};
use crate::herald::HeraldSettings;
use crate::receiver::Behaviour;
use crate::report::{Metric, Target};
use crate::session::Session;
use crate::stats::{Percentiles, milliseconds, rate};

use super::delivery::BULK_CLIENTS;
use super::probe::{PROBES_PER_SECOND, Probe, Prober};
use super::{Bench, Figures, protocol_note, publish};

/// Herald's retry schedule here: one retry after 10 ms, so a failing delivery is dead after
/// its second attempt.
const RETRY_SCHEDULE: &str = "10ms";
/// Herald's auto-disable setting here: far beyond the run, so the failing endpoint stays active
/// (a recovery of an inactive endpoint is refused).
const AUTO_DISABLE_AFTER: &str = "30d";
/// Appended to the receiver's healthy URL: a path it has no route for, so it answers 404.
const FAILING_SUFFIX: &str = "-down";
/// Herald's count of deliveries whose last attempt failed.
const DEAD_SERIES: &str = r#"herald_delivery_attempts_total{outcome="dead"}"#;
/// How often `/metrics` is read while deliveries die.
const METRICS_POLL: Duration = Duration::from_millis(50);
/// How often the recovery's status is read while it runs.
const STATUS_POLL: Duration = Duration::from_millis(100);

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let events = bench.scale.events;
    let receiver = bench.receiver(Behaviour::Answer)?;
    let settings = HeraldSettings {
        retry_schedule: Some(RETRY_SCHEDULE),
        auto_disable_after: Some(AUTO_DISABLE_AFTER),
        ..HeraldSettings::default()
    };
    let mut session = Session::start(&bench.launch, settings).await?;
    let api = session.api.clone();
    let org = api.create_org("bench-recover").await?;
    let healthy_url = receiver.url();
    let endpoint = api
        .create_endpoint(&org, &format!("{healthy_url}{FAILING_SUFFIX}"))
        .await?;
    // Herald's own clock, before the first publish.
    let since = string_field(&api.get_endpoint(&org, &endpoint).await?, "created_at")?;
    let mut figures = Figures::default();

    // Every delivery fails twice and dies: two attempts each.
    let deadline = bench.scale.deadline(2 * events);
    let publishing = publish(
        &api,
        &org,
        0..events,
        BULK_CLIENTS,
        MAX_BATCH_SIZE,
        deadline,
    )
    .await?;
    let dead = await_dead(&mut session, events, deadline).await?;
    let dead_after = publishing.started.elapsed();
    if dead < events {
        figures.stopped_short(format!(
            "only {dead} of {events} deliveries were dead in time"
        ));
        figures.usage("", &session.finish().await?);
        return Ok(figures);
    }
    figures.metric(Metric::new(
        "all dead after first publish",
        dead_after.as_secs_f64(),
        "s",
    ));
    api.update_endpoint_url(&org, &endpoint, &healthy_url)
        .await?;

    // The API idle, then through the recovery.
    let prober = Prober::start(&api, org.clone(), endpoint.clone())?;
    let idle_requests = bench.scale.idle_requests();
    tokio::time::sleep(Duration::from_millis(
        1000 * idle_requests as u64 / PROBES_PER_SECOND,
    ))
    .await;
    let deadline = bench.scale.deadline(dead);
    let requested = Instant::now();
    let answer = api.recover(&org, &endpoint, &since).await?;
    let answered = Instant::now();
    let recovery_id = string_field(&answer, "recovery_id")?;
    let matched = count_field(&answer, "matched")?;
    let status = tokio::spawn(await_done(
        api.clone(),
        org.clone(),
        recovery_id.clone(),
        deadline,
    ));
    let arrived = session
        .wait_until(deadline, || receiver.distinct() >= dead)
        .await?;
    let probes = prober.stop().await?;
    let (done_at, recovery) = match tokio::time::timeout_at(deadline.into(), status).await {
        Ok(joined) => joined.context("the recovery status task panicked")??,
        Err(_) => (None, Value::Null),
    };

    let arrivals = receiver.arrivals();
    let delivered = arrivals.len();
    let first = arrivals.values().min().copied();
    let last = arrivals.values().max().copied();
    let foreign = arrivals
        .keys()
        .filter(|id| !publishing.sent.contains_key(*id))
        .count();
    if !arrived {
        figures.stopped_short(format!(
            "only {delivered} of {dead} recovered deliveries arrived in time"
        ));
    }
    if matched != dead {
        figures.stopped_short(format!(
            "the recovery matched {matched} of {dead} dead deliveries"
        ));
    }
    if foreign > 0 {
        figures.stopped_short(format!(
            "{foreign} deliveries arrived under event ids that were never published"
        ));
    }
    let failed: Vec<&Probe> = probes
        .iter()
        .filter(|probe| probe.error.is_some())
        .collect();
    if let Some(probe) = failed.first() {
        figures.stopped_short(format!(
            "{} ordinary API requests failed, the first: {}",
            failed.len(),
            probe.error.as_deref().unwrap_or_default()
        ));
    }

    let recovery_rate = rate(
        delivered,
        last.unwrap_or(answered)
            .saturating_duration_since(requested),
    );
    figures.metric(Metric::new("recovery rate", recovery_rate, "deliveries/s"));
    match &bench.throughput {
        Some(reference) => {
            figures.metric(
                Metric::new(
                    "recovery rate / throughput rate",
                    recovery_rate / reference.deliveries_per_second,
                    "ratio",
                )
                .target(Target::AtLeast(0.8)),
            );
            figures.note(format!(
                "the throughput workload of this run delivered {:.0}/s",
                reference.deliveries_per_second
            ));
        }
        None => figures.note("the throughput workload left no rate to compare with"),
    }
    figures.metric(Metric::new(
        "recover request",
        milliseconds(answered - requested),
        "ms",
    ));
    if let Some(first) = first {
        figures.metric(Metric::new(
            "first receipt after request",
            milliseconds(first.saturating_duration_since(requested)),
            "ms",
        ));
    }
    if let Some(done_at) = done_at {
        figures.metric(Metric::new(
            "recovery done after request",
            (done_at - requested).as_secs_f64(),
            "s",
        ));
    }

    let end = last.unwrap_or(answered);
    let latencies = |during: bool| -> Vec<Duration> {
        probes
            .iter()
            .filter(|probe| probe.error.is_none())
            .filter(|probe| {
                if during {
                    probe.sent >= requested && probe.sent <= end
                } else {
                    probe.sent < requested
                }
            })
            .map(|probe| probe.took)
            .collect()
    };
    let (idle, busy) = (latencies(false), latencies(true));
    let (idle_count, busy_count) = (idle.len(), busy.len());
    let (idle, busy) = (Percentiles::of(idle), Percentiles::of(busy));
    if let Some(idle) = idle {
        figures.metric(Metric::new("API p50 idle", idle.p50_ms, "ms"));
        figures.metric(Metric::new("API p99 idle", idle.p99_ms, "ms"));
    }
    if let Some(busy) = busy {
        figures.metric(Metric::new("API p50 during recovery", busy.p50_ms, "ms"));
        figures.metric(Metric::new("API p99 during recovery", busy.p99_ms, "ms"));
    }
    if let (Some(idle), Some(busy)) = (idle, busy) {
        figures.metric(
            Metric::new(
                "API p99 during recovery / idle",
                busy.p99_ms / idle.p99_ms,
                "ratio",
            )
            .target(Target::AtMost(2.0)),
        );
    }
    figures.usage("", &session.finish().await?);

    figures.note(format!(
        "{events} events published in batches of {MAX_BATCH_SIZE} by {BULK_CLIENTS} clients to \
         1 endpoint whose receiver path answered 404, with HERALD_RETRY_SCHEDULE={RETRY_SCHEDULE} \
         (2 attempts) and HERALD_AUTO_DISABLE_AFTER={AUTO_DISABLE_AFTER}; once all {dead} were \
         dead, the endpoint pointed at the healthy path and recovered since its created_at"
    ));
    figures.note(format!(
        "recovery {recovery_id}: matched {matched}, enqueued {}, status {}; the receiver got {} \
         requests for {delivered} events",
        recovery["enqueued"],
        recovery["status"],
        receiver.total()
    ));
    figures.note(format!(
        "ordinary requests (GET /v1/webhooks and GET /v1/webhooks/{{id}} alternately) at \
         {PROBES_PER_SECOND}/s, open loop: {idle_count} while idle, {busy_count} from the recover \
         request to the last receipt"
    ));
    figures.note(protocol_note(std::slice::from_ref(&receiver)));
    Ok(figures)
}

/// Reads `/metrics` until `expected` deliveries are dead or `deadline` passes; how many are.
async fn await_dead(
    session: &mut Session,
    expected: usize,
    deadline: Instant,
) -> anyhow::Result<usize> {
    loop {
        let dead = session.api.metric(DEAD_SERIES).await? as usize;
        if dead >= expected || Instant::now() >= deadline {
            return Ok(dead);
        }
        session.check_running()?;
        tokio::time::sleep(METRICS_POLL).await;
    }
}

/// Reads the recovery until it is `done` (when that was first seen, and the recovery) or
/// `deadline` passes (no time, and the last reading).
async fn await_done(
    api: Api,
    org: Org,
    recovery_id: String,
    deadline: Instant,
) -> anyhow::Result<(Option<Instant>, Value)> {
    loop {
        let recovery = api.recovery(&org, &recovery_id).await?;
        if recovery["status"] == "done" {
            return Ok((Some(Instant::now()), recovery));
        }
        if Instant::now() >= deadline {
            return Ok((None, recovery));
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

fn count_field(value: &Value, name: &str) -> anyhow::Result<usize> {
    value[name]
        .as_u64()
        .and_then(|count| usize::try_from(count).ok())
        .with_context(|| format!("`{name}` is missing from {value}"))
}
