//! Idle sockets cannot exhaust the server (issue 11, item 4). The real `herald` binary runs
//! under an open-files limit of 300 while this process holds 400 idle connections to it, as the
//! issue's reproduction did (there `/healthz` timed out and the log said "Too many open files"
//! every second). The default connection cap, derived from the limit, leaves descriptors for
//! the rest of the process, and idle connections make room for new ones: `/healthz` answers
//! within a second, again and again, and the server never runs out of descriptors.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::net::TcpStream;

use support::postgres::TestDatabase;
use support::{Herald, Launcher, TestPki};

/// The open-files limit of the server.
const FILE_LIMIT: u64 = 300;
/// Idle connections held open to it: more than it could ever hold descriptors for.
const IDLE_CONNECTIONS: usize = 400;
/// How long each `/healthz` may take.
const PROMPTLY: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_idle_sockets_under_a_300_file_limit_do_not_stop_healthz_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
    check_idle_sockets_do_not_stop_healthz(dir.path(), &database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_idle_sockets_under_a_300_file_limit_do_not_stop_healthz_on_postgres() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = TestDatabase::create("herald_file_limit").await;
    check_idle_sockets_do_not_stop_healthz(dir.path(), &database.url).await;
}

#[expect(
    clippy::disallowed_methods,
    reason = "holds idle connections to the herald under test and probes it on loopback, as a load balancer would"
)]
async fn check_idle_sockets_do_not_stop_healthz(dir: &std::path::Path, database_url: &str) {
    // Arrange: herald under the limit, and 400 connections to it that never send a byte.
    let pki = TestPki::new();
    let ca_path = pki.write_root(dir);
    let log_path = dir.join("herald.log");
    let herald = Launcher::new("herald", database_url, &ca_path, log_path.clone())
        .env("HERALD_SECRETS_KEY", support::random_secrets_key())
        .file_limit(FILE_LIMIT)
        .start(&support::http_client())
        .await;
    assert_eq!(
        open_files_limit(&herald),
        FILE_LIMIT,
        "the server must run under the lowered limit"
    );
    let address = herald
        .base
        .strip_prefix("http://")
        .expect("an http base URL")
        .to_owned();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(
            TcpStream::connect(&address)
                .await
                .expect("connecting to herald"),
        );
    }
    // Every check opens a new connection, as a load balancer's probe does.
    let probe = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(PROMPTLY)
        .build()
        .expect("HTTP client");

    // Act: five checks over two seconds, while the idle connections stay open.
    let mut answers = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = probe.get(format!("{}/healthz", herald.base)).send().await;
        answers.push((answer.map(|response| response.status()), started.elapsed()));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // Assert
    for (answer, elapsed) in &answers {
        match answer {
            Ok(status) => assert_eq!(*status, StatusCode::OK, "/healthz answered {status}"),
            Err(error) => panic!("/healthz failed after {elapsed:?}: {error}"),
        }
        assert!(*elapsed < PROMPTLY, "/healthz took {elapsed:?}");
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !log.contains("Too many open files"),
        "the server ran out of descriptors:\n{log}"
    );
    drop(idle);
}

/// The soft open-files limit the server process runs under, from `/proc`.
fn open_files_limit(herald: &Herald) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", herald.pid()))
        .expect("reading the server's limits");
    limits
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("Max open files")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .expect("a Max open files line")
}
