//! The deliveries feed, test and replay (docs/api.md#deliveries and docs/api.md#send-a-test). A
//! "delivery record" on the wire is one attempt.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_domain::{
    Attempt, AttemptId, AuditAction, EndpointId, Event, EventId, EventOrigin, FieldErrors, Outcome,
    TEST_EVENT_TYPE, Timestamp,
};
use herald_store::{AttemptFilter, RateDecision, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::docs::{CommonErrors, DeliveryList};
use crate::error::ApiError;
use crate::extract::{
    Authorized, Fields, OptionalJsonObject, PathId, QueryParams, ReadWebhooks, WriteWebhooks,
};
use crate::routes::endpoints::audit_record;
use crate::state::{ApiConfig, AppState};
use crate::wire::{ListResponse, page_request, path_id};

/// Longest replay reason, in characters.
const MAX_REASON_CHARS: usize = 500;

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    /// The attempt's id.
    #[schema(format = Uuid)]
    pub id: String,
    /// The endpoint.
    #[schema(format = Uuid)]
    pub endpoint_id: String,
    /// The event, `evt_<uuid>`.
    #[schema(pattern = r"^evt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The endpoint's URL at attempt time.
    pub url: String,
    /// 1-based, per (event, endpoint).
    pub attempt: u32,
    /// `success`, `retry` or `dead`.
    #[schema(pattern = "^(success|retry|dead)$")]
    pub outcome: String,
    /// The HTTP status, or `null` when no response came.
    pub response_status: Option<u16>,
    /// How long the attempt took.
    pub response_time_ms: u64,
    /// Lowercase hex SHA-256 of the exact bytes sent.
    pub request_body_sha256: String,
    /// Size of the body sent.
    pub request_body_bytes: u64,
    /// The headers sent, signature included.
    pub request_headers: BTreeMap<String, String>,
    /// The first 1 KiB of the response body, lossy UTF-8.
    pub response_body_excerpt: Option<String>,
    /// Why it failed, in plain words.
    pub error: Option<String>,
    /// When the next attempt is due (outcome `retry` only).
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// When the attempt was made.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// The delivery's number in its endpoint's sequence; `null` for a test send or a probe.
    pub sequence: Option<u64>,
    /// The event's ordering key, if it has one.
    pub ordering_key: Option<String>,
}

impl From<Attempt> for DeliveryResponse {
    fn from(attempt: Attempt) -> Self {
        Self {
            id: attempt.id.to_string(),
            endpoint_id: attempt.endpoint_id.to_string(),
            event_id: attempt.event_id.to_string(),
            event_type: attempt.event_type,
            url: attempt.url,
            attempt: attempt.attempt,
            outcome: attempt.outcome.as_str().to_owned(),
            response_status: attempt.response_status,
            response_time_ms: attempt.response_time_ms,
            request_body_sha256: attempt.request_body_sha256,
            request_body_bytes: attempt.request_body_bytes,
            request_headers: attempt.request_headers.into_iter().collect(),
            response_body_excerpt: attempt.response_body_excerpt,
            error: attempt.error,
            next_attempt_at: attempt.next_attempt_at.map(|at| at.to_string()),
            occurred_at: attempt.occurred_at.to_string(),
            sequence: attempt.sequence,
            ordering_key: attempt.ordering_key,
        }
    }
}

/// The answer of the test operation: the single attempt's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResponse {
    /// The synthetic event's id.
    #[schema(pattern = r"^evt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub event_id: String,
    /// The attempt's id (in the deliveries feed).
    #[schema(format = Uuid)]
    pub delivery_id: String,
    /// `success` or `dead`.
    #[schema(pattern = "^(success|dead)$")]
    pub outcome: String,
    /// Where it was sent.
    pub url: String,
    /// The HTTP status, or `null`.
    pub response_status: Option<u16>,
    /// How long it took.
    pub response_time_ms: u64,
    /// The first 1 KiB of the response body.
    pub response_body_excerpt: Option<String>,
    /// Why it failed, or `null`.
    pub error: Option<String>,
}

/// The answer of a replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// The replayed delivery record (attempt) id, as given.
    #[schema(format = Uuid)]
    pub delivery_id: String,
    /// The endpoint the replay goes to.
    #[schema(format = Uuid)]
    pub endpoint_id: String,
    /// The event type.
    pub event_type: String,
    /// The fresh event id of the replay.
    #[schema(pattern = r"^evt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub new_event_id: String,
    /// The audit record of the replay.
    #[schema(format = Uuid)]
    pub audit_log_id: String,
    /// When the replay was queued.
    #[schema(format = DateTime)]
    pub enqueued_at: String,
}

/// Body of a replay; may be omitted.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Why, for the audit trail; at most 500 characters.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
}

/// List delivery attempts, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/deliveries", tag = "deliveries", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$", min_length = 22, max_length = 22, description = "The `next_cursor` of the previous page (22 characters of unpadded base64url)"),
        ("endpoint_id" = Option<String>, Query, format = Uuid, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", min_length = 36, max_length = 36, description = "Only this endpoint"),
        ("event_type" = Option<String>, Query, description = "A catalog type or `webhook.test`"),
        ("outcome" = Option<String>, Query, pattern = "^(success|retry|dead)$", min_length = 4, max_length = 7, description = "`success`, `retry` or `dead`"),
        ("event_id" = Option<String>, Query, pattern = r"^evt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", min_length = 40, max_length = 40, description = "Only this event's attempts (`evt_<uuid>`)"),
        ("since" = Option<String>, Query, format = DateTime, description = "At or after (inclusive)"),
        ("until" = Option<String>, Query, format = DateTime, description = "Before (exclusive)"),
        ("http_status_min" = Option<u16>, Query, minimum = 100, maximum = 599, description = "Lowest response status"),
        ("http_status_max" = Option<u16>, Query, minimum = 100, maximum = 599, description = "Highest response status"),
    ),
    responses((status = 200, description = "A page of delivery attempts", body = DeliveryList), CommonErrors)
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    mut query: QueryParams,
) -> Result<Json<ListResponse<DeliveryResponse>>, ApiError> {
    let mut errors = FieldErrors::new();
    let page = page_request(&mut query, 50, 200, &mut errors);
    let filter = read_filter(&state.config, &mut query, &mut errors);
    query.report_unknown(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let attempts = state
        .store
        .list_attempts(auth.org_id(), &filter, &page)
        .await?;
    Ok(Json(ListResponse::from_page(
        attempts,
        page.limit,
        DeliveryResponse::from,
    )))
}

/// Reads the feed's filters from the query, recording problems into `errors`. Pure, so the
/// fuzz targets can call it.
pub fn read_filter(
    config: &ApiConfig,
    query: &mut QueryParams,
    errors: &mut FieldErrors,
) -> AttemptFilter {
    let mut reject = |field: &str, message: &str| {
        errors.insert(field.to_owned(), message.to_owned());
    };
    let mut filter = AttemptFilter::default();
    if let Some(text) = query.take("endpoint_id") {
        match text.parse::<EndpointId>() {
            Ok(id) => filter.endpoint_id = Some(id),
            Err(_) => reject("endpoint_id", "must be a uuid"),
        }
    }
    if let Some(text) = query.take("event_type") {
        if text == TEST_EVENT_TYPE || config.catalog.contains(&text) {
            filter.event_type = Some(text);
        } else {
            reject("event_type", &format!("unknown event type: {text}"));
        }
    }
    if let Some(text) = query.take("event_id") {
        match text.parse::<EventId>() {
            Ok(id) => filter.event_id = Some(id),
            Err(_) => reject("event_id", "must be an event id (evt_<uuid>)"),
        }
    }
    if let Some(text) = query.take("outcome") {
        match Outcome::parse(&text) {
            Some(outcome) => filter.outcome = Some(outcome),
            None => reject("outcome", "must be success, retry or dead"),
        }
    }
    for (field, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(text) = query.take(field) {
            match Timestamp::parse(&text) {
                Some(at) => *slot = Some(at),
                None => reject(field, "must be an RFC 3339 timestamp"),
            }
        }
    }
    for (field, slot) in [
        ("http_status_min", &mut filter.http_status_min),
        ("http_status_max", &mut filter.http_status_max),
    ] {
        if let Some(text) = query.take(field) {
            match text.parse::<u16>() {
                Ok(status) if (100..=599).contains(&status) => *slot = Some(status),
                _ => reject(field, "must be an integer from 100 to 599"),
            }
        }
    }
    if let (Some(min), Some(max)) = (filter.http_status_min, filter.http_status_max)
        && min > max
    {
        reject("http_status_min", "must not exceed http_status_max");
    }
    filter
}

/// Get one delivery attempt.
#[utoipa::path(
    get, path = "/v1/webhooks/deliveries/{id}", tag = "deliveries", security(("bearer" = [])),
    params(("id" = String, Path, description = "The delivery attempt's id")),
    responses((status = 200, description = "The attempt", body = DeliveryResponse), CommonErrors)
)]
pub(crate) async fn get_delivery(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    PathId(id): PathId,
) -> Result<Json<DeliveryResponse>, ApiError> {
    let attempt = state
        .store
        .get_attempt(auth.org_id(), path_id(&id)?)
        .await?;
    Ok(Json(attempt.into()))
}

/// Re-send an attempt's event to its endpoint as a new event.
// The body is optional, which `docs::finish` records: utoipa's own way, `Option<ReplayRequest>`,
// would also document a JSON `null` body, which is refused (400) like any non-object body.
#[utoipa::path(
    post, path = "/v1/webhooks/deliveries/{id}/replay", tag = "deliveries", security(("bearer" = [])),
    params(("id" = String, Path, description = "The delivery attempt's id")),
    request_body(content = ReplayRequest, description = "Optional: why, for the audit trail. The body may be omitted."),
    responses((status = 202, description = "Queued", body = ReplayResponse), CommonErrors)
)]
pub(crate) async fn replay_delivery(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<(StatusCode, Json<ReplayResponse>), ApiError> {
    let attempt_id: AttemptId = path_id(&id)?;
    let reason = read_replay_body(body)?;

    let org_id = auth.org_id();
    let attempt = state.store.get_attempt(org_id, attempt_id).await?;
    state
        .store
        .get_endpoint(org_id, attempt.endpoint_id)
        .await?;
    let original = match state.store.get_event(org_id, attempt.event_id).await {
        Ok(event) => event,
        Err(StoreError::NotFound) => return Err(ApiError::EventExpired),
        Err(other) => return Err(other.into()),
    };
    let now = Timestamp::now();
    let retention =
        chrono::Duration::from_std(state.config.event_retention).unwrap_or(chrono::Duration::MAX);
    if original.created_at < now.add(-retention) {
        return Err(ApiError::EventExpired);
    }
    let bucket = format!("replays:{org_id}");
    if let RateDecision::Limited { retry_after } = state
        .store
        .acquire_rate_limit(&bucket, state.config.replay_rate_limit, now)
        .await?
    {
        return Err(ApiError::RateLimited { retry_after });
    }

    let replay = Event {
        id: EventId::new(),
        org_id,
        event_type: original.event_type.clone(),
        data: original.data,
        idempotency_key: None,
        // A replay is a new event with a new sequence number, but it keeps its key: it
        // waits behind the key's pending deliveries like any event of the key.
        ordering_key: original.ordering_key,
        origin: EventOrigin::Replay,
        created_at: now,
        traceparent: None,
    };
    let mut audit = audit_record(&auth, AuditAction::DeliveryReplayed, &attempt_id, now);
    audit.reason = reason;
    state
        .store
        .enqueue_replay(&replay, attempt.endpoint_id, &audit)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayResponse {
            delivery_id: attempt_id.to_string(),
            endpoint_id: attempt.endpoint_id.to_string(),
            event_type: replay.event_type,
            new_event_id: replay.id.to_string(),
            audit_log_id: audit.id.to_string(),
            enqueued_at: now.to_string(),
        }),
    ))
}

/// Reads the optional body of a replay: the audit `reason`, `None` when absent, `null` or
/// blank. Pure, so the fuzz targets can call it.
pub fn read_replay_body(body: Map<String, Value>) -> Result<Option<String>, ApiError> {
    let mut fields = Fields::new(body);
    let reason = match fields.nullable_string("reason") {
        Some(Some(reason)) if reason.chars().count() > MAX_REASON_CHARS => {
            fields.error(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            );
            None
        }
        Some(reason) => reason.filter(|reason| !reason.trim().is_empty()),
        None => None,
    };
    fields.finish()?;
    Ok(reason)
}

/// Send a synthetic `webhook.test` event now and report the single attempt.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/test", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The attempt's outcome", body = TestResponse), CommonErrors)
)]
pub(crate) async fn test_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
) -> Result<Json<TestResponse>, ApiError> {
    let endpoint = state
        .store
        .get_endpoint(auth.org_id(), path_id(&id)?)
        .await?;
    // The attempt is recorded after it is sent: while storage refuses writes, send nothing
    // rather than a test whose record would be lost (a client retrying the 503 would send it
    // again). The store finds out it can write again at its next write or readiness probe.
    if !state.store.write_status().writable {
        return Err(ApiError::Unavailable);
    }
    let attempt = state.test_sender.send_test(&endpoint).await?;
    Ok(Json(TestResponse {
        event_id: attempt.event_id.to_string(),
        delivery_id: attempt.id.to_string(),
        outcome: attempt.outcome.as_str().to_owned(),
        url: attempt.url,
        response_status: attempt.response_status,
        response_time_ms: attempt.response_time_ms,
        response_body_excerpt: attempt.response_body_excerpt,
        error: attempt.error,
    }))
}
