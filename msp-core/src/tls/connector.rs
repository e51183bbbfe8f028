//! The mTLS client connector for hyper-util: presents the workload's
//! certificate and accepts only the server identity expected for the
//! target.

use super::credentials::WorkloadIdentity;
use super::error::TlsError;
use super::svid::ExpectedIdentity;
use super::verify::{client_config, peer_id};
use crate::identity::PeerIdentity;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower_service::Service;

/// A hyper-util connector (a `tower::Service<Uri>`) that opens mTLS
/// connections: TCP to the URI's host and port, then a handshake presenting
/// the workload's current certificate and verifying that the server is the
/// [`ExpectedIdentity`] (chain against the trust bundle, X509-SVID rules,
/// then the SPIFFE ID; the URI's host name is not checked).
///
/// The expected identity is fixed per connector, and hyper-util's pool is
/// keyed by scheme and authority only: **use one client per expected
/// identity** so that a pooled connection is never reused for a target
/// expecting another identity (msp-discovery's `DiscoveryClient` does this
/// for you). Responses carry the server's verified [`PeerIdentity`] in
/// their extensions.
///
/// ```no_run
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use msp_core::identity::PeerIdentity;
/// use msp_core::tls::{IdentityFiles, MtlsConnector, WorkloadIdentity};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = WorkloadIdentity::from_files(IdentityFiles::in_dir("certs", "order-service"))?;
/// let connector = MtlsConnector::new(&identity, "spiffe://shop/payment-service".parse()?)?;
/// let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
/// let res = client.get("http://127.0.0.1:8443/payments".parse()?).await?;
/// assert_eq!(
///     res.extensions().get::<PeerIdentity>().map(|p| p.to_string()).as_deref(),
///     Some("spiffe://shop/payment-service")
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MtlsConnector {
    tcp: HttpConnector,
    tls: TlsConnector,
    expected: ExpectedIdentity,
    handshake_timeout: Duration,
    h2: bool,
}

/// Builds an [`MtlsConnector`]; from [`MtlsConnector::builder`].
#[must_use]
#[derive(Debug)]
pub struct MtlsConnectorBuilder {
    identity: WorkloadIdentity,
    expected: ExpectedIdentity,
    connect_timeout: Option<Duration>,
    handshake_timeout: Duration,
    h2: bool,
}

impl MtlsConnectorBuilder {
    /// TCP connect timeout (default 1 s; `None` waits for the OS).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Offers `h2` before `http/1.1` through ALPN (default: `http/1.1`
    /// only). The client must be built with hyper-util's `http2` feature.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.h2 = enabled;
        self
    }

    /// Builds the connector.
    pub fn build(self) -> Result<MtlsConnector, TlsError> {
        let mut alpn = Vec::new();
        if self.h2 {
            alpn.push(b"h2".to_vec());
        }
        alpn.push(b"http/1.1".to_vec());
        let config = client_config(&self.identity, self.expected.clone(), alpn)?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(self.connect_timeout);
        Ok(MtlsConnector {
            tcp,
            tls: TlsConnector::from(config),
            expected: self.expected,
            handshake_timeout: self.handshake_timeout,
            h2: self.h2,
        })
    }
}

impl MtlsConnector {
    /// A connector presenting `identity` and accepting only a server that
    /// is `expected`.
    pub fn new(identity: &WorkloadIdentity, expected: ExpectedIdentity) -> Result<Self, TlsError> {
        Self::builder(identity, expected).build()
    }

    /// Starts building a connector.
    pub fn builder(
        identity: &WorkloadIdentity,
        expected: ExpectedIdentity,
    ) -> MtlsConnectorBuilder {
        MtlsConnectorBuilder {
            identity: identity.clone(),
            expected,
            connect_timeout: Some(Duration::from_secs(1)),
            handshake_timeout: Duration::from_secs(10),
            h2: false,
        }
    }

    /// The server identity this connector accepts.
    pub fn expected(&self) -> &ExpectedIdentity {
        &self.expected
    }
}

impl fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsConnector")
            .field("expected", &self.expected)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

/// The name given to rustls for a target: its IP address, or its DNS name
/// (sent as SNI). It is not verified; the SPIFFE ID is.
fn server_name(uri: &http::Uri) -> ServerName<'static> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into()))
}

impl Service<http::Uri> for MtlsConnector {
    type Response = MtlsClientStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<MtlsClientStream, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // HttpConnector is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        Box::pin(async move {
            let target = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let stream = tcp
                .call(uri.clone())
                .await
                .map_err(|e| TlsError::Connect {
                    target: target.clone(),
                    source: io::Error::other(e),
                })?
                .into_inner();
            let handshake = tls.connect(server_name(&uri), stream);
            let tls = match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(source)) => return Err(TlsError::Handshake { target, source }),
                Err(_) => return Err(TlsError::HandshakeTimeout { target, timeout }),
            };
            let (_, conn) = tls.get_ref();
            let Some(id) = peer_id(conn.peer_certificates()) else {
                return Err(TlsError::Handshake {
                    target,
                    source: io::Error::new(io::ErrorKind::InvalidData, "server sent no SVID"),
                });
            };
            let h2 = conn.alpn_protocol() == Some(b"h2");
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .unwrap_or_default();
            Ok(MtlsClientStream {
                io: TokioIo::new(tls),
                peer: PeerIdentity::new(id),
                leaf,
                h2,
            })
        })
    }
}

/// A client-side mTLS connection from an [`MtlsConnector`], with the
/// server's verified identity.
pub struct MtlsClientStream {
    io: TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    peer: PeerIdentity,
    leaf: Vec<u8>,
    h2: bool,
}

impl MtlsClientStream {
    /// The server's verified identity.
    pub fn peer_identity(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The server's leaf certificate, DER (after a rotation, a new
    /// connection shows the new one).
    pub fn peer_certificate(&self) -> &[u8] {
        &self.leaf
    }

    /// Whether `h2` was negotiated.
    pub fn is_h2(&self) -> bool {
        self.h2
    }
}

impl fmt::Debug for MtlsClientStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsClientStream")
            .field("peer", &self.peer)
            .field("h2", &self.h2)
            .finish()
    }
}

impl Connection for MtlsClientStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.peer.clone());
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for MtlsClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for MtlsClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
