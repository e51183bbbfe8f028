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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use config::{Config, FileFormat, Map, Source, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, Origin};
use crate::remote::Remote;
use crate::secret::{CipherKey, REDACTED, Redactor};

mod merge;
mod resolve;
mod snapshot;

use self::merge::retag;
pub(crate) use self::snapshot::FlatEntry;

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
    /// [`ConfigError::Argument`] when `--set` lacks its value or its `=`.
    pub fn args<I, S>(mut self, args: I) -> Result<Self, ConfigError>
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
                    .ok_or_else(|| ConfigError::Argument(format!("{flag} needs a value")))?,
            };
            if flag == "--profile" {
                self.profiles = Some(split_profiles(&value));
            } else {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    ConfigError::Argument(format!("--set {value}: expected key=value"))
                })?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(ConfigError::Argument(format!("--set {value}: empty key")));
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
    /// Any [`ConfigError`]; [`ConfigError::Other`] when remote sources were added (use
    /// [`load`](Loader::load)).
    pub fn load_sync<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        if !self.remotes.is_empty() {
            return Err(ConfigError::Other(
                "remote sources need the async `Loader::load`".to_owned(),
            ));
        }
        self.snapshot(&[])?.extract()
    }

    /// Fetches the remote sources (with their start-up policy) and loads.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`].
    pub async fn load<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
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
}

fn split_profiles(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}
