//! The live dashboard: one page showing what the system is doing, updated
//! over Server-Sent Events without reloading.
//!
//! Served on the gateway's admin listener (`127.0.0.1:9090` under
//! `cargo run -p ecommerce`) beside the gateway's own admin endpoints:
//!
//! | path | answer |
//! |---|---|
//! | `GET /dashboard` | the page |
//! | `GET /dashboard/state` | the [state](Dashboard::state) as JSON |
//! | `GET /dashboard/events` | `event: state` with the same JSON, every second |
//! | `POST /chaos/{service}?error_rate=R` | turns fault injection on for `service` (rate `R`, default 1.0): its requests answer `503 injected_fault` |
//! | `DELETE /chaos/{service}` | turns it off |
//! | anything else | msp-gateway's admin: `/routes`, `/upstreams`, `/config`, `/metrics`, `/health` |
//!
//! The state lists the services with their registered instances (and, for
//! those behind the gateway, health, ejection and the gateway's breaker),
//! every circuit breaker between services, the gateway's routes with their
//! rate limits and tracked clients, chaos switches, the latest sagas with
//! their step logs and the latest requests with their trace ids.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let dir = tempfile::tempdir()?;
//! let system = ecommerce::System::start(ecommerce::SystemConfig {
//!     data_dir: dir.path().to_path_buf(),
//!     gateway_listen: Some("127.0.0.1:0".parse()?),
//!     ..Default::default()
//! })
//! .await?;
//! let state = system.dashboard().state().await;
//! assert_eq!(state["services"].as_array().map(Vec::len), Some(7));
//! assert_eq!(state["breakers"][0]["state"], "closed");
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

use crate::requests::RequestLog;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::{get, post};
use futures_util::Stream;
use http::StatusCode;
use msp_core::ServiceName;
use msp_discovery::{MemoryRegistry, Registry};
use msp_gateway::Gateway;
use msp_gateway::admin::Admin;
use msp_resilience::chaos::ChaosHandle;
use msp_resilience::circuit_breaker::Breaker;
use msp_saga::saga::{SagaStore, SqliteSagaStore};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The page, self-contained (no script or style from elsewhere).
const PAGE: &str = include_str!("page.html");

/// How many sagas and requests the state lists.
const LATEST_SAGAS: usize = 12;
const LATEST_REQUESTS: usize = 40;

/// A circuit breaker between two services, as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct ClientBreaker {
    /// The calling service.
    pub caller: &'static str,
    /// The called service.
    pub callee: &'static str,
    /// The breaker.
    pub breaker: Breaker,
}

/// What the dashboard reads; cheap to clone (everything is shared).
#[derive(Debug, Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Gateway,
    registry: MemoryRegistry,
    services: Vec<&'static str>,
    breakers: Vec<ClientBreaker>,
    chaos: BTreeMap<&'static str, ChaosHandle>,
    requests: RequestLog,
    sagas: SqliteSagaStore,
}

impl Dashboard {
    /// A dashboard over the running system's parts.
    pub fn new(
        gateway: Gateway,
        registry: MemoryRegistry,
        services: Vec<&'static str>,
        breakers: Vec<ClientBreaker>,
        chaos: BTreeMap<&'static str, ChaosHandle>,
        requests: RequestLog,
        sagas: SqliteSagaStore,
    ) -> Self {
        Dashboard {
            inner: Arc::new(Inner {
                gateway,
                registry,
                services,
                breakers,
                chaos,
                requests,
                sagas,
            }),
        }
    }

    /// The chaos switch of `service`, if it has one.
    pub fn chaos(&self, service: &str) -> Option<&ChaosHandle> {
        self.inner.chaos.get(service)
    }

    /// The breakers between services.
    pub fn breakers(&self) -> &[ClientBreaker] {
        &self.inner.breakers
    }

    /// Everything the page shows, as JSON.
    pub async fn state(&self) -> Value {
        let me = &self.inner;
        let upstreams = serde_json::to_value(me.gateway.upstreams()).unwrap_or(Value::Null);
        let mut services = Vec::new();
        for &name in &me.services {
            let instances = match ServiceName::new(name) {
                Ok(service) => me.registry.instances(&service).await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            let behind_gateway = upstreams
                .as_array()
                .and_then(|all| all.iter().find(|u| u["service"] == name))
                .cloned();
            services.push(json!({
                "name": name,
                "instances": instances
                    .iter()
                    .map(|i| json!({"id": i.id().as_str(), "addr": i.addr().to_string()}))
                    .collect::<Vec<_>>(),
                "gateway": behind_gateway,
                "chaos": me.chaos.get(name).map(|c| json!({
                    "enabled": c.is_enabled(),
                    "injected_errors": c.injected_errors(),
                })),
            }));
        }
        let breakers: Vec<Value> = me
            .breakers
            .iter()
            .map(|b| {
                let snap = b.breaker.snapshot();
                json!({
                    "caller": b.caller,
                    "callee": b.callee,
                    "state": snap.state.as_str(),
                    "calls": snap.calls,
                    "failures": snap.failures,
                    "consecutive_failures": snap.consecutive_failures,
                    "trips": snap.trips,
                })
            })
            .collect();
        // The store lists oldest first; the page wants the latest.
        let sagas = match me.sagas.list(None, 1000).await {
            Ok(all) => all
                .iter()
                .rev()
                .take(LATEST_SAGAS)
                .map(|s| {
                    json!({
                        "id": s.id.to_string(),
                        "name": s.name,
                        "state": s.state,
                        "log": s.log.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect(),
            Err(e) => vec![json!({"error": e.to_string()})],
        };
        json!({
            "services": services,
            "breakers": breakers,
            "routes": me.gateway.routes(),
            "config": me.gateway.status(),
            "sagas": sagas,
            "requests": me.requests.recent(LATEST_REQUESTS),
        })
    }

    /// The dashboard's routes, with msp-gateway's admin `admin` behind them.
    pub fn router(&self, admin: Admin) -> Router {
        Router::new()
            .route("/dashboard", get(|| async { Html(PAGE) }))
            .route("/dashboard/state", get(state))
            .route("/dashboard/events", get(events))
            .route("/chaos/{service}", post(chaos_on).delete(chaos_off))
            .fallback_service(admin)
            .with_state(self.clone())
    }
}

async fn state(State(d): State<Dashboard>) -> Json<Value> {
    Json(d.state().await)
}

/// Every second, the state as an `event: state`.
async fn events(State(d): State<Dashboard>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((d, true), |(d, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let event = Event::default()
            .event("state")
            .json_data(d.state().await)
            .unwrap_or_else(|_| {
                Event::default()
                    .event("error")
                    .data("state not serialisable")
            });
        Some((Ok(event), (d, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
struct ChaosQuery {
    error_rate: Option<f64>,
}

async fn chaos_on(
    State(d): State<Dashboard>,
    Path(service): Path<String>,
    Query(q): Query<ChaosQuery>,
) -> impl IntoResponse {
    let Some(chaos) = d.chaos(&service) else {
        return (StatusCode::NOT_FOUND, format!("no service {service}\n"));
    };
    let rate = q.error_rate.unwrap_or(1.0);
    if let Err(e) = chaos.set_error_rate(rate) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n"));
    }
    chaos.enable();
    (
        StatusCode::OK,
        format!("chaos on for {service}: error rate {rate}\n"),
    )
}

async fn chaos_off(State(d): State<Dashboard>, Path(service): Path<String>) -> impl IntoResponse {
    match d.chaos(&service) {
        Some(chaos) => {
            chaos.disable();
            (StatusCode::OK, format!("chaos off for {service}\n"))
        }
        None => (StatusCode::NOT_FOUND, format!("no service {service}\n")),
    }
}
