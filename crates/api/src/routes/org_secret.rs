//! The per-organization webhook secret (docs/api.md#the-organization-secret).

use axum::Json;
use axum::extract::State;
use herald_domain::{AuditAction, Secret, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{AdminOrg, Authorized};
use crate::routes::endpoints::audit_record;
use crate::state::AppState;

/// How long receivers should keep accepting the previous organization secret.
const PREVIOUS_SECRET_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// The answer of an organization secret rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgSecretResponse {
    /// Standard base64 of 32 random bytes; shown this once.
    pub webhook_secret: String,
    /// When the new secret took effect.
    #[schema(format = DateTime)]
    pub rotated_at: String,
    /// Until when receivers should still accept signatures made with the previous secret.
    #[schema(format = DateTime)]
    pub previous_valid_until: String,
}

/// Mint a new per-organization webhook signing secret.
#[utoipa::path(
    post, path = "/v1/webhook-secret/rotate", tag = "organization", security(("bearer" = [])),
    responses((status = 200, description = "The new secret, shown this once", body = OrgSecretResponse), CommonErrors)
)]
pub(crate) async fn rotate_org_secret(
    State(state): State<AppState>,
    auth: Authorized<AdminOrg>,
) -> Result<Json<OrgSecretResponse>, ApiError> {
    let secret = Secret::generate();
    let rotated_at = Timestamp::now();
    let audit = audit_record(
        &auth,
        AuditAction::OrgSecretRotated,
        &auth.org_id(),
        rotated_at,
    );
    state
        .store
        .rotate_org_secret(auth.org_id(), &secret, &audit)
        .await?;
    Ok(Json(OrgSecretResponse {
        webhook_secret: secret.expose_base64(),
        rotated_at: rotated_at.to_string(),
        previous_valid_until: rotated_at.add(PREVIOUS_SECRET_GRACE).to_string(),
    }))
}
