//! The recent requests every service answered, with their trace ids: what
//! the dashboard's "recent requests" table shows.
//!
//! [`RequestLog::wrap`] wraps a service's routes; each answered request
//! becomes a [`RequestRecord`] (service, method, route template, status,
//! duration and the W3C trace id of the `traceparent` it arrived with), kept
//! in a bounded ring shared by every service of the system. A request that
//! crosses the gateway and three services shows up four times (the gateway's
//! hop through its upstream's record) under **one trace id**.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::requests::RequestLog;
//! use tower::ServiceExt;
//!
//! let log = RequestLog::new(100);
//! let routes = axum::Router::new().route("/items/{id}", axum::routing::get(|| async { "item" }));
//! let app = log.wrap("item-service", routes);
//! let req = http::Request::get("/items/7")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(axum::body::Body::empty())?;
//! app.oneshot(req).await?;
//!
//! let recent = log.recent(10);
//! assert_eq!(recent[0].route, "/items/{id}");
//! assert_eq!(recent[0].status, 200);
//! assert_eq!(recent[0].trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
//! # Ok(())
//! # }
//! ```

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// One answered request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it was answered (ms since the Unix epoch).
    pub at_ms: u64,
    /// The service that answered it.
    pub service: &'static str,
    /// The method.
    pub method: String,
    /// The route template (`/orders/{id}`), or the path when no route
    /// matched.
    pub route: String,
    /// The status it was answered with.
    pub status: u16,
    /// How long the service took to produce the response head, in
    /// microseconds.
    pub micros: u64,
    /// The trace id of the incoming `traceparent`, if it had a valid one.
    pub trace_id: Option<String>,
}

/// A bounded ring of the latest [`RequestRecord`]s, shared by every clone.
#[derive(Debug, Clone)]
pub struct RequestLog {
    inner: Arc<Mutex<VecDeque<RequestRecord>>>,
    capacity: usize,
}

impl RequestLog {
    /// Keeps the latest `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RequestLog {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// `routes`, recording every request they answer as `service`'s.
    pub fn wrap(&self, service: &'static str, routes: Router) -> Router {
        routes.layer(from_fn_with_state((self.clone(), service), record))
    }

    /// Adds a record, dropping the oldest when full.
    pub fn push(&self, record: RequestRecord) {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    /// The latest `n` records, newest first.
    pub fn recent(&self, n: usize) -> Vec<RequestRecord> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().take(n).cloned().collect()
    }
}

/// The trace id of a `traceparent` value (`00-{trace id}-{span id}-{flags}`),
/// when it has that shape.
fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

async fn record(
    State((log, service)): State<(RequestLog, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id);
    let started = Instant::now();
    let res = next.run(req).await;
    let took = started.elapsed();
    log.push(RequestRecord {
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
        service,
        method,
        route,
        status: res.status().as_u16(),
        micros: took.as_micros().try_into().unwrap_or(u64::MAX),
        trace_id: trace,
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_latest_newest_first() {
        let log = RequestLog::new(2);
        for status in [200, 201, 202] {
            log.push(RequestRecord {
                at_ms: 0,
                service: "s",
                method: "GET".into(),
                route: "/".into(),
                status,
                micros: 1,
                trace_id: None,
            });
        }
        let statuses: Vec<u16> = log.recent(10).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [202, 201]);
    }

    #[test]
    fn trace_ids_come_only_from_well_formed_traceparents() {
        assert_eq!(
            trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("garbage"), None);
    }
}
