//! What every handler can reach: the store and the API's configuration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::catalog::SchemaEnforcement;
use herald_domain::secret::SecretText;
use herald_domain::{AddressPolicy, ApiVersions, Attempt, Endpoint, EventCatalog};
use herald_store::{RateLimit, Store, StoreError};
use tokio::sync::Notify;

use crate::known_orgs::KnownOrgs;
use crate::metrics::ApiMetrics;
use crate::publisher::Publisher;
use crate::queue_gauges::QueueGaugeSettings;

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState {
    /// All persistent state.
    pub store: Arc<dyn Store>,
    /// Settings that shape validation and limits.
    pub config: Arc<ApiConfig>,
    /// Sends the test operation's single attempt (implemented by the delivery side).
    pub test_sender: Arc<dyn TestSender>,
    /// Signalled when a recovery is asked for, so the local task advances it at once.
    pub recovery_wakeup: Arc<Notify>,
    /// Counters and the registry behind `GET /metrics`.
    pub metrics: ApiMetrics,
    /// Commits published events, gathering concurrent requests into one transaction.
    pub publisher: Publisher,
    /// Organizations already seen to exist, so publishes skip reading them.
    pub known_orgs: Arc<KnownOrgs>,
}

/// Sends a synthetic `webhook.test` to an endpoint now and records the attempt. The API
/// does not dial receivers itself; the server wires in the delivery side's implementation.
#[async_trait]
pub trait TestSender: Send + Sync + 'static {
    /// Attempts once, stores the attempt, and returns it (`success` or `dead`).
    async fn send_test(&self, endpoint: &Endpoint) -> Result<Attempt, StoreError>;
}

/// The API's settings, fixed at startup.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Event types that may be subscribed to and published, with their schemas.
    pub catalog: EventCatalog,
    /// What publishing does with `data` that breaks its type's schema.
    pub schema_enforcement: SchemaEnforcement,
    /// API versions an endpoint may pin.
    pub api_versions: ApiVersions,
    /// Which endpoint hosts are acceptable.
    pub address_policy: AddressPolicy,
    /// Most live endpoints per organization.
    pub endpoint_cap: u32,
    /// Write requests per organization.
    pub write_rate_limit: RateLimit,
    /// Replays per organization.
    pub replay_rate_limit: RateLimit,
    /// The admin API's bearer token; `None` turns the admin API off.
    pub admin_token: Option<SecretText>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Largest accepted event `data`, serialized, in bytes.
    pub max_event_bytes: usize,
    /// Events older than this can no longer be replayed (410).
    pub event_retention: Duration,
    /// Where browsers reach this server (`HERALD_PUBLIC_URL`, no trailing slash): the base of
    /// portal session links.
    pub public_url: String,
    /// The portal's CSP `frame-ancestors` sources (`HERALD_PORTAL_FRAME_ANCESTORS`).
    pub portal_frame_ancestors: String,
    /// When `GET /metrics` computes the queue gauges again.
    pub queue_gauges: QueueGaugeSettings,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            catalog: EventCatalog::default(),
            schema_enforcement: SchemaEnforcement::default(),
            api_versions: ApiVersions::default(),
            address_policy: AddressPolicy::default(),
            endpoint_cap: herald_domain::endpoint::MAX_ENDPOINTS_PER_ORG,
            // Generous enough that scripted setup never trips it, tight enough that a
            // runaway client cannot monopolize the single SQLite writer.
            write_rate_limit: RateLimit {
                limit: 1_200,
                period: Duration::from_secs(60),
            },
            replay_rate_limit: RateLimit {
                limit: 10,
                period: Duration::from_secs(60),
            },
            admin_token: None,
            body_limit: 256 * 1024,
            max_event_bytes: herald_domain::publish::DEFAULT_MAX_EVENT_BYTES,
            event_retention: Duration::from_secs(30 * 24 * 60 * 60),
            public_url: "http://127.0.0.1:8080".to_owned(),
            portal_frame_ancestors: "'none'".to_owned(),
            queue_gauges: QueueGaugeSettings::default(),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
