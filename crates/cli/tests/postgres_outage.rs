//! A storage outage (issue 4): PostgreSQL is stopped and started again under a running node.
//!
//! The test starts a PostgreSQL cluster of its own (the shared server on 5432 is never
//! touched), one real `herald` process on it, and three real HTTPS receivers in this process.
//! Events are published one by one, continuously. Mid-run PostgreSQL is stopped the way an
//! operator restarts it (`pg_ctl -m fast stop`); while it is down, the organization API, the
//! publish API and `/readyz` must answer 503 `UNAVAILABLE` with `Retry-After`, promptly, and
//! `/healthz` must stay 200, and `/metrics` must answer 200 with `herald_storage_up 0`. PostgreSQL is then started again on the same port and data
//! directory; without restarting herald, `/readyz` must answer 200 within a bound, every event
//! that was answered 202 (before or after the outage) must reach every endpoint, and nothing
//! may stay pending. The time from PostgreSQL being back to herald serving and delivering
//! again is reported.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use support::postgres::PrivateCluster;
use support::{
    ADMIN_TOKEN, DuplicateReport, EVENT_TYPE, Herald, Launcher, Receiver, Strangers, Tenant,
    TestPki, all_attempts, assert_all_delivered, http_client, queue_metrics, random_secrets_key,
    string_field, successes_per_pair, wait_for_empty_queue, wait_until,
};

const ENDPOINTS: usize = 3;
/// Events accepted before PostgreSQL is stopped, and after it is back, at least.
const EVENTS_BEFORE: usize = 100;
const EVENTS_AFTER: usize = 100;
/// The pause between two publishes.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Every request is cut off after this long; an answer must come well within it.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long PostgreSQL stays down: long enough for every pooled connection to be found broken
/// and for the worker and recorder to back off to their longest delay (5 s).
const OUTAGE: Duration = Duration::from_secs(8);
/// How often the probes are sent during the outage.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long herald may take to be ready, publish and deliver again once PostgreSQL is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);
/// How long the last deliveries may take after publishing stopped.
const DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// Phases of the test, recorded with each arrival.
const BEFORE: usize = 0;
const DURING: usize = 1;
const AFTER: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_answers_503_while_postgres_is_down_and_recovers_without_a_restart() {
    let started = Instant::now();

    // Arrange: a private PostgreSQL, a CA, three receivers, one node, an organization with one
    // endpoint per receiver, and events published continuously.
    let cluster = tokio::task::block_in_place(PrivateCluster::start);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = TestPki::new();
    let ca_path = pki.write_root(dir.path());
    let phase = Arc::new(AtomicUsize::new(BEFORE));
    let receivers = Receiver::spawn_many(&pki, ENDPOINTS, &phase).await;
    let http = http_client();
    let launcher = Launcher::new(
        "herald",
        &cluster.url,
        &ca_path,
        dir.path().join("herald.log"),
    )
    .env("HERALD_SECRETS_KEY", random_secrets_key())
    .env("HERALD_REQUEST_TIMEOUT_SECONDS", "5");
    let mut herald = launcher.start(&http).await;
    let herald_pid = herald.pid();
    let mut tenant = Tenant::create(&http, &herald, "outage-test").await;
    tenant.subscribe(&http, &herald, &receivers).await;
    let publisher = SteadyPublisher::spawn(&http, &herald, &tenant.org_id);
    let reached = wait_until(Duration::from_secs(30), || {
        herald.assert_running();
        publisher.accepted() >= EVENTS_BEFORE
    })
    .await;
    assert!(
        reached,
        "only {} events were accepted in 30 s before the outage",
        publisher.accepted()
    );

    // Act: stop PostgreSQL; probe the API while it is down; start it again.
    tokio::task::block_in_place(|| cluster.stop());
    let stopped_at = Instant::now();
    phase.store(DURING, Ordering::SeqCst);
    let accepted_at_stop = publisher.accepted();
    eprintln!(
        "outage test: PostgreSQL stopped after {:.1?}, with {accepted_at_stop} events accepted",
        started.elapsed()
    );
    let mut probes = Vec::new();
    let mut scrapes = Vec::new();
    while stopped_at.elapsed() < OUTAGE {
        let round = Instant::now();
        probes.extend(probe_once(&http, &herald, &tenant).await);
        scrapes.push(scrape_metrics(&http, &herald).await);
        herald.assert_running();
        tokio::time::sleep(PROBE_EVERY.saturating_sub(round.elapsed())).await;
    }
    // PostgreSQL accepts connections a little before `pg_ctl start` returns, so a publish
    // waiting in herald for a connection may commit just before `resumed_at`; it was
    // certainly down until `starting_at`.
    let starting_at = Instant::now();
    tokio::task::block_in_place(|| cluster.resume());
    let resumed_at = Instant::now();
    phase.store(AFTER, Ordering::SeqCst);
    let recovery = watch_recovery(&http, &herald, &receivers).await;
    let more = wait_until(RECOVER_WITHIN + Duration::from_secs(30), || {
        herald.assert_running();
        publisher.accepted_since(resumed_at) >= EVENTS_AFTER
    })
    .await;
    let log = publisher.finish().await;
    let first_accepted = log
        .accepted
        .iter()
        .find(|accepted| accepted.at > resumed_at)
        .map(|accepted| accepted.at - resumed_at);
    eprintln!(
        "outage test: PostgreSQL down for {:.1?}; time to recover once it was back: /readyz \
         200 after {:?}, first publish answered 202 after {first_accepted:?}, first delivery \
         sent after {:?}",
        resumed_at - stopped_at,
        recovery.ready,
        recovery.first_sent,
    );
    assert!(
        more,
        "only {} events were accepted after PostgreSQL came back",
        log.accepted_since(resumed_at)
    );

    // Assert: during the outage every answer was a prompt 503 UNAVAILABLE with Retry-After,
    // the probes' and the publisher's alike, and the liveness probe stayed 200.
    let during: Vec<&Answer> = log
        .refused
        .iter()
        .map(|(_, answer)| answer)
        .chain(
            probes
                .iter()
                .filter(|answer| answer.request != "GET /healthz"),
        )
        .collect();
    let wrong: Vec<&&Answer> = during
        .iter()
        .filter(|answer| !answer.is_prompt_unavailable())
        .collect();
    assert!(
        wrong.is_empty(),
        "while PostgreSQL was down, {} of {} answers were not a prompt 503 UNAVAILABLE with \
         Retry-After (herald's log below says why), e.g.:\n{:#?}",
        wrong.len(),
        during.len(),
        &wrong[..wrong.len().min(5)]
    );
    for request in ["GET /v1/webhooks", "POST /admin/v1/events", "GET /readyz"] {
        assert!(
            probes.iter().any(|answer| answer.request == request),
            "{request} was never probed during the outage"
        );
    }
    let liveness: Vec<&Answer> = probes
        .iter()
        .filter(|answer| answer.request == "GET /healthz")
        .collect();
    assert!(
        !liveness.is_empty()
            && liveness
                .iter()
                .all(|answer| answer.status == Some(StatusCode::OK)),
        "/healthz must stay 200 while storage is down: {liveness:#?}"
    );
    assert!(
        !log.refused.is_empty(),
        "the publisher, publishing all along, must have met the outage"
    );
    // /metrics keeps answering with this process's counters and says storage is down.
    assert!(
        !scrapes.is_empty()
            && scrapes.iter().all(|scrape| {
                scrape.status == Some(StatusCode::OK)
                    && scrape.body.contains("herald_events_published_total")
                    && scrape
                        .body
                        .lines()
                        .any(|line| line == "herald_storage_up 0")
            }),
        "/metrics must answer 200 with the counters and herald_storage_up 0 while PostgreSQL \
         is down: {scrapes:#?}"
    );
    // A publish sent once PostgreSQL was down cannot have committed before it came back.
    let accepted_while_down = log
        .accepted
        .iter()
        .filter(|accepted| accepted.sent > stopped_at && accepted.at < starting_at)
        .count();
    assert_eq!(
        accepted_while_down, 0,
        "no publish may be answered 202 while PostgreSQL is down"
    );

    // Herald recovered by itself, in time.
    assert_eq!(herald.pid(), herald_pid, "herald was never restarted");
    herald.assert_running();
    assert!(
        recovery.ready.is_some() && recovery.first_sent.is_some(),
        "herald must be ready and deliver again within {RECOVER_WITHIN:?} of PostgreSQL's \
         return, got {recovery:?}"
    );

    // Every accepted event reaches every endpoint, and nothing stays pending.
    let published: HashMap<String, u64> = log
        .accepted
        .iter()
        .map(|accepted| (accepted.event_id.clone(), accepted.n))
        .collect();
    let pairs = published.len() * ENDPOINTS;
    let delivered = wait_until(DRAIN_WITHIN, || {
        herald.assert_running();
        all_arrived(&receivers, &published)
    })
    .await;
    assert!(
        delivered,
        "not every accepted event reached every endpoint within {DRAIN_WITHIN:?}; herald \
         says:\n{}",
        queue_metrics(&http, &herald).await
    );
    let strangers = assert_all_delivered(&receivers, &published, Strangers::Allowed);
    let queue = wait_for_empty_queue(&http, &herald, Duration::from_secs(30)).await;
    assert_eq!(
        queue,
        Some((0, 0)),
        "herald_deliveries_due and herald_deliveries_scheduled must drop to 0"
    );
    let attempts = all_attempts(&http, &herald, &tenant.api_key).await;
    let recorded = successes_per_pair(&attempts);
    let accepted_recorded: Vec<usize> = recorded
        .iter()
        .filter(|((_, event_id), _)| published.contains_key(event_id))
        .map(|(_, count)| *count)
        .collect();
    assert!(
        accepted_recorded.len() == pairs && accepted_recorded.iter().all(|&count| count == 1),
        "herald must record exactly one success per accepted pair: {} of {pairs} recorded, {} \
         more than once",
        accepted_recorded.len(),
        accepted_recorded.iter().filter(|&&count| count > 1).count()
    );
    let report = DuplicateReport::of(&receivers, 3);
    let slowest = during.iter().map(|answer| answer.elapsed).max();
    eprintln!(
        "outage test: during the outage, {} answers were 503 UNAVAILABLE with Retry-After, the \
         slowest after {slowest:?}: {}",
        during.len(),
        summarize(&probes)
    );
    eprintln!(
        "outage test: {} events accepted ({accepted_at_stop} before the outage), {} answered \
         503 during it; {} events delivered that were never answered 202; {} deliveries \
         received, {} duplicates = received − expected (before/during/after: {:?}); {} \
         attempts recorded",
        published.len(),
        log.refused.len(),
        strangers,
        report.received,
        report.duplicates,
        report.by_phase,
        attempts.len()
    );

    let status = herald.terminate().await;
    assert!(
        status.is_some_and(|status| status.success()),
        "herald must exit 0 soon after SIGTERM, got {status:?}"
    );
    eprintln!("outage test: finished in {:.1?}", started.elapsed());
}

/// One request's answer, as far as it got.
#[derive(Debug)]
struct Answer {
    request: &'static str,
    status: Option<StatusCode>,
    code: Option<String>,
    retry_after: Option<String>,
    /// The body, or the client's error when no answer came.
    body: String,
    elapsed: Duration,
}

impl Answer {
    /// Sends `request` and records what came back, within [`ANSWER_WITHIN`].
    async fn of(name: &'static str, request: RequestBuilder) -> Self {
        let sent = Instant::now();
        match request.timeout(ANSWER_WITHIN).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body = response.text().await.unwrap_or_default();
                let code = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
                Self {
                    request: name,
                    status: Some(status),
                    code,
                    retry_after,
                    body,
                    elapsed: sent.elapsed(),
                }
            }
            Err(error) => Self {
                request: name,
                status: None,
                code: None,
                retry_after: None,
                body: format!("no answer: {}", support::error_chain(&error)),
                elapsed: sent.elapsed(),
            },
        }
    }

    /// 503 `UNAVAILABLE` with a `Retry-After` of whole seconds, within the bound.
    fn is_prompt_unavailable(&self) -> bool {
        self.status == Some(StatusCode::SERVICE_UNAVAILABLE)
            && self.code.as_deref() == Some("UNAVAILABLE")
            && self
                .retry_after
                .as_deref()
                .is_some_and(|seconds| seconds.parse::<u64>().is_ok_and(|seconds| seconds >= 1))
            && self.elapsed < ANSWER_WITHIN
    }
}

/// Each probed request's statuses and longest wait, for the report.
fn summarize(probes: &[Answer]) -> String {
    let mut by_request: Vec<(&str, Vec<u16>, Duration)> = Vec::new();
    for answer in probes {
        let status = answer.status.map_or(0, |status| status.as_u16());
        match by_request
            .iter_mut()
            .find(|(name, ..)| *name == answer.request)
        {
            Some((_, statuses, longest)) => {
                statuses.push(status);
                *longest = (*longest).max(answer.elapsed);
            }
            None => by_request.push((answer.request, vec![status], answer.elapsed)),
        }
    }
    by_request
        .iter()
        .map(|(name, statuses, longest)| format!("{name} {statuses:?} (longest {longest:.1?})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One round of probes: the organization API with a valid key, a publish, readiness and
/// liveness, all at once.
async fn probe_once(http: &reqwest::Client, herald: &Herald, tenant: &Tenant) -> Vec<Answer> {
    let base = &herald.base;
    let (list, publish, ready, live) = tokio::join!(
        Answer::of(
            "GET /v1/webhooks",
            http.get(format!("{base}/v1/webhooks"))
                .bearer_auth(&tenant.api_key)
        ),
        Answer::of(
            "POST /admin/v1/events",
            http.post(format!("{base}/admin/v1/events"))
                .bearer_auth(ADMIN_TOKEN)
                .json(
                    &json!({"org_id": tenant.org_id, "type": EVENT_TYPE, "data": {"n": u32::MAX}})
                )
        ),
        Answer::of("GET /readyz", http.get(format!("{base}/readyz"))),
        Answer::of("GET /healthz", http.get(format!("{base}/healthz"))),
    );
    vec![list, publish, ready, live]
}

/// What a scrape of `/metrics` answered.
#[derive(Debug)]
struct Scrape {
    status: Option<StatusCode>,
    /// The first lines that matter: the storage gauge and the publish counter.
    body: String,
}

async fn scrape_metrics(http: &reqwest::Client, herald: &Herald) -> Scrape {
    match http
        .get(format!("{}/metrics", herald.base))
        .timeout(ANSWER_WITHIN)
        .send()
        .await
    {
        Ok(response) => Scrape {
            status: Some(response.status()),
            body: response
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|line| {
                    line.starts_with("herald_storage_up")
                        || line.starts_with("herald_events_published")
                })
                .collect::<Vec<_>>()
                .join("\n"),
        },
        Err(error) => Scrape {
            status: None,
            body: error.to_string(),
        },
    }
}

/// How long after PostgreSQL's return herald got back to work; `None` where it did not
/// within [`RECOVER_WITHIN`].
#[derive(Debug)]
struct Recovery {
    /// `/readyz` answered 200.
    ready: Option<Duration>,
    /// A receiver got a delivery (nothing can be claimed while PostgreSQL is down, and what
    /// was claimed before went out at once).
    first_sent: Option<Duration>,
}

/// Polls readiness and the receivers from now on.
async fn watch_recovery(
    http: &reqwest::Client,
    herald: &Herald,
    receivers: &[Receiver],
) -> Recovery {
    let back = Instant::now();
    let mut recovery = Recovery {
        ready: None,
        first_sent: None,
    };
    while back.elapsed() < RECOVER_WITHIN {
        if recovery.ready.is_none() {
            let ready = http
                .get(format!("{}/readyz", herald.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status() == StatusCode::OK) {
                recovery.ready = Some(back.elapsed());
            }
        }
        if recovery.first_sent.is_none() && arrivals_in(receivers, AFTER) > 0 {
            recovery.first_sent = Some(back.elapsed());
        }
        if recovery.ready.is_some() && recovery.first_sent.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recovery
}

/// Deliveries that arrived in `phase`.
fn arrivals_in(receivers: &[Receiver], phase: usize) -> usize {
    receivers
        .iter()
        .map(|receiver| {
            let log = receiver.state.log.lock().expect("receiver log");
            log.arrivals
                .values()
                .flatten()
                .filter(|&&arrived| arrived == phase)
                .count()
        })
        .sum()
}

/// Whether every event of `published` reached every receiver.
fn all_arrived(receivers: &[Receiver], published: &HashMap<String, u64>) -> bool {
    receivers.iter().all(|receiver| {
        let log = receiver.state.log.lock().expect("receiver log");
        published
            .keys()
            .all(|event_id| log.arrivals.contains_key(event_id))
    })
}

/// An event the publish API answered 202 for.
struct Accepted {
    event_id: String,
    n: u64,
    /// When the request was sent.
    sent: Instant,
    /// When the answer came.
    at: Instant,
}

/// What the publisher saw.
#[derive(Default)]
struct PublishLog {
    accepted: Vec<Accepted>,
    /// Every other answer, with the event's number.
    refused: Vec<(u64, Answer)>,
}

impl PublishLog {
    fn record(&mut self, n: u64, accepted: Option<Accepted>, answer: Answer) {
        match accepted {
            Some(accepted) => self.accepted.push(accepted),
            None => self.refused.push((n, answer)),
        }
    }

    fn accepted_since(&self, since: Instant) -> usize {
        self.accepted
            .iter()
            .filter(|accepted| accepted.at > since)
            .count()
    }
}

/// Publishes events one by one, each with its own number, until told to stop.
struct SteadyPublisher {
    log: Arc<Mutex<PublishLog>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl SteadyPublisher {
    fn spawn(http: &reqwest::Client, herald: &Herald, org_id: &str) -> Self {
        let log = Arc::new(Mutex::new(PublishLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{}/admin/v1/events", herald.base);
        let task = tokio::spawn({
            let (http, org_id) = (http.clone(), org_id.to_owned());
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let request = http
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({"org_id": org_id, "type": EVENT_TYPE, "data": {"n": n}}));
                    let sent = Instant::now();
                    let answer = Answer::of("POST /admin/v1/events", request).await;
                    let accepted = (answer.status == Some(StatusCode::ACCEPTED)).then(|| {
                        let body: Value =
                            serde_json::from_str(&answer.body).expect("a 202 carries JSON");
                        assert_eq!(body["endpoints"], ENDPOINTS, "fan-out of event {n}: {body}");
                        Accepted {
                            event_id: string_field(&body, "event_id"),
                            n,
                            sent,
                            at: Instant::now(),
                        }
                    });
                    log.lock().expect("publish log").record(n, accepted, answer);
                    n += 1;
                    tokio::time::sleep(PUBLISH_EVERY).await;
                }
            }
        });
        Self { log, stop, task }
    }

    fn accepted(&self) -> usize {
        self.log.lock().expect("publish log").accepted.len()
    }

    fn accepted_since(&self, since: Instant) -> usize {
        self.log.lock().expect("publish log").accepted_since(since)
    }

    /// Stops after the publish in flight; everything it saw.
    async fn finish(self) -> PublishLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(error) = self.task.await {
            std::panic::resume_unwind(error.into_panic());
        }
        Arc::try_unwrap(self.log)
            .ok()
            .expect("the publisher is done")
            .into_inner()
            .expect("publish log")
    }
}
