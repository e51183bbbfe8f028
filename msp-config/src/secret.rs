//! Secrets: `${VAR}` interpolation, `{cipher}` values, redaction and the
//! [`Secret`] wrapper.
//!
//! - **Interpolation.** In every string value, `${VAR}` is replaced by the
//!   environment variable `VAR` (from the loader's environment, so tests can
//!   inject one) and `${VAR:-default}` falls back to `default` when `VAR` is
//!   unset or empty. `$${` writes a literal `${`. An unset variable without a
//!   default is an error naming the key.
//! - **Encryption.** A string value `{cipher}BASE64` is decrypted with
//!   AES-256-GCM. `BASE64` (standard alphabet, padded) encodes
//!   `nonce (12 bytes) || ciphertext || tag (16 bytes)`; the key is 32 bytes,
//!   given as base64 or 64 hex digits in an environment variable or a key
//!   file ([`CipherKey`]). Encrypt with [`Cipher::encrypt`] or
//!   `cargo run -p msp-config --example encrypt -- VALUE`.
//! - **Redaction.** Decrypted values, values that interpolated a variable
//!   whose name looks secret (a word of it contains a pattern: `DB_PASSWORD`,
//!   `PGPASSWORD`), and keys whose name contains a secret-looking
//!   word (`password`, `secret`, `token`, `key`, … — see [`Redactor`]) are
//!   shown as `[REDACTED]` in errors and audit records. Wrap such fields in
//!   [`Secret`] so `Debug` and logs never show them either.
//!
//! # Example
//!
//! ```
//! use msp_config::secret::{Cipher, Secret};
//!
//! let cipher = Cipher::new([7u8; 32]);
//! let sealed = cipher.encrypt("hunter2");
//! assert!(sealed.starts_with("{cipher}"));
//! assert_eq!(cipher.decrypt(&sealed).unwrap(), "hunter2");
//!
//! let password = Secret::new("hunter2".to_owned());
//! assert_eq!(format!("{password:?}"), "Secret([REDACTED])");
//! assert_eq!(password.expose(), "hunter2");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Deserializer};

use crate::ConfigError;

/// The text shown in place of a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// The prefix that marks an encrypted value.
pub const CIPHER_PREFIX: &str = "{cipher}";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A value that must not be shown: `Debug` and `Display` print
/// `[REDACTED]`; [`expose`](Secret::expose) gives the value.
///
/// It deserializes transparently from the inner type, so a configuration
/// struct can hold `password: Secret<String>`.
///
/// Audit records and errors redact by key, not by field type: a key is
/// redacted there when it was `{cipher}`-encrypted, interpolated a
/// secret-looking variable, or matches the [`Redactor`]. Name secret fields
/// accordingly (`password`, `token`, …) or add them with
/// [`Redactor::secret_key`].
///
/// ```
/// use msp_config::Secret;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Db { user: String, password: Secret<String> }
///
/// let db: Db = serde_json::from_str(r#"{"user":"app","password":"s3cr3t"}"#).unwrap();
/// assert_eq!(format!("{db:?}"), r#"Db { user: "app", password: Secret([REDACTED]) }"#);
/// assert_eq!(db.password.expose(), "s3cr3t");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Call this only where the value is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

/// Decides which keys hold secrets, by the words of their path.
///
/// A key is secret when one of its path segments, split into words at `_`,
/// `-` and camel-case boundaries, equals one of the patterns
/// (case-insensitive), or when it was added with
/// [`secret_key`](Redactor::secret_key). The default patterns are
/// `password`, `passwd`, `pwd`, `secret`, `token`, `key`, `credential(s)`,
/// `apikey`, `private`. So `db.password`, `api_key`, `auth.accessToken` are
/// secret; `keyspace` and `monkey` are not.
///
/// ```
/// use msp_config::secret::Redactor;
///
/// let r = Redactor::default().pattern("dsn").secret_key("payments.url");
/// assert!(r.is_secret("db.pool.password"));
/// assert!(r.is_secret("stripe.apiKey"));
/// assert!(r.is_secret("db.dsn"));
/// assert!(r.is_secret("payments.url"));
/// assert!(!r.is_secret("cassandra.keyspace"));
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Vec<String>,
    keys: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            patterns: [
                "password",
                "passwd",
                "pwd",
                "secret",
                "token",
                "key",
                "credential",
                "credentials",
                "apikey",
                "private",
            ]
            .map(str::to_owned)
            .to_vec(),
            keys: Vec::new(),
        }
    }
}

impl Redactor {
    /// A redactor with no patterns and no keys.
    pub fn empty() -> Self {
        Redactor {
            patterns: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Adds a word that marks a key as secret.
    #[must_use]
    pub fn pattern(mut self, word: impl Into<String>) -> Self {
        self.patterns.push(word.into().to_lowercase());
        self
    }

    /// Marks one exact key path (and everything under it) as secret.
    #[must_use]
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Whether the key path names a secret.
    pub fn is_secret(&self, key: &str) -> bool {
        if self.keys.iter().any(|k| {
            key == k
                || key
                    .strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        }) {
            return true;
        }
        key.split(['.', '[', ']'])
            .flat_map(words)
            .any(|w| self.patterns.contains(&w))
    }

    /// Whether an environment variable name looks secret (for values that
    /// interpolated it). Looser than [`is_secret`](Redactor::is_secret): a
    /// word only has to *contain* a pattern, because well-known variables
    /// glue words together (`PGPASSWORD`, `GITHUBTOKEN`); hiding a harmless
    /// value is cheaper than showing a password.
    pub(crate) fn is_secret_var(&self, var: &str) -> bool {
        words(var)
            .into_iter()
            .any(|w| self.patterns.iter().any(|p| w.contains(p.as_str())))
    }
}

/// Splits `dbPassword`, `db_password`, `db-password` into lowercase words.
fn words(segment: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in segment.chars() {
        if c == '_' || c == '-' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Where the AES-256 key for `{cipher}` values comes from.
///
/// The key is 32 bytes written as base64 (44 characters) or as 64 hex
/// digits; surrounding whitespace is ignored. Generate one with
/// `cargo run -p msp-config --example encrypt -- --new-key`.
#[derive(Clone)]
#[non_exhaustive]
pub enum CipherKey {
    /// Read from this environment variable (of the loader's environment).
    Env(String),
    /// Read from this file.
    File(PathBuf),
    /// This key.
    Bytes([u8; 32]),
}

impl fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CipherKey::Env(v) => f.debug_tuple("Env").field(v).finish(),
            CipherKey::File(p) => f.debug_tuple("File").field(p).finish(),
            CipherKey::Bytes(_) => f.write_str("Bytes([REDACTED])"),
        }
    }
}

impl CipherKey {
    /// Resolves the key. `env` is the environment the loader reads.
    pub(crate) fn resolve(&self, env: &HashMap<String, String>) -> Result<Cipher, ConfigError> {
        match self {
            CipherKey::Bytes(b) => Ok(Cipher::new(*b)),
            CipherKey::Env(var) => {
                let text = env.get(var).ok_or_else(|| {
                    ConfigError::CipherKey(format!("environment variable {var} is not set"))
                })?;
                Cipher::from_text(text).map_err(|e| ConfigError::CipherKey(format!("{var}: {e}")))
            }
            CipherKey::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::CipherKey(format!("{}: {e}", path.display())))?;
                Cipher::from_text(&text)
                    .map_err(|e| ConfigError::CipherKey(format!("{}: {e}", path.display())))
            }
        }
    }
}

/// AES-256-GCM encryption of configuration values (`{cipher}` format).
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

impl Cipher {
    /// A cipher with this 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        Cipher {
            aead: Aes256Gcm::new(&key.into()),
        }
    }

    /// Parses a key written as base64 or 64 hex digits.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
                .collect::<Result<Vec<u8>, String>>()?
        } else {
            STANDARD
                .decode(text)
                .map_err(|e| format!("key is neither 64 hex digits nor base64: {e}"))?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("key must be 32 bytes, got {}", b.len()))?;
        Ok(Cipher::new(key))
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// Encrypts `plaintext` with a random nonce; returns `{cipher}BASE64`.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption into a Vec cannot fail for inputs below 64 GiB.
        let ct = self
            .aead
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{CIPHER_PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a `{cipher}BASE64` value (the prefix is optional).
    pub fn decrypt(&self, value: &str) -> Result<String, String> {
        let b64 = value.strip_prefix(CIPHER_PREFIX).unwrap_or(value).trim();
        let raw = STANDARD
            .decode(b64)
            .map_err(|e| format!("not base64: {e}"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(format!(
                "too short ({} bytes; nonce and tag alone are {})",
                raw.len(),
                NONCE_LEN + TAG_LEN
            ));
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| "bad nonce".to_owned())?;
        let plain = self
            .aead
            .decrypt(&Nonce::from(nonce), ct)
            .map_err(|_| "authentication failed: wrong key or corrupted value".to_owned())?;
        String::from_utf8(plain).map_err(|_| "decrypted value is not UTF-8".to_owned())
    }
}

/// The result of interpolating one string.
pub(crate) struct Interpolated {
    pub(crate) value: String,
    /// Whether a variable with a secret-looking name was substituted.
    pub(crate) used_secret_var: bool,
}

/// Replaces `${VAR}` / `${VAR:-default}` in `input`; `$${` is a literal `${`.
pub(crate) fn interpolate(
    key: &str,
    input: &str,
    env: &HashMap<String, String>,
    redactor: &Redactor,
) -> Result<Interpolated, ConfigError> {
    if !input.contains("${") {
        return Ok(Interpolated {
            value: input.to_owned(),
            used_secret_var: false,
        });
    }
    let mut out = String::with_capacity(input.len());
    let mut used_secret_var = false;
    let mut rest = input;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            // `$${` → literal `${`
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::BadInterpolation {
                key: key.to_owned(),
            })?;
        let expr = &after[..end];
        let (var, default) = match expr.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (expr, None),
        };
        let var = var.trim();
        let found = env
            .get(var)
            .filter(|v| !(default.is_some() && v.is_empty()));
        match (found, default) {
            (Some(v), _) => {
                if redactor.is_secret_var(var) {
                    used_secret_var = true;
                }
                out.push_str(v);
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ConfigError::UnsetVariable {
                    key: key.to_owned(),
                    var: var.to_owned(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Interpolated {
        value: out,
        used_secret_var,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("HOST".to_owned(), "db.local".to_owned()),
            ("DB_PASSWORD".to_owned(), "pw".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ])
    }

    #[test]
    fn interpolation_forms() {
        let r = Redactor::default();
        let i = interpolate("k", "pg://${HOST}:${PORT:-5432}/x", &env(), &r)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.value, "pg://db.local:5432/x");
        assert!(!i.used_secret_var);
        let i =
            interpolate("k", "u:${DB_PASSWORD}@h", &env(), &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.value, "u:pw@h");
        assert!(i.used_secret_var);
        // Glued names (libpq's PGPASSWORD) count as secret too.
        assert!(r.is_secret_var("PGPASSWORD"));
        assert!(r.is_secret_var("GITHUBTOKEN"));
        assert!(!r.is_secret_var("HOST"));
        let i =
            interpolate("k", "${EMPTY:-d} $${HOST}", &env(), &r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.value, "d ${HOST}");
        let e = interpolate("db.url", "${NOPE}", &env(), &r)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "`db.url`: environment variable `NOPE` is not set (in `${NOPE}`; write `${NOPE:-default}` for a default)"
            )
        );
        assert!(matches!(
            interpolate("k", "${OPEN", &env(), &r),
            Err(ConfigError::BadInterpolation { .. })
        ));
    }

    #[test]
    fn redaction_words() {
        let r = Redactor::default();
        for k in [
            "db.password",
            "api_key",
            "auth.accessToken",
            "client-secret",
            "creds.credentials.user",
            "tls.private_key",
        ] {
            assert!(r.is_secret(k), "{k}");
        }
        for k in [
            "cassandra.keyspace",
            "monkey",
            "db.pool.max_size",
            "tokenizer.model",
        ] {
            assert!(!r.is_secret(k), "{k}");
        }
    }

    #[test]
    fn key_text_forms() {
        let hex = "00".repeat(32);
        assert!(Cipher::from_text(&hex).is_ok());
        assert!(Cipher::from_text(&Cipher::generate_key()).is_ok());
        assert!(Cipher::from_text("c2hvcnQ=").is_err());
        let c = Cipher::new([1; 32]);
        assert!(c.decrypt("{cipher}!!").is_err());
        assert!(c.decrypt("{cipher}AAAA").is_err());
        let other = Cipher::new([2; 32]);
        let sealed = c.encrypt("x");
        assert_eq!(
            other.decrypt(&sealed),
            Err("authentication failed: wrong key or corrupted value".to_owned())
        );
    }
}
