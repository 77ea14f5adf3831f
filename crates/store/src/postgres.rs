//! The PostgreSQL backend, for several Herald nodes sharing one database.
//!
//! Every rule that must hold across nodes is enforced by the database, never by one process's
//! memory: the endpoint cap by locking the organization's row for the create transaction,
//! idempotency keys by a transaction-scoped advisory lock on (organization, key) plus the
//! unique index, rate limits by locking their row, and claims by `FOR UPDATE SKIP LOCKED`
//! with a lease, so no live node is ever handed a delivery another node holds.
//!
//! The pool is bounded and acquiring a connection times out quickly, so while the database is
//! unreachable requests fail fast with `StoreError::Unavailable` (503) instead of hanging;
//! each connection carries a statement timeout for the same reason.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::scope::Scope;
use herald_domain::secret::ApiKeyHash;
use herald_domain::{
    ApiKey, ApiKeyId, Attempt, AttemptId, AuditRecord, Endpoint, EndpointId, Event, EventId, Org,
    OrgId, Secret, Timestamp,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

mod delivery;

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

/// Settings of the PostgreSQL connection pool.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections this node opens.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Longest any one statement may run.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(15),
        }
    }
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    cipher: SecretCipher,
    /// Whether writes succeed (a server out of disk answers reads and refuses writes).
    health: Arc<WriteHealth>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies migrations.
    pub async fn open(
        url: &str,
        options: &PostgresOptions,
        cipher: SecretCipher,
    ) -> Result<Self, StoreError> {
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let connect = url
            .parse::<PgConnectOptions>()
            .map_err(map_error)?
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
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(StoreError::Migration)?;
        Ok(Self {
            pool,
            cipher,
            health: Arc::default(),
        })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map_error)
    }
}

async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, api_key_id, action, target_id, occurred_at, request_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        match self.health.probe_due() {
            None => Ok(()),
            Some(false) => Err(StoreError::NotWritable),
            Some(true) => {
                let probed = sqlx::query(&crate::sql::write_probe(crate::sql::Dialect::Postgres))
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(map_error);
                self.health.observe(probed)
            }
        }
    }

    fn write_status(&self) -> WriteStatus {
        self.health.status()
    }

    async fn create_org(&self, org: &Org) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.created_at.as_micros())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn create_first_org(&self, org: &Org) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Nodes starting together queue here; the first to arrive creates the organization.
        sqlx::query("SELECT pg_advisory_xact_lock(7302851120413911)")
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_error)?;
        if existing > 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.created_at.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM orgs ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(org_from_row).collect()
    }

    async fn get_org(&self, org_id: OrgId) -> Result<Org, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id = $1")
            .bind(org_id.as_uuid())
            .fetch_optional(&self.pool)
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
            "UPDATE orgs SET webhook_secret = $1, webhook_secret_rotated_at = $2 WHERE id = $3",
        )
        .bind(self.cipher.seal(secret))
        .bind(audit.occurred_at.as_micros())
        .bind(org_id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn get_org_secret(&self, org_id: OrgId) -> Result<Option<Secret>, StoreError> {
        let sealed: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT webhook_secret FROM orgs WHERE id = $1")
                .bind(org_id.as_uuid())
                .fetch_optional(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(key.id.as_uuid())
        .bind(key.org_id.as_uuid())
        .bind(hash.as_slice())
        .bind(&key.hint)
        .bind(scopes)
        .bind(key.created_at.as_micros())
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn list_api_keys(&self, org_id: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, hint, scopes, created_at, revoked_at FROM api_keys WHERE org_id = $1 ORDER BY id",
        )
        .bind(org_id.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2
             RETURNING id, org_id, hint, scopes, created_at, revoked_at",
        )
        .bind(at.as_micros())
        .bind(key_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)?;
        api_key_from_row(&row)
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        // A revocation must be visible to the very next request: every read starts a fresh
        // WAL snapshot, which includes each transaction committed before it.
        let row = sqlx::query(
            "SELECT id, org_id, hint, scopes, created_at, revoked_at FROM api_keys WHERE key_hash = $1",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
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
        // Creates for one organization queue on its row, so count-then-insert is atomic
        // across every node.
        sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE")
            .bind(endpoint.org_id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints WHERE org_id = $1 AND deleted_at IS NULL",
        )
        .bind(endpoint.org_id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_error)?;
        if live >= i64::from(cap) {
            return Err(StoreError::LimitExceeded);
        }
        sqlx::query(
            "INSERT INTO endpoints (id, org_id, url, description, events, active, api_version, secret,
                                    created_at, updated_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
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
        tx.commit().await.map_err(map_error)
    }

    async fn list_endpoints(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints WHERE org_id = $1 AND deleted_at IS NULL",
        )
        .bind(org_id.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?;
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints
             WHERE org_id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        );
        let after = page.cursor.map(|cursor| cursor.id());
        let rows = sqlx::query(&sql)
            .bind(org_id.as_uuid())
            .bind(after)
            .bind(after)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
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
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid())
            .fetch_optional(&self.pool)
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
                url = COALESCE($1, url),
                description = CASE WHEN $2 THEN $3 ELSE description END,
                events = COALESCE($4, events),
                active = COALESCE($5, active),
                updated_at = GREATEST($6, updated_at + 1)
             WHERE id = $7 AND org_id = $8 AND deleted_at IS NULL
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
            .map_err(map_error)?
            .ok_or(StoreError::NotFound)?;
        let endpoint = endpoint_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map_error)?;
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
            "UPDATE endpoints SET deleted_at = $1, updated_at = GREATEST($2, updated_at + 1)
             WHERE id = $3 AND org_id = $4 AND deleted_at IS NULL",
        )
        .bind(audit.occurred_at.as_micros())
        .bind(audit.occurred_at.as_micros())
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        delivery::abandon_pending(&mut tx, endpoint_id, "endpoint deleted", audit.occurred_at)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map_error)
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
            "UPDATE endpoints SET secret = $1, updated_at = GREATEST($2, updated_at + 1)
             WHERE id = $3 AND org_id = $4 AND deleted_at IS NULL
             RETURNING {ENDPOINT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(self.cipher.seal(secret))
            .bind(audit.occurred_at.as_micros())
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?
            .ok_or(StoreError::NotFound)?;
        let endpoint = endpoint_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(endpoint)
    }

    async fn get_endpoint_secret(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<Secret, StoreError> {
        let sealed: Vec<u8> = sqlx::query_scalar(
            "SELECT secret FROM endpoints WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL",
        )
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)?;
        self.cipher.open(&sealed)
    }

    async fn append_audit_record(&self, audit: &AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn list_audit_records(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE org_id = $1")
            .bind(org_id.as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?;
        let after = page.cursor.map(|cursor| cursor.id());
        let rows = sqlx::query(
            "SELECT id, org_id, api_key_id, action, target_id, occurred_at, request_id, reason FROM audit_log
             WHERE org_id = $1 AND ($2 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(org_id.as_uuid())
        .bind(after)
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
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
        // Make sure the row exists, then lock it: concurrent requests on any node queue here.
        sqlx::query(
            "INSERT INTO rate_limits (key, tat) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT tat FROM rate_limits WHERE key = $1 FOR UPDATE")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?;
        let (decision, new_tat) = gcra_step(stored, rate, now);
        if let Some(tat) = new_tat {
            sqlx::query("UPDATE rate_limits SET tat = $2 WHERE key = $1")
                .bind(key)
                .bind(tat)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        tx.commit().await.map_err(map_error)?;
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
