//! PostgreSQL for tests and the benchmark harness: a fresh database on the shared server (for
//! a test or a run that only needs isolation), and a private cluster a test alone starts and
//! stops (for tests that take the database away, which must never happen to the server other
//! tests share). Both are guards: dropping them, on success or on failure, removes what they
//! made. Herald migrates an empty database itself, so nothing here knows its schema.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::fault::{free_port, show_log};

/// The shared server used when `HERALD_TEST_POSTGRES_URL` is unset.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The shared server, as `HERALD_TEST_POSTGRES_URL` names it.
fn server_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// A database on the shared server that exists for one test or run, dropped `WITH (FORCE)`
/// (open connections and all) when the guard goes away.
pub struct TestDatabase {
    /// Its connection URL.
    pub url: String,
    name: String,
    server_url: String,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name alone: the URL may carry the server's password.
        formatter
            .debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// Creates an empty database named `<prefix>_<random>`; fails the test, saying how to
    /// start PostgreSQL, when the server cannot be reached.
    pub async fn create(prefix: &str) -> Self {
        Self::try_create(prefix).await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {} ({error}); scripts/start-postgres starts it",
                server_url()
            )
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server's maintenance database, for statements about this one
    /// (`ALTER DATABASE`).
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// [`TestDatabase::create`], returning the error instead of failing.
    pub async fn try_create(prefix: &str) -> Result<Self, sqlx::Error> {
        let server_url = server_url();
        let name = format!("{prefix}_{:032x}", rand::random::<u128>());
        let mut connection = PgConnection::connect(&server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        let _ = connection.close().await;
        let base = server_url
            .rsplit_once('/')
            .map_or(server_url.as_str(), |(base, _)| base);
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
            server_url,
        })
    }
}

/// Waits until a session of the database at `url` waits for a lock (a statement held behind
/// a test's own transaction), polling `pg_stat_activity`; fails the test after 10 s.
pub async fn wait_for_a_lock_wait(url: &str) {
    let mut watcher = PgConnection::connect(url)
        .await
        .expect("connecting to watch the locks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("reading pg_stat_activity");
        if waiting > 0 {
            let _ = watcher.close().await;
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session of the database waited for a lock within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside the caller's runtime, where blocking on async work is not
        // allowed; a short-lived thread with its own runtime does the cleanup, and is joined
        // so the database is gone before the process exits.
        let name = self.name.clone();
        let server_url = self.server_url.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a cleanup runtime");
            runtime.block_on(async move {
                match PgConnection::connect(&server_url).await {
                    Ok(mut connection) => {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        if let Err(error) = sqlx::query(&drop).execute(&mut connection).await {
                            eprintln!("could not drop test database {name}: {error}");
                        }
                        let _ = connection.close().await;
                    }
                    Err(error) => eprintln!("could not drop test database {name}: {error}"),
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A PostgreSQL cluster of this test's own: `initdb` into a temporary directory, served on a
/// loopback port with its socket in that directory. Dropping it stops the server at once
/// (`pg_ctl -m immediate`) and removes the directory.
pub struct PrivateCluster {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Holds the data directory, the socket and the server log.
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Creates the cluster and starts it on a free port.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temporary directory for PostgreSQL");
        let data = dir.path().join("data");
        if running_as_root() {
            // PostgreSQL refuses to run as root; its own account owns the cluster instead.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        run(postgres_command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "--no-sync"]));
        let port = free_port();
        let cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            data,
            dir,
        };
        cluster.resume();
        cluster
    }

    /// Starts the server again, on the same port and data directory, and waits until it
    /// accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        run(self
            .pg_ctl()
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "30", "start"]));
    }

    /// Stops the server the way an operator restarting it would (`pg_ctl -m fast stop`):
    /// sessions are terminated, open transactions rolled back.
    pub fn stop(&self) {
        run(self.pg_ctl().args(["-m", "fast", "-w", "-t", "30", "stop"]));
    }

    /// The server's own log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn pg_ctl(&self) -> Command {
        let mut command = postgres_command(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(&self.data);
        command
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Stopping an already stopped server fails harmlessly.
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output();
        if std::thread::panicking() {
            show_log("PostgreSQL", &self.log_path());
        }
    }
}

/// The newest installed PostgreSQL's `bin` directory (Debian's layout).
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .unwrap_or_else(|error| panic!("no PostgreSQL under {} ({error})", root.display()))
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .unwrap_or_else(|| panic!("no PostgreSQL version under {}", root.display()));
    root.join(newest.to_string()).join("bin")
}

fn running_as_root() -> bool {
    let output = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// `program`, run as the `postgres` account when this process is root.
fn postgres_command(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` to completion and fails the test, with its output, if it failed.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
