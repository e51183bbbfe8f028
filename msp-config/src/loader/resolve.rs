//! Resolving the merged tree: `${VAR}` interpolation and `{cipher}`
//! decryption, recording every leaf for audit and error reporting.

use std::collections::{BTreeMap, HashMap};

use config::{Map, Value, ValueKind};

use super::snapshot::FlatEntry;
use crate::error::{ConfigError, Origin};
use crate::secret::{CIPHER_PREFIX, Cipher, CipherKey, Redactor, interpolate};

/// Walks the merged tree: interpolates `${VAR}`, decrypts `{cipher}`, and
/// records every leaf in `flat`.
pub(super) struct Resolver<'a> {
    pub(super) env: &'a HashMap<String, String>,
    pub(super) redactor: &'a Redactor,
    pub(super) cipher_key: Option<&'a CipherKey>,
    pub(super) cipher: Option<Cipher>,
    pub(super) interpolate: bool,
    pub(super) flat: BTreeMap<String, FlatEntry>,
}

impl Resolver<'_> {
    /// Resolves every value of `map`, a table at `prefix`.
    pub(super) fn table(
        &mut self,
        prefix: &str,
        map: Map<String, Value>,
    ) -> Result<Map<String, Value>, ConfigError> {
        let mut out = Map::new();
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(k, self.value(&path, v)?);
        }
        Ok(out)
    }

    fn value(&mut self, path: &str, v: Value) -> Result<Value, ConfigError> {
        let origin = v.origin().map(str::to_owned);
        let kind = match v.kind {
            ValueKind::Table(t) => ValueKind::Table(self.table(path, t)?),
            ValueKind::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, item) in a.into_iter().enumerate() {
                    out.push(self.value(&format!("{path}[{i}]"), item)?);
                }
                ValueKind::Array(out)
            }
            ValueKind::String(s) => {
                let mut secret = self.redactor.is_secret(path);
                let resolved = if s.starts_with(CIPHER_PREFIX) {
                    secret = true;
                    self.decrypt(path, &s)?
                } else if self.interpolate {
                    let i = interpolate(path, &s, self.env, self.redactor)?;
                    secret |= i.used_secret_var;
                    i.value
                } else {
                    s
                };
                self.leaf(path, resolved.clone(), origin.as_deref(), secret);
                ValueKind::String(resolved)
            }
            other => {
                let text = match &other {
                    ValueKind::Nil => "null".to_owned(),
                    k => k.to_string(),
                };
                self.leaf(path, text, origin.as_deref(), self.redactor.is_secret(path));
                other
            }
        };
        Ok(Value::new(origin.as_ref(), kind))
    }

    fn leaf(&mut self, path: &str, value: String, origin: Option<&str>, secret: bool) {
        let origin = Origin::decode(origin);
        self.flat.insert(
            path.to_owned(),
            FlatEntry {
                value,
                origin,
                secret,
            },
        );
    }

    fn decrypt(&mut self, path: &str, s: &str) -> Result<String, ConfigError> {
        if self.cipher.is_none() {
            let key = self.cipher_key.ok_or_else(|| ConfigError::Decrypt {
                key: path.to_owned(),
                reason: "no cipher key configured".to_owned(),
            })?;
            let cipher = key.resolve(self.env).map_err(|e| ConfigError::Decrypt {
                key: path.to_owned(),
                reason: e.to_string(),
            })?;
            self.cipher = Some(cipher);
        }
        let cipher = self
            .cipher
            .as_ref()
            .ok_or_else(|| ConfigError::Other("cipher unavailable".to_owned()))?;
        cipher.decrypt(s).map_err(|reason| ConfigError::Decrypt {
            key: path.to_owned(),
            reason,
        })
    }
}
