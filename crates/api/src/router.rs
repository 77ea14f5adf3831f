//! Every route in one table. Organization routes are registered through `utoipa-axum`, so the
//! same call adds a handler to the router and its operation to the OpenAPI document.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::docs::ApiDoc;
use crate::error::ApiError;
use crate::extract::body_limit;
use crate::request_id;
use crate::routes::{
    admin, catch_up, deliveries, endpoints, event_types, filters, health, org_secret, portal,
    recoveries, signing, stats,
};
use crate::state::AppState;

/// The organization routes and their OpenAPI document.
pub fn organization_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            endpoints::create_endpoint,
            endpoints::list_endpoints
        ))
        .routes(routes!(
            endpoints::get_endpoint,
            endpoints::update_endpoint,
            endpoints::delete_endpoint
        ))
        .routes(routes!(signing::rotate_endpoint_secret))
        .routes(routes!(deliveries::test_endpoint))
        .routes(routes!(filters::test_filter))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::replay_delivery))
        .routes(routes!(catch_up::list_endpoint_events))
        .routes(routes!(stats::get_endpoint_stats))
        .routes(routes!(recoveries::recover_endpoint))
        .routes(routes!(recoveries::get_recovery))
        .routes(routes!(org_secret::rotate_org_secret))
        .routes(routes!(signing::list_webhook_keys))
        .routes(routes!(event_types::list_event_types))
        .routes(routes!(portal::get_me))
        .split_for_parts();
    crate::docs::finish(&mut openapi);
    (router, openapi)
}

/// What a delivery-only node serves (`HERALD_ROLE=delivery`): the health routes and
/// `/metrics`; other paths are a 404 and other methods a 405, in the usual envelope.
pub fn delivery_node_router(state: AppState) -> Router {
    with_fallbacks(probes_and_metrics())
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// The whole HTTP application: organization API, admin API, the portal, probes and the
/// document.
pub fn router(state: AppState) -> Router {
    let (organization, openapi) = organization_routes();
    let openapi = Arc::new(crate::docs::document(&openapi, &state.config));
    let max_body_bytes = state.config.body_limit;
    let routes = Router::new()
        .merge(organization)
        .merge(admin::router())
        .merge(crate::portal_assets::router())
        .merge(probes_and_metrics())
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        );
    with_fallbacks(routes)
        .layer(body_limit(max_body_bytes))
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// The routes every node serves, whatever its role.
fn probes_and_metrics() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::scrape))
}

/// Unknown paths and methods answered in the error envelope, and every route's requests
/// counted by route.
fn with_fallbacks(routes: Router<AppState>) -> Router<AppState> {
    routes
        .fallback(|| async { ApiError::NotFound.into_response() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed.into_response() })
        .route_layer(middleware::from_fn(crate::telemetry::record_route))
}
