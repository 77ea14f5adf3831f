//! Sequence numbers and ordered delivery, written once (docs/api.md#ordering-and-sequence-numbers).
//!
//! Every new delivery takes the next number of its endpoint's sequence in the transaction that
//! creates it. A delivery with an ordering key is *parked* (due at [`sql::PARKED`], which no
//! claim reaches) while an earlier delivery of its key to the same endpoint is pending; when
//! that one ends (success or dead), the recorder makes the next one due. So for each key and
//! endpoint at most one delivery is ever claimable, and claiming needs no rule of its own:
//! unordered work pays nothing.
//!
//! On PostgreSQL the sequence row's lock, taken first and held to commit, orders concurrent
//! transactions that create deliveries for one endpoint: numbers follow commit order, and the
//! later transaction sees the earlier one's deliveries when it decides what to park. The
//! recorder takes the same lock before it lets the next delivery of a key go, so a publish
//! that parks behind a delivery that is ending and the recording of that end cannot miss each
//! other (the one that commits second sees the first). Every transaction takes these locks in
//! endpoint order and in one round (a batch stored in several rounds locks all of them first,
//! after its idempotency keys), so they wait for each other and never deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use herald_domain::{EndpointId, Timestamp};
use uuid::Uuid;

use crate::StoreError;
use crate::backend::WriteTransaction;
use crate::rows::ReadRow;
use crate::sql::{self, Dialect, NewDelivery};
use crate::statement::Statement;

/// Numbers `deliveries` in their endpoints' sequences (in the order given), parks those that
/// must wait behind an earlier pending delivery of their key, and inserts them. The sequence
/// rows of `also_lock` are locked with the others (see the module's comment).
pub(crate) async fn insert_deliveries<T: WriteTransaction>(
    tx: &mut T,
    deliveries: &mut [NewDelivery<'_>],
    also_lock: &BTreeSet<EndpointId>,
) -> Result<(), StoreError> {
    if deliveries.is_empty() && also_lock.is_empty() {
        return Ok(());
    }
    // Per endpoint, in id order: concurrent transactions lock sequence rows in one order, so
    // they wait for each other rather than deadlock.
    let mut counts: BTreeMap<EndpointId, i64> = also_lock
        .iter()
        .map(|endpoint_id| (*endpoint_id, 0))
        .collect();
    for delivery in deliveries.iter() {
        *counts.entry(delivery.endpoint_id).or_default() += 1;
    }
    let mut next: HashMap<EndpointId, i64> = HashMap::with_capacity(counts.len());
    for (endpoint_id, count) in counts {
        let bump = Statement::new(
            "INSERT INTO endpoint_sequences (endpoint_id, last_sequence) VALUES (?, ?)
             ON CONFLICT (endpoint_id) DO UPDATE
             SET last_sequence = endpoint_sequences.last_sequence + excluded.last_sequence
             RETURNING last_sequence",
        )
        .bind(endpoint_id.as_uuid())
        .bind(count);
        let row = tx
            .fetch_first(bump)
            .await?
            .ok_or(StoreError::Corrupt("a sequence upsert returned nothing"))?;
        next.insert(endpoint_id, row.integer("last_sequence")? - count + 1);
    }
    let pending = keys_pending(tx, deliveries).await?;
    let mut keys_seen: HashSet<(EndpointId, &str)> = HashSet::new();
    for delivery in deliveries.iter_mut() {
        let number = next
            .get_mut(&delivery.endpoint_id)
            .ok_or(StoreError::Corrupt("a delivery's endpoint has no sequence"))?;
        delivery.sequence = *number;
        *number += 1;
        if let Some(key) = delivery.event.ordering_key.as_deref() {
            delivery.parked = !keys_seen.insert((delivery.endpoint_id, key))
                || pending.contains(&(delivery.endpoint_id, key.to_owned()));
        }
    }
    for chunk in deliveries.chunks(sql::BULK_ROWS) {
        tx.execute(sql::insert_pending_deliveries(chunk)).await?;
    }
    // Parked deliveries are not due: their key's release makes them so, and wakes the worker
    // itself (the recorder).
    if deliveries.iter().any(|delivery| !delivery.parked) {
        tx.announce_new_deliveries();
    }
    Ok(())
}

/// Locks `endpoint_id`'s sequence row until the transaction ends, numbering nothing (see the
/// module's comment): for a transaction that reads the endpoint's deliveries before it
/// decides which to create.
pub(crate) async fn lock_sequences<T: WriteTransaction>(
    tx: &mut T,
    endpoint_id: EndpointId,
) -> Result<(), StoreError> {
    insert_deliveries(tx, &mut [], &BTreeSet::from([endpoint_id])).await
}

/// Of the ordering keys of `deliveries`, those with a delivery pending to the same endpoint
/// already: one statement per endpoint (per [`sql::BULK_ROWS`] keys), on the index of pending
/// keyed deliveries, rather than one per key. A batch publish fans a hundred keyed events out
/// to ten endpoints inside the sequence locks, which every other publish to those endpoints
/// waits for: a thousand round trips there held them all for as long.
async fn keys_pending<T: WriteTransaction>(
    tx: &mut T,
    deliveries: &[NewDelivery<'_>],
) -> Result<HashSet<(EndpointId, String)>, StoreError> {
    let mut keys: BTreeMap<EndpointId, BTreeSet<&str>> = BTreeMap::new();
    for delivery in deliveries {
        if let Some(key) = delivery.event.ordering_key.as_deref() {
            keys.entry(delivery.endpoint_id).or_default().insert(key);
        }
    }
    let mut pending = HashSet::new();
    for (endpoint_id, keys) in keys {
        let keys: Vec<&str> = keys.into_iter().collect();
        for chunk in keys.chunks(sql::BULK_ROWS) {
            let mut select = Statement::new(
                "SELECT DISTINCT ordering_key FROM deliveries
                 WHERE endpoint_id = ? AND status = 'pending' AND ordering_key IS NOT NULL
                   AND ordering_key IN (",
            )
            .bind(endpoint_id.as_uuid());
            select
                .push_list(chunk.iter().map(|key| (*key).into()))
                .push(")");
            for row in tx.fetch(select).await? {
                pending.insert((endpoint_id, row.text("ordering_key")?));
            }
        }
    }
    Ok(pending)
}

/// Whether a delivery of `key` to `endpoint_id` is pending.
async fn key_pending<T: WriteTransaction>(
    tx: &mut T,
    endpoint_id: EndpointId,
    key: &str,
) -> Result<bool, StoreError> {
    let pending = Statement::new(
        "SELECT 1 AS pending FROM deliveries
         WHERE endpoint_id = ? AND ordering_key = ? AND status = 'pending' LIMIT 1",
    )
    .bind(endpoint_id.as_uuid())
    .bind(key);
    Ok(tx.fetch_first(pending).await?.is_some())
}

/// One key whose delivery to an endpoint ended: its next delivery there is made due at `at`.
pub(crate) struct Release<'a> {
    pub(crate) endpoint_id: EndpointId,
    pub(crate) key: &'a str,
    pub(crate) at: Timestamp,
}

/// Makes the first pending delivery of each release's key to its endpoint due at the
/// release's time, if it is parked: called when the one before it ended, with the endpoints'
/// sequence rows locked ([`insert_deliveries`]'s `also_lock`). One statement per
/// [`sql::BULK_ROWS`] releases, not one each: every publish to those endpoints waits for the
/// locks meanwhile, and a recording of a few hundred releases, a round trip apiece, held them
/// for seconds on a busy machine (publishes then ran into the statement timeout).
pub(crate) async fn release_next<T: WriteTransaction>(
    tx: &mut T,
    releases: &[Release<'_>],
    dialect: Dialect,
) -> Result<(), StoreError> {
    // Found by primary key, as in `sql::settle_deliveries`.
    let pin = dialect.by_primary_key();
    for chunk in releases.chunks(sql::BULK_ROWS) {
        let mut release = Statement::new("WITH asked (endpoint_id, ordering_key, at) AS (VALUES ");
        release.push_rows(chunk.iter(), |release| {
            [
                release.endpoint_id.as_uuid().into(),
                release.key.into(),
                release.at.as_micros().into(),
            ]
        });
        release.push(&format!(
            "), released (id, at) AS (SELECT (SELECT queued.id FROM deliveries AS queued \
             WHERE queued.endpoint_id = asked.endpoint_id \
             AND queued.ordering_key = asked.ordering_key AND queued.status = 'pending' \
             ORDER BY queued.sequence LIMIT 1), asked.at FROM asked) \
             UPDATE deliveries SET next_attempt_at = released.at FROM released \
             WHERE deliveries.id = {pin}released.id AND deliveries.next_attempt_at = "
        ));
        release.push_bind(sql::PARKED);
        tx.execute(release.persistent(sql::worth_preparing(chunk.len())))
            .await?;
    }
    Ok(())
}

/// The deliveries of one ordering key to one endpoint that wait behind a delivery a worker
/// holds: what [`Store::claim_successors`](crate::Store::claim_successors) leases.
pub(crate) struct Behind<'a> {
    /// The held delivery, and the lease it is held under: a holder whose lease lapsed (and
    /// was taken by another) gets nothing, so two workers never run one key. It is either
    /// the delivery the worker just sent, or the last of its earlier claim of successors,
    /// still parked (a claim made ahead).
    pub(crate) head: herald_domain::DeliveryId,
    pub(crate) head_lease: crate::LeaseToken,
    pub(crate) endpoint_id: EndpointId,
    pub(crate) key: &'a str,
    /// The held delivery's number: those behind it have higher ones.
    pub(crate) sequence: u64,
    pub(crate) most: u32,
}

impl Behind<'_> {
    /// `SELECT id, endpoint_id, next_attempt_at …`: the pending deliveries behind, the next
    /// first (on the index of pending keyed deliveries), with `suffix` (a row lock) appended.
    pub(crate) fn select(&self, suffix: &str) -> Statement<'_> {
        let mut select = Statement::new(
            "SELECT id, endpoint_id, next_attempt_at FROM deliveries
             WHERE endpoint_id = ? AND ordering_key = ? AND status = 'pending' AND sequence > ?
             ORDER BY sequence LIMIT ?",
        )
        .bind(self.endpoint_id.as_uuid())
        .bind(self.key)
        .bind(i64::try_from(self.sequence).unwrap_or(i64::MAX))
        .bind(i64::from(self.most));
        select.push(suffix);
        select
    }

    /// `SELECT 1 AS held …`: a row while the head is pending under the holder's lease token
    /// (PostgreSQL, where the token is in the row). A plain read, taking no lock.
    pub(crate) fn head_held(&self) -> Statement<'_> {
        Statement::new(
            "SELECT 1 AS held FROM deliveries WHERE id = ? AND lease_token = ? AND status = 'pending'",
        )
        .bind(self.head.as_uuid())
        .bind(self.head_lease.as_uuid())
    }

    /// Of the rows [`Behind::select`] read, the ids of the leading run that is parked: all of
    /// them while the held delivery is the key's one unparked delivery, or parked behind it
    /// in the same worker's hands, as it is while its worker holds it. Should one not be, the
    /// run stops before it, so nothing is ever sent out of its turn.
    pub(crate) fn parked_run<R: ReadRow>(rows: &[R]) -> Result<Vec<Uuid>, StoreError> {
        let mut run = Vec::with_capacity(rows.len());
        for row in rows {
            if row.integer("next_attempt_at")? != sql::PARKED {
                break;
            }
            run.push(row.uuid("id")?);
        }
        Ok(run)
    }
}

/// A dead delivery a recovery puts back in the queue.
pub(crate) struct Revived {
    pub(crate) id: Uuid,
    pub(crate) ordering_key: Option<String>,
    pub(crate) sequence: Option<i64>,
}

/// Puts dead deliveries of `endpoint_id` back to pending, with a fresh schedule: unkeyed ones
/// due at `now`; of each key, only the earliest due and only if nothing of that key is pending
/// already, the rest parked behind it. Returns how many.
pub(crate) async fn revive<T: WriteTransaction>(
    tx: &mut T,
    endpoint_id: EndpointId,
    revived: &[Revived],
    now: Timestamp,
) -> Result<u64, StoreError> {
    lock_sequences(tx, endpoint_id).await?;
    let mut due: Vec<Uuid> = Vec::with_capacity(revived.len());
    let mut parked: Vec<Uuid> = Vec::new();
    let mut first_of_key: HashMap<&str, &Revived> = HashMap::new();
    for delivery in revived {
        match delivery.ordering_key.as_deref() {
            None => due.push(delivery.id),
            Some(key) => match first_of_key.get(key) {
                Some(first) if first.sequence <= delivery.sequence => parked.push(delivery.id),
                Some(first) => {
                    parked.push(first.id);
                    first_of_key.insert(key, delivery);
                }
                None => {
                    first_of_key.insert(key, delivery);
                }
            },
        }
    }
    for (key, first) in first_of_key {
        if key_pending(tx, endpoint_id, key).await? {
            parked.push(first.id);
        } else {
            due.push(first.id);
        }
    }
    let mut revived_count = 0;
    for (ids, at) in [(due, now.as_micros()), (parked, sql::PARKED)] {
        for chunk in ids.chunks(sql::BULK_ROWS) {
            let mut revive =
                Statement::new("UPDATE deliveries SET status = 'pending', next_attempt_at = ");
            revive
                .push_bind(at)
                .push(
                    ", schedule_base = attempts, lease_token = NULL WHERE status = 'dead' AND id IN (",
                )
                .push_list(chunk.iter().map(|id| (*id).into()))
                .push(")");
            revived_count += tx.execute(revive).await?;
        }
    }
    Ok(revived_count)
}
