//! Carrying the trace context into spawned tasks.

use super::{CURRENT, TraceContext, current};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;
use tracing::Span;

/// Spawns `fut` on the tokio runtime with the caller's trace context: the
/// task's [`current`] context and the current `tracing` span.
///
/// Neither crosses `tokio::spawn` by itself — a task-local belongs to its
/// task, and `tracing` enters spans per poll — so without this a background
/// job started by a handler would call other services outside the trace
/// (with [`PropagateTraceContextLayer`](super::PropagateTraceContextLayer),
/// as a new trace or none) and log outside the request's span.
///
/// Same as `tokio::spawn(fut.in_current_trace())`
/// ([`InCurrentTrace::in_current_trace`]).
///
/// ```
/// use msp_core::observe::trace_context::{current, scope, spawn_in_context, TraceContext};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = TraceContext::new_root();
/// let seen = scope(ctx.clone(), async {
///     // A plain `tokio::spawn` loses the context…
///     let lost = tokio::spawn(async { current() }).await.expect("task ran");
///     assert_eq!(lost, None);
///     // …`spawn_in_context` carries it.
///     spawn_in_context(async { current() }).await.expect("task ran")
/// })
/// .await;
/// assert_eq!(seen, Some(ctx));
/// # }
/// ```
pub fn spawn_in_context<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.in_current_trace())
}

/// Binds a future to the caller's trace context, wherever it is polled.
///
/// Implemented for every future.
pub trait InCurrentTrace: Future + Sized {
    /// Wraps `self` so that it runs with the trace context current *now*
    /// (the task's [`current`] context and the current `tracing` span),
    /// for example before `tokio::spawn`.
    fn in_current_trace(self) -> InTrace<Self> {
        InTrace::new(current(), Span::current(), self)
    }

    /// Wraps `self` so that it runs with `ctx` as the task's [`current`]
    /// context, inside the current `tracing` span.
    fn in_trace(self, ctx: TraceContext) -> InTrace<Self> {
        InTrace::new(Some(ctx), Span::current(), self)
    }
}

impl<F: Future> InCurrentTrace for F {}

pin_project! {
    /// A future bound to a trace context, made by
    /// [`InCurrentTrace::in_current_trace`] or [`InCurrentTrace::in_trace`].
    #[derive(Debug)]
    pub struct InTrace<F> {
        #[pin]
        inner: Inner<F>,
        span: Span,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<F> {
        Scoped { #[pin] fut: TaskLocalFuture<TraceContext, F> },
        Plain { #[pin] fut: F },
    }
}

impl<F: Future> InTrace<F> {
    fn new(ctx: Option<TraceContext>, span: Span, fut: F) -> Self {
        let inner = match ctx {
            Some(ctx) => Inner::Scoped {
                fut: CURRENT.scope(ctx, fut),
            },
            None => Inner::Plain { fut },
        };
        InTrace { inner, span }
    }
}

impl<F: Future> Future for InTrace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        match this.inner.project() {
            InnerProj::Scoped { fut } => fut.poll(cx),
            InnerProj::Plain { fut } => fut.poll(cx),
        }
    }
}
