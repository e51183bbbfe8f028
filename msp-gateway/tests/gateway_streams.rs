//! Streaming through the whole `Gateway` (routing, limits, the upstream
//! stack with retry and breaker, the proxy), not only through
//! `proxy::forward`: SSE events as sent, trailers, WebSocket upgrades and
//! gRPC (unary, server streaming, an error status in trailers) over h2c;
//! and each upstream failure's status as problem+json.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{body, client, closed_port, spawn_backend, spawn_raw_backend};
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;

/// A gateway with one catch-all route to `upstream`, served on 127.0.0.1:0.
async fn gateway_to(upstream: SocketAddr, h2c: bool) -> SocketAddr {
    gateway_with_route(upstream, h2c, "").await
}

/// Like [`gateway_to`], with extra route settings (YAML lines indented for
/// the route).
async fn gateway_with_route(upstream: SocketAddr, h2c: bool, route: &str) -> SocketAddr {
    let yaml = format!(
        "routes:\n  - path: \"/*\"\n    service: upstream\n{route}\
         services:\n  upstream:\n    instances: [\"{upstream}\"]\n    h2c: {h2c}\n"
    );
    let config = GatewayConfig::from_yaml(&yaml, "streams.yaml").expect("valid config");
    let gateway = Gateway::from_config(config).await.expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let addr = listener.local_addr().expect("gateway address");
    tokio::spawn(gateway.serve(listener));
    addr
}

#[tokio::test]
async fn sse_first_event_arrives_through_the_gateway_before_the_upstream_finishes() {
    let (addr, backend) = spawn_backend().await;
    let (release, gate) = tokio::sync::oneshot::channel();
    *backend.sse_gate.lock().expect("lock") = Some(gate);
    let gw = gateway_to(addr, false).await;
    let req = Request::get(format!("http://{gw}/sse"))
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    // The upstream holds its stream open until the first event was read:
    // a buffering gateway would never deliver it (the guard fails the test
    // instead of hanging it).
    let first = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("the first event arrived while the upstream was still open")
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().expect("data"), "data: first\n\n");
    release.send(()).expect("backend waiting");
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"data: second\n\n");
}

#[tokio::test]
async fn trailers_pass_through_the_gateway() {
    let (addr, _backend) = spawn_backend().await;
    let gw = gateway_to(addr, false).await;
    let req = Request::get(format!("http://{gw}/trailers"))
        .header("te", "trailers")
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    let collected = res.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(&collected.to_bytes()[..], b"payload");
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let upstream = common::spawn_ws_backend().await;
    let gw = gateway_to(upstream, false).await;
    let stream = tokio::net::TcpStream::connect(gw).await.expect("connect");
    let (mut ws, res) = tokio_tungstenite::client_async(format!("ws://{gw}/ws"), stream)
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "second message"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .expect("send");
        let echo = ws.next().await.expect("an echo").expect("no error");
        assert_eq!(echo.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("close");
}

#[tokio::test]
async fn grpc_through_the_gateway_unary_streaming_and_an_error_status() {
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Pb;
    use tonic_health::pb::health_client::HealthClient;

    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Orders", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let gw = gateway_to(upstream, true).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gw}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the gateway");
    let mut health = HealthClient::new(channel);

    let res = health
        .check(HealthCheckRequest {
            service: "shop.Orders".into(),
        })
        .await
        .expect("check");
    assert_eq!(res.into_inner().status, Pb::Serving as i32);

    let err = health
        .check(HealthCheckRequest {
            service: "shop.Unknown".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut watch = health
        .watch(HealthCheckRequest {
            service: "shop.Orders".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("a message");
    assert_eq!(first.status, Pb::Serving as i32);
    reporter
        .set_service_status("shop.Orders", ServingStatus::NotServing)
        .await;
    let second = watch.message().await.expect("stream").expect("a message");
    assert_eq!(second.status, Pb::NotServing as i32);
}

/// The status and problem `code` of a GET through the gateway.
async fn get_problem(gw: SocketAddr) -> (StatusCode, String) {
    let req = Request::get(format!("http://{gw}/x"))
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("problem json");
    (status, json["code"].as_str().expect("code").to_owned())
}

#[tokio::test]
async fn garbage_from_the_upstream_is_a_502_problem_through_the_gateway() {
    let upstream = spawn_raw_backend(Some(b"this is not http\r\n\r\n")).await;
    let gw = gateway_to(upstream, false).await;
    let (status, _code) = get_problem(gw).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_refused_connection_is_a_503_problem_through_the_gateway() {
    let gw = gateway_to(closed_port().await, false).await;
    let (status, _code) = get_problem(gw).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_problem_through_the_gateway() {
    let upstream = spawn_raw_backend(None).await;
    let gw = gateway_with_route(upstream, false, "    timeout: 200ms\n").await;
    let (status, code) = get_problem(gw).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{code}");
}

#[tokio::test]
async fn three_set_cookie_fields_and_no_hop_by_hop_fields_come_back_through_the_gateway() {
    let (addr, backend) = spawn_backend().await;
    let gw = gateway_to(addr, false).await;
    let req = Request::get(format!("http://{gw}/cookies"))
        .header("connection", "x-secret")
        .header("x-secret", "hop")
        .header("x-forwarded-for", "6.6.6.6")
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    let cookies: Vec<_> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(
        cookies,
        ["a=1; Path=/", "b=2; HttpOnly", "c=3, with a comma; Secure"]
    );
    let seen = backend.last();
    assert!(
        seen.headers.get("x-secret").is_none(),
        "nominated field reached the upstream"
    );
    // The client is not a trusted proxy: its X-Forwarded-For is replaced.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
}
