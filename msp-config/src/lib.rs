#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`loader`]: layers, precedence, profiles, env and CLI overrides, typed
//!   extraction with errors naming key, type and source.
//! - [`watched`]: [`Watched<T>`], hot reload, validation, change stream.
//! - [`remote`]: etcd (feature `etcd`) and HTTP config-server (feature
//!   `http`) sources, start-up policy and cache.
//! - [`secret`]: `${VAR}` interpolation, `{cipher}` values, redaction,
//!   [`Secret<T>`].
//! - [`audit`]: audit records and sinks.
//! - [`flags`]: feature flags with stable percentage rollout.
//! - [`server`]: a Spring-Cloud-Config-compatible config server (tower
//!   service).
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `http` | yes | `remote::HttpSource`: client of a config server (hyper-util) |
//! | `etcd` | no | `remote::EtcdSource` (etcd-client) |

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod audit;
mod error;
pub mod flags;
mod lines;
pub mod loader;
pub mod remote;
pub mod secret;
pub mod server;
pub mod watched;

pub use audit::{AuditRecord, AuditSink, JsonLinesSink, KeyChange, TracingSink, Trigger};
pub use error::{Error, Origin};
pub use flags::{FeatureFlag, FeatureFlags};
pub use loader::{Layer, Loader};
pub use secret::Secret;
pub use watched::{ConfigEvent, ReloadOutcome, Watched, WatchedBuilder};

/// Errors and origins (see [`Error`] and [`Origin`]).
pub mod errors {
    #![doc = "Errors and where a value came from."]
    pub use crate::error::{Error, Origin};
}
