//! `POST /v1/webhooks/filters/test` (docs/api.md#filters): whether a filter would take an
//! event, so a filter can be tried before an endpoint is given it. Nothing is stored.

use axum::Json;
use axum::extract::State;
use herald_domain::filter::{Filter, event_document};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Authorized, Fields, JsonObject, ReadWebhooks};
use crate::routes::endpoints::read_filter;
use crate::state::{ApiConfig, AppState};

/// Body of `POST /v1/webhooks/filters/test`. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFilterRequest {
    /// The filter to try, under the rules of an endpoint's `filter`.
    #[schema(value_type = Object)]
    pub filter: Value,
    /// The event to try it on.
    pub event: TestFilterEvent,
}

/// The event a filter is tried on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFilterEvent {
    /// A catalog type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's `data`, a JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Whether the filter takes the event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestFilterResponse {
    /// `true` when an endpoint with this filter would get the event.
    pub matches: bool,
}

/// Try a filter on an event.
#[utoipa::path(
    post, path = "/v1/webhooks/filters/test", tag = "endpoints", security(("bearer" = [])),
    request_body = TestFilterRequest,
    responses((status = 200, description = "Whether the filter takes the event", body = TestFilterResponse), CommonErrors)
)]
pub(crate) async fn test_filter(
    State(state): State<AppState>,
    _auth: Authorized<ReadWebhooks>,
    JsonObject(body): JsonObject,
) -> Result<Json<TestFilterResponse>, ApiError> {
    let (filter, document) = read_test_filter_body(body, &state.config)?;
    Ok(Json(TestFilterResponse {
        matches: filter.matches(&document),
    }))
}

/// Reads the body: the filter checked as an endpoint's would be, the event's type a catalog
/// type, its `data` an object; every fault reported at once.
fn read_test_filter_body(
    body: Map<String, Value>,
    config: &ApiConfig,
) -> Result<(Filter, Value), ApiError> {
    let mut fields = Fields::new(body);
    let filter = match fields.take_value("filter") {
        None => {
            fields.error("filter", "is required");
            None
        }
        Some(value) => read_filter(&value)
            .map_err(|message| fields.error("filter", message))
            .ok(),
    };
    let document = match fields.take_value("event") {
        None => {
            fields.error("event", "is required");
            None
        }
        Some(Value::Object(event)) => read_event(event, config, &mut fields),
        Some(_) => {
            fields.error("event", "must be an object with type and data");
            None
        }
    };
    fields.finish()?;
    match (filter, document) {
        (Some(filter), Some(document)) => Ok((filter, document)),
        _ => Err(ApiError::Internal(
            "validated fields missing after a clean finish".into(),
        )),
    }
}

/// Reads `{"type", "data"}` into the document filters see; faults go under `event.<field>`.
fn read_event(event: Map<String, Value>, config: &ApiConfig, outer: &mut Fields) -> Option<Value> {
    let mut fields = Fields::new(event);
    let event_type = fields.required_string("type").and_then(|event_type| {
        if config.catalog.contains(&event_type) {
            Some(event_type)
        } else {
            fields.error("type", format!("unknown event type: {event_type}"));
            None
        }
    });
    let data = match fields.take_value("data") {
        Some(data @ Value::Object(_)) => Some(data),
        Some(_) => {
            fields.error("data", "must be a JSON object");
            None
        }
        None => {
            fields.error("data", "is required");
            None
        }
    };
    if let Err(ApiError::Validation(found)) = fields.finish() {
        for (field, message) in found {
            outer.error(&format!("event.{field}"), message);
        }
        return None;
    }
    Some(event_document(&event_type?, data?))
}
