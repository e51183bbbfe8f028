//! Server-side decryption of `{cipher}` values (Spring Cloud Config's
//! default) and the `/encrypt` / `/decrypt` endpoints.

#![cfg(feature = "http")]

mod common;

use std::collections::HashMap;

use axum::Router;
use bytes::Bytes;
use common::{get_json, serve};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msp_config::remote::{HttpSource, Remote};
use msp_config::secret::{Cipher, CipherKey};
use msp_config::server::ConfigServer;
use msp_config::{Loader, Secret};

const KEY: [u8; 32] = [7; 32];

fn config_dir(cipher: &Cipher) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let other = Cipher::new([9; 32]);
    std::fs::write(
        dir.path().join("shop.yaml"),
        format!(
            "db:\n  user: app\n  password: '{}'\napi:\n  token: '{}'\n  broken: '{{cipher}}not base64!'\n",
            cipher.encrypt("s3cr3t"),
            other.encrypt("someone else's"),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    dir
}

async fn post(url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::post(url).header("content-type", "text/plain");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from(body.to_owned())))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn cipher_values_are_decrypted_before_serving_and_undecryptable_ones_become_invalid() {
    let cipher = Cipher::new(KEY);
    let dir = config_dir(&cipher);
    let server = ConfigServer::new(dir.path()).cipher(cipher);
    let (addr, _s) = serve(Router::new().fallback_service(server.clone())).await;
    let url = format!("http://{addr}/shop/default");

    let (status, body) = get_json(&url, &[]).await;
    assert_eq!(status, 200, "{body}");
    // Spring's behaviour: decrypted in place; what cannot be decrypted is
    // removed and replaced by `invalid.<key>` = `<n/a>`.
    assert_eq!(
        body["propertySources"][0]["source"],
        serde_json::json!({
            "db.user": "app",
            "db.password": "s3cr3t",
            "invalid.api.token": "<n/a>",
            "invalid.api.broken": "<n/a>",
        })
    );

    // Per request: the values as stored.
    let (_, body) = get_json(&url, &[("x-config-decrypt", "false")]).await;
    let source = &body["propertySources"][0]["source"];
    for key in ["db.password", "api.token", "api.broken"] {
        assert!(
            source[key]
                .as_str()
                .is_some_and(|v| v.starts_with("{cipher}")),
            "{key}: {source}"
        );
    }
    // Server-wide off (Spring's encrypt.enabled=false), and no key at all.
    for server in [server.clone().decrypt(false), ConfigServer::new(dir.path())] {
        let env = server
            .environment("shop", "default", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let v = &env.property_sources[0].source["db.password"];
        assert!(v.as_str().is_some_and(|v| v.starts_with("{cipher}")), "{v}");
    }
}

#[derive(Debug, serde::Deserialize)]
struct Db {
    user: String,
    password: Secret<String>,
}
#[derive(Debug, serde::Deserialize)]
struct Shop {
    db: Db,
}

#[tokio::test]
async fn msp_clients_get_plain_values_or_decrypt_themselves() {
    let cipher = Cipher::new(KEY);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("shop.yaml"),
        format!(
            "db:\n  user: app\n  password: '{}'\n",
            cipher.encrypt("s3cr3t")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let server = ConfigServer::new(dir.path()).cipher(cipher);
    let (addr, _s) = serve(Router::new().nest_service("/config", server)).await;
    let base = format!("http://{addr}/config");

    // The server decrypts: a client without the key reads the password.
    let shop: Shop = Loader::new("shop")
        .no_files()
        .env_map(HashMap::new())
        .remote(Remote::new(HttpSource::new(&base, "shop", "default")))
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shop.db.user, "app");
    assert_eq!(shop.db.password.expose(), "s3cr3t");

    // Asking for cipher text: the client decrypts with its own key.
    let shop: Shop = Loader::new("shop")
        .no_files()
        .env_map(HashMap::new())
        .cipher_key(CipherKey::Bytes(KEY))
        .remote(Remote::new(
            HttpSource::new(&base, "shop", "default").decrypt_on_server(false),
        ))
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shop.db.password.expose(), "s3cr3t");
}

#[tokio::test]
async fn encrypt_and_decrypt_endpoints_exist_only_when_configured_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cipher = Cipher::new(KEY);

    // Not configured: the paths are environment requests, and POST is not allowed.
    let (addr, _s) =
        serve(Router::new().fallback_service(ConfigServer::new(dir.path()).cipher(cipher.clone())))
            .await;
    let (status, _) = post(&format!("http://{addr}/encrypt"), "x", Some("t0k3n")).await;
    assert_eq!(status, 405);

    let server = ConfigServer::new(dir.path())
        .cipher(cipher.clone())
        .crypto_endpoints("t0k3n");
    let (addr, _s) = serve(Router::new().fallback_service(server)).await;
    let encrypt = format!("http://{addr}/encrypt");
    let decrypt = format!("http://{addr}/decrypt");
    for token in [None, Some("wrong"), Some("t0k3")] {
        let (status, body) = post(&encrypt, "s3cr3t", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        let (status, _) = post(&decrypt, "AAAA", token).await;
        assert_eq!(status, 401);
    }

    let (status, sealed) = post(&encrypt, "s3cr3t", Some("t0k3n")).await;
    assert_eq!(status, 200);
    // Like Spring, the answer goes after `{cipher}` in a file.
    assert!(!sealed.starts_with("{cipher}"), "{sealed}");
    assert_eq!(
        cipher.decrypt(&format!("{{cipher}}{sealed}")).as_deref(),
        Ok("s3cr3t")
    );
    for text in [sealed.clone(), format!("{{cipher}}{sealed}")] {
        let (status, plain) = post(&decrypt, &text, Some("t0k3n")).await;
        assert_eq!((status, plain.as_str()), (200, "s3cr3t"));
    }
    let (status, body) = post(&decrypt, "bm90IGEgY2lwaGVy", Some("t0k3n")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_json(
        &format!("http://{addr}/encrypt/status"),
        &[("authorization", "Bearer t0k3n")],
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "OK"})));
}
