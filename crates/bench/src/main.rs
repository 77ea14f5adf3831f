//! `herald-bench`: Herald's benchmark harness (issue 5).
//!
//! It builds and starts a release `herald serve` as a separate process on a fresh database,
//! runs its own HTTPS receivers on loopback, sets up organizations and endpoints through the
//! public API, publishes through the admin API and measures everything from outside. Every run
//! prints a table and writes a JSON report. It is a measuring tool, not part of the product,
//! and it must not reach into Herald's crates: it talks to the binary only. Its test CA, the
//! receivers' TLS server and the fresh PostgreSQL database come from `herald-testkit`, the test
//! support the suites share, which depends on no Herald crate.
//!
//! # Layout
//!
//! - `main.rs`: the command line, the order of workloads and the exit status.
//! - `workloads.rs`: what the workloads share (their names, their scale, the deadlines);
//!   `workloads/` holds one file per workload (`delivery.rs` has throughput, fanout and
//!   latency; `recover.rs` recovery; `ordered.rs` ordering keys; `backlog.rs`, `tenants.rs`,
//!   `history.rs`, `nodes.rs` the scale workloads) and `publish.rs`, publishing from many
//!   clients at once, `probe.rs`, ordinary API requests at a steady pace, `provision.rs`,
//!   many organizations at once.
//! - `preload.rs`: history written into Herald's schema by SQL while no Herald runs.
//! - `session.rs`: one fresh database, the Herald process(es) on it and the API client around
//!   it.
//! - `herald.rs`: building, starting, measuring and stopping the `herald` process.
//! - `database.rs`: a temporary SQLite directory or a PostgreSQL database made for one run.
//! - `receiver.rs`: HTTPS receivers that answer at once (or hang) and record arrival times.
//! - `api.rs`: the admin and organization API calls the workloads make.
//! - `cpu.rs`: CPU time from `/proc`: PostgreSQL's backends, the harness, the machine.
//! - `stats.rs`: percentiles and rates.
//! - `report.rs`: the machine, the commit, the table and the JSON file.

mod api;
mod cpu;
mod database;
mod herald;
mod preload;
mod receiver;
mod report;
mod session;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use crate::database::Backend;
use crate::report::{Report, Verdict};
use crate::workloads::{Bench, Scale, Workload};
use herald_testkit::OtlpReceiver;

/// Runs Herald's benchmark workloads against a release `herald serve`.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version)]
struct Args {
    /// Storage backend of the Herald under test. PostgreSQL uses a fresh database on
    /// `HERALD_TEST_POSTGRES_URL`, dropped afterwards.
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,

    /// A workload name, a comma-separated list of them, or `all`: ingest, throughput, fanout,
    /// latency, noisy, ceiling, recover, ordered, catalog, churned, fanlag, fanlag-nodes
    /// (PostgreSQL only), and the scale workloads backlog, backlog-roles (PostgreSQL only),
    /// tenants, history, nodes (`scale` names those five).
    #[arg(long, default_value = "all")]
    workload: String,

    /// A tiny run (300 events per workload, every workload unless `--workload` says
    /// otherwise) for CI: targets are shown but not judged.
    #[arg(long, conflicts_with = "events")]
    smoke: bool,

    /// The scale: deliveries per workload (20,000 by default). Other counts follow from it;
    /// targets are judged only at the default scale.
    #[arg(long)]
    events: Option<usize>,

    /// Give every endpoint the harness creates this many custom headers (0 to 20, each a
    /// 32-character value), to measure what they cost per delivery.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=20))]
    endpoint_headers: u8,

    /// Use this `herald` binary instead of building one with `cargo build --release`.
    #[arg(long)]
    herald: Option<PathBuf>,

    /// Where to write the JSON report; by default under `<target dir>/herald-bench/`.
    #[arg(long)]
    output: Option<PathBuf>,

    /// Export traces: every Herald started gets `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
    /// in-process OTLP sink (http/protobuf, the test kit's receiver), to compare with a run
    /// without it (docs/operations.md#tracing). Without it, no `OTEL_*` variable reaches Herald.
    #[arg(long)]
    otlp: bool,

    /// Give every Herald the harness starts this environment variable too, after its own
    /// settings (repeatable: `--herald-env HERALD_MAX_IN_FLIGHT=64 --herald-env
    /// MIMALLOC_PURGE_DELAY=0`), to measure what a setting changes. A run with any is not
    /// judged.
    #[arg(long = "herald-env", value_name = "NAME=VALUE", value_parser = herald_setting)]
    herald_env: Vec<(String, String)>,

    /// Internal: time one request's round trip from a process of its own (the `ordered`
    /// workload runs the harness so; the request comes as JSON on stdin).
    #[arg(long, hide = true)]
    round_trip_client: bool,
}

/// Parses one `--herald-env` setting.
fn herald_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// The workspace this harness was built in: where `herald` is built and whose commit is
/// reported.
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the harness lives at crates/bench in the workspace")
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.round_trip_client {
        return match workloads::round_trip_client().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("herald-bench --round-trip-client: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args).await {
        Ok(verdict) => verdict.exit_code(),
        Err(error) => {
            eprintln!("herald-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Verdict> {
    let workloads = Workload::parse_list(&args.workload)?;
    let scale = match (args.smoke, args.events) {
        (true, _) => Scale::smoke(),
        (false, Some(events)) => Scale::custom(events)?,
        (false, None) => Scale::full(),
    };
    let binary = match args.herald {
        Some(path) => path,
        None => herald::build_release().await?,
    };
    let otlp = if args.otlp {
        Some(OtlpReceiver::start().context("starting the OTLP sink")?)
    } else {
        None
    };
    let mut report = Report::begin(
        args.backend,
        &scale,
        args.endpoint_headers,
        &binary,
        otlp.is_some(),
        &args.herald_env,
    );
    eprintln!(
        "herald-bench: {} backend, {} deliveries per workload, {} custom headers per endpoint, \
         herald at {}{}{}",
        args.backend,
        scale.events,
        args.endpoint_headers,
        binary.display(),
        if otlp.is_some() {
            ", exporting traces"
        } else {
            ""
        },
        args.herald_env
            .iter()
            .map(|(name, value)| format!(", {name}={value}"))
            .collect::<String>()
    );
    let otlp_endpoint = otlp.as_ref().map(OtlpReceiver::base_url);
    let mut bench = Bench::new(
        args.backend,
        binary,
        scale,
        args.endpoint_headers,
        otlp_endpoint,
        args.herald_env,
    )
    .await?;
    let output = match args.output {
        Some(path) => path,
        None => report::default_output_path(args.backend),
    };
    for workload in workloads {
        eprintln!("herald-bench: running {workload}");
        let result = bench.run(workload).await;
        report.add(result);
        // Written after every workload, so a long run stopped part way keeps what it measured.
        report
            .write_json(&output)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    if let Some(otlp) = &otlp {
        eprintln!(
            "herald-bench: the OTLP sink received {} spans",
            otlp.spans().len()
        );
    }
    report.print_table();
    report
        .write_json(&output)
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("herald-bench: report written to {}", output.display());
    Ok(report.verdict())
}
