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
//!   [`current`] context, with a fresh span id for every outgoing call (the
//!   id of a `trace_context_client` span around the call).
//! - [`spawn_in_context`] / [`InCurrentTrace`] carry the context into
//!   `tokio::spawn`ed tasks.
//!
//! [`TraceState`] documents the `tracestate` rules (the key grammar of the
//! editors' draft, duplicates, limits and trimming); the crate's
//! `tests/trace_context.rs` checks each rule, and the official W3C test
//! suite passes against `examples/w3c_test_service.rs` (see the README).
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
mod ids;
mod server;
mod spawn;
mod state;

pub use self::client::{
    PropagateTraceContext, PropagateTraceContextFuture, PropagateTraceContextLayer,
};
pub use self::ids::{SpanId, TraceFlags, TraceId};
pub use self::server::{ResponseFuture, TraceContextLayer, TraceContextService};
pub use self::spawn::{InCurrentTrace, InTrace, spawn_in_context};
pub use self::state::{InvalidMember, TraceState};

use self::ids::decode_hex;
use self::state::trim_ows;
use http::{HeaderMap, HeaderValue};
use std::fmt;
use std::str::FromStr;

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
/// Task-locals do not cross `tokio::spawn`: spawn with [`spawn_in_context`]
/// (or wrap the future with [`InCurrentTrace::in_current_trace`]) to carry
/// the context into the new task.
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

/// Records the ids of `ctx` in the `trace_id` / `span_id` / `parent_id`
/// fields of a span made by the two layers.
fn record_ids(span: &tracing::Span, ctx: &TraceContext) {
    span.record("trace_id", tracing::field::display(ctx.trace_id()));
    span.record("span_id", tracing::field::display(ctx.span_id()));
    if let Some(parent) = ctx.parent_id() {
        span.record("parent_id", tracing::field::display(parent));
    }
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
    /// the sampling decision to the tracing backend) and `random-trace-id`
    /// set (the whole trace id is random).
    pub fn new_root() -> Self {
        Self::new(
            TraceId::random(),
            SpanId::random(),
            TraceFlags::SAMPLED | TraceFlags::RANDOM,
        )
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

    /// The same context with other ids (those an OpenTelemetry span got).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn with_ids(mut self, trace_id: TraceId, span_id: SpanId) -> Self {
        self.trace_id = trace_id;
        self.span_id = span_id;
        self
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
        let value = trim_ows(value);
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
        Ok(TraceContext::new(trace_id, span_id, TraceFlags::new(flags)))
    }

    /// Extracts the context from request headers: `traceparent` (exactly one
    /// valid header) plus `tracestate` (all header lines joined in order,
    /// then parsed by [`TraceState::parse`]: discarded when malformed).
    /// `None` when there is no valid `traceparent` — the `tracestate` is then
    /// discarded too, as the specification requires.
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
        if !self.state.is_empty()
            && let Ok(v) = HeaderValue::from_str(self.state.as_str())
        {
            headers.insert(TRACESTATE, v);
        }
    }
}

/// Formats the `traceparent` value: `00-<trace id>-<span id>-<flags>`.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags.bits()
        )
    }
}

impl FromStr for TraceContext {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_traceparent(s)
    }
}
