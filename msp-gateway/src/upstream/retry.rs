//! The gateway's retry policy for upstream calls: msp-resilience's
//! [`HttpPolicy`], plus `POST`/`PATCH` retried when the connection failed
//! (the request provably never left), and every retry counted per
//! upstream service.

use crate::proxy::ProxyError;
use http::{Request, Response};
use msp_core::BoxError;
use msp_resilience::retry::{
    Action, HttpPolicy, HttpReplay, Policy, ReplayBody, RetryConfig, RetryLayer, ShouldRetry,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Marks an attempt after the first (a request extension set when the
/// retry layer replays a request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retried;

/// Retries as [`HttpPolicy`] does (idempotent methods or an
/// `Idempotency-Key`, failures as msp-core classifies them, `Retry-After`,
/// bodies replayed up to a limit), and also retries any other method when
/// no connection to the instance could be made — Envoy's
/// `connect-failure` and linkerd's rule: such a request was never sent.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamRetry {
    /// The configured policy: decides which methods are retried on any
    /// failure.
    strict: HttpPolicy,
    /// The same policy keeping every request's replay, for connect
    /// failures.
    lenient: HttpPolicy,
}

/// What [`UpstreamRetry`] keeps of a request.
#[derive(Debug)]
pub(crate) struct Replay<B> {
    /// Only a connect failure may retry this request.
    connect_only: bool,
    inner: HttpReplay<B>,
}

impl UpstreamRetry {
    /// The policy `config` describes.
    fn from_config(config: &RetryConfig) -> Self {
        let mut strict = HttpPolicy::new()
            .retry_non_idempotent(config.retry_non_idempotent())
            .max_replay_body(config.max_replay_body())
            .max_retry_after(config.max_retry_after());
        for &status in config.retry_statuses() {
            strict = strict.retry_status(status);
        }
        for &status in config.never_retry_statuses() {
            strict = strict.never_retry_status(status);
        }
        let lenient = strict.clone().retry_non_idempotent(true);
        UpstreamRetry { strict, lenient }
    }
}

/// Whether `err` proves the request never reached the instance: the
/// gateway's client could not connect.
pub(crate) fn never_sent(err: &BoxError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
    while let Some(e) = cur {
        if e.downcast_ref::<ProxyError>()
            .is_some_and(ProxyError::is_connect)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

impl<B: http_body::Body> Policy<Request<B>> for UpstreamRetry {
    type Request = Request<ReplayBody<B>>;
    type Replay = Replay<B>;

    fn prepare(&self, req: Request<B>) -> (Self::Request, Option<Self::Replay>) {
        let connect_only = !self
            .strict
            .is_retryable_request(req.method(), req.headers());
        let (first, replay) = self.lenient.prepare(req);
        (
            first,
            replay.map(|inner| Replay {
                connect_only,
                inner,
            }),
        )
    }

    fn replay(&self, replay: &Self::Replay) -> Option<Self::Request> {
        let mut req = self.lenient.replay(&replay.inner)?;
        req.extensions_mut().insert(Retried);
        Some(req)
    }

    fn deadline(&self, req: &Self::Request) -> Option<Instant> {
        <HttpPolicy as Policy<Request<B>>>::deadline(&self.lenient, req)
    }
}

impl<B: http_body::Body, ResB> ShouldRetry<Request<B>, Response<ResB>> for UpstreamRetry {
    fn check(&self, replay: &Self::Replay, result: Result<&Response<ResB>, &BoxError>) -> Action {
        if replay.connect_only && !matches!(result, Err(e) if never_sent(e)) {
            return Action::Return;
        }
        self.lenient.check_result(result)
    }
}

/// A retry layer for `config` with the [`UpstreamRetry`] policy, spending
/// `budget` (a service's shared one) or, if `None`, a budget of its own
/// as `config` describes.
pub(crate) fn layer(
    config: &RetryConfig,
    budget: Option<&ServiceRetry>,
) -> RetryLayer<UpstreamRetry> {
    let own = RetryLayer::from_config(config);
    let budget = match budget {
        Some(shared) => shared.budget.clone(),
        None => own.retry_budget().cloned(),
    };
    let mut layer = RetryLayer::with_policy(UpstreamRetry::from_config(config))
        .max_attempts(config.max_attempts())
        .backoff(config.backoff().clone())
        .budget_exhausted_error(config.budget_exhausted_error());
    layer = match budget {
        Some(b) => layer.budget(b),
        None => layer.no_budget(),
    };
    if let Some(t) = config.per_try_timeout() {
        layer = layer.per_try_timeout(t);
    }
    layer
}

/// A service's `retry:`: its settings and the retry budget every route to
/// the service shares.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRetry {
    pub(crate) config: RetryConfig,
    budget: Option<msp_resilience::retry::RetryBudget>,
}

impl ServiceRetry {
    pub(crate) fn new(config: RetryConfig) -> Self {
        let budget = RetryLayer::from_config(&config).retry_budget().cloned();
        ServiceRetry { config, budget }
    }
}

/// Retries sent to one upstream service (shared by its routes' stacks).
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryCount(Arc<AtomicU64>);

impl RetryCount {
    /// Counts `req` if it is a retry.
    pub(crate) fn observe<B>(&self, req: Request<B>) -> Request<B> {
        if req.extensions().get::<Retried>().is_some() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        req
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
