//! Error types of the bulkhead.

use std::fmt;

/// The call was rejected by a full bulkhead: every slot was taken and the
/// queue was full, or the call waited `max_wait` in the queue.
///
/// ```
/// use msp_resilience::bulkhead::error::BulkheadFull;
/// # let err: msp_core::BoxError = Box::new(BulkheadFull::queue_full());
/// if let Some(full) = err.downcast_ref::<BulkheadFull>() {
///     assert!(!full.waited());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BulkheadFull {
    waited: bool,
}

impl BulkheadFull {
    /// Rejected at once: no slot and no room in the queue.
    pub fn queue_full() -> Self {
        BulkheadFull { waited: false }
    }

    /// Rejected after waiting `max_wait` in the queue.
    pub fn wait_elapsed() -> Self {
        BulkheadFull { waited: true }
    }

    /// `true` when the call waited in the queue until `max_wait` passed.
    pub fn waited(&self) -> bool {
        self.waited
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.waited {
            f.write_str("bulkhead full: waited too long for a slot")
        } else {
            f.write_str("bulkhead full: no free slot and the queue is full")
        }
    }
}

impl std::error::Error for BulkheadFull {}
