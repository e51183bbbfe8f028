//! Chaos: inject errors and latency, for tests and demos.
//!
//! [`ChaosLayer`] fails a fraction of calls with an error you choose (by
//! default [`error::InjectedFault`]) without calling the
//! inner service, and holds back a fraction of calls for a fixed or random
//! delay before the inner service runs. Rates and delays change at runtime
//! through a [`ChaosHandle`] shared by every service the layer made, which
//! can also switch injection off. Draws come from a seedable RNG shared by
//! those services, so a test with a seed sees the same faults every run.
//!
//! Injected faults count `msp_resilience_chaos_errors_total` and
//! `msp_resilience_chaos_delays_total`.
//!
//! # Example
//!
//! ```
//! use msp_resilience::chaos::{ChaosConfig, ChaosLayer};
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = ChaosLayer::new(ChaosConfig {
//!     error_rate: 0.25,
//!     seed: Some(42),
//!     ..ChaosConfig::default()
//! })?;
//! let chaos = layer.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
//!
//! let mut failures = 0;
//! for n in 0..1000 {
//!     if svc.clone().oneshot(n).await.is_err() {
//!         failures += 1;
//!     }
//! }
//! assert!((200..300).contains(&failures));
//! assert_eq!(chaos.injected_errors(), failures);
//!
//! chaos.disable();
//! assert_eq!(svc.oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod future;
mod state;

pub use self::error::InjectedFault;
pub use self::state::{ChaosConfig, ChaosHandle};

use self::future::ResponseFuture;
use self::state::ErrorFn;
use msp_core::BoxError;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Injects faults; see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ChaosLayer {
    handle: ChaosHandle,
}

impl ChaosLayer {
    /// A layer from its config; fails on rates outside `0.0..=1.0`.
    pub fn new(config: ChaosConfig) -> Result<Self, error::ChaosConfigError> {
        Ok(ChaosLayer {
            handle: ChaosHandle::new(&config, ChaosHandle::default_error())?,
        })
    }

    /// A layer from its config whose injected error is `make_error()`.
    pub fn with_error<F, E>(
        config: ChaosConfig,
        make_error: F,
    ) -> Result<Self, error::ChaosConfigError>
    where
        F: Fn() -> E + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let error: ErrorFn = Arc::new(move || make_error().into());
        Ok(ChaosLayer {
            handle: ChaosHandle::new(&config, error)?,
        })
    }

    /// The runtime switch shared by every service this layer makes.
    pub fn handle(&self) -> ChaosHandle {
        self.handle.clone()
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Chaos<S> {
        Chaos {
            inner,
            handle: self.handle.clone(),
        }
    }
}

/// Injects errors and latency into calls of the inner service; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct Chaos<S> {
    inner: S,
    handle: ChaosHandle,
}

impl<S> Chaos<S> {
    /// The runtime switch.
    pub fn handle(&self) -> &ChaosHandle {
        &self.handle
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

impl<S, Req> Service<Req> for Chaos<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(draw) = self.handle.draw() else {
            return ResponseFuture::pass(self.inner.call(req));
        };
        let sleep = draw.delay.map(tokio::time::sleep);
        if draw.fail {
            // The inner service is not called: its reserved readiness stays
            // for the next call.
            return ResponseFuture::error(sleep, (self.handle.state.error)());
        }
        let fut = self.inner.call(req);
        match sleep {
            Some(sleep) => ResponseFuture::delay(sleep, fut),
            None => ResponseFuture::pass(fut),
        }
    }
}
