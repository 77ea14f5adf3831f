//! The delivery half of the [`Store`](crate::Store), written once: publishing with fan-out,
//! replays and test sends, recording attempts, the feed, the queue's counts, and retention.
//! Claiming differs between the backends and lives with each ([`Backend::claim`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};

use herald_domain::endpoint::subscription_matches;
use herald_domain::filter::event_document;
use herald_domain::operational::{self, OPERATOR_HOOK, OPERATOR_ORG};
use herald_domain::{
    Attempt, AttemptId, AuditAction, AuditId, AuditRecord, DeliveryId, DisabledReason, Endpoint,
    EndpointId, Event, EventId, EventOrigin, OrgId, Outcome, Timestamp,
};
use uuid::Uuid;

use super::{count, insert_audit, only, ordering};
use crate::backend::{Backend, Lock, Pool, WriteTransaction};
use crate::queue::{EndpointStep, delivery_status, endpoint_steps};
use crate::rows::{
    ATTEMPT_COLUMNS, EMPTY_SHA256, ENDPOINT_COLUMNS, EVENT_COLUMNS, ReadRow, attempt_from_row,
    endpoint_from_row, event_from_row,
};
use crate::sql::{self, LeaseCheck, NewDelivery};
use crate::statement::Statement;
use crate::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimScope, FeedStatus, Page, PageRequest,
    PublishedEvent, PurgeBatch, PurgePosition, PurgeReport, QueueStats, Sequenced, StoreError,
};

/// How long an idempotency key keeps returning the first event.
const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::hours(24);

pub(super) async fn publish_events<B: Backend>(
    store: &B,
    events: &[Event],
) -> Result<Vec<PublishedEvent>, StoreError> {
    let mut tx = store.begin().await?;
    let published = fan_out::<B>(&mut tx, events, &BTreeSet::new()).await?;
    tx.commit().await?;
    Ok(published)
}

/// Stores `events` with a delivery to each live, active endpoint of their organization that
/// subscribes to their type (and, for an operational event, to the operator's hook), inside
/// `tx`: the publish path, and the operational events Herald publishes inside the
/// transaction of the change they report.
pub(super) async fn fan_out<B: Backend>(
    tx: &mut B::Tx,
    events: &[Event],
    also_lock: &BTreeSet<EndpointId>,
) -> Result<Vec<PublishedEvent>, StoreError> {
    let mut endpoints_by_org: HashMap<OrgId, Vec<Endpoint>> = HashMap::new();
    let mut taken_types: HashMap<OrgId, HashSet<String>> = HashMap::new();
    let mut published = Vec::with_capacity(events.len());
    let mut deliveries = Vec::new();
    // Every idempotency key of the batch is locked first, in one order, before any sequence
    // row: a batch stores what precedes a keyed event (and so takes sequence locks) before
    // looking the key up, and taking the key's lock only then would wait in the opposite
    // order to a single publish of that key (key, then sequence rows): a deadlock.
    let mut idempotency_keys: Vec<(OrgId, &str)> = events
        .iter()
        .filter_map(|event| Some((event.org_id, event.idempotency_key.as_deref()?)))
        .collect();
    idempotency_keys.sort_unstable();
    idempotency_keys.dedup();
    for (org_id, key) in idempotency_keys {
        B::lock(tx, Lock::IdempotencyKey(org_id, key)).await?;
    }
    // Then, for a batch that stores its deliveries in several rounds (an idempotency key
    // after other events), the sequence rows of every endpoint it may deliver to, in one
    // round: rounds over different organizations' endpoints could otherwise lock in two
    // orders. (A batch stored in one round takes them once, at its end.)
    let rounds = events
        .iter()
        .skip(1)
        .any(|event| event.idempotency_key.is_some());
    let mut sequence_locks = also_lock.clone();
    for event in events.iter().filter(|_| rounds) {
        if let Entry::Vacant(slot) = endpoints_by_org.entry(event.org_id) {
            slot.insert(live_active_endpoints(tx, event.org_id).await?);
        }
        let subscribed = endpoints_by_org[&event.org_id]
            .iter()
            .filter(|endpoint| endpoint.subscribes_to(&event.event_type));
        sequence_locks.extend(subscribed.map(|endpoint| endpoint.id));
        if event.origin == EventOrigin::Herald && event.org_id != OPERATOR_ORG {
            sequence_locks.insert(OPERATOR_HOOK);
        }
    }
    if rounds {
        ordering::insert_deliveries(tx, &mut [], &sequence_locks).await?;
    }
    // New events and their deliveries are inserted together, except that an idempotency key
    // is looked up only after everything before it is stored, so a key repeated within one
    // batch finds its first use and that event's fan-out.
    let mut new_events: Vec<&Event> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(key) = &event.idempotency_key {
            in_chunks(tx, &new_events, sql::insert_events).await?;
            ordering::insert_deliveries(tx, &mut deliveries, &BTreeSet::new()).await?;
            new_events.clear();
            deliveries.clear();
            let earlier = Statement::new(
                "SELECT id, created_at FROM events WHERE org_id = ? AND idempotency_key = ?",
            );
            let earlier = earlier.bind(event.org_id.as_uuid()).bind(key.as_str());
            if let Some(earlier) = tx.fetch_first(earlier).await? {
                let earlier_id = earlier.uuid("id")?;
                let earlier_at = Timestamp::from_micros(earlier.integer("created_at")?);
                if earlier_at >= event.created_at.add(-IDEMPOTENCY_WINDOW) {
                    let fanned_out =
                        Statement::new("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ?");
                    let fanned_out = count(tx, fanned_out.bind(earlier_id)).await?;
                    published.push(PublishedEvent {
                        event_id: EventId::from_uuid(earlier_id),
                        endpoints: u32::try_from(fanned_out).unwrap_or(u32::MAX),
                        duplicate: true,
                    });
                    continue;
                }
                // Past the window: the key is free again.
                let free = Statement::new("UPDATE events SET idempotency_key = NULL WHERE id = ?");
                tx.execute(free.bind(earlier_id)).await?;
            }
        }
        if event.origin == EventOrigin::Herald
            && let Entry::Vacant(slot) = taken_types.entry(event.org_id)
        {
            slot.insert(types_taken::<B>(tx, event.org_id).await?);
        }
        if event.origin == EventOrigin::Herald
            && !taken_types.get(&event.org_id).is_some_and(|entries| {
                entries
                    .iter()
                    .any(|entry| subscription_matches(entry, &event.event_type))
            })
        {
            // An operational event nobody takes is not stored: a mass outage would otherwise
            // add a `delivery.exhausted` row per dead delivery that nothing reads.
            continue;
        }
        new_events.push(event);
        if let Entry::Vacant(slot) = endpoints_by_org.entry(event.org_id) {
            slot.insert(live_active_endpoints(tx, event.org_id).await?);
        }
        let mut fanned_out = 0u32;
        // Parsed once per event, and only when a subscribed endpoint has a filter: endpoints
        // without one cost nothing more than the type match.
        let mut document = None;
        for endpoint in endpoints_by_org.get(&event.org_id).into_iter().flatten() {
            if !endpoint.subscribes_to(&event.event_type) {
                continue;
            }
            if let Some(filter) = &endpoint.filter {
                let document = document.get_or_insert_with(|| filter_document(event));
                if !filter.matches(document) {
                    continue;
                }
            }
            deliveries.push(NewDelivery::new(endpoint.org_id, event, endpoint.id));
            fanned_out += 1;
        }
        if event.origin == EventOrigin::Herald && event.org_id != OPERATOR_ORG {
            // The operator's hook takes every organization's operational events (its
            // deliveries belong to its own organization, so no organization's feed shows them).
            if let Entry::Vacant(slot) = endpoints_by_org.entry(OPERATOR_ORG) {
                slot.insert(live_active_endpoints(tx, OPERATOR_ORG).await?);
            }
            for hook in endpoints_by_org.get(&OPERATOR_ORG).into_iter().flatten() {
                deliveries.push(NewDelivery::new(OPERATOR_ORG, event, hook.id));
            }
        }
        published.push(PublishedEvent {
            event_id: event.id,
            endpoints: fanned_out,
            duplicate: false,
        });
    }
    in_chunks(tx, &new_events, sql::insert_events).await?;
    ordering::insert_deliveries(tx, &mut deliveries, also_lock).await?;
    Ok(published)
}

/// What an event's filters are matched against: `{"type", "data"}`, its `data` parsed from
/// the stored text (which the publish API checked is a JSON object).
pub(super) fn filter_document(event: &Event) -> serde_json::Value {
    let data = serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    event_document(&event.event_type, data)
}

/// The subscription entries (types and wildcards) an operational event of `org_id` may be
/// taken for: those of the organization's live endpoints, active or not (an inactive one may
/// catch up on it by a recovery with `include_missing`), and the operator hook's.
async fn types_taken<B: Backend>(
    tx: &mut B::Tx,
    org_id: OrgId,
) -> Result<HashSet<String>, StoreError> {
    let takers = Statement::new(
        "SELECT events FROM endpoints WHERE deleted_at IS NULL AND (org_id = ? OR id = ?)",
    )
    .bind(org_id.as_uuid())
    .bind(operational::OPERATOR_HOOK.as_uuid());
    let mut types = HashSet::new();
    for row in tx.fetch(takers).await? {
        let events: Vec<String> = serde_json::from_str(&row.text("events")?)
            .map_err(|_| StoreError::Corrupt("endpoint events are not a JSON array"))?;
        types.extend(events);
    }
    Ok(types)
}

async fn live_active_endpoints<T: WriteTransaction>(
    tx: &mut T,
    org_id: OrgId,
) -> Result<Vec<Endpoint>, StoreError> {
    let select = Statement::new(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE org_id = ? AND deleted_at IS NULL AND active"
    ));
    let rows = tx.fetch(select.bind(org_id.as_uuid())).await?;
    rows.iter().map(endpoint_from_row).collect()
}

/// Runs `insert` for each [`sql::BULK_ROWS`] of `rows`.
async fn in_chunks<'a, T: WriteTransaction, R>(
    tx: &mut T,
    rows: &'a [R],
    insert: fn(&'a [R]) -> Statement<'a>,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(sql::BULK_ROWS) {
        tx.execute(insert(chunk)).await?;
    }
    Ok(())
}

pub(super) async fn enqueue_replay<B: Backend>(
    store: &B,
    event: &Event,
    endpoint_id: EndpointId,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let live = Statement::new(
        "SELECT id FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
    );
    let live = live
        .bind(endpoint_id.as_uuid())
        .bind(event.org_id.as_uuid());
    if tx.fetch_first(live).await?.is_none() {
        return tx.refuse(StoreError::NotFound).await;
    }
    in_chunks(&mut tx, &[event], sql::insert_events).await?;
    let mut delivery = [NewDelivery::new(event.org_id, event, endpoint_id)];
    ordering::insert_deliveries(&mut tx, &mut delivery, &BTreeSet::new()).await?;
    super::commit_audited(tx, audit).await
}

pub(super) async fn record_test_attempt<B: Backend>(
    store: &B,
    event: &Event,
    attempt: &Attempt,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    in_chunks(&mut tx, &[event], sql::insert_events).await?;
    let insert = Statement::new(
        "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
         VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
    )
    .bind(attempt.delivery_id.as_uuid())
    .bind(event.org_id.as_uuid())
    .bind(event.id.as_uuid())
    .bind(attempt.endpoint_id.as_uuid())
    .bind(delivery_status(attempt.outcome))
    .bind(attempt.occurred_at.as_micros())
    .bind(event.created_at.as_micros());
    tx.execute(insert).await?;
    in_chunks(&mut tx, &[attempt], sql::insert_attempts).await?;
    tx.commit().await
}

/// A claim over every endpoint as a refill of the endpoints that have deliveries due (read
/// without locks); a refill as it is.
pub(crate) async fn resolve_scope<B: Backend>(
    store: &B,
    request: &ClaimRequest,
) -> Result<ClaimRequest, StoreError> {
    if matches!(request.scope, ClaimScope::Endpoints(_)) {
        return Ok(request.clone());
    }
    let due = sql::due_endpoints(request.now, request.endpoints_to_find());
    let due = store.run(Pool::Claim, due).await?;
    let due = due
        .iter()
        .map(|row| row.uuid("id").map(EndpointId::from_uuid));
    Ok(request.over_endpoints(due.collect::<Result<Vec<_>, _>>()?))
}

/// One transaction: every attempt stored, the `settling` deliveries moved on (their lease
/// checked as `check` says), the endpoints' runs of failures updated, and the operational
/// events of what changed (`delivery.exhausted`, `endpoint.disabled`) published.
pub(crate) async fn write_attempts<B: Backend>(
    store: &B,
    recordings: &[AttemptRecording],
    settling: &[&AttemptRecording],
    check: LeaseCheck,
    disable_failing_before: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let attempts: Vec<&Attempt> = recordings
        .iter()
        .map(|recording| &recording.attempt)
        .collect();
    in_chunks(&mut tx, &attempts, sql::insert_attempts).await?;
    let mut operational = Vec::new();
    let mut hand_ons = Vec::new();
    let mut releases = Vec::new();
    for chunk in settling.chunks(sql::BULK_ROWS) {
        let mut settle = sql::settle_deliveries(chunk, B::DIALECT, check);
        if !chunk.iter().any(|recording| reports_its_end(recording)) {
            tx.execute(settle).await?;
            continue;
        }
        // Only a delivery this statement moved on is reported exhausted or lets the next of
        // its key go: one whose lease had lapsed was recorded by its newer claimant.
        settle.push(" RETURNING deliveries.id AS id");
        let settled = tx.fetch(settle).await?;
        let settled = settled
            .iter()
            .map(|row| row.uuid("id"))
            .collect::<Result<HashSet<_>, _>>()?;
        for recording in chunk {
            let attempt = &recording.attempt;
            if !settled.contains(&attempt.delivery_id.as_uuid()) {
                continue;
            }
            if recording.exhausted {
                operational.extend(operational::delivery_exhausted(&exhausted(recording)));
            }
            if let (Some(key), true) = (&attempt.ordering_key, ended(recording)) {
                // The key's turn goes to the successor its worker is sending, if it named one
                // after a success; else to whichever delivery of the key is next.
                match (&recording.successor, attempt.outcome) {
                    (Some(successor), Outcome::Success) => hand_ons.push(successor),
                    _ => releases.push((attempt.endpoint_id, key.as_str(), attempt.occurred_at)),
                }
            }
        }
    }
    for step in endpoint_steps(recordings) {
        match step {
            EndpointStep::ClearFailing(endpoints) => {
                tx.execute(sql::clear_failing(&endpoints)).await?;
            }
            // The operator's hook is never disabled: it is the operator's own alerting, set
            // active again at every start, and nobody would be told.
            EndpointStep::Failure(recording) if recording.attempt.org_id == OPERATOR_ORG => {}
            EndpointStep::Failure(recording) => {
                let attempt = &recording.attempt;
                let failing = Statement::new(
                    "UPDATE endpoints SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                );
                let failing = failing
                    .bind(attempt.occurred_at.as_micros())
                    .bind(attempt.endpoint_id.as_uuid());
                tx.execute(failing).await?;
                let disabled = match &recording.disable_endpoint {
                    Some(reason) => {
                        disable_endpoint::<B>(&mut tx, attempt, Disable::Gone(reason)).await?
                    }
                    None => {
                        let before = disable_failing_before;
                        disable_endpoint::<B>(&mut tx, attempt, Disable::FailingBefore(before))
                            .await?
                    }
                };
                operational.extend(disabled);
            }
        }
    }
    // Hand-ons first, in one statement, before any sequence lock: a hand-on passes the turn to
    // a delivery pending all along, so a publish parking behind its key sees a pending
    // delivery before and after it and needs no lock against it. (Taken inside the locks, one
    // statement each, they held every publish to those endpoints for a round trip apiece.)
    for chunk in hand_ons.chunks(sql::BULK_ROWS) {
        tx.execute(sql::hand_on(chunk, B::DIALECT)).await?;
    }
    // The operational events' deliveries, and the locks the releases need, in one go (see
    // `ordering`'s comment: one round of sequence locks a transaction, in endpoint order): a
    // release looks for the key's next pending delivery, and must not miss one being parked.
    let release_locks: BTreeSet<EndpointId> = releases.iter().map(|(id, _, _)| *id).collect();
    if !operational.is_empty() || !release_locks.is_empty() {
        fan_out::<B>(&mut tx, &operational, &release_locks).await?;
    }
    let releases: Vec<ordering::Release<'_>> = releases
        .into_iter()
        .map(|(endpoint_id, key, at)| ordering::Release {
            endpoint_id,
            key,
            at,
        })
        .collect();
    ordering::release_next(&mut tx, &releases, B::DIALECT).await?;
    tx.commit().await
}

/// Whether the delivery ended (success or dead) rather than waits for a retry.
fn ended(recording: &AttemptRecording) -> bool {
    recording.attempt.outcome != Outcome::Retry
}

/// Whether recording this attempt must know if it moved its delivery on: to report it
/// exhausted, or to let the next delivery of its ordering key go.
fn reports_its_end(recording: &AttemptRecording) -> bool {
    recording.exhausted || (recording.attempt.ordering_key.is_some() && ended(recording))
}

/// What `delivery.exhausted` reports of a delivery that just died.
fn exhausted(recording: &AttemptRecording) -> operational::Exhausted<'_> {
    let attempt = &recording.attempt;
    let last_error = match (&attempt.error, attempt.response_status) {
        (Some(error), _) => error.clone(),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => "no response".to_owned(),
    };
    operational::Exhausted {
        org_id: attempt.org_id,
        endpoint_id: attempt.endpoint_id,
        event_id: attempt.event_id,
        event_type: &attempt.event_type,
        attempts: attempt.attempt,
        last_error,
        at: attempt.occurred_at,
    }
}

/// Why Herald sets an endpoint inactive.
enum Disable<'a> {
    /// Its receiver answered `410 Gone` (the audit record's reason).
    Gone(&'a str),
    /// It has failed since before this instant.
    FailingBefore(Timestamp),
}

/// Sets an endpoint inactive as `why` says (for a failure streak, only when it is failing
/// since before the given instant), audits it, and returns its `endpoint.disabled` event, or
/// nothing when it changed nothing.
async fn disable_endpoint<B: Backend>(
    tx: &mut B::Tx,
    attempt: &Attempt,
    why: Disable<'_>,
) -> Result<Option<Event>, StoreError> {
    let (disabled_reason, failing_before) = match why {
        Disable::Gone(_) => (DisabledReason::Gone, None),
        Disable::FailingBefore(before) => (DisabledReason::Failing, Some(before.as_micros())),
    };
    let disable = Statement::new(format!(
        "UPDATE endpoints SET active = FALSE, disabled_reason = ?, disabled_at = ?, probed_at = NULL, {}
         WHERE id = ? AND active AND deleted_at IS NULL
           AND (CAST(? AS BIGINT) IS NULL OR failing_since < ?)
         RETURNING failing_since, url",
        super::updated_at::<B>()
    ))
    .bind(disabled_reason.as_str())
    .bind(attempt.occurred_at.as_micros())
    .bind(attempt.occurred_at.as_micros())
    .bind(attempt.endpoint_id.as_uuid())
    .bind(failing_before)
    .bind(failing_before);
    let Some(row) = tx.fetch_first(disable).await? else {
        return Ok(None);
    };
    let failing_since = row
        .optional_integer("failing_since")?
        .map(Timestamp::from_micros);
    let reason = match (why, failing_since) {
        (Disable::Gone(reason), _) => reason.to_owned(),
        (Disable::FailingBefore(_), Some(since)) => {
            format!("every delivery has failed since {since}")
        }
        (Disable::FailingBefore(_), None) => "every delivery has failed".to_owned(),
    };
    let audit = AuditRecord {
        id: AuditId::new(),
        org_id: attempt.org_id,
        api_key_id: None,
        action: AuditAction::EndpointDisabled,
        target_id: attempt.endpoint_id.to_string(),
        occurred_at: attempt.occurred_at,
        request_id: None,
        reason: Some(reason),
    };
    tx.execute(insert_audit(&audit)).await?;
    Ok(Some(operational::endpoint_disabled(
        attempt.org_id,
        attempt.endpoint_id,
        &row.text("url")?,
        disabled_reason,
        failing_since,
        attempt.occurred_at,
    )))
}

/// Ends every pending delivery to a deleted endpoint as `dead`, with an attempt record saying
/// so, inside the deleting transaction.
pub(super) async fn abandon_pending<T: WriteTransaction>(
    tx: &mut T,
    endpoint_id: EndpointId,
    reason: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let pending = Statement::new(
        "SELECT d.id, d.org_id, d.event_id, d.attempts, d.sequence, e.event_type, e.ordering_key, p.url
         FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints p ON p.id = d.endpoint_id
         WHERE d.endpoint_id = ? AND d.status = 'pending'",
    );
    let rows = tx.fetch(pending.bind(endpoint_id.as_uuid())).await?;
    let mut abandoned = Vec::with_capacity(rows.len());
    for row in &rows {
        abandoned.push(Attempt {
            id: AttemptId::new(),
            org_id: OrgId::from_uuid(row.uuid("org_id")?),
            delivery_id: DeliveryId::from_uuid(row.uuid("id")?),
            endpoint_id,
            event_id: EventId::from_uuid(row.uuid("event_id")?),
            event_type: row.text("event_type")?,
            url: row.text("url")?,
            attempt: u32::try_from(row.integer("attempts")? + 1).unwrap_or(u32::MAX),
            outcome: Outcome::Dead,
            response_status: None,
            response_time_ms: 0,
            request_body_sha256: EMPTY_SHA256.to_owned(),
            request_body_bytes: 0,
            request_headers: Vec::new(),
            response_body_excerpt: None,
            error: Some(reason.to_owned()),
            next_attempt_at: None,
            occurred_at: at,
            sequence: row.optional_integer("sequence")?.map(i64::unsigned_abs),
            ordering_key: row.optional_text("ordering_key")?,
        });
    }
    let abandoned: Vec<&Attempt> = abandoned.iter().collect();
    in_chunks(tx, &abandoned, sql::insert_attempts).await?;
    let dead = Statement::new(
        "UPDATE deliveries SET status = 'dead', lease_token = NULL WHERE endpoint_id = ? AND status = 'pending'",
    );
    tx.execute(dead.bind(endpoint_id.as_uuid())).await?;
    Ok(())
}

/// Appends the `WHERE` clause of the feed's `filter`.
fn push_filters<'a>(query: &mut Statement<'a>, org_id: OrgId, filter: &'a AttemptFilter) {
    query.push(" WHERE org_id = ").push_bind(org_id.as_uuid());
    if let Some(endpoint_id) = filter.endpoint_id {
        query
            .push(" AND endpoint_id = ")
            .push_bind(endpoint_id.as_uuid());
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type);
    }
    if let Some(event_id) = filter.event_id {
        query.push(" AND event_id = ").push_bind(event_id.as_uuid());
    }
    if let Some(outcome) = filter.outcome {
        query.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if let Some(since) = filter.since {
        query
            .push(" AND occurred_at >= ")
            .push_bind(since.as_micros());
    }
    if let Some(until) = filter.until {
        query
            .push(" AND occurred_at < ")
            .push_bind(until.as_micros());
    }
    if let Some(min) = filter.http_status_min {
        query
            .push(" AND response_status >= ")
            .push_bind(i64::from(min));
    }
    if let Some(max) = filter.http_status_max {
        query
            .push(" AND response_status <= ")
            .push_bind(i64::from(max));
    }
}

pub(super) async fn list_attempts<B: Backend>(
    store: &B,
    org_id: OrgId,
    filter: &AttemptFilter,
    page: &PageRequest,
) -> Result<Page<Attempt>, StoreError> {
    let mut total = Statement::new("SELECT COUNT(*) AS n FROM attempts");
    push_filters(&mut total, org_id, filter);
    let mut select = Statement::new(format!("SELECT {ATTEMPT_COLUMNS} FROM attempts"));
    push_filters(&mut select, org_id, filter);
    super::read_page(store, total, select, page, attempt_from_row, |attempt| {
        attempt.id.as_uuid()
    })
    .await
}

pub(super) async fn get_attempt<B: Backend>(
    store: &B,
    org_id: OrgId,
    attempt_id: AttemptId,
) -> Result<Attempt, StoreError> {
    let select = Statement::new(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ? AND org_id = ?"
    ));
    let select = select.bind(attempt_id.as_uuid()).bind(org_id.as_uuid());
    attempt_from_row(&only(store.run(Pool::Read, select).await?)?)
}

pub(super) async fn list_sequenced<B: Backend>(
    store: &B,
    org_id: OrgId,
    endpoint_id: EndpointId,
    after_sequence: u64,
    limit: u32,
) -> Result<Vec<Sequenced>, StoreError> {
    let columns: Vec<String> = EVENT_COLUMNS
        .split(", ")
        .map(|column| format!("e.{column}"))
        .collect();
    let select = Statement::new(format!(
        "SELECT d.sequence AS sequence, d.status AS status, {} FROM deliveries d
         JOIN events e ON e.id = d.event_id
         WHERE d.endpoint_id = ? AND d.org_id = ? AND d.sequence > ?
         ORDER BY d.sequence LIMIT ?",
        columns.join(", ")
    ))
    .bind(endpoint_id.as_uuid())
    .bind(org_id.as_uuid())
    .bind(i64::try_from(after_sequence).unwrap_or(i64::MAX))
    .bind(i64::from(limit));
    let rows = store.run(Pool::Read, select).await?;
    rows.iter()
        .map(|row| {
            let status = match row.text("status")?.as_str() {
                "pending" => FeedStatus::Pending,
                "success" => FeedStatus::Delivered,
                "dead" => FeedStatus::Dead,
                _ => return Err(StoreError::Corrupt("unknown delivery status")),
            };
            Ok(Sequenced {
                sequence: row.integer("sequence")?.unsigned_abs(),
                status,
                event: event_from_row(row, "")?,
            })
        })
        .collect()
}

pub(super) async fn get_event<B: Backend>(
    store: &B,
    org_id: OrgId,
    event_id: EventId,
) -> Result<Event, StoreError> {
    let select = Statement::new(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = ? AND org_id = ?"
    ));
    let select = select.bind(event_id.as_uuid()).bind(org_id.as_uuid());
    event_from_row(&only(store.run(Pool::Read, select).await?)?, "")
}

/// The queue's counts in work bounded by the endpoints with pending deliveries and by
/// `count_limit`, never by the backlog: the oldest due delivery is the least of the
/// per-endpoint heads of `deliveries_pending_by_endpoint` (the loose scan the claim's
/// `due_endpoints` does), and each count walks that index endpoint by endpoint (a range each,
/// due ones below `now`, scheduled ones above it) and stops after `count_limit` rows, so a
/// count that reaches it means "at least that many".
pub(super) async fn queue_stats<B: Backend>(
    store: &B,
    now: Timestamp,
    count_limit: u64,
) -> Result<QueueStats, StoreError> {
    let limit = i64::try_from(count_limit).unwrap_or(i64::MAX);
    let select = Statement::new(format!(
        "{} SELECT \
         (SELECT MIN(head) FROM (SELECT (SELECT next_attempt_at FROM deliveries \
            WHERE endpoint_id = pending.id AND status = 'pending' ORDER BY next_attempt_at LIMIT 1) \
            AS head FROM pending WHERE id IS NOT NULL) AS heads) AS oldest, \
         (SELECT COUNT(*) FROM (SELECT 1 AS one FROM pending JOIN deliveries d \
            ON d.endpoint_id = pending.id AND d.status = 'pending' AND d.next_attempt_at <= ? \
            WHERE pending.id IS NOT NULL LIMIT ?) AS capped) AS due, \
         (SELECT COUNT(*) FROM (SELECT 1 AS one FROM pending JOIN deliveries d \
            ON d.endpoint_id = pending.id AND d.status = 'pending' AND d.next_attempt_at > ? \
            WHERE pending.id IS NOT NULL LIMIT ?) AS capped) AS scheduled",
        sql::PENDING_ENDPOINTS
    ));
    let select = select
        .bind(now.as_micros())
        .bind(limit)
        .bind(now.as_micros())
        .bind(limit);
    let row = only(store.run(Pool::Read, select).await?)?;
    let due = row.integer("due")?.unsigned_abs();
    let leased = store.leased_but_due(now).min(due);
    Ok(QueueStats {
        due: due - leased,
        scheduled: (row.integer("scheduled")?.unsigned_abs() + leased).min(count_limit),
        oldest_due_at: row
            .optional_integer("oldest")?
            .filter(|oldest| *oldest <= now.as_micros())
            .map(Timestamp::from_micros),
    })
}

pub(super) async fn purge_expired<B: Backend>(
    store: &B,
    batch: &PurgeBatch,
) -> Result<PurgeReport, StoreError> {
    let size = i64::from(batch.size);
    let mut tx = store.begin().await?;
    let attempts = Statement::new(
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE occurred_at < ? LIMIT ?)",
    );
    let attempts = attempts.bind(batch.attempts_before.as_micros()).bind(size);
    let attempts = tx.execute(attempts).await?;
    // The next `size` expired events in (created_at, id) order, kept ones included: a batch
    // looks at no more than its size, however many expired events still have a delivery
    // pending (a paused endpoint's, say), and the next batch goes on after them. (Filtering
    // the pending ones out in the query would walk past all of them on every batch, inside
    // the write transaction.) The range is on `created_at` alone, so that `events_by_age`
    // bounds it; the id breaks ties in the order and the filter. Pending deliveries are
    // looked up after the limit, in a scalar subquery with a `LIMIT`: PostgreSQL never hashes
    // one, so it probes `deliveries_by_event` for each of the batch rather than reading every
    // pending delivery (a backlog's million) to hash them, as it may for an `EXISTS`.
    let (after_created, after_id) = batch.events_after.map_or((i64::MIN, Uuid::nil()), |at| {
        (at.created_at.as_micros(), at.event_id.as_uuid())
    });
    let expired = Statement::new(
        "SELECT id, created_at,
           (SELECT 1 FROM deliveries d WHERE d.event_id = expired.id AND d.status = 'pending' LIMIT 1)
             IS NOT NULL AS pending
         FROM (SELECT id, created_at FROM events
               WHERE created_at < ? AND created_at >= ? AND (created_at > ? OR id > ?)
               ORDER BY created_at, id
               LIMIT ?) AS expired
         ORDER BY created_at, id",
    );
    let expired = expired
        .bind(batch.events_before.as_micros())
        .bind(after_created)
        .bind(after_created)
        .bind(after_id)
        .bind(size);
    let expired = tx.fetch(expired).await?;
    let mut events = 0;
    let mut events_reached = batch.events_after;
    for row in &expired {
        let event_id = EventId::from_uuid(row.uuid("id")?);
        events_reached = Some(PurgePosition {
            created_at: Timestamp::from_micros(row.integer("created_at")?),
            event_id,
        });
        if row.boolean("pending")? {
            continue;
        }
        // Conditioned again, not only by the read above: on PostgreSQL a recovery may revive
        // one of its deliveries (or add a missing one) in between, and that one must stay.
        let deliveries =
            Statement::new("DELETE FROM deliveries WHERE event_id = ? AND status <> 'pending'");
        tx.execute(deliveries.bind(event_id.as_uuid())).await?;
        let event = Statement::new(
            "DELETE FROM events WHERE id = ?
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'pending')",
        );
        events += tx.execute(event.bind(event_id.as_uuid())).await?;
    }
    // Portal sessions are minted per visit: each goes a day after it expired (the day keeps
    // it readable for whoever investigates a session that just ended).
    let sessions = Statement::new(
        "DELETE FROM api_keys WHERE id IN
           (SELECT id FROM api_keys WHERE expires_at IS NOT NULL AND expires_at < ? LIMIT ?)",
    );
    let a_day_ago = Timestamp::now().add(chrono::Duration::days(-1));
    tx.execute(sessions.bind(a_day_ago.as_micros()).bind(size))
        .await?;
    tx.commit().await?;
    Ok(PurgeReport {
        events,
        attempts,
        events_reached,
        events_done: expired.len() < batch.size as usize,
    })
}

pub(super) async fn release_all_leases<B: Backend>(store: &B) -> Result<(), StoreError> {
    store.forget_leases();
    // A delivery leased in its row has its lease's end as its due time: due again now. (SQLite
    // keeps its leases in memory, but earlier builds kept them in the rows, and a run of an
    // ordering key hands its turn on in them.) A parked delivery stays parked, token or not:
    // its key's earlier delivery is still pending.
    let release = Statement::new(format!(
        "UPDATE deliveries SET next_attempt_at = {}(next_attempt_at, ?), lease_token = NULL
         WHERE status = 'pending' AND lease_token IS NOT NULL AND next_attempt_at <> {}",
        B::DIALECT.least(),
        sql::PARKED
    ));
    let release = release.bind(Timestamp::now().as_micros());
    super::write_alone(store, release).await.map(drop)
}
