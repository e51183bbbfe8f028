//! The config server over real HTTP (Spring Cloud Config's JSON), and the
//! HTTP client source: loading, polling, start-up policies, outages.

#![cfg(feature = "http")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use common::wait_for;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_config::remote::{HttpSource, Remote, Startup};
use msp_config::server::ConfigServer;
use msp_config::{ConfigError, ConfigEvent, Loader, ReloadOutcome, Trigger, Watched};
use serde::Deserialize;
use tokio::task::JoinSet;

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    write(
        &d.join("shop.yaml"),
        "db:\n  url: pg://base\n  pool:\n    max_size: 5\nservers:\n  - a\n  - b\n",
    );
    write(
        &d.join("shop-prod.yaml"),
        "db:\n  pool:\n    max_size: 20\n",
    );
    write(
        &d.join("application.yaml"),
        "region: eu\ndb:\n  url: pg://shared\n",
    );
    write(&d.join("application-prod.yml"), "timeout_ms: 250\n");
    write(&d.join("other.yaml"), "never: served\n");
    write(&d.join("main/shop.yaml"), "db:\n  url: pg://main-label\n");
    dir
}

/// A server whose connections all die when the returned set is dropped.
async fn serve(dir: &Path) -> (SocketAddr, JoinSet<()>) {
    common::serve(Router::new().nest_service("/config", ConfigServer::new(dir))).await
}

async fn get(url: &str) -> (u16, serde_json::Value) {
    common::get_json(url, &[]).await
}

#[tokio::test]
async fn answers_spring_cloud_config_environment_json() {
    let dir = config_dir();
    let (addr, _server) = serve(dir.path()).await;

    let (status, body) = get(&format!("http://{addr}/config/shop/prod")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({
            "name": "shop",
            "profiles": ["prod"],
            "label": null,
            "version": null,
            "state": null,
            "propertySources": [
                {"name": "file:shop-prod.yaml", "source": {"db.pool.max_size": 20}},
                {"name": "file:application-prod.yml", "source": {"timeout_ms": 250}},
                {"name": "file:shop.yaml", "source": {
                    "db.pool.max_size": 5, "db.url": "pg://base", "servers[0]": "a", "servers[1]": "b"}},
                {"name": "file:application.yaml", "source": {"db.url": "pg://shared", "region": "eu"}}
            ]
        })
    );

    // Several profiles: the last one wins, profile files over the rest.
    write(&dir.path().join("shop-eu.yaml"), "region: eu-west\n");
    let (_, body) = get(&format!("http://{addr}/config/shop/prod,eu")).await;
    let names: Vec<&str> = body["propertySources"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "file:shop-eu.yaml",
            "file:shop-prod.yaml",
            "file:application-prod.yml",
            "file:shop.yaml",
            "file:application.yaml"
        ]
    );
    assert_eq!(body["profiles"], serde_json::json!(["prod", "eu"]));

    // A label is a subdirectory.
    let (status, body) = get(&format!("http://{addr}/config/shop/prod/main")).await;
    assert_eq!(status, 200);
    assert_eq!(body["label"], "main");
    assert_eq!(
        body["propertySources"],
        serde_json::json!([{"name": "file:main/shop.yaml", "source": {"db.url": "pg://main-label"}}])
    );
    let (status, _) = get(&format!("http://{addr}/config/shop/prod/nope")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn rejects_path_traversal_and_other_methods() {
    // Serve a subdirectory so the secret next to it stays inside the temp dir.
    let outer = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let served = outer.path().join("served");
    write(&served.join("shop.yaml"), "db:\n  url: pg://base\n");
    write(&outer.path().join("outside-secret.yaml"), "x: 1\n");
    let (addr, _server) = serve(&served).await;
    for path in [
        "shop/prod/..",
        "shop/..",
        "shop/prod/.hidden",
        "shop/prod/a%2F..%2F..",
        "..%2Foutside-secret/prod",
        "shop/prod/..(_)..",
        "%2e%2e/prod",
    ] {
        let (status, body) = get(&format!("http://{addr}/config/{path}")).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        assert!(body.get("propertySources").is_none(), "{path}: {body}");
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::post(format!("http://{addr}/config/shop/prod"))
        .body(Empty::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = client.request(req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 405);
}

#[derive(Debug, Deserialize, PartialEq)]
struct Pool {
    max_size: u32,
}
#[derive(Debug, Deserialize, PartialEq)]
struct Db {
    url: String,
    pool: Pool,
}
#[derive(Debug, Deserialize, PartialEq)]
struct Shop {
    db: Db,
    servers: Vec<String>,
    region: String,
    timeout_ms: u64,
}

#[tokio::test]
async fn the_client_loads_from_the_server_with_spring_precedence() {
    let dir = config_dir();
    let (addr, _server) = serve(dir.path()).await;
    let source = HttpSource::new(format!("http://{addr}/config"), "shop", "prod");
    let shop: Shop = Loader::new("shop")
        .no_files()
        .env_map(HashMap::new())
        .remote(Remote::new(source))
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        shop,
        Shop {
            db: Db {
                url: "pg://base".into(),
                pool: Pool { max_size: 20 }
            },
            servers: vec!["a".into(), "b".into()],
            region: "eu".into(),
            timeout_ms: 250,
        }
    );
    // Environment still beats the remote layer; a label picks the subdirectory.
    let v: serde_json::Value = Loader::new("shop")
        .no_files()
        .env_map(HashMap::from([(
            "SHOP__DB__POOL__MAX_SIZE".to_owned(),
            "99".to_owned(),
        )]))
        .remote(Remote::new(
            HttpSource::new(format!("http://{addr}/config"), "shop", "prod").label("main"),
        ))
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["db"]["pool"]["max_size"], "99");
    assert_eq!(v["db"]["url"], "pg://main-label");
}

#[tokio::test]
async fn polling_picks_up_server_changes_and_outages_keep_the_last_value() {
    let dir = config_dir();
    let (addr, server) = serve(dir.path()).await;
    let source = HttpSource::new(format!("http://{addr}/config"), "shop", "prod")
        .poll_interval(Duration::from_millis(50));
    let cfg = Watched::<Shop>::builder(
        Loader::new("shop")
            .no_files()
            .env_map(HashMap::new())
            .remote(Remote::new(source)),
    )
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().db.pool.max_size, 20);
    let mut rx = cfg.subscribe();

    write(
        &dir.path().join("shop-prod.yaml"),
        "db:\n  pool:\n    max_size: 30\n",
    );
    let ev = wait_for(
        &mut rx,
        "max_size 30",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.db.pool.max_size == 30),
    )
    .await;
    let ConfigEvent::Updated { audit, .. } = ev else {
        unreachable!()
    };
    assert!(
        matches!(&audit.trigger, Trigger::Remote(name) if name.contains("/config/shop/prod")),
        "{:?}",
        audit.trigger
    );
    assert_eq!(
        audit.changed[0].origin,
        format!("config server http://{addr}/config/shop/prod key file:shop-prod.yaml")
    );

    // The server goes away: the value stays, reload() keeps it too.
    drop(server);
    assert!(matches!(cfg.reload().await, Ok(ReloadOutcome::Unchanged)));
    assert_eq!(cfg.get().db.pool.max_size, 30);
}

#[tokio::test]
async fn startup_with_the_server_down_fails_fast_or_uses_the_cache() {
    let dir = config_dir();
    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = cache_dir.path().join("nested/shop.json");
    let (addr, server) = serve(dir.path()).await;
    let base = format!("http://{addr}/config");
    let loader = |startup| {
        Loader::new("shop")
            .no_files()
            .env_map(HashMap::new())
            .remote(
                Remote::new(HttpSource::new(&base, "shop", "prod").timeout(Duration::from_secs(2)))
                    .startup(startup)
                    .cache_file(&cache),
            )
    };
    // A successful fetch writes the cache.
    let live: Shop = loader(Startup::FailFast)
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cache.exists());
    drop(server);

    let err = loader(Startup::FailFast)
        .load::<Shop>()
        .await
        .expect_err("must fail");
    assert!(
        matches!(&err, ConfigError::Remote { source_name, .. } if source_name.contains("config server")),
        "{err:?}"
    );

    let cached: Shop = loader(Startup::UseCache)
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cached, live);

    std::fs::remove_file(&cache).unwrap_or_else(|e| panic!("{e}"));
    let err = loader(Startup::UseCache)
        .load::<Shop>()
        .await
        .expect_err("must fail");
    assert!(matches!(&err, ConfigError::NoCache { .. }), "{err:?}");
}
