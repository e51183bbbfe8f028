//! [`forward`]: one proxied exchange, header pass and upgrades included.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use msp_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::client::{self, ProxyClient};
use super::{ForwardContext, ProxyBody, ProxyError, headers};

/// Sends `req` to `upstream` (an absolute `http://host:port/path?query`
/// URI, the path already rewritten by the route) through `client`, and
/// prepares the answer for the client.
///
/// In order: [`prepare_request`](headers::prepare_request) (hop-by-hop
/// fields out, `Via`/`X-Forwarded-*`/`Forwarded` in, `Host` per the
/// context's policy, `Expect` dropped), the pooled call, then
/// [`prepare_response`](headers::prepare_response). A WebSocket-style
/// upgrade (`Connection: upgrade` + `Upgrade`) is forwarded as such, and on
/// a `101 Switching Protocols` both upgraded connections are joined with
/// `tokio::io::copy_bidirectional` in a spawned task.
///
/// Does not run [`validate_request`](super::validate_request) nor limit the
/// body: the caller does both first (before auth, so nothing reads the
/// body of a request that is refused), typically wrapping the body in a
/// [`LimitedBody`](super::LimitedBody).
///
/// The returned future is `'static` (it holds clones of the client and the
/// context), so it can be returned from a `Service::call`.
pub fn forward<B>(
    client: &ProxyClient,
    mut req: Request<B>,
    upstream: Uri,
    ctx: &ForwardContext,
) -> ForwardFuture
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let client_upgrade = headers::upgrade_protocol(&req)
        .filter(|_| !client.is_h2c())
        .map(|_| hyper::upgrade::on(&mut req));
    if let Err(error) = headers::prepare_request(&mut req, upstream, ctx) {
        return ForwardFuture {
            state: State::Failed { error: Some(error) },
        };
    }
    let fut = client.clone().call(req);
    ForwardFuture {
        state: State::Sending {
            fut,
            client_upgrade,
            ctx: ctx.clone(),
        },
    }
}

pin_project! {
    /// The future of [`forward`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ForwardFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<ProxyError> },
        Sending {
            #[pin]
            fut: client::ResponseFuture,
            client_upgrade: Option<OnUpgrade>,
            ctx: ForwardContext,
        },
    }
}

impl std::fmt::Debug for ForwardFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardFuture").finish_non_exhaustive()
    }
}

impl Future for ForwardFuture {
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().unwrap_or(ProxyError::InvalidUpstream {
                    reason: "future polled after completion",
                })))
            }
            StateProj::Sending {
                fut,
                client_upgrade,
                ctx,
            } => {
                let mut res = ready!(fut.poll(cx))?;
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_side) = client_upgrade.take() else {
                        return Poll::Ready(Err(ProxyError::Upstream {
                            source:
                                "101 Switching Protocols to a request that asked for no upgrade"
                                    .into(),
                        }));
                    };
                    let upstream_side = hyper::upgrade::on(&mut res);
                    tokio::spawn(tunnel(client_side, upstream_side));
                }
                headers::prepare_response(&mut res, ctx);
                Poll::Ready(Ok(res))
            }
        }
    }
}

/// Joins the client's and the upstream's upgraded connections until either
/// side closes.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_upstream, to_client)) => {
            tracing::debug!(to_upstream, to_client, "upgraded connection closed");
        }
        Err(error) => tracing::debug!(%error, "upgraded connection failed"),
    }
}
