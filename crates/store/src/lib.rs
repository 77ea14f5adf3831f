//! Herald's storage. Everything Herald keeps goes through the [`Store`] trait, and only this
//! crate contains SQL.
//!
//! # Layout
//!
//! - [`Store`]: the one interface handlers and the worker use (`Arc<dyn Store>`).
//! - [`StoreError`]: backend failures translated into what callers act on.
//! - [`cipher`]: encryption of secrets at rest; the store seals on write and opens on read.
//! - [`page`]: opaque cursors and pages.
//! - [`queue`]: the types of publishing, claiming and recording deliveries.
//! - [`sqlite`]: the embedded default backend.
//! - [`postgres`]: the backend for several nodes on one database.
//!
//! # One store, two backends
//!
//! The store is written once. `shared` implements [`Store`] for every type that implements
//! `backend::Backend`, a small trait of what truly differs between the two databases:
//!
//! - their connections: `Backend::run` on a `Pool` (SQLite: a read-only pool, two claim
//!   readers and one writer; PostgreSQL: one pool) and their write transactions
//!   (`WriteTransaction`: SQLite's `WriteTx`, which begins `IMMEDIATE` and discards a
//!   connection that did not commit; sqlx's transaction on PostgreSQL);
//! - the locks a rule needs when several nodes share the database (`Lock`: the first
//!   organization, the endpoint cap, idempotency keys; `Backend::read_rate_limit`), which
//!   SQLite does not take, since its one writer already serializes every transaction;
//! - claiming and recording under a lease: in the rows with `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, in the process's memory on SQLite.
//!
//! Each statement is one text with `?` placeholders, a `statement::Statement` carrying its
//! values; PostgreSQL runs it with the placeholders numbered. Where the SQL itself must differ
//! (`MAX` or `GREATEST`, the write probe's ballast, the claim's row locks), the statement asks
//! `sql::Dialect`, which says why. `sql` builds the statements of many rows (the claim, the
//! bulk inserts and updates); `rows` reads rows of either backend into domain types.
//!
//! Every mutating operation that the API audits takes its [`AuditRecord`] and writes it in
//! the same transaction as the change, so a change and its record exist together or not at all.

mod backend;
pub mod cipher;
mod health;
pub mod page;
pub mod postgres;
pub mod queue;
mod rows;
mod shared;
mod sql;
pub mod sqlite;
mod statement;
mod wakeup;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::client_certificate::{CertificateSummary, ClientCertificate};
use herald_domain::custom_headers::CustomHeaders;
use herald_domain::filter::Filter;
use herald_domain::recovery::Recovery;
use herald_domain::secret::ApiKeyHash;
use herald_domain::{
    ApiKey, ApiKeyId, Attempt, AttemptId, AuditRecord, Endpoint, EndpointCredentials, EndpointId,
    Event, EventId, Org, OrgId, OrgSigningKey, RecoveryId, Secret, SigningMaterial, Timestamp,
};

pub use cipher::SecretCipher;
pub use health::{PROBE_INTERVAL, WriteStatus};
pub use page::{Cursor, InvalidCursor, Page, PageRequest};
pub use postgres::{PostgresOptions, PostgresStore};
pub use queue::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, FeedStatus, HandOn,
    LeaseToken, OperatorHook, ProbeTarget, PublishedEvent, PurgeBatch, PurgePosition, PurgeReport,
    QueueStats, Sequenced,
};
pub use sqlite::SqliteStore;

/// What `Store::endpoint_stats` counts: the window's attempts by outcome, the newest of their
/// latencies, and the endpoint's state now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Attempts in the window that succeeded.
    pub success: u64,
    /// Attempts in the window that failed with another attempt scheduled.
    pub retry: u64,
    /// Attempts in the window that failed for good.
    pub dead: u64,
    /// The endpoint's pending deliveries now.
    pub pending: u64,
    /// The newest success ever recorded (within retention).
    pub last_success_at: Option<Timestamp>,
    /// The response times of the window's newest attempts (at most
    /// [`MAX_LATENCY_SAMPLE`]), in no particular order.
    pub latencies_ms: Vec<u64>,
}

/// The most attempts whose latencies [`EndpointStats`] carries: enough for a p99 of a
/// hundred values, and a bounded read however busy the endpoint.
pub const MAX_LATENCY_SAMPLE: u32 = 10_000;

/// What went wrong in storage, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object in the caller's organization (or it is deleted).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken.
    #[error("conflict")]
    Conflict,
    /// The organization already holds the most live endpoints allowed.
    #[error("endpoint limit reached")]
    LimitExceeded,
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("storage unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The store refuses writes (a full disk, an I/O error) and was probed less than
    /// [`PROBE_INTERVAL`] ago; retrying later may succeed.
    #[error("storage refuses writes")]
    NotWritable,
    /// Stored data could not be read back (bad encoding, wrong secrets key).
    #[error("corrupt stored data: {0}")]
    Corrupt(&'static str),
    /// Any other database failure: a bug or a broken schema.
    #[error("storage failure")]
    Backend(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

/// A partial update of an endpoint; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPatch {
    /// A new URL, already validated.
    pub url: Option<String>,
    /// A new description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// The new, whole set of event types.
    pub events: Option<Vec<String>>,
    /// Enable or disable delivery.
    pub active: Option<bool>,
    /// The new, whole set of custom headers (`"<redacted>"` values already resolved).
    pub headers: Option<CustomHeaders>,
    /// A new client certificate with its summary; `Some(None)` removes it.
    pub client_certificate: Option<Option<(ClientCertificate, CertificateSummary)>>,
    /// A new filter, already checked; `Some(None)` removes it.
    pub filter: Option<Option<Filter>>,
}

/// A rate limit: at most `limit` operations per `period`, smoothly refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Operations allowed in a full period (also the burst size).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

/// The answer of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead; the operation was counted.
    Allowed,
    /// Refused; try again after this long.
    Limited {
        /// How long until the next operation would be allowed.
        retry_after: Duration,
    },
}

/// The one storage interface. Implementations must be safe to share between tasks and, for
/// backends that support it, between processes on the same database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query and accepts writes: while the last
    /// write failed for an outage, it writes one small row (at most once a [`PROBE_INTERVAL`])
    /// to find out whether the store has recovered.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether writes succeed, as the last write found out; no IO.
    fn write_status(&self) -> WriteStatus;

    /// Stores a new organization.
    async fn create_org(&self, org: &Org) -> Result<(), StoreError>;
    /// Stores `org` only if there is no organization at all, atomically even when several
    /// nodes start together on an empty database; `true` when it was stored.
    async fn create_first_org(&self, org: &Org) -> Result<bool, StoreError>;
    /// Every organization, oldest first.
    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError>;
    /// One organization.
    async fn get_org(&self, org_id: OrgId) -> Result<Org, StoreError>;
    /// Replaces the organization's webhook secret and audits it.
    async fn rotate_org_secret(
        &self,
        org_id: OrgId,
        secret: &Secret,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The organization's current webhook secret, if it has one.
    async fn get_org_secret(&self, org_id: OrgId) -> Result<Option<Secret>, StoreError>;

    /// Stores a new API key under its hash.
    async fn create_api_key(&self, key: &ApiKey, hash: &ApiKeyHash) -> Result<(), StoreError>;
    /// The organization's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, org_id: OrgId) -> Result<Vec<ApiKey>, StoreError>;
    /// Marks a key revoked (idempotent) and returns it.
    async fn revoke_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> Result<ApiKey, StoreError>;
    /// The key with this hash, revoked or not.
    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError>;

    /// Stores a new endpoint unless the organization already has `cap` live endpoints
    /// (`StoreError::LimitExceeded`). The check and the insert are atomic.
    async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secret: &Secret,
        credentials: &EndpointCredentials,
        cap: u32,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Live endpoints of an organization, newest first.
    async fn list_endpoints(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError>;
    /// One live endpoint of an organization.
    async fn get_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<Endpoint, StoreError>;
    /// Applies a patch, moves `updated_at` forward, and returns the result.
    async fn update_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        patch: &EndpointPatch,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError>;
    /// Soft-deletes a live endpoint.
    async fn delete_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Replaces a live endpoint's secret, moves `updated_at`, and returns the endpoint. With
    /// `previous_valid_until`, the replaced secret goes on signing deliveries beside the new one
    /// until then (a rotation with overlap); without, it stops at once, and so does any
    /// previous secret of an earlier rotation.
    async fn rotate_endpoint_secret(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        secret: &Secret,
        previous_valid_until: Option<Timestamp>,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError>;
    /// What signs deliveries to a live endpoint now: its secrets, its organization's secret and
    /// signing key (made if the organization has none yet).
    async fn get_signing_material(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<SigningMaterial, StoreError>;
    /// A live endpoint's custom headers and client certificate, opened.
    async fn get_endpoint_credentials(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<EndpointCredentials, StoreError>;
    /// The organization's Ed25519 signing key, made and stored on its first need. Concurrent
    /// first uses, from any number of nodes, all end with the same one key.
    async fn org_signing_key(&self, org_id: OrgId) -> Result<Arc<OrgSigningKey>, StoreError>;

    /// Stores an audit record on its own (changes Herald makes by itself).
    async fn append_audit_record(&self, audit: &AuditRecord) -> Result<(), StoreError>;
    /// An organization's audit trail, newest first.
    async fn list_audit_records(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError>;

    /// Counts one operation against `key` under `rate`, or refuses it.
    async fn acquire_rate_limit(
        &self,
        key: &str,
        rate: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError>;

    /// Stores events and, in the same transaction, one pending delivery per live, active
    /// endpoint of the event's organization subscribed to its type. An event whose
    /// idempotency key its organization used in the last 24 hours is not stored; the
    /// earlier event is returned instead. Returns one answer per input, in order.
    async fn publish_events(&self, events: &[Event]) -> Result<Vec<PublishedEvent>, StoreError>;
    /// Stores a replayed event with one pending delivery to `endpoint_id` (no subscription
    /// check) and its audit record. The endpoint must be live.
    async fn enqueue_replay(
        &self,
        event: &Event,
        endpoint_id: EndpointId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Stores the event and the single attempt of a test send, as a finished delivery.
    async fn record_test_attempt(&self, event: &Event, attempt: &Attempt)
    -> Result<(), StoreError>;
    /// Starts a recovery of a live endpoint (`NotFound` otherwise): counts what it matches
    /// now and stores it `queued` (`done`, enqueueing nothing, for a dry run). While a
    /// recovery of the same endpoint with the same `fingerprint` (the request as given) is
    /// queued or running, that one is returned instead, with `false`. Either way `audit` is
    /// written, its reason set to the counts.
    async fn start_recovery(
        &self,
        recovery: &Recovery,
        fingerprint: &str,
        audit: &AuditRecord,
    ) -> Result<(Recovery, bool), StoreError>;
    /// One recovery of the organization.
    async fn get_recovery(&self, org_id: OrgId, id: RecoveryId) -> Result<Recovery, StoreError>;
    /// Puts the next chunk of at most `batch` matches of the oldest unfinished recovery back
    /// in the queue, due at `now`, in one transaction; `false` when no recovery has work left.
    async fn advance_recoveries(&self, now: Timestamp, batch: u32) -> Result<bool, StoreError>;
    /// Hands out at most `limit` endpoints due for a probe at `now`: disabled for `failing` at
    /// most `probe_for` ago and neither disabled nor probed in the last `interval`. Each is
    /// marked probed in the same statement, so of several nodes only one probes it this round.
    async fn take_due_probes(
        &self,
        now: Timestamp,
        interval: Duration,
        probe_for: Duration,
        limit: u32,
    ) -> Result<Vec<ProbeTarget>, StoreError>;
    /// After a probe's 2xx at `at`: the endpoint active again, `endpoint.enabled` published,
    /// audited, and a recovery (`include_missing`) from the start of its failure streak
    /// started, in one transaction; returns that recovery, or `None` when the endpoint is no
    /// longer disabled for `failing`.
    async fn enable_after_probe(
        &self,
        endpoint_id: EndpointId,
        at: Timestamp,
    ) -> Result<Option<Recovery>, StoreError>;
    /// Writes the operator's hook (`HERALD_OPERATOR_WEBHOOK_URL`) as the endpoint of the
    /// hidden operator organization, active, subscribed to every operational type; `None`
    /// deletes it (its pending deliveries end `dead`).
    async fn configure_operator_hook(
        &self,
        hook: Option<&OperatorHook>,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Leases up to `limit` due deliveries to the caller.
    async fn claim_due_deliveries(
        &self,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// For the worker that holds `delivery`'s lease and whose attempt of it succeeded (not
    /// yet recorded), or that holds it as the last of an earlier claim of successors, parked
    /// and not yet sent (a claim made ahead, while those before it are sent): leases up to
    /// `most` of the deliveries of its ordering key to its endpoint that wait behind it, the
    /// next first, until `now + lease`, so that they can be sent one after another without a
    /// claim each. Each is sent only after the one before it succeeded, and recorded with
    /// [`AttemptRecording::successor`] naming the next. They stay parked in their rows, so no
    /// claim takes them, and a worker that dies leaves them to the ordinary release of its key. Nothing for a delivery without an ordering key.
    async fn claim_successors(
        &self,
        delivery: &ClaimedDelivery,
        most: u32,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Ends the leases of successors claimed and never sent (their worker stopped the run):
    /// they are taken in turn again when the key is released. Nothing on PostgreSQL, where
    /// the next claim of a parked delivery overwrites whatever token it carries.
    fn release_unsent(&self, unsent: &[ClaimedDelivery]);
    /// Whether [`Store::release_unsent`] does anything here: a run that ends need not wait
    /// for a claim of successors still on its way when it does not (PostgreSQL).
    fn releases_unsent(&self) -> bool;
    /// Stores attempts and moves their deliveries on (rescheduled, finished, lease released),
    /// all in one transaction. An endpoint whose failures began before
    /// `disable_failing_before` is set inactive, with an audit record saying why.
    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError>;
    /// Releases every lease: for single-process backends at startup, when no other worker
    /// can hold one.
    async fn release_all_leases(&self) -> Result<(), StoreError>;
    /// Wakes `wakeup` whenever deliveries are stored: at the commit of this store's own
    /// transactions that stored them, and (PostgreSQL) when another node on the same database
    /// tells of its own, for as long as the runtime runs. A hint, not a guarantee, so the
    /// worker keeps polling (another process writing a SQLite file is found only by the poll).
    fn wake_on_new_deliveries(&self, wakeup: Arc<tokio::sync::Notify>);
    /// Waits, for at most a few seconds, until the other nodes have been told of every
    /// delivery this store stored: on PostgreSQL the notification goes out after the commit,
    /// on a task of its own, which a process that exits at once (`herald events publish`)
    /// would cancel, leaving the running nodes to their poll. Nothing to wait for on SQLite.
    async fn flush_announcements(&self);
    /// The organization's attempts matching `filter`, newest first.
    async fn list_attempts(
        &self,
        org_id: OrgId,
        filter: &AttemptFilter,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError>;
    /// One attempt of the organization.
    async fn get_attempt(
        &self,
        org_id: OrgId,
        attempt_id: AttemptId,
    ) -> Result<Attempt, StoreError>;
    /// The catch-up feed: the deliveries to `endpoint_id` (of `org_id`) numbered after
    /// `after_sequence`, ascending, at most `limit`, with their events (still retained).
    async fn list_sequenced(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        after_sequence: u64,
        limit: u32,
    ) -> Result<Vec<Sequenced>, StoreError>;
    /// One event of the organization, if still retained.
    async fn get_event(&self, org_id: OrgId, event_id: EventId) -> Result<Event, StoreError>;
    /// The stats of one endpoint (the caller checked it is the organization's) over its
    /// attempts since `since`.
    async fn endpoint_stats(
        &self,
        endpoint_id: EndpointId,
        since: Timestamp,
    ) -> Result<EndpointStats, StoreError>;
    /// Counts of the delivery queue at `now`: each count exact up to `count_limit` and
    /// `count_limit` above it. The work follows the endpoints with pending deliveries and
    /// `count_limit`, not the backlog.
    async fn queue_stats(&self, now: Timestamp, count_limit: u64)
    -> Result<QueueStats, StoreError>;
    /// One batch of a purge: deletes attempts made before `batch.attempts_before` (at most
    /// `batch.size`), and looks at the next `batch.size` events created before
    /// `batch.events_before`, after `batch.events_after`, deleting those whose deliveries are
    /// finished (with their deliveries).
    async fn purge_expired(&self, batch: &PurgeBatch) -> Result<PurgeReport, StoreError>;
}

/// Translates a driver error into what callers act on; no caller ever sees SQL errors.
pub(crate) fn map_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(ref database) if database.is_unique_violation() => {
            StoreError::Conflict
        }
        // PostgreSQL's connection-exception (08…) and operator-intervention (57P…) classes:
        // the server is going away or gone, which retrying later can fix; and 57014, a
        // statement cancelled by the statement timeout: a database too loaded to answer in
        // time, like SQLite's lock held too long, not a fault of the request (a 503 with
        // `Retry-After`, never a 500).
        sqlx::Error::Database(ref database)
            if database.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "57014"
            }) =>
        {
            StoreError::Unavailable(error)
        }
        // PostgreSQL's insufficient-resources class (53…: disk full, out of memory, too many
        // connections), an outage of the server's machine, and 25006 (a read-only
        // transaction: connected to a standby during a failover, or writes switched off by
        // the operator), which ends when the primary is back. Neither is a bug in the request.
        sqlx::Error::Database(ref database)
            if database
                .code()
                .is_some_and(|code| code.starts_with("53") || code == "25006") =>
        {
            StoreError::Unavailable(error)
        }
        sqlx::Error::Database(ref database)
            if database
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .and_then(sqlx::error::DatabaseError::code)
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(sqlite_outage) =>
        {
            StoreError::Unavailable(error)
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
        other => StoreError::Backend(other),
    }
}

/// Whether an SQLite result code (extended or primary) says the disk or the machine failed
/// rather than the statement: a full disk, an I/O error, a file that cannot be opened, a file
/// system turned read-only, memory exhausted, or a lock held too long. Such a failure ends when
/// the operator fixes the machine, so callers answer "unavailable, retry" and keep what they
/// have; a corrupt file (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) is not among them.
fn sqlite_outage(code: i32) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    const SQLITE_NOMEM: i32 = 7;
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    const SQLITE_PROTOCOL: i32 = 15;
    // The low byte of an extended result code is its primary code.
    matches!(
        code & 0xff,
        SQLITE_BUSY
            | SQLITE_LOCKED
            | SQLITE_NOMEM
            | SQLITE_READONLY
            | SQLITE_IOERR
            | SQLITE_FULL
            | SQLITE_CANTOPEN
            | SQLITE_PROTOCOL
    )
}

/// The generic cell rate algorithm, shared by every backend: given the stored theoretical
/// arrival time (microseconds), decide and return the new one to store.
pub fn gcra_step(
    stored_tat: Option<i64>,
    rate: RateLimit,
    now: Timestamp,
) -> (RateDecision, Option<i64>) {
    let period = i64::try_from(rate.period.as_micros()).unwrap_or(i64::MAX);
    let interval = period / i64::from(rate.limit.max(1));
    let now = now.as_micros();
    let tat = stored_tat.map_or(now, |stored| stored.max(now));
    let allowed_ahead = period - interval;
    if tat - now > allowed_ahead {
        let wait = u64::try_from(tat - now - allowed_ahead).unwrap_or(0);
        (
            RateDecision::Limited {
                retry_after: Duration::from_micros(wait),
            },
            None,
        )
    } else {
        (RateDecision::Allowed, Some(tat + interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_failures_of_the_machine_are_outages_and_failures_of_the_data_are_not() {
        const SQLITE_IOERR_WRITE: i32 = 10 | (3 << 8);
        const SQLITE_IOERR_FSYNC: i32 = 10 | (4 << 8);
        const SQLITE_READONLY_DBMOVED: i32 = 8 | (4 << 8);
        for outage in [
            13,
            10,
            SQLITE_IOERR_WRITE,
            SQLITE_IOERR_FSYNC,
            14,
            7,
            SQLITE_READONLY_DBMOVED,
            5,
        ] {
            assert!(sqlite_outage(outage), "{outage} is an outage");
        }
        // SQLITE_ERROR, SQLITE_CORRUPT, SQLITE_CONSTRAINT (and its UNIQUE form), SQLITE_NOTADB.
        for failure in [1, 11, 19, 19 | (8 << 8), 26] {
            assert!(!sqlite_outage(failure), "{failure} is not an outage");
        }
    }

    #[test]
    fn gcra_allows_a_burst_then_spaces_requests() {
        let rate = RateLimit {
            limit: 10,
            period: Duration::from_secs(60),
        };
        let now = Timestamp::from_micros(1_000_000_000);
        let mut tat = None;
        for _ in 0..10 {
            let (decision, next) = gcra_step(tat, rate, now);
            assert_eq!(decision, RateDecision::Allowed);
            tat = next;
        }
        let (decision, next) = gcra_step(tat, rate, now);
        assert_eq!(
            decision,
            RateDecision::Limited {
                retry_after: Duration::from_secs(6)
            }
        );
        assert_eq!(next, None);
        let later = now.add(chrono::Duration::seconds(6));
        assert_eq!(gcra_step(tat, rate, later).0, RateDecision::Allowed);
    }
}
