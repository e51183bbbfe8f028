//! The audit trail: one [`AuditRecord`] per accepted configuration change.
//!
//! A record carries the time, the application, what triggered the change
//! (start-up, a file, a remote source, `reload()`), and the keys added,
//! changed and removed with their old and new values and origins. Secret
//! values are already `[REDACTED]` in the record, so a sink can write it
//! anywhere. Sinks: [`JsonLinesSink`] (one JSON object per line, appended to
//! a file), [`TracingSink`] (an `info` event on target `msp_config::audit`),
//! or any `Fn(&AuditRecord)`.
//!
//! # Example
//!
//! ```
//! use msp_config::{AuditRecord, JsonLinesSink, Loader, Watched};
//! use std::collections::HashMap;
//!
//! #[derive(serde::Deserialize)]
//! struct Cfg { greeting: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = dir.path().join("audit.jsonl");
//! let env = HashMap::from([("APP__GREETING".to_owned(), "hi".to_owned())]);
//! let cfg = Watched::<Cfg>::builder(Loader::new("app").no_files().env_map(env))
//!     .audit(JsonLinesSink::open(&log)?)
//!     .audit(|r: &AuditRecord| println!("{r}"))
//!     .start()
//!     .await?;
//! let line = std::fs::read_to_string(&log)?;
//! assert!(line.contains(r#""key":"greeting""#));
//! # drop(cfg); Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::loader::FlatEntry;

/// What caused a (re)load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// The first load at start-up.
    Initial,
    /// A change in a watched configuration directory.
    File(PathBuf),
    /// A remote source reported new data.
    Remote(String),
    /// [`Watched::reload`](crate::Watched::reload).
    Manual,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Initial => f.write_str("initial load"),
            Trigger::File(p) => write!(f, "file {}", p.display()),
            Trigger::Remote(s) => f.write_str(s),
            Trigger::Manual => f.write_str("reload()"),
        }
    }
}

/// One key's change. Secret values read `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// The dotted key path.
    pub key: String,
    /// The value before (absent for an added key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The value after (absent for a removed key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// Who supplies the value now (or supplied it, for a removed key).
    pub origin: String,
}

/// One accepted configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When it was accepted (RFC 3339, UTC, in JSON).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The application.
    pub app: String,
    /// What caused it.
    pub trigger: Trigger,
    /// Keys that appeared.
    pub added: Vec<KeyChange>,
    /// Keys whose value changed.
    pub changed: Vec<KeyChange>,
    /// Keys that disappeared.
    pub removed: Vec<KeyChange>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

impl AuditRecord {
    /// Compares two flattened configurations.
    pub(crate) fn diff(
        app: &str,
        trigger: Trigger,
        old: &BTreeMap<String, FlatEntry>,
        new: &BTreeMap<String, FlatEntry>,
    ) -> AuditRecord {
        let mut added = Vec::new();
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for (k, n) in new {
            match old.get(k) {
                None => added.push(KeyChange {
                    key: k.clone(),
                    old: None,
                    new: Some(n.shown()),
                    origin: n.origin.to_string(),
                }),
                Some(o) if o.value != n.value => changed.push(KeyChange {
                    key: k.clone(),
                    old: Some(if n.secret { n.shown() } else { o.shown() }),
                    new: Some(if o.secret { o.shown() } else { n.shown() }),
                    origin: n.origin.to_string(),
                }),
                Some(_) => {}
            }
        }
        for (k, o) in old {
            if !new.contains_key(k) {
                removed.push(KeyChange {
                    key: k.clone(),
                    old: Some(o.shown()),
                    new: None,
                    origin: o.origin.to_string(),
                });
            }
        }
        AuditRecord {
            time: SystemTime::now(),
            app: app.to_owned(),
            trigger,
            added,
            changed,
            removed,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for AuditRecord {
    /// `config change (file config/app.yaml): ~log.level: info -> debug, +a: 1, -b`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config change ({}):", self.trigger)?;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { " " } else { ", " };
            first = false;
            f.write_str(s)
        };
        for c in &self.changed {
            sep(f)?;
            write!(
                f,
                "~{}: {} -> {}",
                c.key,
                c.old.as_deref().unwrap_or(""),
                c.new.as_deref().unwrap_or("")
            )?;
        }
        for c in &self.added {
            sep(f)?;
            write!(f, "+{}: {}", c.key, c.new.as_deref().unwrap_or(""))?;
        }
        for c in &self.removed {
            sep(f)?;
            write!(f, "-{}", c.key)?;
        }
        Ok(())
    }
}

/// Receives every accepted change.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one change. Sinks report their own failures (for example by
    /// logging); they must not block for long.
    fn record(&self, record: &AuditRecord);
}

impl<F: Fn(&AuditRecord) + Send + Sync + 'static> AuditSink for F {
    fn record(&self, record: &AuditRecord) {
        self(record)
    }
}

/// Appends each record as one JSON line to a file.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl JsonLinesSink {
    /// Opens (creating, appending to) `path`.
    ///
    /// # Errors
    ///
    /// The I/O error of opening the file.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(JsonLinesSink {
            path,
            file: Mutex::new(file),
        })
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, record: &AuditRecord) {
        let mut line = record.to_json();
        line.push('\n');
        let result = match self.file.lock() {
            Ok(mut f) => f.write_all(line.as_bytes()).and_then(|()| f.flush()),
            Err(poisoned) => {
                let mut f = poisoned.into_inner();
                f.write_all(line.as_bytes()).and_then(|()| f.flush())
            }
        };
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write config audit record");
        }
    }
}

/// Emits each record as a `tracing` `info` event on target
/// `msp_config::audit`, with the JSON record in field `record`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn record(&self, record: &AuditRecord) {
        tracing::info!(target: "msp_config::audit", app = %record.app, trigger = %record.trigger, record = %record.to_json(), "{record}");
    }
}
