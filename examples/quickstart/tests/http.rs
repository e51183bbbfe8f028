//! Starts the quickstart on 127.0.0.1:0 and talks to it over real HTTP.

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;

type HttpClient =
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<axum::body::Bytes>>;

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, String, Option<String>) {
    let req = axum::http::Request::get(format!("http://{addr}{path}"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::new())
        .expect("valid request");
    let res = client
        .request(req)
        .await
        .expect("request reaches the server");
    let status = res.status().as_u16();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).expect("utf-8 body"),
        request_id,
    )
}

/// The value of the `msp_http_requests_total` series for `route` and
/// `status_class` in a Prometheus text page (0 when absent).
fn requests_total(page: &str, route: &str, status_class: &str) -> u64 {
    let wanted = [
        format!("route=\"{route}\""),
        format!("status_class=\"{status_class}\""),
        "service=\"quickstart\"".to_owned(),
    ];
    page.lines()
        .filter(|l| l.starts_with("msp_http_requests_total{"))
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn serves_routes_health_and_growing_metrics_then_shuts_down() {
    let metrics = quickstart::install_metrics().expect("recorder installed once");
    let app = quickstart::App::new(metrics);
    let shutdown = app.shutdown.clone();
    let health = app.health.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(quickstart::serve(listener, app));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    // Readiness: 200 with a JSON body naming the store check.
    let (status, body, _) = get(&client, addr, "/health/ready").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "up");
    assert_eq!(json["checks"]["store"]["status"], "up");
    assert_eq!(get(&client, addr, "/health/live").await.0, 200);

    // Business routes, with a request id generated for each.
    let (status, body, request_id) = get(&client, addr, "/hello/world").await;
    assert_eq!((status, body.as_str()), (200, "hello, world\n"));
    assert_eq!(request_id.map(|id| id.len()), Some(36));
    let (status, body, _) = get(&client, addr, "/orders/1").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"item\":\"coffee\""), "{body}");
    assert_eq!(get(&client, addr, "/orders/404").await.0, 404);

    // The counters are labelled by route template and grow with traffic.
    let (_, page, _) = get(&client, addr, "/metrics").await;
    assert_eq!(requests_total(&page, "/hello/{name}", "2xx"), 1, "{page}");
    assert_eq!(requests_total(&page, "/orders/{id}", "2xx"), 1, "{page}");
    assert_eq!(requests_total(&page, "/orders/{id}", "4xx"), 1, "{page}");
    for _ in 0..3 {
        assert_eq!(get(&client, addr, "/hello/again").await.0, 200);
    }
    let (_, page, _) = get(&client, addr, "/metrics").await;
    assert_eq!(requests_total(&page, "/hello/{name}", "2xx"), 4, "{page}");
    assert!(
        page.contains("msp_http_request_duration_seconds_bucket{"),
        "{page}"
    );
    assert!(
        !page.contains("route=\"/metrics\""),
        "scrapes are not measured"
    );

    // Graceful shutdown: not ready, server stops, nothing abandoned.
    shutdown.trigger();
    let report = server
        .await
        .expect("server task")
        .expect("server ran without error");
    assert!(!health.is_ready());
    assert_eq!(report.drain.abandoned, 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}
