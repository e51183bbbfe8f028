//! The quickstart shown in the root README.md and msp-core/README.md, kept
//! here so CI compiles it: `cargo run -p quickstart --example readme`.

use axum::{Router, extract::MatchedPath, routing::get};
use metrics_exporter_prometheus::PrometheusBuilder;
use msp_core::health::{Check, HealthRegistry};
use msp_core::observe::{self, metrics::collapse_path};
use msp_core::shutdown::{DrainLayer, Shutdown};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let health = HealthRegistry::new();
    health.register(Check::new("db", || async { Ok::<_, String>(()) }).readiness_only());
    let shutdown = Shutdown::builder().health(health.clone()).build();
    shutdown.listen_for_signals()?;

    // request id + W3C trace context + tower-http trace + RED metrics,
    // labelled with axum's route template.
    let observe = observe::layer("orders").route_fn(|uri, ext| {
        ext.get::<MatchedPath>()
            .map_or_else(|| collapse_path(uri.path()), |p| p.as_str().to_owned())
    });
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "an order" }))
        .layer(observe)
        .route_service("/health/live", health.service())
        .route_service("/health/ready", health.service())
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .layer(DrainLayer::new(&shutdown));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.stop_accepting());
    let server = tokio::spawn(server.into_future());
    // On SIGTERM: not ready → hooks → stop accepting → drain (30 s max).
    let report = shutdown.run().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    println!("abandoned {} requests", report.drain.abandoned);
    Ok(())
}
