//! Error types of the bulkhead.

use http::StatusCode;
use msp_core::http::{Problem, ToProblem};
use std::fmt;
use std::sync::Once;

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
///
/// Behind [`HttpErrorLayer`](msp_core::http::HttpErrorLayer) it is a
/// `503 Service Unavailable` problem with code `bulkhead_full` (the type
/// registers itself with [`msp_core::http::register`] when first
/// constructed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BulkheadFull {
    waited: bool,
}

impl BulkheadFull {
    /// Rejected at once: no slot and no room in the queue.
    pub fn queue_full() -> Self {
        Self::registered(false)
    }

    /// Rejected after waiting `max_wait` in the queue.
    pub fn wait_elapsed() -> Self {
        Self::registered(true)
    }

    fn registered(waited: bool) -> Self {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(msp_core::http::register::<BulkheadFull>);
        BulkheadFull { waited }
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

impl ToProblem for BulkheadFull {
    fn to_problem(&self) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bulkhead_full",
            "too many concurrent requests",
        )
    }
}
