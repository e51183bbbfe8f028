//! A Spring Cloud Config client from PyPI (`config-client` 1.5.0, module
//! `config`) reads msp's server: a `{cipher}` value arrives decrypted, and
//! the client's own `encrypt` / `decrypt` calls work with the server's
//! endpoints.
//!
//! Runs `tests/spring/spring_client.py` with `$MSP_PYTHON` (default
//! `python3`). Without the module the test skips, saying so, unless
//! `MSP_REQUIRE_BACKENDS=1` (`.ci/run`, whose `scripts/services.sh start`
//! installs it).

#![cfg(feature = "http")]

mod common;

use std::path::Path;
use std::process::Command;

use axum::Router;
use common::serve;
use msp_config::secret::Cipher;
use msp_config::server::ConfigServer;

fn python() -> String {
    std::env::var("MSP_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether the `config-client` package can be imported, else why not.
fn client_available() -> Result<(), String> {
    let out = Command::new(python())
        .args(["-c", "from config.spring import ConfigClient"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the PyPI package config-client is not installed for {} (pip install config-client==1.5.0): {}",
            python(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[tokio::test]
async fn a_spring_cloud_config_python_client_reads_a_decrypted_cipher_value() {
    if let Err(why) = client_available() {
        assert!(
            !msp_core::testing::backends_required(),
            "MSP_REQUIRE_BACKENDS=1 and {why}"
        );
        eprintln!("skipping the Spring client test: {why}");
        return;
    }
    let cipher = Cipher::new([42; 32]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The client always sends a label (here `main`): a subdirectory.
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        main.join("orders.yaml"),
        format!(
            "spring:\n  datasource:\n    username: orders\n    password: '{}'\n",
            cipher.encrypt("pa55word")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(main.join("application.yaml"), "region: eu\n").unwrap_or_else(|e| panic!("{e}"));
    let server = ConfigServer::new(dir.path())
        .cipher(cipher.clone())
        .crypto_endpoints("t0k3n");
    let (addr, _s) = serve(Router::new().nest_service("/config", server)).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spring/spring_client.py");
    let url = format!("http://{addr}/config");
    let out = tokio::process::Command::new(python())
        .arg(&script)
        .args([url.as_str(), "orders", "prod", "main"])
        .args(["spring.datasource.password", "t0k3n"])
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 60 s", script.display()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out.stdout));
    assert_eq!(got["value"], "pa55word", "{got}");
    assert_eq!(
        got["config"],
        serde_json::json!({
            "spring": {"datasource": {"username": "orders", "password": "pa55word"}},
            "region": "eu"
        })
    );
    // The client's encrypt() gave cipher text the server (and msp) can read.
    let sealed = got["encrypted"].as_str().unwrap_or_default();
    assert_eq!(
        cipher.decrypt(&format!("{{cipher}}{sealed}")).as_deref(),
        Ok("s3cr3t")
    );
    assert_eq!(got["decrypted"], "s3cr3t");
}
