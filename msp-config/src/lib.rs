#![doc = include_str!("../README.md")]
//!
//! # Example
//!
//! ```
//! use msp_config::{ConfigEvent, FeatureFlags, Loader, Secret, Watched};
//! use std::collections::HashMap;
//! use std::time::Duration;
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Db { url: String, password: Secret<String>, pool_size: u32 }
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct AppConfig { db: Db, flags: FeatureFlags }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("shop.yaml");
//! std::fs::write(&file, "
//! db:
//!   url: pg://db/shop
//!   password: ${DB_PASSWORD:-dev}
//!   pool_size: 8
//! flags:
//!   new-checkout: { enabled: true, rollout_percent: 10, overrides: { user-42: true } }
//! ")?;
//! let env = HashMap::from([
//!     ("SHOP__DB__POOL_SIZE".to_owned(), "16".to_owned()), // env beats the file
//!     ("DB_PASSWORD".to_owned(), "s3cr3t".to_owned()),
//! ]);
//! let config = Watched::<AppConfig>::builder(Loader::new("shop").dir(dir.path()).env_map(env))
//!     .start()
//!     .await?;
//!
//! let cfg = config.get();
//! assert_eq!(cfg.db.pool_size, 16);
//! assert_eq!(cfg.db.password.expose(), "s3cr3t");
//! assert!(!format!("{cfg:?}").contains("s3cr3t"));
//! assert!(cfg.flags.is_enabled("new-checkout", "user-42"));
//!
//! // Edit the file: the new value arrives on the change stream.
//! let mut changes = config.subscribe();
//! std::fs::write(&file, std::fs::read_to_string(&file)?.replace("pg://db/shop", "pg://db2/shop"))?;
//! loop {
//!     if let ConfigEvent::Updated { value, audit } =
//!         tokio::time::timeout(Duration::from_secs(10), changes.recv()).await??
//!     {
//!         println!("{audit}"); // config change (file …/shop.yaml): ~db.url: pg://db/shop -> pg://db2/shop
//!         assert_eq!(value.db.url, "pg://db2/shop");
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
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
//! - [`error`]: [`ConfigError`] and [`Origin`] (which file and line, env var,
//!   remote key or flag supplied a value).
//! - [`flags`]: feature flags with stable percentage rollout.
//! - [`server`]: a Spring-Cloud-Config-compatible config server (tower
//!   service) over a directory or a git repository, with a change stream
//!   and server-side decryption.
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `http` | yes | `remote::HttpSource`: client of a config server (hyper-util) |
//! | `etcd` | no | `remote::EtcdSource` (etcd-client) |
//! | `git` | no | `server::GitBackend`: the config server over a git repository (gix) |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod error;
pub mod flags;
mod lines;
pub mod loader;
pub mod remote;
pub mod secret;
pub mod server;
pub mod watched;

pub use audit::{AuditRecord, AuditSink, JsonLinesSink, KeyChange, TracingSink, Trigger};
pub use error::{ConfigError, Origin};
pub use flags::{FeatureFlag, FeatureFlags};
pub use loader::{Layer, Loader};
pub use secret::Secret;
pub use watched::{ConfigEvent, ReloadOutcome, Watched, WatchedBuilder};
