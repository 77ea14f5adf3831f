//! The connector of the egress proxy route: turns an endpoint's URI into a connection to the
//! endpoint that runs through a CONNECT tunnel of the proxy.
//!
//! For each new connection it (1) resolves and checks the endpoint's host with the SSRF
//! policy ([`checked_addresses`]), (2) opens TCP to the proxy and asks it, with hyper's HTTP/1
//! client, to `CONNECT <checked ip>:<port>`, trying the checked addresses in order, and (3) for
//! `https` runs TLS with tokio-rustls inside the tunnel, verified for the endpoint's host name,
//! offering `h2` and `http/1.1`. The proxy never sees a name, so it resolves nothing and cannot
//! reach an address the policy refuses. The connect timeout bounds all three steps together.
//!
//! It must not speak HTTP to the endpoint: hyper-util's pooled client does, over what this
//! connector returns.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald_domain::AddressPolicy;
use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::upgrade::Upgraded;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::EgressProxy;
use crate::ssrf::{ResolveError, checked_addresses};

/// Why a tunnel to the endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum TunnelError {
    /// The endpoint's host did not resolve, or the policy refuses an address.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The URI has no host, or a scheme other than `http`/`https` (the URL check refuses both
    /// before any request; this is the connector's own guard).
    #[error("blocked: url has no host or an unsupported scheme")]
    Target,
    /// No TCP connection to the proxy.
    #[error("proxy: cannot connect")]
    ProxyConnect(#[source] io::Error),
    /// The CONNECT exchange with the proxy failed (closed early, not HTTP).
    #[error("proxy: CONNECT failed")]
    ProxyExchange(#[source] hyper::Error),
    /// The proxy answered the CONNECT with a status other than 2xx.
    #[error("proxy: CONNECT refused with {}", .0.as_u16())]
    Refused(StatusCode),
    /// The host name is not one TLS can verify.
    #[error("tls: invalid server name")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    /// The TLS handshake inside the tunnel failed.
    #[error("tls: handshake failed")]
    Tls(#[source] io::Error),
    /// The proxy, the CONNECT and the TLS handshake took longer than the connect timeout.
    #[error("connect timeout")]
    Timeout(Duration),
}

/// What every tunnel needs; shared by the clones of one connector.
pub(super) struct TunnelSettings {
    /// Where the proxy listens, and its credentials.
    pub(super) proxy: EgressProxy,
    /// Which addresses may be dialled.
    pub(super) policy: Arc<AddressPolicy>,
    /// The TLS client for `https` endpoints: the roots, versions and client certificate of
    /// this route.
    pub(super) tls: TlsConnector,
    /// The bound on proxy TCP, CONNECT and TLS together.
    pub(super) connect_timeout: Duration,
}

/// A `tower::Service<Uri>` that hyper-util's pooled client calls for each new connection.
#[derive(Clone)]
pub(super) struct TunnelConnector {
    settings: Arc<TunnelSettings>,
}

impl TunnelConnector {
    pub(super) fn new(settings: TunnelSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl tower::Service<Uri> for TunnelConnector {
    type Response = Tunnel;
    type Error = TunnelError;
    type Future = Pin<Box<dyn Future<Output = Result<Tunnel, TunnelError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TunnelError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            let limit = settings.connect_timeout;
            tokio::time::timeout(limit, open(&settings, &destination))
                .await
                .map_err(|_elapsed| TunnelError::Timeout(limit))?
        })
    }
}

/// Where a URI leads: its host as written (brackets stripped), its port and whether TLS runs.
struct Destination<'a> {
    host: &'a str,
    port: u16,
    tls: bool,
}

impl<'a> Destination<'a> {
    fn of(uri: &'a Uri) -> Result<Self, TunnelError> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(TunnelError::Target),
        };
        let host = uri.host().ok_or(TunnelError::Target)?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }
}

async fn open(settings: &TunnelSettings, uri: &Uri) -> Result<Tunnel, TunnelError> {
    let destination = Destination::of(uri)?;
    let addresses = checked_addresses(destination.host, &settings.policy).await?;
    let upgraded = connect_first(settings, &addresses, destination.port).await?;
    if !destination.tls {
        return Ok(Tunnel {
            stream: Stream::Plain(upgraded),
            negotiated_h2: false,
        });
    }
    let server_name =
        ServerName::try_from(destination.host.to_owned()).map_err(TunnelError::ServerName)?;
    let tls = settings
        .tls
        .connect(server_name, TokioIo::new(upgraded))
        .await
        .map_err(TunnelError::Tls)?;
    let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(Tunnel {
        stream: Stream::Tls(Box::new(TokioIo::new(tls))),
        negotiated_h2,
    })
}

/// A tunnel to the first of `addresses` (in resolver order, as the direct path tries them)
/// the proxy reaches; the last failure when none is reached.
///
/// Each address gets an even share of the connect timeout, as hyper's connector gives each
/// address on the direct path: a CONNECT the proxy never answers (an address it can route to
/// but not reach, such as IPv6 from an IPv4-only egress) leaves time for the next address
/// instead of failing the attempt.
async fn connect_first(
    settings: &TunnelSettings,
    addresses: &[IpAddr],
    port: u16,
) -> Result<Upgraded, TunnelError> {
    let limit = settings.connect_timeout;
    let share = limit / u32::try_from(addresses.len()).unwrap_or(u32::MAX).max(1);
    let mut failure = None;
    for address in addresses {
        let target = SocketAddr::new(*address, port);
        match tokio::time::timeout(share, connect_through_proxy(settings, target, share)).await {
            Ok(Ok(upgraded)) => return Ok(upgraded),
            Ok(Err(error)) => failure = Some(error),
            Err(_elapsed) => failure = Some(TunnelError::Timeout(limit)),
        }
    }
    Err(failure.unwrap_or(TunnelError::Target))
}

/// Opens TCP to the proxy ([`dial_proxy`], within `budget`) and asks it to `CONNECT target`;
/// the upgraded connection is the tunnel.
async fn connect_through_proxy(
    settings: &TunnelSettings,
    target: SocketAddr,
    budget: Duration,
) -> Result<Upgraded, TunnelError> {
    let proxy = &settings.proxy;
    let stream = dial_proxy(proxy, budget).await?;
    // As reqwest sets it on the direct path: requests are written whole, so waiting to
    // coalesce small writes only adds latency.
    stream
        .set_nodelay(true)
        .map_err(TunnelError::ProxyConnect)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the CONNECT to the egress proxy, inside DeliveryClient, for an address the SSRF policy checked"
    )]
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(TunnelError::ProxyExchange)?;
    // The connection task ends by handing its socket to the upgrade, or with the connection.
    tokio::spawn(connection.with_upgrades());
    // `SocketAddr` writes an IPv6 address in brackets, as the authority form wants.
    let authority = target.to_string();
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.method_mut() = Method::CONNECT;
    *request.uri_mut() =
        Uri::try_from(authority.as_str()).expect("an IP address and a port make a valid authority");
    let host = http::HeaderValue::try_from(authority.as_str())
        .expect("an IP address and a port make a valid header value");
    request.headers_mut().insert(HOST, host);
    if let Some(authorization) = proxy.authorization() {
        request
            .headers_mut()
            .insert(PROXY_AUTHORIZATION, authorization.clone());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(TunnelError::ProxyExchange)?;
    if !response.status().is_success() {
        return Err(TunnelError::Refused(response.status()));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(TunnelError::ProxyExchange)
}

/// TCP to the proxy: its name's addresses in resolver order. When the name has several (proxies
/// behind round-robin DNS), each gets an even share of `budget`, as each endpoint address does
/// on the direct route, so one dead proxy does not spend the whole connect timeout while
/// another would answer; a single address is bounded by the caller's timeout alone.
async fn dial_proxy(proxy: &EgressProxy, budget: Duration) -> Result<TcpStream, TunnelError> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((proxy.host(), proxy.port()))
        .await
        .map_err(TunnelError::ProxyConnect)?
        .collect();
    dial_any(&addresses, budget).await
}

/// The first of `addresses` that accepts a connection, each tried within its share of
/// `budget` when there are several; the last failure when none does.
async fn dial_any(addresses: &[SocketAddr], budget: Duration) -> Result<TcpStream, TunnelError> {
    let share = budget / u32::try_from(addresses.len()).unwrap_or(u32::MAX).max(1);
    let mut failure = io::Error::new(io::ErrorKind::NotFound, "the proxy's name has no address");
    for address in addresses {
        #[expect(
            clippy::disallowed_methods,
            reason = "the egress proxy the operator configured; the endpoint behind it was checked by the SSRF policy"
        )]
        let connecting = TcpStream::connect(address);
        let connected = if addresses.len() == 1 {
            connecting.await
        } else {
            tokio::time::timeout(share, connecting)
                .await
                .unwrap_or_else(|_elapsed| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connecting to the proxy timed out",
                    ))
                })
        };
        match connected {
            Ok(stream) => return Ok(stream),
            Err(error) => failure = error,
        }
    }
    Err(TunnelError::ProxyConnect(failure))
}

/// A connection to the endpoint through the proxy's tunnel.
#[derive(Debug)]
pub(super) struct Tunnel {
    stream: Stream,
    negotiated_h2: bool,
}

#[derive(Debug)]
enum Stream {
    /// `http` endpoints (test configurations only): the tunnel itself.
    Plain(Upgraded),
    /// `https` endpoints: TLS inside the tunnel (boxed: rustls's state is a kilobyte).
    Tls(Box<TokioIo<TlsStream<TokioIo<Upgraded>>>>),
}

impl Connection for Tunnel {
    fn connected(&self) -> Connected {
        // Not `proxy(true)`: inside a tunnel requests are written in origin form, as to the
        // endpoint itself.
        let connected = Connected::new();
        if self.negotiated_h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

// Both streams are `Unpin`, so each call pins the variant in place.
impl Read for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_read(context, buffer),
        }
    }
}

impl Write for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(context),
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_shutdown(context),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_write_vectored(context, buffers),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rustls::RootCertStore;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A proxy on loopback that leaves a CONNECT to `unreachable` unanswered (as a proxy does
    /// while its own connection attempt hangs) and opens every other tunnel at once. It dials
    /// nothing: the tunnels lead nowhere, which is enough to be opened.
    async fn proxy_hanging_for(unreachable: IpAddr) -> EgressProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = [0_u8; 4096];
                    let Ok(read) = stream.read(&mut head).await else {
                        return;
                    };
                    let request = String::from_utf8_lossy(&head[..read]).into_owned();
                    if !request.starts_with(&format!("CONNECT {unreachable}:")) {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                    }
                    // Holds the connection (and the tunnel) open.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        EgressProxy::parse(&format!("http://{address}")).expect("a valid proxy url")
    }

    fn settings(proxy: EgressProxy, connect_timeout: Duration) -> TunnelSettings {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
        TunnelSettings {
            proxy,
            policy: Arc::new(AddressPolicy::default()),
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
        }
    }

    #[tokio::test]
    async fn a_proxy_address_that_refuses_leaves_the_next_one_to_answer() {
        // Arrange: a port nothing listens on (bound, then closed), then a listening proxy.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let refused = closed.local_addr().expect("local address");
        drop(closed);
        let listening = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let answering = listening.local_addr().expect("local address");

        // Act
        let stream = dial_any(&[refused, answering], Duration::from_secs(2))
            .await
            .expect("the second address answers");

        // Assert: connected to the listening one; with only the refusing one, the refusal.
        assert_eq!(stream.peer_addr().expect("peer"), answering);
        let only_refused = dial_any(&[refused], Duration::from_secs(2)).await;
        assert!(
            matches!(&only_refused, Err(TunnelError::ProxyConnect(error)) if error.kind() == io::ErrorKind::ConnectionRefused),
            "{only_refused:?}"
        );
    }

    #[tokio::test]
    async fn an_address_the_proxy_cannot_reach_leaves_time_for_the_next() {
        // Arrange: a name's two addresses (documentation ranges, never dialled: the proxy is
        // fake), the proxy hanging on the first.
        let unreachable = IpAddr::from([192, 0, 2, 1]);
        let reachable = IpAddr::from([198, 51, 100, 1]);
        let settings = settings(proxy_hanging_for(unreachable).await, Duration::from_secs(2));
        let started = Instant::now();

        // Act: under the connect timeout, as the connector runs it.
        let opened = tokio::time::timeout(
            settings.connect_timeout,
            connect_first(&settings, &[unreachable, reachable], 443),
        )
        .await;

        // Assert: the second address got its tunnel within the connect timeout.
        match opened {
            Ok(Ok(_tunnel)) => {}
            Ok(Err(error)) => panic!("no tunnel: {error}"),
            Err(_elapsed) => panic!("the first address took the whole connect timeout"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
