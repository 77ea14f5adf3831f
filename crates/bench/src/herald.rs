//! The Herald under test: built with `cargo build --release -p herald-cli`, started as a
//! separate `herald serve` process with only the settings given here, measured through
//! `/proc/<pid>/status`, and stopped by its own process id (never by name: other Herald
//! processes may be running on the same machine).
//!
//! Herald runs in another process, so it cannot be handed a listener bound in advance; the
//! harness probes a free port and polls `/healthz` with a bound instead.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cpu::stat_cpu_seconds;
use crate::database::Database;

/// The bearer token of the admin API of every Herald the harness starts.
pub(crate) const ADMIN_TOKEN: &str = "herald-bench-admin-token";
/// Attempts in flight to one endpoint. Herald's default, set explicitly so that the ceiling
/// workload's client uses the same concurrency as Herald.
pub(crate) const IN_FLIGHT_PER_ENDPOINT: usize = 16;
/// How long one start may take to answer `/healthz`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long Herald may take to exit after SIGTERM before it is killed; above the 2 s grace
/// the harness configures.
const EXIT_WITHIN: Duration = Duration::from_secs(15);

/// Settings that differ between workloads.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeraldSettings {
    /// `HERALD_REQUEST_TIMEOUT_SECONDS`, when not Herald's default of 15.
    pub(crate) request_timeout_seconds: Option<u64>,
    /// `HERALD_RETRY_SCHEDULE` (comma-separated delays), when not Herald's decided schedule.
    pub(crate) retry_schedule: Option<&'static str>,
    /// `HERALD_AUTO_DISABLE_AFTER` (a duration), when not Herald's default of 5 days.
    pub(crate) auto_disable_after: Option<&'static str>,
    /// `HERALD_EVENT_CATALOG`, when not the default catalog.
    pub(crate) event_catalog: Option<PathBuf>,
    /// `HERALD_SCHEMA_ENFORCEMENT`, when not Herald's default of `warn`.
    pub(crate) schema_enforcement: Option<&'static str>,
    /// `HERALD_MAX_IN_FLIGHT`, when not Herald's default of 1,024.
    pub(crate) max_in_flight: Option<usize>,
    /// `HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS`, when not Herald's default of 5.
    pub(crate) queue_gauges_max_age_seconds: Option<u64>,
    /// `HERALD_EVENT_RETENTION_DAYS` and `HERALD_ATTEMPT_RETENTION_DAYS`, when not Herald's
    /// defaults of 30 and 90.
    pub(crate) retention_days: Option<u32>,
    /// `HERALD_ROLE` (`api` or `delivery`), when not Herald's default of `both`.
    pub(crate) role: Option<&'static str>,
}

/// Builds the release `herald` binary (a no-op when it is up to date) and returns its path, as
/// cargo reports it, so `CARGO_TARGET_DIR` and profiles are honoured.
pub(crate) async fn build_release() -> anyhow::Result<PathBuf> {
    let workspace = crate::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("herald-bench: cargo build --release -p herald-cli");
    let output = tokio::process::Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "herald-cli"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running cargo build")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let messages = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    if !output.status.success() {
        // Cargo renders diagnostics on stderr, which the user sees; anything it left on stdout
        // instead is shown here.
        let rendered: Vec<String> = messages
            .filter_map(|message| message["message"]["rendered"].as_str().map(str::to_owned))
            .collect();
        bail!(
            "cargo build --release -p herald-cli failed ({}){}",
            output.status,
            rendered.concat()
        );
    }
    messages
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "herald"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo build did not report the herald executable")
}

/// A running `herald serve`. Dropping it kills the process, so a failed workload leaves no
/// server behind.
#[derive(Debug)]
pub(crate) struct Herald {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    log_path: PathBuf,
}

impl Herald {
    /// Starts Herald on `database` and waits until `/healthz` answers. A port taken between
    /// probing and binding makes the child exit; then another port is tried.
    pub(crate) async fn start(
        binary: &Path,
        database: &Database,
        ca_path: &Path,
        otlp_endpoint: Option<&str>,
        log_path: &Path,
        settings: &HeraldSettings,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        #[expect(
            clippy::disallowed_methods,
            reason = "the harness measures Herald from outside: a client of its API on loopback, not a delivery"
        )]
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the readiness client")?;
        for _ in 0..5 {
            let port = free_port()?;
            let log = File::options()
                .create(true)
                .append(true)
                .open(log_path)
                .context("opening the herald log")?;
            let mut command = Command::new(binary);
            // Only the settings below apply: nothing inherited from the caller's environment,
            // trace export included.
            for (name, _) in std::env::vars_os() {
                let name_text = name.to_string_lossy();
                if name_text.starts_with("HERALD_") || name_text.starts_with("OTEL_") {
                    command.env_remove(name);
                }
            }
            if let Some(endpoint) = otlp_endpoint {
                command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
            }
            command
                .arg("serve")
                .env("HERALD_DATABASE_URL", &database.url)
                .env("HERALD_SECRETS_KEY", &database.secrets_key)
                .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
                .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("HERALD_ALLOW_NETWORKS", "127.0.0.0/8")
                .env("HERALD_EXTRA_ROOT_CERTS", ca_path)
                .env(
                    "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT",
                    IN_FLIGHT_PER_ENDPOINT.to_string(),
                )
                // Bounds the stop of a Herald with attempts hanging in flight (noisy).
                .env("HERALD_SHUTDOWN_GRACE_SECONDS", "2")
                // HERALD_BENCH_LOG overrides it, e.g. `herald_delivery=debug` to see claims.
                .env(
                    "HERALD_LOG",
                    std::env::var("HERALD_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
                );
            if let Some(seconds) = settings.request_timeout_seconds {
                command.env("HERALD_REQUEST_TIMEOUT_SECONDS", seconds.to_string());
            }
            if let Some(schedule) = settings.retry_schedule {
                command.env("HERALD_RETRY_SCHEDULE", schedule);
            }
            if let Some(after) = settings.auto_disable_after {
                command.env("HERALD_AUTO_DISABLE_AFTER", after);
            }
            if let Some(catalog) = &settings.event_catalog {
                command.env("HERALD_EVENT_CATALOG", catalog);
            }
            if let Some(enforcement) = settings.schema_enforcement {
                command.env("HERALD_SCHEMA_ENFORCEMENT", enforcement);
            }
            if let Some(most) = settings.max_in_flight {
                command.env("HERALD_MAX_IN_FLIGHT", most.to_string());
            }
            if let Some(seconds) = settings.queue_gauges_max_age_seconds {
                command.env("HERALD_QUEUE_GAUGES_MAX_AGE_SECONDS", seconds.to_string());
            }
            if let Some(days) = settings.retention_days {
                command.env("HERALD_EVENT_RETENTION_DAYS", days.to_string());
                command.env("HERALD_ATTEMPT_RETENTION_DAYS", days.to_string());
            }
            if let Some(role) = settings.role {
                command.env("HERALD_ROLE", role);
            }
            command.envs(extra_env.iter().map(|(name, value)| (name, value)));
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut herald = Self {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log_path: log_path.to_owned(),
            };
            match herald.wait_ready(&http).await? {
                None => return Ok(herald),
                Some(status) => eprintln!("herald-bench: herald exited at start ({status})"),
            }
        }
        bail!(
            "herald did not start in 5 tries; its log ends with:\n{}",
            log_tail(log_path)
        )
    }

    /// The process id, for the report.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Herald's peak resident set size so far (`VmHWM`), in bytes.
    pub(crate) fn peak_rss_bytes(&self) -> Option<u64> {
        let status = File::open(format!("/proc/{}/status", self.child.id())).ok()?;
        BufReader::new(status)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let kilobytes = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
                kilobytes.trim().parse::<u64>().ok().map(|kb| kb * 1024)
            })
    }

    /// CPU time Herald has used so far, user and system, in seconds (from `/proc/<pid>/stat`,
    /// in Linux's clock ticks of 1/100 s).
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        stat_cpu_seconds(&stat)
    }

    /// Fails if the process has exited although nobody here stopped it.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("polling herald")? {
            None => Ok(()),
            Some(status) => bail!(
                "herald (pid {}) exited by itself with {status}; its log ends with:\n{}",
                self.child.id(),
                log_tail(&self.log_path)
            ),
        }
    }

    /// SIGTERM to this process only, then a bounded wait; SIGKILL if it does not exit.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", self.child.id());
        }
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("polling herald")? {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.kill().context("killing herald")?;
        bail!("herald did not exit within {EXIT_WITHIN:?} of SIGTERM and was killed")
    }

    /// Waits until `/healthz` answers 200 (`None`), or returns the status of a process that
    /// exited first.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("polling herald")? {
                return Ok(Some(status));
            }
            let health = http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "herald was not healthy within {READY_WITHIN:?}; its log ends with:\n{}",
            log_tail(&self.log_path)
        )
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
    Ok(listener.local_addr().context("probed address")?.port())
}

/// The last lines of Herald's log, for an error message.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
