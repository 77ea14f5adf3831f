//! Connections cannot exhaust the server (issue 11, item 4): at the connection cap idle
//! sockets make room for real requests, a client that trickles its headers is cut off after the
//! header-read timeout, a kept-alive connection after the idle timeout (and not before), a body
//! announced over the cap is refused before it is sent, and shutdown still lets a request in
//! flight finish; requests whose announced body never arrives make room at the cap and are
//! dropped after the header-read timeout without a byte of it. The same under a lowered open-files limit, with the real binary:
//! crates/cli/tests/file_limit.rs.

use std::time::{Duration, Instant};

use herald_testkit::{Receiver, TestCa};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::harness::{
    ADMIN_TOKEN, Backend, RawConnection, TestApp, delivering, raw_exchange, string_at,
    wait_for_received, wait_within,
};

backend_tests!(
    hundreds_of_idle_connections_do_not_lock_out_healthz,
    a_client_that_trickles_its_headers_is_cut_off_after_the_header_timeout,
    a_kept_alive_connection_is_closed_after_the_idle_timeout_and_not_before,
    a_content_length_over_the_cap_is_refused_before_the_body_is_sent,
    the_batch_route_refuses_an_announced_body_over_its_own_cap,
    a_request_in_flight_at_shutdown_finishes_and_new_connections_are_refused,
    bodies_that_never_arrive_neither_lock_out_healthz_nor_outlive_the_header_timeout,
);

/// What "answers promptly" means in these tests: far below any timeout involved.
const PROMPTLY: Duration = Duration::from_secs(1);

async fn hundreds_of_idle_connections_do_not_lock_out_healthz(backend: Backend) {
    // Arrange: a cap of 50 and 300 connections that never send a byte (the header timeout,
    // 10 s by default, would close them only much later).
    let app = TestApp::builder()
        .backend(backend)
        .max_connections(50)
        .spawn()
        .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(RawConnection::open(app.address).await);
    }

    // Act
    let started = Instant::now();
    let reply = raw_exchange(
        app.address,
        b"GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n",
        PROMPTLY,
    )
    .await;
    let elapsed = started.elapsed();

    // Assert: answered at once; the idle connections made room, oldest first, and no more
    // than the cap of them are still open.
    reply.assert_status(StatusCode::OK);
    assert!(elapsed < PROMPTLY, "/healthz took {elapsed:?}");
    assert!(
        idle[0].closed_within(PROMPTLY).await.is_some(),
        "the oldest idle connection should have been closed to make room"
    );
    let mut still_open = 0;
    for connection in &mut idle {
        if connection
            .closed_within(Duration::from_millis(2))
            .await
            .is_none()
        {
            still_open += 1;
        }
    }
    assert!(
        still_open <= 50,
        "{still_open} idle connections are open under a cap of 50"
    );
}

async fn a_client_that_trickles_its_headers_is_cut_off_after_the_header_timeout(backend: Backend) {
    // Arrange
    let timeout = Duration::from_millis(500);
    let app = TestApp::builder()
        .backend(backend)
        .header_read_timeout(timeout)
        .spawn()
        .await;
    let mut connection = RawConnection::open(app.address).await;
    let started = Instant::now();

    // Act: half a head, then one more byte every 100 ms, never finishing it.
    connection
        .send(b"GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Slow: ")
        .await;
    let closed_after = loop {
        if connection.try_send(b"x").await.is_err() {
            break started.elapsed();
        }
        if connection
            .closed_within(Duration::from_millis(100))
            .await
            .is_some()
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a trickling client was still connected after 5 s"
        );
    };

    // Assert: closed at the timeout, counted from the connection, not from the last byte.
    assert!(
        closed_after >= timeout - Duration::from_millis(50),
        "closed after {closed_after:?}, before the {timeout:?} timeout"
    );
    assert!(
        closed_after < timeout + PROMPTLY,
        "closed only after {closed_after:?}"
    );
}

async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_and_not_before(backend: Backend) {
    // Arrange: an idle timeout three times the header timeout.
    let idle_timeout = Duration::from_millis(1_500);
    let app = TestApp::builder()
        .backend(backend)
        .header_read_timeout(Duration::from_millis(500))
        .idle_timeout(idle_timeout)
        .spawn()
        .await;
    let mut connection = RawConnection::open(app.address).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n";

    // Act: a request, a pause longer than the header timeout, a second request on the same
    // connection, then silence.
    connection.send(request).await;
    let first = connection.read_response(PROMPTLY).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    connection.send(request).await;
    let second = connection.read_response(PROMPTLY).await;
    let closed_after = connection.closed_within(Duration::from_secs(5)).await;

    // Assert
    first.assert_status(StatusCode::OK);
    second.assert_status(StatusCode::OK);
    let closed_after = closed_after.expect("an idle connection must be closed after its timeout");
    assert!(
        closed_after >= idle_timeout - Duration::from_millis(100),
        "closed after {closed_after:?}, before the {idle_timeout:?} idle timeout"
    );
    assert!(
        closed_after < idle_timeout + PROMPTLY,
        "closed only after {closed_after:?}"
    );
}

async fn a_content_length_over_the_cap_is_refused_before_the_body_is_sent(backend: Backend) {
    // Arrange: heads that announce 100 MB, behind which no byte of body ever comes.
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let create = announce(
        "/v1/webhooks",
        &format!("Authorization: Bearer {}", org.key),
        100_000_000,
    );
    let publish = announce(
        "/admin/v1/events",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        100_000_000,
    );
    let anonymous = announce("/v1/webhooks", "X-Nothing: 1", 100_000_000);

    // Act
    let created = raw_exchange(app.address, create.as_bytes(), PROMPTLY).await;
    let published = raw_exchange(app.address, publish.as_bytes(), PROMPTLY).await;
    let refused = raw_exchange(app.address, anonymous.as_bytes(), PROMPTLY).await;

    // Assert: 413 in the envelope; credentials are still checked first (README "Order of
    // checks").
    created.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    published.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    refused.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn the_batch_route_refuses_an_announced_body_over_its_own_cap(backend: Backend) {
    // Arrange: the batch route's cap is 16 MiB, above the 256 KiB of every other route.
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let over = announce(
        "/admin/v1/events/batch",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        17 * 1024 * 1024,
    );
    let events: Vec<Value> = (0..2)
        .map(|n| {
            serde_json::json!({
                "org_id": org.id.to_string(),
                "type": "wallet.balance_low",
                "data": {"n": n, "padding": "x".repeat(200 * 1024)},
            })
        })
        .collect();

    // Act
    let refused = raw_exchange(app.address, over.as_bytes(), PROMPTLY).await;
    let accepted = app
        .send(
            app.request(Method::POST, "/admin/v1/events/batch")
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({ "events": events })),
        )
        .await;

    // Assert: 17 MiB announced is refused at once; 400 KiB sent is accepted.
    refused.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    accepted.assert_status(StatusCode::ACCEPTED);
}

async fn a_request_in_flight_at_shutdown_finishes_and_new_connections_are_refused(
    backend: Backend,
) {
    // Arrange: a test send to a receiver that never answers is in flight for 2 s, longer than
    // the header timeout, which also bounds how long a closing connection may linger.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let mut app = delivering(backend, &ca)
        .request_timeout(Duration::from_secs(2))
        .header_read_timeout(Duration::from_millis(500))
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let endpoint = app
        .create_endpoint_at(&org.key, &receiver.url("/hang"), &["wallet.balance_low"])
        .await;
    let in_flight = app
        .request(
            Method::POST,
            &format!("/v1/webhooks/{}/test", string_at(&endpoint, "id")),
        )
        .bearer_auth(&org.key)
        .send();
    let in_flight = tokio::spawn(in_flight);
    wait_for_received(&receiver, 1).await;

    // Act
    app.begin_shutdown();
    let address = app.address;
    #[expect(
        clippy::disallowed_methods,
        reason = "probes whether the server under test still accepts connections on loopback"
    )]
    wait_within(Duration::from_secs(5), "the listener to close", || async {
        TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    let response = in_flight
        .await
        .expect("the request task")
        .expect("the request in flight must be answered");

    // Assert: the request ran to its end (the attempt timed out) and was answered.
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(body["outcome"], "dead", "{body}");
}

/// A request head for `POST path` announcing a JSON body of `length` bytes, with one more
/// header line (credentials, or anything), and no body.
async fn bodies_that_never_arrive_neither_lock_out_healthz_nor_outlive_the_header_timeout(
    backend: Backend,
) {
    // Arrange: a cap of 20 and twice as many authenticated writes that announce 1,000 bytes
    // of body and send one (a tenant's key is all it takes): 20 in flight, 20 queued behind
    // them in the listen backlog, ahead of any newcomer.
    let timeout = Duration::from_secs(2);
    let app = TestApp::builder()
        .backend(backend)
        .max_connections(20)
        .header_read_timeout(timeout)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    let head = announce(
        "/v1/webhooks",
        &format!("Authorization: Bearer {}", org.key),
        1_000,
    );
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut connection = RawConnection::open(app.address).await;
        connection.send(head.as_bytes()).await;
        connection.send(b"{").await;
        stalled.push(connection);
    }
    // Let every request reach its handler, which now waits for the body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();

    // Act
    let reply = raw_exchange(
        app.address,
        b"GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n",
        PROMPTLY,
    )
    .await;
    let elapsed = started.elapsed();

    // Assert: answered at once, a stalled connection having made room; and every stalled
    // one is gone within the header timeout of its last byte.
    reply.assert_status(StatusCode::OK);
    assert!(elapsed < PROMPTLY, "/healthz took {elapsed:?}");
    for connection in &mut stalled {
        assert!(
            connection.closed_within(timeout + PROMPTLY).await.is_some(),
            "a connection whose body never came was still open after {:?}",
            started.elapsed()
        );
    }
}

fn announce(path: &str, header: &str, length: u64) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: herald\r\n{header}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}
