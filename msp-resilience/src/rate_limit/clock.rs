//! The clocks a limiter can read.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Which clock a limiter reads on every check.
///
/// ```
/// use msp_resilience::rate_limit::{Clock, RateLimiter};
/// let fast = RateLimiter::with_clock("100/s".parse()?, Clock::Fast);
/// assert!(fast.check().is_ok());
/// # Ok::<(), msp_resilience::rate_limit::InvalidQuota>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// `tokio::time::Instant`: follows `tokio::time::pause` and `advance`,
    /// so tests control time. The default.
    #[default]
    Tokio,
    /// The CPU's time-stamp counter through `quanta` (calibrated against
    /// the monotonic clock): cheaper to read than the OS clock, but not
    /// affected by `tokio::time::pause`.
    Fast,
}

/// A started clock: nanoseconds since the limiter was built.
pub(crate) enum Source {
    Tokio(Instant),
    Fast(quanta::Clock, u64),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Tokio(_) => "Tokio",
            Source::Fast(..) => "Fast",
        })
    }
}

impl Source {
    pub(crate) fn start(clock: Clock) -> Self {
        match clock {
            Clock::Tokio => Source::Tokio(Instant::now()),
            Clock::Fast => {
                let c = quanta::Clock::new();
                let base = c.raw();
                Source::Fast(c, base)
            }
        }
    }

    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Source::Tokio(base) => {
                let d = Instant::now().saturating_duration_since(*base);
                d.as_secs()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(d.subsec_nanos()))
            }
            Source::Fast(clock, base) => clock.delta_as_nanos(*base, clock.raw()),
        }
    }
}
