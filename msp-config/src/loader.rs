//! The layered loader: defaults, files, profiles, remote sources,
//! environment and command line, merged by [config-rs](config) and
//! extracted into your serde type.
//!
//! # Layers and precedence
//!
//! From lowest to highest precedence by default ([`Layer::DEFAULT_ORDER`]):
//!
//! | layer | what |
//! |---|---|
//! | [`Layer::Defaults`] | [`Loader::defaults`], usually `T::default()` |
//! | [`Layer::Files`] | `{dir}/{app}.yaml`, `.yml`, `.toml`, `.json` (each that exists, in that order) |
//! | [`Layer::ProfileFiles`] | `{dir}/{app}-{profile}.*` for each active profile, in order |
//! | [`Layer::Remote`] | each [`Remote`] in the order added (etcd, config server) |
//! | [`Layer::Env`] | `{PREFIX}__{A}__{B}…` environment variables |
//! | [`Layer::CommandLine`] | `--set a.b=value` |
//!
//! [`Loader::precedence`] reorders them (for example Viper's order puts
//! remote key/value stores below files).
//!
//! # Environment variables
//!
//! The prefix (default: the app name upper-cased, `-` → `_`) is followed by
//! `__`, and **levels are separated by a double underscore**, so a single `_`
//! stays inside a key: `SHOP__DB__POOL__MAX_SIZE=20` sets `db.pool.max_size`.
//! Keys are lower-cased (file keys keep their case), so only lower-case
//! (`snake_case`) fields can be set from the environment: a `maxSize` key is
//! out of reach of `SHOP__MAXSIZE`; use `--set maxSize=…` or rename the
//! field. Variables with a single `_` after the prefix, such as
//! `SHOP_PROFILE` or `SHOP_CONFIG_KEY`, are never read as keys.
//!
//! # Profiles
//!
//! Active profiles come from [`Loader::profile`], else from
//! `--profile NAME` given to [`Loader::args`], else from the variable
//! `{PREFIX}_PROFILE` (comma-separated, e.g. `SHOP_PROFILE=prod,eu`).
//!
//! # Example
//!
//! ```
//! use msp_config::Loader;
//! use std::collections::HashMap;
//!
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! #[serde(default)]
//! struct Pool { max_size: u32, min_idle: u32 }
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! #[serde(default)]
//! struct Db { url: String, pool: Pool }
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! #[serde(default)]
//! struct Cfg { db: Db, port: u16 }
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("shop.yaml"), "port: 8080\ndb:\n  url: pg://base\n  pool:\n    max_size: 5\n")?;
//! std::fs::write(dir.path().join("shop-prod.yaml"), "db:\n  url: pg://prod\n")?;
//!
//! let env = HashMap::from([
//!     ("SHOP_PROFILE".to_owned(), "prod".to_owned()),
//!     ("SHOP__DB__POOL__MAX_SIZE".to_owned(), "20".to_owned()),
//! ]);
//! let cfg: Cfg = Loader::new("shop")
//!     .dir(dir.path())
//!     .defaults(&Cfg { port: 80, ..Cfg::default() })
//!     .env_map(env)
//!     .args(["--set", "db.pool.min_idle=2"])?
//!     .load_sync()?;
//! assert_eq!(cfg.port, 8080);                // file over defaults
//! assert_eq!(cfg.db.url, "pg://prod");       // profile file over base file
//! assert_eq!(cfg.db.pool.max_size, 20);      // env over files
//! assert_eq!(cfg.db.pool.min_idle, 2);       // command line
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, FileFormat, Format, Map, Source, Value, ValueKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Origin};
use crate::remote::{Remote, RemoteData};
use crate::secret::{CIPHER_PREFIX, Cipher, CipherKey, REDACTED, Redactor, interpolate};

/// One layer of configuration; see the [module docs](self) for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// In-code defaults.
    Defaults,
    /// `{app}.{yaml,yml,toml,json}`.
    Files,
    /// `{app}-{profile}.*`.
    ProfileFiles,
    /// Remote sources (etcd, config server).
    Remote,
    /// `PREFIX__A__B` environment variables.
    Env,
    /// `--set key=value` overrides.
    CommandLine,
}

impl Layer {
    /// Lowest to highest: defaults, files, profile files, remote,
    /// environment, command line.
    pub const DEFAULT_ORDER: [Layer; 6] = [
        Layer::Defaults,
        Layer::Files,
        Layer::ProfileFiles,
        Layer::Remote,
        Layer::Env,
        Layer::CommandLine,
    ];
}

const EXTENSIONS: [(&str, FileFormat); 4] = [
    ("yaml", FileFormat::Yaml),
    ("yml", FileFormat::Yaml),
    ("toml", FileFormat::Toml),
    ("json", FileFormat::Json),
];

/// Builds and loads a layered configuration. See the [module docs](self).
///
/// Its `Debug` output shows no values that could be secret: the injected
/// environment by variable names only, `--set` overrides with secret-looking
/// keys redacted, and the defaults not at all.
#[derive(Clone)]
#[must_use]
pub struct Loader {
    app: String,
    dirs: Vec<PathBuf>,
    default_dirs: bool,
    profiles: Option<Vec<String>>,
    profile_var: String,
    env_prefix: String,
    env: Option<HashMap<String, String>>,
    overrides: Vec<(String, String)>,
    defaults: Option<Result<Map<String, Value>, String>>,
    pub(crate) remotes: Vec<Remote>,
    order: Vec<Layer>,
    cipher_key: Option<CipherKey>,
    redactor: Redactor,
    interpolate: bool,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The injected environment may hold the cipher key and passwords,
        // overrides and defaults may hold secrets: show names, not values.
        let env = self.env.as_ref().map(|e| {
            let mut names: Vec<&str> = e.keys().map(String::as_str).collect();
            names.sort_unstable();
            names
        });
        let overrides: Vec<String> = self
            .overrides
            .iter()
            .map(|(k, v)| {
                if self.redactor.is_secret(k) {
                    format!("{k}={REDACTED}")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        f.debug_struct("Loader")
            .field("app", &self.app)
            .field("dirs", &self.dirs)
            .field("profiles", &self.profiles)
            .field("profile_var", &self.profile_var)
            .field("env_prefix", &self.env_prefix)
            .field("env_vars", &env)
            .field("overrides", &overrides)
            .field("defaults", &self.defaults.as_ref().map(|_| REDACTED))
            .field("remotes", &self.remotes)
            .field("order", &self.order)
            .field("cipher_key", &self.cipher_key)
            .field("redactor", &self.redactor)
            .field("interpolate", &self.interpolate)
            .finish()
    }
}

impl Loader {
    /// A loader for application `app`: files in `./config`, environment
    /// prefix and profile variable derived from `app` (`my-app` →
    /// `MY_APP__…`, `MY_APP_PROFILE`), default precedence, `${VAR}`
    /// interpolation on, cipher key from `{PREFIX}_CONFIG_KEY` when set.
    pub fn new(app: impl Into<String>) -> Self {
        let app = app.into();
        let prefix = app.to_uppercase().replace(['-', '.'], "_");
        Loader {
            dirs: vec![PathBuf::from("config")],
            default_dirs: true,
            profiles: None,
            profile_var: format!("{prefix}_PROFILE"),
            cipher_key: Some(CipherKey::Env(format!("{prefix}_CONFIG_KEY"))),
            env_prefix: prefix,
            env: None,
            overrides: Vec::new(),
            defaults: None,
            remotes: Vec::new(),
            order: Layer::DEFAULT_ORDER.to_vec(),
            redactor: Redactor::default(),
            interpolate: true,
            app,
        }
    }

    /// The application name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Reads files from `dir` instead of `./config`. Call again to add
    /// more directories (later ones win).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        if std::mem::take(&mut self.default_dirs) {
            self.dirs.clear();
        }
        self.dirs.push(dir.into());
        self
    }

    /// Reads no files at all.
    pub fn no_files(mut self) -> Self {
        self.default_dirs = false;
        self.dirs.clear();
        self
    }

    /// The directories files are read from.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Activates these profiles (comma-separated, later ones win), ignoring
    /// the profile variable.
    pub fn profile(mut self, profiles: impl AsRef<str>) -> Self {
        self.profiles = Some(split_profiles(profiles.as_ref()));
        self
    }

    /// The environment variable naming the active profiles (default
    /// `{PREFIX}_PROFILE`).
    pub fn profile_var(mut self, var: impl Into<String>) -> Self {
        self.profile_var = var.into();
        self
    }

    /// The environment-variable prefix (default: the app name upper-cased).
    /// Variables are `{prefix}__{A}__{B}`.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = prefix.into();
        self
    }

    /// Reads variables from this map instead of the process environment
    /// (for tests, and for `${VAR}` interpolation and the cipher key too).
    pub fn env_map(mut self, env: HashMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Overrides one key, as `--set key=value` does.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Reads `--set key=value` (or `--set=key=value`) overrides and
    /// `--profile NAME` (or `--profile=NAME`) from command-line arguments
    /// (without the program name). Other arguments are left to the
    /// application and ignored here.
    ///
    /// # Errors
    ///
    /// [`Error::Argument`] when `--set` lacks its value or its `=`.
    pub fn args<I, S>(mut self, args: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg.as_ref();
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f == "--set" || f == "--profile" => (f, Some(v.to_owned())),
                _ => (arg, None),
            };
            if flag != "--set" && flag != "--profile" {
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .map(|v| v.as_ref().to_owned())
                    .ok_or_else(|| Error::Argument(format!("{flag} needs a value")))?,
            };
            if flag == "--profile" {
                self.profiles = Some(split_profiles(&value));
            } else {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| Error::Argument(format!("--set {value}: expected key=value")))?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(Error::Argument(format!("--set {value}: empty key")));
                }
                self.overrides.push((k.to_owned(), v.to_owned()));
            }
        }
        Ok(self)
    }

    /// The lowest layer: every field of `defaults`. A value that cannot be
    /// serialized is reported when loading.
    pub fn defaults<T: Serialize>(mut self, defaults: &T) -> Self {
        let map = Config::try_from(defaults)
            .and_then(|c| c.collect())
            .map(|m| retag(m, &Origin::Defaults.encode()))
            .map_err(|e| e.to_string());
        self.defaults = Some(map);
        self
    }

    /// Adds a remote source (after earlier ones, so it wins over them).
    /// Remote sources need [`load`](Loader::load) (async) or
    /// [`Watched`](crate::Watched).
    pub fn remote(mut self, remote: Remote) -> Self {
        self.remotes.push(remote);
        self
    }

    /// Sets the precedence, lowest first. Layers left out are not read.
    pub fn precedence(mut self, order: impl IntoIterator<Item = Layer>) -> Self {
        self.order = order.into_iter().collect();
        self
    }

    /// Where the AES-256-GCM key for `{cipher}` values comes from (default:
    /// the variable `{PREFIX}_CONFIG_KEY`).
    pub fn cipher_key(mut self, key: CipherKey) -> Self {
        self.cipher_key = Some(key);
        self
    }

    /// Which keys are secret (redacted in errors and audit records).
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The redactor in use.
    pub fn redactor_ref(&self) -> &Redactor {
        &self.redactor
    }

    /// Turns `${VAR}` interpolation on or off (default on).
    pub fn interpolation(mut self, on: bool) -> Self {
        self.interpolate = on;
        self
    }

    /// Loads without remote sources.
    ///
    /// # Errors
    ///
    /// Any [`Error`]; [`Error::Other`] when remote sources were added (use
    /// [`load`](Loader::load)).
    pub fn load_sync<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.remotes.is_empty() {
            return Err(Error::Other(
                "remote sources need the async `Loader::load`".to_owned(),
            ));
        }
        self.snapshot(&[])?.extract()
    }

    /// Fetches the remote sources (with their start-up policy) and loads.
    ///
    /// # Errors
    ///
    /// Any [`Error`].
    pub async fn load<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let mut remote = Vec::with_capacity(self.remotes.len());
        for r in &self.remotes {
            remote.push(Some(Arc::new(r.initial_fetch().await?)));
        }
        self.snapshot(&remote)?.extract()
    }

    /// The process environment or the injected map.
    fn env(&self) -> HashMap<String, String> {
        match &self.env {
            Some(e) => e.clone(),
            // `std::env::vars` panics on a variable that is not UTF-8;
            // such variables cannot be configuration, so skip them.
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// The active profiles.
    pub fn active_profiles(&self) -> Vec<String> {
        self.active_profiles_in(&self.env())
    }

    fn active_profiles_in(&self, env: &HashMap<String, String>) -> Vec<String> {
        match &self.profiles {
            Some(p) => p.clone(),
            None => env
                .get(&self.profile_var)
                .map(|v| split_profiles(v))
                .unwrap_or_default(),
        }
    }

    /// Merges every layer (with the given remote data, one entry per
    /// [`Remote`], `None` for one never fetched) and resolves secrets.
    pub(crate) fn snapshot(&self, remote: &[Option<Arc<RemoteData>>]) -> Result<Snapshot, Error> {
        let env = self.env();
        let profiles = self.active_profiles_in(&env);
        let mut files = HashMap::new();
        let mut builder = Config::builder();
        for layer in &self.order {
            match layer {
                Layer::Defaults => {
                    if let Some(d) = &self.defaults {
                        let map = d
                            .clone()
                            .map_err(|e| Error::Other(format!("cannot serialize defaults: {e}")))?;
                        builder = builder.add_source(MapSource(map));
                    }
                }
                Layer::Files => {
                    for dir in &self.dirs {
                        builder = self.add_files(builder, dir, &self.app, &mut files)?;
                    }
                }
                Layer::ProfileFiles => {
                    for p in &profiles {
                        for dir in &self.dirs {
                            builder = self.add_files(
                                builder,
                                dir,
                                &format!("{}-{p}", self.app),
                                &mut files,
                            )?;
                        }
                    }
                }
                Layer::Remote => {
                    for (r, data) in self.remotes.iter().zip(remote) {
                        if let Some(data) = data {
                            builder = builder.add_source(MapSource(data.to_map(&r.name())));
                        }
                    }
                }
                Layer::Env => builder = builder.add_source(MapSource(self.env_layer(&env)?)),
                Layer::CommandLine => {
                    let map = self
                        .overrides
                        .iter()
                        .map(|(k, v)| {
                            let origin = Origin::CommandLine { key: k.clone() }.encode();
                            (k.clone(), Value::new(Some(&origin), v.as_str()))
                        })
                        .collect();
                    builder = builder.add_source(MapSource(map));
                }
            }
        }
        let merged = builder
            .build()
            .and_then(|c| c.collect())
            .map_err(|e| Error::Other(e.to_string()))?;

        let mut resolver = Resolver {
            env: &env,
            redactor: &self.redactor,
            cipher_key: self.cipher_key.as_ref(),
            cipher: None,
            interpolate: self.interpolate,
            flat: BTreeMap::new(),
        };
        let tree = resolver.table("", merged)?;
        let flat = resolver.flat;
        Ok(Snapshot {
            tree,
            flat,
            files: Arc::new(files),
            redactor: self.redactor.clone(),
        })
    }

    fn add_files(
        &self,
        mut builder: config::ConfigBuilder<config::builder::DefaultState>,
        dir: &Path,
        stem: &str,
        files: &mut HashMap<PathBuf, (String, FileFormat)>,
    ) -> Result<config::ConfigBuilder<config::builder::DefaultState>, Error> {
        for (ext, format) in EXTENSIONS {
            let path = dir.join(format!("{stem}.{ext}"));
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Io { path, source }),
            };
            let origin = Origin::File {
                path: path.clone(),
                line: None,
            }
            .encode();
            let map = format
                .parse(Some(&origin), &text)
                .map_err(|e| Error::Parse {
                    path: path.clone(),
                    message: without_source_excerpt(&e.to_string()),
                })?;
            builder = builder.add_source(MapSource(map));
            files.insert(path, (text, format));
        }
        Ok(builder)
    }

    /// The environment layer, via config-rs's `Environment` (which does the
    /// prefix and `__` splitting), with each value's origin set to its
    /// variable's name.
    fn env_layer(&self, env: &HashMap<String, String>) -> Result<Map<String, Value>, Error> {
        let source: Map<String, String> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let collected = config::Environment::with_prefix(&self.env_prefix)
            .prefix_separator("__")
            .separator("__")
            .source(Some(source))
            .collect()
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut out = Map::new();
        for (key, value) in collected {
            let wanted = format!("{}__{}", self.env_prefix, key.replace('.', "__"));
            let var = env
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&wanted))
                .cloned()
                .unwrap_or(wanted);
            let origin = Origin::Env { var }.encode();
            out.insert(key, Value::new(Some(&origin), value.kind));
        }
        Ok(out)
    }
}

/// Drops the excerpt of the offending line some parsers (TOML) append to
/// their message, so a secret written on that line cannot reach logs or
/// the change stream; line and column stay in the message.
fn without_source_excerpt(message: &str) -> String {
    let is_excerpt = |line: &str| {
        let t = line.trim_start();
        let t = t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        t.trim_start().starts_with('|')
    };
    message
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_excerpt(l))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

fn split_profiles(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sets `origin` on every value of a tree.
fn retag(map: Map<String, Value>, origin: &str) -> Map<String, Value> {
    map.into_iter()
        .map(|(k, v)| (k, retag_value(v, origin)))
        .collect()
}

fn retag_value(v: Value, origin: &str) -> Value {
    let origin = origin.to_owned();
    let kind = match v.kind {
        ValueKind::Table(t) => ValueKind::Table(retag(t, &origin)),
        ValueKind::Array(a) => {
            ValueKind::Array(a.into_iter().map(|v| retag_value(v, &origin)).collect())
        }
        other => other,
    };
    Value::new(Some(&origin), kind)
}

/// A config-rs source serving a prepared map (keys may be dotted paths).
#[derive(Debug, Clone)]
pub(crate) struct MapSource(pub(crate) Map<String, Value>);

impl Source for MapSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

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
    tree: Map<String, Value>,
    pub(crate) flat: BTreeMap<String, FlatEntry>,
    files: Arc<HashMap<PathBuf, (String, FileFormat)>>,
    redactor: Redactor,
}

impl Snapshot {
    /// Deserializes the tree into `T`, turning config-rs errors into errors
    /// that name key, expected type and origin (file and line).
    pub(crate) fn extract<T: DeserializeOwned>(&self) -> Result<T, Error> {
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

    fn convert(&self, e: config::ConfigError) -> Error {
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
                Error::InvalidValue {
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
                        Error::InvalidValue {
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
                        Error::Invalid {
                            origin: self.origin_of(origin.as_deref(), &key),
                            key,
                            message,
                        }
                    }
                }
            }
            CE::NotFound(key) => Error::Invalid {
                key,
                message: "required key is missing (no layer sets it)".to_owned(),
                origin: None,
            },
            CE::Message(message) => Error::Invalid {
                key: String::new(),
                message,
                origin: None,
            },
            other => Error::Other(other.to_string()),
        }
    }
}

/// Walks the merged tree: interpolates `${VAR}`, decrypts `{cipher}`, and
/// records every leaf in `flat`.
struct Resolver<'a> {
    env: &'a HashMap<String, String>,
    redactor: &'a Redactor,
    cipher_key: Option<&'a CipherKey>,
    cipher: Option<Cipher>,
    interpolate: bool,
    flat: BTreeMap<String, FlatEntry>,
}

impl Resolver<'_> {
    fn table(
        &mut self,
        prefix: &str,
        map: Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
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

    fn value(&mut self, path: &str, v: Value) -> Result<Value, Error> {
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

    fn decrypt(&mut self, path: &str, s: &str) -> Result<String, Error> {
        if self.cipher.is_none() {
            let key = self.cipher_key.ok_or_else(|| Error::Decrypt {
                key: path.to_owned(),
                reason: "no cipher key configured".to_owned(),
            })?;
            let cipher = key.resolve(self.env).map_err(|e| Error::Decrypt {
                key: path.to_owned(),
                reason: e.to_string(),
            })?;
            self.cipher = Some(cipher);
        }
        let cipher = self
            .cipher
            .as_ref()
            .ok_or_else(|| Error::Other("cipher unavailable".to_owned()))?;
        cipher.decrypt(s).map_err(|reason| Error::Decrypt {
            key: path.to_owned(),
            reason,
        })
    }
}
