//! The place-order saga: reserve inventory → charge payment → create
//! shipment, compensated in reverse (refund, release) on a permanent
//! failure, each call carrying the step's `Idempotency-Key`.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), msp_core::BoxError> {
//! use ecommerce::platform::ServiceClient;
//! use ecommerce::services::order::{Downstream, place_order_saga};
//! let registry = msp_discovery::MemoryRegistry::new();
//! let client = |name| ServiceClient::new(&registry, name);
//! let saga = place_order_saga(&Downstream {
//!     products: client("product-service")?,
//!     inventory: client("inventory-service")?,
//!     payment: client("payment-service")?,
//!     shipping: client("shipping-service")?,
//! })?;
//! assert_eq!(saga.name(), "place-order");
//! # Ok(())
//! # }
//! ```

use crate::platform::ServiceClient;
use http::Method;
use msp_core::BoxError;
use msp_core::backoff::Backoff;
use msp_saga::saga::{IdempotencyKey, Saga, StepContext, StepError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// What the saga carries.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderData {
    /// The order id (also the saga id).
    pub order_id: Uuid,
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
    /// The total, in cents.
    pub cents: i64,
    /// Where to ship.
    pub address: String,
}

/// The clients the saga's steps call.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// product-service (prices).
    pub products: ServiceClient,
    /// inventory-service.
    pub inventory: ServiceClient,
    /// payment-service.
    pub payment: ServiceClient,
    /// shipping-service.
    pub shipping: ServiceClient,
}

/// Maps a downstream answer to a step result: 2xx is success, 4xx a
/// permanent failure (compensate), 5xx or no answer retryable.
fn outcome(res: Result<crate::platform::Reply, BoxError>) -> Result<serde_json::Value, StepError> {
    match res {
        Ok(r) if r.status.is_success() => r.json().map_err(StepError::permanent),
        Ok(r) if r.status.is_client_error() => Err(StepError::permanent(format!(
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))),
        Ok(r) => Err(StepError::retryable(format!(
            "upstream answered {}",
            r.status
        ))),
        Err(e) => Err(StepError::retryable(e)),
    }
}

/// The key a step was (or would have been) sent with: compensations name
/// the forward call they undo by its key.
fn forward_key(ctx: &StepContext<OrderData>) -> Result<String, StepError> {
    IdempotencyKey::new(ctx.saga_id(), ctx.step(), false)
        .map(|k| k.as_str().to_owned())
        .ok_or_else(|| StepError::permanent("bad step name"))
}

/// The place-order saga: inventory → payment → shipping.
pub fn place_order_saga(d: &Downstream) -> Result<Saga<OrderData>, BoxError> {
    // Six retries, 0.1 s doubling to 1 s (3.5 s in all): longer than the
    // clients' breakers stay open after a first trip (2 s), so a step
    // retried past an open breaker gets through once the service is back.
    let retry = Backoff::builder()
        .initial(Duration::from_millis(100))
        .max_delay(Duration::from_secs(1))
        .max_attempts(6)
        .jitter(msp_core::backoff::Jitter::None)
        .build()?;
    let (inv1, inv2, pay1, pay2, ship) = (
        d.inventory.clone(),
        d.inventory.clone(),
        d.payment.clone(),
        d.payment.clone(),
        d.shipping.clone(),
    );
    Ok(Saga::<OrderData>::builder("place-order")
        .step("inventory", move |ctx: StepContext<OrderData>| {
            let c = inv1.clone();
            async move {
                let body = json!({"sku": ctx.data().sku, "quantity": ctx.data().quantity});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/reservations", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .compensate(move |ctx| {
            let c = inv2.clone();
            async move {
                let path = format!("/reservations/{}/release", forward_key(&ctx)?);
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(c.send(Method::POST, &path, Some(&key), None).await).map(drop)
            }
        })
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("payment", move |ctx: StepContext<OrderData>| {
            let c = pay1.clone();
            async move {
                let body = json!({"order_id": ctx.data().order_id, "cents": ctx.data().cents});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/charges", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .compensate(move |ctx| {
            let c = pay2.clone();
            async move {
                let path = format!("/charges/{}/refund", forward_key(&ctx)?);
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(c.send(Method::POST, &path, Some(&key), None).await).map(drop)
            }
        })
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("shipping", move |ctx: StepContext<OrderData>| {
            let c = ship.clone();
            async move {
                let body = json!({"order_id": ctx.data().order_id, "address": ctx.data().address});
                let key = ctx.idempotency_key().as_str().to_owned();
                outcome(
                    c.send(Method::POST, "/shipments", Some(&key), Some(&body))
                        .await,
                )
            }
        })
        .retry(retry)
        .timeout(Duration::from_secs(5))
        .build()?)
}
