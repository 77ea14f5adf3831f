//! The egress proxy route of [`super::DeliveryClient`] (`HERALD_EGRESS_PROXY`): hyper-util's
//! pooled client over [`TunnelConnector`], so connections through the proxy are kept and reused
//! like the direct route's, with the direct route's TLS trust (the Mozilla roots reqwest builds
//! in, plus the operator's extra roots), TLS 1.2 or newer, ALPN `h2` and `http/1.1`, and the
//! endpoint's client certificate when it has one.
//!
//! It only sends and reads: the URL check, the headers, the deadline and the outcome are the
//! client's, shared with the direct route. It follows no redirect (hyper never does).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_domain::AddressPolicy;
use herald_domain::client_certificate::ClientCertificate;
use http::header::{ACCEPT, HeaderMap, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsConnector;
use url::Url;

use super::certificates::CertificateClients;
use super::progress::Progress;
use super::tunnel::{TunnelConnector, TunnelSettings};
use super::{ClientError, EgressProxy};
use crate::signer::user_agent;

/// How long an idle pooled connection is kept: reqwest's default, as on the direct route.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an exchange through the proxy failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxiedError {
    /// No answer: the tunnel could not be opened, or the request could not be sent.
    #[error("request failed")]
    Request(#[source] legacy::Error),
    /// The answer's body broke off.
    #[error("response body failed")]
    Body(#[source] hyper::Error),
}

/// The route through the egress proxy: the client without a certificate, and what it takes to
/// build the ones with. Cheap to clone.
#[derive(Clone)]
pub(super) struct ProxiedRoute {
    http: ProxiedClient,
    shared: Arc<RouteSettings>,
}

/// What every client of the route is built from.
struct RouteSettings {
    proxy: EgressProxy,
    policy: Arc<AddressPolicy>,
    roots: Arc<RootCertStore>,
    connect_timeout: Duration,
    with_certificate: CertificateClients<ProxiedClient>,
}

/// One pooled client through the proxy, presenting at most one client certificate.
#[derive(Clone)]
pub(super) struct ProxiedClient {
    http: legacy::Client<TunnelConnector, Full<Bytes>>,
    user_agent: HeaderValue,
}

impl ProxiedRoute {
    /// Builds the route's trust (checking the extra roots) and its client without a
    /// certificate.
    pub(super) fn new(
        proxy: EgressProxy,
        policy: Arc<AddressPolicy>,
        extra_root_certs_pem: Option<&[u8]>,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let roots = Arc::new(root_store(extra_root_certs_pem)?);
        let shared = Arc::new(RouteSettings {
            proxy,
            policy,
            roots,
            connect_timeout,
            with_certificate: CertificateClients::default(),
        });
        let tls = tls_config(&shared.roots, None).map_err(ClientError::Tls)?;
        let http = ProxiedClient::new(&shared, tls);
        Ok(Self { http, shared })
    }

    /// The client presenting `certificate` (built on first use), or the one without.
    pub(super) fn client_for(
        &self,
        certificate: Option<&ClientCertificate>,
    ) -> Result<ProxiedClient, String> {
        let Some(certificate) = certificate else {
            return Ok(self.http.clone());
        };
        self.shared
            .with_certificate
            .get_or_build(certificate, |certificate| {
                let tls = tls_config(&self.shared.roots, Some(certificate)).map_err(|_| {
                    "client certificate unusable: the stored pair does not load".to_owned()
                })?;
                Ok(ProxiedClient::new(&self.shared, tls))
            })
    }
}

impl fmt::Debug for ProxiedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxiedRoute")
            .field("proxy", &self.shared.proxy)
            .finish_non_exhaustive()
    }
}

impl ProxiedClient {
    fn new(settings: &RouteSettings, tls: rustls::ClientConfig) -> Self {
        let connector = TunnelConnector::new(TunnelSettings {
            proxy: settings.proxy.clone(),
            policy: Arc::clone(&settings.policy),
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout: settings.connect_timeout,
        });
        #[expect(
            clippy::disallowed_methods,
            reason = "the egress proxy route of DeliveryClient: its connector checks every address with the SSRF policy"
        )]
        let mut builder = legacy::Client::builder(TokioExecutor::new());
        let http = builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            http,
            user_agent: HeaderValue::try_from(user_agent())
                .expect("the user agent is a valid header value"),
        }
    }

    /// The request as the direct route sends it: a POST of `body` with the attempt's headers,
    /// then reqwest's two defaults where the attempt set none (`User-Agent`, `Accept: */*`).
    pub(super) fn request(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        let uri =
            Uri::try_from(url.as_str()).map_err(|error| format!("invalid request: {error}"))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let headers = request.headers_mut();
        headers
            .entry(USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        headers
            .entry(ACCEPT)
            .or_insert_with(|| HeaderValue::from_static("*/*"));
        Ok(request)
    }

    /// Sends `request` and reads at most the excerpt, recording progress as it goes so that a
    /// deadline that cuts this short still leaves the status behind.
    pub(super) async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        progress: &mut Progress,
    ) -> Result<(), ProxiedError> {
        let response = self
            .http
            .request(request)
            .await
            .map_err(ProxiedError::Request)?;
        progress.record_head(response.status(), response.headers());
        let mut body = response.into_body();
        while progress.wants_body() {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Some(data) = frame.map_err(ProxiedError::Body)?.data_ref() {
                progress.record_body(data);
            }
        }
        // Dropping the body here abandons the rest of it (and, on HTTP/1.1, the connection),
        // which is what keeps a 50 MB answer from ever being read.
        Ok(())
    }
}

/// The roots the direct route trusts: the Mozilla set reqwest builds in (`webpki-roots`), plus
/// the operator's extra roots.
fn root_store(extra_root_certs_pem: Option<&[u8]>) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let Some(pem) = extra_root_certs_pem else {
        return Ok(roots);
    };
    let mut added = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(ClientError::RootCertificatePem)?;
        roots
            .add(certificate)
            .map_err(ClientError::RootCertificate)?;
        added += 1;
    }
    if added == 0 {
        return Err(ClientError::NoRootCertificates);
    }
    Ok(roots)
}

/// TLS 1.2 or newer (the direct route's `min_tls_version`), `roots`, the client certificate
/// when given, and ALPN `h2` then `http/1.1`. The provider is the process default, else ring,
/// as reqwest chooses.
fn tls_config(
    roots: &Arc<RootCertStore>,
    certificate: Option<&ClientCertificate>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(Arc::clone(roots));
    let mut config = match certificate {
        None => builder.with_no_client_auth(),
        Some(certificate) => {
            let chain = CertificateDer::pem_slice_iter(certificate.cert_pem().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| rustls::Error::General("invalid certificate PEM".to_owned()))?;
            let key = PrivateKeyDer::from_pem_slice(certificate.expose_key_pem().as_bytes())
                .map_err(|_| rustls::Error::General("invalid key PEM".to_owned()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
