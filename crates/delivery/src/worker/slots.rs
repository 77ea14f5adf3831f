//! Endpoint slots: how many attempts each endpoint may have sending at once, how many of its
//! deliveries are assigned (sending, or claimed ahead and waiting), and which endpoints have
//! dropped low enough to be refilled. Shared by the dispatcher, which reads it to decide what
//! to claim, and the jobs, which take and free slots. It never claims or sends anything itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herald_domain::EndpointId;
use tokio::sync::Semaphore;

/// An endpoint whose last attempt succeeded is refilled when its assignments drop to this many
/// times its slots: at least its slots' worth waits while a refill is on its way.
const ANSWERING_LOW_WATER: usize = 2;

/// An endpoint whose last attempt succeeded is refilled by this many times its slots: one claim
/// per that many deliveries.
const ANSWERING_REFILL: usize = 2;

/// An endpoint that fails, or has not been heard from yet, is refilled when its assignments drop
/// to its slots divided by this.
const FAILING_LOW_WATER_DIVISOR: usize = 2;

/// An endpoint that fails, or has not been heard from yet, is refilled by this many times its
/// slots.
const FAILING_REFILL: usize = 1;

/// The most rounds of attempts an endpoint has assigned: an answering endpoint holds up to its
/// low water plus one refill. Everything assigned is sent within this many rounds of the
/// longest attempt, so the lease must outlast them
/// ([`WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS`](super::WorkerConfig::LEASE_IN_REQUEST_TIMEOUTS)).
pub(super) const ROUNDS_ASSIGNED: usize = ANSWERING_LOW_WATER + ANSWERING_REFILL;

/// Slots per endpoint, shared by the dispatcher and the tasks.
///
/// An endpoint may have `limit` attempts sending at once; more are claimed ahead and wait for
/// a slot, so when a burst of answers frees the slots the next attempts start at once instead
/// of after a claim's round trip. An endpoint whose last attempt succeeded is refilled
/// [`ANSWERING_REFILL`] × limit at a time whenever its assignments (sending or waiting) drop
/// to [`ANSWERING_LOW_WATER`] × limit, which keeps between those and [`ROUNDS_ASSIGNED`] ×
/// limit assigned while its backlog lasts. An endpoint whose last attempt failed gains nothing
/// from waiting work (it answers slowly or not at all), so it is refilled [`FAILING_REFILL`] ×
/// limit at a time at limit / [`FAILING_LOW_WATER_DIVISOR`], leaving the global bound on work
/// in flight to the endpoints that answer. So is an endpoint not heard from yet: a receiver
/// that hangs would otherwise be claimed several times its slots ahead before its first
/// timeout, and ten of them held half the global bound (the `noisy` benchmark); a receiver
/// that answers is refilled at the larger size from its first success on.
pub(super) struct EndpointSlots {
    /// Attempts sending at once to one endpoint.
    limit: usize,
    slots: Mutex<HashMap<EndpointId, EndpointSlot>>,
    /// Endpoints that dropped to their low water since the dispatcher last looked: their
    /// backlog is claimed next, by endpoint, without scanning everyone's due deliveries.
    refills: Mutex<Vec<EndpointId>>,
}

struct EndpointSlot {
    semaphore: Arc<Semaphore>,
    /// Tasks assigned to the endpoint, sending or waiting.
    assigned: usize,
    /// Whether its last finished attempt succeeded (false until one has finished).
    answering: bool,
}

impl EndpointSlots {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            slots: Mutex::default(),
            refills: Mutex::default(),
        }
    }

    /// At or below this many assigned, the endpoint is refilled.
    fn low_water(&self, slot: &EndpointSlot) -> usize {
        if slot.answering {
            self.limit.saturating_mul(ANSWERING_LOW_WATER)
        } else {
            self.limit / FAILING_LOW_WATER_DIVISOR
        }
    }

    /// Most of the endpoint's deliveries one refill takes.
    fn refill_batch(&self, slot: Option<&EndpointSlot>) -> usize {
        match slot {
            Some(slot) if slot.answering => self.limit.saturating_mul(ANSWERING_REFILL),
            _ => self.limit.saturating_mul(FAILING_REFILL),
        }
    }

    /// Assigns one more delivery to the endpoint; returns the semaphore of its slots.
    pub(super) fn assign(&self, endpoint_id: EndpointId) -> Arc<Semaphore> {
        let mut slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        let slot = slots.entry(endpoint_id).or_insert_with(|| EndpointSlot {
            semaphore: Arc::new(Semaphore::new(self.limit)),
            assigned: 0,
            answering: false,
        });
        slot.assigned += 1;
        Arc::clone(&slot.semaphore)
    }

    /// Frees one of the endpoint's assignments after an attempt that `delivered` or not;
    /// `true` when that takes it down to its low water, or when it starts answering at or
    /// below its (now higher) low water, so the dispatcher, which skipped it, has its backlog
    /// to claim again.
    pub(super) fn release(&self, endpoint_id: EndpointId, delivered: bool) -> bool {
        let mut slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        let Some(slot) = slots.get_mut(&endpoint_id) else {
            return false;
        };
        // Starting to answer raises the low water, and a backlog the claims left behind
        // should be claimed at the new pace; but not by the endpoint's last assigned delivery
        // while its low water is above zero: the claim that brought it found no more (one
        // that came back full asked for more at once), and work published since wakes a claim
        // of its own. A lone event's success asked for a refill that found nothing, one claim
        // in three at a light load (BENCHMARKS.md, `churned`). An endpoint with one slot has a
        // low water of zero, so the end of its only delivery is when it asks for more.
        let started_answering =
            delivered && !slot.answering && (slot.assigned > 1 || self.low_water(slot) == 0);
        slot.answering = delivered;
        let low_water = self.low_water(slot);
        let reached_low_water =
            slot.assigned - 1 <= low_water && (slot.assigned > low_water || started_answering);
        slot.assigned -= 1;
        if slot.assigned == 0 {
            slots.remove(&endpoint_id);
        }
        drop(slots);
        if reached_low_water {
            self.refills
                .lock()
                .expect("endpoint refills lock is never poisoned")
                .push(endpoint_id);
        }
        reached_low_water
    }

    /// Whether some of the endpoint's assigned deliveries wait for a slot: more are assigned
    /// than it has slots.
    pub(super) fn has_waiting(&self, endpoint_id: EndpointId) -> bool {
        self.slots
            .lock()
            .expect("endpoint slots lock is never poisoned")
            .get(&endpoint_id)
            .is_some_and(|slot| slot.assigned > self.limit)
    }

    /// Asks for a refill of an endpoint whose claim came back full (its backlog may go on)
    /// and that still has room for more.
    pub(super) fn refill_if_room(&self, endpoint_id: EndpointId) {
        let has_room = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned")
            .get(&endpoint_id)
            .is_some_and(|slot| slot.assigned <= self.low_water(slot));
        if has_room {
            self.refills
                .lock()
                .expect("endpoint refills lock is never poisoned")
                .push(endpoint_id);
        }
    }

    /// The endpoints to refill, each once and with how many to take, leaving those that
    /// filled up again meanwhile and those a claim is refilling already (when it comes back
    /// it asks again for any it may have left more of). When a claim over every endpoint is on
    /// its way, only the endpoints it leaves out (`scan_leaves_out`) are taken; the others
    /// wait for their refill until it returns, since it may be claiming for them.
    pub(super) fn take_refills(
        &self,
        refilling: &[EndpointId],
        scan_leaves_out: Option<&[EndpointId]>,
    ) -> Vec<(EndpointId, u32)> {
        let mut queue = self
            .refills
            .lock()
            .expect("endpoint refills lock is never poisoned");
        let mut refills = std::mem::take(&mut *queue);
        refills.sort_unstable();
        refills.dedup();
        if let Some(left_out) = scan_leaves_out {
            let (now, later): (Vec<_>, Vec<_>) =
                refills.into_iter().partition(|id| left_out.contains(id));
            *queue = later;
            refills = now;
        }
        drop(queue);
        let slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        refills
            .into_iter()
            .filter(|id| !refilling.contains(id))
            .filter_map(|id| {
                let slot = slots.get(&id);
                let has_room = slot.is_none_or(|slot| slot.assigned <= self.low_water(slot));
                has_room.then(|| {
                    let batch = u32::try_from(self.refill_batch(slot)).unwrap_or(u32::MAX);
                    (id, batch)
                })
            })
            .collect()
    }

    /// Endpoints above their low water: a claim over everyone skips them.
    pub(super) fn full(&self) -> Vec<EndpointId> {
        let slots = self
            .slots
            .lock()
            .expect("endpoint slots lock is never poisoned");
        slots
            .iter()
            .filter(|(_, slot)| slot.assigned > self.low_water(slot))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_not_heard_from_is_claimed_ahead_like_a_failing_one_until_it_answers() {
        let slots = EndpointSlots::new(16);
        let endpoint = EndpointId::new();
        for _ in 0..16 {
            slots.assign(endpoint);
        }
        assert_eq!(
            slots.full(),
            vec![endpoint],
            "16 assigned is above the low water (8) of an endpoint not heard from"
        );
        assert!(
            !slots.release(endpoint, false),
            "a failure at 15 assigned stays above 8"
        );
        assert!(
            slots.release(endpoint, true),
            "its first success raises the low water to 32, which 14 assigned is under"
        );
        assert_eq!(slots.take_refills(&[], None), vec![(endpoint, 32)]);
        assert!(
            !slots.release(endpoint, true),
            "an answering endpoint below its low water is not asked for again on each answer"
        );
    }

    #[test]
    fn the_success_of_an_endpoints_last_assigned_delivery_asks_for_no_refill() {
        let slots = EndpointSlots::new(16);
        let endpoint = EndpointId::new();
        slots.assign(endpoint);
        assert!(
            !slots.release(endpoint, true),
            "the claim that brought it found no more"
        );
        assert!(slots.take_refills(&[], None).is_empty());

        let limit_one = EndpointSlots::new(1);
        limit_one.assign(endpoint);
        assert!(
            limit_one.release(endpoint, true),
            "with one slot, its low water is 0: its backlog goes on by refills"
        );
        assert_eq!(limit_one.take_refills(&[], None), vec![(endpoint, 1)]);
    }

    #[test]
    fn an_endpoint_has_deliveries_waiting_once_more_are_assigned_than_its_slots() {
        let slots = EndpointSlots::new(2);
        let endpoint = EndpointId::new();
        slots.assign(endpoint);
        slots.assign(endpoint);
        assert!(!slots.has_waiting(endpoint), "two assigned, two slots");
        slots.assign(endpoint);
        assert!(slots.has_waiting(endpoint), "the third waits");
        slots.release(endpoint, true);
        assert!(!slots.has_waiting(endpoint));
        assert!(!slots.has_waiting(EndpointId::new()), "an unknown endpoint");
    }

    #[test]
    fn a_failing_endpoint_is_refilled_at_half_its_slots_and_an_answering_one_at_twice() {
        let slots = EndpointSlots::new(16);
        let failing = EndpointId::new();
        for _ in 0..10 {
            slots.assign(failing);
        }
        assert!(!slots.release(failing, false), "10 → 9: above 8");
        assert!(slots.release(failing, false), "9 → 8: the low water");
        assert_eq!(slots.take_refills(&[], None), vec![(failing, 16)]);

        let answering = EndpointId::new();
        for _ in 0..34 {
            slots.assign(answering);
        }
        assert!(!slots.release(answering, true), "34 → 33: above 32");
        assert!(slots.release(answering, true), "33 → 32: the low water");
        assert!(
            slots.take_refills(&[answering], None).is_empty(),
            "an endpoint a claim is refilling already is left out"
        );
    }
}
