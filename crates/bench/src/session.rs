//! One measured Herald: a fresh database, a `herald serve` process on it and an API client.
//! Every workload (and each half of `noisy`) gets its own session, so its peak memory and its
//! figures owe nothing to the one before.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::api::Api;
use crate::database::{Backend, Database};
use crate::herald::{Herald, HeraldSettings};

/// What every session is started from.
#[derive(Debug)]
pub(crate) struct Launch {
    /// The release `herald` binary.
    pub(crate) binary: PathBuf,
    /// The storage backend.
    pub(crate) backend: Backend,
    /// The PEM of the receivers' CA, for `HERALD_EXTRA_ROOT_CERTS`.
    pub(crate) ca_path: PathBuf,
    /// How many custom headers each endpoint the harness creates carries.
    pub(crate) endpoint_headers: u8,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, when traces are exported (`--otlp`).
    pub(crate) otlp_endpoint: Option<String>,
}

/// What a Herald process used over its life.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// Peak resident memory (`VmHWM`), in bytes.
    pub(crate) peak_rss_bytes: Option<u64>,
    /// CPU time, user and system, in seconds.
    pub(crate) cpu_seconds: Option<f64>,
    /// How long it ran, setup included.
    pub(crate) wall_seconds: f64,
}

/// A running Herald on its own database. Fields drop in order: the process is killed before
/// its database is dropped, and the database before its directory.
#[derive(Debug)]
pub(crate) struct Session {
    herald: Herald,
    _database: Database,
    _directory: TempDir,
    started: Instant,
    /// A client of this Herald.
    pub(crate) api: Api,
}

impl Session {
    /// Creates a database and starts Herald on it.
    pub(crate) async fn start(launch: &Launch, settings: HeraldSettings) -> anyhow::Result<Self> {
        let directory = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let database = Database::create(launch.backend, directory.path()).await?;
        let started = Instant::now();
        let herald = Herald::start(
            &launch.binary,
            &database,
            &launch.ca_path,
            launch.otlp_endpoint.as_deref(),
            &directory.path().join("herald.log"),
            settings,
        )
        .await?;
        let api = Api::new(&herald.base, launch.endpoint_headers)?;
        eprintln!(
            "herald-bench:   herald pid {} at {}",
            herald.pid(),
            herald.base
        );
        Ok(Self {
            herald,
            started,
            _database: database,
            _directory: directory,
            api,
        })
    }

    /// Polls `condition` every 2 ms until it holds (`true`) or `deadline` passes (`false`).
    /// Fails if Herald exits meanwhile.
    pub(crate) async fn wait_until(
        &mut self,
        deadline: Instant,
        mut condition: impl FnMut() -> bool,
    ) -> anyhow::Result<bool> {
        loop {
            if condition() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.herald.check_running()?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Herald's CPU time so far, user and system, in seconds: read before and after a phase
    /// to give that phase's cost.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        self.herald.cpu_seconds()
    }

    /// Fails if Herald has exited, for waits that poll Herald itself rather than a condition.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        self.herald.check_running()
    }

    /// Reads what Herald used, stops it and drops its database. The usage is read just before
    /// the stop, so it covers the whole workload and not the shutdown.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Usage> {
        self.herald.check_running()?;
        let usage = Usage {
            peak_rss_bytes: self.herald.peak_rss_bytes(),
            cpu_seconds: self.herald.cpu_seconds(),
            wall_seconds: self.started.elapsed().as_secs_f64(),
        };
        let Self { herald, .. } = self;
        let status = herald.stop().await?;
        if !status.success() {
            eprintln!("herald-bench:   herald exited with {status} after SIGTERM");
        }
        Ok(usage)
    }
}
