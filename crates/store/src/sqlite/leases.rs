//! The SQLite store's leases, kept in the process's memory.
//!
//! An embedded database has exactly one Herald working on it, so a lease needs no row of its
//! own: what a worker holds is known to the process, and a process that dies takes its
//! leases with it (every pending delivery is due again at the next start, as after
//! `release_all_leases`). Keeping them here turns a claim into a read on a reader connection,
//! beside the one writer, instead of an `UPDATE` waiting in the writer's queue behind the
//! fsync'd commits of publishes and recorded attempts.
//!
//! Two rules keep this as safe as leases in rows:
//! - **A claim never takes what another holds.** A leased delivery is still pending and due
//!   in the database, so a claim reads past the ones this table holds (asking for that many
//!   more rows) and leases only the others, under the table's lock.
//! - **A claim never takes what was just settled.** A claim reads from a snapshot; were a
//!   lease ended between that snapshot and the claim's leasing, the claim would see the
//!   delivery pending and unleased although its attempt was recorded. So a claim holds the
//!   [`LeaseTable::gate`] shared from before its read until it has leased, and leases are
//!   ended (after the recording commits) only with the gate held exclusively.
//!
//! Recording checks the token: an attempt settles its delivery only while its lease is the
//! delivery's current one, exactly as the token column does on PostgreSQL. Such leases are
//! marked as settling until they end, so they cannot lapse and be taken again while their
//! recording commits, nor while a recording that failed (a full disk) waits to be tried
//! again: the worker's recorder keeps every result until it is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_domain::{DeliveryId, EndpointId, Timestamp};
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::queue::LeaseToken;

/// The leases this process holds.
#[derive(Debug, Default)]
pub(super) struct LeaseTable {
    /// Shared by claims from their read until they have leased; exclusive to end leases.
    gate: RwLock<()>,
    leases: Mutex<HashMap<DeliveryId, Lease>>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    token: LeaseToken,
    endpoint_id: EndpointId,
    /// When it lapses, in microseconds.
    until: i64,
    /// Its attempt is being recorded: it does not lapse.
    settling: bool,
}

impl Lease {
    fn is_live(&self, now: i64) -> bool {
        self.settling || self.until > now
    }
}

/// A due delivery a claim read, and whose it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
}

impl LeaseTable {
    /// Holds off the end of any lease until the guard is dropped: a claim takes it before it
    /// reads and drops it once it has leased.
    pub(super) async fn claiming(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// How many live leases each endpoint has.
    ///
    /// A lapsed lease stays in the table until its recording ends it or another claim takes
    /// the delivery over: like a token left in a row, it still lets a late recording settle
    /// its delivery when nobody else has claimed it meanwhile.
    pub(super) fn held_per_endpoint(&self, now: Timestamp) -> HashMap<EndpointId, u32> {
        let now = now.as_micros();
        let mut held: HashMap<EndpointId, u32> = HashMap::new();
        for lease in self.lock().values().filter(|lease| lease.is_live(now)) {
            *held.entry(lease.endpoint_id).or_default() += 1;
        }
        held
    }

    /// Leases, under `token` until `until`, the candidates nobody holds, taking at most
    /// `most_for(endpoint)` of each endpoint and `limit` in all, in the candidates' order.
    pub(super) fn lease(
        &self,
        candidates: &[Candidate],
        token: LeaseToken,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
        most_for: impl Fn(EndpointId) -> u32,
    ) -> Vec<DeliveryId> {
        let now = now.as_micros();
        let mut leases = self.lock();
        let mut taken_per_endpoint: HashMap<EndpointId, u32> = HashMap::new();
        let mut taken = Vec::new();
        for candidate in candidates {
            if taken.len() >= limit {
                break;
            }
            if leases
                .get(&candidate.delivery_id)
                .is_some_and(|lease| lease.is_live(now))
            {
                continue;
            }
            let taken_of_endpoint = taken_per_endpoint.entry(candidate.endpoint_id).or_default();
            if *taken_of_endpoint >= most_for(candidate.endpoint_id) {
                continue;
            }
            *taken_of_endpoint += 1;
            leases.insert(
                candidate.delivery_id,
                Lease {
                    token,
                    endpoint_id: candidate.endpoint_id,
                    until: until.as_micros(),
                    settling: false,
                },
            );
            taken.push(candidate.delivery_id);
        }
        taken
    }

    /// Leases `run` (one endpoint's deliveries, in the order they are to be sent, behind
    /// `head`) under `token` until `until`, up to the first one held already: a run is sent
    /// in order, so nothing after a gap may be taken. Nothing unless `head` is still leased,
    /// live, under the given token: a holder whose lease lapsed and was taken over gets no
    /// run of its own beside the new holder's.
    pub(super) fn lease_run(
        &self,
        head: (DeliveryId, LeaseToken),
        run: impl IntoIterator<Item = DeliveryId>,
        endpoint_id: EndpointId,
        token: LeaseToken,
        now: Timestamp,
        until: Timestamp,
    ) -> Vec<DeliveryId> {
        let now = now.as_micros();
        let mut leases = self.lock();
        let mut taken = Vec::new();
        let (head, head_token) = head;
        let held = leases
            .get(&head)
            .is_some_and(|lease| lease.token == head_token && lease.is_live(now));
        if !held {
            return taken;
        }
        for delivery_id in run {
            if leases
                .get(&delivery_id)
                .is_some_and(|lease| lease.is_live(now))
            {
                break;
            }
            leases.insert(
                delivery_id,
                Lease {
                    token,
                    endpoint_id,
                    until: until.as_micros(),
                    settling: false,
                },
            );
            taken.push(delivery_id);
        }
        taken
    }

    /// Marks the leases of these attempts as settling, and says for each whether its lease is
    /// the delivery's current one (only those may move their delivery on).
    pub(super) fn begin_settling(
        &self,
        attempts: impl IntoIterator<Item = (DeliveryId, LeaseToken)>,
    ) -> Vec<bool> {
        let mut leases = self.lock();
        attempts
            .into_iter()
            .map(|(delivery_id, token)| match leases.get_mut(&delivery_id) {
                Some(lease) if lease.token == token => {
                    lease.settling = true;
                    true
                }
                _ => false,
            })
            .collect()
    }

    /// Ends these leases (their recording committed), once no claim is between its read and
    /// its leasing.
    pub(super) async fn end(&self, attempts: impl IntoIterator<Item = (DeliveryId, LeaseToken)>) {
        let _no_claim_reading = self.gate.write().await;
        self.release(attempts);
    }

    /// Ends these leases now: their claim failed before anyone was handed them.
    pub(super) fn release(&self, attempts: impl IntoIterator<Item = (DeliveryId, LeaseToken)>) {
        let mut leases = self.lock();
        for (delivery_id, token) in attempts {
            if leases
                .get(&delivery_id)
                .is_some_and(|lease| lease.token == token)
            {
                leases.remove(&delivery_id);
            }
        }
    }

    /// Ends every lease.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    /// Live leases, for the queue's statistics.
    pub(super) fn live(&self, now: Timestamp) -> u64 {
        let now = now.as_micros();
        self.lock()
            .values()
            .filter(|lease| lease.is_live(now))
            .count() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeliveryId, Lease>> {
        self.leases
            .lock()
            .expect("lease table lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(endpoint_id: EndpointId) -> Candidate {
        Candidate {
            delivery_id: DeliveryId::new(),
            endpoint_id,
        }
    }

    #[test]
    fn a_leased_delivery_is_not_leased_again_until_it_lapses() {
        let table = LeaseTable::default();
        let endpoint = EndpointId::new();
        let candidates = [candidate(endpoint), candidate(endpoint)];
        let now = Timestamp::from_micros(1_000);
        let until = Timestamp::from_micros(2_000);
        let first = table.lease(&candidates, LeaseToken::new(), now, until, 10, |_| 1);
        assert_eq!(
            first,
            vec![candidates[0].delivery_id],
            "one of the endpoint's, as asked"
        );
        let second = table.lease(&candidates, LeaseToken::new(), now, until, 10, |_| 10);
        assert_eq!(
            second,
            vec![candidates[1].delivery_id],
            "the held one is skipped"
        );
        assert_eq!(table.held_per_endpoint(now).get(&endpoint), Some(&2));
        let lapsed = Timestamp::from_micros(2_000);
        let third = table.lease(&candidates, LeaseToken::new(), lapsed, lapsed, 10, |_| 10);
        assert_eq!(third.len(), 2, "lapsed leases are taken again");
    }

    #[test]
    fn only_the_current_lease_settles_and_a_settling_lease_does_not_lapse() {
        let table = LeaseTable::default();
        let candidates = [candidate(EndpointId::new())];
        let id = candidates[0].delivery_id;
        let now = Timestamp::from_micros(1_000);
        let until = Timestamp::from_micros(2_000);
        let old = LeaseToken::new();
        assert_eq!(
            table.lease(&candidates, old, now, until, 10, |_| 10),
            vec![id]
        );
        let lapsed = Timestamp::from_micros(3_000);
        let new = LeaseToken::new();
        assert_eq!(
            table.lease(&candidates, new, lapsed, lapsed, 10, |_| 10),
            vec![id]
        );

        assert_eq!(
            table.begin_settling([(id, old), (id, new)]),
            vec![false, true]
        );
        let later = Timestamp::from_micros(9_000);
        assert!(
            table
                .lease(&candidates, LeaseToken::new(), later, later, 10, |_| 10)
                .is_empty(),
            "a lease whose attempt is being recorded does not lapse"
        );
        assert_eq!(
            table.begin_settling([(id, new)]),
            vec![true],
            "a recording tried again (the first try failed) still settles its delivery"
        );
    }

    #[tokio::test]
    async fn ending_a_lease_waits_for_a_claim_between_its_read_and_its_leasing() {
        let table = std::sync::Arc::new(LeaseTable::default());
        let candidates = [candidate(EndpointId::new())];
        let id = candidates[0].delivery_id;
        let token = LeaseToken::new();
        let now = Timestamp::from_micros(1_000);
        table.lease(
            &candidates,
            token,
            now,
            Timestamp::from_micros(9_000),
            10,
            |_| 10,
        );
        let claim = table.claiming().await;
        let mut ending = tokio::spawn({
            let table = std::sync::Arc::clone(&table);
            async move { table.end([(id, token)]).await }
        });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), &mut ending).await;
        assert!(waited.is_err(), "ending must wait for the claim");
        assert_eq!(table.live(now), 1, "the lease outlives the claim's read");
        drop(claim);
        ending.await.expect("ending the lease");
        assert_eq!(table.live(now), 0);
    }
}
