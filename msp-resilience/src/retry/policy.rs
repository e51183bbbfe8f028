//! Retry policies: what may be retried and when.

use super::body::ReplayBody;
use super::retry_after::retry_after;
use crate::timeout::Deadline;
use http::header::RETRY_AFTER;
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use msp_core::BoxError;
use msp_core::classify::{Classify, HttpClassifier, StatusSet};
use msp_core::http::header::IDEMPOTENCY_KEY;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// What a [`Policy`] decides about one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return this result to the caller.
    Return,
    /// Retry after the backoff delay.
    Retry,
    /// Retry, waiting at least this long (a server's `Retry-After`), or the
    /// backoff delay if it is longer.
    RetryAfter(Duration),
}

/// Decides which requests may be retried and how to send them again.
/// [`Retry`](super::Retry) handles attempts, backoff, the budget and
/// timeouts; the policy only answers these questions, together with
/// [`ShouldRetry`] for the results.
///
/// Two policies come with the crate: [`HttpPolicy`] for HTTP services and
/// [`FnPolicy`] (a closure) for everything else.
pub trait Policy<Req> {
    /// The request type the inner service takes.
    type Request;
    /// What is kept of a request to send it again.
    type Replay;

    /// Turns the caller's request into the first attempt, plus what is
    /// needed to replay it (`None`: this request is never retried).
    fn prepare(&self, req: Req) -> (Self::Request, Option<Self::Replay>);

    /// A new copy of the request for the next attempt, or `None` if it can
    /// no longer be replayed.
    fn replay(&self, replay: &Self::Replay) -> Option<Self::Request>;

    /// The overall deadline of the request, if it carries one: no attempt
    /// outlives it and no retry starts after it.
    fn deadline(&self, req: &Self::Request) -> Option<Instant> {
        let _ = req;
        None
    }
}

/// The half of a retry policy that judges results (a separate trait so the
/// response type can follow from the inner service).
pub trait ShouldRetry<Req, Res>: Policy<Req> {
    /// What to do with the result of an attempt of the request kept in
    /// `replay`.
    fn check(&self, replay: &Self::Replay, result: Result<&Res, &BoxError>) -> Action;
}

/// A policy from a closure `Fn(&Req, Result<&Res, &BoxError>) -> bool`
/// (`true`: retry), for any service whose requests are `Clone`.
#[derive(Clone, Copy)]
pub struct FnPolicy<F> {
    f: F,
}

impl<F> FnPolicy<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        FnPolicy { f }
    }
}

impl<F> fmt::Debug for FnPolicy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnPolicy")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F, Req> Policy<Req> for FnPolicy<F>
where
    Req: Clone,
{
    type Request = Req;
    type Replay = Req;

    #[inline]
    fn prepare(&self, req: Req) -> (Req, Option<Req>) {
        (req.clone(), Some(req))
    }

    #[inline]
    fn replay(&self, replay: &Req) -> Option<Req> {
        Some(replay.clone())
    }
}

impl<F, Req, Res> ShouldRetry<Req, Res> for FnPolicy<F>
where
    F: Fn(&Req, Result<&Res, &BoxError>) -> bool,
    Req: Clone,
{
    #[inline]
    fn check(&self, replay: &Req, result: Result<&Res, &BoxError>) -> Action {
        if (self.f)(replay, result) {
            Action::Retry
        } else {
            Action::Return
        }
    }
}

/// The default body replay limit, 64 KiB (as Envoy).
pub const DEFAULT_MAX_REPLAY_BODY: usize = 64 * 1024;

/// The default longest `Retry-After` honoured, 30 s.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The retry policy for HTTP services.
///
/// - Only idempotent methods (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`,
///   `TRACE`) are retried, unless [`retry_non_idempotent`](Self::retry_non_idempotent)
///   is set or the request carries an `Idempotency-Key` header.
/// - Errors and responses the classifier calls failures (by default
///   [`HttpClassifier`]: `5xx`) are retried — except rejections by an
///   inner resilience layer ([`CircuitOpen`](crate::CircuitOpen),
///   [`RateLimited`](crate::RateLimited), [`BulkheadFull`](crate::BulkheadFull)),
///   which are returned at once, plus the statuses added with
///   [`retry_status`](Self::retry_status) (by default `429`), minus those in
///   [`never_retry_status`](Self::never_retry_status) (by default `501 Not
///   Implemented`: trying again will not implement it).
/// - A `Retry-After` header on a `429` or `503` (delta-seconds or HTTP-date)
///   makes the next attempt wait at least that long. If the server asks for
///   more than [`max_retry_after`](Self::max_retry_after), the response is
///   returned instead: the caller would rather fail now than wait that
///   long, and retrying earlier would ignore the server.
/// - Request bodies are replayed up to
///   [`max_replay_body`](Self::max_replay_body) bytes (64 KiB by default);
///   larger bodies are sent once and not retried.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpPolicy<C = HttpClassifier> {
    classifier: C,
    retry_non_idempotent: bool,
    max_replay_body: usize,
    max_retry_after: Duration,
    retry: StatusSet,
    never: StatusSet,
    bounded_bodies_only: bool,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpPolicy {
    /// The policy described above, with [`HttpClassifier`].
    pub fn new() -> Self {
        let mut retry = StatusSet::empty();
        retry.insert(StatusCode::TOO_MANY_REQUESTS);
        let mut never = StatusSet::empty();
        never.insert(StatusCode::NOT_IMPLEMENTED);
        HttpPolicy {
            classifier: HttpClassifier::new(),
            retry_non_idempotent: false,
            max_replay_body: DEFAULT_MAX_REPLAY_BODY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            retry,
            never,
            bounded_bodies_only: false,
        }
    }
}

impl<C> HttpPolicy<C> {
    /// Classifies results with `classifier` instead (any
    /// [`Classify`] over `Response<B>` and [`BoxError`]).
    pub fn classifier<C2>(self, classifier: C2) -> HttpPolicy<C2> {
        HttpPolicy {
            classifier,
            retry_non_idempotent: self.retry_non_idempotent,
            max_replay_body: self.max_replay_body,
            max_retry_after: self.max_retry_after,
            retry: self.retry,
            never: self.never,
            bounded_bodies_only: self.bounded_bodies_only,
        }
    }

    /// Only replays bodies whose size hint has a known upper bound within
    /// the limit (an empty `GET` body qualifies; a stream of unknown length
    /// does not). [`HedgeLayer::idempotent_http`](crate::hedge::HedgeLayer::idempotent_http) sets
    /// it: a hedge is sent while the first copy may still be streaming.
    pub fn bounded_bodies_only(mut self, on: bool) -> Self {
        self.bounded_bodies_only = on;
        self
    }

    /// Retries `POST`, `PATCH` and other non-idempotent methods too.
    pub fn retry_non_idempotent(mut self, on: bool) -> Self {
        self.retry_non_idempotent = on;
        self
    }

    /// The largest request body kept for replays, in bytes.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// The longest `Retry-After` the policy waits for.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Retries responses with `status` even if the classifier calls them
    /// successes.
    pub fn retry_status(mut self, status: StatusCode) -> Self {
        self.retry.insert(status);
        self.never.remove(status);
        self
    }

    /// Never retries responses with `status`.
    pub fn never_retry_status(mut self, status: StatusCode) -> Self {
        self.never.insert(status);
        self.retry.remove(status);
        self
    }

    /// Whether a request with this method and headers may be retried.
    pub fn is_retryable_request(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.retry_non_idempotent || is_idempotent(method) || headers.contains_key(IDEMPOTENCY_KEY)
    }

    /// What to do with a result of an attempt.
    pub fn check_result<B>(&self, result: Result<&Response<B>, &BoxError>) -> Action
    where
        C: Classify<Response<B>, BoxError>,
    {
        let res = match result {
            Err(e) => {
                // A rejection by an inner resilience layer (open circuit,
                // rate limit, full bulkhead) is local: retrying at once
                // only burns budget.
                return if !crate::fallback::is_rejection(e)
                    && self.classifier.classify(result).is_failure()
                {
                    Action::Retry
                } else {
                    Action::Return
                };
            }
            Ok(res) => res,
        };
        let status = res.status();
        if self.never.contains(status) {
            return Action::Return;
        }
        if !self.retry.contains(status) && !self.classifier.classify(result).is_failure() {
            return Action::Return;
        }
        if (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
            && let Some(wait) = res
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| retry_after(v, std::time::SystemTime::now()))
        {
            return if wait > self.max_retry_after {
                Action::Return
            } else {
                Action::RetryAfter(wait)
            };
        }
        Action::Retry
    }
}

/// `true` for the methods RFC 9110 defines as idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// What [`HttpPolicy`] keeps of a request to replay it.
#[derive(Debug)]
pub struct HttpReplay<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: ReplayBody<B>,
}

impl<B> HttpReplay<B> {
    /// Builds a replay of `req`'s head with `body`.
    pub(crate) fn new(parts: &http::request::Parts, body: ReplayBody<B>) -> Self {
        HttpReplay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
            body,
        }
    }

    /// A new request, or `None` if the body cannot be replayed.
    pub(crate) fn to_request(&self) -> Option<Request<ReplayBody<B>>> {
        let body = self.body.try_clone()?;
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        *req.extensions_mut() = self.extensions.clone();
        Some(req)
    }
}

/// Prepares an HTTP request for replay: `None` when the method or the body
/// size rule it out.
pub(crate) fn prepare_http<B>(
    req: Request<B>,
    replayable: bool,
    limit: usize,
) -> (Request<ReplayBody<B>>, Option<HttpReplay<B>>)
where
    B: http_body::Body,
{
    let (parts, body) = req.into_parts();
    if !replayable {
        return (Request::from_parts(parts, ReplayBody::once(body)), None);
    }
    let body = ReplayBody::new(body, limit);
    let replay = body.try_clone().map(|copy| HttpReplay::new(&parts, copy));
    (Request::from_parts(parts, body), replay)
}

impl<C, B> Policy<Request<B>> for HttpPolicy<C>
where
    B: http_body::Body,
{
    type Request = Request<ReplayBody<B>>;
    type Replay = HttpReplay<B>;

    fn prepare(&self, req: Request<B>) -> (Self::Request, Option<Self::Replay>) {
        let bounded = !self.bounded_bodies_only
            || req
                .body()
                .size_hint()
                .upper()
                .is_some_and(|n| n <= self.max_replay_body as u64);
        let replayable = bounded && self.is_retryable_request(req.method(), req.headers());
        prepare_http(req, replayable, self.max_replay_body)
    }

    fn replay(&self, replay: &HttpReplay<B>) -> Option<Self::Request> {
        replay.to_request()
    }

    fn deadline(&self, req: &Self::Request) -> Option<Instant> {
        req.extensions().get::<Deadline>().map(|d| d.0)
    }
}

impl<C, B, ResB> ShouldRetry<Request<B>, Response<ResB>> for HttpPolicy<C>
where
    C: Classify<Response<ResB>, BoxError>,
    B: http_body::Body,
{
    fn check(&self, _replay: &HttpReplay<B>, result: Result<&Response<ResB>, &BoxError>) -> Action {
        self.check_result(result)
    }
}
