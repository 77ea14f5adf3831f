//! The fault tests' receiver: a real HTTPS receiver on loopback that answers 200 at once and
//! checks every delivery as a careful receiver would (the signature over `"<t>\n<body>"` with
//! its endpoint's secret, a fresh timestamp, a body that names the same event as the header),
//! and logs each arrival with the test phase it came in; and the reports over those logs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::EVENT_TYPE;
use crate::TestCa;
use crate::receiver::HttpsServer;

/// What one receiver saw.
#[derive(Default)]
pub struct ReceiverLog {
    /// Arrivals per event id (`X-AmCore-Event-Id`): the test phase each came in.
    pub arrivals: HashMap<String, Vec<usize>>,
    /// `data.n` of each event, as the body carried it.
    pub numbers: HashMap<String, u64>,
    /// Every request, duplicates included.
    pub total: usize,
    /// For each event's first arrival that carried an ordering key: the key and the
    /// delivery's sequence number, in arrival order.
    pub first_keyed_arrivals: Vec<(String, u64)>,
    /// Deliveries that failed a check, with the reason.
    pub problems: Vec<String>,
}

/// What a [`Receiver`]'s handler shares with the test.
#[derive(Clone, Default)]
pub struct ReceiverState {
    /// Everything the receiver saw.
    pub log: Arc<Mutex<ReceiverLog>>,
    /// The endpoint's secret, decoded; set once the endpoint exists.
    pub secret: Arc<OnceLock<Vec<u8>>>,
    /// The phase of the test (e.g. which server process is running), set by the test.
    phase: Arc<AtomicUsize>,
}

/// A real HTTPS receiver on loopback that answers 200 at once and checks every delivery: the
/// signature over `"<t>\n<body>"` with its endpoint's secret, a fresh timestamp, and a body
/// that names the same event as the header.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its log and the endpoint secret it checks with.
    pub state: ReceiverState,
}

impl Receiver {
    /// Binds `127.0.0.1:0`, then serves `POST /hook` in the background. `phase` is read at
    /// each arrival and recorded with it.
    pub fn spawn(tls: RustlsConfig, phase: &Arc<AtomicUsize>) -> Self {
        let state = ReceiverState {
            phase: Arc::clone(phase),
            ..ReceiverState::default()
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = HttpsServer::spawn(loopback, tls, app).expect("bind a receiver");
        Self {
            address: server.address,
            state,
        }
    }

    /// `count` receivers sharing one TLS configuration and one phase.
    pub async fn spawn_many(ca: &TestCa, count: usize, phase: &Arc<AtomicUsize>) -> Vec<Self> {
        let tls = ca.loopback_leaf().rustls_config().await;
        (0..count)
            .map(|_| Self::spawn(tls.clone(), phase))
            .collect()
    }

    /// The endpoint URL that reaches this receiver.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.address.port())
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let event_id = header(&headers, "x-amcore-event-id").map(str::to_owned);
    let checked = check_delivery(&state, &headers, &body);
    let mut log = state.log.lock().expect("receiver log");
    log.total += 1;
    if let Some(event_id) = event_id {
        let phase = state.phase.load(Ordering::SeqCst);
        let arrivals = log.arrivals.entry(event_id).or_default();
        let first = arrivals.is_empty();
        arrivals.push(phase);
        let key = header(&headers, "x-amcore-ordering-key");
        let sequence = header(&headers, "x-amcore-sequence").and_then(|text| text.parse().ok());
        if let (true, Some(key), Some(sequence)) = (first, key, sequence) {
            log.first_keyed_arrivals.push((key.to_owned(), sequence));
        }
    }
    match checked {
        Ok((event_id, n)) => {
            log.numbers.insert(event_id, n);
        }
        Err(problem) => log.problems.push(problem),
    }
    StatusCode::OK
}

/// Checks one delivery as a careful receiver would. Returns the event id and its `data.n`.
fn check_delivery(
    state: &ReceiverState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, u64), String> {
    let event_id = header(headers, "x-amcore-event-id").ok_or("no X-AmCore-Event-Id")?;
    let signature = header(headers, "x-amcore-signature").ok_or("no X-AmCore-Signature")?;
    let secret = state
        .secret
        .get()
        .ok_or("delivery before the endpoint existed")?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => candidates.push(value),
            _ => return Err(format!("malformed signature header {signature:?}")),
        }
    }
    let timestamp = timestamp.ok_or_else(|| format!("no timestamp in {signature:?}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    if (i64::try_from(now).expect("seconds fit i64") - timestamp).abs() > 300 {
        return Err(format!("stale timestamp {timestamp} for {event_id}"));
    }
    let signed = candidates.iter().any(|candidate| {
        let Ok(expected) = hex::decode(candidate) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(format!("{timestamp}\n").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if !signed {
        return Err(format!("bad signature {signature:?} for {event_id}"));
    }
    let envelope: Value =
        serde_json::from_slice(body).map_err(|error| format!("body is not JSON: {error}"))?;
    if envelope["id"] != event_id || envelope["type"] != EVENT_TYPE {
        return Err(format!("body {envelope} does not match header {event_id}"));
    }
    let n = envelope["data"]["n"]
        .as_u64()
        .ok_or_else(|| format!("no data.n in {envelope}"))?;
    Ok((event_id.to_owned(), n))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// `(event, endpoint)` pairs that arrived at least once.
pub fn unique_pairs(receivers: &[Receiver]) -> usize {
    receivers
        .iter()
        .map(|receiver| {
            receiver
                .state
                .log
                .lock()
                .expect("receiver log")
                .arrivals
                .len()
        })
        .sum()
}

/// Asserts that every receiver got every event of `published` (event id → `data.n`), each
/// correctly signed and carrying its data. Events not in `published` are allowed only when
/// `strangers` says so (a publish whose answer was lost may still have committed); their
/// count is returned.
pub fn assert_all_delivered(
    receivers: &[Receiver],
    published: &HashMap<String, u64>,
    strangers: Strangers,
) -> usize {
    let mut unknown_total = 0;
    for (index, receiver) in receivers.iter().enumerate() {
        let log = receiver.state.log.lock().expect("receiver log");
        assert!(
            log.problems.is_empty(),
            "receiver {index} got {} malformed or badly signed deliveries, e.g. {:?}",
            log.problems.len(),
            &log.problems[..log.problems.len().min(5)]
        );
        let missing = published
            .keys()
            .filter(|event_id| !log.arrivals.contains_key(*event_id))
            .count();
        let unknown = log
            .arrivals
            .keys()
            .filter(|event_id| !published.contains_key(*event_id))
            .count();
        assert_eq!(
            missing,
            0,
            "receiver {index} is missing {missing} of the {} published events",
            published.len()
        );
        assert!(
            unknown == 0 || strangers == Strangers::Allowed,
            "receiver {index} got {unknown} events nobody published"
        );
        unknown_total = unknown_total.max(unknown);
        for (event_id, n) in &log.numbers {
            if let Some(expected) = published.get(event_id) {
                assert_eq!(
                    n, expected,
                    "receiver {index}: event {event_id} must carry the data it was published with"
                );
            }
        }
    }
    unknown_total
}

/// Whether receivers may get events the test holds no 202 for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strangers {
    /// Every event a receiver got must be one the test published.
    Refused,
    /// A publish whose answer was lost may still have committed.
    Allowed,
}

/// How often pairs arrived more than once, and in which test phase.
pub struct DuplicateReport {
    /// Every request the receivers handled.
    pub received: usize,
    /// `received` less one per pair.
    pub duplicates: usize,
    /// Repeats of an already delivered pair, by the phase they came in.
    pub by_phase: Vec<usize>,
}

impl DuplicateReport {
    /// Counts over `phases` phases (0 to `phases - 1`).
    pub fn of(receivers: &[Receiver], phases: usize) -> Self {
        let mut report = Self {
            received: 0,
            duplicates: 0,
            by_phase: vec![0; phases],
        };
        for receiver in receivers {
            let log = receiver.state.log.lock().expect("receiver log");
            report.received += log.total;
            for phases in log.arrivals.values() {
                for repeat in phases.windows(2) {
                    report.duplicates += 1;
                    report.by_phase[repeat[1]] += 1;
                }
            }
        }
        report
    }

    /// The largest number of duplicates of one phase.
    pub fn worst_phase(&self) -> usize {
        self.by_phase.iter().copied().max().unwrap_or(0)
    }
}

/// Polls `condition` every few milliseconds until it holds or `bound` passes.
pub async fn wait_until(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
