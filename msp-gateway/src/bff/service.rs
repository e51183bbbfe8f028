//! [`Aggregate`]: an aggregate endpoint as a tower `Service`, and its
//! [`AggregateBuilder`].

use super::config::{
    AggregateConfig, BackendConfig, ClientProfile, Format, PARTIAL_KEY, PartialMarker,
};
use super::encode::encode;
use super::error::AggregateError;
use super::exec::{BackendClient, Input, Outcome, Plan};
use super::metrics;
use super::shape::{self, Shaper};
use crate::gateway::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{ALLOW, CONTENT_TYPE, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use msp_core::BoxError;
use msp_core::http::Problem;
use msp_core::http::header::DEADLINE_MS;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

/// The header naming the client type a response was shaped for.
const CLIENT_TYPE: http::HeaderName = http::HeaderName::from_static("x-client-type");

/// An aggregate endpoint as a tower `Service` (see the [module docs](super)):
/// cheap to clone, every clone serving the same plan. Answers every
/// request itself (errors are problem+json responses), so its error type
/// is `Infallible` and axum's `Router::route_service` mounts it as is.
#[derive(Clone)]
pub struct Aggregate {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    config: AggregateConfig,
    matcher: matchit::Router<()>,
    plan: Plan,
    shaper: Shaper,
}

impl Aggregate {
    /// Starts an aggregate named `name` (path `/`, GET, 5 s deadline).
    pub fn builder(name: impl Into<String>) -> AggregateBuilder {
        AggregateBuilder::from_config(AggregateConfig::new(name, "/"))
    }

    /// The aggregate's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The settings it was built from.
    pub fn config(&self) -> &AggregateConfig {
        &self.inner.config
    }

    /// A cache key for this request's response: the aggregate, the client
    /// type, the encoding and the path and query, so each client type and
    /// format is cached apart (responses carry the matching `Vary`).
    /// `None` when the request would be refused (unknown client type, no
    /// acceptable format).
    pub fn cache_key<B>(&self, req: &Request<B>) -> Option<String> {
        let choice = self.inner.shaper.choose(req.headers()).ok()?;
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        Some(format!(
            "{}|{}|{}|{}",
            self.inner.name,
            choice.client,
            choice.format.media_type(),
            pq
        ))
    }
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregate")
            .field("name", &self.inner.name)
            .field("path", &self.inner.config.path)
            .field(
                "backends",
                &self
                    .inner
                    .plan
                    .steps()
                    .iter()
                    .map(|s| &*s.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Aggregate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Backend clients are polled for readiness per call (oneshot).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let inner = self.inner.clone();
        // Aggregates read no request body.
        let (parts, _body) = req.into_parts();
        ResponseFuture {
            inner: Box::pin(async move {
                let started = Instant::now();
                let (res, outcome) = inner.answer(&parts).await;
                metrics::request(&inner.name, outcome, started.elapsed());
                Ok(res)
            }),
        }
    }
}

/// The response future of [`Aggregate`]: it owns every backend call, so
/// dropping it (the client went away) cancels them.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: BoxFuture<'static, Result<Response<Body>, Infallible>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn problem(p: Problem) -> Response<Body> {
    p.into_full_response().map(Body::new)
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `a=1&b=x+y` → pairs, percent- and `+`-decoded.
fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

impl Inner {
    async fn answer(&self, parts: &http::request::Parts) -> (Response<Body>, &'static str) {
        if !self.config.methods.contains(&parts.method) {
            let mut res = problem(Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed here", parts.method),
            ));
            let allow: Vec<&str> = self
                .config
                .methods
                .iter()
                .map(http::Method::as_str)
                .collect();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                res.headers_mut().insert(ALLOW, v);
            }
            return (res, "rejected");
        }
        let Ok(matched) = self.matcher.at(parts.uri.path()) else {
            return (
                problem(Problem::new(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "this path is not the aggregate's",
                )),
                "rejected",
            );
        };
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let choice = match self.shaper.choose(&parts.headers) {
            Ok(c) => c,
            Err(p) => return (problem(p), "rejected"),
        };
        let mut query = parse_query(parts.uri.query());
        if let Some(profile) = choice.profile {
            for (k, v) in &profile.query_defaults {
                if !query.iter().any(|(q, _)| q == k) {
                    query.push((k.clone(), v.clone()));
                }
            }
        }
        let projection = match shape::projection(&query) {
            Ok(p) => p,
            Err(p) => return (problem(p), "rejected"),
        };
        let mut deadline = Instant::now() + self.config.deadline;
        if let Some(ms) = parts
            .headers
            .get(DEADLINE_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            deadline = deadline.min(Instant::now() + Duration::from_millis(ms));
        }
        let input = Input {
            params,
            query,
            headers: parts.headers.clone(),
        };
        let (merged, failed) = match self.plan.run(&self.name, &input, deadline).await {
            Outcome::Failed { backend, failure } => {
                tracing::debug!(aggregate = %self.name, %backend, %failure, "required backend failed");
                return (problem(failure.problem(&self.name, &backend)), "failed");
            }
            Outcome::Done { merged, failed } => (merged, failed),
        };
        let partial = !failed.is_empty();
        let mut root = merged;
        if partial {
            let names: Vec<&str> = failed.iter().map(|(n, _)| &**n).collect();
            let reasons: Map<String, Value> = failed
                .iter()
                .map(|(n, f)| (n.to_string(), Value::from(f.reason())))
                .collect();
            let mut marker = Map::new();
            marker.insert("failed".into(), Value::from(names));
            marker.insert("reasons".into(), Value::Object(reasons));
            root.insert(PARTIAL_KEY.into(), Value::Object(marker));
        }
        let mut value = Value::Object(root);
        if let Some(profile) = choice.profile {
            value = profile.apply(value);
        }
        if let Some(tree) = projection {
            value = tree.apply(value);
        }
        let schema = choice.profile.and_then(|p| p.schema.as_ref());
        let body = match encode(&value, choice.format, schema) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(aggregate = %self.name, client = choice.client, error = %e, "response could not be encoded");
                metrics::encode_failure(&self.name, choice.format.media_type());
                return (problem(e.problem(&self.name)), "failed");
            }
        };
        let mut res = Response::new(Body::full(body));
        let h = res.headers_mut();
        let content_type = match schema {
            Some(s) if choice.format == Format::Protobuf => s.content_type().clone(),
            _ => HeaderValue::from_static(choice.format.media_type()),
        };
        h.insert(CONTENT_TYPE, content_type);
        let vary = match self.shaper.vary_header() {
            Some(name) => format!("accept, {name}"),
            None => "accept".to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&vary) {
            h.insert(VARY, v);
        }
        if let Ok(v) = HeaderValue::from_str(choice.client) {
            h.insert(CLIENT_TYPE, v);
        }
        match self.config.partial_marker {
            PartialMarker::XPartial if partial => {
                h.insert("x-partial", HeaderValue::from_static("true"));
            }
            PartialMarker::KrakenD => {
                let v = if partial { "false" } else { "true" };
                h.insert("x-krakend-completed", HeaderValue::from_static(v));
            }
            _ => {}
        }
        (res, if partial { "partial" } else { "complete" })
    }
}

/// Builds an [`Aggregate`] in code, or from an [`AggregateConfig`] with
/// its clients.
#[must_use]
pub struct AggregateBuilder {
    config: AggregateConfig,
    client: Option<BackendClient>,
    clients: BTreeMap<String, BackendClient>,
}

impl fmt::Debug for AggregateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateBuilder")
            .field("config", &self.config)
            .field("client", &self.client.is_some())
            .field("backend_clients", &self.clients.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Boxes a backend client.
fn boxed<S, RB>(service: S) -> BackendClient
where
    S: Service<Request<Body>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|res: Response<RB>| res.map(Body::new))
            .map_err(Into::<BoxError>::into)
            .service(service),
    )
}

impl AggregateBuilder {
    /// Starts from settings (from YAML, say); add clients, then build.
    pub fn from_config(config: AggregateConfig) -> Self {
        AggregateBuilder {
            config,
            client: None,
            clients: BTreeMap::new(),
        }
    }

    /// The path pattern (`/orders/{id}`), whose parameters templates use.
    /// Requests are matched against it (a path it does not match is a
    /// 404), so mount the aggregate at the same pattern.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// The methods served (default `GET`).
    pub fn methods(mut self, methods: impl IntoIterator<Item = http::Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// The endpoint's one deadline (default 5 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// Adds a backend.
    pub fn backend(mut self, backend: BackendConfig) -> Self {
        self.config.backends.push(backend);
        self
    }

    /// How partial responses are marked.
    pub fn partial_marker(mut self, marker: PartialMarker) -> Self {
        self.config.partial_marker = marker;
        self
    }

    /// Fixes the client type (client type by route).
    pub fn client_type(mut self, client: impl Into<String>) -> Self {
        self.config.client = Some(client.into());
        self
    }

    /// The header naming the client type (default `x-client-type`).
    pub fn client_header(mut self, name: impl Into<String>) -> Self {
        self.config.client_header = name.into();
        self
    }

    /// The client type when a request names none (default `web`).
    pub fn default_client(mut self, client: impl Into<String>) -> Self {
        self.config.default_client = client.into();
        self
    }

    /// Shapes responses for client type `name`.
    pub fn profile(mut self, name: impl Into<String>, profile: ClientProfile) -> Self {
        self.config.clients.insert(name.into(), profile);
        self
    }

    /// The largest backend body read (default 8 MiB).
    pub fn max_backend_body_bytes(mut self, max: usize) -> Self {
        self.config.max_backend_body_bytes = max;
        self
    }

    /// The client every backend without its own is called with: any tower
    /// service of `http::Request`s, e.g. msp-discovery's `DiscoveryClient`
    /// (routing `http://service-name/…` to live instances) or a pooled
    /// HTTP client.
    pub fn client<S, RB>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: http_body::Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        self.client = Some(boxed(service));
        self
    }

    /// The client backend `name` is called with, instead of the shared one.
    pub fn backend_client<S, RB>(mut self, name: impl Into<String>, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: http_body::Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        self.clients.insert(name.into(), boxed(service));
        self
    }

    /// Checks the settings (every problem listed) and builds the service.
    pub fn build(self) -> Result<Aggregate, AggregateError> {
        metrics::describe();
        let config = self.config;
        let mut problems = config.problems();
        // Descriptor sets are read here, once per build: every clone and
        // request shares the loaded messages.
        let schemas = config.schemas(&mut problems);
        if config.auth_required || !config.auth.is_empty() {
            problems.push(super::validate::AggregateProblem::new(
                "auth_required".into(),
                "authentication is the gateway's (`aggregates:`); in your own service put an auth layer in front".into(),
            ));
        }
        let invalid = |problems| AggregateError::Invalid {
            name: config.name.clone(),
            problems,
        };
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let one = |field: &str, msg: String| {
            invalid(vec![super::validate::AggregateProblem::new(
                field.into(),
                msg,
            )])
        };
        let mut matcher = matchit::Router::new();
        matcher
            .insert(config.path.as_str(), ())
            .map_err(|e| one("path", e.to_string()))?;
        let shaper = Shaper::new(&config, schemas).map_err(|e| one("clients", e))?;
        let (shared, own) = (self.client, self.clients);
        let plan = Plan::new(&config, |b| own.get(&b.name).or(shared.as_ref()).cloned()).map_err(
            |(backend, e)| {
                if e.is_empty() {
                    AggregateError::NoClient {
                        aggregate: config.name.clone(),
                        backend,
                    }
                } else {
                    one("backends", format!("{backend}: {e}"))
                }
            },
        )?;
        Ok(Aggregate {
            inner: Arc::new(Inner {
                name: Arc::from(config.name.as_str()),
                config,
                matcher,
                plan,
                shaper,
            }),
        })
    }
}
