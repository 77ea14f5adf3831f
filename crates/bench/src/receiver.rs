//! The harness's HTTPS receivers: axum behind axum-server's rustls acceptor (HTTP/1.1 with
//! keep-alive and HTTP/2, by ALPN), on `127.0.0.1:0`, bound before they are spawned. A healthy
//! receiver answers 200 at once and records when each event first arrived (keyed by
//! `X-AmCore-Event-Id`); a hanging one never answers, so Herald's attempt runs into its timeout.
//! The first request a receiver gets is kept as a sample, so the ceiling workload can send the
//! same headers and body.
//!
//! [`Pki`] makes the CA that Herald is told to trust and the receivers' certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Version};
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA made for this run and the receivers' TLS configuration with a leaf it signed for
/// `127.0.0.1` and `localhost` (webpki refuses a CA certificate used as a server's own).
pub(crate) struct Pki {
    /// The CA certificate, PEM: `HERALD_EXTRA_ROOT_CERTS` and the ceiling client's root.
    pub(crate) root_pem: String,
    /// What every receiver serves.
    pub(crate) tls: RustlsConfig,
}

impl Pki {
    /// Generates the CA and the leaf.
    pub(crate) async fn generate() -> anyhow::Result<Self> {
        // axum-server uses the process's default crypto provider; a second install only
        // returns an error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::new()).context("CA parameters")?;
        params
            .distinguished_name
            .push(DnType::CommonName, "herald-bench CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).context("self-signing the CA")?;
        let leaf_key = KeyPair::generate().context("generating the leaf key")?;
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("leaf parameters")?
            .signed_by(&leaf_key, &ca, &ca_key)
            .context("signing the leaf")?;
        let tls = RustlsConfig::from_pem(
            leaf.pem().into_bytes(),
            leaf_key.serialize_pem().into_bytes(),
        )
        .await
        .context("receiver TLS configuration")?;
        Ok(Self {
            root_pem: ca.pem(),
            tls,
        })
    }
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// 200 at once.
    Answer,
    /// Never answers: the request stays open until the sender gives up.
    Hang,
}

/// One request as the receiver saw it, to be replayed by the ceiling workload.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Every header except those that belong to one connection or message framing.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The body, byte for byte.
    pub(crate) body: Bytes,
}

#[derive(Debug, Default)]
struct Log {
    /// When each event id first arrived.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Every request, repeats included.
    total: AtomicUsize,
    /// Requests over HTTP/2 (the rest are HTTP/1.x).
    http2: AtomicUsize,
    sample: OnceLock<Sample>,
}

#[derive(Clone)]
struct ReceiverState {
    log: Arc<Log>,
    behaviour: Behaviour,
}

/// A running receiver; it stops serving when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    address: SocketAddr,
    log: Arc<Log>,
    handle: Handle,
}

impl Receiver {
    /// Binds `127.0.0.1:0`, then serves with `tls` in the background for as long as the
    /// harness runs.
    pub(crate) fn spawn(tls: RustlsConfig, behaviour: Behaviour) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a receiver")?;
        listener
            .set_nonblocking(true)
            .context("non-blocking receiver listener")?;
        let address = listener.local_addr().context("receiver address")?;
        let state = ReceiverState {
            log: Arc::default(),
            behaviour,
        };
        let log = Arc::clone(&state.log);
        let handle = Handle::new();
        let serving = handle.clone();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        tokio::spawn(async move {
            let served = axum_server::from_tcp_rustls(listener, tls)
                .handle(serving)
                .serve(app.into_make_service())
                .await;
            if let Err(error) = served {
                eprintln!("herald-bench: receiver on {address} stopped: {error}");
            }
        });
        Ok(Self {
            address,
            log,
            handle,
        })
    }

    /// `https://127.0.0.1:<port>/hook`.
    pub(crate) fn url(&self) -> String {
        format!("https://{}/hook", self.address)
    }

    /// Distinct events received so far.
    pub(crate) fn distinct(&self) -> usize {
        self.log
            .arrivals
            .lock()
            .expect("the arrival log lock is never poisoned")
            .len()
    }

    /// Requests received so far, repeats included.
    pub(crate) fn total(&self) -> usize {
        self.log.total.load(Ordering::Relaxed)
    }

    /// Requests received over HTTP/2 so far.
    pub(crate) fn http2(&self) -> usize {
        self.log.http2.load(Ordering::Relaxed)
    }

    /// When each event first arrived.
    pub(crate) fn arrivals(&self) -> HashMap<String, Instant> {
        self.log
            .arrivals
            .lock()
            .expect("the arrival log lock is never poisoned")
            .clone()
    }

    /// The first request received, if any.
    pub(crate) fn sample(&self) -> Option<Sample> {
        self.log.sample.get().cloned()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Closes the listener and every connection, hanging requests included.
        self.handle.shutdown();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    let log = &state.log;
    log.total.fetch_add(1, Ordering::Relaxed);
    if version == Version::HTTP_2 {
        log.http2.fetch_add(1, Ordering::Relaxed);
    }
    if log.sample.get().is_none() {
        let _ = log.sample.set(sample_of(&headers, body));
    }
    if let Some(event_id) = headers
        .get("x-amcore-event-id")
        .and_then(|value| value.to_str().ok())
    {
        log.arrivals
            .lock()
            .expect("the arrival log lock is never poisoned")
            .entry(event_id.to_owned())
            .or_insert(arrived);
    }
    match state.behaviour {
        Behaviour::Answer => StatusCode::OK,
        Behaviour::Hang => std::future::pending().await,
    }
}

fn sample_of(headers: &HeaderMap, body: Bytes) -> Sample {
    let headers = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "host"
                    | "content-length"
                    | "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
            )
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Sample { headers, body }
}
