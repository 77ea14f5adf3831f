//! `history`: the `throughput` workload and the deliveries feed on a database that already
//! holds 10,000,000 attempt records with their events and deliveries, against the same on an
//! empty database (issue 19).
//!
//! Two fresh Heralds, each with 100 history organizations of one endpoint (2 below the
//! default scale) and the measured organization with one endpoint, all made through the API. The second then
//! stops while 10,000,000 rows (`--events` scales them, `--smoke` writes 5,000) are written
//! into its database by SQL ([`crate::preload`]), spread evenly over the history
//! organizations (100,000 attempts each), and starts again. In each Herald, the measured
//! organization then receives `throughput`'s events (20,000, batches of 500 from 4 clients),
//! and the feed (`GET /v1/webhooks/deliveries`) is read 100 times with each filter, one request
//! at a time: for the measured organization (its own 20,000 records in a table of 10,000,000:
//! what the table's size costs) and once for one history organization (100,000 records:
//! what an organization's own history costs; `total` is a true count of the matching records).
//!
//! Then the history Herald restarts with a retention of 10 days, so the purge it starts with
//! deletes the older half of the history (batches of 1,000 rows a transaction) while the
//! measured organization receives `throughput`'s events again and its unfiltered feed is read
//! as before: what a purge costs the writer and the readers.
//!
//! Figures: both delivery rates and history / empty (target ≥ 0.5); per filter, both feed
//! p99s and history / empty (target ≤ 2) for the measured organization; the history
//! organization's time per filter; how long the preload took; while purging, the delivery
//! rate and the unfiltered feed's p99 against the empty database's (the same targets), and
//! the history organization's records before and after.

use std::time::Instant;

use anyhow::Context as _;

use crate::api::{Api, MAX_BATCH_SIZE, Org, string_field};
use crate::herald::HeraldSettings;
use crate::preload::{self, Target as HistoryTarget};
use crate::receiver::{Behaviour, Receiver};
use crate::report::{Metric, Target};
use crate::session::Session;
use crate::stats::{Percentiles, rate};

use super::delivery::BULK_CLIENTS;
use super::provision::tenants;
use super::{Bench, Figures, Publishing, distinct, publish};

/// Feed requests per filter for the measured organization: enough that the p99 is not simply
/// the slowest request (with 20 it was, and one request that met a busy moment decided a
/// filter's ratio).
const FEED_READS: usize = 100;
/// Feed requests per filter for the history organization: one, as on SQLite a filtered read
/// of an organization with 50,000 records took 15–43 s each on this machine (BENCHMARKS.md).
const HISTORY_READS: usize = 1;

/// What one half measured.
struct Half {
    rate: f64,
    /// Per filter: the measured organization's feed times, then the history organization's.
    feed: Vec<(&'static str, Option<Percentiles>, Option<Percentiles>)>,
    /// `total` of the history organization's unfiltered feed.
    history_total: u64,
    /// With history: the same again while the purge deletes the older half of it.
    purging: Option<Purging>,
}

/// What the history half measured while its purge ran.
struct Purging {
    rate: f64,
    unfiltered_feed: Option<Percentiles>,
    /// `total` of the history organization's feed when the publish began and once the
    /// measurement ended.
    history_total_before: u64,
    history_total_after: u64,
}

/// The retention the history Herald restarts with: the preload spreads its rows over the 20
/// days before the run, so about half of them are past it.
const PURGE_RETENTION_DAYS: u32 = 10;

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let rows = bench.scale.grown(10_000_000, 5_000) as u64;
    // 100 history organizations at the default scale and above, 2 below it: a smaller run
    // keeps each organization's own history large, which is what its feed's count pays for.
    let history_orgs = if bench.scale.grown(100, 2) >= 100 {
        100
    } else {
        2
    };
    let mut figures = Figures::default();
    let empty = half(bench, history_orgs, 0, &mut figures).await?;
    let full = half(bench, history_orgs, rows, &mut figures).await?;

    figures.metric(Metric::new(
        "delivery rate, empty",
        empty.rate,
        "deliveries/s",
    ));
    figures.metric(Metric::new(
        "delivery rate, history",
        full.rate,
        "deliveries/s",
    ));
    figures.metric(
        Metric::new(
            "delivery rate, history / empty",
            full.rate / empty.rate,
            "ratio",
        )
        .target(Target::AtLeast(0.5)),
    );
    for ((filter, empty_own, _), (_, full_own, full_history)) in empty.feed.iter().zip(&full.feed) {
        if let (Some(empty_own), Some(full_own)) = (empty_own, full_own) {
            figures.metric(Metric::new(
                format!("feed {filter} p99, empty"),
                empty_own.p99_ms,
                "ms",
            ));
            figures.metric(Metric::new(
                format!("feed {filter} p99, history"),
                full_own.p99_ms,
                "ms",
            ));
            figures.metric(
                Metric::new(
                    format!("feed {filter} p99, history / empty"),
                    full_own.p99_ms / empty_own.p99_ms,
                    "ratio",
                )
                .target(Target::AtMost(2.0)),
            );
        }
        if let Some(history) = full_history {
            figures.metric(Metric::new(
                format!("feed {filter}, a history organization"),
                history.p50_ms,
                "ms",
            ));
        }
    }
    if let (Some(purging), Some((_, Some(empty_unfiltered), _))) =
        (&full.purging, empty.feed.first())
    {
        figures.metric(Metric::new(
            "delivery rate, history while purging",
            purging.rate,
            "deliveries/s",
        ));
        figures.metric(
            Metric::new(
                "delivery rate, history while purging / empty",
                purging.rate / empty.rate,
                "ratio",
            )
            .target(Target::AtLeast(0.5)),
        );
        if let Some(unfiltered) = &purging.unfiltered_feed {
            figures.metric(Metric::new(
                "feed unfiltered p99, history while purging",
                unfiltered.p99_ms,
                "ms",
            ));
            figures.metric(
                Metric::new(
                    "feed unfiltered p99, history while purging / empty",
                    unfiltered.p99_ms / empty_unfiltered.p99_ms,
                    "ratio",
                )
                .target(Target::AtMost(2.0)),
            );
        }
        figures.note(format!(
            "while purging (retention {PURGE_RETENTION_DAYS} days; a fresh organization \
             measured): the history organization's records were {} before the restart, {} \
             when the publish began and {} after the feed reads",
            full.history_total, purging.history_total_before, purging.history_total_after
        ));
    }
    figures.note(format!(
        "{rows} events, deliveries and attempts written by SQL over {history_orgs} history \
         organizations ({} each; their feed's total read {}); the measured organization got \
         {} events in batches of {MAX_BATCH_SIZE} from {BULK_CLIENTS} clients to 1 endpoint; \
         feed read {FEED_READS} times per filter for it, {HISTORY_READS} for a history \
         organization, one request at a time, limit 50",
        rows / history_orgs as u64,
        full.history_total,
        bench.scale.events
    ));
    Ok(figures)
}

/// One fresh Herald; `rows` of history preloaded when not zero.
async fn half(
    bench: &Bench,
    history_orgs: usize,
    rows: u64,
    figures: &mut Figures,
) -> anyhow::Result<Half> {
    let label = if rows == 0 { "empty: " } else { "history: " };
    let receiver = bench.receiver(Behaviour::Answer)?;
    let history_receiver = bench.receiver(Behaviour::Answer)?;
    let mut session = Session::start(&bench.launch, HeraldSettings::default()).await?;
    let history_url = history_receiver.url();
    let history = tenants(&session.api, "bench-history", history_orgs, move |_| {
        vec![history_url.clone()]
    })
    .await?;
    let targets: Vec<HistoryTarget> = history
        .iter()
        .map(|tenant| HistoryTarget {
            org_id: tenant.org.id.clone(),
            endpoint_id: tenant.endpoints[0].clone(),
            url: history_receiver.url(),
        })
        .collect();
    if rows > 0 {
        let (_, took) = session
            .while_stopped(&bench.launch, HeraldSettings::default(), |url| async move {
                preload::history(&url, &targets, rows).await
            })
            .await?;
        figures.metric(Metric::new(
            format!("{label}preload of {rows} rows"),
            took.as_secs_f64(),
            "s",
        ));
    }
    let api = session.api.clone();
    let org = api.create_org("bench-history-measured").await?;
    let endpoint = api.create_endpoint(&org, &receiver.url()).await?;
    let since = string_field(&api.get_endpoint(&org, &endpoint).await?, "created_at")?;

    let (delivery_rate, publishing) =
        deliver_throughput(bench, &mut session, &org, &receiver, label, figures).await?;
    let an_event = publishing
        .sent
        .keys()
        .next()
        .context("no event was published")?
        .clone();

    let history_org = &history[0];
    let filters = filters(&endpoint, &history_org.endpoints[0], &an_event, &since);
    let mut feed = Vec::with_capacity(filters.len());
    for (name, own, theirs) in &filters {
        let own = read_feed(&api, &org, own, FEED_READS).await?;
        let theirs = read_feed(&api, &history_org.org, theirs, HISTORY_READS).await?;
        feed.push((*name, own, theirs));
    }
    let history_total = feed_total(&api, &history_org.org).await?;
    let purging = match rows {
        0 => None,
        _ => Some(while_purging(bench, &mut session, &history_org.org, figures).await?),
    };
    let label = if rows == 0 {
        label
    } else {
        "history, purging: "
    };
    figures.usage(label, &session.finish().await?);
    Ok(Half {
        rate: delivery_rate,
        feed,
        history_total,
        purging,
    })
}

/// Restarts `session`'s Herald with a retention of [`PURGE_RETENTION_DAYS`], so its start-up
/// purge deletes the older half of the history, and meanwhile measures `throughput`'s events
/// and the unfiltered feed for an organization made for it (as many records as the other
/// halves' measured organization, none of them expired). `history_org`'s records before the
/// publish and after the feed reads show that the purge ran throughout.
async fn while_purging(
    bench: &Bench,
    session: &mut Session,
    history_org: &Org,
    figures: &mut Figures,
) -> anyhow::Result<Purging> {
    let settings = HeraldSettings {
        retention_days: Some(PURGE_RETENTION_DAYS),
        ..HeraldSettings::default()
    };
    let (usage, ()) = session
        .while_stopped(&bench.launch, settings, |_| async { Ok(()) })
        .await?;
    figures.usage("history: ", &usage);
    let api = session.api.clone();
    let receiver = bench.receiver(Behaviour::Answer)?;
    let org = api.create_org("bench-history-purging").await?;
    api.create_endpoint(&org, &receiver.url()).await?;
    let history_total_before = feed_total(&api, history_org).await?;
    let (rate, _) =
        deliver_throughput(bench, session, &org, &receiver, "while purging: ", figures).await?;
    let unfiltered_feed = read_feed(&api, &org, "limit=50", FEED_READS).await?;
    Ok(Purging {
        rate,
        unfiltered_feed,
        history_total_before,
        history_total_after: feed_total(&api, history_org).await?,
    })
}

/// Publishes `throughput`'s events to `org`, whose one endpoint is `receiver`, and waits for
/// them (a shortfall is noted with `label`): the delivery rate, and what was published.
async fn deliver_throughput(
    bench: &Bench,
    session: &mut Session,
    org: &Org,
    receiver: &Receiver,
    label: &str,
    figures: &mut Figures,
) -> anyhow::Result<(f64, Publishing)> {
    let events = bench.scale.events;
    let deadline = bench.scale.deadline(events);
    let publishing = publish(
        &session.api,
        org,
        0..events,
        BULK_CLIENTS,
        MAX_BATCH_SIZE,
        deadline,
    )
    .await?;
    let receivers = std::slice::from_ref(receiver);
    let arrived = session
        .wait_until(deadline, || distinct(receivers) >= events)
        .await?;
    if !arrived {
        figures.stopped_short(format!(
            "{label}only {} of {events} deliveries arrived in time",
            receiver.distinct()
        ));
    }
    let last = receiver.arrivals().into_values().max();
    let delivery_rate = last.map_or(0.0, |last| {
        rate(receiver.distinct(), last - publishing.started)
    });
    Ok((delivery_rate, publishing))
}

/// `total` of `org`'s unfiltered feed.
async fn feed_total(api: &Api, org: &Org) -> anyhow::Result<u64> {
    Ok(api.list_deliveries(org, "limit=50").await?["meta"]["total"]
        .as_u64()
        .unwrap_or(0))
}

/// Each filter of the feed, by name, with its query for the measured organization (its
/// endpoint, one of its events, its endpoint's creation time) and for a history organization.
fn filters(
    endpoint: &str,
    history_endpoint: &str,
    event_id: &str,
    since: &str,
) -> Vec<(&'static str, String, String)> {
    let since = since.replace('+', "%2B");
    let both = |name, query: String| (name, query.clone(), query);
    vec![
        both("unfiltered", "limit=50".to_owned()),
        (
            "endpoint_id",
            format!("endpoint_id={endpoint}"),
            format!("endpoint_id={history_endpoint}"),
        ),
        both(
            "event_type",
            format!("event_type={}", crate::api::EVENT_TYPE),
        ),
        both("outcome=success", "outcome=success".to_owned()),
        both("outcome=dead", "outcome=dead".to_owned()),
        both("outcome=retry", "outcome=retry".to_owned()),
        both("event_id", format!("event_id={event_id}")),
        both("since", format!("since={since}")),
        both("until", format!("until={since}")),
        both("http_status_min=500", "http_status_min=500".to_owned()),
        both("http_status_max=299", "http_status_max=299".to_owned()),
    ]
}

/// Reads the feed with `query` `reads` times, one at a time; their times.
async fn read_feed(
    api: &Api,
    org: &Org,
    query: &str,
    reads: usize,
) -> anyhow::Result<Option<Percentiles>> {
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads {
        let started = Instant::now();
        api.list_deliveries(org, query)
            .await
            .with_context(|| format!("the feed with {query}"))?;
        times.push(started.elapsed());
    }
    Ok(Percentiles::of(times))
}
