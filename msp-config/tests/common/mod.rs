//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use msp_config::ConfigEvent;
use msp_config::remote::{RemoteData, RemoteSource};
use msp_core::BoxError;
use tokio::sync::broadcast;

/// A remote source serving fixed entries and never changing.
#[derive(Debug, Clone)]
pub struct Fixed(pub Vec<(&'static str, serde_json::Value)>);

impl RemoteSource for Fixed {
    fn name(&self) -> String {
        "fixed".into()
    }
    fn fetch(&self) -> BoxFuture<'_, Result<RemoteData, BoxError>> {
        let mut d = RemoteData::default();
        for (k, v) in &self.0 {
            d.push(*k, v.clone(), format!("/fixed/{k}"));
        }
        Box::pin(async move { Ok(d) })
    }
    fn changed(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(std::future::pending())
    }
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Waits (bounded) for the first event matching `pred`.
pub async fn wait_for<T, F>(
    rx: &mut broadcast::Receiver<ConfigEvent<T>>,
    what: &str,
    mut pred: F,
) -> ConfigEvent<T>
where
    F: FnMut(&ConfigEvent<T>) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("change stream closed while waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Serves `app` on `127.0.0.1:0` over HTTP/1; every connection dies when
/// the returned set is dropped.
pub async fn serve(app: axum::Router) -> (std::net::SocketAddr, tokio::task::JoinSet<()>) {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let mut set = tokio::task::JoinSet::new();
    set.spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, set)
}

/// GET `url` with extra headers: status, headers and body.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(http_body_util::Empty::new())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
    (status, headers, body)
}

/// GET `url` and parse the JSON body (`Null` when it is not JSON).
pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (status, _, body) = get_with(url, headers).await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}
