//! Probing, written once: which endpoints Herald disabled for their failures are due for a
//! probe, and what a probe's 2xx sets off (docs/api.md#probing): the endpoint active again,
//! `endpoint.enabled`, an audit record, and a recovery of everything it missed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use herald_domain::operational::{self, EnabledBy};
use herald_domain::recovery::{Recovery, RecoveryScope, RecoveryStatus};
use herald_domain::{
    AuditAction, AuditId, AuditRecord, DisabledReason, EndpointId, OrgId, RecoveryId,
    SigningMaterial, Timestamp,
};

use super::delivery::fan_out;
use super::recovery::{audited, insert_recovery};
use super::signing::{org_signing_key, previous_secret_from_row};
use crate::StoreError;
use crate::backend::{Backend, WriteTransaction};
use crate::queue::ProbeTarget;
use crate::rows::{ENDPOINT_COLUMNS, ReadRow, endpoint_from_row, open_credentials};
use crate::shared::insert_audit;
use crate::statement::Statement;

/// At most `limit` endpoints to probe: disabled for `failing` since at most `probe_for`, and
/// not probed (nor disabled) in the last `interval`. Each is stamped probed at `now` in the same
/// statement, so of several nodes only one probes it this round.
pub(super) async fn take_due_probes<B: Backend>(
    store: &B,
    now: Timestamp,
    interval: Duration,
    probe_for: Duration,
    limit: u32,
) -> Result<Vec<ProbeTarget>, StoreError> {
    let before = |duration: Duration| {
        now.as_micros()
            .saturating_sub(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
    };
    let (disabled_after, last_probe_before) = (before(probe_for), before(interval));
    let due = "disabled_reason = ? AND deleted_at IS NULL AND NOT active \
               AND disabled_at >= ? AND COALESCE(probed_at, disabled_at) <= ?";
    let take = Statement::new(format!(
        "UPDATE endpoints SET probed_at = ?
         WHERE id IN (SELECT id FROM endpoints WHERE {due} ORDER BY disabled_at LIMIT ?{})
           AND {due}
         RETURNING {ENDPOINT_COLUMNS}, secret, previous_secret, previous_secret_until, headers,
                   client_certificate",
        B::DIALECT.skip_locked()
    ))
    .bind(now.as_micros())
    .bind(DisabledReason::Failing.as_str())
    .bind(disabled_after)
    .bind(last_probe_before)
    .bind(i64::from(limit))
    .bind(DisabledReason::Failing.as_str())
    .bind(disabled_after)
    .bind(last_probe_before);
    let mut tx = store.begin().await?;
    let rows = tx.fetch(take).await?;
    let mut org_secrets = HashMap::new();
    let mut taken = Vec::with_capacity(rows.len());
    for row in &rows {
        let endpoint = endpoint_from_row(row)?;
        let org_secret = match org_secrets.get(&endpoint.org_id) {
            Some(secret) => secret,
            None => {
                let select = Statement::new("SELECT webhook_secret FROM orgs WHERE id = ?")
                    .bind(endpoint.org_id.as_uuid());
                let sealed = match tx.fetch_first(select).await? {
                    Some(row) => row.optional_bytes("webhook_secret")?,
                    None => None,
                };
                let secret = sealed
                    .map(|sealed| store.cipher().open(&sealed))
                    .transpose()?;
                org_secrets.entry(endpoint.org_id).or_insert(secret)
            }
        };
        let secrets = (
            store.cipher().open(&row.bytes("secret")?)?,
            previous_secret_from_row(store, row, now)?,
            org_secret.clone(),
        );
        let credentials = open_credentials(row, store.cipher())?;
        taken.push((endpoint, secrets, credentials));
    }
    tx.commit().await?;
    // The organizations' keys are read (or made) after the commit: making one writes, and the
    // probes' transaction is no place to wait for that.
    let mut targets = Vec::with_capacity(taken.len());
    for (endpoint, (endpoint_secret, previous_secret, org_secret), credentials) in taken {
        let org_signing_key = org_signing_key(store, endpoint.org_id).await?;
        let signing = SigningMaterial {
            endpoint_secret,
            previous_secret,
            org_secret,
            org_signing_key,
        };
        targets.push(ProbeTarget {
            endpoint,
            signing,
            credentials,
        });
    }
    Ok(targets)
}

/// After a probe of `endpoint_id` was answered with a 2xx at `at`: the endpoint set active
/// (its reason and failure streak cleared), `endpoint.enabled` (`by: "probe"`) published, an
/// audit record written, and a recovery with `include_missing` from the start of the failure
/// streak started, all in one transaction. `None` when the endpoint is no longer disabled for
/// `failing` (re-enabled, deleted or disabled by its organization meanwhile).
pub(super) async fn enable_after_probe<B: Backend>(
    store: &B,
    endpoint_id: EndpointId,
    at: Timestamp,
) -> Result<Option<Recovery>, StoreError> {
    let mut tx = store.begin().await?;
    let streak = Statement::new(
        "SELECT org_id, failing_since, disabled_at FROM endpoints
         WHERE id = ? AND NOT active AND disabled_reason = ? AND deleted_at IS NULL",
    )
    .bind(endpoint_id.as_uuid())
    .bind(DisabledReason::Failing.as_str());
    let Some(streak) = tx.fetch_first(streak).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let streak_began = match streak.optional_integer("failing_since")? {
        Some(since) => since,
        None => streak.integer("disabled_at")?,
    };
    // The recovery's window starts at the streak's start, or earlier at the oldest event whose
    // delivery died during the streak (published before it, failed or withheld in it): so it
    // catches up on every event the endpoint missed, not only those published while it failed.
    let oldest_dead = Statement::new(
        "SELECT MIN(e.created_at) AS oldest FROM attempts a JOIN events e ON e.id = a.event_id
         WHERE a.org_id = ? AND a.endpoint_id = ? AND a.outcome = 'dead' AND a.occurred_at >= ?",
    )
    .bind(streak.uuid("org_id")?)
    .bind(endpoint_id.as_uuid())
    .bind(streak_began);
    let since = match tx.fetch_first(oldest_dead).await? {
        Some(row) => row
            .optional_integer("oldest")?
            .map_or(streak_began, |oldest| oldest.min(streak_began)),
        None => streak_began,
    };
    let enable = Statement::new(format!(
        "UPDATE endpoints SET active = TRUE, disabled_reason = NULL, disabled_at = NULL,
             probed_at = NULL, failing_since = NULL, {}
         WHERE id = ? AND NOT active AND disabled_reason = ? AND deleted_at IS NULL
         RETURNING {ENDPOINT_COLUMNS}",
        super::updated_at::<B>()
    ))
    .bind(at.as_micros())
    .bind(endpoint_id.as_uuid())
    .bind(DisabledReason::Failing.as_str());
    let Some(row) = tx.fetch_first(enable).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let endpoint = endpoint_from_row(&row)?;
    // The window ends now, inside the transaction that enables the endpoint, not when the
    // probe was sent: an event published while the probe was in flight found the endpoint
    // inactive and must be caught up too. (Events published from the commit on are fanned
    // out to it as usual.)
    let at = Timestamp::now().max(at);
    let enabled = operational::endpoint_enabled(
        endpoint.org_id,
        endpoint.id,
        &endpoint.url,
        EnabledBy::Probe,
        at,
    );
    fan_out::<B>(&mut tx, &[enabled], &BTreeSet::new()).await?;
    let recovery = Recovery {
        id: RecoveryId::new(),
        org_id: endpoint.org_id,
        endpoint_id,
        status: RecoveryStatus::Queued,
        scope: RecoveryScope {
            since: Timestamp::from_micros(since),
            until: at,
            event_types: None,
            include_missing: true,
        },
        dry_run: false,
        matched: 0,
        enqueued: 0,
        created_at: at,
        finished_at: None,
    };
    // Unique among unfinished recoveries of the endpoint, like a request's.
    let fingerprint = format!("probe {streak_began}");
    let recovery = insert_recovery(&mut tx, &endpoint, &recovery, &fingerprint).await?;
    let enabled_audit = herald_audit(
        endpoint.org_id,
        endpoint_id,
        at,
        AuditAction::EndpointEnabled,
        Some(format!(
            "a probe was answered with a 2xx; recovery {} started",
            recovery.id
        )),
    );
    tx.execute(insert_audit(&enabled_audit)).await?;
    let recover_audit = herald_audit(endpoint.org_id, endpoint_id, at, AuditAction::Recover, None);
    tx.execute(insert_audit(&audited(&recover_audit, &recovery)))
        .await?;
    tx.commit().await?;
    Ok(Some(recovery))
}

/// An audit record of something Herald did itself (no API key, no request).
fn herald_audit(
    org_id: OrgId,
    endpoint_id: EndpointId,
    at: Timestamp,
    action: AuditAction,
    reason: Option<String>,
) -> AuditRecord {
    AuditRecord {
        id: AuditId::new(),
        org_id,
        api_key_id: None,
        action,
        target_id: endpoint_id.to_string(),
        occurred_at: at,
        request_id: None,
        reason,
    }
}
