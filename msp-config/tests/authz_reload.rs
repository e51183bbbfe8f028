//! Authorization policies reloaded from a file on disk: a
//! `Watched<AuthorizationPolicies>` feeds msp-core's `PolicyHandle` (the
//! bridge documented on `PolicyHandle`), and the next request through the
//! running service is decided by the edited file. An invalid edit is
//! rejected and the last good policies stay.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use common::wait_for;
use http::{Request, StatusCode};
use msp_config::{ConfigError, ConfigEvent, Loader, Watched};
use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, PolicyHandle};
use msp_core::identity::PeerIdentity;
use tokio::sync::broadcast::error::RecvError;
use tower::ServiceExt;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

/// ALLOW `POST /payments` from one principal.
fn payments_from(principal: &str) -> String {
    format!(
        "policies:
  - name: payments
    action: ALLOW
    rules:
      - name: callers
        from:
          - principals: [\"{principal}\"]
        to:
          - methods: [POST]
            paths: [\"/payments\", \"/payments/*\"]
"
    )
}

async fn status(app: &Router, peer: &str) -> StatusCode {
    let mut req = Request::post("/payments")
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    // What msp-core's mTLS listener inserts once the client certificate
    // is verified.
    req.extensions_mut().insert(PeerIdentity::new(
        peer.parse().unwrap_or_else(|e| panic!("{e}")),
    ));
    app.clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {})
        .status()
}

/// Waits (bounded, no sleeping) until the bridge task stored `want`.
async fn handle_holds(handle: &PolicyHandle, want: &Arc<AuthorizationPolicies>) {
    for _ in 0..1_000 {
        if Arc::ptr_eq(&handle.load(), want) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the policy handle never received the new policies");
}

const ORDER: &str = "spiffe://shop/order-service";
const USER: &str = "spiffe://shop/user-service";

#[tokio::test]
async fn editing_the_policy_file_changes_the_next_decision_and_an_invalid_edit_keeps_the_last_good_policies()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("authz.yaml");
    write(&file, &payments_from(ORDER));

    let watched = Watched::<AuthorizationPolicies>::builder(
        Loader::new("authz").dir(dir.path()).env_map(HashMap::new()),
    )
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The bridge from PolicyHandle's docs.
    let mut events = watched.subscribe();
    let policies = PolicyHandle::from_arc(watched.get());
    let feed = policies.clone();
    let bridge = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ConfigEvent::Updated { value, .. }) => feed.store(value),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });

    let app = Router::new()
        .route("/payments", post(|| async { "paid" }))
        .layer(AuthorizationLayer::new(policies.clone()));
    assert_eq!(status(&app, ORDER).await, StatusCode::OK);
    assert_eq!(status(&app, USER).await, StatusCode::FORBIDDEN);

    // Edit: only user-service may pay now. Same service, no rebuild.
    let mut rx = watched.subscribe();
    write(&file, &payments_from(USER));
    let ev = wait_for(&mut rx, "the user-service policy", |e| {
        matches!(e, ConfigEvent::Updated { .. })
    })
    .await;
    let ConfigEvent::Updated { value, .. } = ev else {
        unreachable!()
    };
    handle_holds(&policies, &value).await;
    assert_eq!(status(&app, USER).await, StatusCode::OK);
    assert_eq!(status(&app, ORDER).await, StatusCode::FORBIDDEN);

    // Invalid edits are rejected, naming the rule; the last good policies
    // keep deciding.
    let bad_cidr = payments_from(ORDER).replace(
        "        to:",
        "            ip_blocks: [\"10.0.0.0/33\"]\n        to:",
    );
    write(&file, &bad_cidr);
    let ev = wait_for(&mut rx, "the bad CIDR's rejection", |e| {
        matches!(e, ConfigEvent::Rejected { .. })
    })
    .await;
    let ConfigEvent::Rejected { error, .. } = ev else {
        unreachable!()
    };
    let message = error.to_string();
    assert!(
        message.contains("rule \"callers\"") && message.contains("10.0.0.0/33"),
        "{message}"
    );
    assert!(matches!(*error, ConfigError::Invalid { .. }), "{error:?}");
    assert_eq!(status(&app, USER).await, StatusCode::OK);
    assert_eq!(status(&app, ORDER).await, StatusCode::FORBIDDEN);

    let typo = payments_from(ORDER).replace("principals:", "principal:");
    write(&file, &typo);
    wait_for(&mut rx, "the typo's rejection", |e| {
        matches!(e, ConfigEvent::Rejected { .. })
    })
    .await;
    assert_eq!(status(&app, USER).await, StatusCode::OK);
    assert_eq!(status(&app, ORDER).await, StatusCode::FORBIDDEN);

    // Fixed again: the watch still follows the file.
    write(&file, &payments_from(ORDER));
    let ev = wait_for(&mut rx, "the order-service policy again", |e| {
        matches!(e, ConfigEvent::Updated { .. })
    })
    .await;
    let ConfigEvent::Updated { value, .. } = ev else {
        unreachable!()
    };
    handle_holds(&policies, &value).await;
    assert_eq!(status(&app, ORDER).await, StatusCode::OK);
    assert_eq!(status(&app, USER).await, StatusCode::FORBIDDEN);

    // Dropping the Watched ends the bridge.
    drop((watched, rx));
    bridge.await.unwrap_or_else(|e| panic!("{e}"));
}
