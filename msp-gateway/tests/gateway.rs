//! The seed YAML, as written, in front of three real axum services.

mod common_gw;

use common_gw::{API_KEY, Http, backend, gateway, seed_yaml};
use http::{Method, StatusCode};

#[tokio::test]
async fn seed_yaml_routes_by_path_and_method_to_three_services() {
    let (users, products, orders) = (
        backend("user-service").await,
        backend("product-service").await,
        backend("order-service").await,
    );
    let (_gw, addr) = gateway(&seed_yaml(users.addr, products.addr, orders.addr)).await;
    let http = Http::new(addr);
    let key = [("x-api-key", API_KEY)];

    let res = http.send(Method::GET, "/api/users/42?x=1", &key).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "user-service GET /api/users/42?x=1");
    assert!(res.headers.contains_key("x-request-id"));

    let res = http.send(Method::DELETE, "/api/users/42", &key).await;
    assert_eq!(res.body, "user-service DELETE /api/users/42");

    // `/api/users/*` matches the bare prefix too.
    let res = http.send(Method::GET, "/api/users", &key).await;
    assert_eq!(res.body, "user-service GET /api/users");

    // Products are open.
    let res = http.get("/api/products/7").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "product-service GET /api/products/7");

    let res = http.send(Method::POST, "/api/orders/", &key).await;
    assert_eq!(res.body, "order-service POST /api/orders/");
    assert_eq!(
        (users.hits(), products.hits(), orders.hits()),
        (3, 1, 1),
        "each request reached exactly its service"
    );
}

#[tokio::test]
async fn unmatched_is_404_and_a_method_outside_the_route_is_405_with_allow() {
    let (users, products, orders) = (
        backend("user-service").await,
        backend("product-service").await,
        backend("order-service").await,
    );
    let (_gw, addr) = gateway(&seed_yaml(users.addr, products.addr, orders.addr)).await;
    let http = Http::new(addr);

    let res = http.get("/api/nothing/here").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.headers["content-type"], "application/problem+json");

    let res = http.send(Method::POST, "/api/products/7", &[]).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = res.headers["allow"].to_str().expect("ascii");
    assert!(allow.contains("GET"), "Allow: {allow}");
    assert!(!allow.contains("POST"), "Allow: {allow}");
    assert_eq!(products.hits(), 0);
}

#[tokio::test]
async fn auth_required_routes_answer_401_with_www_authenticate_without_a_valid_key() {
    let (users, products, orders) = (
        backend("user-service").await,
        backend("product-service").await,
        backend("order-service").await,
    );
    let (_gw, addr) = gateway(&seed_yaml(users.addr, products.addr, orders.addr)).await;
    let http = Http::new(addr);

    let res = http.get("/api/users/1").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.headers.contains_key("www-authenticate"));
    let res = http
        .send(Method::GET, "/api/orders/1", &[("x-api-key", "wrong")])
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!((users.hits(), orders.hits()), (0, 0));
}

#[tokio::test]
async fn the_seed_rate_limit_answers_429_at_quota_plus_one() {
    let (users, products, orders) = (
        backend("user-service").await,
        backend("product-service").await,
        backend("order-service").await,
    );
    let (_gw, addr) = gateway(&seed_yaml(users.addr, products.addr, orders.addr)).await;
    let http = Http::new(addr);
    let key = [("x-api-key", API_KEY)];

    // `rate_limit: 500/hour` on /api/orders/*.
    for i in 0..500 {
        let res = http.send(Method::GET, "/api/orders/1", &key).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "request {i} is within the quota"
        );
        if i == 0 {
            assert_eq!(res.headers["ratelimit-limit"], "500");
            assert_eq!(res.headers["ratelimit-remaining"], "499");
        }
    }
    let res = http.send(Method::GET, "/api/orders/1", &key).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers["content-type"], "application/problem+json");
    let retry_after: u64 = res.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(res.headers["ratelimit-remaining"], "0");
    assert_eq!(
        orders.hits(),
        500,
        "the refused request never reached the service"
    );

    // Other routes have their own quota.
    assert_eq!(http.get("/api/products/1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn trace_context_continues_to_the_upstream_and_the_request_id_is_kept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|headers: http::HeaderMap| async move {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        format!("{} {}", get("traceparent"), get("x-request-id"))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let yaml = format!(
        "routes:\n  - path: \"/t/*\"\n    service: t\nservices:\n  t:\n    instances: [\"{upstream}\"]\n"
    );
    let (_gw, addr) = gateway(&yaml).await;
    let http = Http::new(addr);

    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = http
        .send(
            Method::GET,
            "/t/x",
            &[("traceparent", caller), ("x-request-id", "req-1")],
        )
        .await;
    assert_eq!(res.headers["x-request-id"], "req-1");
    let (traceparent, request_id) = res.body.split_once(' ').expect("two fields");
    assert_eq!(request_id, "req-1");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the gateway's own span is the parent"
    );
}

#[tokio::test]
async fn the_gateway_serves_http2_without_tls_on_the_same_port() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (users, products, orders) = (
        backend("user-service").await,
        backend("product-service").await,
        backend("order-service").await,
    );
    let (_gw, addr) = gateway(&seed_yaml(users.addr, products.addr, orders.addr)).await;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/api/products/9"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let res = h2.send_request(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"product-service GET /api/products/9");
}
