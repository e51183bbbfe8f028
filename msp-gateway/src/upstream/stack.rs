//! The per-route upstream stack: timeout → bulkhead → retry (the route's,
//! else the service's) → the service's circuit breaker → endpoint pick →
//! the pooled client.

use super::{PickEndpoint, Upstream, retry};
use crate::gateway::Body;
use http::{Request, Response};
use msp_core::BoxError;
use msp_core::classify::HttpClassifier;
use msp_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
use msp_resilience::circuit_breaker::CircuitBreakerLayer;
use msp_resilience::retry::{ReplayBody, RetryConfig};
use msp_resilience::timeout::TimeoutLayer;
use std::time::Duration;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// The gateway's one pooled client, type-erased: absolute-URI requests
/// whose bodies may be replayed, to responses.
pub(crate) type Client = BoxCloneSyncService<Request<ReplayBody<Body>>, Response<Body>, BoxError>;

/// One route's way to one upstream service.
pub(crate) type RouteUpstream = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// The route settings the upstream stack is built from.
#[derive(Debug, Clone, Default)]
pub(crate) struct StackSettings {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: Option<RetryConfig>,
    pub(crate) bulkhead: Option<BulkheadConfig>,
}

/// Builds the stack of one route to `upstream` over `client`.
pub(crate) fn build(
    settings: &StackSettings,
    upstream: &Upstream,
    client: Client,
) -> RouteUpstream {
    let pick = PickEndpoint::new(client, upstream.endpoints().clone());
    let breaker = CircuitBreakerLayer::from_breaker(upstream.breaker().clone())
        .classify(HttpClassifier::new());
    let counted = upstream.retry_count().clone();
    let core = ServiceBuilder::new()
        .map_request(move |req| counted.observe(req))
        .layer(breaker)
        .service(pick);
    // The route's own retry (its own budget), else the service's (the
    // budget every route to the service shares).
    let retry = match (&settings.retry, upstream.service_retry()) {
        (Some(own), _) => Some((own, None)),
        (None, Some(service)) => Some((&service.config, Some(service))),
        (None, None) => None,
    };
    let retried: RouteUpstream = match retry {
        Some((config, shared)) if config.max_attempts() > 1 => {
            let layer = retry::layer(config, shared);
            BoxCloneSyncService::new(ServiceBuilder::new().layer(layer).service(core))
        }
        _ => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_request(|req: Request<Body>| req.map(ReplayBody::once))
                .map_err(Into::<BoxError>::into)
                .service(core),
        ),
    };
    let bulkheaded: RouteUpstream = match &settings.bulkhead {
        Some(cfg) => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(|res: Response<_>| res.map(Body::new))
                .layer(
                    BulkheadLayer::new(cfg.clone())
                        .classify_http_status()
                        .release_on_body_end(),
                )
                .service(retried),
        ),
        None => retried,
    };
    match settings.timeout {
        Some(timeout) => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(TimeoutLayer::new(timeout))
                .service(bulkheaded),
        ),
        None => bulkheaded,
    }
}
