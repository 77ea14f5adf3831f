//! Recovery: `POST /v1/webhooks/{id}/recover` puts an endpoint's dead (and, if asked, missed)
//! events of a time window back in the queue under their original event ids;
//! `GET /v1/webhooks/recoveries/{id}` follows it. The matching and the chunked enqueueing are
//! the store's (`herald_store::Store::start_recovery`); a background task of the server
//! advances recoveries chunk by chunk.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_domain::recovery::{MAX_RECOVERY_EVENT_TYPES, Recovery, RecoveryScope, RecoveryStatus};
use std::time::Duration;

use herald_domain::{
    AuditAction, AuditRecord, EndpointId, EventCatalog, OrgId, RecoveryId, Timestamp,
};
use herald_store::Store;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Authorized, Fields, JsonObject, PathId, ReadWebhooks, WriteWebhooks};
use crate::routes::endpoints::audit_record;
use crate::state::AppState;
use crate::wire::path_id;

/// The body of a recovery request. Unknown fields are refused; an optional field may be
/// omitted, but not `null`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "documents the request body; the handler reads it field by field"
)]
pub struct RecoverRequest {
    /// Start of the window of event creation times, inclusive; before `until` and within
    /// event retention.
    #[schema(format = DateTime)]
    since: String,
    /// End of the window, exclusive; now by default.
    #[schema(format = DateTime, nullable = false)]
    until: Option<String>,
    /// Only events of these types (1 to 50, from the catalog; a type listed twice counts
    /// once); every type by default.
    #[schema(min_items = 1, max_items = 50, nullable = false)]
    event_types: Option<Vec<String>>,
    /// Also events the endpoint never got (published while it was inactive, or of a type it
    /// subscribed to later); `false` by default.
    #[schema(nullable = false)]
    include_missing: Option<bool>,
    /// Count the matches and deliver nothing; `false` by default.
    #[schema(nullable = false)]
    dry_run: Option<bool>,
}

/// The answer of a recovery request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverResponse {
    /// The recovery's id; an identical request while it is queued or running answers it again.
    #[schema(format = Uuid)]
    pub recovery_id: String,
    /// The endpoint.
    #[schema(format = Uuid)]
    pub endpoint_id: String,
    /// `queued`, `running` or `done` (a dry run is `done` at once).
    pub status: &'static str,
    /// Events matched when it was asked for.
    pub matched: u64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Start of the window.
    #[schema(format = DateTime)]
    pub since: String,
    /// End of the window.
    #[schema(format = DateTime)]
    pub until: String,
}

/// A recovery as `GET /v1/webhooks/recoveries/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryResponse {
    /// The recovery's id.
    #[schema(format = Uuid)]
    pub id: String,
    /// The endpoint.
    #[schema(format = Uuid)]
    pub endpoint_id: String,
    /// `queued`, `running` or `done`.
    pub status: &'static str,
    /// Events matched when it was asked for.
    pub matched: u64,
    /// Deliveries put back in the queue so far.
    pub enqueued: u64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Start of the window.
    #[schema(format = DateTime)]
    pub since: String,
    /// End of the window.
    #[schema(format = DateTime)]
    pub until: String,
    /// When it was asked for.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its last match went back in the queue; `null` until then.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

impl From<Recovery> for RecoverResponse {
    fn from(recovery: Recovery) -> Self {
        Self {
            recovery_id: recovery.id.to_string(),
            endpoint_id: recovery.endpoint_id.to_string(),
            status: recovery.status.as_str(),
            matched: recovery.matched,
            dry_run: recovery.dry_run,
            since: recovery.scope.since.to_string(),
            until: recovery.scope.until.to_string(),
        }
    }
}

/// What a recovery request is checked against: the deployment's settings.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryRules<'a> {
    /// The event types `event_types` may name.
    pub catalog: &'a EventCatalog,
    /// How far back `since` may reach.
    pub event_retention: Duration,
}

/// Checks a recovery request (the JSON object of `POST /v1/webhooks/{id}/recover`) and
/// starts it, or finds the identical one still at work. The route and `herald endpoints
/// recover` both come here, so they accept and refuse the same requests alike. `audit` is the
/// request's record (action `recover`, target the endpoint); the store adds the counts.
pub async fn start_recovery(
    store: &dyn Store,
    rules: RecoveryRules<'_>,
    org_id: OrgId,
    endpoint_id: EndpointId,
    body: Map<String, Value>,
    audit: &AuditRecord,
) -> Result<Recovery, ApiError> {
    let now = audit.occurred_at;
    let (scope, dry_run, fingerprint) = read_recover_body(body, rules, now)?;
    let endpoint = store.get_endpoint(org_id, endpoint_id).await?;
    if !endpoint.active {
        return Err(ApiError::EndpointInactive);
    }
    let recovery = Recovery {
        id: RecoveryId::new(),
        org_id,
        endpoint_id,
        status: RecoveryStatus::Queued,
        scope,
        dry_run,
        matched: 0,
        enqueued: 0,
        created_at: now,
        finished_at: None,
    };
    let (recovery, _new) = store.start_recovery(&recovery, &fingerprint, audit).await?;
    Ok(recovery)
}

impl From<Recovery> for RecoveryResponse {
    fn from(recovery: Recovery) -> Self {
        Self {
            id: recovery.id.to_string(),
            endpoint_id: recovery.endpoint_id.to_string(),
            status: recovery.status.as_str(),
            matched: recovery.matched,
            enqueued: recovery.enqueued,
            dry_run: recovery.dry_run,
            since: recovery.scope.since.to_string(),
            until: recovery.scope.until.to_string(),
            created_at: recovery.created_at.to_string(),
            finished_at: recovery.finished_at.map(|at| at.to_string()),
        }
    }
}

/// Deliver an endpoint's dead (and, if asked, missed) events again.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/recover", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = RecoverRequest,
    responses((status = 202, description = "Accepted", body = RecoverResponse), CommonErrors)
)]
pub(crate) async fn recover_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<RecoverResponse>), ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    let audit = audit_record(&auth, AuditAction::Recover, &endpoint_id, Timestamp::now());
    let rules = RecoveryRules {
        catalog: &state.config.catalog,
        event_retention: state.config.event_retention,
    };
    let recovery = start_recovery(
        state.store.as_ref(),
        rules,
        auth.org_id(),
        endpoint_id,
        body,
        &audit,
    )
    .await?;
    state.recovery_wakeup.notify_one();
    Ok((StatusCode::ACCEPTED, Json(recovery.into())))
}

/// One recovery.
#[utoipa::path(
    get, path = "/v1/webhooks/recoveries/{id}", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The recovery's id")),
    responses((status = 200, description = "The recovery", body = RecoveryResponse), CommonErrors)
)]
pub(crate) async fn get_recovery(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    PathId(id): PathId,
) -> Result<Json<RecoveryResponse>, ApiError> {
    let recovery = state
        .store
        .get_recovery(auth.org_id(), path_id(&id)?)
        .await?;
    Ok(Json(recovery.into()))
}

/// Reads and checks a recovery request: its scope, whether it is a dry run, and its
/// fingerprint (the request as given, so an identical one can be recognised).
fn read_recover_body(
    body: Map<String, Value>,
    rules: RecoveryRules<'_>,
    now: Timestamp,
) -> Result<(RecoveryScope, bool, String), ApiError> {
    let mut fields = Fields::new(body);
    let since_text = fields.required_string("since");
    let until_text = fields.optional_string("until");
    let event_types = fields.optional_string_array("event_types");
    let include_missing = fields.optional_bool("include_missing").unwrap_or(false);
    let dry_run = fields.optional_bool("dry_run").unwrap_or(false);
    let mut timestamp = |field: &str, text: Option<&String>| {
        let parsed = text.map(|text| Timestamp::parse(text));
        if let Some(None) = parsed {
            fields.error(field, "must be an RFC 3339 timestamp");
        }
        parsed.flatten()
    };
    let since = timestamp("since", since_text.as_ref());
    let until = timestamp("until", until_text.as_ref());
    let until_or_now = until.unwrap_or(now);
    if let Some(since) = since {
        let retention =
            chrono::Duration::from_std(rules.event_retention).unwrap_or(chrono::Duration::MAX);
        if since >= until_or_now {
            fields.error("since", "must be before until");
        } else if since < now.add(-retention) {
            fields.error(
                "since",
                format!(
                    "must be within the event retention window ({} days)",
                    rules.event_retention.as_secs() / 86_400
                ),
            );
        }
    }
    if let Some(types) = &event_types {
        if types.is_empty() || types.len() > MAX_RECOVERY_EVENT_TYPES {
            fields.error(
                "event_types",
                format!("must list 1 to {MAX_RECOVERY_EVENT_TYPES} event types"),
            );
        } else if let Some(unknown) = types
            .iter()
            .find(|event_type| !rules.catalog.contains(event_type))
        {
            fields.error("event_types", format!("unknown event type: {unknown}"));
        }
    }
    fields.finish()?;
    let Some(since) = since else {
        return Err(ApiError::field("since", "is required"));
    };
    let mut sorted_types = event_types;
    if let Some(types) = &mut sorted_types {
        types.sort();
        types.dedup();
    }
    let fingerprint = json!({
        "since": since.to_string(),
        "until": until.map(|at| at.to_string()),
        "event_types": sorted_types,
        "include_missing": include_missing,
        "dry_run": dry_run,
    })
    .to_string();
    Ok((
        RecoveryScope {
            since,
            until: until_or_now,
            event_types: sorted_types,
            include_missing,
        },
        dry_run,
        fingerprint,
    ))
}
