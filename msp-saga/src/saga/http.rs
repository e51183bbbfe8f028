//! Sending a step's idempotency key downstream as the `Idempotency-Key`
//! HTTP header (IETF draft `httpapi-idempotency-key-header`).

use super::definition::IdempotencyKey;

/// The `Idempotency-Key` header name (msp-core's
/// [`IDEMPOTENCY_KEY`](msp_core::http::header::IDEMPOTENCY_KEY), defined
/// once for every crate).
pub use msp_core::http::header::IDEMPOTENCY_KEY;

/// Sets `Idempotency-Key` on an HTTP request (or request builder), for
/// any HTTP client that takes `http::Request`s.
///
/// # Example
///
/// ```
/// use msp_saga::saga::{IdempotencyKey, IdempotencyKeyExt};
///
/// let key = IdempotencyKey::new(uuid::Uuid::nil(), "payment", false).expect("valid step name");
/// let request = http::Request::post("http://payments/charges")
///     .idempotency_key(&key)
///     .body(())?;
/// assert_eq!(
///     request.headers()["idempotency-key"],
///     "00000000-0000-0000-0000-000000000000:payment"
/// );
///
/// // On a request that already exists (replaces any previous key):
/// let mut request = http::Request::new(());
/// request.set_idempotency_key(&key);
/// assert_eq!(request.headers().get_all("idempotency-key").iter().count(), 1);
/// # Ok::<(), http::Error>(())
/// ```
pub trait IdempotencyKeyExt {
    /// Returns `self` with the header set to `key`.
    #[must_use]
    fn idempotency_key(self, key: &IdempotencyKey) -> Self;

    /// Sets the header to `key` in place, replacing a previous value.
    fn set_idempotency_key(&mut self, key: &IdempotencyKey);
}

impl<B> IdempotencyKeyExt for http::Request<B> {
    fn idempotency_key(mut self, key: &IdempotencyKey) -> Self {
        self.set_idempotency_key(key);
        self
    }

    fn set_idempotency_key(&mut self, key: &IdempotencyKey) {
        self.headers_mut()
            .insert(IDEMPOTENCY_KEY, key.header_value().clone());
    }
}

impl IdempotencyKeyExt for http::request::Builder {
    fn idempotency_key(mut self, key: &IdempotencyKey) -> Self {
        self.set_idempotency_key(key);
        self
    }

    fn set_idempotency_key(&mut self, key: &IdempotencyKey) {
        if let Some(headers) = self.headers_mut() {
            headers.insert(IDEMPOTENCY_KEY, key.header_value().clone());
        }
    }
}
