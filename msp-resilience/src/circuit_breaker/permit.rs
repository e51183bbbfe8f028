//! Permits: leave to make one call, recorded on drop if not explicitly.

use super::breaker::Shared;
use super::word::Ticket;
use msp_core::classify::Outcome;
use std::fmt;
use std::sync::Arc;

/// Leave to make one call, from [`Breaker::try_acquire`](super::Breaker::try_acquire).
#[derive(Debug)]
#[must_use = "record the call's outcome on the permit"]
pub struct Permit<'a> {
    pub(super) shared: &'a Shared,
    pub(super) ticket: Ticket,
}

impl Permit<'_> {
    /// Records the call's outcome.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        self.shared.record(&self.ticket, outcome);
        // Recorded: skip the drop, which would record `Ignored`. A permit
        // holds only a reference and plain words, so nothing leaks.
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.shared.record(&self.ticket, Outcome::Ignored);
    }
}

/// Leave to make one call, owning a handle on the breaker; from
/// [`Breaker::try_acquire_owned`](super::Breaker::try_acquire_owned).
#[must_use = "record the call's outcome on the permit"]
pub struct OwnedPermit {
    pub(super) shared: Option<Arc<Shared>>,
    pub(super) ticket: Ticket,
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl OwnedPermit {
    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(shared) = self.shared.take() {
            shared.record(&self.ticket, outcome);
        }
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.record(&self.ticket, Outcome::Ignored);
        }
    }
}
