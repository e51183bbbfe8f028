//! Response futures of [`Fallback`](super::Fallback).

use super::service::{Failed, FromService, FromValue};
use super::trigger::When;
use msp_core::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::util::Oneshot;
use tower_service::Service;

pin_project! {
    /// The response future of a value fallback.
    #[must_use = "futures do nothing unless polled"]
    pub struct ValueFuture<Fut, F, W> {
        #[pin]
        fut: Fut,
        shared: Arc<(FromValue<F>, W)>,
    }
}

impl<Fut, F, W> fmt::Debug for ValueFuture<Fut, F, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueFuture")
    }
}

impl<Fut, F, W> ValueFuture<Fut, F, W> {
    pub(super) fn new(fut: Fut, shared: Arc<(FromValue<F>, W)>) -> Self {
        ValueFuture { fut, shared }
    }
}

impl<Fut, F, W, Res, E> Future for ValueFuture<Fut, F, W>
where
    Fut: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    F: Fn(Failed<Res>) -> Res,
    W: When<Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (handler, when) = &**this.shared;
        Poll::Ready(match ready!(this.fut.poll(cx)) {
            Ok(res) if when.on_response(&res) => {
                record();
                Ok((handler.0)(Failed::Response(res)))
            }
            Ok(res) => Ok(res),
            Err(e) => {
                let e = e.into();
                if when.on_error(&e) {
                    record();
                    Ok((handler.0)(Failed::Error(e)))
                } else {
                    Err(e)
                }
            }
        })
    }
}

fn record() {
    metrics::counter!("msp_resilience_fallbacks_total").increment(1);
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, F, Req>
    where
        F: Service<Req>,
    {
        Primary { #[pin] fut: Fut, req: Option<Req> },
        Fallback { #[pin] fut: Oneshot<F, Req> },
    }
}

pin_project! {
    /// The response future of a fallback service.
    #[must_use = "futures do nothing unless polled"]
    pub struct ServiceFuture<Fut, F, W, Req>
    where
        F: Service<Req>,
    {
        #[pin]
        state: State<Fut, F, Req>,
        shared: Arc<(FromService<F>, W)>,
    }
}

impl<Fut, F: Service<Req>, W, Req> fmt::Debug for ServiceFuture<Fut, F, W, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceFuture")
    }
}

impl<Fut, F: Service<Req>, W, Req> ServiceFuture<Fut, F, W, Req> {
    pub(super) fn new(fut: Fut, req: Req, shared: Arc<(FromService<F>, W)>) -> Self {
        ServiceFuture {
            state: State::Primary {
                fut,
                req: Some(req),
            },
            shared,
        }
    }
}

impl<Fut, F, W, Req, Res, E> Future for ServiceFuture<Fut, F, W, Req>
where
    Fut: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    F: Service<Req, Response = Res> + Clone,
    F::Error: Into<BoxError>,
    W: When<Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Primary { fut, req } => {
                    let (svc, when) = &**this.shared;
                    match ready!(fut.poll(cx)) {
                        Ok(res) if when.on_response(&res) => drop(res),
                        Ok(res) => return Poll::Ready(Ok(res)),
                        Err(e) => {
                            let e = e.into();
                            if !when.on_error(&e) {
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("fallback polled after completion".into()));
                    };
                    record();
                    let fut = Oneshot::new(svc.0.clone(), req);
                    this.state.set(State::Fallback { fut });
                }
                StateProj::Fallback { fut } => {
                    return fut.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}
