//! The response future of the [`DiscoveryClient`](super::DiscoveryClient).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Empty;
//! use msp_discovery::client::{DiscoveryClient, future::ResponseFuture};
//! use msp_discovery::registry::MemoryRegistry;
//! use tower::Service;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = DiscoveryClient::builder(MemoryRegistry::new()).build::<Empty<Bytes>>();
//! let req = http::Request::get("http://inventory/").body(Empty::new())?;
//! // A named type, so it can be stored in other futures without boxing.
//! let fut: ResponseFuture = client.call(req);
//! assert!(fut.await.unwrap_err().is_no_instances());
//! # Ok(())
//! # }
//! ```

use super::{DiscoveryError, ResponseBody, Target};
use crate::balance::Call;
use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

type Output = Result<Response<ResponseBody>, DiscoveryError>;

pin_project! {
    /// The response future of [`DiscoveryClient`](super::DiscoveryClient).
    ///
    /// Not boxed on the hot path (service already resolved): it wraps the
    /// connection pool's future and reports the outcome to the endpoint set
    /// when the response head arrives. Only the first call to a service,
    /// which waits for the registry, is boxed.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending {
            #[pin]
            fut: hyper_util::client::legacy::ResponseFuture,
            call: Option<Call>,
            target: Arc<Target>,
        },
        Resolving {
            fut: BoxFuture<'static, Output>,
        },
        Failed {
            error: Option<DiscoveryError>,
        },
    }
}

impl ResponseFuture {
    pub(super) fn sending(
        fut: hyper_util::client::legacy::ResponseFuture,
        call: Call,
        target: Arc<Target>,
    ) -> Self {
        ResponseFuture {
            state: State::Sending {
                fut,
                call: Some(call),
                target,
            },
        }
    }

    pub(super) fn resolving(fut: BoxFuture<'static, Output>) -> Self {
        ResponseFuture {
            state: State::Resolving { fut },
        }
    }

    pub(super) fn failed(error: DiscoveryError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output> {
        match self.project().state.project() {
            StateProj::Sending { fut, call, target } => {
                let result = ready!(fut.poll(cx));
                let Some(call) = call.take() else {
                    // Polled after completion: a contract violation by the
                    // caller; answer consistently instead of panicking.
                    return Poll::Ready(Err(DiscoveryError::NoInstances {
                        service: target.set.service().clone(),
                    }));
                };
                Poll::Ready(target.finish(call, result))
            }
            StateProj::Resolving { fut } => fut.as_mut().poll(cx),
            StateProj::Failed { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sending { .. } => "sending",
            State::Resolving { .. } => "resolving",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
