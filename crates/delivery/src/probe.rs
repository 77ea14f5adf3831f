//! Probing (docs/api.md#probing): an endpoint Herald disabled for its failures gets a signed
//! `webhook.test` every probe interval, for a while after it was disabled. The first 2xx sets
//! it active again and catches it up: the store publishes `endpoint.enabled`, audits, and
//! starts a recovery of everything it missed since its failures began.
//!
//! Probes run beside the worker, a bounded number at a time, each under the client's own
//! deadline: a probe to a hanging receiver delays no delivery, nor the other probes beyond
//! its slot.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_domain::{EndpointId, Outcome, Timestamp};
use herald_store::{ProbeTarget, Store};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::DeliveryClient;
use crate::test_send::{send_test, test_event};

/// How the probe task runs.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Time between two probes of one endpoint (`HERALD_PROBE_INTERVAL`, default 1 hour).
    pub interval: Duration,
    /// How long after it was disabled an endpoint is still probed (`HERALD_PROBE_FOR`,
    /// default 7 days).
    pub probe_for: Duration,
}

impl ProbeConfig {
    /// The default interval between probes of one endpoint.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
    /// The default time an endpoint is probed after it was disabled.
    pub const DEFAULT_PROBE_FOR: Duration = Duration::from_secs(7 * 86_400);
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            probe_for: Self::DEFAULT_PROBE_FOR,
        }
    }
}

/// Probes in flight at once.
const CONCURRENT_PROBES: usize = 16;

/// The longest the task waits between two looks for endpoints due (shorter when the interval
/// is): another node may have disabled one meanwhile.
const MAX_POLL: Duration = Duration::from_secs(30);

/// Runs until `shutdown`: probes the endpoints due, and wakes `recoveries` after a probe
/// re-enabled one (its recovery is queued).
pub async fn run(
    store: Arc<dyn Store>,
    client: DeliveryClient,
    config: ProbeConfig,
    recoveries: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let poll = (config.interval / 4).clamp(Duration::from_millis(10), MAX_POLL);
    let mut probes: JoinSet<EndpointId> = JoinSet::new();
    // At most one probe per endpoint in flight: one whose receiver hangs longer than the
    // interval is not taken again until its probe ends.
    let mut in_flight: HashSet<EndpointId> = HashSet::new();
    loop {
        while let Some(done) = probes.try_join_next() {
            if let Ok(endpoint_id) = done {
                in_flight.remove(&endpoint_id);
            }
        }
        // Only as many as there are free slots are taken (and stamped probed): the rest stay
        // due for the next look.
        let free = CONCURRENT_PROBES.saturating_sub(probes.len());
        if free > 0 {
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match store
                .take_due_probes(Timestamp::now(), config.interval, config.probe_for, limit)
                .await
            {
                Ok(targets) => {
                    for target in targets {
                        if !in_flight.insert(target.endpoint.id) {
                            continue;
                        }
                        let (store, client) = (Arc::clone(&store), client.clone());
                        let recoveries = Arc::clone(&recoveries);
                        probes.spawn(async move {
                            probe(store.as_ref(), &client, &target, &recoveries).await;
                            target.endpoint.id
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "looking for endpoints to probe failed");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => break,
        }
    }
    // In-flight probes end within the client's deadline; their outcome is recorded.
    while probes.join_next().await.is_some() {}
}

/// Sends one probe, records it in the feed, and on a 2xx has the store re-enable the endpoint.
async fn probe(
    store: &dyn Store,
    client: &DeliveryClient,
    target: &ProbeTarget,
    recoveries: &Notify,
) {
    let endpoint = &target.endpoint;
    let event = test_event(endpoint);
    let attempt = send_test(
        client,
        &event,
        endpoint,
        &target.signing,
        &target.credentials,
    )
    .await;
    if let Err(error) = store.record_test_attempt(&event, &attempt).await {
        tracing::warn!(endpoint_id = %endpoint.id, error = %error, "recording a probe failed");
    }
    if attempt.outcome != Outcome::Success {
        tracing::debug!(endpoint_id = %endpoint.id, "probe failed; the endpoint stays disabled");
        return;
    }
    match store
        .enable_after_probe(endpoint.id, attempt.occurred_at)
        .await
    {
        Ok(Some(recovery)) => {
            tracing::info!(
                endpoint_id = %endpoint.id,
                recovery_id = %recovery.id,
                matched = recovery.matched,
                "a probe succeeded: endpoint enabled, recovery started"
            );
            recoveries.notify_one();
        }
        Ok(None) => {}
        Err(error) => {
            // The next probe tries again.
            tracing::warn!(endpoint_id = %endpoint.id, error = %error, "re-enabling a probed endpoint failed");
        }
    }
}
