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
pub(super) struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Probe>>,
}

impl Prober {
    /// Starts sending, each request on its tick however long the one before takes.
    pub(super) fn start(api: Api, org: Org, endpoint: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
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
        });
        Self { stop, task }
    }

    /// Stops sending and waits for the requests in flight; every request sent.
    pub(super) async fn stop(self) -> anyhow::Result<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the API prober panicked")
    }
}

/// How long each probe sent from `from` to `to` took, the failed ones left out.
pub(super) fn took_between(probes: &[Probe], from: Instant, to: Instant) -> Vec<Duration> {
    probes
        .iter()
        .filter(|probe| probe.error.is_none() && probe.sent >= from && probe.sent <= to)
        .map(|probe| probe.took)
        .collect()
}
