//! The delivery client against real local HTTPS receivers: outcomes, timeouts, TLS, the SSRF
//! guard and the egress proxy. One binary, one module per concern, and the receiver harness
//! beside them.

mod egress_proxy;
mod hostile_proxy;
mod outcomes;
mod receiver;
mod ssrf;
