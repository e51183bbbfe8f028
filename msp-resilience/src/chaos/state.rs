use super::error::{ChaosConfigError, InjectedFault};
use msp_core::BoxError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of a [`ChaosLayer`](super::ChaosLayer), as read from a config
/// file.
///
/// ```
/// use msp_resilience::chaos::ChaosConfig;
///
/// let cfg: ChaosConfig = serde_json::from_str(
///     r#"{"error_rate": 0.05, "latency_rate": 0.1, "latency": "200ms", "latency_max": "1s", "seed": 7}"#,
/// )?;
/// assert!(cfg.enabled);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Whether injection is on at start (default `true`).
    pub enabled: bool,
    /// Fraction of calls failed with the injected error (0.0–1.0).
    pub error_rate: f64,
    /// Fraction of calls delayed (0.0–1.0).
    pub latency_rate: f64,
    /// The added delay (the minimum, if `latency_max` is set).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Draw the delay uniformly from `latency..=latency_max`.
    #[serde(with = "humantime_serde")]
    pub latency_max: Option<Duration>,
    /// Seed of the random draws: the same seed, the same faults, in the
    /// same order.
    pub seed: Option<u64>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            enabled: true,
            error_rate: 0.0,
            latency_rate: 0.0,
            latency: Duration::ZERO,
            latency_max: None,
            seed: None,
        }
    }
}

const PPM: f64 = 1_000_000.0;

fn to_ppm(name: &'static str, rate: f64) -> Result<u32, ChaosConfigError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(ChaosConfigError::Rate { name, value: rate });
    }
    Ok((rate * PPM).round() as u32)
}

pub(crate) type ErrorFn = Arc<dyn Fn() -> BoxError + Send + Sync>;

pub(crate) struct State {
    enabled: AtomicBool,
    error_ppm: AtomicU32,
    latency_ppm: AtomicU32,
    latency_min: AtomicU64,
    latency_max: AtomicU64,
    rng: Mutex<SmallRng>,
    pub(crate) error: ErrorFn,
    injected_errors: AtomicU64,
    injected_delays: AtomicU64,
}

/// What to do with one call.
pub(crate) struct Draw {
    pub(crate) fail: bool,
    pub(crate) delay: Option<Duration>,
}

/// The runtime switch of a [`ChaosLayer`](super::ChaosLayer): every
/// service the layer made (and every clone) reads it on each call.
///
/// ```
/// use msp_resilience::chaos::{ChaosConfig, ChaosLayer};
///
/// let layer = ChaosLayer::new(ChaosConfig { error_rate: 0.5, ..Default::default() })?;
/// let chaos = layer.handle();
/// chaos.disable();
/// assert!(!chaos.is_enabled());
/// chaos.set_error_rate(0.1)?;
/// chaos.enable();
/// # Ok::<(), msp_resilience::chaos::error::ChaosConfigError>(())
/// ```
#[derive(Clone)]
pub struct ChaosHandle {
    pub(crate) state: Arc<State>,
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("enabled", &self.is_enabled())
            .field("injected_errors", &self.injected_errors())
            .field("injected_delays", &self.injected_delays())
            .finish()
    }
}

impl ChaosHandle {
    pub(crate) fn new(config: &ChaosConfig, error: ErrorFn) -> Result<Self, ChaosConfigError> {
        let error_ppm = to_ppm("error_rate", config.error_rate)?;
        let latency_ppm = to_ppm("latency_rate", config.latency_rate)?;
        let max = config.latency_max.unwrap_or(config.latency);
        if max < config.latency {
            return Err(ChaosConfigError::LatencyRange {
                min: config.latency,
                max,
            });
        }
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Ok(ChaosHandle {
            state: Arc::new(State {
                enabled: AtomicBool::new(config.enabled),
                error_ppm: AtomicU32::new(error_ppm),
                latency_ppm: AtomicU32::new(latency_ppm),
                latency_min: AtomicU64::new(nanos(config.latency)),
                latency_max: AtomicU64::new(nanos(max)),
                rng: Mutex::new(rng),
                error,
                injected_errors: AtomicU64::new(0),
                injected_delays: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn default_error() -> ErrorFn {
        Arc::new(|| InjectedFault.into())
    }

    /// Turns injection on.
    pub fn enable(&self) {
        self.state.enabled.store(true, Ordering::Relaxed);
    }

    /// Turns injection off: calls pass straight through.
    pub fn disable(&self) {
        self.state.enabled.store(false, Ordering::Relaxed);
    }

    /// Whether injection is on.
    pub fn is_enabled(&self) -> bool {
        self.state.enabled.load(Ordering::Relaxed)
    }

    /// Changes the error rate (0.0–1.0).
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ChaosConfigError> {
        let ppm = to_ppm("error_rate", rate)?;
        self.state.error_ppm.store(ppm, Ordering::Relaxed);
        Ok(())
    }

    /// Changes the latency rate (0.0–1.0).
    pub fn set_latency_rate(&self, rate: f64) -> Result<(), ChaosConfigError> {
        let ppm = to_ppm("latency_rate", rate)?;
        self.state.latency_ppm.store(ppm, Ordering::Relaxed);
        Ok(())
    }

    /// Changes the injected delay to `min..=max`.
    pub fn set_latency(&self, min: Duration, max: Duration) -> Result<(), ChaosConfigError> {
        if max < min {
            return Err(ChaosConfigError::LatencyRange { min, max });
        }
        self.state.latency_min.store(nanos(min), Ordering::Relaxed);
        self.state.latency_max.store(nanos(max), Ordering::Relaxed);
        Ok(())
    }

    /// How many errors were injected so far.
    pub fn injected_errors(&self) -> u64 {
        self.state.injected_errors.load(Ordering::Relaxed)
    }

    /// How many calls were delayed so far.
    pub fn injected_delays(&self) -> u64 {
        self.state.injected_delays.load(Ordering::Relaxed)
    }

    /// Draws the fate of one call, or `None` when injection is off.
    pub(crate) fn draw(&self) -> Option<Draw> {
        let s = &*self.state;
        if !s.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let error_ppm = s.error_ppm.load(Ordering::Relaxed);
        let latency_ppm = s.latency_ppm.load(Ordering::Relaxed);
        let (lo, hi) = (
            s.latency_min.load(Ordering::Relaxed),
            s.latency_max.load(Ordering::Relaxed),
        );
        let (fail, delay) = {
            // A poisoned lock only means another thread panicked mid-draw;
            // the RNG state is still usable.
            let mut rng = s.rng.lock().unwrap_or_else(|p| p.into_inner());
            let fail = rng.random_range(0..1_000_000u32) < error_ppm;
            let delayed = rng.random_range(0..1_000_000u32) < latency_ppm;
            let delay = delayed.then(|| {
                if hi > lo {
                    rng.random_range(lo..=hi)
                } else {
                    lo
                }
            });
            (fail, delay)
        };
        if fail {
            s.injected_errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("msp_resilience_chaos_errors_total").increment(1);
        }
        if delay.is_some() {
            s.injected_delays.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("msp_resilience_chaos_delays_total").increment(1);
        }
        Some(Draw {
            fail,
            delay: delay.map(Duration::from_nanos),
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
