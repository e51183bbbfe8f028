//! OpenTelemetry export (feature `otel`): msp's spans to any OTLP collector.
//!
//! [`OtlpExporter`] sets up the OpenTelemetry SDK (the crates of the
//! OpenTelemetry Rust project) with a batch span processor and the OTLP/HTTP
//! exporter (protobuf), and hands back an [`OtelGuard`] whose
//! [`layer`](OtelGuard::layer) turns `tracing` spans into OpenTelemetry
//! spans. Jaeger, Tempo, or an OpenTelemetry Collector receive them on their
//! OTLP/HTTP port (4318).
//!
//! The spans of [`TraceContextLayer`](super::TraceContextLayer) (server,
//! `trace_context`) and
//! [`PropagateTraceContextLayer`](super::PropagateTraceContextLayer) (client,
//! `trace_context_client`) carry the W3C ids msp propagates: a server span is
//! the child of the remote span named by the incoming `traceparent`, and the
//! `parent-id` an outgoing call sends is the id of its exported client span —
//! so a trace crossing msp services is one tree in the backend. Every other
//! `tracing` span in the request (tower-http's, your handlers') nests under
//! them as usual.
//!
//! The exporter speaks plain HTTP (hyper, no TLS stack): point it at a
//! collector or agent next to the service (`http://localhost:4318`, a
//! sidecar, a node-local agent), which forwards over TLS if needed. Without
//! an [`endpoint`](OtlpExporterBuilder::endpoint), the standard variables
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` are
//! read, then `http://localhost:4318/v1/traces`; `OTEL_SERVICE_NAME` names
//! the service when [`service_name`](OtlpExporterBuilder::service_name) is
//! not set.
//!
//! # Example
//!
//! ```
//! use msp_core::observe::otel::OtlpExporter;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let otel = OtlpExporter::builder()
//!     .endpoint("http://127.0.0.1:4318")
//!     .service_name("orders")
//!     .install()?;
//! let subscriber = tracing_subscriber::registry().with(otel.layer());
//! // Usually `tracing::subscriber::set_global_default(subscriber)` in main.
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! // … serve with `msp_core::observe::layer(..)` or `TraceContextLayer` …
//!
//! // Export what is left before the process exits (dropping the guard does
//! // the same, ignoring errors).
//! otel.shutdown()?;
//! # Ok(())
//! # }
//! ```

mod client;
pub(crate) mod link;

use self::client::ExportClient;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// Sets up OTLP/HTTP export; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct OtlpExporter {
    _priv: (),
}

impl OtlpExporter {
    /// A builder with the defaults: endpoint and service name from the
    /// standard `OTEL_*` variables, 10 s export timeout.
    pub fn builder() -> OtlpExporterBuilder {
        OtlpExporterBuilder {
            endpoint: None,
            service_name: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }
}

/// Configures and installs the exporter; made by [`OtlpExporter::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct OtlpExporterBuilder {
    endpoint: Option<String>,
    service_name: Option<String>,
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl OtlpExporterBuilder {
    /// The collector: its base URL (`http://collector:4318`, to which
    /// `/v1/traces` is appended) or the full traces URL (ending in
    /// `/v1/traces`). Plain `http` only.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The `service.name` resource attribute of every span.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// How long one export request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A header sent with every export request (an API key, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Starts the exporter (a batch span processor and a small export
    /// thread). No network I/O happens here; export errors later are dropped
    /// after the SDK's retries, never surfaced to requests.
    pub fn install(self) -> Result<OtelGuard, OtelError> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(self.timeout);
        if let Some(endpoint) = &self.endpoint {
            exporter = exporter.with_endpoint(traces_url(endpoint)?);
        }
        if !self.headers.is_empty() {
            exporter = exporter.with_headers(self.headers.into_iter().collect());
        }
        let client = ExportClient::new(self.timeout).map_err(|e| OtelError::Build(Box::new(e)))?;
        let exporter = exporter
            .with_http_client(client)
            .build()
            .map_err(|e| OtelError::Build(Box::new(e)))?;
        let mut resource = Resource::builder();
        if let Some(name) = self.service_name {
            resource = resource.with_service_name(name);
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("msp-core");
        Ok(OtelGuard { provider, tracer })
    }
}

/// `endpoint` as the traces URL, checked to be plain `http`.
fn traces_url(endpoint: &str) -> Result<String, OtelError> {
    let invalid = |reason: &'static str| OtelError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported: msp exports over plain HTTP to a local collector or agent",
            ));
        }
        _ => return Err(invalid("the scheme must be http")),
    }
    if uri.host().is_none() {
        return Err(invalid("no host"));
    }
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/v1/traces"))
    }
}

/// The running exporter, made by [`OtlpExporterBuilder::install`].
///
/// Add [`layer`](Self::layer) to your `tracing` subscriber. Dropping the
/// guard flushes the spans not yet exported and stops the exporter (both
/// block the calling thread until done or timed out);
/// [`shutdown`](Self::shutdown) does the same and reports errors.
pub struct OtelGuard {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// The `tracing` layer that turns spans into OpenTelemetry spans and
    /// hands them to this exporter. Add it to a subscriber once.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer.clone())
    }

    /// Exports every finished span now, blocking until the collector
    /// answered (or the export timed out).
    pub fn force_flush(&self) -> Result<(), OtelError> {
        self.provider
            .force_flush()
            .map_err(|e| OtelError::Export(Box::new(e)))
    }

    /// Flushes, then stops the exporter.
    pub fn shutdown(self) -> Result<(), OtelError> {
        self.provider
            .shutdown()
            .map_err(|e| OtelError::Export(Box::new(e)))
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // After `shutdown` both fail fast with "already shut down".
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Why the exporter could not be installed or flushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The endpoint is not a plain-`http` URL with a host.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The SDK refused the configuration, or the export thread could not
    /// start.
    #[error("the OTLP exporter could not be built")]
    Build(#[source] Box<dyn StdError + Send + Sync>),
    /// Flushing or shutting down failed (the collector did not answer, or
    /// the exporter was already shut down).
    #[error("spans could not be exported")]
    Export(#[source] Box<dyn StdError + Send + Sync>),
}
