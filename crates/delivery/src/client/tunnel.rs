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
async fn connect_first(
    settings: &TunnelSettings,
    addresses: &[IpAddr],
    port: u16,
) -> Result<Upgraded, TunnelError> {
    let mut failure = None;
    for address in addresses {
        match connect_through_proxy(settings, SocketAddr::new(*address, port)).await {
            Ok(upgraded) => return Ok(upgraded),
            Err(error) => failure = Some(error),
        }
    }
    Err(failure.unwrap_or(TunnelError::Target))
}

/// Opens TCP to the proxy and asks it to `CONNECT target`; the upgraded connection is the
/// tunnel.
async fn connect_through_proxy(
    settings: &TunnelSettings,
    target: SocketAddr,
) -> Result<Upgraded, TunnelError> {
    let proxy = &settings.proxy;
    #[expect(
        clippy::disallowed_methods,
        reason = "the egress proxy the operator configured; the endpoint behind it was checked by the SSRF policy"
    )]
    let stream = TcpStream::connect((proxy.host(), proxy.port()))
        .await
        .map_err(TunnelError::ProxyConnect)?;
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
