//! `ordered`: deliveries with ordering keys (issue 14).
//!
//! Three times, each on a fresh Herald with its defaults and one endpoint whose receiver
//! answers 200 (at once, but for the last) and records every request's `X-AmCore-Event-Id`,
//! `X-AmCore-Ordering-Key` and `X-AmCore-Sequence` in the order they arrived:
//!
//! - **100 keys**: 20,000 events, event `n` with the key `key-{n % 100}`, published like
//!   `throughput`'s (batches of 500 from 4 clients). Herald may have one delivery of each key in
//!   flight, 100 in all, against the endpoint's 16 slots, so the figure (deliveries per second
//!   from the first publish to the last receipt) is held to half of `throughput`'s in the same
//!   run.
//! - **one key**: 1,000 events (the scale / 20, at least 50) under one key, published the same
//!   way. Only one is ever in flight: between two receipts lie the receiver's round trip and
//!   what Herald does between a response and the next request (it holds the next few dozen
//!   of the key claimed, and claims more ahead). The mean time from receipt to receipt is set
//!   beside one receiver round trip: Herald's own mean attempt time
//!   (`herald_delivery_attempt_duration_seconds_sum / _count`, in whole milliseconds) and the
//!   harness's client sending the same request to a fresh receiver that answers the same way,
//!   one at a time, both from a process of its own (as Herald's requests come) and from the
//!   receiver's process. Also the receipt-to-receipt p50/p99/max, the share of the run spent
//!   in stalls (gaps longer than the median by over 1 ms: a claim waited for, a publishing
//!   transaction), and the mean over the receipts after the last publish was answered.
//! - **one key, slow receiver**: the same against a receiver that answers after 2 ms, as one
//!   across a network would. On loopback a round trip is a fifth of a millisecond and what
//!   Herald adds per event (the response's handling, the next request's framing, waking the
//!   tasks between) is a visible share of it; here each event should cost about one round
//!   trip.
//!
//! In each, per key the receipts must come in publish order: consecutive receipts of a key in
//! rising sequence, and never against an order the harness knows (the same batch, or a batch
//! answered before the other was sent). Any violation, a wrong or missing key or sequence, or
//! sequence numbers other than 1..=N makes the workload `INCOMPLETE`.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use std::time::{Duration, Instant};

use crate::api::{MAX_BATCH_SIZE, ordering_key};
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Receipt, Receiver, Sample};
use crate::report::{Metric, Target};
use crate::session::{Session, Usage};
use crate::stats::{Percentiles, milliseconds, rate};

use super::ceiling::{client_trusting, direct_client, post, sample_headers};
use super::delivery::BULK_CLIENTS;
use super::publish::{Request, publish_with_keys};
use super::{Bench, Figures, protocol_note};

/// Ordering keys of the first half.
const KEYS: usize = 100;
/// How long the slow receiver of the last half takes to answer: a round trip across a
/// network rather than loopback.
const SLOW_ANSWER: Duration = Duration::from_millis(2);
/// Requests the harness's client sends one at a time to time one receiver round trip, after
/// [`WARM_UP`] untimed ones.
const ROUND_TRIPS: usize = 200;
/// Untimed requests first: the connection and the TLS handshake.
const WARM_UP: usize = 10;
/// Herald's attempt-time histogram: total seconds and attempts.
const ATTEMPT_SECONDS_SUM: &str = "herald_delivery_attempt_duration_seconds_sum";
const ATTEMPT_SECONDS_COUNT: &str = "herald_delivery_attempt_duration_seconds_count";

/// What one half measured.
struct KeyedRun {
    events: usize,
    delivered: usize,
    /// `delivered` over the first publish to the last receipt.
    deliveries_per_second: f64,
    publish_seconds: f64,
    /// From the end of publishing to the last receipt.
    tail_seconds: f64,
    /// From the first receipt to the last, over the receipts between them.
    receipt_interval: Option<Duration>,
    /// How the time between consecutive receipts is spread.
    receipt_gaps: Option<ReceiptGaps>,
    /// [`KeyedRun::receipt_interval`] over the receipts that came after the last publish was
    /// answered: the run's pace with no publishing transaction beside it.
    interval_after_publishing: Option<Duration>,
    latency: Option<Percentiles>,
    /// Herald's mean attempt time, from `/metrics`.
    attempt_mean_ms: Option<f64>,
    order: OrderCheck,
    usage: Usage,
    sample: Option<Sample>,
    protocol: String,
}

/// The mean time between consecutive `sorted` receipts; `None` with fewer than two.
fn mean_gap(sorted: &[Instant]) -> Option<Duration> {
    match sorted {
        [first, .., last] => {
            Some((*last - *first) / u32::try_from(sorted.len() - 1).unwrap_or(u32::MAX))
        }
        _ => None,
    }
}

/// A gap between two receipts longer than their median by more than this is a stall: at a
/// loopback receiver's pace several round trips with nothing sent (a claim waited for, or a
/// publishing transaction).
const STALL_MS: u64 = 1;

/// The time between consecutive receipts (of any events), sorted by arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ReceiptGaps {
    percentiles: Percentiles,
    /// The stalls ([`STALL_MS`]), summed, over the first receipt to the last.
    stalled_share: f64,
}

impl ReceiptGaps {
    /// `None` with fewer than two receipts.
    fn of(mut arrivals: Vec<Instant>) -> Option<Self> {
        arrivals.sort_unstable();
        let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        let span: Duration = gaps.iter().sum();
        let percentiles = Percentiles::of(gaps.clone())?;
        let stall =
            Duration::from_secs_f64(percentiles.p50_ms / 1000.0) + Duration::from_millis(STALL_MS);
        let stalled: Duration = gaps.iter().filter(|gap| **gap > stall).sum();
        let stalled_share = match span.is_zero() {
            true => 0.0,
            false => stalled.as_secs_f64() / span.as_secs_f64(),
        };
        Some(Self {
            percentiles,
            stalled_share,
        })
    }
}

/// Whether receipts came in publish order, key by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct OrderCheck {
    /// First receipts of published events, checked.
    checked: usize,
    /// Receipts of an event that had arrived before.
    repeats: usize,
    /// Receipts under event ids that were never published.
    foreign: usize,
    /// Receipts without the key their event was published with.
    wrong_key: usize,
    /// Receipts without a sequence number.
    no_sequence: usize,
    /// Sequence numbers repeated or outside 1..=N (N receipts checked).
    bad_sequences: usize,
    /// Per key, consecutive receipts whose sequence numbers did not rise.
    against_sequence: usize,
    /// Per key, pairs of receipts in the opposite order of one the harness knows: the same
    /// batch in a different order, or a batch answered before the other was sent.
    against_publish: usize,
}

/// Runs the workload.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();

    let events = bench.scale.events;
    let many = keyed_run(
        bench,
        "bench-ordered",
        (events, KEYS),
        Behaviour::Answer,
        bench.scale.deadline(events),
    )
    .await?;
    add_order(&mut figures, "", &many);
    figures.metric(Metric::new(
        "delivery rate",
        many.deliveries_per_second,
        "deliveries/s",
    ));
    match &bench.throughput {
        Some(reference) => {
            figures.metric(
                Metric::new(
                    "delivery rate / throughput rate",
                    many.deliveries_per_second / reference.deliveries_per_second,
                    "ratio",
                )
                .target(Target::AtLeast(0.5)),
            );
            figures.note(format!(
                "the throughput workload of this run delivered {:.0}/s",
                reference.deliveries_per_second
            ));
        }
        None => figures.note("the throughput workload left no rate to compare with"),
    }
    figures.metric(Metric::new("publishing took", many.publish_seconds, "s"));
    figures.metric(Metric::new(
        "last receipt after publishing",
        many.tail_seconds,
        "s",
    ));
    if let Some(latency) = many.latency {
        figures.metric(Metric::new("publish to receipt p50", latency.p50_ms, "ms"));
        figures.metric(Metric::new("publish to receipt p99", latency.p99_ms, "ms"));
    }
    if let Some(mean) = many.attempt_mean_ms {
        figures.metric(Metric::new("herald attempt time, mean", mean, "ms"));
    }
    figures.usage("", &many.usage);

    // One key: one delivery at a time, to a receiver that answers at once (the receiver's
    // round trip is then a loopback's, a fifth of a millisecond, and what Herald adds per
    // event shows), and to one that answers after [`SLOW_ANSWER`], as a receiver across a
    // network would: there each event should cost about one round trip.
    let one = one_key(bench, &mut figures, "one key: ", Behaviour::Answer).await?;
    let slow_label = format!(
        "one key, receiver answering after {} ms: ",
        SLOW_ANSWER.as_millis()
    );
    let slow = one_key(
        bench,
        &mut figures,
        &slow_label,
        Behaviour::AnswerAfter(SLOW_ANSWER),
    )
    .await?;

    figures.note(format!(
        "{} events over {KEYS} ordering keys (event n: key-{{n % {KEYS}}}), then {} under one \
         key twice (to a receiver answering at once, then after {} ms), each to 1 endpoint on a \
         fresh Herald, published in batches of {MAX_BATCH_SIZE} by {BULK_CLIENTS} clients; rates \
         from the first publish to the last receipt",
        many.events,
        one.events,
        SLOW_ANSWER.as_millis()
    ));
    figures.note(format!(
        "Herald's attempt time is herald_delivery_attempt_duration_seconds_sum / _count, observed \
         in whole milliseconds (truncated); the round trips are the harness's client sending \
         the one-key request {ROUND_TRIPS} times, one at a time, to a fresh receiver after \
         Herald stopped: from a process of its own (as Herald's requests come), and from the \
         receiver's own process (direct)"
    ));
    let halves = [
        ("100 keys", &many),
        ("one key", &one),
        ("one key, slow receiver", &slow),
    ];
    for (label, run) in halves {
        let order = &run.order;
        figures.note(format!(
            "{label}: {} receipts checked, {} repeats, {} foreign, {} without their key, {} \
             without a sequence, {} bad sequence numbers, {} out of sequence, {} pairs against \
             publish order; {}",
            order.checked,
            order.repeats,
            order.foreign,
            order.wrong_key,
            order.no_sequence,
            order.bad_sequences,
            order.against_sequence,
            order.against_publish,
            run.protocol
        ));
    }
    Ok(figures)
}

/// Runs a one-key half against a receiver that answers as `behaviour` says, and reports it
/// under `label`.
async fn one_key(
    bench: &Bench,
    figures: &mut Figures,
    label: &str,
    behaviour: Behaviour,
) -> anyhow::Result<KeyedRun> {
    // One key: one delivery at a time. A cycle may take far longer than a round trip, so the
    // deadline allows 40 ms an event.
    let events = bench.scale.single_key_events();
    let one = keyed_run(
        bench,
        "bench-ordered-one-key",
        (events, 1),
        behaviour,
        bench.scale.deadline(10 * events),
    )
    .await?;
    add_order(figures, label, &one);
    figures.metric(Metric::new(
        format!("{label}delivery rate"),
        one.deliveries_per_second,
        "deliveries/s",
    ));
    if let Some(interval) = one.receipt_interval {
        figures.metric(Metric::new(
            format!("{label}receipt to receipt, mean"),
            milliseconds(interval),
            "ms",
        ));
    }
    if let Some(interval) = one.interval_after_publishing {
        figures.metric(Metric::new(
            format!("{label}receipt to receipt after publishing, mean"),
            milliseconds(interval),
            "ms",
        ));
    }
    if let Some(gaps) = &one.receipt_gaps {
        for (name, value) in [
            ("p50", gaps.percentiles.p50_ms),
            ("p99", gaps.percentiles.p99_ms),
            ("max", gaps.percentiles.max_ms),
        ] {
            figures.metric(Metric::new(
                format!("{label}receipt to receipt, {name}"),
                value,
                "ms",
            ));
        }
        figures.metric(Metric::new(
            format!("{label}share of the receipts' span in gaps over the median + {STALL_MS} ms"),
            gaps.stalled_share,
            "ratio",
        ));
    }
    if let Some(mean) = one.attempt_mean_ms {
        figures.metric(Metric::new(
            format!("{label}herald attempt time, mean"),
            mean,
            "ms",
        ));
    }
    if let Some(sample) = &one.sample {
        let across = round_trip_from_another_process(bench, sample, behaviour).await?;
        let direct = round_trip(bench, sample, behaviour).await?;
        for (name, round_trip) in [
            ("round trip from another process", across),
            ("direct round trip", direct),
        ] {
            figures.metric(Metric::new(
                format!("{label}{name}, mean"),
                milliseconds(round_trip),
                "ms",
            ));
            let intervals = [
                ("receipt interval", one.receipt_interval),
                (
                    "receipt interval after publishing",
                    one.interval_after_publishing,
                ),
            ];
            for (interval_name, interval) in intervals {
                let Some(interval) = interval else { continue };
                figures.metric(Metric::new(
                    format!("{label}{interval_name} / {name}"),
                    interval.as_secs_f64() / round_trip.as_secs_f64(),
                    "ratio",
                ));
            }
        }
    }
    figures.usage(label, &one.usage);
    Ok(one)
}

/// Reports a half's deliveries and order, and stops the workload short on any violation.
fn add_order(figures: &mut Figures, label: &str, run: &KeyedRun) {
    if run.delivered < run.events {
        figures.stopped_short(format!(
            "{label}only {} of {} deliveries arrived in time",
            run.delivered, run.events
        ));
    }
    let violations = run.order.violations();
    if violations > 0 {
        figures.stopped_short(format!(
            "{label}{violations} ordering violations (see the notes)"
        ));
    }
    figures.metric(
        Metric::new(
            format!("{label}ordering violations"),
            violations as f64,
            "count",
        )
        .target(Target::AtMost(0.0)),
    );
}

/// Publishes `events` over `keys` ordering keys to one endpoint of a fresh Herald and waits
/// for them.
async fn keyed_run(
    bench: &Bench,
    name: &str,
    (events, keys): (usize, usize),
    behaviour: Behaviour,
    deadline: Instant,
) -> anyhow::Result<KeyedRun> {
    let receiver = Receiver::spawn_recording(bench.pki.tls.clone(), behaviour)?;
    let mut session = Session::start(&bench.launch, HeraldSettings::default()).await?;
    let org = session.api.create_org(name).await?;
    session.api.create_endpoint(&org, &receiver.url()).await?;
    let publishing = publish_with_keys(
        &session.api,
        &org,
        0..events,
        BULK_CLIENTS,
        MAX_BATCH_SIZE,
        Some(keys),
        deadline,
    )
    .await?;
    session
        .wait_until(deadline, || receiver.distinct() >= events)
        .await?;
    let attempts = session.api.metric(ATTEMPT_SECONDS_COUNT).await?;
    let attempt_seconds = session.api.metric(ATTEMPT_SECONDS_SUM).await?;
    let usage = session.finish().await?;

    let arrivals = receiver.arrivals();
    let mut arrived: Vec<Instant> = arrivals.values().copied().collect();
    arrived.sort_unstable();
    let end = arrived.last().copied().unwrap_or(publishing.finished);
    let latencies = arrivals
        .iter()
        .filter_map(|(id, arrived)| {
            let sent = publishing.sent.get(id)?;
            Some(arrived.saturating_duration_since(*sent))
        })
        .collect();
    let receipt_interval = mean_gap(&arrived);
    let after_publishing = arrived.partition_point(|at| *at < publishing.finished);
    let interval_after_publishing = mean_gap(&arrived[after_publishing..]);
    let receipt_gaps = ReceiptGaps::of(arrived);
    Ok(KeyedRun {
        events,
        delivered: arrivals.len(),
        deliveries_per_second: rate(arrivals.len(), end - publishing.started),
        publish_seconds: (publishing.finished - publishing.started).as_secs_f64(),
        tail_seconds: end
            .saturating_duration_since(publishing.finished)
            .as_secs_f64(),
        receipt_interval,
        receipt_gaps,
        interval_after_publishing,
        latency: Percentiles::of(latencies),
        attempt_mean_ms: (attempts > 0.0).then(|| 1000.0 * attempt_seconds / attempts),
        order: OrderCheck::of(&publishing.requests, &receiver.receipts(), keys),
        usage,
        sample: receiver.sample(),
        protocol: protocol_note(std::slice::from_ref(&receiver)),
    })
}

/// The mean time of one request like `sample` to a fresh receiver, sent one at a time by the
/// harness's own client in a process of its own (this executable, run with
/// `--round-trip-client`): like Herald's, its requests and the receiver's answers cross
/// between two processes. (In the harness's own process the client's and the receiver's
/// tasks share one runtime, and a round trip skips waking another process's threads.)
async fn round_trip_from_another_process(
    bench: &Bench,
    sample: &Sample,
    behaviour: Behaviour,
) -> anyhow::Result<Duration> {
    use tokio::io::AsyncWriteExt as _;
    let receiver = bench.receiver(behaviour)?;
    let spec = RoundTripSpec {
        url: receiver.url(),
        root_pem: bench.pki.root_pem.clone(),
        headers: sample.headers.clone(),
        body: sample.body.to_vec(),
        warm_up: WARM_UP,
        count: ROUND_TRIPS,
    };
    let exe = std::env::current_exe().context("finding the harness's own executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--round-trip-client")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the round-trip client")?;
    let mut stdin = child.stdin.take().context("the client's stdin")?;
    stdin.write_all(&serde_json::to_vec(&spec)?).await?;
    drop(stdin);
    // The whole exchange under one deadline: on timeout the child is dropped, and killed.
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the round-trip client did not finish within 60 s")??;
    anyhow::ensure!(
        output.status.success(),
        "the round-trip client failed: {}",
        output.status
    );
    let out = String::from_utf8_lossy(&output.stdout);
    let nanos: u64 = out
        .trim()
        .parse()
        .with_context(|| format!("the round-trip client printed {out:?}"))?;
    Ok(Duration::from_nanos(nanos))
}

/// What the round-trip client sends, and where.
#[derive(serde::Serialize, serde::Deserialize)]
struct RoundTripSpec {
    url: String,
    root_pem: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    warm_up: usize,
    count: usize,
}

/// The round-trip client (`herald-bench --round-trip-client`): reads a [`RoundTripSpec`] as
/// JSON on stdin, sends its request one at a time, and prints the mean time of the timed ones
/// in nanoseconds.
pub(crate) async fn round_trip_client() -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let spec: RoundTripSpec = serde_json::from_slice(&input).context("reading the spec")?;
    let client = client_trusting(&spec.root_pem)?;
    let headers = sample_headers(&Sample {
        headers: spec.headers,
        body: spec.body.clone().into(),
    })?;
    let body = bytes::Bytes::from(spec.body);
    let mut timed = Duration::ZERO;
    for n in 0..spec.warm_up + spec.count {
        let sent = Instant::now();
        post(&client, &spec.url, &headers, &body).await?;
        if n >= spec.warm_up {
            timed += sent.elapsed();
        }
    }
    let mean = timed / u32::try_from(spec.count.max(1)).unwrap_or(u32::MAX);
    #[expect(
        clippy::print_stdout,
        reason = "the mean is the client's answer to the harness"
    )]
    {
        println!("{}", mean.as_nanos());
    }
    Ok(())
}

/// The mean time of one request like `sample` to a fresh receiver, sent one at a time by the
/// harness's own client.
async fn round_trip(
    bench: &Bench,
    sample: &Sample,
    behaviour: Behaviour,
) -> anyhow::Result<Duration> {
    let receiver = bench.receiver(behaviour)?;
    let client = direct_client(bench)?;
    let headers = sample_headers(sample)?;
    let url = receiver.url();
    let mut timed = Duration::ZERO;
    for n in 0..WARM_UP + ROUND_TRIPS {
        let sent = Instant::now();
        post(&client, &url, &headers, &sample.body).await?;
        if n >= WARM_UP {
            timed += sent.elapsed();
        }
    }
    Ok(timed / u32::try_from(ROUND_TRIPS).unwrap_or(u32::MAX))
}

impl OrderCheck {
    /// Checks `receipts`, in arrival order, against the publish `requests` of events numbered
    /// from 0 over `keys` keys.
    fn of(requests: &[Request], receipts: &[Receipt], keys: usize) -> Self {
        // Each event id: its request (by index) and its number.
        let published: HashMap<&str, (usize, usize)> = requests
            .iter()
            .enumerate()
            .flat_map(|(index, request)| {
                request
                    .ids
                    .iter()
                    .zip(request.numbers.clone())
                    .map(move |(id, n)| (id.as_str(), (index, n)))
            })
            .collect();
        let mut check = Self::default();
        let mut seen: HashSet<&str> = HashSet::new();
        // Per key, in arrival order: (request, number, sequence).
        let mut by_key: HashMap<String, Vec<(usize, usize, Option<u64>)>> = HashMap::new();
        let mut sequences: HashSet<u64> = HashSet::new();
        let mut sequence_list = Vec::new();
        for receipt in receipts {
            if !seen.insert(receipt.event_id.as_str()) {
                check.repeats += 1;
                continue;
            }
            let Some(&(request, n)) = published.get(receipt.event_id.as_str()) else {
                check.foreign += 1;
                continue;
            };
            check.checked += 1;
            let key = ordering_key(n, keys);
            if receipt.ordering_key.as_deref() != Some(key.as_str()) {
                check.wrong_key += 1;
            }
            match receipt.sequence {
                Some(sequence) => {
                    sequence_list.push(sequence);
                    sequences.insert(sequence);
                }
                None => check.no_sequence += 1,
            }
            by_key
                .entry(key)
                .or_default()
                .push((request, n, receipt.sequence));
        }
        let total = sequence_list.len() as u64;
        check.bad_sequences = (sequence_list.len() - sequences.len())
            + sequences
                .iter()
                .filter(|&&sequence| sequence == 0 || sequence > total)
                .count();
        for receipts in by_key.values() {
            for pair in receipts.windows(2) {
                if let (Some(before), Some(after)) = (pair[0].2, pair[1].2)
                    && after <= before
                {
                    check.against_sequence += 1;
                }
            }
            for (i, &(earlier_request, earlier_n, _)) in receipts.iter().enumerate() {
                for &(later_request, later_n, _) in &receipts[i + 1..] {
                    let published_before = if later_request == earlier_request {
                        later_n < earlier_n
                    } else {
                        requests[later_request].answered <= requests[earlier_request].sent
                    };
                    if published_before {
                        check.against_publish += 1;
                    }
                }
            }
        }
        check
    }

    /// Everything that breaks the order or makes it uncheckable.
    fn violations(&self) -> usize {
        self.foreign
            + self.wrong_key
            + self.no_sequence
            + self.bad_sequences
            + self.against_sequence
            + self.against_publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sent_ms: u64, answered_ms: u64, numbers: std::ops::Range<usize>) -> Request {
        let base = Instant::now();
        Request {
            sent: base + Duration::from_millis(sent_ms),
            answered: base + Duration::from_millis(answered_ms),
            ids: numbers.clone().map(|n| format!("evt_{n}")).collect(),
            numbers,
        }
    }

    fn receipt(n: usize, keys: usize, sequence: u64) -> Receipt {
        Receipt {
            event_id: format!("evt_{n}"),
            ordering_key: Some(ordering_key(n, keys)),
            sequence: Some(sequence),
        }
    }

    #[test]
    fn receipts_in_publish_order_pass() {
        // Two batches of two keys; the second batch was sent after the first was answered.
        let requests = [request(0, 5, 0..4), request(6, 9, 4..8)];
        let order = [0, 1, 2, 4, 3, 5, 6, 7];
        let receipts: Vec<Receipt> = order.iter().map(|&n| receipt(n, 2, n as u64 + 1)).collect();
        let check = OrderCheck::of(&requests, &receipts, 2);
        assert_eq!(check.checked, 8);
        assert_eq!(check.violations(), 0, "{check:?}");
    }

    #[test]
    fn concurrent_batches_follow_their_sequence_numbers() {
        // Overlapping batches: either order is publish order, as long as the sequence rises.
        let requests = [request(0, 5, 0..2), request(1, 4, 2..4)];
        let receipts = [
            receipt(2, 1, 1),
            receipt(3, 1, 2),
            receipt(0, 1, 3),
            receipt(1, 1, 4),
        ];
        let check = OrderCheck::of(&requests, &receipts, 1);
        assert_eq!(check.violations(), 0, "{check:?}");
    }

    #[test]
    fn violations_are_counted() {
        let requests = [request(0, 5, 0..4), request(6, 9, 4..6)];
        let mut receipts = vec![
            receipt(4, 1, 5), // published after 0..4 were answered, received first
            receipt(0, 1, 1),
            receipt(2, 1, 3),
            receipt(1, 1, 2), // within one batch, after 2
            receipt(3, 1, 4),
            receipt(3, 1, 4), // a repeat: not a violation
        ];
        receipts.push(Receipt {
            event_id: "evt_5".to_owned(),
            ordering_key: None,
            sequence: Some(5),
        });
        receipts.push(Receipt {
            event_id: "evt_9".to_owned(),
            ordering_key: None,
            sequence: None,
        });
        let check = OrderCheck::of(&requests, &receipts, 1);
        assert_eq!(
            check,
            OrderCheck {
                checked: 6,
                repeats: 1,
                foreign: 1,
                wrong_key: 1,
                no_sequence: 0,
                // 5 twice, and 6 checked receipts make 5 the largest allowed: one repeat.
                bad_sequences: 1,
                // 5 → 1 and 3 → 2 (one key: evt_5 is grouped by the key it was published with).
                against_sequence: 2,
                // 4 before 0, 1, 2, 3; 2 before 1.
                against_publish: 5,
            }
        );
    }

    #[test]
    fn receipt_gaps_sort_arrivals_and_count_the_stalls() {
        let base = Instant::now();
        // Out of order, as a map gives them: gaps of 0.5, 0.5, 3, 0.5 and 1.4 ms; a median of
        // 0.5 ms, so only the 3 ms gap is a stall.
        let arrivals = [0, 1_000, 500, 4_000, 4_500, 5_900]
            .map(|micros| base + Duration::from_micros(micros))
            .to_vec();
        let gaps = ReceiptGaps::of(arrivals).expect("five receipts have gaps");
        assert_eq!(gaps.percentiles.p50_ms, 0.5);
        assert_eq!(gaps.percentiles.max_ms, 3.0);
        assert!((gaps.stalled_share - 3.0 / 5.9).abs() < 1e-9);
        assert_eq!(ReceiptGaps::of(vec![base]), None);
    }
}
