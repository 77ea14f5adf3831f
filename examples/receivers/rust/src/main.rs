//! A complete HTTPS webhook receiver for Herald, verifying with `herald-verify`.
//!
//! It serves `POST /webhooks` over TLS, verifies `X-AmCore-Signature` with the endpoint secret
//! (5-minute tolerance, constant-time comparison) or, given the organization's public key
//! instead, the `v1a` Ed25519 entry of `webhook-signature` (the same tolerance; no secret held),
//! dedupes on the event id, answers as soon as the event is queued,
//! and logs one line per verdict (`accepted`, `duplicate`, `rejected`) on stderr. It keeps the
//! highest `X-AmCore-Sequence` it has processed (in memory) and, when a delivery skips ahead,
//! logs the gap and fetches the missed events from Herald's catch-up feed.
//! docs/receiving.md explains each step; receiver.rs holds the route, catch_up.rs the feed.
//!
//! Configuration, from the environment (exactly one of the first two):
//!
//! | variable | meaning |
//! |---|---|
//! | `WEBHOOK_SECRET` | the endpoint secret as Herald showed it (base64; `whsec_…` also accepted) |
//! | `WEBHOOK_PUBLIC_KEY` | the organization's public key: the `x` of `GET /v1/webhook-keys` (base64url) |
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
use herald_verify::{
    DEFAULT_TOLERANCE, Secret, VerifyError, public_key_from_base64url, verify_v1a,
};
use receiver::Key;
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
    let app = receiver::router(receiver::AppState::new(config.key, seen, sender));

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
    /// The endpoint secret or the organization's public key.
    key: Key,
    address: SocketAddr,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The catch-up feed, when all three `HERALD_*` settings are there.
    feed: Option<Feed>,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let key = match (setting("WEBHOOK_SECRET"), setting("WEBHOOK_PUBLIC_KEY")) {
            (Some(secret), None) => {
                tracing::info!("verifying X-AmCore-Signature with WEBHOOK_SECRET");
                Key::Secret(
                    Secret::from_base64(&secret)
                        .context("WEBHOOK_SECRET must be the endpoint secret Herald showed")?,
                )
            }
            (None, Some(public_key)) => {
                tracing::info!("verifying v1a with WEBHOOK_PUBLIC_KEY");
                Key::PublicKey(public_key_from(&public_key).context(
                    "WEBHOOK_PUBLIC_KEY must be the x of a key listed by GET /v1/webhook-keys",
                )?)
            }
            _ => anyhow::bail!("set exactly one of WEBHOOK_SECRET and WEBHOOK_PUBLIC_KEY"),
        };
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
            key,
            feed,
            address: SocketAddr::new(host, port),
            cert_file: required("TLS_CERT_FILE")?.into(),
            key_file: required("TLS_KEY_FILE")?.into(),
        })
    }
}

/// The 32 bytes of an Ed25519 public key from its base64url text, checked to be a valid key.
fn public_key_from(text: &str) -> Result<[u8; 32], VerifyError> {
    let public_key = public_key_from_base64url(text)?;
    // `verify_v1a` checks the key before anything else: with an empty delivery it answers
    // `Malformed` for a valid key and `InvalidPublicKey` for 32 bytes that are not one.
    match verify_v1a("", "", "", b"", &public_key, 0, DEFAULT_TOLERANCE) {
        Err(VerifyError::InvalidPublicKey) => Err(VerifyError::InvalidPublicKey),
        _ => Ok(public_key),
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
