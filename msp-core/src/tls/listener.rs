//! The mTLS listener: accepts TCP connections, runs TLS handshakes
//! concurrently (each with a timeout) and hands out streams with the peer's
//! verified identity. Implements axum's `Listener`.

use super::credentials::WorkloadIdentity;
use super::error::{TlsError, svid_error_in};
use super::verify::{peer_id, server_config};
use crate::identity::{PeerIdentity, TrustDomain};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The counter of failed server-side handshakes, labelled `reason`
/// (`timeout`, `svid` when the client's certificate broke an X509-SVID rule
/// or came from a trust domain not accepted, `tls` for any other failure).
pub const HANDSHAKE_FAILURES: &str = "msp_tls_server_handshake_failures_total";

/// The counter of accepted connections, labelled `protocol` (`mtls`, or
/// `plaintext` in [`Mode::Permissive`]): when a migration is done,
/// `plaintext` stops growing.
pub const CONNECTIONS: &str = "msp_tls_server_connections_total";

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a listener also serves plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Every connection must be mTLS with a verified client certificate.
    #[default]
    Strict,
    /// A connection whose first byte starts a TLS handshake must be mTLS
    /// with a verified client certificate; any other connection is served
    /// as plaintext without an identity (for migrations, like linkerd's and
    /// Istio's PERMISSIVE).
    Permissive,
}

/// Where a connection came from: its address and, for mTLS, the client's
/// verified identity. The listener's `Addr` for axum.
///
/// With axum, [`with_peer_identity`](super::with_peer_identity) puts the
/// identity into every request's extensions; `ConnectInfo<TlsConnectInfo>`
/// works too (`into_make_service_with_connect_info::<TlsConnectInfo>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConnectInfo {
    remote: SocketAddr,
    peer: Option<PeerIdentity>,
}

impl TlsConnectInfo {
    /// Connection info for a peer at `remote`, verified as `peer` (`None`
    /// for plaintext).
    pub fn new(remote: SocketAddr, peer: Option<PeerIdentity>) -> Self {
        Self { remote, peer }
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The peer's verified identity; `None` for a plaintext connection.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection: mTLS, or plaintext in [`Mode::Permissive`].
pub struct MtlsStream {
    inner: Inner,
    peer: Option<PeerIdentity>,
}

impl MtlsStream {
    /// The client's verified identity (`None` for plaintext).
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// The ALPN protocol negotiated (`b"h2"`, `b"http/1.1"`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Plain(_) => None,
            Inner::Tls(tls) => tls.get_ref().1.alpn_protocol(),
        }
    }
}

impl fmt::Debug for MtlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsStream")
            .field("tls", &self.is_tls())
            .field("peer", &self.peer)
            .finish()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Builds an [`MtlsListener`]; from [`MtlsListener::builder`].
#[must_use]
#[derive(Debug)]
pub struct MtlsListenerBuilder {
    identity: WorkloadIdentity,
    mode: Mode,
    accepted: Vec<TrustDomain>,
    handshake_timeout: Duration,
    alpn: Vec<Vec<u8>>,
    max_pending: usize,
}

impl MtlsListenerBuilder {
    /// Strict or permissive (default [`Mode::Strict`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Accepts clients from this trust domain (default: only the
    /// identity's own). The trust bundle must hold its CA.
    pub fn accept_trust_domain(mut self, trust_domain: TrustDomain) -> Self {
        if !self.accepted.contains(&trust_domain) {
            self.accepted.push(trust_domain);
        }
        self
    }

    /// How long a client has to complete the handshake (default 10 s); a
    /// slower one is disconnected without affecting the others.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Offers only `http/1.1` through ALPN (default: `h2` and `http/1.1`;
    /// serving h2 needs axum's or hyper-util's `http2` feature).
    pub fn http1_only(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }

    /// At most this many handshakes in progress (default 1024); beyond it
    /// the listener stops accepting until one finishes.
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// Wraps a bound TCP listener.
    pub fn build(self, tcp: TcpListener) -> Result<MtlsListener, TlsError> {
        let mut accepted = self.accepted;
        if accepted.is_empty() {
            accepted.push(self.identity.spiffe_id().trust_domain());
        }
        let config = server_config(&self.identity, accepted, self.alpn)?;
        Ok(MtlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            mode: self.mode,
            handshake_timeout: self.handshake_timeout,
            max_pending: self.max_pending,
            pending: JoinSet::new(),
        })
    }
}

/// An mTLS listener (see the [module docs](super)): a TCP listener whose
/// connections are handshaken concurrently, each within a timeout; a
/// failed handshake is logged and counted ([`HANDSHAKE_FAILURES`]) and
/// never stops the accepting.
///
/// Use it with `axum::serve` (it implements axum's `Listener`), or call
/// [`accept`](Self::accept) and serve each stream with hyper.
pub struct MtlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    mode: Mode,
    handshake_timeout: Duration,
    max_pending: usize,
    pending: JoinSet<Option<(MtlsStream, TlsConnectInfo)>>,
}

impl MtlsListener {
    /// A strict listener on `tcp` accepting clients of the identity's own
    /// trust domain.
    pub fn new(tcp: TcpListener, identity: &WorkloadIdentity) -> Result<Self, TlsError> {
        Self::builder(identity).build(tcp)
    }

    /// Starts building a listener presenting `identity`.
    pub fn builder(identity: &WorkloadIdentity) -> MtlsListenerBuilder {
        MtlsListenerBuilder {
            identity: identity.clone(),
            mode: Mode::Strict,
            accepted: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            max_pending: 1024,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection whose handshake succeeded. Never fails: accept
    /// and handshake errors are logged and the listener goes on.
    pub async fn accept(&mut self) -> (MtlsStream, TlsConnectInfo) {
        loop {
            tokio::select! {
                biased;
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
                res = self.tcp.accept(), if self.pending.len() < self.max_pending => match res {
                    Ok((tcp, remote)) => {
                        self.pending.spawn(handshake(
                            tcp,
                            remote,
                            self.acceptor.clone(),
                            self.mode,
                            self.handshake_timeout,
                        ));
                    }
                    Err(e) => accept_error(e).await,
                },
            }
        }
    }
}

impl fmt::Debug for MtlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("mode", &self.mode)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("pending", &self.pending.len())
            .finish()
    }
}

async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    // Out of file descriptors and the like: back off instead of spinning.
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    mode: Mode,
    timeout: Duration,
) -> Option<(MtlsStream, TlsConnectInfo)> {
    let _ = tcp.set_nodelay(true);
    let attempt = async {
        if mode == Mode::Permissive {
            let mut first = [0u8; 1];
            let n = tcp.peek(&mut first).await?;
            if n == 0 || first[0] != TLS_HANDSHAKE {
                return Ok(MtlsStream {
                    inner: Inner::Plain(tcp),
                    peer: None,
                });
            }
        }
        let tls = acceptor.accept(tcp).await?;
        let peer = peer_id(tls.get_ref().1.peer_certificates()).map(PeerIdentity::new);
        Ok::<_, io::Error>(MtlsStream {
            inner: Inner::Tls(Box::new(tls)),
            peer,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => {
            let protocol = if stream.is_tls() { "mtls" } else { "plaintext" };
            metrics::counter!(CONNECTIONS, "protocol" => protocol).increment(1);
            let info = TlsConnectInfo::new(remote, stream.peer.clone());
            Some((stream, info))
        }
        Ok(Err(e)) => {
            let reason = if svid_error_in(&e).is_some() {
                "svid"
            } else {
                "tls"
            };
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            metrics::counter!(HANDSHAKE_FAILURES, "reason" => reason).increment(1);
            None
        }
        Err(_) => {
            tracing::debug!(%remote, ?timeout, "TLS handshake timed out");
            metrics::counter!(HANDSHAKE_FAILURES, "reason" => "timeout").increment(1);
            None
        }
    }
}

impl axum::serve::Listener for MtlsListener {
    type Io = MtlsStream;
    type Addr = TlsConnectInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        MtlsListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsConnectInfo::new(self.tcp.local_addr()?, None))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, MtlsListener>>
    for TlsConnectInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, MtlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
