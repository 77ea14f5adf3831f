//! Publishing (docs/api.md#publishing-events): the platform's admin API for events. The 202 is sent
//! only after the events and their fan-out are committed. A valid `traceparent` on the request
//! is kept with its events (docs/api.md#trace-context).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_domain::catalog::SchemaEnforcement;
use herald_domain::publish::{
    check_event_data, check_event_type, check_idempotency_key, check_ordering_key,
};
use herald_domain::{Event, EventCatalog, EventId, EventOrigin, FieldErrors, OrgId, Timestamp};
use herald_store::{PublishedEvent, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::extract::{Admin, Fields, JsonObjectWithBytes};
use crate::known_orgs::KnownOrgs;
use crate::metrics::ApiMetrics;
use crate::state::AppState;
use crate::telemetry::publisher_trace;

pub use herald_domain::publish::MAX_BATCH;

/// What an event is checked against: the deployment's settings behind the rules of
/// `herald_domain::publish`.
#[derive(Debug, Clone, Copy)]
pub struct PublishRules<'a> {
    /// The event types that may be published, with their schemas.
    pub catalog: &'a EventCatalog,
    /// The cap on `data`, in bytes.
    pub max_event_bytes: usize,
    /// What `data` that breaks its type's schema gets: nothing, a warning, or a 422.
    pub schema_enforcement: SchemaEnforcement,
    /// Where schema violations are counted (`None`: the CLI, which has no metrics).
    pub metrics: Option<&'a ApiMetrics>,
    /// Organizations already seen to exist, whose publishes skip the storage read (`None`:
    /// the CLI, which publishes once).
    pub known_orgs: Option<&'a KnownOrgs>,
}

impl<'a> PublishRules<'a> {
    fn of(state: &'a AppState) -> Self {
        Self {
            catalog: &state.config.catalog,
            max_event_bytes: state.config.max_event_bytes,
            schema_enforcement: state.config.schema_enforcement,
            metrics: Some(&state.metrics),
            known_orgs: Some(&state.known_orgs),
        }
    }

    /// Checks `data` against the schema of `event_type` as the enforcement setting says:
    /// `Err` only under `reject`; a violation is logged and counted under `warn` and `reject`.
    /// Costs one emptiness check when no type has a schema.
    fn check_schema(&self, event_type: &str, data: &Value) -> Result<(), String> {
        if self.schema_enforcement == SchemaEnforcement::Off || !self.catalog.has_schemas() {
            return Ok(());
        }
        let Err(violation) = self.catalog.check_data(event_type, data) else {
            return Ok(());
        };
        if let Some(metrics) = self.metrics {
            metrics.count_schema_violation(event_type);
        }
        match self.schema_enforcement {
            SchemaEnforcement::Reject => Err(violation.to_string()),
            SchemaEnforcement::Off | SchemaEnforcement::Warn => {
                // The rule and the pointer only: the offending value may be personal data.
                tracing::warn!(event_type, %violation, "published data breaks its type's schema");
                Ok(())
            }
        }
    }
}

/// The answer for one published event.
#[derive(Debug, Serialize)]
pub struct PublishResponse {
    /// The event's id (the original one when the idempotency key repeated).
    pub event_id: String,
    /// How many endpoints it fanned out to.
    pub endpoints: u32,
    /// `true` when an earlier event with the same idempotency key was returned.
    pub duplicate: bool,
}

impl From<PublishedEvent> for PublishResponse {
    fn from(published: PublishedEvent) -> Self {
        Self {
            event_id: published.event_id.to_string(),
            endpoints: published.endpoints,
            duplicate: published.duplicate,
        }
    }
}

/// The answer of a batch publish.
#[derive(Debug, Serialize)]
pub struct BatchPublishResponse {
    /// One answer per event, in request order.
    pub events: Vec<PublishResponse>,
}

/// Where an event's `data` sits in the body as sent: its exact text.
#[derive(Deserialize)]
struct RawEventData<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The `data` texts of a batch, item by item.
#[derive(Deserialize)]
struct RawBatchData<'a> {
    #[serde(borrow, default)]
    events: Vec<RawEventData<'a>>,
}

/// `POST /admin/v1/events`.
pub(crate) async fn publish_event(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    JsonObjectWithBytes { map: body, bytes }: JsonObjectWithBytes,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    let raw_data = serde_json::from_slice::<RawEventData<'_>>(&bytes)
        .ok()
        .and_then(|raw| raw.data);
    let mut event = prepare_event(
        state.store.as_ref(),
        PublishRules::of(&state),
        body,
        raw_data.map(RawValue::get),
    )
    .await?;
    event.traceparent = publisher_trace(&headers);
    let mut published = publish(&state, &[event]).await?;
    let first = published
        .pop()
        .ok_or_else(|| ApiError::Internal("publish returned no answer".into()))?;
    Ok((StatusCode::ACCEPTED, Json(first.into())))
}

/// Checks one event to publish, given as the JSON object of `POST /admin/v1/events`
/// (`raw_data` is the exact text of its `data`, when known), and that its organization
/// exists. The single-event route and `herald events publish` both come here, so they accept
/// and refuse the same events with the same errors.
pub async fn prepare_event(
    store: &dyn Store,
    rules: PublishRules<'_>,
    body: Map<String, Value>,
    raw_data: Option<&str>,
) -> Result<Event, ApiError> {
    let mut errors = FieldErrors::new();
    let event = read_event(rules, body, raw_data, "", &mut errors);
    let event = match event {
        Some(event) if errors.is_empty() => event,
        _ => return Err(ApiError::Validation(errors)),
    };
    check_orgs_exist(
        store,
        rules.known_orgs,
        std::slice::from_ref(&event),
        |_| "org_id".to_owned(),
    )
    .await?;
    Ok(event)
}

/// `POST /admin/v1/events/batch`: up to 500 events in one transaction.
pub(crate) async fn publish_batch(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    JsonObjectWithBytes { map: body, bytes }: JsonObjectWithBytes,
) -> Result<(StatusCode, Json<BatchPublishResponse>), ApiError> {
    // A batch that does not have this shape is refused below anyway, so it falls back to
    // re-serialized data harmlessly.
    let raw_data: Vec<Option<&RawValue>> = serde_json::from_slice::<RawBatchData<'_>>(&bytes)
        .map(|batch| batch.events.into_iter().map(|item| item.data).collect())
        .unwrap_or_default();
    let mut fields = Fields::new(body);
    let items = match fields.take_value("events") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_BATCH => Some(items),
        Some(Value::Array(_)) => {
            fields.error("events", format!("must hold 1 to {MAX_BATCH} events"));
            None
        }
        Some(_) => {
            fields.error("events", "must be an array of events");
            None
        }
        None => {
            fields.error("events", "is required");
            None
        }
    };
    fields.finish()?;
    let mut errors = FieldErrors::new();
    let mut events = Vec::new();
    for (index, item) in items.unwrap_or_default().into_iter().enumerate() {
        let prefix = format!("events[{index}].");
        match item {
            Value::Object(map) => {
                let raw = raw_data.get(index).copied().flatten().map(RawValue::get);
                events.extend(read_event(
                    PublishRules::of(&state),
                    map,
                    raw,
                    &prefix,
                    &mut errors,
                ));
            }
            _ => {
                errors.insert(format!("events[{index}]"), "must be an object".to_owned());
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    check_orgs_exist(
        state.store.as_ref(),
        Some(&state.known_orgs),
        &events,
        |index| format!("events[{index}].org_id"),
    )
    .await?;
    // One request, one trace: every event of the batch joins it.
    let traceparent = publisher_trace(&headers);
    for event in &mut events {
        event.traceparent = traceparent;
    }
    let published = publish(&state, &events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchPublishResponse {
            events: published.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// Reads one event object; problems go into `errors` under `prefix` + field name. `raw_data`
/// is the exact text of `data` in the body, when it could be located.
fn read_event(
    rules: PublishRules<'_>,
    map: Map<String, Value>,
    raw_data: Option<&str>,
    prefix: &str,
    errors: &mut FieldErrors,
) -> Option<Event> {
    let mut fields = Fields::new(map);
    let org_id = fields
        .required_string("org_id")
        .and_then(|text| match text.parse::<OrgId>() {
            Ok(id) => Some(id),
            Err(_) => {
                fields.error("org_id", "must be a uuid");
                None
            }
        });
    let event_type = fields.required_string("type").and_then(|event_type| {
        match check_event_type(rules.catalog, &event_type) {
            Ok(()) => Some(event_type),
            Err(message) => {
                fields.error("type", message);
                None
            }
        }
    });
    let data = match fields.take_value("data") {
        Some(data @ Value::Object(_)) => {
            // Receivers get `data` byte for byte as the platform sent it (key order, number
            // spelling, escapes); re-serializing is only the fallback.
            let text = raw_data.map_or_else(|| data.to_string(), str::to_owned);
            let verdict = check_event_data(&text, rules.max_event_bytes).and_then(|()| {
                event_type
                    .as_deref()
                    .map_or(Ok(()), |event_type| rules.check_schema(event_type, &data))
            });
            match verdict {
                Ok(()) => Some(text),
                Err(message) => {
                    fields.error("data", message);
                    None
                }
            }
        }
        Some(_) => {
            fields.error("data", "must be a JSON object");
            None
        }
        None => {
            fields.error("data", "is required");
            None
        }
    };
    let idempotency_key = match fields.nullable_string("idempotency_key") {
        Some(Some(key)) => match check_idempotency_key(&key) {
            Ok(()) => Some(key),
            Err(message) => {
                fields.error("idempotency_key", message);
                None
            }
        },
        Some(None) | None => None,
    };
    let ordering_key = match fields.nullable_string("ordering_key") {
        Some(Some(key)) => match check_ordering_key(&key) {
            Ok(()) => Some(key),
            Err(message) => {
                fields.error("ordering_key", message);
                None
            }
        },
        Some(None) | None => None,
    };
    if let Err(ApiError::Validation(found)) = fields.finish() {
        errors.extend(
            found
                .into_iter()
                .map(|(field, message)| (format!("{prefix}{field}"), message)),
        );
        return None;
    }
    Some(Event {
        id: EventId::new(),
        org_id: org_id?,
        event_type: event_type?,
        data: data?,
        idempotency_key,
        ordering_key,
        origin: EventOrigin::Publish,
        created_at: Timestamp::now(),
        traceparent: None,
    })
}

/// Refuses events whose organization does not exist, reading storage only for organizations
/// not yet in `known_orgs` (and remembering those it finds there).
async fn check_orgs_exist(
    store: &dyn Store,
    known_orgs: Option<&KnownOrgs>,
    events: &[Event],
    field_of: impl Fn(usize) -> String,
) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    let mut known = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if known.contains(&event.org_id) || known_orgs.is_some_and(|set| set.contains(event.org_id))
        {
            continue;
        }
        match store.get_org(event.org_id).await {
            Ok(_) => {
                known.push(event.org_id);
                if let Some(set) = known_orgs {
                    set.insert(event.org_id);
                }
            }
            Err(StoreError::NotFound) => {
                errors.insert(
                    field_of(index),
                    format!("unknown organization: {}", event.org_id),
                );
            }
            Err(other) => return Err(other.into()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn publish(state: &AppState, events: &[Event]) -> Result<Vec<PublishedEvent>, ApiError> {
    let published = state.publisher.publish(events.to_vec()).await?;
    let new_events = published.iter().filter(|event| !event.duplicate).count() as u64;
    state.metrics.count_published(new_events);
    Ok(published)
}
