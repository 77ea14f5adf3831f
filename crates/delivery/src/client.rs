//! The only outbound HTTP client (docs/api.md#delivery-rules): one pooled `reqwest::Client` over
//! rustls, behind the SSRF guard, that never follows a redirect.
//!
//! [`DeliveryClient::send`] makes one attempt and always answers with an [`AttemptOutcome`]; it
//! never returns an error, because every way an attempt can fail is a fact to record. It must
//! not decide retries (that is [`crate::retry`] and the worker) and must not buffer a response
//! body beyond the 1 KiB excerpt.

mod describe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_domain::client_certificate::ClientCertificate;
use herald_domain::{AddressPolicy, Timestamp};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use sha2::{Digest, Sha256};
use url::Url;

use crate::retry::parse_retry_after;
use crate::signer::user_agent;
use crate::ssrf::{PolicyResolver, check_url_target};

/// The most response-body bytes kept (and read) per attempt.
pub const EXCERPT_LIMIT: usize = 1024;

/// How the client is built; the operator's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for the TCP and TLS handshakes; 5 s by default.
    pub connect_timeout: Duration,
    /// Deadline for the whole attempt, connect, send and the excerpt read included; 15 s by
    /// default.
    pub total_timeout: Duration,
    /// Extra trusted root certificates in PEM (one or more), for tests and private CAs.
    pub extra_root_certs_pem: Option<Vec<u8>>,
    /// Which addresses may be dialled.
    pub policy: AddressPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            extra_root_certs_pem: None,
            policy: AddressPolicy::default(),
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra root certificates are not valid PEM certificates.
    #[error("invalid extra root certificates")]
    RootCertificates(#[source] reqwest::Error),
    /// The extra root certificate PEM holds no certificate.
    #[error("extra root certificates hold no certificate")]
    NoRootCertificates,
    /// The HTTP client could not be built.
    #[error("cannot build the http client")]
    Build(#[source] reqwest::Error),
}

/// How an attempt ended, as the worker acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// A 2xx answer within the deadline.
    Success,
    /// Anything else that may be retried.
    Failure,
    /// `410 Gone`: the receiver is gone for good.
    Gone,
}

/// What one attempt produced, in the shape of a delivery record (docs/api.md#the-delivery-record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The answer's status; `None` when no HTTP response arrived (DNS, connect, TLS, timeout).
    pub response_status: Option<u16>,
    /// Wall time of the attempt, up to the end of the excerpt read.
    pub response_time_ms: u64,
    /// At most the first [`EXCERPT_LIMIT`] bytes of the response body, lossy UTF-8; `None`
    /// when no response arrived.
    pub response_body_excerpt: Option<String>,
    /// The receiver's `Retry-After`, read from 429 and 503 answers only.
    pub retry_after: Option<Duration>,
    /// Why the attempt failed, in plain words; `None` on success.
    pub error: Option<String>,
    /// Success, failure or gone.
    pub class: OutcomeClass,
}

/// The delivery client. Cheap to clone: clones share one connection pool (and the pools of
/// the clients built for endpoints' client certificates).
#[derive(Debug, Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
    connect_timeout: Duration,
    total_timeout: Duration,
    extra_root_certs_pem: Option<Arc<Vec<u8>>>,
    /// One client per distinct client certificate (a TLS identity is a client's, not a
    /// request's), keyed by the SHA-256 of the pair.
    with_certificate: Arc<Mutex<HashMap<[u8; 32], reqwest::Client>>>,
}

/// Most clients kept for client certificates; past it the cache starts over (each holds its
/// own connection pool, so it must not grow without bound).
const MAX_CERTIFICATE_CLIENTS: usize = 256;

impl DeliveryClient {
    /// Builds the one client: rustls with TLS 1.2 or newer, HTTP/1.1 and HTTP/2 by ALPN,
    /// pooled connections, no redirects, no proxy from the environment, and every host name
    /// resolved through [`PolicyResolver`].
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let policy = Arc::new(config.policy);
        let extra_root_certs_pem = config.extra_root_certs_pem.map(Arc::new);
        let http = build_http(
            &policy,
            config.connect_timeout,
            extra_root_certs_pem.as_deref().map(Vec::as_slice),
            None,
        )?;
        Ok(Self {
            http,
            policy,
            connect_timeout: config.connect_timeout,
            total_timeout: config.total_timeout,
            extra_root_certs_pem,
            with_certificate: Arc::default(),
        })
    }

    /// The client that presents `certificate`, built on first use.
    fn client_with(&self, certificate: &ClientCertificate) -> Result<reqwest::Client, String> {
        let mut digest = Sha256::new();
        digest.update(certificate.cert_pem().as_bytes());
        digest.update([0]);
        digest.update(certificate.expose_key_pem().as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        let mut clients = self
            .with_certificate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut pem = certificate.expose_key_pem().as_bytes().to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(certificate.cert_pem().as_bytes());
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|_| "client certificate unusable: the stored pair does not load".to_owned())?;
        let client = build_http(
            &self.policy,
            self.connect_timeout,
            self.extra_root_certs_pem.as_deref().map(Vec::as_slice),
            Some(identity),
        )
        .map_err(|error| format!("client certificate unusable: {error}"))?;
        if clients.len() >= MAX_CERTIFICATE_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Builds one client: rustls with TLS 1.2 or newer, HTTP/1.1 and HTTP/2 by ALPN, pooled
/// connections, no redirects, no proxy from the environment, every host name resolved through
/// [`PolicyResolver`], and the client certificate `identity` when given.
fn build_http(
    policy: &Arc<AddressPolicy>,
    connect_timeout: Duration,
    extra_root_certs_pem: Option<&[u8]>,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, ClientError> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one outbound client, built under the SSRF policy: its resolver, no redirects, no proxy"
    )]
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(policy))))
        .user_agent(user_agent());
    if let Some(pem) = extra_root_certs_pem {
        let certificates =
            reqwest::Certificate::from_pem_bundle(pem).map_err(ClientError::RootCertificates)?;
        if certificates.is_empty() {
            return Err(ClientError::NoRootCertificates);
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().map_err(ClientError::Build)
}

impl DeliveryClient {
    /// POSTs `body` with `headers` to `url` once and reports what happened.
    pub async fn send(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> AttemptOutcome {
        self.send_with(url, headers, body, None).await
    }

    /// [`DeliveryClient::send`], presenting `certificate` if the receiver asks for one.
    pub async fn send_with(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        certificate: Option<&ClientCertificate>,
    ) -> AttemptOutcome {
        let started = Instant::now();
        let http = match certificate {
            None => self.http.clone(),
            Some(certificate) => match self.client_with(certificate) {
                Ok(http) => http,
                Err(reason) => return AttemptOutcome::failed(started, reason),
            },
        };
        let request = match prepare(&http, &self.policy, url, headers, body) {
            Ok(request) => request,
            Err(reason) => return AttemptOutcome::failed(started, reason),
        };
        let host = request.url().host_str().unwrap_or_default().to_owned();
        let mut progress = Progress::default();
        let finished =
            tokio::time::timeout(self.total_timeout, exchange(&http, request, &mut progress)).await;
        let error = match finished {
            Err(_elapsed) => Some(format!(
                "timeout after {}",
                describe::seconds(self.total_timeout)
            )),
            Ok(Err(error)) => Some(describe::request_error(
                &error,
                self.connect_timeout,
                self.total_timeout,
            )),
            Ok(Ok(())) => None,
        };
        let outcome = progress.into_outcome(started, error);
        tracing::debug!(
            %host,
            status = ?outcome.response_status,
            elapsed_ms = outcome.response_time_ms,
            error = ?outcome.error,
            "delivery attempt finished"
        );
        outcome
    }
}

/// Parses and guards the URL and builds the request, or says why it cannot be sent.
fn prepare(
    http: &reqwest::Client,
    policy: &AddressPolicy,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<reqwest::Request, String> {
    let url = Url::parse(url).map_err(|error| format!("invalid url: {error}"))?;
    check_url_target(&url, policy).map_err(|blocked| blocked.to_string())?;
    let mut header_map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name}"))?;
        let header_value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
        header_map.insert(header_name, header_value);
    }
    http.post(url)
        .headers(header_map)
        .body(body)
        .build()
        .map_err(|error| format!("invalid request: {error}"))
}

/// Sends the request and reads at most [`EXCERPT_LIMIT`] body bytes, recording progress as
/// it goes so that a deadline that cuts this short still leaves the status behind.
async fn exchange(
    http: &reqwest::Client,
    request: reqwest::Request,
    progress: &mut Progress,
) -> Result<(), reqwest::Error> {
    let mut response = http.execute(request).await?;
    let status = response.status();
    progress.status = Some(status);
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        progress.retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Timestamp::now()));
    }
    while progress.excerpt.len() < EXCERPT_LIMIT {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = EXCERPT_LIMIT - progress.excerpt.len();
        progress
            .excerpt
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    // Dropping the response here abandons the rest of the body (and, on HTTP/1.1, the
    // connection), which is what keeps a 50 MB answer from ever being read.
    Ok(())
}

/// What an attempt has learned so far.
#[derive(Debug, Default)]
struct Progress {
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    excerpt: Vec<u8>,
}

impl Progress {
    fn into_outcome(self, started: Instant, error: Option<String>) -> AttemptOutcome {
        let response_time_ms = elapsed_ms(started);
        let excerpt = self
            .status
            .map(|_| describe::excerpt_text(&self.excerpt, EXCERPT_LIMIT));
        let response_status = self.status.map(|status| status.as_u16());
        let (class, error) = match (self.status, error) {
            (_, Some(error)) => (OutcomeClass::Failure, Some(error)),
            (Some(status), None) if status.is_success() => (OutcomeClass::Success, None),
            (Some(StatusCode::GONE), None) => (OutcomeClass::Gone, Some("http 410".to_owned())),
            (Some(status), None) if status.is_redirection() => (
                OutcomeClass::Failure,
                Some(format!("redirect not followed ({})", status.as_u16())),
            ),
            (Some(status), None) => (
                OutcomeClass::Failure,
                Some(format!("http {}", status.as_u16())),
            ),
            (None, None) => (OutcomeClass::Failure, Some("no response".to_owned())),
        };
        AttemptOutcome {
            response_status,
            response_time_ms,
            response_body_excerpt: excerpt,
            retry_after: self.retry_after,
            error,
            class,
        }
    }
}

impl AttemptOutcome {
    /// An attempt that never reached the network.
    fn failed(started: Instant, reason: String) -> Self {
        Self {
            response_status: None,
            response_time_ms: elapsed_ms(started),
            response_body_excerpt: None,
            retry_after: None,
            error: Some(reason),
            class: OutcomeClass::Failure,
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
