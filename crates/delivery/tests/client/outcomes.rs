//! What one attempt reports for each way a real HTTPS receiver can answer (or not).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_delivery::signer::{self, DEFAULT_TOLERANCE};
use herald_delivery::{
    ClientConfig, DeliveryClient, OutcomeClass, OutgoingDelivery, signed_headers, verify_v1,
};
use herald_domain::{EventId, OrgId, OrgSigningKey, Secret, SigningMaterial, Timestamp};
use tokio::io::AsyncReadExt;

use crate::receiver::{Receiver, TestCa, client, loopback_policy};

const BODY: &[u8] = br#"{"id":"evt_test","type":"wallet.balance_low"}"#;
const TOTAL: Duration = Duration::from_secs(15);

fn body() -> Bytes {
    Bytes::from_static(BODY)
}

#[tokio::test]
async fn success_records_status_excerpt_and_signed_headers() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let secret = Secret::generate();
    let now = Timestamp::now();
    let signing = SigningMaterial {
        endpoint_secret: secret.clone(),
        previous_secret: None,
        org_secret: None,
        org_signing_key: Arc::new(OrgSigningKey::generate(OrgId::new(), now)),
    };
    let headers = signed_headers(&OutgoingDelivery {
        event_id: EventId::new(),
        event_type: "wallet.balance_low",
        attempt: 1,
        timestamp: now,
        body: BODY,
        signing: &signing,
        sequence: None,
        ordering_key: None,
    });

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/ok"), &headers, body())
        .await;

    assert_eq!(outcome.class, OutcomeClass::Success);
    assert_eq!(outcome.response_status, Some(200));
    assert_eq!(outcome.response_body_excerpt.as_deref(), Some("thanks"));
    assert_eq!(outcome.error, None);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/ok");
    // ALPN offered both protocols and the receiver picked HTTP/2.
    assert_eq!(received[0].version, axum::http::Version::HTTP_2);
    assert_eq!(received[0].body.as_ref(), BODY);
    let signature = received[0].headers[signer::SIGNATURE]
        .to_str()
        .expect("ascii header");
    assert_eq!(
        verify_v1(
            &secret,
            signature,
            &received[0].body,
            now,
            DEFAULT_TOLERANCE
        ),
        Ok(())
    );
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert!(
        received[0].headers["user-agent"]
            .to_str()
            .expect("ascii header")
            .starts_with("Herald/")
    );
}

#[tokio::test]
async fn server_error_is_a_failure_with_its_status() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/fail"), &[], body())
        .await;

    assert_eq!(outcome.class, OutcomeClass::Failure);
    assert_eq!(outcome.response_status, Some(500));
    assert_eq!(outcome.error.as_deref(), Some("http 500"));
    assert_eq!(outcome.response_body_excerpt.as_deref(), Some("boom"));
}

#[tokio::test]
async fn gone_is_its_own_class() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/gone"), &[], body())
        .await;

    assert_eq!(outcome.class, OutcomeClass::Gone);
    assert_eq!(outcome.response_status, Some(410));
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/busy"), &[], body())
        .await;

    assert_eq!(outcome.class, OutcomeClass::Failure);
    assert_eq!(outcome.response_status, Some(429));
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(outcome.error.as_deref(), Some("http 429"));
}

#[tokio::test]
async fn silent_receiver_hits_the_total_timeout() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let started = Instant::now();

    let outcome = client(&ca, Duration::from_secs(1))
        .send(&receiver.url("/hang"), &[], body())
        .await;

    assert_eq!(outcome.error.as_deref(), Some("timeout after 1s"));
    assert_eq!(outcome.response_status, None);
    assert_eq!(outcome.class, OutcomeClass::Failure);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn trickling_body_cannot_outlast_the_total_timeout() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let started = Instant::now();

    let outcome = client(&ca, Duration::from_secs(2))
        .send(&receiver.url("/trickle"), &[], body())
        .await;

    assert_eq!(outcome.error.as_deref(), Some("timeout after 2s"));
    assert_eq!(outcome.class, OutcomeClass::Failure);
    // The status had arrived; the body was still dripping when the deadline fell.
    assert_eq!(outcome.response_status, Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn huge_body_is_cut_at_one_kibibyte_promptly() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let started = Instant::now();

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/huge"), &[], body())
        .await;

    assert_eq!(outcome.class, OutcomeClass::Success);
    let excerpt = outcome.response_body_excerpt.expect("excerpt");
    assert_eq!(excerpt.len(), 1024);
    assert!(excerpt.bytes().all(|byte| byte == b'a'));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let ca = TestCa::new();
    let target = Receiver::spawn(&ca).await;
    let redirecting = Receiver::builder(&ca)
        .redirect_to(target.url("/ok"))
        .spawn()
        .await;

    let outcome = client(&ca, TOTAL)
        .send(&redirecting.url("/redirect"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("redirect not followed (302)")
    );
    assert_eq!(outcome.response_status, Some(302));
    assert_eq!(outcome.class, OutcomeClass::Failure);
    assert_eq!(redirecting.received().len(), 1);
    assert!(target.received().is_empty());
}

#[tokio::test]
async fn redirect_between_allow_listed_names_is_not_followed() {
    let ca = TestCa::new();
    let target = Receiver::spawn(&ca).await;
    let redirecting = Receiver::builder(&ca)
        .redirect_to(target.url_for_host("localhost", "/ok"))
        .spawn()
        .await;

    let outcome = client(&ca, TOTAL)
        .send(
            &redirecting.url_for_host("localhost", "/redirect"),
            &[],
            body(),
        )
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("redirect not followed (302)")
    );
    assert!(target.received().is_empty());
}

#[tokio::test]
async fn certificate_for_another_name_is_a_tls_error() {
    let ca = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .leaf(ca.leaf(&["other.example"]))
        .spawn()
        .await;

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/ok"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("tls: certificate not valid for name 127.0.0.1")
    );
    assert_eq!(outcome.response_status, None);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn certificate_from_an_untrusted_issuer_is_a_tls_error() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let receiver = Receiver::builder(&ca)
        .leaf(stranger.loopback_leaf())
        .spawn()
        .await;

    let outcome = client(&ca, TOTAL)
        .send(&receiver.url("/ok"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("tls: certificate issuer unknown")
    );
}

#[tokio::test]
async fn reset_connection_is_reported_in_plain_words() {
    let ca = TestCa::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        // Wait for the client hello, then answer it with a TCP reset.
        let mut buffer = [0u8; 512];
        let _ = stream.read(&mut buffer).await;
        stream.set_zero_linger().expect("zero linger");
        drop(stream);
    });

    let outcome = client(&ca, TOTAL)
        .send(&format!("https://{address}/ok"), &[], body())
        .await;

    assert_eq!(outcome.error.as_deref(), Some("connection reset"));
    assert_eq!(outcome.response_status, None);
}

#[tokio::test]
async fn closed_port_is_connect_refused() {
    let ca = TestCa::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("local address");
    drop(listener);

    let outcome = client(&ca, TOTAL)
        .send(&format!("https://{address}/ok"), &[], body())
        .await;

    assert_eq!(outcome.error.as_deref(), Some("connect refused"));
}

#[tokio::test]
async fn full_accept_queue_is_a_connect_timeout() {
    let ca = TestCa::new();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("socket address"))
        .expect("bind");
    let address = socket.local_addr().expect("local address");
    // A backlog of zero holds one unaccepted connection; once it is taken, the kernel drops
    // further handshakes, which is what an unreachable receiver looks like from here.
    let _listener = socket.listen(0).expect("listen");
    #[expect(
        clippy::disallowed_methods,
        reason = "a bare connection to the test's own listener fills its backlog; it sends nothing"
    )]
    let _queued = tokio::net::TcpStream::connect(address)
        .await
        .expect("first connection fills the queue");
    let client = DeliveryClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(5),
        extra_root_certs_pem: Some(ca.root_pem()),
        policy: loopback_policy(),
        egress_proxy: None,
    })
    .expect("build client");
    let started = Instant::now();

    let outcome = client
        .send(&format!("https://{address}/ok"), &[], body())
        .await;

    assert_eq!(
        outcome.error.as_deref(),
        Some("connect timeout after 500ms")
    );
    assert_eq!(outcome.response_status, None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
