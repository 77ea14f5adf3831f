//! The only outbound HTTP client (docs/api.md#delivery-rules): behind the SSRF guard, over
//! rustls, pooled, never following a redirect. It has two routes, chosen once when it is built:
//! direct, one `reqwest::Client` whose resolver checks every address; or, when the operator set
//! `HERALD_EGRESS_PROXY`, through that HTTP CONNECT proxy ([`proxied`] over [`tunnel`]), asking
//! it to CONNECT to addresses checked the same way. Both share the URL check, the headers, the
//! deadline, the error words ([`describe`]) and the outcome ([`progress`]).
//!
//! [`DeliveryClient::send`] makes one attempt and always answers with an [`AttemptOutcome`]; it
//! never returns an error, because every way an attempt can fail is a fact to record. It must
//! not decide retries (that is [`crate::retry`] and the worker) and must not buffer a response
//! body beyond the 1 KiB excerpt.

mod certificates;
mod describe;
mod egress_proxy;
mod progress;
mod proxied;
mod tunnel;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_domain::AddressPolicy;
use herald_domain::client_certificate::ClientCertificate;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::error::Elapsed;
use url::Url;

use self::certificates::CertificateClients;
pub use self::egress_proxy::{EgressProxy, EgressProxyError};
use self::progress::Progress;
use self::proxied::ProxiedRoute;
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
    /// `HERALD_EGRESS_PROXY`: every attempt goes through this CONNECT proxy; `None` dials
    /// endpoints directly.
    pub egress_proxy: Option<EgressProxy>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            extra_root_certs_pem: None,
            policy: AddressPolicy::default(),
            egress_proxy: None,
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
    /// The extra root certificate PEM does not parse (egress proxy route).
    #[error("invalid extra root certificates")]
    RootCertificatePem(#[source] rustls::pki_types::pem::Error),
    /// An extra root certificate is not one rustls can trust (egress proxy route).
    #[error("invalid extra root certificate")]
    RootCertificate(#[source] rustls::Error),
    /// The TLS configuration could not be built (egress proxy route).
    #[error("cannot build the tls configuration")]
    Tls(#[source] rustls::Error),
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
    route: Route,
    policy: Arc<AddressPolicy>,
    connect_timeout: Duration,
    total_timeout: Duration,
}

/// Where attempts go; chosen once, at build time, so an attempt pays for one `match`.
#[derive(Debug, Clone)]
enum Route {
    /// Straight to the endpoint: reqwest, its resolver the SSRF policy's.
    Direct {
        http: reqwest::Client,
        extra_root_certs_pem: Option<Arc<Vec<u8>>>,
        /// One client per distinct client certificate (a TLS identity is a client's, not a
        /// request's).
        with_certificate: Arc<CertificateClients<reqwest::Client>>,
    },
    /// Through the operator's egress proxy (boxed: its pooled client is large, and a
    /// `DeliveryClient` is cloned only at start).
    Proxied(Box<ProxiedRoute>),
}

impl DeliveryClient {
    /// Builds the one client: rustls with TLS 1.2 or newer, HTTP/1.1 and HTTP/2 by ALPN,
    /// pooled connections, no redirects, no proxy from the environment, and every host name
    /// resolved through [`PolicyResolver`]; through `config.egress_proxy` when set.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let policy = Arc::new(config.policy);
        let route = match config.egress_proxy {
            None => {
                let extra_root_certs_pem = config.extra_root_certs_pem.map(Arc::new);
                let http = build_http(
                    &policy,
                    config.connect_timeout,
                    extra_root_certs_pem.as_deref().map(Vec::as_slice),
                    None,
                )?;
                Route::Direct {
                    http,
                    extra_root_certs_pem,
                    with_certificate: Arc::default(),
                }
            }
            Some(proxy) => Route::Proxied(Box::new(ProxiedRoute::new(
                proxy,
                Arc::clone(&policy),
                config.extra_root_certs_pem.as_deref(),
                config.connect_timeout,
            )?)),
        };
        Ok(Self {
            route,
            policy,
            connect_timeout: config.connect_timeout,
            total_timeout: config.total_timeout,
        })
    }

    /// The direct client that presents `certificate`, built on first use.
    fn direct_client_with(
        &self,
        extra_root_certs_pem: Option<&[u8]>,
        with_certificate: &CertificateClients<reqwest::Client>,
        certificate: &ClientCertificate,
    ) -> Result<reqwest::Client, String> {
        with_certificate.get_or_build(certificate, |certificate| {
            let mut pem = certificate.expose_key_pem().as_bytes().to_vec();
            pem.push(b'\n');
            pem.extend_from_slice(certificate.cert_pem().as_bytes());
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                "client certificate unusable: the stored pair does not load".to_owned()
            })?;
            build_http(
                &self.policy,
                self.connect_timeout,
                extra_root_certs_pem,
                Some(identity),
            )
            .map_err(|error| format!("client certificate unusable: {error}"))
        })
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
        let (http, extra_root_certs_pem, with_certificate) = match &self.route {
            Route::Direct {
                http,
                extra_root_certs_pem,
                with_certificate,
            } => (http, extra_root_certs_pem, with_certificate),
            // Boxed so that the proxy route's larger future does not grow every direct
            // attempt's task.
            Route::Proxied(route) => {
                return Box::pin(self.send_proxied(route, url, headers, body, certificate)).await;
            }
        };
        let started = Instant::now();
        let http = match certificate {
            None => http.clone(),
            Some(certificate) => match self.direct_client_with(
                extra_root_certs_pem.as_deref().map(Vec::as_slice),
                with_certificate,
                certificate,
            ) {
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
        self.conclude(started, &host, progress, finished, |error| {
            describe::request_error(error, self.connect_timeout, self.total_timeout)
        })
    }

    async fn send_proxied(
        &self,
        route: &ProxiedRoute,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        certificate: Option<&ClientCertificate>,
    ) -> AttemptOutcome {
        let started = Instant::now();
        let prepared = route.client_for(certificate).and_then(|http| {
            let url = checked_url(url, &self.policy)?;
            let request = http.request(&url, header_map(headers)?, body)?;
            Ok((http, url, request))
        });
        let (http, url, request) = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => return AttemptOutcome::failed(started, reason),
        };
        let mut progress = Progress::default();
        let finished =
            tokio::time::timeout(self.total_timeout, http.exchange(request, &mut progress)).await;
        self.conclude(
            started,
            url.host_str().unwrap_or_default(),
            progress,
            finished,
            describe::proxied_error,
        )
    }

    /// The outcome of an exchange that ran (or was cut short by the total deadline), logged.
    fn conclude<E>(
        &self,
        started: Instant,
        host: &str,
        progress: Progress,
        finished: Result<Result<(), E>, Elapsed>,
        describe: impl FnOnce(&E) -> String,
    ) -> AttemptOutcome {
        let error = match finished {
            Err(_elapsed) => Some(format!(
                "timeout after {}",
                describe::seconds(self.total_timeout)
            )),
            Ok(Err(error)) => Some(describe(&error)),
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
    let url = checked_url(url, policy)?;
    let header_map = header_map(headers)?;
    http.post(url)
        .headers(header_map)
        .body(body)
        .build()
        .map_err(|error| format!("invalid request: {error}"))
}

/// Parses `url` and refuses it when its scheme or IP-literal host is not allowed.
fn checked_url(url: &str, policy: &AddressPolicy) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|error| format!("invalid url: {error}"))?;
    check_url_target(&url, policy).map_err(|blocked| blocked.to_string())?;
    Ok(url)
}

/// The attempt's headers as a map, or which one is invalid.
fn header_map(headers: &[(&str, String)]) -> Result<HeaderMap, String> {
    let mut header_map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name}"))?;
        let header_value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
        header_map.insert(header_name, header_value);
    }
    Ok(header_map)
}

/// Sends the request and reads at most [`EXCERPT_LIMIT`] body bytes, recording progress as
/// it goes so that a deadline that cuts this short still leaves the status behind.
async fn exchange(
    http: &reqwest::Client,
    request: reqwest::Request,
    progress: &mut Progress,
) -> Result<(), reqwest::Error> {
    let mut response = http.execute(request).await?;
    progress.record_head(response.status(), response.headers());
    while progress.wants_body() {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        progress.record_body(&chunk);
    }
    // Dropping the response here abandons the rest of the body (and, on HTTP/1.1, the
    // connection), which is what keeps a 50 MB answer from ever being read.
    Ok(())
}
