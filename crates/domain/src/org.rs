//! Organizations, API keys and audit records: the tenant, its credentials, and the trail of every
//! change made through the API (docs/api.md#audit-trail and
//! docs/api.md#organizations-and-api-keys).

use serde::Serialize;

use crate::ids::{ApiKeyId, AuditId, OrgId};
use crate::portal::PortalSession;
use crate::scope::Scope;
use crate::time::Timestamp;

/// An organization. Its webhook secret, if any, lives apart and never appears here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    /// The organization's id.
    pub id: OrgId,
    /// A display name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An API key's metadata. The key itself is shown once at creation and stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The key's id (not the key).
    pub id: ApiKeyId,
    /// The organization the key acts in.
    pub org_id: OrgId,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// The first characters of the key, to tell keys apart in listings.
    pub hint: String,
    /// When it was minted.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
    /// When it stops authenticating; only portal sessions expire.
    pub expires_at: Option<Timestamp>,
    /// The portal session's settings, when the key is one.
    pub portal: Option<PortalSession>,
}

impl ApiKey {
    /// Whether the key carries `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the key authenticates requests at `now`: not revoked, not expired.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// What an audited change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// `POST /v1/webhooks`.
    EndpointCreated,
    /// `PATCH /v1/webhooks/{id}`.
    EndpointUpdated,
    /// `DELETE /v1/webhooks/{id}`.
    EndpointDeleted,
    /// `POST /v1/webhooks/{id}/rotate-secret`.
    EndpointSecretRotated,
    /// Herald set an endpoint inactive (410 Gone, or failing for days).
    EndpointDisabled,
    /// Herald set an endpoint active again after a probe's 2xx.
    EndpointEnabled,
    /// `POST /v1/webhook-secret/rotate`.
    OrgSecretRotated,
    /// `POST /v1/webhooks/deliveries/{id}/replay`.
    DeliveryReplayed,
    /// `POST /v1/webhooks/{id}/recover` (named as the contract names it).
    Recover,
}

impl AuditAction {
    /// The stored and wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::EndpointCreated => "endpoint.created",
            AuditAction::EndpointUpdated => "endpoint.updated",
            AuditAction::EndpointDeleted => "endpoint.deleted",
            AuditAction::EndpointSecretRotated => "endpoint.secret_rotated",
            AuditAction::EndpointDisabled => "endpoint.disabled",
            AuditAction::EndpointEnabled => "endpoint.enabled",
            AuditAction::OrgSecretRotated => "org.secret_rotated",
            AuditAction::DeliveryReplayed => "delivery.replayed",
            AuditAction::Recover => "recover",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            AuditAction::EndpointCreated,
            AuditAction::EndpointUpdated,
            AuditAction::EndpointDeleted,
            AuditAction::EndpointSecretRotated,
            AuditAction::EndpointDisabled,
            AuditAction::EndpointEnabled,
            AuditAction::OrgSecretRotated,
            AuditAction::DeliveryReplayed,
            AuditAction::Recover,
        ]
        .into_iter()
        .find(|action| action.as_str() == text)
    }
}

/// One audit record. Secrets are never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The record's id.
    pub id: AuditId,
    /// The organization the change happened in.
    pub org_id: OrgId,
    /// The key that made the change; `None` when Herald itself acted.
    pub api_key_id: Option<ApiKeyId>,
    /// What happened.
    pub action: AuditAction,
    /// The id of the changed object, as text (endpoints, deliveries and organizations).
    pub target_id: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// The request that made the change, if any.
    pub request_id: Option<String>,
    /// The caller's reason (replay), or Herald's (automatic disable).
    pub reason: Option<String>,
}

/// Longest organization name, in characters.
pub const MAX_ORG_NAME_CHARS: usize = 200;

/// An organization's name is trimmed and then has 1 to [`MAX_ORG_NAME_CHARS`] characters;
/// returns the trimmed name, or the message for `details`.
pub fn check_org_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_ORG_NAME_CHARS {
        Err(format!("must be 1 to {MAX_ORG_NAME_CHARS} characters"))
    } else {
        Ok(name)
    }
}
