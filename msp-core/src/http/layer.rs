//! [`HttpErrorLayer`] and its service [`HttpError`].

use super::future::ResponseFuture;
use super::problem::{Problem, ProblemBody, ToProblem};
use super::registry;
use crate::BoxError;
use crate::classify::sources;
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

type Mapper = Arc<dyn Fn(&(dyn Error + 'static)) -> Option<Problem> + Send + Sync>;

#[derive(Clone)]
struct Mapping {
    mappers: Vec<Mapper>,
    unknown: StatusCode,
}

/// Turns the errors of the services below it into problem+json responses;
/// see the [module docs](super).
///
/// Cheap to clone (one `Arc`): the service and every response future hold a
/// clone, without allocating.
#[derive(Clone)]
#[must_use]
pub struct HttpErrorLayer {
    inner: Arc<Mapping>,
}

impl fmt::Debug for HttpErrorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpErrorLayer")
            .field("custom_mappers", &self.inner.mappers.len())
            .field("unknown", &self.inner.unknown)
            .finish()
    }
}

impl Default for HttpErrorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpErrorLayer {
    /// Answers registered errors, timeouts (`504`) and anything else
    /// (`500`), as [`problem_for`](super::problem_for) does.
    pub fn new() -> Self {
        HttpErrorLayer {
            inner: Arc::new(Mapping {
                mappers: Vec::new(),
                unknown: StatusCode::INTERNAL_SERVER_ERROR,
            }),
        }
    }

    fn mapping_mut(&mut self) -> &mut Mapping {
        // Copies the list of mappers (not the mappers) if the layer was
        // cloned; the builder methods run once, at startup.
        Arc::make_mut(&mut self.inner)
    }

    /// The status for errors nothing recognises (default `500`). The body
    /// still says nothing about the error.
    pub fn unknown_status(mut self, status: StatusCode) -> Self {
        self.mapping_mut().unknown = status;
        self
    }

    /// Answers errors of type `E` (found anywhere in the source chain) with
    /// `f`, for a user's own error types. Mappings of the layer win over
    /// registered types (so a user can override a crate's answer); among
    /// themselves they are tried in the order added.
    ///
    /// ```
    /// use http::StatusCode;
    /// use msp_core::http::{HttpErrorLayer, Problem};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("no such tenant")]
    /// struct UnknownTenant;
    ///
    /// let layer = HttpErrorLayer::new().map(|_: &UnknownTenant| {
    ///     Problem::new(StatusCode::NOT_FOUND, "unknown_tenant", "no such tenant")
    /// });
    /// let err: msp_core::BoxError = UnknownTenant.into();
    /// assert_eq!(layer.problem_for(&*err).status(), StatusCode::NOT_FOUND);
    /// ```
    pub fn map<E, F>(mut self, f: F) -> Self
    where
        E: Error + 'static,
        F: Fn(&E) -> Problem + Send + Sync + 'static,
    {
        self.mapping_mut()
            .mappers
            .push(Arc::new(move |e| e.downcast_ref::<E>().map(&f)));
        self
    }

    /// Answers errors of type `E` with their [`ToProblem`] impl, on this
    /// layer only (without [`register`](super::register)ing `E` for the
    /// whole process).
    pub fn problem<E: ToProblem>(self) -> Self {
        self.map(E::to_problem)
    }

    /// The problem this layer answers `err` with: the first error of the
    /// source chain the layer's own mappings know; else the first one of a
    /// registered type; else `504` if there is a timeout anywhere in the
    /// chain; else the unknown status (`500`), whose body reveals nothing.
    ///
    /// Does not log; the service logs unknown errors with `tracing`.
    pub fn problem_for(&self, err: &(dyn Error + 'static)) -> Problem {
        self.known(err)
            .unwrap_or_else(|| registry::internal(self.inner.unknown))
    }

    fn known(&self, err: &(dyn Error + 'static)) -> Option<Problem> {
        sources(err)
            .find_map(|e| self.inner.mappers.iter().find_map(|m| m(e)))
            .or_else(|| registry::known(err))
    }

    /// The response for `err`, logging an unknown error (at `warn`, with
    /// its full text: the log is where internals belong).
    pub(super) fn respond<B>(&self, err: BoxError) -> Response<ProblemBody<B>> {
        let err: &(dyn Error + 'static) = &*err;
        match self.known(err) {
            Some(problem) => problem.into_response(),
            None => {
                tracing::warn!(
                    error = %err,
                    source = ?err.source().map(ToString::to_string),
                    status = self.inner.unknown.as_u16(),
                    "unknown error answered with an internal-error problem"
                );
                registry::internal(self.inner.unknown).into_response()
            }
        }
    }
}

impl<S> Layer<S> for HttpErrorLayer {
    type Service = HttpError<S>;

    fn layer(&self, inner: S) -> HttpError<S> {
        HttpError {
            inner,
            layer: self.clone(),
            ready_error: None,
        }
    }
}

/// Answers the inner service's errors, from `call` and from `poll_ready`,
/// with problem+json responses; its error type is [`Infallible`], which is
/// what axum's `Router::layer` asks for. See the [module docs](super).
pub struct HttpError<S> {
    inner: S,
    layer: HttpErrorLayer,
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for HttpError<S> {
    fn clone(&self) -> Self {
        // A fresh clone is not ready: it must not inherit a readiness error.
        HttpError {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HttpError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpError")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .field("ready_error", &self.ready_error.is_some())
            .finish()
    }
}

impl<S> HttpError<S> {
    /// Wraps `inner` with the default answers ([`HttpErrorLayer::new`]).
    pub fn new(inner: S) -> Self {
        HttpErrorLayer::new().layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, B> Service<Request<ReqB>> for HttpError<S>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ProblemBody<B>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // A rejection in `poll_ready` (a load shedder, a full
                // bulkhead, an open breaker): answer the next call with it.
                self.ready_error = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(err) = self.ready_error.take() {
            return ResponseFuture::answered(self.layer.respond(err));
        }
        ResponseFuture::called(self.inner.call(req), self.layer.clone())
    }
}
