//! Fault tolerance as tower middleware.
//!
//! (Crate documentation is written as the modules land.)

pub mod bulkhead;
pub mod chaos;
pub mod circuit_breaker;
pub mod fallback;
pub mod hedge;
pub mod http;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
