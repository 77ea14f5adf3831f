//! Real HTTPS receivers on loopback: [`HttpsServer`] serves any axum router behind
//! axum-server's rustls acceptor (HTTP/1.1 with keep-alive and HTTP/2, by ALPN) on a listener
//! bound before it is spawned, so nobody waits for readiness; [`Receiver`] is the scripted
//! receiver with well-behaved and hostile routes that logs every request it gets.
//!
//! Routes of a [`Receiver`]: `/ok` (200), `/fail` (500), `/gone` (410), `/busy` (429 with
//! `Retry-After: 7`), `/hang` (never answers), `/redirect` (302), `/huge` (50 MiB body),
//! `/trickle` (a byte a second), and `/sequence` (the statuses given to the builder, in order,
//! then 200; a 429 among them comes with `Retry-After: 1`).

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
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use futures::stream;

use crate::ca::{Leaf, TestCa};

/// Size of the `/huge` body: 50 MiB in 64 KiB chunks.
pub const HUGE_CHUNKS: usize = 800;
const CHUNK: usize = 64 * 1024;

/// An axum router served over TLS in the background. Dropping it leaves the server running
/// until the runtime ends, as most tests want; [`HttpsServer::shutdown`] stops it.
#[derive(Debug)]
pub struct HttpsServer {
    /// Where it listens.
    pub address: SocketAddr,
    handle: Handle,
}

impl HttpsServer {
    /// Binds `bind` (port 0 picks a free port), then serves `app` with `tls` in the
    /// background until [`HttpsServer::shutdown`] or the end of the runtime.
    pub fn spawn(bind: SocketAddr, tls: RustlsConfig, app: Router) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let handle = Handle::new();
        let serving = handle.clone();
        tokio::spawn(async move {
            let served = axum_server::from_tcp_rustls(listener, tls)
                .handle(serving)
                .serve(app.into_make_service())
                .await;
            if let Err(error) = served {
                eprintln!("receiver on {address} stopped: {error}");
            }
        });
        Ok(Self { address, handle })
    }

    /// Closes the listener and every connection, hanging requests included.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path.
    pub path: String,
    /// The HTTP version negotiated.
    pub version: axum::http::Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The exact body bytes.
    pub body: Bytes,
}

#[derive(Clone, Default)]
struct ReceiverState {
    log: Arc<Mutex<Vec<Received>>>,
    redirect_to: Option<String>,
    sequence: Arc<Mutex<std::collections::VecDeque<u16>>>,
}

/// A running HTTPS receiver.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver on `127.0.0.1` with the loopback leaf.
    pub async fn spawn(ca: &TestCa) -> Self {
        Self::builder(ca).spawn().await
    }

    /// Starts configuring a receiver.
    pub fn builder(ca: &TestCa) -> ReceiverBuilder {
        ReceiverBuilder {
            leaf: ca.loopback_leaf(),
            client_roots: None,
            bind: "127.0.0.1:0".parse().expect("socket address"),
            redirect_to: None,
            sequence: Vec::new(),
        }
    }

    /// `https://127.0.0.1:<port><path>` (or the bracketed IPv6 form).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    /// `https://<host>:<port><path>`, for dialling by name.
    pub fn url_for_host(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.address.port())
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log lock").clone()
    }
}

/// Options of a [`Receiver`].
pub struct ReceiverBuilder {
    leaf: Leaf,
    client_roots: Option<Vec<u8>>,
    bind: SocketAddr,
    redirect_to: Option<String>,
    sequence: Vec<u16>,
}

impl ReceiverBuilder {
    /// Serve this certificate instead of the loopback leaf.
    pub fn leaf(mut self, leaf: Leaf) -> Self {
        self.leaf = leaf;
        self
    }

    /// Demand a client certificate signed by the CA whose root is `root_pem` (mutual TLS):
    /// a client without one fails the handshake.
    pub fn require_client_certificates(mut self, root_pem: Vec<u8>) -> Self {
        self.client_roots = Some(root_pem);
        self
    }

    /// Listen here instead of `127.0.0.1:0`.
    pub fn bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// The statuses `/sequence` answers, one per request, before answering 200; a 429 comes
    /// with `Retry-After: 1`.
    pub fn sequence(mut self, statuses: &[u16]) -> Self {
        self.sequence = statuses.to_vec();
        self
    }

    /// Where `/redirect` points.
    pub fn redirect_to(mut self, target: String) -> Self {
        self.redirect_to = Some(target);
        self
    }

    /// Binds, then serves in the background.
    pub async fn spawn(self) -> Receiver {
        let tls = match &self.client_roots {
            Some(roots) => self.leaf.rustls_config_requiring_clients(roots),
            None => self.leaf.rustls_config().await,
        };
        let state = ReceiverState {
            log: Arc::default(),
            redirect_to: self.redirect_to,
            sequence: Arc::new(Mutex::new(self.sequence.into_iter().collect())),
        };
        let log = Arc::clone(&state.log);
        let server = HttpsServer::spawn(self.bind, tls, router(state)).expect("bind receiver");
        Receiver {
            address: server.address,
            log,
        }
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
        .route("/sequence", post(sequence))
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

async fn sequence(State(state): State<ReceiverState>) -> Response {
    let next = state
        .sequence
        .lock()
        .expect("sequence lock")
        .pop_front()
        .unwrap_or(200);
    let status = StatusCode::from_u16(next).unwrap_or(StatusCode::OK);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [(header::RETRY_AFTER, "1")], "sequence").into_response();
    }
    (status, "sequence").into_response()
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
