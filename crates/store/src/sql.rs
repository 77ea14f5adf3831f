//! Statements whose text is the same on both backends, built with sqlx's [`QueryBuilder`] so
//! each backend gets its own placeholders (`?` or `$n`). Anything dialect-specific stays in
//! the backend's module; the backends only run what is built here.
//!
//! The bulk statements (many rows per statement) are what keep the worker's database work
//! per delivery small: a statement costs a round trip (a thread hand-off on SQLite, a network
//! round trip on PostgreSQL) whatever its row count.

use herald_domain::{Attempt, DeliveryId, EndpointId, Event, Timestamp};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use crate::AttemptRecording;
use crate::queue::{ClaimRequest, ClaimScope, LeaseToken, delivery_status};
use crate::rows::{ATTEMPT_COLUMNS, EVENT_COLUMNS, headers_json};

/// Rows per bulk statement: under both backends' bind-parameter limits (SQLite 32,766,
/// PostgreSQL 65,535) with 18 parameters a row.
pub(crate) const BULK_ROWS: usize = 500;

/// Whether a statement of `rows` rows is worth keeping prepared in the connection's statement
/// cache. Each row count is a different statement text, and a prepared statement of hundreds
/// of rows is a program of hundreds of kilobytes: cached by the hundred, as batch sizes vary,
/// they held tens of megabytes per connection. Small shapes recur (one publish, a few
/// attempts), and so does a full chunk of [`BULK_ROWS`] (large batches), so those stay cached;
/// the rest are prepared for their one use, which costs little beside executing them.
pub(crate) fn worth_preparing(rows: usize) -> bool {
    rows <= 16 || rows == BULK_ROWS
}

/// Defines, in a backend's module, the chunked forms of the bulk inserts below for the
/// database type `$db` and its transaction type `$transaction`: `insert_attempts`, `insert_events` and `insert_pending_deliveries`,
/// each running [`BULK_ROWS`] rows a statement in the caller's transaction. A macro, not a
/// generic function: sqlx's `QueryBuilder` can only be executed where its argument lifetime
/// is a concrete backend's, which a function generic over the database cannot name.
macro_rules! chunked_inserts {
    ($db:ty, $transaction:ty) => {
        /// Runs `$statement` (built from `$chunk`) for each chunk of `$rows`.
        macro_rules! in_chunks {
            ($tx:expr, $rows:expr, |$chunk:ident| $statement:expr) => {{
                for $chunk in $rows.chunks($crate::sql::BULK_ROWS) {
                    $statement
                        .build()
                        .persistent($crate::sql::worth_preparing($chunk.len()))
                        .execute(&mut **$tx)
                        .await
                        .map_err($crate::map_error)?;
                }
                Ok(())
            }};
        }

        /// Stores attempts, [`sql::BULK_ROWS`] a statement.
        async fn insert_attempts(
            tx: &mut $transaction,
            attempts: &[&herald_domain::Attempt],
        ) -> Result<(), $crate::StoreError> {
            in_chunks!(
                tx,
                attempts,
                |chunk| $crate::sql::insert_attempts::<$db, _>(chunk.iter().copied())
            )
        }

        /// Stores events, [`sql::BULK_ROWS`] a statement.
        async fn insert_events(
            tx: &mut $transaction,
            events: &[&herald_domain::Event],
        ) -> Result<(), $crate::StoreError> {
            in_chunks!(tx, events, |chunk| $crate::sql::insert_events::<$db, _>(
                chunk.iter().copied()
            ))
        }

        /// Stores new pending deliveries, [`sql::BULK_ROWS`] a statement.
        async fn insert_pending_deliveries(
            tx: &mut $transaction,
            deliveries: &[$crate::sql::NewDelivery<'_>],
        ) -> Result<(), $crate::StoreError> {
            in_chunks!(tx, deliveries, |chunk| {
                $crate::sql::insert_pending_deliveries::<$db, _>(chunk)
            })
        }
    };
}
pub(crate) use chunked_inserts;

/// Readiness's probe of a store whose writes failed: one row rewritten in a transaction of its
/// own (migration 0005) with [`WRITE_PROBE_BYTES`] of uncompressed ballast, so a disk with room
/// for a few bytes but not for a publish does not pass for writable.
pub(crate) fn write_probe(dialect: Dialect) -> String {
    let ballast = match dialect {
        Dialect::Sqlite => format!("zeroblob({WRITE_PROBE_BYTES})"),
        // The column is stored uncompressed (STORAGE EXTERNAL), so zeros take their size.
        Dialect::Postgres => format!("decode(repeat('00', {WRITE_PROBE_BYTES}), 'hex')"),
    };
    format!(
        "INSERT INTO write_probe (id, probes, ballast) VALUES (1, 1, {ballast}) \
         ON CONFLICT (id) DO UPDATE SET probes = write_probe.probes + 1, ballast = excluded.ballast"
    )
}

/// The probe's size: about what a group commit of a few dozen publishes writes.
pub(crate) const WRITE_PROBE_BYTES: usize = 64 << 10;

/// Which backend a statement is for, where the text must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// One writer, no row locks; a planner that needs telling which side of a join to probe.
    Sqlite,
    /// Row locks: a claim skips rows another node is claiming (`FOR UPDATE SKIP LOCKED`), so
    /// nodes claiming at once never take the same row and never wait for each other.
    Postgres,
}

/// `UPDATE deliveries … RETURNING id`: takes the claimable deliveries `request` asks for,
/// moving each one's due time to the end of its lease and stamping it with `token`. A leased
/// delivery is thereby not due again until its lease lapses, which is what makes a claim read
/// only rows it may take. (PostgreSQL's claim; SQLite keeps its leases in memory and reads
/// [`due_deliveries`] instead.)
pub(crate) fn claim<'a, DB>(request: &'a ClaimRequest, token: LeaseToken) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
{
    let now = request.now.as_micros();
    let lease_until =
        now.saturating_add(i64::try_from(request.lease.as_micros()).unwrap_or(i64::MAX));
    let mut query = QueryBuilder::new("UPDATE deliveries SET next_attempt_at = ");
    query.push_bind(lease_until);
    query.push(", lease_token = ");
    query.push_bind(token.as_uuid());
    query.push(" WHERE id IN (");
    push_due_selection(&mut query, request, "id", Dialect::Postgres);
    query.push(") RETURNING id");
    query
}

/// `SELECT id, endpoint_id …`: the due deliveries `request` asks for, oldest first, without
/// taking them (SQLite's claim reads this, then leases in memory).
pub(crate) fn due_deliveries<'a, DB>(request: &'a ClaimRequest) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("");
    push_due_selection(&mut query, request, "id, endpoint_id", Dialect::Sqlite);
    query
}

/// The selection of a claim: `SELECT <columns>` of the due deliveries of the endpoints
/// `request` names, one short range of the per-endpoint index each, oldest first. A claim over
/// every endpoint is first turned into such a list ([`due_endpoints`]).
fn push_due_selection<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    request: &'a ClaimRequest,
    columns: &str,
    dialect: Dialect,
) where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
{
    let now = request.now.as_micros();
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let ClaimScope::Endpoints(endpoints) = &request.scope else {
        // Nothing to read: the backends resolve a claim over every endpoint first.
        query.push(format!("SELECT {columns} FROM deliveries WHERE 1 = 0"));
        return;
    };
    query.push(format!("SELECT {columns} FROM ("));
    for (position, (endpoint_id, most)) in endpoints.iter().enumerate() {
        if position > 0 {
            query.push(" UNION ALL ");
        }
        query.push(format!(
            "SELECT {columns} FROM (SELECT id, endpoint_id FROM deliveries WHERE endpoint_id = "
        ));
        query.push_bind(endpoint_id.as_uuid());
        query.push(" AND status = 'pending' AND next_attempt_at <= ");
        query.push_bind(now);
        query.push(" ORDER BY next_attempt_at LIMIT ");
        query.push_bind(i64::from(*most));
        query.push(lock);
        query.push(format!(") AS endpoint_{position}"));
    }
    query.push(") AS refill LIMIT ");
    query.push_bind(i64::from(request.limit));
}

/// `SELECT endpoint_id …`: the endpoints that have deliveries due at `now`, the one with the
/// oldest due delivery first, at most `most`.
///
/// A loose scan of the per-endpoint index: from one endpoint with pending deliveries to the
/// next (an index seek each), and for each its oldest pending delivery (another). Its cost
/// follows the number of endpoints with pending deliveries, not the number of deliveries
/// due: a claim over every endpoint used to walk the due index past the whole backlog of the
/// endpoints it skipped (full ones, a hanging endpoint's thousands), and took tens of
/// milliseconds where this takes a fraction of one.
pub(crate) fn due_endpoints<'a, DB>(now: Timestamp, most: u32) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "WITH RECURSIVE pending (id) AS (\
         SELECT (SELECT endpoint_id FROM deliveries WHERE status = 'pending' ORDER BY endpoint_id LIMIT 1) \
         UNION ALL \
         SELECT (SELECT endpoint_id FROM deliveries WHERE status = 'pending' AND endpoint_id > pending.id \
         ORDER BY endpoint_id LIMIT 1) FROM pending WHERE pending.id IS NOT NULL) \
         SELECT id FROM (SELECT id, (SELECT next_attempt_at FROM deliveries \
         WHERE endpoint_id = pending.id AND status = 'pending' ORDER BY next_attempt_at LIMIT 1) AS oldest \
         FROM pending WHERE id IS NOT NULL) AS heads WHERE oldest <= ",
    );
    query.push_bind(now.as_micros());
    query.push(" ORDER BY oldest LIMIT ");
    query.push_bind(i64::from(most));
    query
}

/// `INSERT INTO attempts … ON CONFLICT (id) DO NOTHING` for up to [`BULK_ROWS`] attempts:
/// storing the same attempt again (a retried batch whose first commit succeeded unseen)
/// changes nothing.
pub(crate) fn insert_attempts<'a, DB, I>(attempts: I) -> QueryBuilder<'a, DB>
where
    DB: Database,
    I: IntoIterator<Item = &'a Attempt>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) "));
    query.push_values(attempts, |mut row, attempt| {
        row.push_bind(attempt.id.as_uuid())
            .push_bind(attempt.org_id.as_uuid())
            .push_bind(attempt.delivery_id.as_uuid())
            .push_bind(attempt.endpoint_id.as_uuid())
            .push_bind(attempt.event_id.as_uuid())
            .push_bind(attempt.event_type.as_str())
            .push_bind(attempt.url.as_str())
            .push_bind(i64::from(attempt.attempt))
            .push_bind(attempt.outcome.as_str())
            .push_bind(attempt.response_status.map(i64::from))
            .push_bind(i64::try_from(attempt.response_time_ms).unwrap_or(i64::MAX))
            .push_bind(attempt.request_body_sha256.as_str())
            .push_bind(i64::try_from(attempt.request_body_bytes).unwrap_or(i64::MAX))
            .push_bind(headers_json(&attempt.request_headers))
            .push_bind(attempt.response_body_excerpt.as_deref())
            .push_bind(attempt.error.as_deref())
            .push_bind(attempt.next_attempt_at.map(|at| at.as_micros()))
            .push_bind(attempt.occurred_at.as_micros());
    });
    query.push(" ON CONFLICT (id) DO NOTHING");
    query
}

/// `INSERT INTO events …` for up to [`BULK_ROWS`] events.
pub(crate) fn insert_events<'a, DB, I>(events: I) -> QueryBuilder<'a, DB>
where
    DB: Database,
    I: IntoIterator<Item = &'a Event>,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
    query.push_values(events, |mut row, event| {
        row.push_bind(event.id.as_uuid())
            .push_bind(event.org_id.as_uuid())
            .push_bind(event.event_type.as_str())
            .push_bind(event.data.as_str())
            .push_bind(event.idempotency_key.as_deref())
            .push_bind(event.origin.as_str())
            .push_bind(event.created_at.as_micros());
    });
    query
}

/// A delivery to insert: the event fanned out to one endpoint.
pub(crate) struct NewDelivery<'a> {
    pub id: DeliveryId,
    pub event: &'a Event,
    pub endpoint_id: EndpointId,
}

/// `INSERT INTO deliveries …` for up to [`BULK_ROWS`] new deliveries, each pending and due at
/// its event's creation.
pub(crate) fn insert_pending_deliveries<'a, DB, I>(deliveries: I) -> QueryBuilder<'a, DB>
where
    DB: Database,
    I: IntoIterator<Item = &'a NewDelivery<'a>>,
    i64: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at) ",
    );
    query.push_values(deliveries, |mut row, delivery| {
        row.push_bind(delivery.id.as_uuid())
            .push_bind(delivery.event.org_id.as_uuid())
            .push_bind(delivery.event.id.as_uuid())
            .push_bind(delivery.endpoint_id.as_uuid())
            .push_bind("pending")
            .push_bind(0_i64)
            .push_bind(delivery.event.created_at.as_micros())
            .push_bind(delivery.event.created_at.as_micros());
    });
    query
}

/// Who checks, when an attempt is recorded, that its delivery still carries the lease the
/// attempt was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseCheck {
    /// The settle statement compares the row's `lease_token` (leases kept in the rows).
    InStatement,
    /// The caller did, before the statement (leases kept in the process's memory).
    ByCaller,
}

/// Moves up to [`BULK_ROWS`] deliveries on after their attempts (rescheduled or finished,
/// lease released), each only while it still carries the lease its attempt was made under
/// (checked as `check` says) and is still pending.
pub(crate) fn settle_deliveries<'a, DB, I>(
    recordings: I,
    dialect: Dialect,
    check: LeaseCheck,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    I: IntoIterator<Item = &'a AttemptRecording>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query =
        QueryBuilder::new("WITH settled (id, lease_token, status, attempts, retry_at) AS (");
    query.push_values(recordings, |mut row, recording| {
        let attempt = &recording.attempt;
        row.push_bind(attempt.delivery_id.as_uuid())
            .push_bind(recording.lease.as_uuid())
            .push_bind(delivery_status(attempt.outcome))
            .push_bind(i64::from(attempt.attempt))
            .push_bind(attempt.next_attempt_at.map(|at| at.as_micros()));
    });
    // Each settled row must be found by primary key. Without statistics SQLite's planner
    // turns the join around for a few hundred rows, scanning every pending delivery and
    // probing the list; a unary `+` on the list's columns (SQLite only: PostgreSQL has no
    // unary plus for UUIDs) rules that out.
    let pin = match dialect {
        Dialect::Sqlite => "+",
        Dialect::Postgres => "",
    };
    let token_check = match check {
        LeaseCheck::InStatement => {
            format!(" AND deliveries.lease_token = {pin}settled.lease_token")
        }
        LeaseCheck::ByCaller => String::new(),
    };
    query.push(format!(
        ") UPDATE deliveries SET status = settled.status, attempts = settled.attempts, \
         next_attempt_at = COALESCE(settled.retry_at, deliveries.next_attempt_at), lease_token = NULL \
         FROM settled WHERE deliveries.id = {pin}settled.id{token_check} \
         AND deliveries.status = 'pending'"
    ));
    query
}

/// `UPDATE endpoints SET failing_since = NULL …` for endpoints that just had a success.
pub(crate) fn clear_failing<'a, DB, I>(endpoints: I) -> QueryBuilder<'a, DB>
where
    DB: Database,
    I: IntoIterator<Item = EndpointId>,
    Uuid: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "UPDATE endpoints SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN (",
    );
    let mut separated = query.separated(", ");
    for endpoint_id in endpoints {
        separated.push_bind(endpoint_id.as_uuid());
    }
    query.push(")");
    query
}
