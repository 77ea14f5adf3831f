//! Test support shared by Herald's test suites and its benchmark harness. Nothing here is used
//! by the product.
//!
//! # Layout
//!
//! - [`ca`]: a test CA made with rcgen and the leaves it signs for receivers.
//! - [`receiver`]: real HTTPS receivers (axum behind axum-server's rustls acceptor), bound
//!   before they are spawned so no test waits for readiness; the scripted [`Receiver`] logs
//!   what it receives.
//! - [`otlp`]: an in-process OTLP receiver (`POST /v1/traces`, http/protobuf) that decodes
//!   and keeps the spans Herald exports.
//! - [`proxy`]: a real HTTP CONNECT proxy ([`ConnectProxy`]) that records each CONNECT,
//!   optionally refuses or demands credentials, and tunnels bytes; for the egress proxy tests.
//! - [`postgres`]: a fresh PostgreSQL database dropped afterwards, and a private cluster a
//!   test may stop and start.
//! - [`disk`]: a small real file system to fill.
//! - [`fault`]: the real `herald` binary as a child process, the API calls the fault tests
//!   make, and a receiver that checks every signature; used by `crates/cli`'s tests.

pub mod ca;
pub mod disk;
pub mod fault;
pub mod otlp;
pub mod postgres;
pub mod proxy;
pub mod receiver;

pub use ca::TestCa;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use proxy::{ConnectProxy, ConnectRequest};
pub use receiver::{Received, Receiver};
