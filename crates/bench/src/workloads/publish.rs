//! Publishing many events at once through the admin API, timed per request, with each
//! event's id and the moment the request that published it was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::api::{Api, Org};

/// What publishing many events measured.
#[derive(Debug)]
pub(super) struct Publishing {
    /// When the first request was sent.
    pub(super) started: Instant,
    /// When the last answer arrived.
    pub(super) finished: Instant,
    /// Each request's time to its 202.
    pub(super) request_latencies: Vec<Duration>,
    /// Each event's id and when the request that published it was sent.
    pub(super) sent: HashMap<String, Instant>,
    /// Every request, in the order their answers arrived; kept only when events carry
    /// ordering keys, so the order they were published in can be checked.
    pub(super) requests: Vec<Request>,
}

/// One publish request: which events it carried and when.
#[derive(Debug, Clone)]
pub(super) struct Request {
    /// When it was sent.
    pub(super) sent: Instant,
    /// When its 202 was read.
    pub(super) answered: Instant,
    /// The numbers of the events it carried, in order.
    pub(super) numbers: std::ops::Range<usize>,
    /// Their ids, in the same order.
    pub(super) ids: Vec<String>,
}

/// Publishes events `numbers` through `clients` concurrent clients, `per_request` events a
/// request (1: `POST /admin/v1/events`; more: the batch route), until done or `deadline`.
pub(super) async fn publish(
    api: &Api,
    org: &Org,
    numbers: std::ops::Range<usize>,
    clients: usize,
    per_request: usize,
    deadline: Instant,
) -> anyhow::Result<Publishing> {
    publish_with_keys(api, org, numbers, clients, per_request, None, deadline).await
}

/// [`publish`], in batches (`per_request` above 1), with event `n` carrying the ordering key
/// [`crate::api::ordering_key`]`(n, keys)` when `keys` is given; then every request is kept.
pub(super) async fn publish_with_keys(
    api: &Api,
    org: &Org,
    numbers: std::ops::Range<usize>,
    clients: usize,
    per_request: usize,
    keys: Option<usize>,
    deadline: Instant,
) -> anyhow::Result<Publishing> {
    if keys.is_some() && per_request == 1 {
        bail!("ordering keys are published in batches only");
    }
    let requests = numbers.len().div_ceil(per_request);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let sent = Arc::new(Mutex::new(HashMap::with_capacity(numbers.len())));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.min(requests) {
        let (api, org, numbers) = (api.clone(), org.clone(), numbers.clone());
        let (next, latencies, sent, kept) = (
            Arc::clone(&next),
            Arc::clone(&latencies),
            Arc::clone(&sent),
            Arc::clone(&kept),
        );
        tasks.spawn(async move {
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                let first = numbers.start + request * per_request;
                if first >= numbers.end {
                    return anyhow::Ok(());
                }
                let last = (first + per_request).min(numbers.end);
                let at = Instant::now();
                let ids = if per_request == 1 {
                    vec![api.publish(&org, first).await?]
                } else {
                    api.publish_batch(&org, first..last, keys).await?
                };
                let answered = Instant::now();
                latencies
                    .lock()
                    .expect("the latency lock is never poisoned")
                    .push(answered - at);
                if keys.is_some() {
                    kept.lock()
                        .expect("the request lock is never poisoned")
                        .push(Request {
                            sent: at,
                            answered,
                            numbers: first..last,
                            ids: ids.clone(),
                        });
                }
                let mut sent = sent.lock().expect("the sent lock is never poisoned");
                sent.extend(ids.into_iter().map(|id| (id, at)));
            }
        });
    }
    let joined = tokio::time::timeout_at(deadline.into(), async {
        while let Some(task) = tasks.join_next().await {
            task.context("a publishing client panicked")??;
        }
        anyhow::Ok(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => bail!("publishing {} events did not finish in time", numbers.len()),
    }
    let finished = Instant::now();
    Ok(Publishing {
        started,
        finished,
        request_latencies: take(&latencies),
        sent: take(&sent),
        requests: take(&kept),
    })
}

/// What a shared collection holds, once its writers are done.
fn take<T: Default>(shared: &Mutex<T>) -> T {
    std::mem::take(
        &mut *shared
            .lock()
            .expect("the lock is never poisoned: no holder panics"),
    )
}
