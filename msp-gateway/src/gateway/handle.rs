//! The life of one request: validate → match → limit → auth → request
//! header transforms → identity headers → cache lookup → rewrite → the
//! route's upstream stack → cache store → response transforms → response,
//! with metrics and the access log.

use super::Body;
use super::limit::{self, ClientKey};
use super::log::{Exchange, NO_ROUTE};
use super::snapshot::Snapshot;
use crate::cache::{CacheRequest, Lookup, ResponseCache};
use crate::proxy::{self, ForwardContext, LimitedBody, ProxyError};
use crate::route::RouteMatch;
use crate::upstream::UpstreamInstance;
use http::header::{ALLOW, HOST};
use http::{Request, Response, StatusCode};
use msp_core::authz::{AuthorizationPolicies, PermissionDenied};
use msp_core::http::{Problem, ToProblem, header::REQUEST_ID, problem_for};
use msp_core::observe::TraceContext;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;
use tower::ServiceExt;

/// The peer address of a request: a `SocketAddr` extension (set by
/// [`Gateway::serve`](super::Gateway::serve)), else (feature `axum`)
/// axum's `ConnectInfo<SocketAddr>`, else unspecified.
fn peer_of<B>(req: &Request<B>) -> SocketAddr {
    if let Some(addr) = req.extensions().get::<SocketAddr>() {
        return *addr;
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return *addr;
    }
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn problem(p: Problem) -> Response<Body> {
    p.into_full_response().map(Body::new)
}

/// The answer when `policies` refuse `req` (403 problem+json, or
/// PERMISSION_DENIED for gRPC; 400 for an ambiguous path or host), `None`
/// when they allow it.
fn authorization_denial(
    policies: &AuthorizationPolicies,
    req: &Request<()>,
    client_ip: std::net::IpAddr,
) -> Option<Response<Body>> {
    let decision = policies.decide(req, Some(client_ip));
    if decision.is_allowed() {
        return None;
    }
    let res = match decision.malformed() {
        Some(malformed) => malformed.problem_response::<Body>(),
        None => PermissionDenied::new().response_for::<Body>(req.headers()),
    };
    Some(res.map(Body::new))
}

/// Answers without an upstream: logs and counts it too.
fn finish(mut exchange: Exchange, res: Response<Body>) -> Response<Body> {
    exchange.status = res.status();
    exchange.head = exchange.started.elapsed();
    exchange.record_head();
    res.map(|b| b.on_end(Box::new(exchange)))
}

pub(crate) async fn handle(
    snap: Arc<Snapshot>,
    cache: ResponseCache,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let peer = peer_of(&req);
    let mut exchange = Exchange {
        started,
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        route: Arc::from(NO_ROUTE),
        service: None,
        instance: None,
        status: StatusCode::OK,
        request_id: req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client: None,
        upstream: None,
        head: Default::default(),
    };
    if let Err(e) = proxy::validate_request(&req, &snap.limits) {
        return finish(exchange, problem(e.to_problem()));
    }
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        req.headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let query = req.uri().query();
    let found = snap.table.find(
        req.method(),
        host.as_deref(),
        req.uri().path(),
        query,
        req.headers(),
    );
    let (index, upstream_pq) = match found {
        RouteMatch::Found(m) => {
            let pq = m
                .route
                .upstream_path_and_query(req.uri().path(), query, &m.params);
            (m.index, pq)
        }
        RouteMatch::MethodNotAllowed { allow } => {
            let mut res = problem(Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed here", req.method()),
            ));
            res.headers_mut().insert(ALLOW, allow);
            return finish(exchange, res);
        }
        RouteMatch::NotFound => {
            return finish(
                exchange,
                problem(Problem::new(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "no route matches this request",
                )),
            );
        }
        RouteMatch::BadPath(e) => {
            return finish(
                exchange,
                problem(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_path",
                    e.to_string(),
                )),
            );
        }
    };
    let Some(route) = snap.routes.get(index) else {
        return finish(
            exchange,
            problem(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "route missing",
            )),
        );
    };
    exchange.route = route.id.clone();
    let ctx = ForwardContext::new(peer)
        .with_trusted(snap.trusted.clone())
        .with_host_policy(route.host_policy.clone());
    let client_ip = ctx.client_ip(req.headers());
    exchange.client = Some(client_ip);

    // Limits first (before auth reads anything), unless they key on the
    // consumer, which only auth knows.
    let mut admitted = None;
    let consumer_keyed = route.limiter.as_ref().is_some_and(|l| l.needs_consumer());
    if !consumer_keyed && let Some(limiter) = &route.limiter {
        let key = ClientKey {
            ip: client_ip,
            headers: req.headers(),
            consumer: None,
        };
        match limiter.check(&key).await {
            Err(refused) => {
                return finish(
                    exchange,
                    limit::too_many(&route.id, &refused).map(Body::new),
                );
            }
            Ok(a) => admitted = Some(a),
        }
    }
    let consumer = match &route.auth {
        Some(auth) => match auth.authenticate(req.headers(), query).await {
            Ok(c) => Some(c),
            Err(e) => return finish(exchange, e.into_response::<Body>().map(Body::new)),
        },
        None => None,
    };
    if consumer_keyed && let Some(limiter) = &route.limiter {
        let key = ClientKey {
            ip: client_ip,
            headers: req.headers(),
            consumer: consumer.as_ref().map(|c| c.name()),
        };
        match limiter.check(&key).await {
            Err(refused) => {
                return finish(
                    exchange,
                    limit::too_many(&route.id, &refused).map(Body::new),
                );
            }
            Ok(a) => admitted = Some(a),
        }
    }
    let pq = match upstream_pq {
        Ok(pq) => pq,
        Err(e) => {
            return finish(
                exchange,
                problem(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_path",
                    e.to_string(),
                )),
            );
        }
    };
    let Some(target) = route.pick() else {
        return finish(
            exchange,
            problem(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_upstream",
                "route has no upstream",
            )),
        );
    };
    exchange.service = Some(target.service.clone());

    let max_body = snap.limits.max_body_bytes;
    let cache_req = CacheRequest::new(
        snap.table.route(index).map(|r| r.config()),
        snap.version,
        &req,
        host.as_deref(),
    );
    let (mut parts, body) = req.into_parts();
    let head = parts.method == http::Method::HEAD;
    // The route's header edits first: the identity, cache and forwarding
    // steps after them always win.
    if let Some(t) = &route.transform {
        t.request(&mut parts.headers);
    }
    // Identity headers come from the gateway only: stripped on every
    // route, then set from what auth verified.
    route.identity.strip(&mut parts.headers);
    if let Some(identity) = &consumer {
        route.identity.set(&mut parts.headers, identity);
    }
    // Authorization policies, on the request as it goes upstream: its
    // identity headers are the verified ones set just above.
    if let Some(policies) = snap.config.authorization() {
        let probe = Request::from_parts(parts, ());
        let denied = authorization_denial(policies, &probe, client_ip);
        parts = probe.into_parts().0;
        if let Some(res) = denied {
            return finish(exchange, res);
        }
    }
    parts.uri = match http::Uri::builder().path_and_query(pq).build() {
        Ok(uri) => uri,
        Err(_) => {
            return finish(
                exchange,
                problem(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_path",
                    "invalid upstream path",
                )),
            );
        }
    };
    // After auth, so a hit still needs credentials; on the headers as
    // they go upstream, which is what a response's `Vary` names.
    let pending = match cache.lookup(&route.id, cache_req, &parts.headers).await {
        Lookup::Hit(res) => {
            // The cache holds the upstream's answer; transforms run on the
            // way out.
            let mut res = match &route.transform {
                Some(t) => t.response(&route.id, head, res).await,
                None => res,
            };
            if let Some(a) = &admitted {
                limit::admitted_headers(res.headers_mut(), a);
            }
            return finish(exchange, res);
        }
        Lookup::Miss(pending) => pending,
    };
    parts.extensions.insert(ctx);
    // W3C trace context: the upstream is a child of the gateway's span.
    if let Some(trace) = parts.extensions.get::<TraceContext>() {
        trace.inject(&mut parts.headers);
    }
    if let Some(mirror) = route.mirror()
        && http_body::Body::is_end_stream(&body)
    {
        let mut copy = Request::new(Body::empty());
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = parts.uri.clone();
        *copy.headers_mut() = parts.headers.clone();
        if let Some(ctx) = parts.extensions.get::<ForwardContext>() {
            copy.extensions_mut().insert(ctx.clone());
        }
        let stack = mirror.stack.clone();
        tokio::spawn(async move {
            // Shadow traffic: the answer is read and dropped.
            if let Ok(res) = stack.oneshot(copy).await {
                let _ = http_body_util::BodyExt::collect(res.into_body()).await;
            }
        });
    }
    let req = Request::from_parts(parts, Body::new(LimitedBody::new(body, max_body)));
    let sent = Instant::now();
    let result = target.stack.clone().oneshot(req).await;
    exchange.upstream = Some(sent.elapsed());
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            let p = match e.downcast_ref::<ProxyError>() {
                Some(pe) => pe.to_problem(),
                None => problem_for(&*e),
            };
            problem(p)
        }
    };
    exchange.instance = res.extensions_mut().remove::<UpstreamInstance>();
    let res = pending.store(res);
    let mut res = match &route.transform {
        Some(t) => t.response(&route.id, head, res).await,
        None => res,
    };
    if let Some(a) = &admitted {
        limit::admitted_headers(res.headers_mut(), a);
    }
    if let Some(c) = &consumer {
        tracing::trace!(consumer = c.name(), "authenticated");
    }
    finish(exchange, res)
}
