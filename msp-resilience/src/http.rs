//! Typed errors to HTTP responses, so an axum app needs no
//! `HandleErrorLayer`.
//!
//! [`HttpErrorLayer`] sits outermost in an HTTP stack and turns the errors
//! of the layers below it into responses; its error type is
//! [`Infallible`], which is what axum's `Router::layer` and
//! `route_layer` ask for.
//!
//! | error (found anywhere in the `source()` chain) | status | `Retry-After` |
//! |---|---|---|
//! | [`Elapsed`] or any timeout ([`msp_core::classify::error_kind`]) | `504 Gateway Timeout` | |
//! | [`CircuitOpen`] | `503 Service Unavailable` | open time left, when known |
//! | [`RateLimited`] | `429 Too Many Requests` | when the next request is admitted |
//! | [`BulkheadFull`] | `503 Service Unavailable` | |
//! | [`BudgetExhausted`] | `503 Service Unavailable` | |
//! | anything else | `500` ([configurable](HttpErrorLayer::unknown_status)) | |
//!
//! The body is a small JSON object, `{"error":"timeout","message":"request
//! timed out"}`. The message of an unknown error is not sent (it may hold
//! internals); it is logged with `tracing` instead. Errors of your own map
//! with [`HttpErrorLayer::map`].
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use msp_resilience::http::HttpErrorLayer;
//! use msp_resilience::timeout::TimeoutLayer;
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HttpErrorLayer::new())
//!             .layer(TimeoutLayer::new(Duration::from_secs(2))),
//!     );
//! # drop(app);
//! ```
//!
//! [`CircuitOpen`]: crate::circuit_breaker::error::CircuitOpen
//! [`RateLimited`]: crate::rate_limit::error::RateLimited
//! [`BulkheadFull`]: crate::bulkhead::error::BulkheadFull
//! [`BudgetExhausted`]: crate::retry::BudgetExhausted
//! [`Elapsed`]: crate::timeout::Elapsed

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;
use crate::rate_limit::error::RateLimited;
use crate::retry::BudgetExhausted;
use crate::timeout::Elapsed;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use msp_core::BoxError;
use msp_core::classify::{ErrorKind, error_kind};
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The body of a response from [`HttpError`]: the inner body, or an error
/// body.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// What an error becomes: a status, an optional `Retry-After`, and a short
/// machine-readable code and message for the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status code.
    pub status: StatusCode,
    /// Sent as `Retry-After` in whole seconds (rounded up).
    pub retry_after: Option<Duration>,
    /// A short code, such as `"timeout"`.
    pub code: &'static str,
    /// A human-readable message.
    pub message: String,
}

impl ErrorResponse {
    /// An error response without `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            retry_after: None,
            code,
            message: message.into(),
        }
    }

    /// With a `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The HTTP response.
    pub fn into_response<B>(self) -> Response<ResponseBody<B>> {
        let body = format!(
            "{{\"error\":\"{}\",\"message\":\"{}\"}}",
            json_escape(self.code),
            json_escape(&self.message)
        );
        let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

type Mapper = Arc<dyn Fn(&(dyn StdError + 'static)) -> Option<ErrorResponse> + Send + Sync>;

/// Turns errors into responses; see the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct HttpErrorLayer {
    inner: Arc<Mapping>,
}

#[derive(Clone)]
struct Mapping {
    mappers: Vec<Mapper>,
    unknown: StatusCode,
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
    /// The mapping in the [module docs](self).
    pub fn new() -> Self {
        HttpErrorLayer {
            inner: Arc::new(Mapping {
                mappers: Vec::new(),
                unknown: StatusCode::INTERNAL_SERVER_ERROR,
            }),
        }
    }

    /// The status for errors nothing recognises (default `500`).
    pub fn unknown_status(mut self, status: StatusCode) -> Self {
        Arc::make_mut(&mut self.inner).unknown = status;
        self
    }

    /// Maps errors of type `E` (found anywhere in the source chain) with
    /// `f`; custom mappings are tried before the built-in ones, in the order
    /// added.
    ///
    /// ```
    /// use http::StatusCode;
    /// use msp_resilience::http::{ErrorResponse, HttpErrorLayer};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("no such tenant")]
    /// struct UnknownTenant;
    ///
    /// let layer = HttpErrorLayer::new().map(|e: &UnknownTenant| {
    ///     ErrorResponse::new(StatusCode::NOT_FOUND, "unknown_tenant", e.to_string())
    /// });
    /// # drop(layer);
    /// ```
    pub fn map<E, F>(mut self, f: F) -> Self
    where
        E: StdError + 'static,
        F: Fn(&E) -> ErrorResponse + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.inner)
            .mappers
            .push(Arc::new(move |e| e.downcast_ref::<E>().map(&f)));
        self
    }

    /// The response for `err`.
    pub fn response_for(&self, err: &BoxError) -> ErrorResponse {
        let root: &(dyn StdError + 'static) = &**err;
        let mut cur = Some(root);
        while let Some(e) = cur {
            for m in &self.inner.mappers {
                if let Some(res) = m(e) {
                    return res;
                }
            }
            if let Some(res) = builtin(e) {
                return res;
            }
            cur = e.source();
        }
        if error_kind(root) == ErrorKind::Timeout {
            return ErrorResponse::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "request timed out");
        }
        tracing::warn!(error = %err, "unhandled error turned into a response");
        let unknown = self.inner.unknown;
        let message = unknown.canonical_reason().unwrap_or("error");
        ErrorResponse::new(unknown, "internal", message)
    }
}

fn builtin(e: &(dyn StdError + 'static)) -> Option<ErrorResponse> {
    if e.is::<Elapsed>() {
        return Some(ErrorResponse::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            e.to_string(),
        ));
    }
    if let Some(open) = e.downcast_ref::<CircuitOpen>() {
        return Some(
            ErrorResponse::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit_open",
                e.to_string(),
            )
            .retry_after(open.retry_after()),
        );
    }
    if let Some(limited) = e.downcast_ref::<RateLimited>() {
        return Some(
            ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
                .retry_after(Some(limited.retry_after())),
        );
    }
    if e.is::<BulkheadFull>() {
        return Some(ErrorResponse::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bulkhead_full",
            e.to_string(),
        ));
    }
    if e.is::<BudgetExhausted>() {
        return Some(ErrorResponse::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry_budget_exhausted",
            e.to_string(),
        ));
    }
    None
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

/// Answers the inner service's errors with responses; see the
/// [module docs](self).
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
            .finish()
    }
}

impl<S> HttpError<S> {
    /// Wraps `inner` with the default mapping.
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
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = future::ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // A rejection in `poll_ready` (a load shedder, a full
                // bulkhead): answer the next call with it.
                self.ready_error = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(err) = self.ready_error.take() {
            let res = self.layer.response_for(&err).into_response();
            return future::ResponseFuture::error(res);
        }
        future::ResponseFuture::inner(self.inner.call(req), self.layer.clone())
    }
}

pub mod future {
    //! Response future of [`HttpError`](super::HttpError).

    use super::{HttpErrorLayer, ResponseBody};
    use http::Response;
    use http_body_util::Either;
    use msp_core::BoxError;
    use pin_project_lite::pin_project;
    use std::convert::Infallible;
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    pin_project! {
        #[project = KindProj]
        enum Kind<F, B> {
            Inner { #[pin] fut: F, layer: HttpErrorLayer },
            Error { res: Option<Response<ResponseBody<B>>> },
        }
    }

    pin_project! {
        /// The response future of [`HttpError`](super::HttpError).
        #[must_use = "futures do nothing unless polled"]
        pub struct ResponseFuture<F, B> {
            #[pin]
            kind: Kind<F, B>,
        }
    }

    impl<F, B> fmt::Debug for ResponseFuture<F, B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ResponseFuture")
        }
    }

    impl<F, B> ResponseFuture<F, B> {
        pub(super) fn inner(fut: F, layer: HttpErrorLayer) -> Self {
            ResponseFuture {
                kind: Kind::Inner { fut, layer },
            }
        }

        pub(super) fn error(res: Response<ResponseBody<B>>) -> Self {
            ResponseFuture {
                kind: Kind::Error { res: Some(res) },
            }
        }
    }

    impl<F, B, E> Future for ResponseFuture<F, B>
    where
        F: Future<Output = Result<Response<B>, E>>,
        E: Into<BoxError>,
    {
        type Output = Result<Response<ResponseBody<B>>, Infallible>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project().kind.project() {
                KindProj::Inner { fut, layer } => Poll::Ready(Ok(match ready!(fut.poll(cx)) {
                    Ok(res) => res.map(Either::Left),
                    Err(e) => layer.response_for(&e.into()).into_response(),
                })),
                KindProj::Error { res } => match res.take() {
                    Some(res) => Poll::Ready(Ok(res)),
                    None => Poll::Pending,
                },
            }
        }
    }
}
