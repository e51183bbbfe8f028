//! Helpers shared by msp-resilience's integration tests.

pub(crate) mod private_redis;
