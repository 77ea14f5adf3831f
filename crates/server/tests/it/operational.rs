//! Endpoint health and operational events (CONTRACT.md section 11): Herald publishes
//! `endpoint.disabled`, `endpoint.enabled` and `delivery.exhausted` into the organization they
//! concern, delivered and signed like any event, and to the operator's hook; it probes an
//! endpoint disabled for its failures and, on the first 2xx, re-enables it and recovers what
//! it missed under the original event ids. A 410 disables for good: never probed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_testkit::{Received, Receiver, TestCa};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backend, TestApp, TestOrg, delivering, endpoint_path, header, received_json, string_at,
    verify_delivery, wait_until,
};

backend_tests!(
    a_failing_endpoint_is_disabled_reported_probed_enabled_and_caught_up,
    a_gone_endpoint_is_disabled_reported_and_never_probed,
    probing_stops_after_the_probe_period,
    an_exhausted_delivery_is_reported_but_never_one_about_an_exhausted_delivery,
    enabling_through_the_api_is_reported_once_and_starts_no_recovery,
    the_platform_cannot_publish_operational_events,
    the_operator_hook_is_nobody_s_endpoint,
    the_operator_hook_is_never_disabled,
);

const EVENT: &str = "wallet.balance_low";
const OPERATIONAL: [&str; 3] = [
    "endpoint.disabled",
    "endpoint.enabled",
    "delivery.exhausted",
];
/// The operator hook's secret in these tests.
const OPERATOR_SECRET: [u8; 32] = [9; 32];

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The received requests whose body is an event of `event_type`, as (request, body).
fn of_type(receiver: &Receiver, event_type: &str) -> Vec<(Received, Value)> {
    receiver
        .received()
        .into_iter()
        .map(|request| {
            let body = received_json(&request);
            (request, body)
        })
        .filter(|(_, body)| body["type"] == json!(event_type))
        .collect()
}

/// Waits until `receiver` got at least `count` events of `event_type`; returns them.
async fn wait_for_type(
    receiver: &Receiver,
    event_type: &str,
    count: usize,
) -> Vec<(Received, Value)> {
    wait_until(&format!("{count} {event_type} event(s)"), || async {
        let found = of_type(receiver, event_type);
        (found.len() >= count).then_some(found)
    })
    .await
}

/// The time settings of a test: the retry schedule, the auto-disable period, the probe
/// interval.
struct Timing {
    schedule: Vec<Duration>,
    disable_after: Duration,
    probe_every: Duration,
}

/// What most tests here start from: a Herald with the operator hook at `operator`'s `/ok`,
/// an organization, its endpoint at `target` (at the path given), and a second endpoint at
/// `watcher`'s `/ok` subscribed to every operational type.
struct Watched {
    target: Receiver,
    watcher: Receiver,
    operator: Receiver,
    ca: TestCa,
    app: TestApp,
    org: TestOrg,
    endpoint: Value,
    watching: Value,
}

async fn watched(backend: Backend, target_path: &str, timing: Timing) -> Watched {
    let ca = TestCa::new();
    let (target, watcher, operator) = (
        Receiver::spawn(&ca).await,
        Receiver::spawn(&ca).await,
        Receiver::spawn(&ca).await,
    );
    let app = delivering(backend, &ca)
        .retry_schedule(timing.schedule)
        .auto_disable_after(timing.disable_after)
        .probe_interval(timing.probe_every)
        .operator_hook(operator.url("/ok"), OPERATOR_SECRET)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &target.url(target_path), &[EVENT])
        .await;
    let watching = app
        .create_endpoint_at(&org.key, &watcher.url("/ok"), &OPERATIONAL)
        .await;
    Watched {
        target,
        watcher,
        operator,
        ca,
        app,
        org,
        endpoint,
        watching,
    }
}

impl Timing {
    /// Two attempts 20 ms apart; no auto-disable or probe within a test's time.
    fn two_attempts_never_disabled() -> Self {
        Self {
            schedule: vec![millis(20)],
            disable_after: HOUR,
            probe_every: HOUR,
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

async fn endpoint_now(app: &TestApp, org: &TestOrg, endpoint: &Value) -> Value {
    let reply = app.get(&org.key, &endpoint_path(endpoint)).await;
    reply.assert_status(StatusCode::OK);
    reply.body
}

/// Checks an operational event's envelope and signature as delivered with `secret`.
async fn assert_signed(request: &Received, body: &Value, secret: &str, org: &TestOrg) {
    assert_eq!(body["org_id"], json!(org.id.to_string()), "{body}");
    assert_eq!(header(request, "webhook-id"), string_at(body, "id"));
    let verdict = verify_delivery(request, &request.body, secret, None, None).await;
    assert!(verdict.accepted, "signed: {}", verdict.reason);
}

async fn a_failing_endpoint_is_disabled_reported_probed_enabled_and_caught_up(backend: Backend) {
    // Arrange: an endpoint whose receiver fails; a second endpoint watching operational
    // events; the operator hook. Retries every 100 ms (many of them), disabled after 400 ms
    // of failure, probed every 300 ms.
    let timing = Timing {
        schedule: vec![millis(100); 60],
        disable_after: millis(400),
        probe_every: millis(300),
    };
    let Watched {
        target,
        watcher,
        operator,
        app,
        org,
        endpoint,
        watching,
        ..
    } = watched(backend, "/fail", timing).await;
    let first = app.publish(org.id, EVENT, &json!({"n": 1})).await;

    // Act 1: the failures go on until Herald disables the endpoint.
    let disabled = wait_for_type(&watcher, "endpoint.disabled", 1).await;

    // Assert: the endpoint reads disabled for `failing`, since its first failure.
    let now = endpoint_now(&app, &org, &endpoint).await;
    assert_eq!(now["active"], json!(false), "{now}");
    assert_eq!(now["disabled_reason"], json!("failing"), "{now}");
    assert!(now["failing_since"].is_string(), "{now}");
    // The watcher got `endpoint.disabled`, signed with its own secret.
    let (request, body) = &disabled[0];
    assert_signed(request, body, &string_at(&watching, "secret"), &org).await;
    let data = &body["data"];
    assert_eq!(data["endpoint_id"], endpoint["id"], "{body}");
    assert_eq!(data["url"], json!(target.url("/fail")), "{body}");
    assert_eq!(data["reason"], json!("failing"), "{body}");
    assert_eq!(data["failing_since"], now["failing_since"], "{body}");
    assert!(data["disabled_at"].is_string(), "{body}");
    // The operator hook got the same event, signed with the operator's secret.
    let hooked = wait_for_type(&operator, "endpoint.disabled", 1).await;
    let operator_secret = STANDARD.encode(OPERATOR_SECRET);
    assert_signed(&hooked[0].0, &hooked[0].1, &operator_secret, &org).await;
    assert_eq!(hooked[0].1["id"], body["id"], "the same event");

    // Act 2: an event published while disabled reaches nobody; then the receiver recovers.
    let second = app.publish(org.id, EVENT, &json!({"n": 2})).await;
    assert_eq!(second["endpoints"], json!(0), "{second}");
    let patched = app
        .patch(
            &org.key,
            &endpoint_path(&endpoint),
            &json!({"url": target.url("/ok")}),
        )
        .await;
    patched.assert_status(StatusCode::OK);
    assert_eq!(
        patched.body["active"],
        json!(false),
        "a URL change does not enable"
    );

    // Assert: a probe's 2xx enables it, `endpoint.enabled` (by probe) is reported to both.
    let enabled = wait_for_type(&watcher, "endpoint.enabled", 1).await;
    assert_eq!(
        enabled[0].1["data"]["by"],
        json!("probe"),
        "{}",
        enabled[0].1
    );
    assert_eq!(enabled[0].1["data"]["endpoint_id"], endpoint["id"]);
    wait_for_type(&operator, "endpoint.enabled", 1).await;
    let now = endpoint_now(&app, &org, &endpoint).await;
    assert_eq!(now["active"], json!(true), "{now}");
    assert_eq!(now["disabled_reason"], Value::Null, "{now}");
    assert_eq!(now["failing_since"], Value::Null, "{now}");
    // Both events it missed arrive at /ok under their original ids: the one that died while
    // it was disabled, and the one published then.
    let caught_up = wait_until("both events at /ok", || async {
        let ids: Vec<String> = target
            .received()
            .iter()
            .filter(|request| request.path == "/ok")
            .filter(|request| received_json(request)["type"] == json!(EVENT))
            .map(|request| header(request, "x-amcore-event-id"))
            .collect();
        (ids.len() >= 2).then_some(ids)
    })
    .await;
    let mut expected = vec![
        string_at(&first, "event_id"),
        string_at(&second, "event_id"),
    ];
    let mut caught_up = caught_up;
    caught_up.sort();
    expected.sort();
    assert_eq!(caught_up, expected);
    // The probe is a signed `webhook.test`, and is in the feed.
    let probes = of_type(&target, "webhook.test");
    assert!(!probes.is_empty(), "probed with webhook.test");
    assert_signed(
        &probes[0].0,
        &probes[0].1,
        &string_at(&endpoint, "secret"),
        &org,
    )
    .await;
    // Audited: disabled, enabled by the probe, and the recovery it started.
    let actions: Vec<Value> = app
        .audit_log(org.id)
        .await
        .into_iter()
        .map(|record| record["action"].clone())
        .collect();
    for action in ["endpoint.disabled", "endpoint.enabled", "recover"] {
        assert!(actions.contains(&json!(action)), "{action} in {actions:?}");
    }
}

async fn a_gone_endpoint_is_disabled_reported_and_never_probed(backend: Backend) {
    // Arrange
    let timing = Timing {
        schedule: vec![millis(50); 5],
        disable_after: millis(400),
        probe_every: millis(100),
    };
    let Watched {
        target,
        watcher,
        app,
        org,
        endpoint,
        ..
    } = watched(backend, "/gone", timing).await;

    // Act
    let published = app.publish(org.id, EVENT, &json!({})).await;

    // Assert: disabled for `gone`, reported, and the delivery reported exhausted.
    let disabled = wait_for_type(&watcher, "endpoint.disabled", 1).await;
    assert_eq!(disabled[0].1["data"]["reason"], json!("gone"));
    assert!(
        disabled[0].1["data"]["failing_since"].is_string(),
        "a 410 is a failure too"
    );
    let exhausted = wait_for_type(&watcher, "delivery.exhausted", 1).await;
    let data = &exhausted[0].1["data"];
    assert_eq!(data["event_id"], published["event_id"], "{data}");
    assert_eq!(data["attempts"], json!(1), "{data}");
    let now = endpoint_now(&app, &org, &endpoint).await;
    assert_eq!(now["disabled_reason"], json!("gone"), "{now}");
    // Ten probe intervals later the receiver has still seen only the one request.
    tokio::time::sleep(millis(1_000)).await;
    assert_eq!(
        target.received().len(),
        1,
        "a gone endpoint is never probed"
    );
    assert!(of_type(&watcher, "endpoint.enabled").is_empty());
}

async fn probing_stops_after_the_probe_period(backend: Backend) {
    // Arrange: disabled after 200 ms of failures, probed every 100 ms for 500 ms.
    let ca = TestCa::new();
    let (target, operator) = (Receiver::spawn(&ca).await, Receiver::spawn(&ca).await);
    let app = delivering(backend, &ca)
        .retry_schedule(vec![millis(50); 40])
        .auto_disable_after(millis(200))
        .probe_interval(millis(100))
        .probe_for(millis(500))
        .operator_hook(operator.url("/ok"), OPERATOR_SECRET)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &target.url("/fail"), &[EVENT])
        .await;
    app.publish(org.id, EVENT, &json!({})).await;
    wait_for_type(&operator, "endpoint.disabled", 1).await;

    // Act: a few probes fail, then the period ends.
    wait_for_type(&target, "webhook.test", 2).await;
    tokio::time::sleep(millis(800)).await;
    let probed = of_type(&target, "webhook.test").len();
    tokio::time::sleep(millis(600)).await;

    // Assert: no probe after the period, and the endpoint stays disabled.
    assert_eq!(
        of_type(&target, "webhook.test").len(),
        probed,
        "probing stopped"
    );
    assert!(
        probed <= 6,
        "about one probe per interval within the period: {probed}"
    );
    let now = endpoint_now(&app, &org, &endpoint).await;
    assert_eq!(now["disabled_reason"], json!("failing"), "{now}");
}

async fn an_exhausted_delivery_is_reported_but_never_one_about_an_exhausted_delivery(
    backend: Backend,
) {
    // Arrange: two attempts per delivery. One endpoint fails; a watcher takes the
    // operational events; a second watcher of `delivery.exhausted` fails too, so the report
    // about the first failure dies there as well.
    let timing = Timing::two_attempts_never_disabled();
    let Watched {
        watcher,
        operator,
        ca,
        app,
        org,
        endpoint,
        ..
    } = watched(backend, "/fail", timing).await;
    let failing_watcher = Receiver::spawn(&ca).await;
    app.create_endpoint_at(
        &org.key,
        &failing_watcher.url("/fail"),
        &["delivery.exhausted"],
    )
    .await;

    // Act
    let published = app.publish(org.id, EVENT, &json!({"n": 1})).await;

    // Assert: one `delivery.exhausted`, about the event, after its two attempts.
    let exhausted = wait_for_type(&watcher, "delivery.exhausted", 1).await;
    let (request, body) = &exhausted[0];
    let data = &body["data"];
    assert_eq!(data["endpoint_id"], endpoint["id"], "{body}");
    assert_eq!(data["event_id"], published["event_id"], "{body}");
    assert_eq!(data["event_type"], json!(EVENT), "{body}");
    assert_eq!(data["attempts"], json!(2), "{body}");
    assert_eq!(data["last_error"], json!("http 500"), "{body}");
    assert_eq!(header(request, "x-amcore-event-type"), "delivery.exhausted");
    // The failing watcher's copy dies after its two attempts, and no report of that follows.
    wait_until("the failing watcher's two attempts", || async {
        (failing_watcher.received().len() >= 2).then_some(())
    })
    .await;
    app.wait_for_empty_queue().await;
    assert_eq!(
        of_type(&watcher, "delivery.exhausted").len(),
        1,
        "never about an exhausted delivery"
    );
    assert_eq!(failing_watcher.received().len(), 2);
    // The operator hook got the one report too.
    assert_eq!(
        wait_for_type(&operator, "delivery.exhausted", 1)
            .await
            .len(),
        1
    );
    // And the endpoint is still active: exhausting a delivery is not disabling.
    assert_eq!(
        endpoint_now(&app, &org, &endpoint).await["active"],
        json!(true)
    );
}

async fn enabling_through_the_api_is_reported_once_and_starts_no_recovery(backend: Backend) {
    // Arrange
    let timing = Timing {
        schedule: vec![millis(50)],
        disable_after: HOUR,
        probe_every: millis(100),
    };
    let Watched {
        target,
        watcher,
        app,
        org,
        endpoint,
        ..
    } = watched(backend, "/ok", timing).await;
    let path = endpoint_path(&endpoint);

    // Act: set inactive by the organization (`manual`: no report, never probed), publish,
    // then set active twice.
    let off = app.patch(&org.key, &path, &json!({"active": false})).await;
    off.assert_status(StatusCode::OK);
    assert_eq!(off.body["disabled_reason"], json!("manual"), "{off}");
    app.publish(org.id, EVENT, &json!({})).await;
    tokio::time::sleep(millis(500)).await;
    for _ in 0..2 {
        let on = app.patch(&org.key, &path, &json!({"active": true})).await;
        on.assert_status(StatusCode::OK);
        assert_eq!(on.body["disabled_reason"], Value::Null, "{on}");
    }

    // Assert: one `endpoint.enabled` by the API, no `endpoint.disabled`, nothing probed or
    // recovered at the target.
    let enabled = wait_for_type(&watcher, "endpoint.enabled", 1).await;
    assert_eq!(enabled[0].1["data"]["by"], json!("api"));
    app.wait_for_empty_queue().await;
    assert_eq!(of_type(&watcher, "endpoint.enabled").len(), 1, "once");
    assert!(
        of_type(&watcher, "endpoint.disabled").is_empty(),
        "manual is not reported"
    );
    assert!(
        target.received().is_empty(),
        "no probe, no recovery: {:?}",
        target.received().len()
    );
}

async fn the_platform_cannot_publish_operational_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    for event_type in OPERATIONAL {
        let reply = app
            .admin_post(
                "/admin/v1/events",
                &json!({"org_id": org.id.to_string(), "type": event_type, "data": {}}),
            )
            .await;
        reply.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.body["error"]["code"],
            json!("VALIDATION_FAILED"),
            "{reply}"
        );
        assert_eq!(
            reply.body["error"]["details"]["type"],
            json!(format!("{event_type} is published by Herald itself")),
            "{reply}"
        );
    }
    // Yet an endpoint may subscribe to them.
    let endpoint = app
        .create_endpoint(
            &org.key,
            &json!({"url": "https://example.com/h", "events": OPERATIONAL}),
        )
        .await;
    assert_eq!(endpoint["events"], json!(OPERATIONAL));
}

async fn the_operator_hook_is_nobody_s_endpoint(backend: Backend) {
    // Arrange: an exhausted delivery sends the hook one event.
    let timing = Timing::two_attempts_never_disabled();
    let Watched {
        target,
        watcher,
        operator,
        app,
        org,
        ..
    } = watched(backend, "/fail", timing).await;
    app.publish(org.id, EVENT, &json!({})).await;
    wait_for_type(&operator, "delivery.exhausted", 1).await;
    wait_for_type(&watcher, "delivery.exhausted", 1).await;
    app.wait_for_empty_queue().await;

    // Assert: the organization's feed shows only its own endpoints' attempts (the failed
    // delivery, and the report of it to its watcher), its list only its two endpoints, and no
    // admin route knows the hook's organization.
    let feed = app.deliveries(&org.key, "limit=200").await;
    let mut urls: Vec<String> = feed.iter().map(|record| string_at(record, "url")).collect();
    urls.sort();
    let mut own = vec![target.url("/fail"), target.url("/fail"), watcher.url("/ok")];
    own.sort();
    assert_eq!(urls, own, "only the organization's own attempts");
    let list = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(
        list.body["data"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    let orgs = app.admin_get("/admin/v1/orgs").await;
    let ids: Vec<&Value> = orgs.body["data"]
        .as_array()
        .expect("orgs")
        .iter()
        .map(|o| &o["id"])
        .collect();
    let hidden = json!("00000000-0000-0000-0000-000000000000");
    assert!(!ids.contains(&&hidden), "{orgs}");
    let reply = app
        .admin_get(&format!(
            "/admin/v1/orgs/{}",
            hidden.as_str().expect("text")
        ))
        .await;
    reply.assert_status(StatusCode::NOT_FOUND);
    let keys = app
        .admin_post(
            &format!("/admin/v1/orgs/{}/keys", hidden.as_str().expect("text")),
            &json!({"scopes": ["webhooks:read"]}),
        )
        .await;
    keys.assert_status(StatusCode::NOT_FOUND);
}

async fn the_operator_hook_is_never_disabled(backend: Backend) {
    // Arrange: the hook answers 410, which would disable any endpoint.
    let ca = TestCa::new();
    let (target, operator) = (Receiver::spawn(&ca).await, Receiver::spawn(&ca).await);
    let app = delivering(backend, &ca)
        .retry_schedule(vec![millis(20)])
        .operator_hook(operator.url("/gone"), OPERATOR_SECRET)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &target.url("/fail"), &[EVENT])
        .await;

    // Act: two deliveries die, one after the other.
    app.publish(org.id, EVENT, &json!({"n": 1})).await;
    wait_for_type(&operator, "delivery.exhausted", 1).await;
    app.wait_for_empty_queue().await;
    app.publish(org.id, EVENT, &json!({"n": 2})).await;

    // Assert: the hook still gets the second report, and nothing is ever said about it.
    wait_for_type(&operator, "delivery.exhausted", 2).await;
    app.wait_for_empty_queue().await;
    assert_eq!(
        operator.received().len(),
        2,
        "one request per report, no more"
    );
    assert!(of_type(&operator, "endpoint.disabled").is_empty());
    assert!(of_type(&operator, "endpoint.enabled").is_empty());
}
