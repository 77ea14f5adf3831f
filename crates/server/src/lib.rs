//! Herald's service wiring: it turns a [`Config`] into a running service.
//!
//! # Layout
//!
//! - [`config`]: flags and `HERALD_*` variables, checked once at startup.
//! - [`background`]: the runtime of the delivery worker and the other background tasks,
//!   apart from the API's, at a lower OS priority.
//! - [`storage`]: opening SQLite or PostgreSQL, and the embedded default's key file.
//! - [`bootstrap`]: the `default` organization and key on first start.
//! - [`test_sender`]: lends the delivery client to the API's test operation.
//! - [`telemetry`]: OpenTelemetry trace export over OTLP, configured by `OTEL_*`.
//! - [`http`]: the accept loop and its limits: connection cap, header and idle timeouts.
//! - [`run`]: serve the API, run the delivery worker and the retention purge on a given
//!   listener until a shutdown signal, then drain; `HERALD_ROLE` may leave out either side.

pub mod background;
pub mod bootstrap;
pub mod config;
pub mod http;
pub mod storage;
pub mod telemetry;
pub mod test_sender;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use herald_api::{ApiMetricHandles, AppState, Publisher};
use herald_delivery::{ClientConfig, DeliveryClient, DeliveryMetrics, Worker};
use herald_store::Store;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ServeArgs, StorageArgs};
pub use http::HttpConfig;

/// Runs Herald on `listener` until `shutdown` completes: the API, the delivery worker and the
/// retention purge (of those, what the node's role runs). On shutdown the API stops
/// accepting, in-flight requests finish, the worker stops claiming and lets in-flight attempts
/// finish within the grace period.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = storage::open_store(&config.storage).await?;
    // Held until Herald stops: one Herald per embedded database.
    let embedded_database_lock = storage::claim_embedded_database(&config.storage)?;
    // Checked in the configuration too; again for a `Config` built or changed in code.
    config.role.check_storage(&config.storage.database_url)?;
    bootstrap::ensure_default_org(store.as_ref()).await?;
    if embedded_database_lock.is_some() {
        // Only this process works on an embedded database, so any lease left behind belongs to
        // a predecessor that died: its deliveries may go out again right away.
        store
            .release_all_leases()
            .await
            .context("releasing leases left by a previous run")?;
    }

    store
        .configure_operator_hook(
            config.operator_hook.as_ref(),
            herald_domain::Timestamp::now(),
        )
        .await
        .context("writing the operator hook (HERALD_OPERATOR_WEBHOOK_URL)")?;

    let extra_root_certs_pem = match &config.extra_root_certs {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading HERALD_EXTRA_ROOT_CERTS {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(proxy) = &config.egress_proxy {
        tracing::info!(
            proxy_host = proxy.host(),
            proxy_port = proxy.port(),
            "deliveries leave through the egress proxy (HERALD_EGRESS_PROXY)"
        );
    }
    let client = DeliveryClient::new(ClientConfig {
        connect_timeout: config.connect_timeout,
        total_timeout: config.request_timeout,
        extra_root_certs_pem,
        policy: config.api.address_policy.clone(),
        egress_proxy: config.egress_proxy.clone(),
    })
    .context("building the delivery client")?;

    let mut registry = Registry::default();
    let delivery_metrics = DeliveryMetrics::register(&mut registry);
    if let Some(export_metrics) = &config.trace_export_metrics {
        export_metrics.register(&mut registry);
    }
    let api_metrics = ApiMetricHandles::register(&mut registry).finish(registry);
    let wakeup = Arc::new(Notify::new());
    let role = config.role;
    if role.delivers() {
        // The store wakes the worker as it commits deliveries, and on PostgreSQL when other
        // nodes commit theirs (LISTEN/NOTIFY): no route has to.
        store.wake_on_new_deliveries(Arc::clone(&wakeup));
    }
    let recovery_wakeup = Arc::new(Notify::new());
    let state = AppState {
        store: Arc::clone(&store),
        config: Arc::new(config.api.clone()),
        test_sender: Arc::new(test_sender::DeliveryTestSender {
            store: Arc::clone(&store),
            client: client.clone(),
        }),
        recovery_wakeup: Arc::clone(&recovery_wakeup),
        metrics: api_metrics,
        publisher: Publisher::spawn(Arc::clone(&store)),
        known_orgs: Arc::default(),
    };

    // Everything below but the API runs on the background runtime (see `background`), on a
    // node that delivers (`HERALD_ROLE`); an API-only node leaves it to the delivery nodes of
    // its database, which its commits wake.
    let stopping = CancellationToken::new();
    let background = match role.delivers() {
        true => Some(start_delivery(
            &config,
            &store,
            client,
            delivery_metrics,
            wakeup,
            recovery_wakeup,
            &stopping,
        )?),
        false => None,
    };
    tracing::info!(role = role.name(), "node role (HERALD_ROLE)");

    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    log_connection_limits(address, &config.http);
    let signal = stopping.clone();
    tokio::join!(
        async move {
            shutdown.await;
            signal.cancel();
        },
        http::serve(
            listener,
            match role.serves_api() {
                true => herald_api::router(state),
                false => herald_api::delivery_node_router(state),
            },
            config.http.clone(),
            stopping.clone(),
        ),
    );
    stopping.cancel();
    if let Some(delivery) = background {
        delivery.finish().await;
    }
    // Only now may another Herald take the embedded database.
    drop(embedded_database_lock);
    tracing::info!("herald stopped");
    Ok(())
}

/// The delivery side of a node: the worker, recovery, probing and the purge, on the
/// background runtime.
struct Delivery {
    background: background::Background,
    worker: tokio::task::JoinHandle<()>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl Delivery {
    /// Waits for every task (they stop once `stopping` is cancelled), then the runtime.
    async fn finish(self) {
        if self.worker.await.is_err() {
            tracing::error!("the delivery worker panicked");
        }
        for task in self.others {
            let _ = task.await;
        }
        drop(self.background);
    }
}

/// Starts the delivery side (see [`Delivery`]).
fn start_delivery(
    config: &Config,
    store: &Arc<dyn Store>,
    client: DeliveryClient,
    delivery_metrics: DeliveryMetrics,
    wakeup: Arc<Notify>,
    recovery_wakeup: Arc<Notify>,
    stopping: &CancellationToken,
) -> anyhow::Result<Delivery> {
    let background =
        background::Background::start(background::default_threads(), config.delivery_niceness)?;
    let recoveries = background.spawn(herald_delivery::recovery::run(
        Arc::clone(store),
        recovery_wakeup.clone(),
        Arc::clone(&wakeup),
        stopping.clone(),
    ));
    let probes = background.spawn(herald_delivery::probe::run(
        Arc::clone(store),
        client.clone(),
        config.probe.clone(),
        recovery_wakeup,
        stopping.clone(),
    ));
    let worker = Worker::new(
        Arc::clone(store),
        client,
        config.worker.clone(),
        wakeup,
        Some(delivery_metrics),
    );
    let worker = background.spawn(worker.run(stopping.clone()));
    let retention = background.spawn(herald_delivery::retention::run(
        Arc::clone(store),
        config.retention.clone(),
        stopping.clone(),
    ));
    Ok(Delivery {
        background,
        worker,
        others: vec![recoveries, probes, retention],
    })
}

/// Says where Herald listens and with which limits, and warns when the connection cap leaves
/// too few descriptors for the rest of the process.
fn log_connection_limits(address: std::net::SocketAddr, limits: &HttpConfig) {
    let open_files_limit = http::open_files_limit();
    tracing::info!(
        %address,
        max_connections = limits.max_connections,
        open_files_limit,
        header_read_timeout_seconds = limits.header_read_timeout.as_secs_f64(),
        idle_timeout_seconds = limits.idle_timeout.as_secs_f64(),
        "herald listening"
    );
    if !http::fits_open_files_limit(limits.max_connections, open_files_limit) {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit,
            "HERALD_MAX_CONNECTIONS leaves few descriptors for the database and deliveries; \
             raise the open-files limit (ulimit -n, LimitNOFILE=) with it"
        );
    }
}
