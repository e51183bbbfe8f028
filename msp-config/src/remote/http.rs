//! Client of an HTTP config server speaking Spring Cloud Config's
//! environment JSON (msp's [`ConfigServer`](crate::server::ConfigServer) or
//! a Spring one), subscribed to msp's change stream where there is one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::BoxError;

use super::sse::Subscription;
use super::{RemoteData, RemoteSource};
use crate::server::{DECRYPT_HEADER, Environment};

const MAX_BODY: usize = 16 * 1024 * 1024;

/// Fetches `{base}/{application}/{profiles}[/{label}]`, subscribes to its
/// change stream and polls it.
///
/// Property sources are layered as the server lists them (first = highest
/// precedence). Plain `http://` only; put TLS in front with a sidecar or use
/// your own [`RemoteSource`].
///
/// **Change stream.** The source asks the same URL with
/// `Accept: text/event-stream` (msp's server answers Server-Sent Events,
/// see [`server`](crate::server#change-stream)) and refetches as soon as an
/// event arrives, so a change reaches [`Watched`](crate::Watched) without
/// waiting for the next poll. When the server has no stream (a Spring
/// server, an older msp) or the stream drops, it polls and tries the stream
/// again after 1 s doubling up to 60 s. Polling goes on alongside the
/// stream as a safety net: with a stream, a long poll interval is fine.
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
    push: bool,
    decrypt: bool,
    client: Client<HttpConnector, Empty<Bytes>>,
    subscription: Arc<tokio::sync::Mutex<Subscription>>,
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
            push: true,
            decrypt: true,
            client: Client::builder(TokioExecutor::new()).build_http(),
            subscription: Arc::new(tokio::sync::Mutex::new(Subscription::new())),
        }
    }

    /// Whether to subscribe to the server's change stream (default `true`);
    /// `false` only polls.
    #[must_use]
    pub fn change_stream(mut self, on: bool) -> Self {
        self.push = on;
        self
    }

    /// `false` asks msp's server for `{cipher}` values as stored
    /// (`X-Config-Decrypt: false`), to decrypt them here with the loader's
    /// key; by default the server decrypts when it has a key.
    #[must_use]
    pub fn decrypt_on_server(mut self, on: bool) -> Self {
        self.decrypt = on;
        self
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
        let mut req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())?;
        if !self.decrypt {
            req.headers_mut()
                .insert(DECRYPT_HEADER, http::HeaderValue::from_static("false"));
        }
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

impl HttpSource {
    /// Opens the change stream: the response must be a 200 with
    /// `text/event-stream`.
    async fn subscribe(&self) -> Result<hyper::body::Incoming, BoxError> {
        let uri: http::Uri = self.url().parse()?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Empty::new())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no response within {:?}", self.timeout))??;
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !resp.status().is_success() || !sse {
            return Err(format!(
                "no change stream at {} (answered {}{})",
                self.url(),
                resp.status(),
                if sse { "" } else { ", not text/event-stream" }
            )
            .into());
        }
        Ok(resp.into_body())
    }

    /// Resolves at the next stream event, when the stream drops, or at
    /// `deadline` (the poll), whichever comes first.
    async fn wait_for_change(&self, deadline: tokio::time::Instant) {
        let mut sub = self.subscription.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            if sub.due(now) {
                match self.subscribe().await {
                    Ok(body) => {
                        tracing::debug!(url = %self.url(), "subscribed to the config change stream");
                        sub.connected(body);
                    }
                    Err(e) => {
                        let retry_in = sub.failed(now);
                        tracing::debug!(url = %self.url(), error = %e, ?retry_in, "config change stream unavailable; polling");
                    }
                }
            }
            if sub.body.is_some() {
                tokio::select! {
                    r = sub.next_event() => {
                        if let Err(e) = r {
                            let retry_in = sub.failed(tokio::time::Instant::now());
                            tracing::debug!(url = %self.url(), error = %e, ?retry_in, "config change stream dropped; refetching");
                        }
                        return;
                    }
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
            let wake = sub.retry_at.map_or(deadline, |t| t.min(deadline));
            tokio::time::sleep_until(wake).await;
            if wake >= deadline {
                return;
            }
        }
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
            let deadline = tokio::time::Instant::now() + delay;
            if self.push {
                self.wait_for_change(deadline).await;
            } else {
                tokio::time::sleep_until(deadline).await;
            }
            Ok(())
        })
    }
}
