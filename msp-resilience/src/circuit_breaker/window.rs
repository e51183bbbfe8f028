//! Sliding windows of call outcomes, updated with atomics only.
//!
//! The count window keeps the number of recorded calls in striped counters
//! (one cache line per stripe, a thread keeps to its stripe), so recording a
//! success from several threads touches no shared line. Failures and slow
//! calls, rare on a healthy path, are written to logs of call sequence
//! numbers; counting the ones inside the window is done only when a rate must
//! be evaluated.
//!
//! Under concurrency the figures are approximate by the calls in flight
//! (exactly as in any lock-free window); from one thread they are exact.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A value alone on its cache line(s).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// Counts inside the window at the time of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised: reading it is one thread-relative load.
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number per thread, handed out in order of first use.
#[inline]
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX.with(|i| {
        let index = i.get();
        if index != usize::MAX {
            return index;
        }
        let index = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
        i.set(index);
        index
    })
}

/// How many stripes to use: a few per CPU, a power of two.
pub(crate) fn stripe_count() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cpus * 4).next_power_of_two().clamp(4, 64)
}

/// Sequence numbers of failed (or slow) calls.
#[derive(Debug)]
struct EventLog {
    seqs: Box<[AtomicU64]>,
    cursor: AtomicU64,
}

impl EventLog {
    fn new(size: usize) -> Self {
        EventLog {
            seqs: (0..size).map(|_| AtomicU64::new(0)).collect(),
            cursor: AtomicU64::new(0),
        }
    }

    fn push(&self, seq: u64) {
        let at = self.cursor.fetch_add(1, Ordering::Relaxed) as usize % self.seqs.len();
        self.seqs[at].store(seq, Ordering::Relaxed);
    }

    /// Entries with a sequence number in `(after, ..]`.
    fn count_after(&self, after: u64) -> u64 {
        self.seqs
            .iter()
            .filter(|s| {
                let s = s.load(Ordering::Relaxed);
                s != 0 && s > after
            })
            .count() as u64
    }

    fn clear(&self) {
        for s in self.seqs.iter() {
            s.store(0, Ordering::Relaxed);
        }
        self.cursor.store(0, Ordering::Relaxed);
    }
}

/// The last `size` calls.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u64,
    stripes: Box<[Padded<AtomicU64>]>,
    failures: EventLog,
    slow: EventLog,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        CountWindow {
            size: u64::from(size),
            stripes: (0..stripe_count())
                .map(|_| Padded(AtomicU64::new(0)))
                .collect(),
            failures: EventLog::new(size as usize),
            slow: EventLog::new(size as usize),
        }
    }

    fn total(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Records a call; returns the counts when the caller must evaluate
    /// them (a failure or slow call, or `force`).
    #[inline]
    pub(crate) fn record(&self, failure: bool, slow: bool, force: bool) -> Option<Counts> {
        let stripe = &self.stripes[thread_index() & (self.stripes.len() - 1)];
        stripe.0.fetch_add(1, Ordering::Relaxed);
        if !(failure || slow || force) {
            return None;
        }
        let total = self.total();
        if failure {
            self.failures.push(total);
        }
        if slow {
            self.slow.push(total);
        }
        Some(self.counts_at(total))
    }

    fn counts_at(&self, total: u64) -> Counts {
        let after = total.saturating_sub(self.size);
        Counts {
            calls: total.min(self.size),
            failures: self.failures.count_after(after),
            slow: self.slow.count_after(after),
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts_at(self.total())
    }

    pub(crate) fn reset(&self) {
        for s in self.stripes.iter() {
            s.0.store(0, Ordering::Relaxed);
        }
        self.failures.clear();
        self.slow.clear();
    }
}

#[derive(Debug)]
struct Bucket {
    second: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

const NO_SECOND: u64 = u64::MAX;

/// The calls of the last `seconds` seconds, one bucket per second.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Padded<Bucket>]>,
}

impl TimeWindow {
    pub(crate) fn new(seconds: u64) -> Self {
        TimeWindow {
            buckets: (0..seconds.max(1))
                .map(|_| {
                    Padded(Bucket {
                        second: AtomicU64::new(NO_SECOND),
                        calls: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                        slow: AtomicU64::new(0),
                    })
                })
                .collect(),
        }
    }

    fn bucket(&self, second: u64) -> &Bucket {
        let b = &self.buckets[(second % self.buckets.len() as u64) as usize].0;
        let seen = b.second.load(Ordering::Acquire);
        if seen != second
            && seen != NO_SECOND.wrapping_sub(1)
            && b.second
                .compare_exchange(
                    seen,
                    NO_SECOND.wrapping_sub(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            // We own the roll-over: clear, then publish the new second.
            // Calls recorded by other threads during these few instructions
            // land in the old second and are dropped with it.
            b.calls.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
            b.slow.store(0, Ordering::Relaxed);
            b.second.store(second, Ordering::Release);
        }
        b
    }

    /// Records a call at `second` (since the breaker's start).
    pub(crate) fn record(
        &self,
        second: u64,
        failure: bool,
        slow: bool,
        force: bool,
    ) -> Option<Counts> {
        let b = self.bucket(second);
        b.calls.fetch_add(1, Ordering::Relaxed);
        if failure {
            b.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::Relaxed);
        }
        (failure || slow || force).then(|| self.counts(second))
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        let len = self.buckets.len() as u64;
        let oldest = now.saturating_sub(len - 1);
        let mut c = Counts::default();
        for b in self.buckets.iter() {
            let s = b.0.second.load(Ordering::Acquire);
            if s != NO_SECOND && s != NO_SECOND.wrapping_sub(1) && s >= oldest && s <= now {
                c.calls += b.0.calls.load(Ordering::Relaxed);
                c.failures += b.0.failures.load(Ordering::Relaxed);
                c.slow += b.0.slow.load(Ordering::Relaxed);
            }
        }
        c
    }

    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            b.0.second.store(NO_SECOND, Ordering::Release);
            b.0.calls.store(0, Ordering::Relaxed);
            b.0.failures.store(0, Ordering::Relaxed);
            b.0.slow.store(0, Ordering::Relaxed);
        }
    }
}

/// Either window, plus the "a rate is waiting for the minimum" flag.
#[derive(Debug)]
pub(crate) struct Window {
    kind: WindowKind,
    /// Set when a failure or slow call was recorded before the window held
    /// the minimum number of calls: successes must then evaluate too, since
    /// the call that reaches the minimum may trip the breaker.
    pending: AtomicBool,
}

#[derive(Debug)]
enum WindowKind {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn count(size: u32) -> Self {
        Window {
            kind: WindowKind::Count(CountWindow::new(size)),
            pending: AtomicBool::new(false),
        }
    }

    pub(crate) fn time(seconds: u64) -> Self {
        Window {
            kind: WindowKind::Time(TimeWindow::new(seconds)),
            pending: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_time(&self) -> bool {
        matches!(self.kind, WindowKind::Time(_))
    }

    /// Records one outcome; returns counts to evaluate, if any.
    #[inline]
    pub(crate) fn record(
        &self,
        second: u64,
        failure: bool,
        slow: bool,
        minimum: u64,
    ) -> Option<Counts> {
        let force = self.pending.load(Ordering::Relaxed);
        let counts = match &self.kind {
            WindowKind::Count(w) => w.record(failure, slow, force),
            WindowKind::Time(w) => w.record(second, failure, slow, force),
        }?;
        let below = counts.calls < minimum;
        if below != force {
            self.pending.store(below, Ordering::Relaxed);
        }
        Some(counts)
    }

    pub(crate) fn counts(&self, second: u64) -> Counts {
        match &self.kind {
            WindowKind::Count(w) => w.counts(),
            WindowKind::Time(w) => w.counts(second),
        }
    }

    pub(crate) fn reset(&self) {
        match &self.kind {
            WindowKind::Count(w) => w.reset(),
            WindowKind::Time(w) => w.reset(),
        }
        self.pending.store(false, Ordering::Relaxed);
    }
}
