//! The catch-up feed, `GET /v1/webhooks/{id}/events` (docs/api.md#the-catch-up-feed): the
//! events fanned out to one endpoint after a sequence number, ascending, each with the body it
//! was (or will be) delivered with. A receiver that sees sequence 17 and then 19 asks for
//! `after_sequence=17` and gets 18.

use axum::Json;
use axum::extract::State;
use herald_domain::{EndpointId, FieldErrors, envelope};
use herald_store::Sequenced;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Authorized, PathId, QueryParams, ReadWebhooks};
use crate::state::AppState;
use crate::wire::{page_limit, path_id};

/// Most entries one page holds.
const MAX_LIMIT: u32 = 200;
/// Entries of a page by default.
const DEFAULT_LIMIT: u32 = 50;

/// One event fanned out to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct SequencedEvent {
    /// The delivery's number in the endpoint's sequence.
    pub sequence: u64,
    /// The event, `evt_<uuid>`.
    pub event_id: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's ordering key, if any.
    pub ordering_key: Option<String>,
    /// When the event was published.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `pending`, `delivered` or `dead`.
    #[schema(pattern = "^(pending|delivered|dead)$")]
    pub status: &'static str,
    /// The envelope exactly as delivered: the same bytes, so numbers keep every digit and
    /// keys their order.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
}

/// The page's bounds.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatchUpMeta {
    /// The page size asked for.
    pub limit: u32,
    /// The sequence to ask after for the next page; `null` when the receiver is caught up.
    pub next_after_sequence: Option<u64>,
}

/// A page of the catch-up feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatchUpResponse {
    /// Always `true`.
    pub success: bool,
    /// The events, by ascending sequence.
    pub data: Vec<SequencedEvent>,
    /// The page's bounds.
    pub meta: CatchUpMeta,
}

/// The events fanned out to an endpoint after a sequence number, ascending.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/events", tag = "endpoints", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("after_sequence" = Option<i64>, Query, minimum = 0, maximum = 9_223_372_036_854_775_807_i64, description = "Only later sequence numbers; default 0"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, default 50"),
    ),
    responses((status = 200, description = "A page of the endpoint's events", body = CatchUpResponse), CommonErrors)
)]
pub(crate) async fn list_endpoint_events(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    PathId(id): PathId,
    mut query: QueryParams,
) -> Result<Json<CatchUpResponse>, ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    let mut errors = FieldErrors::new();
    let after_sequence = match query.take("after_sequence") {
        None => 0,
        // Stored as a signed 64-bit integer on both backends.
        Some(text) => match text.parse::<i64>() {
            Ok(after) if after >= 0 => after.unsigned_abs(),
            _ => {
                errors.insert(
                    "after_sequence".to_owned(),
                    format!("must be an integer from 0 to {}", i64::MAX),
                );
                0
            }
        },
    };
    let limit = page_limit(&mut query, DEFAULT_LIMIT, MAX_LIMIT, &mut errors);
    query.report_unknown(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let endpoint = state.store.get_endpoint(auth.org_id(), endpoint_id).await?;
    // One more than the page, to tell a full last page from one with more behind it.
    let mut entries = state
        .store
        .list_sequenced(auth.org_id(), endpoint_id, after_sequence, limit + 1)
        .await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_after_sequence = entries.last().filter(|_| more).map(|last| last.sequence);
    let data = entries
        .into_iter()
        .map(|entry| sequenced_event(&endpoint.api_version, entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(CatchUpResponse {
        success: true,
        data,
        meta: CatchUpMeta {
            limit,
            next_after_sequence,
        },
    }))
}

/// One entry on the wire, its body rendered as the endpoint's version renders it.
fn sequenced_event(api_version: &str, entry: Sequenced) -> Result<SequencedEvent, ApiError> {
    let body = envelope::render(api_version, &entry.event)
        .map_err(|unsupported| ApiError::Internal(Box::new(unsupported)))?;
    let body = String::from_utf8(body).map_err(|error| ApiError::Internal(Box::new(error)))?;
    let body = RawValue::from_string(body).map_err(|error| ApiError::Internal(Box::new(error)))?;
    Ok(SequencedEvent {
        sequence: entry.sequence,
        event_id: entry.event.id.to_string(),
        event_type: entry.event.event_type,
        ordering_key: entry.event.ordering_key,
        created_at: entry.event.created_at.to_string(),
        status: entry.status.as_str(),
        body,
    })
}
