//! The SSRF guard as the client enforces it: with the default policy every non-public target is
//! refused before a socket opens, and the allow-list is the one way through. Each case runs
//! twice, directly and through an egress proxy, with the same results, and the proxy is never
//! asked to CONNECT to a refused target nor given a name to resolve.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use bytes::Bytes;
use herald_delivery::{AttemptOutcome, ClientConfig, DeliveryClient, EgressProxy, OutcomeClass};
use herald_domain::AddressPolicy;

use crate::receiver::{ConnectProxy, Receiver, TestCa, client, proxied_client};

/// Listeners on the loopback ports the blocked targets name, to prove nobody connects.
struct Tripwire {
    v4: TcpListener,
    v6: TcpListener,
}

impl Tripwire {
    fn new() -> Self {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4 tripwire");
        let v6 = TcpListener::bind("[::1]:0").expect("bind v6 tripwire");
        v4.set_nonblocking(true).expect("nonblocking");
        v6.set_nonblocking(true).expect("nonblocking");
        Self { v4, v6 }
    }

    fn port_v4(&self) -> u16 {
        self.v4.local_addr().expect("local address").port()
    }

    fn port_v6(&self) -> u16 {
        self.v6.local_addr().expect("local address").port()
    }

    /// The kernel completes a handshake before `connect` returns, so a connection attempt that
    /// happened is already queued here; nothing queued means nothing connected.
    fn assert_untouched(&self) {
        for listener in [&self.v4, &self.v6] {
            match listener.accept() {
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => panic!("tripwire failed: {error}"),
                Ok((_, peer)) => panic!("a blocked target connected from {peer}"),
            }
        }
    }
}

/// A client with `policy`, through the proxy at `proxy_url` when given.
fn policy_client(policy: AddressPolicy, proxy_url: Option<&str>) -> DeliveryClient {
    DeliveryClient::new(ClientConfig {
        total_timeout: Duration::from_secs(5),
        policy,
        egress_proxy: proxy_url.map(|url| EgressProxy::parse(url).expect("a valid proxy url")),
        ..ClientConfig::default()
    })
    .expect("build client")
}

async fn send(client: &DeliveryClient, url: &str) -> AttemptOutcome {
    client.send(url, &[], Bytes::from_static(b"{}")).await
}

/// Sends to `url` and expects the error `expected`; a trailing `*` makes it a prefix.
async fn check(client: &DeliveryClient, url: &str, expected: &str) {
    let outcome = send(client, url).await;
    let error = outcome.error.as_deref().unwrap_or("<none>");
    let matched = match expected.strip_suffix('*') {
        Some(prefix) => error.starts_with(prefix),
        None => error == expected,
    };
    assert!(matched, "{url}: expected {expected:?}, got {error:?}");
    assert_eq!(outcome.response_status, None, "{url}");
    assert_eq!(outcome.class, OutcomeClass::Failure, "{url}");
}

#[tokio::test]
async fn default_policy_blocks_every_non_public_target() {
    let tripwire = Tripwire::new();
    let client = policy_client(AddressPolicy::default(), None);

    for (url, expected) in &blocked_targets(&tripwire) {
        check(&client, url, expected).await;
    }

    tripwire.assert_untouched();
}

#[tokio::test]
async fn default_policy_blocks_the_same_targets_through_the_egress_proxy() {
    let tripwire = Tripwire::new();
    let proxy = ConnectProxy::spawn().await;
    let client = policy_client(AddressPolicy::default(), Some(&proxy.url()));

    for (url, expected) in &blocked_targets(&tripwire) {
        check(&client, url, expected).await;
    }
    check(
        &client,
        "https://no-such-host.invalid/",
        "dns: no-such-host.invalid did not resolve",
    )
    .await;

    assert_eq!(
        proxy.connects(),
        [],
        "the proxy was asked for a refused target"
    );
    tripwire.assert_untouched();
}

/// Every non-public target spelling, with the error the client must give for it; the loopback
/// ones name the tripwire's ports.
fn blocked_targets(tripwire: &Tripwire) -> Vec<(String, &'static str)> {
    let p4 = tripwire.port_v4();
    let p6 = tripwire.port_v6();
    let loopback = "blocked: loopback address 127.0.0.1";
    let loopback_name = "blocked: loopback address *";

    vec![
        (format!("https://127.0.0.1:{p4}/"), loopback),
        (format!("http://127.0.0.1:{p4}/"), loopback),
        (format!("https://127.1:{p4}/"), loopback),
        (format!("https://2130706433:{p4}/"), loopback),
        (format!("https://0x7f000001:{p4}/"), loopback),
        (format!("https://0177.0.0.1:{p4}/"), loopback),
        (format!("https://0x7f.1:{p4}/"), loopback),
        (format!("https://127.0.0.1.:{p4}/"), loopback),
        (format!("https://localhost:{p4}/"), loopback_name),
        (format!("https://LOCALHOST:{p4}/"), loopback_name),
        (format!("https://localhost.:{p4}/"), loopback_name),
        (format!("https://LocalHost.:{p4}/"), loopback_name),
        (
            format!("https://0.0.0.0:{p4}/"),
            "blocked: unspecified address 0.0.0.0",
        ),
        (
            format!("https://0:{p4}/"),
            "blocked: unspecified address 0.0.0.0",
        ),
        (
            "https://10.0.0.1/".to_owned(),
            "blocked: private address 10.0.0.1",
        ),
        (
            "https://172.16.0.1/".to_owned(),
            "blocked: private address 172.16.0.1",
        ),
        (
            "https://192.168.1.1/".to_owned(),
            "blocked: private address 192.168.1.1",
        ),
        (
            "https://100.64.0.1/".to_owned(),
            "blocked: shared (CGNAT) address 100.64.0.1",
        ),
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "blocked: link-local address 169.254.169.254",
        ),
        (
            "http://169.254.169.254/".to_owned(),
            "blocked: link-local address 169.254.169.254",
        ),
        (
            "https://224.0.0.1/".to_owned(),
            "blocked: multicast address 224.0.0.1",
        ),
        (
            "https://255.255.255.255/".to_owned(),
            "blocked: reserved address 255.255.255.255",
        ),
        (
            format!("https://[::1]:{p6}/"),
            "blocked: loopback address ::1",
        ),
        (
            format!("https://[::]:{p6}/"),
            "blocked: unspecified address ::",
        ),
        (format!("https://[::ffff:127.0.0.1]:{p4}/"), loopback),
        (format!("https://[::ffff:7f00:1]:{p4}/"), loopback),
        (
            format!("https://[::127.0.0.1]:{p4}/"),
            "blocked: loopback address ::7f00:1",
        ),
        (
            "https://[::ffff:169.254.169.254]/".to_owned(),
            "blocked: link-local address 169.254.169.254",
        ),
        (
            "https://[fc00::1]/".to_owned(),
            "blocked: private address fc00::1",
        ),
        (
            "https://[fd00:ec2::254]/".to_owned(),
            "blocked: private address fd00:ec2::254",
        ),
        (
            "https://[fe80::1]/".to_owned(),
            "blocked: link-local address fe80::1",
        ),
        (
            "https://[ff02::1]/".to_owned(),
            "blocked: multicast address ff02::1",
        ),
        (
            format!("https://[64:ff9b::7f00:1]:{p4}/"),
            "blocked: loopback address 64:ff9b::7f00:1",
        ),
        (
            "https://[64:ff9b::a9fe:a9fe]/".to_owned(),
            "blocked: link-local address 64:ff9b::a9fe:a9fe",
        ),
        (
            format!("https://[2002:7f00:1::]:{p4}/"),
            "blocked: loopback address 2002:7f00:1::",
        ),
        (
            "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/".to_owned(),
            "blocked: loopback address 2001:0:4136:e378:8000:63bf:80ff:fffe",
        ),
        (
            "ftp://example.com/".to_owned(),
            "blocked: scheme ftp is not allowed",
        ),
    ]
}

#[tokio::test]
async fn unknown_name_fails_closed() {
    let client = policy_client(AddressPolicy::default(), None);

    check(
        &client,
        "https://no-such-host.invalid/",
        "dns: no-such-host.invalid did not resolve",
    )
    .await;
}

#[tokio::test]
async fn allow_list_lets_a_loopback_receiver_through() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let client = client(&ca, Duration::from_secs(15));

    send_to_every_loopback_spelling(&client, &receiver).await;
}

#[tokio::test]
async fn allow_list_lets_a_loopback_receiver_through_the_egress_proxy_by_address() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::spawn().await;
    let client = proxied_client(&ca, Duration::from_secs(15), &proxy.url());

    send_to_every_loopback_spelling(&client, &receiver).await;
    // Only checked addresses were asked for, never a name: the proxy resolves nothing.
    proxy.assert_only_asked_for(receiver.address);
}

/// Sends to `receiver` by address and by each spelling of `localhost`, and expects every one
/// to arrive.
async fn send_to_every_loopback_spelling(client: &DeliveryClient, receiver: &Receiver) {
    for url in [
        receiver.url("/ok"),
        receiver.url_for_host("localhost", "/ok"),
        receiver.url_for_host("localhost.", "/ok"),
        receiver.url_for_host("LOCALHOST", "/ok"),
    ] {
        let outcome = send(client, &url).await;
        assert_eq!(
            outcome.class,
            OutcomeClass::Success,
            "{url}: {:?}",
            outcome.error
        );
    }
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn allow_list_reaches_an_ipv6_loopback_receiver_through_the_egress_proxy() {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .bind("[::1]:0".parse().expect("socket address"))
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;

    let outcome = send(
        &proxied_client(&ca, Duration::from_secs(15), &proxy.url()),
        &receiver.url("/ok"),
    )
    .await;

    assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
    assert_eq!(
        proxy.targets(),
        [format!("[::1]:{}", receiver.address.port())]
    );
}

#[tokio::test]
async fn allow_list_reaches_an_ipv6_loopback_receiver() {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .bind("[::1]:0".parse().expect("socket address"))
        .spawn()
        .await;

    let outcome = send(&client(&ca, Duration::from_secs(15)), &receiver.url("/ok")).await;

    assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
}

#[tokio::test]
async fn allow_list_admits_only_what_it_lists() {
    let tripwire = Tripwire::new();
    let proxy = ConnectProxy::spawn().await;
    let policy = || AddressPolicy::parse_allow_list("127.0.0.2/32").expect("valid allow-list");

    for client in [
        policy_client(policy(), None),
        policy_client(policy(), Some(&proxy.url())),
    ] {
        let p4 = tripwire.port_v4();
        check(
            &client,
            &format!("https://127.0.0.1:{p4}/"),
            "blocked: loopback address 127.0.0.1",
        )
        .await;
        check(
            &client,
            &format!("https://localhost:{p4}/"),
            "blocked: loopback address *",
        )
        .await;
        check(
            &client,
            "https://10.0.0.1/",
            "blocked: private address 10.0.0.1",
        )
        .await;
    }

    assert_eq!(proxy.connects(), []);
    tripwire.assert_untouched();
}
