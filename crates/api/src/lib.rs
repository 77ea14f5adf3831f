//! Herald's HTTP API. Only this crate decides status codes and JSON wire shapes.
//!
//! # Layout
//!
//! - [`router`]: every route in one table; [`router::router`] builds the application.
//! - [`routes`]: handlers per resource, with their request and response types.
//! - [`extract`]: authentication with scopes, JSON bodies, query strings.
//! - [`error`]: [`ApiError`] and the error envelope, the one `IntoResponse` for failures.
//! - [`request_id`]: the `X-Request-Id` middleware.
//! - `telemetry`: the request's span (OpenTelemetry HTTP server conventions, the caller's
//!   `traceparent` as its parent) and the `traceparent` a publish keeps.
//! - [`publisher`]: group commit of published events.
//! - [`known_orgs`]: organizations already seen to exist, so publishes skip reading them.
//! - [`metrics`]: `GET /metrics` and the API's counters.
//! - [`queue_gauges`]: the queue gauges, computed off the scrape.
//! - [`client_certificate`]: checking an endpoint's client certificate pair (rustls, x509-cert).
//! - [`docs`]: the OpenAPI document's fixed parts.
//! - [`portal_assets`]: the portal's embedded files, served under `/portal/` with their CSP.
//! - [`state`]: [`AppState`] and [`ApiConfig`].
//!
//! The API never dials receivers itself: it records work in the store, and the delivery
//! worker claims it from there.

pub mod client_certificate;
pub mod docs;
pub mod error;
pub mod extract;
pub mod known_orgs;
pub mod metrics;
pub mod portal_assets;
pub mod publisher;
pub mod queue_gauges;
pub mod request_id;
pub mod router;
pub mod routes;
pub mod state;
mod telemetry;
pub mod wire;

pub use error::ApiError;
pub use metrics::{ApiMetricHandles, ApiMetrics};
pub use publisher::Publisher;
pub use queue_gauges::{QUEUE_COUNT_LIMIT, QueueGaugeSettings};
pub use router::{delivery_node_router, router};
pub use state::{ApiConfig, AppState, TestSender};
