//! The shortest real msp program, as a library so tests can start it.
//!
//! An axum service with two business routes, wrapped in msp-core's
//! observability stack (request id, W3C trace context, tower-http trace,
//! RED metrics), with `/health/live` + `/health/ready` from a
//! [`HealthRegistry`], `/metrics` in Prometheus text, and graceful shutdown
//! through [`Shutdown`]. `src/main.rs` binds the listener and calls
//! [`serve`].
//!
//! # Example
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = quickstart::install_metrics()?;
//! let app = quickstart::App::new(metrics);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! app.shutdown.listen_for_signals()?;
//! let report = quickstart::serve(listener, app).await?;
//! println!("abandoned {} requests", report.drain.abandoned);
//! # Ok(())
//! # }
//! ```

use axum::extract::{MatchedPath, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use msp_core::health::{Check, HealthRegistry};
use msp_core::observe::{self, metrics as red};
use msp_core::shutdown::{DrainLayer, Shutdown, ShutdownReport};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// The service name used in metric labels.
pub const SERVICE: &str = "quickstart";

/// Installs the Prometheus recorder as the global `metrics` recorder (once
/// per process), with histogram buckets for the request duration, and
/// starts its periodic upkeep. Must run inside a tokio runtime.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(red::REQUEST_DURATION_SECONDS.to_owned()),
            red::DURATION_BUCKETS,
        )?
        .install_recorder()?;
    red::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// An order of the demo store.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// Its id.
    pub id: u64,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

type Store = Arc<RwLock<HashMap<u64, Order>>>;

/// Everything the program is made of.
#[derive(Debug)]
pub struct App {
    /// The routes, observed, with health and metrics endpoints.
    pub router: Router,
    /// The health registry behind `/health/*`.
    pub health: HealthRegistry,
    /// The shutdown coordinator: trigger it (or send SIGTERM after
    /// `listen_for_signals`) to stop [`serve`].
    pub shutdown: Shutdown,
}

impl App {
    /// Builds the app, answering `/metrics` from `metrics`.
    pub fn new(metrics: PrometheusHandle) -> Self {
        let health = HealthRegistry::new();
        let shutdown = Shutdown::builder()
            .health(health.clone())
            .drain_timeout(Duration::from_secs(10))
            .build();

        let store: Store = Arc::new(RwLock::new(HashMap::from([
            (
                1,
                Order {
                    id: 1,
                    item: "coffee".into(),
                    quantity: 2,
                },
            ),
            (
                2,
                Order {
                    id: 2,
                    item: "tea".into(),
                    quantity: 1,
                },
            ),
        ])));
        let probe = store.clone();
        health.register(
            Check::new("store", move || {
                let usable = !probe.is_poisoned();
                async move {
                    if usable {
                        Ok(())
                    } else {
                        Err("order store lock poisoned")
                    }
                }
            })
            .readiness_only()
            .timeout(Duration::from_secs(1)),
        );

        // The route label is axum's route template: `Router::layer` wraps
        // each route after routing, so `MatchedPath` is there.
        let observe = observe::layer(SERVICE).route_fn(|uri, ext| {
            ext.get::<MatchedPath>()
                .map_or_else(|| red::collapse_path(uri.path()), |p| p.as_str().to_owned())
        });
        let router = Router::new()
            .route("/hello/{name}", get(hello))
            .route("/orders/{id}", get(order))
            .with_state(store)
            .layer(observe)
            // Added after the layer: probes and scrapes are not measured.
            .route_service("/health/live", health.service())
            .route_service("/health/ready", health.service())
            .route(
                "/metrics",
                get(move || std::future::ready(metrics.render())),
            )
            .layer(DrainLayer::new(&shutdown));
        App {
            router,
            health,
            shutdown,
        }
    }
}

async fn hello(Path(name): Path<String>) -> String {
    format!("hello, {name}\n")
}

async fn order(State(store): State<Store>, Path(id): Path<u64>) -> impl IntoResponse {
    let found = match store.read() {
        Ok(orders) => orders.get(&id).cloned(),
        Err(_) => return Err(StatusCode::INTERNAL_SERVER_ERROR),
    };
    found.map(Json).ok_or(StatusCode::NOT_FOUND)
}

/// Serves `app` on `listener` until its shutdown is triggered, then runs
/// the shutdown sequence (not ready → hooks → stop accepting → drain) and
/// returns its report. An error of the server itself also triggers the
/// shutdown, and is returned.
pub async fn serve(listener: TcpListener, app: App) -> std::io::Result<ShutdownReport> {
    let shutdown = app.shutdown.clone();
    let signal = shutdown.stop_accepting();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let served = axum::serve(listener, app.router)
                .with_graceful_shutdown(signal)
                .await;
            shutdown.trigger();
            served
        }
    });
    let report = shutdown.run().await;
    // Drained (or given up): let the server close its idle connections, but
    // do not wait for a connection the drain already abandoned.
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(served)) => served?,
        Ok(Err(join)) => return Err(std::io::Error::other(join)),
        Err(_elapsed) => tracing::warn!("server still had open connections; exiting anyway"),
    }
    Ok(report)
}
