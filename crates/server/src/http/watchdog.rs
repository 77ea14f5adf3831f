//! The watchdog's rule for one connection, as data and a pure function: the caller brings the
//! connection's state and the clock, and gets back what to do. Three phases:
//!
//! - **reading a head**, from accept, or from the first byte of the next request on a reused
//!   connection: the head must be complete within the header-read timeout, or the connection
//!   is dropped (nothing was received that could be answered);
//! - **reading a body**, from a complete head while the request's body is still arriving: each
//!   stretch without a byte of it must be shorter than the header-read timeout, or the
//!   connection is dropped, and such a connection is quiet, one to make room at the cap (a
//!   client that announces a body and never sends it must not hold a slot: a few hundred of
//!   them locked every other client out);
//! - **busy**, from the end of the body (at once, for a request without one) until the
//!   handler has produced its response: no timeout, so requests in flight always finish;
//! - **idle**, from then until the next byte: after the idle timeout the connection is closed
//!   gracefully (hyper finishes writing the last response, then closes), and dropped if that
//!   takes longer than the header-read timeout (a client that does not read its response).
//!
//! A connection asked to make room is treated as if its time were up: a head is dropped, an
//! idle connection closed gracefully, a busy one closed after its response.

use tokio::time::Instant;

use super::HttpConfig;

/// What a connection is doing, as its watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Receiving a request head that began at `since` (for a new connection, its accept).
    ReadingHead { since: Instant },
    /// A request is being handled while its body arrives; the last of it came at `since`.
    ReadingBody { since: Instant },
    /// `requests` requests are being handled (with HTTP/1, one).
    Busy { requests: usize },
    /// Waiting for the first byte of the next request since `since`.
    Idle { since: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub(super) phase: Phase,
    /// The accept loop (or the watchdog itself) asked the connection to close.
    pub(super) close_requested: bool,
}

impl State {
    /// Since when the connection has had no request in flight, unless it is busy or closing:
    /// the order in which connections are picked to make room.
    pub(super) fn quiet_since(self) -> Option<Instant> {
        match self.phase {
            _ if self.close_requested => None,
            Phase::ReadingHead { since } | Phase::ReadingBody { since } | Phase::Idle { since } => {
                Some(since)
            }
            Phase::Busy { .. } => None,
        }
    }
}

/// What the watchdog does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing until woken, or until the instant, when there is one.
    Wait(Option<Instant>),
    /// Close gracefully: hyper closes at once when no response is being written.
    Close,
    /// Close the socket now.
    Drop,
}

/// The watchdog's rule: given the connection's state, when it was asked to close gracefully
/// (`closing`), and the time, what to do.
pub(super) fn next_step(
    state: State,
    closing: Option<Instant>,
    now: Instant,
    config: &HttpConfig,
) -> Step {
    match state.phase {
        Phase::Busy { .. } => {
            if state.close_requested && closing.is_none() {
                Step::Close
            } else {
                Step::Wait(None)
            }
        }
        Phase::ReadingHead { since } | Phase::ReadingBody { since } => {
            let deadline = since + config.header_read_timeout;
            if state.close_requested || now >= deadline {
                Step::Drop
            } else {
                Step::Wait(Some(deadline))
            }
        }
        Phase::Idle { since } => match closing {
            // Counted from the later of the two: a request in flight when the close was asked
            // has only now produced its response, which hyper is still to write.
            Some(asked) => {
                let deadline = asked.max(since) + config.header_read_timeout;
                if now >= deadline {
                    Step::Drop
                } else {
                    Step::Wait(Some(deadline))
                }
            }
            None => {
                let deadline = since + config.idle_timeout;
                if state.close_requested || now >= deadline {
                    Step::Close
                } else {
                    Step::Wait(Some(deadline))
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    fn config() -> HttpConfig {
        HttpConfig {
            header_read_timeout: HEADER,
            idle_timeout: IDLE,
            max_connections: 8,
        }
    }

    fn state(phase: Phase, close_requested: bool) -> State {
        State {
            phase,
            close_requested,
        }
    }

    #[test]
    fn the_watchdog_times_heads_and_idleness_but_never_a_request_in_flight() {
        let t0 = Instant::now();
        let seconds = |n: u64| t0 + Duration::from_secs(n);
        fn check(state: State, closing: Option<Instant>, now: Instant, expected: Step) {
            assert_eq!(
                next_step(state, closing, now, &config()),
                expected,
                "{state:?}, closing {closing:?}"
            );
        }
        let head = Phase::ReadingHead { since: t0 };
        let idle = Phase::Idle { since: t0 };
        let busy = Phase::Busy { requests: 1 };

        // A head has the header timeout; then the connection is dropped.
        check(
            state(head, false),
            None,
            seconds(9),
            Step::Wait(Some(seconds(10))),
        );
        check(state(head, false), None, seconds(10), Step::Drop);
        // An idle connection has the idle timeout; then it is closed gracefully, and dropped
        // if closing takes longer than the header timeout.
        check(
            state(idle, false),
            None,
            seconds(74),
            Step::Wait(Some(seconds(75))),
        );
        check(state(idle, false), None, seconds(75), Step::Close);
        check(
            state(idle, true),
            Some(seconds(75)),
            seconds(80),
            Step::Wait(Some(seconds(85))),
        );
        check(
            state(idle, true),
            Some(seconds(75)),
            seconds(85),
            Step::Drop,
        );
        // A body that stops arriving has the header timeout from its last byte.
        let body = Phase::ReadingBody { since: seconds(3) };
        check(
            state(body, false),
            None,
            seconds(12),
            Step::Wait(Some(seconds(13))),
        );
        check(state(body, false), None, seconds(13), Step::Drop);
        check(state(body, true), None, seconds(4), Step::Drop);
        assert_eq!(state(body, false).quiet_since(), Some(seconds(3)));
        // A request in flight is never timed, nor cut off when asked to close; its response,
        // produced long after, still gets the header timeout to be written.
        check(state(busy, false), None, seconds(1_000), Step::Wait(None));
        check(state(busy, true), None, seconds(1), Step::Close);
        check(
            state(busy, true),
            Some(seconds(1)),
            seconds(1_000),
            Step::Wait(None),
        );
        let answered = Phase::Idle {
            since: seconds(1_000),
        };
        check(
            state(answered, true),
            Some(seconds(1)),
            seconds(1_001),
            Step::Wait(Some(seconds(1_010))),
        );
        // Asked to make room: a head is dropped, an idle connection closed, at once.
        check(state(head, true), None, seconds(1), Step::Drop);
        check(state(idle, true), None, seconds(1), Step::Close);
    }
}
