//! One measured Herald: a fresh database, a `herald serve` process on it and an API client.
//! Every workload (and each half of `noisy`) gets its own session, so its peak memory and its
//! figures owe nothing to the one before.

use std::future::Future;
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
    /// `--herald-env`: settings every Herald gets after its workload's own.
    pub(crate) herald_env: Vec<(String, String)>,
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

/// A running Herald on its own database, and any further nodes on the same (PostgreSQL)
/// database. Fields drop in order: the processes are killed before their database is dropped,
/// and the database before its directory.
#[derive(Debug)]
pub(crate) struct Session {
    herald: Herald,
    nodes: Vec<Herald>,
    database: Database,
    directory: TempDir,
    started: Instant,
    /// A client of this Herald (the first node).
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
        let herald = start_node(launch, &database, &directory, &settings, 0).await?;
        let api = Api::new(&herald.base, launch.endpoint_headers)?;
        Ok(Self {
            herald,
            nodes: Vec::new(),
            started,
            database,
            directory,
            api,
        })
    }

    /// Stops this Herald (what it used is returned), then starts another with `settings` on
    /// the same database: a backlog left by one process is drained by the next.
    pub(crate) async fn restart(
        &mut self,
        launch: &Launch,
        settings: HeraldSettings,
    ) -> anyhow::Result<Usage> {
        self.while_stopped(launch, settings, |_| async { Ok(()) })
            .await
            .map(|(usage, ())| usage)
    }

    /// Stops this Herald, runs `between` (with the database's URL) while none runs, then starts
    /// Herald again with `settings`. What the first process used is returned, with what
    /// `between` returned.
    pub(crate) async fn while_stopped<F, Fut, T>(
        &mut self,
        launch: &Launch,
        settings: HeraldSettings,
        between: F,
    ) -> anyhow::Result<(Usage, T)>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let usage = self.usage()?;
        // One process at a time: SQLite's embedded database admits one Herald.
        stop(&mut self.herald).await?;
        let between = between(self.database.url.clone()).await?;
        let herald = start_node(launch, &self.database, &self.directory, &settings, 0).await?;
        self.herald = herald;
        self.api = Api::new(&self.herald.base, launch.endpoint_headers)?;
        self.started = Instant::now();
        Ok((usage, between))
    }

    /// Starts `count` more `herald serve` nodes on this session's database (PostgreSQL only:
    /// SQLite allows one process), each with `settings`; a client of each.
    pub(crate) async fn add_nodes(
        &mut self,
        launch: &Launch,
        settings: &HeraldSettings,
        count: usize,
    ) -> anyhow::Result<Vec<Api>> {
        let mut apis = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.nodes.len() + 1;
            let node = start_node(launch, &self.database, &self.directory, settings, index).await?;
            apis.push(Api::new(&node.base, launch.endpoint_headers)?);
            self.nodes.push(node);
        }
        Ok(apis)
    }

    /// CPU time every node of this session has used so far, in seconds.
    pub(crate) fn nodes_cpu_seconds(&self) -> f64 {
        self.herald.cpu_seconds().unwrap_or(0.0) + self.other_nodes_cpu_seconds()
    }

    /// The largest peak resident memory of the nodes beside the first, in bytes.
    pub(crate) fn other_nodes_peak_rss_bytes(&self) -> Option<u64> {
        self.nodes.iter().filter_map(Herald::peak_rss_bytes).max()
    }

    /// CPU time the nodes beside the first have used so far, in seconds.
    pub(crate) fn other_nodes_cpu_seconds(&self) -> f64 {
        self.nodes.iter().filter_map(Herald::cpu_seconds).sum()
    }

    /// The PostgreSQL database's name; `None` on SQLite.
    pub(crate) fn postgres_name(&self) -> Option<&str> {
        self.database.postgres_name()
    }

    fn usage(&mut self) -> anyhow::Result<Usage> {
        self.check_running()?;
        Ok(Usage {
            peak_rss_bytes: self.herald.peak_rss_bytes(),
            cpu_seconds: self.herald.cpu_seconds(),
            wall_seconds: self.started.elapsed().as_secs_f64(),
        })
    }

    /// Polls `condition` every 2 ms until it holds (`true`) or `deadline` passes (`false`).
    /// Fails if Herald, or any further node, exits meanwhile.
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
            self.check_running()?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Herald's CPU time so far, user and system, in seconds: read before and after a phase
    /// to give that phase's cost.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        self.herald.cpu_seconds()
    }

    /// Fails if Herald, or any further node, has exited (figures of fewer nodes than the
    /// workload started must not pass for its own); for waits that poll Herald itself rather
    /// than a condition.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        self.herald.check_running()?;
        for node in &mut self.nodes {
            node.check_running()?;
        }
        Ok(())
    }

    /// Reads what Herald used, stops it and drops its database. The usage is read just before
    /// the stop, so it covers the whole workload and not the shutdown.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Usage> {
        let usage = self.usage()?;
        for node in &mut self.nodes {
            stop(node).await?;
        }
        stop(&mut self.herald).await?;
        Ok(usage)
    }
}

/// Starts node `index` of a session (0 is the first), logging to its own file.
async fn start_node(
    launch: &Launch,
    database: &Database,
    directory: &TempDir,
    settings: &HeraldSettings,
    index: usize,
) -> anyhow::Result<Herald> {
    let log = match index {
        0 => "herald.log".to_owned(),
        n => format!("herald-{n}.log"),
    };
    let herald = Herald::start(
        &launch.binary,
        database,
        &launch.ca_path,
        launch.otlp_endpoint.as_deref(),
        &directory.path().join(log),
        settings,
        &launch.herald_env,
    )
    .await?;
    eprintln!(
        "herald-bench:   herald pid {} at {}",
        herald.pid(),
        herald.base
    );
    Ok(herald)
}

/// SIGTERM, then a bounded wait.
async fn stop(herald: &mut Herald) -> anyhow::Result<()> {
    let status = herald.stop().await?;
    if !status.success() {
        eprintln!("herald-bench:   herald exited with {status} after SIGTERM");
    }
    Ok(())
}
