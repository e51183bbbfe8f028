//! Client of an HTTP config server speaking Spring Cloud Config's
//! environment JSON (msp's [`ConfigServer`](crate::server::ConfigServer) or
//! a Spring one).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::BoxError;

use super::{RemoteData, RemoteSource};
use crate::server::Environment;

const MAX_BODY: usize = 16 * 1024 * 1024;

/// Fetches `{base}/{application}/{profiles}[/{label}]` and polls it.
///
/// Property sources are layered as the server lists them (first = highest
/// precedence). Plain `http://` only; put TLS in front with a sidecar or use
/// your own [`RemoteSource`].
///
/// # Example
///
/// ```no_run
/// use msp_config::remote::{HttpSource, Remote, Startup};
/// use msp_config::Loader;
/// use std::time::Duration;
///
/// # #[derive(serde::Deserialize)] struct Cfg {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), msp_config::ConfigError> {
/// let source = HttpSource::new("http://127.0.0.1:8888", "shop", "prod")
///     .label("main")
///     .poll_interval(Duration::from_secs(30));
/// let remote = Remote::new(source)
///     .startup(Startup::UseCache)
///     .cache_file("/var/cache/shop/config.json");
/// let cfg: Cfg = Loader::new("shop").remote(remote).load().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpSource {
    base: String,
    app: String,
    profiles: String,
    label: Option<String>,
    poll: Duration,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl HttpSource {
    /// A source for `application` with `profiles` (comma-separated) on the
    /// server at `base` (`http://host:port`, optionally with a path
    /// prefix). Polls every 30 s; each request times out after 5 s.
    pub fn new(
        base: impl Into<String>,
        application: impl Into<String>,
        profiles: impl Into<String>,
    ) -> Self {
        let base = base.into().trim_end_matches('/').to_owned();
        let profiles = profiles.into();
        HttpSource {
            base,
            app: application.into(),
            profiles: if profiles.trim().is_empty() {
                "default".to_owned()
            } else {
                profiles
            },
            label: None,
            poll: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Asks for this label (a subdirectory on msp's server, a git branch on
    /// Spring's).
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// How often to poll (±10 % jitter so replicas spread out).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The timeout of one request.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL fetched.
    pub fn url(&self) -> String {
        match &self.label {
            Some(l) => format!("{}/{}/{}/{l}", self.base, self.app, self.profiles),
            None => format!("{}/{}/{}", self.base, self.app, self.profiles),
        }
    }

    async fn get(&self) -> Result<RemoteData, BoxError> {
        let uri: http::Uri = self.url().parse()?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no response within {:?}", self.timeout))??;
        let status = resp.status();
        let body = tokio::time::timeout(
            self.timeout,
            Limited::new(resp.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| format!("body not received within {:?}", self.timeout))??
        .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("{} answered {status}: {text}", self.url()).into());
        }
        let env: Environment = serde_json::from_slice(&body)?;
        let mut data = RemoteData::default();
        for ps in env.property_sources.iter().rev() {
            for (k, v) in &ps.source {
                data.push(k.clone(), v.clone(), ps.name.clone());
            }
        }
        Ok(data)
    }
}

impl RemoteSource for HttpSource {
    fn name(&self) -> String {
        format!("config server {}", self.url())
    }

    fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>> {
        Box::pin(self.get())
    }

    fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        // Polls spread ±10 % (msp_core's one meaning of jitter), at least 1 ms
        // apart; `jitter` never panics, even near `Duration::MAX`.
        let delay = msp_core::backoff::jitter(self.poll, 0.1, &mut rand::rng())
            .max(Duration::from_millis(1));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(())
        })
    }
}
