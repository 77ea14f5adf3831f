//! An egress proxy that misbehaves (docs/operations.md, "Egress through a proxy"): one that
//! answers the CONNECT with bytes that are not HTTP, with a head that never ends or is far too
//! large, or that says 200 and hangs up. Each attempt fails within the connect timeout with an
//! error that names what went wrong, nothing reaches the receiver, and nothing is retried
//! directly.

use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_delivery::OutcomeClass;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::receiver::{Receiver, TestCa, proxied_client_with_connect_timeout};

/// The connect timeout of these tests' client: short, so a proxy that hangs costs little.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How one fake proxy answers once it has read the CONNECT request's head.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Bytes that are no HTTP at all.
    Garbage,
    /// A status line, then one header byte every 50 ms, never an empty line.
    DrippingHead,
    /// A status line and 2 MiB of header lines, never an empty line.
    HugeHead,
    /// `200 Connection established`, then the connection is closed.
    AcceptThenClose,
    /// `200 Connection established`, then plain-text HTTP instead of TLS.
    AcceptThenPlainText,
}

/// Starts a one-behaviour fake proxy on loopback; it serves any number of connections.
async fn spawn_fake_proxy(misbehaviour: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream, misbehaviour));
        }
    });
    format!("http://{address}")
}

async fn misbehave(mut stream: TcpStream, misbehaviour: Misbehaviour) {
    // Read the CONNECT head (small: it fits one read on loopback).
    let mut head = [0_u8; 4096];
    if stream.read(&mut head).await.is_err() {
        return;
    }
    let _ = match misbehaviour {
        Misbehaviour::Garbage => stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await,
        Misbehaviour::DrippingHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await;
            loop {
                if stream.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Misbehaviour::HugeHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("X-Pad: {}\r\n", "a".repeat(1_000));
            for _ in 0..2_000 {
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            // Holds the connection open: the head never ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        Misbehaviour::AcceptThenClose => {
            stream
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
        }
        Misbehaviour::AcceptThenPlainText => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            let _ = stream.read(&mut head).await;
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await
        }
    };
}

#[tokio::test]
async fn a_misbehaving_proxy_fails_the_attempt_within_the_connect_timeout_and_says_so() {
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    // Where the proxy hangs up, whether the TLS handshake reads the end of the stream or a
    // reset is the TCP stack's race: either is a fair account.
    let cases: [(Misbehaviour, &[&str]); 5] = [
        (Misbehaviour::Garbage, &["proxy: CONNECT failed: "]),
        (Misbehaviour::DrippingHead, &["connect timeout after 500ms"]),
        (Misbehaviour::HugeHead, &["proxy: CONNECT failed: "]),
        (
            Misbehaviour::AcceptThenClose,
            &["connection closed early", "connection reset"],
        ),
        (
            Misbehaviour::AcceptThenPlainText,
            &["tls: ", "connection closed early", "connection reset"],
        ),
    ];
    for (misbehaviour, expected_errors) in cases {
        // Arrange
        let proxy_url = spawn_fake_proxy(misbehaviour).await;
        let client = proxied_client_with_connect_timeout(&ca, CONNECT_TIMEOUT, &proxy_url);
        let started = Instant::now();

        // Act
        let outcome = client
            .send(
                &receiver.url("/ok"),
                &[],
                Bytes::from_static(b"{\"id\":\"evt_test\"}"),
            )
            .await;

        // Assert: a failure before any answer, said in plain words, bounded by the connect
        // timeout (not the 15 s total), and the receiver never saw it.
        let elapsed = started.elapsed();
        assert_eq!(outcome.class, OutcomeClass::Failure, "{misbehaviour:?}");
        assert_eq!(outcome.response_status, None, "{misbehaviour:?}");
        let error = outcome.error.unwrap_or_default();
        assert!(
            expected_errors
                .iter()
                .any(|expected| error.starts_with(expected)),
            "{misbehaviour:?}: {error:?} does not start with any of {expected_errors:?}"
        );
        assert!(
            elapsed < CONNECT_TIMEOUT + Duration::from_secs(2),
            "{misbehaviour:?} took {elapsed:?}"
        );
    }
    assert!(receiver.received().is_empty());
}
