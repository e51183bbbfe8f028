//! A small rolling latency histogram shared by the clones of a hedge.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Values below 16 µs have their own bucket; above, each power of two is
/// split into 8 buckets (at most 12.5 % relative error).
const LINEAR: u64 = 16;
const SUB_BITS: u32 = 3;
const BUCKETS: usize = LINEAR as usize + (64 - 4) * (1 << SUB_BITS);
/// Recompute the cached percentile every this many records.
const REFRESH_EVERY: u64 = 16;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros();
    let sub = (micros >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as usize + (exp as usize - 4) * (1 << SUB_BITS) + sub as usize
}

/// The upper bound (µs) of bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let k = i - LINEAR as usize;
    let exp = (k >> SUB_BITS) as u32 + 4;
    let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
    let base = 1u64 << exp;
    (base - 1) + (sub + 1) * (base >> SUB_BITS)
}

struct Window {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
}

impl Window {
    fn new() -> Self {
        Window {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
        }
    }

    fn clear(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.total.store(0, Ordering::Relaxed);
    }
}

/// Latencies of the last one to two windows, with a cached percentile.
pub(crate) struct Histogram {
    windows: [Window; 2],
    current: AtomicUsize,
    rotated_at: Mutex<Instant>,
    window: Duration,
    percentile: f64,
    min_samples: u64,
    /// The cached percentile in nanoseconds; 0 while there are too few
    /// samples.
    cached: AtomicU64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("percentile", &self.percentile)
            .field("delay", &self.delay())
            .finish()
    }
}

impl Histogram {
    pub(crate) fn new(percentile: f64, min_samples: u64, window: Duration) -> Self {
        Histogram {
            windows: [Window::new(), Window::new()],
            current: AtomicUsize::new(0),
            rotated_at: Mutex::new(Instant::now()),
            window,
            percentile,
            min_samples: min_samples.max(1),
            cached: AtomicU64::new(0),
        }
    }

    /// An empty histogram with the same settings.
    pub(crate) fn fresh(&self) -> Self {
        Histogram::new(self.percentile, self.min_samples, self.window)
    }

    /// The hedge delay: the percentile of recent latencies, once there are
    /// enough samples.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        self.maybe_rotate();
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let w = &self.windows[self.current.load(Ordering::Relaxed) & 1];
        w.counts[bucket_of(micros).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        let n = w.total.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(REFRESH_EVERY) || n == self.min_samples {
            self.refresh();
        }
    }

    fn maybe_rotate(&self) {
        let now = Instant::now();
        let Ok(mut at) = self.rotated_at.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*at) < self.window {
            return;
        }
        *at = now;
        let cur = self.current.load(Ordering::Relaxed) & 1;
        // The older window becomes the current one, emptied.
        self.windows[cur ^ 1].clear();
        self.current.store(cur ^ 1, Ordering::Relaxed);
        drop(at);
        self.refresh();
    }

    fn refresh(&self) {
        let total: u64 = self
            .windows
            .iter()
            .map(|w| w.total.load(Ordering::Relaxed))
            .sum();
        if total < self.min_samples {
            self.cached.store(0, Ordering::Relaxed);
            return;
        }
        let rank = ((self.percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += self.windows[0].counts[i].load(Ordering::Relaxed)
                + self.windows[1].counts[i].load(Ordering::Relaxed);
            if seen >= rank {
                let micros = bucket_upper(i).max(1);
                self.cached
                    .store(micros.saturating_mul(1000), Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 65_535, 1 << 40, u64::MAX] {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "{v} -> {b}");
            assert!(bucket_upper(b) >= v, "{v} above its bucket's upper bound");
            last = b;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn percentile_of_recorded_latencies() {
        let h = Histogram::new(90.0, 10, Duration::from_secs(10));
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p90 = h.delay().expect("enough samples");
        assert!(
            p90 >= Duration::from_millis(90) && p90 <= Duration::from_millis(102),
            "{p90:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_samples_means_no_delay() {
        let h = Histogram::new(50.0, 10, Duration::from_secs(10));
        for _ in 0..9 {
            h.record(Duration::from_millis(5));
        }
        assert_eq!(h.delay(), None);
    }
}
