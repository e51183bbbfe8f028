use super::{Timeout, TimeoutConfig};
use std::time::Duration;
use tower_layer::Layer;

/// Applies a deadline to every request; see the [module docs](super).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct TimeoutLayer {
    pub(super) timeout: Duration,
    pub(super) propagate: bool,
    pub(super) read_headers: bool,
}

impl TimeoutLayer {
    /// A deadline `timeout` after each call, propagated downstream, capped
    /// by deadlines the request carries.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer {
            timeout,
            propagate: true,
            read_headers: true,
        }
    }

    /// A layer from its config.
    pub fn from_config(config: &TimeoutConfig) -> Self {
        TimeoutLayer {
            timeout: config.timeout(),
            propagate: config.propagate(),
            read_headers: config.read_headers(),
        }
    }

    /// Whether to record the effective deadline in the request: a
    /// [`Deadline`](super::Deadline) extension and, for HTTP, the
    /// `x-msp-deadline-ms` header (and `grpc-timeout` for gRPC requests).
    pub fn propagate(mut self, on: bool) -> Self {
        self.propagate = on;
        self
    }

    /// Whether an incoming `x-msp-deadline-ms` / `grpc-timeout` header may
    /// shorten the deadline (it can never lengthen it).
    pub fn read_headers(mut self, on: bool) -> Self {
        self.read_headers = on;
        self
    }

    /// The configured timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            layer: *self,
        }
    }
}
