//! Every service's settings, served by the system's config server and
//! hot-reloaded.
//!
//! [`ConfigService`] runs msp-config's [`ConfigServer`] (Spring Cloud
//! Config's environment endpoint, `GET /{service}/{profile}`) on its own
//! port, serving `config/services/` — copied to `{data dir}/config/` on
//! first run so a user can edit it: `application.yaml` (every service),
//! `{service}.yaml`, and `{service}-demo.yaml` (the [`PROFILE`] every
//! service asks for; the most specific file wins). Each service loads its
//! [`ServiceSettings`] through msp-config's [`HttpSource`] into a
//! [`Watched`], which polls the server every [`POLL`]: an edited file
//! reaches the running service within about a second. A file that does
//! not parse (the server answers `500`) or values that fail
//! [`ServiceSettings::validate`] are rejected, and the service keeps its
//! last good settings. Environment variables override the served values
//! (`PRODUCT_SERVICE__SEARCH__MAX_RESULTS=5`).
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::platform::settings::ConfigService;
//! let dir = tempfile::tempdir()?;
//! let config = ConfigService::start(dir.path().join("config"), "127.0.0.1:0".parse()?).await?;
//! let settings = config.watch("product-service").await?;
//! assert_eq!(settings.get().search.max_results, 10); // product-service-demo.yaml
//! assert!(settings.get().features.search); // application.yaml
//! config.stop();
//! # Ok(())
//! # }
//! ```

use axum::Router;
use msp_config::remote::{HttpSource, Remote, Startup};
use msp_config::server::ConfigServer;
use msp_config::{Loader, Watched};
use msp_core::BoxError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The profile every service asks the config server for.
pub const PROFILE: &str = "demo";

/// How often each service polls the config server.
pub const POLL: Duration = Duration::from_secs(1);

/// `config/services/`, embedded: written to the data dir's `config/` when
/// a file is missing there (an edited copy is never overwritten).
pub const DEFAULT_FILES: [(&str, &str); 9] = [
    (
        "application.yaml",
        include_str!("../../config/services/application.yaml"),
    ),
    (
        "product-service.yaml",
        include_str!("../../config/services/product-service.yaml"),
    ),
    (
        "product-service-demo.yaml",
        include_str!("../../config/services/product-service-demo.yaml"),
    ),
    (
        "inventory-service.yaml",
        include_str!("../../config/services/inventory-service.yaml"),
    ),
    (
        "payment-service.yaml",
        include_str!("../../config/services/payment-service.yaml"),
    ),
    (
        "shipping-service.yaml",
        include_str!("../../config/services/shipping-service.yaml"),
    ),
    (
        "notification-service.yaml",
        include_str!("../../config/services/notification-service.yaml"),
    ),
    (
        "order-service.yaml",
        include_str!("../../config/services/order-service.yaml"),
    ),
    (
        "user-service.yaml",
        include_str!("../../config/services/user-service.yaml"),
    ),
];

/// A service's settings (see `config/services/application.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceSettings {
    /// Feature flags.
    pub features: Features,
    /// Product search.
    pub search: Search,
}

/// Feature flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Features {
    /// product-service answers `GET /api/products/search` (default on).
    pub search: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features { search: true }
    }
}

/// Product search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Search {
    /// The most results a search answers (1..=100, default 20).
    pub max_results: u32,
}

impl Default for Search {
    fn default() -> Self {
        Search { max_results: 20 }
    }
}

impl ServiceSettings {
    /// Checks the values a file cannot express in types.
    pub fn validate(&self) -> Result<(), BoxError> {
        if !(1..=100).contains(&self.search.max_results) {
            return Err(format!(
                "search.max_results must be within 1..=100, not {}",
                self.search.max_results
            )
            .into());
        }
        Ok(())
    }
}

/// The system's config server (see the [module docs](self)).
#[derive(Debug)]
pub struct ConfigService {
    dir: PathBuf,
    url: String,
    task: JoinHandle<()>,
}

impl ConfigService {
    /// Writes the missing [`DEFAULT_FILES`] to `dir` and serves it on
    /// `bind`.
    pub async fn start(dir: PathBuf, bind: SocketAddr) -> Result<Self, BoxError> {
        std::fs::create_dir_all(&dir)?;
        for (name, text) in DEFAULT_FILES {
            let path = dir.join(name);
            if !path.exists() {
                std::fs::write(&path, text)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback_service(ConfigServer::new(&dir));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "config server failed");
            }
        });
        tracing::info!(%url, dir = %dir.display(), "config server started");
        Ok(ConfigService { dir, url, task })
    }

    /// The directory it serves (edit the files there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its base URL (`http://127.0.0.1:…`; `GET {url}/product-service/demo`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `service`'s settings, loaded from the server (failing fast if it
    /// does not answer or the values are invalid) and polled every
    /// [`POLL`].
    pub async fn watch(&self, service: &str) -> Result<Watched<ServiceSettings>, BoxError> {
        let source = HttpSource::new(&self.url, service, PROFILE)
            .poll_interval(POLL)
            .timeout(Duration::from_secs(2));
        let loader = Loader::new(service)
            .no_files()
            .remote(Remote::new(source).startup(Startup::FailFast));
        let watched = Watched::builder(loader)
            .validate(ServiceSettings::validate)
            .start()
            .await
            .map_err(|e| format!("{service}'s settings: {e}"))?;
        Ok(watched)
    }

    /// Stops serving (the services keep their last settings).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// `GET /settings`: the service's current settings as JSON.
pub fn routes(settings: Watched<ServiceSettings>) -> Router {
    Router::new().route(
        "/settings",
        axum::routing::get(move || {
            let current = settings.get();
            async move { axum::Json(ServiceSettings::clone(&current)) }
        }),
    )
}
