//! What the delivery tests share: publishing as the platform, reading the deliveries feed,
//! metrics and the audit log, bounded polls for asynchronous delivery, and the independent
//! Python verifier.
//!
//! Delivery is asynchronous, so tests wait for it with [`wait_until`]: a bounded poll of an
//! observable fact (the receiver's log, the feed, the queue gauges), never a fixed sleep.

use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_domain::{EndpointId, OrgId};
use herald_testkit::{Received, Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::{Backend, TestApp, TestAppBuilder, TestOrg};

/// How long a wait may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// The independent verifier (the official `standardwebhooks` package plus a plain hmac check).
const VERIFIER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/verify_delivery.py"
);

/// A builder for an app that may deliver to loopback receivers whose certificates `ca` signed.
pub(crate) fn delivering(backend: Backend, ca: &TestCa) -> TestAppBuilder {
    TestApp::builder()
        .backend(backend)
        .allow_loopback()
        .extra_root_certs(ca.root_pem())
}

/// The arrangement most delivery tests start from: a receiver, a Herald that trusts the
/// receiver's CA and may dial loopback, an organization with a key, and one endpoint at the
/// receiver's `/ok` subscribed to `wallet.balance_low`.
pub(crate) struct Subscribed {
    pub(crate) receiver: Receiver,
    pub(crate) app: TestApp,
    pub(crate) org: TestOrg,
}

/// Arranges [`Subscribed`] on `backend`.
pub(crate) async fn subscribed(backend: Backend) -> Subscribed {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca).spawn().await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    Subscribed { receiver, app, org }
}

/// Polls `probe` every 20 ms until it answers `Some`, for at most 10 s; panics naming `what`
/// when it never does.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(WAIT_LIMIT, what, probe).await
}

/// [`wait_until`] with an explicit limit.
pub(crate) async fn wait_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits until `receiver` has logged at least `count` requests and returns them all.
pub(crate) async fn wait_for_received(receiver: &Receiver, count: usize) -> Vec<Received> {
    wait_until(&format!("{count} request(s) at the receiver"), || async {
        let received = receiver.received();
        (received.len() >= count).then_some(received)
    })
    .await
}

/// Whether any of the feed's `records` has `outcome` (`success`, `retry`, `dead`).
pub(crate) fn has_outcome(records: &[Value], outcome: &str) -> bool {
    records
        .iter()
        .any(|record| record["outcome"] == json!(outcome))
}

/// Asserts the wire form of an event id: `evt_<uuid>`.
#[track_caller]
pub(crate) fn assert_event_id(id: &str) {
    let uuid = id
        .strip_prefix("evt_")
        .unwrap_or_else(|| panic!("{id} should start with evt_"));
    assert!(
        uuid.parse::<uuid::Uuid>().is_ok(),
        "{id} should hold a uuid"
    );
}

/// A header of a received request, as text; panics when absent.
#[track_caller]
pub(crate) fn header(received: &Received, name: &str) -> String {
    received
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("the delivery should carry {name}"))
        .to_str()
        .expect("header values are ASCII")
        .to_owned()
}

/// The body of a received request, parsed.
#[track_caller]
pub(crate) fn received_json(received: &Received) -> Value {
    serde_json::from_slice(&received.body).expect("the delivery body is JSON")
}

/// What the independent verifier said.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// Exit status 0.
    pub(crate) accepted: bool,
    /// Its stderr: why it refused.
    pub(crate) reason: String,
}

/// Runs `scripts/verify_delivery.py` on a delivery as captured (headers and `body`) with the
/// secrets a receiver holds; `now` defaults to the verifier's clock.
pub(crate) async fn verify_delivery(
    received: &Received,
    body: &[u8],
    endpoint_secret: &str,
    org_secret: Option<&str>,
    now: Option<i64>,
) -> Verdict {
    let held = json!({"org_secret": org_secret, "now": now});
    verify_delivery_with(received, body, endpoint_secret, &held).await
}

/// [`verify_delivery`] with more of what a receiver may hold, merged into the verifier's input:
/// `previous_secret` (a rotation's grace period) and `public_key` (the `x` of
/// `GET /v1/webhook-keys`, to check `v1a`).
pub(crate) async fn verify_delivery_with(
    received: &Received,
    body: &[u8],
    endpoint_secret: &str,
    extra: &Value,
) -> Verdict {
    let headers: serde_json::Map<String, Value> = received
        .headers
        .iter()
        .map(|(name, value)| {
            let text = value.to_str().expect("header values are ASCII");
            (name.as_str().to_owned(), Value::String(text.to_owned()))
        })
        .collect();
    let mut capture = json!({
        "headers": headers,
        "body": String::from_utf8(body.to_vec()).expect("the delivery body is UTF-8"),
        "endpoint_secret": endpoint_secret,
    });
    if let (Some(capture), Some(extra)) = (capture.as_object_mut(), extra.as_object()) {
        capture.extend(extra.clone());
    }
    run_verifier(&capture).await
}

async fn run_verifier(capture: &Value) -> Verdict {
    let mut child = tokio::process::Command::new("python3")
        .arg(VERIFIER)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python3 scripts/verify_delivery.py (scripts/install-test-deps)");
    let mut stdin = child.stdin.take().expect("the verifier's stdin is piped");
    stdin
        .write_all(capture.to_string().as_bytes())
        .await
        .expect("writing to the verifier");
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .expect("waiting for the verifier");
    Verdict {
        accepted: output.status.success(),
        reason: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl TestApp {
    /// Publishes one event as the platform and returns the 202 answer.
    pub(crate) async fn publish(&self, org: OrgId, event_type: &str, data: &Value) -> Value {
        let reply = self
            .admin_post(
                "/admin/v1/events",
                &json!({"org_id": org.to_string(), "type": event_type, "data": data}),
            )
            .await;
        reply.assert_status(StatusCode::ACCEPTED);
        reply.body
    }

    /// Creates an endpoint at `url` subscribed to `events`; returns it, secret included.
    pub(crate) async fn create_endpoint_at(&self, key: &str, url: &str, events: &[&str]) -> Value {
        self.create_endpoint(key, &json!({"url": url, "events": events}))
            .await
    }

    /// `GET /v1/webhooks/deliveries?{query}`: the page's records, checked to be a 200.
    pub(crate) async fn deliveries(&self, key: &str, query: &str) -> Vec<Value> {
        let reply = self
            .get(key, &format!("/v1/webhooks/deliveries?{query}"))
            .await;
        reply.assert_status(StatusCode::OK);
        reply.body["data"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("a feed page holds a data array: {reply}"))
    }

    /// The feed records of one endpoint, newest first (at most 200).
    pub(crate) async fn endpoint_deliveries(&self, key: &str, endpoint: &Value) -> Vec<Value> {
        let id: EndpointId = super::parse_id(&endpoint["id"]);
        self.deliveries(key, &format!("endpoint_id={id}&limit=200"))
            .await
    }

    /// Waits until the records of `endpoint` satisfy `done`, and returns them.
    pub(crate) async fn wait_for_deliveries(
        &self,
        key: &str,
        endpoint: &Value,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(what, || async {
            let records = self.endpoint_deliveries(key, endpoint).await;
            done(&records).then_some(records)
        })
        .await
    }

    /// `GET /metrics`, as text.
    pub(crate) async fn metrics(&self) -> String {
        let reply = self
            .send(self.request(reqwest::Method::GET, "/metrics"))
            .await;
        reply.assert_status(StatusCode::OK);
        reply.text
    }

    /// Waits until no delivery is pending at all (none due, in flight or scheduled), which is
    /// when no further attempt can arrive.
    pub(crate) async fn wait_for_empty_queue(&self) {
        wait_until("an empty delivery queue", || async {
            let text = self.metrics().await;
            let idle = metric(&text, "herald_deliveries_due") == Some(0.0)
                && metric(&text, "herald_deliveries_scheduled") == Some(0.0);
            idle.then_some(())
        })
        .await;
    }

    /// The audit log of `org`, newest first.
    pub(crate) async fn audit_log(&self, org: OrgId) -> Vec<Value> {
        let reply = self
            .admin_get(&format!("/admin/v1/orgs/{org}/audit-log"))
            .await;
        reply.assert_status(StatusCode::OK);
        reply.body["data"].as_array().cloned().unwrap_or_default()
    }
}

/// The value of the sample named exactly `sample` (labels included) in Prometheus text.
pub(crate) fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
}
