//! A loaded configuration: the merged tree with every leaf's value, origin
//! and secrecy, and its extraction into the caller's type with errors that
//! name key, expected type and origin.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use config::{FileFormat, Map, Value, ValueKind};
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, Origin};
use crate::secret::{REDACTED, Redactor};

/// One leaf of the merged configuration, for audit and error reporting.
#[derive(Clone, PartialEq)]
pub(crate) struct FlatEntry {
    /// The value as text (the real value, even for secrets: redact on output).
    pub(crate) value: String,
    pub(crate) origin: Origin,
    pub(crate) secret: bool,
}

impl std::fmt::Debug for FlatEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatEntry")
            .field("value", &self.shown())
            .field("origin", &self.origin)
            .field("secret", &self.secret)
            .finish()
    }
}

impl FlatEntry {
    /// The value, or `[REDACTED]` for a secret.
    pub(crate) fn shown(&self) -> String {
        if self.secret {
            REDACTED.to_owned()
        } else {
            self.value.clone()
        }
    }
}

/// A merged, secret-resolved configuration tree with provenance.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(super) tree: Map<String, Value>,
    pub(crate) flat: BTreeMap<String, FlatEntry>,
    pub(super) files: Arc<HashMap<PathBuf, (String, FileFormat)>>,
    pub(super) redactor: Redactor,
}

impl Snapshot {
    /// Deserializes the tree into `T`, turning config-rs errors into errors
    /// that name key, expected type and origin (file and line).
    pub(crate) fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Value::new(None, ValueKind::Table(self.tree.clone()))
            .try_deserialize::<T>()
            .map_err(|e| self.convert(e))
    }

    fn is_secret(&self, key: &str) -> bool {
        self.redactor.is_secret(key)
            || self
                .flat
                .range(key.to_owned()..)
                .take_while(|(k, _)| k.starts_with(key))
                .any(|(k, e)| e.secret && (k == key || k[key.len()..].starts_with(['.', '['])))
    }

    fn origin_of(&self, raw: Option<&str>, key: &str) -> Option<Origin> {
        let origin = match raw {
            Some(r) => Origin::decode(Some(r)),
            None => self.flat.get(key).map(|e| e.origin.clone())?,
        };
        Some(match origin {
            Origin::File { path, line: None } => {
                let line = self
                    .files
                    .get(&path)
                    .and_then(|(text, format)| crate::lines::locate(text, *format, key));
                Origin::File { path, line }
            }
            other => other,
        })
    }

    fn convert(&self, e: config::ConfigError) -> ConfigError {
        use config::ConfigError as CE;
        match e {
            CE::Type {
                origin,
                unexpected,
                expected,
                key,
            } => {
                let key = key.unwrap_or_default();
                let found = if self.is_secret(&key) {
                    REDACTED.to_owned()
                } else {
                    unexpected.to_string()
                };
                ConfigError::InvalidValue {
                    origin: self
                        .origin_of(origin.as_deref(), &key)
                        .unwrap_or(Origin::Unknown),
                    key,
                    expected: expected.to_owned(),
                    found,
                }
            }
            CE::At { error, origin, key } => {
                let key = key.unwrap_or_default();
                match *error {
                    CE::Type {
                        origin: o2,
                        unexpected,
                        expected,
                        ..
                    } => {
                        let found = if self.is_secret(&key) {
                            REDACTED.to_owned()
                        } else {
                            unexpected.to_string()
                        };
                        ConfigError::InvalidValue {
                            origin: self
                                .origin_of(o2.as_deref().or(origin.as_deref()), &key)
                                .unwrap_or(Origin::Unknown),
                            key,
                            expected: expected.to_owned(),
                            found,
                        }
                    }
                    inner => {
                        let message = if self.is_secret(&key) {
                            "invalid secret value (details redacted)".to_owned()
                        } else {
                            inner.to_string()
                        };
                        ConfigError::Invalid {
                            origin: self.origin_of(origin.as_deref(), &key),
                            key,
                            message,
                        }
                    }
                }
            }
            CE::NotFound(key) => ConfigError::Invalid {
                key,
                message: "required key is missing (no layer sets it)".to_owned(),
                origin: None,
            },
            CE::Message(message) => ConfigError::Invalid {
                key: String::new(),
                message,
                origin: None,
            },
            other => ConfigError::Other(other.to_string()),
        }
    }
}
