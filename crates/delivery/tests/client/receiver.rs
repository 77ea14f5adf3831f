//! The client side of the test setup: a delivery client that trusts the test CA and admits
//! loopback, directly or through an egress proxy. The receivers and the proxy themselves come
//! from `herald-testkit`.

use std::time::Duration;

use herald_delivery::{ClientConfig, DeliveryClient, EgressProxy};
use herald_domain::AddressPolicy;
pub(crate) use herald_testkit::{ConnectProxy, Receiver, TestCa};

/// A client that trusts `ca` and whose policy admits loopback, as tests configure it.
pub(crate) fn client(ca: &TestCa, total_timeout: Duration) -> DeliveryClient {
    DeliveryClient::new(ClientConfig {
        total_timeout,
        extra_root_certs_pem: Some(ca.root_pem()),
        policy: loopback_policy(),
        ..ClientConfig::default()
    })
    .expect("build client")
}

/// The allow-list tests use: loopback only.
pub(crate) fn loopback_policy() -> AddressPolicy {
    AddressPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid allow-list")
}

/// [`client`], every attempt through the egress proxy at `proxy_url`.
pub(crate) fn proxied_client(
    ca: &TestCa,
    total_timeout: Duration,
    proxy_url: &str,
) -> DeliveryClient {
    DeliveryClient::new(ClientConfig {
        total_timeout,
        extra_root_certs_pem: Some(ca.root_pem()),
        policy: loopback_policy(),
        egress_proxy: Some(EgressProxy::parse(proxy_url).expect("a valid proxy url")),
        ..ClientConfig::default()
    })
    .expect("build client")
}

/// A client through `proxy_url` with a short `connect_timeout` (and a 5 s total), for the
/// proxy's own failures.
pub(crate) fn proxied_client_with_connect_timeout(
    ca: &TestCa,
    connect_timeout: Duration,
    proxy_url: &str,
) -> DeliveryClient {
    DeliveryClient::new(ClientConfig {
        connect_timeout,
        total_timeout: Duration::from_secs(5),
        extra_root_certs_pem: Some(ca.root_pem()),
        policy: loopback_policy(),
        egress_proxy: Some(EgressProxy::parse(proxy_url).expect("a valid proxy url")),
    })
    .expect("build client")
}
