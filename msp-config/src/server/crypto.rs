//! Spring Cloud Config's `/encrypt` and `/decrypt` endpoints, guarded by a
//! bearer token.
//!
//! They exist only when [`ConfigServer::crypto_endpoints`] configured a
//! token (and a cipher key is set): `POST /encrypt` with a `text/plain`
//! body answers the cipher text to paste after `{cipher}`, `POST /decrypt`
//! answers the plain text, `GET /encrypt/status` answers `{"status":"OK"}`.
//! Every call needs `Authorization: Bearer <token>`. A token rather than
//! "loopback only": the server usually sits behind a proxy or in a pod, where
//! the peer address says nothing about who asks, and anyone who may call
//! `/decrypt` can read every secret in the repository.
//!
//! [`ConfigServer::crypto_endpoints`]: super::ConfigServer::crypto_endpoints

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use msp_core::BoxError;
use subtle::ConstantTimeEq;

use super::Inner;
use super::body::{Body, error_response, json_response};
use super::error::ConfigServerError;
use crate::secret::{CIPHER_PREFIX, Cipher};

/// Bodies above this are refused (a config value, not a file).
const MAX_BODY: usize = 64 * 1024;

/// Which endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Encrypt,
    Decrypt,
    Status,
}

impl Endpoint {
    /// The endpoint for `path`, if it is one and they are enabled.
    pub(super) fn route(inner: &Inner, method: &Method, path: &str) -> Option<Endpoint> {
        inner.crypto_token.as_ref()?;
        inner.cipher.as_ref()?;
        match (method, path.trim_end_matches('/')) {
            (&Method::POST, "/encrypt") => Some(Endpoint::Encrypt),
            (&Method::POST, "/decrypt") => Some(Endpoint::Decrypt),
            (&Method::GET, "/encrypt/status") => Some(Endpoint::Status),
            _ => None,
        }
    }
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

/// Answers one `/encrypt`, `/decrypt` or `/encrypt/status` request.
pub(super) async fn handle<B>(
    inner: &Inner,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: B,
    path: &str,
) -> Response<Body>
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (Some(token), Some(cipher)) = (&inner.crypto_token, &inner.cipher) else {
        return error_response(&ConfigServerError::NotFound, path);
    };
    if !authorized(token, headers) {
        let mut resp = error_response(&ConfigServerError::Unauthorized, path);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    if endpoint == Endpoint::Status {
        return json_response(StatusCode::OK, br#"{"status":"OK"}"#.to_vec());
    }
    let text = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => match String::from_utf8(b.to_bytes().to_vec()) {
            Ok(t) => t,
            Err(_) => {
                return error_response(
                    &ConfigServerError::Decrypt("the body is not UTF-8 text".into()),
                    path,
                );
            }
        },
        Err(e) => {
            return error_response(
                &ConfigServerError::Decrypt(format!("cannot read the body: {e}")),
                path,
            );
        }
    };
    match apply(cipher, endpoint, &text) {
        Ok(out) => text_response(out),
        Err(e) => error_response(&e, path),
    }
}

fn apply(cipher: &Cipher, endpoint: Endpoint, text: &str) -> Result<String, ConfigServerError> {
    match endpoint {
        Endpoint::Encrypt => {
            let sealed = cipher.encrypt(text);
            Ok(sealed
                .strip_prefix(CIPHER_PREFIX)
                .unwrap_or(&sealed)
                .to_owned())
        }
        Endpoint::Decrypt => cipher
            .decrypt(text.trim())
            .map_err(ConfigServerError::Decrypt),
        Endpoint::Status => Ok(String::new()),
    }
}

fn text_response(text: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
