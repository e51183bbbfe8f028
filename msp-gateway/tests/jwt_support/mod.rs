//! Helpers of tests/jwt.rs: the test keys (tests/keys, PEM → DER),
//! signed tokens with good default claims, and a loopback JWKS server
//! that counts its fetches.
#![allow(dead_code, unreachable_pub)]

use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const BOUND: Duration = Duration::from_secs(20);
pub const ISS: &str = "https://idp.test";
pub const AUD: &str = "orders-api";

// ---- keys and tokens -------------------------------------------------------

pub fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body")
}

pub fn rsa1() -> EncodingKey {
    EncodingKey::from_rsa_der(&der(include_str!("../keys/rsa1.pem")))
}

pub fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_der(&der(include_str!("../keys/rsa2.pem")))
}

pub fn ec1() -> EncodingKey {
    EncodingKey::from_ec_der(&der(include_str!("../keys/ec1.pem")))
}

/// The public JWK of `key` with `kid`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("public JWK");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).expect("JWK json")
}

pub fn set(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// Good claims: right issuer and audience, the scope, five minutes left.
pub fn claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISS,
        "aud": AUD,
        "exp": get_current_timestamp() + 300,
        "scope": "orders:read profile",
        "tenant": "acme",
        "role": "user",
    })
}

pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign")
}

// ---- a JWKS server that counts fetches -------------------------------------

#[derive(Clone)]
struct JwksState {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    cache_control: Option<&'static str>,
    fetched: mpsc::UnboundedSender<()>,
}

pub struct Jwks {
    pub addr: SocketAddr,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    /// One message per fetch.
    pub fetched: mpsc::UnboundedReceiver<()>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

async fn serve_jwks(State(s): State<JwksState>) -> axum::response::Response {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    let _ = s.fetched.send(());
    let body = s.set.lock().expect("lock").to_string();
    let mut res = ([("content-type", "application/json")], body).into_response();
    if let Some(cc) = s.cache_control {
        res.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static(cc));
    }
    res
}

pub async fn jwks_server(keys: Value, cache_control: Option<&'static str>) -> Jwks {
    let set = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (tx, fetched) = mpsc::unbounded_channel();
    let state = JwksState {
        set: set.clone(),
        fetches: fetches.clone(),
        cache_control,
        fetched: tx,
    };
    let app = axum::Router::new()
        .route("/jwks", axum::routing::get(serve_jwks))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind JWKS");
    let addr = listener.local_addr().expect("JWKS addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Jwks {
        addr,
        set,
        fetches,
        fetched,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Jwks {
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn replace(&self, keys: Value) {
        *self.set.lock().expect("lock") = keys;
    }

    /// Stops the server: the listener is closed and open connections end.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(BOUND, task)
                .await
                .expect("JWKS server stops")
                .expect("JWKS task");
        }
    }
}

pub fn ed1() -> EncodingKey {
    EncodingKey::from_ed_der(&der(include_str!("../keys/ed1.pem")))
}
