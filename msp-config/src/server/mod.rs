//! A config server: a tower service answering Spring Cloud Config's
//! environment endpoint from a directory or a git repository of YAML /
//! TOML / JSON files, with a change stream and server-side decryption.
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
//! each as `.yml`, `.yaml`, `.toml`, `.json` when present. `profiles` may
//! be comma-separated. Names are restricted to letters, digits, `-`, `_`,
//! `.`, so `..` and any other path traversal is rejected with 400.
//!
//! **Backends** ([`Backend`]): [`DirBackend`] (what [`ConfigServer::new`]
//! serves) takes the label as a subdirectory (Spring's `(_)` stands for
//! `/`; without one the default label is used, none: the directory
//! itself) and answers `version: null`. `GitBackend` (feature `git`)
//! serves a git repository, a local one or a clone of a remote it fetches
//! periodically: the label is a branch, a tag or a commit, `version` is the
//! commit id.
//!
//! **Change stream**: the same URL with `Accept: text/event-stream` answers
//! Server-Sent Events, one each time that environment changes (see
//! [`events`](self#change-stream) below); `remote::HttpSource` subscribes to
//! it and falls back to polling.
//!
//! **Decryption**: with a key ([`ConfigServer::cipher`]) `{cipher}` values
//! are decrypted before they are served, as Spring Cloud Config's server
//! does, so Spring clients (which expect plain values) and msp clients can
//! share one server. A value that cannot be decrypted is removed and
//! `invalid.{key}` = `<n/a>` is served instead (Spring's behaviour). A
//! request can ask for the values as stored with the header
//! `X-Config-Decrypt: false` ([`DECRYPT_HEADER`]; Spring has only the
//! server-wide switch, [`ConfigServer::decrypt`]). `/encrypt` and
//! `/decrypt` exist only when [`ConfigServer::crypto_endpoints`] set a
//! bearer token. Without a key values are served as written and clients
//! decrypt them.
//!
//! Mount it in axum with `Router::nest_service("/config", server)`, or run
//! `cargo run -p msp-config --example config_server -- --dir DIR --port N`
//! (`--git PATH_OR_URL` for a repository).
//!
//! # Change stream
//!
//! ```text
//! $ curl -N -H 'Accept: text/event-stream' http://127.0.0.1:8888/shop/prod/main
//! event: change
//! id: 5d1c0f4e9a3b2c71
//! data: {"name":"shop","profiles":["prod"],"label":"main","version":"3f9c…","digest":"5d1c0f4e9a3b2c71"}
//! ```
//!
//! The first event describes the environment when the stream opens; then
//! one is sent whenever its property sources change (a commit that touches
//! only other applications' files sends nothing), `event: error` when it
//! cannot be built any more, and a `: keep-alive` comment every 15 s
//! ([`ConfigServer::keepalive`]). The directory backend notices changes by
//! watching the directory; the git backend by checking its refs (and
//! fetching, for a remote) on an interval.
//!
//! # Example
//!
//! ```
//! use msp_config::server::{ConfigServer, Environment};
//! use msp_config::secret::Cipher;
//! use tower::ServiceExt;
//! use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cipher = Cipher::new([7; 32]);
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("shop.yaml"), "db:\n  pool:\n    max_size: 5\n")?;
//! std::fs::write(
//!     dir.path().join("shop-prod.yaml"),
//!     format!("db:\n  pool:\n    max_size: 20\n  password: '{}'\n", cipher.encrypt("s3cr3t")),
//! )?;
//!
//! let server = ConfigServer::new(dir.path()).cipher(cipher);
//! let req = http::Request::get("/shop/prod").body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let resp = server.clone().oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! let env: Environment = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
//! assert_eq!(env.property_sources[0].name, "file:shop-prod.yaml");
//! assert_eq!(env.property_sources[0].source["db.pool.max_size"], 20);
//! assert_eq!(env.property_sources[0].source["db.password"], "s3cr3t"); // decrypted on the server
//! assert_eq!(env.property_sources[1].source["db.pool.max_size"], 5);
//!
//! // Per request: the values as stored.
//! let req = http::Request::get("/shop/prod")
//!     .header("x-config-decrypt", "false")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let body = server.oneshot(req).await?.into_body().collect().await?.to_bytes();
//! let env: Environment = serde_json::from_slice(&body)?;
//! assert!(env.property_sources[0].source["db.password"].as_str().unwrap().starts_with("{cipher}"));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use msp_core::BoxError;

mod backend;
mod body;
mod crypto;
mod environment;
mod error;
mod events;
#[cfg(feature = "git")]
mod git;

pub use self::backend::{Backend, DirBackend, Snapshot};
pub use self::body::Body;
pub use self::environment::{Environment, PropertySource};
pub use self::error::ConfigServerError;
#[cfg(feature = "git")]
pub use self::git::{GitBackend, GitBackendBuilder, GitStatus};

use self::body::{error_response, json_response};
use self::error::{check_label, check_name};
use crate::secret::Cipher;

/// The request header that turns server-side decryption off for one
/// request: `X-Config-Decrypt: false` serves `{cipher}` values as stored.
pub const DECRYPT_HEADER: &str = "x-config-decrypt";

/// The config server service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConfigServer {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    backend: Arc<dyn Backend>,
    default_label: Option<String>,
    shared: String,
    cipher: Option<Cipher>,
    decrypt: bool,
    crypto_token: Option<String>,
    keepalive: Duration,
}

impl ConfigServer {
    /// Serves the files in `dir` ([`DirBackend`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ConfigServer::with_backend(DirBackend::new(dir))
    }

    /// Serves the files of `backend` (a [`DirBackend`], a `GitBackend`, or
    /// your own).
    pub fn with_backend(backend: impl Backend) -> Self {
        ConfigServer {
            inner: Arc::new(Inner {
                backend: Arc::new(backend),
                default_label: None,
                shared: "application".to_owned(),
                cipher: None,
                decrypt: true,
                crypto_token: None,
                keepalive: Duration::from_secs(15),
            }),
        }
    }

    /// The label used when a request names none (for example `main`: then
    /// `/shop/prod` reads `dir/main/`, or the `main` branch).
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

    /// The key of `{cipher}` values: with it they are decrypted before they
    /// are served (unless [`decrypt(false)`](Self::decrypt) or the request
    /// says `X-Config-Decrypt: false`), and the `/encrypt` / `/decrypt`
    /// endpoints can be enabled.
    #[must_use]
    pub fn cipher(self, cipher: Cipher) -> Self {
        self.map(|i| i.cipher = Some(cipher))
    }

    /// Whether to decrypt `{cipher}` values before serving them when a key
    /// is set (default `true`; Spring's
    /// `spring.cloud.config.server.encrypt.enabled`). `false` keeps the key
    /// for the `/encrypt` and `/decrypt` endpoints only.
    #[must_use]
    pub fn decrypt(self, on: bool) -> Self {
        self.map(|i| i.decrypt = on)
    }

    /// Enables `POST /encrypt`, `POST /decrypt` and `GET /encrypt/status`
    /// (with a key set), each requiring `Authorization: Bearer {token}`.
    #[must_use]
    pub fn crypto_endpoints(self, token: impl Into<String>) -> Self {
        self.map(|i| i.crypto_token = Some(token.into()))
    }

    /// How often an idle change stream sends a keep-alive comment (default
    /// 15 s).
    #[must_use]
    pub fn keepalive(self, every: Duration) -> Self {
        self.map(|i| i.keepalive = every.max(Duration::from_millis(1)))
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|arc| (*arc).clone());
        f(&mut inner);
        ConfigServer {
            inner: Arc::new(inner),
        }
    }

    /// Builds the environment document for one request, as the service does
    /// (decrypted when a key is set and decryption is on). Blocking: it
    /// reads the backend.
    ///
    /// # Errors
    ///
    /// [`ConfigServerError`] for a bad name, a missing label or an
    /// unreadable file.
    pub fn environment(
        &self,
        application: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Environment, ConfigServerError> {
        let mut env = self.inner.environment(application, profiles, label)?;
        self.inner.decrypt_for(&mut env, &HeaderMap::new());
        Ok(env)
    }
}

impl Inner {
    /// The environment as stored (no decryption).
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
        let checked = label.as_deref().map(check_label).transpose()?;
        let snapshot = self.backend.open(checked.as_deref())?;
        environment::resolve(&*snapshot, app, &profiles, label, &self.shared)
    }

    fn decrypt_for(&self, env: &mut Environment, headers: &HeaderMap) {
        let opted_out = headers
            .get(DECRYPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        if let (Some(cipher), true, false) = (&self.cipher, self.decrypt, opted_out) {
            environment::decrypt(env, cipher);
        }
    }
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

impl<B> tower_service::Service<Request<B>> for ConfigServer
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_owned();
            if let Some(endpoint) = crypto::Endpoint::route(&inner, &parts.method, &path) {
                return Ok(crypto::handle(&inner, endpoint, &parts.headers, body, &path).await);
            }
            if parts.method != Method::GET && parts.method != Method::HEAD {
                let mut resp = json_response(StatusCode::METHOD_NOT_ALLOWED, Vec::new());
                resp.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                return Ok(resp);
            }
            let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
            let target = match segments.as_slice() {
                [app, profiles] => events::Target {
                    app: (*app).to_owned(),
                    profiles: (*profiles).to_owned(),
                    label: None,
                },
                [app, profiles, label] => events::Target {
                    app: (*app).to_owned(),
                    profiles: (*profiles).to_owned(),
                    label: Some((*label).to_owned()),
                },
                _ => return Ok(error_response(&ConfigServerError::NotFound, &path)),
            };
            let result = if parts.method == Method::GET && wants_events(&parts.headers) {
                events::open(inner, target).await
            } else {
                target.build(&inner).await.and_then(|mut env| {
                    inner.decrypt_for(&mut env, &parts.headers);
                    serde_json::to_vec(&env)
                        .map(|body| json_response(StatusCode::OK, body))
                        .map_err(|e| ConfigServerError::File(e.to_string()))
                })
            };
            Ok(result.unwrap_or_else(|e| {
                tracing::debug!(path = %path, error = %e, "config server request rejected");
                error_response(&e, &path)
            }))
        })
    }
}
