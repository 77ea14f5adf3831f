//! The egress proxy route (docs/operations.md, "Egress through a proxy"): every attempt goes
//! through a real CONNECT proxy on loopback, which is asked for the checked address and never a
//! name; TLS inside the tunnel is verified for the endpoint's host name and presents the
//! endpoint's client certificate; attempts come out exactly as on the direct route; and the
//! proxy's own failures read as such.

use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_delivery::{AttemptOutcome, DeliveryClient, OutcomeClass};
use herald_domain::client_certificate::ClientCertificate;
use hyper::StatusCode;

use crate::receiver::{
    ConnectProxy, Receiver, TestCa, client, proxied_client, proxied_client_with_connect_timeout,
};

const BODY: &[u8] = br#"{"id":"evt_test","type":"wallet.balance_low"}"#;
const TOTAL: Duration = Duration::from_secs(15);

fn body() -> Bytes {
    Bytes::from_static(BODY)
}

/// A client through `proxy_url` with a short connect timeout, for the proxy's own failures.
fn impatient_client(ca: &TestCa, proxy_url: &str) -> DeliveryClient {
    proxied_client_with_connect_timeout(ca, Duration::from_millis(500), proxy_url)
}

#[tokio::test]
async fn the_proxy_is_asked_for_the_checked_address_and_tls_is_verified_for_the_name() {
    // Arrange: a certificate for the name only, so verifying against the address would fail.
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .leaf(ca.leaf(&["localhost"]))
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;
    let client = proxied_client(&ca, TOTAL, &proxy.url());

    // Act
    let outcome = client
        .send(
            &receiver.url_for_host("localhost", "/ok"),
            &[("content-type", "application/json".to_owned())],
            body(),
        )
        .await;

    // Assert
    assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
    assert_eq!(outcome.response_status, Some(200));
    assert_eq!(outcome.response_body_excerpt.as_deref(), Some("thanks"));
    assert_eq!(
        proxy.targets(),
        [format!("127.0.0.1:{}", receiver.address.port())]
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.as_ref(), BODY);
    // ALPN inside the tunnel offered both protocols and the receiver picked HTTP/2.
    assert_eq!(received[0].version, axum::http::Version::HTTP_2);
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert!(
        received[0].headers["user-agent"]
            .to_str()
            .expect("ascii header")
            .starts_with("Herald/")
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_inside_the_tunnel() {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .leaf(ca.leaf(&["other.example", "127.0.0.1"]))
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;

    let outcome = proxied_client(&ca, TOTAL, &proxy.url())
        .send(&receiver.url_for_host("localhost", "/ok"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("tls: certificate not valid for name localhost")
    );
    assert_eq!(outcome.response_status, None);
    assert_eq!(proxy.targets().len(), 1, "the tunnel was opened");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn outcomes_through_the_proxy_match_the_direct_route() {
    // Arrange: the same receiver, one client each way.
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let untrusted = Receiver::builder(&ca)
        .leaf(stranger.loopback_leaf())
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;
    let direct = client(&ca, Duration::from_secs(1));
    let proxied = proxied_client(&ca, Duration::from_secs(1), &proxy.url());
    let urls = [
        receiver.url("/ok"),
        receiver.url("/fail"),
        receiver.url("/gone"),
        receiver.url("/busy"),
        receiver.url("/redirect"),
        receiver.url("/huge"),
        receiver.url("/hang"),
        receiver.url("/trickle"),
        untrusted.url("/ok"),
    ];

    for url in &urls {
        // Act
        let (direct, proxied) = tokio::join!(
            direct.send(url, &[], body()),
            proxied.send(url, &[], body())
        );

        // Assert: the same record, apart from the time it took.
        assert_eq!(without_time(proxied), without_time(direct), "{url}");
    }
    assert!(!proxy.targets().is_empty());
}

fn without_time(outcome: AttemptOutcome) -> AttemptOutcome {
    AttemptOutcome {
        response_time_ms: 0,
        ..outcome
    }
}

#[tokio::test]
async fn connections_through_the_proxy_are_reused() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::spawn().await;
    let client = proxied_client(&ca, TOTAL, &proxy.url());

    for _ in 0..5 {
        let outcome = client.send(&receiver.url("/ok"), &[], body()).await;
        assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
    }

    assert_eq!(receiver.received().len(), 5);
    assert_eq!(proxy.targets().len(), 1, "one tunnel carried all five");
}

#[tokio::test]
async fn a_tunnel_is_reused_only_for_the_host_and_port_it_was_opened_for() {
    // Arrange: two receivers on one address and two ports, and one client for both.
    let ca = TestCa::new();
    let first = Receiver::spawn(&ca).await;
    let second = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::spawn().await;
    let client = proxied_client(&ca, TOTAL, &proxy.url());

    // Act: attempts alternate between the two, each while the other's tunnel is idle.
    for _ in 0..3 {
        for receiver in [&first, &second] {
            let outcome = client.send(&receiver.url("/ok"), &[], body()).await;
            assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
        }
    }

    // Assert: each receiver got its own three, over one tunnel of its own.
    assert_eq!(first.received().len(), 3);
    assert_eq!(second.received().len(), 3);
    let mut targets = proxy.targets();
    targets.sort();
    let mut expected = vec![first.address.to_string(), second.address.to_string()];
    expected.sort();
    assert_eq!(targets, expected);
}

#[tokio::test]
async fn a_receiver_demanding_mutual_tls_gets_the_endpoints_certificate_through_the_proxy() {
    // Arrange: a receiver that admits only clients its own CA signed.
    let ca = TestCa::new();
    let client_ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .require_client_certificates(client_ca.root_pem())
        .spawn()
        .await;
    let proxy = ConnectProxy::spawn().await;
    let client = proxied_client(&ca, TOTAL, &proxy.url());
    let leaf = client_ca.leaf(&["herald-client.example"]);
    let certificate =
        ClientCertificate::new(leaf.certificate_pem().to_owned(), leaf.key_pem().to_owned());
    let url = receiver.url_for_host("localhost", "/ok");

    // Act
    let without = client.send(&url, &[], body()).await;
    let with = client
        .send_with(&url, &[], body(), Some(&certificate))
        .await;

    // Assert
    assert_eq!(without.class, OutcomeClass::Failure);
    assert_eq!(without.response_status, None, "{without:?}");
    assert_eq!(with.class, OutcomeClass::Success, "{:?}", with.error);
    assert_eq!(receiver.received().len(), 1);
    proxy.assert_only_asked_for(receiver.address);
}

#[tokio::test]
async fn a_refused_connect_is_a_failed_attempt_that_says_so() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::builder()
        .refuse(StatusCode::FORBIDDEN)
        .spawn()
        .await;

    let outcome = proxied_client(&ca, TOTAL, &proxy.url())
        .send(&receiver.url("/ok"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("proxy: CONNECT refused with 403")
    );
    assert_eq!(outcome.response_status, None);
    assert_eq!(outcome.class, OutcomeClass::Failure);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn proxy_credentials_are_sent_as_basic_authorization_and_never_shown() {
    // Arrange
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let proxy = ConnectProxy::builder()
        .require_credentials("herald", "p@ss")
        .spawn()
        .await;
    let with_credentials = format!("http://herald:p%40ss@{}", proxy.address);
    let client = proxied_client(&ca, TOTAL, &with_credentials);
    let anonymous = proxied_client(&ca, TOTAL, &proxy.url());

    // Act
    let admitted = client.send(&receiver.url("/ok"), &[], body()).await;
    let refused = anonymous.send(&receiver.url("/ok"), &[], body()).await;

    // Assert
    assert_eq!(
        admitted.class,
        OutcomeClass::Success,
        "{:?}",
        admitted.error
    );
    assert_eq!(
        refused.error.as_deref(),
        Some("proxy: CONNECT refused with 407")
    );
    let connects = proxy.connects();
    // "herald:p@ss" in base64.
    assert_eq!(
        connects[0].proxy_authorization.as_deref(),
        Some("Basic aGVyYWxkOnBAc3M=")
    );
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("p@ss") && !shown.contains("p%40ss"),
        "{shown}"
    );
    assert!(!shown.contains("aGVyYWxkOnBAc3M="), "{shown}");
}

#[tokio::test]
async fn an_unreachable_proxy_fails_the_attempt_without_going_direct() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("local address");
    drop(closed);

    let outcome = impatient_client(&ca, &format!("http://{address}"))
        .send(&receiver.url("/ok"), &[], body())
        .await;

    assert_eq!(outcome.error.as_deref(), Some("proxy: connect refused"));
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_silent_proxy_is_a_connect_timeout() {
    // Arrange: a proxy that accepts connections and never answers the CONNECT.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = silent.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();

    // Act
    let outcome = impatient_client(&ca, &format!("http://{address}"))
        .send(&receiver.url("/ok"), &[], body())
        .await;

    // Assert
    assert_eq!(
        outcome.error.as_deref(),
        Some("connect timeout after 500ms")
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_plain_http_endpoint_is_reached_through_the_tunnel() {
    // Arrange: http endpoints exist only in test configurations; an axum server stands in.
    let ca = TestCa::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    let app = axum::Router::new().route("/ok", axum::routing::post(|| async { "plain" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let proxy = ConnectProxy::spawn().await;

    // Act
    let outcome = proxied_client(&ca, TOTAL, &proxy.url())
        .send(
            &format!("http://localhost:{}/ok", address.port()),
            &[],
            body(),
        )
        .await;

    // Assert
    assert_eq!(outcome.class, OutcomeClass::Success, "{:?}", outcome.error);
    assert_eq!(outcome.response_body_excerpt.as_deref(), Some("plain"));
    assert_eq!(proxy.targets(), [address.to_string()]);
}
