//! Handlers, one module per resource, with their request and response types beside them.

pub mod admin;
pub mod catch_up;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod filters;
pub mod health;
pub mod org_secret;
pub mod portal;
pub mod recoveries;
pub mod signing;
pub mod stats;
