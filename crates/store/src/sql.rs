//! The statements that are built rather than written out: the claim, and the bulk inserts and
//! updates. Each is one text for both backends ([`Statement`] numbers the placeholders for
//! PostgreSQL); [`Dialect`] holds what the backends spell differently, and says why.
//!
//! The bulk statements (many rows per statement) are what keep the worker's database work
//! per delivery small: a statement costs a round trip (a thread hand-off on SQLite, a network
//! round trip on PostgreSQL) whatever its row count.

use herald_domain::{Attempt, DeliveryId, EndpointId, Event, OrgId, Timestamp};

use crate::AttemptRecording;
use crate::queue::{ClaimRequest, ClaimScope, LeaseToken, delivery_status};
use crate::rows::{ATTEMPT_COLUMNS, CLAIMED_DETAILS, EVENT_COLUMNS, headers_json};
use crate::statement::{Arg, Statement};

/// Rows per bulk statement: under both backends' bind-parameter limits (SQLite 32,766,
/// PostgreSQL 65,535) with 20 parameters a row.
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

impl Dialect {
    /// The larger of two values: SQLite's two-argument `MAX` is PostgreSQL's `GREATEST`.
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The smaller of two values: SQLite's two-argument `MIN` is PostgreSQL's `LEAST`.
    pub(crate) fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    /// Appended to a `SELECT` whose rows a transaction is about to change, so that another
    /// node's transaction passes them by instead of doing the same work: PostgreSQL's
    /// `FOR UPDATE SKIP LOCKED`; nothing on SQLite, whose one writer is alone anyway.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Put before a joined list's column that the table's primary key is compared with, so
    /// each row is found by primary key. Without statistics SQLite's planner turns such a
    /// join around for a few hundred rows, scanning every pending delivery and probing the
    /// list; a unary `+` on the list's side (SQLite only: PostgreSQL has no unary plus for
    /// UUIDs) rules that out.
    pub(crate) fn by_primary_key(self) -> &'static str {
        match self {
            Dialect::Sqlite => "+",
            Dialect::Postgres => "",
        }
    }
}

/// `UPDATE deliveries … RETURNING id`: takes the claimable deliveries `request` asks for,
/// moving each one's due time to the end of its lease and stamping it with `token`. A leased
/// delivery is thereby not due again until its lease lapses, which is what makes a claim read
/// only rows it may take. (PostgreSQL's claim; SQLite keeps its leases in memory and reads
/// [`due_deliveries`] instead.)
pub(crate) fn claim(request: &ClaimRequest, token: LeaseToken) -> Statement<'static> {
    let now = request.now.as_micros();
    let lease_until =
        now.saturating_add(i64::try_from(request.lease.as_micros()).unwrap_or(i64::MAX));
    // One statement takes the rows and reads what to send for them: a claim is a round trip
    // fewer, and the taken ids never travel to the node and back. The read sees the rows as
    // they were before the update, which changes nothing it reads.
    let mut query = Statement::new("WITH claimed AS (UPDATE deliveries SET next_attempt_at = ");
    query.push_bind(lease_until);
    query.push(", lease_token = ").push_bind(token.as_uuid());
    query.push(" WHERE id IN (");
    push_due_selection(&mut query, request, "id", Dialect::Postgres);
    query.push(") RETURNING id) ");
    query.push(CLAIMED_DETAILS);
    query.push("SELECT id FROM claimed) ORDER BY d.created_at");
    query
}

/// `SELECT id, endpoint_id …`: the due deliveries `request` asks for, oldest first, without
/// taking them (SQLite's claim reads this, then leases in memory).
pub(crate) fn due_deliveries(request: &ClaimRequest) -> Statement<'static> {
    let mut query = Statement::new("");
    push_due_selection(&mut query, request, "id, endpoint_id", Dialect::Sqlite);
    query
}

/// The selection of a claim: `SELECT <columns>` of the due deliveries of the endpoints
/// `request` names, one short range of the per-endpoint index each, oldest first. A claim over
/// every endpoint is first turned into such a list ([`due_endpoints`]).
fn push_due_selection(
    query: &mut Statement<'_>,
    request: &ClaimRequest,
    columns: &str,
    dialect: Dialect,
) {
    let now = request.now.as_micros();
    let lock = dialect.skip_locked();
    let ClaimScope::Endpoints(endpoints) = &request.scope else {
        // Nothing to read: the backends resolve a claim over every endpoint first.
        query.push(&format!("SELECT {columns} FROM deliveries WHERE 1 = 0"));
        return;
    };
    query.push(&format!("SELECT {columns} FROM ("));
    for (position, (endpoint_id, most)) in endpoints.iter().enumerate() {
        if position > 0 {
            query.push(" UNION ALL ");
        }
        query.push(&format!(
            "SELECT {columns} FROM (SELECT id, endpoint_id FROM deliveries WHERE endpoint_id = "
        ));
        query.push_bind(endpoint_id.as_uuid());
        query.push(" AND status = 'pending' AND next_attempt_at <= ");
        query.push_bind(now);
        query.push(" ORDER BY next_attempt_at LIMIT ");
        query.push_bind(i64::from(*most));
        query.push(lock);
        query.push(&format!(") AS endpoint_{position}"));
    }
    query.push(") AS refill LIMIT ");
    query.push_bind(i64::from(request.limit));
}

/// `WITH RECURSIVE pending (id) …`: the endpoints with pending deliveries, one index seek each
/// on the per-endpoint index (a loose scan), ending with a `NULL` row the readers skip. Its
/// cost follows the endpoints with work, not the deliveries pending.
pub(crate) const PENDING_ENDPOINTS: &str = "WITH RECURSIVE pending (id) AS (\
     SELECT (SELECT endpoint_id FROM deliveries WHERE status = 'pending' ORDER BY endpoint_id LIMIT 1) \
     UNION ALL \
     SELECT (SELECT endpoint_id FROM deliveries WHERE status = 'pending' AND endpoint_id > pending.id \
     ORDER BY endpoint_id LIMIT 1) FROM pending WHERE pending.id IS NOT NULL)";

/// `SELECT endpoint_id …`: the endpoints that have deliveries due at `now`, the one with the
/// oldest due delivery first, at most `most`.
///
/// A loose scan of the per-endpoint index: from one endpoint with pending deliveries to the
/// next (an index seek each), and for each its oldest pending delivery (another). Its cost
/// follows the number of endpoints with pending deliveries, not the number of deliveries
/// due: a claim over every endpoint used to walk the due index past the whole backlog of the
/// endpoints it skipped (full ones, a hanging endpoint's thousands), and took tens of
/// milliseconds where this takes a fraction of one.
pub(crate) fn due_endpoints(now: Timestamp, most: u32) -> Statement<'static> {
    Statement::new(format!(
        "{PENDING_ENDPOINTS} SELECT id FROM (SELECT id, (SELECT next_attempt_at FROM deliveries \
         WHERE endpoint_id = pending.id AND status = 'pending' ORDER BY next_attempt_at LIMIT 1) AS oldest \
         FROM pending WHERE id IS NOT NULL) AS heads WHERE oldest <= ? ORDER BY oldest LIMIT ?"
    ))
    .bind(now.as_micros())
    .bind(i64::from(most))
}

/// [`CLAIMED_DETAILS`] of the deliveries `ids`, oldest first: what to send for them.
pub(crate) fn claimed_details(
    ids: impl ExactSizeIterator<Item = DeliveryId>,
) -> Statement<'static> {
    let rows = ids.len();
    let mut query = Statement::new(CLAIMED_DETAILS);
    query.push_list(ids.map(|id| Arg::from(id.as_uuid())));
    query.push(") ORDER BY d.created_at");
    query.persistent(worth_preparing(rows))
}

/// `INSERT INTO attempts … ON CONFLICT (id) DO NOTHING` for up to [`BULK_ROWS`] attempts:
/// storing the same attempt again (a retried batch whose first commit succeeded unseen)
/// changes nothing.
pub(crate) fn insert_attempts<'a>(attempts: &[&'a Attempt]) -> Statement<'a> {
    let mut query = Statement::new(format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES "));
    query.push_rows(attempts.iter().copied(), |attempt| {
        [
            attempt.id.as_uuid().into(),
            attempt.org_id.as_uuid().into(),
            attempt.delivery_id.as_uuid().into(),
            attempt.endpoint_id.as_uuid().into(),
            attempt.event_id.as_uuid().into(),
            attempt.event_type.as_str().into(),
            attempt.url.as_str().into(),
            i64::from(attempt.attempt).into(),
            attempt.outcome.as_str().into(),
            attempt.response_status.map(i64::from).into(),
            i64::try_from(attempt.response_time_ms)
                .unwrap_or(i64::MAX)
                .into(),
            attempt.request_body_sha256.as_str().into(),
            i64::try_from(attempt.request_body_bytes)
                .unwrap_or(i64::MAX)
                .into(),
            headers_json(&attempt.request_headers).into(),
            attempt.response_body_excerpt.as_deref().into(),
            attempt.error.as_deref().into(),
            attempt.next_attempt_at.map(|at| at.as_micros()).into(),
            attempt.occurred_at.as_micros().into(),
            attempt
                .sequence
                .map(|sequence| i64::try_from(sequence).unwrap_or(i64::MAX))
                .into(),
            attempt.ordering_key.as_deref().into(),
        ]
    });
    query.push(" ON CONFLICT (id) DO NOTHING");
    query.persistent(worth_preparing(attempts.len()))
}

/// The due time of a parked delivery: the end of time, so no claim ever reads it. Parked
/// deliveries wait behind an earlier pending delivery of their ordering key; the recorder
/// makes the next one due when the one before it ends.
pub(crate) const PARKED: i64 = i64::MAX;

/// `INSERT INTO events …` for up to [`BULK_ROWS`] events.
pub(crate) fn insert_events<'a>(events: &[&'a Event]) -> Statement<'a> {
    let mut query = Statement::new(format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES "));
    query.push_rows(events.iter().copied(), |event| {
        [
            event.id.as_uuid().into(),
            event.org_id.as_uuid().into(),
            event.event_type.as_str().into(),
            event.data.as_str().into(),
            event.idempotency_key.as_deref().into(),
            event.origin.as_str().into(),
            event.created_at.as_micros().into(),
            event.ordering_key.as_deref().into(),
            event.traceparent.map(|parent| parent.header_value()).into(),
        ]
    });
    query.persistent(worth_preparing(events.len()))
}

/// A delivery to insert: the event fanned out to one endpoint.
pub(crate) struct NewDelivery<'a> {
    pub id: DeliveryId,
    /// The endpoint's organization: the event's, except for the operator's hook.
    pub org_id: OrgId,
    /// Its number in the endpoint's sequence (set by [`crate::shared`]'s fan-out before
    /// insertion).
    pub sequence: i64,
    /// Whether it waits behind an earlier pending delivery of its ordering key to the same
    /// endpoint (not due until that one ends).
    pub parked: bool,
    pub event: &'a Event,
    pub endpoint_id: EndpointId,
}

/// `INSERT INTO deliveries …` for up to [`BULK_ROWS`] new deliveries, each pending and due at
/// its event's creation.
pub(crate) fn insert_pending_deliveries<'a>(deliveries: &[NewDelivery<'a>]) -> Statement<'a> {
    let mut query = Statement::new(
        "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, \
         sequence, ordering_key) VALUES ",
    );
    query.push_rows(deliveries, |delivery| {
        let due = match delivery.parked {
            true => PARKED,
            false => delivery.event.created_at.as_micros(),
        };
        [
            delivery.id.as_uuid().into(),
            delivery.org_id.as_uuid().into(),
            delivery.event.id.as_uuid().into(),
            delivery.endpoint_id.as_uuid().into(),
            "pending".into(),
            0_i64.into(),
            due.into(),
            delivery.event.created_at.as_micros().into(),
            delivery.sequence.into(),
            delivery.event.ordering_key.as_deref().into(),
        ]
    });
    query.persistent(worth_preparing(deliveries.len()))
}

impl<'a> NewDelivery<'a> {
    /// A delivery of `event` to `endpoint_id` (of `org_id`), not yet numbered.
    pub(crate) fn new(org_id: OrgId, event: &'a Event, endpoint_id: EndpointId) -> Self {
        Self {
            id: DeliveryId::new(),
            org_id,
            sequence: 0,
            parked: false,
            event,
            endpoint_id,
        }
    }
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
pub(crate) fn settle_deliveries(
    recordings: &[&AttemptRecording],
    dialect: Dialect,
    check: LeaseCheck,
) -> Statement<'static> {
    let mut query =
        Statement::new("WITH settled (id, lease_token, status, attempts, retry_at) AS (VALUES ");
    query.push_rows(recordings.iter().copied(), |recording| {
        let attempt = &recording.attempt;
        [
            attempt.delivery_id.as_uuid().into(),
            recording.lease.as_uuid().into(),
            delivery_status(attempt.outcome).into(),
            i64::from(attempt.attempt).into(),
            attempt.next_attempt_at.map(|at| at.as_micros()).into(),
        ]
    });
    // Each settled row must be found by primary key.
    let pin = dialect.by_primary_key();
    let token_check = match check {
        LeaseCheck::InStatement => {
            format!(" AND deliveries.lease_token = {pin}settled.lease_token")
        }
        LeaseCheck::ByCaller => String::new(),
    };
    query.push(&format!(
        ") UPDATE deliveries SET status = settled.status, attempts = settled.attempts, \
         next_attempt_at = COALESCE(settled.retry_at, deliveries.next_attempt_at), lease_token = NULL \
         FROM settled WHERE deliveries.id = {pin}settled.id{token_check} \
         AND deliveries.status = 'pending'"
    ));
    query.persistent(worth_preparing(recordings.len()))
}

/// Passes the turn of up to [`BULK_ROWS`] ordering keys, each from a delivery whose success is
/// being recorded, to the successor its worker claimed behind it and is sending
/// ([`crate::HandOn`]): the successor stays leased, due only when its lease lapses (should its
/// worker die), rather than made due for any claim. A successor no longer parked (recorded in
/// the same batch, or dead with its endpoint) is left alone.
pub(crate) fn hand_on(hand_ons: &[&crate::HandOn], dialect: Dialect) -> Statement<'static> {
    let mut query = Statement::new("WITH handed (id, lease_token, lease_until) AS (VALUES ");
    query.push_rows(hand_ons.iter().copied(), |hand_on| {
        [
            hand_on.delivery_id.as_uuid().into(),
            hand_on.lease.as_uuid().into(),
            hand_on.lease_until.as_micros().into(),
        ]
    });
    // Found by primary key, as in `settle_deliveries`.
    let pin = dialect.by_primary_key();
    query.push(&format!(
        ") UPDATE deliveries SET next_attempt_at = handed.lease_until, \
         lease_token = handed.lease_token FROM handed WHERE deliveries.id = {pin}handed.id \
         AND deliveries.status = 'pending' AND deliveries.next_attempt_at = "
    ));
    query.push_bind(PARKED);
    query.persistent(worth_preparing(hand_ons.len()))
}

/// `UPDATE endpoints SET failing_since = NULL …` for endpoints that just had a success.
pub(crate) fn clear_failing(endpoints: &[EndpointId]) -> Statement<'static> {
    let mut query = Statement::new(
        "UPDATE endpoints SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN (",
    );
    query.push_list(endpoints.iter().map(|id| Arg::from(id.as_uuid())));
    query.push(")");
    query
}
