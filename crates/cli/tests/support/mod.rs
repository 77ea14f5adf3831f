//! What the fault tests of the real `herald` binary share: a test CA and real HTTPS receivers
//! that check every delivery's signature, starting, killing and stopping `herald serve` as a
//! child process, setting up an organization through the API, publishing, and reading
//! `/metrics` and the deliveries feed. `postgres` holds the PostgreSQL databases and clusters.
//!
//! Herald runs as a separate process, so it cannot be handed a listener bound in advance
//! (STYLE.md "Tests"); readiness is its health endpoint, polled with a bound instead. Only
//! processes started here are ever signalled, by their own pid.

#![allow(
    dead_code,
    reason = "each test binary includes this module and uses a different part of it"
)]

pub(crate) mod postgres;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use sha2::Sha256;

/// The one event type every fault test publishes and subscribes to.
pub(crate) const EVENT_TYPE: &str = "wallet.balance_low";
/// The admin token every server started here accepts.
pub(crate) const ADMIN_TOKEN: &str = "fault-test-admin-token";
/// Most events in one batch publish (the API's own limit).
pub(crate) const PUBLISH_BATCH: usize = 500;
/// The series of successful attempts a node recorded since it started.
pub(crate) const SUCCESSES: &str = "herald_delivery_attempts_total{outcome=\"success\"}";

/// How long one start of the server may take to answer its health check.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a SIGTERM may take: the default shutdown grace (20 s) and some margin.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// An HTTP client for talking to herald; each request is bounded.
#[expect(
    clippy::disallowed_methods,
    reason = "the tests' client of the herald under test on loopback, not a delivery"
)]
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A base64 secrets key of 32 random bytes, for `HERALD_SECRETS_KEY`.
pub(crate) fn random_secrets_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

/// A CA made for one test and a leaf for `127.0.0.1`/`localhost` signed by it (webpki refuses
/// a CA certificate used as the server's own).
pub(crate) struct TestPki {
    pub(crate) root_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

impl TestPki {
    pub(crate) fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Herald fault-test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).expect("self-sign the CA");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("sign the leaf");
        Self {
            root_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }

    /// Writes the CA certificate into `dir`, for `HERALD_EXTRA_ROOT_CERTS`; its path.
    pub(crate) fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.root_pem).expect("write the CA certificate");
        path
    }

    /// The receivers' TLS configuration.
    pub(crate) async fn receiver_tls(&self) -> RustlsConfig {
        RustlsConfig::from_pem(
            self.leaf_pem.clone().into_bytes(),
            self.leaf_key_pem.clone().into_bytes(),
        )
        .await
        .expect("receiver TLS config")
    }
}

/// What one receiver saw.
#[derive(Default)]
pub(crate) struct ReceiverLog {
    /// Arrivals per event id (`X-AmCore-Event-Id`): the test phase each came in.
    pub(crate) arrivals: HashMap<String, Vec<usize>>,
    /// `data.n` of each event, as the body carried it.
    pub(crate) numbers: HashMap<String, u64>,
    /// Every request, duplicates included.
    pub(crate) total: usize,
    /// Deliveries that failed a check, with the reason.
    pub(crate) problems: Vec<String>,
}

#[derive(Clone, Default)]
pub(crate) struct ReceiverState {
    pub(crate) log: Arc<Mutex<ReceiverLog>>,
    /// The endpoint's secret, decoded; set once the endpoint exists.
    pub(crate) secret: Arc<OnceLock<Vec<u8>>>,
    /// The phase of the test (e.g. which server process is running), set by the test.
    phase: Arc<AtomicUsize>,
}

/// A real HTTPS receiver on loopback that answers 200 at once and checks every delivery: the
/// signature over `"<t>\n<body>"` with its endpoint's secret, a fresh timestamp, and a body
/// that names the same event as the header.
pub(crate) struct Receiver {
    pub(crate) address: SocketAddr,
    pub(crate) state: ReceiverState,
}

impl Receiver {
    /// Binds `127.0.0.1:0`, then serves `POST /hook` in the background. `phase` is read at
    /// each arrival and recorded with it.
    pub(crate) fn spawn(tls: RustlsConfig, phase: &Arc<AtomicUsize>) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind a receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking receiver listener");
        let address = listener.local_addr().expect("receiver address");
        let state = ReceiverState {
            phase: Arc::clone(phase),
            ..ReceiverState::default()
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum_server::from_tcp_rustls(listener, tls)
                .serve(app.into_make_service())
                .await
                .expect("receiver serves");
        });
        Self { address, state }
    }

    /// `count` receivers sharing one TLS configuration and one phase.
    pub(crate) async fn spawn_many(
        pki: &TestPki,
        count: usize,
        phase: &Arc<AtomicUsize>,
    ) -> Vec<Self> {
        let tls = pki.receiver_tls().await;
        (0..count)
            .map(|_| Self::spawn(tls.clone(), phase))
            .collect()
    }

    /// The endpoint URL that reaches this receiver.
    pub(crate) fn url(&self) -> String {
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
        log.arrivals.entry(event_id).or_default().push(phase);
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
pub(crate) fn unique_pairs(receivers: &[Receiver]) -> usize {
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
pub(crate) fn assert_all_delivered(
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
pub(crate) enum Strangers {
    Refused,
    Allowed,
}

/// How often pairs arrived more than once, and in which test phase.
pub(crate) struct DuplicateReport {
    /// Every request the receivers handled.
    pub(crate) received: usize,
    /// `received` less one per pair.
    pub(crate) duplicates: usize,
    /// Repeats of an already delivered pair, by the phase they came in.
    pub(crate) by_phase: Vec<usize>,
}

impl DuplicateReport {
    /// Counts over `phases` phases (0 to `phases - 1`).
    pub(crate) fn of(receivers: &[Receiver], phases: usize) -> Self {
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
    pub(crate) fn worst_phase(&self) -> usize {
        self.by_phase.iter().copied().max().unwrap_or(0)
    }
}

/// Polls `condition` every few milliseconds until it holds or `bound` passes.
pub(crate) async fn wait_until(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
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

/// An organization set up for a test: its id, a read/write key and one endpoint per receiver.
pub(crate) struct Tenant {
    pub(crate) org_id: String,
    pub(crate) api_key: String,
    pub(crate) endpoint_ids: Vec<String>,
}

impl Tenant {
    /// Creates an organization named `name` and a key through the admin API.
    pub(crate) async fn create(http: &reqwest::Client, herald: &Herald, name: &str) -> Self {
        let org = admin_post(http, &herald.base, "/admin/v1/orgs", &json!({"name": name})).await;
        let org_id = string_field(&org, "id");
        let key = admin_post(
            http,
            &herald.base,
            &format!("/admin/v1/orgs/{org_id}/keys"),
            &json!({"scopes": ["webhooks:read", "webhooks:write"]}),
        )
        .await;
        Self {
            org_id,
            api_key: string_field(&key, "key"),
            endpoint_ids: Vec::new(),
        }
    }

    /// Creates one endpoint per receiver, subscribed to [`EVENT_TYPE`], and hands each
    /// receiver its endpoint's secret.
    pub(crate) async fn subscribe(
        &mut self,
        http: &reqwest::Client,
        herald: &Herald,
        receivers: &[Receiver],
    ) {
        for receiver in receivers {
            let response = http
                .post(format!("{}/v1/webhooks", herald.base))
                .bearer_auth(&self.api_key)
                .json(&json!({"url": receiver.url(), "events": [EVENT_TYPE]}))
                .send()
                .await
                .expect("create endpoint");
            let endpoint = expect_json(response, StatusCode::CREATED).await;
            let secret = STANDARD
                .decode(string_field(&endpoint, "secret"))
                .expect("the endpoint secret is standard base64");
            assert_eq!(secret.len(), 32, "an endpoint secret is 32 bytes");
            self.endpoint_ids.push(string_field(&endpoint, "id"));
            receiver
                .state
                .secret
                .set(secret)
                .expect("one endpoint per receiver");
        }
    }
}

/// Publishes one event per number in `numbers` (as `data.n`) in one batch through the server at `base`;
/// asserts each fanned out to `endpoints` endpoints and returns event id → number.
pub(crate) async fn publish_batch(
    http: &reqwest::Client,
    base: &str,
    org_id: &str,
    numbers: &[u64],
    endpoints: usize,
) -> HashMap<String, u64> {
    let events: Vec<Value> = numbers
        .iter()
        .map(|n| json!({"org_id": org_id, "type": EVENT_TYPE, "data": {"n": n}}))
        .collect();
    let answer = admin_post_expecting(
        http,
        base,
        "/admin/v1/events/batch",
        &json!({ "events": events }),
        StatusCode::ACCEPTED,
    )
    .await;
    let answers = answer["events"].as_array().expect("`events` array");
    assert_eq!(
        answers.len(),
        numbers.len(),
        "one answer per published event"
    );
    let mut published = HashMap::with_capacity(numbers.len());
    for (n, answer) in numbers.iter().zip(answers) {
        assert_eq!(
            answer["endpoints"], endpoints,
            "fan-out of event {n}: {answer}"
        );
        assert_eq!(answer["duplicate"], false, "event {n}: {answer}");
        published.insert(string_field(answer, "event_id"), *n);
    }
    published
}

/// Every delivery attempt herald recorded for the key's organization, walking the feed.
pub(crate) async fn all_attempts(
    http: &reqwest::Client,
    herald: &Herald,
    api_key: &str,
) -> Vec<Value> {
    attempts_matching(http, &herald.base, api_key, &[]).await
}

/// The attempts of the deliveries feed at `base` that match `filters` (query parameters),
/// walking it page by page.
pub(crate) async fn attempts_matching(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    filters: &[(&str, &str)],
) -> Vec<Value> {
    let mut attempts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{base}/v1/webhooks/deliveries"))
            .bearer_auth(api_key)
            .query(&[("limit", "200")])
            .query(filters);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page = expect_json(
            request.send().await.expect("list delivery attempts"),
            StatusCode::OK,
        )
        .await;
        attempts.extend(
            page["data"]
                .as_array()
                .expect("`data` array")
                .iter()
                .cloned(),
        );
        match page["meta"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return attempts,
        }
    }
}

/// Successful attempts per `(endpoint id, event id)` in `attempts`.
pub(crate) fn successes_per_pair(attempts: &[Value]) -> HashMap<(String, String), usize> {
    let mut recorded: HashMap<(String, String), usize> = HashMap::new();
    for attempt in attempts
        .iter()
        .filter(|attempt| attempt["outcome"] == "success")
    {
        let pair = (
            string_field(attempt, "endpoint_id"),
            string_field(attempt, "event_id"),
        );
        *recorded.entry(pair).or_default() += 1;
    }
    recorded
}

/// `GET /metrics` as text.
pub(crate) async fn scrape(http: &reqwest::Client, herald: &Herald) -> String {
    let response = http
        .get(format!("{}/metrics", herald.base))
        .send()
        .await
        .expect("scrape metrics");
    assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
    response.text().await.expect("metrics text")
}

/// The value of a series (`name` or `name{labels}`) in Prometheus text; `None` when absent.
pub(crate) fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

/// Polls `GET /metrics` until both queue gauges read 0 or `bound` passes; the last reading.
pub(crate) async fn wait_for_empty_queue(
    http: &reqwest::Client,
    herald: &Herald,
    bound: Duration,
) -> Option<(u64, u64)> {
    let deadline = Instant::now() + bound;
    loop {
        let text = scrape(http, herald).await;
        let last = metric(&text, "herald_deliveries_due")
            .zip(metric(&text, "herald_deliveries_scheduled"));
        if last == Some((0, 0)) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Herald's own metrics, for a failure message.
pub(crate) async fn queue_metrics(http: &reqwest::Client, herald: &Herald) -> String {
    let text = match http.get(format!("{}/metrics", herald.base)).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => return format!("GET /metrics failed: {error}"),
    };
    text.lines()
        .filter(|line| line.starts_with("herald_") && !line.contains("_bucket"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) async fn admin_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> Value {
    admin_post_expecting(http, base, path, body, StatusCode::CREATED).await
}

pub(crate) async fn admin_post_expecting(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
    status: StatusCode,
) -> Value {
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {}", error_chain(&error)));
    expect_json(response, status).await
}

pub(crate) async fn expect_json(response: reqwest::Response, status: StatusCode) -> Value {
    let url = response.url().path().to_owned();
    let actual = response.status();
    let text = response.text().await.expect("response body");
    assert_eq!(actual, status, "{url} answered {actual}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{url}: {error}: {text}"))
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn string_field(value: &Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("`{name}` is missing from {value}"))
        .to_owned()
}

/// Starts `herald serve` on one database, again and again, with the same settings.
pub(crate) struct Launcher {
    /// Names the server in messages, e.g. `node 2`.
    name: String,
    /// `HERALD_*` variables, on top of a clean environment.
    env: Vec<(String, OsString)>,
    /// The server's stderr, appended across restarts; shown when the test fails.
    log_path: PathBuf,
    /// The open-files limit (`ulimit -n`) the server runs under; inherited when `None`.
    file_limit: Option<u64>,
}

impl Launcher {
    /// A server on `database_url` that trusts the CA at `ca_path`, may dial loopback, accepts
    /// [`ADMIN_TOKEN`] and logs warnings and errors to `log_path`.
    pub(crate) fn new(name: &str, database_url: &str, ca_path: &Path, log_path: PathBuf) -> Self {
        let launcher = Self {
            name: name.to_owned(),
            env: Vec::new(),
            log_path,
            file_limit: None,
        };
        launcher
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HERALD_ALLOW_NETWORKS", "127.0.0.0/8")
            .env("HERALD_EXTRA_ROOT_CERTS", ca_path)
            .env("HERALD_LOG", "warn")
    }

    /// Sets one more environment variable of the server.
    pub(crate) fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Runs the server under an open-files limit of `limit` (soft and hard), as `ulimit -n`
    /// in its shell would; this process keeps its own.
    pub(crate) fn file_limit(mut self, limit: u64) -> Self {
        self.file_limit = Some(limit);
        self
    }

    /// Starts the server on a free port and waits until `/healthz` answers. A port taken between
    /// probing and binding makes the child exit; then another port is tried.
    pub(crate) async fn start(&self, http: &reqwest::Client) -> Herald {
        for _ in 0..5 {
            let port = free_port();
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .expect("open the server log");
            let mut command = match self.file_limit {
                None => Command::new(env!("CARGO_BIN_EXE_herald")),
                Some(limit) => {
                    // The shell lowers its limit, then becomes herald (`exec`), so the child's
                    // pid is herald's own.
                    let mut command = Command::new("sh");
                    command
                        .arg("-c")
                        .arg(r#"ulimit -n "$1" || exit 97; shift; exec "$@""#)
                        .arg("sh")
                        .arg(limit.to_string())
                        .arg(env!("CARGO_BIN_EXE_herald"));
                    command
                }
            };
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("HERALD_") {
                    command.env_remove(name);
                }
            }
            let child = command
                .arg("serve")
                .envs(self.env.iter().map(|(name, value)| (name, value)))
                .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn herald");
            let mut herald = Herald {
                child,
                base: format!("http://127.0.0.1:{port}"),
                name: self.name.clone(),
                log_path: self.log_path.clone(),
            };
            match herald.wait_ready(http).await {
                Ok(()) => return herald,
                Err(status) => {
                    eprintln!("{}: herald exited at start ({status}); retrying", self.name)
                }
            }
        }
        panic!(
            "{} did not start in 5 tries; its log:\n{}",
            self.name,
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        );
    }
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("probe a free port")
        .port()
}

/// A running `herald serve`. Dropping it kills the process; when the test is failing, the
/// server log is shown as well.
pub(crate) struct Herald {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    name: String,
    log_path: PathBuf,
}

impl Herald {
    /// Waits (bounded) until `/healthz` answers 200; the exit status if the process ended.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll herald") {
                return Err(status);
            }
            let health = http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == StatusCode::OK) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} was not healthy within {READY_WITHIN:?}", self.name);
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test if the server is gone although nobody here stopped it.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll herald") {
            panic!(
                "{} (pid {}) exited by itself with {status}; exit 0 means a graceful \
                 shutdown, i.e. some other process sent it SIGTERM or SIGINT",
                self.name,
                self.child.id()
            );
        }
    }

    /// SIGKILL, and reap the process.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().expect("kill -9 herald");
        self.child.wait().expect("reap herald");
    }

    /// SIGTERM, then waits (bounded) for the exit; `None` if it did not exit in time.
    pub(crate) async fn terminate(mut self) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll herald") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            show_log(&self.name, &self.log_path);
        }
    }
}

/// Prints the tail of a server log on stderr.
pub(crate) fn show_log(name: &str, path: &Path) {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(200).collect();
    eprintln!("--- {name} log (last {} lines) ---", tail.len());
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}
