//! Handlers, one module per resource, with their request and response types beside them.

pub mod admin;
pub mod endpoints;
pub mod health;
pub mod org_secret;
