//! The change stream (Server-Sent Events) of the directory backend, and
//! the client's fallback to polling where there is no stream.

#![cfg(feature = "http")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use common::{get_with, serve, wait_for};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_config::remote::{HttpSource, Remote};
use msp_config::server::ConfigServer;
use msp_config::{ConfigEvent, Loader, Watched};

/// Reads blank-line-separated SSE blocks off a response body.
struct Events {
    body: hyper::body::Incoming,
    buf: String,
}

impl Events {
    async fn open(url: &str) -> Events {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let req = http::Request::get(url)
            .header("accept", "text/event-stream")
            .body(Empty::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = client.request(req).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// The next block (an event or a comment), waiting at most 10 s.
    async fn next(&mut self) -> String {
        self.next_by(tokio::time::Instant::now() + Duration::from_secs(10))
            .await
    }

    async fn next_by(&mut self, deadline: tokio::time::Instant) -> String {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block = self.buf[..pos].to_owned();
                self.buf.drain(..pos + 2);
                return block;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within 10 s (have {:?})", self.buf))
                .unwrap_or_else(|| panic!("the stream ended"))
                .unwrap_or_else(|e| panic!("{e}"));
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The next event (comments skipped) as `(event, id, data)`, waiting
    /// at most 10 s in all (keep-alives do not extend the wait).
    async fn next_event(&mut self) -> (String, String, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let block = self.next_by(deadline).await;
            if block.starts_with(':') {
                continue;
            }
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_owned()
            };
            let data = serde_json::from_str(&field("data")).unwrap_or(serde_json::Value::Null);
            return (field("event"), field("id"), data);
        }
    }
}

#[tokio::test]
async fn the_stream_sends_the_current_state_then_each_change_of_the_environment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("shop.yaml"), "greeting: one\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let server = ConfigServer::new(dir.path()).keepalive(Duration::from_millis(50));
    let (addr, _s) = serve(Router::new().nest_service("/config", server)).await;
    let url = format!("http://{addr}/config/shop/default");

    let mut events = Events::open(&url).await;
    let (kind, first, data) = events.next_event().await;
    assert_eq!(kind, "change");
    assert_eq!(data["name"], "shop");
    assert_eq!(data["digest"], first.as_str());
    // An idle stream sends keep-alive comments.
    let mut comment = events.next().await;
    while !comment.starts_with(':') {
        comment = events.next().await;
    }
    assert_eq!(comment, ": keep-alive");

    replace(dir.path(), "greeting: two\n");
    let (kind, second, _) = events.next_event().await;
    assert_eq!(kind, "change");
    assert_ne!(second, first);

    // A broken file: one error event; fixed: a change again.
    replace(dir.path(), "greeting: [unclosed\n");
    let (kind, _, data) = events.next_event().await;
    assert_eq!(kind, "error", "{data}");
    assert!(
        data["message"]
            .as_str()
            .is_some_and(|m| m.contains("shop.yaml")),
        "{data}"
    );
    replace(dir.path(), "greeting: three\n");
    let (kind, third, _) = events.next_event().await;
    assert_eq!(kind, "change");
    assert_ne!(third, second);

    // Without the Accept header the same URL is the JSON document; errors
    // come back as errors, not as a stream.
    let (status, headers, _) = get_with(&url, &[]).await;
    assert_eq!(
        (status, &headers["content-type"]),
        (
            200,
            &"application/json".parse().unwrap_or_else(|e| panic!("{e}"))
        )
    );
    let (status, _, _) = get_with(
        &format!("http://{addr}/config/shop/default/nope"),
        &[("accept", "text/event-stream")],
    )
    .await;
    assert_eq!(status, 404);
}

#[derive(Debug, serde::Deserialize)]
struct Shop {
    greeting: String,
}

/// Replaces `shop.yaml` in `dir` at once (a temporary file renamed over
/// it): an in-place write can be seen half done, truncated, by the
/// server's watcher, which then serves that state as a change.
fn replace(dir: &std::path::Path, content: &str) {
    let tmp = dir.join(".shop.tmp");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join("shop.yaml")).unwrap_or_else(|e| panic!("{e}"));
}

async fn watch(base: &str, poll: Duration) -> Watched<Shop> {
    Watched::<Shop>::builder(
        Loader::new("shop")
            .no_files()
            .env_map(HashMap::new())
            .remote(Remote::new(
                HttpSource::new(base, "shop", "default").poll_interval(poll),
            )),
    )
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_file_change_reaches_the_client_through_the_stream_without_polling() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("shop.yaml"), "greeting: before\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let (addr, _s) =
        serve(Router::new().nest_service("/config", ConfigServer::new(dir.path()))).await;
    let cfg = watch(&format!("http://{addr}/config"), Duration::from_secs(3600)).await;
    let mut rx = cfg.subscribe();
    replace(dir.path(), "greeting: after\n");
    wait_for(
        &mut rx,
        "greeting after",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.greeting == "after"),
    )
    .await;
}

#[tokio::test]
async fn without_a_change_stream_the_client_polls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("shop.yaml"), "greeting: before\n")
        .unwrap_or_else(|e| panic!("{e}"));
    // A server without the stream (a Spring one): Accept is ignored, JSON comes back.
    let server = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<axum::body::Body>| {
            req.headers_mut().remove(http::header::ACCEPT);
            req
        })
        .service(ConfigServer::new(dir.path()));
    let (addr, _s) = serve(Router::new().nest_service("/config", server)).await;
    let cfg = watch(&format!("http://{addr}/config"), Duration::from_millis(50)).await;
    let mut rx = cfg.subscribe();
    replace(dir.path(), "greeting: after\n");
    wait_for(
        &mut rx,
        "greeting after",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.greeting == "after"),
    )
    .await;
}
