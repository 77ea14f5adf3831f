//! The background runtime: the delivery worker, the recovery task, probing and the retention
//! purge run on threads of their own, apart from the API's, at a lower OS priority when
//! `HERALD_DELIVERY_NICENESS` asks for one (by default they keep the API's).
//!
//! Why: on one runtime, an API request's task queued behind the delivery tasks of a busy
//! worker (a recovery, a backlog), which the operating system cannot see, let alone reorder;
//! on a two-core machine the API's p99 during a recovery was 2.3–4.6 times its idle p99
//! (BENCHMARKS.md, the `recover` workload). On their own threads the scheduler shares the cores
//! between the two, and with the background threads set `HERALD_DELIVERY_NICENESS` steps nicer
//! (lower priority) an API thread that wakes for a request preempts a busy delivery thread. An
//! idle API takes nothing from delivery: niceness only matters while both want a core.
//!
//! What stays on the API's runtime: the HTTP server, the publisher, and the database pools'
//! own tasks (they are made at startup, before this runtime exists).

use std::future::Future;

use anyhow::Context as _;
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// The background threads' name, as `ps -L` and `/proc/<pid>/task/*/comm` show it.
pub const THREAD_NAME: &str = "herald-delivery";

/// The default of `HERALD_DELIVERY_NICENESS`: none. A delivery thread at 10 weighs 110 against
/// the API's 1024 under Linux's scheduler, so it yields a core to an API request — but it also
/// yields to every other nice-0 process on the host, and it holds database locks the API waits
/// for (a keyed delivery's sequence row while its next one is released): on a busy shared host
/// the 3-node cluster test saw publishes wait past the statement timeout behind starved delivery
/// threads. Lowering is an operator's choice for a host Herald has to itself.
pub const DEFAULT_NICENESS: i32 = 0;

/// The largest `HERALD_DELIVERY_NICENESS` (Linux's lowest priority).
pub const MAX_NICENESS: i32 = 19;

/// The runtime the background work runs on. Shut down without waiting when dropped, so it may
/// be dropped in async code (tokio refuses to block there): [`herald_server::run`](crate::run)
/// waits for each of its tasks first.
pub struct Background {
    runtime: Option<Runtime>,
}

impl Background {
    /// Starts `threads` worker threads (and blocking threads as needed), each made `niceness`
    /// steps nicer than the thread that starts it.
    pub fn start(threads: usize, niceness: i32) -> anyhow::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(THREAD_NAME)
            .on_thread_start(move || lower_priority(niceness))
            .enable_all()
            .build()
            .context("starting the delivery runtime")?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `task` on the background threads.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the runtime lives until dropped")
            .spawn(task)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The number of worker threads: one per core, as the API's runtime has.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// Makes the calling thread `niceness` steps nicer, at most [`MAX_NICENESS`]. On Linux the
/// priority `setpriority(PRIO_PROCESS, tid)` sets is the thread's own, and threads it starts
/// inherit it. Failure costs the priority, not the thread: it is logged.
fn lower_priority(niceness: i32) {
    if niceness == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    let outcome = rustix::process::getpriority_process(Some(thread)).and_then(|current| {
        rustix::process::setpriority_process(
            Some(thread),
            current.saturating_add(niceness).min(MAX_NICENESS),
        )
    });
    if let Err(error) = outcome {
        tracing::warn!(
            %error,
            niceness,
            "could not lower a delivery thread's priority (HERALD_DELIVERY_NICENESS)"
        );
    }
}
