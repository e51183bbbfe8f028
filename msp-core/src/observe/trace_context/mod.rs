//! W3C Trace Context: the `traceparent` / `tracestate` headers.
//!
//! [`TraceContext`] parses and formats the two headers of the
//! [W3C Trace Context](https://www.w3.org/TR/trace-context/) recommendation.
//! Two layers move it across process boundaries:
//!
//! - [`TraceContextLayer`] (server side) extracts the caller's context from
//!   the request headers — a missing or malformed header starts a new trace,
//!   it is never an error — creates a child context for this hop, stores it
//!   in the request extensions, makes it the task's [`current`] context and
//!   runs the inner service inside a `tracing` span carrying `trace_id`,
//!   `span_id` and `parent_id`.
//! - [`PropagateTraceContextLayer`] (client side) injects `traceparent` and
//!   `tracestate` into outgoing requests, from the request's extension or the
//!   [`current`] context, with a fresh span id for every outgoing call.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use msp_core::observe::{PropagateTraceContextLayer, TraceContext, TraceContextLayer};
//! use std::convert::Infallible;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A downstream service that reports the trace id it was called with.
//! let downstream = ServiceBuilder::new()
//!     .layer(TraceContextLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ctx = req.extensions().get::<TraceContext>().cloned();
//!         Ok::<_, Infallible>(Response::new(ctx.map(|c| c.trace_id())))
//!     }));
//! // A client stack that propagates the current context.
//! let client = ServiceBuilder::new()
//!     .layer(PropagateTraceContextLayer::new())
//!     .service(downstream);
//!
//! let incoming: TraceContext =
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
//! let mut req = Request::new(());
//! req.extensions_mut().insert(incoming.clone());
//! let seen = client.oneshot(req).await?.into_body();
//! assert_eq!(seen, Some(incoming.trace_id()));
//! # Ok(())
//! # }
//! ```

mod client;
mod server;

pub use self::client::{PropagateTraceContext, PropagateTraceContextLayer};
pub use self::server::{ResponseFuture, TraceContextLayer, TraceContextService};

use http::{HeaderMap, HeaderValue};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace context of the task, if it runs inside [`scope`] — for example
/// inside a request handler behind [`TraceContextLayer`].
///
/// Task-locals do not cross `tokio::spawn`: pass the context into spawned
/// tasks explicitly (or put it in the outgoing request's extensions).
///
/// ```
/// use msp_core::observe::trace_context::{current, scope, TraceContext};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(current().is_none());
/// let ctx = TraceContext::new_root();
/// let seen = scope(ctx.clone(), async { current() }).await;
/// assert_eq!(seen, Some(ctx));
/// # }
/// ```
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(TraceContext::clone).ok()
}

/// Runs `fut` with `ctx` as the task's [`current`] trace context.
pub fn scope<F: Future>(
    ctx: TraceContext,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<TraceContext, F> {
    CURRENT.scope(ctx, fut)
}

pub(crate) fn sync_scope<R>(ctx: TraceContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

/// Why a `traceparent` header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not `version-traceid-parentid-flags` with the right field lengths.
    #[error("traceparent is not `vv-<32 hex>-<16 hex>-<2 hex>`")]
    Format,
    /// A field holds a character other than lowercase hex.
    #[error("traceparent holds a character that is not lowercase hex")]
    NotHex,
    /// Version `ff` is forbidden by the specification.
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    /// The trace id is all zeros.
    #[error("traceparent trace id is all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent parent id is all zeros")]
    ZeroParentId,
}

fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return Err(ParseError::Format);
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(ParseError::NotHex),
    };
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// A 16-byte trace id, never all zeros; displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// An 8-byte span id, never all zeros; displayed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return SpanId(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for all zeros.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `trace-flags` byte of a `traceparent`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The `sampled` flag: the caller may have recorded this trace.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// No flag set.
    pub const NONE: TraceFlags = TraceFlags(0);

    /// Flags from their byte.
    pub fn new(bits: u8) -> Self {
        TraceFlags(bits)
    }

    /// The raw byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// The vendor-specific `tracestate` list, carried through unchanged.
///
/// Parsing is lenient about whitespace and strict about structure: every
/// member must be `key=value` with a valid key and value, at most
/// [`TraceState::MAX_MEMBERS`] members; a malformed list is dropped as a
/// whole (the specification's rule). A list longer than
/// [`TraceState::MAX_LEN`] bytes is truncated by dropping members from the
/// end (the oldest ones), so a hostile header cannot grow without bound.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// The most members a list may have (the specification's limit).
    pub const MAX_MEMBERS: usize = 32;
    /// The most bytes carried; longer lists lose members from the end.
    pub const MAX_LEN: usize = 512;

    /// The empty list.
    pub fn empty() -> Self {
        TraceState(None)
    }

    /// Parses a `tracestate` value (several header lines joined with `,`);
    /// `None` when it is malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut members: Vec<&str> = Vec::new();
        for member in value.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue; // empty list members are allowed
            }
            let (key, val) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(val) {
                return None;
            }
            if members
                .iter()
                .any(|m| m.split_once('=').map(|(k, _)| k) == Some(key))
            {
                return None; // duplicate keys make the list invalid
            }
            members.push(member);
        }
        if members.len() > Self::MAX_MEMBERS {
            return None;
        }
        let mut len =
            members.iter().map(|m| m.len()).sum::<usize>() + members.len().saturating_sub(1);
        while len > Self::MAX_LEN {
            match members.pop() {
                Some(m) => len -= m.len() + usize::from(!members.is_empty()),
                None => break,
            }
        }
        if members.is_empty() {
            return Some(TraceState(None));
        }
        Some(TraceState(Some(members.join(",").into())))
    }

    /// The list as a header value (empty string for the empty list).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// Whether the list has no member.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.as_str())
    }
}

fn valid_key(key: &str) -> bool {
    let simple = |k: &str, first_digit_ok: bool| {
        let b = k.as_bytes();
        !b.is_empty()
            && b.len() <= 256
            && (b[0].is_ascii_lowercase() || (first_digit_ok && b[0].is_ascii_digit()))
            && b[1..].iter().all(|&c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => simple(key, false),
        Some((tenant, system)) => {
            tenant.len() <= 241
                && system.len() <= 14
                && simple(tenant, true)
                && simple(system, false)
        }
    }
}

fn valid_value(val: &str) -> bool {
    let b = val.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// A W3C trace context: trace id, span id, flags and `tracestate`.
///
/// `span_id` is the id of the span this context describes. A context parsed
/// from an incoming `traceparent` describes the *caller's* span (the header's
/// `parent-id` field); [`TraceContext::child`] makes the context of a new
/// span in the same trace, remembering the caller's span as
/// [`parent_id`](TraceContext::parent_id).
///
/// ```
/// use msp_core::observe::TraceContext;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let caller: TraceContext = header.parse()?;
/// assert_eq!(caller.to_string(), header);
/// assert!(caller.flags().is_sampled());
///
/// let mine = caller.child();
/// assert_eq!(mine.trace_id(), caller.trace_id());
/// assert_eq!(mine.parent_id(), Some(caller.span_id()));
/// assert_ne!(mine.span_id(), caller.span_id());
///
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"
///     .parse::<TraceContext>()
///     .is_err());
/// # Ok::<(), msp_core::observe::trace_context::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    flags: TraceFlags,
    state: TraceState,
}

impl TraceContext {
    /// A context from its parts, without parent.
    pub fn new(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> Self {
        TraceContext {
            trace_id,
            span_id,
            parent_id: None,
            flags,
            state: TraceState::empty(),
        }
    }

    /// The first span of a new trace: random ids, `sampled` set (msp leaves
    /// the sampling decision to the tracing backend).
    pub fn new_root() -> Self {
        Self::new(TraceId::random(), SpanId::random(), TraceFlags::SAMPLED)
    }

    /// A new span in the same trace, child of this one: same trace id, flags
    /// and `tracestate`, a new random span id.
    #[must_use]
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(self.span_id),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Replaces the `tracestate`.
    #[must_use]
    pub fn with_state(mut self, state: TraceState) -> Self {
        self.state = state;
        self
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of the span this context describes.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The id of the parent span, if this context was made by
    /// [`child`](Self::child).
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The `tracestate` carried along.
    pub fn state(&self) -> &TraceState {
        &self.state
    }

    /// Parses a `traceparent` value.
    ///
    /// Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`; a higher
    /// version is accepted if it starts that way, ignoring what follows a
    /// further `-` (forward compatibility, as the specification asks).
    /// Hex must be lowercase; all-zero ids and version `ff` are rejected.
    pub fn parse_traceparent(value: &str) -> Result<Self, ParseError> {
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if value.len() < 55 || !value.is_char_boundary(55) {
            return Err(ParseError::Format);
        }
        let (head, rest) = value.split_at(55);
        let [version] = decode_hex::<1>(head.get(0..2).ok_or(ParseError::Format)?)?;
        if version == 0xff {
            return Err(ParseError::InvalidVersion);
        }
        if (version == 0 && !rest.is_empty())
            || (version != 0 && !rest.is_empty() && !rest.starts_with('-'))
        {
            return Err(ParseError::Format);
        }
        let b = head.as_bytes();
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(ParseError::Format);
        }
        let trace_id =
            TraceId::from_bytes(decode_hex::<16>(&head[3..35])?).ok_or(ParseError::ZeroTraceId)?;
        let span_id =
            SpanId::from_bytes(decode_hex::<8>(&head[36..52])?).ok_or(ParseError::ZeroParentId)?;
        let [flags] = decode_hex::<1>(&head[53..55])?;
        Ok(TraceContext::new(trace_id, span_id, TraceFlags(flags)))
    }

    /// Extracts the context from request headers: `traceparent` (exactly one
    /// valid header) plus `tracestate` (all header lines joined; dropped when
    /// malformed). `None` when there is no valid `traceparent`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut parents = headers.get_all(TRACEPARENT).iter();
        let parent = parents.next()?;
        if parents.next().is_some() {
            return None; // several traceparent headers: ambiguous, ignore
        }
        let ctx = Self::parse_traceparent(parent.to_str().ok()?).ok()?;
        let mut joined = String::new();
        for line in headers.get_all(TRACESTATE) {
            let Ok(line) = line.to_str() else {
                return Some(ctx);
            };
            if joined.len() + line.len() > 8 * TraceState::MAX_LEN {
                return Some(ctx); // refuse to even look at huge lists
            }
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(line);
        }
        let state = TraceState::parse(&joined).unwrap_or_default();
        Some(ctx.with_state(state))
    }

    /// Writes `traceparent` (and `tracestate` when non-empty) into
    /// `headers`, replacing what was there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.to_string()) {
            headers.insert(TRACEPARENT, v);
        }
        headers.remove(TRACESTATE);
        if !self.state.is_empty() {
            if let Ok(v) = HeaderValue::from_str(self.state.as_str()) {
                headers.insert(TRACESTATE, v);
            }
        }
    }
}

/// Formats the `traceparent` value: `00-<trace id>-<span id>-<flags>`.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags.0
        )
    }
}

impl FromStr for TraceContext {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_traceparent(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ];
        for b in bad {
            assert!(
                TraceContext::parse_traceparent(b).is_err(),
                "{b:?} accepted"
            );
        }
    }

    #[test]
    fn accepts_future_versions() {
        let ctx = TraceContext::parse_traceparent(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        )
        .expect("valid");
        assert_eq!(
            ctx.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn tracestate_rules() {
        assert_eq!(
            TraceState::parse("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")
                .expect("valid")
                .as_str(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        assert_eq!(TraceState::parse("a@b=1").expect("valid").as_str(), "a@b=1");
        assert!(TraceState::parse("no-equals").is_none());
        assert!(TraceState::parse("Upper=1").is_none());
        assert!(TraceState::parse("a=1,a=2").is_none());
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse(&many.join(",")).is_none());
        let long: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "x".repeat(100)))
            .collect();
        let s = TraceState::parse(&long.join(",")).expect("valid");
        assert!(s.as_str().len() <= TraceState::MAX_LEN);
        assert!(s.as_str().starts_with("k0="));
    }
}
