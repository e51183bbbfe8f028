//! The BFF's metrics (through the `metrics` facade):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `msp_bff_requests_total` | `aggregate`, `outcome` (`complete`, `partial`, `failed`, `rejected`) | aggregate requests answered |
//! | `msp_bff_request_duration_seconds` | `aggregate`, `outcome` | histogram, request to response head |
//! | `msp_bff_partial_responses_total` | `aggregate` | responses missing an optional backend |
//! | `msp_bff_backend_duration_seconds` | `aggregate`, `backend` | histogram, per backend step (a collection's calls together) |
//! | `msp_bff_backend_failures_total` | `aggregate`, `backend`, `reason` | `timeout`, `unavailable`, `error`, `status`, `bad_body`, `missing_value`, `bad_value`, `dependency_failed` |
//! | `msp_bff_encode_failures_total` | `aggregate`, `format` (a media type) | responses that could not be encoded (a value not fitting the protobuf message) |

use std::sync::Once;
use std::time::Duration;

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!("msp_bff_requests_total", "aggregate requests answered");
        metrics::describe_histogram!(
            "msp_bff_request_duration_seconds",
            metrics::Unit::Seconds,
            "aggregate request duration"
        );
        metrics::describe_counter!(
            "msp_bff_partial_responses_total",
            "aggregate responses missing an optional backend"
        );
        metrics::describe_histogram!(
            "msp_bff_backend_duration_seconds",
            metrics::Unit::Seconds,
            "duration of one backend step of an aggregate"
        );
        metrics::describe_counter!(
            "msp_bff_backend_failures_total",
            "failed backend steps of aggregates"
        );
        metrics::describe_counter!(
            "msp_bff_encode_failures_total",
            "aggregate responses that could not be encoded for the client"
        );
    });
}

pub(crate) fn request(aggregate: &str, outcome: &'static str, took: Duration) {
    let labels = [
        ("aggregate", aggregate.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!("msp_bff_requests_total", &labels).increment(1);
    metrics::histogram!("msp_bff_request_duration_seconds", &labels).record(took.as_secs_f64());
    if outcome == "partial" {
        metrics::counter!("msp_bff_partial_responses_total", "aggregate" => aggregate.to_owned())
            .increment(1);
    }
}

pub(crate) fn backend(
    aggregate: &str,
    backend: &str,
    took: Duration,
    failure: Option<&'static str>,
) {
    metrics::histogram!(
        "msp_bff_backend_duration_seconds",
        "aggregate" => aggregate.to_owned(),
        "backend" => backend.to_owned()
    )
    .record(took.as_secs_f64());
    if let Some(reason) = failure {
        metrics::counter!(
            "msp_bff_backend_failures_total",
            "aggregate" => aggregate.to_owned(),
            "backend" => backend.to_owned(),
            "reason" => reason
        )
        .increment(1);
    }
}

pub(crate) fn encode_failure(aggregate: &str, format: &'static str) {
    metrics::counter!(
        "msp_bff_encode_failures_total",
        "aggregate" => aggregate.to_owned(),
        "format" => format
    )
    .increment(1);
}
