//! RED metrics per route and per upstream, and the access log: one
//! structured line per request, written when the response body ends.

use super::body::OnEnd;
use crate::upstream::UpstreamInstance;
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Everything the access-log line says about one request.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) started: Instant,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) route: Arc<str>,
    pub(crate) service: Option<Arc<str>>,
    pub(crate) instance: Option<UpstreamInstance>,
    pub(crate) status: StatusCode,
    pub(crate) request_id: Option<String>,
    pub(crate) client: Option<std::net::IpAddr>,
    /// Time to the upstream's response head.
    pub(crate) upstream: Option<Duration>,
    /// Time to the gateway's response head.
    pub(crate) head: Duration,
}

/// Route label for requests that matched no route.
pub(crate) const NO_ROUTE: &str = "-";

/// A label for the method, without allocating for the standard ones.
fn method_label(method: &Method) -> metrics::SharedString {
    let known = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => return metrics::SharedString::from_owned(method.as_str().to_owned()),
    };
    metrics::SharedString::const_str(known)
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Exchange {
    /// Records the RED metrics known at the response head.
    pub(crate) fn record_head(&self) {
        let class = status_class(self.status);
        metrics::counter!(
            "msp_gateway_requests_total",
            "route" => self.route.clone(),
            "method" => method_label(&self.method),
            "status" => class,
        )
        .increment(1);
        if self.status.is_server_error() {
            metrics::counter!("msp_gateway_request_errors_total", "route" => self.route.clone())
                .increment(1);
        }
        metrics::histogram!("msp_gateway_request_duration_seconds", "route" => self.route.clone())
            .record(self.head.as_secs_f64());
        if let (Some(service), Some(upstream)) = (&self.service, self.upstream) {
            metrics::counter!(
                "msp_gateway_upstream_requests_total",
                "service" => service.clone(),
                "status" => class,
            )
            .increment(1);
            metrics::histogram!(
                "msp_gateway_upstream_duration_seconds",
                "service" => service.clone(),
            )
            .record(upstream.as_secs_f64());
        }
    }
}

impl OnEnd for Exchange {
    fn end(self: Box<Self>, bytes: u64, complete: bool) {
        let total = self.started.elapsed();
        metrics::counter!("msp_gateway_response_bytes_total", "route" => self.route.clone())
            .increment(bytes);
        tracing::info!(
            target: "msp_gateway::access",
            route = %self.route,
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            service = self.service.as_deref().unwrap_or("-"),
            instance = self.instance.as_ref().map(|i| i.id.as_str()).unwrap_or("-"),
            addr = %self.instance.as_ref().map(|i| i.addr.to_string()).unwrap_or_else(|| "-".to_owned()),
            client = %self.client.map(|c| c.to_string()).unwrap_or_else(|| "-".to_owned()),
            request_id = self.request_id.as_deref().unwrap_or("-"),
            upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1e3),
            head_ms = self.head.as_secs_f64() * 1e3,
            total_ms = total.as_secs_f64() * 1e3,
            bytes,
            complete,
            "request"
        );
    }
}

/// Describes the gateway's metrics to the installed recorder.
pub(crate) fn describe() {
    metrics::describe_counter!(
        "msp_gateway_requests_total",
        "Requests by route, method and status class"
    );
    metrics::describe_counter!("msp_gateway_request_errors_total", "5xx answers by route");
    metrics::describe_histogram!(
        "msp_gateway_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to the response head by route"
    );
    metrics::describe_counter!(
        "msp_gateway_upstream_requests_total",
        "Upstream answers by service and status class"
    );
    metrics::describe_histogram!(
        "msp_gateway_upstream_duration_seconds",
        metrics::Unit::Seconds,
        "Time to the upstream response head by service"
    );
    metrics::describe_counter!(
        "msp_gateway_response_bytes_total",
        metrics::Unit::Bytes,
        "Response body bytes by route"
    );
    metrics::describe_counter!(
        "msp_gateway_reloads_total",
        "Accepted configuration reloads"
    );
    metrics::describe_counter!(
        "msp_gateway_reload_errors_total",
        "Rejected configuration reloads"
    );
    metrics::describe_gauge!(
        "msp_gateway_config_version",
        "Version of the active configuration"
    );
}
