//! What every handler can reach: the store and the API's configuration.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{AddressPolicy, ApiVersions, EventCatalog};
use herald_store::{RateLimit, Store};

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState {
    /// All persistent state.
    pub store: Arc<dyn Store>,
    /// Settings that shape validation and limits.
    pub config: Arc<ApiConfig>,
}

/// The API's settings, fixed at startup.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Event types that may be subscribed to and published.
    pub catalog: EventCatalog,
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
    pub admin_token: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            catalog: EventCatalog::default(),
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
