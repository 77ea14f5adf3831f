//! The claim planner: what the dispatcher claims next, and when. It only decides; the
//! dispatcher runs the claims and tells it how each one went. It reads the clock only through
//! the `now` its caller passes, so tests drive it step by step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_domain::{EndpointId, Timestamp};
use herald_store::{ClaimRequest, ClaimScope};
use tokio::time::Instant;

use super::WorkerConfig;
use super::backoff::Backoff;
use super::slots::EndpointSlots;

/// A claim over every endpoint that finds nothing pauses the next one for this many times as
/// long as it took: scanning at most a fifth of the time.
pub(super) const EMPTY_SCAN_PAUSE: u32 = 4;

/// What the dispatcher claims next, and when.
///
/// Refills come first (an endpoint at its low water), each endpoint in at most one claim at a
/// time. A claim over every endpoint runs at start, after a publish signals new work, every
/// [`WorkerConfig::poll_interval`], and again while such claims come back full; only one runs
/// at a time, it skips full endpoints and those being refilled, and one that found nothing
/// pauses the next for [`EMPTY_SCAN_PAUSE`] times as long as it took, so publishes arriving by
/// the thousand cannot keep the database busy with scans that find nothing. After a failed
/// claim none starts until a [`Backoff`] has passed.
///
/// With two claims in flight (PostgreSQL), a refill and a scan may be on their way together,
/// and each keeps out of the other's endpoints: the scan leaves out those being refilled, and
/// while it is on its way the endpoints it may claim wait for their refill until it returns
/// (so no endpoint is claimed by two claims at once, and none is claimed further ahead than
/// [`ROUNDS_ASSIGNED`](super::slots::ROUNDS_ASSIGNED) rounds). A refill that a scan left out
/// is followed by another scan when it returns if new work was signalled meanwhile: the
/// refill may have read its endpoint's rows before a publish to it committed.
pub(super) struct ClaimPlan {
    /// Whether to claim over every endpoint.
    look_everywhere: bool,
    /// No claim over every endpoint starts before this (pacing after an empty one).
    look_everywhere_after: Instant,
    /// When the poll next asks for a claim over every endpoint. Kept across iterations, so a
    /// steady stream of refills cannot postpone it: retries coming due elsewhere are found.
    next_poll: Instant,
    /// No claim starts before this (after a failure).
    paused_until: Instant,
    backoff: Backoff,
    /// Claims on their way, each with the count of signals of new work when it started.
    in_flight: HashMap<tokio::task::Id, (Arc<ClaimRequest>, u64)>,
    /// Signals of new work ([`ClaimPlan::new_work`]) so far.
    new_work_signals: u64,
    /// Endpoints a claim over every endpoint left out because a refill of them was on its way
    /// (only with two or more claims in flight).
    skipped_while_refilling: HashSet<EndpointId>,
}

impl ClaimPlan {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            look_everywhere: true,
            look_everywhere_after: now,
            next_poll: now,
            paused_until: now,
            backoff: Backoff::default(),
            in_flight: HashMap::new(),
            new_work_signals: 0,
            skipped_while_refilling: HashSet::new(),
        }
    }

    /// Deliveries the claims on their way may bring: counted against the global bound.
    pub(super) fn reserved(&self) -> usize {
        self.in_flight
            .values()
            .map(|(request, _)| request.limit as usize)
            .sum()
    }

    /// A publish signalled new work: claim over every endpoint as soon as pacing allows.
    pub(super) fn new_work(&mut self) {
        self.look_everywhere = true;
        self.new_work_signals += 1;
    }

    /// The next claim to start, if one should start now with room for `capacity` deliveries.
    pub(super) fn next(
        &mut self,
        slots: &EndpointSlots,
        capacity: usize,
        config: &WorkerConfig,
        now: Instant,
    ) -> Option<ClaimRequest> {
        if capacity == 0 || now < self.paused_until {
            return None;
        }
        if now >= self.next_poll {
            self.look_everywhere = true;
        }
        let refilling = self.refilling();
        let refills = slots.take_refills(&refilling, self.scan_leaves_out());
        let scope = if !refills.is_empty() {
            ClaimScope::Endpoints(refills)
        } else if self.look_everywhere && !self.scanning() && now >= self.look_everywhere_after {
            self.look_everywhere = false;
            self.next_poll = now + config.poll_interval;
            let mut except = slots.full();
            self.skipped_while_refilling
                .extend(refilling.iter().copied());
            except.extend(refilling);
            ClaimScope::AnyExcept(except)
        } else {
            return None;
        };
        // A refill holds back of the global bound only what it asks for.
        let asked = match &scope {
            ClaimScope::Endpoints(endpoints) => endpoints.iter().map(|(_, most)| *most).sum(),
            ClaimScope::AnyExcept(_) => u32::MAX,
        };
        Some(ClaimRequest {
            now: Timestamp::now(),
            limit: u32::try_from(capacity)
                .unwrap_or(u32::MAX)
                .min(config.claim_batch)
                .min(asked),
            lease: config.lease,
            scope,
            per_endpoint_limit: u32::try_from(config.max_in_flight_per_endpoint)
                .unwrap_or(u32::MAX),
        })
    }

    /// Endpoints that claims on their way are refilling.
    fn refilling(&self) -> Vec<EndpointId> {
        self.in_flight
            .values()
            .flat_map(|(request, _)| match &request.scope {
                ClaimScope::Endpoints(endpoints) => endpoints.iter().map(|(id, _)| *id).collect(),
                ClaimScope::AnyExcept(_) => Vec::new(),
            })
            .collect()
    }

    /// Whether a claim over every endpoint is on its way.
    fn scanning(&self) -> bool {
        self.scan_leaves_out().is_some()
    }

    /// The endpoints the claim over every endpoint on its way leaves out, if one is: only
    /// those may be refilled meanwhile.
    fn scan_leaves_out(&self) -> Option<&[EndpointId]> {
        self.in_flight
            .values()
            .find_map(|(request, _)| match &request.scope {
                ClaimScope::AnyExcept(except) => Some(except.as_slice()),
                ClaimScope::Endpoints(_) => None,
            })
    }

    /// The claim `request` is on its way, as task `id`.
    pub(super) fn started(&mut self, id: tokio::task::Id, request: Arc<ClaimRequest>) {
        self.in_flight.insert(id, (request, self.new_work_signals));
    }

    /// Task `id` came back; returns the claim it ran, if it was one of the plan's.
    pub(super) fn finished(&mut self, id: tokio::task::Id) -> Option<Arc<ClaimRequest>> {
        let (request, signals_at_start) = self.in_flight.remove(&id)?;
        if let ClaimScope::Endpoints(endpoints) = &request.scope {
            let mut skipped = false;
            for (endpoint_id, _) in endpoints {
                skipped |= self.skipped_while_refilling.remove(endpoint_id);
            }
            if skipped && self.new_work_signals > signals_at_start {
                self.look_everywhere = true;
            }
        }
        Some(request)
    }

    /// A claim brought back `claimed` deliveries after `took`; it came back at `now`.
    pub(super) fn succeeded(
        &mut self,
        request: &ClaimRequest,
        claimed: usize,
        took: Duration,
        now: Instant,
    ) {
        tracing::debug!(
            claimed,
            refill = matches!(request.scope, ClaimScope::Endpoints(_)),
            took_us = took.as_micros() as u64,
            "claimed deliveries"
        );
        self.backoff.reset();
        if matches!(request.scope, ClaimScope::AnyExcept(_)) {
            if claimed == request.limit as usize {
                // A full claim may have left more behind.
                self.look_everywhere = true;
            } else if claimed == 0 {
                self.look_everywhere_after = now + took * EMPTY_SCAN_PAUSE;
            }
        }
    }

    /// Pauses claiming after a failure; returns for how long.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let retry_in = self.backoff.next_pause();
        self.paused_until = now + retry_in;
        self.look_everywhere = true;
        retry_in
    }

    /// When a claim could start that cannot start now, if nothing else wakes the dispatcher
    /// first: a claim over every endpoint waiting for its pacing, the next poll, or the end of
    /// a pause after a failure.
    /// While a claim over every endpoint is on its way there is none: its return wakes the
    /// dispatcher.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        let look = match (self.scanning(), self.look_everywhere) {
            (true, _) => return None,
            (false, true) => self.look_everywhere_after,
            (false, false) => self.next_poll,
        };
        Some(look.max(self.paused_until))
    }
}

#[cfg(test)]
mod tests;
