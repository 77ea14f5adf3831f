//! The operator's admin API under `/admin/v1` (docs/api.md#operator-api): organizations, API
//! keys and the audit trail. Authenticated with `HERALD_ADMIN_TOKEN`; absent when it is unset.
//! The operations themselves are plain functions, shared with the CLI.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use herald_domain::org::check_org_name;
use herald_domain::scope::parse_scopes;
use herald_domain::secret::ApiKeyToken;
use herald_domain::{ApiKey, ApiKeyId, AuditRecord, FieldErrors, Org, OrgId, Scope, Timestamp};
use herald_store::{Store, StoreError};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{Admin, Fields, JsonObject, PathId, QueryParams, body_limit};
use crate::state::AppState;
use crate::wire::{ListResponse, page_request, path_id};

/// Largest body of a batch publish: room for 500 events of a few KiB each.
const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The admin routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/orgs",
            post(create_org_route).get(list_orgs_route),
        )
        .route("/admin/v1/orgs/{id}", get(get_org_route))
        .route(
            "/admin/v1/orgs/{id}/keys",
            post(create_key_route).get(list_keys_route),
        )
        .route("/admin/v1/orgs/{id}/audit-log", get(list_audit_route))
        .route(
            "/admin/v1/orgs/{id}/portal-sessions",
            post(super::portal::create_portal_session_route),
        )
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key_route))
        .route("/admin/v1/events", post(super::events::publish_event))
        .route(
            "/admin/v1/events/batch",
            post(super::events::publish_batch).layer(body_limit(BATCH_BODY_LIMIT)),
        )
}

/// An API key as the admin API and CLI show it; `key` is present only when just minted.
#[derive(Debug, Serialize)]
pub struct ApiKeyResponse {
    /// The key's id.
    pub id: String,
    /// The organization it acts in.
    pub org_id: String,
    /// The key itself, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// A non-secret prefix to recognize it by.
    pub hint: String,
    /// When it was minted.
    pub created_at: String,
    /// When it was revoked, or `null`.
    pub revoked_at: Option<String>,
}

impl ApiKeyResponse {
    /// The wire form of a key, with the secret token only when given.
    pub fn new(key: ApiKey, token: Option<&ApiKeyToken>) -> Self {
        Self {
            id: key.id.to_string(),
            org_id: key.org_id.to_string(),
            key: token.map(|token| token.expose().to_owned()),
            scopes: key.scopes,
            hint: key.hint,
            created_at: key.created_at.to_string(),
            revoked_at: key.revoked_at.map(|at| at.to_string()),
        }
    }
}

/// An organization on the wire.
#[derive(Debug, Serialize)]
pub struct OrgResponse {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
}

impl From<Org> for OrgResponse {
    fn from(org: Org) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name,
            created_at: org.created_at.to_string(),
        }
    }
}

/// An audit record on the wire.
#[derive(Debug, Serialize)]
pub struct AuditRecordResponse {
    id: String,
    org_id: String,
    api_key_id: Option<String>,
    action: &'static str,
    target_id: String,
    occurred_at: String,
    request_id: Option<String>,
    reason: Option<String>,
}

impl From<AuditRecord> for AuditRecordResponse {
    fn from(record: AuditRecord) -> Self {
        Self {
            id: record.id.to_string(),
            org_id: record.org_id.to_string(),
            api_key_id: record.api_key_id.map(|id| id.to_string()),
            action: record.action.as_str(),
            target_id: record.target_id,
            occurred_at: record.occurred_at.to_string(),
            request_id: record.request_id,
            reason: record.reason,
        }
    }
}

/// Creates an organization named `name` (`herald_domain::org::check_org_name`); the admin
/// API and `herald orgs create` both create organizations here.
pub async fn create_org(store: &dyn Store, name: &str) -> Result<Org, ApiError> {
    let name = check_org_name(name).map_err(|message| ApiError::field("name", message))?;
    let org = Org {
        id: OrgId::new(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
    };
    store.create_org(&org).await?;
    Ok(org)
}

/// Mints an API key for `org_id`; the token is returned once and stored only as its hash.
pub async fn mint_api_key(
    store: &dyn Store,
    org_id: OrgId,
    scopes: Vec<Scope>,
) -> Result<(ApiKey, ApiKeyToken), ApiError> {
    store.get_org(org_id).await?;
    let token = ApiKeyToken::generate();
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id,
        scopes,
        hint: token.hint(),
        created_at: Timestamp::now(),
        revoked_at: None,
        expires_at: None,
        portal: None,
    };
    store.create_api_key(&key, &token.hash()).await?;
    Ok((key, token))
}

async fn create_org_route(
    State(state): State<AppState>,
    _admin: Admin,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<OrgResponse>), ApiError> {
    let mut fields = Fields::new(body);
    let name = fields.required_string("name");
    fields.finish()?;
    let org = create_org(state.store.as_ref(), name.as_deref().unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

async fn list_orgs_route(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<ListResponse<OrgResponse>>, ApiError> {
    let orgs = state.store.list_orgs().await?;
    let total = orgs.len() as u64;
    let limit = u32::try_from(orgs.len()).unwrap_or(u32::MAX);
    let page = herald_store::Page {
        items: orgs,
        total,
        next_cursor: None,
    };
    Ok(Json(ListResponse::from_page(
        page,
        limit,
        OrgResponse::from,
    )))
}

async fn get_org_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
) -> Result<Json<OrgResponse>, ApiError> {
    let org = state.store.get_org(path_id(&id)?).await?;
    Ok(Json(org.into()))
}

async fn create_key_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<ApiKeyResponse>), ApiError> {
    let org_id: OrgId = path_id(&id)?;
    let mut fields = Fields::new(body);
    let names = fields.required_string_array("scopes");
    let scopes = names.and_then(
        |names| match parse_scopes(names.iter().map(String::as_str)) {
            Ok(scopes) => Some(scopes),
            Err(message) => {
                fields.error("scopes", message);
                None
            }
        },
    );
    fields.finish()?;
    let scopes = scopes.ok_or_else(|| ApiError::field("scopes", "is required"))?;
    let (key, token) = mint_api_key(state.store.as_ref(), org_id, scopes).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyResponse::new(key, Some(&token))),
    ))
}

async fn list_keys_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
) -> Result<Json<ListResponse<ApiKeyResponse>>, ApiError> {
    let org_id: OrgId = path_id(&id)?;
    state.store.get_org(org_id).await?;
    let keys = state.store.list_api_keys(org_id).await?;
    let total = keys.len() as u64;
    let limit = u32::try_from(keys.len()).unwrap_or(u32::MAX);
    let page = herald_store::Page {
        items: keys,
        total,
        next_cursor: None,
    };
    Ok(Json(ListResponse::from_page(page, limit, |key| {
        ApiKeyResponse::new(key, None)
    })))
}

async fn revoke_key_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
) -> Result<Json<ApiKeyResponse>, ApiError> {
    let key = state
        .store
        .revoke_api_key(path_id(&id)?, Timestamp::now())
        .await?;
    Ok(Json(ApiKeyResponse::new(key, None)))
}

async fn list_audit_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
    mut query: QueryParams,
) -> Result<Json<ListResponse<AuditRecordResponse>>, ApiError> {
    let org_id: OrgId = path_id(&id)?;
    let mut errors = FieldErrors::new();
    let page = page_request(&mut query, 50, 200, &mut errors);
    query.report_unknown(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    state
        .store
        .get_org(org_id)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::NotFound,
            other => other.into(),
        })?;
    let records = state.store.list_audit_records(org_id, &page).await?;
    Ok(Json(ListResponse::from_page(
        records,
        page.limit,
        AuditRecordResponse::from,
    )))
}
