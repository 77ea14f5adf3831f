//! The delivery client against real local HTTPS receivers: outcomes, timeouts, TLS and the
//! SSRF guard. One binary, one module per concern, and the receiver harness beside them.

mod outcomes;
mod receiver;
mod ssrf;
