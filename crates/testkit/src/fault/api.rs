//! The API calls the fault tests make against a running `herald serve`: setting up an
//! organization and its endpoints, publishing, walking the deliveries feed and reading
//! `/metrics`; each request is bounded and a wrong answer fails the test with its body.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{ADMIN_TOKEN, EVENT_TYPE, Herald, Receiver};

/// An organization set up for a test: its id, a read/write key and one endpoint per receiver.
pub struct Tenant {
    /// The organization's id.
    pub org_id: String,
    /// A key with `webhooks:read` and `webhooks:write`.
    pub api_key: String,
    /// One endpoint per receiver subscribed so far, in the receivers' order.
    pub endpoint_ids: Vec<String>,
}

impl Tenant {
    /// Creates an organization named `name` and a key through the admin API.
    pub async fn create(http: &reqwest::Client, herald: &Herald, name: &str) -> Self {
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
    pub async fn subscribe(
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
pub async fn publish_batch(
    http: &reqwest::Client,
    base: &str,
    org_id: &str,
    numbers: &[u64],
    endpoints: usize,
) -> HashMap<String, u64> {
    publish_keyed_batch(http, base, org_id, numbers, endpoints, None).await
}

/// [`publish_batch`], each event with the ordering key `k<n % keys>` when `keys` is given.
pub async fn publish_keyed_batch(
    http: &reqwest::Client,
    base: &str,
    org_id: &str,
    numbers: &[u64],
    endpoints: usize,
    keys: Option<u64>,
) -> HashMap<String, u64> {
    let events: Vec<Value> = numbers
        .iter()
        .map(|n| {
            let mut event = json!({"org_id": org_id, "type": EVENT_TYPE, "data": {"n": n}});
            if let Some(keys) = keys {
                event["ordering_key"] = json!(format!("k{}", n % keys));
            }
            event
        })
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
pub async fn all_attempts(http: &reqwest::Client, herald: &Herald, api_key: &str) -> Vec<Value> {
    attempts_matching(http, &herald.base, api_key, &[]).await
}

/// The attempts of the deliveries feed at `base` that match `filters` (query parameters),
/// walking it page by page.
pub async fn attempts_matching(
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
pub fn successes_per_pair(attempts: &[Value]) -> HashMap<(String, String), usize> {
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
pub async fn scrape(http: &reqwest::Client, herald: &Herald) -> String {
    let response = http
        .get(format!("{}/metrics", herald.base))
        .send()
        .await
        .expect("scrape metrics");
    assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
    response.text().await.expect("metrics text")
}

/// The value of a series (`name` or `name{labels}`) in Prometheus text; `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

/// Polls `GET /metrics` until both queue gauges read 0 or `bound` passes; the last reading.
pub async fn wait_for_empty_queue(
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
pub async fn queue_metrics(http: &reqwest::Client, herald: &Herald) -> String {
    let text = match http.get(format!("{}/metrics", herald.base)).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => return format!("GET /metrics failed: {error}"),
    };
    text.lines()
        .filter(|line| line.starts_with("herald_") && !line.contains("_bucket"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `POST path` with the admin token; fails the test unless the answer is 201 with JSON.
pub async fn admin_post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> Value {
    admin_post_expecting(http, base, path, body, StatusCode::CREATED).await
}

/// `POST path` with the admin token; fails the test unless the answer is `status` with JSON.
pub async fn admin_post_expecting(
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

/// The JSON body of `response`; fails the test, with the body, unless the status is `status`.
pub async fn expect_json(response: reqwest::Response, status: StatusCode) -> Value {
    let url = response.url().path().to_owned();
    let actual = response.status();
    let text = response.text().await.expect("response body");
    assert_eq!(actual, status, "{url} answered {actual}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{url}: {error}: {text}"))
}

/// An error and its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The string field `name` of `value`; fails the test when it is missing.
pub fn string_field(value: &Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("`{name}` is missing from {value}"))
        .to_owned()
}
