//! The place-order saga: payment → inventory → shipping.
//!
//! Order 1001 goes through. Order 1002 fails at shipping (the courier does
//! not serve the address, a permanent error), so the orchestrator releases
//! the stock and refunds the payment, in reverse order. Each step's log is
//! printed from the store.
//!
//! ```text
//! cargo run -p msp-saga --example order_saga                      # SQLite in a temp dir
//! cargo run -p msp-saga --features postgres --example order_saga -- --postgres postgres://postgres@127.0.0.1/postgres
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msp_core::backoff::Backoff;
use msp_saga::saga::{Orchestrator, Saga, SagaState, SagaStore, StepContext, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    sku: String,
    quantity: u32,
    cents: u64,
    address: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    charge_id: String,
    cents: u64,
}

/// Stand-ins for the payment, inventory and shipping services. Like real
/// services that honour `Idempotency-Key`, they apply a key's effect once.
#[derive(Default)]
struct Services {
    charges: HashMap<String, u64>,
    refunds: HashMap<String, u64>,
    reserved: HashMap<String, u32>,
    released: HashMap<String, u32>,
}

type Shared = Arc<Mutex<Services>>;

fn services(s: &Shared) -> std::sync::MutexGuard<'_, Services> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn charge(s: Shared, ctx: StepContext<Order>) -> Result<Charge, StepError> {
    let order = ctx.data();
    let key = ctx.idempotency_key().to_string();
    services(&s)
        .charges
        .entry(key.clone())
        .or_insert(order.cents);
    println!(
        "  payment:   charged {} cents (Idempotency-Key {key})",
        order.cents
    );
    Ok(Charge {
        charge_id: format!("ch_{}", order.id),
        cents: order.cents,
    })
}

async fn refund(s: Shared, ctx: StepContext<Order>) -> Result<(), StepError> {
    // The charge may be unknown if the payment call timed out: refund by key.
    let charge: Option<Charge> = ctx.own_output()?;
    let key = ctx.idempotency_key().to_string();
    let cents = charge.map_or(ctx.data().cents, |c| c.cents);
    services(&s).refunds.entry(key).or_insert(cents);
    println!("  payment:   refunded {cents} cents");
    Ok(())
}

async fn reserve(s: Shared, ctx: StepContext<Order>) -> Result<String, StepError> {
    let order = ctx.data();
    services(&s)
        .reserved
        .entry(ctx.idempotency_key().to_string())
        .or_insert(order.quantity);
    println!("  inventory: reserved {} × {}", order.quantity, order.sku);
    Ok(format!("res_{}", order.id))
}

async fn release(s: Shared, ctx: StepContext<Order>) -> Result<(), StepError> {
    let order = ctx.data();
    services(&s)
        .released
        .entry(ctx.idempotency_key().to_string())
        .or_insert(order.quantity);
    println!("  inventory: released {} × {}", order.quantity, order.sku);
    Ok(())
}

async fn ship(ctx: StepContext<Order>) -> Result<String, StepError> {
    let order = ctx.data();
    // A real step would call the shipping service and map 5xx/timeouts to
    // `Retryable` and 4xx to `Permanent`.
    let charge: Charge = ctx.output("payment")?;
    if order.address.contains("Atlantis") {
        println!("  shipping:  courier does not deliver to {}", order.address);
        return Err(StepError::permanent(format!(
            "no courier for {} (paid with {})",
            order.address, charge.charge_id
        )));
    }
    println!("  shipping:  label created for {}", order.address);
    Ok(format!("ship_{}", order.id))
}

fn place_order(s: &Shared) -> Result<Saga<Order>, Box<dyn std::error::Error>> {
    let retry = Backoff::builder()
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_secs(2))
        .max_attempts(3)
        .build()?;
    let (s1, s2, s3, s4) = (s.clone(), s.clone(), s.clone(), s.clone());
    Ok(Saga::<Order>::builder("place-order")
        .step("payment", move |ctx| charge(s1.clone(), ctx))
        .compensate(move |ctx| refund(s2.clone(), ctx))
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("inventory", move |ctx| reserve(s3.clone(), ctx))
        .compensate(move |ctx| release(s4.clone(), ctx))
        .retry(retry.clone())
        .timeout(Duration::from_secs(5))
        .step("shipping", ship)
        .retry(retry)
        .timeout(Duration::from_secs(5))
        .build()?)
}

async fn run<S: SagaStore>(store: S, where_: &str) -> Result<(), Box<dyn std::error::Error>> {
    let shared: Shared = Arc::default();
    let saga = place_order(&shared)?;
    let orchestrator = Orchestrator::builder(store).register(&saga).build()?;
    // Resumes sagas a previous run left unfinished (none in a fresh store).
    let _recovery = orchestrator.spawn_recovery();
    println!("store: {where_}\n");

    let orders = [
        Order {
            id: 1001,
            sku: "book-42".into(),
            quantity: 2,
            cents: 3_998,
            address: "1 Main St, Springfield".into(),
        },
        Order {
            id: 1002,
            sku: "lamp-7".into(),
            quantity: 1,
            cents: 12_500,
            address: "Sunken Palace, Atlantis".into(),
        },
    ];
    for order in orders {
        println!("order {}:", order.id);
        let handle = orchestrator.start(&saga, order).await?;
        let id = handle.id();
        let state = handle.wait().await?;
        println!("  => saga {id} {state}\n  step log:");
        if let Some(record) = orchestrator.get(id).await? {
            for entry in &record.log {
                println!("    {entry}");
            }
        }
        println!();
    }

    let (charged, refunded, reserved, released) = {
        let s = services(&shared);
        (
            s.charges.values().sum::<u64>(),
            s.refunds.values().sum::<u64>(),
            s.reserved.values().sum::<u32>(),
            s.released.values().sum::<u32>(),
        )
    };
    println!(
        "net effect: {} cents kept ({charged} charged, {refunded} refunded); {} items out of stock ({reserved} reserved, {released} released)",
        charged - refunded,
        reserved - released
    );
    let compensated = orchestrator
        .list(Some(SagaState::Compensated), 100)
        .await?
        .len();
    let completed = orchestrator
        .list(Some(SagaState::Completed), 100)
        .await?
        .len();
    println!("sagas in the store: {completed} completed, {compensated} compensated");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("orders.db");
            let store = msp_saga::saga::SqliteSagaStore::open(&path).await?;
            run(store, &format!("SQLite {}", path.display())).await
        }
        [flag, url] if flag == "--postgres" => postgres(url).await,
        _ => {
            eprintln!("usage: order_saga [--postgres URL]");
            std::process::exit(2);
        }
    }
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let pool = sqlx::PgPool::connect(url).await?;
    msp_saga::migrate_postgres(&pool).await?;
    run(
        msp_saga::saga::PostgresSagaStore::new(pool),
        &format!("PostgreSQL {url}"),
    )
    .await
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    Err(
        "this build has no PostgreSQL support: add `--features postgres` to the cargo command"
            .into(),
    )
}
