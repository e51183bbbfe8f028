//! [`PickEndpoint`]: sends each request to one endpoint of an upstream
//! service picked by its balancer, and reports how the call went.

use super::error::NoInstance;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use msp_core::classify::{Classify, HttpClassifier};
use msp_core::{BoxError, InstanceId};
use msp_discovery::EndpointSet;
use msp_discovery::balance::Call;
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// Which instance served a response: a response extension set by the
/// upstream stack, read by the access log and by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamInstance {
    /// The instance id in the registry.
    pub id: InstanceId,
    /// Its address.
    pub addr: SocketAddr,
}

/// Picks an endpoint of one upstream service for each request, rewrites
/// the request URI to `http://{instance}{path}`, calls the inner client
/// and records the outcome (latency for peak EWMA, failures for outlier
/// ejection) when the response head arrives.
///
/// The inner service is the gateway's one pooled client; every route to
/// the service shares its [`EndpointSet`].
#[derive(Debug, Clone)]
pub struct PickEndpoint<S> {
    inner: S,
    set: EndpointSet,
}

impl<S> PickEndpoint<S> {
    /// Balances over `set`, sending with `inner`.
    pub fn new(inner: S, set: EndpointSet) -> Self {
        PickEndpoint { inner, set }
    }

    /// The endpoint set.
    pub fn endpoints(&self) -> &EndpointSet {
        &self.set
    }

    /// The inner client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner client.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for PickEndpoint<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(ep) = self.set.pick(None) else {
            return ResponseFuture::failed(NoInstance {
                service: self.set.service().clone(),
            });
        };
        let addr = ep.addr();
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Authority::try_from(addr.to_string())
            .ok()
            .and_then(|authority| {
                Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(authority)
                    .path_and_query(path)
                    .build()
                    .ok()
            });
        let Some(uri) = uri else {
            return ResponseFuture::failed(NoInstance {
                service: self.set.service().clone(),
            });
        };
        *req.uri_mut() = uri;
        let instance = UpstreamInstance {
            id: ep.id().clone(),
            addr,
        };
        let call = ep.start();
        let fut = self.inner.call(req);
        ResponseFuture {
            state: State::Sending {
                fut,
                call: Some(call),
                set: self.set.clone(),
                instance: Some(instance),
            },
        }
    }
}

pin_project! {
    /// The response future of [`PickEndpoint`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Sending {
            #[pin]
            fut: F,
            call: Option<Call>,
            set: EndpointSet,
            instance: Option<UpstreamInstance>,
        },
        Failed { error: Option<NoInstance> },
    }
}

impl<F> ResponseFuture<F> {
    fn failed(error: NoInstance) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(match error.take() {
                Some(e) => e.into(),
                None => "PickEndpoint future polled after completion".into(),
            })),
            StateProj::Sending {
                fut,
                call,
                set,
                instance,
            } => {
                let result = ready!(fut.poll(cx));
                let outcome = HttpClassifier::new().classify(result.as_ref());
                if let Some(call) = call.take() {
                    set.record(call, outcome);
                }
                Poll::Ready(match result {
                    Ok(mut res) => {
                        if let Some(instance) = instance.take() {
                            res.extensions_mut().insert(instance);
                        }
                        Ok(res)
                    }
                    Err(e) => Err(e.into()),
                })
            }
        }
    }
}
