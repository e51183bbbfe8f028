//! Deciding whether a call succeeded: the one [`Classify`] trait every msp
//! layer uses.
//!
//! A circuit breaker, a retry policy, outlier ejection and the RED metrics
//! layer must agree on what a failure is, or a breaker opens on errors the
//! metrics call successes. They all take a [`Classify`], which maps the
//! result of a call to an [`Outcome`]:
//!
//! - [`AnyError`]: every `Ok` is a success, every `Err` a failure (for
//!   non-HTTP services).
//! - [`HttpClassifier`]: errors (connect errors, timeouts…) and `5xx` are
//!   failures, everything else (including `4xx`: the server worked, the
//!   client asked for something wrong) is a success. The status sets are
//!   configurable.
//! - [`GrpcClassifier`]: reads `grpc-status` from the response headers
//!   (trailers-only responses) or, through [`ClassifyEos`], from the trailers.
//! - any `Fn(Result<&Res, &Err>) -> Outcome` closure.
//!
//! [`error_kind`] tells timeouts and connect errors apart from other errors
//! by walking an error's `source()` chain.
//!
//! # Example
//!
//! ```
//! use http::{Response, StatusCode};
//! use msp_core::classify::{Classify, HttpClassifier, Outcome};
//!
//! let classifier = HttpClassifier::new()
//!     .failure_status(StatusCode::TOO_MANY_REQUESTS)
//!     .ignore_status(StatusCode::NOT_IMPLEMENTED);
//!
//! let ok = Response::builder().status(200).body(()).unwrap();
//! let bad_request = Response::builder().status(400).body(()).unwrap();
//! let unavailable = Response::builder().status(503).body(()).unwrap();
//! let throttled = Response::builder().status(429).body(()).unwrap();
//! let not_impl = Response::builder().status(501).body(()).unwrap();
//! let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
//!
//! // The result of a call to an HTTP client: `Result<&Response<B>, &E>`.
//! let outcome = |r: Result<&Response<()>, &std::io::Error>| classifier.classify(r);
//! assert_eq!(outcome(Ok(&ok)), Outcome::Success);
//! assert_eq!(outcome(Ok(&bad_request)), Outcome::Success);
//! assert_eq!(outcome(Ok(&unavailable)), Outcome::Failure);
//! assert_eq!(outcome(Ok(&throttled)), Outcome::Failure);
//! assert_eq!(outcome(Ok(&not_impl)), Outcome::Ignored);
//! assert_eq!(outcome(Err(&refused)), Outcome::Failure);
//! ```

use http::{HeaderMap, Response, StatusCode};
use std::error::Error;
use std::fmt;

/// What a call's result counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The callee did its job.
    Success,
    /// The callee failed: counts against breakers and outlier detection and
    /// may be retried.
    Failure,
    /// Neither: not recorded by breakers or ejection (a cancelled call, a
    /// status the user chose to ignore).
    Ignored,
}

impl Outcome {
    /// `true` for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        self == Outcome::Success
    }

    /// `true` for [`Outcome::Failure`].
    pub fn is_failure(self) -> bool {
        self == Outcome::Failure
    }
}

/// Maps the result of a call to an [`Outcome`].
///
/// Implemented by [`AnyError`], [`HttpClassifier`], [`GrpcClassifier`] and by
/// every `Fn(Result<&Res, &Err>) -> Outcome`.
///
/// ```
/// use msp_core::classify::{Classify, Outcome};
///
/// // Treat the error "not found" as a success, any other error as a failure.
/// let c = |r: Result<&u32, &&str>| match r {
///     Ok(_) | Err(&"not found") => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(c.classify(Err(&"not found")), Outcome::Success);
/// assert_eq!(c.classify(Err(&"boom")), Outcome::Failure);
/// ```
pub trait Classify<Res, Err> {
    /// Classifies one result.
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome;
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        self(result)
    }
}

/// Classifies the end of a streamed response, from its trailers.
///
/// gRPC servers usually answer `200 OK` and put the real status in the
/// trailers; a middleware that wants the true outcome wraps the body and asks
/// this trait when the stream ends.
pub trait ClassifyEos {
    /// Classifies the end of stream. `trailers` is `None` when the body ended
    /// without trailers.
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Outcome;
}

/// Every `Ok` is a success, every `Err` a failure.
///
/// ```
/// use msp_core::classify::{AnyError, Classify, Outcome};
/// assert_eq!(AnyError.classify(Ok::<&(), &()>(&())), Outcome::Success);
/// assert_eq!(AnyError.classify(Err::<&(), &()>(&())), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyError;

impl<Res, Err> Classify<Res, Err> for AnyError {
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// What kind of error an error is, from [`error_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A deadline passed ([`Elapsed`](crate::Elapsed), tokio's `Elapsed`,
    /// `io::ErrorKind::TimedOut`).
    Timeout,
    /// The connection could not be made or was lost (refused, reset,
    /// aborted, unreachable).
    Connect,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short label, for metrics: `timeout`, `connect` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Other => "error",
        }
    }
}

/// Tells timeouts and connect errors apart from other errors, walking the
/// error's `source()` chain.
///
/// Only by type, never by an error's text:
///
/// - `std::io::Error` kinds: `TimedOut` is a timeout; refused, reset,
///   aborted, not connected, address not available, broken pipe and
///   unreachable host or network are connect errors. An error wrapped in an
///   `io::Error` is looked at too. hyper-util's client reports its connect
///   timeout and connect failures this way (an `io::Error` in the source
///   chain of its error), so they are recognised through it.
/// - [`Elapsed`](crate::Elapsed), the msp timeout marker (what
///   msp-resilience's `Timeout` returns), tokio's `Elapsed` and tower's
///   `timeout::error::Elapsed`.
///
/// Another crate's timeout type is recognised once that crate returns or
/// wraps one of these; errors whose only sign of a timeout is their message
/// are [`ErrorKind::Other`].
///
/// ```
/// use msp_core::classify::{error_kind, ErrorKind};
/// use std::io;
///
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// assert_eq!(error_kind(&refused), ErrorKind::Connect);
///
/// // Found behind a wrapper too.
/// let wrapped = io::Error::other(msp_core::Elapsed::new());
/// assert_eq!(error_kind(&wrapped), ErrorKind::Timeout);
///
/// // A message is not a type.
/// let text = io::Error::other("request timed out");
/// assert_eq!(error_kind(&text), ErrorKind::Other);
/// ```
pub fn error_kind(err: &(dyn Error + 'static)) -> ErrorKind {
    sources(err).find_map(kind_of).unwrap_or(ErrorKind::Other)
}

/// The kind of this one error, not looking at its sources.
fn kind_of(e: &(dyn Error + 'static)) -> Option<ErrorKind> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::TimedOut => Some(ErrorKind::Timeout),
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::AddrNotAvailable
            | K::BrokenPipe
            | K::HostUnreachable
            | K::NetworkUnreachable => Some(ErrorKind::Connect),
            _ => None,
        };
    }
    if e.is::<crate::Elapsed>()
        || e.is::<tokio::time::error::Elapsed>()
        || e.is::<tower::timeout::error::Elapsed>()
    {
        return Some(ErrorKind::Timeout);
    }
    None
}

/// An error and its sources, outermost first, looking inside `io::Error`s
/// (whose `source()` skips the error they wrap).
pub(crate) fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    // Bounded, in case of a cyclic chain.
    const MAX_DEPTH: usize = 64;
    std::iter::successors(Some(err), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        },
        None => e.source(),
    })
    .take(MAX_DEPTH)
}

/// A set of HTTP status codes (100–999), as a bitmap: membership is one load
/// and one mask.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet([u64; 16]);

impl StatusSet {
    /// The empty set.
    pub const fn empty() -> Self {
        StatusSet([0; 16])
    }

    /// All codes in `from..=to`.
    pub fn range(from: u16, to: u16) -> Self {
        let mut s = Self::empty();
        for code in from..=to.min(1023) {
            s.insert_code(code);
        }
        s
    }

    /// Adds a status.
    pub fn insert(&mut self, status: StatusCode) {
        self.insert_code(status.as_u16());
    }

    /// Removes a status.
    pub fn remove(&mut self, status: StatusCode) {
        let c = status.as_u16() as usize;
        self.0[c / 64] &= !(1 << (c % 64));
    }

    /// Whether the set holds `status`.
    pub fn contains(&self, status: StatusCode) -> bool {
        let c = status.as_u16() as usize;
        self.0[c / 64] & (1 << (c % 64)) != 0
    }

    fn insert_code(&mut self, code: u16) {
        let c = code as usize % 1024;
        self.0[c / 64] |= 1 << (c % 64);
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (100u16..1000).filter(|&c| {
            let c = c as usize;
            self.0[c / 64] & (1 << (c % 64)) != 0
        });
        f.debug_set().entries(codes).finish()
    }
}

/// The HTTP classifier: errors and `5xx` fail, everything else succeeds.
///
/// Any `Err` (connect error, timeout, broken body…) is a
/// [`Outcome::Failure`]. Responses are looked up first in the ignored set,
/// then in the failure set (default `500..=599`); anything else is a success,
/// `4xx` included. Build variants with the `#[must_use]` setters.
#[derive(Debug, Clone, Copy)]
pub struct HttpClassifier {
    failures: StatusSet,
    ignored: StatusSet,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// `5xx` are failures, nothing ignored.
    pub fn new() -> Self {
        HttpClassifier {
            failures: StatusSet::range(500, 599),
            ignored: StatusSet::empty(),
        }
    }

    /// Counts `status` as a failure (for example `429`).
    #[must_use]
    pub fn failure_status(mut self, status: StatusCode) -> Self {
        self.failures.insert(status);
        self.ignored.remove(status);
        self
    }

    /// Counts `status` as a success even if it is a `5xx`.
    #[must_use]
    pub fn success_status(mut self, status: StatusCode) -> Self {
        self.failures.remove(status);
        self.ignored.remove(status);
        self
    }

    /// Ignores `status`: neither success nor failure.
    #[must_use]
    pub fn ignore_status(mut self, status: StatusCode) -> Self {
        self.ignored.insert(status);
        self
    }

    /// Replaces the failure set.
    #[must_use]
    pub fn failures(mut self, set: StatusSet) -> Self {
        self.failures = set;
        self
    }

    /// Classifies a status code alone.
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        if self.ignored.contains(status) {
            Outcome::Ignored
        } else if self.failures.contains(status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) => self.classify_status(res.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

impl ClassifyEos for HttpClassifier {
    fn classify_eos(&self, _trailers: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

/// gRPC status codes, as defined by the gRPC protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code for a numeric value; values outside 0–16 are `Unknown`, as
    /// the gRPC spec says.
    pub fn from_i32(v: i32) -> GrpcCode {
        usize::try_from(v)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(GrpcCode::Unknown)
    }

    /// Parses a `grpc-status` header value; an unparsable value is `Unknown`.
    pub fn from_header(value: &http::HeaderValue) -> GrpcCode {
        value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map_or(GrpcCode::Unknown, GrpcCode::from_i32)
    }
}

/// The gRPC classifier: reads `grpc-status` from headers or trailers.
///
/// By default `Unknown`, `DeadlineExceeded`, `Internal`, `Unavailable` and
/// `DataLoss` are failures (the server or the network failed); the other
/// codes — `InvalidArgument`, `NotFound`, `PermissionDenied`… — say the
/// server worked, like an HTTP `4xx`, and are successes. `Cancelled` is
/// ignored (the caller gave up).
///
/// A response whose headers carry no `grpc-status` is classified by its HTTP
/// status (a non-`200` is an error of the transport: `5xx` fail), and its
/// final outcome comes from the trailers through [`ClassifyEos`]: a body that
/// ends without a `grpc-status` trailer is a failure.
///
/// ```
/// use http::{HeaderMap, Response};
/// use msp_core::classify::{Classify, ClassifyEos, GrpcClassifier, GrpcCode, Outcome};
///
/// let c = GrpcClassifier::new();
/// // Trailers-only response carrying the status in headers.
/// let res = Response::builder().header("grpc-status", "14").body(()).unwrap();
/// assert_eq!(c.classify(Ok::<_, &()>(&res)), Outcome::Failure);
///
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "5".parse().unwrap()); // NOT_FOUND
/// assert_eq!(c.classify_eos(Some(&trailers)), Outcome::Success);
/// assert_eq!(c.classify_eos(None), Outcome::Failure);
///
/// let strict = GrpcClassifier::new().failure_code(GrpcCode::NotFound);
/// assert_eq!(strict.classify_eos(Some(&trailers)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcClassifier {
    failures: u32,
    ignored: u32,
    http: HttpClassifier,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

const fn bit(code: GrpcCode) -> u32 {
    1 << (code as u32)
}

impl GrpcClassifier {
    /// The default classifier described above.
    pub fn new() -> Self {
        GrpcClassifier {
            failures: bit(GrpcCode::Unknown)
                | bit(GrpcCode::DeadlineExceeded)
                | bit(GrpcCode::Internal)
                | bit(GrpcCode::Unavailable)
                | bit(GrpcCode::DataLoss),
            ignored: bit(GrpcCode::Cancelled),
            http: HttpClassifier::new(),
        }
    }

    /// Counts `code` as a failure.
    #[must_use]
    pub fn failure_code(mut self, code: GrpcCode) -> Self {
        self.failures |= bit(code);
        self.ignored &= !bit(code);
        self
    }

    /// Counts `code` as a success.
    #[must_use]
    pub fn success_code(mut self, code: GrpcCode) -> Self {
        self.failures &= !bit(code);
        self.ignored &= !bit(code);
        self
    }

    /// Ignores `code`.
    #[must_use]
    pub fn ignore_code(mut self, code: GrpcCode) -> Self {
        self.ignored |= bit(code);
        self.failures &= !bit(code);
        self
    }

    /// Classifies one gRPC status code.
    pub fn classify_code(&self, code: GrpcCode) -> Outcome {
        if self.ignored & bit(code) != 0 {
            Outcome::Ignored
        } else if self.failures & bit(code) != 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// Classifies from a `grpc-status` in `headers`, if there is one.
    pub fn classify_headers(&self, headers: &HeaderMap) -> Option<Outcome> {
        headers
            .get("grpc-status")
            .map(|v| self.classify_code(GrpcCode::from_header(v)))
    }
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Err(_) => Outcome::Failure,
            Ok(res) => match self.classify_headers(res.headers()) {
                Some(outcome) => outcome,
                None => self.http.classify_status(res.status()),
            },
        }
    }
}

impl ClassifyEos for GrpcClassifier {
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Outcome {
        trailers
            .and_then(|t| self.classify_headers(t))
            .unwrap_or(Outcome::Failure)
    }
}
