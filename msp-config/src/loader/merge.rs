//! Merging the layers: files, profile files, remote data, environment and
//! command line become config-rs sources, each value tagged with its
//! [`Origin`], and the merged tree is resolved into a [`Snapshot`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, FileFormat, Format, Map, Source, Value, ValueKind};

use super::resolve::Resolver;
use super::snapshot::Snapshot;
use super::{EXTENSIONS, Layer, Loader};
use crate::error::{ConfigError, Origin};
use crate::remote::RemoteData;

impl Loader {
    /// Merges every layer (with the given remote data, one entry per
    /// [`Remote`], `None` for one never fetched) and resolves secrets.
    pub(crate) fn snapshot(
        &self,
        remote: &[Option<Arc<RemoteData>>],
    ) -> Result<Snapshot, ConfigError> {
        let env = self.env();
        let profiles = self.active_profiles_in(&env);
        let mut files = HashMap::new();
        let mut builder = Config::builder();
        for layer in &self.order {
            match layer {
                Layer::Defaults => {
                    if let Some(d) = &self.defaults {
                        let map = d.clone().map_err(|e| {
                            ConfigError::Other(format!("cannot serialize defaults: {e}"))
                        })?;
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
            .map_err(|e| ConfigError::Other(e.to_string()))?;

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
    ) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
        for (ext, format) in EXTENSIONS {
            let path = dir.join(format!("{stem}.{ext}"));
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ConfigError::Io { path, source }),
            };
            let origin = Origin::File {
                path: path.clone(),
                line: None,
            }
            .encode();
            let map = format
                .parse(Some(&origin), &text)
                .map_err(|e| ConfigError::Parse {
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
    fn env_layer(&self, env: &HashMap<String, String>) -> Result<Map<String, Value>, ConfigError> {
        let source: Map<String, String> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let collected = config::Environment::with_prefix(&self.env_prefix)
            .prefix_separator("__")
            .separator("__")
            .source(Some(source))
            .collect()
            .map_err(|e| ConfigError::Other(e.to_string()))?;
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

/// Sets `origin` on every value of a tree.
pub(super) fn retag(map: Map<String, Value>, origin: &str) -> Map<String, Value> {
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
