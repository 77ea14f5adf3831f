//! Herald's domain: the words of the glossary as types, and the rules that decide whether a
//! value is acceptable. Nothing here is async or does IO, apart from reading the clock and the
//! operating system's random number generator where a value is born (timestamps, ids, secrets);
//! every other crate may depend on it.
//!
//! # Layout
//!
//! - [`ids`]: typed identifiers (`OrgId`, `EndpointId`, `EventId`, ...).
//! - [`time`]: [`Timestamp`], the one wire format for instants.
//! - [`scope`]: API-key scopes.
//! - [`catalog`]: the event-type catalog and the supported API versions.
//! - [`delivery`]: events, attempts and their outcomes.
//! - [`envelope`]: the body of a delivery, one renderer per API version. Pure.
//! - [`endpoint`]: the endpoint object and its validation rules, wildcards included.
//! - [`filter`]: an endpoint's payload filter: its language, its checks, its matching.
//! - [`client_certificate`]: an endpoint's client certificate for mutual TLS.
//! - [`custom_headers`]: an endpoint's custom headers, their rules and their redaction.
//! - [`org`]: organizations, API keys and audit records.
//! - [`portal`]: portal sessions, the portal's short-lived credentials.
//! - [`publish`]: what an event must be to be published.
//! - [`recovery`]: delivering an endpoint's failed or missed events again.
//! - [`operational`]: the events Herald publishes about endpoints and deliveries.
//! - [`net`]: which IP addresses count as public, and the operator's allow-list.
//! - [`secret`]: signing secrets and API-key tokens.
//! - [`signing`]: rotation with overlap and the organizations' Ed25519 signing keys.
//! - [`trace`]: W3C trace context, kept with an event and sent with each attempt.

pub mod catalog;
pub mod client_certificate;
pub mod custom_headers;
pub mod delivery;
pub mod endpoint;
pub mod envelope;
pub mod filter;
pub mod ids;
pub mod net;
pub mod operational;
pub mod org;
pub mod portal;
pub mod publish;
pub mod recovery;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod time;
pub mod trace;

pub use catalog::{ApiVersions, EventCatalog, TEST_EVENT_TYPE};
pub use delivery::{Attempt, Event, EventOrigin, Outcome};
pub use endpoint::{DisabledReason, Endpoint, EndpointCredentials, EndpointHealth, FieldErrors};
pub use ids::{
    ApiKeyId, AttemptId, AuditId, DeliveryId, EndpointId, EventId, OrgId, RecoveryId, SigningKeyId,
};
pub use net::AddressPolicy;
pub use org::{ApiKey, AuditAction, AuditRecord, Org};
pub use scope::Scope;
pub use secret::{ApiKeyToken, Secret};
pub use signing::{OrgSigningKey, PreviousSecret, SigningMaterial};
pub use time::Timestamp;
pub use trace::TraceParent;
