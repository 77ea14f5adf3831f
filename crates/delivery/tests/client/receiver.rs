//! Real local HTTPS receivers for the client tests: a test CA made with rcgen, axum behind
//! axum-server's rustls acceptor, and a request log. Every receiver binds `127.0.0.1:0` (or
//! `[::1]:0`) before it is spawned, so no test waits for readiness.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use futures::stream;
use herald_delivery::{ClientConfig, DeliveryClient};
use herald_domain::AddressPolicy;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// Size of the `/huge` body: 50 MiB in 64 KiB chunks.
pub(crate) const HUGE_CHUNKS: usize = 800;
const CHUNK: usize = 64 * 1024;

/// A certificate authority trusted by test clients through `extra_root_certs_pem`.
pub(crate) struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, in PEM.
pub(crate) struct Leaf {
    certificate_pem: String,
    key_pem: String,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        // Both the client (through reqwest) and axum-server pick the process default provider;
        // installing ring is idempotent enough: a second install only returns an error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        // A distinct subject per CA, so a stranger's leaf names an issuer nobody trusts.
        let serial: u64 = rand::random();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Herald test CA {serial:016x}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).expect("self-sign CA");
        Self { certificate, key }
    }

    pub(crate) fn root_pem(&self) -> Vec<u8> {
        self.certificate.pem().into_bytes()
    }

    /// A leaf for `names` (DNS names or IP addresses) signed by this CA.
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("sign leaf");
        Leaf {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The usual leaf, valid for every loopback spelling the tests dial.
    pub(crate) fn loopback_leaf(&self) -> Leaf {
        self.leaf(&["localhost", "127.0.0.1", "::1"])
    }

    /// A client that trusts this CA and whose policy admits loopback, as tests configure it.
    pub(crate) fn client(&self, total_timeout: Duration) -> DeliveryClient {
        DeliveryClient::new(ClientConfig {
            total_timeout,
            extra_root_certs_pem: Some(self.root_pem()),
            policy: loopback_policy(),
            ..ClientConfig::default()
        })
        .expect("build client")
    }
}

pub(crate) fn loopback_policy() -> AddressPolicy {
    AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid allow-list")
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) version: axum::http::Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

#[derive(Clone, Default)]
struct ReceiverState {
    log: Arc<Mutex<Vec<Received>>>,
    redirect_to: Option<String>,
}

/// A running HTTPS receiver.
pub(crate) struct Receiver {
    pub(crate) address: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver on `127.0.0.1` with the loopback leaf.
    pub(crate) async fn spawn(ca: &TestCa) -> Self {
        Self::builder(ca).spawn().await
    }

    pub(crate) fn builder(ca: &TestCa) -> ReceiverBuilder {
        ReceiverBuilder {
            leaf: ca.loopback_leaf(),
            bind: "127.0.0.1:0".parse().expect("socket address"),
            redirect_to: None,
        }
    }

    /// `https://127.0.0.1:<port><path>` (or the bracketed IPv6 form).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    /// `https://<host>:<port><path>`, for dialling by name.
    pub(crate) fn url_for_host(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.address.port())
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log lock").clone()
    }
}

pub(crate) struct ReceiverBuilder {
    leaf: Leaf,
    bind: SocketAddr,
    redirect_to: Option<String>,
}

impl ReceiverBuilder {
    pub(crate) fn leaf(mut self, leaf: Leaf) -> Self {
        self.leaf = leaf;
        self
    }

    pub(crate) fn bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Where `/redirect` points.
    pub(crate) fn redirect_to(mut self, target: String) -> Self {
        self.redirect_to = Some(target);
        self
    }

    pub(crate) async fn spawn(self) -> Receiver {
        let listener = std::net::TcpListener::bind(self.bind).expect("bind receiver");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let address = listener.local_addr().expect("local address");
        let tls = RustlsConfig::from_pem(
            self.leaf.certificate_pem.into_bytes(),
            self.leaf.key_pem.into_bytes(),
        )
        .await
        .expect("rustls config");
        let state = ReceiverState {
            log: Arc::default(),
            redirect_to: self.redirect_to,
        };
        let log = Arc::clone(&state.log);
        let app = router(state);
        tokio::spawn(async move {
            let served = axum_server::from_tcp_rustls(listener, tls)
                .serve(app.into_make_service())
                .await;
            served.expect("receiver serves");
        });
        Receiver { address, log }
    }
}

fn router(state: ReceiverState) -> Router {
    Router::new()
        .route("/ok", post(|| async { "thanks" }))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/gone", post(|| async { (StatusCode::GONE, "gone") }))
        .route(
            "/busy",
            post(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "7")],
                    "slow down",
                )
            }),
        )
        .route("/hang", post(std::future::pending::<&'static str>))
        .route("/redirect", post(redirect))
        .route("/huge", post(|| async { Body::from_stream(huge_body()) }))
        .route(
            "/trickle",
            post(|| async { Body::from_stream(trickle_body()) }),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Logs every request, whatever its route, before the route answers.
async fn record(
    State(state): State<ReceiverState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("read request body");
    state.log.lock().expect("log lock").push(Received {
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: bytes.clone(),
    });
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn redirect(State(state): State<ReceiverState>) -> Response {
    let target = state.redirect_to.unwrap_or_else(|| "/ok".to_owned());
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

fn huge_body() -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let chunk = Bytes::from(vec![b'a'; CHUNK]);
    stream::iter((0..HUGE_CHUNKS).map(move |_| Ok(chunk.clone())))
}

/// One byte now and one more every second, forever.
fn trickle_body() -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let interval = tokio::time::interval(Duration::from_secs(1));
    stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some((Ok(Bytes::from_static(b"x")), interval))
    })
}
