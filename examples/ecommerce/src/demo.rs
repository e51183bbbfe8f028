//! The demo's story, told over HTTP through the gateway: sign up and log
//! in, browse and search products, an order refused without a key, an
//! order that completes, one whose shipment fails and is compensated (the
//! stock comes back, the payment is refunded), and a rate limit hit; a
//! breaker opening and closing; a product-service instance crashed under
//! load with no failed request ([`CrashChapter`]); a setting changed in the
//! config server's files and applied without a restart
//! ([`ReloadChapter`]).
//!
//! [`run`] returns what happened as a [`Story`], so the integration test
//! checks the same story `cargo run -p ecommerce -- demo` prints.
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! # let dir = tempfile::tempdir()?;
//! # let config = ecommerce::SystemConfig {
//! #     data_dir: dir.path().to_path_buf(),
//! #     gateway_listen: Some("127.0.0.1:0".parse()?),
//! #     ..Default::default()
//! # };
//! let system = ecommerce::System::start(config).await?;
//! let story = ecommerce::demo::run(&system, true).await?;
//! assert_eq!(story.completed.1, "completed");
//! assert_eq!(story.compensated.1, "compensated");
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

mod crash;
mod reload;

pub use crash::CrashChapter;
pub use reload::ReloadChapter;

use crate::System;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use msp_core::BoxError;
use msp_resilience::circuit_breaker::State;
use serde_json::{Value, json};

/// A small JSON-over-HTTP client (hyper-util, pooled).
#[derive(Debug, Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// A client sending paths relative to `base` (`http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.into(),
        }
    }

    /// Sends `method path` with an optional API key and JSON body; answers
    /// the status, the `Retry-After` header if any and the body as JSON
    /// (`Value::Null` when it is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), BoxError> {
        let key = api_key.map(|k| ("x-api-key", k.to_owned()));
        self.send_with(method, path, key, body).await
    }

    /// `GET path` with `Authorization: Bearer {token}` (user-service's JWTs).
    pub async fn get_bearer(
        &self,
        path: &str,
        token: &str,
    ) -> Result<(StatusCode, Value), BoxError> {
        let auth = Some(("authorization", format!("Bearer {token}")));
        self.send_with(Method::GET, path, auth, None).await
    }

    /// `POST path` with a JSON body and `Authorization: Bearer {token}`.
    pub async fn post_bearer(
        &self,
        path: &str,
        token: &str,
        body: Value,
    ) -> Result<(StatusCode, Value), BoxError> {
        let auth = Some(("authorization", format!("Bearer {token}")));
        self.send_with(Method::POST, path, auth, Some(body)).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        credential: Option<(&'static str, String)>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), BoxError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some((name, value)) = credential {
            req = req.header(name, value);
        }
        let req = match body {
            Some(json) => req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&json)?)))?,
            None => req.body(Full::new(Bytes::new()))?,
        };
        let res = self.client.request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `GET path`.
    pub async fn get(
        &self,
        path: &str,
        api_key: Option<&str>,
    ) -> Result<(StatusCode, Value), BoxError> {
        self.send(Method::GET, path, api_key, None).await
    }

    /// `GET path` with `Cache-Control: no-cache`: the gateway's cache
    /// neither answers nor stores it, an instance does.
    pub async fn get_uncached(&self, path: &str) -> Result<(StatusCode, Value), BoxError> {
        let req = Request::get(format!("{}{path}", self.base))
            .header(http::header::CACHE_CONTROL, "no-cache")
            .body(Full::new(Bytes::new()))?;
        let res = self.client.request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &self,
        path: &str,
        api_key: Option<&str>,
        body: Value,
    ) -> Result<(StatusCode, Value), BoxError> {
        self.send(Method::POST, path, api_key, Some(body)).await
    }
}

/// What the demo saw.
#[derive(Debug, Clone, Default)]
pub struct Story {
    /// Products listed through the gateway (public route).
    pub products: usize,
    /// SKUs found by searching "lamp".
    pub search_hits: Vec<String>,
    /// The status of an order sent without an API key (401).
    pub order_without_key: u16,
    /// The completed order: `(id, status, history)`.
    pub completed: (String, String, Vec<String>),
    /// The order whose shipment failed: `(id, status, history)`.
    pub compensated: (String, String, Vec<String>),
    /// Units of the compensated order's SKU available before and after it.
    pub stock_before_after: (i64, i64),
    /// The compensated order's charge state (`refunded`).
    pub charge_state: String,
    /// How many logins were answered before the first 429.
    pub requests_before_429: usize,
    /// Whether the 429 came with `Retry-After`-style problem details.
    pub rate_limited: bool,
    /// The breaker chapter: payment-service failing, order-service's
    /// breaker to it opening, then recovering.
    pub breaker: BreakerChapter,
    /// Chapter 8: a product-service instance crashed under load.
    pub crash: CrashChapter,
    /// Chapter 9: a setting changed in the config server's files, live.
    pub reload: ReloadChapter,
}

/// What the breaker chapter saw.
#[derive(Debug, Clone, Default)]
pub struct BreakerChapter {
    /// Whether order-service's breaker to payment-service opened.
    pub opened: bool,
    /// The order placed while payment failed: `(id, status, history)`
    /// (compensated).
    pub during: (String, String, Vec<String>),
    /// Payment attempts of that order rejected at once by the open breaker
    /// (no call to payment-service made).
    pub fast_failures: usize,
    /// The first order placed after the faults stopped that completed:
    /// `(id, status, history)` (its payment call a half-open probe).
    pub after: (String, String, Vec<String>),
    /// The breaker's state at the end (`closed`).
    pub final_state: String,
}

fn say(quiet: bool, line: impl std::fmt::Display) {
    if !quiet {
        println!("{line}");
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Places an order and long-polls it until the saga ends.
async fn order(
    gw: &Http,
    key: &str,
    sku: &str,
    address: &str,
) -> Result<(String, String, Vec<String>), BoxError> {
    let body = json!({"sku": sku, "quantity": 1, "address": address});
    let (status, placed) = gw.post("/api/orders", Some(key), body).await?;
    if status != StatusCode::CREATED {
        return Err(format!("order refused: {status} {placed}").into());
    }
    let id = placed["id"].as_str().ok_or("no order id")?.to_owned();
    for _ in 0..5 {
        let (_, view) = gw
            .get(&format!("/api/orders/{id}?wait_ms=5000"), Some(key))
            .await?;
        let state = view["status"].as_str().unwrap_or_default().to_owned();
        if state != "pending" {
            return Ok((id, state, strings(&view["history"])));
        }
    }
    Err(format!("order {id} still pending after 25 s").into())
}

/// Tells the story against `system` (printing it unless `quiet`).
pub async fn run(system: &System, quiet: bool) -> Result<Story, BoxError> {
    let gw = Http::new(system.gateway_url());
    let behind = |name: &str| {
        system
            .service_addr(name)
            .map(|a| Http::new(format!("http://{a}")))
            .ok_or_else(|| format!("{name} is not running"))
    };
    let (inventory, payment) = (behind("inventory-service")?, behind("payment-service")?);
    let mut story = Story::default();

    say(
        quiet,
        "1. sign up and log in (POST /api/auth/signup, /api/auth/login)",
    );
    let email = format!("ada+{}@example.com", uuid::Uuid::new_v4().simple());
    let creds = json!({"email": email, "password": "correct horse"});
    gw.post("/api/auth/signup", None, creds.clone()).await?;
    let (status, login) = gw.post("/api/auth/login", None, creds).await?;
    let token = login["access_token"]
        .as_str()
        .ok_or_else(|| format!("login failed: {status} {login}"))?;
    let (status, profile) = gw.get_bearer(&format!("/api/users/{email}"), token).await?;
    say(
        quiet,
        format!("   JWT issued for {email}; GET its profile with it: {status} {profile}"),
    );
    // The rest of the story runs as this account's machine client: an API
    // key minted with the JWT (the gateway accepts either).
    let (status, minted) = gw
        .post_bearer(&format!("/api/users/{email}/api-keys"), token, json!({}))
        .await?;
    let key = minted["api_key"]
        .as_str()
        .ok_or_else(|| format!("no API key: {status} {minted}"))?
        .to_owned();
    say(quiet, format!("   API key minted for {email}'s scripts"));

    say(quiet, "2. browse the catalog (public route)");
    let (_, products) = gw.get("/api/products", None).await?;
    story.products = products.as_array().map_or(0, Vec::len);
    let (_, hits) = gw.get("/api/products/search?q=lamp", None).await?;
    story.search_hits = hits
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["sku"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    say(
        quiet,
        format!(
            "   {} products; search \"lamp\" finds {:?}",
            story.products, story.search_hits
        ),
    );

    say(quiet, "3. an order without an API key");
    let (status, _) = gw
        .post(
            "/api/orders",
            None,
            json!({"sku": "book-42", "quantity": 1, "address": "x"}),
        )
        .await?;
    story.order_without_key = status.as_u16();
    say(quiet, format!("   {status}"));

    say(quiet, "4. an order that completes: reserve → charge → ship");
    story.completed = order(&gw, &key, "book-42", "1 Main St, Springfield").await?;
    say(
        quiet,
        format!("   order {} {}", story.completed.0, story.completed.1),
    );
    for line in &story.completed.2 {
        say(quiet, format!("     {line}"));
    }

    say(
        quiet,
        "5. an order whose shipment fails (address contains FAIL): compensated in reverse",
    );
    let stock = |v: Value| v["available"].as_i64().unwrap_or(-1);
    let before = stock(inventory.get("/stock/lamp-7", None).await?.1);
    story.compensated = order(&gw, &key, "lamp-7", "FAIL, Sunken Palace, Atlantis").await?;
    let after = stock(inventory.get("/stock/lamp-7", None).await?.1);
    story.stock_before_after = (before, after);
    let charge_key = format!("{}:payment", story.compensated.0);
    let (_, charge) = payment.get(&format!("/charges/{charge_key}"), None).await?;
    story.charge_state = charge["state"].as_str().unwrap_or_default().to_owned();
    say(
        quiet,
        format!("   order {} {}", story.compensated.0, story.compensated.1),
    );
    for line in &story.compensated.2 {
        say(quiet, format!("     {line}"));
    }
    say(
        quiet,
        format!(
            "   lamp-7 stock {before} → {after}; charge {}",
            story.charge_state
        ),
    );

    say(
        quiet,
        "6. exceed a rate limit (/api/auth/* allows 20/minute)",
    );
    let wrong = json!({"email": email, "password": "wrong password"});
    for n in 0..100 {
        let (status, body) = gw.post("/api/auth/login", None, wrong.clone()).await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            story.requests_before_429 = n;
            story.rate_limited = true;
            say(quiet, format!("   429 after {n} more logins: {body}"));
            break;
        }
    }

    say(
        quiet,
        "7. payment-service fails every call (chaos): order-service's breaker opens, then recovers",
    );
    story.breaker = breaker_chapter(system, &gw, &key, quiet).await?;

    say(
        quiet,
        "8. crash a product-service instance under load: the gateway retries on the other, then ejects it",
    );
    story.crash = crash::run(system, quiet).await?;

    say(
        quiet,
        "9. change a setting in the config server's files: product-service applies it without a restart",
    );
    story.reload = reload::run(system, quiet).await?;
    Ok(story)
}

/// Chapter 7: faults injected into payment-service until order-service's
/// breaker to it opens; an order placed then is rejected fast and
/// compensated; faults off, the next order's payment is the breaker's probe
/// and completes.
async fn breaker_chapter(
    system: &System,
    gw: &Http,
    key: &str,
    quiet: bool,
) -> Result<BreakerChapter, BoxError> {
    let dashboard = system.dashboard();
    let breaker = dashboard
        .breakers()
        .iter()
        .find(|b| b.callee == "payment-service")
        .ok_or("no breaker to payment-service")?
        .breaker
        .clone();
    let chaos = dashboard
        .chaos("payment-service")
        .ok_or("payment-service has no chaos switch")?;
    let mut chapter = BreakerChapter::default();
    let mut changes = breaker.subscribe();
    chaos.enable();
    chapter.during = order(gw, key, "mug-1", "2 Side St").await?;
    // The order's end was long-polled; the breaker opened on the way.
    while let Ok(change) = changes.try_recv() {
        if change.to == State::Open {
            chapter.opened = true;
        }
    }
    chapter.fast_failures = chapter
        .during
        .2
        .iter()
        .filter(|l| l.contains("circuit breaker is open"))
        .count();
    say(
        quiet,
        format!(
            "   faults on: breaker opened: {}; order {} {} ({} payment attempts rejected at once by the open breaker)",
            chapter.opened, chapter.during.0, chapter.during.1, chapter.fast_failures
        ),
    );
    chaos.disable();
    // The saga retries its payment step for longer than the breaker stays
    // open, so the first order after the faults completes: its payment is
    // the breaker's first half-open probe. The breaker closes once its
    // half-open probes all succeeded: a few more orders (bounded).
    for n in 0..8 {
        let placed = order(gw, key, "mug-1", "2 Side St").await?;
        if n == 0 || chapter.after.1 != "completed" {
            chapter.after = placed;
        }
        if chapter.after.1 == "completed" && breaker.state() == State::Closed {
            break;
        }
    }
    chapter.final_state = breaker.state().as_str().to_owned();
    say(
        quiet,
        format!(
            "   faults off: order {} {}; breaker {}",
            chapter.after.0, chapter.after.1, chapter.final_state
        ),
    );
    Ok(chapter)
}
