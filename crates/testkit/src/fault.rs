//! What the fault tests of the real `herald` binary (`crates/cli/tests`) share: starting,
//! killing and stopping `herald serve` as a child process ([`process`]), the API calls they
//! make ([`api`]), and a receiver that checks every delivery's signature and logs its arrivals
//! by test phase ([`receiver`]). The PostgreSQL databases and clusters they use are
//! [`crate::postgres`], re-exported here so the tests find everything in one place.

pub mod api;
pub mod process;
pub mod receiver;

pub use self::api::*;
pub use self::process::*;
pub use self::receiver::*;
pub use crate::postgres;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The one event type every fault test publishes and subscribes to.
pub const EVENT_TYPE: &str = "wallet.balance_low";
/// The admin token every server started here accepts.
pub const ADMIN_TOKEN: &str = "fault-test-admin-token";
/// Most events in one batch publish (the API's own limit).
pub const PUBLISH_BATCH: usize = 500;
/// The series of successful attempts a node recorded since it started.
pub const SUCCESSES: &str = "herald_delivery_attempts_total{outcome=\"success\"}";

/// An HTTP client for talking to herald; each request is bounded.
#[expect(
    clippy::disallowed_methods,
    reason = "the tests' client of the herald under test on loopback, not a delivery"
)]
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A base64 secrets key of 32 random bytes, for `HERALD_SECRETS_KEY`.
pub fn random_secrets_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}
