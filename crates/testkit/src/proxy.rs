//! A real HTTP CONNECT proxy on loopback, for the egress proxy's tests: hyper's HTTP/1 server
//! answers each `CONNECT`, records its target and `Proxy-Authorization` exactly as sent, dials
//! the target (502 when it cannot) and then copies bytes both ways between the client and the
//! target. It can refuse every CONNECT with a status, or demand Basic credentials (407 without
//! them), as a real proxy does. Like the receivers, it is bound before it is spawned.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::PROXY_AUTHORIZATION;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// One CONNECT request as the proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The request target, e.g. `127.0.0.1:8443` or `[::1]:8443`.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub proxy_authorization: Option<String>,
}

/// A running CONNECT proxy.
pub struct ConnectProxy {
    /// Where it listens.
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<ConnectRequest>>>,
}

/// Options of a [`ConnectProxy`].
#[derive(Debug, Clone, Default)]
pub struct ConnectProxyBuilder {
    refuse_with: Option<StatusCode>,
    credentials: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct ProxyState {
    log: Arc<Mutex<Vec<ConnectRequest>>>,
    refuse_with: Option<StatusCode>,
    /// The exact `Proxy-Authorization` value required, if any.
    authorization: Option<String>,
}

impl ConnectProxy {
    /// A proxy that tunnels every CONNECT.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Starts configuring a proxy.
    pub fn builder() -> ConnectProxyBuilder {
        ConnectProxyBuilder::default()
    }

    /// `http://127.0.0.1:<port>`, for `HERALD_EGRESS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every CONNECT so far, in arrival order.
    pub fn connects(&self) -> Vec<ConnectRequest> {
        self.log.lock().expect("log lock").clone()
    }

    /// The targets of every CONNECT so far, in arrival order.
    pub fn targets(&self) -> Vec<String> {
        self.connects()
            .into_iter()
            .map(|connect| connect.target)
            .collect()
    }
}

impl ConnectProxy {
    /// Panics unless at least one CONNECT arrived and every one asked for `target` (e.g. a
    /// receiver's `127.0.0.1:<port>`): the checked address, never a name.
    #[track_caller]
    pub fn assert_only_asked_for(&self, target: SocketAddr) {
        let targets = self.targets();
        assert!(!targets.is_empty(), "the proxy saw no CONNECT");
        let expected = target.to_string();
        assert!(
            targets.iter().all(|asked| *asked == expected),
            "the proxy was asked for {targets:?}, not only {expected}"
        );
    }
}

impl ConnectProxyBuilder {
    /// Answer every CONNECT with `status` (e.g. 403) instead of tunnelling.
    pub fn refuse(mut self, status: StatusCode) -> Self {
        self.refuse_with = Some(status);
        self
    }

    /// Demand `Proxy-Authorization: Basic` with these credentials; 407 otherwise.
    pub fn require_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Binds `127.0.0.1:0`, then serves in the background until the runtime ends.
    pub async fn spawn(self) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let state = ProxyState {
            log: Arc::default(),
            refuse_with: self.refuse_with,
            authorization: self.credentials.map(|(user, password)| {
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            }),
        };
        let log = Arc::clone(&state.log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                    if let Err(error) = served {
                        eprintln!("proxy connection ended: {error}");
                    }
                });
            }
        });
        ConnectProxy { address, log }
    }
}

async fn handle(
    state: ProxyState,
    request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, std::convert::Infallible> {
    if request.method() != Method::CONNECT {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let target = request
        .uri()
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    let proxy_authorization = request
        .headers()
        .get(PROXY_AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    state.log.lock().expect("log lock").push(ConnectRequest {
        target: target.clone(),
        proxy_authorization: proxy_authorization.clone(),
    });
    if let Some(refusal) = state.refuse_with {
        return Ok(status(refusal));
    }
    if state.authorization.is_some() && state.authorization != proxy_authorization {
        return Ok(status(StatusCode::PROXY_AUTHENTICATION_REQUIRED));
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "the test proxy dials the target its client asked for, as any CONNECT proxy does"
    )]
    let Ok(mut upstream) = TcpStream::connect(target.as_str()).await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    Ok(status(StatusCode::OK))
}

fn status(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}
