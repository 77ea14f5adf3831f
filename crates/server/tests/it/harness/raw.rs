//! Raw HTTP/1.1 over a plain loopback socket, for what a well-behaved client never sends:
//! headers trickled a byte at a time, a `Content-Length` with no body behind it, heads that
//! hyper refuses, or nothing at all. Every read is bounded.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Reply;

/// One client connection speaking raw bytes.
#[derive(Debug)]
pub(crate) struct RawConnection {
    stream: TcpStream,
    /// Bytes read past the last response.
    pending: Vec<u8>,
}

/// Sends `request` on a new connection and reads one response within `bound`.
pub(crate) async fn raw_exchange(address: SocketAddr, request: &[u8], bound: Duration) -> Reply {
    let mut connection = RawConnection::open(address).await;
    connection.send(request).await;
    connection.read_response(bound).await
}

impl RawConnection {
    /// Connects to `address`.
    pub(crate) async fn open(address: SocketAddr) -> Self {
        #[expect(
            clippy::disallowed_methods,
            reason = "writes raw HTTP to the server under test on loopback, to send what no client would"
        )]
        let stream = TcpStream::connect(address)
            .await
            .expect("connecting to the test server");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes `bytes`, failing the test if the server has closed the connection.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .await
            .expect("writing to the test server");
    }

    /// Writes `bytes`; an error once the server has closed the connection.
    pub(crate) async fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response: its head, then as many body bytes as its `Content-Length` says
    /// (or up to the end of the stream without one). Fails the test if none comes within
    /// `bound`.
    pub(crate) async fn read_response(&mut self, bound: Duration) -> Reply {
        tokio::time::timeout(bound, self.read_response_unbounded())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no response within {bound:?}; received so far: {:?}",
                    String::from_utf8_lossy(&self.pending)
                )
            })
    }

    /// Waits until the server closes the connection (end of stream or reset) and returns how
    /// long that took; `None` if it is still open after `bound`. Fails the test if the server
    /// sends anything instead.
    pub(crate) async fn closed_within(&mut self, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buffer = [0_u8; 1024];
        match tokio::time::timeout(bound, self.stream.read(&mut buffer)).await {
            Err(_) => None,
            Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
            Ok(Ok(read)) => panic!(
                "expected the server to close the connection, it sent {:?}",
                String::from_utf8_lossy(&buffer[..read])
            ),
        }
    }

    async fn read_response_unbounded(&mut self) -> Reply {
        let head_end = loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                break end + 4;
            }
            if !self.read_more().await {
                panic!(
                    "the connection ended inside a response head: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            }
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut headers = HeaderMap::new();
        for line in lines.filter(|line| !line.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("malformed header line {line:?}"));
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
                HeaderValue::from_str(value.trim()).expect("a header value"),
            );
        }
        let length = headers
            .get("content-length")
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        let body = loop {
            let available = self.pending.len() - head_end;
            if length.is_some_and(|length| available >= length) {
                let end = head_end + length.unwrap_or_default();
                let body = self.pending[head_end..end].to_vec();
                self.pending.drain(..end);
                break body;
            }
            if !self.read_more().await {
                if length.is_some() {
                    panic!("the connection ended inside a response body");
                }
                let body = self.pending[head_end..].to_vec();
                self.pending.clear();
                break body;
            }
        };
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Reads what is there; `false` at the end of the stream (or a reset).
    async fn read_more(&mut self) -> bool {
        let mut buffer = [0_u8; 8192];
        match self.stream.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                self.pending.extend_from_slice(&buffer[..read]);
                true
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
