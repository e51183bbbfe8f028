//! The environment document (Spring Cloud Config's JSON) and how it is
//! built from a backend's files: Spring Boot's file order, flattened keys,
//! server-side decryption of `{cipher}` values.

use config::{FileFormat, Format, Value, ValueKind};
use serde::{Deserialize, Serialize};

use super::backend::Snapshot;
use super::error::ConfigServerError;
use crate::secret::{CIPHER_PREFIX, Cipher};

/// Spring Cloud Config's environment document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// The application name.
    pub name: String,
    /// The requested profiles.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The label used, if any.
    #[serde(default)]
    pub label: Option<String>,
    /// The version: the commit id on the git backend, `null` on the directory backend.
    #[serde(default)]
    pub version: Option<String>,
    /// Backend state; always `null` (Spring uses it for Vault).
    #[serde(default)]
    pub state: Option<String>,
    /// The property sources, highest precedence first.
    #[serde(default)]
    pub property_sources: Vec<PropertySource>,
}

/// One file's flattened properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertySource {
    /// Where they came from (`file:main/shop-prod.yaml`).
    pub name: String,
    /// Flattened keys (`db.pool.max_size`, `servers[0]`) to scalar values.
    pub source: serde_json::Map<String, serde_json::Value>,
}

const EXTENSIONS: [(&str, FileFormat); 4] = [
    ("yml", FileFormat::Yaml),
    ("yaml", FileFormat::Yaml),
    ("toml", FileFormat::Toml),
    ("json", FileFormat::Json),
];

/// Builds the environment of `app` with `profiles` from one snapshot.
///
/// Spring Boot's order, highest first: profile-specific files over the
/// rest (last profile first), the application's over the shared.
pub(crate) fn resolve(
    snapshot: &dyn Snapshot,
    app: &str,
    profiles: &[&str],
    label: Option<String>,
    shared: &str,
) -> Result<Environment, ConfigServerError> {
    let mut stems: Vec<String> = Vec::new();
    for p in profiles.iter().rev() {
        stems.push(format!("{app}-{p}"));
        if app != shared {
            stems.push(format!("{shared}-{p}"));
        }
    }
    stems.push(app.to_owned());
    if app != shared {
        stems.push(shared.to_owned());
    }
    let mut sources = Vec::new();
    for stem in &stems {
        for (ext, format) in EXTENSIONS {
            let file = format!("{stem}.{ext}");
            let Some(text) = snapshot.read(&file)? else {
                continue;
            };
            let name = snapshot.source_name(&file);
            let map = format
                .parse(None, &text)
                .map_err(|e| ConfigServerError::File(format!("{name}: {e}")))?;
            let mut source = serde_json::Map::new();
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                flatten(&k, v, &mut source);
            }
            sources.push(PropertySource { name, source });
        }
    }
    Ok(Environment {
        name: app.to_owned(),
        profiles: if profiles.is_empty() {
            vec!["default".to_owned()]
        } else {
            profiles.iter().map(|p| (*p).to_owned()).collect()
        },
        label,
        version: snapshot.version(),
        state: None,
        property_sources: sources,
    })
}

/// The value Spring serves in place of one it cannot decrypt.
pub(crate) const NOT_APPLICABLE: &str = "<n/a>";

/// Decrypts every `{cipher}` string value in place, as Spring Cloud
/// Config's server does: a value that cannot be decrypted is removed and
/// `invalid.{key}` = `<n/a>` is added, so cipher text is never handed out
/// as if it were the password.
pub(crate) fn decrypt(env: &mut Environment, cipher: &Cipher) {
    for ps in &mut env.property_sources {
        let sealed: Vec<String> = ps
            .source
            .iter()
            .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(CIPHER_PREFIX)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in sealed {
            let Some(serde_json::Value::String(text)) = ps.source.remove(&key) else {
                continue;
            };
            match cipher.decrypt(&text) {
                Ok(plain) => {
                    ps.source.insert(key, plain.into());
                }
                Err(e) => {
                    tracing::warn!(source = %ps.name, key = %key, error = %e, "config server cannot decrypt a {{cipher}} value; serving invalid.{key} = <n/a>");
                    ps.source
                        .insert(format!("invalid.{key}"), NOT_APPLICABLE.into());
                }
            }
        }
    }
}

/// Flattens a value into `a.b[0].c` keys.
fn flatten(prefix: &str, v: Value, out: &mut serde_json::Map<String, serde_json::Value>) {
    match v.kind {
        ValueKind::Table(t) => {
            let mut entries: Vec<_> = t.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        ValueKind::Array(a) => {
            for (i, v) in a.into_iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        ValueKind::Nil => {
            out.insert(prefix.to_owned(), serde_json::Value::Null);
        }
        ValueKind::Boolean(b) => {
            out.insert(prefix.to_owned(), b.into());
        }
        ValueKind::I64(i) => {
            out.insert(prefix.to_owned(), i.into());
        }
        ValueKind::I128(i) => {
            out.insert(
                prefix.to_owned(),
                i64::try_from(i).map_or_else(|_| i.to_string().into(), Into::into),
            );
        }
        ValueKind::U64(u) => {
            out.insert(prefix.to_owned(), u.into());
        }
        ValueKind::U128(u) => {
            out.insert(
                prefix.to_owned(),
                u64::try_from(u).map_or_else(|_| u.to_string().into(), Into::into),
            );
        }
        ValueKind::Float(f) => {
            out.insert(
                prefix.to_owned(),
                serde_json::Number::from_f64(f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
            );
        }
        ValueKind::String(s) => {
            out.insert(prefix.to_owned(), s.into());
        }
    }
}
