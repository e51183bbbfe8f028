//! The exporter's HTTP client: hyper on a small runtime of its own.
//!
//! The SDK's batch span processor exports from its own thread and blocks on
//! the export future there, outside any tokio runtime. hyper needs one, so
//! the client owns a current-thread runtime on a dedicated thread and runs
//! every request on it: exporting works whatever runtime (or none) the
//! application uses, and a flush called from a runtime thread cannot wait on
//! a request that needs that same thread.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Bigger OTLP responses are refused (they carry a status, not data).
const MAX_RESPONSE: usize = 64 * 1024;

pub(super) struct ExportClient {
    handle: Handle,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    // Dropping it stops the runtime thread.
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ExportClient {
    pub(super) fn new(timeout: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        // The runtime is built, run and dropped on its own thread: dropping
        // one inside an async context would panic.
        std::thread::Builder::new()
            .name("msp-otlp-export".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = started.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the OTLP export thread exited"))??;
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(ExportClient {
            handle,
            client,
            timeout,
            _stop: stop,
        })
    }
}

type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>>;

impl HttpClient for ExportClient {
    // The desugared form of the trait's `#[async_trait] async fn`.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> SendFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, Full::new(body));
            let exchange = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            tokio::time::timeout(timeout, exchange).await?
        });
        Box::pin(async move { task.await? })
    }
}
