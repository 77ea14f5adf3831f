//! Herald's delivery side: everything between a due delivery and the receiver's answer.
//!
//! # Layout
//!
//! - [`signer`]: the two signature schemes and the section-7 headers of an attempt. Pure.
//! - [`retry`]: the decided retry schedule as data, jitter, and `Retry-After` parsing. Pure.
//! - [`ssrf`]: the attempt-time address guard, a DNS resolver that checks every address it
//!   returns, and the check of IP-literal URL hosts.
//! - [`client`]: [`DeliveryClient`], the only outbound HTTP client, which turns one attempt into
//!   an [`AttemptOutcome`].
//!
//! The worker that claims due deliveries, sends them and records the outcome builds on these.

pub mod client;
pub mod retry;
pub mod signer;
pub mod ssrf;

pub use client::{AttemptOutcome, ClientConfig, ClientError, DeliveryClient, OutcomeClass};
pub use retry::{MAX_ATTEMPTS, RetrySchedule, parse_retry_after};
pub use signer::{OutgoingDelivery, VerifyError, signed_headers, verify_v1};
pub use ssrf::{BlockedTarget, PolicyResolver, ResolveError, check_url_target};
