//! The PostgreSQL backend, for several Herald nodes sharing one database.
//!
//! Every rule that must hold across nodes is enforced by the database, never by one process's
//! memory: the endpoint cap by locking the organization's row for the create transaction,
//! idempotency keys by a transaction-scoped advisory lock on (organization, key) plus the
//! unique index, rate limits by locking their row, and claims by `FOR UPDATE SKIP LOCKED`
//! with a lease, so no live node is ever handed a delivery another node holds.
//!
//! Everything else is written once in [`shared`](crate::shared); this module holds those
//! locks ([`Backend::lock`], [`Backend::read_rate_limit`]), the claim, and the listener that
//! wakes this node when another stores deliveries ([`listen`]).
//!
//! The pool is bounded and acquiring a connection times out quickly, so while the database is
//! unreachable requests fail fast with `StoreError::Unavailable` (503) instead of hanging;
//! each pooled connection carries a statement timeout for the same reason. Migrations run on a
//! connection of their own without one: an index built on a large table may take minutes.

mod announce;
mod listen;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::{DeliveryId, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Transaction};

use self::announce::Announcer;
use self::upkeep::Upkeep;
use crate::backend::{Backend, Common, Lock, Pool, WriteTransaction};
use crate::queue::LeaseToken;
use crate::rows::ReadRow;
use crate::shared::claimed_from_rows;
use crate::shared::ordering::Behind;
use crate::shared::{resolve_scope, write_attempts};
use crate::sql::{self, Dialect, LeaseCheck};
use crate::statement::Statement;
use crate::{
    AttemptRecording, ClaimRequest, ClaimScope, ClaimedDelivery, SecretCipher, StoreError,
    map_error,
};

/// Settings of the PostgreSQL connection pool.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections this node opens.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Longest any one statement may run.
    pub statement_timeout: Duration,
    /// Dead row versions in `deliveries` (beyond a twentieth of its live rows) at which the
    /// store vacuums the table itself, for servers whose autovacuum does not ([`upkeep`]);
    /// 0 never does.
    pub vacuum_after_dead_rows: u64,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(15),
            vacuum_after_dead_rows: 10_000,
        }
    }
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    common: Common,
    /// Tells every node of the deliveries this one stores.
    announcer: Arc<Announcer>,
    /// Vacuums the delivery queue when autovacuum does not.
    upkeep: Arc<Upkeep>,
}

/// A write transaction, and whether it stored deliveries the nodes are told of once it
/// commits ([`announce`]).
#[derive(Debug)]
pub(crate) struct PostgresTransaction {
    tx: Transaction<'static, Postgres>,
    announcer: Arc<Announcer>,
    stored_deliveries: bool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies migrations.
    pub async fn open(
        url: &str,
        options: &PostgresOptions,
        cipher: SecretCipher,
    ) -> Result<Self, StoreError> {
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        // Every session of the store (pool, migrations, upkeep, listener) runs without JIT.
        // Herald's statements are short, and the planner's estimates for them rise with the
        // tables' sizes: once a plan's estimated cost passed `jit_above_cost` (100,000), each
        // execution compiled its expressions first: with the claim's 17-buffer scan of the
        // due endpoints compiled so, claims took a median of 9.3–9.9 ms instead of 2.0–2.5 for
        // a whole run (BENCHMARKS.md, sixteenth session, `churned`'s bad mode). Set on the
        // connection, after the URL's own options, so it needs no server change.
        let server = url
            .parse::<PgConnectOptions>()
            .map_err(map_error)?
            .options([("jit", "off")]);
        let connect = server
            .clone()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            // A connection whose transaction sqlx still counts as open (a COMMIT or ROLLBACK
            // that failed) is closed rather than handed to the next caller, whose statements
            // would otherwise run inside someone else's transaction.
            .after_release(|connection, _| {
                Box::pin(async move { Ok(!connection.is_in_transaction()) })
            })
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_error)?;
        // Opening and migrating look alike on SQLite, but each backend has its own pools and its
        // own schema (the two migration directories are kept column for column alike).
        // On a connection of their own, without the pool's statement timeout: an index built
        // on a large table, or a node waiting for another node's migration, may take longer
        // than any request should, and a migration cancelled there would stop every node from
        // starting.
        // (Set to 0 rather than left out: a timeout set on the role, the database or the URL
        // would apply otherwise.)
        let unbounded = server.clone().options([("statement_timeout", "0")]);
        // (A pool of one rather than a bare connection: a future migrating through
        // `&mut PgConnection` is not `Send` for every lifetime, which spawning a store needs.)
        let migrating = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(unbounded)
            .await
            .map_err(map_error)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&migrating)
            .await
            .map_err(StoreError::Migration)?;
        migrating.close().await;
        let upkeep = Upkeep::new(
            (*pool.connect_options()).clone(),
            options.vacuum_after_dead_rows,
        );
        Ok(Self {
            announcer: Arc::new(Announcer::new(pool.clone())),
            upkeep: Arc::new(upkeep),
            pool,
            common: Common::new(cipher),
        })
    }
}

#[async_trait]
impl Backend for PostgresStore {
    type Row = PgRow;
    type Tx = PostgresTransaction;
    const DIALECT: Dialect = Dialect::Postgres;
    const RELEASES_UNSENT: bool = false;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        Ok(PostgresTransaction {
            tx: self.pool.begin().await.map_err(map_error)?,
            announcer: Arc::clone(&self.announcer),
            stored_deliveries: false,
        })
    }

    /// One pool serves reads, claims and writes alike: the server runs them side by side.
    async fn run(&self, _on: Pool, statement: Statement<'_>) -> Result<Vec<PgRow>, StoreError> {
        statement.fetch_all(&self.pool).await
    }

    async fn lock(tx: &mut Self::Tx, lock: Lock<'_>) -> Result<(), StoreError> {
        let lock = match lock {
            // Nodes starting together queue here; the first to arrive creates the organization.
            Lock::FirstOrg => Statement::new("SELECT pg_advisory_xact_lock(7302851120413911)"),
            // Creates for one organization queue on its row, so count-then-insert is atomic
            // across every node.
            Lock::OrgEndpoints(org_id) => {
                Statement::new("SELECT id FROM orgs WHERE id = ? FOR UPDATE").bind(org_id.as_uuid())
            }
            // Two nodes publishing the same key at once take turns here; the second then finds
            // the first's event instead of breaking the unique index.
            Lock::IdempotencyKey(org_id, key) => {
                Statement::new("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))")
                    .bind(format!("{org_id}:{key}"))
            }
        };
        tx.execute(lock).await.map(drop)
    }

    /// Makes sure the row exists, then locks it: concurrent requests on any node queue here.
    async fn read_rate_limit(tx: &mut Self::Tx, key: &str) -> Result<Option<i64>, StoreError> {
        let row = Statement::new(
            "INSERT INTO rate_limits (key, tat) VALUES (?, 0) ON CONFLICT (key) DO NOTHING",
        );
        tx.execute(row.bind(key)).await?;
        let select = Statement::new("SELECT tat FROM rate_limits WHERE key = ? FOR UPDATE");
        let row = tx.fetch_first(select.bind(key)).await?;
        row.map(|row| row.integer("tat")).transpose()
    }

    /// Takes the deliveries in their rows: `UPDATE … FOR UPDATE SKIP LOCKED` moves each one's
    /// due time to its lease's end and stamps it with a fresh token, so nodes claiming at once
    /// never take the same row; the same statement reads what to send for them.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let request = &resolve_scope(self, request).await?;
        if matches!(&request.scope, ClaimScope::Endpoints(endpoints) if endpoints.is_empty()) {
            return Ok(Vec::new());
        }
        let lease = LeaseToken::new();
        let mut tx = self.begin().await?;
        // A lost lease only makes its deliveries due again, so the claim need not wait for its
        // commit to reach the disk.
        tx.execute(Statement::new("SET LOCAL synchronous_commit = off"))
            .await?;
        // Its text varies with the endpoints it names and the rows it takes.
        let rows = tx
            .fetch(sql::claim(request, lease).persistent(false))
            .await?;
        tx.commit().await?;
        claimed_from_rows(self, &rows, lease).await
    }

    /// The run is stamped with a fresh token in a transaction that need not be durable: a
    /// token lost with a crash leaves a parked row, which is not due, and whoever takes it
    /// next writes its own. The rows stay parked until the recording of the delivery before
    /// each hands it its turn ([`crate::HandOn`]), so no claim takes them meanwhile.
    async fn claim_successors(
        &self,
        behind: &Behind<'_>,
        _now: Timestamp,
        _lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = LeaseToken::new();
        let mut tx = self.begin().await?;
        tx.execute(Statement::new("SET LOCAL synchronous_commit = off"))
            .await?;
        let rows = tx.fetch(behind.select(" FOR UPDATE")).await?;
        let run = Behind::parked_run(&rows)?;
        // The head is checked once the rows behind it are locked, in a statement of its own
        // (so on a snapshot taken after any wait for those locks): a claim that waited, such
        // as one a stopped run left to finish, must not stamp over the rows of whoever took
        // the key on meanwhile, whose own claim re-stamped the head. And a claim that comes
        // after this one waits for these locks, so it stamps after this one, never under it.
        // (A stale claim thus holds the rows for a round trip before it lets them go; that
        // needs a claim left to finish, which only a slow database makes.)
        if run.is_empty() || tx.fetch_first(behind.head_held()).await?.is_none() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut stamp = Statement::new("UPDATE deliveries SET lease_token = ");
        stamp
            .push_bind(token.as_uuid())
            .push(" WHERE id IN (")
            .push_list(run.iter().map(|id| (*id).into()))
            .push(")");
        tx.execute(stamp).await?;
        tx.commit().await?;
        let details = sql::claimed_details(run.into_iter().map(DeliveryId::from_uuid));
        let rows = self.run(Pool::Claim, details).await?;
        claimed_from_rows(self, &rows, token).await
    }

    /// A parked row's token is overwritten by the next claim of it: nothing to end.
    fn release_unsent(&self, _unsent: &[ClaimedDelivery]) {}

    /// Every delivery is settled by the statement, which checks the row's lease token.
    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError> {
        let settling: Vec<&AttemptRecording> = recordings.iter().collect();
        let check = LeaseCheck::InStatement;
        write_attempts(self, recordings, &settling, check, disable_failing_before).await?;
        self.upkeep.settled(recordings.len());
        Ok(())
    }

    /// Leases live only in the rows.
    fn forget_leases(&self) {}

    /// A leased row's due time is its lease's end: it is not due.
    fn leased_but_due(&self, _now: Timestamp) -> u64 {
        0
    }

    async fn flush_announcements(&self) {
        self.announcer.flushed().await;
    }

    /// Every node LISTENs for the deliveries any other node stores ([`listen`]); its own
    /// wake it in memory ([`announce`]).
    fn wake_on_new_deliveries(&self, wakeup: Arc<tokio::sync::Notify>) {
        self.announcer.wake_locally(Arc::clone(&wakeup));
        // The task lives as long as the runtime: the handle is not needed to stop it.
        drop(listen::spawn(
            &self.pool,
            wakeup,
            self.announcer.node().to_owned(),
        ));
    }
}

#[async_trait]
impl WriteTransaction for PostgresTransaction {
    type Row = PgRow;

    async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError> {
        statement.execute(&mut *self.tx).await
    }

    async fn fetch(&mut self, statement: Statement<'_>) -> Result<Vec<PgRow>, StoreError> {
        statement.fetch_all(&mut *self.tx).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(map_error)?;
        if self.stored_deliveries {
            self.announcer.announce();
        }
        Ok(())
    }

    /// Drops the transaction: sqlx rolls it back before the connection serves again (and the
    /// pool's `after_release` closes a connection still inside one), so ending it costs no
    /// round trip of its own.
    async fn rollback(self) -> Result<(), StoreError> {
        Ok(())
    }

    fn announce_new_deliveries(&mut self) {
        self.stored_deliveries = true;
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::*;

    /// Every session of the store runs without JIT, even on a database whose own setting
    /// compiles every statement: the pool's, and the upkeep's and the listener's, which take
    /// the pool's connect options.
    #[tokio::test]
    async fn postgres_the_stores_sessions_run_without_jit() {
        let database = herald_testkit::postgres::TestDatabase::create("herald_store").await;
        let mut admin = sqlx::PgConnection::connect(database.server_url())
            .await
            .expect("connecting to the maintenance database");
        let name = database.name();
        for setting in ["jit = on", "jit_above_cost = 0"] {
            sqlx::query(&format!("ALTER DATABASE {name} SET {setting}"))
                .execute(&mut admin)
                .await
                .expect("turning JIT on for every statement of the database");
        }
        let store = PostgresStore::open(
            &database.url,
            &PostgresOptions::default(),
            SecretCipher::new(&[7; 32]),
        )
        .await
        .expect("opening the store");

        let mut pooled = store.pool.acquire().await.expect("a pooled connection");
        let mut other = sqlx::PgConnection::connect_with(store.pool.connect_options().as_ref())
            .await
            .expect("connecting as the upkeep and the listener do");
        let mut plain = sqlx::PgConnection::connect(&database.url)
            .await
            .expect("connecting as any client");
        let jit = jit_of(&mut pooled).await;
        let other_jit = jit_of(&mut other).await;
        let database_default = jit_of(&mut plain).await;

        assert_eq!(database_default, "on", "the database's own setting");
        assert_eq!(jit, "off", "the store's pool");
        assert_eq!(other_jit, "off", "sessions from the pool's connect options");
        drop(pooled);
        store.pool.close().await;
        let _ = other.close().await;
        let _ = plain.close().await;
        let _ = admin.close().await;
    }

    /// The session's `jit` setting.
    async fn jit_of(connection: &mut sqlx::PgConnection) -> String {
        sqlx::query_scalar("SELECT current_setting('jit')")
            .fetch_one(connection)
            .await
            .expect("reading the session's setting")
    }
}
