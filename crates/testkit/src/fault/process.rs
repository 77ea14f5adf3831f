//! The real `herald` binary as a child process: starting `herald serve` on a free port with a
//! clean `HERALD_*` environment, waiting (bounded) for its health check, and killing or
//! stopping it. Herald runs as a separate process, so it cannot be handed a listener bound in
//! advance (STYLE.md "Tests"); readiness is its health endpoint, polled with a bound instead.
//! Only processes started here are ever signalled, by their own pid.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::ADMIN_TOKEN;

/// How long one start of the server may take to answer its health check.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long a SIGTERM may take: the default shutdown grace (20 s) and some margin.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Starts `herald serve` on one database, again and again, with the same settings.
pub struct Launcher {
    /// Names the server in messages, e.g. `node 2`.
    name: String,
    /// `HERALD_*` variables, on top of a clean environment.
    env: Vec<(String, OsString)>,
    /// The server's stderr, appended across restarts; shown when the test fails.
    log_path: PathBuf,
    /// The open-files limit (`ulimit -n`) the server runs under; inherited when `None`.
    file_limit: Option<u64>,
}

impl Launcher {
    /// A server on `database_url` that trusts the CA at `ca_path`, may dial loopback, accepts
    /// [`ADMIN_TOKEN`] and logs warnings and errors to `log_path`.
    pub fn new(name: &str, database_url: &str, ca_path: &Path, log_path: PathBuf) -> Self {
        let launcher = Self {
            name: name.to_owned(),
            env: Vec::new(),
            log_path,
            file_limit: None,
        };
        launcher
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HERALD_ALLOW_NETWORKS", "127.0.0.0/8")
            .env("HERALD_EXTRA_ROOT_CERTS", ca_path)
            .env("HERALD_LOG", "warn")
    }

    /// Sets one more environment variable of the server.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Runs the server under an open-files limit of `limit` (soft and hard), as `ulimit -n`
    /// in its shell would; this process keeps its own.
    pub fn file_limit(mut self, limit: u64) -> Self {
        self.file_limit = Some(limit);
        self
    }

    /// Starts the server on a free port and waits until `/healthz` answers. A port taken between
    /// probing and binding makes the child exit; then another port is tried.
    pub async fn start(&self, http: &reqwest::Client) -> Herald {
        let binary = herald_binary();
        for _ in 0..5 {
            let port = free_port();
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .expect("open the server log");
            let mut command = match self.file_limit {
                None => Command::new(&binary),
                Some(limit) => {
                    // The shell lowers its limit, then becomes herald (`exec`), so the child's
                    // pid is herald's own.
                    let mut command = Command::new("sh");
                    command
                        .arg("-c")
                        .arg(r#"ulimit -n "$1" || exit 97; shift; exec "$@""#)
                        .arg("sh")
                        .arg(limit.to_string())
                        .arg(&binary);
                    command
                }
            };
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("HERALD_") {
                    command.env_remove(name);
                }
            }
            let child = command
                .arg("serve")
                .envs(self.env.iter().map(|(name, value)| (name, value)))
                .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn herald");
            let mut herald = Herald {
                child,
                base: format!("http://127.0.0.1:{port}"),
                name: self.name.clone(),
                log_path: self.log_path.clone(),
            };
            match herald.wait_ready(http).await {
                Ok(()) => return herald,
                Err(status) => {
                    eprintln!("{}: herald exited at start ({status}); retrying", self.name)
                }
            }
        }
        panic!(
            "{} did not start in 5 tries; its log:\n{}",
            self.name,
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        );
    }
}

/// The `herald` binary of the tests running now. Cargo names it to integration tests only at
/// compile time (`env!("CARGO_BIN_EXE_herald")`, which this library cannot read); nextest also
/// sets `NEXTEST_BIN_EXE_herald` at run time. Otherwise it is where cargo builds it before
/// the tests: in the profile directory that holds the test executable's `deps`.
fn herald_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NEXTEST_BIN_EXE_herald") {
        return PathBuf::from(path);
    }
    let test_executable = std::env::current_exe().expect("the test executable's path");
    let profile = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("a test executable lives in <target>/<profile>/deps");
    let binary = profile.join("herald");
    assert!(
        binary.is_file(),
        "no herald binary at {}; run the tests through cargo",
        binary.display()
    );
    binary
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("probe a free port")
        .port()
}

/// A running `herald serve`. Dropping it kills the process; when the test is failing, the
/// server log is shown as well.
pub struct Herald {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    name: String,
    log_path: PathBuf,
}

impl Herald {
    /// Waits (bounded) until `/healthz` answers 200; the exit status if the process ended.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll herald") {
                return Err(status);
            }
            let health = http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == StatusCode::OK) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} was not healthy within {READY_WITHIN:?}", self.name);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test if the server is gone although nobody here stopped it.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll herald") {
            panic!(
                "{} (pid {}) exited by itself with {status}; exit 0 means a graceful \
                 shutdown, i.e. some other process sent it SIGTERM or SIGINT",
                self.name,
                self.child.id()
            );
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9 herald");
        self.child.wait().expect("reap herald");
    }

    /// SIGTERM, then waits (bounded) for the exit; `None` if it did not exit in time.
    pub async fn terminate(mut self) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll herald") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            show_log(&self.name, &self.log_path);
        }
    }
}

/// Prints the tail of a server log on stderr.
pub fn show_log(name: &str, path: &Path) {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(200).collect();
    eprintln!("--- {name} log (last {} lines) ---", tail.len());
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}
