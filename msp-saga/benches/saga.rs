//! 3-step saga throughput on PostgreSQL at concurrency 1 and 32, next to a
//! raw sqlx `BEGIN; INSERT; COMMIT` loop on the same database in the same
//! run.
//!
//! ```text
//! MSP_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p msp-saga --features postgres --bench saga
//! ```
//!
//! Target: sagas/s at c=32 ≥ 0.8 × (raw commits/s at c=32 ÷ 5). Skips (with a
//! message) when PostgreSQL is unreachable. `MSP_BENCH_SECS` sets the time
//! per measurement (default 5), taken in five alternating slices of each loop.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use msp_saga::saga::{Orchestrator, PostgresSagaStore, Saga, SagaState, StepError};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

async fn run<F, Fut>(clients: usize, secs: f64, op: F) -> u64
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
            tokio::spawn(async move {
                let mut i = (c as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    op(i).await;
                    i += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = count.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    n
}

async fn connect(url: &str, schema: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(40)
        .connect_with(options)
        .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MSP_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let secs: f64 = std::env::var("MSP_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let admin = match PgPool::connect(&url).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the saga bench: PostgreSQL at {url} is unreachable ({e})");
            return Ok(());
        }
    };
    let schema = format!("msp_saga_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let pool = connect(&url, &schema).await?;
    msp_saga::migrate_postgres(&pool).await?;
    sqlx::query("CREATE TABLE raw_bench (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&pool)
        .await?;

    let saga = Saga::<u64>::builder("bench")
        .step(
            "payment",
            |ctx| async move { Ok::<_, StepError>(*ctx.data()) },
        )
        .step("inventory", |_ctx| async move { Ok::<_, StepError>(()) })
        .step("shipping", |_ctx| async move { Ok::<_, StepError>(()) })
        .build()?;
    let orch = Orchestrator::builder(PostgresSagaStore::new(pool.clone()))
        .register(&saga)
        .build()?;

    let raw = |pool: PgPool| {
        move |i: u64| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("INSERT INTO raw_bench (v) VALUES ($1)")
                    .bind(format!("row-{i}"))
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }
    };
    let sagas = |orch: Orchestrator<PostgresSagaStore>, saga: Saga<u64>| {
        move |i: u64| {
            let (orch, saga) = (orch.clone(), saga.clone());
            async move {
                let h = orch.start(&saga, i).await.expect("start");
                assert_eq!(h.wait().await.expect("saga"), SagaState::Completed);
            }
        }
    };

    println!("msp-saga bench: {secs} s per measurement, PostgreSQL at {url}");
    let mut results = Vec::new();
    for clients in [1usize, 32] {
        // Warm-up, then alternate short slices of both loops so that load
        // from other processes on the machine hits both alike.
        run(clients, 0.5, raw(pool.clone())).await;
        run(clients, 0.5, sagas(orch.clone(), saga.clone())).await;
        let slices = 5;
        let slice = secs / f64::from(slices);
        let (mut raw_done, mut saga_done) = (0, 0);
        for _ in 0..slices {
            raw_done += run(clients, slice, raw(pool.clone())).await;
            saga_done += run(clients, slice, sagas(orch.clone(), saga.clone())).await;
        }
        let raw_rate = raw_done as f64 / secs;
        let saga_rate = saga_done as f64 / secs;
        let ratio = saga_rate / (raw_rate / 5.0);
        println!(
            "c={clients:>2}: raw BEGIN;INSERT;COMMIT {raw_rate:>8.0} commits/s | 3-step saga {saga_rate:>7.0} sagas/s \
             ({:>7.0} saga commits/s) | saga ÷ (raw ÷ 5) = {ratio:.2}",
            saga_rate * 4.0
        );
        results.push((clients, raw_rate, saga_rate, ratio));
    }
    if let Some((_, _, _, ratio)) = results.iter().find(|r| r.0 == 32) {
        println!(
            "target at c=32: saga ÷ (raw ÷ 5) ≥ 0.80 → {ratio:.2} ({})",
            if *ratio >= 0.8 { "met" } else { "NOT met" }
        );
    }

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    Ok(())
}
