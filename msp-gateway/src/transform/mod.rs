//! Per-route request and response transformations: header
//! add/set/remove/rename both ways and JSON response field
//! allow/deny/rename.
//!
//! ```yaml
//! routes:
//!   - path: "/api/users/*"
//!     service: user-service
//!     request_headers:  { add: {x-tenant: shop}, set: {x-env: prod}, remove: [x-debug], rename: {x-old: x-new} }
//!     response_headers: { remove: [server], set: {cache-control: no-store} }
//!     response_json:    { allow: [id, name, address.city], deny: [password_hash], rename: {name: full_name} }
//! ```
//!
//! # Where they run
//!
//! - **Request headers** ([`HeaderTransformConfig`]) are edited after auth
//!   and before the identity headers are stripped and set, the cache
//!   lookup (so `Vary` sees what the upstream sees) and the proxy's
//!   hop-by-hop and forwarding pass: the gateway's own headers always win.
//!   On top of that, naming a hop-by-hop field, `Content-Length`, `Host`,
//!   `Forwarded`, `X-Forwarded-*`, `Via` or an identity header is a load
//!   error naming the route, field and line.
//! - **Response headers** are edited on every answer that went through the
//!   upstream step (cache hits included), after hop-by-hop stripping and
//!   before the `RateLimit-*` headers; hop-by-hop fields,
//!   `Content-Length` and `X-Cache` cannot be named.
//! - Each direction applies **remove → rename → set → add**.
//! - **`response_json`** ([`JsonTransformConfig`]) rewrites `2xx`
//!   `application/json` / `application/*+json` bodies without a content
//!   coding: allow → deny → rename on dotted paths, arrays element-wise,
//!   then `Content-Length` is set to the new length and the upstream's
//!   `ETag` and digests (`Content-MD5`, `Digest`, `Content-Digest`,
//!   `Repr-Digest`) are dropped; `206` ranges are left alone and `HEAD`
//!   answers lose their (untransformed) `Content-Length`. Only such a route's
//!   bodies are buffered, up to `max_bytes` (default
//!   [`DEFAULT_MAX_JSON_BYTES`]); larger, trailer-carrying, invalid or
//!   scalar JSON bodies pass through unchanged, counted in
//!   `msp_gateway_transform_passthrough_total{route, reason}` and logged at
//!   debug. Routes without `response_json` stream bodies untouched
//!   (server-sent events included).
//! - **The cache stores the upstream's answer**; transforms run on the way
//!   out, on hits and misses alike, so changing a route's transforms
//!   never serves a stale rewritten body.
//! - Path templates are the route's `rewrite` (`/v2/users/{id}`, `*` for
//!   the wildcard), see [`crate::config::RouteConfig`].
//!
//! # Example
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use msp_gateway::Gateway;
//! use msp_gateway::config::GatewayConfig;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let app = axum::Router::new().fallback(|headers: http::HeaderMap| async move {
//!     let tenant = headers.get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
//!     let body = serde_json::json!({"id": 7, "name": "Ada", "tenant": tenant, "password_hash": "x"});
//!     ([("content-type", "application/json")], body.to_string())
//! });
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let config = GatewayConfig::from_yaml(&format!(r#"
//! routes:
//!   - path: "/api/users/*"
//!     service: user-service
//!     request_headers: {{ add: {{x-tenant: shop}} }}
//!     response_headers: {{ set: {{x-served-by: gateway}} }}
//!     response_json: {{ deny: [password_hash], rename: {{name: full_name}} }}
//! services:
//!   user-service: {{ instances: ["{addr}"] }}
//! "#), "inline")?;
//! let gateway = Gateway::from_config(config).await?;
//!
//! let req = http::Request::get("/api/users/7").header("host", "gw").body(Empty::<bytes::Bytes>::new())?;
//! let res = gateway.oneshot(req).await?;
//! assert_eq!(res.headers()["x-served-by"], "gateway");
//! let body: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body, serde_json::json!({"id": 7, "full_name": "Ada", "tenant": "shop"}));
//! # Ok(())
//! # }
//! ```

mod config;
mod headers;
mod json;

pub use self::config::{DEFAULT_MAX_JSON_BYTES, HeaderTransformConfig, JsonTransformConfig};
pub(crate) use self::config::{Direction, check_headers, check_json};

use self::headers::HeaderRules;
use self::json::JsonRules;
use crate::Body;
use crate::config::RouteConfig;
use http::{HeaderMap, Response};

/// A route's transforms, compiled once per config snapshot.
#[derive(Debug)]
pub(crate) struct RouteTransform {
    request: Option<HeaderRules>,
    response: Option<HeaderRules>,
    json: Option<JsonRules>,
}

impl RouteTransform {
    /// `None` for a route without transforms (the common case: nothing
    /// is done per request).
    pub(crate) fn compile(route: &RouteConfig) -> Option<RouteTransform> {
        let t = RouteTransform {
            request: HeaderRules::compile(&route.request_headers),
            response: HeaderRules::compile(&route.response_headers),
            json: route.response_json.as_ref().and_then(JsonRules::compile),
        };
        (t.request.is_some() || t.response.is_some() || t.json.is_some()).then_some(t)
    }

    /// Edits the headers going upstream.
    pub(crate) fn request(&self, headers: &mut HeaderMap) {
        if let Some(rules) = &self.request {
            rules.apply(headers);
        }
    }

    /// Edits the response going to the client: headers, then (when
    /// configured) the JSON body. `head`: the request was `HEAD` (no body).
    pub(crate) async fn response(
        &self,
        route: &str,
        head: bool,
        mut res: Response<Body>,
    ) -> Response<Body> {
        if let Some(rules) = &self.response {
            rules.apply(res.headers_mut());
        }
        match &self.json {
            Some(json) => json.apply(route, head, res).await,
            None => res,
        }
    }
}
