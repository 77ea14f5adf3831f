//! The OpenAPI 3.1 document of the organization API, generated from the handlers' annotations.
//! The router and the document are built from the same `routes!` calls (see `router.rs`), so
//! a route cannot exist without being documented.

mod bounds;
mod catalog;
mod links;

pub(crate) use bounds::{custom_headers_or_null_schema, custom_headers_schema};

use crate::state::ApiConfig;

use utoipa::openapi::Required;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::ErrorEnvelope;
use crate::routes::deliveries::DeliveryResponse;
use crate::routes::endpoints::EndpointResponse;
use crate::routes::event_types::EventTypeResponse;
use crate::wire::ListMeta;

/// The document's fixed part; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Outbound webhooks: manage endpoints, inspect, test and replay deliveries."),
    components(schemas(ErrorEnvelope, ListMeta)),
    modifiers(&BearerAuth),
    tags(
        (name = "endpoints", description = "Webhook endpoints"),
        (name = "deliveries", description = "Delivery attempts: inspect and replay"),
        (name = "organization", description = "Organization-wide settings"),
    )
)]
pub(crate) struct ApiDoc;

/// Operations whose request body may be omitted altogether.
const OPTIONAL_BODIES: [&str; 2] = ["replay_delivery", "rotate_endpoint_secret"];

/// Completes the document once the router has added every path: gives every `{id}` its
/// UUID shape and marks the bodies that may be omitted as not required. utoipa's own way to say so, `Option<T>`, would also declare a JSON `null`
/// body valid, and Herald refuses that (400) like any body that is not an object.
pub(crate) fn finish(openapi: &mut utoipa::openapi::OpenApi) {
    bounds::path_ids(openapi);
    for item in openapi.paths.paths.values_mut() {
        let operations = [&mut item.post, &mut item.put, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let optional = operation
                .operation_id
                .as_deref()
                .is_some_and(|id| OPTIONAL_BODIES.contains(&id));
            if !optional {
                continue;
            }
            if let Some(body) = operation.request_body.as_mut() {
                body.required = Some(Required::False);
            }
        }
    }
}

/// What `GET /openapi.json` serves: `openapi` with the deployment's catalog and versions, and
/// the links between operations.
pub(crate) fn document(
    openapi: &utoipa::openapi::OpenApi,
    config: &ApiConfig,
) -> serde_json::Value {
    let mut document = catalog::with_catalog(openapi, config);
    links::add(&mut document);
    document
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// A page of endpoints.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "documentation-only shape of ListResponse<EndpointResponse>"
)]
pub(crate) struct EndpointList {
    /// Always `true`.
    success: bool,
    /// The endpoints.
    data: Vec<EndpointResponse>,
    /// Counts and the continuation cursor.
    meta: ListMeta,
}

/// A page of delivery attempts.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "documentation-only shape of ListResponse<DeliveryResponse>"
)]
pub(crate) struct DeliveryList {
    /// Always `true`.
    success: bool,
    /// The attempts.
    data: Vec<DeliveryResponse>,
    /// Counts and the continuation cursor.
    meta: ListMeta,
}

/// The event catalog.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "documentation-only shape of ListResponse<EventTypeResponse>"
)]
pub(crate) struct EventTypeList {
    /// Always `true`.
    success: bool,
    /// The types.
    data: Vec<EventTypeResponse>,
    /// Counts (the whole catalog is one page).
    meta: ListMeta,
}

/// The error answers any organization route can give.
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "documentation-only: lists the error statuses and their envelope"
)]
pub(crate) enum CommonErrors {
    /// Body or query string unreadable.
    #[response(status = 400, description = "Invalid input")]
    InvalidInput(#[to_schema] ErrorEnvelope),
    /// Missing, malformed, unknown or revoked key.
    #[response(status = 401, description = "Authentication failed")]
    Unauthorized(#[to_schema] ErrorEnvelope),
    /// The key lacks the operation's scope.
    #[response(status = 403, description = "Missing required scope")]
    Forbidden(#[to_schema] ErrorEnvelope),
    /// Unknown id, another organization's id, or deleted.
    #[response(status = 404, description = "Not found")]
    NotFound(#[to_schema] ErrorEnvelope),
    /// Known path, wrong method.
    #[response(status = 405, description = "Method not allowed")]
    MethodNotAllowed(#[to_schema] ErrorEnvelope),
    /// Endpoint limit reached (`LIMIT_EXCEEDED`), or the endpoint is inactive
    /// (`ENDPOINT_INACTIVE`, recovery).
    #[response(status = 409, description = "Limit exceeded, or endpoint inactive")]
    LimitExceeded(#[to_schema] ErrorEnvelope),
    /// Event past retention.
    #[response(status = 410, description = "Event expired")]
    EventExpired(#[to_schema] ErrorEnvelope),
    /// Body over the configured cap.
    #[response(status = 413, description = "Payload too large")]
    PayloadTooLarge(#[to_schema] ErrorEnvelope),
    /// A field breaks a rule; `details` names each.
    #[response(status = 422, description = "Validation failed")]
    Validation(#[to_schema] ErrorEnvelope),
    /// Over a rate limit; see `Retry-After`.
    #[response(status = 429, description = "Rate limited")]
    RateLimited(#[to_schema] ErrorEnvelope),
    /// A bug.
    #[response(status = 500, description = "Internal error")]
    Internal(#[to_schema] ErrorEnvelope),
    /// Storage unreachable; see `Retry-After`.
    #[response(status = 503, description = "Service unavailable")]
    Unavailable(#[to_schema] ErrorEnvelope),
}
