//! Herald's delivery side: everything between a due delivery and the receiver's answer.
//!
//! # Layout
//!
//! - [`worker`]: claims due deliveries, attempts them with bounded concurrency per endpoint,
//!   schedules retries and records attempts in batches.
//! - [`attempt`]: one attempt start to finish: render, sign, send, describe.
//! - [`signer`]: the two signature schemes and the section-7 headers of an attempt. Pure.
//! - [`retry`]: the decided retry schedule as data, jitter, and `Retry-After` parsing. Pure.
//! - [`ssrf`]: the attempt-time address guard, a DNS resolver that checks every address it
//!   returns, and the check of IP-literal URL hosts.
//! - [`client`]: [`DeliveryClient`], the only outbound HTTP client, which turns one attempt into
//!   an [`AttemptOutcome`], directly or through the operator's [`EgressProxy`].
//! - [`retention`]: the purge of expired events and attempts.
//! - [`recovery`]: advances recoveries, a chunk of matches at a time.
//! - [`test_send`]: the synchronous `webhook.test` attempt of the test operation.
//! - [`metrics`]: attempts by outcome and attempt latency.
//! - [`telemetry`]: the OpenTelemetry spans of attempts and claims, when export is on.

pub mod attempt;
pub mod client;
/// The body of a delivery: [`herald_domain::envelope`], which the API's catch-up feed renders
/// too.
pub use herald_domain::envelope;
pub mod metrics;
pub mod probe;
pub mod recovery;
pub mod retention;
pub mod retry;
pub mod signer;
pub mod ssrf;
pub mod telemetry;
pub mod test_send;
#[cfg(test)]
mod test_store;
pub mod worker;

pub use client::{
    AttemptOutcome, ClientConfig, ClientError, DeliveryClient, EgressProxy, EgressProxyError,
    OutcomeClass,
};
pub use metrics::DeliveryMetrics;
pub use retry::{MAX_ATTEMPTS, RetrySchedule, parse_retry_after};
pub use signer::{OutgoingDelivery, VerifyError, signed_headers, verify_v1};
pub use ssrf::{BlockedTarget, PolicyResolver, ResolveError, check_url_target, checked_addresses};
pub use telemetry::DeliveryTracer;
pub use worker::{Worker, WorkerConfig};
