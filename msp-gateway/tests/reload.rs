//! Hot reload: a new table applies to new requests while in-flight ones
//! finish on the old one; an invalid file is rejected, the last good table
//! stays.

mod common_gw;

use common_gw::{BOUND, Http, backend, serve};
use http::StatusCode;
use msp_gateway::Gateway;
use msp_gateway::config::GatewayConfig;

fn routing_to(service: &str, one: std::net::SocketAddr, two: std::net::SocketAddr) -> String {
    format!(
        r#"
routes:
  - path: "/api/*"
    service: {service}
services:
  one:
    instances: ["{one}"]
  two:
    instances: ["{two}"]
"#
    )
}

#[tokio::test]
async fn a_reload_applies_to_new_requests_while_an_in_flight_one_finishes_on_the_old_table() {
    let mut one = backend("one").await;
    let two = backend("two").await;
    let config =
        GatewayConfig::from_yaml(&routing_to("one", one.addr, two.addr), "v1").expect("v1");
    let (gw, addr) = serve(Gateway::from_config(config).await.expect("gateway")).await;
    let http = Http::new(addr);

    // A long request is in flight on table v1…
    let slow = {
        let http = http.clone();
        tokio::spawn(async move { http.get("/api/report/slow").await })
    };
    let arrived = tokio::time::timeout(BOUND, one.arrived.recv())
        .await
        .expect("the slow request reaches service one");
    assert_eq!(arrived.as_deref(), Some("/api/report/slow"));

    // …when the route moves to service two.
    let v2 = GatewayConfig::from_yaml(&routing_to("two", one.addr, two.addr), "v2").expect("v2");
    assert_eq!(gw.reload(v2).await.expect("valid reload"), 2);
    let res = http.get("/api/users/1").await;
    assert_eq!(
        res.body, "two GET /api/users/1",
        "new requests use the new table"
    );

    // The in-flight request was not dropped: it completes on service one.
    one.release.add_permits(1);
    let res = tokio::time::timeout(BOUND, slow)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "one GET /api/report/slow");
    assert_eq!(gw.status().reloads, 1);
}

/// Waits until `done` holds after a reload attempt.
async fn until(gw: &Gateway, mut done: impl FnMut(&Gateway) -> bool) {
    let mut events = gw.reload_events();
    tokio::time::timeout(BOUND, async {
        while !done(gw) {
            events.changed().await.expect("gateway alive");
        }
    })
    .await
    .expect("the file change is handled in time");
}

#[tokio::test]
async fn an_invalid_file_is_rejected_and_the_last_good_table_stays() {
    let one = backend("one").await;
    let two = backend("two").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, routing_to("one", one.addr, two.addr)).expect("write v1");

    let gw = Gateway::from_file(&file).await.expect("gateway");
    let _watch = gw.watch_file(&file).await.expect("watch");
    let (gw, addr) = serve(gw).await;
    let http = Http::new(addr);
    assert_eq!(http.get("/api/a").await.body, "one GET /api/a");

    // A typo: an unknown field is a load error naming the field and line.
    let broken = routing_to("two", one.addr, two.addr).replace("service: two", "servce: two");
    std::fs::write(&file, broken).expect("write the broken file");
    until(&gw, |gw| gw.status().rejected >= 1).await;
    let status = gw.status();
    assert_eq!(status.version, 1, "the last good config stays active");
    let error = status.last_error.expect("the error is kept");
    assert!(error.contains("servce"), "{error}");
    assert_eq!(http.get("/api/b").await.body, "one GET /api/b");

    // Fixed: applies.
    std::fs::write(&file, routing_to("two", one.addr, two.addr)).expect("write v2");
    until(&gw, |gw| gw.version() == 2).await;
    assert_eq!(http.get("/api/c").await.body, "two GET /api/c");
}

#[tokio::test]
async fn the_admin_listener_shows_the_version_and_the_last_reload_error() {
    use http_body_util::BodyExt;
    use msp_gateway::admin::Admin;
    use tower::ServiceExt;

    let one = backend("one").await;
    let two = backend("two").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, routing_to("one", one.addr, two.addr)).expect("write");
    let gw = Gateway::from_file(&file).await.expect("gateway");

    std::fs::write(&file, "routes: [{path: \"/x/*\", service: nowhere}]\n").expect("write");
    assert!(gw.reload_file(&file).await.is_err());

    let admin = Admin::new(gw.clone());
    let get = |path: &'static str| {
        let admin = admin.clone();
        async move {
            let req = http::Request::get(path)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request");
            let res = admin.oneshot(req).await.expect("infallible");
            let body = res.into_body().collect().await.expect("body").to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).expect("json")
        }
    };
    let config = get("/config").await;
    assert_eq!(config["version"], 1);
    assert_eq!(config["rejected"], 1);
    assert!(
        config["last_error"]
            .as_str()
            .expect("an error")
            .contains("nowhere"),
        "{config}"
    );
    let routes = get("/routes").await;
    assert_eq!(routes[0]["path"], "/api/*");
    assert_eq!(routes[0]["services"][0][0], "one");
    let upstreams = get("/upstreams").await;
    assert_eq!(upstreams.as_array().expect("list").len(), 2);
    assert_eq!(upstreams[0]["breaker"], "closed");
}
