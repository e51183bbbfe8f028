//! The proxy over real loopback: the header pass both ways, forwarding
//! headers from trusted and untrusted peers, streaming (SSE, trailers),
//! WebSocket and gRPC through it, and each failure's status.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{ProxyOptions, body, client, spawn_backend, spawn_proxy, spawn_raw_backend};
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use msp_gateway::proxy::{self, ForwardContext, Limits, ProxyClient, TrustedProxies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn problem_code(res: http::Response<hyper::body::Incoming>) -> String {
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("problem json");
    json["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn hop_by_hop_request_fields_and_the_ones_connection_nominates_never_reach_the_upstream() {
    let (addr, backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/hop"))
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers, deflate;q=0.5")
        .header("upgrade", "h2c")
        .header("x-kept", "yes")
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);

    let seen = backend.last();
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["x-kept"], "yes");
    assert_eq!(seen.headers["via"], "1.1 msp-gateway");
    proxy.assert_no_panics();
}

#[tokio::test]
async fn hop_by_hop_response_fields_never_reach_the_client() {
    let upstream = spawn_raw_backend(Some(
        b"HTTP/1.1 200 OK\r\n\
          Connection: x-internal\r\n\
          X-Internal: secret\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Authenticate: Basic\r\n\
          Upgrade: h2c\r\n\
          X-Kept: yes\r\n\
          Content-Length: 2\r\n\r\nok",
    ))
    .await;
    let proxy = spawn_proxy(upstream, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/"))
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    for gone in [
        "connection",
        "x-internal",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(
            res.headers().get(gone).is_none(),
            "{gone} reached the client"
        );
    }
    assert_eq!(res.headers()["x-kept"], "yes");
    assert_eq!(res.headers()["via"], "1.1 msp-gateway");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test]
async fn connection_cannot_nominate_away_the_forwarding_headers_the_gateway_sets() {
    let (addr, backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/"))
        .header("host", "api.example.com")
        .header(
            "connection",
            "X-Forwarded-For, Forwarded, Via, X-Forwarded-Proto, X-Forwarded-Host, Host",
        )
        .header("x-forwarded-for", "6.6.6.6")
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let seen = backend.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(
        seen.headers["forwarded"],
        "for=127.0.0.1;proto=http;host=api.example.com"
    );
    assert_eq!(seen.headers["via"], "1.1 msp-gateway");
    assert_eq!(seen.headers["host"], "api.example.com");
}

fn spoofed(
    url: String,
) -> Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
    Request::get(url)
        .header("host", "public.example")
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "shop.example")
        .header("forwarded", "for=203.0.113.5;proto=https")
        .header("via", "1.1 edge")
        .body(body(""))
        .expect("request")
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let (addr, backend) = spawn_backend().await;
    let opts = ProxyOptions {
        trusted: TrustedProxies::new(["10.0.0.0/8".parse().expect("cidr")]),
        ..ProxyOptions::default()
    };
    let proxy = spawn_proxy(addr, opts).await;
    let res = client()
        .request(spoofed(proxy.url("/")))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let h = backend.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "public.example");
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.1;proto=http;host=public.example"
    );
    // Via is a trace, not a claim: always appended.
    assert_eq!(h["via"], "1.1 edge, 1.1 msp-gateway");
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_kept_and_appended() {
    let (addr, backend) = spawn_backend().await;
    let opts = ProxyOptions {
        trusted: TrustedProxies::new(["127.0.0.0/8".parse().expect("cidr")]),
        ..ProxyOptions::default()
    };
    let proxy = spawn_proxy(addr, opts).await;
    let res = client()
        .request(spoofed(proxy.url("/")))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let h = backend.last().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.5, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(
        h["forwarded"],
        "for=203.0.113.5;proto=https, for=127.0.0.1;proto=http;host=public.example"
    );
    // The client IP rate limits key on: the rightmost untrusted hop.
    let trusted = TrustedProxies::new(["127.0.0.0/8".parse().expect("cidr")]);
    let ip = trusted.client_ip("127.0.0.1:9".parse().expect("addr"), &h);
    assert_eq!(ip, "203.0.113.5".parse::<std::net::IpAddr>().expect("ip"));
}

#[test]
fn forwarded_quotes_ipv6_and_client_ip_skips_trusted_hops() {
    let ctx = ForwardContext::new("[::1]:5000".parse().expect("addr"));
    let mut req = Request::get("/")
        .header("host", "h")
        .body(())
        .expect("request");
    proxy::headers::prepare_request(&mut req, "http://127.0.0.1:1/".parse().expect("uri"), &ctx)
        .expect("prepare");
    assert_eq!(
        req.headers()["forwarded"],
        "for=\"[::1]\";proto=http;host=h"
    );
    assert_eq!(req.headers()["x-forwarded-for"], "::1");

    let trusted = TrustedProxies::new([
        "10.0.0.0/8".parse().expect("cidr"),
        "::1/128".parse().expect("cidr"),
    ]);
    let mut h = http::HeaderMap::new();
    h.append(
        "x-forwarded-for",
        "198.51.100.1, 203.0.113.9".parse().expect("v"),
    );
    h.append("x-forwarded-for", "10.0.0.2, 10.0.0.3".parse().expect("v"));
    let ip = trusted.client_ip("[::1]:80".parse().expect("addr"), &h);
    assert_eq!(ip, "203.0.113.9".parse::<std::net::IpAddr>().expect("ip"));
    // Garbage in the chain stops the walk at the last good hop.
    h.insert("x-forwarded-for", "not-an-ip, 10.0.0.3".parse().expect("v"));
    let ip = trusted.client_ip("10.0.0.1:80".parse().expect("addr"), &h);
    assert_eq!(ip, "10.0.0.3".parse::<std::net::IpAddr>().expect("ip"));
}

#[tokio::test]
async fn host_is_the_upstreams_preserved_or_rewritten_per_policy() {
    use msp_gateway::proxy::HostPolicy;
    let (addr, backend) = spawn_backend().await;
    for (policy, expected) in [
        (HostPolicy::Upstream, addr.to_string()),
        (HostPolicy::Preserve, "api.example.com".to_owned()),
        (
            HostPolicy::Rewrite(http::HeaderValue::from_static("users.internal")),
            "users.internal".to_owned(),
        ),
    ] {
        let opts = ProxyOptions {
            host_policy: policy.clone(),
            ..ProxyOptions::default()
        };
        let proxy = spawn_proxy(addr, opts).await;
        let req = Request::get(proxy.url("/"))
            .header("host", "api.example.com")
            .body(body(""))
            .expect("request");
        let res = client().request(req).await.expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let seen = backend.last();
        assert_eq!(seen.headers["host"], expected.as_str(), "{policy:?}");
        // The client's host is always in the forwarding headers.
        assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    }
}

#[tokio::test]
async fn three_set_cookie_fields_arrive_as_three() {
    let (addr, _backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/cookies"))
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
}

#[tokio::test]
async fn sse_first_event_arrives_before_the_upstream_finishes() {
    let (addr, backend) = spawn_backend().await;
    let (release, gate) = tokio::sync::oneshot::channel();
    *backend.sse_gate.lock().expect("lock") = Some(gate);
    let proxy = spawn_proxy(addr, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/sse"))
        .body(body(""))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    // The upstream holds its stream open until we have read the first
    // event: a buffering proxy would never deliver it (the guard fails the
    // test instead of hanging it).
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
async fn trailers_pass_through() {
    let (addr, _backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, ProxyOptions::default()).await;
    let req = Request::get(proxy.url("/trailers"))
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
async fn websocket_echo_through_the_proxy() {
    let upstream = common::spawn_ws_backend().await;
    let proxy = spawn_proxy(upstream, ProxyOptions::default()).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (mut ws, res) = tokio_tungstenite::client_async(format!("ws://{}/ws", proxy.addr), stream)
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(res.headers()["via"], "1.1 msp-gateway");
    for text in ["hello", "second message"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .expect("send");
        let echo = ws.next().await.expect("an echo").expect("no error");
        assert_eq!(echo.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("close");
    proxy.assert_no_panics();
}

#[tokio::test]
async fn grpc_unary_server_streaming_and_error_status_through_an_h2c_upstream() {
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
    let opts = ProxyOptions {
        client: ProxyClient::builder().h2c(true).build(),
        ..ProxyOptions::default()
    };
    let proxy = spawn_proxy(upstream, opts).await;
    let channel = tonic::transport::Endpoint::from_shared(proxy.url(""))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the proxy");
    let mut health = HealthClient::new(channel);

    // Unary.
    let res = health
        .check(HealthCheckRequest {
            service: "shop.Orders".into(),
        })
        .await
        .expect("check");
    assert_eq!(res.into_inner().status, Pb::Serving as i32);

    // An error status, carried in trailers.
    let err = health
        .check(HealthCheckRequest {
            service: "shop.Unknown".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Server streaming: the current status, then each change as it happens.
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
    proxy.assert_no_panics();
}

#[tokio::test]
async fn garbage_from_the_upstream_is_502() {
    let upstream = spawn_raw_backend(Some(b"this is not http\r\n\r\n")).await;
    let proxy = spawn_proxy(upstream, ProxyOptions::default()).await;
    let res = client()
        .request(
            Request::get(proxy.url("/"))
                .body(body(""))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem_code(res).await, "bad_gateway");
}

#[tokio::test]
async fn upstream_closing_before_its_response_is_502() {
    let upstream = spawn_raw_backend(Some(b"HTTP/1.1 200 OK\r\nContent-")).await;
    let proxy = spawn_proxy(upstream, ProxyOptions::default()).await;
    let res = client()
        .request(
            Request::get(proxy.url("/"))
                .body(body(""))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem_code(res).await, "bad_gateway");
}

#[tokio::test]
async fn upstream_closing_mid_body_never_looks_complete_to_the_client() {
    let upstream = spawn_raw_backend(Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
    ))
    .await;
    let proxy = spawn_proxy(upstream, ProxyOptions::default()).await;
    let res = client()
        .request(
            Request::get(proxy.url("/"))
                .body(body(""))
                .expect("request"),
        )
        .await
        .expect("response head");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.into_body().collect().await.is_err(),
        "a truncated body must fail"
    );
    proxy.assert_no_panics();
}

#[tokio::test]
async fn connect_refused_is_503() {
    let proxy = spawn_proxy(common::closed_port().await, ProxyOptions::default()).await;
    let res = client()
        .request(
            Request::get(proxy.url("/"))
                .body(body(""))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(res).await, "upstream_unavailable");
}

#[tokio::test]
async fn upstream_that_never_answers_is_504() {
    let upstream = spawn_raw_backend(None).await;
    let opts = ProxyOptions {
        client: ProxyClient::builder()
            .response_timeout(Some(Duration::from_millis(100)))
            .build(),
        ..ProxyOptions::default()
    };
    let proxy = spawn_proxy(upstream, opts).await;
    let res = client()
        .request(
            Request::get(proxy.url("/"))
                .body(body(""))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem_code(res).await, "upstream_timeout");
}

fn small_limits() -> ProxyOptions {
    ProxyOptions {
        limits: Limits::default().with_max_body_bytes(1024),
        ..ProxyOptions::default()
    }
}

#[tokio::test]
async fn content_length_over_the_limit_is_413_and_never_reaches_the_upstream() {
    let (addr, backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, small_limits()).await;
    let req = Request::post(proxy.url("/upload"))
        .body(body(vec![b'x'; 2048]))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(res).await, "body_too_large");
    assert!(backend.requests().is_empty());

    // Under the limit it goes through whole.
    let req = Request::post(proxy.url("/upload"))
        .body(body(vec![b'x'; 1024]))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(backend.last().body.len(), 1024);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let (addr, backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, small_limits()).await;
    let chunks = futures_util::stream::iter((0..4).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; 512])))
    }));
    let req = Request::post(proxy.url("/upload"))
        .body(BodyExt::boxed(http_body_util::StreamBody::new(chunks)))
        .expect("request");
    let res = client().request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(res).await, "body_too_large");
    // The backend may have seen the head, never a complete 2 KiB body.
    assert!(backend.requests().iter().all(|r| r.body.len() <= 1024));
}

#[tokio::test]
async fn expect_100_continue_is_answered_only_when_the_request_passes_the_checks() {
    let (addr, backend) = spawn_backend().await;
    let proxy = spawn_proxy(addr, small_limits()).await;

    // Over the limit: refused at once, no 100 Continue, body never sent.
    let mut s = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Within the limit: 100 Continue, then the body, then the answer.
    let mut s = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let n = s.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    s.write_all(b"hello").await.expect("write body");
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("ok 5") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/small");
    assert!(seen[0].headers.get("expect").is_none());
    assert_eq!(&seen[0].body[..], b"hello");
}
