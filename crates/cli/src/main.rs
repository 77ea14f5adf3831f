//! The `herald` binary. It parses the command line, sets up logging and hands off to
//! `herald-server` (for `serve`) or to the admin commands; it holds no logic of its own.

mod admin;

use clap::{Parser, Subcommand};
use herald_server::telemetry::{Telemetry, TelemetryConfig};
use herald_server::{ServeArgs, StorageArgs};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// mimalloc instead of the system allocator: the delivery path allocates and frees many small
/// buffers on several threads (HTTP/2 frames, headers, rows), where glibc's malloc spent a
/// fifth of the worker threads' time and kept per-thread arenas fragmented (BENCHMARKS.md).
/// The `mimalloc` feature is on by default; heap profiles are taken without it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herald: outbound webhooks, signed, retried and recorded.
#[derive(Debug, Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the service: the API and the delivery worker.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(StorageArgs),
    /// Manage organizations.
    #[command(subcommand)]
    Orgs(admin::OrgsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Publish events.
    #[command(subcommand)]
    Events(admin::EventsCommand),
    /// Act on endpoints.
    #[command(subcommand)]
    Endpoints(admin::EndpointsCommand),
    /// Mint a portal session: a link to the organization's portal, valid for a while.
    Portal(admin::PortalArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Only `serve` exports traces. The pipeline is built inside the runtime (a gRPC exporter's
    // connection runs on it) and before logging starts (its layer is part of the subscriber).
    let telemetry = match &cli.command {
        Command::Serve(_) => {
            let _runtime = runtime.enter();
            Telemetry::start(&TelemetryConfig::from_env()?)?
        }
        _ => None,
    };
    init_logging(telemetry.as_ref());
    let finished = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args, telemetry.as_ref()).await,
            Command::Migrate(storage) => {
                herald_server::storage::open_store(&storage).await?;
                Ok(())
            }
            Command::Orgs(command) => admin::run_orgs(command).await,
            Command::Keys(command) => admin::run_keys(command).await,
            Command::Events(command) => admin::run_events(command).await,
            Command::Endpoints(command) => admin::run_endpoints(command).await,
            Command::Portal(args) => admin::run_portal(args).await,
        }
    });
    // The last step of a graceful shutdown: the spans of the final batch go out. A
    // collector that cannot take them costs those spans, not the exit status.
    if let Some(Err(error)) = telemetry.map(Telemetry::shutdown) {
        tracing::warn!(error = %format!("{error:#}"), "exporting the last spans failed");
    }
    finished
}

async fn serve(args: ServeArgs, telemetry: Option<&Telemetry>) -> anyhow::Result<()> {
    let listen = args.listen;
    let mut config = args.into_config()?;
    config.worker.tracer = telemetry.map(Telemetry::delivery_tracer);
    config.trace_export_metrics = telemetry.map(Telemetry::export_metrics);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("binding {listen}: {error}"))?;
    herald_server::run(config, listener, shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT will stop herald");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested");
}

/// Logs go to stderr; `HERALD_LOG` (or `RUST_LOG`) filters, `HERALD_LOG_FORMAT=json` makes
/// them structured. With trace export on, the OpenTelemetry layer sits beside the log, with a
/// filter of its own: `HERALD_LOG` chooses what is logged, not what is traced.
fn init_logging(telemetry: Option<&Telemetry>) {
    let filter = std::env::var("HERALD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn".to_owned());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = if std::env::var("HERALD_LOG_FORMAT").is_ok_and(|format| format == "json") {
        log.json().boxed()
    } else {
        log.boxed()
    };
    tracing_subscriber::registry()
        .with(log.with_filter(EnvFilter::new(filter)))
        .with(telemetry.map(Telemetry::layer))
        .init();
}
