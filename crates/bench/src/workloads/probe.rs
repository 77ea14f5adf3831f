//! Ordinary API requests (the endpoint list and one endpoint, alternately) at a steady 200 a
//! second, open loop, in the background: what an organization's dashboard does while Herald is
//! busy. `recover` and `backlog` time them idle and under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api::{Api, Org};

/// Ordinary API requests a second: enough that a recovery of 20,000 (3 s on SQLite) times
/// several hundred, so a p99 is not one or two stray samples.
pub(super) const PROBES_PER_SECOND: u64 = 200;

/// One ordinary API request: when it was sent, how long it took, and its error if it failed.
#[derive(Debug)]
pub(super) struct Probe {
    pub(super) sent: Instant,
    pub(super) took: Duration,
    pub(super) error: Option<String>,
}

/// Ordinary API requests at a steady pace, in the background, until stopped.
///
/// They are sent and timed on a thread and runtime of their own, with connections of their
/// own: on the harness's runtime they would queue behind its receivers' tasks (thousands of
/// deliveries a second in `recover` and `backlog`), and the figure would time the harness's
/// scheduling instead of Herald's answer, as an outside client's would not.
pub(super) struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Probe>>,
}

impl Prober {
    /// Starts sending, each request on its tick however long the one before takes.
    pub(super) fn start(api: &Api, org: Org, endpoint: String) -> anyhow::Result<Self> {
        let api = api.with_own_connections()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the API prober's runtime")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("api-prober".to_owned())
            .spawn(move || runtime.block_on(probe_until(stopped, api, org, endpoint)))
            .context("starting the API prober's thread")?;
        Ok(Self { stop, thread })
    }

    /// Stops sending and waits for the requests in flight; every request sent.
    pub(super) async fn stop(self) -> anyhow::Result<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("waiting for the API prober")?
            .map_err(|_| anyhow::anyhow!("the API prober panicked"))
    }
}

/// Sends the requests until `stopped`, then waits for those in flight.
async fn probe_until(stopped: Arc<AtomicBool>, api: Api, org: Org, endpoint: String) -> Vec<Probe> {
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / PROBES_PER_SECOND));
    let mut requests = tokio::task::JoinSet::new();
    let mut n = 0_usize;
    while !stopped.load(Ordering::Relaxed) {
        ticks.tick().await;
        let (api, org, endpoint) = (api.clone(), org.clone(), endpoint.clone());
        let list = n.is_multiple_of(2);
        n += 1;
        requests.spawn(async move {
            let sent = Instant::now();
            let answer = if list {
                api.list_endpoints(&org).await
            } else {
                api.get_endpoint(&org, &endpoint).await
            };
            Probe {
                sent,
                took: sent.elapsed(),
                error: answer.err().map(|error| format!("{error:#}")),
            }
        });
    }
    let mut probes = Vec::with_capacity(n);
    while let Some(probe) = requests.join_next().await {
        if let Ok(probe) = probe {
            probes.push(probe);
        }
    }
    probes
}

/// How long each probe sent from `from` to `to` took, the failed ones left out.
pub(super) fn took_between(probes: &[Probe], from: Instant, to: Instant) -> Vec<Duration> {
    probes
        .iter()
        .filter(|probe| probe.error.is_none() && probe.sent >= from && probe.sent <= to)
        .map(|probe| probe.took)
        .collect()
}
