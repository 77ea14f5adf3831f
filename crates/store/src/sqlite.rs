//! The embedded SQLite backend, Herald's default.
//!
//! Writes go through a pool of exactly one connection: SQLite admits one writer at a time
//! anyway, and serializing writers in-process means no transaction ever meets `SQLITE_BUSY`,
//! so a read-then-write (the endpoint cap, a rate limit) is atomic. Its transactions are
//! [`writer::WriteTx`]s, which begin with `BEGIN IMMEDIATE` and discard the connection when
//! they do not commit (that module says why sqlx's own transactions are not enough).
//! Reads use a separate pool of read-only connections, which WAL lets run beside the writer.
//! `synchronous=FULL` makes every acknowledged commit survive a power cut (CONTRACT.md §8).
//!
//! Everything the store does is written once in [`shared`](crate::shared); this module holds
//! only what one process owning the file allows: no locks (the writer serializes every
//! read-then-write), and claims that only read, leasing in memory ([`leases`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::{DeliveryId, EndpointId, Timestamp};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

mod leases;
mod writer;

use leases::{Candidate, LeaseTable};
use writer::WriteTx;

use crate::backend::{Backend, Common, Lock, Pool, WriteTransaction};
use crate::queue::LeaseToken;
use crate::rows::ReadRow;
use crate::shared::claimed_from_rows;
use crate::shared::ordering::Behind;
use crate::shared::{resolve_scope, write_attempts};
use crate::sql::{self, Dialect, LeaseCheck};
use crate::statement::Statement;
use crate::wakeup::LocalWakeup;
use crate::{
    AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, SecretCipher, StoreError,
    map_error,
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: the only writer.
    writer: SqlitePool,
    /// Read-only connections.
    reader: SqlitePool,
    /// The worker's read-only connections: claims read the due index and what to send through
    /// them, so they never queue behind API reads (nor those behind them), and the pages they
    /// touch are cached in two connections, not in every reader.
    claim_reader: SqlitePool,
    common: Common,
    /// The deliveries this process's worker holds (an embedded database has one Herald).
    leases: Arc<LeaseTable>,
    /// This process's worker, woken when a write transaction that stored deliveries commits.
    wakeup: Arc<LocalWakeup>,
}

impl SqliteStore {
    /// What to send for the deliveries just `leased` under `token`, read beside the writer:
    /// nothing the read needs can go while the deliveries are pending (an endpoint changed
    /// meanwhile is read as it is now, which is what the attempt must use). Should the read
    /// fail, nobody was handed them, and their leases end at once.
    async fn what_to_send(
        &self,
        leased: Vec<DeliveryId>,
        token: LeaseToken,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let details = sql::claimed_details(leased.iter().copied());
        let claimed = match self.run(Pool::Claim, details).await {
            Ok(rows) => claimed_from_rows(self, &rows, token).await,
            Err(error) => Err(error),
        };
        if claimed.is_err() {
            self.leases.release(leased.iter().map(|id| (*id, token)));
        }
        claimed
    }

    /// Opens (creating if missing) the database file at `path` and applies migrations.
    pub async fn open(path: &Path, cipher: SecretCipher) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Sorts and temporary B-trees (the claim ranks its window) stay in memory instead
            // of temporary files.
            .pragma("temp_store", "memory")
            // SQLite reuses a WAL file rather than shrinking it: after a burst (or a full disk
            // that kept checkpoints from finishing) it would keep its largest size for good.
            // Truncated to this after each checkpoint that resets it.
            .pragma("journal_size_limit", "67108864")
            .busy_timeout(Duration::from_secs(10));
        let writer = open_pool(1, options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(StoreError::Migration)?;
        let read_only = options.read_only(true);
        let reader = open_pool(4, read_only.clone()).await?;
        // The worker runs up to two claims at once (herald_delivery::worker).
        let claim_reader = open_pool(2, read_only).await?;
        Ok(Self {
            writer,
            reader,
            claim_reader,
            common: Common::new(cipher),
            leases: Arc::default(),
            wakeup: Arc::default(),
        })
    }
}

/// A pool of `size` connections, every one opened now and kept for the life of the process.
///
/// sqlx runs each SQLite connection on a thread of its own, started by the thread that opens
/// the connection, and on Linux a thread inherits its starter's OS priority. Herald's delivery
/// threads run at a lower priority than the API's (`herald_server::background`): a connection
/// one of them opened would serve the API's queries at that priority. So all are opened here,
/// at startup, and none is closed for idleness or age to be reopened later by whichever thread
/// asks next. (SQLite's connections are local files: nothing gains from recycling them.)
async fn open_pool(size: u32, options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(map_error)?;
    // Held together, each acquire past the idle ones opens a connection on this thread.
    let mut opened = Vec::new();
    for _ in 0..size {
        opened.push(pool.acquire().await.map_err(map_error)?);
    }
    Ok(pool)
}

#[async_trait]
impl Backend for SqliteStore {
    type Row = SqliteRow;
    type Tx = WriteTx;
    const DIALECT: Dialect = Dialect::Sqlite;
    /// Leases live in memory ([`leases`]): one never given back holds its delivery a lease.
    const RELEASES_UNSENT: bool = true;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn begin(&self) -> Result<WriteTx, StoreError> {
        WriteTx::begin(&self.writer, &self.common.health, &self.wakeup).await
    }

    async fn run(&self, on: Pool, statement: Statement<'_>) -> Result<Vec<SqliteRow>, StoreError> {
        let pool = match on {
            Pool::Read => &self.reader,
            Pool::Claim => &self.claim_reader,
        };
        statement.fetch_all(pool).await
    }

    /// Nothing to take: every write transaction holds the one writer connection and SQLite's
    /// write lock (`BEGIN IMMEDIATE`) from its start, so no other can run between a rule's
    /// read and its write.
    async fn lock(_tx: &mut WriteTx, _lock: Lock<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    /// A plain read: the transaction holds the one writer (see [`Backend::lock`] above).
    async fn read_rate_limit(tx: &mut WriteTx, key: &str) -> Result<Option<i64>, StoreError> {
        let select = Statement::new("SELECT tat FROM rate_limits WHERE key = ?").bind(key);
        let row = tx.fetch_first(select).await?;
        row.map(|row| row.integer("tat")).transpose()
    }

    /// Reads due deliveries from the claim readers and leases them in memory; the claim
    /// writes nothing, so it never waits behind the writer's commits.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = LeaseToken::new();
        let leased = self.take_leases(request, token).await?;
        self.what_to_send(leased, token).await
    }

    /// Read from a claim reader and leased in memory, as a claim is (with the gate held from
    /// the read to the leasing); the rows stay parked, so no claim reads them meanwhile.
    async fn claim_successors(
        &self,
        behind: &Behind<'_>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = LeaseToken::new();
        let leased = {
            let _claiming = self.leases.claiming().await;
            let rows = self.run(Pool::Claim, behind.select("")).await?;
            let run = Behind::parked_run(&rows)?;
            self.leases.lease_run(
                (behind.head, behind.head_lease),
                run.into_iter().map(DeliveryId::from_uuid),
                behind.endpoint_id,
                token,
                now,
                lease_until,
            )
        };
        self.what_to_send(leased, token).await
    }

    fn release_unsent(&self, unsent: &[ClaimedDelivery]) {
        self.leases.release(
            unsent
                .iter()
                .map(|delivery| (delivery.delivery_id, delivery.lease)),
        );
    }

    /// Only an attempt made under its delivery's current lease (checked against the lease
    /// table) moves the delivery on; the others (a lease that lapsed and was taken again) are
    /// recorded, nothing more. The leases end after the commit.
    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError> {
        let leases = |recordings: &[&AttemptRecording]| {
            recordings
                .iter()
                .map(|recording| (recording.attempt.delivery_id, recording.lease))
                .collect::<Vec<_>>()
        };
        let all: Vec<&AttemptRecording> = recordings.iter().collect();
        let current = self.leases.begin_settling(leases(&all));
        let settling: Vec<&AttemptRecording> = all
            .iter()
            .zip(&current)
            .filter_map(|(recording, current)| current.then_some(*recording))
            .collect();
        let written = write_attempts(
            self,
            recordings,
            &settling,
            LeaseCheck::ByCaller,
            disable_failing_before,
        )
        .await;
        // A failed recording keeps its leases settling: the recorder tries again until the
        // store accepts it, and a lease that lapsed meanwhile would send the delivery again.
        if written.is_ok() {
            self.leases.end(leases(&settling)).await;
        }
        written
    }

    fn forget_leases(&self) {
        self.leases.clear();
    }

    /// A leased delivery is still due in its row; like a leased row on PostgreSQL, it counts
    /// as scheduled (for its lease's end) instead.
    fn leased_but_due(&self, now: Timestamp) -> u64 {
        self.leases.live(now)
    }

    /// One process: its write transactions wake its worker in memory as they commit (another
    /// process writing the file, `herald events publish`, is found by the worker's poll).
    fn wake_on_new_deliveries(&self, wakeup: Arc<tokio::sync::Notify>) {
        self.wakeup.set(wakeup);
    }
}

impl SqliteStore {
    /// Reads due deliveries from a claim reader and leases, in memory, those nobody holds
    /// (`leases.rs` says why this is as safe as leases in rows). The read asks for as many more
    /// rows of each endpoint as this process holds, since those are still due in the database.
    async fn take_leases(
        &self,
        request: &ClaimRequest,
        token: LeaseToken,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        let _claiming = self.leases.claiming().await;
        let request = &resolve_scope(self, request).await?;
        if matches!(&request.scope, ClaimScope::Endpoints(endpoints) if endpoints.is_empty()) {
            return Ok(Vec::new());
        }
        let held = self.leases.held_per_endpoint(request.now);
        // Its text varies with the endpoints it names: prepared for this read only, so the
        // readers' statement caches do not fill with one-off programs.
        let read = sql::due_deliveries(&widened_past(request, &held)).persistent(false);
        let candidates = self
            .run(Pool::Claim, read)
            .await?
            .iter()
            .map(|row| {
                Ok(Candidate {
                    delivery_id: DeliveryId::from_uuid(row.uuid("id")?),
                    endpoint_id: EndpointId::from_uuid(row.uuid("endpoint_id")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let lease = chrono::Duration::from_std(request.lease).unwrap_or(chrono::Duration::MAX);
        Ok(self.leases.lease(
            &candidates,
            token,
            request.now,
            request.now.add(lease),
            usize::try_from(request.limit).unwrap_or(usize::MAX),
            |endpoint_id| request.most_for(endpoint_id),
        ))
    }
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
