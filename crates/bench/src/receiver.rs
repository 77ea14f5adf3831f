//! The harness's HTTPS receivers: axum behind axum-server's rustls acceptor (HTTP/1.1 with
//! keep-alive and HTTP/2, by ALPN), on `127.0.0.1:0`, bound before they are spawned. A healthy
//! receiver answers 200 at once and records when each event first arrived (keyed by
//! `X-AmCore-Event-Id`); a hanging one never answers, so Herald's attempt runs into its timeout.
//! The first request a receiver gets is kept as a sample, so the ceiling workload can send the
//! same headers and body. A receiver spawned with [`Receiver::spawn_recording`] also keeps every
//! request's event id, `X-AmCore-Ordering-Key` and `X-AmCore-Sequence` in the order they
//! arrived, for the ordered workload's checks; the others keep only first arrivals.
//!
//! [`Pki`] holds the CA that Herald is told to trust and the receivers' TLS configuration; the
//! CA, the leaf and the TLS server come from `herald-testkit`. What is the harness's own is the
//! measuring: arrival times, HTTP/2 counts and the sample.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, Version};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use herald_testkit::TestCa;
use herald_testkit::receiver::HttpsServer;

/// A CA made for this run and the receivers' TLS configuration with a loopback leaf it signed.
pub(crate) struct Pki {
    /// The CA certificate, PEM: `HERALD_EXTRA_ROOT_CERTS` and the ceiling client's root.
    pub(crate) root_pem: String,
    /// What every receiver serves.
    pub(crate) tls: RustlsConfig,
}

impl Pki {
    /// Generates the CA and the leaf.
    pub(crate) async fn generate() -> anyhow::Result<Self> {
        let ca = TestCa::new();
        let root_pem = String::from_utf8(ca.root_pem()).context("the CA certificate is PEM")?;
        let tls = ca.loopback_leaf().rustls_config().await;
        Ok(Self { root_pem, tls })
    }
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// 200 at once.
    Answer,
    /// 200 after this long, as a receiver across a network would.
    AnswerAfter(Duration),
    /// Never answers: the request stays open until the sender gives up.
    Hang,
}

/// One request as the receiver saw it, to be replayed by the ceiling workload.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Every header except those that belong to one connection or message framing.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The body, byte for byte.
    pub(crate) body: Bytes,
}

/// One request as a recording receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    /// `X-AmCore-Event-Id`.
    pub(crate) event_id: String,
    /// `X-AmCore-Ordering-Key`, when sent.
    pub(crate) ordering_key: Option<String>,
    /// `X-AmCore-Sequence`, when sent and a number.
    pub(crate) sequence: Option<u64>,
}

#[derive(Debug, Default)]
struct Log {
    /// When each event id first arrived.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Every request, repeats included.
    total: AtomicUsize,
    /// Requests over HTTP/2 (the rest are HTTP/1.x).
    http2: AtomicUsize,
    sample: OnceLock<Sample>,
    /// Every request with an event id, in the order they arrived, when recording.
    receipts: Mutex<Vec<Receipt>>,
}

#[derive(Clone)]
struct ReceiverState {
    log: Arc<Log>,
    /// Whether it hangs ([`Behaviour::Hang`]) rather than answers; switchable while it runs.
    hanging: Arc<AtomicBool>,
    /// How long it waits before answering ([`Behaviour::AnswerAfter`]).
    answer_after: Duration,
    recording: bool,
}

/// A running receiver; it stops serving when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    server: HttpsServer,
    log: Arc<Log>,
    hanging: Arc<AtomicBool>,
}

impl Receiver {
    /// Binds `127.0.0.1:0`, then serves with `tls` in the background for as long as the
    /// harness runs.
    pub(crate) fn spawn(tls: RustlsConfig, behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::spawn_with(tls, behaviour, false)
    }

    /// [`Receiver::spawn`], keeping every request's [`Receipt`] in arrival order.
    pub(crate) fn spawn_recording(tls: RustlsConfig, behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::spawn_with(tls, behaviour, true)
    }

    fn spawn_with(
        tls: RustlsConfig,
        behaviour: Behaviour,
        recording: bool,
    ) -> anyhow::Result<Self> {
        let state = ReceiverState {
            log: Arc::default(),
            hanging: Arc::new(AtomicBool::new(behaviour == Behaviour::Hang)),
            answer_after: match behaviour {
                Behaviour::AnswerAfter(wait) => wait,
                Behaviour::Answer | Behaviour::Hang => Duration::ZERO,
            },
            recording,
        };
        let log = Arc::clone(&state.log);
        let hanging = Arc::clone(&state.hanging);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = HttpsServer::spawn(loopback, tls, app).context("binding a receiver")?;
        Ok(Self {
            server,
            log,
            hanging,
        })
    }

    /// `https://127.0.0.1:<port>/hook`.
    pub(crate) fn url(&self) -> String {
        format!("https://{}/hook", self.server.address)
    }

    /// Answers from now on (requests already hanging stay so), or hangs. An answer's delay
    /// ([`Behaviour::AnswerAfter`]) is the receiver's own, set when it was spawned: switching
    /// to it here answers at once.
    pub(crate) fn set_behaviour(&self, behaviour: Behaviour) {
        self.hanging
            .store(behaviour == Behaviour::Hang, Ordering::Relaxed);
    }

    /// Distinct events received so far.
    pub(crate) fn distinct(&self) -> usize {
        self.log
            .arrivals
            .lock()
            .expect("the arrival log lock is never poisoned")
            .len()
    }

    /// Requests received so far, repeats included.
    pub(crate) fn total(&self) -> usize {
        self.log.total.load(Ordering::Relaxed)
    }

    /// Requests received over HTTP/2 so far.
    pub(crate) fn http2(&self) -> usize {
        self.log.http2.load(Ordering::Relaxed)
    }

    /// When each event first arrived; for a URL with a query (`/hook?to=<tag>`, one of many
    /// endpoints sharing this receiver), each event and query (`<event id>?to=<tag>`).
    pub(crate) fn arrivals(&self) -> HashMap<String, Instant> {
        self.log
            .arrivals
            .lock()
            .expect("the arrival log lock is never poisoned")
            .clone()
    }

    /// Every request with an event id so far, in the order they arrived (empty unless
    /// recording).
    pub(crate) fn receipts(&self) -> Vec<Receipt> {
        self.log
            .receipts
            .lock()
            .expect("the receipt log lock is never poisoned")
            .clone()
    }

    /// The first request received, if any.
    pub(crate) fn sample(&self) -> Option<Sample> {
        self.log.sample.get().cloned()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Closes the listener and every connection, hanging requests included.
        self.server.shutdown();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    let log = &state.log;
    log.total.fetch_add(1, Ordering::Relaxed);
    if version == Version::HTTP_2 {
        log.http2.fetch_add(1, Ordering::Relaxed);
    }
    if log.sample.get().is_none() {
        let _ = log.sample.set(sample_of(&headers, body));
    }
    if let Some(event_id) = headers
        .get("x-amcore-event-id")
        .and_then(|value| value.to_str().ok())
    {
        // One event goes to every endpoint of its organization; endpoints sharing this
        // receiver are told apart by their tag.
        let key = match uri.query() {
            Some(tag) => format!("{event_id}?{tag}"),
            None => event_id.to_owned(),
        };
        if state.recording {
            let text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            let receipt = Receipt {
                event_id: event_id.to_owned(),
                ordering_key: text("x-amcore-ordering-key"),
                sequence: text("x-amcore-sequence").and_then(|text| text.parse().ok()),
            };
            // Pushed under the arrival lock, so the two logs agree on the order.
            let mut arrivals = log
                .arrivals
                .lock()
                .expect("the arrival log lock is never poisoned");
            arrivals.entry(key).or_insert(arrived);
            log.receipts
                .lock()
                .expect("the receipt log lock is never poisoned")
                .push(receipt);
        } else {
            log.arrivals
                .lock()
                .expect("the arrival log lock is never poisoned")
                .entry(key)
                .or_insert(arrived);
        }
    }
    if state.hanging.load(Ordering::Relaxed) {
        std::future::pending().await
    } else {
        if !state.answer_after.is_zero() {
            tokio::time::sleep(state.answer_after).await;
        }
        StatusCode::OK
    }
}

fn sample_of(headers: &HeaderMap, body: Bytes) -> Sample {
    let headers = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "host"
                    | "content-length"
                    | "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
            )
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Sample { headers, body }
}
