use super::budget::RetryBudget;
use super::config::RetryConfig;
use super::policy::{FnPolicy, HttpPolicy};
use super::service::{Retry, Settings};
use http::StatusCode;
use msp_core::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Retries failed calls; see the [module docs](super).
///
/// Every service the layer makes shares one [`RetryBudget`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryLayer<P> {
    policy: P,
    settings: Arc<Settings>,
}

fn default_settings() -> Settings {
    Settings {
        max_attempts: 3,
        backoff: Backoff::default(),
        budget: Some(RetryBudget::default()),
        per_try_timeout: None,
        budget_error: false,
    }
}

impl<F> RetryLayer<FnPolicy<F>> {
    /// Retries when `f(&request, result)` returns `true`; requests must be
    /// `Clone`.
    ///
    /// Inside an axum handler, whose future must be `Send`, rustc can fail
    /// with "implementation of `From` / `FnOnce` is not general enough"
    /// (a known compiler limitation with higher-ranked lifetimes in
    /// generators) when the policy is a closure over `&BoxError` or the
    /// inner service is a closure returning exactly `BoxError`: pass a `fn`
    /// item as the policy and give the inner service a concrete error type.
    ///
    /// ```
    /// use msp_resilience::retry::RetryLayer;
    /// use tower::BoxError;
    ///
    /// let layer = RetryLayer::new(|_req: &String, res: Result<&u16, &BoxError>| {
    ///     res.is_err() || res.is_ok_and(|code| *code >= 500)
    /// });
    /// # drop(layer);
    /// ```
    pub fn new(f: F) -> Self {
        Self::with_policy(FnPolicy::new(f))
    }
}

impl RetryLayer<HttpPolicy> {
    /// Retries idempotent HTTP requests (and those with an
    /// `Idempotency-Key`) on errors, `5xx`, `429` and `408`, with
    /// [`HttpPolicy`].
    pub fn idempotent_http() -> Self {
        Self::with_policy(HttpPolicy::new())
    }

    /// An HTTP retry layer from its (validated) config.
    pub fn from_config(config: &RetryConfig) -> Self {
        let mut policy = HttpPolicy::new()
            .retry_non_idempotent(config.retry_non_idempotent())
            .max_replay_body(config.max_replay_body())
            .max_retry_after(config.max_retry_after());
        for &status in config.retry_statuses() {
            policy = policy.retry_status(status);
        }
        for &status in config.never_retry_statuses() {
            policy = policy.never_retry_status(status);
        }
        RetryLayer {
            policy,
            settings: Arc::new(Settings {
                max_attempts: config.max_attempts(),
                backoff: config.backoff().clone(),
                budget: config.budget().map(RetryBudget::build),
                per_try_timeout: config.per_try_timeout(),
                budget_error: config.budget_exhausted_error(),
            }),
        }
    }
}

impl<P> RetryLayer<P> {
    /// Retries with a custom [`Policy`](super::Policy).
    pub fn with_policy(policy: P) -> Self {
        RetryLayer {
            policy,
            settings: Arc::new(default_settings()),
        }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// The most attempts per request, the first one included (default 3;
    /// values below 1 count as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings().max_attempts = attempts.max(1);
        self
    }

    /// The delays between attempts (default: 100 ms doubling up to 10 s,
    /// full jitter). The backoff's own `max_attempts` / `max_elapsed` stop
    /// retries too.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings().backoff = backoff;
        self
    }

    /// The retry budget (default: 20 % of the last 10 s plus 10 per
    /// second). Pass a clone of one budget to several layers to share it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.settings().budget = Some(budget);
        self
    }

    /// No retry budget: only `max_attempts` bounds retries.
    pub fn no_budget(mut self) -> Self {
        self.settings().budget = None;
        self
    }

    /// Fails an attempt that takes longer than `timeout` (with
    /// [`Elapsed`](crate::timeout::Elapsed), which the HTTP policy retries).
    pub fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.settings().per_try_timeout = Some(timeout);
        self
    }

    /// Return [`BudgetExhausted`](super::BudgetExhausted) instead of the last
    /// result when a retry is refused by the budget.
    pub fn budget_exhausted_error(mut self, on: bool) -> Self {
        self.settings().budget_error = on;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The shared budget, if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.settings.budget.as_ref()
    }

    fn map_policy<Q>(self, f: impl FnOnce(P) -> Q) -> RetryLayer<Q> {
        RetryLayer {
            policy: f(self.policy),
            settings: self.settings,
        }
    }
}

impl<C> RetryLayer<HttpPolicy<C>> {
    /// See [`HttpPolicy::retry_non_idempotent`].
    pub fn retry_non_idempotent(self, on: bool) -> Self {
        self.map_policy(|p| p.retry_non_idempotent(on))
    }

    /// See [`HttpPolicy::max_replay_body`].
    pub fn max_replay_body(self, bytes: usize) -> Self {
        self.map_policy(|p| p.max_replay_body(bytes))
    }

    /// See [`HttpPolicy::max_retry_after`].
    pub fn max_retry_after(self, max: Duration) -> Self {
        self.map_policy(|p| p.max_retry_after(max))
    }

    /// See [`HttpPolicy::retry_status`].
    pub fn retry_status(self, status: StatusCode) -> Self {
        self.map_policy(|p| p.retry_status(status))
    }

    /// See [`HttpPolicy::never_retry_status`].
    pub fn never_retry_status(self, status: StatusCode) -> Self {
        self.map_policy(|p| p.never_retry_status(status))
    }

    /// See [`HttpPolicy::classifier`].
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<HttpPolicy<C2>> {
        self.map_policy(|p| p.classifier(classifier))
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Retry<S, P> {
        Retry {
            inner,
            policy: self.policy.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}
