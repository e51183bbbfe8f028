//! Events appended per second on PostgreSQL: `PostgresEventStore::append` (one
//! event per transaction, expected-version check) next to a raw sqlx
//! `BEGIN; INSERT; COMMIT` loop on the same database, in the same run, at
//! concurrency 1 and 32.
//!
//! ```text
//! cargo bench -p msp-saga --features postgres --bench eventstore -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use msp_core::testing::{Backend, backend};
use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, PostgresEventStore};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONCURRENCY: [usize; 2] = [1, 32];

struct Setup {
    pool: sqlx::PgPool,
    schema: String,
    url: String,
}

async fn setup(url: &str) -> Result<Setup, Box<dyn std::error::Error>> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)?
        .options([("search_path", schema.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(34)
        .min_connections(34)
        .connect_with(opts)
        .await?;
    msp_saga::migrate_postgres(&pool).await?;
    // The raw baseline's table: the same shape as msp_events, same indexes.
    sqlx::query(
        "CREATE TABLE raw_events (position BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, \
         version BIGINT NOT NULL, payload JSONB NOT NULL, UNIQUE (stream_id, version))",
    )
    .execute(&pool)
    .await?;
    Ok(Setup {
        pool,
        schema,
        url: url.to_owned(),
    })
}

/// Runs `iters` appends split over `concurrency` tasks, each on its own
/// stream; returns the wall time.
async fn run_msp(
    store: Arc<PostgresEventStore>,
    iters: u64,
    concurrency: usize,
    round: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let store = store.clone();
        let n = iters / concurrency as u64 + u64::from((t as u64) < iters % concurrency as u64);
        tasks.push(tokio::spawn(async move {
            let stream = format!("msp-{round}-{t}");
            for v in 0..n {
                let expected = if v == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(v)
                };
                let event = NewEvent::new("Benchmarked", serde_json::json!({ "n": v }));
                if let Err(e) = store.append(&stream, expected, vec![event]).await {
                    eprintln!("append failed: {e}");
                    return;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    start.elapsed()
}

async fn run_raw(pool: sqlx::PgPool, iters: u64, concurrency: usize, round: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let pool = pool.clone();
        let n = iters / concurrency as u64 + u64::from((t as u64) < iters % concurrency as u64);
        tasks.push(tokio::spawn(async move {
            let stream = format!("raw-{round}-{t}");
            for v in 0..n {
                let r: Result<(), sqlx::Error> = async {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO raw_events (stream_id, version, payload) VALUES ($1, $2, $3::jsonb)")
                        .bind(&stream)
                        .bind(v as i64 + 1)
                        .bind(serde_json::json!({ "n": v }).to_string())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = r {
                    eprintln!("raw insert failed: {e}");
                    return;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("no runtime: {e}"),
    };
    let setup = match rt.block_on(setup(&url)) {
        Ok(s) => s,
        Err(e) => return eprintln!("bench setup failed: {e}"),
    };
    let store = Arc::new(PostgresEventStore::new(setup.pool.clone()));
    let round = std::sync::atomic::AtomicU64::new(0);
    let mut group = c.benchmark_group("eventstore_append_postgres");
    group.throughput(Throughput::Elements(1));
    for conc in CONCURRENCY {
        group.bench_function(format!("raw_begin_insert_commit/{conc}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let r = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                run_raw(setup.pool.clone(), iters, conc, r)
            })
        });
        group.bench_function(format!("msp_pg_event_store/{conc}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let r = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                run_msp(store.clone(), iters, conc, r)
            })
        });
    }
    group.finish();
    rt.block_on(async {
        setup.pool.close().await;
        if let Ok(admin) = sqlx::PgPool::connect(&setup.url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                setup.schema
            )))
            .execute(&admin)
            .await;
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
