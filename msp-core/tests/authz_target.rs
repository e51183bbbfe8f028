//! What the authorization layer decides on is what the router routes:
//! ambiguous paths and hosts are refused with `400` before any policy is
//! evaluated.
#![cfg(feature = "tls")]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, MalformedRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

fn policies(json: &str) -> AuthorizationPolicies {
    serde_json::from_str(json).expect("valid policies")
}

/// `/admin/{id}` and `/public/{*rest}` behind `policies`; the counter
/// counts calls of the admin handler.
fn app(policies: AuthorizationPolicies) -> (Router, Arc<AtomicUsize>) {
    let admin_calls = Arc::new(AtomicUsize::new(0));
    let calls = admin_calls.clone();
    let router = Router::new()
        .route(
            "/admin/{id}",
            get(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "admin" }
            }),
        )
        .route("/public/{*rest}", get(|| async { "public" }))
        .route("/", get(|| async { "root" }))
        .layer(AuthorizationLayer::new(policies));
    (router, admin_calls)
}

async fn get_status(app: &Router, uri: &str, host: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("no error");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn dot_and_empty_segments_never_reach_a_handler_under_a_denied_prefix() {
    let (app, admin_calls) = app(policies(
        r#"{"policies": [{"name": "no-admin", "action": "DENY",
            "rules": [{"to": [{"paths": ["/admin/*"]}]}]}]}"#,
    ));
    // The baseline: the DENY applies and the rest is routed.
    assert_eq!(get_status(&app, "/admin/x", None).await.0, 403);
    assert_eq!(get_status(&app, "/admin/%41", None).await.0, 403);
    assert_eq!(get_status(&app, "/public/x", None).await.0, 200);

    for path in [
        "/admin/..",
        "/admin/.",
        "/admin/%2e%2e",
        "/admin/%2E%2E/x",
        "/admin/.%2e",
        "/public/../admin/x",
        "/public/%2e%2E/admin/x",
        "//admin/x",
        "/public//x",
        "/admin%2fx",
    ] {
        let (status, body) = get_status(&app, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.contains(r#""code":"bad_path""#), "{path}: {body}");
    }
    assert_eq!(admin_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_allowed_prefix_cannot_be_left_with_dot_segments_either() {
    let (app, admin_calls) = app(policies(
        r#"{"policies": [{"name": "public", "action": "ALLOW",
            "rules": [{"to": [{"paths": ["/public/*"]}]}]}]}"#,
    ));
    assert_eq!(get_status(&app, "/public/a/b", None).await.0, 200);
    assert_eq!(get_status(&app, "/public/../admin/x", None).await.0, 400);
    assert_eq!(
        get_status(&app, "/public/%2e%2e/admin/x", None).await.0,
        400
    );
    assert_eq!(admin_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_host_header_disagreeing_with_the_uri_authority_is_refused() {
    let (app, _) = app(policies(
        r#"{"policies": [{"name": "no-admin-host", "action": "DENY",
            "rules": [{"to": [{"hosts": ["admin.shop.example"]}]}]}]}"#,
    ));
    // The URI says public, the Host header (what axum's Host reads) admin.
    let (status, body) = get_status(
        &app,
        "http://public.shop.example/",
        Some("admin.shop.example"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""code":"bad_host""#), "{body}");
    assert_eq!(
        get_status(
            &app,
            "http://public.shop.example/",
            Some("public.shop.example:8080")
        )
        .await
        .0,
        400
    );

    // Agreeing up to case, a trailing dot and the default port: decided.
    let same = [
        (
            "http://public.shop.example/",
            "PUBLIC.shop.example.:80",
            200,
        ),
        ("http://admin.shop.example./", "admin.shop.example", 403),
        ("https://ADMIN.shop.example/", "admin.shop.example:443", 403),
    ];
    for (uri, host, want) in same {
        assert_eq!(
            get_status(&app, uri, Some(host)).await.0,
            want,
            "{uri} {host}"
        );
    }
    assert_eq!(
        get_status(&app, "/", Some("public.shop.example")).await.0,
        200
    );
}

#[tokio::test]
async fn a_trailing_dot_does_not_escape_an_exact_host_match() {
    let (app, _) = app(policies(
        r#"{"policies": [{"name": "no-admin-host", "action": "DENY",
            "rules": [{"to": [{"hosts": ["admin.shop.example"]}]}]}]}"#,
    ));
    assert_eq!(
        get_status(&app, "/", Some("admin.shop.example")).await.0,
        403
    );
    assert_eq!(
        get_status(&app, "/", Some("admin.shop.example.")).await.0,
        403
    );
    assert_eq!(
        get_status(&app, "/", Some("admin.shop.example.:8080"))
            .await
            .0,
        403
    );
    assert_eq!(
        get_status(&app, "http://admin.shop.example./", None)
            .await
            .0,
        403
    );
}

#[test]
fn decide_refuses_ambiguous_requests_for_callers_outside_the_layer() {
    let policies = AuthorizationPolicies::default(); // allows everything
    let req = Request::get("/admin/%2E%2E").body(()).expect("request");
    let decision = policies.decide(&req, None);
    assert!(!decision.is_allowed());
    assert_eq!(decision.malformed(), Some(MalformedRequest::DotSegment));

    let req = Request::get("/admin/x").body(()).expect("request");
    assert!(policies.decide(&req, None).is_allowed());
}
