//! The HTTP server: Herald's own accept loop over hyper's HTTP/1 connections, built so that
//! connections cannot exhaust the process (issue 11).
//!
//! - **A cap on connections.** Each connection holds one of `max_connections` slots from
//!   accept to close. By default the cap is derived from the open-files limit
//!   ([`default_max_connections`]), so API sockets can never take the descriptors the
//!   database, the delivery worker's outbound connections and the log need.
//! - **At the cap, idle connections make room.** A connection is accepted only when a client is
//!   waiting; at the cap Herald then closes the connection that has been quiet longest (no
//!   request in flight), so hundreds of idle sockets cannot lock out `/healthz`. When every
//!   connection has a request in flight, newcomers wait in the kernel's backlog.
//! - **Timeouts** on the time a client takes to send its request's headers and on the time a
//!   kept-alive connection waits for its next request: `http::connection` and `http::watchdog`.
//! - **Failed accepts back off.** When the process is out of descriptors anyway (another part
//!   of it, or a cap set above the limit), `accept` fails with `EMFILE`: Herald then closes its
//!   quietest connection, pauses (10 ms doubling to 1 s) and logs at most once a minute,
//!   instead of spinning and logging every failure.
//!
//! What hyper refuses before Herald sees a request (and so answers without the envelope) is
//! listed in docs/operations.md: a request head over [`MAX_REQUEST_HEAD_BYTES`] or with more
//! than 100 headers (431), a URI over 65,534 bytes (414), a request hyper cannot parse (400).
//! Only HTTP/1 is served.

mod connection;
mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::connection::Connections;

/// How long a client has to send a request's headers: from its connection, or on a reused
/// connection from the request's first byte. A client writes a request head (well under
/// 1 KiB for this API) in one go right after connecting, so 10 s leaves ample room for slow
/// links while a client that trickles its headers ("slow loris") holds a slot for no longer.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a kept-alive connection may wait for its next request. Longer than the idle
/// timeout of common load balancers (60 s on AWS ALB, nginx's upstream default), because the
/// side that closes an idle connection first risks the other sending a request on it in the
/// same instant, and a balancer answers that with a 502. Idle connections make room at the cap,
/// so a long idle timeout cannot starve anybody.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The most connections the default cap allows, however high the open-files limit: beyond
/// this, memory (each connection keeps buffers of up to ~400 KiB for a request head) rather
/// than descriptors is the limit. `HERALD_MAX_CONNECTIONS` sets a higher cap explicitly.
pub const MAX_CONNECTIONS_CEILING: usize = 1024;

/// The largest request head (request line and headers) Herald reads; a larger one is answered
/// 431 by hyper. It is hyper's own read-buffer size, made exact: left to the buffer, the limit
/// falls anywhere between this and about twice as much, depending on how the bytes arrive.
pub const MAX_REQUEST_HEAD_BYTES: usize = 408 * 1024;

/// The largest cap `HERALD_MAX_CONNECTIONS` accepts.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// Descriptors the default cap leaves to Herald itself before splitting the rest: standard
/// streams, the runtime's epoll and signal descriptors, the listener, the database lock file,
/// SQLite's up to 7 connections of 3 files each (database, WAL, shared memory) or PostgreSQL's
/// 16 sockets, and resolver files.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Most connections open at once; at least 1.
    pub max_connections: usize,
}

/// The connection cap that fits an open-files limit (`None`: unlimited). After 64 descriptors
/// for Herald itself, half of the limit goes to API connections and half stays with the
/// delivery worker's outbound connections; at least 1, at most [`MAX_CONNECTIONS_CEILING`].
/// With the common soft limit of 1,024 that is 480; with 300 it is 118.
pub fn default_max_connections(open_files_limit: Option<u64>) -> usize {
    let Some(limit) = open_files_limit else {
        return MAX_CONNECTIONS_CEILING;
    };
    usize::try_from(connection_share(limit))
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS_CEILING)
}

/// Whether a cap of `max_connections` leaves the rest of the process as many descriptors as
/// the default does, under `open_files_limit` (`None`: unlimited).
pub fn fits_open_files_limit(max_connections: usize, open_files_limit: Option<u64>) -> bool {
    open_files_limit.is_none_or(|limit| {
        u64::try_from(max_connections).unwrap_or(u64::MAX) <= connection_share(limit).max(1)
    })
}

/// The descriptors API connections may take under an open-files limit.
fn connection_share(open_files_limit: u64) -> u64 {
    open_files_limit.saturating_sub(RESERVED_DESCRIPTORS) / 2
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`); `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Serves `router` on `listener` until `stopping` is cancelled; then stops accepting, lets
/// every request in flight finish (see `http::connection` for how each connection closes) and
/// returns once all connections are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    stopping: CancellationToken,
) {
    let max_connections = config.max_connections.clamp(1, MAX_CONNECTIONS_LIMIT);
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(Connections::default());
    let config = Arc::new(config);
    let mut failures = AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                failures.succeeded();
                stream
            }
            // The client gave up while it waited in the backlog: nothing to do.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                if is_out_of_descriptors(&error) {
                    // Closing one idle connection gives the descriptor back.
                    connections.close_quietest();
                }
                let pause = failures.failed(&error, Instant::now());
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = stopping.cancelled() => break,
                }
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the cap, with a client waiting: make room by closing the connection that
                // has been quiet longest; when every connection has a request in flight, wait
                // for one to end (later clients wait in the kernel's backlog meanwhile).
                connections.close_quietest();
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => {
                        slot.expect("the connection semaphore is never closed")
                    }
                    () = stopping.cancelled() => break,
                }
            }
        };
        let registration = connections.register(Instant::now());
        tokio::spawn(connection::serve(
            stream,
            router.clone(),
            Arc::clone(&config),
            registration,
            slot,
            stopping.clone(),
        ));
    }
    // New connections are refused from here on, as before the first accept.
    drop(listener);
    // Each connection holds its slot until it is closed: holding them all means all are closed.
    let all = u32::try_from(max_connections).expect("the cap is at most MAX_CONNECTIONS_LIMIT");
    let _closed = slots
        .acquire_many(all)
        .await
        .expect("the connection semaphore is never closed");
}

/// Errors of one connection that ended while it waited to be accepted.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// `EMFILE` (this process) or `ENFILE` (the whole system) is out of file descriptors.
fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE)
    )
}

/// The first pause after a failed accept; it doubles with each failure in a row.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause after a failed accept.
const LONGEST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line per this period while accepts fail.
const ACCEPT_LOG_PERIOD: Duration = Duration::from_secs(60);

/// Failed accepts: how long to pause after each, and when to say so in the log. A process out
/// of descriptors fails every accept until one is freed, so neither retries nor log lines may
/// follow each failure.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// Failures since the last accept that succeeded.
    in_a_row: u32,
    /// When a failure was last logged.
    last_logged: Option<Instant>,
    /// Failures since then that were not logged.
    not_logged: u64,
}

impl AcceptFailures {
    /// Records a failure; returns how long to pause before accepting again.
    fn failed(&mut self, error: &std::io::Error, now: Instant) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        let log_due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_PERIOD);
        if log_due {
            tracing::error!(
                %error,
                failures_not_logged = self.not_logged,
                "cannot accept connections; pausing (logged at most once a minute)"
            );
            self.last_logged = Some(now);
            self.not_logged = 0;
        } else {
            self.not_logged += 1;
        }
        accept_pause(self.in_a_row)
    }

    /// Records a success: the next failure pauses briefly again. The log period is kept, so
    /// a limit that is hit again and again still makes at most one line a minute.
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

/// The pause after the `in_a_row`-th failed accept in a row (counting from 1).
fn accept_pause(in_a_row: u32) -> Duration {
    let doublings = in_a_row.saturating_sub(1).min(16);
    (FIRST_ACCEPT_PAUSE * 2u32.pow(doublings)).min(LONGEST_ACCEPT_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_everything_else() {
        fn check(open_files_limit: Option<u64>, expected: usize) {
            assert_eq!(
                default_max_connections(open_files_limit),
                expected,
                "limit {open_files_limit:?}"
            );
        }
        check(Some(300), 118);
        check(Some(1024), 480);
        check(Some(2_000), 968);
        check(Some(4_096), MAX_CONNECTIONS_CEILING);
        check(Some(1_048_576), MAX_CONNECTIONS_CEILING);
        check(None, MAX_CONNECTIONS_CEILING);
        check(Some(64), 1);
        check(Some(0), 1);
    }

    #[test]
    fn a_cap_above_the_share_of_the_limit_does_not_fit() {
        assert!(fits_open_files_limit(118, Some(300)));
        assert!(!fits_open_files_limit(119, Some(300)));
        assert!(fits_open_files_limit(2_000, Some(65_536)));
        assert!(fits_open_files_limit(1_000_000, None));
        assert!(fits_open_files_limit(1, Some(10)));
    }

    #[test]
    fn accept_pauses_double_up_to_a_second() {
        fn check(in_a_row: u32, expected: Duration) {
            assert_eq!(accept_pause(in_a_row), expected, "failure {in_a_row}");
        }
        check(1, Duration::from_millis(10));
        check(2, Duration::from_millis(20));
        check(7, Duration::from_millis(640));
        check(8, Duration::from_secs(1));
        check(u32::MAX, Duration::from_secs(1));
    }

    #[test]
    fn failed_accepts_are_logged_at_most_once_a_minute() {
        let error = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let start = Instant::now();
        let mut failures = AcceptFailures::default();

        for second in 0..120 {
            failures.failed(&error, start + Duration::from_secs(second));
        }

        // Logged at 0 s and 60 s; the 59 failures after the last line are counted.
        assert_eq!(failures.last_logged, Some(start + Duration::from_secs(60)));
        assert_eq!(failures.not_logged, 59);
        assert!(is_out_of_descriptors(&error));
    }
}
