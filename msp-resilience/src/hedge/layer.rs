use super::config::{HedgeConfig, HedgeConfigError, HedgeDelay, default_budget, default_window};
use super::latency::Histogram;
use super::service::Hedge;
use crate::retry::{FnPolicy, HttpPolicy, RetryBudget};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(Histogram),
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delay::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            Delay::Percentile(h) => f.debug_tuple("Percentile").field(h).finish(),
        }
    }
}

impl Clone for Delay {
    /// The same settings; a percentile starts over with no samples.
    fn clone(&self) -> Self {
        match self {
            Delay::Fixed(d) => Delay::Fixed(*d),
            Delay::Percentile(h) => Delay::Percentile(h.fresh()),
        }
    }
}

impl Delay {
    pub(crate) fn current(&self) -> Option<Duration> {
        match self {
            Delay::Fixed(d) => Some(*d),
            Delay::Percentile(h) => h.delay(),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        if let Delay::Percentile(h) = self {
            h.record(latency);
        }
    }
}

/// State shared by a layer and every service it made.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) delay: Delay,
    pub(crate) budget: Option<RetryBudget>,
}

/// Sends a second copy of slow requests; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct HedgeLayer<P> {
    policy: P,
    shared: Arc<Shared>,
}

fn default_shared(delay: Delay) -> Arc<Shared> {
    let budget = default_budget().map(RetryBudget::build);
    Arc::new(Shared { delay, budget })
}

fn percentile_delay(
    percentile: f64,
    min_samples: u64,
    window: Duration,
) -> Result<Delay, HedgeConfigError> {
    if !(percentile > 0.0 && percentile < 100.0) {
        return Err(HedgeConfigError::Percentile(percentile));
    }
    Ok(Delay::Percentile(Histogram::new(
        percentile,
        min_samples,
        window.max(Duration::from_millis(1)),
    )))
}

impl<F> HedgeLayer<FnPolicy<F>> {
    /// Hedges any `Clone` request after a fixed `delay`; `is_failure(req,
    /// result)` says which results are not worth returning while the other
    /// copy is still running (the first *success* wins).
    pub fn new(delay: Duration, is_failure: F) -> Self {
        HedgeLayer {
            policy: FnPolicy::new(is_failure),
            shared: default_shared(Delay::Fixed(delay)),
        }
    }
}

impl HedgeLayer<HttpPolicy> {
    /// Hedges idempotent HTTP requests with a known body size up to 64 KiB
    /// after a fixed `delay`; errors and `5xx` are failures.
    pub fn idempotent_http(delay: Duration) -> Self {
        HedgeLayer {
            policy: HttpPolicy::new().bounded_bodies_only(true),
            shared: default_shared(Delay::Fixed(delay)),
        }
    }

    /// An HTTP hedge layer from its (validated) config.
    pub fn from_config(config: &HedgeConfig) -> Self {
        let delay = match config.delay() {
            HedgeDelay::Fixed(d) => Delay::Fixed(d),
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                window,
            } => Delay::Percentile(Histogram::new(
                percentile,
                min_samples,
                window.max(Duration::from_millis(1)),
            )),
        };
        HedgeLayer {
            policy: HttpPolicy::new()
                .bounded_bodies_only(true)
                .max_replay_body(config.max_body()),
            shared: Arc::new(Shared {
                delay,
                budget: config.budget().map(RetryBudget::build),
            }),
        }
    }
}

impl<P> HedgeLayer<P> {
    fn shared(&mut self) -> &mut Shared {
        // Builders run before the layer makes services; if it was cloned,
        // this copies the settings (with an empty histogram).
        Arc::make_mut(&mut self.shared)
    }

    /// Hedges after the `percentile` (e.g. `95.0`) of recent latencies,
    /// once `min_samples` were seen. A `percentile` outside `0 < p < 100`
    /// is an error.
    pub fn percentile(
        mut self,
        percentile: f64,
        min_samples: u64,
    ) -> Result<Self, HedgeConfigError> {
        self.shared().delay = percentile_delay(percentile, min_samples, default_window())?;
        Ok(self)
    }

    /// Hedges after a fixed delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.shared().delay = Delay::Fixed(delay);
        self
    }

    /// Caps hedges with `budget` (default: 10 % of the requests of the last
    /// 10 s).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.shared().budget = Some(budget);
        self
    }

    /// No cap on hedges: every slow request is hedged.
    pub fn no_budget(mut self) -> Self {
        self.shared().budget = None;
        self
    }

    /// The current hedge delay (`None` while a percentile has too few
    /// samples).
    pub fn current_delay(&self) -> Option<Duration> {
        self.shared.delay.current()
    }
}

impl<C> HedgeLayer<HttpPolicy<C>> {
    /// The largest request body hedged.
    pub fn max_body(self, bytes: usize) -> Self {
        HedgeLayer {
            policy: self.policy.max_replay_body(bytes),
            shared: self.shared,
        }
    }
}

impl<S, P: Clone> Layer<S> for HedgeLayer<P> {
    type Service = Hedge<S, P>;

    fn layer(&self, inner: S) -> Hedge<S, P> {
        Hedge {
            inner,
            policy: self.policy.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}
