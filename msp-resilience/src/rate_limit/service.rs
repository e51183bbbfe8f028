use super::Admitted;
use super::error::RateLimited;
use super::future::{HttpResponseFuture, ResponseFuture};
use super::key::Limit;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use msp_core::BoxError;
use msp_core::time::ceil_secs;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service whose requests are checked against a rate limit; over-limit
/// requests fail with a boxed [`RateLimited`] without reaching it.
#[derive(Debug, Clone)]
pub struct RateLimit<S, L> {
    inner: S,
    limit: L,
}

impl<S, L> RateLimit<S, L> {
    /// Limits `inner` with `limit`.
    pub fn new(inner: S, limit: L) -> Self {
        RateLimit { inner, limit }
    }

    /// The limit.
    pub fn limit(&self) -> &L {
        &self.limit
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

impl<S, L, Req> Service<Req> for RateLimit<S, L>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    L: Limit<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.limit.check(&req) {
            Ok(_) => ResponseFuture::called(self.inner.call(req)),
            Err(limited) => ResponseFuture::limited(limited),
        }
    }
}

/// An HTTP service behind a rate limit: over-limit requests get
/// `429 Too Many Requests` with `Retry-After` and the IETF draft
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers;
/// admitted requests' responses carry the `RateLimit-*` headers. The inner
/// error type is kept.
#[derive(Debug, Clone)]
pub struct HttpRateLimit<S, L> {
    inner: S,
    limit: L,
}

impl<S, L> HttpRateLimit<S, L> {
    /// Limits `inner` with `limit`.
    pub fn new(inner: S, limit: L) -> Self {
        HttpRateLimit { inner, limit }
    }

    /// The limit.
    pub fn limit(&self) -> &L {
        &self.limit
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

impl<S, L, ReqBody, ResBody> Service<Request<ReqBody>> for HttpRateLimit<S, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    L: Limit<Request<ReqBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.limit.check(&req) {
            Ok(admitted) => HttpResponseFuture::called(self.inner.call(req), admitted),
            Err(limited) => HttpResponseFuture::limited(too_many_requests(&limited)),
        }
    }
}

static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Header values below this come from a table built once, so adding the
/// `RateLimit-*` headers to a response allocates nothing (a
/// `HeaderValue::from(n)` allocates its bytes).
const SMALL: usize = 1024;

/// `"0" "1" … "1023"` back to back; the table below borrows from it.
static DIGITS: LazyLock<String> = LazyLock::new(|| {
    let mut s = String::new();
    for n in 0..SMALL {
        s.push_str(&n.to_string());
    }
    s
});

static SMALL_VALUES: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    let digits: &'static str = DIGITS.as_str();
    let mut values = Vec::with_capacity(SMALL);
    let mut start = 0;
    for n in 0..SMALL {
        let len = n.checked_ilog10().map_or(1, |l| l as usize + 1);
        values.push(HeaderValue::from_static(&digits[start..start + len]));
        start += len;
    }
    values
});

fn number(n: impl Into<u64>) -> HeaderValue {
    let n = n.into();
    match usize::try_from(n).ok().and_then(|i| SMALL_VALUES.get(i)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

pub(crate) fn admitted_headers(headers: &mut HeaderMap, a: &Admitted) {
    headers.insert(LIMIT.clone(), number(a.limit()));
    headers.insert(REMAINING.clone(), number(a.remaining()));
    headers.insert(RESET.clone(), number(ceil_secs(a.reset())));
}

pub(crate) fn too_many_requests<B: Default>(limited: &RateLimited) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = res.headers_mut();
    h.insert(
        http::header::RETRY_AFTER,
        number(ceil_secs(limited.retry_after()).max(1)),
    );
    h.insert(LIMIT.clone(), number(limited.limit()));
    h.insert(REMAINING.clone(), number(0u32));
    h.insert(RESET.clone(), number(ceil_secs(limited.reset())));
    res
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn header_numbers_from_the_table_and_beyond_it_spell_the_number() {
        for n in [
            0u64,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            1023,
            1024,
            65_536,
            u64::MAX,
        ] {
            assert_eq!(number(n).to_str().ok(), Some(n.to_string().as_str()));
        }
    }
}
