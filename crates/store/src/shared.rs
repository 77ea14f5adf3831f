//! The [`Store`], written once over any [`Backend`]: organizations, API keys, endpoints, the
//! audit trail and rate limits here, the delivery half in [`delivery`]. A statement's text is
//! the same on both backends; where a rule needs more than one writer's serialization, the
//! backend takes a [`Lock`] (a no-op on SQLite, whose one writer already excludes the rest).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::operational::{self, EnabledBy, OPERATOR_HOOK, OPERATOR_ORG};
use herald_domain::recovery::Recovery;
use herald_domain::scope::Scope;
use herald_domain::secret::ApiKeyHash;
use herald_domain::{
    ApiKey, ApiKeyId, Attempt, AttemptId, AuditRecord, DisabledReason, Endpoint,
    EndpointCredentials, EndpointId, Event, EventId, Org, OrgId, OrgSigningKey, RecoveryId, Secret,
    SigningMaterial, Timestamp,
};

mod delivery;
pub(crate) mod ordering;
mod probe;
mod recovery;
mod signing;
mod stats;

pub(crate) use delivery::{resolve_scope, write_attempts};
pub(crate) use signing::SigningKeyCache;

use crate::backend::{Backend, Lock, Pool, WriteTransaction};
use crate::rows::{
    ENDPOINT_COLUMNS, ReadRow, api_key_from_row, audit_from_row, endpoint_from_row, events_json,
    filter_json, open_credentials, org_from_row, sealed_client_certificate, sealed_custom_headers,
};
use crate::statement::Statement;
use crate::{
    AttemptFilter, AttemptRecording, ClaimRequest, ClaimedDelivery, EndpointPatch, EndpointStats,
    OperatorHook, Page, PageRequest, ProbeTarget, PublishedEvent, PurgeBatch, PurgeReport,
    QueueStats, RateDecision, RateLimit, Sequenced, Store, StoreError, WriteStatus, gcra_step, sql,
};

const API_KEY_COLUMNS: &str =
    "id, org_id, hint, scopes, created_at, revoked_at, expires_at, portal";
const AUDIT_COLUMNS: &str =
    "id, org_id, api_key_id, action, target_id, occurred_at, request_id, reason";

#[async_trait]
impl<B: Backend> Store for B {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(Pool::Read, Statement::new("SELECT 1")).await?;
        match self.health().probe_due() {
            None => Ok(()),
            Some(false) => Err(StoreError::NotWritable),
            Some(true) => {
                let probe = Statement::new(sql::write_probe(B::DIALECT));
                write_alone(self, probe).await.map(drop)
            }
        }
    }

    fn write_status(&self) -> WriteStatus {
        self.health().status()
    }

    async fn create_org(&self, org: &Org) -> Result<(), StoreError> {
        let key = OrgSigningKey::generate(org.id, org.created_at);
        let written = async {
            let mut tx = self.begin().await?;
            tx.execute(insert_org(org)).await?;
            tx.execute(signing::insert_signing_key(self, &key)).await?;
            tx.commit().await
        }
        .await;
        self.health().observe(written)?;
        signing::keep_signing_key(self, key);
        Ok(())
    }

    async fn create_first_org(&self, org: &Org) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        B::lock(&mut tx, Lock::FirstOrg).await?;
        let existing = Statement::new("SELECT COUNT(*) AS n FROM orgs WHERE id <> ?")
            .bind(OPERATOR_ORG.as_uuid());
        if count(&mut tx, existing).await? > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let key = OrgSigningKey::generate(org.id, org.created_at);
        tx.execute(insert_org(org)).await?;
        tx.execute(signing::insert_signing_key(self, &key)).await?;
        tx.commit().await?;
        signing::keep_signing_key(self, key);
        Ok(true)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let select =
            Statement::new("SELECT id, name, created_at FROM orgs WHERE id <> ? ORDER BY id")
                .bind(OPERATOR_ORG.as_uuid());
        let rows = self.run(Pool::Read, select).await?;
        rows.iter().map(org_from_row).collect()
    }

    async fn get_org(&self, org_id: OrgId) -> Result<Org, StoreError> {
        // The operator hook's organization is Herald's own: no admin route sees it.
        let select =
            Statement::new("SELECT id, name, created_at FROM orgs WHERE id = ? AND id <> ?")
                .bind(org_id.as_uuid())
                .bind(OPERATOR_ORG.as_uuid());
        org_from_row(&only(self.run(Pool::Read, select).await?)?)
    }

    async fn rotate_org_secret(
        &self,
        org_id: OrgId,
        secret: &Secret,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let update = Statement::new(
            "UPDATE orgs SET webhook_secret = ?, webhook_secret_rotated_at = ? WHERE id = ?",
        )
        .bind(self.cipher().seal(secret))
        .bind(audit.occurred_at.as_micros())
        .bind(org_id.as_uuid());
        if tx.execute(update).await? == 0 {
            return tx.refuse(StoreError::NotFound).await;
        }
        commit_audited(tx, audit).await
    }

    async fn get_org_secret(&self, org_id: OrgId) -> Result<Option<Secret>, StoreError> {
        let select =
            Statement::new("SELECT webhook_secret FROM orgs WHERE id = ?").bind(org_id.as_uuid());
        let sealed = only(self.run(Pool::Read, select).await?)?.optional_bytes("webhook_secret")?;
        sealed.map(|sealed| self.cipher().open(&sealed)).transpose()
    }

    async fn create_api_key(&self, key: &ApiKey, hash: &ApiKeyHash) -> Result<(), StoreError> {
        let scopes = key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>();
        let insert = Statement::new(
            "INSERT INTO api_keys
               (id, org_id, key_hash, hint, scopes, created_at, revoked_at, expires_at, portal)
             VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(key.id.as_uuid())
        .bind(key.org_id.as_uuid())
        .bind(hash.as_slice())
        .bind(&key.hint)
        .bind(scopes.join(","))
        .bind(key.created_at.as_micros())
        .bind(key.expires_at.map(|at| at.as_micros()))
        .bind(portal_json(key)?);
        write_alone(self, insert).await.map(drop)
    }

    async fn list_api_keys(&self, org_id: OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let select = Statement::new(format!(
            // Portal sessions are short-lived and minted per visit: not listed with the keys.
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE org_id = ? AND portal IS NULL ORDER BY id"
        ))
        .bind(org_id.as_uuid());
        let rows = self.run(Pool::Read, select).await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> Result<ApiKey, StoreError> {
        let update = Statement::new(format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?
             RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(at.as_micros())
        .bind(key_id.as_uuid());
        api_key_from_row(&only(write_alone(self, update).await?)?)
    }

    async fn find_api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKey>, StoreError> {
        // A revocation must be visible to the very next request: every read starts a fresh
        // snapshot, which includes each transaction committed before it.
        let select = Statement::new(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"
        ))
        .bind(hash.as_slice());
        let rows = self.run(Pool::Read, select).await?;
        rows.first().map(api_key_from_row).transpose()
    }

    async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        secret: &Secret,
        credentials: &EndpointCredentials,
        cap: u32,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        B::lock(&mut tx, Lock::OrgEndpoints(endpoint.org_id)).await?;
        if count(&mut tx, live_endpoints(endpoint.org_id)).await? >= i64::from(cap) {
            return tx.refuse(StoreError::LimitExceeded).await;
        }
        let insert = Statement::new(
            "INSERT INTO endpoints (id, org_id, url, description, events, active, api_version, secret,
                                    created_at, updated_at, deleted_at, header_names, headers,
                                    client_certificate, client_certificate_subject,
                                    client_certificate_not_after, payload_filter)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
        )
        .bind(endpoint.id.as_uuid())
        .bind(endpoint.org_id.as_uuid())
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(events_json(&endpoint.events))
        .bind(endpoint.active)
        .bind(&endpoint.api_version)
        .bind(self.cipher().seal(secret))
        .bind(endpoint.created_at.as_micros())
        .bind(endpoint.updated_at.as_micros());
        let (names, sealed) = sealed_custom_headers(&credentials.custom_headers, self.cipher());
        let certificate =
            sealed_client_certificate(credentials.client_certificate.as_ref(), self.cipher());
        let summary = endpoint.client_certificate.as_ref();
        let insert = insert
            .bind(names)
            .bind(sealed)
            .bind(certificate)
            .bind(summary.map(|summary| summary.subject.clone()))
            .bind(summary.map(|summary| summary.not_after.as_micros()))
            .bind(endpoint.filter.as_ref().map(filter_json));
        tx.execute(insert).await?;
        commit_audited(tx, audit).await
    }

    async fn list_endpoints(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let total = Statement::new(
            "SELECT COUNT(*) AS n FROM endpoints WHERE org_id = ? AND deleted_at IS NULL",
        );
        let select = Statement::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE org_id = ? AND deleted_at IS NULL"
        ));
        let (total, select) = (total.bind(org_id.as_uuid()), select.bind(org_id.as_uuid()));
        read_page(self, total, select, page, endpoint_from_row, |endpoint| {
            endpoint.id.as_uuid()
        })
        .await
    }

    async fn get_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<Endpoint, StoreError> {
        let select = Statement::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ? AND org_id = ? AND deleted_at IS NULL"
        ))
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid());
        endpoint_from_row(&only(self.run(Pool::Read, select).await?)?)
    }

    async fn update_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        patch: &EndpointPatch,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError> {
        let mut tx = self.begin().await?;
        // Set active again while inactive: `endpoint.enabled` (`by: "api"`). The first
        // statement changes the row only if it was inactive, so of two such requests at once
        // only one reports it (PostgreSQL re-checks the condition after the row lock).
        let enabled = if patch.active == Some(true) {
            let enable = Statement::new(
                "UPDATE endpoints SET active = TRUE
                 WHERE id = ? AND org_id = ? AND deleted_at IS NULL AND NOT active
                 RETURNING url",
            )
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid());
            tx.fetch_first(enable).await?
        } else {
            None
        };
        let update = Statement::new(format!(
            "UPDATE endpoints SET
                url = COALESCE(?, url),
                description = CASE WHEN ? THEN ? ELSE description END,
                events = COALESCE(?, events),
                active = COALESCE(?, active),
                disabled_reason = CASE WHEN ? THEN ? ELSE disabled_reason END,
                disabled_at = CASE WHEN ? THEN ? ELSE disabled_at END,
                failing_since = CASE WHEN ? THEN NULL ELSE failing_since END,
                header_names = CASE WHEN ? THEN ? ELSE header_names END,
                headers = CASE WHEN ? THEN ? ELSE headers END,
                client_certificate = CASE WHEN ? THEN ? ELSE client_certificate END,
                client_certificate_subject = CASE WHEN ? THEN ? ELSE client_certificate_subject END,
                client_certificate_not_after =
                    CASE WHEN ? THEN ? ELSE client_certificate_not_after END,
                payload_filter = CASE WHEN ? THEN ? ELSE payload_filter END,
                {}
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL
             RETURNING {ENDPOINT_COLUMNS}",
            updated_at::<B>()
        ))
        .bind(&patch.url)
        .bind(patch.description.is_some())
        .bind(patch.description.clone().flatten())
        .bind(patch.events.as_deref().map(events_json))
        .bind(patch.active)
        // Set inactive by the organization: `manual`, whatever Herald had found before (it
        // stops probing). Set active: no reason, and a fresh start for the failure streak, or
        // the next failure would disable it again at once.
        .bind(patch.active.is_some())
        .bind(match patch.active {
            Some(false) => Some(DisabledReason::Manual.as_str()),
            Some(true) | None => None,
        })
        .bind(patch.active.is_some())
        .bind(match patch.active {
            Some(false) => Some(audit.occurred_at.as_micros()),
            Some(true) | None => None,
        })
        .bind(patch.active == Some(true));
        let (names, sealed) = patch
            .headers
            .as_ref()
            .map(|headers| sealed_custom_headers(headers, self.cipher()))
            .unwrap_or_default();
        let update = update
            .bind(patch.headers.is_some())
            .bind(names)
            .bind(patch.headers.is_some())
            .bind(sealed);
        let replaced = patch.client_certificate.as_ref();
        let new_pair = replaced.and_then(Option::as_ref);
        let update = update
            .bind(replaced.is_some())
            .bind(sealed_client_certificate(
                new_pair.map(|(pair, _)| pair),
                self.cipher(),
            ))
            .bind(replaced.is_some())
            .bind(new_pair.map(|(_, summary)| summary.subject.clone()))
            .bind(replaced.is_some())
            .bind(new_pair.map(|(_, summary)| summary.not_after.as_micros()))
            .bind(patch.filter.is_some())
            .bind(
                patch
                    .filter
                    .as_ref()
                    .and_then(Option::as_ref)
                    .map(filter_json),
            )
            .bind(audit.occurred_at.as_micros())
            .bind(endpoint_id.as_uuid())
            .bind(org_id.as_uuid());
        let Some(row) = tx.fetch_first(update).await? else {
            return tx.refuse(StoreError::NotFound).await;
        };
        let endpoint = endpoint_from_row(&row)?;
        if enabled.is_some() {
            let event = operational::endpoint_enabled(
                org_id,
                endpoint_id,
                &endpoint.url,
                EnabledBy::Api,
                audit.occurred_at,
            );
            delivery::fan_out::<B>(&mut tx, &[event], &BTreeSet::new()).await?;
        }
        commit_audited(tx, audit).await?;
        Ok(endpoint)
    }

    async fn delete_endpoint(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let delete = Statement::new(format!(
            "UPDATE endpoints SET deleted_at = ?, {}
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
            updated_at::<B>()
        ))
        .bind(audit.occurred_at.as_micros())
        .bind(audit.occurred_at.as_micros())
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid());
        if tx.execute(delete).await? == 0 {
            return tx.refuse(StoreError::NotFound).await;
        }
        delivery::abandon_pending(&mut tx, endpoint_id, "endpoint deleted", audit.occurred_at)
            .await?;
        commit_audited(tx, audit).await
    }

    async fn rotate_endpoint_secret(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        secret: &Secret,
        previous_valid_until: Option<Timestamp>,
        audit: &AuditRecord,
    ) -> Result<Endpoint, StoreError> {
        // The right-hand `secret` is the value before this update on both backends, so the
        // replaced secret moves to `previous_secret` still sealed, never decrypted. Without a
        // grace period the previous one (of an earlier rotation too) is cleared at once.
        let previous = if previous_valid_until.is_some() {
            "previous_secret = secret"
        } else {
            "previous_secret = NULL"
        };
        let update = Statement::new(format!(
            "UPDATE endpoints SET {previous}, previous_secret_until = ?, secret = ?, {}
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL
             RETURNING {ENDPOINT_COLUMNS}",
            updated_at::<B>()
        ))
        .bind(previous_valid_until.map(|until| until.as_micros()))
        .bind(self.cipher().seal(secret))
        .bind(audit.occurred_at.as_micros())
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid());
        update_audited(self, update, audit).await
    }

    async fn get_signing_material(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<SigningMaterial, StoreError> {
        signing::get_signing_material(self, org_id, endpoint_id).await
    }

    async fn org_signing_key(&self, org_id: OrgId) -> Result<Arc<OrgSigningKey>, StoreError> {
        signing::org_signing_key(self, org_id).await
    }

    async fn get_endpoint_credentials(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
    ) -> Result<EndpointCredentials, StoreError> {
        let select = Statement::new(
            "SELECT headers, client_certificate FROM endpoints
             WHERE id = ? AND org_id = ? AND deleted_at IS NULL",
        )
        .bind(endpoint_id.as_uuid())
        .bind(org_id.as_uuid());
        let row = only(self.run(Pool::Read, select).await?)?;
        open_credentials(&row, self.cipher())
    }

    async fn append_audit_record(&self, audit: &AuditRecord) -> Result<(), StoreError> {
        commit_audited(self.begin().await?, audit).await
    }

    async fn list_audit_records(
        &self,
        org_id: OrgId,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let total = Statement::new("SELECT COUNT(*) AS n FROM audit_log WHERE org_id = ?")
            .bind(org_id.as_uuid());
        let select = Statement::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = ?"
        ))
        .bind(org_id.as_uuid());
        read_page(self, total, select, page, audit_from_row, |record| {
            record.id.as_uuid()
        })
        .await
    }

    async fn acquire_rate_limit(
        &self,
        key: &str,
        rate: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        let mut tx = self.begin().await?;
        let (decision, new_tat) = gcra_step(B::read_rate_limit(&mut tx, key).await?, rate, now);
        if let Some(tat) = new_tat {
            let store = Statement::new(
                "INSERT INTO rate_limits (key, tat) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
            );
            tx.execute(store.bind(key).bind(tat)).await?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    async fn publish_events(&self, events: &[Event]) -> Result<Vec<PublishedEvent>, StoreError> {
        let published = self
            .health()
            .observe(delivery::publish_events(self, events).await)?;
        // The first delivery of an organization is its signing key's first need: made now, while
        // writes succeed, a claim only reads it, and claims go on when the disk is full. A
        // failure here is left to the claim, which makes the key itself when none exists.
        let orgs: BTreeSet<OrgId> = events.iter().map(|event| event.org_id).collect();
        for org_id in orgs {
            let _ = signing::org_signing_key(self, org_id).await;
        }
        Ok(published)
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

    async fn start_recovery(
        &self,
        recovery: &Recovery,
        fingerprint: &str,
        audit: &AuditRecord,
    ) -> Result<(Recovery, bool), StoreError> {
        recovery::start_recovery(self, recovery, fingerprint, audit).await
    }

    async fn get_recovery(&self, org_id: OrgId, id: RecoveryId) -> Result<Recovery, StoreError> {
        recovery::get_recovery(self, org_id, id).await
    }

    async fn advance_recoveries(&self, now: Timestamp, batch: u32) -> Result<bool, StoreError> {
        recovery::advance_recoveries(self, now, batch).await
    }

    async fn take_due_probes(
        &self,
        now: Timestamp,
        interval: Duration,
        probe_for: Duration,
        limit: u32,
    ) -> Result<Vec<ProbeTarget>, StoreError> {
        probe::take_due_probes(self, now, interval, probe_for, limit).await
    }

    async fn enable_after_probe(
        &self,
        endpoint_id: EndpointId,
        at: Timestamp,
    ) -> Result<Option<Recovery>, StoreError> {
        probe::enable_after_probe(self, endpoint_id, at).await
    }

    async fn configure_operator_hook(
        &self,
        hook: Option<&OperatorHook>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        match hook {
            Some(hook) => {
                let upsert = Statement::new(
                    "INSERT INTO endpoints (id, org_id, url, description, events, active, api_version,
                         secret, created_at, updated_at)
                     VALUES (?, ?, ?, 'the operator hook (HERALD_OPERATOR_WEBHOOK_URL)', ?, TRUE, ?, ?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events,
                         active = TRUE, api_version = excluded.api_version, secret = excluded.secret,
                         updated_at = excluded.updated_at, deleted_at = NULL, disabled_reason = NULL,
                         disabled_at = NULL, failing_since = NULL",
                )
                .bind(OPERATOR_HOOK.as_uuid())
                .bind(OPERATOR_ORG.as_uuid())
                .bind(hook.url.as_str())
                .bind(events_json(&operational::OPERATIONAL_EVENT_TYPES.map(str::to_owned)))
                .bind(hook.api_version.as_str())
                .bind(self.cipher().seal(&hook.secret))
                .bind(at.as_micros())
                .bind(at.as_micros());
                tx.execute(upsert).await?;
            }
            None => {
                let delete = Statement::new(
                    "UPDATE endpoints SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                )
                .bind(at.as_micros())
                .bind(OPERATOR_HOOK.as_uuid());
                if tx.execute(delete).await? > 0 {
                    let reason = "the operator hook was unset";
                    delivery::abandon_pending(&mut tx, OPERATOR_HOOK, reason, at).await?;
                }
            }
        }
        tx.commit().await?;
        if hook.is_some() {
            // Operational events are fanned out inside the store, not published: the hook's
            // signing key is made here, so no claim of its deliveries has to write.
            signing::org_signing_key(self, OPERATOR_ORG).await?;
        }
        Ok(())
    }

    async fn claim_due_deliveries(
        &self,
        request: &ClaimRequest,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim(request).await
    }

    async fn claim_successors(
        &self,
        delivery: &ClaimedDelivery,
        most: u32,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let (Some(key), Some(sequence)) = (&delivery.event.ordering_key, delivery.sequence) else {
            return Ok(Vec::new());
        };
        let behind = ordering::Behind {
            head: delivery.delivery_id,
            head_lease: delivery.lease,
            endpoint_id: delivery.endpoint.id,
            key,
            sequence,
            most,
        };
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut successors = Backend::claim_successors(self, &behind, now, now.add(lease)).await?;
        successors.sort_by_key(|successor| successor.sequence);
        Ok(successors)
    }

    fn release_unsent(&self, unsent: &[ClaimedDelivery]) {
        Backend::release_unsent(self, unsent);
    }

    fn releases_unsent(&self) -> bool {
        B::RELEASES_UNSENT
    }

    async fn record_attempts(
        &self,
        recordings: &[AttemptRecording],
        disable_failing_before: Timestamp,
    ) -> Result<(), StoreError> {
        let recorded = Backend::record_attempts(self, recordings, disable_failing_before).await;
        self.health().observe(recorded)
    }

    async fn release_all_leases(&self) -> Result<(), StoreError> {
        delivery::release_all_leases(self).await
    }

    fn wake_on_new_deliveries(&self, wakeup: Arc<tokio::sync::Notify>) {
        Backend::wake_on_new_deliveries(self, wakeup);
    }

    async fn flush_announcements(&self) {
        Backend::flush_announcements(self).await;
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

    async fn list_sequenced(
        &self,
        org_id: OrgId,
        endpoint_id: EndpointId,
        after_sequence: u64,
        limit: u32,
    ) -> Result<Vec<Sequenced>, StoreError> {
        delivery::list_sequenced(self, org_id, endpoint_id, after_sequence, limit).await
    }

    async fn get_event(&self, org_id: OrgId, event_id: EventId) -> Result<Event, StoreError> {
        delivery::get_event(self, org_id, event_id).await
    }

    async fn endpoint_stats(
        &self,
        endpoint_id: EndpointId,
        since: Timestamp,
    ) -> Result<EndpointStats, StoreError> {
        stats::endpoint_stats(self, endpoint_id, since).await
    }

    async fn queue_stats(
        &self,
        now: Timestamp,
        count_limit: u64,
    ) -> Result<QueueStats, StoreError> {
        delivery::queue_stats(self, now, count_limit).await
    }

    async fn purge_expired(&self, batch: &PurgeBatch) -> Result<PurgeReport, StoreError> {
        delivery::purge_expired(self, batch).await
    }
}

/// The stored form of a portal session's settings: JSON, or NULL for a plain key.
fn portal_json(key: &ApiKey) -> Result<Option<String>, StoreError> {
    key.portal
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|_| StoreError::Corrupt("a portal session that does not serialize"))
}

fn insert_org(org: &Org) -> Statement<'_> {
    Statement::new("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)")
        .bind(org.id.as_uuid())
        .bind(&org.name)
        .bind(org.created_at.as_micros())
}

fn live_endpoints(org_id: OrgId) -> Statement<'static> {
    Statement::new("SELECT COUNT(*) AS n FROM endpoints WHERE org_id = ? AND deleted_at IS NULL")
        .bind(org_id.as_uuid())
}

/// `updated_at` always moves forward, even when two updates share a microsecond; binds one
/// value, the change's instant.
fn updated_at<B: Backend>() -> String {
    format!("updated_at = {}(?, updated_at + 1)", B::DIALECT.greatest())
}

/// The claimed deliveries of [`CLAIMED_DETAILS`](crate::rows) rows, each with what signs it.
pub(crate) async fn claimed_from_rows<B: Backend>(
    store: &B,
    rows: &[B::Row],
    lease: crate::LeaseToken,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let now = Timestamp::now();
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let signing = signing::signing_material_from_row(store, row, now).await?;
        let credentials = crate::rows::open_credentials(row, store.cipher())?;
        claimed.push(crate::rows::claimed_from_row(
            row,
            signing,
            credentials,
            lease,
        )?);
    }
    Ok(claimed)
}

/// The only row of a result; none is `NotFound`.
fn only<R>(rows: Vec<R>) -> Result<R, StoreError> {
    rows.into_iter().next().ok_or(StoreError::NotFound)
}

/// The count a `SELECT COUNT(*) AS n` reads in `tx`.
async fn count<T: WriteTransaction>(
    tx: &mut T,
    statement: Statement<'_>,
) -> Result<i64, StoreError> {
    only(tx.fetch(statement).await?)?.integer("n")
}

/// Runs one write statement in a transaction of its own and returns its rows once the commit
/// succeeded. Never as a bare autocommit statement: on SQLite a `RETURNING` row can reach the
/// caller before the statement's commit fails (on a full disk a key revocation answered
/// success and was lost), and the store's write health hears of the outcome here.
pub(crate) async fn write_alone<B: Backend>(
    store: &B,
    statement: Statement<'_>,
) -> Result<Vec<B::Row>, StoreError> {
    let written = async {
        let mut tx = store.begin().await?;
        let rows = tx.fetch(statement).await?;
        tx.commit().await?;
        Ok(rows)
    }
    .await;
    store.health().observe(written)
}

/// Stores `audit` in `tx` and commits: a change and its record exist together or not at all.
async fn commit_audited<T: WriteTransaction>(
    mut tx: T,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    tx.execute(insert_audit(audit)).await?;
    tx.commit().await
}

/// Runs an `UPDATE … RETURNING` of a live endpoint and audits it; no such endpoint is `NotFound`.
async fn update_audited<B: Backend>(
    store: &B,
    update: Statement<'_>,
    audit: &AuditRecord,
) -> Result<Endpoint, StoreError> {
    let mut tx = store.begin().await?;
    let Some(row) = tx.fetch_first(update).await? else {
        return tx.refuse(StoreError::NotFound).await;
    };
    let endpoint = endpoint_from_row(&row)?;
    commit_audited(tx, audit).await?;
    Ok(endpoint)
}

pub(crate) fn insert_audit(audit: &AuditRecord) -> Statement<'_> {
    Statement::new(format!(
        "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(audit.id.as_uuid())
    .bind(audit.org_id.as_uuid())
    .bind(audit.api_key_id.map(|id| id.as_uuid()))
    .bind(audit.action.as_str())
    .bind(&audit.target_id)
    .bind(audit.occurred_at.as_micros())
    .bind(&audit.request_id)
    .bind(&audit.reason)
}

/// One page of a newest-first list: `total` counts every match (`COUNT(*) AS n`), `select`
/// (ending in its `WHERE` clause) reads them; the page adds the cursor and the limit.
async fn read_page<B: Backend, T>(
    store: &B,
    total: Statement<'_>,
    mut select: Statement<'_>,
    page: &PageRequest,
    read: impl Fn(&B::Row) -> Result<T, StoreError>,
    id_of: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StoreError> {
    let total = only(store.run(Pool::Read, total).await?)?.integer("n")?;
    if let Some(cursor) = page.cursor {
        select.push(" AND id < ").push_bind(cursor.id());
    }
    select
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(page.limit) + 1);
    let rows = store.run(Pool::Read, select).await?;
    let items = rows.iter().map(read).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(
        items,
        page.limit,
        total.unsigned_abs(),
        id_of,
    ))
}
