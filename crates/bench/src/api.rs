//! The calls the workloads make to Herald's HTTP API: the admin API to create an organization
//! and its key and to publish events, the organization API to create, read and update
//! endpoints and to recover them, and `/metrics`. Any answer other than the documented success
//! is an error that names the route and the body.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::herald::ADMIN_TOKEN;

/// The event type every endpoint subscribes to and every event carries.
pub(crate) const EVENT_TYPE: &str = "wallet.balance_low";
/// Events per batch publish in the ingest workload.
pub(crate) const BATCH_SIZE: usize = 100;
/// The most events one batch publish may carry.
pub(crate) const MAX_BATCH_SIZE: usize = 500;

/// A client of one Herald. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    /// The custom headers every endpoint created through it carries (`--endpoint-headers`).
    endpoint_headers: serde_json::Map<String, Value>,
}

/// A fresh HTTP client with a connection pool of its own.
fn http_client() -> anyhow::Result<reqwest::Client> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the harness measures Herald from outside: a client of its API on loopback, not a delivery"
    )]
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the API client")
}

/// An organization with the API key that manages its endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    /// The organization's id.
    pub(crate) id: String,
    api_key: String,
}

impl Api {
    /// A client of the Herald at `base` (`http://127.0.0.1:<port>`) whose endpoints carry
    /// `endpoint_headers` custom headers.
    pub(crate) fn new(base: &str, endpoint_headers: u8) -> anyhow::Result<Self> {
        let http = http_client()?;
        let endpoint_headers = (1..=endpoint_headers)
            .map(|n| {
                (
                    format!("X-Bench-Header-{n}"),
                    Value::String(format!("{n:02}-abcdefghijklmnopqrstuvwxyz-0123")),
                )
            })
            .collect();
        Ok(Self {
            http,
            base: base.to_owned(),
            endpoint_headers,
        })
    }

    /// A client of the same Herald with a connection pool of its own, for use on another
    /// runtime: a pooled connection is driven by a task of the runtime that opened it.
    pub(crate) fn with_own_connections(&self) -> anyhow::Result<Self> {
        let http = http_client()?;
        Ok(Self {
            http,
            base: self.base.clone(),
            endpoint_headers: self.endpoint_headers.clone(),
        })
    }

    /// Creates an organization and a key with the webhook scopes.
    pub(crate) async fn create_org(&self, name: &str) -> anyhow::Result<Org> {
        let org = self
            .admin_post(
                "/admin/v1/orgs",
                &json!({ "name": name }),
                StatusCode::CREATED,
            )
            .await?;
        let id = string_field(&org, "id")?;
        let key = self
            .admin_post(
                &format!("/admin/v1/orgs/{id}/keys"),
                &json!({ "scopes": ["webhooks:read", "webhooks:write"] }),
                StatusCode::CREATED,
            )
            .await?;
        Ok(Org {
            id,
            api_key: string_field(&key, "key")?,
        })
    }

    /// Registers `url` for [`EVENT_TYPE`] through the organization API; the endpoint's id.
    pub(crate) async fn create_endpoint(&self, org: &Org, url: &str) -> anyhow::Result<String> {
        self.create_filtered_endpoint(org, url, None).await
    }

    /// Registers `url` for [`EVENT_TYPE`] with a payload `filter`, if any; the endpoint's id.
    pub(crate) async fn create_filtered_endpoint(
        &self,
        org: &Org,
        url: &str,
        filter: Option<&Value>,
    ) -> anyhow::Result<String> {
        let mut body = json!({ "url": url, "events": [EVENT_TYPE] });
        if let Some(filter) = filter {
            body["filter"] = filter.clone();
        }
        if !self.endpoint_headers.is_empty() {
            body["headers"] = Value::Object(self.endpoint_headers.clone());
        }
        let endpoint = self
            .org_call(
                org,
                Method::POST,
                "/v1/webhooks",
                Some(&body),
                StatusCode::CREATED,
            )
            .await?;
        string_field(&endpoint, "id")
    }

    /// The endpoint `id` (`GET /v1/webhooks/{id}`).
    pub(crate) async fn get_endpoint(&self, org: &Org, id: &str) -> anyhow::Result<Value> {
        self.org_get(org, &format!("/v1/webhooks/{id}")).await
    }

    /// The first page of the organization's endpoints (`GET /v1/webhooks`).
    pub(crate) async fn list_endpoints(&self, org: &Org) -> anyhow::Result<Value> {
        self.org_get(org, "/v1/webhooks").await
    }

    /// Points the endpoint `id` at `url` (`PATCH /v1/webhooks/{id}`).
    pub(crate) async fn update_endpoint_url(
        &self,
        org: &Org,
        id: &str,
        url: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/v1/webhooks/{id}");
        let body = json!({ "url": url });
        self.org_call(org, Method::PATCH, &path, Some(&body), StatusCode::OK)
            .await
            .map(drop)
    }

    /// Recovers the endpoint `id`'s dead deliveries of events created since `since`
    /// (`POST /v1/webhooks/{id}/recover`); the answer, with `recovery_id` and `matched`.
    pub(crate) async fn recover(&self, org: &Org, id: &str, since: &str) -> anyhow::Result<Value> {
        let path = format!("/v1/webhooks/{id}/recover");
        let body = json!({ "since": since });
        self.org_call(org, Method::POST, &path, Some(&body), StatusCode::ACCEPTED)
            .await
    }

    /// The recovery `id` (`GET /v1/webhooks/recoveries/{id}`).
    pub(crate) async fn recovery(&self, org: &Org, id: &str) -> anyhow::Result<Value> {
        self.org_get(org, &format!("/v1/webhooks/recoveries/{id}"))
            .await
    }

    /// The value of one series of `GET /metrics`, e.g.
    /// `herald_delivery_attempts_total{outcome="dead"}`; zero while it has not appeared.
    pub(crate) async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self
            .get_metrics()
            .await?
            .text()
            .await
            .context("reading /metrics")?;
        let value = text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.trim().parse::<f64>())
        });
        match value {
            Some(value) => value.with_context(|| format!("{series} in /metrics is not a number")),
            None => Ok(0.0),
        }
    }

    /// How long one `GET /metrics` takes, its body read: the queue gauges are computed from
    /// storage at each scrape.
    pub(crate) async fn scrape_time(&self) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        self.get_metrics()
            .await?
            .bytes()
            .await
            .context("reading /metrics")?;
        Ok(started.elapsed())
    }

    /// `GET /metrics`, its answer checked to be a 200; the body is the caller's to read.
    async fn get_metrics(&self) -> anyhow::Result<reqwest::Response> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?;
        if response.status() != StatusCode::OK {
            bail!("/metrics answered {}", response.status());
        }
        Ok(response)
    }

    /// A page of the organization's deliveries feed (`GET /v1/webhooks/deliveries?<query>`).
    pub(crate) async fn list_deliveries(&self, org: &Org, query: &str) -> anyhow::Result<Value> {
        self.org_get(org, &format!("/v1/webhooks/deliveries?{query}"))
            .await
    }

    /// Publishes event number `n` alone (`POST /admin/v1/events`); its id.
    pub(crate) async fn publish(&self, org: &Org, n: usize) -> anyhow::Result<String> {
        let answer = self
            .admin_post("/admin/v1/events", &event(org, n), StatusCode::ACCEPTED)
            .await?;
        string_field(&answer, "event_id")
    }

    /// Publishes the events numbered `numbers` in one request (`POST /admin/v1/events/batch`),
    /// over `keys` ordering keys when given (event `n` gets [`ordering_key`]`(n, keys)`); their
    /// ids, in order.
    pub(crate) async fn publish_batch(
        &self,
        org: &Org,
        numbers: std::ops::Range<usize>,
        keys: Option<usize>,
    ) -> anyhow::Result<Vec<String>> {
        let count = numbers.len();
        let events: Vec<Value> = numbers
            .map(|n| {
                let mut event = event(org, n);
                if let Some(keys) = keys {
                    event["ordering_key"] = Value::String(ordering_key(n, keys));
                }
                event
            })
            .collect();
        let answer = self
            .admin_post(
                "/admin/v1/events/batch",
                &json!({ "events": events }),
                StatusCode::ACCEPTED,
            )
            .await?;
        let answers = answer["events"]
            .as_array()
            .context("the batch answer has no `events` array")?;
        if answers.len() != count {
            bail!("{count} events published but {} answers", answers.len());
        }
        answers
            .iter()
            .map(|answer| string_field(answer, "event_id"))
            .collect()
    }

    async fn org_get(&self, org: &Org, path: &str) -> anyhow::Result<Value> {
        self.org_call(org, Method::GET, path, None, StatusCode::OK)
            .await
    }

    /// A call to the organization API with `org`'s key, expecting `status` and JSON.
    async fn org_call(
        &self,
        org: &Org,
        method: Method,
        path: &str,
        body: Option<&Value>,
        status: StatusCode,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&org.api_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        expect_json(response, status).await
    }

    async fn admin_post(
        &self,
        path: &str,
        body: &Value,
        status: StatusCode,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        expect_json(response, status).await
    }
}

/// The ordering key of event number `n` when events are spread over `keys` keys: `key-007`
/// for every event whose number leaves 7 divided by `keys`.
pub(crate) fn ordering_key(n: usize, keys: usize) -> String {
    format!("key-{:03}", n % keys.max(1))
}

/// Event number `n`: a small, realistic `data` object.
fn event(org: &Org, n: usize) -> Value {
    json!({
        "org_id": org.id,
        "type": EVENT_TYPE,
        "data": {
            "wallet_id": format!("wal_{n:012}"),
            "balance": "3.20",
            "threshold": "5.00",
            "currency": "EUR",
            "n": n,
        },
    })
}

async fn expect_json(response: reqwest::Response, status: StatusCode) -> anyhow::Result<Value> {
    let path = response.url().path().to_owned();
    let actual = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {path}"))?;
    if actual != status {
        bail!("{path} answered {actual}, not {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{path} answered with bad JSON: {text}"))
}

/// The string `name` of a JSON answer.
pub(crate) fn string_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("`{name}` is missing from {value}"))
}
