//! The event catalog (docs/api.md#event-types-and-api-versions): every type an endpoint may
//! subscribe to, with what it means and, when the catalog file gives them, the schema of its
//! `data` and an example. The operational types are always there.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::docs::{CommonErrors, EventTypeList};
use crate::error::ApiError;
use crate::extract::{Authorized, ReadWebhooks};
use crate::state::AppState;
use crate::wire::{ListMeta, ListResponse};

/// One type of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeResponse {
    /// The type's name, as subscribed to and published.
    pub name: String,
    /// What it means; `null` for a type configured by name only.
    pub description: Option<String>,
    /// Whether new integrations should avoid it.
    pub deprecated: bool,
    /// JSON Schema (2020-12) of the event's `data`, when the catalog gives one.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    /// An example `data`, when the catalog gives one.
    #[schema(value_type = Option<Object>)]
    pub example: Option<serde_json::Value>,
}

/// The event catalog, whole (no paging).
#[utoipa::path(
    get, path = "/v1/event-types", tag = "organization", security(("bearer" = [])),
    responses((status = 200, description = "Every event type of the catalog", body = EventTypeList), CommonErrors)
)]
pub(crate) async fn list_event_types(
    State(state): State<AppState>,
    _auth: Authorized<ReadWebhooks>,
) -> Result<Json<ListResponse<EventTypeResponse>>, ApiError> {
    let data: Vec<EventTypeResponse> = state
        .config
        .catalog
        .types()
        .iter()
        .map(|definition| EventTypeResponse {
            name: definition.name.clone(),
            description: definition.description.clone(),
            deprecated: definition.deprecated,
            schema: definition.schema.clone(),
            example: definition.example.clone(),
        })
        .collect();
    let total = data.len();
    Ok(Json(ListResponse {
        success: true,
        meta: ListMeta {
            total: total as u64,
            limit: u32::try_from(total).unwrap_or(u32::MAX),
            offset: 0,
            next_cursor: None,
        },
        data,
    }))
}
