//! What a backend provides, and nothing more: its connections, its write transactions, and
//! the rules it must enforce its own way. Everything else, every statement and every step of
//! every operation, is written once in [`shared`](crate::shared) over this trait.
//!
//! The two backends differ where their deployments differ. SQLite is one file owned by one
//! process: one writer connection serializes every write, so a read-then-write needs no lock,
//! and claims lease in the process's memory. PostgreSQL serves several nodes: each rule that
//! must hold across nodes takes a lock in the database ([`Lock`], [`Backend::read_rate_limit`])
//! and claims lease in the rows. Each implementation says, at each method, why it does what it
//! does.

use std::sync::Arc;

use async_trait::async_trait;
use herald_domain::{OrgId, Timestamp};
use tokio::sync::Notify;

use crate::health::WriteHealth;
use crate::queue::{AttemptRecording, ClaimRequest, ClaimedDelivery};
use crate::rows::ReadRow;
use crate::shared::SigningKeyCache;
use crate::shared::ordering::Behind;
use crate::sql::Dialect;
use crate::statement::Statement;
use crate::{SecretCipher, StoreError};

/// A storage backend. Every `Backend` is a [`Store`](crate::Store).
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// A row of a result.
    type Row: ReadRow + Send + Sync;
    /// A write transaction.
    type Tx: WriteTransaction<Row = Self::Row>;

    /// How this backend spells what the SQL standard leaves open.
    const DIALECT: Dialect;
    /// Whether [`Backend::release_unsent`] does anything.
    const RELEASES_UNSENT: bool;

    /// What every backend keeps alike.
    fn common(&self) -> &Common;
    /// Seals and opens secrets.
    fn cipher(&self) -> &SecretCipher {
        &self.common().cipher
    }
    /// The organizations' signing keys this process has opened.
    fn signing_keys(&self) -> &SigningKeyCache {
        &self.common().signing_keys
    }
    /// The record of whether writes succeed.
    fn health(&self) -> &WriteHealth {
        &self.common().health
    }

    /// Begins a write transaction.
    async fn begin(&self) -> Result<Self::Tx, StoreError>;
    /// Runs one read outside any transaction and returns its rows.
    async fn run(&self, on: Pool, statement: Statement<'_>) -> Result<Vec<Self::Row>, StoreError>;

    /// Takes `lock` for the rest of `tx`.
    async fn lock(tx: &mut Self::Tx, lock: Lock<'_>) -> Result<(), StoreError>;
    /// Reads the stored state of the rate limit `key` in `tx`, so that no other transaction
    /// decides on that key before `tx` ends.
    async fn read_rate_limit(tx: &mut Self::Tx, key: &str) -> Result<Option<i64>, StoreError>;

    /// Leases due deliveries as `request` asks and returns what to send for them.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Leases, under a fresh token until `lease_until`, the parked run of deliveries
    /// `behind` a delivery the caller holds ([`Behind::parked_run`]), leaving them parked, and
    /// returns what to send for them (see [`crate::Store::claim_successors`]).
    async fn claim_successors(
        &self,
        behind: &Behind<'_>,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Ends the leases of successors never sent (see [`crate::Store::release_unsent`]).
    fn release_unsent(&self, unsent: &[ClaimedDelivery]);
    /// Stores attempts and moves on the deliveries whose lease they were made under
    /// ([`shared::write_attempts`](crate::shared) does the writing).
    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError>;
    /// Forgets the leases the backend keeps outside the rows (none on PostgreSQL).
    fn forget_leases(&self);
    /// Deliveries that are due in their rows but leased, so not due in fact.
    fn leased_but_due(&self, now: Timestamp) -> u64;
    /// Wakes `wakeup` whenever deliveries are stored (see [`crate::Store`]).
    fn wake_on_new_deliveries(&self, wakeup: Arc<Notify>);
    /// Waits until every node has been told of the deliveries this store stored (see
    /// [`crate::Store::flush_announcements`]); nothing to wait for on SQLite.
    async fn flush_announcements(&self) {}
}

/// What every backend keeps alike: the state the shared operations need besides connections.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) cipher: SecretCipher,
    /// The organizations' signing keys this process has opened (they never change).
    pub(crate) signing_keys: Arc<SigningKeyCache>,
    /// Whether writes succeed (a full disk, or a PostgreSQL server out of disk, makes them
    /// fail while reads go on).
    pub(crate) health: Arc<WriteHealth>,
}

impl Common {
    pub(crate) fn new(cipher: SecretCipher) -> Self {
        Self {
            cipher,
            signing_keys: Arc::default(),
            health: Arc::default(),
        }
    }
}

/// Which connections a read outside a transaction runs on. Writes always run in a
/// transaction (`shared::write_alone` for a single statement), so that their commit's
/// outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// A read for the API.
    Read,
    /// A read for the worker's claims.
    Claim,
}

/// A lock that a rule needs where several nodes share the database.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock<'a> {
    /// Creating the first organization: nodes starting together on an empty database.
    FirstOrg,
    /// The organization's endpoints, for the endpoint cap's count-then-insert.
    OrgEndpoints(OrgId),
    /// One organization's idempotency key, for its look-up-then-insert.
    IdempotencyKey(OrgId, &'a str),
}

/// A write transaction of a backend.
#[async_trait]
pub(crate) trait WriteTransaction: Send + Sized {
    /// A row of a result.
    type Row: ReadRow + Send + Sync;

    /// Runs a statement and returns how many rows it changed.
    async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError>;
    /// Runs a statement and returns its rows.
    async fn fetch(&mut self, statement: Statement<'_>) -> Result<Vec<Self::Row>, StoreError>;
    /// Commits.
    async fn commit(self) -> Result<(), StoreError>;
    /// Ends the transaction without its changes.
    async fn rollback(self) -> Result<(), StoreError>;

    /// Says that the transaction stored pending deliveries, so that once it commits this
    /// process's worker is woken and, on PostgreSQL, every other node is told
    /// (`crate::wakeup`).
    fn announce_new_deliveries(&mut self);

    /// Runs a statement and returns its first row, if any.
    async fn fetch_first(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.fetch(statement).await?.into_iter().next())
    }

    /// Ends the transaction without its changes and answers `refusal` (a rule said no).
    async fn refuse<T>(self, refusal: StoreError) -> Result<T, StoreError> {
        self.rollback().await?;
        Err(refusal)
    }
}
