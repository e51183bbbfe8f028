//! A config server: a tower service answering Spring Cloud Config's
//! environment endpoint from a directory of YAML / TOML / JSON files.
//!
//! `GET /{application}/{profiles}` and `GET /{application}/{profiles}/{label}`
//! answer
//!
//! ```json
//! {"name":"shop","profiles":["prod"],"label":"main","version":null,"state":null,
//!  "propertySources":[
//!    {"name":"file:main/shop-prod.yaml","source":{"db.pool.max_size":20}},
//!    {"name":"file:main/shop.yaml","source":{"db.url":"pg://…","servers[0]":"a"}}]}
//! ```
//!
//! with flattened keys and property sources highest precedence first, in
//! Spring Boot's order (profile-specific files win over the rest, the
//! application's over the shared `application` ones, the last profile over
//! earlier ones): for each profile from the last, `{application}-{profile}`
//! then `application-{profile}`; then `{application}`, then `application` —
//! each as `.yml`, `.yaml`, `.toml`, `.json` when present. `profiles` may be comma-separated. The
//! label is a subdirectory of the served directory (Spring's `(_)` stands
//! for `/`); without one the default label is used (none: the directory
//! itself). Names are restricted to letters, digits, `-`, `_`, `.`, so `..`
//! and any other path traversal is rejected with 400. Values are served as
//! written, `{cipher}` values included: clients decrypt them.
//!
//! Mount it in axum with `Router::nest_service("/config", server)`, or run
//! `cargo run -p msp-config --example config_server -- --dir DIR --port N`.
//! `remote::HttpSource` is its client (feature `http`).
//!
//! # Example
//!
//! ```
//! use msp_config::server::{ConfigServer, Environment};
//! use tower::ServiceExt;
//! use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("shop.yaml"), "db:\n  pool:\n    max_size: 5\n")?;
//! std::fs::write(dir.path().join("shop-prod.yaml"), "db:\n  pool:\n    max_size: 20\n")?;
//!
//! let server = ConfigServer::new(dir.path());
//! let req = http::Request::get("/shop/prod").body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let resp = server.oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! let env: Environment = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
//! assert_eq!(env.property_sources[0].name, "file:shop-prod.yaml");
//! assert_eq!(env.property_sources[0].source["db.pool.max_size"], 20);
//! assert_eq!(env.property_sources[1].source["db.pool.max_size"], 5);
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use config::{FileFormat, Format, Value, ValueKind};
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

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
    /// The version (a git commit on Spring's git backend); `null` here.
    #[serde(default)]
    pub version: Option<String>,
    /// Backend state; `null` here.
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

/// The config server service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConfigServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    default_label: Option<String>,
    shared: String,
}

impl ConfigServer {
    /// Serves the files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ConfigServer {
            inner: Arc::new(Inner {
                dir: dir.into(),
                default_label: None,
                shared: "application".to_owned(),
            }),
        }
    }

    /// The label used when a request names none (for example `main`: then
    /// `/shop/prod` reads `dir/main/`).
    #[must_use]
    pub fn default_label(self, label: impl Into<String>) -> Self {
        self.map(|i| i.default_label = Some(label.into()))
    }

    /// The name of the files shared by every application (default
    /// `application`).
    #[must_use]
    pub fn shared_name(self, name: impl Into<String>) -> Self {
        self.map(|i| i.shared = name.into())
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|arc| Inner {
            dir: arc.dir.clone(),
            default_label: arc.default_label.clone(),
            shared: arc.shared.clone(),
        });
        f(&mut inner);
        ConfigServer {
            inner: Arc::new(inner),
        }
    }

    /// Builds the environment document for one request, as the service does.
    ///
    /// # Errors
    ///
    /// [`ConfigServerError`] for a bad name, a missing label or an unreadable file.
    pub fn environment(
        &self,
        application: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Environment, ConfigServerError> {
        self.inner.environment(application, profiles, label)
    }
}

/// Why the server could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigServerError {
    /// A path segment is empty, `.`/`..` or has characters outside
    /// `[A-Za-z0-9._-]` (answered with 400).
    #[error("invalid name {0:?}")]
    BadName(String),
    /// The label directory does not exist (404).
    #[error("no such label: {0}")]
    NoSuchLabel(String),
    /// Not `/{application}/{profiles}[/{label}]` (404).
    #[error("not found")]
    NotFound,
    /// A file could not be read or parsed (500).
    #[error("{0}")]
    File(String),
}

impl ConfigServerError {
    fn status(&self) -> StatusCode {
        match self {
            ConfigServerError::BadName(_) => StatusCode::BAD_REQUEST,
            ConfigServerError::NoSuchLabel(_) | ConfigServerError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ConfigServerError::File(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn check_name(s: &str) -> Result<&str, ConfigServerError> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s)
    } else {
        Err(ConfigServerError::BadName(s.to_owned()))
    }
}

impl Inner {
    fn environment(
        &self,
        app: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Environment, ConfigServerError> {
        check_name(app)?;
        let profiles: Vec<&str> = profiles
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        for p in &profiles {
            check_name(p)?;
        }
        let label = label
            .map(str::to_owned)
            .or_else(|| self.default_label.clone());
        let (base, rel) = match &label {
            Some(l) => {
                let mut rel = PathBuf::new();
                for part in l.split("(_)") {
                    rel.push(check_name(part)?);
                }
                let base = self.dir.join(&rel);
                if !base.is_dir() {
                    return Err(ConfigServerError::NoSuchLabel(l.clone()));
                }
                (base, rel)
            }
            None => (self.dir.clone(), PathBuf::new()),
        };
        // Spring Boot's order, highest first: profile-specific files over
        // the rest (last profile first), the application's over the shared.
        let mut stems: Vec<String> = Vec::new();
        for p in profiles.iter().rev() {
            stems.push(format!("{app}-{p}"));
            if app != self.shared {
                stems.push(format!("{}-{p}", self.shared));
            }
        }
        stems.push(app.to_owned());
        if app != self.shared {
            stems.push(self.shared.clone());
        }
        let mut sources = Vec::new();
        for stem in &stems {
            for (ext, format) in EXTENSIONS {
                let file = format!("{stem}.{ext}");
                let path = base.join(&file);
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(ConfigServerError::File(format!(
                            "{}: {e}",
                            rel.join(&file).display()
                        )));
                    }
                };
                let map = format.parse(None, &text).map_err(|e| {
                    ConfigServerError::File(format!("{}: {e}", rel.join(&file).display()))
                })?;
                let mut source = serde_json::Map::new();
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, v) in entries {
                    flatten(&k, v, &mut source);
                }
                sources.push(PropertySource {
                    name: format!("file:{}", display(&rel.join(&file))),
                    source,
                });
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
            version: None,
            state: None,
            property_sources: sources,
        })
    }
}

fn display(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
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

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ConfigServerError, path: &str) -> Response<Full<Bytes>> {
    let status = e.status();
    let body = serde_json::json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": e.to_string(),
        "path": path,
    });
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

impl<B> tower_service::Service<Request<B>> for ConfigServer
where
    B: Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            if method != Method::GET && method != Method::HEAD {
                let mut resp = json_response(StatusCode::METHOD_NOT_ALLOWED, Vec::new());
                resp.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                return Ok(resp);
            }
            let segments: Vec<String> = path
                .trim_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect();
            let p = path.clone();
            let result = tokio::task::spawn_blocking(move || match segments.as_slice() {
                [app, profiles] => inner.environment(app, profiles, None),
                [app, profiles, label] => inner.environment(app, profiles, Some(label)),
                _ => Err(ConfigServerError::NotFound),
            })
            .await
            .unwrap_or_else(|e| Err(ConfigServerError::File(format!("worker failed: {e}"))));
            Ok(match result {
                Ok(env) => match serde_json::to_vec(&env) {
                    Ok(body) => json_response(StatusCode::OK, body),
                    Err(e) => error_response(&ConfigServerError::File(e.to_string()), &p),
                },
                Err(e) => {
                    tracing::debug!(path = %p, error = %e, "config server request rejected");
                    error_response(&e, &p)
                }
            })
        })
    }
}
