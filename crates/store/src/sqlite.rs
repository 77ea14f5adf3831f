//! The embedded SQLite backend, Herald's default.
//!
//! Writes go through a pool of exactly one connection: SQLite admits one writer at a time
//! anyway, and serializing writers in-process means no transaction ever meets `SQLITE_BUSY`,
//! so a read-then-write (the endpoint cap, a rate limit) is atomic. Its transactions are
//! [`writer::WriteTx`]s, which begin with `BEGIN IMMEDIATE` and discard the connection when
//! they do not commit (that module says why sqlx's own transactions are not enough).
//! Reads use a separate pool of read-only connections, which WAL lets run beside the writer.
//! `synchronous=FULL` makes every acknowledged commit survive a power cut (CONTRACT.md §8).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::scope::Scope;
use herald_domain::secret::ApiKeyHash;
use herald_domain::{
    ApiKey, ApiKeyId, Attempt, AttemptId, AuditRecord, Endpoint, EndpointId, Event, EventId, Org,
    OrgId, Secret, Timestamp,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod delivery;
mod leases;
mod writer;

use leases::LeaseTable;
use writer::WriteTx;

use crate::health::WriteHealth;
use crate::rows::{
    ENDPOINT_COLUMNS, api_key_from_row, audit_from_row, endpoint_from_row, events_json,
    org_from_row,
};
use crate::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimedDelivery, EndpointPatch, Page,
    PageRequest, PublishedEvent, PurgeReport, QueueStats, RateDecision, RateLimit, SecretCipher,
    Store, StoreError, WriteStatus, gcra_step, map_error,
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
    cipher: SecretCipher,
    /// The deliveries this process's worker holds (an embedded database has one Herald).
    leases: Arc<LeaseTable>,
    /// Whether writes succeed (a full disk makes them fail while reads go on).
    health: Arc<WriteHealth>,
}

impl SqliteStore {
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
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(map_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(StoreError::Migration)?;
        let read_only = options.read_only(true);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(read_only.clone())
            .await
            .map_err(map_error)?;
        let claim_reader = SqlitePoolOptions::new()
            // The worker runs up to two claims at once (herald_delivery::worker).
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(read_only)
            .await
            .map_err(map_error)?;
        Ok(Self {
            writer,
            reader,
            claim_reader,
            cipher,
            leases: Arc::default(),
            health: Arc::default(),
        })
    }

    async fn begin(&self) -> Result<WriteTx, StoreError> {
        WriteTx::begin(&self.writer, &self.health).await
    }
}

async fn insert_audit(tx: &mut WriteTx, audit: &AuditRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, api_key_id, action, target_id, occurred_at, request_id, reason)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(audit.id.as_uuid())
    .bind(audit.org_id.as_uuid())
    .bind(audit.api_key_id.map(|id| id.as_uuid()))
    .bind(audit.action.as_str())
    .bind(&audit.target_id)
    .bind(audit.occurred_at.as_micros())
    .bind(&audit.request_id)
    .bind(&audit.reason)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_error)?;
        match self.health.probe_due() {
            None => Ok(()),
            Some(false) => Err(StoreError::NotWritable),
            Some(true) => {
                let mut tx = self.begin().await?;
                sqlx::query(&crate::sql::write_probe(crate::sql::Dialect::Sqlite))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                tx.commit().await
            }
        }
    }

    fn write_status(&self) -> WriteStatus {
        self.health.status()
    }

    async fn create_org(&self, org: &Org) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)")
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.created_at.as_micros())
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn create_first_org(&self, org: &Org) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_error)?;
        if existing > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)")
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.created_at.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM orgs ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(map_error)?;
        rows.iter().map(org_from_row).collect()
    }

    async fn get_org(&self, org_id: OrgId) -> Result<Org, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id = ?")
            .bind(org_id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_error)?
            .ok_or(StoreError::NotFound)?;
        org_from_row(&row)
    }

    async fn rotate_org_secret(
        &self,
        org_id: OrgId,
        secret: &Secret,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE orgs SET webhook_secret = ?, webhook_secret_rotated_at = ? WHERE id = ?",
        )
        .bind(self.cipher.seal(secret))
        .bind(audit.occurred_at.as_micros())
        .bind(org_id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if updated.rows_affected() == 0 {
            return tx.refuse(StoreError::NotFound).await;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await
    }

    async fn get_org_secret(&self, org_id: OrgId) -> Result<Option<Secret>, StoreError> {
        let sealed: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT webhook_secret FROM orgs WHERE id = ?")
                .bind(org_id.as_uuid())
                .fetch_optional(&self.reader)
                .await
                .map_err(map_error)?;
        match sealed {
            None => Err(StoreError::NotFound),
            Some(None) => Ok(None),
            Some(Some(sealed)) => self.cipher.open(&sealed).map(Some),
        }
    }

    async fn create_api_key(&self, key: &ApiKey, hash: &ApiKeyHash) -> Result<(), StoreError> {
        let scopes = key
            .scopes
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, key_hash, hint, scopes, created_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(key.id.as_uuid())
        .bind(key.org_id.as_uuid())
        .bind(hash.as_slice())
        .bind(&key.hint)
        .bind(scopes)
        .bind(key.created_at.as_micros())
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn list_api_keys(&self, org_id: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, hint, scopes, created_at, revoked_at FROM api_keys WHERE org_id = ? ORDER BY id",
        )
        .bind(org_id.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?
             RETURNING id, org_id, hint, scopes, created_at, revoked_at",
        )
        .bind(at.as_micros())
        .bind(key_id.as_uuid())
        .fetch_optional(&self.writer)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)?;
        api_key_from_row(&row)
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        // A revocation must be visible to the very next request: every read starts a fresh
        // WAL snapshot, which includes each transaction committed before it.
        let row = sqlx::query(
            "SELECT id, org_id, hint, scopes, created_at, revoked_at FROM api_keys WHERE key_hash = ?",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secret: &Secret,
        cap: u32,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints WHERE org_id = ? AND deleted_at IS NULL",
        )
        .bind(endpoint.org_id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_error)?;
        if live >= i64::from(cap) {
            return tx.refuse(StoreError::LimitExceeded).await;
        }
        sqlx::query(
            "INSERT INTO endpoints (id, org_id, url, description, events, active, api_version, secret,
                                    created_at, updated_at, deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(endpoint.id.as_uuid())
        .bind(endpoint.org_id.as_uuid())
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(events_json(&endpoint.events))
        .bind(endpoint.active)
        .bind(&endpoint.api_version)
        .bind(self.cipher.seal(secret))
        .bind(endpoint.created_at.as_micros())
        .bind(endpoint.updated_at.as_micros())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await
    }

    async fn list_endpoints(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints WHERE org_id = ? AND deleted_at IS NULL",
        )
        .bind(org_id.as_uuid())
        .fetch_one(&self.reader)
        .await
        .map_err(map_error)?;
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints
             WHERE org_id = ? AND deleted_at IS NULL AND (? IS NULL OR id < ?)
             ORDER BY id DESC LIMIT ?"
        );
        let after = page.cursor.map(|cursor| cursor.id());
        let rows = sqlx::query(&sql)
            .bind(org_id.as_uuid())
            .bind(after)
            .bind(after)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(map_error)?;
        let endpoints = rows
            .iter()
            .map(endpoint_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(
            endpoints,
            page.limit,
            total.unsigned_abs(),
            |endpoint| endpoint.id.as_uuid(),
        ))
    }

    async fn get_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<Endpoint, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_error)?
            .ok_or(StoreError::NotFound)?;
        endpoint_from_row(&row)
    }

    async fn update_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        patch: &EndpointPatch,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError> {
        let mut tx = self.begin().await?;
        // `updated_at` always moves forward, even when two updates share a microsecond.
        let sql = format!(
            "UPDATE endpoints SET
                url = COALESCE(?, url),
                description = CASE WHEN ? THEN ? ELSE description END,
                events = COALESCE(?, events),
                active = COALESCE(?, active),
                updated_at = MAX(?, updated_at + 1)
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&patch.url)
            .bind(patch.description.is_some())
            .bind(patch.description.clone().flatten())
            .bind(patch.events.as_deref().map(events_json))
            .bind(patch.active)
            .bind(audit.occurred_at.as_micros())
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        let Some(row) = row else {
            return tx.refuse(StoreError::NotFound).await;
        };
        let endpoint = endpoint_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    async fn delete_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "UPDATE endpoints SET deleted_at = ?, updated_at = MAX(?, updated_at + 1)
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
        )
        .bind(audit.occurred_at.as_micros())
        .bind(audit.occurred_at.as_micros())
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if deleted.rows_affected() == 0 {
            return tx.refuse(StoreError::NotFound).await;
        }
        delivery::abandon_pending(&mut tx, endpoint_id, "endpoint deleted", audit.occurred_at)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await
    }

    async fn rotate_endpoint_secret(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        secret: &Secret,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE endpoints SET secret = ?, updated_at = MAX(?, updated_at + 1)
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(self.cipher.seal(secret))
            .bind(audit.occurred_at.as_micros())
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        let Some(row) = row else {
            return tx.refuse(StoreError::NotFound).await;
        };
        let endpoint = endpoint_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    async fn get_endpoint_secret(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<Secret, StoreError> {
        let sealed: Vec<u8> = sqlx::query_scalar(
            "SELECT secret FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
        )
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)?;
        self.cipher.open(&sealed)
    }

    async fn append_audit_record(&self, audit: &AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await
    }

    async fn list_audit_records(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE org_id = ?")
            .bind(org_id.as_uuid())
            .fetch_one(&self.reader)
            .await
            .map_err(map_error)?;
        let after = page.cursor.map(|cursor| cursor.id());
        let rows = sqlx::query(
            "SELECT id, org_id, api_key_id, action, target_id, occurred_at, request_id, reason FROM audit_log
             WHERE org_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(org_id.as_uuid())
        .bind(after)
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?;
        let records = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(
            records,
            page.limit,
            total.unsigned_abs(),
            |record| record.id.as_uuid(),
        ))
    }

    async fn acquire_rate_limit(
        &self,
        key: &str,
        rate: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        let mut tx = self.begin().await?;
        let stored: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        let (decision, new_tat) = gcra_step(stored, rate, now);
        if let Some(tat) = new_tat {
            sqlx::query("INSERT INTO rate_limits (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat = excluded.tat")
                .bind(key)
                .bind(tat)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    async fn publish_events(&self, events: &[Event]) -> Result<Vec<PublishedEvent>, StoreError> {
        self.health
            .observe(delivery::publish_events(self, events).await)
    }

    async fn enqueue_replay(
        &self,
        event: &Event,
        endpoint_id: EndpointId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        delivery::enqueue_replay(self, event, endpoint_id, audit).await
    }

    async fn record_test_attempt(
        &self,
        event: &Event,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        delivery::record_test_attempt(self, event, attempt).await
    }

    async fn claim_due_deliveries(
        &self,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        delivery::claim_due_deliveries(self, request).await
    }

    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.health
            .observe(delivery::record_attempts(self, recordings, disable_failing_before).await)
    }

    async fn release_all_leases(&self) -> Result<(), StoreError> {
        delivery::release_all_leases(self).await
    }

    async fn list_attempts(
        &self,
        org_id: OrgId,
        filter: &AttemptFilter,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError> {
        delivery::list_attempts(self, org_id, filter, page).await
    }

    async fn get_attempt(
        &self,
        org_id: OrgId,
        attempt_id: AttemptId,
    ) -> Result<Attempt, StoreError> {
        delivery::get_attempt(self, org_id, attempt_id).await
    }

    async fn get_event(&self, org_id: OrgId, event_id: EventId) -> Result<Event, StoreError> {
        delivery::get_event(self, org_id, event_id).await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, StoreError> {
        delivery::queue_stats(self, now).await
    }

    async fn purge_expired(
        &self,
        events_before: Timestamp,
        attempts_before: Timestamp,
        batch: u32,
    ) -> Result<PurgeReport, StoreError> {
        delivery::purge_expired(self, events_before, attempts_before, batch).await
    }
}
