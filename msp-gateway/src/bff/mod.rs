//! Backends for frontends: aggregate endpoints with partial-failure
//! semantics and per-client shaping, as a tower `Service` usable in the
//! [`Gateway`](crate::Gateway) (`aggregates:` in its config) or on its own
//! in any axum service.
//!
//! An [`Aggregate`] answers one path by calling several backends and
//! merging their JSON:
//!
//! - **Fan-out**: backends run concurrently, each under its own `timeout`
//!   and the endpoint's one `deadline`. A backend whose URL uses another's
//!   response (`/products/{order.product_id}`) runs after it (dependency
//!   levels); `{order.item_ids[*]}` makes one call per element, at most
//!   `concurrency` at a time, the results an array.
//! - **Merging**: a backend's fields go to the root, or under its `group`
//!   key; `allow`, `deny` and `rename` (dotted paths, arrays traversed)
//!   shape each backend's result first.
//! - **Partial failure** (lura#288, krakend-ce#32): a `required` backend
//!   failing fails the endpoint — `504` when it timed out, `503` when it
//!   could not be called for lack of instances or an open breaker, `502`
//!   otherwise (a backend's 4xx is passed on: a missing order is a 404),
//!   as `application/problem+json`, never a bare 500. An optional backend
//!   failing gives `200` with the rest, the header `X-Partial: true` (or
//!   KrakenD's `X-KrakenD-Completed: false` with
//!   [`PartialMarker::KrakenD`]) and, in the body,
//!   `"_partial": {"failed": ["reviews"], "reasons": {"reviews": "timeout"}}`
//!   (reasons: `timeout`, `unavailable`, `error`, `status`, `bad_body`,
//!   `missing_value`, `bad_value`, `dependency_failed`). A placeholder
//!   value of `.` / `..` in a backend's path is refused (`400 bad_value`
//!   when the request supplied it), and `?fields=` takes at most 64 paths
//!   of at most 32 segments (else `400 bad_fields`).
//! - **Cancellation**: nothing is spawned; the response future owns every
//!   backend call, so a client that goes away (the future is dropped)
//!   cancels them all.
//! - **Per-client shaping**: the client type is fixed by the route
//!   ([`AggregateConfig::client`]), named in a header (`X-Client-Type`),
//!   or negotiated (an `Accept` of MessagePack, CBOR or protobuf picks
//!   the profile whose `format` it is); a [`ClientProfile`] filters
//!   fields, drops nulls, sets pagination defaults (`query_defaults`) and
//!   rewrites image URLs to thumbnails. The encoding follows `Accept`:
//!   JSON, `application/msgpack`, `application/cbor`, or protobuf for a
//!   profile with a [`ProtobufSchema`] (see [below](#protobuf)); `406`
//!   when the client type's profile sends none of the types accepted.
//!   `?fields=a,b.c` projects the result (`_partial` is always kept).
//!   Responses carry `Vary: accept, x-client-type`;
//!   [`Aggregate::cache_key`] gives a key per client type and format.
//! - **Metrics**: per aggregate and per backend — see the table below.
//!
//! Backends are called through any tower `Service<http::Request<Body>>`:
//! one shared client routing `http://service-name/…` (msp-discovery's
//! `DiscoveryClient`, or inside the gateway each service's discovery +
//! resilience stack), or one per backend
//! ([`AggregateBuilder::backend_client`]).
//!
//! # URL placeholders
//!
//! | placeholder | value |
//! |---|---|
//! | `{id}` | the path parameter `id` of the aggregate's `path` |
//! | `{query.limit}` | the request's query parameter (or the client profile's default); empty when absent |
//! | `{header.x-tenant}` | a request header; empty when absent |
//! | `{order.customer.id}` | a field of backend `order`'s response: a sequential step |
//! | `{order.item_ids[*]}` | every element: a collection, one call each |
//!
//! # Metrics
//!
//! | metric | labels |
//! |---|---|
//! | `msp_bff_requests_total`, `msp_bff_request_duration_seconds` | `aggregate`, `outcome` (`complete`, `partial`, `failed`, `rejected`) |
//! | `msp_bff_partial_responses_total` | `aggregate` |
//! | `msp_bff_backend_duration_seconds` | `aggregate`, `backend` |
//! | `msp_bff_backend_failures_total` | `aggregate`, `backend`, `reason` |
//! | `msp_bff_encode_failures_total` | `aggregate`, `format` |
//!
//! # Example
//!
//! An order-details endpoint in your own axum service: the order is
//! required, the reviews optional, each backend has its own timeout.
//!
//! ```
//! use axum::{Router, routing::get};
//! use http_body_util::BodyExt;
//! use msp_gateway::bff::{Aggregate, BackendConfig};
//! use msp_gateway::proxy::ProxyClient;
//! use serde_json::{Value, json};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two backends on loopback.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let backends = listener.local_addr()?;
//! let app = Router::new()
//!     .route("/orders/{id}", get(|| async { r#"{"id": 7, "product_id": 3}"# }))
//!     .route("/reviews", get(|| async { r#"[{"stars": 5}]"# }));
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let order_details = Aggregate::builder("order-details")
//!     .path("/orders/{id}")
//!     .deadline(Duration::from_secs(2))
//!     .backend(
//!         BackendConfig::new("order", format!("http://{backends}/orders/{{id}}"))
//!             .required()
//!             .timeout(Duration::from_millis(500)),
//!     )
//!     .backend(
//!         BackendConfig::new("reviews", format!("http://{backends}/reviews?product={{order.product_id}}"))
//!             .group("reviews"),
//!     )
//!     .client(ProxyClient::new())
//!     .build()?;
//!
//! // Mounted in your axum router.
//! let bff: Router = Router::new().route_service("/orders/{id}", order_details);
//! let res = bff
//!     .oneshot(http::Request::get("/orders/7").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(res.status(), 200);
//! let body: Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body, json!({"id": 7, "product_id": 3, "reviews": [{"stars": 5}]}));
//! # Ok(())
//! # }
//! ```
//!
//! The same settings as data — from YAML (or any serde format), unknown
//! fields refused, every problem listed with its field:
//!
//! ```
//! use msp_gateway::bff::{AggregateBuilder, AggregateConfig, AggregateError};
//!
//! let config: AggregateConfig = serde_saphyr::from_str(r#"
//! name: order-details
//! path: "/orders/{id}"
//! deadline: 2s
//! backends:
//!   - { name: order, url: "http://order-service/orders/{id}", required: true, timeout: 500ms }
//!   - { name: product, url: "http://product-service/products/{order.product_id}", group: product }
//!   - { name: reviews, url: "http://review-service/reviews/{product.sku}", group: reviews }
//! clients:
//!   mobile: { deny: [product.description], omit_nulls: true }
//! "#)?;
//! assert!(config.validate().is_empty());
//!
//! let mut broken = config.clone();
//! broken.backends[2].url = "http://review-service/reviews/{nothing.sku}".into();
//! let err = AggregateBuilder::from_config(broken)
//!     .client(msp_gateway::proxy::ProxyClient::new())
//!     .build()
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"aggregate "order-details": `backends[2].url`: {nothing.sku}: no backend named "nothing""#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Protobuf
//!
//! A profile with a [`ProtobufSchema`] — a compiled `FileDescriptorSet`
//! (`protoc --include_imports --descriptor_set_out=order_view.binpb
//! order_view.proto`, the file Envoy's gRPC-JSON transcoder takes) and a
//! message name — can send protobuf; `format: protobuf` makes it the
//! profile's default and lets a request naming no client type pick the
//! profile with an `Accept` of `application/protobuf`,
//! `application/x-protobuf` or `application/vnd.google.protobuf`.
//!
//! - The shaped JSON (after `allow`, `deny`, `omit_nulls`, `?fields=`)
//!   becomes the message by the proto3 JSON mapping (prost-reflect):
//!   keys are field names or JSON names, 64-bit integers numbers or
//!   strings, enums names or numbers, `null` the default value. Keys the
//!   message does not declare are **left out**, as by a proto3 JSON
//!   parser with `ignore_unknown_fields` (backends may add fields without
//!   breaking devices); so `_partial` is sent only if the message has a
//!   field with JSON name `_partial` (`Partial partial = 7 [json_name =
//!   "_partial"];`) — the `X-Partial` header is always there.
//! - `Content-Type: application/protobuf; proto=shop.v1.OrderView` (the
//!   IETF `application/protobuf` draft's form, naming the message). An
//!   `Accept` may name the message too (`application/protobuf;
//!   proto=pkg.Msg`, or `application/x-protobuf; messageType="pkg.Msg"`):
//!   then only a profile sending that message will do — it picks, among
//!   several `format: protobuf` profiles, the one with that message, and
//!   a client type whose message differs gets `406`.
//! - A value that does not fit its field (an object where an `int64` is
//!   declared) is a **`502` problem+json**, code
//!   `response_schema_mismatch`, with the message and the reason: the
//!   backends' data broke the contract the schema states, as a backend
//!   body that is not JSON is a `502`. It is logged (`warn`) and counted
//!   in `msp_bff_encode_failures_total`; nothing half-encoded is sent.
//! - The descriptor set is read when the aggregate is built (and by
//!   [`AggregateConfig::validate`], which the gateway runs when it loads
//!   its config), never per request; clones share the loaded message.
//!   Load errors name the client and field: the file unreadable
//!   (`clients.iot.protobuf.descriptor_set`), not a descriptor set (a
//!   `.proto` source is refused: compile it with `protoc`), the message
//!   missing (`clients.iot.protobuf.message`, listing those there), an
//!   `allow` path the message lacks (`clients.iot.allow[1]`). In the
//!   gateway a reload whose descriptor set is broken is refused and the
//!   last good configuration, with its loaded message, stays.
//!
//! ```
//! use http_body_util::BodyExt;
//! use msp_gateway::bff::{Aggregate, BackendConfig, ClientProfile, Format, ProtobufSchema};
//! use prost_reflect::{DescriptorPool, DynamicMessage};
//! use tower::ServiceExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! // A descriptor set made by `protoc` from tests/data/order_view.proto.
//! let descriptor_set = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/order_view.binpb");
//! let order = tower::service_fn(|_req: http::Request<msp_gateway::Body>| async {
//!     let body = r#"{"id": 7, "status": "shipped", "internal_note": "fragile"}"#;
//!     Ok::<_, std::convert::Infallible>(http::Response::new(msp_gateway::Body::full(body)))
//! });
//! let order_page = Aggregate::builder("order-page")
//!     .path("/orders/{id}")
//!     .backend(BackendConfig::new("order", "http://order-service/orders/{id}").required())
//!     .profile(
//!         "iot",
//!         ClientProfile::new()
//!             .format(Format::Protobuf)
//!             .protobuf(ProtobufSchema::new(descriptor_set, "shop.v1.OrderView")),
//!     )
//!     .client(order)
//!     .build()?;
//!
//! let req = http::Request::get("/orders/7")
//!     .header("accept", "application/x-protobuf")
//!     .body(msp_gateway::Body::empty())?;
//! let res = order_page.oneshot(req).await?;
//! assert_eq!(res.headers()["content-type"], "application/protobuf; proto=shop.v1.OrderView");
//! let body = res.into_body().collect().await?.to_bytes();
//!
//! // The device decodes it with its generated code; here, by reflection.
//! let pool = DescriptorPool::decode(std::fs::read(descriptor_set)?.as_slice())?;
//! let view = pool.get_message_by_name("shop.v1.OrderView").expect("in the set");
//! let msg = DynamicMessage::decode(view, body)?;
//! assert_eq!(msg.get_field_by_name("id").and_then(|v| v.as_i64()), Some(7));
//! assert_eq!(msg.get_field_by_name("status").and_then(|v| v.as_str().map(String::from)).as_deref(), Some("shipped"));
//! # Ok(())
//! # }
//! ```
//!
//! The same profile in YAML:
//!
//! ```yaml
//! clients:
//!   iot:
//!     allow: [id, status, items]
//!     format: protobuf
//!     protobuf: { descriptor_set: schemas/order_view.binpb, message: shop.v1.OrderView }
//! ```
//!
//! Only descriptor sets are read, not `.proto` sources: compiling them
//! in the gateway (protox) would add a parser and ~25 crates to every
//! build for what one `protoc` call does once.
//!
//! In the gateway, the same aggregate is an `aggregates:` entry whose
//! backend URLs name configured services (`http://order-service/…`); see
//! [`config`](crate::config) and the README.

mod config;
mod encode;
mod error;
mod exec;
mod json;
mod metrics;
mod protobuf;
mod service;
mod shape;
mod template;
mod validate;

pub use self::config::{
    AggregateConfig, BackendConfig, ClientProfile, Format, PARTIAL_KEY, PartialMarker,
    ProtobufSchema, ThumbnailRule,
};
pub use self::error::AggregateError;
pub use self::service::{Aggregate, AggregateBuilder, ResponseFuture};
pub use self::validate::AggregateProblem;

pub(crate) use self::exec::Filters;
pub(crate) use self::json::FieldPath;
pub(crate) use self::template::Template;
