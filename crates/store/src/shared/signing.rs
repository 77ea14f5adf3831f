//! What signs a delivery, read from storage: the endpoint's secrets, the organization's secret,
//! and the organization's Ed25519 signing key, made with the organization (`create_org`), or
//! on first need for an organization stored before keys were made with it.
//!
//! The key is made with the organization because making it on first need was a write
//! transaction of its own (a `synchronous=FULL` commit on SQLite) on the delivery path of
//! every organization's first delivery, which on a platform of many quiet tenants is most
//! deliveries' (BENCHMARKS.md, "what bends, fixed").
//!
//! **Concurrency.** Two requests, or two nodes, may need an organization's key first at the
//! same moment. Each inserts a fresh key with `ON CONFLICT (org_id) DO NOTHING`; the unique
//! `org_id` lets exactly one insert land, and each then reads the stored key, so all of them
//! sign with the one key `GET /v1/webhook-keys` lists. A key never changes once stored, so each
//! process keeps the keys it opened ([`SigningKeyCache`]) and opens each at most once: opening
//! decrypts the seed and derives the public key, which would otherwise double the cost of
//! signing every delivery.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use herald_domain::{
    OrgId, OrgSigningKey, PreviousSecret, SigningKeyId, SigningMaterial, Timestamp,
};

use super::{only, write_alone};
use crate::StoreError;
use crate::backend::{Backend, Pool};
use crate::rows::ReadRow;
use crate::statement::Statement;

/// The signing keys this process has opened, by organization.
#[derive(Debug, Default)]
pub(crate) struct SigningKeyCache {
    keys: RwLock<HashMap<OrgId, Arc<OrgSigningKey>>>,
}

impl SigningKeyCache {
    fn get(&self, org_id: OrgId) -> Option<Arc<OrgSigningKey>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(&org_id).cloned()
    }

    /// Keeps `key` unless a key of its organization is kept already, and returns the kept one.
    fn keep(&self, key: OrgSigningKey) -> Arc<OrgSigningKey> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(keys.entry(key.org_id).or_insert_with(|| Arc::new(key)))
    }
}

/// The organization's signing key, made and stored if it has none yet.
pub(super) async fn org_signing_key<B: Backend>(
    store: &B,
    org_id: OrgId,
) -> Result<Arc<OrgSigningKey>, StoreError> {
    if let Some(key) = store.signing_keys().get(org_id) {
        return Ok(key);
    }
    let key = match read_signing_key(store, org_id).await? {
        Some(key) => key,
        None => {
            let fresh = OrgSigningKey::generate(org_id, Timestamp::now());
            let insert = insert_signing_key(store, &fresh);
            write_alone(store, insert).await?;
            // The insert may have lost to another request's or node's: the stored key is it.
            read_signing_key(store, org_id)
                .await?
                .ok_or(StoreError::Corrupt(
                    "a stored signing key cannot be read back",
                ))?
        }
    };
    Ok(store.signing_keys().keep(key))
}

/// Stores `key` as its organization's signing key unless the organization has one:
/// `INSERT … ON CONFLICT (org_id) DO NOTHING`.
pub(super) fn insert_signing_key<B: Backend>(store: &B, key: &OrgSigningKey) -> Statement<'static> {
    Statement::new(
        "INSERT INTO org_signing_keys (id, org_id, sealed_key, public_key, created_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(key.id.as_uuid())
    .bind(key.org_id.as_uuid())
    .bind(store.cipher().seal_signing_key(key))
    .bind(key.public_key().to_vec())
    .bind(key.created_at.as_micros())
}

/// Keeps `key`, stored with its organization, in this process's cache.
pub(super) fn keep_signing_key<B: Backend>(store: &B, key: OrgSigningKey) {
    store.signing_keys().keep(key);
}

/// Reads the signing material of a row that carries the endpoint's `org_id`, `secret`,
/// `previous_secret` and `previous_secret_until` and the organization's `webhook_secret`. A
/// previous secret whose grace period is over at `now` is left out (and not decrypted).
pub(super) async fn signing_material_from_row<B: Backend>(
    store: &B,
    row: &impl ReadRow,
    now: Timestamp,
) -> Result<SigningMaterial, StoreError> {
    let org_id = OrgId::from_uuid(row.uuid("org_id")?);
    Ok(SigningMaterial {
        endpoint_secret: store.cipher().open(&row.bytes("secret")?)?,
        previous_secret: previous_secret_from_row(store, row, now)?,
        org_secret: row
            .optional_bytes("webhook_secret")?
            .map(|sealed| store.cipher().open(&sealed))
            .transpose()?,
        org_signing_key: org_signing_key(store, org_id).await?,
    })
}

/// The endpoint's previous secret, while its grace period runs at `now`.
pub(super) fn previous_secret_from_row<B: Backend>(
    store: &B,
    row: &impl ReadRow,
    now: Timestamp,
) -> Result<Option<PreviousSecret>, StoreError> {
    let Some(until) = row.optional_integer("previous_secret_until")? else {
        return Ok(None);
    };
    let valid_until = Timestamp::from_micros(until);
    if valid_until <= now {
        return Ok(None);
    }
    let Some(sealed) = row.optional_bytes("previous_secret")? else {
        return Ok(None);
    };
    Ok(Some(PreviousSecret {
        secret: store.cipher().open(&sealed)?,
        valid_until,
    }))
}

/// What signs deliveries to a live endpoint of the organization now.
pub(super) async fn get_signing_material<B: Backend>(
    store: &B,
    org_id: OrgId,
    endpoint_id: herald_domain::EndpointId,
) -> Result<SigningMaterial, StoreError> {
    let select = Statement::new(
        "SELECT p.org_id, p.secret, p.previous_secret, p.previous_secret_until, o.webhook_secret
         FROM endpoints p JOIN orgs o ON o.id = p.org_id
         WHERE p.id = ? AND p.org_id = ? AND p.deleted_at IS NULL",
    )
    .bind(endpoint_id.as_uuid())
    .bind(org_id.as_uuid());
    let row = only(store.run(Pool::Read, select).await?)?;
    signing_material_from_row(store, &row, Timestamp::now()).await
}

async fn read_signing_key<B: Backend>(
    store: &B,
    org_id: OrgId,
) -> Result<Option<OrgSigningKey>, StoreError> {
    let select =
        Statement::new("SELECT id, sealed_key, created_at FROM org_signing_keys WHERE org_id = ?")
            .bind(org_id.as_uuid());
    let Some(row) = store.run(Pool::Read, select).await?.into_iter().next() else {
        return Ok(None);
    };
    let seed = store
        .cipher()
        .open_signing_key_seed(&row.bytes("sealed_key")?)?;
    Ok(Some(OrgSigningKey::from_seed(
        SigningKeyId::from_uuid(row.uuid("id")?),
        org_id,
        Timestamp::from_micros(row.integer("created_at")?),
        &seed,
    )))
}
