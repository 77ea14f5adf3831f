//! The delivery half of the SQLite store: publishing with fan-out, claiming under a lease,
//! recording attempts, the feed, and retention.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use herald_domain::{
    Attempt, AttemptId, AuditAction, AuditId, AuditRecord, DeliveryId, Endpoint, EndpointId, Event,
    EventId, OrgId, Outcome, Timestamp,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::leases::Candidate;
use super::{SqliteStore, WriteTx, insert_audit};
use crate::map_error;
use crate::queue::{EndpointStep, LeaseToken, delivery_status, endpoint_steps};
use crate::rows::{
    ATTEMPT_COLUMNS, CLAIMED_DETAILS, EMPTY_SHA256, ENDPOINT_COLUMNS, EVENT_COLUMNS,
    attempt_from_row, claimed_from_row, endpoint_from_row, event_from_row,
};
use crate::sql::{self, Dialect, LeaseCheck, NewDelivery};
use crate::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, Page, PageRequest,
    PublishedEvent, PurgeReport, QueueStats, StoreError,
};

/// How long an idempotency key keeps returning the first event.
const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::hours(24);

sql::chunked_inserts!(Sqlite, WriteTx);

pub(super) async fn publish_events(
    store: &SqliteStore,
    events: &[Event],
) -> Result<Vec<PublishedEvent>, StoreError> {
    let mut tx = store.begin().await?;
    let mut endpoints_by_org: HashMap<OrgId, Vec<Endpoint>> = HashMap::new();
    let mut published = Vec::with_capacity(events.len());
    let mut deliveries = Vec::new();
    // New events and their deliveries are inserted together, except that an idempotency key
    // is looked up only after everything before it is stored, so a key repeated within one
    // batch finds its first use and that event's fan-out.
    let mut new_events: Vec<&Event> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(key) = &event.idempotency_key {
            insert_events(&mut tx, &new_events).await?;
            insert_pending_deliveries(&mut tx, &deliveries).await?;
            new_events.clear();
            deliveries.clear();
            let earlier = sqlx::query(
                "SELECT id, created_at FROM events WHERE org_id = ? AND idempotency_key = ?",
            )
            .bind(event.org_id.as_uuid())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
            if let Some(earlier) = earlier {
                let earlier_id: Uuid = earlier.try_get("id").map_err(map_error)?;
                let earlier_at =
                    Timestamp::from_micros(earlier.try_get("created_at").map_err(map_error)?);
                if earlier_at >= event.created_at.add(-IDEMPOTENCY_WINDOW) {
                    let fanned_out: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE event_id = ?")
                            .bind(earlier_id)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(map_error)?;
                    published.push(PublishedEvent {
                        event_id: EventId::from_uuid(earlier_id),
                        endpoints: u32::try_from(fanned_out).unwrap_or(u32::MAX),
                        duplicate: true,
                    });
                    continue;
                }
                // Past the window: the key is free again.
                sqlx::query("UPDATE events SET idempotency_key = NULL WHERE id = ?")
                    .bind(earlier_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
            }
        }
        new_events.push(event);
        if let Entry::Vacant(slot) = endpoints_by_org.entry(event.org_id) {
            slot.insert(live_active_endpoints(&mut tx, event.org_id).await?);
        }
        let mut fanned_out = 0u32;
        for endpoint in endpoints_by_org.get(&event.org_id).into_iter().flatten() {
            if endpoint.subscribes_to(&event.event_type) {
                deliveries.push(NewDelivery {
                    id: DeliveryId::new(),
                    event,
                    endpoint_id: endpoint.id,
                });
                fanned_out += 1;
            }
        }
        published.push(PublishedEvent {
            event_id: event.id,
            endpoints: fanned_out,
            duplicate: false,
        });
    }
    insert_events(&mut tx, &new_events).await?;
    insert_pending_deliveries(&mut tx, &deliveries).await?;
    tx.commit().await?;
    Ok(published)
}

async fn live_active_endpoints(
    tx: &mut WriteTx,
    org_id: OrgId,
) -> Result<Vec<Endpoint>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE org_id = ? AND deleted_at IS NULL AND active = 1"
    ))
    .bind(org_id.as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(map_error)?;
    rows.iter().map(endpoint_from_row).collect()
}

pub(super) async fn enqueue_replay(
    store: &SqliteStore,
    event: &Event,
    endpoint_id: EndpointId,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
    )
    .bind(endpoint_id.as_uuid())
    .bind(event.org_id.as_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_error)?;
    if live.is_none() {
        return tx.refuse(StoreError::NotFound).await;
    }
    insert_events(&mut tx, &[event]).await?;
    insert_pending_deliveries(
        &mut tx,
        &[NewDelivery {
            id: DeliveryId::new(),
            event,
            endpoint_id,
        }],
    )
    .await?;
    insert_audit(&mut tx, audit).await?;
    tx.commit().await
}

pub(super) async fn record_test_attempt(
    store: &SqliteStore,
    event: &Event,
    attempt: &Attempt,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    insert_events(&mut tx, &[event]).await?;
    sqlx::query(
        "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
         VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
    )
    .bind(attempt.delivery_id.as_uuid())
    .bind(event.org_id.as_uuid())
    .bind(event.id.as_uuid())
    .bind(attempt.endpoint_id.as_uuid())
    .bind(delivery_status(attempt.outcome))
    .bind(attempt.occurred_at.as_micros())
    .bind(event.created_at.as_micros())
    .execute(&mut *tx)
    .await
    .map_err(map_error)?;
    insert_attempts(&mut tx, &[attempt]).await?;
    tx.commit().await
}

/// A claim over every endpoint as a refill of the endpoints that have deliveries due (read
/// without locks); a refill as it is.
async fn resolve_scope(
    store: &SqliteStore,
    request: &ClaimRequest,
) -> Result<ClaimRequest, StoreError> {
    if matches!(request.scope, ClaimScope::Endpoints(_)) {
        return Ok(request.clone());
    }
    let due: Vec<Uuid> = sql::due_endpoints::<Sqlite>(request.now, request.endpoints_to_find())
        .build_query_scalar()
        .fetch_all(&store.claim_reader)
        .await
        .map_err(map_error)?;
    Ok(request.over_endpoints(due.into_iter().map(EndpointId::from_uuid)))
}

pub(super) async fn claim_due_deliveries(
    store: &SqliteStore,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let token = LeaseToken::new();
    let leased = take_leases(store, request, token).await?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let claimed = read_claimed(store, &leased, token).await;
    if claimed.is_err() {
        // Nobody was handed them: they are claimable again at once.
        store.leases.release(leased.iter().map(|id| (*id, token)));
    }
    claimed
}

/// Reads due deliveries from a reader connection and leases, in memory, those nobody holds
/// (`leases.rs` says why this is as safe as leases in rows). The read asks for as many more
/// rows of each endpoint as this process holds, since those are still due in the database.
async fn take_leases(
    store: &SqliteStore,
    request: &ClaimRequest,
    token: LeaseToken,
) -> Result<Vec<DeliveryId>, StoreError> {
    let _claiming = store.leases.claiming().await;
    let request = &resolve_scope(store, request).await?;
    if matches!(&request.scope, ClaimScope::Endpoints(endpoints) if endpoints.is_empty()) {
        return Ok(Vec::new());
    }
    let held = store.leases.held_per_endpoint(request.now);
    let read = widened_past(request, &held);
    // Its text varies with the endpoints it names: prepared for this read only, so the
    // readers' statement caches do not fill with one-off programs.
    let rows = sql::due_deliveries::<Sqlite>(&read)
        .build()
        .persistent(false)
        .fetch_all(&store.claim_reader)
        .await
        .map_err(map_error)?;
    let candidates = rows
        .iter()
        .map(|row| {
            Ok(Candidate {
                delivery_id: DeliveryId::from_uuid(row.try_get("id")?),
                endpoint_id: EndpointId::from_uuid(row.try_get("endpoint_id")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(map_error)?;
    let lease = chrono::Duration::from_std(request.lease).unwrap_or(chrono::Duration::MAX);
    Ok(store.leases.lease(
        &candidates,
        token,
        request.now,
        request.now.add(lease),
        usize::try_from(request.limit).unwrap_or(usize::MAX),
        |endpoint_id| request.most_for(endpoint_id),
    ))
}

/// A refill with room for the deliveries `held` (per endpoint), which a read finds still due.
fn widened_past(request: &ClaimRequest, held: &HashMap<EndpointId, u32>) -> ClaimRequest {
    let mut read = request.clone();
    if let ClaimScope::Endpoints(endpoints) = &mut read.scope {
        for (endpoint_id, most) in endpoints.iter_mut() {
            let count = held.get(endpoint_id).copied().unwrap_or(0);
            *most = most.saturating_add(count);
            read.limit = read.limit.saturating_add(count);
        }
    }
    read
}

/// What to send for deliveries just leased, read beside the writer: nothing the read needs can
/// go while the deliveries are pending (an endpoint changed meanwhile is read as it is now,
/// which is what the attempt must use).
async fn read_claimed(
    store: &SqliteStore,
    leased: &[DeliveryId],
    token: LeaseToken,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut details = QueryBuilder::<Sqlite>::new(CLAIMED_DETAILS);
    let mut separated = details.separated(", ");
    for id in leased {
        separated.push_bind(id.as_uuid());
    }
    details.push(") ORDER BY d.created_at");
    let rows = details
        .build()
        .persistent(sql::worth_preparing(leased.len()))
        .fetch_all(&store.claim_reader)
        .await
        .map_err(map_error)?;
    rows.iter()
        .map(|row| claimed_from_row(row, &store.cipher, token))
        .collect()
}

pub(super) async fn record_attempts(
    store: &SqliteStore,
    recordings: &[AttemptRecording],
    disable_failing_before: Timestamp,
) -> Result<(), StoreError> {
    let leases = || {
        recordings
            .iter()
            .map(|recording| (recording.attempt.delivery_id, recording.lease))
    };
    // Only an attempt made under its delivery's current lease moves the delivery on; the
    // others (a lease that lapsed and was taken again) are recorded, nothing more.
    let current = store.leases.begin_settling(leases());
    let settling: Vec<&AttemptRecording> = recordings
        .iter()
        .zip(&current)
        .filter_map(|(recording, current)| current.then_some(recording))
        .collect();
    match write_attempts(store, recordings, &settling, disable_failing_before).await {
        Ok(()) => {
            store
                .leases
                .end(
                    settling
                        .iter()
                        .map(|recording| (recording.attempt.delivery_id, recording.lease)),
                )
                .await;
            Ok(())
        }
        Err(error) => {
            store.leases.abandon_settling(leases());
            Err(error)
        }
    }
}

/// One transaction: every attempt stored, the `settling` deliveries moved on, the endpoints'
/// runs of failures updated.
async fn write_attempts(
    store: &SqliteStore,
    recordings: &[AttemptRecording],
    settling: &[&AttemptRecording],
    disable_failing_before: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let attempts: Vec<&Attempt> = recordings
        .iter()
        .map(|recording| &recording.attempt)
        .collect();
    insert_attempts(&mut tx, &attempts).await?;
    for chunk in settling.chunks(sql::BULK_ROWS) {
        sql::settle_deliveries::<Sqlite, _>(
            chunk.iter().copied(),
            Dialect::Sqlite,
            LeaseCheck::ByCaller,
        )
        .build()
        .persistent(sql::worth_preparing(chunk.len()))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
    }
    for step in endpoint_steps(recordings) {
        match step {
            EndpointStep::ClearFailing(endpoints) => {
                sql::clear_failing::<Sqlite, _>(endpoints)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
            }
            EndpointStep::Failure(recording) => {
                let attempt = &recording.attempt;
                sqlx::query(
                    "UPDATE endpoints SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                )
                .bind(attempt.occurred_at.as_micros())
                .bind(attempt.endpoint_id.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
                match &recording.disable_endpoint {
                    Some(reason) => disable_endpoint(&mut tx, attempt, None, Some(reason)).await?,
                    None => {
                        disable_endpoint(&mut tx, attempt, Some(disable_failing_before), None)
                            .await?
                    }
                };
            }
        }
    }
    tx.commit().await
}

/// Sets an endpoint inactive (only when it is failing since before `failing_before`, if
/// given) and audits it with `reason`, or with when its failures began. Returns whether it
/// changed anything.
async fn disable_endpoint(
    tx: &mut WriteTx,
    attempt: &Attempt,
    failing_before: Option<Timestamp>,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let failing_since: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE endpoints SET active = 0, updated_at = MAX(?, updated_at + 1)
         WHERE id = ? AND active = 1 AND deleted_at IS NULL AND (? IS NULL OR failing_since < ?)
         RETURNING failing_since",
    )
    .bind(attempt.occurred_at.as_micros())
    .bind(attempt.endpoint_id.as_uuid())
    .bind(failing_before.map(|at| at.as_micros()))
    .bind(failing_before.map(|at| at.as_micros()))
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_error)?;
    let Some(failing_since) = failing_since else {
        return Ok(false);
    };
    let reason = match (reason, failing_since) {
        (Some(reason), _) => reason.to_owned(),
        (None, Some(since)) => format!(
            "every delivery has failed since {}",
            Timestamp::from_micros(since)
        ),
        (None, None) => "every delivery has failed".to_owned(),
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
    insert_audit(tx, &audit).await?;
    Ok(true)
}

/// Ends every pending delivery to a deleted endpoint as `dead`, with an attempt record saying
/// so, inside the deleting transaction.
pub(super) async fn abandon_pending(
    tx: &mut WriteTx,
    endpoint_id: EndpointId,
    reason: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT d.id, d.org_id, d.event_id, d.attempts, e.event_type, p.url
         FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints p ON p.id = d.endpoint_id
         WHERE d.endpoint_id = ? AND d.status = 'pending'",
    )
    .bind(endpoint_id.as_uuid())
    .fetch_all(&mut **tx)
    .await
    .map_err(map_error)?;
    let mut abandoned = Vec::with_capacity(rows.len());
    for row in &rows {
        let attempts: i64 = row.try_get("attempts").map_err(map_error)?;
        abandoned.push(Attempt {
            id: AttemptId::new(),
            org_id: OrgId::from_uuid(row.try_get("org_id").map_err(map_error)?),
            delivery_id: DeliveryId::from_uuid(row.try_get("id").map_err(map_error)?),
            endpoint_id,
            event_id: EventId::from_uuid(row.try_get("event_id").map_err(map_error)?),
            event_type: row.try_get("event_type").map_err(map_error)?,
            url: row.try_get("url").map_err(map_error)?,
            attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
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
        });
    }
    insert_attempts(tx, &abandoned.iter().collect::<Vec<_>>()).await?;
    sqlx::query("UPDATE deliveries SET status = 'dead', lease_token = NULL WHERE endpoint_id = ? AND status = 'pending'")
        .bind(endpoint_id.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(map_error)?;
    Ok(())
}

fn push_filters(query: &mut QueryBuilder<'_, Sqlite>, org_id: OrgId, filter: &AttemptFilter) {
    query.push(" WHERE org_id = ");
    query.push_bind(org_id.as_uuid());
    if let Some(endpoint_id) = filter.endpoint_id {
        query.push(" AND endpoint_id = ");
        query.push_bind(endpoint_id.as_uuid());
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ");
        query.push_bind(event_type.clone());
    }
    if let Some(outcome) = filter.outcome {
        query.push(" AND outcome = ");
        query.push_bind(outcome.as_str());
    }
    if let Some(since) = filter.since {
        query.push(" AND occurred_at >= ");
        query.push_bind(since.as_micros());
    }
    if let Some(until) = filter.until {
        query.push(" AND occurred_at < ");
        query.push_bind(until.as_micros());
    }
    if let Some(min) = filter.http_status_min {
        query.push(" AND response_status >= ");
        query.push_bind(i64::from(min));
    }
    if let Some(max) = filter.http_status_max {
        query.push(" AND response_status <= ");
        query.push_bind(i64::from(max));
    }
}

pub(super) async fn list_attempts(
    store: &SqliteStore,
    org_id: OrgId,
    filter: &AttemptFilter,
    page: &PageRequest,
) -> Result<Page<Attempt>, StoreError> {
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM attempts");
    push_filters(&mut count, org_id, filter);
    let total: i64 = count
        .build_query_scalar()
        .fetch_one(&store.reader)
        .await
        .map_err(map_error)?;

    let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT {ATTEMPT_COLUMNS} FROM attempts"));
    push_filters(&mut select, org_id, filter);
    if let Some(cursor) = page.cursor {
        select.push(" AND id < ");
        select.push_bind(cursor.id());
    }
    select.push(" ORDER BY id DESC LIMIT ");
    select.push_bind(i64::from(page.limit) + 1);
    let rows = select
        .build()
        .fetch_all(&store.reader)
        .await
        .map_err(map_error)?;
    let attempts = rows
        .iter()
        .map(attempt_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(
        attempts,
        page.limit,
        total.unsigned_abs(),
        |attempt| attempt.id.as_uuid(),
    ))
}

pub(super) async fn get_attempt(
    store: &SqliteStore,
    org_id: OrgId,
    attempt_id: AttemptId,
) -> Result<Attempt, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ? AND org_id = ?"
    ))
    .bind(attempt_id.as_uuid())
    .bind(org_id.as_uuid())
    .fetch_optional(&store.reader)
    .await
    .map_err(map_error)?
    .ok_or(StoreError::NotFound)?;
    attempt_from_row(&row)
}

pub(super) async fn get_event(
    store: &SqliteStore,
    org_id: OrgId,
    event_id: EventId,
) -> Result<Event, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = ? AND org_id = ?"
    ))
    .bind(event_id.as_uuid())
    .bind(org_id.as_uuid())
    .fetch_optional(&store.reader)
    .await
    .map_err(map_error)?
    .ok_or(StoreError::NotFound)?;
    event_from_row(&row, "")
}

pub(super) async fn queue_stats(
    store: &SqliteStore,
    now: Timestamp,
) -> Result<QueueStats, StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(next_attempt_at <= ?1), 0) AS due,
                COALESCE(SUM(next_attempt_at > ?1), 0) AS scheduled,
                MIN(next_attempt_at) AS oldest
         FROM deliveries WHERE status = 'pending'",
    )
    .bind(now.as_micros())
    .fetch_one(&store.reader)
    .await
    .map_err(map_error)?;
    let due: i64 = row.try_get("due").map_err(map_error)?;
    let scheduled: i64 = row.try_get("scheduled").map_err(map_error)?;
    let oldest: Option<i64> = row.try_get("oldest").map_err(map_error)?;
    // A leased delivery is still due in its row; like a leased row on PostgreSQL, it counts
    // as scheduled (for its lease's end) instead. The oldest due time includes it.
    let leased = store.leases.live(now).min(due.unsigned_abs());
    Ok(QueueStats {
        due: due.unsigned_abs() - leased,
        scheduled: scheduled.unsigned_abs() + leased,
        oldest_due_at: oldest
            .filter(|oldest| *oldest <= now.as_micros())
            .map(Timestamp::from_micros),
    })
}

pub(super) async fn purge_expired(
    store: &SqliteStore,
    events_before: Timestamp,
    attempts_before: Timestamp,
    batch: u32,
) -> Result<PurgeReport, StoreError> {
    let mut tx = store.begin().await?;
    let attempts = sqlx::query(
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE occurred_at < ? LIMIT ?)",
    )
    .bind(attempts_before.as_micros())
    .bind(i64::from(batch))
    .execute(&mut *tx)
    .await
    .map_err(map_error)?
    .rows_affected();
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM events WHERE created_at < ?
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'pending')
         LIMIT ?",
    )
    .bind(events_before.as_micros())
    .bind(i64::from(batch))
    .fetch_all(&mut *tx)
    .await
    .map_err(map_error)?;
    for event_id in &expired {
        sqlx::query("DELETE FROM deliveries WHERE event_id = ?")
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        sqlx::query("DELETE FROM events WHERE id = ?")
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
    }
    tx.commit().await?;
    Ok(PurgeReport {
        events: expired.len() as u64,
        attempts,
    })
}

pub(super) async fn release_all_leases(store: &SqliteStore) -> Result<(), StoreError> {
    store.leases.clear();
    // Earlier builds kept SQLite's leases in the rows, a leased delivery's due time being its
    // lease's end: such a delivery is due again now.
    sqlx::query(
        "UPDATE deliveries SET next_attempt_at = MIN(next_attempt_at, ?), lease_token = NULL
         WHERE status = 'pending' AND lease_token IS NOT NULL",
    )
    .bind(Timestamp::now().as_micros())
    .execute(&store.writer)
    .await
    .map_err(map_error)?;
    Ok(())
}
