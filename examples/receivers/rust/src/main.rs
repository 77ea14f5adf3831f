//! A complete HTTPS webhook receiver for Herald, verifying with `herald-verify`.
//!
//! It serves `POST /webhooks` over TLS, verifies `X-AmCore-Signature` (5-minute tolerance,
//! constant-time comparison), dedupes on the event id, answers as soon as the event is queued,
//! and logs one line per verdict (`accepted`, `duplicate`, `rejected`) on stderr. It keeps the
//! highest `X-AmCore-Sequence` it has processed (in memory) and, when a delivery skips ahead,
//! logs the gap and fetches the missed events from Herald's catch-up feed.
//! docs/receiving.md explains each step; receiver.rs holds the route, catch_up.rs the feed.
//!
//! Configuration, from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `WEBHOOK_SECRET` | the endpoint secret as Herald showed it (base64; `whsec_…` also accepted) |
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE` | PEM certificate chain and private key to serve with |
//! | `PORT` | port to listen on, default 8443 |
//! | `HOST` | address to listen on, default 127.0.0.1 |
//! | `HERALD_API_URL`, `HERALD_API_KEY`, `HERALD_ENDPOINT_ID` | Herald's API, a key with `webhooks:read` and this endpoint's id, for the catch-up feed; without all three, gaps are only logged |

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use catch_up::Feed;
use herald_verify::Secret;
use tokio::sync::mpsc;

mod catch_up;
mod receiver;

/// How many accepted events may wait for processing before the receiver asks for retries.
const QUEUE_CAPACITY: usize = 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();
    let config = Config::from_env()?;

    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let tls = RustlsConfig::from_pem_file(&config.cert_file, &config.key_file)
        .await
        .context("read TLS_CERT_FILE and TLS_KEY_FILE")?;
    let (sender, queue) = mpsc::channel(QUEUE_CAPACITY);
    let seen = receiver::Seen::default();
    tokio::spawn(receiver::process_events(queue, seen.clone(), config.feed));
    let app = receiver::router(receiver::AppState::new(config.secret, seen, sender));

    let handle = Handle::new();
    tokio::spawn(shut_down_on_signal(handle.clone()));
    tracing::info!(address = %config.address, "listening on https://{}/webhooks", config.address);
    axum_server::bind_rustls(config.address, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .context("serve")
}

/// The receiver's settings, read once at start.
struct Config {
    secret: Secret,
    address: SocketAddr,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The catch-up feed, when all three `HERALD_*` settings are there.
    feed: Option<Feed>,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let secret = Secret::from_base64(&required("WEBHOOK_SECRET")?)
            .context("WEBHOOK_SECRET must be the endpoint secret Herald showed")?;
        let host: IpAddr = optional("HOST", "127.0.0.1")
            .parse()
            .context("HOST must be an IP address")?;
        let port: u16 = optional("PORT", "8443")
            .parse()
            .context("PORT must be a port number")?;
        let feed = match (
            setting("HERALD_API_URL"),
            setting("HERALD_API_KEY"),
            setting("HERALD_ENDPOINT_ID"),
        ) {
            (Some(url), Some(key), Some(endpoint_id)) => Some(Feed::new(&url, key, &endpoint_id)),
            _ => {
                tracing::info!(
                    "catch-up feed off: HERALD_API_URL, HERALD_API_KEY or HERALD_ENDPOINT_ID is not set"
                );
                None
            }
        };
        Ok(Self {
            secret,
            feed,
            address: SocketAddr::new(host, port),
            cert_file: required("TLS_CERT_FILE")?.into(),
            key_file: required("TLS_KEY_FILE")?.into(),
        })
    }
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} must be set"))
}

fn optional(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A setting that is off when unset or empty.
fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// On Ctrl-C or SIGTERM, stops accepting and gives requests in flight 5 seconds.
async fn shut_down_on_signal(handle: Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            // Without a SIGTERM handler the default action (exit) still stops the receiver.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(Duration::from_secs(5)));
}
