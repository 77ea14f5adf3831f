//! What receivers verify deliveries with (docs/api.md#signatures): rotating an endpoint's
//! secret, with an optional grace period during which the previous secret signs too, and the
//! organization's public Ed25519 keys for `v1a` (`GET /v1/webhook-keys`).

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_domain::signing::{GRACE_PERIOD_FIELD, parse_grace_period};
use herald_domain::{AuditAction, EndpointId, OrgSigningKey, Secret, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Authorized, Fields, OptionalJsonObject, PathId, ReadWebhooks, WriteWebhooks};
use crate::routes::endpoints::{EndpointWithSecretResponse, audit_record};
use crate::state::AppState;
use crate::wire::path_id;

/// Body of `POST /v1/webhooks/{id}/rotate-secret`; may be omitted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// How long, in seconds, deliveries are still signed with the previous secret as well
    /// (0 to 604800, 7 days; default 0: the previous secret stops signing at once).
    #[schema(minimum = 0, maximum = 604_800, nullable = false)]
    pub grace_period_seconds: Option<u32>,
}

/// The answer of a rotation: the endpoint, its new secret, and the end of the grace period.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecretResponse {
    /// The endpoint and its new secret.
    #[serde(flatten)]
    pub endpoint: EndpointWithSecretResponse,
    /// Until when deliveries also carry a signature made with the previous secret: the rotation
    /// time plus the grace period. Without a grace period it is the rotation time itself (the
    /// endpoint's new `updated_at`): the previous secret signs nothing after it.
    #[schema(format = DateTime)]
    pub previous_valid_until: String,
}

/// The organization's public signing keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookKeysResponse {
    /// Every key whose `v1a` signatures a receiver may meet; today, one per organization.
    pub keys: Vec<WebhookKey>,
}

/// One Ed25519 public key, in the members of a JSON Web Key (RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookKey {
    /// The key's id; stable for the life of the key.
    pub kid: String,
    /// Always `EdDSA`.
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    /// Always `Ed25519`.
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    /// Base64url (no padding) of the 32-byte public key.
    #[schema(example = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg")]
    pub x: String,
    /// When the key was made.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&OrgSigningKey> for WebhookKey {
    fn from(key: &OrgSigningKey) -> Self {
        Self {
            kid: key.id.to_string(),
            alg: "EdDSA",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(key.public_key()),
            created_at: key.created_at.to_string(),
        }
    }
}

/// Mint a new endpoint secret; the previous one signs too until the grace period ends.
// The body is optional, which `docs::finish` records (see `replay_delivery`).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate-secret", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body(content = RotateSecretRequest, description = "Optional: a grace period. The body may be omitted."),
    responses((status = 200, description = "The endpoint with its new secret, shown this once", body = RotatedSecretResponse), CommonErrors)
)]
pub(crate) async fn rotate_endpoint_secret(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<Json<RotatedSecretResponse>, ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    let grace_seconds = read_rotate_body(body)?;
    let secret = Secret::generate();
    let now = Timestamp::now();
    let previous_valid_until = now.add(chrono::Duration::seconds(i64::from(grace_seconds)));
    let audit = audit_record(&auth, AuditAction::EndpointSecretRotated, &endpoint_id, now);
    let endpoint = state
        .store
        .rotate_endpoint_secret(
            auth.org_id(),
            endpoint_id,
            &secret,
            (grace_seconds > 0).then_some(previous_valid_until),
            &audit,
        )
        .await?;
    Ok(Json(RotatedSecretResponse {
        endpoint: EndpointWithSecretResponse::new(endpoint, &secret),
        previous_valid_until: previous_valid_until.to_string(),
    }))
}

/// List the organization's public keys for verifying `v1a` signatures.
#[utoipa::path(
    get, path = "/v1/webhook-keys", tag = "organization", security(("bearer" = [])),
    responses((status = 200, description = "The organization's Ed25519 public keys", body = WebhookKeysResponse), CommonErrors)
)]
pub(crate) async fn list_webhook_keys(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
) -> Result<Json<WebhookKeysResponse>, ApiError> {
    // The key is made here when the organization has none yet, so a receiver can be set up
    // before the first delivery.
    let key = state.store.org_signing_key(auth.org_id()).await?;
    Ok(Json(WebhookKeysResponse {
        keys: vec![WebhookKey::from(key.as_ref())],
    }))
}

/// Reads the optional rotate body: `grace_period_seconds`, 0 when absent.
fn read_rotate_body(body: Map<String, Value>) -> Result<u32, ApiError> {
    let mut fields = Fields::new(body);
    let grace = match fields.take_value(GRACE_PERIOD_FIELD) {
        None => 0,
        Some(value) => match parse_grace_period(&value) {
            Ok(seconds) => seconds,
            Err(errors) => {
                for (field, message) in errors {
                    fields.error(&field, message);
                }
                0
            }
        },
    };
    fields.finish()?;
    Ok(grace)
}
