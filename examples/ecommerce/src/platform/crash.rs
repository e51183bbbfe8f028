//! A crash switch for one service instance: what the demo uses to kill an
//! instance the way a process dies — its listener gone (new connections
//! refused) and its open connections cut mid-request — without the
//! graceful sequence (no deregistration, no drain).
//!
//! axum serves each connection on a task of its own, so aborting the
//! server task only drops the listener; every accepted stream is wrapped
//! in a [`CrashableIo`] that fails its reads and writes once the switch is
//! thrown, which ends the connection's task and closes the socket.

use axum::serve::{IncomingStream, Listener};
use msp_core::tls::{MtlsListener, PeerIdentityService};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Throws the crash: every [`CrashableIo`] of its listener fails from now on.
#[derive(Debug, Clone)]
pub(crate) struct CrashSwitch(watch::Sender<bool>);

impl CrashSwitch {
    pub(crate) fn new() -> Self {
        CrashSwitch(watch::Sender::new(false))
    }

    /// `listener`, whose streams this switch cuts.
    pub(crate) fn wrap<L>(&self, listener: L) -> Crashable<L> {
        Crashable {
            inner: listener,
            crashed: self.0.subscribe(),
        }
    }

    pub(crate) fn throw(&self) {
        self.0.send_replace(true);
    }
}

/// A listener whose accepted streams a [`CrashSwitch`] can cut.
#[derive(Debug)]
pub(crate) struct Crashable<L> {
    inner: L,
    crashed: watch::Receiver<bool>,
}

impl<L: Listener> Listener for Crashable<L> {
    type Io = CrashableIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let mut crashed = self.crashed.clone();
        let io = CrashableIo {
            inner: io,
            crashed: Box::pin(async move {
                // A dropped switch is no crash: wait forever then.
                if crashed.wait_for(|c| *c).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
            dead: false,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A stream that fails with `ConnectionReset` once its switch is thrown.
pub(crate) struct CrashableIo<I> {
    inner: I,
    crashed: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl<I> CrashableIo<I> {
    /// Whether the switch was thrown (registers the waker otherwise, so a
    /// connection idle in a read wakes up to die).
    fn is_dead(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.crashed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the instance crashed")
}

impl<I: AsyncRead + Unpin> AsyncRead for CrashableIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for CrashableIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// msp-core's `with_peer_identity` for a [`Crashable`] mTLS listener: each
/// connection's service inserts the peer's identity into its requests.
#[derive(Debug, Clone)]
pub(crate) struct MakePeerIdentity<S>(pub(crate) S);

impl<S: Clone> tower::Service<IncomingStream<'_, Crashable<MtlsListener>>> for MakePeerIdentity<S> {
    type Response = PeerIdentityService<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, Crashable<MtlsListener>>) -> Self::Future {
        std::future::ready(Ok(PeerIdentityService::new(
            self.0.clone(),
            stream.remote_addr().clone(),
        )))
    }
}
