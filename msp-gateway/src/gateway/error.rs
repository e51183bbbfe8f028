//! Why a configuration could not become the gateway's active snapshot.

use crate::config::GatewayConfigError;

/// A configuration the gateway refused: invalid on load, or valid on
/// paper but impossible to build (an unknown registry feature, a bad retry
/// setting, an etcd cluster that cannot be reached…). On a reload, the
/// last good configuration stays active.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration itself is invalid (every problem with its route,
    /// field and line).
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    /// A route or service setting cannot be built.
    #[error("{what}: {reason}")]
    Invalid {
        /// The route or service concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry cannot be set up.
    #[error("registry: {0}")]
    Registry(String),
}

impl BuildError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Self {
        BuildError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
