//! The change stream: the environment URL asked for with
//! `Accept: text/event-stream` answers Server-Sent Events.
//!
//! ```text
//! GET /shop/prod/main
//! Accept: text/event-stream
//!
//! event: change
//! id: 5d1c0f4e9a3b2c71
//! data: {"name":"shop","profiles":["prod"],"label":"main","version":"3f9c…","digest":"5d1c0f4e9a3b2c71"}
//!
//! : keep-alive
//! ```
//!
//! The first event describes the environment as it is when the stream
//! opens (so a client that fetched just before subscribing cannot miss a
//! change in between); after that an event is sent each time the
//! environment's property sources really change (`digest` is a hash of
//! them: a commit touching only other applications' files sends nothing).
//! An environment that cannot be built any more (its label deleted, a file
//! that no longer parses) sends one `event: error` with the message. A
//! comment line goes out every keep-alive interval so proxies keep the
//! connection open and clients notice a dead one.
//!
//! The same URL as the document, negotiated by `Accept`, so every label and
//! profile spelling that works for the JSON works for the stream, and no
//! application name is taken away (`/events/…` would shadow an application
//! called `events`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use tokio::sync::watch;

use super::Inner;
use super::body::Body;
use super::environment::Environment;
use super::error::ConfigServerError;

/// One environment request, owned so the stream can rebuild it.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) app: String,
    pub(super) profiles: String,
    pub(super) label: Option<String>,
}

impl Target {
    pub(super) async fn build(&self, inner: &Arc<Inner>) -> Result<Environment, ConfigServerError> {
        let inner = inner.clone();
        let target = self.clone();
        tokio::task::spawn_blocking(move || {
            inner.environment(&target.app, &target.profiles, target.label.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(ConfigServerError::Backend(format!("worker failed: {e}"))))
    }
}

fn digest(env: &Environment) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(&env.property_sources)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

fn change_event(env: &Environment, digest: u64) -> Bytes {
    let data = serde_json::json!({
        "name": env.name,
        "profiles": env.profiles,
        "label": env.label,
        "version": env.version,
        "digest": format!("{digest:016x}"),
    });
    Bytes::from(format!(
        "event: change\nid: {digest:016x}\ndata: {data}\n\n"
    ))
}

fn error_event(e: &ConfigServerError) -> Bytes {
    let data = serde_json::json!({ "message": e.to_string() });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

struct State {
    inner: Arc<Inner>,
    target: Target,
    rx: watch::Receiver<u64>,
    /// The digest of what was last sent (an error's message hash after an
    /// error event).
    last: u64,
    first: Option<Bytes>,
}

impl State {
    /// The next chunk: the first event, a change, an error, or a keep-alive
    /// comment; `None` once the backend is gone.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match tokio::time::timeout(self.inner.keepalive, self.rx.changed()).await {
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                Ok(Err(_)) => return None,
                Ok(Ok(())) => {}
            }
            self.rx.borrow_and_update();
            match self.target.build(&self.inner).await {
                Ok(env) => {
                    let d = digest(&env);
                    if d != self.last {
                        self.last = d;
                        return Some(change_event(&env, d));
                    }
                }
                Err(e) => {
                    let mut h = DefaultHasher::new();
                    e.to_string().hash(&mut h);
                    let d = h.finish();
                    if d != self.last {
                        self.last = d;
                        tracing::debug!(app = %self.target.app, error = %e, "config server change stream: environment failed");
                        return Some(error_event(&e));
                    }
                }
            }
        }
    }
}

/// Opens the change stream for `target`; errors (bad name, no such label)
/// come back before any event so they are answered as plain errors.
pub(super) async fn open(
    inner: Arc<Inner>,
    target: Target,
) -> Result<Response<Body>, ConfigServerError> {
    // Subscribe before building, so a change in between wakes the stream.
    let mut rx = inner.backend.changes();
    rx.borrow_and_update();
    let env = target.build(&inner).await?;
    let last = digest(&env);
    let state = State {
        first: Some(change_event(&env, last)),
        inner,
        target,
        rx,
        last,
    };
    let stream =
        futures_util::stream::unfold(
            state,
            |mut st| async move { st.next().await.map(|b| (b, st)) },
        );
    let mut resp = Response::new(Body::stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Ok(resp)
}
