//! Errors of the upstream half of the gateway.

use msp_core::ServiceName;
use msp_core::http::{Problem, ToProblem};

/// The upstream service has no instance to send to: none registered yet,
/// or the registry has not answered. Answered with `503`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no instance of upstream service {service} to send to")]
pub struct NoInstance {
    pub(crate) service: ServiceName,
}

impl NoInstance {
    /// The upstream service.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

impl ToProblem for NoInstance {
    fn to_problem(&self) -> Problem {
        Problem::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "no_instances",
            format!("no healthy instance of {}", self.service),
        )
    }
}
