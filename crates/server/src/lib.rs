//! Herald's service wiring: it turns a [`Config`] into a running service.
//!
//! # Layout
//!
//! - [`config`]: flags and `HERALD_*` variables, checked once at startup.
//! - [`storage`]: opening SQLite or PostgreSQL, and the embedded default's key file.
//! - [`bootstrap`]: the `default` organization and key on first start.
//! - [`run`]: serve the API on a given listener until a shutdown signal.

pub mod bootstrap;
pub mod config;
pub mod storage;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use herald_api::AppState;
use tokio::net::TcpListener;

pub use config::{Config, ServeArgs, StorageArgs};

/// Runs Herald on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = storage::open_store(&config.storage).await?;
    bootstrap::ensure_default_org(store.as_ref()).await?;
    let state = AppState {
        store,
        config: Arc::new(config.api.clone()),
    };
    let app = herald_api::router(state);
    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%address, "herald listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("herald stopped");
    Ok(())
}
