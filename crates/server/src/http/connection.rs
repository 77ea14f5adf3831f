//! One API connection: hyper serves HTTP/1 on it while a watchdog beside it enforces Herald's
//! timeouts (the rule is in [`super::watchdog`]) and closes it when the accept loop needs its
//! slot: the connection's socket reports bytes arriving, its service requests starting and
//! ending, and the watchdog acts on what [`next_step`] says.
//!
//! hyper's own `header_read_timeout` is not used: its clock starts whenever the connection
//! begins waiting for a request head, which on a kept-alive connection is the moment the last
//! response was written, so it would cut every idle connection off after the header timeout.
//!
//! When the accept loop is at its cap with a client waiting, it asks the connection that has
//! been quiet longest (reading a head or idle, never busy) to close. On shutdown every
//! connection is closed gracefully, so a request in flight finishes first.

use std::collections::HashMap;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use bytes::Bytes;
use hyper::Request;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::HttpConfig;
use super::watchdog::{Phase, State, Step, next_step};

/// The live connections, so that the accept loop can pick one to close.
#[derive(Debug, Default)]
pub(super) struct Connections {
    // A std mutex: it is held for a map operation or one scan, never across an await.
    live: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

impl Connections {
    /// Adds a connection accepted at `now`; it is removed when the registration is dropped.
    pub(super) fn register(self: &Arc<Self>, now: Instant) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(now));
        lock(&self.live).insert(id, Arc::clone(&activity));
        Registration {
            id,
            activity,
            connections: Arc::clone(self),
        }
    }

    /// Asks the connection that has been quiet longest (no request in flight, not already
    /// closing) to close. Does nothing when every connection is busy. A scan of every
    /// connection, which only happens at the cap: a few microseconds for a thousand.
    pub(super) fn close_quietest(&self) {
        let live = lock(&self.live);
        let quietest = live
            .values()
            .filter_map(|activity| Some((activity.state().quiet_since()?, activity)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, activity)) = quietest {
            activity.request_close();
        }
    }
}

/// A connection's place in [`Connections`], held by its task.
#[derive(Debug)]
pub(super) struct Registration {
    id: u64,
    activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.connections.live).remove(&self.id);
    }
}

/// Serves one connection until it ends. `_slot` is its place under the connection cap,
/// given back when this returns.
pub(super) async fn serve(
    stream: TcpStream,
    router: Router,
    config: Arc<HttpConfig>,
    registration: Registration,
    _slot: OwnedSemaphorePermit,
    stopping: CancellationToken,
) {
    let activity = Arc::clone(&registration.activity);
    let io = TokioIo::new(WatchedStream {
        stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |request: Request<Incoming>| {
            let body_pending = !request.body().is_end_stream();
            let in_flight = InFlight::start(Arc::clone(&activity), body_pending);
            let request = request.map(|body| {
                axum::body::Body::new(WatchedBody {
                    body,
                    activity: Arc::clone(&activity),
                    ended: !body_pending,
                })
            });
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    // Herald's own header timeout applies instead (see the module's documentation).
    builder
        .header_read_timeout(None)
        .max_header_size(super::MAX_REQUEST_HEAD_BYTES);
    let mut connection = pin!(builder.serve_connection(io, service));
    // When this connection was asked to close gracefully, if it was.
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let deadline = match next_step(activity.state(), closing, now, &config) {
            Step::Wait(deadline) => deadline,
            Step::Close => {
                connection.as_mut().graceful_shutdown();
                activity.request_close();
                closing = Some(now);
                continue;
            }
            Step::Drop => {
                tracing::debug!("dropping a connection that ran out of time or was asked to close");
                return;
            }
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = activity.changed.notified() => {}
            () = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {}
        }
    }
}

/// A connection's phase, shared by its socket (bytes arriving), its service (requests
/// starting and ending), the accept loop (asking it to close) and its watchdog.
#[derive(Debug)]
struct Activity {
    // A std mutex: held for a few instructions, never across an await.
    state: Mutex<State>,
    /// Woken when the phase changes or a close is requested; the watchdog then re-plans.
    changed: Notify,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                phase: Phase::ReadingHead { since: accepted },
                close_requested: false,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> State {
        *lock(&self.state)
    }

    /// Bytes arrived: on an idle connection, a request head has begun; while a body is
    /// awaited, it is progressing. Other bytes that arrive while a request is in flight are
    /// the next request, pipelined.
    fn bytes_arrived(&self) {
        let mut state = lock(&self.state);
        match state.phase {
            Phase::Idle { .. } => {
                state.phase = Phase::ReadingHead {
                    since: Instant::now(),
                };
                drop(state);
                self.changed.notify_one();
            }
            Phase::ReadingBody { .. } => {
                state.phase = Phase::ReadingBody {
                    since: Instant::now(),
                };
                drop(state);
                self.changed.notify_one();
            }
            Phase::ReadingHead { .. } | Phase::Busy { .. } => {}
        }
    }

    /// A request's head is complete and its handler called; `body_pending` when a body is
    /// still to arrive.
    fn request_started(&self, body_pending: bool) {
        let mut state = lock(&self.state);
        state.phase = match state.phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::ReadingBody { .. } => Phase::Busy { requests: 2 },
            Phase::ReadingHead { .. } | Phase::Idle { .. } if body_pending => Phase::ReadingBody {
                since: Instant::now(),
            },
            Phase::ReadingHead { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
        drop(state);
        self.changed.notify_one();
    }

    /// The request's body has ended (or failed): the request is now simply busy.
    fn body_ended(&self) {
        let mut state = lock(&self.state);
        if let Phase::ReadingBody { .. } = state.phase {
            state.phase = Phase::Busy { requests: 1 };
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_finished(&self) {
        let mut state = lock(&self.state);
        state.phase = match state.phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        };
        drop(state);
        self.changed.notify_one();
    }

    fn request_close(&self) {
        let mut state = lock(&self.state);
        if !state.close_requested {
            state.close_requested = true;
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// Marks a request in flight from the call of the service until its response is produced
/// (or the request is abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>, body_pending: bool) -> Self {
        activity.request_started(body_pending);
        Self(activity)
    }
}

/// A request's body, telling its connection's [`Activity`] when it has ended: until then a
/// stalled body is timed and its connection counts as quiet.
struct WatchedBody {
    body: Incoming,
    activity: Arc<Activity>,
    ended: bool,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let ended = match &frame {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended && !this.ended {
            this.ended = true;
            this.activity.body_ended();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a single assignment or lookup).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_quietest_connection_is_asked_to_close_and_a_busy_one_never() {
        // Arrange: an old busy connection, an old idle one and a new one reading its head.
        let connections = Arc::new(Connections::default());
        let t0 = Instant::now();
        let busy = connections.register(t0);
        busy.activity.request_started(false);
        let idle = connections.register(t0 + Duration::from_secs(1));
        idle.activity.request_started(false);
        idle.activity.request_finished();
        let reading = connections.register(t0 + Duration::from_secs(2));

        // Act
        connections.close_quietest();
        let first = [&busy, &idle, &reading].map(|c| c.activity.state().close_requested);
        connections.close_quietest();
        let second = [&busy, &idle, &reading].map(|c| c.activity.state().close_requested);
        connections.close_quietest();
        let third = [&busy, &idle, &reading].map(|c| c.activity.state().close_requested);

        // Assert
        assert_eq!(first, [false, true, false]);
        assert_eq!(second, [false, true, true]);
        assert_eq!(third, second, "a busy connection is never picked");
        drop(reading);
        assert_eq!(lock(&connections.live).len(), 2);
    }
}
