//! Errors, and where a configuration value came from ([`Origin`]).
//!
//! Every error that concerns one value names its key path and its
//! [`Origin`]: the file and line, the environment variable, the remote key or
//! the command-line flag that supplied it. Secret values never appear in an
//! error message.
//!
//! # Example
//!
//! ```
//! use msp_config::{ConfigError, Loader};
//! use std::collections::HashMap;
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Cfg { port: u16 }
//!
//! let env = HashMap::from([("SHOP__PORT".to_owned(), "eighty".to_owned())]);
//! let err = Loader::new("shop").no_files().env_map(env).load_sync::<Cfg>().unwrap_err();
//! assert!(matches!(err, ConfigError::InvalidValue { .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "invalid value for `port`: expected an integer, found string \"eighty\" (from env var SHOP__PORT)"
//! );
//! ```

use std::fmt;
use std::path::PathBuf;

use msp_core::BoxError;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The in-code defaults.
    Defaults,
    /// A configuration file, with the 1-based line of the key when known.
    File {
        /// The file path as it was opened.
        path: PathBuf,
        /// The line of the key in the file, when it could be located.
        line: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A remote source (etcd, config server).
    Remote {
        /// The source (for example `etcd http://127.0.0.1:2379`).
        source: String,
        /// The key at the source (etcd key, property-source name).
        key: String,
    },
    /// A command-line override `--set key=value`.
    CommandLine {
        /// The overridden key.
        key: String,
    },
    /// Origin not recorded.
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("defaults"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "env var {var}"),
            Origin::Remote { source, key } => write!(f, "{source} key {key}"),
            Origin::CommandLine { key } => write!(f, "command line --set {key}"),
            Origin::Unknown => f.write_str("unknown source"),
        }
    }
}

// Origins travel through config-rs as strings: `tag\u{1f}payload`.
const SEP: char = '\u{1f}';

impl Origin {
    /// Encodes the origin into the string config-rs carries with each value.
    pub(crate) fn encode(&self) -> String {
        match self {
            Origin::Defaults => "defaults".to_owned(),
            Origin::File { path, .. } => format!("file{SEP}{}", path.display()),
            Origin::Env { var } => format!("env{SEP}{var}"),
            Origin::Remote { source, key } => format!("remote{SEP}{source}{SEP}{key}"),
            Origin::CommandLine { key } => format!("cli{SEP}{key}"),
            Origin::Unknown => "unknown".to_owned(),
        }
    }

    /// Decodes a string made by [`Origin::encode`]; anything else is a file
    /// path (config-rs's own convention).
    pub(crate) fn decode(s: Option<&str>) -> Origin {
        let Some(s) = s else { return Origin::Unknown };
        let mut parts = s.splitn(3, SEP);
        match (parts.next(), parts.next(), parts.next()) {
            (Some("defaults"), None, None) => Origin::Defaults,
            (Some("unknown"), None, None) => Origin::Unknown,
            (Some("file"), Some(p), None) => Origin::File {
                path: PathBuf::from(p),
                line: None,
            },
            (Some("env"), Some(v), None) => Origin::Env { var: v.to_owned() },
            (Some("cli"), Some(k), None) => Origin::CommandLine { key: k.to_owned() },
            (Some("remote"), Some(src), Some(k)) => Origin::Remote {
                source: src.to_owned(),
                key: k.to_owned(),
            },
            _ => Origin::File {
                path: PathBuf::from(s),
                line: None,
            },
        }
    }
}

/// What can go wrong loading, decrypting, validating or reloading
/// configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value has the wrong type or shape for the target field.
    #[error("invalid value for `{key}`: expected {expected}, found {found} (from {origin})")]
    InvalidValue {
        /// The dotted key path (`db.pool.max_size`).
        key: String,
        /// What the target type expected (`an integer`).
        expected: String,
        /// What was found; `[REDACTED]` for secrets.
        found: String,
        /// Who supplied the value.
        origin: Origin,
    },
    /// Deserialization failed for a reason other than a value's type (a
    /// missing field, an unknown enum variant, a custom check in a
    /// `Deserialize` impl).
    #[error("invalid configuration at `{key}`: {message}{}", origin_suffix(.origin))]
    Invalid {
        /// The dotted key path, empty for the root.
        key: String,
        /// The deserializer's message.
        message: String,
        /// Who supplied the value, when a value was involved.
        origin: Option<Origin>,
    },
    /// A configuration file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid YAML / TOML / JSON.
    #[error("cannot parse {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column where the format gives them).
        message: String,
    },
    /// `${VAR}` names a variable that is not set and has no `:-default`.
    #[error(
        "`{key}`: environment variable `{var}` is not set (in `${{{var}}}`; write `${{{var}:-default}}` for a default)"
    )]
    UnsetVariable {
        /// The key whose value holds the reference.
        key: String,
        /// The variable.
        var: String,
    },
    /// A `${` without its closing `}`.
    #[error("`{key}`: unterminated `${{` in value (write `$${{` for a literal `${{`)")]
    BadInterpolation {
        /// The key whose value is malformed.
        key: String,
    },
    /// A `{cipher}` value could not be decrypted.
    #[error("`{key}`: cannot decrypt {{cipher}} value: {reason}")]
    Decrypt {
        /// The key whose value is encrypted.
        key: String,
        /// Why (wrong key, not base64, too short, no key configured).
        reason: String,
    },
    /// The AES key material is unusable.
    #[error("bad cipher key: {0}")]
    CipherKey(String),
    /// A remote source failed and no fallback applied.
    #[error("remote source {source_name} failed: {error}")]
    Remote {
        /// The source.
        source_name: String,
        /// The cause.
        #[source]
        error: BoxError,
    },
    /// A remote source was unreachable at start-up and its cached copy could
    /// not be used.
    #[error("remote source {source_name} unreachable ({error}) and its cache {} is unusable: {cache_error}", .cache.display())]
    NoCache {
        /// The source.
        source_name: String,
        /// Why the fetch failed.
        error: BoxError,
        /// The cache file.
        cache: PathBuf,
        /// Why the cache could not be used.
        cache_error: String,
    },
    /// A validation hook rejected the configuration.
    #[error("configuration rejected by validation: {0}")]
    Validation(BoxError),
    /// A command-line argument could not be understood.
    #[error("bad command-line argument: {0}")]
    Argument(String),
    /// Setting up a file watch failed.
    #[error("cannot watch {}: {message}", .path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's message.
        message: String,
    },
    /// Any other error reported by the layering library.
    #[error("configuration error: {0}")]
    Other(String),
}

fn origin_suffix(origin: &Option<Origin>) -> String {
    match origin {
        Some(o) => format!(" (from {o})"),
        None => String::new(),
    }
}
