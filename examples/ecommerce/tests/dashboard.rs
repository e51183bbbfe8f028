//! The live dashboard, in a real headless browser: Debian's chromium driven
//! by playwright-core (`tests/browser/dashboard.mjs`, which never downloads
//! a browser of its own).
//!
//! The page must list the seven services, then — after payment-service is
//! made to fail and order-service's breaker to it opens — show that breaker
//! open without a reload (it updates over SSE). A screenshot is written to
//! `target/tmp/ecommerce-dashboard.png`.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`) and
//! `tests/browser/node_modules` (`npm ci` there); `scripts/test-all.sh`
//! installs both. Without them the test skips, unless
//! `MSP_REQUIRE_BACKENDS=1` (the full suite), where it fails.

use ecommerce::demo::Http;
use ecommerce::{System, SystemConfig};
use http::StatusCode;
use msp_resilience::circuit_breaker::State;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The chromium binary and whether playwright-core is installed, or why not.
fn prerequisites() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("{} not found", chromium.display()));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Err("playwright-core not installed (npm ci in tests/browser)".into());
    }
    Ok(chromium)
}

/// The next line the browser script prints (bounded wait).
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the browser never reported {what}"))
        .expect("browser stdout readable")
        .unwrap_or_else(|| panic!("the browser script exited before reporting {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_the_services_and_shows_a_breaker_opening_in_chromium() {
    let chromium = match prerequisites() {
        Ok(path) => path,
        Err(why) if msp_core::testing::backends_required() => {
            panic!("MSP_REQUIRE_BACKENDS=1 but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipping the dashboard browser test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let system = System::start(SystemConfig {
        data_dir: dir.path().to_path_buf(),
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SystemConfig::default()
    })
    .await
    .expect("system starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/dashboard",
        listener.local_addr().expect("local addr")
    );
    system
        .serve_dashboard(listener, false)
        .expect("dashboard served");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ecommerce-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(&url)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(browser.stdout.take().expect("piped")).lines();

    // 1. The page lists the seven services.
    let listed = next_line(&mut lines, "the services").await;
    assert!(listed.starts_with("services 7 "), "{listed}");
    for name in ["order-service", "payment-service", "product-service"] {
        assert!(listed.contains(name), "{name} missing from {listed}");
    }

    // 2. payment-service fails every call; an order's payment step fails
    //    until order-service's breaker to payment-service opens.
    let payment = system
        .dashboard()
        .breakers()
        .iter()
        .find(|b| b.callee == "payment-service")
        .expect("a breaker to payment-service")
        .breaker
        .clone();
    let mut changes = payment.subscribe();
    system
        .dashboard()
        .chaos("payment-service")
        .expect("payment-service has a chaos switch")
        .enable();
    let gw = Http::new(system.gateway_url());
    let order = json!({"sku": "book-42", "quantity": 1, "address": "1 Main St"});
    let (status, body) = gw
        .post("/api/orders", Some("demo-key"), order)
        .await
        .expect("order placed");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let change = changes.recv().await.expect("breaker events");
            if change.to == State::Open {
                return;
            }
        }
    })
    .await
    .expect("the breaker to payment-service opens");

    // 3. The page shows it open (over SSE, no reload) and writes a screenshot.
    let open = next_line(&mut lines, "the open breaker").await;
    assert_eq!(open, "breaker-open order-service->payment-service");
    let written = next_line(&mut lines, "the screenshot").await;
    assert!(written.starts_with("screenshot "), "{written}");
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .expect("the browser script ends")
        .expect("exit status");
    assert!(status.success(), "browser script failed: {status}");
    let size = std::fs::metadata(&shot).expect("screenshot written").len();
    assert!(size > 10_000, "screenshot is only {size} bytes");
    eprintln!("dashboard screenshot: {}", shot.display());

    system
        .dashboard()
        .chaos("payment-service")
        .expect("switch")
        .disable();
    system.stop().await.expect("system stops");
}
