//! Recovery, written once: what a recovery matches, starting one (or finding the identical one
//! still at work), and putting its matches back in the queue a chunk at a time.
//!
//! A chunk is one transaction that takes the oldest unfinished recovery (skipping, on
//! PostgreSQL, one another node is working on), looks at the next `batch` events of its
//! window, puts those it matches back in the queue and moves its cursor past them: so each
//! match is enqueued once, whichever node takes the chunk, and no transaction is ever large,
//! so a recovery of 100,000 events neither blocks the API nor holds up other endpoints'
//! deliveries.

use std::collections::BTreeSet;

use herald_domain::endpoint::subscription_matches;
use herald_domain::recovery::{Recovery, RecoveryScope, RecoveryStatus};
use herald_domain::{AuditRecord, Endpoint, EndpointId, OrgId, RecoveryId, Timestamp};

use super::delivery::filter_document;
use super::{count, only};
use crate::StoreError;
use crate::backend::{Backend, Pool, WriteTransaction};
use crate::rows::{ENDPOINT_COLUMNS, ReadRow, endpoint_from_row, event_from_row, events_json};
use crate::shared::insert_audit;
use crate::shared::ordering::{self, Revived};
use crate::sql::NewDelivery;
use crate::statement::Statement;

const RECOVERY_COLUMNS: &str = "id, org_id, endpoint_id, status, since, until, event_types, \
     include_missing, dry_run, matched, enqueued, created_at, finished_at";

pub(super) async fn start_recovery<B: Backend>(
    store: &B,
    recovery: &Recovery,
    fingerprint: &str,
    audit: &AuditRecord,
) -> Result<(Recovery, bool), StoreError> {
    // Two identical requests at once (several nodes, or a client retrying a slow request) may
    // both find nothing unfinished; the unique index on unfinished requests lets one insert,
    // and the other, refused, looks again and answers the recovery the first one stored.
    let mut tries = 0;
    loop {
        match try_start_recovery(store, recovery, fingerprint, audit).await {
            Err(StoreError::Conflict) if tries < 2 => tries += 1,
            outcome => return outcome,
        }
    }
}

async fn try_start_recovery<B: Backend>(
    store: &B,
    recovery: &Recovery,
    fingerprint: &str,
    audit: &AuditRecord,
) -> Result<(Recovery, bool), StoreError> {
    let mut tx = store.begin().await?;
    let Some(endpoint) = live_endpoint(&mut tx, recovery.org_id, recovery.endpoint_id).await?
    else {
        return tx.refuse(StoreError::NotFound).await;
    };
    let existing = Statement::new(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recoveries
         WHERE endpoint_id = ? AND fingerprint = ? AND status <> 'done'"
    ))
    .bind(recovery.endpoint_id.as_uuid())
    .bind(fingerprint);
    if let Some(row) = tx.fetch_first(existing).await? {
        // The same request while the first is at work: that one answers, and this request
        // still gets its audit record.
        let running = recovery_from_row(&row)?;
        let audit = audited(audit, &running);
        tx.execute(insert_audit(&audit)).await?;
        tx.commit().await?;
        return Ok((running, false));
    }
    let stored = insert_recovery(&mut tx, &endpoint, recovery, fingerprint).await?;
    tx.execute(insert_audit(&audited(audit, &stored))).await?;
    tx.commit().await?;
    Ok((stored, true))
}

/// Counts what `recovery` matches for `endpoint` and stores it, inside `tx`: a dry run is
/// done at once. Returns it as stored.
pub(super) async fn insert_recovery<T: WriteTransaction>(
    tx: &mut T,
    endpoint: &Endpoint,
    recovery: &Recovery,
    fingerprint: &str,
) -> Result<Recovery, StoreError> {
    let matched = count(
        tx,
        matches("SELECT COUNT(*) AS n", &recovery.scope, endpoint),
    )
    .await?;
    let mut stored = recovery.clone();
    stored.matched = u64::try_from(matched).unwrap_or(0);
    if stored.dry_run {
        stored.status = RecoveryStatus::Done;
        stored.finished_at = Some(stored.created_at);
    }
    let insert = Statement::new(
        "INSERT INTO recoveries (id, org_id, endpoint_id, status, since, until, event_types,
             include_missing, dry_run, fingerprint, matched, enqueued, chunks, created_at, finished_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
    )
    .bind(stored.id.as_uuid())
    .bind(stored.org_id.as_uuid())
    .bind(stored.endpoint_id.as_uuid())
    .bind(stored.status.as_str())
    .bind(stored.scope.since.as_micros())
    .bind(stored.scope.until.as_micros())
    .bind(stored.scope.event_types.as_deref().map(events_json))
    .bind(stored.scope.include_missing)
    .bind(stored.dry_run)
    .bind(fingerprint)
    .bind(matched)
    .bind(stored.created_at.as_micros())
    .bind(stored.finished_at.map(|at| at.as_micros()));
    tx.execute(insert).await?;
    Ok(stored)
}

pub(super) async fn get_recovery<B: Backend>(
    store: &B,
    org_id: OrgId,
    id: RecoveryId,
) -> Result<Recovery, StoreError> {
    let select = Statement::new(format!(
        "SELECT {RECOVERY_COLUMNS} FROM recoveries WHERE id = ? AND org_id = ?"
    ))
    .bind(id.as_uuid())
    .bind(org_id.as_uuid());
    recovery_from_row(&only(store.run(Pool::Read, select).await?)?)
}

pub(super) async fn advance_recoveries<B: Backend>(
    store: &B,
    now: Timestamp,
    batch: u32,
) -> Result<bool, StoreError> {
    // The recovery task asks every second whether there is work; almost always there is none.
    // Finding that out is a read (on the partial index of unfinished recoveries), so an idle
    // task never takes SQLite's one writer, nor opens a transaction on PostgreSQL.
    let unfinished = Statement::new("SELECT id FROM recoveries WHERE status <> 'done' LIMIT 1");
    if store.run(Pool::Read, unfinished).await?.is_empty() {
        return Ok(false);
    }
    let mut tx = store.begin().await?;
    let oldest = Statement::new(format!(
        "SELECT {RECOVERY_COLUMNS}, cursor_created_at, cursor_event_id FROM recoveries
         WHERE status <> 'done' ORDER BY created_at LIMIT 1{}",
        B::DIALECT.skip_locked()
    ));
    let Some(row) = tx.fetch_first(oldest).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    let recovery = recovery_from_row(&row)?;
    let cursor = row
        .optional_integer("cursor_created_at")?
        .zip(row.optional_uuid("cursor_event_id")?);
    let endpoint = live_endpoint(&mut tx, recovery.org_id, recovery.endpoint_id).await?;
    // An endpoint deleted since gets nothing more; its recovery is over.
    let (requeued, scanned, last) = match &endpoint {
        Some(endpoint) => {
            // The endpoint's sequence row first, before the chunk reads what is missing: two
            // recoveries of one endpoint advanced at once by two nodes then take turns, and
            // the second reads (in a statement begun after the first committed) the
            // deliveries the first inserted, rather than inserting its own for the same
            // events. A publish creating deliveries for the endpoint takes the same lock.
            ordering::lock_sequences(&mut tx, endpoint.id).await?;
            let rows = tx
                .fetch(chunk(&recovery.scope, endpoint, cursor, batch))
                .await?;
            let last = match rows.last() {
                Some(row) => Some((row.integer("created_at")?, row.uuid("id")?)),
                None => None,
            };
            // Rows are in event order; an event with several deliveries to the endpoint
            // comes once per delivery, and counts once.
            let mut scanned = 0_usize;
            let mut previous = None;
            let mut matched = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.uuid("id")?;
                if previous != Some(id) {
                    scanned += 1;
                    previous = Some(id);
                }
                if row.boolean("matched")? {
                    matched.push(row);
                }
            }
            let requeued = requeue(&mut tx, &matched, endpoint, now).await?;
            (requeued, scanned, last)
        }
        None => (0, 0, None),
    };
    let finished = scanned < usize::try_from(batch).unwrap_or(usize::MAX);
    let update = Statement::new(
        "UPDATE recoveries SET status = ?, enqueued = enqueued + ?, chunks = chunks + 1,
             cursor_created_at = ?, cursor_event_id = ?, finished_at = ?
         WHERE id = ?",
    )
    .bind(if finished {
        RecoveryStatus::Done.as_str()
    } else {
        RecoveryStatus::Running.as_str()
    })
    .bind(i64::try_from(requeued).unwrap_or(i64::MAX))
    .bind(
        last.map(|(created_at, _)| created_at)
            .or(cursor.map(|(at, _)| at)),
    )
    .bind(last.map(|(_, id)| id).or(cursor.map(|(_, id)| id)))
    .bind(finished.then_some(now.as_micros()))
    .bind(recovery.id.as_uuid());
    tx.execute(update).await?;
    tx.commit().await?;
    Ok(true)
}

/// Puts the matched rows back in the queue, due now: a dead delivery goes back to pending with
/// a fresh schedule (its attempt count kept, so attempt numbers go on); an event the endpoint
/// never got gets a new delivery, unless the endpoint's filter turns it away (as fan-out did:
/// a missing event is often one the filter never took). Returns how many.
async fn requeue<T: WriteTransaction>(
    tx: &mut T,
    rows: &[T::Row],
    endpoint: &Endpoint,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let endpoint_id = endpoint.id;
    let mut dead = Vec::new();
    let mut missing = Vec::new();
    for row in rows {
        match row.optional_uuid("delivery_id")? {
            Some(id) => dead.push(Revived {
                id,
                ordering_key: row.optional_text("delivery_ordering_key")?,
                sequence: row.optional_integer("delivery_sequence")?,
            }),
            None => {
                let event = event_from_row(row, "")?;
                let taken = endpoint
                    .filter
                    .as_ref()
                    .is_none_or(|filter| filter.matches(&filter_document(&event)));
                if taken {
                    missing.push(event);
                }
            }
        }
    }
    let mut requeued = ordering::revive(tx, endpoint_id, &dead, now).await?;
    let mut new: Vec<NewDelivery<'_>> = missing
        .iter()
        .map(|event| NewDelivery::new(event.org_id, event, endpoint_id))
        .collect();
    ordering::insert_deliveries(tx, &mut new, &BTreeSet::new()).await?;
    requeued += u64::try_from(new.len()).unwrap_or(u64::MAX);
    Ok(requeued)
}

/// `select` over what `scope` matches for `endpoint` (see [`RecoveryScope`]): the
/// organization's events in the window, apart from the test operation's, with a dead delivery
/// to the endpoint, or (`include_missing`) with none although the endpoint subscribes to their
/// type now and existed when they were published. Events with a pending or successful delivery
/// to it are never matched.
fn matches<'a>(select: &str, scope: &'a RecoveryScope, endpoint: &'a Endpoint) -> Statement<'a> {
    let mut statement = Statement::new(format!(
        "{select} FROM events e LEFT JOIN deliveries d ON d.event_id = e.id AND d.endpoint_id = "
    ));
    statement.push_bind(endpoint.id.as_uuid()).push(" WHERE ");
    push_window(&mut statement, scope, endpoint);
    statement.push(" AND ");
    push_matched(&mut statement, scope, endpoint);
    statement
}

/// One chunk: the next `batch` events of the window after `cursor`, in event order, each with
/// its delivery to `endpoint` (if any) and whether the recovery matches it.
///
/// The chunk takes a run of the window's events and then looks at their deliveries, rather
/// than taking the next `batch` matches: asked for matches, PostgreSQL joined every event left
/// in the window to its delivery and sorted them to keep 500 whenever its statistics were not
/// yet those of the recovered rows (a table filled a minute before, the very case a recovery
/// follows): 314 ms a chunk in the middle of 20,000, a recovery's cost growing with the square
/// of its size (BENCHMARKS.md, the `recover` workload). Now only `batch` events are joined,
/// however the events are found; and the cursor moves over events that do not match too.
fn chunk<'a>(
    scope: &'a RecoveryScope,
    endpoint: &'a Endpoint,
    cursor: Option<(i64, uuid::Uuid)>,
    batch: u32,
) -> Statement<'a> {
    let mut statement = Statement::new(
        "SELECT e.id, e.org_id, e.event_type, e.data, e.idempotency_key, e.origin, \
         e.created_at, e.ordering_key, e.traceparent, d.id AS delivery_id, \
         d.ordering_key AS delivery_ordering_key, d.sequence AS delivery_sequence, \
         CASE WHEN ",
    );
    push_matched(&mut statement, scope, endpoint);
    statement.push(
        " THEN TRUE ELSE FALSE END AS matched \
         FROM (SELECT e.id, e.org_id, e.event_type, e.data, e.idempotency_key, e.origin, \
         e.created_at, e.ordering_key, e.traceparent FROM events e WHERE ",
    );
    push_window(&mut statement, scope, endpoint);
    if let Some((created_at, event_id)) = cursor {
        // After the cursor. The plain `>=` lets a scan of `events_by_age` start at the
        // cursor: with the `OR` alone, each chunk read the window from its start again.
        statement
            .push(" AND e.created_at >= ")
            .push_bind(created_at)
            .push(" AND (e.created_at > ")
            .push_bind(created_at)
            .push(" OR e.id > ")
            .push_bind(event_id)
            .push(")");
    }
    statement
        .push(" ORDER BY e.created_at, e.id LIMIT ")
        .push_bind(i64::from(batch))
        .push(") e LEFT JOIN deliveries d ON d.event_id = e.id AND d.endpoint_id = ")
        .push_bind(endpoint.id.as_uuid())
        .push(" ORDER BY e.created_at, e.id");
    statement
}

/// The window's conditions on the event `e`: the organization's, published in the window,
/// not the test operation's, of the recovery's types if it names any.
fn push_window<'a>(statement: &mut Statement<'a>, scope: &'a RecoveryScope, endpoint: &Endpoint) {
    statement
        .push("e.org_id = ")
        .push_bind(endpoint.org_id.as_uuid())
        .push(" AND e.created_at >= ")
        .push_bind(scope.since.as_micros())
        .push(" AND e.created_at < ")
        .push_bind(scope.until.as_micros())
        .push(" AND e.origin <> 'test'");
    if let Some(types) = &scope.event_types {
        statement
            .push(" AND e.event_type IN (")
            .push_list(types.iter().map(|event_type| event_type.as_str().into()))
            .push(")");
    }
}

/// Whether the event `e` of the window, joined to its delivery `d` to `endpoint` (if any), is
/// one to recover: the delivery is dead, or (`include_missing`) there is none although the
/// endpoint takes the event's type.
fn push_matched<'a>(
    statement: &mut Statement<'a>,
    scope: &'a RecoveryScope,
    endpoint: &'a Endpoint,
) {
    statement.push("(d.status = 'dead'");
    let taken = TakenTypes::of(endpoint, scope);
    if scope.include_missing && !taken.is_empty() {
        // Only published events (the platform's and Herald's operational ones): a replay was
        // meant for the endpoint it was replayed to.
        statement
            .push(" OR (d.id IS NULL AND e.origin IN ('publish', 'herald') AND e.created_at > ")
            .push_bind(endpoint.created_at.as_micros())
            .push(" AND ");
        taken.push_condition(statement);
        statement.push(")");
    }
    statement.push(")");
}

async fn live_endpoint<T: WriteTransaction>(
    tx: &mut T,
    org_id: OrgId,
    endpoint_id: EndpointId,
) -> Result<Option<Endpoint>, StoreError> {
    let select = Statement::new(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL"
    ))
    .bind(endpoint_id.as_uuid())
    .bind(org_id.as_uuid());
    tx.fetch_first(select)
        .await?
        .map(|row| endpoint_from_row(&row))
        .transpose()
}

/// The request's audit record, with the counts.
pub(super) fn audited(audit: &AuditRecord, recovery: &Recovery) -> AuditRecord {
    let mut audit = audit.clone();
    audit.reason = Some(format!(
        "recovery {}: {} events matched{}",
        recovery.id,
        recovery.matched,
        if recovery.dry_run { " (dry run)" } else { "" }
    ));
    audit
}

fn recovery_from_row(row: &impl ReadRow) -> Result<Recovery, StoreError> {
    let event_types = row
        .optional_text("event_types")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|_| StoreError::Corrupt("recovery event types are not a JSON array"))?;
    Ok(Recovery {
        id: RecoveryId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        endpoint_id: EndpointId::from_uuid(row.uuid("endpoint_id")?),
        status: RecoveryStatus::parse(&row.text("status")?)
            .ok_or(StoreError::Corrupt("unknown recovery status"))?,
        scope: RecoveryScope {
            since: Timestamp::from_micros(row.integer("since")?),
            until: Timestamp::from_micros(row.integer("until")?),
            event_types,
            include_missing: row.boolean("include_missing")?,
        },
        dry_run: row.boolean("dry_run")?,
        matched: u64::try_from(row.integer("matched")?).unwrap_or(0),
        enqueued: u64::try_from(row.integer("enqueued")?).unwrap_or(0),
        created_at: Timestamp::from_micros(row.integer("created_at")?),
        finished_at: row
            .optional_integer("finished_at")?
            .map(Timestamp::from_micros),
    })
}

/// The event types an endpoint takes now, as `matches` asks for them in SQL: its exact types,
/// and its wildcards as name prefixes (`*` takes everything).
struct TakenTypes<'a> {
    names: Vec<&'a str>,
    prefixes: Vec<&'a str>,
    everything: bool,
}

impl<'a> TakenTypes<'a> {
    /// What `endpoint` subscribes to, narrowed to the recovery's own list of types, if any.
    fn of(endpoint: &'a Endpoint, scope: &'a RecoveryScope) -> Self {
        if let Some(types) = &scope.event_types {
            let names = types
                .iter()
                .filter(|event_type| {
                    endpoint
                        .events
                        .iter()
                        .any(|subscribed| subscription_matches(subscribed, event_type))
                })
                .map(String::as_str)
                .collect();
            return Self {
                names,
                prefixes: Vec::new(),
                everything: false,
            };
        }
        let mut taken = Self {
            names: Vec::new(),
            prefixes: Vec::new(),
            everything: false,
        };
        for subscribed in &endpoint.events {
            match subscribed.strip_suffix('*') {
                None => taken.names.push(subscribed),
                Some("") => taken.everything = true,
                Some(prefix) => taken.prefixes.push(prefix),
            }
        }
        taken
    }

    fn is_empty(&self) -> bool {
        !self.everything && self.names.is_empty() && self.prefixes.is_empty()
    }

    /// `(e.event_type IN (…) OR substr(e.event_type, 1, n) = ? …)`. The prefix length is a
    /// literal: PostgreSQL finds no `substr` for a bound `BIGINT`. (`LIKE` is no substitute:
    /// SQLite's ignores ASCII case.)
    fn push_condition(&self, statement: &mut Statement<'a>) {
        if self.everything {
            statement.push("TRUE");
            return;
        }
        statement.push("(");
        let mut first = true;
        if !self.names.is_empty() {
            statement
                .push("e.event_type IN (")
                .push_list(self.names.iter().map(|name| (*name).into()))
                .push(")");
            first = false;
        }
        for prefix in &self.prefixes {
            if !first {
                statement.push(" OR ");
            }
            first = false;
            statement
                .push(&format!(
                    "substr(e.event_type, 1, {}) = ",
                    prefix.chars().count()
                ))
                .push_bind(*prefix);
        }
        statement.push(")");
    }
}
